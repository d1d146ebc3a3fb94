//! Finding a daemon and talking to it: the API address from `--api` or the instance's
//! `api.port`, the token from `X0X_API_TOKEN` or the instance's `api-token`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::{DEFAULT_API_ADDRESS, instance_dir};
use crate::files;

/// A failure the CLI reports in one line, with a non-zero exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A named instance with no `api.port`.
    #[error(
        "named instance '{name}' is not running (no api.port in {dir}); start it with `x0x start --name {name}`"
    )]
    NotRunning {
        /// The name.
        name: String,
        /// Its data directory.
        dir: PathBuf,
    },
    /// The daemon could not be reached.
    #[error("cannot reach x0xd at {url}: {reason}; is it running? (`x0x start`)")]
    Unreachable {
        /// The base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The daemon answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The status.
        status: u16,
        /// The `error` field, or the body.
        message: String,
    },
    /// The answer was not JSON.
    #[error("failed to parse the daemon's response: {0}")]
    BadResponse(String),
    /// A usage problem found before any request (bad base64, a file that cannot be read…).
    #[error("{0}")]
    Usage(String),
}

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Client {
    /// `http://ip:port`.
    pub base: String,
    token: Option<String>,
    http: ureq::Agent,
}

impl Client {
    /// Resolves the daemon: `--api`, else the instance's `api.port`, else (without a name)
    /// x0x's default address.
    pub fn locate(name: Option<&str>, api: Option<&str>) -> Result<Self, CliError> {
        let dir = instance_dir(name);
        let base = match api {
            Some(a) if a.contains("://") => a.trim_end_matches('/').to_string(),
            Some(a) => format!("http://{a}"),
            None => match files::read_api_port(&dir) {
                Some(addr) => format!("http://{addr}"),
                None => match name {
                    Some(n) => {
                        return Err(CliError::NotRunning {
                            name: n.to_string(),
                            dir,
                        });
                    }
                    None => format!("http://{DEFAULT_API_ADDRESS}"),
                },
            },
        };
        let token = std::env::var("X0X_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                std::fs::read_to_string(dir.join(files::API_TOKEN))
                    .ok()
                    .map(|t| t.trim().to_string())
            });
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .build()
            .into();
        Ok(Self { base, token, http })
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Sends a request; returns the JSON body of a 2xx answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, CliError> {
        let url = format!("{}{}", self.base, path);
        let unreachable = |e: ureq::Error| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let cfg = |r| {
            self.http
                .configure_request(r)
                .timeout_global(Some(timeout))
                .build()
        };
        let bytes = match body {
            Some(v) => {
                req = req.header("Content-Type", "application/json");
                serde_json::to_vec(v).map_err(|e| CliError::Usage(e.to_string()))?
            }
            None => Vec::new(),
        };
        let r = req
            .body(bytes)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let resp = self.http.run(cfg(r)).map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| CliError::BadResponse(e.to_string()))?;
        let json: Value = if text.trim().is_empty() {
            serde_json::json!({ "ok": (200..300).contains(&status) })
        } else {
            serde_json::from_str(&text).map_err(|_| CliError::BadResponse(text.clone()))?
        };
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| text.clone(), str::to_string);
            Err(CliError::Api { status, message })
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call("GET", path, None, Duration::from_secs(30))
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call("POST", path, Some(&body), Duration::from_secs(70))
    }

    /// Follows an SSE stream, calling `on_data` with each `data:` JSON until the stream ends.
    pub fn stream(&self, path: &str, mut on_data: impl FnMut(&Value)) -> Result<(), CliError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.get(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.into_body().read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            return Err(CliError::Api { status, message });
        }
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                match serde_json::from_str::<Value>(data.trim()) {
                    Ok(v) => on_data(&v),
                    Err(_) => on_data(&Value::String(data.to_string())),
                }
            }
        }
        Ok(())
    }
}
