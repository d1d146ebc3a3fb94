//! The [`Node`]: one agent's protocol state, driven by `handle_*` calls and drained by `poll_*`.
//!
//! See the crate documentation for the run loop; this module holds the types.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::broadcast::{self, Broadcast, BroadcastConfig, BroadcastStats, PubSubBody};
use crate::identity::{
    AgentCertificate, AgentId, AgentKeypair, Domain, MachineId, MachineKeypair, PublicKey,
    UserKeypair,
};
use crate::membership::{self, DownReason, Membership, MembershipConfig, MembershipStats};
use crate::time::Time;
use crate::wire::{self, DecodeError, Frame, FrameKind, Hello, MessageId, TopicId};

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
    /// Membership (HyParView + SWIM) settings.
    pub membership: MembershipConfig,
    /// Broadcast (PlumTree) settings.
    pub broadcast: BroadcastConfig,
    /// Most agent public keys kept decoded for verification. Default 4096 (oldest evicted).
    pub key_cache_capacity: usize,
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
            membership: MembershipConfig::default(),
            broadcast: BroadcastConfig::default(),
            key_cache_capacity: 4096,
        }
    }
}

/// A configuration the node refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A cap or interval that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
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
        ];
        match nonzero.iter().find(|(_, zero)| *zero) {
            Some((name, _)) => Err(ConfigError::Zero(name)),
            None => Ok(()),
        }
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
    /// A machine entered the membership active view.
    NeighborUp {
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
    /// Pub/sub messages refused before delivery, by reason (bad signature, no key, …).
    pub messages_rejected: BTreeMap<&'static str, u64>,
    /// Broadcast frames from a connected machine that is not a neighbour.
    pub frames_from_non_neighbor: u64,
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

fn decode_body(body: &[u8]) -> Result<PubSubBody, &'static str> {
    match postcard::take_from_bytes::<PubSubBody>(body) {
        Ok((b, [])) => Ok(b),
        _ => Err("malformed_body"),
    }
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    direction: Direction,
    hello: Option<Hello>,
    #[allow(dead_code)] // read by the membership layer (issue 4)
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
}

/// One agent's protocol state machine. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    identity: Identity,
    config: Config,
    rng: ChaCha8Rng,
    membership: Membership,
    broadcast: Broadcast,
    /// Decoded agent keys by id (bounded FIFO), so repeated authors verify warm.
    keys: BTreeMap<AgentId, PublicKey>,
    key_order: VecDeque<AgentId>,
    peers: BTreeMap<MachineId, Peer>,
    timers: BTreeSet<(Time, Timer)>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    stats: Stats,
    started: bool,
    stopped: bool,
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
            membership,
            broadcast: Broadcast::new(config.broadcast.clone()),
            keys: BTreeMap::new(),
            key_order: VecDeque::new(),
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
        self.broadcast.start(now);
        self.timers
            .insert((now + self.config.keepalive_interval, Timer::Keepalive));
        self.drain_layers(now);
    }

    /// Sets the addresses announced to peers (e.g. once the driver knows its bound port).
    pub fn set_listen_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.membership.set_addrs(addrs.clone());
        self.config.listen_addrs = addrs;
    }

    /// A connection to `peer` (proven by the transport handshake) is up.
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
        if self.peers.contains_key(&peer) {
            // The driver keeps one connection per machine; tell it to drop the newer one.
            self.close_untracked(peer, CloseReason::Duplicate);
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
            self.timers
                .retain(|(_, t)| *t != Timer::HelloDeadline(peer));
            if p.hello.is_some() {
                self.membership.on_connection_down(now, &mut self.rng, peer);
                self.broadcast.connection_down(peer);
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
        self.membership.on_dial_failed(&mut self.rng, addr);
        self.drain_layers(now);
    }

    /// A frame arrived from `peer`. Errors are informational: the node has counted them and
    /// queued any close it wants.
    pub fn handle_frame(
        &mut self,
        now: Time,
        peer: MachineId,
        bytes: &[u8],
    ) -> Result<(), FrameError> {
        self.start(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            self.stats.frames_from_unknown_peer += 1;
            return Err(FrameError::UnknownPeer(peer));
        };
        if p.closing {
            return Ok(());
        }
        let frame = match Frame::decode(bytes) {
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
                self.emit(Event::PeerUp { peer, agent });
                self.membership
                    .on_connection_up(now, &mut self.rng, peer, addrs, dialed);
                Ok(())
            }
            (Frame::Hello(_), true) => self.violation(peer, "second hello"),
            (_, false) => self.violation(peer, "frame before hello"),
            (frame, true) => {
                self.membership.on_heard(&peer);
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
            Frame::Gossip(g) => {
                if !neighbor {
                    self.stats.frames_from_non_neighbor += 1;
                }
                let id = g.message.id();
                if self.broadcast.is_known(&id) {
                    self.broadcast.on_duplicate(peer, g.topic);
                    return;
                }
                match self.open_pubsub(&g.message) {
                    Ok(body) if body.topic == g.topic => {
                        self.broadcast
                            .on_gossip_verified(now, peer, g.hops, g.message, body);
                    }
                    Ok(_) => Stats::bump(&mut self.stats.messages_rejected, "topic_mismatch"),
                    Err(why) => Stats::bump(&mut self.stats.messages_rejected, why),
                }
            }
            Frame::IHave(i) => self.broadcast.on_ihave(now, peer, i.topic, &i.entries),
            Frame::Graft(g) => self.broadcast.on_graft(peer, g.topic, &g.ids),
            Frame::Prune(p) => self.broadcast.on_prune(peer, p.topic),
            Frame::Interest(i) => self.broadcast.on_interest(peer, &i.topics),
            _ => {}
        }
    }

    /// Verifies a pub/sub message's signature with the attached or cached key.
    fn open_pubsub(&mut self, signed: &wire::Signed) -> Result<PubSubBody, &'static str> {
        let key = match (&signed.signer_key, self.keys.get(&signed.signer)) {
            (_, Some(k)) => k.clone(),
            (Some(k), None) => k.clone(),
            (None, None) => return Err("unknown_key"),
        };
        if signed.signer.verify_key(&key).is_err() {
            return Err("key_mismatch");
        }
        #[cfg(feature = "stand-in-crypto")]
        if self.config.allow_stand_in_signatures && crate::identity::stand_in::is_stand_in(&key) {
            crate::identity::stand_in::verify(
                &key,
                Domain::PubSubMessage,
                &signed.body,
                &signed.signature,
            )
            .map_err(|_| "bad_signature")?;
            let body = decode_body(&signed.body)?;
            self.remember_key(signed.signer, key);
            return Ok(body);
        }
        key.verify(Domain::PubSubMessage, &signed.body, &signed.signature)
            .map_err(|_| "bad_signature")?;
        let body = decode_body(&signed.body)?;
        self.remember_key(signed.signer, key);
        Ok(body)
    }

    fn remember_key(&mut self, id: AgentId, key: PublicKey) {
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
                        self.emit(Event::NeighborUp { peer });
                    }
                    membership::Out::NeighborDown(peer, reason) => {
                        self.broadcast.neighbor_down(peer);
                        self.emit(Event::NeighborDown { peer, reason });
                    }
                }
            }
            while let Some(out) = self.broadcast.poll_out() {
                progressed = true;
                match out {
                    broadcast::Out::Send(to, frame) => self.send(to, frame),
                    broadcast::Out::Deliver {
                        topic,
                        hops,
                        via,
                        message,
                        body,
                    } => self.emit(Event::Message(Delivery {
                        topic,
                        id: message.id(),
                        author: message.signer,
                        hops,
                        via,
                        published_at_ms: body.published_at_ms,
                        payload: body.payload,
                    })),
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
        self.start(now);
        if payload.len() > self.config.max_payload_len {
            return Err(PublishError::PayloadTooLarge {
                len: payload.len(),
                max: self.config.max_payload_len,
            });
        }
        let body = PubSubBody {
            topic,
            nonce: self.rng.next_u64(),
            published_at_ms: now.as_millis(),
            payload,
        };
        // One signature per message, by the publishing agent; the key is attached so any
        // receiver can verify without a lookup.
        let signed = wire::Signed::sign(&self.identity.agent, Domain::PubSubMessage, &body, true);
        let id = signed.id();
        self.broadcast.publish(now, topic, signed);
        self.drain_layers(now);
        Ok(id)
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

#[cfg(test)]
mod tests;
