//! The error body every handler answers with: `{"ok": false, "error": "…"}` and a status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A failed request: the status code and the one-line reason the client sees.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `error` field.
    pub message: String,
    /// Fields added beside `error` (x0x adds `detail` to some).
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Adds a field beside `error`.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("ok".into(), Value::Bool(false));
        body.insert("error".into(), Value::String(self.message));
        body.extend(self.extra);
        (self.status, Json(Value::Object(body))).into_response()
    }
}

impl From<x0x_driver_tokio::Error> for ApiError {
    fn from(e: x0x_driver_tokio::Error) -> Self {
        match e {
            x0x_driver_tokio::Error::Shutdown => Self::unavailable("daemon is shutting down"),
            e @ x0x_driver_tokio::Error::Presence(_) => Self::unavailable(e.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}

/// A handler's result: a JSON body with `ok: true` first, or an [`ApiError`].
pub type ApiResult = Result<Response, ApiError>;

/// `{"ok": true, …fields}` with status 200; `fields` must be a JSON object.
pub fn ok(fields: Value) -> ApiResult {
    Ok(ok_with(StatusCode::OK, fields))
}

/// `{"ok": true, …fields}` with `status`.
pub fn ok_with(status: StatusCode, fields: Value) -> Response {
    let mut body = Map::new();
    body.insert("ok".into(), Value::Bool(true));
    if let Value::Object(m) = fields {
        body.extend(m);
    }
    (status, Json(Value::Object(body))).into_response()
}

/// `{"ok": true}`.
pub fn ok_empty() -> ApiResult {
    ok(json!({}))
}
