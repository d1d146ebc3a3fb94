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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, Frame, PeerAddr};

/// Membership configuration. Defaults and their provenance are on each field.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// Active view capacity. Default 5: fanout 4 + 1, "HyParView paper, §5 (p. 9)".
    pub active_view_capacity: usize,
    /// Passive view capacity. Default 30: the paper's experimental setting (p. 9).
    pub passive_view_capacity: usize,
    /// Active random walk length for FORWARDJOIN. Default 6 (paper, p. 9).
    pub active_random_walk_length: u8,
    /// Passive random walk length: at this remaining TTL the joiner enters the passive view.
    /// Default 3 (paper, p. 9).
    pub passive_random_walk_length: u8,
    /// Random walk length of a SHUFFLE. Default 6 (as ARWL, iroh-gossip's choice).
    pub shuffle_random_walk_length: u8,
    /// Active-view entries sent in a SHUFFLE (ka). Default 3 (paper).
    pub shuffle_active_count: usize,
    /// Passive-view entries sent in a SHUFFLE (kp). Default 4 (paper).
    pub shuffle_passive_count: usize,
    /// Interval between SHUFFLEs and graveyard re-contacts. Default 10 s: the paper leaves it
    /// open; iroh-gossip guesses 60 s and x0x uses 30 s. Shorter mixes a young overlay faster
    /// and re-merges a healed partition sooner, at one small walk per node per interval.
    pub shuffle_interval: Duration,
    /// SWIM protocol period: one neighbour is probed per period. Default 1 s (SWIM paper's
    /// experiments; x0x uses 1 s too).
    pub probe_interval: Duration,
    /// Time to wait for a direct ACK before asking others to probe. Default 400 ms: above the
    /// round trip of any link we simulate (≤ 2 × 50 ms) with room for queueing.
    pub probe_timeout: Duration,
    /// How many neighbours are asked to probe indirectly (SWIM's k). Default 3 (x0x: 3).
    pub indirect_probes: usize,
    /// Time a suspect has to show a sign of life before it is declared dead. Default 3 s (x0x).
    pub suspect_timeout: Duration,
    /// How long a connection that is not (or no longer) an active neighbour is kept open so
    /// queued replies can flush. Default 2 s.
    pub linger: Duration,
    /// Most remembered dead neighbours for partition re-merge. Default 16.
    pub graveyard_capacity: usize,
    /// How long a dead neighbour is remembered. Default 10 min.
    pub graveyard_retention: Duration,
    /// Interval of the active-view refill check. Default 1 s.
    pub maintenance_interval: Duration,
    /// Longest wait between refill attempts of an active view that is at least half full
    /// and keeps being refused. Default 16 s (our choice; see `on_neighbor_reply`).
    ///
    /// Deviation from the paper, whose NEIGHBOR loop tries "another node from its passive
    /// view" at once after a refusal (§4.3). That loop is for a node that lost neighbours; a
    /// node one short of a full view asks peers that are mostly full themselves and refuse a
    /// low-priority request, so it chained through its passive view on every maintenance
    /// tick: at n=10 000, 645 000 NEIGHBOR frames and 238 000 new connections in 68 simulated
    /// seconds. A view under half full still retries at once.
    pub refill_backoff_max: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            active_view_capacity: 5,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_random_walk_length: 6,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_interval: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            suspect_timeout: Duration::from_secs(3),
            linger: Duration::from_secs(2),
            graveyard_capacity: 16,
            graveyard_retention: Duration::from_secs(600),
            maintenance_interval: Duration::from_secs(1),
            refill_backoff_max: Duration::from_secs(16),
        }
    }
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Probe,
    ProbeDirectTimeout(u64),
    ProbeIndirectTimeout(u64),
    SuspectTimeout(MachineId),
    Shuffle,
    Maintenance,
    Linger(MachineId),
}

#[derive(Debug, Clone)]
struct Probe {
    target: MachineId,
    seq: u64,
    acked: bool,
    /// When the direct PING left, for the round-trip time of its ACK.
    sent: Time,
}

/// Counters of the membership layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipStats {
    /// Neighbours that entered the active view.
    pub neighbor_up: u64,
    /// Neighbours that left, by reason.
    pub neighbor_down: BTreeMap<DownReason, u64>,
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
    /// Membership frames refused (e.g. from a node that is not connected).
    pub rejected: u64,
    /// NEIGHBOR requests of ours that were refused.
    pub neighbor_refused: u64,
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
    timers: BTreeSet<(Time, Timer)>,
    probe: Option<Probe>,
    /// Active neighbours in probing order, each with when it last sent us anything (the
    /// probe goes to the stalest). A vector: it holds at most the active view.
    probe_order: Vec<(MachineId, Time)>,
    next_seq: u64,
    suspects: BTreeMap<MachineId, Time>,
    /// Indirect probes we run for others: our seq → (requester, their seq, target).
    relays: BTreeMap<u64, (MachineId, u64, MachineId)>,
    /// No refill of an at-least-half-full active view before this (refusal backoff).
    refill_after: Time,
    /// The next backoff step: doubles per refusal, up to `refill_backoff_max`.
    refill_wait: Duration,
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
        Self {
            config,
            me,
            my_addrs: Vec::new(),
            bootstrap: Vec::new(),
            active: BTreeMap::new(),
            passive: BTreeMap::new(),
            graveyard: BTreeMap::new(),
            connected: BTreeMap::new(),
            pending: BTreeMap::new(),
            awaiting_reply: BTreeSet::new(),
            pinned: BTreeSet::new(),
            dialing: BTreeMap::new(),
            timers: BTreeSet::new(),
            probe: None,
            probe_order: Vec::new(),
            next_seq: 1,
            suspects: BTreeMap::new(),
            relays: BTreeMap::new(),
            refill_after: Time::ZERO,
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
        self.timers.first().map(|(t, _)| *t)
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
        self.timers.insert((now + p, Timer::Probe));
        self.timers
            .insert((now + self.config.shuffle_interval + s, Timer::Shuffle));
        self.timers
            .insert((now + self.config.maintenance_interval, Timer::Maintenance));
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
            }
        }
        self.timers
            .insert((now + self.config.linger, Timer::Linger(peer)));
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

    /// Any frame from `peer` is a sign of life: it refutes a suspicion.
    pub(crate) fn on_heard(&mut self, now: Time, peer: &MachineId) {
        // Called for every frame: the short probe order first, the view's map only for a
        // neighbour not in it yet.
        if let Some(entry) = self.probe_order.iter_mut().find(|(p, _)| p == peer) {
            entry.1 = now;
        } else if self.active.contains_key(peer) {
            self.probe_order.push((*peer, now));
        }
        if self.suspects.remove(peer).is_some() {
            self.stats.refuted += 1;
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
            Frame::ForwardJoin(f) => self.on_forward_join(now, rng, from, f.joiner.clone(), f.ttl),
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

    // ----- HyParView -----

    fn on_join(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        addrs: Vec<SocketAddr>,
    ) {
        let addrs = if addrs.is_empty() {
            self.connected.get(&from).cloned().unwrap_or_default()
        } else {
            addrs
        };
        // "Upon reception of a JOIN, a node adds the new node to its active view, even if it
        // has to drop a random node from it. It then sends a FORWARDJOIN to all other nodes in
        // its active view." (§4.2)
        self.add_active(now, rng, from, addrs.clone());
        let joiner = PeerAddr { id: from, addrs };
        let others: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from)
            .copied()
            .collect();
        for peer in others {
            self.out.push_back(Out::Send(
                peer,
                wire::ForwardJoin {
                    joiner: joiner.clone(),
                    ttl: self.config.active_random_walk_length,
                }
                .into(),
            ));
        }
    }

    fn on_forward_join(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        joiner: PeerAddr,
        ttl: u8,
    ) {
        if joiner.id == self.me {
            return;
        }
        // "If the TTL is zero or the active view has one node, add the new node to the active
        // view" (§4.2). We ask it to be our neighbour (high priority: it is new and needs us).
        if ttl == 0 || self.active.len() <= 1 {
            if !self.active.contains_key(&joiner.id) {
                self.request_neighbor(joiner, true);
            }
            return;
        }
        // "If the TTL equals PRWL, add the new node to the passive view."
        if ttl == self.config.passive_random_walk_length {
            self.add_passive(rng, joiner.clone());
        }
        let candidates: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from && **p != joiner.id)
            .copied()
            .collect();
        match pick(rng, candidates.iter()) {
            Some(next) => self.out.push_back(Out::Send(
                *next,
                wire::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                }
                .into(),
            )),
            None => {
                if !self.active.contains_key(&joiner.id) {
                    self.request_neighbor(joiner, true);
                }
            }
        }
        let _ = now;
    }

    fn on_neighbor(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        high_priority: bool,
    ) {
        // "A high priority request is always accepted, even if a node has to be dropped; a low
        // priority one only if there is a free slot" (§4.3).
        let accept = self.active.contains_key(&from)
            || high_priority
            || self.active.len() < self.config.active_view_capacity;
        if accept {
            let addrs = self.connected.get(&from).cloned().unwrap_or_default();
            self.add_active(now, rng, from, addrs);
        }
        self.out.push_back(Out::Send(
            from,
            wire::NeighborReply { accepted: accept }.into(),
        ));
    }

    fn on_neighbor_reply(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        from: MachineId,
        accepted: bool,
    ) {
        self.awaiting_reply.remove(&from);
        if accepted {
            let addrs = self.connected.get(&from).cloned().unwrap_or_default();
            self.add_active(now, rng, from, addrs);
            self.refill_wait = self.config.maintenance_interval;
        } else {
            self.stats.neighbor_refused += 1;
            if self.view_is_thin() {
                // Stays in the passive view; try someone else at once (§4.3).
                self.refill(rng);
            } else {
                // Healthy enough: wait before asking again, longer after each refusal
                // (`refill_backoff_max` says why).
                self.refill_after = now + self.refill_wait;
                self.refill_wait = (self.refill_wait * 2).min(self.config.refill_backoff_max);
            }
        }
    }

    fn on_disconnect(&mut self, now: Time, rng: &mut ChaCha8Rng, from: MachineId, alive: bool) {
        if let Some(addrs) = self.active.remove(&from) {
            let reason = if alive {
                DownReason::Disconnected
            } else {
                DownReason::Left
            };
            if alive {
                self.add_passive(
                    rng,
                    PeerAddr {
                        id: from,
                        addrs: addrs.clone(),
                    },
                );
            }
            self.neighbor_down(now, from, addrs, reason);
            self.refill(rng);
        }
    }

    fn on_shuffle(&mut self, rng: &mut ChaCha8Rng, from: MachineId, s: &wire::Shuffle) {
        if s.origin.id == self.me {
            return;
        }
        let candidates: Vec<MachineId> = self
            .active
            .keys()
            .filter(|p| **p != from && **p != s.origin.id)
            .copied()
            .collect();
        if s.ttl > 0
            && let Some(next) = pick(rng, candidates.iter())
        {
            self.out.push_back(Out::Send(
                *next,
                wire::Shuffle {
                    origin: s.origin.clone(),
                    peers: s.peers.clone(),
                    ttl: s.ttl - 1,
                }
                .into(),
            ));
            return;
        }
        // Accept: answer with as many passive entries as we received, then integrate theirs.
        let passive: Vec<PeerAddr> = self
            .passive
            .iter()
            .map(|(id, addrs)| PeerAddr {
                id: *id,
                addrs: addrs.clone(),
            })
            .collect();
        let reply = sample(rng, &passive, s.peers.len().max(1));
        self.send_or_connect(s.origin.clone(), Pending::ShuffleReply(reply));
        let mut incoming = s.peers.clone();
        incoming.push(s.origin.clone());
        self.add_passive_many(rng, &incoming);
    }

    fn start_shuffle(&mut self, rng: &mut ChaCha8Rng) {
        let active: Vec<MachineId> = self.active.keys().copied().collect();
        let Some(target) = pick(rng, active.iter()).copied() else {
            return;
        };
        let mut peers: Vec<PeerAddr> = sample(
            rng,
            &active
                .iter()
                .filter(|p| **p != target)
                .map(|p| PeerAddr {
                    id: *p,
                    addrs: self.active[p].clone(),
                })
                .collect::<Vec<_>>(),
            self.config.shuffle_active_count,
        );
        let passive: Vec<PeerAddr> = self
            .passive
            .iter()
            .map(|(id, addrs)| PeerAddr {
                id: *id,
                addrs: addrs.clone(),
            })
            .collect();
        peers.extend(sample(rng, &passive, self.config.shuffle_passive_count));
        self.stats.shuffles += 1;
        self.out.push_back(Out::Send(
            target,
            wire::Shuffle {
                origin: self.me_addr(),
                peers,
                ttl: self.config.shuffle_random_walk_length,
            }
            .into(),
        ));
    }

    /// Re-contacts one dead neighbour or bootstrap address, so a healed partition re-merges.
    fn recontact(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        let retention = self.config.graveyard_retention;
        self.graveyard
            .retain(|_, (_, died, _)| now - *died < retention);
        // The entry stays until the node is a neighbour again (a partition may last longer
        // than one try); the least recently tried goes first.
        let next = self
            .graveyard
            .iter()
            .filter(|(p, _)| !self.active.contains_key(p) && !self.pending.contains_key(p))
            .min_by_key(|(p, (_, _, tried))| (*tried, **p))
            .map(|(p, (addrs, _, _))| (*p, addrs.clone()));
        if let Some((peer, addrs)) = next {
            if let Some(e) = self.graveyard.get_mut(&peer) {
                e.2 = now;
            }
            self.stats.recontacts += 1;
            self.request_neighbor(PeerAddr { id: peer, addrs }, true);
        } else if self.active.is_empty()
            && let Some(addr) = pick(rng, self.bootstrap.iter()).copied()
            && !self.dialing.contains_key(&addr)
        {
            self.stats.recontacts += 1;
            self.dialing.insert(addr, None);
            self.out.push_back(Out::Dial(addr, None));
        }
    }

    /// Sends `frame` to `peer`, connecting first if needed (for other layers).
    pub(crate) fn send_frame(&mut self, peer: PeerAddr, frame: Frame) {
        if peer.id == self.me {
            return;
        }
        self.send_or_connect(peer, Pending::Frame(Box::new(frame)));
    }

    /// Keeps (or stops keeping) a non-neighbour connection open for another layer.
    pub(crate) fn pin(&mut self, now: Time, peer: MachineId, pinned: bool) {
        if pinned {
            if self.pinned.len() < 4 * self.config.active_view_capacity.max(16) {
                self.pinned.insert(peer);
            }
        } else if self.pinned.remove(&peer) && self.connected.contains_key(&peer) {
            self.timers
                .insert((now + self.config.linger, Timer::Linger(peer)));
        }
    }

    fn request_neighbor(&mut self, peer: PeerAddr, high_priority: bool) {
        if peer.id == self.me {
            return;
        }
        self.send_or_connect(peer, Pending::Neighbor { high_priority });
    }

    fn send_or_connect(&mut self, peer: PeerAddr, what: Pending) {
        if self.connected.contains_key(&peer.id) {
            let frame: Frame = match what {
                Pending::Neighbor { high_priority } => {
                    self.awaiting_reply.insert(peer.id);
                    wire::Neighbor { high_priority }.into()
                }
                Pending::ShuffleReply(peers) => wire::ShuffleReply { peers }.into(),
                Pending::Frame(frame) => *frame,
            };
            self.out.push_back(Out::Send(peer.id, frame));
            return;
        }
        let Some(addr) = peer.addrs.first().copied() else {
            return;
        };
        if self.pending.contains_key(&peer.id) {
            return;
        }
        self.pending.insert(peer.id, what);
        self.dialing.insert(addr, Some(peer.id));
        self.out.push_back(Out::Dial(addr, Some(peer.id)));
    }

    /// Whether the active view is under half full: refused refills are retried at once.
    fn view_is_thin(&self) -> bool {
        self.active.len() * 2 < self.config.active_view_capacity
    }

    /// Tops the active view up from the passive view, one request per free slot.
    fn refill(&mut self, rng: &mut ChaCha8Rng) {
        let outstanding = self
            .pending
            .values()
            .filter(|p| matches!(p, Pending::Neighbor { .. }))
            .count()
            + self.awaiting_reply.len();
        let free = self
            .config
            .active_view_capacity
            .saturating_sub(self.active.len() + outstanding);
        for _ in 0..free {
            let candidates: Vec<MachineId> = self
                .passive
                .keys()
                .filter(|p| {
                    !self.active.contains_key(p)
                        && !self.pending.contains_key(p)
                        && !self.awaiting_reply.contains(p)
                })
                .copied()
                .collect();
            let Some(peer) = pick(rng, candidates.iter()).copied() else {
                return;
            };
            let addrs = self.passive[&peer].clone();
            // "If the active view is empty, the request has high priority" (§4.3).
            let high = self.active.is_empty();
            self.request_neighbor(PeerAddr { id: peer, addrs }, high);
        }
    }

    fn add_active(
        &mut self,
        now: Time,
        rng: &mut ChaCha8Rng,
        peer: MachineId,
        addrs: Vec<SocketAddr>,
    ) {
        if peer == self.me || self.active.contains_key(&peer) {
            return;
        }
        if !self.connected.contains_key(&peer) {
            // We only keep neighbours we have a connection to.
            return;
        }
        if self.active.len() >= self.config.active_view_capacity {
            // "drop a random node from the active view" and tell it (DISCONNECT).
            let victims: Vec<MachineId> = self.active.keys().copied().collect();
            let victim = pick(rng, victims.iter()).copied().unwrap_or(peer);
            if let Some(vaddrs) = self.active.remove(&victim) {
                self.out
                    .push_back(Out::Send(victim, wire::Disconnect { alive: true }.into()));
                // Through `add_passive`, which keeps the passive view at its cap: inserting
                // directly let it grow one past the cap on every eviction into a full view.
                self.add_passive(
                    rng,
                    PeerAddr {
                        id: victim,
                        addrs: vaddrs.clone(),
                    },
                );
                self.neighbor_down(now, victim, vaddrs, DownReason::Evicted);
            }
        }
        self.passive.remove(&peer);
        self.graveyard.remove(&peer);
        self.pending.remove(&peer);
        self.active.insert(peer, addrs);
        self.stats.neighbor_up += 1;
        self.out.push_back(Out::NeighborUp(peer));
    }

    fn neighbor_down(
        &mut self,
        now: Time,
        peer: MachineId,
        addrs: Vec<SocketAddr>,
        reason: DownReason,
    ) {
        *self.stats.neighbor_down.entry(reason).or_default() += 1;
        // A lost neighbour is news: refill without waiting out an earlier backoff.
        self.refill_after = now;
        self.refill_wait = self.config.maintenance_interval;
        self.suspects.remove(&peer);
        self.probe_order.retain(|(p, _)| *p != peer);
        if matches!(reason, DownReason::Dead | DownReason::ConnectionLost) && !addrs.is_empty() {
            if self.graveyard.len() >= self.config.graveyard_capacity
                && let Some(oldest) = self
                    .graveyard
                    .iter()
                    .min_by_key(|(_, (_, t, _))| *t)
                    .map(|(id, _)| *id)
            {
                self.graveyard.remove(&oldest);
            }
            self.graveyard.insert(peer, (addrs, now, now));
        }
        self.out.push_back(Out::NeighborDown(peer, reason));
        // The connection is kept for `linger` in case replies are in flight, then closed.
        if self.connected.contains_key(&peer) {
            self.timers
                .insert((now + self.config.linger, Timer::Linger(peer)));
        }
    }

    fn add_passive(&mut self, rng: &mut ChaCha8Rng, peer: PeerAddr) {
        if peer.id == self.me || self.active.contains_key(&peer.id) || peer.addrs.is_empty() {
            return;
        }
        if !self.passive.contains_key(&peer.id)
            && self.passive.len() >= self.config.passive_view_capacity
        {
            // "remove a random node from the passive view" (§4.4).
            let keys: Vec<MachineId> = self.passive.keys().copied().collect();
            if let Some(victim) = pick(rng, keys.iter()).copied() {
                self.passive.remove(&victim);
                self.stats.passive_evicted += 1;
            }
        }
        self.passive.insert(peer.id, peer.addrs);
    }

    fn add_passive_many(&mut self, rng: &mut ChaCha8Rng, peers: &[PeerAddr]) {
        for p in peers {
            self.add_passive(rng, p.clone());
        }
    }

    // ----- SWIM -----

    fn on_ack(&mut self, now: Time, from: MachineId, seq: u64) {
        if let Some(p) = &mut self.probe
            && p.seq == seq
            && p.target == from
        {
            if !p.acked {
                p.acked = true;
                self.out
                    .push_back(Out::Rtt(from, now.saturating_since(p.sent)));
                // Answered: its timeout has nothing left to do, so it need not wake the node.
                let deadline = p.sent + self.config.probe_timeout;
                self.timers
                    .remove(&(deadline, Timer::ProbeDirectTimeout(seq)));
            }
            return;
        }
        if let Some((requester, their_seq, target)) = self.relays.remove(&seq)
            && target == from
        {
            self.out.push_back(Out::Send(
                requester,
                wire::PingReqAck {
                    target,
                    seq: their_seq,
                    alive: true,
                }
                .into(),
            ));
        }
    }

    fn on_ping_req(&mut self, from: MachineId, target: MachineId, seq: u64) {
        if !self.connected.contains_key(&target) {
            self.out.push_back(Out::Send(
                from,
                wire::PingReqAck {
                    target,
                    seq,
                    alive: false,
                }
                .into(),
            ));
            return;
        }
        let our = self.next_seq;
        self.next_seq += 1;
        // Bounded: one relay per request; old ones are dropped beyond 256.
        if self.relays.len() >= 256 {
            self.relays.pop_first();
        }
        self.relays.insert(our, (from, seq, target));
        self.out
            .push_back(Out::Send(target, wire::Ping { seq: our }.into()));
    }

    fn probe_tick(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        // Close the previous period if the indirect timeout did not (it runs past the period
        // when 2 × probe_timeout exceeds it).
        self.close_probe(now);
        // Probe the neighbour we have heard from least recently; ties go round-robin over a
        // shuffled order. Deviation from SWIM's plain round-robin (§4.3): any frame is a sign
        // of life, so a neighbour that just sent us gossip needs no ping, while one that went
        // silent is the likeliest to have failed. In a busy overlay a crashed neighbour is the
        // stalest of every one of its neighbours at their next period, so one of them probes
        // it within a fraction of a period instead of after about |active| / (k + 1) periods.
        // With no other traffic, acks are the only news and the order stays round-robin: the
        // neighbour probed longest ago is the stalest, so every neighbour is still probed
        // within |active| periods (SWIM's time-bounded completeness).
        self.probe_order
            .retain(|(p, _)| self.active.contains_key(p));
        if self.probe_order.len() < self.active.len() {
            let fresh: Vec<MachineId> = self
                .active
                .keys()
                .filter(|p| !self.probe_order.iter().any(|(q, _)| q == *p))
                .copied()
                .collect();
            let n = fresh.len();
            // Never heard since it joined the view: stalest of all.
            self.probe_order
                .extend(sample(rng, &fresh, n).into_iter().map(|p| (p, Time::ZERO)));
        }
        // The first of the stalest (`min_by_key` keeps the first of equal keys).
        let stalest = self
            .probe_order
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, heard))| *heard)
            .map(|(i, _)| i);
        if let Some(i) = stalest {
            // To the back of the order: among equally stale neighbours, the next one is next.
            let entry = self.probe_order.remove(i);
            self.probe_order.push(entry);
            let target = entry.0;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.probe = Some(Probe {
                target,
                seq,
                acked: false,
                sent: now,
            });
            self.out
                .push_back(Out::Send(target, wire::Ping { seq }.into()));
            self.timers.insert((
                now + self.config.probe_timeout,
                Timer::ProbeDirectTimeout(seq),
            ));
        }
        self.timers
            .insert((now + self.config.probe_interval, Timer::Probe));
    }

    fn probe_direct_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng, seq: u64) {
        let Some(p) = &self.probe else { return };
        if p.seq != seq || p.acked {
            return;
        }
        let target = p.target;
        let helpers: Vec<MachineId> = self
            .active
            .keys()
            .filter(|h| **h != target)
            .copied()
            .collect();
        for h in sample(rng, &helpers, self.config.indirect_probes) {
            self.out
                .push_back(Out::Send(h, wire::PingReq { target, seq }.into()));
        }
        // The indirect probes get another `probe_timeout` (two hops each way, still inside
        // it on every link we model). Deviation from SWIM, which waits for the end of the
        // protocol period (§3.1): the verdict is the same, and it comes that much sooner.
        self.timers.insert((
            now + self.config.probe_timeout,
            Timer::ProbeIndirectTimeout(seq),
        ));
    }

    /// Ends the current probe: unanswered, directly and indirectly, its target becomes a
    /// suspect.
    fn close_probe(&mut self, now: Time) {
        if let Some(p) = self.probe.take()
            && !p.acked
            && self.active.contains_key(&p.target)
            && !self.suspects.contains_key(&p.target)
        {
            self.stats.suspected += 1;
            self.suspects.insert(p.target, now);
            self.out.push_back(Out::Suspected(p.target));
            self.timers.insert((
                now + self.config.suspect_timeout,
                Timer::SuspectTimeout(p.target),
            ));
        }
    }

    fn suspect_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng, peer: MachineId) {
        let Some(since) = self.suspects.get(&peer).copied() else {
            return;
        };
        if now - since < self.config.suspect_timeout {
            return;
        }
        self.suspects.remove(&peer);
        if let Some(addrs) = self.active.remove(&peer) {
            self.neighbor_down(now, peer, addrs, DownReason::Dead);
            self.out.push_back(Out::Close(peer));
            self.refill(rng);
        }
    }

    // ----- timers -----

    pub(crate) fn handle_timeout(&mut self, now: Time, rng: &mut ChaCha8Rng) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Probe => self.probe_tick(now, rng),
                Timer::ProbeDirectTimeout(seq) => self.probe_direct_timeout(now, rng, seq),
                Timer::ProbeIndirectTimeout(seq) => {
                    if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
                        self.close_probe(now);
                    }
                }
                Timer::SuspectTimeout(peer) => self.suspect_timeout(now, rng, peer),
                Timer::Shuffle => {
                    self.start_shuffle(rng);
                    self.recontact(now, rng);
                    self.timers
                        .insert((now + self.config.shuffle_interval, Timer::Shuffle));
                }
                Timer::Maintenance => {
                    if self.view_is_thin() || now >= self.refill_after {
                        self.refill(rng);
                    }
                    self.timers
                        .insert((now + self.config.maintenance_interval, Timer::Maintenance));
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
            *self
                .stats
                .neighbor_down
                .entry(DownReason::Shutdown)
                .or_default() += 1;
            self.out
                .push_back(Out::NeighborDown(peer, DownReason::Shutdown));
        }
        self.timers.clear();
    }

    /// Invariant check used by tests and fuzzing: views within caps, disjoint, without self.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.active.len() > self.config.active_view_capacity {
            return Err(format!("active view {} > cap", self.active.len()));
        }
        if self.passive.len() > self.config.passive_view_capacity {
            return Err(format!("passive view {} > cap", self.passive.len()));
        }
        if self.active.contains_key(&self.me) || self.passive.contains_key(&self.me) {
            return Err("self in a view".into());
        }
        if let Some(p) = self.active.keys().find(|p| self.passive.contains_key(p)) {
            return Err(format!("{p} in both views"));
        }
        if self.graveyard.len() > self.config.graveyard_capacity {
            return Err("graveyard over cap".into());
        }
        Ok(())
    }
}
