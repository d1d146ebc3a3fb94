//! Real `x0xd` processes for tests and benchmarks: each with its own data dir and `HOME`,
//! configured through x0x's TOML keys, LAN discovery off unless asked for (tests must not
//! send multicast on the machine's interfaces), stopped when dropped.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How a test daemon is set up.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    /// Instance name (also the data dir's name under the work dir).
    pub name: String,
    /// QUIC address (`127.0.0.1:0` for an ephemeral port).
    pub bind: SocketAddr,
    /// API address.
    pub api: SocketAddr,
    /// Peers to dial.
    pub bootstrap: Vec<SocketAddr>,
    /// `lan_discovery`; only inside a network namespace a test made.
    pub lan_discovery: bool,
    /// More TOML lines.
    pub extra: String,
    /// Run inside this network namespace ([`crate::netlab`]).
    pub netns: Option<String>,
}

impl DaemonSpec {
    /// A daemon on loopback with fixed ports, LAN discovery off.
    pub fn loopback(name: &str, quic_port: u16, api_port: u16, bootstrap: &[u16]) -> Self {
        Self {
            name: name.to_string(),
            bind: SocketAddr::from(([127, 0, 0, 1], quic_port)),
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            bootstrap: bootstrap
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            lan_discovery: false,
            extra: String::new(),
            netns: None,
        }
    }
}

/// A running (or stopped) `x0xd`.
#[derive(Debug)]
pub struct TestDaemon {
    /// Its setup.
    pub spec: DaemonSpec,
    /// Its data dir.
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    exe: PathBuf,
    child: Option<Child>,
    /// The API token (read after start).
    pub token: String,
    /// Milliseconds from spawn to the first `/health` with `ok: true`.
    pub health_ms: f64,
    http: ureq::Agent,
}

/// An HTTP answer: status and JSON (`Value::Null` for an empty or non-JSON body).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status (0 when the request failed to connect).
    pub status: u16,
    /// The body.
    pub json: Value,
}

impl TestDaemon {
    /// Writes the config; does not start it.
    pub fn new(exe: &Path, work: &Path, spec: DaemonSpec) -> Self {
        let dir = work.join(&spec.name);
        std::fs::create_dir_all(dir.join("home")).expect("create the daemon's dirs");
        let config = dir.join("config.toml");
        let peers = spec
            .bootstrap
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "instance_name = \"{}\"\ndata_dir = \"{}\"\nbind_address = \"{}\"\napi_address = \"{}\"\nbootstrap_peers = [{peers}]\nlog_level = \"warn\"\nlan_discovery = {}\n{}\n",
                spec.name,
                dir.display(),
                spec.bind,
                spec.api,
                spec.lan_discovery,
                spec.extra
            ),
        )
        .expect("write the config");
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            spec,
            dir,
            config,
            exe: exe.to_path_buf(),
            child: None,
            token: String::new(),
            health_ms: 0.0,
            http,
        }
    }

    /// A daemon named `name` on two free loopback ports, with no bootstrap peer; not started.
    pub fn lone(exe: &Path, work: &Path, name: &str) -> Self {
        let p = free_ports(2).expect("two free ports");
        Self::new(exe, work, DaemonSpec::loopback(name, p[0], p[1], &[]))
    }

    /// Rewrites one line of the config (`key = value`), e.g. to empty `bootstrap_peers`.
    pub fn set_config(&mut self, key: &str, value: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read the config");
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&self.config, out.join("\n")).expect("write the config");
    }

    /// Starts the process and waits (up to 20 s) for `/health`. Returns whether it answered.
    pub fn start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("open the log");
        let t0 = Instant::now();
        // `ip netns exec` execs the daemon in place: the child's pid is the daemon's.
        let mut cmd = match &self.spec.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .env("HOME", self.dir.join("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn x0xd"));
        let ok = wait_until(Duration::from_secs(20), Duration::from_millis(2), || {
            self.get_open("/health").json.get("ok") == Some(&Value::Bool(true))
        });
        self.health_ms = t0.elapsed().as_secs_f64() * 1000.0;
        self.token = std::fs::read_to_string(self.dir.join("api-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        ok
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the process, MiB.
    pub fn rss_mb(&self) -> f64 {
        let Some(pid) = self.pid() else { return 0.0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// `http://ip:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.spec.api)
    }

    /// Sends a request with the token; `raw` bodies go as they are with a JSON content type.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>, auth: bool) -> Reply {
        self.request_with(method, path, body, auth, false)
    }

    /// As [`TestDaemon::request`], on a connection used for this request only
    /// (`Connection: close`): a flood of refused requests then cannot race a pooled
    /// connection the server is closing.
    pub fn request_alone(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
    ) -> Reply {
        self.request_with(method, path, body, auth, true)
    }

    fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
        alone: bool,
    ) -> Reply {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base()));
        if alone {
            req = req.header("Connection", "close");
        }
        if auth {
            req = req.header("Authorization", format!("Bearer {}", self.token));
        }
        let resp = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .body(b.to_vec())
                .map(|r| self.http.run(r)),
            None => req.body(Vec::new()).map(|r| self.http.run(r)),
        };
        match resp {
            Ok(Ok(r)) => {
                let status = r.status().as_u16();
                let text = r.into_body().read_to_string().unwrap_or_default();
                Reply {
                    status,
                    json: serde_json::from_str(&text).unwrap_or(Value::Null),
                }
            }
            _ => Reply {
                status: 0,
                json: Value::Null,
            },
        }
    }

    /// The status a `POST` of `size` body bytes gets: the headers go first and the status
    /// line is read before the body is sent, since a server may answer (and close) on the
    /// `Content-Length` alone.
    pub fn status_of_oversized(&self, path: &str, size: usize) -> u16 {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.spec.api) else {
            return 0;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {size}\r\n\r\n",
            self.spec.api, self.token
        );
        if s.write_all(head.as_bytes()).is_err() {
            return 0;
        }
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// `GET` with the token.
    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, true)
    }

    /// `GET` without a token.
    pub fn get_open(&self, path: &str) -> Reply {
        self.request("GET", path, None, false)
    }

    /// `POST` a JSON value with the token.
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(body.to_string().as_bytes()), true)
    }

    /// This daemon's agent id.
    pub fn agent_id(&self) -> String {
        self.get("/agent").json["agent_id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Connected peers from `/network/status`.
    pub fn peers(&self) -> u64 {
        self.get("/network/status").json["connected_peers"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Opens an SSE stream, collecting each event's `data` JSON in the background.
    pub fn sse(&self, path: &str) -> SseStream {
        SseStream::open(&self.base(), path, &self.token)
    }

    /// Asks the daemon to stop (`POST /shutdown`) and waits up to 10 s; kills it after that.
    /// Returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = self.request("POST", "/shutdown", Some(b"{}"), true);
        let exited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
        exited
    }

    /// Sends SIGTERM and waits up to 10 s. Returns whether it exited by itself.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let exited = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = child.kill();
        }
        let _ = child.wait();
        exited
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An SSE stream read by a background thread; each event's `data` line piles up in
/// `events` as it came (parsing waits for [`SseStream::event`], so the reader keeps up with
/// a fast stream).
#[derive(Debug, Clone)]
pub struct SseStream {
    /// Each event's arrival time and raw `data` JSON, in arrival order.
    pub events: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl SseStream {
    /// Connects (waits up to 5 s for the response headers).
    pub fn open(base: &str, path: &str, token: &str) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let url = format!("{base}{path}");
        let auth = format!("Bearer {token}");
        let ev = events.clone();
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let Ok(resp) = agent.get(&url).header("Authorization", &auth).call() else {
                let _ = tx.send(false);
                return;
            };
            let _ = tx.send(resp.status().is_success());
            let reader = std::io::BufReader::with_capacity(1 << 16, resp.into_body().into_reader());
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(d) = line.strip_prefix("data:") {
                    let at = Instant::now();
                    ev.lock()
                        .expect("not poisoned")
                        .push((at, d.trim().to_string()));
                }
            }
        });
        let _ = rx.recv_timeout(Duration::from_secs(5));
        Self { events }
    }

    /// Events received so far.
    pub fn len(&self) -> usize {
        self.events.lock().expect("not poisoned").len()
    }

    /// Whether no event arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event `i`, parsed (`Value::Null` if it is not JSON).
    pub fn event(&self, i: usize) -> Value {
        self.events
            .lock()
            .expect("not poisoned")
            .get(i)
            .and_then(|(_, d)| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null)
    }

    /// When event `i` arrived.
    pub fn arrived(&self, i: usize) -> Option<Instant> {
        self.events
            .lock()
            .expect("not poisoned")
            .get(i)
            .map(|e| e.0)
    }

    /// The decoded payloads (as text) of the events so far, `data.payload` or `payload`.
    pub fn payloads(&self) -> Vec<String> {
        use base64::Engine;
        let raw: Vec<String> = self
            .events
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|e| e.1.clone())
            .collect();
        raw.iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.get("data")
                    .and_then(|d| d.get("payload"))
                    .or(v.get("payload"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .filter_map(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }
}

/// Polls `f` every `step` until it is true or `timeout` passes. Returns the last answer.
pub fn wait_until(timeout: Duration, step: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// `n` ports free for both UDP and TCP on 127.0.0.1 just now (bound, then released).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut held = Vec::new();
    while held.len() < n {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        // The same port must be free for TCP too (QUIC and the API share the numbering).
        if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push((udp, tcp, port));
        }
    }
    Ok(held.iter().map(|h| h.2).collect())
}
