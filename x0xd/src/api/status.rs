//! `/health`, `/status`, `/shutdown`, `/routes`.

use axum::extract::State;
use serde_json::json;

use super::error::{ApiResult, ok};
use super::{Auth, ROUTES};
use crate::state::{AppState, Daemon};

/// The version reported by `/health` and `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a daemon with no peer says `connecting` before it says `isolated` (x0x's 45 s).
const CONNECTING_GRACE_SECS: u64 = 45;

/// `GET /health`: answers without a token, before the network is joined.
pub async fn health(State(s): State<AppState>) -> ApiResult {
    let peers = s.agent.peers().await.map(|p| p.len()).unwrap_or(0);
    ok(json!({
        "status": "healthy",
        "version": VERSION,
        "peers": peers,
        "uptime_secs": s.uptime_secs(),
    }))
}

/// The one-word connection state `/status` and `/network/status` report.
pub async fn connection_state(s: &Daemon) -> (&'static str, usize, Vec<String>) {
    match s.agent.peers().await {
        Err(e) => ("degraded", 0, vec![format!("failed to query peers: {e}")]),
        Ok(p) if !p.is_empty() => ("connected", p.len(), Vec::new()),
        Ok(_) if s.uptime_secs() < CONNECTING_GRACE_SECS => ("connecting", 0, Vec::new()),
        Ok(_) => ("isolated", 0, Vec::new()),
    }
}

/// `GET /status`.
pub async fn status(State(s): State<AppState>) -> ApiResult {
    let (state, peers, warnings) = connection_state(&s).await;
    let api = Daemon::lock(&s.api_address).map(|a| a.to_string());
    let external: Vec<String> = external_addrs(&s).await;
    ok(json!({
        "status": state,
        "version": VERSION,
        "uptime_secs": s.uptime_secs(),
        "api_address": api,
        "external_addrs": external,
        "agent_id": s.agent.agent_id().to_hex(),
        "peers": peers,
        "warnings": warnings,
    }))
}

/// `POST /shutdown`: answers, then stops the daemon gracefully.
pub async fn shutdown(State(s): State<AppState>) -> ApiResult {
    s.begin_shutdown();
    ok(json!({ "message": "shutting down" }))
}

/// `GET /routes`: every route with its auth, CLI verb and summary.
pub async fn routes() -> ApiResult {
    let list: Vec<_> = ROUTES
        .iter()
        .map(|r| {
            json!({
                "method": r.method,
                "path": r.path,
                "auth": match r.auth {
                    Auth::Open => "none",
                    Auth::Token => "token",
                    Auth::TokenOrQuery => "token_or_query",
                },
                "cli": r.cli,
                "summary": r.summary,
            })
        })
        .collect();
    ok(json!({ "count": list.len(), "routes": list }))
}

/// Where others reach this node, as `ip:port` strings: the agent's advertised addresses
/// (behind a NAT, the public one peers reported), or the bound address while none is known (a
/// wildcard bind is no use to anyone and is left out).
pub async fn external_addrs(s: &Daemon) -> Vec<String> {
    let advertised = s.agent.advertised_addrs().await.unwrap_or_default();
    let addrs = if advertised.is_empty() {
        s.agent
            .bound_addr()
            .await
            .into_iter()
            .filter(|a| !a.ip().is_unspecified())
            .collect()
    } else {
        advertised
    };
    addrs.iter().map(ToString::to_string).collect()
}
