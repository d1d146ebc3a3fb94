//! What a running daemon holds: the agent, the API's registries and the streams to clients.
//!
//! Every protocol decision is the [`Agent`]'s; this is bookkeeping for the HTTP surface:
//! which subscription ids exist, which clients listen, what was counted at each stage.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use x0x_driver_tokio::Agent;

use crate::bus::Bus;
use crate::config::Settings;
use crate::peer_cache::PeerCacheFile;

/// The shared state behind every handler.
pub type AppState = Arc<Daemon>;

/// A `/events` item: one message for one subscription, serialised once for every client.
#[derive(Debug, Clone)]
pub struct PubSubEvent {
    /// The subscription it was delivered under (checked again when written, so a deleted
    /// subscription's queued events are not sent).
    pub subscription_id: u64,
    /// The SSE `data` JSON (x0x's `{"type":"message","data":{…}}` envelope).
    pub sse_json: Arc<str>,
}

/// A direct message for `/direct/events` and `/ws/direct`, serialised once.
#[derive(Debug, Clone)]
pub struct DirectEvent {
    /// Flat JSON for SSE (`{sender, machine_id, payload, …}`).
    pub sse_json: Arc<str>,
    /// The WebSocket frame (`{"type":"direct_message", …}`).
    pub ws_json: Arc<str>,
}

/// One `POST /subscribe`.
#[derive(Debug)]
pub struct SubscriptionEntry {
    /// The topic.
    pub topic: String,
    /// The task moving its messages onto the `/events` bus; aborted on `DELETE`.
    pub forwarder: JoinHandle<()>,
}

/// A WebSocket session, as `/ws/sessions` lists it.
#[derive(Debug, Clone, Default)]
pub struct WsSession {
    /// Topics it subscribed to.
    pub topics: BTreeSet<String>,
    /// Whether it receives direct messages (`/ws/direct`).
    pub receives_direct: bool,
}

/// Counters of the pub/sub pipeline, one per stage (x0x's `/diagnostics/gossip` names), so
/// the difference between two stages says where messages were lost.
#[derive(Debug, Default)]
pub struct GossipCounters {
    /// Publishes handed to the agent.
    pub publish_total: AtomicU64,
    /// Publishes the agent refused.
    pub publish_failed: AtomicU64,
    /// Messages that arrived for a daemon subscription.
    pub incoming_total: AtomicU64,
    /// Of those, verified (the agent delivers only verified messages).
    pub incoming_decoded: AtomicU64,
    /// Messages handed to the `/events` stream or a WebSocket session.
    pub delivered_to_subscriber: AtomicU64,
    /// Subscriptions whose agent-side queue ended while the daemon was running.
    pub subscriber_channel_closed: AtomicU64,
    /// WebSocket sessions disconnected for falling behind.
    pub ws_slow_dropped: AtomicU64,
    /// `POST /subscribe` refused at [`MAX_SUBSCRIPTIONS`].
    pub subscriptions_refused: AtomicU64,
}

/// Most `POST /subscribe` subscriptions held at once; one more is refused with 429.
pub const MAX_SUBSCRIPTIONS: usize = 4096;

/// Counters of direct messaging through the API.
#[derive(Debug, Default)]
pub struct DmCounters {
    /// `/direct/send` and WebSocket `send_direct` calls.
    pub send_requests: AtomicU64,
    /// Of those, acknowledged by the recipient.
    pub acknowledged: AtomicU64,
    /// Of those, failed (any reason).
    pub failed: AtomicU64,
    /// Refused before sending (bad id, bad base64).
    pub refused: AtomicU64,
    /// Direct messages received from the agent.
    pub received: AtomicU64,
}

/// Adds one.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The agent every request goes through.
    pub agent: Agent,
    /// The settings it runs with.
    pub settings: Settings,
    /// The API token.
    pub token: String,
    /// When the daemon started.
    pub started: Instant,
    /// The bound API address (set once the listener is bound).
    pub api_address: Mutex<Option<SocketAddr>>,
    /// `POST /subscribe` ids.
    pub subscriptions: Mutex<BTreeMap<u64, SubscriptionEntry>>,
    /// The `/events` stream.
    pub events: Bus<PubSubEvent>,
    /// The `/direct/events` and `/ws/direct` stream.
    pub direct: Bus<DirectEvent>,
    /// The `/presence/events` stream (each item an event's JSON).
    pub presence: Bus<Arc<str>>,
    /// WebSocket sessions by id.
    pub ws_sessions: Mutex<BTreeMap<String, WsSession>>,
    /// Pub/sub counters.
    pub gossip: GossipCounters,
    /// Direct-message counters.
    pub dm: DmCounters,
    /// The peer cache.
    pub peer_cache: Mutex<PeerCacheFile>,
    /// Becomes true when the daemon shuts down.
    pub shutdown: watch::Sender<bool>,
}

impl Daemon {
    /// A daemon around a built agent.
    pub fn new(agent: Agent, settings: Settings, token: String, peer_cache: PeerCacheFile) -> Self {
        Self {
            agent,
            settings,
            token,
            started: Instant::now(),
            api_address: Mutex::new(None),
            subscriptions: Mutex::new(BTreeMap::new()),
            events: Bus::default(),
            direct: Bus::default(),
            presence: Bus::default(),
            ws_sessions: Mutex::new(BTreeMap::new()),
            gossip: GossipCounters::default(),
            dm: DmCounters::default(),
            peer_cache: Mutex::new(peer_cache),
            shutdown: watch::channel(false).0,
        }
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Begins shutdown (idempotent): every stream ends, the server stops accepting.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.events.close();
        self.direct.close();
        self.presence.close();
    }

    /// Locks a registry; a panic elsewhere cannot leave these maps inconsistent.
    pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether subscription `id` still exists.
    pub fn subscription_exists(&self, id: u64) -> bool {
        Self::lock(&self.subscriptions).contains_key(&id)
    }

    /// Builds the `/events` item for a message delivered under `subscription_id`.
    pub fn pubsub_event(
        subscription_id: u64,
        topic: &str,
        payload: &[u8],
        sender: &str,
        trust_level: &str,
    ) -> PubSubEvent {
        let data = json!({
            "type": "message",
            "data": {
                "subscription_id": format!("{subscription_id:016x}"),
                "topic": topic,
                "payload": crate::api::extract::b64(payload),
                "sender": sender,
                "verified": true,
                "trust_level": trust_level,
            }
        });
        PubSubEvent {
            subscription_id,
            sse_json: data.to_string().into(),
        }
    }
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix milliseconds now.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
