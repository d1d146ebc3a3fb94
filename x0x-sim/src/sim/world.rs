//! The world around the nodes and the event loop that drives them.
//!
//! After every call into a node the world drains the node's transmits, actions and events
//! and re-arms its wake-up from `poll_timeout`: a new `Wake` event only when the deadline
//! moved earlier, and a fired one that is no longer the armed deadline is ignored.

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use x0x_proto::membership::DownReason;
use x0x_proto::wire::{MessageId, TopicId};
use x0x_proto::{Action, Event, MachineId, Node, Time};

use super::connections::Conn;
use super::event::{Ev, Queued};
use super::trace::{Trace, TraceTag};
use super::{Metrics, Progress, Sim};
use crate::adversary::Adversary;
use crate::net::LinkModel;
use crate::stats::Bitset;
use crate::workload::broadcast::{MsgRec, RoundRec};
use crate::workload::direct::DirectRun;
use crate::workload::discovery::DiscoveryState;
use crate::workload::swim::SwimTrack;

/// `Slot::armed` when the node has no wake-up queued.
pub(crate) const UNARMED: u64 = u64::MAX;

/// Moves a uniformly random `k` of `v` to its front (a partial Fisher–Yates shuffle).
pub(crate) fn choose_k(rng: &mut ChaCha8Rng, v: &mut [u32], k: usize) {
    for s in 0..k {
        let j = rng.random_range(s..v.len());
        v.swap(s, j);
    }
}

/// Hasher for 32-byte ids that are already uniformly random (machine and message ids).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
            if bytes.len() >= 8 {
                // The first 8 bytes of a random id are hash enough.
                break;
            }
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

/// A map from a random id to a node or message index.
pub(crate) type IdMap<K> = HashMap<K, u32, BuildHasherDefault<IdHasher>>;

/// What the world knows about node `i` across its crashes.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) alive: bool,
    /// Incarnation: bumped at every crash, so events of an earlier life are ignored.
    pub(crate) inc: u32,
    /// The queued wake-up's time, or [`UNARMED`].
    pub(crate) armed: u64,
    /// When the current incarnation started.
    pub(crate) started_at: u64,
    /// Its side of each open connection.
    pub(crate) conns: Vec<Conn>,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_recv: u64,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            alive: false,
            inc: 0,
            armed: UNARMED,
            started_at: 0,
            conns: Vec::new(),
            bytes_sent: 0,
            bytes_recv: 0,
        }
    }
}

/// Everything but the nodes, so a node and the world can be borrowed at once.
pub(crate) struct World {
    pub(crate) now: u64,
    /// The sequence number of the last queued event (FIFO among equal times).
    pub(crate) seq: u64,
    pub(crate) queue: BinaryHeap<Queued>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) ids: Vec<MachineId>,
    pub(crate) by_id: IdMap<MachineId>,
    pub(crate) net: LinkModel,
    /// Draws the fate of every frame.
    pub(crate) net_rng: ChaCha8Rng,
    /// Draws every choice of the script: bootstraps, subscribers, victims, publishers.
    pub(crate) script_rng: ChaCha8Rng,
    pub(crate) partition_active: bool,
    /// Each node's side of the partition.
    pub(crate) group: Vec<u8>,
    pub(crate) next_conn: u64,
    pub(crate) topics: Vec<TopicId>,
    /// The measured subscribers of each topic (honest ones only, with an adversary).
    pub(crate) subs: Vec<Bitset>,
    pub(crate) msgs: Vec<MsgRec>,
    pub(crate) msg_by_id: IdMap<MessageId>,
    pub(crate) rounds: Vec<RoundRec>,
    pub(crate) m: Metrics,
    pub(crate) trace: Trace,
    pub(crate) progress: Option<Progress>,
    pub(crate) warmup_end: u64,
    /// When the last scripted event is due; the run ends a drain after it at the earliest.
    pub(crate) script_end: u64,
    pub(crate) drain_us: u64,
    pub(crate) round_gap_us: u64,
    pub(crate) total_rounds: u32,
    /// The discovery workload, in discovery scenarios.
    pub(crate) disc: Option<DiscoveryState>,
    pub(crate) dm: DirectRun,
    pub(crate) swim: SwimTrack,
    pub(crate) adv: Adversary,
    /// The spam workload, in trust scenarios.
    pub(crate) spam: Option<crate::workload::spam::SpamRun>,
    /// The presence workload, in presence scenarios.
    pub(crate) presence: Option<crate::workload::presence::PresenceRun>,
    /// The replicated-store workload, in collab scenarios.
    pub(crate) collab: Option<crate::workload::collab::CollabRun>,
    /// The flood, in replay-flood scenarios.
    pub(crate) flood: Option<crate::workload::flood::FloodRun>,
    /// Publish times (µs) of the last 60 s, every workload's, for the busiest minute.
    pub(crate) recent_publishes: std::collections::VecDeque<u64>,
    /// Most messages published within any 60 s.
    pub(crate) published_in_60s_max: u64,
}

impl World {
    /// Counts one publish now towards the busiest minute.
    pub(crate) fn count_publish(&mut self) {
        let now = self.now;
        while self
            .recent_publishes
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= 60_000_000)
        {
            self.recent_publishes.pop_front();
        }
        self.recent_publishes.push_back(now);
        self.published_in_60s_max = self
            .published_in_60s_max
            .max(self.recent_publishes.len() as u64);
    }
}

impl Sim<'_> {
    /// Calls into node `i` (if it exists) and handles everything it asked for.
    pub(crate) fn call(&mut self, i: u32, f: impl FnOnce(&mut Node, Time)) {
        let Some(node) = self.nodes[i as usize].as_mut() else {
            return;
        };
        f(node, Time::from_micros(self.w.now));
        self.w.drain(i, node);
    }

    /// The event loop: runs until the `End` event.
    pub(super) fn run(&mut self) {
        while let Some(q) = self.w.queue.pop() {
            self.w.now = q.at;
            self.w.m.events += 1;
            if self.w.m.events & 0xffff == 0
                && let Some(p) = self.w.progress.as_mut()
            {
                p.tick(self.w.now, self.w.m.processed);
            }
            if !self.handle(q.ev) {
                break;
            }
        }
    }

    /// Handles one event at the current time; false at the end of the run.
    fn handle(&mut self, ev: Ev) -> bool {
        let now = self.w.now;
        match ev {
            Ev::Frame {
                from,
                to,
                conn,
                bytes,
            } => self.deliver_frame(from, to, conn, bytes),
            Ev::Wake { node, inc } => {
                let s = &mut self.w.slots[node as usize];
                if s.alive && s.inc == inc && s.armed == now {
                    s.armed = UNARMED;
                    self.w.trace.rec(now, TraceTag::Wake, node, 0);
                    self.call(node, |n, t| n.handle_timeout(t));
                }
            }
            Ev::Start(i) => self.start_node(i),
            Ev::DialDone {
                from,
                to,
                inc,
                started,
            } => self.dial_done(from, to, inc, started),
            Ev::DialFail { node, inc, addr } => {
                let s = &self.w.slots[node as usize];
                if s.alive && s.inc == inc {
                    self.w.trace.rec(now, TraceTag::DialFailed, node, 0);
                    self.call(node, |n, t| n.handle_dial_failed(t, addr));
                }
            }
            Ev::Disconnect { node, peer, conn } => self.disconnect(node, peer, conn),
            Ev::Overlay => self.measure_overlay(),
            Ev::Round(r) => self.start_round(r),
            Ev::RoundTimeout(r) => {
                if self.w.rounds.get(r as usize).is_some_and(|x| x.open) {
                    self.w.close_round(r);
                }
            }
            Ev::Crash => self.mass_crash(),
            Ev::Restart { node, inc } => {
                if self.w.slots[node as usize].inc == inc {
                    self.restart(node);
                }
            }
            Ev::PartitionStart => self.partition_start(),
            Ev::PartitionEnd => self.w.partition_end(),
            Ev::ChurnLeave => self.churn_leave(),
            Ev::ChurnJoin => self.churn_join(),
            Ev::Discovery(step) => self.discovery_step(step),
            Ev::DirectSend(k) => self.direct_send(k),
            Ev::Adversary => self.adversary_tick(),
            Ev::PresenceFind => self.presence_find(),
            Ev::CollabOpen => self.collab_open(),
            Ev::CollabWrite(k) => self.collab_write(k),
            Ev::CollabForge(f) => self.collab_forge(f),
            Ev::CollabCheck => self.collab_check(),
            Ev::Flood => self.flood_tick(),
            Ev::End => return false,
        }
        true
    }

    /// Marks node `i` alive since now and starts it.
    pub(crate) fn start_node(&mut self, i: u32) {
        let now = self.w.now;
        self.w.slots[i as usize].alive = true;
        self.w.slots[i as usize].started_at = now;
        self.w.trace.rec(now, TraceTag::Start, i, 0);
        self.boot_node(i);
    }

    /// Starts node `i`, announces it in discovery scenarios and subscribes it to its topics.
    pub(crate) fn boot_node(&mut self, i: u32) {
        let subs = self.w.adv.subscribed.as_ref().unwrap_or(&self.w.subs);
        let topics: Vec<TopicId> = (0..self.w.topics.len())
            .filter(|&t| subs[t].get(i as usize))
            .map(|t| self.w.topics[t])
            .collect();
        let announce = self.sc.discovery.is_some();
        self.call(i, |n, t| {
            n.start(t);
            if announce {
                // As a driver's `join_network` does; without a user, so it cannot fail.
                let _ = n.announce_identity(t, false, false);
            }
            for topic in topics {
                n.subscribe(t, topic);
            }
        });
    }
}

impl World {
    /// Queues `ev` at `at`.
    pub(crate) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// An exponential inter-arrival time for `rate` per second, microseconds (at least 1).
    pub(crate) fn exp_us(&mut self, rate: f64) -> u64 {
        let u: f64 = self.script_rng.random::<f64>();
        ((-(1.0 - u).ln() / rate * 1e6) as u64).max(1)
    }

    /// A uniformly random live node other than `except`.
    pub(crate) fn random_live(&mut self, except: u32) -> Option<u32> {
        let n = self.slots.len();
        for _ in 0..64 {
            let j = self.script_rng.random_range(0..n) as u32;
            if j != except && self.slots[j as usize].alive {
                return Some(j);
            }
        }
        let live: Vec<u32> = (0..n as u32)
            .filter(|&j| j != except && self.slots[j as usize].alive)
            .collect();
        (!live.is_empty()).then(|| live[self.script_rng.random_range(0..live.len())])
    }

    /// Drains every output of node `i` after a call, then re-arms its timer.
    pub(crate) fn drain(&mut self, i: u32, node: &mut Node) {
        loop {
            let mut any = false;
            while let Some(t) = node.poll_transmit() {
                any = true;
                self.route(i, t.to, t.kind, t.frame);
            }
            while let Some(a) = node.poll_action() {
                any = true;
                match a {
                    Action::Dial { addr, .. } => self.dial(i, addr),
                    Action::Close { peer, .. } if self.close(i, peer) => {
                        node.handle_disconnected(Time::from_micros(self.now), peer);
                    }
                    _ => {}
                }
            }
            while let Some(e) = node.poll_event() {
                any = true;
                self.on_event(i, e);
            }
            if !any {
                break;
            }
        }
        if let Some(t) = node.poll_timeout() {
            let t = t.as_micros().max(self.now + 1);
            let s = &mut self.slots[i as usize];
            if t < s.armed {
                s.armed = t;
                let inc = s.inc;
                self.push(t, Ev::Wake { node: i, inc });
            }
        }
    }

    /// Hands event `e` of node `i` to the workload that measures it.
    fn on_event(&mut self, i: u32, e: Event) {
        if let Some(run) = self.presence.as_mut() {
            let (slots, by_id) = (&self.slots, &self.by_id);
            run.on_event(i, &e, self.now, &|j| slots[j as usize].alive, &|m| {
                by_id.get(m).copied()
            });
        }
        match e {
            Event::Message(d) => self.on_delivery(i, d.id, d.hops),
            Event::AgentDiscovered { agent_id } => {
                if let Some(disc) = self.disc.as_mut() {
                    disc.on_discovered(i, agent_id, self.now);
                }
            }
            Event::QueryFinished { query, found, .. } => {
                if let Some(disc) = self.disc.as_mut() {
                    let m = found.map(|f| f.machine_id);
                    disc.on_query_finished(i, query, m, self.now);
                }
            }
            // Replaced: suspected, and a stand-in took its place before the suspicion ran out;
            // a verdict on the node as much as `Dead` is (a false positive if it was alive).
            Event::NeighborDown {
                peer,
                reason: DownReason::Dead | DownReason::Replaced,
            } => {
                if let Some(&j) = self.by_id.get(&peer) {
                    self.swim.on_dead(self.now, j);
                }
            }
            Event::NeighborSuspected { peer } => {
                if let Some(&j) = self.by_id.get(&peer) {
                    self.swim.on_suspected(self.now, j);
                }
            }
            Event::DirectMessage(m) => self.on_direct_message(i, m.request_id),
            Event::DirectReceipt(r) => self.on_direct_receipt(i, &r),
            Event::DirectFailed { reason, .. } => self.on_direct_failed(i, reason),
            _ => {}
        }
    }
}
