//! [`AgentStats`]: the node's counters (every layer's, nested) and the driver's.

use x0x_proto::node::NodeStats;

/// Counters from [`Agent::stats`](crate::Agent::stats).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentStats {
    /// The protocol node's counters, each layer's nested (`node.broadcast.published`, …).
    pub node: NodeStats,
    /// The driver's counters.
    pub driver: DriverStats,
    /// Connections tracked now.
    pub connections: usize,
    /// Tasks the driver runs now (connection readers and writers, handshakes, the accept loop
    /// and LAN discovery, which holds two): steady while connections are, so growth means a
    /// leak.
    pub tasks: usize,
}

/// What the driver counted. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Incoming connections that completed the handshake.
    pub connections_accepted: u64,
    /// Outgoing connections that completed the handshake.
    pub connections_dialed: u64,
    /// Incoming handshakes that failed.
    pub handshakes_failed: u64,
    /// Incoming connections refused because the peer's key exchange was classical only (no
    /// [`KEY_EXCHANGE`](crate::tls::KEY_EXCHANGE)).
    pub classical_key_exchange_refused: u64,
    /// Dials that failed (unreachable, refused, wrong machine, timeout).
    pub dials_failed: u64,
    /// Second connections to an already-connected machine, closed.
    pub duplicates_closed: u64,
    /// Connections closed for a length prefix above the frame limit.
    pub frames_too_large: u64,
    /// Events from connections no longer tracked (frames after a close), ignored.
    pub stale_conn_events: u64,
    /// Frames dropped because a peer's send queue was full.
    pub send_queue_full_drops: u64,
    /// Publishes whose answer waited for a congested send queue to drain (backpressure).
    pub publishes_held: u64,
    /// Batches of queued publishes handed to the node (one signature each per 256 messages).
    pub publish_batches: u64,
    /// Queued publishes ([`Agent::publish`](crate::Agent::publish)) the node refused after they were queued.
    pub publishes_refused: u64,
    /// Frames for a machine with no connection, dropped.
    pub transmits_without_connection: u64,
    /// Subscribers dropped for not keeping up.
    pub subscribers_dropped: u64,
    /// Event watchers dropped for not keeping up.
    pub watchers_dropped: u64,
    /// Direct messages dropped because the `recv_direct` queue was full.
    pub direct_dropped: u64,
}
