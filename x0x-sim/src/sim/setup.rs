//! Building a run: identities, nodes, subscriptions, start times and the script's events.
//!
//! Node `i` starts at `start_window_ms · i / n`, node 0 alone and every other bootstrapping
//! to one random earlier node (or the scenario's `bootstrap_nodes`). The choices come from
//! the script RNG in a fixed order: subscribers, then bootstraps, then the script's draws.

use std::collections::BinaryHeap;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use x0x_proto::wire::TopicId;
use x0x_proto::{Config, Identity, MachineId, Node};

use super::event::Ev;
use super::hostile;
use super::trace::Trace;
use super::world::{IdMap, choose_k};
use super::{EPOCH_US, Metrics, Sim, Slot, World, derive, ms};
use crate::adversary::Adversary;
use crate::net::{LinkModel, addr_of};
use crate::scenario::{Scenario, Workload};
use crate::stats::Bitset;
use crate::workload::direct::{self, DirectRun};
use crate::workload::discovery::DiscoveryState;
use crate::workload::swim::SwimTrack;

impl<'a> Sim<'a> {
    /// Builds the nodes and the world of `sc` at `seed`, with the whole script queued.
    pub(super) fn new(sc: &'a Scenario, seed: u64) -> Self {
        // Sybils come on top of the scenario's nodes.
        let roles = hostile::assign_roles(sc, seed);
        let n = sc.nodes.max(roles.len());
        let real = sc.real_crypto();
        let mut script_rng = ChaCha8Rng::from_seed(derive("x0x-sim script rng v1", seed, 0, 0));
        let identities: Vec<Identity> = (0..n).map(|i| identity(real, seed, i as u32)).collect();
        let ids: Vec<MachineId> = identities
            .iter()
            .map(|id| id.machine.machine_id())
            .collect();
        let mut subs = subscriptions(&sc.workload, n, &mut script_rng);
        let mut adv = Adversary {
            roles,
            replay_age_us: sc.adversary.as_ref().map_or(0, |a| ms(a.replay_age_ms)),
            ..Default::default()
        };
        hostile::mask_subscribers(&mut adv, &mut subs, n);
        let warmup_end = EPOCH_US + ms(sc.warmup_ms);
        let mut nodes = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n);
        for (i, ident) in identities.into_iter().enumerate() {
            let (at, boot) = start_and_bootstrap(sc, n, i, warmup_end, &mut script_rng);
            nodes.push(Some(build_node(sc, real, seed, i as u32, 0, ident, &boot)));
            starts.push(at);
        }
        let mut w = World::new(sc, seed, ids, subs, script_rng, adv);
        w.schedule(sc, starts);
        let mut sim = Self {
            sc,
            seed,
            real,
            nodes,
            w,
        };
        sim.schedule_adversary();
        if sc.presence.is_some() {
            let agents = (0..n as u32)
                .filter_map(|i| Some((sim.nodes[i as usize].as_ref()?.agent_id(), i)))
                .collect();
            sim.w.presence = Some(crate::workload::presence::PresenceRun::new(agents));
        }
        if let Some(run) = &sim.w.spam
            && let Some(spammer) = sim.nodes[run.spammer as usize].as_ref().map(Node::agent_id)
        {
            sim.block_spammer(spammer);
        }
        sim
    }

    /// Upper bound of the simulated end time, for the progress bar.
    pub(super) fn end_estimate_us(&self) -> u64 {
        let wl = &self.sc.workload;
        let rounds = self.w.warmup_end
            + ms(wl.start_ms)
            + wl.rounds as u64 * ms(wl.round_timeout_ms + wl.round_gap_ms);
        rounds.max(self.w.script_end) + self.w.drain_us
    }
}

impl World {
    /// The world of `sc` before anything happened: every node down, nothing queued.
    fn new(
        sc: &Scenario,
        seed: u64,
        ids: Vec<MachineId>,
        subs: Vec<Bitset>,
        script_rng: ChaCha8Rng,
        adv: Adversary,
    ) -> Self {
        let n = ids.len();
        let mut by_id = IdMap::default();
        for (i, id) in ids.iter().enumerate() {
            by_id.insert(*id, i as u32);
        }
        let wl = &sc.workload;
        let warmup_end = EPOCH_US + ms(sc.warmup_ms);
        Self {
            now: EPOCH_US,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: (0..n).map(|_| Slot::default()).collect(),
            ids,
            by_id,
            net: LinkModel::new(sc.network.clone(), seed),
            net_rng: ChaCha8Rng::from_seed(derive("x0x-sim network rng v1", seed, 0, 0)),
            script_rng,
            partition_active: false,
            group: Vec::new(),
            next_conn: 1,
            topics: (0..wl.topics)
                .map(|t| TopicId::from_name(&format!("x0x-sim/topic/{t}")))
                .collect(),
            subs,
            msgs: Vec::new(),
            msg_by_id: IdMap::default(),
            rounds: Vec::new(),
            m: Metrics::new(),
            trace: Trace::new(),
            progress: None,
            warmup_end,
            script_end: script_end(sc, warmup_end),
            drain_us: ms(sc.drain_ms),
            round_gap_us: ms(wl.round_gap_ms),
            total_rounds: wl.rounds as u32,
            disc: sc.discovery.as_ref().map(|_| DiscoveryState::default()),
            dm: DirectRun::new(n),
            swim: SwimTrack::default(),
            adv,
            spam: sc
                .spam
                .as_ref()
                .map(|s| crate::workload::spam::SpamRun::new(s, n, seed)),
            presence: None,
            collab: sc
                .collab
                .as_ref()
                .map(crate::workload::collab::CollabRun::new),
            flood: sc.flood.as_ref().map(|_| Default::default()),
            recent_publishes: Default::default(),
            published_in_60s_max: 0,
        }
    }

    /// Queues the script: direct sends, node starts (`starts[i]` for node `i`), the discovery
    /// steps, the overlay measurement, the faults, the presence look-ups, and the first round
    /// (or the end).
    fn schedule(&mut self, sc: &Scenario, starts: Vec<u64>) {
        let n = starts.len();
        let warmup_end = self.warmup_end;
        for k in 0..sc.direct.messages {
            self.push(
                direct::send_time(sc, warmup_end, k),
                Ev::DirectSend(k as u32),
            );
        }
        // Discovery scenarios hold the measured new agents and late joiners back.
        let (held_from, _) = sc.discovery.as_ref().map_or((n, 0), |d| d.held_back(n));
        for (i, at) in starts.into_iter().enumerate().take(held_from) {
            self.push(at, Ev::Start(i as u32));
        }
        if let Some(d) = &sc.discovery {
            self.schedule_discovery(d, n);
        }
        let wl = &sc.workload;
        let overlay_at = warmup_end + ms(sc.overlay_at_ms.unwrap_or(wl.start_ms));
        self.push(overlay_at, Ev::Overlay);
        if let Some(c) = &sc.crash {
            self.push(warmup_end + ms(c.at_ms), Ev::Crash);
        }
        if let Some(p) = &sc.partition {
            self.push(warmup_end + ms(p.at_ms), Ev::PartitionStart);
            self.push(warmup_end + ms(p.at_ms + p.duration_ms), Ev::PartitionEnd);
        }
        if let Some(c) = &sc.churn {
            let start = warmup_end + ms(c.start_ms);
            if c.leave_per_sec > 0.0 {
                let d = self.exp_us(c.leave_per_sec);
                self.push(start + d, Ev::ChurnLeave);
            }
            if c.join_per_sec > 0.0 {
                let d = self.exp_us(c.join_per_sec);
                self.push(start + d, Ev::ChurnJoin);
            }
        }
        if let Some(p) = &sc.presence {
            self.schedule_presence(p);
        }
        if let Some(f) = &sc.flood {
            self.schedule_flood(f);
        }
        if let Some(c) = &sc.collab {
            let heal = sc
                .partition
                .as_ref()
                .map(|p| warmup_end + ms(p.at_ms + p.duration_ms));
            self.schedule_collab(c, heal);
        }
        if wl.rounds > 0 {
            self.push(warmup_end + ms(wl.start_ms), Ev::Round(0));
        } else {
            self.push(self.script_end + self.drain_us, Ev::End);
        }
    }
}

/// The subscribers of each topic: every node, or `subscribers_per_topic` drawn at random.
fn subscriptions(wl: &Workload, n: usize, rng: &mut ChaCha8Rng) -> Vec<Bitset> {
    (0..wl.topics)
        .map(|_| match wl.subscribers_per_topic {
            None => Bitset::full(n),
            Some(k) => {
                let mut b = Bitset::new(n);
                let mut idx: Vec<u32> = (0..n as u32).collect();
                let k = k.min(n);
                choose_k(rng, &mut idx, k);
                for &i in &idx[..k] {
                    b.set(i as usize);
                }
                b
            }
        })
        .collect()
}

/// When node `i` of `n` starts and whom it bootstraps to.
fn start_and_bootstrap(
    sc: &Scenario,
    n: usize,
    i: usize,
    warmup_end: u64,
    rng: &mut ChaCha8Rng,
) -> (u64, Vec<u32>) {
    if let Some((at, target)) = hostile::sybil_start(sc, warmup_end, i) {
        return (at, vec![target]);
    }
    let late = sc
        .discovery
        .as_ref()
        .is_some_and(|d| d.is_late_joiner(i, n));
    let boot = if i == 0 {
        Vec::new()
    } else if late {
        // Late joiners enter through the bootstrap node (see `DiscoverySpec::configure`).
        vec![0]
    } else if sc.bootstrap_nodes.is_empty() {
        vec![rng.random_range(0..i) as u32]
    } else {
        sc.bootstrap_nodes
            .iter()
            .filter(|&&b| b != i && b < n)
            .map(|&b| b as u32)
            .collect()
    };
    let window = ms(sc.start_window_ms);
    (EPOCH_US + window * i as u64 / sc.nodes.max(1) as u64, boot)
}

/// When the last scripted event is due: the overlay measurement, the end of the faults, the
/// last direct message or the end of the discovery script.
fn script_end(sc: &Scenario, warmup_end: u64) -> u64 {
    let mut end = warmup_end + ms(sc.overlay_at_ms.unwrap_or(sc.workload.start_ms));
    if let Some(c) = &sc.crash {
        end = end.max(warmup_end + ms(c.at_ms + c.restart_after_ms.unwrap_or(0)));
    }
    if let Some(p) = &sc.partition {
        end = end.max(warmup_end + ms(p.at_ms + p.duration_ms));
    }
    if let Some(c) = &sc.churn {
        end = end.max(warmup_end + ms(c.start_ms + c.duration_ms));
    }
    if sc.direct.messages > 0 {
        end = end.max(direct::send_time(sc, warmup_end, sc.direct.messages - 1));
    }
    if let Some(d) = &sc.discovery {
        end = end.max(warmup_end + ms(d.phases().end_ms));
    }
    end
}

/// Node `i`'s identity at `seed`: real ML-DSA-65 keys, or stand-ins.
pub(crate) fn identity(real: bool, seed: u64, i: u32) -> Identity {
    let s = derive("x0x-sim identity v1", seed, u64::from(i), 0);
    if real {
        Identity::from_seed(s)
    } else {
        Identity::stand_in_from_seed(s)
    }
}

/// Node `i` (incarnation `inc`) with the scenario's config overrides, bootstrapping to the
/// nodes `boot`.
pub(crate) fn build_node(
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
    // Presence beacons would change every other scenario's traffic and digests: it runs only
    // where a scenario asks for it.
    c.presence.enabled = sc.presence.is_some();
    // The simulated addresses are the ones peers see: nothing to discover, nothing to punch.
    c.nat.enabled = false;
    // No node of a run restarts with a saved cache: keeping one would only cost memory (a
    // 100 000-node run would hold gigabytes of it).
    c.peer_cache.capacity = 0;
    sc.node.apply(&mut c);
    if let Some(d) = &sc.discovery {
        d.configure(&mut c, i as usize, sc.nodes);
    }
    let rng = derive("x0x-sim node rng v1", seed, u64::from(i), u64::from(inc));
    match Node::new(ident, c, rng) {
        Ok(n) => n,
        // `Scenario::validate` refused every setting `Node::new` refuses.
        Err(e) => unreachable!("node settings passed Scenario::validate: {e}"),
    }
}
