//! Membership: HyParView active/passive views with SWIM-style failure detection.
//!
//! *HyParView* (Leitão, Pereira, Rodrigues, DSN 2007) keeps a small symmetric **active view**
//! of neighbours that messages flow through, and a larger **passive view** of known nodes used
//! to repair it. *SWIM* (Das, Gupta, Motivala, DSN 2002) probes neighbours so that a crashed
//! one is noticed in about one protocol period instead of after a transport idle timeout.
//!
//! Where we deviate from the paper, and why:
//! * **Failure detection is active.** The paper relies on TCP noticing a broken connection;
//!   QUIC only does so after its idle timeout (30 s). We ping one neighbour per probe period,
//!   ask up to `indirect_probes` other neighbours to ping it on our behalf when it does not
//!   answer, suspect it when their answers are overdue too (`Out::Suspected`, an event) and
//!   declare it dead `suspect_timeout` later unless any frame from it arrives first.
//! * **The stalest neighbour is probed**, not the next in a round-robin (SWIM §4.3): any frame
//!   proves life, so a neighbour that went silent is probed first (`probe_tick` says why).
//! * **Proactive refill.** The paper refills the active view only when a member fails; we also
//!   top it up on a timer whenever it is below capacity (iroh-gossip leaves it under-full), and
//!   back off while a view at least half full keeps being refused (`refill_backoff_max`).
//! * **Partitions re-merge.** Dead neighbours go to a small *graveyard* with their addresses.
//!   At every shuffle tick a node re-contacts one graveyard entry (or a bootstrap address) with a
//!   high-priority NEIGHBOR request; once a partition heals, those requests cross it and join the
//!   two components (iroh-gossip's overlay never re-merges).
//! * **A neighbour is added when the connection is up and the request is answered**, not on
//!   sending the request (as iroh-gossip found, this avoids one-sided links).

mod config;
mod hyparview;
mod swim;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use serde::Serialize;

pub use self::config::MembershipConfig;
use self::swim::Probe;
use crate::identity::MachineId;
use crate::node::{InvariantError, TableSize};
use crate::time::Time;
use crate::util::counts::counts_by;
use crate::util::timers::Timers;
use crate::wire::{self, Frame, PeerAddr};

/// Why a neighbour left the active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DownReason {
    /// It sent DISCONNECT (it is alive and keeps us in its passive view).
    Disconnected,
    /// It announced it is leaving.
    Left,
    /// The transport connection went away.
    ConnectionLost,
    /// SWIM declared it dead: no answer to direct or indirect probes within the suspicion time.
    Dead,
    /// We evicted it to make room for a new neighbour.
    Evicted,
    /// We are shutting down.
    Shutdown,
    /// SWIM suspected it, and a stand-in from the passive view took its place before the
    /// suspicion ran out (it is remembered in the graveyard, as a dead one is).
    Replaced,
}

counts_by! {
    /// Neighbours that left the active view, by [`DownReason`].
    pub struct DownCounts(DownReason) {
        /// It sent DISCONNECT.
        disconnected: DownReason::Disconnected,
        /// It announced it is leaving.
        left: DownReason::Left,
        /// The transport connection went away.
        connection_lost: DownReason::ConnectionLost,
        /// SWIM declared it dead.
        dead: DownReason::Dead,
        /// Evicted to make room for a new neighbour.
        evicted: DownReason::Evicted,
        /// This node shut down.
        shutdown: DownReason::Shutdown,
        /// Suspected, and replaced by a stand-in.
        replaced: DownReason::Replaced,
    }
}

/// Outputs of the membership machine, drained by the `Node`.
// Short-lived (drained right after each input) and mostly `Send`: boxing the frame would cost
// an allocation per send to save bytes in a queue that is nearly always empty.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out {
    Send(MachineId, Frame),
    Dial(SocketAddr, Option<MachineId>),
    Close(MachineId),
    NeighborUp(MachineId),
    NeighborDown(MachineId, DownReason),
    /// A neighbour missed its probe: suspected from now on (SWIM's detection).
    Suspected(MachineId),
    /// A direct probe of a neighbour was answered after this round-trip time.
    Rtt(MachineId, Duration),
}

/// What to do with a peer once a connection to it is up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Neighbor {
        high_priority: bool,
    },
    ShuffleReply(Vec<PeerAddr>),
    /// Another layer's frame (e.g. a topic-link offer).
    Frame(Box<Frame>),
    /// Only the connection (an application asked to connect).
    Connect,
}

/// Most addresses kept to join (or re-join) through: the configured bootstrap addresses and
/// peers found on the local link.
pub(crate) const MAX_JOIN_ADDRS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Probe,
    ProbeDirectTimeout(u64),
    ProbeIndirectTimeout(u64),
    SuspectTimeout(MachineId),
    /// The direct check of a neighbour silent when another was suspected is due.
    Check(MachineId),
    Shuffle,
    Maintenance,
    Linger(MachineId),
    Rejoin,
}

/// Counters of the membership layer. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MembershipStats {
    /// Neighbours that entered the active view.
    pub neighbor_up: u64,
    /// Neighbours pinged at once because another was suspected (`swim.rs`).
    pub checks: u64,
    /// Neighbours that left, by reason.
    pub neighbor_down: DownCounts,
    /// Neighbours SWIM suspected.
    pub suspected: u64,
    /// Suspicions refuted by a sign of life.
    pub refuted: u64,
    /// Shuffles started.
    pub shuffles: u64,
    /// Passive entries evicted to make room.
    pub passive_evicted: u64,
    /// Graveyard entries re-contacted.
    pub recontacts: u64,
    /// Rejoin attempts made with no neighbour at all (dead neighbours and bootstrap
    /// addresses dialled again, with backoff).
    pub rejoin_attempts: u64,
    /// Membership frames refused (e.g. from a node that is not connected).
    pub rejected: u64,
    /// NEIGHBOR requests of ours that were refused.
    pub neighbor_refused: u64,
    /// JOINs refused at `join_budget`.
    pub joins_refused: u64,
}

/// The membership state machine.
#[derive(Debug)]
pub(crate) struct Membership {
    config: MembershipConfig,
    me: MachineId,
    my_addrs: Vec<SocketAddr>,
    bootstrap: Vec<SocketAddr>,
    /// Active view: neighbour → its addresses.
    active: BTreeMap<MachineId, Vec<SocketAddr>>,
    /// When each active neighbour entered the view (the oldest are protected from eviction).
    active_since: BTreeMap<MachineId, Time>,
    passive: BTreeMap<MachineId, Vec<SocketAddr>>,
    /// Dead neighbours: addresses, when they died, when we last tried them.
    graveyard: BTreeMap<MachineId, (Vec<SocketAddr>, Time, Time)>,
    /// Connections with a completed Hello (mirrors the node's peer table).
    connected: BTreeMap<MachineId, Vec<SocketAddr>>,
    pending: BTreeMap<MachineId, Pending>,
    /// Connections other layers keep open (topic links); not closed by the linger rule.
    pinned: BTreeSet<MachineId>,
    /// NEIGHBOR requests sent over an existing connection, awaiting the reply.
    awaiting_reply: BTreeSet<MachineId>,
    /// Addresses being dialled: for bootstrap joins (`None`) or a known machine.
    dialing: BTreeMap<SocketAddr, Option<MachineId>>,
    timers: Timers<Timer>,
    probe: Option<Probe>,
    /// Active neighbours in probing order, each with when it last sent us anything (the
    /// probe goes to the stalest). A vector: it holds at most the active view.
    probe_order: Vec<(MachineId, Time)>,
    next_seq: u64,
    suspects: BTreeMap<MachineId, Time>,
    /// Neighbours pinged because another was suspected, with when (`swim.rs`).
    checks: BTreeMap<MachineId, Time>,
    /// Indirect probes we run for others: our seq → (requester, their seq, target).
    relays: BTreeMap<u64, (MachineId, u64, MachineId)>,
    /// No refill of an at-least-half-full active view before this (refusal backoff).
    refill_after: Time,
    /// Start of the current `join_window`, and the JOINs accepted in it.
    joins_taken: (Time, u32),
    /// The next backoff step: doubles per refusal, up to `refill_backoff_max`.
    refill_wait: Duration,
    /// A rejoin attempt is scheduled ([`Timer::Rejoin`]).
    rejoin_armed: bool,
    /// The next rejoin backoff step: doubles per attempt, up to `rejoin_backoff_max`.
    rejoin_wait: Duration,
    out: VecDeque<Out>,
    stats: MembershipStats,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: impl ExactSizeIterator<Item = &'a T>) -> Option<&'a T> {
    let len = items.len();
    if len == 0 {
        return None;
    }
    let i = (rng.next_u64() % len as u64) as usize;
    items.into_iter().nth(i)
}

/// `n` distinct random elements (fewer if there are not enough), in random order.
fn sample<T: Clone>(rng: &mut ChaCha8Rng, items: &[T], n: usize) -> Vec<T> {
    let mut v: Vec<T> = items.to_vec();
    let n = n.min(v.len());
    for i in 0..n {
        let j = i + (rng.next_u64() % (v.len() - i) as u64) as usize;
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

impl Membership {
    pub(crate) fn new(config: MembershipConfig, me: MachineId) -> Self {
        let refill_wait = config.maintenance_interval;
        let rejoin_wait = config.maintenance_interval;
        Self {
            rejoin_armed: false,
            rejoin_wait,
            config,
            me,
            my_addrs: Vec::new(),
            bootstrap: Vec::new(),
            active: BTreeMap::new(),
            active_since: BTreeMap::new(),
            passive: BTreeMap::new(),
            graveyard: BTreeMap::new(),
            connected: BTreeMap::new(),
            pending: BTreeMap::new(),
            awaiting_reply: BTreeSet::new(),
            pinned: BTreeSet::new(),
            dialing: BTreeMap::new(),
            timers: Timers::default(),
            probe: None,
            probe_order: Vec::new(),
            next_seq: 1,
            suspects: BTreeMap::new(),
            checks: BTreeMap::new(),
            relays: BTreeMap::new(),
            refill_after: Time::ZERO,
            joins_taken: (Time::ZERO, 0),
            refill_wait,
            out: VecDeque::new(),
            stats: MembershipStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> &MembershipStats {
        &self.stats
    }

    pub(crate) fn active(&self) -> impl ExactSizeIterator<Item = &MachineId> {
        self.active.keys()
    }

    pub(crate) fn is_active(&self, peer: &MachineId) -> bool {
        self.active.contains_key(peer)
    }

    pub(crate) fn passive_len(&self) -> usize {
        self.passive.len()
    }

    pub(crate) fn set_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.my_addrs = addrs;
    }

    pub(crate) fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    fn me_addr(&self) -> PeerAddr {
        PeerAddr {
            id: self.me,
            addrs: self
                .my_addrs
                .iter()
                .copied()
                .take(wire::MAX_ADDRS_PER_PEER)
                .collect(),
        }
    }

    /// Starts membership: join through the bootstrap addresses and arm the periodic timers.
    pub(crate) fn start(&mut self, now: Time, rng: &mut ChaCha8Rng, bootstrap: &[SocketAddr]) {
        self.bootstrap = bootstrap.to_vec();
        for addr in bootstrap {
            self.dialing.insert(*addr, None);
            self.out.push_back(Out::Dial(*addr, None));
        }
        // Spread the periodic timers so nodes started together do not tick together.
        let jitter = |rng: &mut ChaCha8Rng, d: Duration| {
            Duration::from_micros(rng.next_u64() % (d.as_micros() as u64).max(1))
        };
        let p = jitter(rng, self.config.probe_interval);
        let s = jitter(rng, self.config.shuffle_interval);
        self.timers.set(now + p, Timer::Probe);
        self.timers
            .set(now + self.config.shuffle_interval + s, Timer::Shuffle);
        self.timers
            .set(now + self.config.maintenance_interval, Timer::Maintenance);
    }

    /// A connection completed its Hello. `dialed` is the address we dialled, if outbound.
    pub(crate) fn on_connection_up(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        peer: MachineId,
        addrs: Vec<SocketAddr>,
        dialed: Option<SocketAddr>,
    ) {
        self.connected.insert(peer, addrs.clone());
        let bootstrap_join = dialed
            .and_then(|a| self.dialing.remove(&a))
            .is_some_and(|expect| expect.is_none());
        self.dialing.retain(|_, m| *m != Some(peer));
        if bootstrap_join {
            // "A new node n joins by contacting a node c already in the overlay" (§4.2): we
            // send JOIN; c always accepts, so c becomes our neighbour now.
            self.out.push_back(Out::Send(
                peer,
                wire::Join {
                    addrs: self.me_addr().addrs,
                }
                .into(),
            ));
            self.add_active(now, rng, peer, addrs);
        } else if let Some(p) = self.pending.remove(&peer) {
            match p {
                Pending::Neighbor { high_priority } => {
                    // Counted as outstanding until the reply, so the next refill does not
                    // ask someone else for the same slot meanwhile.
                    self.awaiting_reply.insert(peer);
                    self.out
                        .push_back(Out::Send(peer, wire::Neighbor { high_priority }.into()));
                }
                Pending::ShuffleReply(peers) => {
                    self.out
                        .push_back(Out::Send(peer, wire::ShuffleReply { peers }.into()));
                }
                Pending::Frame(frame) => self.out.push_back(Out::Send(peer, *frame)),
                Pending::Connect => {}
            }
        }
        self.timers
            .set(now + self.config.linger, Timer::Linger(peer));
    }

    /// A connection went away.
    pub(crate) fn on_connection_down(&mut self, now: Time, rng: &mut ChaCha8Rng, peer: MachineId) {
        self.connected.remove(&peer);
        self.pending.remove(&peer);
        self.awaiting_reply.remove(&peer);
        self.pinned.remove(&peer);
        if let Some(addrs) = self.active.remove(&peer) {
            self.neighbor_down(now, peer, addrs, DownReason::ConnectionLost);
            self.refill(rng);
        }
    }

    /// A dial failed: the machine (if known) is unreachable for now.
    pub(crate) fn on_dial_failed(&mut self, rng: &mut ChaCha8Rng, addr: SocketAddr) {
        if let Some(Some(peer)) = self.dialing.remove(&addr) {
            self.pending.remove(&peer);
            self.passive.remove(&peer);
            self.refill(rng);
        }
    }

    /// Handles a membership frame. Returns false if the frame is not a membership frame.
    pub(crate) fn handle_frame(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        frame: &Frame,
    ) -> bool {
        match frame {
            Frame::Join(j) => self.on_join(now, rng, from, j.addrs.clone()),
            Frame::ForwardJoin(f) => self.on_forward_join(rng, from, f.joiner.clone(), f.ttl),
            Frame::Neighbor(n) => self.on_neighbor(now, rng, from, n.high_priority),
            Frame::NeighborReply(r) => self.on_neighbor_reply(now, rng, from, r.accepted),
            Frame::Disconnect(d) => self.on_disconnect(now, rng, from, d.alive),
            Frame::Shuffle(s) => self.on_shuffle(rng, from, s),
            Frame::ShuffleReply(r) => self.add_passive_many(rng, &r.peers),
            Frame::Ping(p) => self
                .out
                .push_back(Out::Send(from, wire::Ack { seq: p.seq }.into())),
            Frame::Ack(a) => self.on_ack(now, from, a.seq),
            Frame::PingReq(r) => self.on_ping_req(from, r.target, r.seq),
            Frame::PingReqAck(a) => {
                if a.alive
                    && let Some(p) = &mut self.probe
                    && p.target == a.target
                    && p.seq == a.seq
                {
                    p.acked = true;
                }
            }
            _ => return false,
        }
        true
    }

    /// Sends `frame` to `peer`, connecting first if needed (for other layers).
    pub(crate) fn send_frame(&mut self, peer: PeerAddr, frame: Frame) {
        if peer.id == self.me {
            return;
        }
        self.send_or_connect(peer, Pending::Frame(Box::new(frame)));
    }

    /// A peer found on the local link (LAN discovery). With no neighbour and no join under way
    /// this node joins through it; otherwise it goes to the passive view. Its address is
    /// remembered with the bootstrap addresses (at most [`MAX_JOIN_ADDRS`]) for re-joining.
    pub(crate) fn on_local_peer(&mut self, rng: &mut ChaCha8Rng, peer: PeerAddr) {
        let Some(&addr) = peer.addrs.first() else {
            return;
        };
        if peer.id == self.me || self.active.contains_key(&peer.id) {
            return;
        }
        if !self.bootstrap.contains(&addr) && self.bootstrap.len() < MAX_JOIN_ADDRS {
            self.bootstrap.push(addr);
        }
        let joining = self.dialing.values().any(Option::is_none);
        if self.active.is_empty() && !joining && !self.connected.contains_key(&peer.id) {
            // A join (the connection's `None` entry), to the machine mDNS named.
            self.dialing.insert(addr, None);
            self.out.push_back(Out::Dial(addr, Some(peer.id)));
        } else {
            self.add_passive(rng, peer);
        }
    }

    /// Opens a connection to `peer` (if none is up or being made). It is kept for the linger
    /// time like any connection that is not a neighbour's.
    pub(crate) fn connect(&mut self, peer: PeerAddr) {
        if peer.id == self.me {
            return;
        }
        self.send_or_connect(peer, Pending::Connect);
    }

    /// Keeps (or stops keeping) a non-neighbour connection open for another layer.
    pub(crate) fn pin(&mut self, now: Time, peer: MachineId, pinned: bool) {
        if pinned {
            if self.pinned.len() < 4 * self.config.active_view_capacity.max(16) {
                self.pinned.insert(peer);
            }
        } else if self.pinned.remove(&peer) && self.connected.contains_key(&peer) {
            self.timers
                .set(now + self.config.linger, Timer::Linger(peer));
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Probe => self.probe_tick(now, rng),
                Timer::ProbeDirectTimeout(seq) => self.probe_direct_timeout(now, rng, seq),
                Timer::ProbeIndirectTimeout(seq) => {
                    if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
                        self.close_probe(now, rng);
                    }
                }
                Timer::SuspectTimeout(peer) => self.suspect_timeout(now, rng, peer),
                Timer::Check(peer) => self.check_timeout(now, rng, peer),
                Timer::Shuffle => {
                    self.start_shuffle(rng);
                    self.recontact(now, rng);
                    self.timers
                        .set(now + self.config.shuffle_interval, Timer::Shuffle);
                }
                Timer::Rejoin => {
                    self.rejoin_armed = false;
                    if self.active.is_empty() {
                        self.rejoin(now, rng);
                    } else {
                        self.rejoin_wait = self.config.maintenance_interval;
                    }
                }
                Timer::Maintenance => {
                    if self.view_is_thin() || now >= self.refill_after {
                        self.refill(rng);
                    }
                    if self.standing() == 0 && !self.rejoin_armed {
                        self.rejoin(now, rng);
                    } else if self.standing() > 0 {
                        self.rejoin_wait = self.config.maintenance_interval;
                    }
                    self.timers
                        .set(now + self.config.maintenance_interval, Timer::Maintenance);
                }
                Timer::Linger(peer) => {
                    if self.connected.contains_key(&peer)
                        && !self.active.contains_key(&peer)
                        && !self.pending.contains_key(&peer)
                        && !self.pinned.contains(&peer)
                    {
                        self.out.push_back(Out::Close(peer));
                    }
                }
            }
        }
    }

    /// Leaves: tells every neighbour and stops all timers.
    pub(crate) fn shutdown(&mut self) {
        let active: Vec<MachineId> = self.active.keys().copied().collect();
        for peer in active {
            self.out
                .push_back(Out::Send(peer, wire::Disconnect { alive: false }.into()));
            self.active.remove(&peer);
            self.active_since.remove(&peer);
            self.stats.neighbor_down.count(&DownReason::Shutdown);
            self.out
                .push_back(Out::NeighborDown(peer, DownReason::Shutdown));
        }
        self.timers.clear();
    }

    /// Invariant check used by tests and fuzzing: views disjoint, without self.
    pub(crate) fn check_invariants(&self) -> Result<(), InvariantError> {
        for (view, members) in [("active", &self.active), ("passive", &self.passive)] {
            if members.contains_key(&self.me) {
                return Err(InvariantError::SelfInView { view });
            }
        }
        if let Some(peer) = self.active.keys().find(|p| self.passive.contains_key(p)) {
            return Err(InvariantError::InBothViews { peer: *peer });
        }
        Ok(())
    }

    /// The views and the graveyard, for [`crate::Node::table_sizes`].
    pub(crate) fn table_sizes(&self, out: &mut Vec<TableSize>) {
        let c = &self.config;
        out.extend([
            TableSize::new("active view", self.active.len(), c.active_view_capacity),
            TableSize::new("passive view", self.passive.len(), c.passive_view_capacity),
            TableSize::new("graveyard", self.graveyard.len(), c.graveyard_capacity),
        ]);
    }
}
