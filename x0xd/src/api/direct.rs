//! `/direct/send`, `/direct/connections`, `/direct/events`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use x0x_driver_tokio::{DirectFailure, DirectMessage, DirectPath, DirectReceipt, Error};
use x0x_proto::AgentId;
use x0x_proto::direct::DirectError;

use super::error::{ApiError, ApiResult, ok};
use super::extract::{JsonBody, b64, parse_b64, parse_id32};
use crate::state::{AppState, Daemon, DirectEvent, bump, unix_millis};

/// x0x's name for a path: the connection is `raw_quic`, the sealed inbox `gossip_inbox`.
pub fn path_name(p: DirectPath) -> &'static str {
    match p {
        DirectPath::Sealed => "gossip_inbox",
        _ => "raw_quic",
    }
}

/// `POST /direct/send` body.
#[derive(Debug, Deserialize)]
pub struct SendBody {
    /// The recipient, 64 hex.
    pub agent_id: String,
    /// Standard base64.
    pub payload: String,
    /// Accepted for x0x compatibility (clamped to 100–30 000 ms). Every send here waits for
    /// the recipient's acknowledgement, so `require_ack` reports that receipt's round trip.
    #[serde(default)]
    pub require_ack_ms: Option<u64>,
}

/// Maps a failed send to x0x's `{error: kind, detail}` and status.
pub fn send_error(e: Error) -> ApiError {
    let (status, kind) = match &e {
        Error::DirectFailed(DirectFailure::RejectedByRecipient(_)) => {
            (StatusCode::FORBIDDEN, "recipient_rejected")
        }
        Error::DirectFailed(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        Error::DirectSend(DirectError::Blocked(_)) => {
            return ApiError::new(StatusCode::FORBIDDEN, "agent is blocked");
        }
        Error::DirectSend(
            DirectError::RecipientUnknown(_) | DirectError::RecipientKeyUnknown(_),
        ) => (StatusCode::NOT_FOUND, "recipient_key_unavailable"),
        Error::DirectSend(DirectError::PayloadTooLarge { .. } | DirectError::BadLifetime) => {
            (StatusCode::BAD_REQUEST, "envelope_construction")
        }
        Error::DirectSend(_) => (StatusCode::SERVICE_UNAVAILABLE, "local_gossip_unavailable"),
        Error::Shutdown => (StatusCode::SERVICE_UNAVAILABLE, "local_gossip_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "publish_failed"),
    };
    ApiError::new(status, kind).with("detail", e.to_string())
}

/// Sends and counts (shared by REST and WebSocket).
pub async fn send_bytes(
    s: &Daemon,
    to: AgentId,
    payload: Vec<u8>,
) -> Result<DirectReceipt, ApiError> {
    bump(&s.dm.send_requests);
    match s.agent.send_direct(to, payload).await {
        Ok(r) => {
            bump(&s.dm.acknowledged);
            Ok(r)
        }
        Err(e) => {
            bump(&s.dm.failed);
            Err(send_error(e))
        }
    }
}

/// `POST /direct/send`: waits for the recipient's acknowledgement.
pub async fn send(State(s): State<AppState>, JsonBody(b): JsonBody<SendBody>) -> ApiResult {
    let to = parse_id32(&b.agent_id).inspect_err(|_| bump(&s.dm.refused))?;
    let payload = parse_b64("payload", &b.payload).inspect_err(|_| bump(&s.dm.refused))?;
    let r = send_bytes(&s, AgentId::from_bytes(to), payload).await?;
    let rtt_ms = r.elapsed.as_secs_f64() * 1000.0;
    ok(json!({
        "path": path_name(r.path),
        "retries_used": r.retries,
        "request_id": hex::encode(r.request_id.0),
        "require_ack": b.require_ack_ms.map(|_| json!({ "ok": true, "rtt_ms": rtt_ms })),
    }))
}

/// `GET /direct/connections`: agents whose machine has a live connection.
pub async fn connections(State(s): State<AppState>) -> ApiResult {
    let peers = s.agent.peers().await?;
    let list: Vec<_> = peers
        .iter()
        .filter_map(|p| {
            p.agent_id
                .map(|a| json!({ "agent_id": a.to_hex(), "machine_id": p.machine_id.to_hex() }))
        })
        .collect();
    ok(json!({ "connections": list }))
}

/// `GET /direct/events`: `event: direct_message` with a flat JSON object; `: ping` every 15 s.
pub async fn events(
    State(s): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let stream = ReceiverStream::new(s.direct.subscribe())
        .map(|ev| Ok(Event::default().event("direct_message").data(&*ev.sse_json)));
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    )
}

/// The stream item for a received direct message.
pub fn direct_event(m: &DirectMessage) -> DirectEvent {
    let fields = json!({
        "sender": m.sender.to_hex(),
        "machine_id": m.sender_machine.to_hex(),
        "payload": b64(&m.payload),
        "received_at": unix_millis(),
        "verified": true,
        "trust_decision": m.trust.as_str(),
    });
    let mut ws = fields.clone();
    ws["type"] = json!("direct_message");
    DirectEvent {
        sse_json: Arc::from(fields.to_string()),
        ws_json: Arc::from(ws.to_string()),
    }
}

/// Moves the agent's direct messages onto the daemon's stream until shutdown.
pub async fn pump(s: Arc<Daemon>) {
    while let Some(m) = s.agent.recv_direct().await {
        bump(&s.dm.received);
        s.direct.send(&direct_event(&m));
    }
}
