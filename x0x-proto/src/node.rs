//! The [`Node`]: one agent's protocol state, driven by `handle_*` calls and drained by `poll_*`.
//!
//! See the crate documentation for the run loop; this module holds the types.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::announce::{
    AnnounceConfig, AnnounceError, IdentityAnnouncement, MachineAnnouncement, RejectReason,
    RendezvousRecord, UserAnnouncement,
};
use crate::broadcast::{self, Broadcast, BroadcastConfig, BroadcastStats, PubSubBody};
use crate::direct::{
    DirectConfig, DirectFailure, DirectMessage, DirectReceipt, DirectState, DirectStats, RequestId,
};
use crate::discovery::{
    DiscoveredAgent, Discovery, DiscoveryStats, Merged, QueryRoute, RendezvousInfo,
};
use crate::identity::{
    AgentCertificate, AgentId, AgentKeypair, Domain, MachineId, MachineKeypair, PublicKey,
    UserKeypair,
};
use crate::identity::{SignerId, UserId};
use crate::membership::{self, DownReason, Membership, MembershipConfig, MembershipStats};
use crate::time::Time;
use crate::wire::{
    self, DecodeError, Frame, FrameKind, Hello, MessageId, QueryTarget, RecordKind, TopicId,
};

/// The keys a node acts with.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The machine key: the transport identity, proven by the driver's TLS handshake.
    pub machine: MachineKeypair,
    /// The agent key: signs messages and announcements.
    pub agent: AgentKeypair,
    /// The optional user key and the certificate binding the agent to it.
    pub user: Option<(UserKeypair, AgentCertificate)>,
}

impl Identity {
    /// An identity with machine and agent keys and no user.
    pub fn new(machine: MachineKeypair, agent: AgentKeypair) -> Self {
        Self {
            machine,
            agent,
            user: None,
        }
    }

    /// Deterministic identity from one 32-byte seed (tests and simulations).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let m = blake3::derive_key("x0x-rs identity-from-seed machine v1", &seed);
        let a = blake3::derive_key("x0x-rs identity-from-seed agent v1", &seed);
        Self::new(MachineKeypair::from_seed(m), AgentKeypair::from_seed(a))
    }

    /// Deterministic **stand-in** identity for large simulations (see
    /// [`crate::identity::stand_in`]); only nodes with
    /// [`Config::allow_stand_in_signatures`] accept what it signs.
    #[cfg(feature = "stand-in-crypto")]
    pub fn stand_in_from_seed(seed: [u8; 32]) -> Self {
        let m = blake3::derive_key("x0x-rs identity-from-seed machine v1", &seed);
        let a = blake3::derive_key("x0x-rs identity-from-seed agent v1", &seed);
        Self::new(
            MachineKeypair::stand_in_from_seed(m),
            AgentKeypair::stand_in_from_seed(a),
        )
    }
}

/// Node configuration. Every field has a documented default ([`Config::default`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to dial at start-up to enter the network. Default: none.
    pub bootstrap: Vec<SocketAddr>,
    /// Addresses this node can be reached at, told to peers in `Hello`. Default: none (the
    /// driver fills in its bound address).
    pub listen_addrs: Vec<SocketAddr>,
    /// Most simultaneous connections; one more is closed at once. Default 64: the active view
    /// (5), the transient connections of shuffles and joins, and room for direct messages.
    pub max_connections: usize,
    /// A connection that has not sent its `Hello` within this time is closed. Default 10 s.
    pub hello_timeout: Duration,
    /// Interval of the keepalive ping on an idle connection. Default 15 s: half of a typical
    /// QUIC idle timeout of 30 s (x0x ADR-0002 uses the same pair).
    pub keepalive_interval: Duration,
    /// Cap on queued outgoing frames not yet polled; more are dropped and counted.
    /// Default 65 536 (a driver drains after every input, so this is a safety net).
    pub max_queued_transmits: usize,
    /// Cap on queued events not yet polled; more are dropped and counted. Default 65 536.
    pub max_queued_events: usize,
    /// Malformed or oversized frames tolerated from one connection before it is closed.
    /// Default 0: the first one closes it (an honest peer never sends one).
    pub max_frame_errors: u32,
    /// Largest pub/sub payload [`Node::publish`] accepts. Default 64 KiB: what fits a
    /// `Gossip` frame with its signature and key with room to spare.
    pub max_payload_len: usize,
    /// Accept simulation stand-in signatures ([`crate::identity::stand_in`]). Default false;
    /// only the simulator sets it.
    #[cfg(feature = "stand-in-crypto")]
    pub allow_stand_in_signatures: bool,
    /// Keep a received message's body and signature as slices of the frame buffer given to
    /// [`Node::handle_frame`] ([`Frame::decode_shared`]) instead of copying them. Default
    /// false: on a real transport each frame is its own buffer, and a slice would keep the
    /// frame's copy of the signer's key (1 952 bytes) alive with every cached message. A
    /// simulator that hands one sent frame to every receiver turns it on: the receivers then
    /// share one buffer (`x0x-sim`: 13.6 instead of 15.3 GiB at 100 000 nodes).
    pub share_frames: bool,
    /// Membership (HyParView + SWIM) settings.
    pub membership: MembershipConfig,
    /// Broadcast (PlumTree) settings.
    pub broadcast: BroadcastConfig,
    /// Most agent public keys kept decoded for verification. Default 4096 (oldest evicted).
    pub key_cache_capacity: usize,
    /// Most verified batch roots remembered ([`wire::BatchProof`]), so the members of a batch
    /// after the first verify by hashing alone. Default 1024 (oldest evicted): a few seconds
    /// of batches from a few busy publishers.
    pub batch_cache_capacity: usize,
    /// Announcement, heartbeat and discovery settings.
    pub announce: AnnounceConfig,
    /// Direct-message settings.
    pub direct: DirectConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            listen_addrs: Vec::new(),
            max_connections: 64,
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            max_queued_transmits: 65_536,
            max_queued_events: 65_536,
            max_frame_errors: 0,
            max_payload_len: 64 * 1024,
            #[cfg(feature = "stand-in-crypto")]
            allow_stand_in_signatures: false,
            share_frames: false,
            membership: MembershipConfig::default(),
            broadcast: BroadcastConfig::default(),
            key_cache_capacity: 4096,
            batch_cache_capacity: 1024,
            announce: AnnounceConfig::default(),
            direct: DirectConfig::default(),
        }
    }
}

/// A configuration the node refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A cap or interval that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Settings that contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(&'static str),
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("max_connections", self.max_connections == 0),
            ("hello_timeout", self.hello_timeout.is_zero()),
            ("keepalive_interval", self.keepalive_interval.is_zero()),
            ("max_queued_transmits", self.max_queued_transmits == 0),
            ("max_queued_events", self.max_queued_events == 0),
            (
                "membership.active_view_capacity",
                self.membership.active_view_capacity == 0,
            ),
            (
                "membership.probe_interval",
                self.membership.probe_interval.is_zero(),
            ),
            (
                "membership.shuffle_interval",
                self.membership.shuffle_interval.is_zero(),
            ),
            (
                "broadcast.cache_capacity",
                self.broadcast.cache_capacity == 0,
            ),
            ("broadcast.seen_capacity", self.broadcast.seen_capacity == 0),
            ("key_cache_capacity", self.key_cache_capacity == 0),
            ("batch_cache_capacity", self.batch_cache_capacity == 0),
            (
                "announce.heartbeat_interval",
                self.announce.heartbeat_interval.is_zero(),
            ),
            ("announce.max_agents", self.announce.max_agents == 0),
            ("announce.max_machines", self.announce.max_machines == 0),
            ("announce.max_users", self.announce.max_users == 0),
            ("announce.max_rendezvous", self.announce.max_rendezvous == 0),
            (
                "announce.max_tracked_queries",
                self.announce.max_tracked_queries == 0,
            ),
            ("announce.query_rings", self.announce.query_rings.is_empty()),
            ("direct.max_attempts", self.direct.max_attempts == 0),
            ("direct.dedup_capacity", self.direct.dedup_capacity == 0),
            ("direct.max_outstanding", self.direct.max_outstanding == 0),
            ("direct.max_rtt_entries", self.direct.max_rtt_entries == 0),
            (
                "direct.default_lifetime",
                self.direct.default_lifetime.is_zero(),
            ),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        let b = &self.broadcast;
        // A message must be refused as too old before its id can leave the dedup window, or
        // a replay after the window would be delivered again.
        if b.max_message_age + b.max_clock_skew >= b.seen_retention {
            return Err(ConfigError::Inconsistent(
                "broadcast.max_message_age + max_clock_skew must be below seen_retention",
            ));
        }
        Ok(())
    }
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled.
    Outbound,
    /// They dialled.
    Inbound,
}

/// A frame to send to a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer (a machine with a live connection).
    pub to: MachineId,
    /// What the frame carries; lets a driver or simulator prioritise or count without decoding.
    pub kind: FrameKind,
    /// The encoded frame ([`wire`]); the driver length-prefixes it on its stream.
    pub frame: Bytes,
}

/// Why the node asks for a connection to be closed, or why one went down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The connection limit was reached.
    TooManyConnections,
    /// A second connection to a machine that already has one.
    Duplicate,
    /// The peer sent frames that do not decode.
    BadFrames(DecodeError),
    /// The peer broke the protocol (e.g. a frame before `Hello`, a `Hello` twice).
    ProtocolViolation(&'static str),
    /// No `Hello` within [`Config::hello_timeout`].
    HelloTimeout,
    /// The node is shutting down.
    Shutdown,
    /// The membership layer no longer needs this connection.
    NotNeeded,
}

/// An instruction for the driver that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a connection to `addr`. When it succeeds, call [`Node::handle_connected`]; when it
    /// fails, [`Node::handle_dial_failed`]. If `expect` is set, the TLS handshake must prove
    /// that machine, or the connection must be refused.
    Dial {
        /// Where to dial.
        addr: SocketAddr,
        /// The machine expected at that address, if known.
        expect: Option<MachineId>,
    },
    /// Close the connection to `peer`, then call [`Node::handle_disconnected`].
    Close {
        /// The peer.
        peer: MachineId,
        /// Why (for logs and counters).
        reason: CloseReason,
    },
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection completed its `Hello` exchange.
    PeerUp {
        /// The peer machine (proven by the transport).
        peer: MachineId,
        /// The agent it says it runs.
        agent: AgentId,
    },
    /// A connection that had completed its `Hello` went away.
    PeerDown {
        /// The peer machine.
        peer: MachineId,
    },
    /// A pub/sub message for a subscribed topic, verified and delivered once.
    Message(Delivery),
    /// An agent entered the discovery cache for the first time.
    AgentDiscovered {
        /// The agent.
        agent_id: AgentId,
    },
    /// A `find_agent` / `find_agent_rendezvous` query ended.
    QueryFinished {
        /// The query handle returned when it started.
        query: QueryId,
        /// What was sought.
        target: QueryTarget,
        /// The answer, or `None` if nothing live was found.
        found: Option<Found>,
    },
    /// A machine entered the membership active view.
    NeighborUp {
        /// The neighbour.
        peer: MachineId,
    },
    /// A neighbour did not answer its probe, directly or through others: SWIM suspects it.
    /// It is declared dead ([`Event::NeighborDown`] with [`DownReason::Dead`]) unless it shows
    /// a sign of life within `suspect_timeout`.
    NeighborSuspected {
        /// The neighbour.
        peer: MachineId,
    },
    /// A machine left the membership active view.
    NeighborDown {
        /// The neighbour.
        peer: MachineId,
        /// Why.
        reason: DownReason,
    },
    /// A direct message for this agent, verified and delivered once.
    DirectMessage(DirectMessage),
    /// A direct message we sent was acknowledged by its recipient.
    DirectReceipt(DirectReceipt),
    /// A direct message we sent will not be delivered.
    DirectFailed {
        /// The request id returned by `send_direct`.
        request_id: RequestId,
        /// The recipient.
        recipient: AgentId,
        /// Why.
        reason: DirectFailure,
    },
}

/// A pub/sub message delivered to this node's subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: TopicId,
    /// The message id (`BLAKE3` of the signed body).
    pub id: MessageId,
    /// The publishing agent, proven by its signature.
    pub author: AgentId,
    /// Hops the message travelled to reach us (1 = straight from the publisher).
    pub hops: u8,
    /// The machine it arrived from.
    pub via: MachineId,
    /// When the publisher published it (its clock, unix milliseconds).
    pub published_at_ms: u64,
    /// The application payload.
    pub payload: Bytes,
}

/// Handle of a discovery query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

/// How a query found its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundVia {
    /// This node's cache.
    Cache,
    /// An identity announcement, from a query answer or from gossip while waiting.
    Query,
    /// A rendezvous record.
    Rendezvous,
}

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The agent.
    pub agent_id: AgentId,
    /// Its machine.
    pub machine_id: MachineId,
    /// Where it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// How it was found.
    pub via: FoundVia,
}

fn found(a: &DiscoveredAgent, via: FoundVia) -> Found {
    Found {
        agent_id: a.agent_id,
        machine_id: a.machine_id,
        addresses: a.addresses.clone(),
        via,
    }
}

fn found_rv(r: &RendezvousInfo) -> Found {
    Found {
        agent_id: r.agent_id,
        machine_id: r.machine_id,
        addresses: r.addresses.clone(),
        via: FoundVia::Rendezvous,
    }
}

#[derive(Debug, Clone, Copy)]
struct InternalTopics {
    announce: TopicId,
    rendezvous: TopicId,
    kem: TopicId,
    inbox: TopicId,
}

#[derive(Debug, Clone)]
struct OwnQuery {
    /// What the caller asked for (reported in the result).
    asked: QueryTarget,
    /// What the current stage looks for (a find_agent moves to rendezvous records).
    target: QueryTarget,
    ring: usize,
    deadline: Option<Time>,
    /// A find_agent that will fall back to rendezvous records after its rings.
    fallback: bool,
}

/// Why [`Node::publish`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is larger than [`Config::max_payload_len`].
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Counters of everything the node did or refused. Monotonic; never reset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames accepted by `handle_frame` (decoded successfully).
    pub frames_received: u64,
    /// Frames handed out by `poll_transmit`.
    pub frames_sent: u64,
    /// Frames that failed to decode, by reason.
    pub frames_rejected: BTreeMap<&'static str, u64>,
    /// Frames of a kind this build does not know (skipped, not an error).
    pub frames_unknown_kind: u64,
    /// Frames from a machine with no connection (driver bug or race), dropped.
    pub frames_from_unknown_peer: u64,
    /// Outgoing frames dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Outgoing frames that could not be encoded (over a size limit), dropped.
    pub transmits_unencodable: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Connections closed by the node, by reason.
    pub closes: BTreeMap<&'static str, u64>,
    /// Dials the driver reported as failed.
    pub dials_failed: u64,
    /// `handle_connected` calls for a machine that already had a connection (resolved dials).
    pub duplicate_connections: u64,
    /// Pub/sub messages refused before delivery, by reason (bad signature, no key, …).
    pub messages_rejected: BTreeMap<&'static str, u64>,
    /// Broadcast frames from a connected machine that is not a neighbour.
    pub frames_from_non_neighbor: u64,
    /// Batch members verified from a remembered batch root, without an ML-DSA verification.
    pub batch_root_hits: u64,
    /// Batch roots forgotten to make room ([`Config::batch_cache_capacity`]).
    pub batch_roots_evicted: u64,
    /// Signatures made by [`Node::publish_batch`] (one per batch of up to `wire::MAX_BATCH`).
    pub publish_signatures: u64,
}

impl Stats {
    fn bump(map: &mut BTreeMap<&'static str, u64>, key: &'static str) {
        *map.entry(key).or_default() += 1;
    }
}

fn decode_error_name(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::TooShort(_) => "too_short",
        DecodeError::TooLarge { .. } => "too_large",
        DecodeError::UnsupportedVersion(_) => "unsupported_version",
        DecodeError::UnknownKind(_) => "unknown_kind",
        DecodeError::Malformed { .. } => "malformed",
        DecodeError::TrailingBytes { .. } => "trailing_bytes",
    }
}

fn close_reason_name(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::TooManyConnections => "too_many_connections",
        CloseReason::Duplicate => "duplicate",
        CloseReason::BadFrames(_) => "bad_frames",
        CloseReason::ProtocolViolation(_) => "protocol_violation",
        CloseReason::HelloTimeout => "hello_timeout",
        CloseReason::Shutdown => "shutdown",
        CloseReason::NotNeeded => "not_needed",
    }
}

/// Why `handle_frame` did not process a frame. The node has already counted it and, where the
/// policy says so, queued an [`Action::Close`]; the driver needs to do nothing but drain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The frame came from a machine the node has no connection with.
    #[error("frame from {0} which has no connection")]
    UnknownPeer(MachineId),
    /// The frame broke the protocol.
    #[error("protocol violation: {0}")]
    Violation(&'static str),
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    direction: Direction,
    hello: Option<Hello>,
    /// When the connection came up: its Hello deadline is this plus `hello_timeout`.
    connected_at: Time,
    last_heard: Time,
    frame_errors: u32,
    closing: bool,
}

/// Timers are (deadline, kind) pairs in an ordered set: `poll_timeout` is its first element,
/// firing order is deterministic, and a stale timer is harmless (its handler re-checks state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    HelloDeadline(MachineId),
    Keepalive,
    Heartbeat,
    Reap,
    QueryRing(QueryId),
    QueryDeadline(QueryId),
    DirectRetry(RequestId),
}

/// One agent's protocol state machine. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    identity: Identity,
    config: Config,
    rng: ChaCha8Rng,
    topics: InternalTopics,
    discovery: Discovery,
    user_disclosed: bool,
    heartbeat_armed: bool,
    /// This agent's newest announcement and rendezvous records: it answers queries for itself
    /// even when its own cache evicted them (a cache smaller than the network).
    own_announcements: Vec<wire::Record>,
    own_rendezvous: Option<wire::Record>,
    synced: bool,
    sync_served: BTreeMap<MachineId, Time>,
    queries: BTreeMap<QueryId, OwnQuery>,
    next_query: u64,
    membership: Membership,
    broadcast: Broadcast,
    /// Decoded agent keys by id (bounded FIFO), so repeated authors verify warm.
    keys: BTreeMap<SignerId, PublicKey>,
    key_order: VecDeque<SignerId>,
    /// Batch roots whose signature verified, keyed by signer and `BLAKE3(batch message)`
    /// (bounded FIFO, [`Config::batch_cache_capacity`]).
    batch_roots: BTreeSet<(SignerId, [u8; 32])>,
    batch_root_order: VecDeque<(SignerId, [u8; 32])>,
    peers: BTreeMap<MachineId, Peer>,
    timers: BTreeSet<(Time, Timer)>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    started: bool,
    stopped: bool,
    direct: DirectState,
    /// Our newest signed identity and KEM announcements (attached to direct messages as the
    /// agent ↔ machine binding, and handed out as an agent card).
    own_records: Option<(u64, wire::Signed, wire::Signed)>,
}

impl Node {
    /// Creates a node. `rng_seed` seeds every random choice the node makes, so the same seed,
    /// identity, config and inputs give the same outputs. Nothing happens until
    /// [`Node::start`] (or any `handle_*`).
    pub fn new(
        identity: Identity,
        config: Config,
        rng_seed: [u8; 32],
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut membership =
            Membership::new(config.membership.clone(), identity.machine.machine_id());
        membership.set_addrs(config.listen_addrs.clone());
        Ok(Self {
            topics: InternalTopics {
                announce: TopicId::from_name(crate::announce::ANNOUNCE_TOPIC),
                rendezvous: TopicId::from_name(crate::announce::RENDEZVOUS_TOPIC),
                kem: TopicId::from_name(crate::announce::KEM_TOPIC),
                inbox: TopicId::from_name(crate::direct::INBOX_TOPIC),
            },
            direct: DirectState::new(config.direct.clone(), identity.agent.kem_keypair()),
            own_records: None,
            discovery: Discovery::new(config.announce.clone()),
            user_disclosed: false,
            heartbeat_armed: false,
            own_announcements: Vec::new(),
            own_rendezvous: None,
            synced: false,
            sync_served: BTreeMap::new(),
            queries: BTreeMap::new(),
            next_query: 0,
            membership,
            broadcast: Broadcast::new(config.broadcast.clone()),
            keys: BTreeMap::new(),
            key_order: VecDeque::new(),
            batch_roots: BTreeSet::new(),
            batch_root_order: VecDeque::new(),
            identity,
            config,
            rng: ChaCha8Rng::from_seed(rng_seed),
            peers: BTreeMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            started: false,
            stopped: false,
        })
    }

    // ----- getters -----

    /// This node's machine id.
    pub fn machine_id(&self) -> MachineId {
        self.identity.machine.machine_id()
    }

    /// This node's agent id.
    pub fn agent_id(&self) -> AgentId {
        self.identity.agent.agent_id()
    }

    /// The identity the node acts with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Machines with a connection that completed its `Hello`, in id order.
    pub fn connected_peers(&self) -> Vec<MachineId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.hello.is_some() && !p.closing)
            .map(|(id, _)| *id)
            .collect()
    }

    // ----- inputs -----

    /// Starts the node: dials the bootstrap addresses and arms the periodic timers.
    /// Called implicitly by the first `handle_*`; calling it again does nothing.
    pub fn start(&mut self, now: Time) {
        if self.started {
            return;
        }
        self.started = true;
        let bootstrap = self.config.bootstrap.clone();
        self.membership.start(now, &mut self.rng, &bootstrap);
        let me = wire::PeerAddr {
            id: self.machine_id(),
            addrs: self
                .config
                .listen_addrs
                .iter()
                .copied()
                .take(wire::MAX_ADDRS_PER_PEER)
                .collect(),
        };
        self.broadcast.start(now, me);
        // Every node carries the discovery topics.
        self.broadcast.subscribe(self.topics.announce);
        self.broadcast.subscribe(self.topics.rendezvous);
        self.broadcast.subscribe(self.topics.kem);
        self.broadcast.subscribe(self.topics.inbox);
        self.timers
            .insert((now + Duration::from_secs(60), Timer::Reap));
        self.timers
            .insert((now + self.config.keepalive_interval, Timer::Keepalive));
        self.drain_layers(now);
    }

    /// Sets the addresses announced to peers (e.g. once the driver knows its bound port).
    pub fn set_listen_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.membership.set_addrs(addrs.clone());
        self.broadcast.set_me(wire::PeerAddr {
            id: self.machine_id(),
            addrs: addrs
                .iter()
                .copied()
                .take(wire::MAX_ADDRS_PER_PEER)
                .collect(),
        });
        self.config.listen_addrs = addrs;
    }

    /// A connection to `peer` (proven by the transport handshake) is up.
    ///
    /// The driver keeps at most one connection per machine. When a dial reaches a machine that
    /// is already connected (e.g. both sides dialled at once), the driver keeps one connection
    /// and still calls this for the dial, with the dialled address: the node treats it as the
    /// dial's outcome and opens nothing new.
    pub fn handle_connected(
        &mut self,
        now: Time,
        peer: MachineId,
        addr: SocketAddr,
        direction: Direction,
    ) {
        self.start(now);
        if peer == self.machine_id() {
            self.close(peer, CloseReason::ProtocolViolation("connection to self"));
            return;
        }
        if let Some(p) = self.peers.get(&peer) {
            // A dial that reached a machine we are already connected to: the driver keeps one
            // connection per machine, so this only resolves the dial.
            self.stats.duplicate_connections += 1;
            if direction == Direction::Outbound && !p.closing && p.hello.is_some() {
                let addrs = p
                    .hello
                    .as_ref()
                    .map(|h| h.addrs.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| vec![p.addr]);
                self.membership
                    .on_connection_up(now, &mut self.rng, peer, addrs, Some(addr));
                self.drain_layers(now);
            }
            return;
        }
        if self.peers.len() >= self.config.max_connections {
            self.close_untracked(peer, CloseReason::TooManyConnections);
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                addr,
                direction,
                hello: None,
                connected_at: now,
                last_heard: now,
                frame_errors: 0,
                closing: false,
            },
        );
        self.timers
            .insert((now + self.config.hello_timeout, Timer::HelloDeadline(peer)));
        let hello = Hello {
            agent: self.agent_id(),
            addrs: self
                .config
                .listen_addrs
                .iter()
                .copied()
                .take(wire::MAX_ADDRS_PER_PEER)
                .collect(),
        };
        self.send(peer, hello.into());
    }

    /// The connection to `peer` is gone (closed by either side, or lost).
    pub fn handle_disconnected(&mut self, now: Time, peer: MachineId) {
        self.start(now);
        if let Some(p) = self.peers.remove(&peer) {
            self.timers.remove(&(
                p.connected_at + self.config.hello_timeout,
                Timer::HelloDeadline(peer),
            ));
            if p.hello.is_some() {
                self.membership.on_connection_down(now, &mut self.rng, peer);
                self.broadcast.connection_down(now, peer);
                self.emit(Event::PeerDown { peer });
            } else if p.direction == Direction::Outbound {
                // Never completed: for membership this is a failed dial.
                self.membership.on_dial_failed(&mut self.rng, p.addr);
            }
            self.drain_layers(now);
        }
    }

    /// A dial requested by [`Action::Dial`] failed.
    pub fn handle_dial_failed(&mut self, now: Time, addr: SocketAddr) {
        self.start(now);
        self.stats.dials_failed += 1;
        self.direct.dial_failed(now, addr);
        self.membership.on_dial_failed(&mut self.rng, addr);
        self.drain_layers(now);
    }

    /// A frame arrived from `peer`. Errors are informational: the node has counted them and
    /// queued any close it wants.
    ///
    /// With [`Config::share_frames`], a pub/sub message the node keeps (cache, events) holds
    /// slices of `bytes` rather than copies of its parts ([`Frame::decode_shared`]).
    pub fn handle_frame(
        &mut self,
        now: Time,
        peer: MachineId,
        bytes: &Bytes,
    ) -> Result<(), FrameError> {
        self.start(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            self.stats.frames_from_unknown_peer += 1;
            return Err(FrameError::UnknownPeer(peer));
        };
        if p.closing {
            return Ok(());
        }
        let decoded = if self.config.share_frames {
            Frame::decode_shared(bytes)
        } else {
            Frame::decode(bytes)
        };
        let frame = match decoded {
            Ok(f) => f,
            Err(DecodeError::UnknownKind(k)) => {
                // A newer peer's message: skip it, keep the connection.
                self.stats.frames_unknown_kind += 1;
                return Err(DecodeError::UnknownKind(k).into());
            }
            Err(e) => {
                Stats::bump(&mut self.stats.frames_rejected, decode_error_name(&e));
                p.frame_errors += 1;
                if p.frame_errors > self.config.max_frame_errors {
                    self.close(peer, CloseReason::BadFrames(e.clone()));
                }
                return Err(e.into());
            }
        };
        self.stats.frames_received += 1;
        p.last_heard = now;
        let result = match (frame, p.hello.is_some()) {
            (Frame::Hello(hello), false) => {
                let agent = hello.agent;
                let dialed = (p.direction == Direction::Outbound).then_some(p.addr);
                let addrs = if hello.addrs.is_empty() {
                    vec![p.addr]
                } else {
                    hello.addrs.clone()
                };
                p.hello = Some(hello);
                // The deadline is met: drop its timer now rather than wake for it later.
                let deadline = p.connected_at + self.config.hello_timeout;
                self.timers.remove(&(deadline, Timer::HelloDeadline(peer)));
                self.emit(Event::PeerUp { peer, agent });
                self.membership
                    .on_connection_up(now, &mut self.rng, peer, addrs, dialed);
                Ok(())
            }
            (Frame::Hello(_), true) => self.violation(peer, "second hello"),
            (_, false) => self.violation(peer, "frame before hello"),
            (frame, true) => {
                self.membership.on_heard(now, &peer);
                self.on_frame(now, peer, frame);
                Ok(())
            }
        };
        self.drain_layers(now);
        result
    }

    fn on_frame(&mut self, now: Time, peer: MachineId, frame: Frame) {
        if self
            .membership
            .handle_frame(now, &mut self.rng, peer, &frame)
        {
            return;
        }
        let neighbor = self.membership.is_active(&peer);
        match frame {
            Frame::Gossip(mut g) => {
                if !neighbor {
                    self.stats.frames_from_non_neighbor += 1;
                }
                let id = g.message.id();
                if self.broadcast.is_known(&id) {
                    self.broadcast.on_duplicate(now, peer, g.topic, &id);
                    self.broadcast
                        .on_depth(now, peer, g.topic, g.root, g.depth, false);
                    return;
                }
                // Verify (and, for discovery records, merge) before relaying: a forged,
                // stale or superseded record is not forwarded.
                let kind = if g.topic == self.topics.announce {
                    Some(RecordKind::Announcement)
                } else if g.topic == self.topics.rendezvous {
                    Some(RecordKind::Rendezvous)
                } else if g.topic == self.topics.kem {
                    Some(RecordKind::KemKey)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    if self.accept_record(now, kind, &g.message).is_ok() {
                        self.share_key(&mut g.message);
                        self.broadcast
                            .on_depth(now, peer, g.topic, g.root, g.depth, true);
                        self.broadcast
                            .on_gossip_verified(now, peer, g.topic, id, g.hops, g.message);
                    }
                    return;
                }
                match self.open_pubsub(&g.message) {
                    Ok((author, body)) if body.topic == g.topic => {
                        if let Some(why) = self.too_old(now, &body) {
                            Stats::bump(&mut self.stats.messages_rejected, why.name());
                            // Remembered so a repeat costs a lookup, not another verification.
                            self.broadcast.mark_seen(now, id);
                            return;
                        }
                        self.share_key(&mut g.message);
                        self.broadcast
                            .on_depth(now, peer, g.topic, g.root, g.depth, true);
                        let deliver = self.broadcast.on_gossip_verified(
                            now,
                            peer,
                            g.topic,
                            id,
                            g.hops,
                            g.message.clone(),
                        );
                        if deliver && g.topic == self.topics.inbox {
                            self.on_inbox(now, author, &body.payload);
                        } else if deliver {
                            self.emit(Event::Message(Delivery {
                                topic: g.topic,
                                id,
                                author,
                                hops: g.hops,
                                via: peer,
                                published_at_ms: body.published_at_ms,
                                payload: body.payload,
                            }));
                        }
                    }
                    Ok(_) => Stats::bump(&mut self.stats.messages_rejected, "topic_mismatch"),
                    Err(why) => Stats::bump(&mut self.stats.messages_rejected, why.name()),
                }
            }
            Frame::SyncRequest(r) => self.on_sync_request(now, peer, r.max_records),
            Frame::SyncRecords(r) => {
                for rec in r.records {
                    let _ = self.accept_record(now, rec.kind, &rec.signed);
                }
            }
            Frame::Query(q) => self.on_query(now, peer, q),
            Frame::QueryHit(h) => self.on_query_hit(now, peer, h),
            Frame::IHave(i) => {
                self.broadcast
                    .on_depth(now, peer, i.topic, i.root, i.depth, false);
                self.broadcast.on_ihave(now, peer, i.topic, &i.entries);
            }
            Frame::Graft(g) => self.broadcast.on_graft(now, peer, g.topic, &g.ids),
            Frame::Prune(p) => self.broadcast.on_prune(now, peer, p.topic),
            Frame::Interest(i) => self.broadcast.on_interest(now, peer, &i.topics),
            Frame::TopicWalk(w) => self.broadcast.on_topic_walk(peer, &w),
            Frame::TopicLink(l) => self.broadcast.on_topic_link(peer, l.topic, l.accepted),
            Frame::Direct(d) => self.on_direct(now, peer, d),
            Frame::DirectAck(a) => self.on_direct_ack(now, peer, a),
            _ => {}
        }
    }

    /// Verifies `signed` for `domain` with the attached or cached key, and caches the key.
    fn verify_signed(
        &mut self,
        signed: &wire::Signed,
        domain: Domain,
    ) -> Result<PublicKey, RejectReason> {
        let key = match (self.keys.get(&signed.signer), &signed.signer_key) {
            (Some(k), _) => k.clone(),
            (None, Some(k)) => k.clone(),
            // A record sent without its key (a KEM announcement): the agent's key from its
            // identity announcement.
            (None, None) => match signed.signer {
                SignerId::Agent(a) => self
                    .discovery
                    .agent_key(&a)
                    .ok_or(RejectReason::UnknownKey)?,
                _ => return Err(RejectReason::UnknownKey),
            },
        };
        if signed.signer.verify_key(&key).is_err() {
            return Err(RejectReason::KeyMismatch);
        }
        let (domain, msg) = signed
            .covered(domain)
            .map_err(|_| RejectReason::BadSignature)?;
        // A batch member whose root already verified needs no second ML-DSA verification:
        // the root binds every member, and the proof just led this body to it.
        let root_key = signed
            .batch
            .is_some()
            .then(|| (signed.signer, *blake3::hash(&msg).as_bytes()));
        if let Some(k) = &root_key
            && self.batch_roots.contains(k)
        {
            self.stats.batch_root_hits += 1;
            return Ok(key);
        }
        let ok = {
            #[cfg(feature = "stand-in-crypto")]
            {
                if self.config.allow_stand_in_signatures
                    && crate::identity::stand_in::is_stand_in(&key)
                {
                    crate::identity::stand_in::verify(&key, domain, &msg, &signed.signature)
                } else {
                    key.verify(domain, &msg, &signed.signature)
                }
            }
            #[cfg(not(feature = "stand-in-crypto"))]
            {
                key.verify(domain, &msg, &signed.signature)
            }
        };
        ok.map_err(|_| RejectReason::BadSignature)?;
        self.remember_key(signed.signer, key.clone());
        if let Some(k) = root_key {
            self.remember_batch_root(k);
        }
        Ok(key)
    }

    fn remember_batch_root(&mut self, k: (SignerId, [u8; 32])) {
        if self.batch_roots.len() >= self.config.batch_cache_capacity
            && let Some(old) = self.batch_root_order.pop_front()
        {
            self.batch_roots.remove(&old);
            self.stats.batch_roots_evicted += 1;
        }
        if self.batch_roots.insert(k) {
            self.batch_root_order.push_back(k);
        }
    }

    /// Why a verified pub/sub message is refused for its age: published longer ago than
    /// `max_message_age` (a replay after the dedup window would be), or further ahead than
    /// `max_clock_skew`.
    fn too_old(&self, now: Time, body: &PubSubBody) -> Option<RejectReason> {
        let cfg = &self.config.broadcast;
        let now_ms = now.as_millis();
        let age_ms = u64::try_from(cfg.max_message_age.as_millis()).unwrap_or(u64::MAX);
        let skew_ms = u64::try_from(cfg.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if body.published_at_ms > now_ms.saturating_add(skew_ms) {
            Some(RejectReason::FutureTimestamp)
        } else if now_ms.saturating_sub(body.published_at_ms) > age_ms {
            Some(RejectReason::Stale)
        } else {
            None
        }
    }

    /// Verifies a pub/sub message: agent-signed, valid signature, well-formed body.
    fn open_pubsub(
        &mut self,
        signed: &wire::Signed,
    ) -> Result<(AgentId, PubSubBody), RejectReason> {
        let author = signed.agent().ok_or(RejectReason::WrongSigner)?;
        self.verify_signed(signed, Domain::PubSubMessage)?;
        let body = signed.decode_body().map_err(|_| RejectReason::Malformed)?;
        Ok((author, body))
    }

    /// Points a verified message's attached key at the key cache's copy. The broadcast cache
    /// keeps every message it may relay, key included: without this each cached message held
    /// its own 1952-byte copy of its publisher's key (a quarter of a busy node's memory,
    /// measured with heaptrack on `broadcast-single`), now one copy per publisher is shared.
    fn share_key(&self, signed: &mut wire::Signed) {
        if signed.signer_key.is_some()
            && let Some(k) = self.keys.get(&signed.signer)
        {
            signed.signer_key = Some(k.clone());
        }
    }

    fn remember_key(&mut self, id: SignerId, key: PublicKey) {
        if self.keys.contains_key(&id) {
            return;
        }
        if self.keys.len() >= self.config.key_cache_capacity
            && let Some(old) = self.key_order.pop_front()
        {
            self.keys.remove(&old);
        }
        self.keys.insert(id, key);
        self.key_order.push_back(id);
    }

    /// Verifies a discovery record and merges it into the caches. Counts refusals.
    fn accept_record(
        &mut self,
        now: Time,
        kind: RecordKind,
        signed: &wire::Signed,
    ) -> Result<(), RejectReason> {
        let result = self.accept_record_inner(now, kind, signed);
        match result {
            Ok(Merged::NewAgent(agent)) => {
                self.emit(Event::AgentDiscovered { agent_id: agent });
                self.resolve_queries(now, QueryTarget::Agent(agent));
            }
            Ok(Merged::Updated) => {
                if let (RecordKind::Rendezvous, SignerId::Agent(a)) = (kind, signed.signer) {
                    self.resolve_queries(now, QueryTarget::Rendezvous(a));
                }
                if let (RecordKind::Announcement, SignerId::Agent(a)) = (kind, signed.signer) {
                    self.resolve_queries(now, QueryTarget::Agent(a));
                }
            }
            Err(r) => self.discovery.stats_mut().reject(r),
        }
        result.map(|_| ())
    }

    fn accept_record_inner(
        &mut self,
        now: Time,
        kind: RecordKind,
        signed: &wire::Signed,
    ) -> Result<Merged, RejectReason> {
        let malformed = |_| RejectReason::Malformed;
        match (kind, signed.signer) {
            (RecordKind::Announcement, SignerId::Agent(agent)) => {
                let key = self.verify_signed(signed, Domain::IdentityAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery
                    .merge_identity(now, agent, key, signed.clone(), ann)
            }
            (RecordKind::Announcement, SignerId::Machine(machine)) => {
                let key = self.verify_signed(signed, Domain::MachineAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery
                    .merge_machine(now, machine, key, signed.clone(), ann)
            }
            (RecordKind::Announcement, SignerId::User(user)) => {
                self.verify_signed(signed, Domain::UserAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery.merge_user(now, user, signed.clone(), ann)
            }
            (RecordKind::Rendezvous, SignerId::Agent(agent)) => {
                self.verify_signed(signed, Domain::RendezvousRecord)?;
                let rec = signed.decode_body().map_err(malformed)?;
                self.discovery
                    .merge_rendezvous(now, agent, signed.clone(), rec)
            }
            (RecordKind::Rendezvous, _) => Err(RejectReason::WrongSigner),
            (RecordKind::KemKey, SignerId::Agent(agent)) => {
                self.verify_signed(signed, Domain::KemAnnouncement)?;
                let ann = signed.decode_body().map_err(malformed)?;
                self.discovery.merge_kem(now, agent, signed.clone(), ann)
            }
            (RecordKind::KemKey, _) => Err(RejectReason::WrongSigner),
        }
    }

    // ----- announcements and discovery -----

    /// Announces this agent: a signed identity announcement and machine announcement (and a
    /// user announcement when disclosing the user), published on the announcement topic and
    /// repeated every heartbeat. `include_user` needs `human_consent`; once a disclosure was
    /// published, heartbeats keep it (a heartbeat must not silently retract it).
    pub fn announce_identity(
        &mut self,
        now: Time,
        include_user: bool,
        human_consent: bool,
    ) -> Result<(), AnnounceError> {
        self.start(now);
        if include_user {
            if !human_consent {
                return Err(AnnounceError::ConsentRequired);
            }
            if self.identity.user.is_none() {
                return Err(AnnounceError::NoUserIdentity);
            }
            self.user_disclosed = true;
        }
        self.publish_announcements(now);
        if !self.heartbeat_armed {
            self.heartbeat_armed = true;
            self.timers.insert((
                now + self.discovery.config().heartbeat_interval,
                Timer::Heartbeat,
            ));
        }
        self.drain_layers(now);
        Ok(())
    }

    fn publish_announcements(&mut self, now: Time) {
        let addresses =
            crate::announce::announceable_addrs(&self.config.listen_addrs, &self.config.bootstrap);
        let announced_at = now.as_secs();
        let user = self
            .identity
            .user
            .as_ref()
            .filter(|_| self.user_disclosed)
            .map(|(u, c)| (u.clone(), c.clone()));
        let identity = IdentityAnnouncement {
            machine_id: self.machine_id(),
            addresses: addresses.clone(),
            announced_at,
            nat: None,
            user: user.as_ref().map(|(_, c)| c.clone()),
        };
        let machine = MachineAnnouncement {
            agent_id: self.agent_id(),
            addresses,
            announced_at,
        };
        let mut records = vec![
            wire::Signed::sign(
                &self.identity.agent,
                Domain::IdentityAnnouncement,
                &identity,
                true,
            ),
            wire::Signed::sign(
                &self.identity.machine,
                Domain::MachineAnnouncement,
                &machine,
                true,
            ),
        ];
        if let Some((u, _)) = user {
            let ann = UserAnnouncement {
                agents: vec![self.agent_id()],
                announced_at,
            };
            records.push(wire::Signed::sign(&u, Domain::UserAnnouncement, &ann, true));
        }
        let topic = self.topics.announce;
        self.own_announcements = records
            .iter()
            .map(|signed| wire::Record {
                kind: RecordKind::Announcement,
                signed: signed.clone(),
            })
            .collect();
        let identity_record = records[0].clone();
        for signed in records {
            // Our own records go into our caches too, so lookups and catch-up syncs serve them.
            let _ = self.accept_record(now, RecordKind::Announcement, &signed);
            self.broadcast.publish(now, topic, signed);
        }
        // The KEM key goes right after the identity announcement, without the agent key
        // attached (receivers verify it with the key they just cached).
        let kem = self.kem_record(announced_at);
        let _ = self.accept_record(now, RecordKind::KemKey, &kem);
        self.broadcast.publish(now, self.topics.kem, kem.clone());
        self.own_records = Some((announced_at, identity_record, kem));
    }

    /// Publishes a rendezvous record valid for `validity` (never returned after it expires).
    pub fn advertise_identity(&mut self, now: Time, validity: Duration) {
        self.start(now);
        let rec = RendezvousRecord {
            machine_id: self.machine_id(),
            addresses: crate::announce::announceable_addrs(
                &self.config.listen_addrs,
                &self.config.bootstrap,
            ),
            issued_at_ms: now.as_millis(),
            expires_at_ms: (now + validity).as_millis(),
        };
        let signed = wire::Signed::sign(&self.identity.agent, Domain::RendezvousRecord, &rec, true);
        self.own_rendezvous = Some(wire::Record {
            kind: RecordKind::Rendezvous,
            signed: signed.clone(),
        });
        let _ = self.accept_record(now, RecordKind::Rendezvous, &signed);
        let topic = self.topics.rendezvous;
        self.broadcast.publish(now, topic, signed);
        self.drain_layers(now);
    }

    /// Live discovered agents (newest announcement within the TTL), sorted by agent id.
    pub fn discovered_agents(&self, now: Time) -> Vec<DiscoveredAgent> {
        self.discovery.agents(now)
    }

    /// One live discovered agent from the cache.
    pub fn discovered_agent(&self, now: Time, agent: &AgentId) -> Option<DiscoveredAgent> {
        self.discovery.agent(now, agent)
    }

    /// Live agents that disclosed `user` (with a valid certificate), from the cache.
    pub fn find_agents_by_user(&self, now: Time, user: &UserId) -> Vec<DiscoveredAgent> {
        self.discovery.agents_by_user(now, user)
    }

    /// A live rendezvous record from the cache.
    pub fn cached_rendezvous(&self, now: Time, agent: &AgentId) -> Option<RendezvousInfo> {
        self.discovery.rendezvous(now, agent)
    }

    /// Discovery counters.
    pub fn discovery_stats(&self) -> &DiscoveryStats {
        self.discovery.stats()
    }

    /// Sizes of the discovery caches: (agents, machines, users, rendezvous records).
    pub fn discovery_cache_sizes(&self) -> (usize, usize, usize, usize) {
        self.discovery.sizes()
    }

    /// Finds an agent: from the cache at once, else by asking the overlay in expanding rings,
    /// else through rendezvous records. The answer comes as [`Event::QueryFinished`] (already
    /// queued when the cache answers).
    pub fn find_agent(&mut self, now: Time, agent: AgentId) -> QueryId {
        self.start(now);
        let id = self.next_query_id();
        if let Some(a) = self.discovery.agent(now, &agent) {
            self.finish_query(
                id,
                QueryTarget::Agent(agent),
                Some(found(&a, FoundVia::Cache)),
            );
            return id;
        }
        self.start_query(now, id, QueryTarget::Agent(agent), None, true);
        self.drain_layers(now);
        id
    }

    /// Finds an agent's rendezvous record, waiting at most `timeout`. Never returns an expired
    /// record.
    pub fn find_agent_rendezvous(
        &mut self,
        now: Time,
        agent: AgentId,
        timeout: Duration,
    ) -> QueryId {
        self.start(now);
        let id = self.next_query_id();
        if let Some(r) = self.discovery.rendezvous(now, &agent) {
            self.finish_query(id, QueryTarget::Rendezvous(agent), Some(found_rv(&r)));
            return id;
        }
        self.start_query(
            now,
            id,
            QueryTarget::Rendezvous(agent),
            Some(now + timeout),
            false,
        );
        self.drain_layers(now);
        id
    }

    fn next_query_id(&mut self) -> QueryId {
        self.next_query += 1;
        QueryId(self.next_query)
    }

    fn start_query(
        &mut self,
        now: Time,
        id: QueryId,
        target: QueryTarget,
        deadline: Option<Time>,
        fallback: bool,
    ) {
        self.discovery.stats_mut().queries_started += 1;
        self.queries.insert(
            id,
            OwnQuery {
                asked: target,
                target,
                ring: 0,
                deadline,
                fallback,
            },
        );
        if let Some(d) = deadline {
            self.timers.insert((d, Timer::QueryDeadline(id)));
        }
        self.send_ring(now, id);
    }

    /// Sends the current ring of query `id` and arms its timer.
    fn send_ring(&mut self, now: Time, id: QueryId) {
        let Some(q) = self.queries.get(&id) else {
            return;
        };
        let rings = &self.discovery.config().query_rings;
        let Some(&(ttl, wait)) = rings.get(q.ring.min(rings.len().saturating_sub(1))) else {
            return;
        };
        let target = q.target;
        let wire_id = self.rng.next_u64();
        self.discovery.track_query(
            wire_id,
            QueryRoute {
                from: None,
                answered: false,
            },
        );
        for peer in self.membership.active().copied().collect::<Vec<_>>() {
            self.send(
                peer,
                wire::Query {
                    id: wire_id,
                    target,
                    ttl,
                }
                .into(),
            );
        }
        self.timers.insert((now + wait, Timer::QueryRing(id)));
    }

    fn query_ring_timer(&mut self, now: Time, id: QueryId) {
        let Some(q) = self.queries.get_mut(&id) else {
            return;
        };
        q.ring += 1;
        let rings = self.discovery.config().query_rings.len();
        if q.ring < rings {
            self.send_ring(now, id);
            return;
        }
        match (q.target, q.fallback, q.deadline) {
            // Stage 3 of find_agent: rendezvous records.
            (QueryTarget::Agent(a), true, _) => {
                q.target = QueryTarget::Rendezvous(a);
                q.ring = 0;
                q.fallback = false;
                self.send_ring(now, id);
            }
            // A rendezvous lookup with a deadline keeps its last ring alive until then.
            (_, _, Some(d)) if d > now => {
                q.ring = rings - 1;
                self.send_ring(now, id);
            }
            _ => {
                let asked = q.asked;
                self.queries.remove(&id);
                self.discovery.stats_mut().queries_failed += 1;
                self.finish_query(id, asked, None);
            }
        }
    }

    /// Finishes every open query that the caches now answer.
    fn resolve_queries(&mut self, now: Time, target: QueryTarget) {
        let open: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| match (q.target, target) {
                (QueryTarget::Agent(a), QueryTarget::Agent(b)) => a == b,
                (QueryTarget::Rendezvous(a), QueryTarget::Rendezvous(b)) => a == b,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            let Some(q) = self.queries.remove(&id) else {
                continue;
            };
            let result = match q.target {
                QueryTarget::Agent(a) => self
                    .discovery
                    .agent(now, &a)
                    .map(|d| found(&d, FoundVia::Query)),
                QueryTarget::Rendezvous(a) => {
                    self.discovery.rendezvous(now, &a).map(|r| found_rv(&r))
                }
            };
            match result {
                Some(f) => {
                    self.discovery.stats_mut().queries_succeeded += 1;
                    self.finish_query(id, q.asked, Some(f));
                }
                None => {
                    self.queries.insert(id, q);
                }
            }
        }
    }

    fn finish_query(&mut self, query: QueryId, target: QueryTarget, found: Option<Found>) {
        self.emit(Event::QueryFinished {
            query,
            target,
            found,
        });
    }

    fn on_query(&mut self, now: Time, from: MachineId, q: wire::Query) {
        if !self.discovery.track_query(
            q.id,
            QueryRoute {
                from: Some(from),
                answered: false,
            },
        ) {
            return;
        }
        let mut records = self.discovery.records_for(now, &q.target);
        if records.is_empty() {
            records = self.own_records(now, &q.target);
        }
        if !records.is_empty() {
            self.discovery.stats_mut().queries_answered += 1;
            if let Some(r) = self.discovery.route(q.id) {
                r.answered = true;
            }
            let records = records
                .into_iter()
                .take(wire::MAX_RECORDS_PER_HIT)
                .collect();
            self.send(from, wire::QueryHit { id: q.id, records }.into());
            return;
        }
        if q.ttl > 1 {
            self.discovery.stats_mut().queries_forwarded += 1;
            let next: Vec<MachineId> = self
                .membership
                .active()
                .filter(|p| **p != from)
                .copied()
                .collect();
            for peer in next {
                self.send(
                    peer,
                    wire::Query {
                        id: q.id,
                        target: q.target,
                        ttl: q.ttl - 1,
                    }
                    .into(),
                );
            }
        }
    }

    /// This agent's own records for `target`, if it is the one sought (and a rendezvous
    /// record has not expired).
    fn own_records(&self, now: Time, target: &QueryTarget) -> Vec<wire::Record> {
        match target {
            QueryTarget::Agent(a) if *a == self.agent_id() => self.own_announcements.clone(),
            QueryTarget::Rendezvous(a) if *a == self.agent_id() => self
                .own_rendezvous
                .iter()
                .filter(|r| {
                    r.signed
                        .decode_body::<RendezvousRecord>()
                        .is_ok_and(|rec| rec.expires_at_ms > now.as_millis())
                })
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    fn on_query_hit(&mut self, now: Time, _from: MachineId, hit: wire::QueryHit) {
        let Some(route) = self.discovery.route(hit.id) else {
            return;
        };
        match route.from {
            None => {
                // Ours: verify and merge; merging resolves the query.
                for rec in hit.records {
                    let _ = self.accept_record(now, rec.kind, &rec.signed);
                }
            }
            Some(back) => {
                if !route.answered {
                    route.answered = true;
                    self.send(back, hit.into());
                }
            }
        }
    }

    fn on_sync_request(&mut self, now: Time, peer: MachineId, max: u32) {
        // One catch-up per neighbour per minute bounds what a peer can make us send.
        if self
            .sync_served
            .get(&peer)
            .is_some_and(|t| now - *t < Duration::from_secs(60))
        {
            self.discovery.stats_mut().reject(RejectReason::NotNewer);
            return;
        }
        if self.sync_served.len() >= self.config.max_connections * 4 {
            self.sync_served.pop_first();
        }
        self.sync_served.insert(peer, now);
        self.discovery.stats_mut().syncs_served += 1;
        let max = (max as usize).min(self.discovery.config().sync_max_records);
        let records = self.discovery.sync_records(now, max);
        // Chunk by count and by size so every frame stays under its limit.
        let mut batch = Vec::new();
        let mut size = 0;
        for r in records {
            let len = r.signed.body.len()
                + crate::identity::PUBLIC_KEY_LEN
                + crate::identity::SIGNATURE_LEN
                + 64;
            if !batch.is_empty()
                && (batch.len() == wire::MAX_RECORDS_PER_FRAME
                    || size + len > wire::MAX_FRAME_LEN / 2)
            {
                self.send(
                    peer,
                    wire::SyncRecords {
                        records: std::mem::take(&mut batch),
                    }
                    .into(),
                );
                size = 0;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.send(peer, wire::SyncRecords { records: batch }.into());
        }
    }

    /// Moves what the membership and broadcast layers produced into the node's queues.
    fn drain_layers(&mut self, now: Time) {
        loop {
            let mut progressed = false;
            while let Some(out) = self.membership.poll_out() {
                progressed = true;
                match out {
                    membership::Out::Send(to, frame) => self.send(to, frame),
                    membership::Out::Dial(addr, expect) => {
                        self.actions.push_back(Action::Dial { addr, expect });
                    }
                    membership::Out::Close(peer) => self.close(peer, CloseReason::NotNeeded),
                    membership::Out::NeighborUp(peer) => {
                        self.broadcast.neighbor_up(peer);
                        if !self.synced {
                            // A new node catches up on the announcement cache from its first
                            // neighbour instead of waiting for heartbeats.
                            self.synced = true;
                            let max = self.discovery.config().sync_max_records as u32;
                            self.send(peer, wire::SyncRequest { max_records: max }.into());
                        }
                        self.emit(Event::NeighborUp { peer });
                    }
                    membership::Out::NeighborDown(peer, reason) => {
                        self.broadcast.neighbor_down(now, peer);
                        self.emit(Event::NeighborDown { peer, reason });
                    }
                    membership::Out::Suspected(peer) => {
                        self.emit(Event::NeighborSuspected { peer });
                    }
                    membership::Out::Rtt(peer, rtt) => self.broadcast.rtt_sample(peer, rtt),
                }
            }
            while let Some(out) = self.broadcast.poll_out() {
                progressed = true;
                match out {
                    broadcast::Out::Send(to, frame) => self.send(to, frame),
                    broadcast::Out::SendMany(to, frame) => self.send_many(&to, frame),
                    broadcast::Out::Connect(peer, frame) => self.membership.send_frame(peer, frame),
                    broadcast::Out::Pin(peer, pinned) => self.membership.pin(now, peer, pinned),
                }
            }
            if !progressed {
                break;
            }
        }
        let _ = now;
    }

    /// Time has advanced to `now`. Safe to call early or spuriously.
    pub fn handle_timeout(&mut self, now: Time) {
        self.start(now);
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.on_timer(now, timer);
        }
        self.membership.handle_timeout(now, &mut self.rng);
        self.broadcast.handle_timeout(now);
        self.drain_layers(now);
    }

    /// Closes every connection (the driver then reports each with `handle_disconnected`).
    pub fn shutdown(&mut self, now: Time) {
        self.start(now);
        let peers: Vec<_> = self.peers.keys().copied().collect();
        self.membership.shutdown();
        self.drain_layers(now);
        for peer in peers {
            self.close(peer, CloseReason::Shutdown);
        }
        self.timers.clear();
        self.stopped = true;
    }

    // ----- pub/sub (filled in by the broadcast layer) -----

    /// Subscribes to `topic`: messages published on it are delivered as [`Event::Message`].
    pub fn subscribe(&mut self, now: Time, topic: TopicId) {
        self.start(now);
        self.broadcast.subscribe(topic);
        self.drain_layers(now);
    }

    /// Unsubscribes from `topic`.
    pub fn unsubscribe(&mut self, now: Time, topic: TopicId) {
        self.start(now);
        self.broadcast.unsubscribe(topic);
        self.drain_layers(now);
    }

    /// Publishes `payload` on `topic`, signed once by this node's agent key. Returns the
    /// message id. Publishing the same bytes twice makes two messages.
    pub fn publish(
        &mut self,
        now: Time,
        topic: TopicId,
        payload: Bytes,
    ) -> Result<MessageId, PublishError> {
        self.publish_batch(now, vec![(topic, payload)])
            .pop()
            .unwrap_or_else(|| unreachable!("one result per item"))
    }

    /// Publishes several messages (on one topic or many) under **one signature** per
    /// [`wire::MAX_BATCH`] of them ([`wire::BatchProof`]): what a driver calls with the
    /// publishes that queued up while it was busy, so a busy publisher signs about once per
    /// batch instead of once per message. Each message still travels, verifies and is
    /// delivered on its own, with the same id it would have alone. Results are in input order;
    /// a refused item (payload too large) does not stop the others.
    pub fn publish_batch(
        &mut self,
        now: Time,
        items: Vec<(TopicId, Bytes)>,
    ) -> Vec<Result<MessageId, PublishError>> {
        self.start(now);
        let mut results = Vec::with_capacity(items.len());
        let mut accepted = Vec::with_capacity(items.len());
        for (topic, payload) in items {
            if payload.len() > self.config.max_payload_len {
                results.push(Err(PublishError::PayloadTooLarge {
                    len: payload.len(),
                    max: self.config.max_payload_len,
                }));
                continue;
            }
            let body = PubSubBody {
                topic,
                nonce: self.rng.next_u64(),
                published_at_ms: now.as_millis(),
                payload,
            };
            let bytes = postcard::to_allocvec(&body)
                .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data"));
            let bytes = Bytes::from(bytes);
            results.push(Ok(MessageId::of_body(&bytes)));
            accepted.push((topic, bytes));
        }
        let (topics, bodies): (Vec<TopicId>, Vec<Bytes>) = accepted.into_iter().unzip();
        self.stats.publish_signatures += bodies.len().div_ceil(wire::MAX_BATCH) as u64;
        let signed =
            wire::Signed::sign_batch(&self.identity.agent, Domain::PubSubMessage, bodies, true);
        for (topic, signed) in topics.into_iter().zip(signed) {
            self.broadcast.publish(now, topic, signed);
        }
        self.drain_layers(now);
        results
    }

    /// The membership active view: the neighbours messages flow through, in id order.
    pub fn active_view(&self) -> Vec<MachineId> {
        self.membership.active().copied().collect()
    }

    /// Number of entries in the membership passive view.
    pub fn passive_view_len(&self) -> usize {
        self.membership.passive_len()
    }

    /// Membership counters.
    pub fn membership_stats(&self) -> &MembershipStats {
        self.membership.stats()
    }

    /// Broadcast counters.
    pub fn broadcast_stats(&self) -> &BroadcastStats {
        self.broadcast.stats()
    }

    /// Eager and lazy peers of a topic, if this node carries it.
    pub fn topic_peers(&self, topic: &TopicId) -> Option<(Vec<MachineId>, Vec<MachineId>)> {
        self.broadcast.topic_peers(topic)
    }

    /// Sizes of the broadcast caches: (message cache, dedup window, missing ids).
    pub fn broadcast_cache_sizes(&self) -> (usize, usize, usize) {
        self.broadcast.sizes()
    }

    /// Checks the node's structural invariants (used by fuzzing and property tests): the
    /// membership views within their caps, disjoint and without this node; the broadcast
    /// topics' trees well formed and their caches within `(cache, seen, missing)` caps; every
    /// queue within its cap.
    #[doc(hidden)]
    pub fn check_invariants(&self, broadcast_caps: (usize, usize, usize)) -> Result<(), String> {
        self.membership.check_invariants()?;
        self.broadcast.check_invariants()?;
        let (c, s, m) = self.broadcast.sizes();
        if c > broadcast_caps.0 || s > broadcast_caps.1 || m > broadcast_caps.2 {
            return Err(format!(
                "broadcast caches {c}/{s}/{m} over caps {broadcast_caps:?}"
            ));
        }
        if self.transmits.len() > self.config.max_queued_transmits {
            return Err("transmit queue over cap".into());
        }
        if self.events.len() > self.config.max_queued_events {
            return Err("event queue over cap".into());
        }
        if self.peers.len() > self.config.max_connections {
            return Err("connections over cap".into());
        }
        let (a, mm, u, r) = self.discovery.sizes();
        let cfg = self.discovery.config();
        if a > cfg.max_agents
            || mm > cfg.max_machines
            || u > cfg.max_users
            || r > cfg.max_rendezvous
        {
            return Err("discovery cache over cap".into());
        }
        if self.keys.len() > self.config.key_cache_capacity {
            return Err("key cache over cap".into());
        }
        if self.batch_roots.len() > self.config.batch_cache_capacity
            || self.batch_root_order.len() != self.batch_roots.len()
        {
            return Err("batch root cache over cap".into());
        }
        if self.direct.dedup.len() > self.config.direct.dedup_capacity
            || self.direct.outgoing.len() > self.config.direct.max_outstanding
        {
            return Err("direct tables over cap".into());
        }
        Ok(())
    }

    // ----- outputs -----

    /// The next frame to send. Poll until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        self.stats.frames_sent += 1;
        Some(t)
    }

    /// The next dial or close for the driver. Poll until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application. Poll until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the node next wants [`Node::handle_timeout`]; `None` if never (shut down).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.stopped {
            return None;
        }
        [
            self.timers.first().map(|(t, _)| *t),
            self.membership.poll_timeout(),
            self.broadcast.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- internals -----

    fn on_timer(&mut self, now: Time, timer: Timer) {
        match timer {
            Timer::HelloDeadline(peer) => {
                if self.peers.get(&peer).is_some_and(|p| p.hello.is_none()) {
                    self.close(peer, CloseReason::HelloTimeout);
                }
            }
            Timer::Keepalive => {
                let idle: Vec<MachineId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.hello.is_some() && !p.closing)
                    .filter(|(_, p)| now - p.last_heard >= self.config.keepalive_interval)
                    .map(|(id, _)| *id)
                    .collect();
                for peer in idle {
                    self.send(
                        peer,
                        wire::Ping {
                            seq: now.as_micros(),
                        }
                        .into(),
                    );
                }
                self.timers
                    .insert((now + self.config.keepalive_interval, Timer::Keepalive));
            }
            Timer::Heartbeat => {
                self.publish_announcements(now);
                self.timers.insert((
                    now + self.discovery.config().heartbeat_interval,
                    Timer::Heartbeat,
                ));
            }
            Timer::Reap => {
                self.discovery.reap(now);
                self.timers
                    .insert((now + Duration::from_secs(60), Timer::Reap));
            }
            Timer::QueryRing(id) => self.query_ring_timer(now, id),
            Timer::QueryDeadline(id) => {
                if let Some(q) = self.queries.remove(&id) {
                    self.discovery.stats_mut().queries_failed += 1;
                    self.finish_query(id, q.asked, None);
                }
            }
            Timer::DirectRetry(id) => self.direct_timer(now, id),
        }
    }

    fn violation(&mut self, peer: MachineId, what: &'static str) -> Result<(), FrameError> {
        self.close(peer, CloseReason::ProtocolViolation(what));
        Err(FrameError::Violation(what))
    }

    /// Marks a tracked connection as closing and asks the driver to close it.
    fn close(&mut self, peer: MachineId, reason: CloseReason) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.closing {
                return;
            }
            p.closing = true;
        }
        self.close_untracked(peer, reason);
    }

    fn close_untracked(&mut self, peer: MachineId, reason: CloseReason) {
        Stats::bump(&mut self.stats.closes, close_reason_name(&reason));
        self.actions.push_back(Action::Close { peer, reason });
    }

    /// Sends one frame to several peers, encoding it once (the bytes are shared).
    fn send_many(&mut self, to: &[MachineId], frame: Frame) {
        let kind = frame.kind();
        let Ok(bytes) = frame.encode() else {
            self.stats.transmits_unencodable += 1;
            return;
        };
        for peer in to {
            if self.transmits.len() >= self.config.max_queued_transmits {
                self.stats.transmits_dropped += 1;
                continue;
            }
            self.transmits.push_back(Transmit {
                to: *peer,
                kind,
                frame: bytes.clone(),
            });
        }
    }

    fn send(&mut self, to: MachineId, frame: Frame) {
        let kind = frame.kind();
        let Ok(bytes) = frame.encode() else {
            self.stats.transmits_unencodable += 1;
            return;
        };
        if self.transmits.len() >= self.config.max_queued_transmits {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit {
            to,
            kind,
            frame: bytes,
        });
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= self.config.max_queued_events {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}

mod direct;

#[cfg(test)]
mod tests;
