//! Bearer-token authentication, compared in constant time.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header::AUTHORIZATION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{Auth, ROUTES};
use crate::state::AppState;

/// The 401 message (x0x's words).
pub const UNAUTHORIZED: &str = "missing or invalid Authorization: Bearer token";

/// Lets a request through when its route is open, it is a CORS preflight, or it carries the
/// token: in the `Authorization` header, or as `?token=` on the streaming routes only.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let path = req.uri().path();
    let auth = ROUTES
        .iter()
        .find(|r| r.path == path)
        .map_or(Auth::Token, |r| r.auth);
    if auth == Auth::Open {
        return next.run(req).await;
    }
    let header_ok = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| token_eq(t, &state.token));
    let query_ok = auth == Auth::TokenOrQuery
        && req.uri().query().is_some_and(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("token="))
                .any(|t| token_eq(t, &state.token))
        });
    if header_ok || query_ok {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED).into_response()
    }
}

/// Constant-time comparison (the length is not secret: every token is 64 chars).
fn token_eq(given: &str, expected: &str) -> bool {
    constant_time_eq::constant_time_eq(given.as_bytes(), expected.as_bytes())
}
