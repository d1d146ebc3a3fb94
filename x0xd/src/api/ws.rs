//! `/ws`, `/ws/direct`, `/ws/sessions`: x0x's JSON-over-WebSocket protocol.
//!
//! Client → server: `ping`, `subscribe {topics}`, `unsubscribe {topics}`,
//! `publish {topic, payload}`, `send_direct {agent_id, payload}`. Server → client:
//! `connected {session_id, agent_id}` first, then an unsolicited `pong` (and one every 30 s),
//! `subscribed`, `unsubscribed`, `message {topic, payload, origin}`,
//! `direct_message {…}` (on `/ws/direct`), `error {message}`.
//!
//! Each session has one bounded outgoing queue ([`crate::bus::CLIENT_QUEUE`] frames); a
//! session that falls that far behind is closed and counted in `slow_subscriber_dropped`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use x0x_proto::AgentId;

use super::error::{ApiResult, ok};
use super::extract::{b64, parse_b64, parse_id32};
use crate::bus::CLIENT_QUEUE;
use crate::state::{AppState, Daemon, WsSession, bump};

/// Most topics one WebSocket session subscribes to; one more is an error frame.
pub const MAX_SESSION_TOPICS: usize = 1024;

/// Keepalive `pong` period (x0x's 30 s).
const PONG_INTERVAL: Duration = Duration::from_secs(30);

/// `GET /ws`.
pub async fn general(State(s): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(s, socket, false))
}

/// `GET /ws/direct`.
pub async fn direct(State(s): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(s, socket, true))
}

/// `GET /ws/sessions`.
pub async fn sessions(State(s): State<AppState>) -> ApiResult {
    let sessions = Daemon::lock(&s.ws_sessions).clone();
    let mut shared: BTreeMap<String, usize> = BTreeMap::new();
    for sess in sessions.values() {
        for t in &sess.topics {
            *shared.entry(t.clone()).or_default() += 1;
        }
    }
    let list: Vec<_> = sessions
        .iter()
        .map(|(id, sess)| {
            json!({
                "session_id": id,
                "subscribed_topics": sess.topics,
                "receives_direct": sess.receives_direct,
            })
        })
        .collect();
    ok(json!({ "sessions": list, "shared_subscriptions": shared }))
}

/// A client command.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Command {
    Ping,
    Subscribe { topics: Vec<String> },
    Unsubscribe { topics: Vec<String> },
    Publish { topic: String, payload: String },
    SendDirect { agent_id: String, payload: String },
}

fn error_frame(message: impl Into<String>) -> Arc<str> {
    Arc::from(json!({ "type": "error", "message": message.into() }).to_string())
}

/// A version-4 UUID from the OS RNG.
fn session_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Runs one session until the client leaves, falls behind, or the daemon stops.
async fn session(s: AppState, mut socket: WebSocket, receives_direct: bool) {
    let id = session_id();
    Daemon::lock(&s.ws_sessions).insert(
        id.clone(),
        WsSession {
            topics: Default::default(),
            receives_direct,
        },
    );
    let (out_tx, mut out_rx) = mpsc::channel::<Arc<str>>(CLIENT_QUEUE);
    // A forwarder that finds the queue full says so here, and the session ends.
    let (slow_tx, mut slow_rx) = mpsc::channel::<()>(1);
    let mut forwarders: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    let mut direct_rx = receives_direct.then(|| s.direct.subscribe());
    let mut shutdown = s.shutdown.subscribe();
    let hello =
        json!({ "type": "connected", "session_id": id, "agent_id": s.agent.agent_id().to_hex() });
    let mut ok = socket.send(Message::text(hello.to_string())).await.is_ok()
        && socket
            .send(Message::text(r#"{"type":"pong"}"#))
            .await
            .is_ok();
    let mut pong =
        tokio::time::interval_at(tokio::time::Instant::now() + PONG_INTERVAL, PONG_INTERVAL);
    while ok && !*shutdown.borrow() {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let sink = Sink { out: &out_tx, slow: &slow_tx };
                    if let Some(reply) = handle(&s, &id, t.as_str(), sink, &mut forwarders).await {
                        ok = socket.send(Message::text(&*reply)).await.is_ok();
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {} // binary, ping, pong: nothing to do
            },
            frame = out_rx.recv() => match frame {
                Some(f) => ok = socket.send(Message::text(&*f)).await.is_ok(),
                None => break,
            },
            dm = async { match direct_rx.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match dm {
                Some(ev) => ok = socket.send(Message::text(&*ev.ws_json)).await.is_ok(),
                None => {
                    if !s.is_shutting_down() {
                        // Dropped from the direct stream for falling behind.
                        bump(&s.gossip.ws_slow_dropped);
                    }
                    break;
                }
            },
            _ = slow_rx.recv() => break,
            _ = pong.tick() => ok = socket.send(Message::text(r#"{"type":"pong"}"#)).await.is_ok(),
            _ = shutdown.changed() => break,
        }
    }
    for (_, f) in forwarders {
        f.abort();
    }
    Daemon::lock(&s.ws_sessions).remove(&id);
    let _ = socket.send(Message::Close(None)).await;
}

/// Where a session's forwarders put frames, and how they report falling behind.
#[derive(Clone, Copy)]
struct Sink<'a> {
    out: &'a mpsc::Sender<Arc<str>>,
    slow: &'a mpsc::Sender<()>,
}

/// Handles one client frame; returns the reply frame, if any.
async fn handle(
    s: &AppState,
    id: &str,
    text: &str,
    sink: Sink<'_>,
    forwarders: &mut BTreeMap<String, JoinHandle<()>>,
) -> Option<Arc<str>> {
    let cmd: Command = match serde_json::from_str(text) {
        Ok(c) => c,
        Err(e) => return Some(error_frame(format!("invalid command: {e}"))),
    };
    match cmd {
        Command::Ping => Some(Arc::from(r#"{"type":"pong"}"#)),
        Command::Subscribe { topics } => {
            for t in &topics {
                if forwarders.contains_key(t) {
                    continue;
                }
                if forwarders.len() >= MAX_SESSION_TOPICS {
                    return Some(error_frame(format!(
                        "at most {MAX_SESSION_TOPICS} topics per session; unsubscribe first"
                    )));
                }
                match s.agent.subscribe(t).await {
                    Ok(sub) => {
                        let task = forward(s.clone(), sub, sink.out.clone(), sink.slow.clone());
                        forwarders.insert(t.clone(), tokio::spawn(task));
                        if let Some(sess) = Daemon::lock(&s.ws_sessions).get_mut(id) {
                            sess.topics.insert(t.clone());
                        }
                    }
                    Err(e) => return Some(error_frame(format!("subscribe failed: {e}"))),
                }
            }
            Some(Arc::from(
                json!({ "type": "subscribed", "topics": topics }).to_string(),
            ))
        }
        Command::Unsubscribe { topics } => {
            for t in &topics {
                if let Some(f) = forwarders.remove(t) {
                    f.abort();
                }
                if let Some(sess) = Daemon::lock(&s.ws_sessions).get_mut(id) {
                    sess.topics.remove(t);
                }
            }
            Some(Arc::from(
                json!({ "type": "unsubscribed", "topics": topics }).to_string(),
            ))
        }
        Command::Publish { topic, payload } => {
            let Ok(bytes) = parse_b64("payload", &payload) else {
                return Some(error_frame("invalid base64 in payload"));
            };
            match super::pubsub::publish_bytes(s, &topic, bytes).await {
                Ok(()) => None,
                Err(_) => Some(error_frame("publish failed")),
            }
        }
        Command::SendDirect { agent_id, payload } => {
            let to = match parse_id32(&agent_id) {
                Ok(a) => AgentId::from_bytes(a),
                Err(e) => return Some(error_frame(e.message)),
            };
            let Ok(bytes) = parse_b64("payload", &payload) else {
                return Some(error_frame("invalid base64 in payload"));
            };
            // The receipt may take a while: the session keeps serving meanwhile.
            let (s, out) = (s.clone(), sink.out.clone());
            tokio::spawn(async move {
                if super::direct::send_bytes(&s, to, bytes).await.is_err() {
                    let _ = out.try_send(error_frame("send failed"));
                }
            });
            None
        }
    }
}

/// Moves one topic's messages into the session's queue; a full queue ends the session.
async fn forward(
    s: AppState,
    mut sub: x0x_driver_tokio::Subscription,
    out: mpsc::Sender<Arc<str>>,
    slow: mpsc::Sender<()>,
) {
    while let Some(m) = sub.recv().await {
        bump(&s.gossip.incoming_total);
        bump(&s.gossip.incoming_decoded);
        let frame = json!({
            "type": "message",
            "topic": m.topic,
            "payload": b64(&m.payload),
            "origin": m.sender.to_hex(),
            "trust_level": m.trust_level.as_str(),
        });
        match out.try_send(Arc::from(frame.to_string())) {
            Ok(()) => bump(&s.gossip.delivered_to_subscriber),
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&s.gossip.ws_slow_dropped);
                let _ = slow.try_send(());
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
