//! `/presence…`: who is online (beacons and the discovery cache), friends-of-friends walks
//! and look-ups, one agent's status, and the online/offline stream.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use x0x_driver_tokio::{AgentEvent, DiscoveredAgent, OnlineAgent, Visibility};
use x0x_proto::AgentId;

use super::discovery::agent_json;
use super::error::{ApiError, ApiResult, ok};
use crate::state::{AppState, Daemon, unix_secs};

/// `?ttl=` default (x0x's REST default; the core clamps it to its `foaf_max_ttl`).
pub const DEFAULT_TTL: u8 = 3;
/// `?timeout_ms=` default (x0x's).
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Longest walk one request may ask for: a request holds its connection that long.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// `?ttl=&timeout_ms=` of `/presence/foaf` and `/presence/find/:id` (a value that does not
/// parse is a 400, as in x0x).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct WalkQuery {
    /// Hops.
    pub ttl: u8,
    /// How long to gather, milliseconds (at most [`MAX_TIMEOUT_MS`]).
    pub timeout_ms: u64,
}

impl Default for WalkQuery {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl WalkQuery {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.min(MAX_TIMEOUT_MS))
    }
}

/// x0x's message for a bad id on these routes.
fn parse_agent(id: &str) -> Result<AgentId, ApiError> {
    super::extract::parse_id32(id)
        .map(AgentId::from_bytes)
        .map_err(|_| ApiError::bad_request("invalid agent id (expected 64 hex chars)"))
}

/// x0x's DiscoveredAgent object for an agent known only from its presence record.
fn record_json(s: &Daemon, a: &OnlineAgent, discovered: Option<&DiscoveredAgent>) -> Value {
    if let Some(d) = discovered {
        return agent_json(d);
    }
    // The record was made one lifetime before it expires.
    let lifetime = crate::daemon::protocol_config(&s.settings)
        .presence
        .record_lifetime()
        .as_secs();
    json!({
        "agent_id": a.agent_id.to_hex(),
        "machine_id": a.machine_id.to_hex(),
        "user_id": null,
        "addresses": a.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "announced_at": a.since,
        "last_seen": a.expires.saturating_sub(lifetime),
    })
}

/// The network view: the TTL-filtered discovery cache plus every agent online by beacon,
/// one object per agent, sorted by agent id, blocked agents left out (as x0x's).
async fn online_view(s: &Daemon) -> Result<BTreeMap<[u8; 32], Value>, ApiError> {
    let cutoff = unix_secs().saturating_sub(s.settings.identity_ttl_secs);
    let discovered: BTreeMap<[u8; 32], DiscoveredAgent> = s
        .agent
        .discovered_agents()
        .await?
        .into_iter()
        .map(|a| (*a.agent_id.as_bytes(), a))
        .collect();
    let mut out: BTreeMap<[u8; 32], Value> = discovered
        .values()
        .filter(|a| a.last_seen >= cutoff)
        .map(|a| (*a.agent_id.as_bytes(), agent_json(a)))
        .collect();
    for a in s.agent.online_agents(Visibility::Network).await? {
        let key = *a.agent_id.as_bytes();
        let v = record_json(s, &a, discovered.get(&key));
        out.entry(key).or_insert(v);
    }
    Ok(out)
}

/// `GET /presence`: the online view's agent ids (x0x returns plain id strings here).
pub async fn ids(State(s): State<AppState>) -> ApiResult {
    let view = online_view(&s).await?;
    ok(json!({ "agents": view.keys().map(hex::encode).collect::<Vec<_>>() }))
}

/// `GET /presence/online`.
pub async fn online(State(s): State<AppState>) -> ApiResult {
    let view = online_view(&s).await?;
    ok(json!({ "agents": view.into_values().collect::<Vec<_>>() }))
}

/// `GET /presence/foaf?ttl=&timeout_ms=`: a friends-of-friends walk, known and trusted
/// contacts only (x0x's social view).
pub async fn foaf(State(s): State<AppState>, Query(q): Query<WalkQuery>) -> ApiResult {
    let found = s
        .agent
        .discover_agents_foaf(q.ttl, q.timeout(), Visibility::Social)
        .await?;
    let discovered = s.agent.discovered_agents().await?;
    let list: Vec<Value> = found
        .iter()
        .map(|a| {
            let d = discovered.iter().find(|d| d.agent_id == a.agent_id);
            record_json(&s, a, d)
        })
        .collect();
    ok(json!({ "agents": list }))
}

/// `GET /presence/find/:id?ttl=&timeout_ms=`: `{agent: …}` or `{agent: null}`, 200 either way.
pub async fn find(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WalkQuery>,
) -> ApiResult {
    let agent = parse_agent(&id)?;
    let found = s
        .agent
        .discover_agent_by_id(agent, q.ttl, q.timeout())
        .await?;
    let discovered = s.agent.discovered_agents().await?;
    let d = discovered.iter().find(|d| d.agent_id == agent);
    ok(json!({ "agent": found.map(|a| record_json(&s, &a, d)) }))
}

/// `GET /presence/status/:id`: `online` when this node holds a live presence record or a
/// discovery record of the agent (x0x: present in the cache, whatever its age).
pub async fn status(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let agent = parse_agent(&id)?;
    let record = s.agent.presence_status(agent).await?;
    let discovered = s.agent.discovered_agents().await?;
    let d = discovered.iter().find(|d| d.agent_id == agent);
    let body = match (&record, d) {
        (Some(r), _) => record_json(&s, r, d),
        (None, Some(d)) => agent_json(d),
        (None, None) => Value::Null,
    };
    ok(json!({ "online": !body.is_null(), "agent": body }))
}

/// The `data` of a presence SSE event (x0x's shapes; `reason` is ours).
pub fn event_json(e: &AgentEvent) -> Option<Arc<str>> {
    let v = match e {
        AgentEvent::AgentOnline {
            agent_id,
            reachable,
            ..
        } => json!({"event": "online", "agent_id": agent_id.to_hex(), "reachable": reachable}),
        AgentEvent::AgentOffline { agent_id, reason } => {
            json!({"event": "offline", "agent_id": agent_id.to_hex(), "reason": reason.as_str()})
        }
        _ => return None,
    };
    Some(Arc::from(v.to_string()))
}

/// `GET /presence/events`: `event: presence` items; first an `online` for every agent
/// online now (as x0x's first poll does), then each change as it happens.
pub async fn events(
    State(s): State<AppState>,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before the snapshot: an agent coming online in between is reported twice
    // rather than never.
    let live = s.presence.subscribe();
    let now: Vec<Arc<str>> = s
        .agent
        .online_agents(Visibility::Network)
        .await?
        .iter()
        .map(|a| {
            Arc::from(
                json!({"event": "online", "agent_id": a.agent_id.to_hex(), "reachable": a.reachable})
                    .to_string(),
            )
        })
        .collect();
    let stream = tokio_stream::iter(now)
        .chain(ReceiverStream::new(live))
        .map(|data| Ok(Event::default().event("presence").data(&*data)));
    Ok(Sse::new(stream))
}

/// Moves the agent's presence events onto the daemon's stream until shutdown.
pub async fn pump(s: Arc<Daemon>) {
    let Ok(mut events) = s.agent.presence_events().await else {
        return;
    };
    while let Some(e) = events.recv().await {
        if let Some(data) = event_json(&e) {
            s.presence.send(&data);
        }
    }
}
