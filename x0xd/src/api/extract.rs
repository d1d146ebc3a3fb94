//! Request parsing with x0x's status codes but JSON error bodies: malformed JSON 400, a body
//! of the wrong shape 422, a non-JSON content type 415, bad ids and base64 400.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body. Unlike `axum::Json`, a missing content type is accepted (curl users forget
/// it); a content type that says something other than JSON is 415.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = match req.headers().get(CONTENT_TYPE) {
            None => true,
            Some(v) => {
                let v = v.to_str().unwrap_or("").to_ascii_lowercase();
                let mime = v.split(';').next().unwrap_or("").trim().to_string();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            }
        };
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("Failed to buffer the request body: {e}"),
            )
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body: syntax errors are 400, shape errors 422.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        ),
        _ => ApiError::bad_request(format!("Failed to parse the request body as JSON: {e}")),
    })
}

/// A JSON body that may be empty (`POST /announce`): empty means `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("Failed to buffer the request body: {e}"),
            )
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Decodes a 32-byte id from hex (either case), with x0x's messages.
pub fn parse_id32(s: &str) -> Result<[u8; 32], ApiError> {
    let bytes = hex::decode(s).map_err(|e| ApiError::bad_request(format!("invalid hex: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        ApiError::bad_request(format!(
            "expected 32 bytes (64 hex chars), got {}",
            bytes.len()
        ))
    })
}

/// Decodes standard padded base64 (`payload`, `value` fields), with x0x's message.
pub fn parse_b64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD.decode(s).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid base64 in {field} field: {e}. The {field} must be base64-encoded (e.g., use `echo -n 'hello' | base64`)"
        ))
    })
}

/// Standard padded base64.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_64_hex_chars() {
        assert!(parse_id32(&"ab".repeat(32)).is_ok());
        assert!(parse_id32(&"AB".repeat(32)).is_ok());
        assert_eq!(
            parse_id32("zz").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let e = parse_id32("abcd").unwrap_err();
        assert!(e.message.contains("got 2"), "{}", e.message);
    }

    #[test]
    fn base64_must_be_standard_and_padded() {
        assert_eq!(parse_b64("payload", "aGk=").unwrap(), b"hi");
        assert!(parse_b64("payload", "aGk").is_err());
        assert!(parse_b64("payload", "***").is_err());
    }

    #[test]
    fn syntax_is_400_and_shape_is_422() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u8,
        }
        assert_eq!(
            parse_json::<T>(b"{nope").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_json::<T>(b"{\"a\": \"x\"}").unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
