//! The [`Node`]: one agent's protocol state, driven by `handle_*` calls and drained by
//! `poll_*`.
//!
//! See the crate documentation for the run loop. The node is split by concept:
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Node`]: construction, the frame dispatch, timers, the output queues |
//! | `config.rs` | [`Config`], [`ConfigError`] |
//! | `identity.rs` | [`Identity`], the keypairs a node acts with |
//! | `event.rs` | the outputs: [`Transmit`], [`Action`], [`Event`], [`Delivery`] |
//! | `connections.rs` | connections and their `Hello`, keepalives, closes, [`FrameError`] |
//! | `verify.rs` | signature verification with the key and batch-root caches |
//! | `pubsub.rs` | subscribe and publish, and delivery of verified messages |
//! | `discovery.rs` | announcements, the discovery caches' front end, queries |
//! | `direct.rs` | direct messages: paths, acks, retries |
//! | `collab.rs` | replicated stores: opening, writing, their topic's messages, anti-entropy |
//! | `stats.rs` | [`NodeStats`] |
//! | `invariants.rs` | [`Node::check_invariants`], [`Node::table_sizes`], [`InvariantError`] |

mod collab;
mod config;
mod connections;
mod direct;
mod discovery;
mod event;
mod identity;
mod invariants;
mod nat;
mod presence;
mod pubsub;
mod stats;
mod trust;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub use self::config::{Config, ConfigError};
use self::connections::Peer;
pub use self::connections::{ConnectStart, FrameError};
pub use self::discovery::{Found, FoundVia, QueryId};
use self::discovery::{OwnBinding, OwnQuery};
pub use self::event::{Action, CloseReason, Delivery, Direction, Event, Transmit};
pub use self::identity::Identity;
pub use self::invariants::{InvariantError, TableSize};
pub use self::presence::{PresenceQueryError, Visibility};
pub use self::pubsub::PublishError;
pub use self::stats::{CloseCounts, DecodeErrorCounts, MessageRejects, NodeStats};
pub use self::trust::{TrustApplied, TrustChange, TrustRefusals, TrustStats};
use self::verify::Verifier;
use crate::broadcast::{self, Broadcast};
use crate::direct::{DirectState, RequestId};
use crate::discovery::Discovery;
use crate::identity::{AgentId, MachineId};
use crate::membership::{self, Membership};
use crate::time::Time;
use crate::util::timers::Timers;
use crate::wire::{self, Frame, TopicId};

/// The topics every node carries for its own protocols.
#[derive(Debug, Clone, Copy)]
struct InternalTopics {
    announce: TopicId,
    rendezvous: TopicId,
    kem: TopicId,
    inbox: TopicId,
}

/// The node's own timers (the layers keep theirs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    HelloDeadline(MachineId),
    Keepalive,
    Heartbeat,
    Reap,
    QueryRing(QueryId),
    QueryDeadline(QueryId),
    DirectRetry(RequestId),
    Beacon,
    CollabSync,
}

/// One agent's protocol state machine: a plain value, driven by `handle_*` calls and drained
/// by `poll_*` calls (see the [crate documentation](crate) for the run loop).
///
/// Its methods, by role:
///
/// * **Construction.** [`Node::new`], then [`Node::start`] (or any `handle_*`, which starts
///   it); [`Node::set_listen_addrs`] once the driver knows its bound address;
///   [`Node::restore_peer_cache`] (saved by a driver from [`Node::peer_cache`]) before it starts.
/// * **Inputs** — what happened, each with the current time: [`Node::handle_connected`],
///   [`Node::handle_disconnected`], [`Node::handle_dial_failed`], [`Node::handle_frame`],
///   [`Node::handle_timeout`], [`Node::handle_local_peer`].
/// * **Outputs** — drain each until `None` after every input: [`Node::poll_transmit`] (frames
///   to send), [`Node::poll_action`] (dials and closes), [`Node::poll_event`] (events for the
///   application), [`Node::poll_timeout`] (when to call `handle_timeout` next).
/// * **Commands** — what the application asks for:
///   * pub/sub: [`Node::subscribe`], [`Node::unsubscribe`], [`Node::publish`],
///     [`Node::publish_batch`];
///   * discovery: [`Node::announce_identity`], [`Node::advertise_identity`],
///     [`Node::find_agent`], [`Node::find_agent_rendezvous`], [`Node::agent_card`],
///     [`Node::import_agent_card`];
///   * direct messages: [`Node::send_direct`], [`Node::send_direct_with`];
///   * presence: [`Node::discover_agents_foaf`], [`Node::discover_agent_by_id`];
///   * trust: [`Node::change_trust`] (then [`Node::trust_state`] to save it),
///     [`Node::evaluate_trust`];
///   * replicated stores: [`Node::create_store`], [`Node::join_store`],
///     [`Node::restore_store`], [`Node::leave_store`], [`Node::store_put`], [`Node::store_put_batch`],
///     [`Node::store_remove`], [`Node::store_allow`], [`Node::task_add`],
///     [`Node::task_claim`], [`Node::task_complete`], [`Node::task_move`];
///   * connections: [`Node::connect_agent`], [`Node::connect`];
///   * [`Node::shutdown`].
/// * **Queries** — read only: [`Node::machine_id`], [`Node::agent_id`], [`Node::identity`],
///   [`Node::config`], [`Node::stats`], [`Node::connected_peers`], [`Node::active_view`],
///   [`Node::passive_view_len`], [`Node::topic_peers`], [`Node::broadcast_cache_sizes`],
///   [`Node::discovered_agents`], [`Node::discovered_agent`], [`Node::find_agents_by_user`],
///   [`Node::cached_rendezvous`], [`Node::discovery_cache_sizes`],
///   [`Node::direct_in_flight`], [`Node::direct_rtt`], [`Node::online_agents`],
///   [`Node::presence_status`], [`Node::is_online`], [`Node::is_visible`],
///   [`Node::advertised_addrs`], [`Node::peer_cache`], [`Node::store`], [`Node::stores`],
///   [`Node::store_snapshot`], [`Node::collab_stats`],
///   [`Node::check_invariants`].
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
    /// Topics joined only to publish on (the application does not subscribe), with the time
    /// of the last publish; left [`Config::publish_carry`] after it.
    publish_joined: BTreeMap<TopicId, Time>,
    /// Contacts, pinning, revocations ([`crate::trust`]).
    trust: crate::trust::ContactStore,
    /// What the evaluator refused, by path.
    trust_refused: TrustRefusals,
    /// Presence: records, detectors, FOAF queries ([`crate::presence`]).
    presence: crate::presence::Presence,
    /// `announced_at` of this agent's newest announcements (each one later than the last).
    last_announced_at: u64,
    /// Where peers see this node ([`crate::nat`]).
    observed: crate::nat::ObservedAddrs,
    /// Punch steps per pair of machines.
    punch: crate::nat::PunchLimiter,
    nat_stats: crate::nat::NatStats,
    /// Addresses to (re)join through, scored ([`crate::peer_cache`]).
    peer_cache: crate::peer_cache::PeerCache,
    /// The last beacon's `seq`.
    presence_seq: u64,
    /// The last signed beacon (a new connection gets it if it is still fresh).
    own_beacon: Option<wire::Signed>,
    /// When the node started (beacons' `since`).
    started_at: Time,
    sync_served: BTreeMap<MachineId, Time>,
    /// Replicated stores by topic ([`crate::collab`]).
    collab: BTreeMap<TopicId, crate::collab::Replica>,
    collab_stats: crate::collab::CollabStats,
    collab_sync_armed: bool,
    queries: BTreeMap<QueryId, OwnQuery>,
    next_query: u64,
    membership: Membership,
    broadcast: Broadcast,
    verifier: Verifier,
    peers: BTreeMap<MachineId, Peer>,
    timers: Timers<Timer>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// The node's own counters; [`Node::stats`] adds the layers' counters to them.
    stats: NodeStats,
    started: bool,
    stopped: bool,
    direct: DirectState,
    /// Our newest signed identity and KEM announcements (attached to direct messages as the
    /// agent ↔ machine binding, and handed out as an agent card).
    own_binding: Option<OwnBinding>,
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
            own_binding: None,
            discovery: Discovery::new(config.announce.clone()),
            user_disclosed: false,
            heartbeat_armed: false,
            own_announcements: Vec::new(),
            own_rendezvous: None,
            synced: false,
            publish_joined: BTreeMap::new(),
            trust: crate::trust::ContactStore::new(config.trust.clone()),
            trust_refused: TrustRefusals::default(),
            presence: crate::presence::Presence::new(config.presence.clone()),
            last_announced_at: 0,
            observed: crate::nat::ObservedAddrs::default(),
            punch: crate::nat::PunchLimiter::new(config.nat.punch_table, config.nat.punch_interval),
            nat_stats: crate::nat::NatStats::default(),
            peer_cache: crate::peer_cache::PeerCache::new(config.peer_cache.clone()),
            presence_seq: 0,
            own_beacon: None,
            started_at: Time::from_micros(0),
            sync_served: BTreeMap::new(),
            collab: BTreeMap::new(),
            collab_stats: crate::collab::CollabStats::default(),
            collab_sync_armed: false,
            queries: BTreeMap::new(),
            next_query: 0,
            membership,
            broadcast: Broadcast::new(config.broadcast.clone()),
            verifier: Verifier::new(&config),
            identity,
            config,
            rng: ChaCha8Rng::from_seed(rng_seed),
            peers: BTreeMap::new(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            started: false,
            stopped: false,
        })
    }

    /// Starts the node: dials the best of its cached peers and the bootstrap addresses, and
    /// arms the periodic timers. Called implicitly by the first `handle_*`; calling it again
    /// does nothing.
    pub fn start(&mut self, now: Time) {
        if self.started {
            return;
        }
        self.started = true;
        self.started_at = now;
        let mut join = self.peer_cache.choose(
            &mut self.rng,
            self.config.peer_cache.dial_at_start,
            now.as_secs(),
        );
        for b in &self.config.bootstrap {
            if !join.contains(b) {
                join.push(*b);
            }
        }
        self.membership.start(now, &mut self.rng, &join);
        self.broadcast.start(now, self.peer_addr());
        // Every node carries the discovery topics.
        self.broadcast.subscribe(self.topics.announce);
        self.broadcast.subscribe(self.topics.rendezvous);
        self.broadcast.subscribe(self.topics.kem);
        self.broadcast.subscribe(self.topics.inbox);
        self.timers.set(now + Duration::from_secs(60), Timer::Reap);
        self.timers
            .set(now + self.config.keepalive_interval, Timer::Keepalive);
        self.start_presence(now);
        self.drain_layers(now);
    }

    /// Sets the addresses announced to peers (e.g. once the driver knows its bound port).
    pub fn set_listen_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.membership.set_addrs(addrs.clone());
        self.config.listen_addrs = addrs;
        self.broadcast.set_me(self.peer_addr());
    }

    /// This node's addresses as peers are told them: the addresses peers see it at (behind a
    /// NAT, the ones that work), then its listen addresses; at most
    /// [`wire::MAX_ADDRS_PER_PEER`].
    fn told_addrs(&self) -> Vec<SocketAddr> {
        let mut out = self.observed.addrs();
        for a in &self.config.listen_addrs {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out.truncate(wire::MAX_ADDRS_PER_PEER);
        out
    }

    /// This node as a peer address.
    fn peer_addr(&self) -> wire::PeerAddr {
        wire::PeerAddr {
            id: self.machine_id(),
            addrs: self.told_addrs(),
        }
    }

    // ----- inputs -----

    /// Time has advanced to `now`. Safe to call early or spuriously.
    pub fn handle_timeout(&mut self, now: Time) {
        self.start(now);
        while let Some(timer) = self.timers.pop_due(now) {
            self.on_timer(now, timer);
        }
        self.membership.handle_timeout(now, &mut self.rng);
        self.broadcast.handle_timeout(now);
        self.presence.handle_timeout(now);
        self.drain_presence(now);
        self.drain_layers(now);
    }

    fn on_timer(&mut self, now: Time, timer: Timer) {
        match timer {
            Timer::HelloDeadline(peer) => self.hello_deadline(peer),
            Timer::Keepalive => {
                self.keepalive(now);
                self.timers
                    .set(now + self.config.keepalive_interval, Timer::Keepalive);
            }
            Timer::Heartbeat => {
                self.publish_announcements(now);
                self.timers.set(
                    now + self.discovery.config().heartbeat_interval,
                    Timer::Heartbeat,
                );
            }
            Timer::Reap => {
                self.discovery.reap(now);
                self.leave_publish_topics(now);
                self.timers.set(now + Duration::from_secs(60), Timer::Reap);
            }
            Timer::QueryRing(id) => self.query_ring_timer(now, id),
            Timer::QueryDeadline(id) => self.query_deadline(id),
            Timer::DirectRetry(id) => self.direct_timer(now, id),
            Timer::Beacon => self.beacon_tick(now),
            Timer::CollabSync => self.collab_tick(now),
        }
    }

    /// A decoded frame from a peer whose `Hello` is done: to the layer it belongs to.
    fn on_frame(&mut self, now: Time, peer: MachineId, frame: Frame) {
        if self
            .membership
            .handle_frame(now, &mut self.rng, peer, &frame)
        {
            return;
        }
        match frame {
            Frame::Gossip(g) => self.on_gossip(now, peer, g),
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
            Frame::Beacon(b) => self.on_beacon(now, peer, b),
            Frame::PresenceQuery(q) => self.on_presence_query(now, peer, q),
            Frame::PresenceAnswer(a) => self.on_presence_answer(now, peer, a),
            Frame::Observed(o) => self.on_observed(now, peer, o),
            Frame::PunchRequest(r) => self.on_punch_request(now, peer, r),
            Frame::PunchNotify(n) => self.on_punch_notify(now, peer, n),
            Frame::CollabHeads(h) => self.on_collab_heads(now, peer, h),
            Frame::CollabBatches(b) => self.on_collab_batches(now, peer, b),
            _ => {}
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
                        self.collab_neighbor_up(peer);
                        self.emit(Event::NeighborUp { peer });
                    }
                    membership::Out::NeighborDown(peer, reason) => {
                        self.broadcast.neighbor_down(now, peer);
                        self.presence_neighbor_down(now, peer, reason);
                        self.emit(Event::NeighborDown { peer, reason });
                    }
                    membership::Out::Suspected(peer) => {
                        // Trees route around a suspected parent now, not once it is dead.
                        self.broadcast.parent_suspected(now, peer);
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
    }

    // ----- commands -----

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
        self.presence.clear();
        self.stopped = true;
    }

    // ----- queries -----

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

    /// Every counter of the node and its layers.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            membership: self.membership.stats().clone(),
            broadcast: self.broadcast.stats().clone(),
            discovery: self.discovery.stats().clone(),
            direct: self.direct.stats.clone(),
            trust: self.trust_stats(),
            presence: self.presence.stats(),
            nat: self.nat_stats,
            peer_cache: self.peer_cache.stats(),
            ..self.stats.clone()
        }
    }

    /// The membership active view: the neighbours messages flow through, in id order.
    pub fn active_view(&self) -> Vec<MachineId> {
        self.membership.active().copied().collect()
    }

    /// Number of entries in the membership passive view.
    pub fn passive_view_len(&self) -> usize {
        self.membership.passive_len()
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
            self.timers.next(),
            self.membership.poll_timeout(),
            self.broadcast.poll_timeout(),
            self.presence.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
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
        self.send_many(&[to], frame);
    }

    fn emit(&mut self, event: Event) {
        if self.events.len() >= self.config.max_queued_events {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }
}
