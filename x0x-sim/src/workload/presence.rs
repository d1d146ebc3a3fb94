//! The presence workload (`[presence]`): what the nodes' presence layer reports, measured
//! against what the simulator knows happened.
//!
//! * **Online latency**: an `AgentOnline` at node `j` for node `i`'s agent, timed from the
//!   `PeerUp` of `j`'s connection to `i`: the target is one beacon interval at most.
//! * **Crash detection**: at each crash, every live node that has the crashed agent online is
//!   a (crashed, watcher) pair; its `AgentOffline` (any reason) ends the pair, timed from the
//!   crash. Pairs never ended count as undetected.
//! * **False offline**: an `AgentOffline` saying `failed` or `left` for an agent whose node is
//!   alive (out of view is not a claim that it failed).
//! * **FOAF find**: from `finds_at_ms` on, `finds` look-ups spread over `finds_spread_ms`, each
//!   from a random live node for a node one or two connections away at that moment, with
//!   `discover_agent_by_id(target, find_ttl, find_timeout_ms)`.
//! * **Traffic**: bytes of beacon, query and answer frames sent, per node per second.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use x0x_proto::AgentId;
use x0x_proto::node::Event;
use x0x_proto::presence::{OfflineReason, PresenceQueryId};

use crate::report::Percentiles;
use crate::sim::{Ev, Sim, World, ms};
use crate::stats::LatencyRecorder;

/// `[presence]` in a scenario (the nodes' presence settings are `[node.presence]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSpec {
    /// FOAF look-ups. Default 1000.
    pub finds: usize,
    /// When the first look-up is made, after the warm-up, milliseconds. Default 600 000.
    pub finds_at_ms: u64,
    /// Over how long the look-ups are spread, milliseconds. Default 60 000.
    pub finds_spread_ms: u64,
    /// TTL of a look-up. Default 2.
    pub find_ttl: u8,
    /// Timeout of a look-up, milliseconds. Default 5 000.
    pub find_timeout_ms: u64,
}

impl Default for PresenceSpec {
    fn default() -> Self {
        Self {
            finds: 1000,
            finds_at_ms: 600_000,
            finds_spread_ms: 60_000,
            find_ttl: 2,
            find_timeout_ms: 5000,
        }
    }
}

/// What presence reported (report key `presence`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceReport {
    /// The nodes' beacon interval, milliseconds.
    pub beacon_interval_ms: f64,
    /// `AgentOnline` after the connection came up: p99, milliseconds.
    pub online_p99_ms: Option<f64>,
    /// Its percentiles.
    pub online_ms: Option<Percentiles>,
    /// Online samples.
    pub online_samples: u64,
    /// (crashed agent, watcher) pairs.
    pub offline_pairs: u64,
    /// Share of them ended by an `AgentOffline`.
    pub offline_detected_ratio: Option<f64>,
    /// Crash → `AgentOffline`, mean, milliseconds.
    pub offline_mean_ms: Option<f64>,
    /// Crash → `AgentOffline`, max, milliseconds.
    pub offline_max_ms: Option<f64>,
    /// `AgentOffline` (failed or left) for an agent whose node is alive.
    pub false_offline: u64,
    /// `AgentOffline` (out of view) for an agent whose node is alive: not a failure claim.
    pub out_of_view_alive: u64,
    /// Live nodes × measured time, hours.
    pub node_hours: f64,
    /// FOAF look-ups made.
    pub foaf_finds: u64,
    /// Share of them that found the target.
    pub foaf_find_ratio: Option<f64>,
    /// Beacon, query and answer bytes sent per node per second.
    pub bytes_per_node_per_sec: f64,
}

/// The run's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct PresenceRun {
    agents: BTreeMap<AgentId, u32>,
    /// When node `j`'s connection to node `i` came up: `(j, i)`.
    up_at: BTreeMap<(u32, u32), u64>,
    /// Agents (by node) each node has online.
    online: BTreeMap<u32, BTreeSet<u32>>,
    online_us: LatencyRecorder,
    /// (crashed, watcher) → crash time, until detected.
    pairs: BTreeMap<(u32, u32), u64>,
    pairs_total: u64,
    detected_ms: Vec<f64>,
    false_offline: u64,
    out_of_view_alive: u64,
    finds: BTreeMap<(u32, PresenceQueryId), u32>,
    /// Look-ups that ended inside the call that started them (the asker held the record).
    early: BTreeMap<(u32, PresenceQueryId), bool>,
    finds_made: u64,
    found: u64,
    pub(crate) bytes: u64,
}

impl PresenceRun {
    pub(crate) fn new(agents: BTreeMap<AgentId, u32>) -> Self {
        Self {
            agents,
            ..Self::default()
        }
    }

    /// A presence-relevant event of node `i`.
    pub(crate) fn on_event(
        &mut self,
        i: u32,
        e: &Event,
        w_now: u64,
        alive: &dyn Fn(u32) -> bool,
        by_machine: &dyn Fn(&x0x_proto::MachineId) -> Option<u32>,
    ) {
        match e {
            Event::PeerUp { peer, .. } => {
                if let Some(j) = by_machine(peer) {
                    self.up_at.insert((i, j), w_now);
                }
            }
            Event::AgentOnline { agent_id, .. } => {
                let Some(&j) = self.agents.get(agent_id) else {
                    return;
                };
                if let Some(up) = self.up_at.get(&(i, j)) {
                    self.online_us.record(w_now.saturating_sub(*up));
                }
                self.online.entry(i).or_default().insert(j);
            }
            Event::AgentOffline { agent_id, reason } => {
                let Some(&j) = self.agents.get(agent_id) else {
                    return;
                };
                if let Some(s) = self.online.get_mut(&i) {
                    s.remove(&j);
                }
                if let Some(crash) = self.pairs.remove(&(j, i)) {
                    self.detected_ms
                        .push(w_now.saturating_sub(crash) as f64 / 1000.0);
                } else if alive(j) {
                    if *reason == OfflineReason::OutOfView {
                        self.out_of_view_alive += 1;
                    } else {
                        self.false_offline += 1;
                    }
                }
            }
            Event::PresenceQueryFinished { query, agents } => {
                let found = |target: u32| {
                    let want = self
                        .agents
                        .iter()
                        .find(|(_, n)| **n == target)
                        .map(|(a, _)| *a);
                    agents.iter().any(|a| Some(a.agent_id) == want)
                };
                match self.finds.remove(&(i, *query)) {
                    Some(target) => self.found += u64::from(found(target)),
                    None => {
                        // Its target is not known yet: the call that started it is running.
                        let ids: Vec<AgentId> = agents.iter().map(|a| a.agent_id).collect();
                        let hit = ids.iter().filter_map(|a| self.agents.get(a)).count() > 0;
                        self.early.insert((i, *query), hit);
                    }
                }
            }
            _ => {}
        }
    }

    /// Node `j` crashed at `now`: every node that has its agent online watches for the
    /// report; its own view, and what it watched for, are gone.
    pub(crate) fn on_crash(&mut self, j: u32, now: u64) {
        for (&watcher, set) in &self.online {
            if watcher != j && set.contains(&j) {
                self.pairs.insert((j, watcher), now);
                self.pairs_total += 1;
            }
        }
        // A watcher that crashes reports nothing any more: its pending pairs do not count.
        let before = self.pairs.len();
        self.pairs.retain(|(_, watcher), _| *watcher != j);
        self.pairs_total -= (before - self.pairs.len()) as u64;
        self.online.remove(&j);
        self.up_at.retain(|(a, b), _| *a != j && *b != j);
    }

    pub(crate) fn report(
        &self,
        beacon_interval: Duration,
        node_hours: f64,
        n: usize,
        secs: f64,
    ) -> PresenceReport {
        let pct: Option<Percentiles> = self.online_us.percentiles();
        let detected = self.detected_ms.len() as f64;
        PresenceReport {
            beacon_interval_ms: beacon_interval.as_secs_f64() * 1000.0,
            online_p99_ms: pct.as_ref().map(|p| p.p99),
            online_ms: pct,
            online_samples: self.online_us.count(),
            offline_pairs: self.pairs_total,
            offline_detected_ratio: (self.pairs_total > 0)
                .then(|| detected / self.pairs_total as f64),
            offline_mean_ms: (!self.detected_ms.is_empty())
                .then(|| self.detected_ms.iter().sum::<f64>() / detected),
            offline_max_ms: self.detected_ms.iter().copied().reduce(f64::max),
            false_offline: self.false_offline,
            out_of_view_alive: self.out_of_view_alive,
            node_hours,
            foaf_finds: self.finds_made,
            foaf_find_ratio: (self.finds_made > 0)
                .then(|| self.found as f64 / self.finds_made as f64),
            bytes_per_node_per_sec: if secs > 0.0 && n > 0 {
                self.bytes as f64 / n as f64 / secs
            } else {
                0.0
            },
        }
    }
}

impl World {
    /// Queues the look-ups of a presence scenario.
    pub(crate) fn schedule_presence(&mut self, spec: &PresenceSpec) {
        let start = self.warmup_end + ms(spec.finds_at_ms);
        for k in 0..spec.finds {
            let at = start + ms(spec.finds_spread_ms) * k as u64 / spec.finds.max(1) as u64;
            self.push(at, Ev::PresenceFind);
        }
        if spec.finds > 0 {
            self.script_end = self
                .script_end
                .max(start + ms(spec.finds_spread_ms + spec.find_timeout_ms));
        }
    }
}

impl Sim<'_> {
    /// One look-up: a random live node asks for a node one or two connections away.
    pub(crate) fn presence_find(&mut self) {
        let Some(spec) = self.sc.presence.clone() else {
            return;
        };
        let n = self.nodes.len();
        let w = &mut self.w;
        let Some(asker) = (0..64)
            .map(|_| w.script_rng.random_range(0..n) as u32)
            .find(|&i| w.slots[i as usize].alive && !w.slots[i as usize].conns.is_empty())
        else {
            return;
        };
        let first: Vec<u32> = w.slots[asker as usize]
            .conns
            .iter()
            .map(|c| c.peer)
            .collect();
        let mid = first[w.script_rng.random_range(0..first.len())];
        let second: Vec<u32> = w.slots[mid as usize]
            .conns
            .iter()
            .map(|c| c.peer)
            .filter(|&p| p != asker)
            .collect();
        let target = if second.is_empty() || w.script_rng.random_bool(0.5) {
            mid
        } else {
            second[w.script_rng.random_range(0..second.len())]
        };
        let Some(agent) = self.nodes[target as usize]
            .as_ref()
            .map(x0x_proto::Node::agent_id)
        else {
            return;
        };
        let (ttl, timeout) = (spec.find_ttl, Duration::from_millis(spec.find_timeout_ms));
        let mut q = None;
        self.call(asker, |node, now| {
            q = node.discover_agent_by_id(now, agent, ttl, timeout).ok();
        });
        if let (Some(run), Some(q)) = (self.w.presence.as_mut(), q) {
            run.finds_made += 1;
            match run.early.remove(&(asker, q)) {
                // Ended at once: the asker held a record, the one sought (a find returns no
                // other agent's).
                Some(hit) => run.found += u64::from(hit),
                None => {
                    run.finds.insert((asker, q), target);
                }
            }
        }
    }
}
