//! `/publish`, `/subscribe`, `DELETE /subscribe/:id`, `/events`.
//!
//! As in x0x, every `/events` client receives the messages of every subscription (two
//! subscriptions to one topic give two events, told apart by `subscription_id`). Unlike x0x,
//! `DELETE /subscribe/:id` stops delivery at once: its task ends and events already queued
//! for it are not written.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::error::{ApiError, ApiResult, ok, ok_empty};
use super::extract::{JsonBody, parse_b64};
use crate::state::{AppState, Daemon, MAX_SUBSCRIPTIONS, SubscriptionEntry, bump};

/// `POST /publish` body.
#[derive(Debug, Deserialize)]
pub struct PublishBody {
    /// The topic name.
    pub topic: String,
    /// Standard base64.
    pub payload: String,
}

/// `POST /publish`.
pub async fn publish(State(s): State<AppState>, JsonBody(b): JsonBody<PublishBody>) -> ApiResult {
    if b.topic.is_empty() {
        return Err(ApiError::bad_request("topic must not be empty"));
    }
    let payload = parse_b64("payload", &b.payload)?;
    publish_bytes(&s, &b.topic, payload).await?;
    ok_empty()
}

/// Publishes through the agent and counts it (shared by REST and WebSocket).
pub async fn publish_bytes(s: &Daemon, topic: &str, payload: Vec<u8>) -> Result<(), ApiError> {
    bump(&s.gossip.publish_total);
    s.agent.publish(topic, payload).await.map_err(|e| {
        bump(&s.gossip.publish_failed);
        ApiError::from(e)
    })
}

/// `POST /subscribe` body.
#[derive(Debug, Deserialize)]
pub struct SubscribeBody {
    /// The topic name.
    pub topic: String,
}

/// `POST /subscribe`: a new subscription id (16 hex chars) whose messages go to `/events`.
pub async fn subscribe(
    State(s): State<AppState>,
    JsonBody(b): JsonBody<SubscribeBody>,
) -> ApiResult {
    let too_many = || {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_SUBSCRIPTIONS} subscriptions; delete one first"),
        )
    };
    if Daemon::lock(&s.subscriptions).len() >= MAX_SUBSCRIPTIONS {
        bump(&s.gossip.subscriptions_refused);
        return Err(too_many());
    }
    let mut sub = s.agent.subscribe(&b.topic).await?;
    let id = random_id();
    let st = s.clone();
    // The entry is registered before its task can deliver, so no event of it is skipped.
    let mut subs = Daemon::lock(&s.subscriptions);
    // Checked again under the lock: concurrent requests passed the first check together.
    if subs.len() >= MAX_SUBSCRIPTIONS {
        drop(subs);
        bump(&s.gossip.subscriptions_refused);
        return Err(too_many());
    }
    let forwarder = tokio::spawn(async move {
        while let Some(m) = sub.recv().await {
            bump(&st.gossip.incoming_total);
            bump(&st.gossip.incoming_decoded);
            let sender = m.sender.to_hex();
            let ev =
                Daemon::pubsub_event(id, &m.topic, &m.payload, &sender, m.trust_level.as_str());
            st.events.send(&ev);
            bump(&st.gossip.delivered_to_subscriber);
        }
        if !st.is_shutting_down() {
            bump(&st.gossip.subscriber_channel_closed);
            Daemon::lock(&st.subscriptions).remove(&id);
        }
    });
    subs.insert(
        id,
        SubscriptionEntry {
            topic: b.topic,
            forwarder,
        },
    );
    ok(json!({ "subscription_id": format!("{id:016x}") }))
}

/// `DELETE /subscribe/:id`.
pub async fn unsubscribe(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "subscription not found");
    let id = u64::from_str_radix(&id, 16).map_err(|_| not_found())?;
    let entry = Daemon::lock(&s.subscriptions)
        .remove(&id)
        .ok_or_else(not_found)?;
    entry.forwarder.abort();
    ok_empty()
}

/// `GET /events`: `event: message`, `data: {"type":"message","data":{…}}`.
pub async fn events(
    State(s): State<AppState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let st = s.clone();
    let stream = ReceiverStream::new(rx).filter_map(move |ev| {
        st.subscription_exists(ev.subscription_id)
            .then(|| Ok(Event::default().event("message").data(&*ev.sse_json)))
    });
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    )
}

/// A random non-zero u64 from the OS RNG (ids are not guessable across clients).
pub fn random_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Without an OS RNG, a clock-derived id is still unique within this process.
        return crate::state::unix_millis() ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(b).max(1)
}
