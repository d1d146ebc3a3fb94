//! The event loop: nodes, connections, the event queue, the script and the measurements.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use x0x_proto::direct::{DirectOptions, PathPreference, RequestId};
use x0x_proto::membership::DownReason;
use x0x_proto::node::Direction;
use x0x_proto::wire::{Frame, FrameKind, MessageId, Record, TopicId};
use x0x_proto::{Action, AgentId, Config, Event, Identity, MachineId, Node, Time};

use crate::discovery::{DiscoveryState, PendingLookup, Step};
use crate::net::{FrameFate, LinkModel, addr_of, index_of_addr};
use crate::report::{BytesPerNode, DirectSummary, Drops, NodeCounters, Report, max_rss_mb};
use crate::scenario::{DirectPathChoice, Publishers, Scenario};
use crate::stats::{Bitset, LatencyRecorder, UnionFind};

mod hostile;

/// Simulated time starts at 2026-01-01T00:00:00Z (microseconds since the Unix epoch).
pub const EPOCH_US: u64 = 1_767_225_600 * 1_000_000;

const NONE: u64 = u64::MAX;
const DEAD: u32 = u32::MAX;

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run seed.
    pub seed: u64,
    /// Overrides the scenario's node count.
    pub nodes: Option<usize>,
    /// Show a progress bar on stderr for runs longer than a few seconds (if it is a TTY).
    pub progress: bool,
}

/// What a run produced: the report and the data behind the charts.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `(latency ms, fraction of deliveries <= it)` points of the latency CDF.
    pub latency_cdf: Vec<(f64, f64)>,
}

/// Runs `scenario` with `opts`: builds the nodes, runs the event loop to the end of the
/// script and measures. Deterministic in (scenario, node count, seed).
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Outcome {
    let mut sc = scenario.clone();
    if let Some(n) = opts.nodes {
        sc.nodes = n.max(1);
    }
    let setup = Instant::now();
    let mut sim = Sim::new(&sc, opts.seed);
    let setup_secs = setup.elapsed().as_secs_f64();
    if opts.progress {
        sim.w.progress = Some(Progress::new(sim.end_estimate_us()));
    }
    let wall = Instant::now();
    sim.run();
    let wall_secs = wall.elapsed().as_secs_f64();
    if let Some(p) = sim.w.progress.take() {
        p.bar.finish_and_clear();
    }
    sim.report(setup_secs, wall_secs)
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Ev {
    Start(u32),
    Wake {
        node: u32,
        inc: u32,
    },
    Frame {
        from: u32,
        to: u32,
        conn: u64,
        bytes: Bytes,
    },
    DialDone {
        from: u32,
        to: u32,
        inc: u32,
        started: u64,
    },
    DialFail {
        node: u32,
        inc: u32,
        addr: SocketAddr,
    },
    Disconnect {
        node: u32,
        peer: u32,
        conn: u64,
    },
    Overlay,
    Round(u32),
    RoundTimeout(u32),
    Crash,
    Restart {
        node: u32,
        inc: u32,
    },
    PartitionStart,
    PartitionEnd,
    ChurnLeave,
    ChurnJoin,
    Discovery(Step),
    DirectSend(u32),
    /// The adversary clock ([`crate::adversary`]).
    Adversary,
    End,
}

/// A queued event, ordered earliest first, FIFO among equal times.
#[derive(Debug)]
struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest (then lowest seq) pops first.
        Reverse((self.at, self.seq)).cmp(&Reverse((o.at, o.seq)))
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// Hasher for 32-byte ids that are already uniformly random (machine and message ids).
#[derive(Default)]
struct IdHasher(u64);

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

type IdMap<K> = HashMap<K, u32, BuildHasherDefault<IdHasher>>;

/// One side of an open connection.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: u32,
    id: u64,
    busy_until: u64,
    last_arrival: u64,
}

#[derive(Debug, Default)]
struct Slot {
    alive: bool,
    inc: u32,
    armed: u64,
    started_at: u64,
    conns: Vec<Conn>,
    bytes_sent: u64,
    bytes_recv: u64,
}

#[derive(Debug)]
struct MsgRec {
    round: u32,
    publisher: u32,
    topic: u16,
    published: u64,
    delivered: Bitset,
    delivered_count: u32,
    eligible_end: u32,
    credited_end: u32,
    gossip_frames: u64,
    /// Largest hop count of a first delivery.
    ldh: u8,
}

#[derive(Debug)]
struct RoundRec {
    msgs: std::ops::Range<u32>,
    open: bool,
    pending: u64,
    snapshot: Vec<u32>,
    ratio: Option<f64>,
}

#[derive(Debug, Default)]
struct Metrics {
    processed: u64,
    events: u64,
    recv_by_kind: Vec<u64>,
    sent_by_kind: Vec<u64>,
    drops: Drops,
    dials: u64,
    dials_redundant: u64,
    connections: u64,
    latency: LatencyRecorder,
    hops: Vec<u64>,
    deliveries: u64,
    duplicate_deliveries: u64,
    deliveries_after_restart: u64,
    sub_frames: u64,
    nonsub_frames: u64,
    isolated: usize,
    components: usize,
    degrees: Vec<u64>,
    live_at_overlay: usize,
}

#[derive(Debug)]
struct DmRec {
    dst: u32,
    sent: u64,
    delivered: bool,
}

/// The direct-message workload's bookkeeping.
#[derive(Debug, Default)]
struct DirectRun {
    msgs: Vec<DmRec>,
    by_id: BTreeMap<RequestId, u32>,
    /// Each node's agent card, made on first use.
    cards: Vec<Option<Vec<Record>>>,
    send_errors: u64,
    delivered: u64,
    duplicates: u64,
    misdelivered: u64,
    receipts: u64,
    receipts_by_path: BTreeMap<String, u64>,
    retries: u64,
    failures: BTreeMap<String, u64>,
    latency: LatencyRecorder,
    receipt_latency: LatencyRecorder,
}

/// SWIM failure detection as the nodes report it (`NeighborDown` with reason `Dead`).
#[derive(Debug, Default)]
struct SwimTrack {
    /// Crash time of every node that is down now.
    crashed_at: BTreeMap<u32, u64>,
    /// Crashed nodes some live node already declared dead.
    detected: BTreeSet<u32>,
    /// Crashed nodes some live node already suspected.
    suspected: BTreeSet<u32>,
    /// Crash → first suspicion by any neighbour, per crashed node (µs).
    first_suspicion: Vec<u64>,
    /// Suspicions of a node that was alive (refuted, or a false positive if `Dead` follows).
    live_suspicions: u64,
    /// Crash → first `Dead` by any neighbour, per crashed node (µs).
    first: Vec<u64>,
    /// Crash → `Dead`, per (neighbour, crashed node) pair (µs).
    all: Vec<u64>,
    /// `Dead` declared about a node that was alive.
    false_positives: u64,
}

impl SwimTrack {
    fn on_suspected(&mut self, now: u64, peer: u32) {
        match self.crashed_at.get(&peer) {
            Some(&at) => {
                if self.suspected.insert(peer) {
                    self.first_suspicion.push(now.saturating_sub(at));
                }
            }
            None => self.live_suspicions += 1,
        }
    }

    fn on_dead(&mut self, now: u64, peer: u32) {
        match self.crashed_at.get(&peer) {
            Some(&at) => {
                let d = now.saturating_sub(at);
                self.all.push(d);
                if self.detected.insert(peer) {
                    self.first.push(d);
                }
            }
            None => self.false_positives += 1,
        }
    }

    fn summary(&self, node_hours: f64, probe_interval_ms: f64) -> crate::report::SwimSummary {
        fn stats(v: &[u64]) -> Option<crate::report::DetectionMs> {
            if v.is_empty() {
                return None;
            }
            let mut s = v.to_vec();
            s.sort_unstable();
            let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            Some(crate::report::DetectionMs {
                mean: s.iter().sum::<u64>() as f64 / s.len() as f64 / 1000.0,
                p50: pick(0.5),
                p99: pick(0.99),
                max: pick(1.0),
            })
        }
        crate::report::SwimSummary {
            probe_interval_ms,
            crashed: self.crashed_at.len() as u64 + self.detected_restarted(),
            detected: self.first.len() as u64,
            first_suspicion_ms: stats(&self.first_suspicion),
            live_suspicions: self.live_suspicions,
            first_detection_ms: stats(&self.first),
            detection_ms: stats(&self.all),
            false_positives: self.false_positives,
            node_hours,
        }
    }

    /// Crashed nodes that restarted since (kept out of `crashed_at`).
    fn detected_restarted(&self) -> u64 {
        self.detected
            .iter()
            .filter(|j| !self.crashed_at.contains_key(j))
            .count() as u64
    }
}

/// The event trace digest: a BLAKE3 hasher fed through a buffer.
struct Trace {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl Trace {
    fn rec(&mut self, at: u64, tag: u8, a: u32, b: u64) {
        self.buf.extend_from_slice(&at.to_le_bytes());
        self.buf.push(tag);
        self.buf.extend_from_slice(&a.to_le_bytes());
        self.buf.extend_from_slice(&b.to_le_bytes());
        if self.buf.len() >= 1 << 16 {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }
    fn finish(mut self) -> String {
        self.hasher.update(&self.buf);
        self.hasher.finalize().to_hex().to_string()
    }
}

struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    fn new(end_us: u64) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(end_us.saturating_sub(EPOCH_US) / 1000),
            ProgressDrawTarget::hidden(),
        );
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] sim {pos}/{len} ms {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }
}

/// Everything but the nodes, so a node and the world can be borrowed at once.
struct World {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    slots: Vec<Slot>,
    ids: Vec<MachineId>,
    by_id: IdMap<MachineId>,
    net: LinkModel,
    net_rng: ChaCha8Rng,
    script_rng: ChaCha8Rng,
    partition_active: bool,
    group: Vec<u8>,
    next_conn: u64,
    topics: Vec<TopicId>,
    subs: Vec<Bitset>,
    msgs: Vec<MsgRec>,
    msg_by_id: IdMap<MessageId>,
    rounds: Vec<RoundRec>,
    m: Metrics,
    trace: Trace,
    progress: Option<Progress>,
    warmup_end: u64,
    script_end: u64,
    drain_us: u64,
    round_gap_us: u64,
    total_rounds: u32,
    /// The discovery workload, in discovery scenarios.
    disc: Option<DiscoveryState>,
    dm: DirectRun,
    swim: SwimTrack,
    adv: crate::adversary::Adversary,
}

struct Sim<'a> {
    sc: &'a Scenario,
    seed: u64,
    real: bool,
    nodes: Vec<Option<Node>>,
    w: World,
}

fn derive(ctx: &str, seed: u64, a: u64, b: u64) -> [u8; 32] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(&seed.to_le_bytes());
    m[8..16].copy_from_slice(&a.to_le_bytes());
    m[16..].copy_from_slice(&b.to_le_bytes());
    blake3::derive_key(ctx, &m)
}

fn ms(x: u64) -> u64 {
    x.saturating_mul(1000)
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, seed: u64) -> Self {
        // Sybils come on top of the scenario's nodes.
        let roles = hostile::assign_roles(sc, seed);
        let n = sc.nodes.max(roles.len());
        let real = sc.real_crypto();
        let mut script_rng = ChaCha8Rng::from_seed(derive("x0x-sim script rng v1", seed, 0, 0));
        let net_rng = ChaCha8Rng::from_seed(derive("x0x-sim network rng v1", seed, 0, 0));
        let identities: Vec<Identity> = (0..n).map(|i| identity(real, seed, i as u32)).collect();
        let ids: Vec<MachineId> = identities
            .iter()
            .map(|id| id.machine.machine_id())
            .collect();
        let mut by_id = IdMap::default();
        for (i, id) in ids.iter().enumerate() {
            by_id.insert(*id, i as u32);
        }
        // Topics and subscriptions.
        let wl = &sc.workload;
        let topics: Vec<TopicId> = (0..wl.topics)
            .map(|t| TopicId::from_name(&format!("x0x-sim/topic/{t}")))
            .collect();
        let mut subs: Vec<Bitset> = (0..wl.topics)
            .map(|_| match wl.subscribers_per_topic {
                None => Bitset::full(n),
                Some(k) => {
                    let mut b = Bitset::new(n);
                    let mut idx: Vec<u32> = (0..n as u32).collect();
                    for s in 0..k.min(n) {
                        let j = script_rng.random_range(s..n);
                        idx.swap(s, j);
                        b.set(idx[s] as usize);
                    }
                    b
                }
            })
            .collect();
        let mut adv = crate::adversary::Adversary {
            roles,
            ..Default::default()
        };
        hostile::mask_subscribers(&mut adv, &mut subs, n);
        let warmup_end = EPOCH_US + ms(sc.warmup_ms);
        // Bootstrap choices and start times.
        let window = ms(sc.start_window_ms);
        let mut starts = Vec::with_capacity(n);
        let mut nodes = Vec::with_capacity(n);
        for (i, ident) in identities.into_iter().enumerate() {
            if let Some((at, target)) = hostile::sybil_start(sc, warmup_end, i) {
                nodes.push(Some(build_node(
                    sc,
                    real,
                    seed,
                    i as u32,
                    0,
                    ident,
                    &[target],
                )));
                starts.push(at);
                continue;
            }
            let late = sc
                .discovery
                .as_ref()
                .is_some_and(|d| d.is_late_joiner(i, n));
            let boot = if i == 0 {
                Vec::new()
            } else if late {
                // Late joiners enter through the bootstrap node (see `build_node`).
                vec![0]
            } else if sc.bootstrap_nodes.is_empty() {
                vec![script_rng.random_range(0..i) as u32]
            } else {
                sc.bootstrap_nodes
                    .iter()
                    .filter(|&&b| b != i && b < n)
                    .map(|&b| b as u32)
                    .collect()
            };
            nodes.push(Some(build_node(sc, real, seed, i as u32, 0, ident, &boot)));
            starts.push(EPOCH_US + window * i as u64 / sc.nodes.max(1) as u64);
        }
        let mut script_end = warmup_end + ms(sc.overlay_at_ms.unwrap_or(wl.start_ms));
        if let Some(c) = &sc.crash {
            script_end = script_end.max(warmup_end + ms(c.at_ms + c.restart_after_ms.unwrap_or(0)));
        }
        if let Some(p) = &sc.partition {
            script_end = script_end.max(warmup_end + ms(p.at_ms + p.duration_ms));
        }
        if let Some(c) = &sc.churn {
            script_end = script_end.max(warmup_end + ms(c.start_ms + c.duration_ms));
        }
        let dm_at = |k: usize| {
            warmup_end + ms(sc.direct.start_ms) + (k as f64 * 1e6 / sc.direct.per_sec) as u64
        };
        if sc.direct.messages > 0 {
            script_end = script_end.max(dm_at(sc.direct.messages - 1));
        }
        let mut w = World {
            now: EPOCH_US,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: (0..n)
                .map(|_| Slot {
                    armed: NONE,
                    ..Slot::default()
                })
                .collect(),
            ids,
            by_id,
            net: LinkModel::new(sc.network.clone(), seed),
            net_rng,
            script_rng,
            partition_active: false,
            group: Vec::new(),
            next_conn: 1,
            topics,
            subs,
            msgs: Vec::new(),
            msg_by_id: IdMap::default(),
            rounds: Vec::new(),
            m: Metrics {
                recv_by_kind: vec![0; 256],
                sent_by_kind: vec![0; 256],
                hops: vec![0; 256],
                ..Metrics::default()
            },
            trace: Trace {
                hasher: blake3::Hasher::new(),
                buf: Vec::with_capacity(1 << 17),
            },
            progress: None,
            warmup_end,
            script_end,
            drain_us: ms(sc.drain_ms),
            round_gap_us: ms(wl.round_gap_ms),
            total_rounds: wl.rounds as u32,
            disc: sc.discovery.as_ref().map(|_| DiscoveryState::default()),
            dm: DirectRun {
                cards: vec![None; n],
                ..DirectRun::default()
            },
            swim: SwimTrack::default(),
            adv,
        };
        for k in 0..sc.direct.messages {
            w.push(dm_at(k), Ev::DirectSend(k as u32));
        }
        // Discovery scenarios hold the measured new agents and late joiners back.
        let (held_from, _) = sc.discovery.as_ref().map_or((n, 0), |d| d.held_back(n));
        for (i, at) in starts.into_iter().enumerate().take(held_from) {
            w.push(at, Ev::Start(i as u32));
        }
        if let Some(d) = &sc.discovery {
            let ph = d.phases();
            let (from, k) = d.held_back(n);
            for x in 0..k {
                let i = (from + x) as u32;
                let (at, step) = if x < d.new_agents {
                    (x as u64 * d.new_agent_gap_ms, Step::NewAgent(i))
                } else {
                    (
                        ph.late_join_ms + (x - d.new_agents) as u64 * 500,
                        Step::LateJoiner(i),
                    )
                };
                w.push(warmup_end + ms(at), Ev::Discovery(step));
            }
            for l in 0..d.lookups {
                let at = ph.lookups_ms + l as u64 * d.lookup_gap_ms;
                w.push(warmup_end + ms(at), Ev::Discovery(Step::Lookup));
            }
            w.push(warmup_end + ms(ph.crash_ms), Ev::Discovery(Step::CrashGone));
            w.push(
                warmup_end + ms(ph.crash_ms + 1000),
                Ev::Discovery(Step::Snapshot),
            );
            for g in 0..d.gone {
                let at = ph.gone_lookups_ms + g as u64 * d.lookup_gap_ms;
                w.push(
                    warmup_end + ms(at),
                    Ev::Discovery(Step::LookupGone(g as u32)),
                );
            }
            w.script_end = w.script_end.max(warmup_end + ms(ph.end_ms));
        }
        let overlay_at = warmup_end + ms(sc.overlay_at_ms.unwrap_or(wl.start_ms));
        w.push(overlay_at, Ev::Overlay);
        if let Some(c) = &sc.crash {
            w.push(warmup_end + ms(c.at_ms), Ev::Crash);
        }
        if let Some(p) = &sc.partition {
            w.push(warmup_end + ms(p.at_ms), Ev::PartitionStart);
            w.push(warmup_end + ms(p.at_ms + p.duration_ms), Ev::PartitionEnd);
        }
        if let Some(c) = &sc.churn {
            let start = warmup_end + ms(c.start_ms);
            if c.leave_per_sec > 0.0 {
                let d = w.exp_us(c.leave_per_sec);
                w.push(start + d, Ev::ChurnLeave);
            }
            if c.join_per_sec > 0.0 {
                let d = w.exp_us(c.join_per_sec);
                w.push(start + d, Ev::ChurnJoin);
            }
        }
        if wl.rounds > 0 {
            w.push(warmup_end + ms(wl.start_ms), Ev::Round(0));
        } else {
            w.push(w.script_end + w.drain_us, Ev::End);
        }
        let mut sim = Self {
            sc,
            seed,
            real,
            nodes,
            w,
        };
        sim.schedule_adversary();
        sim
    }

    /// Upper bound of the simulated end time, for the progress bar.
    fn end_estimate_us(&self) -> u64 {
        let wl = &self.sc.workload;
        let rounds = self.w.warmup_end
            + ms(wl.start_ms)
            + wl.rounds as u64 * ms(wl.round_timeout_ms + wl.round_gap_ms);
        rounds.max(self.w.script_end) + self.w.drain_us
    }

    /// Calls into node `i` (if it exists) and handles everything it asked for.
    fn call(&mut self, i: u32, f: impl FnOnce(&mut Node, Time)) {
        let Some(node) = self.nodes[i as usize].as_mut() else {
            return;
        };
        f(node, Time::from_micros(self.w.now));
        self.w.drain(i, node);
    }

    fn run(&mut self) {
        while let Some(q) = self.w.queue.pop() {
            self.w.now = q.at;
            self.w.m.events += 1;
            if self.w.m.events & 0xffff == 0 {
                self.w.tick_progress();
            }
            let now = q.at;
            match q.ev {
                Ev::Frame {
                    from,
                    to,
                    conn,
                    bytes,
                } => self.deliver_frame(from, to, conn, bytes),
                Ev::Wake { node, inc } => {
                    let s = &mut self.w.slots[node as usize];
                    if s.alive && s.inc == inc && s.armed == now {
                        s.armed = NONE;
                        self.w.trace.rec(now, 2, node, 0);
                        self.call(node, |n, t| n.handle_timeout(t));
                    }
                }
                Ev::Start(i) => {
                    self.w.slots[i as usize].alive = true;
                    self.w.slots[i as usize].started_at = now;
                    self.w.trace.rec(now, 3, i, 0);
                    self.start_node(i);
                }
                Ev::DialDone {
                    from,
                    to,
                    inc,
                    started,
                } => self.dial_done(from, to, inc, started),
                Ev::DialFail { node, inc, addr } => {
                    let s = &self.w.slots[node as usize];
                    if s.alive && s.inc == inc {
                        self.w.trace.rec(now, 5, node, 0);
                        self.call(node, |n, t| n.handle_dial_failed(t, addr));
                    }
                }
                Ev::Disconnect { node, peer, conn } => {
                    let s = &mut self.w.slots[node as usize];
                    if let Some(p) = s.conns.iter().position(|c| c.peer == peer && c.id == conn) {
                        s.conns.swap_remove(p);
                        self.w.trace.rec(now, 6, node, u64::from(peer));
                        let pid = self.w.ids[peer as usize];
                        self.call(node, |n, t| n.handle_disconnected(t, pid));
                    }
                }
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
                Ev::PartitionEnd => {
                    self.w.partition_active = false;
                    self.w.trace.rec(now, 11, 0, 0);
                }
                Ev::ChurnLeave => self.churn_leave(),
                Ev::ChurnJoin => self.churn_join(),
                Ev::Discovery(step) => self.discovery_step(step),
                Ev::DirectSend(k) => self.direct_send(k),
                Ev::Adversary => self.adversary_tick(),
                Ev::End => break,
            }
        }
    }

    fn start_node(&mut self, i: u32) {
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

    fn deliver_frame(&mut self, from: u32, to: u32, conn: u64, bytes: Bytes) {
        let w = &mut self.w;
        let now = w.now;
        let s = &w.slots[to as usize];
        if !s.alive {
            w.m.drops.dead_target += 1;
            return;
        }
        if !s.conns.iter().any(|c| c.peer == from && c.id == conn) {
            w.m.drops.closed_connection += 1;
            return;
        }
        if w.cut(from, to) {
            w.m.drops.partition += 1;
            return;
        }
        w.slots[to as usize].bytes_recv += bytes.len() as u64;
        w.m.processed += 1;
        let kind = bytes.get(1).copied().unwrap_or(0);
        w.m.recv_by_kind[kind as usize] += 1;
        let tail = bytes.len().saturating_sub(8);
        let mut t8 = [0u8; 8];
        t8[..bytes.len() - tail].copy_from_slice(&bytes[tail..]);
        w.trace.rec(
            now,
            1,
            to,
            (u64::from(from) << 32) ^ (u64::from(kind) << 24) ^ bytes.len() as u64,
        );
        w.trace.rec(now, 0, 0, u64::from_le_bytes(t8));
        if kind == FrameKind::Gossip.byte() {
            w.attribute_gossip(to, &bytes);
        }
        let peer = w.ids[from as usize];
        self.call(to, |n, t| {
            let _ = n.handle_frame(t, peer, &bytes);
        });
    }

    fn dial_done(&mut self, from: u32, to: u32, inc: u32, started: u64) {
        let w = &mut self.w;
        let now = w.now;
        let d = &w.slots[from as usize];
        if !d.alive || d.inc != inc {
            return;
        }
        if !w.slots[to as usize].alive || w.cut(from, to) {
            let at = (started + ms(w.net.config().dial_timeout_ms)).max(now);
            w.push(
                at,
                Ev::DialFail {
                    node: from,
                    inc,
                    addr: addr_of(to),
                },
            );
            return;
        }
        if w.slots[from as usize].conns.iter().any(|c| c.peer == to) {
            w.m.dials_redundant += 1;
            return;
        }
        // A stale side at the target (its peer closed, the notice still in flight) goes first.
        let t = &mut w.slots[to as usize];
        if let Some(p) = t.conns.iter().position(|c| c.peer == from) {
            t.conns.swap_remove(p);
            let pid = w.ids[from as usize];
            self.call(to, |n, t| n.handle_disconnected(t, pid));
        }
        let w = &mut self.w;
        let id = w.next_conn;
        w.next_conn += 1;
        w.m.connections += 1;
        let side = |peer| Conn {
            peer,
            id,
            busy_until: 0,
            last_arrival: 0,
        };
        w.slots[from as usize].conns.push(side(to));
        w.slots[to as usize].conns.push(side(from));
        w.trace.rec(now, 4, from, u64::from(to));
        let (fid, tid) = (w.ids[from as usize], w.ids[to as usize]);
        self.call(from, |n, t| {
            n.handle_connected(t, tid, addr_of(to), Direction::Outbound);
        });
        self.call(to, |n, t| {
            n.handle_connected(t, fid, addr_of(from), Direction::Inbound);
        });
    }

    /// Runs one step of the discovery script ([`crate::discovery`]).
    fn discovery_step(&mut self, step: Step) {
        let Some(spec) = self.sc.discovery.clone() else {
            return;
        };
        let n = self.nodes.len();
        let now = self.w.now;
        match step {
            Step::NewAgent(i) | Step::LateJoiner(i) => {
                let Some(agent) = self.nodes[i as usize].as_ref().map(Node::agent_id) else {
                    return;
                };
                // The agents live now (every started node announced on start).
                let live: Vec<u32> = (0..n as u32)
                    .filter(|&j| j != i && self.w.slots[j as usize].alive)
                    .collect();
                if let Some(d) = self.w.disc.as_mut() {
                    if matches!(step, Step::NewAgent(_)) {
                        d.new_agents.insert(agent, (i, now));
                        d.expected
                            .insert(agent, live.iter().map(|&j| (j, None)).collect());
                    } else {
                        // 99 % of the others, plus its own announcement (also "discovered").
                        let want = (live.len() * 99).div_ceil(100) + 1;
                        d.late.insert(i, (now, want, 0, None));
                    }
                }
                self.w.slots[i as usize].alive = true;
                self.w.slots[i as usize].started_at = now;
                self.w.trace.rec(now, 3, i, 0);
                self.start_node(i);
            }
            Step::Lookup => {
                let queriers: Vec<u32> = (0..n)
                    .filter(|&j| spec.is_querier(j, n) && self.w.slots[j].alive)
                    .map(|j| j as u32)
                    .collect();
                if queriers.is_empty() {
                    return;
                }
                let q = queriers[self.w.script_rng.random_range(0..queriers.len())];
                // A live agent the querier does not have cached (a few tries).
                let t = Time::from_micros(now);
                let mut target = None;
                for _ in 0..64 {
                    let Some(j) = self.w.random_live(q) else {
                        break;
                    };
                    let Some(cand) = self.nodes[j as usize].as_ref() else {
                        continue;
                    };
                    let (agent, machine) = (cand.agent_id(), cand.machine_id());
                    let cached = self.nodes[q as usize]
                        .as_ref()
                        .is_some_and(|qn| qn.discovered_agent(t, &agent).is_some());
                    if !cached {
                        target = Some((agent, machine));
                        break;
                    }
                }
                let Some((agent, machine)) = target else {
                    return;
                };
                self.lookup(q, agent, Some(machine));
            }
            Step::CrashGone => {
                let mut gone: Vec<(u32, AgentId)> = Vec::new();
                for _ in 0..spec.gone {
                    // Never a querier: they must stay to ask.
                    if let Some(j) =
                        (0..64)
                            .filter_map(|_| self.w.random_live(u32::MAX))
                            .find(|&j| {
                                !spec.is_querier(j as usize, n) && !gone.iter().any(|g| g.0 == j)
                            })
                    {
                        if let Some(a) = self.nodes[j as usize].as_ref().map(Node::agent_id) {
                            gone.push((j, a));
                        }
                        self.crash(j);
                    }
                }
                if let Some(d) = self.w.disc.as_mut() {
                    d.gone = gone;
                }
            }
            Step::Snapshot => {
                let total = self.w.slots.iter().map(|s| s.bytes_sent).sum();
                if let Some(d) = self.w.disc.as_mut() {
                    d.snapshot = Some((now, total));
                }
            }
            Step::LookupGone(k) => {
                let Some(&(g, agent)) = self.w.disc.as_ref().and_then(|d| d.gone.get(k as usize))
                else {
                    return;
                };
                if let Some(q) = self.w.random_live(g) {
                    self.lookup(q, agent, None);
                }
            }
        }
    }

    /// Starts a `find_agent` at node `q`; `expect` is the right answer.
    fn lookup(&mut self, q: u32, agent: AgentId, expect: Option<MachineId>) {
        let now = self.w.now;
        let mut query = None;
        self.call(q, |node, t| query = Some(node.find_agent(t, agent)));
        let Some(query) = query else {
            return;
        };
        let Some(d) = self.w.disc.as_mut() else {
            return;
        };
        if expect.is_some() {
            d.report.lookups_live += 1;
        } else {
            d.report.lookups_gone += 1;
        }
        d.pending.insert(
            (q, query),
            PendingLookup {
                started: now,
                expect,
            },
        );
        // A cache answer is already queued and was drained by `call`: replay it now that
        // the look-up is registered.
        if let Some((m, at)) = d.early.remove(&(q, query)) {
            d.on_query_finished(q, query, m, at);
        }
    }

    fn crash(&mut self, j: u32) {
        let w = &mut self.w;
        let now = w.now;
        let s = &mut w.slots[j as usize];
        if !s.alive {
            return;
        }
        self.nodes[j as usize] = None;
        s.alive = false;
        s.armed = NONE;
        let conns = std::mem::take(&mut s.conns);
        w.trace.rec(now, 7, j, 0);
        w.swim.crashed_at.insert(j, now);
        if let Some(t) = w.net.config().crash_idle_timeout_ms {
            for c in conns {
                w.push(
                    now + ms(t),
                    Ev::Disconnect {
                        node: c.peer,
                        peer: j,
                        conn: c.id,
                    },
                );
            }
        }
        w.node_gone(j);
        w.slots[j as usize].inc += 1;
    }

    fn restart(&mut self, j: u32) {
        if self.w.slots[j as usize].alive {
            return;
        }
        let boot: Vec<u32> = if self.sc.bootstrap_nodes.is_empty() {
            self.w.random_live(j).into_iter().collect()
        } else {
            self.sc
                .bootstrap_nodes
                .iter()
                .map(|&b| b as u32)
                .filter(|&b| b != j && (b as usize) < self.nodes.len())
                .collect()
        };
        let inc = self.w.slots[j as usize].inc;
        let ident = identity(self.real, self.seed, j);
        self.nodes[j as usize] = Some(build_node(
            self.sc, self.real, self.seed, j, inc, ident, &boot,
        ));
        self.w.slots[j as usize].alive = true;
        self.w.slots[j as usize].started_at = self.w.now;
        self.w.swim.crashed_at.remove(&j);
        self.w.trace.rec(self.w.now, 8, j, u64::from(inc));
        self.start_node(j);
    }

    fn mass_crash(&mut self) {
        let Some(c) = self.sc.crash.clone() else {
            return;
        };
        let keep = self.fixed_publisher();
        let mut live: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.w.slots[i as usize].alive && Some(i) != keep)
            .collect();
        let k = ((self.nodes.len() as f64 * c.fraction).round() as usize).min(live.len());
        for s in 0..k {
            let j = self.w.script_rng.random_range(s..live.len());
            live.swap(s, j);
        }
        let mut victims = live[..k].to_vec();
        victims.sort_unstable();
        for &v in &victims {
            self.crash(v);
        }
        if let Some(after) = c.restart_after_ms {
            for v in victims {
                let inc = self.w.slots[v as usize].inc;
                self.w
                    .push(self.w.now + ms(after), Ev::Restart { node: v, inc });
            }
        }
    }

    fn partition_start(&mut self) {
        let Some(p) = self.sc.partition.clone() else {
            return;
        };
        let n = self.nodes.len();
        let mut idx: Vec<u32> = (0..n as u32).collect();
        let k = ((n as f64 * p.fraction).round() as usize).min(n);
        for s in 0..k {
            let j = self.w.script_rng.random_range(s..n);
            idx.swap(s, j);
        }
        self.w.group = vec![0; n];
        for &i in &idx[..k] {
            self.w.group[i as usize] = 1;
        }
        self.w.partition_active = true;
        self.w.trace.rec(self.w.now, 10, k as u32, 0);
    }

    fn churn_leave(&mut self) {
        let Some(c) = self.sc.churn.clone() else {
            return;
        };
        let end = self.w.warmup_end + ms(c.start_ms + c.duration_ms);
        if self.w.now > end {
            return;
        }
        let keep = self.fixed_publisher();
        if let Some(j) = self.w.random_live(keep.unwrap_or(u32::MAX)) {
            if c.graceful_fraction > 0.0 && self.w.script_rng.random_bool(c.graceful_fraction) {
                self.call(j, |n, t| n.shutdown(t));
            }
            self.crash(j);
        }
        let d = self.w.exp_us(c.leave_per_sec);
        self.w.push(self.w.now + d, Ev::ChurnLeave);
    }

    fn churn_join(&mut self) {
        let Some(c) = self.sc.churn.clone() else {
            return;
        };
        let end = self.w.warmup_end + ms(c.start_ms + c.duration_ms);
        if self.w.now > end {
            return;
        }
        let dead: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| !self.w.slots[i as usize].alive)
            .collect();
        if !dead.is_empty() {
            let j = dead[self.w.script_rng.random_range(0..dead.len())];
            self.restart(j);
        }
        let d = self.w.exp_us(c.join_per_sec);
        self.w.push(self.w.now + d, Ev::ChurnJoin);
    }

    /// Sends direct message `k` between a random pair of live nodes.
    fn direct_send(&mut self, k: u32) {
        let n = self.nodes.len() as u32;
        if n < 2 {
            return;
        }
        let Some(src) = self.w.random_live(u32::MAX) else {
            return;
        };
        let Some(dst) = self.w.random_live(src) else {
            return;
        };
        if self.w.dm.cards[dst as usize].is_none() {
            let mut card = None;
            self.call(dst, |node, t| card = Some(node.agent_card(t)));
            self.w.dm.cards[dst as usize] = card;
        }
        let (Some(card), Some(to)) = (
            self.w.dm.cards[dst as usize].clone(),
            self.nodes[dst as usize].as_ref().map(|x| x.agent_id()),
        ) else {
            return;
        };
        let d = &self.sc.direct;
        let mut payload = vec![0u8; d.payload_bytes.max(8)];
        payload[..4].copy_from_slice(&k.to_le_bytes());
        payload[4..8].copy_from_slice(&(self.seed as u32).to_le_bytes());
        let opts = DirectOptions {
            path: match d.path {
                DirectPathChoice::Auto => PathPreference::Auto,
                DirectPathChoice::Connected => PathPreference::Connected,
                DirectPathChoice::Sealed => PathPreference::Sealed,
            },
            lifetime: d.lifetime_ms.map(Duration::from_millis),
        };
        let now = self.w.now;
        let mut sent = None;
        self.call(src, |node, t| {
            let _ = node.import_agent_card(t, &card);
            sent = Some(node.send_direct_with(t, to, Bytes::from(payload), opts));
        });
        self.w.trace.rec(now, 13, src, u64::from(dst));
        match sent {
            Some(Ok(id)) => {
                let idx = self.w.dm.msgs.len() as u32;
                self.w.dm.by_id.insert(id, idx);
                self.w.dm.msgs.push(DmRec {
                    dst,
                    sent: now,
                    delivered: false,
                });
            }
            _ => self.w.dm.send_errors += 1,
        }
    }

    fn fixed_publisher(&self) -> Option<u32> {
        (self.sc.workload.publishers == Publishers::Fixed)
            .then(|| self.sc.workload.publisher.min(self.nodes.len() - 1) as u32)
    }

    fn start_round(&mut self, r: u32) {
        let wl = self.sc.workload.clone();
        let n = self.nodes.len();
        let ntopics = self.w.topics.len();
        // (publisher, topic) pairs, in a deterministic order.
        let mut pubs: Vec<(u32, u16)> = Vec::new();
        match wl.publishers {
            Publishers::Fixed => {
                let p = self.fixed_publisher().unwrap_or(0);
                let t = (r as usize % ntopics) as u16;
                if self.w.slots[p as usize].alive {
                    pubs.push((p, t));
                }
            }
            Publishers::Random => {
                let t = self.w.script_rng.random_range(0..ntopics) as u16;
                let cands: Vec<u32> = (0..n as u32)
                    .filter(|&i| {
                        self.w.slots[i as usize].alive && self.w.subs[t as usize].get(i as usize)
                    })
                    .collect();
                if !cands.is_empty() {
                    pubs.push((cands[self.w.script_rng.random_range(0..cands.len())], t));
                }
            }
            Publishers::All => {
                for t in 0..ntopics {
                    for i in 0..n as u32 {
                        if self.w.slots[i as usize].alive && self.w.subs[t].get(i as usize) {
                            pubs.push((i, t as u16));
                        }
                    }
                }
            }
        }
        let snapshot: Vec<u32> = self
            .w
            .slots
            .iter()
            .map(|s| if s.alive { s.inc } else { DEAD })
            .collect();
        let first = self.w.msgs.len() as u32;
        for (k, (p, t)) in pubs.into_iter().enumerate() {
            let mut payload = vec![0u8; wl.payload_bytes.max(24)];
            payload[..8].copy_from_slice(&self.seed.to_le_bytes());
            payload[8..12].copy_from_slice(&r.to_le_bytes());
            payload[12..16].copy_from_slice(&p.to_le_bytes());
            payload[16..24].copy_from_slice(&(k as u64).to_le_bytes());
            payload.truncate(wl.payload_bytes.max(24));
            let topic = self.w.topics[t as usize];
            // Register before the call: a protocol may deliver locally at once.
            let mut result = None;
            let Some(node) = self.nodes[p as usize].as_mut() else {
                continue;
            };
            let now = self.w.now;
            if let Ok(id) = node.publish(Time::from_micros(now), topic, Bytes::from(payload))
                && !self.w.msg_by_id.contains_key(&id)
            {
                self.w.msg_by_id.insert(id, self.w.msgs.len() as u32);
                self.w.msgs.push(MsgRec {
                    round: r,
                    publisher: p,
                    topic: t,
                    published: now,
                    delivered: Bitset::new(n),
                    delivered_count: 0,
                    eligible_end: 0,
                    credited_end: 0,
                    gossip_frames: 0,
                    ldh: 0,
                });
                result = Some(id);
            }
            self.w.trace.rec(now, 9, p, u64::from(result.is_some()));
            self.w.drain(p, node);
        }
        let last = self.w.msgs.len() as u32;
        self.w.rounds.push(RoundRec {
            msgs: first..last,
            open: true,
            pending: 0,
            snapshot,
            ratio: None,
        });
        // Deliveries made during the publish calls happened before the round existed.
        self.w.recount_pending(r);
        if self.w.rounds[r as usize].pending == 0 {
            self.w.close_round(r);
        } else {
            self.w
                .push(self.w.now + ms(wl.round_timeout_ms), Ev::RoundTimeout(r));
        }
    }

    fn measure_overlay(&mut self) {
        let n = self.nodes.len();
        let mut uf = UnionFind::new(n);
        let mut degrees: Vec<u64> = Vec::new();
        let (mut live, mut isolated) = (0usize, 0usize);
        for i in 0..n {
            if !self.w.slots[i].alive {
                continue;
            }
            let Some(node) = self.nodes[i].as_ref() else {
                continue;
            };
            live += 1;
            let view = node.active_view();
            if degrees.len() <= view.len() {
                degrees.resize(view.len() + 1, 0);
            }
            degrees[view.len()] += 1;
            if view.is_empty() {
                isolated += 1;
            }
            for peer in view {
                if let Some(&j) = self.w.by_id.get(&peer)
                    && self.w.slots[j as usize].alive
                {
                    uf.union(i, j as usize);
                }
            }
        }
        let mut roots: Vec<usize> = (0..n)
            .filter(|&i| self.w.slots[i].alive)
            .map(|i| uf.find(i))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        let m = &mut self.w.m;
        m.components = roots.len();
        m.isolated = isolated;
        m.degrees = degrees;
        m.live_at_overlay = live;
        self.w
            .trace
            .rec(self.w.now, 12, live as u32, roots.len() as u64);
    }

    fn report(mut self, setup_secs: f64, wall_secs: f64) -> Outcome {
        let adversary = self.adversary_report();
        let Self {
            sc,
            seed,
            real,
            nodes,
            w,
        } = self;
        let n = nodes.len();
        let m = &w.m;
        // Per-round RMR and delivery.
        let mut rmr_per_round = Vec::new();
        let mut ldh_per_round = Vec::new();
        let mut delivery_per_round = Vec::new();
        let mut delivery_ratio: Option<f64> = None;
        for r in &w.rounds {
            let vals: Vec<f64> = w.msgs[r.msgs.start as usize..r.msgs.end as usize]
                .iter()
                .filter(|x| x.delivered_count > 0)
                .map(|x| x.gossip_frames as f64 / f64::from(x.delivered_count) - 1.0)
                .collect();
            rmr_per_round
                .push((!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64));
            let msgs = &w.msgs[r.msgs.start as usize..r.msgs.end as usize];
            ldh_per_round.push(
                msgs.iter()
                    .filter(|x| x.delivered_count > 0)
                    .map(|x| u32::from(x.ldh))
                    .max(),
            );
            delivery_per_round.push(r.ratio);
            if let Some(x) = r.ratio {
                delivery_ratio = Some(delivery_ratio.map_or(x, |d: f64| d.min(x)));
            }
        }
        let defined: Vec<f64> = rmr_per_round.iter().flatten().copied().collect();
        let rmr = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        let hop_total: u64 = m.hops.iter().sum();
        let ldh_max = m.hops.iter().rposition(|&c| c > 0).map(|h| h as u32);
        let ldh_mean = (hop_total > 0).then(|| {
            m.hops
                .iter()
                .enumerate()
                .map(|(h, &c)| h as f64 * c as f64)
                .sum::<f64>()
                / hop_total as f64
        });
        let mut hops_histogram = m.hops.clone();
        hops_histogram.truncate(ldh_max.map_or(0, |h| h as usize + 1));
        let by_kind = |v: &[u64]| -> BTreeMap<String, u64> {
            v.iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(k, c)| {
                    let name = FrameKind::from_byte(k as u8)
                        .map_or(format!("kind_{k:#04x}"), |f| f.to_string());
                    (name, *c)
                })
                .collect()
        };
        let mut counters = NodeCounters::default();
        let mut dm_attempts: BTreeMap<String, u64> = BTreeMap::new();
        let mut dm_rejected: BTreeMap<String, u64> = BTreeMap::new();
        for node in nodes.iter().flatten() {
            let s = node.stats();
            let ds = &s.direct;
            for (k, v) in crate::report::named_counts(&ds.attempts) {
                *dm_attempts.entry(k).or_default() += v;
            }
            for (k, v) in crate::report::named_counts(&ds.rejected) {
                *dm_rejected.entry(k).or_default() += v;
            }
            counters.frames_received += s.frames_received;
            counters.frames_sent += s.frames_sent;
            counters.frames_rejected += s.frames_rejected.total();
            counters.frames_from_unknown_peer += s.frames_from_unknown_peer;
            counters.transmits_dropped += s.transmits_dropped;
            counters.events_dropped += s.events_dropped;
            counters.dials_failed += s.dials_failed;
            for (k, v) in crate::report::named_counts(&s.closes) {
                *counters.closes.entry(k).or_default() += v;
            }
            let b = &s.broadcast;
            for (k, v) in [
                ("grafts_sent", b.grafts_sent),
                ("prunes_sent", b.prunes_sent),
                ("reparents", b.reparents),
                ("place_updates", b.place_updates),
                ("graft_misses", b.graft_misses),
                ("graft_exhausted", b.graft_exhausted),
            ] {
                *counters.broadcast.entry(k.to_string()).or_default() += v;
            }
            for (k, v) in crate::report::named_counts(&b.dropped) {
                *counters
                    .broadcast
                    .entry(format!("dropped_{k}"))
                    .or_default() += v;
            }
        }
        let sent: Vec<u64> = w.slots.iter().map(|s| s.bytes_sent).collect();
        let recv: Vec<u64> = w.slots.iter().map(|s| s.bytes_recv).collect();
        let bytes_per_node = BytesPerNode {
            sent_mean: sent.iter().sum::<u64>() as f64 / n as f64,
            sent_max: sent.iter().copied().max().unwrap_or(0),
            received_mean: recv.iter().sum::<u64>() as f64 / n as f64,
            received_max: recv.iter().copied().max().unwrap_or(0),
        };
        let topic_scenario = sc.workload.subscribers_per_topic.is_some();
        let (disc_report, discovery_ms, find_agent_success_ratio) = match w.disc {
            Some(d) => {
                let (r, p, f) = d.finish(w.now, sent.iter().sum(), n);
                (Some(r), p, f)
            }
            None => (None, None, None),
        };
        let dm = &w.dm;
        let direct = (sc.direct.messages > 0).then(|| DirectSummary {
            messages: dm.msgs.len() as u64 + dm.send_errors,
            send_errors: dm.send_errors,
            delivered: dm.delivered,
            duplicate_deliveries: dm.duplicates,
            misdelivered: dm.misdelivered,
            receipts: dm.receipts,
            receipts_by_path: dm.receipts_by_path.clone(),
            retries: dm.retries,
            failures: dm.failures.clone(),
            attempts_by_path: dm_attempts,
            rejected: dm_rejected,
            latency_ms: dm.latency.percentiles(),
            receipt_latency_ms: dm.receipt_latency.percentiles(),
        });
        if let Some(d) = &direct
            && w.rounds.is_empty()
        {
            // A direct scenario: its delivery ratio is the direct one (delivered exactly once
            // to the right recipient; duplicates and misdeliveries count against it).
            let good = d
                .delivered
                .saturating_sub(d.duplicate_deliveries + d.misdelivered);
            delivery_ratio = Some(if d.messages == 0 {
                0.0
            } else {
                good as f64 / d.messages as f64
            });
        }
        let latency_cdf = m.latency.cdf(200);
        let latency_ms = m.latency.percentiles();
        let report = Report {
            scenario: sc.name.clone(),
            nodes: n,
            seed,
            delivery_ratio,
            rmr,
            ldh_max,
            latency_ms,
            isolated_nodes: m.isolated,
            components: m.components,
            messages_processed: m.processed,
            wall_secs,
            digest: String::new(),
            discovery_ms,
            find_agent_success_ratio,
            discovery: disc_report,
            crypto: if real { "real" } else { "stand-in" }.into(),
            setup_secs,
            max_rss_mb: max_rss_mb(),
            frames_per_wall_sec: if wall_secs > 0.0 {
                m.processed as f64 / wall_secs
            } else {
                0.0
            },
            sim_secs: (w.now - EPOCH_US) as f64 / 1e6,
            events_processed: m.events,
            rounds: w.rounds.len(),
            broadcasts: w.msgs.len(),
            deliveries: m.deliveries,
            duplicate_deliveries: m.duplicate_deliveries,
            deliveries_after_restart: m.deliveries_after_restart,
            delivery_per_round,
            rmr_per_round,
            ldh_per_round,
            ldh_mean,
            hops_histogram,
            degree_histogram: m.degrees.clone(),
            live_nodes_at_overlay: m.live_at_overlay,
            frames_by_kind: by_kind(&m.recv_by_kind),
            frames_sent_by_kind: by_kind(&m.sent_by_kind),
            drops: m.drops,
            bytes_per_node,
            payload_frames_subscribers: m.sub_frames,
            payload_frames_nonsubscribers: m.nonsub_frames,
            topic_sparse_nonsub_ratio: (topic_scenario && m.sub_frames > 0)
                .then(|| m.nonsub_frames as f64 / m.sub_frames as f64),
            dials: m.dials,
            dials_redundant: m.dials_redundant,
            connections: m.connections,
            node_counters: counters,
            direct,
            adversary,
            swim: w.swim.summary(
                n as f64 * (w.now - EPOCH_US) as f64 / 1e6 / 3600.0,
                Config::default().membership.probe_interval.as_secs_f64() * 1000.0,
            ),
        };
        let mut report = report;
        report.digest = w.trace.finish();
        Outcome {
            report,
            latency_cdf,
        }
    }
}

fn identity(real: bool, seed: u64, i: u32) -> Identity {
    let s = derive("x0x-sim identity v1", seed, u64::from(i), 0);
    if real {
        Identity::from_seed(s)
    } else {
        Identity::stand_in_from_seed(s)
    }
}

fn build_node(
    sc: &Scenario,
    real: bool,
    seed: u64,
    i: u32,
    inc: u32,
    ident: Identity,
    boot: &[u32],
) -> Node {
    let mut c = Config::default();
    c.bootstrap = boot.iter().map(|&b| addr_of(b)).collect();
    c.listen_addrs = vec![addr_of(i)];
    c.allow_stand_in_signatures = !real;
    // Every receiver of a sent frame gets the same buffer: share it instead of copying.
    c.share_frames = true;
    if let Some(x) = sc.node.max_connections {
        c.max_connections = x;
    }
    if let Some(x) = sc.node.keepalive_ms {
        c.keepalive_interval = Duration::from_millis(x);
    }
    if let Some(x) = sc.node.hello_timeout_ms {
        c.hello_timeout = Duration::from_millis(x);
    }
    if let Some(d) = &sc.discovery {
        c.announce.heartbeat_interval = Duration::from_secs(d.heartbeat_s);
        c.announce.identity_ttl = Duration::from_secs(d.ttl_s);
        let n = sc.nodes;
        // Node 0 is the bootstrap node of the late joiners and keeps the default caches, as
        // a well-provisioned bootstrap node would; so do the late joiners themselves.
        let full = i == 0 || d.is_late_joiner(i as usize, n);
        if let Some(cap) = d.node_cache.filter(|_| !full) {
            c.announce.max_agents = cap;
            c.announce.max_machines = cap;
            c.announce.max_users = cap;
            c.key_cache_capacity = cap;
        }
        if d.is_querier(i as usize, n) {
            c.announce.max_agents = d.querier_cache;
        }
    }
    let rng = derive("x0x-sim node rng v1", seed, u64::from(i), u64::from(inc));
    match Node::new(ident, c, rng) {
        Ok(n) => n,
        // The overrides are the only input; a zero value is a scenario error worth a panic.
        Err(e) => panic!("node config refused: {e}"),
    }
}

impl World {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn cut(&self, a: u32, b: u32) -> bool {
        self.partition_active && self.group[a as usize] != self.group[b as usize]
    }

    /// An exponential inter-arrival time for `rate` per second, microseconds (at least 1).
    fn exp_us(&mut self, rate: f64) -> u64 {
        let u: f64 = self.script_rng.random::<f64>();
        ((-(1.0 - u).ln() / rate * 1e6) as u64).max(1)
    }

    /// A uniformly random live node other than `except`.
    fn random_live(&mut self, except: u32) -> Option<u32> {
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

    fn tick_progress(&mut self) {
        let now = self.now;
        if let Some(p) = self.progress.as_mut() {
            if !p.shown && p.started.elapsed() > Duration::from_secs(2) {
                p.bar.set_draw_target(ProgressDrawTarget::stderr());
                p.shown = true;
            }
            p.bar.set_position((now - EPOCH_US) / 1000);
            p.bar.set_message(format!("{} frames", self.m.processed));
        }
    }

    /// Drains every output of node `i` after a call, then re-arms its timer.
    fn drain(&mut self, i: u32, node: &mut Node) {
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
                    Event::NeighborDown {
                        peer,
                        reason: DownReason::Dead,
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
                    Event::DirectReceipt(r) => {
                        let dm = &mut self.dm;
                        dm.receipts += 1;
                        dm.retries += u64::from(r.retries);
                        *dm.receipts_by_path
                            .entry(format!("{:?}", r.path).to_lowercase())
                            .or_default() += 1;
                        if let Some(&idx) = dm.by_id.get(&r.request_id) {
                            let sent = dm.msgs[idx as usize].sent;
                            dm.receipt_latency.record(self.now.saturating_sub(sent));
                        }
                        self.trace.rec(self.now, 15, i, u64::from(r.retries));
                    }
                    Event::DirectFailed { reason, .. } => {
                        *self.dm.failures.entry(format!("{reason:?}")).or_default() += 1;
                        self.trace.rec(self.now, 16, i, 0);
                    }
                    _ => {}
                }
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

    fn route(&mut self, i: u32, to: MachineId, kind: FrameKind, frame: Bytes) {
        if self.adversary_filter(i, kind, &frame) {
            return;
        }
        let len = frame.len() as u64;
        self.m.sent_by_kind[kind.byte() as usize] += 1;
        self.slots[i as usize].bytes_sent += len;
        let Some(&j) = self.by_id.get(&to) else {
            self.m.drops.unknown_peer += 1;
            return;
        };
        let Some(ci) = self.slots[i as usize]
            .conns
            .iter()
            .position(|c| c.peer == j)
        else {
            self.m.drops.no_connection += 1;
            return;
        };
        if self.cut(i, j) {
            self.m.drops.partition += 1;
            return;
        }
        let FrameFate::Deliver {
            delay_us,
            duplicate_extra_us,
            reordered,
        } = self.net.frame(&mut self.net_rng, i, j)
        else {
            self.m.drops.loss += 1;
            return;
        };
        let now = self.now;
        let cfg = self.net.config();
        let (bw, queue, fifo) = (cfg.bandwidth_bytes_per_sec, cfg.queue_bytes, cfg.fifo);
        let c = &mut self.slots[i as usize].conns[ci];
        let mut depart = now;
        if bw > 0 {
            let start = c.busy_until.max(now);
            let backlog = ((start - now) as u128 * u128::from(bw) / 1_000_000) as u64;
            if backlog + len > queue {
                self.m.drops.queue_full += 1;
                return;
            }
            c.busy_until = start + (u128::from(len) * 1_000_000).div_ceil(u128::from(bw)) as u64;
            depart = c.busy_until;
        }
        let mut at = depart + delay_us;
        if fifo && !reordered {
            at = at.max(c.last_arrival);
            c.last_arrival = at;
        }
        let conn = c.id;
        if let Some(extra) = duplicate_extra_us {
            self.push(
                at + extra,
                Ev::Frame {
                    from: i,
                    to: j,
                    conn,
                    bytes: frame.clone(),
                },
            );
        }
        self.push(
            at,
            Ev::Frame {
                from: i,
                to: j,
                conn,
                bytes: frame,
            },
        );
    }

    fn dial(&mut self, i: u32, addr: SocketAddr) {
        self.m.dials += 1;
        let inc = self.slots[i as usize].inc;
        let target = index_of_addr(&addr).filter(|&j| (j as usize) < self.slots.len() && j != i);
        match target {
            Some(j) if self.slots[j as usize].alive && !self.cut(i, j) => {
                let at = self.now + self.net.rtt_us(i, j);
                self.push(
                    at,
                    Ev::DialDone {
                        from: i,
                        to: j,
                        inc,
                        started: self.now,
                    },
                );
            }
            _ => {
                let at = self.now + ms(self.net.config().dial_timeout_ms);
                self.push(at, Ev::DialFail { node: i, inc, addr });
            }
        }
    }

    /// Closes `i`'s side of its connection to `peer` and schedules the notice to the other
    /// side; returns whether there was a connection.
    fn close(&mut self, i: u32, peer: MachineId) -> bool {
        let Some(&j) = self.by_id.get(&peer) else {
            return false;
        };
        let s = &mut self.slots[i as usize];
        let Some(p) = s.conns.iter().position(|c| c.peer == j) else {
            return false;
        };
        let c = s.conns.swap_remove(p);
        self.trace.rec(self.now, 13, i, u64::from(j));
        if self.slots[j as usize]
            .conns
            .iter()
            .any(|x| x.peer == i && x.id == c.id)
        {
            let at = (self.now + self.net.base_latency_us(i, j) + 1).max(c.last_arrival + 1);
            self.push(
                at,
                Ev::Disconnect {
                    node: j,
                    peer: i,
                    conn: c.id,
                },
            );
        }
        true
    }

    fn attribute_gossip(&mut self, to: u32, bytes: &[u8]) {
        let Ok(Frame::Gossip(g)) = Frame::decode(bytes) else {
            return;
        };
        let id = g.message.id();
        let Some(&mi) = self.msg_by_id.get(&id) else {
            return;
        };
        let rec = &mut self.msgs[mi as usize];
        rec.gossip_frames += 1;
        if self.subs[rec.topic as usize].get(to as usize) {
            self.m.sub_frames += 1;
        } else {
            self.m.nonsub_frames += 1;
        }
    }

    fn on_direct_message(&mut self, j: u32, id: RequestId) {
        let now = self.now;
        let dm = &mut self.dm;
        let Some(&idx) = dm.by_id.get(&id) else {
            return;
        };
        let rec = &mut dm.msgs[idx as usize];
        if rec.dst != j {
            dm.misdelivered += 1;
        } else if rec.delivered {
            dm.duplicates += 1;
        } else {
            rec.delivered = true;
            dm.delivered += 1;
            let lat = now.saturating_sub(rec.sent);
            dm.latency.record(lat);
            self.m.latency.record(lat);
        }
        self.trace.rec(now, 14, j, u64::from(idx));
    }

    fn on_delivery(&mut self, j: u32, id: MessageId, hops: u8) {
        let Some(&mi) = self.msg_by_id.get(&id) else {
            self.adversary_unknown_delivery(j);
            return;
        };
        let now = self.now;
        let rec = &mut self.msgs[mi as usize];
        if j == rec.publisher {
            return;
        }
        if self.slots[j as usize].started_at > rec.published {
            // A node (re)started after the publish catching up on history: not a receipt of
            // a broadcast it was there for.
            self.m.deliveries_after_restart += 1;
            return;
        }
        if rec.delivered.get(j as usize) {
            self.m.duplicate_deliveries += 1;
            self.adversary_redelivery(j);
            return;
        }
        rec.delivered.set(j as usize);
        rec.delivered_count += 1;
        self.m.deliveries += 1;
        self.m.latency.record(now - rec.published);
        self.m.hops[hops as usize] += 1;
        rec.ldh = rec.ldh.max(hops);
        self.trace
            .rec(now, 14, j, (u64::from(mi) << 8) | u64::from(hops));
        let (r, topic) = (rec.round, rec.topic);
        let round = &mut self.rounds[r as usize];
        if round.open
            && round.snapshot[j as usize] == self.slots[j as usize].inc
            && self.subs[topic as usize].get(j as usize)
        {
            round.pending = round.pending.saturating_sub(1);
            if round.pending == 0 {
                self.close_round(r);
            }
        }
    }

    /// Recomputes the pending count of an open round: eligible nodes (live since the
    /// snapshot, subscribed, not the publisher) that have not delivered.
    fn recount_pending(&mut self, r: u32) {
        let round = &self.rounds[r as usize];
        let mut live = Bitset::new(self.slots.len());
        for (i, &inc) in round.snapshot.iter().enumerate() {
            if inc != DEAD && self.slots[i].alive && self.slots[i].inc == inc {
                live.set(i);
            }
        }
        let mut pending = 0u64;
        for mi in round.msgs.clone() {
            let rec = &self.msgs[mi as usize];
            let subs = &self.subs[rec.topic as usize];
            let p = rec.publisher as usize;
            let eligible = live.count_and(Some(subs)) - u64::from(live.get(p) && subs.get(p));
            pending += eligible - rec.delivered.count_and2(&live, subs);
        }
        self.rounds[r as usize].pending = pending;
    }

    /// Node `j` crashed or left: it will not deliver the open round's messages.
    fn node_gone(&mut self, j: u32) {
        let Some(r) = self.rounds.iter().rposition(|x| x.open) else {
            return;
        };
        let round = &self.rounds[r];
        if round.snapshot[j as usize] != self.slots[j as usize].inc {
            return;
        }
        let mut gone = 0u64;
        for mi in round.msgs.clone() {
            let rec = &self.msgs[mi as usize];
            if rec.publisher != j
                && self.subs[rec.topic as usize].get(j as usize)
                && !rec.delivered.get(j as usize)
            {
                gone += 1;
            }
        }
        let round = &mut self.rounds[r];
        round.pending = round.pending.saturating_sub(gone);
        if round.pending == 0 {
            self.close_round(r as u32);
        }
    }

    /// Ends round `r`: computes its delivery ratio and schedules what comes next.
    fn close_round(&mut self, r: u32) {
        let n = self.slots.len();
        let round = &mut self.rounds[r as usize];
        if !round.open {
            return;
        }
        round.open = false;
        let snapshot = std::mem::take(&mut round.snapshot);
        let mut stable = Bitset::new(n);
        for (i, &inc) in snapshot.iter().enumerate() {
            if inc != DEAD && self.slots[i].alive && self.slots[i].inc == inc {
                stable.set(i);
            }
        }
        let mut ratio: Option<f64> = None;
        for mi in round.msgs.clone() {
            let rec = &mut self.msgs[mi as usize];
            let subs = &self.subs[rec.topic as usize];
            let p = rec.publisher as usize;
            let eligible = stable.count_and(Some(subs)) - u64::from(stable.get(p) && subs.get(p));
            let credited = rec.delivered.count_and2(&stable, subs);
            rec.eligible_end = eligible as u32;
            rec.credited_end = credited as u32;
            if eligible > 0 {
                let x = credited as f64 / eligible as f64;
                ratio = Some(ratio.map_or(x, |y: f64| y.min(x)));
            }
        }
        round.ratio = ratio;
        self.trace
            .rec(self.now, 15, r, ratio.map_or(u64::MAX, f64::to_bits));
        if r + 1 < self.total_rounds {
            self.push(self.now + self.round_gap_us, Ev::Round(r + 1));
        } else {
            let end = (self.now + self.drain_us).max(self.script_end + self.drain_us);
            self.push(end, Ev::End);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{CryptoMode, Latency};

    fn scenario(n: usize) -> Scenario {
        Scenario {
            nodes: n,
            crypto: CryptoMode::StandIn,
            ..Scenario::default()
        }
    }

    fn connect(w: &mut World, a: u32, b: u32) {
        let id = w.next_conn;
        w.next_conn += 1;
        for (x, y) in [(a, b), (b, a)] {
            w.slots[x as usize].alive = true;
            w.slots[x as usize].conns.push(Conn {
                peer: y,
                id,
                busy_until: 0,
                last_arrival: 0,
            });
        }
    }

    fn frames_queued(w: &World) -> usize {
        w.queue
            .iter()
            .filter(|q| matches!(q.ev, Ev::Frame { .. }))
            .count()
    }

    #[test]
    fn partition_blocks_frames_and_dials_then_heals() {
        let sc = scenario(2);
        let mut sim = Sim::new(&sc, 1);
        let w = &mut sim.w;
        connect(w, 0, 1);
        let to = w.ids[1];
        w.group = vec![0, 1];
        w.partition_active = true;
        w.route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        assert_eq!((w.m.drops.partition, frames_queued(w)), (1, 0));
        w.dial(0, addr_of(1));
        assert!(w.queue.iter().any(|q| matches!(q.ev, Ev::DialFail { .. })));
        w.partition_active = false;
        w.route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        assert_eq!((w.m.drops.partition, frames_queued(w)), (1, 1));
        w.dial(0, addr_of(1));
        assert!(w.queue.iter().any(|q| matches!(q.ev, Ev::DialDone { .. })));
    }

    #[test]
    fn frames_to_a_crashed_node_vanish_silently() {
        let sc = scenario(2);
        let mut sim = Sim::new(&sc, 1);
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        sim.w
            .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        sim.crash(1);
        let q = std::iter::from_fn(|| sim.w.queue.pop())
            .find(|q| matches!(q.ev, Ev::Frame { .. }))
            .unwrap();
        sim.w.now = q.at;
        if let Ev::Frame {
            from,
            to,
            conn,
            bytes,
        } = q.ev
        {
            sim.deliver_frame(from, to, conn, bytes);
        }
        assert_eq!(sim.w.m.drops.dead_target, 1);
        assert_eq!(sim.w.m.processed, 0);
        // The survivor still has its side open: nobody told it.
        assert_eq!(sim.w.slots[0].conns.len(), 1);
    }

    #[test]
    fn loss_and_latency_follow_the_model() {
        let mut sc = scenario(2);
        sc.network.loss = 0.1;
        sc.network.loss_model = crate::scenario::LossModel::Drop;
        sc.network.jitter_ms = 5.0;
        sc.network.fifo = false;
        sc.network.latency = Latency::Uniform {
            min_ms: 10.0,
            max_ms: 50.0,
        };
        let mut sim = Sim::new(&sc, 9);
        sim.w.queue.clear();
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        for _ in 0..20_000 {
            sim.w
                .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        }
        let lost = sim.w.m.drops.loss;
        assert!((1_800..2_200).contains(&lost), "lost {lost} of 20000");
        let base = sim.w.net.base_latency_us(0, 1);
        assert!((10_000..=50_000).contains(&base));
        let now = sim.w.now;
        for q in sim.w.queue.iter() {
            let d = q.at - now;
            assert!((base..=base + 5_000).contains(&d), "delay {d} base {base}");
        }
    }

    #[test]
    fn fifo_keeps_a_connection_in_order() {
        let mut sc = scenario(2);
        sc.network.jitter_ms = 20.0;
        let mut sim = Sim::new(&sc, 3);
        sim.w.queue.clear();
        connect(&mut sim.w, 0, 1);
        let to = sim.w.ids[1];
        for k in 0..100u64 {
            sim.w.now = EPOCH_US + k;
            sim.w
                .route(0, to, FrameKind::Ping, Bytes::from_static(b"\x01\x18x"));
        }
        let mut v: Vec<(u64, u64)> = sim.w.queue.iter().map(|q| (q.seq, q.at)).collect();
        v.sort_unstable();
        assert!(v.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
