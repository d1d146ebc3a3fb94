//! The discovery workload: announcements, late joiners and `find_agent` look-ups.
//!
//! A scenario with a `[discovery]` table ([`DiscoverySpec`]) runs this script after the
//! warm-up, with every node announcing itself when it starts (as a driver's `join_network`
//! does) and heartbeating at `heartbeat_s`:
//!
//! 1. **New agents** (`new_agents`, held back from the initial start) start one every
//!    `new_agent_gap_ms`. For each, the time from its start (its first announcement) to the
//!    `AgentDiscovered` event at every other node that was live then is one sample of
//!    `discovery_ms`. A node that never discovers it counts with the time it was observed
//!    for (a lower bound), so a missing pair can only make the percentiles worse.
//! 2. **Late joiners** (`late_joiners`, also held back) start after the new agents. For each,
//!    the time until it lists 99 % of the agents live at its start is one sample of
//!    `late_join_ms` — catch-up from neighbours, not the 300 s heartbeat, must do this.
//! 3. **Look-ups** (`lookups`, every `lookup_gap_ms`) from the *querier* nodes, whose agent
//!    cache holds only `querier_cache` entries (a node in a network far larger than its
//!    cache), for a live agent that querier does not have cached: success when the
//!    `QueryFinished` names the right machine. Their latency is `find_agent_ms`.
//! 4. **Gone agents**: `gone` nodes crash; `ttl_s + 30 s` later each is looked up from a random
//!    live node: the only right answer is `None` (a stale answer is counted in `stale_answers`).
//!
//! `find_agent_success_ratio` = right answers / all look-ups (live and gone).
//! `heartbeat_bytes_per_node_per_sec` = bytes sent per node per second of simulated time
//! between the last look-up and the end of the run (steady heartbeats, keepalives and
//! probes; no workload).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use x0x_proto::node::QueryId;
use x0x_proto::{AgentId, Config, MachineId, Node, Time};

use crate::report::Percentiles;
use crate::sim::{Ev, Sim, World, ms};
use crate::stats::LatencyRecorder;

/// The `[discovery]` table of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverySpec {
    /// Heartbeat interval, seconds. Default 300 (x0x's).
    pub heartbeat_s: u64,
    /// Identity TTL, seconds. Default 900 (x0x's).
    pub ttl_s: u64,
    /// Agents started after the warm-up and measured into `discovery_ms`. Default 10.
    pub new_agents: usize,
    /// Gap between new agents, ms. Default 500.
    pub new_agent_gap_ms: u64,
    /// Nodes started after the new agents and measured into `late_join_ms`. Default 5.
    pub late_joiners: usize,
    /// Look-ups of uncached live agents. Default 100.
    pub lookups: usize,
    /// Gap between look-ups, ms. Default 50.
    pub lookup_gap_ms: u64,
    /// Nodes that issue the look-ups (indices 1..=queriers). Default 20.
    pub queriers: usize,
    /// Agent-cache capacity of the querier nodes. Default 8.
    pub querier_cache: usize,
    /// Nodes crashed after the look-ups and looked up once their TTL passed. Default 10.
    pub gone: usize,
    /// Agent, machine, user and key cache capacity of the ordinary nodes (neither queriers
    /// nor late joiners). Default: the protocol's defaults. The shipped scenario caps them,
    /// because one process holds every node's cached keys and signatures: its nodes behave
    /// like nodes of a network larger than their caches.
    pub node_cache: Option<usize>,
}

impl Default for DiscoverySpec {
    fn default() -> Self {
        Self {
            heartbeat_s: 300,
            ttl_s: 900,
            new_agents: 10,
            new_agent_gap_ms: 500,
            late_joiners: 5,
            lookups: 100,
            lookup_gap_ms: 50,
            queriers: 20,
            querier_cache: 8,
            gone: 10,
            node_cache: None,
        }
    }
}

/// Offsets of the script phases after the warm-up, milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phases {
    pub(crate) late_join_ms: u64,
    pub(crate) lookups_ms: u64,
    pub(crate) crash_ms: u64,
    pub(crate) gone_lookups_ms: u64,
    pub(crate) end_ms: u64,
}

impl DiscoverySpec {
    /// Nodes held back from the initial start: `(first index, count)`; the new agents come
    /// first, then the late joiners, at the end of the index range.
    pub(crate) fn held_back(&self, n: usize) -> (usize, usize) {
        let k = (self.new_agents + self.late_joiners).min(n.saturating_sub(1));
        (n - k, k)
    }

    /// Whether node `i` is a late joiner (protocol-default caches).
    pub(crate) fn is_late_joiner(&self, i: usize, n: usize) -> bool {
        let (from, k) = self.held_back(n);
        i >= from + self.new_agents.min(k) && i < from + k
    }

    /// Whether node `i` is a querier (small agent cache).
    pub(crate) fn is_querier(&self, i: usize, n: usize) -> bool {
        i >= 1 && i <= self.queriers && i < self.held_back(n).0
    }

    /// Offsets of the script phases after the warm-up.
    pub(crate) fn phases(&self) -> Phases {
        let late_join_ms = self.new_agents as u64 * self.new_agent_gap_ms + 5_000;
        let lookups_ms = late_join_ms + 10_000;
        let crash_ms = lookups_ms + self.lookups as u64 * self.lookup_gap_ms + 5_000;
        let gone_lookups_ms = crash_ms + self.ttl_s * 1000 + 30_000;
        let end_ms = gone_lookups_ms + self.gone as u64 * self.lookup_gap_ms + 10_000;
        Phases {
            late_join_ms,
            lookups_ms,
            crash_ms,
            gone_lookups_ms,
            end_ms,
        }
    }
}

impl DiscoverySpec {
    /// Applies the spec to node `i`'s config in a run of `n` nodes: heartbeat, TTL and
    /// cache capacities.
    pub(crate) fn configure(&self, c: &mut Config, i: usize, n: usize) {
        c.announce.heartbeat_interval = Duration::from_secs(self.heartbeat_s);
        c.announce.identity_ttl = Duration::from_secs(self.ttl_s);
        // Node 0 is the bootstrap node of the late joiners and keeps the default caches, as
        // a well-provisioned bootstrap node would; so do the late joiners themselves.
        let full = i == 0 || self.is_late_joiner(i, n);
        if let Some(cap) = self.node_cache.filter(|_| !full) {
            c.announce.max_agents = cap;
            c.announce.max_machines = cap;
            c.announce.max_users = cap;
            c.key_cache_capacity = cap;
        }
        if self.is_querier(i, n) {
            c.announce.max_agents = self.querier_cache;
        }
    }
}

/// One step of the discovery script (scheduled as a simulator event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Start held-back node `i` as a measured new agent.
    NewAgent(u32),
    /// Start held-back node `i` as a measured late joiner.
    LateJoiner(u32),
    /// Look up an uncached live agent from a querier.
    Lookup,
    /// Snapshot byte counters (start of the steady-state window).
    Snapshot,
    /// Crash the gone agents.
    CrashGone,
    /// Look up gone agent number `k`.
    LookupGone(u32),
}

/// A look-up waiting for its `QueryFinished`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingLookup {
    pub(crate) started: u64,
    /// The right answer: `Some(machine)` for a live agent, `None` for a gone one.
    pub(crate) expect: Option<MachineId>,
}

/// What the discovery workload measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryReport {
    /// (new agent, live node) pairs measured.
    pub pairs: u64,
    /// Pairs where the node discovered the agent by the end of the run.
    pub pairs_discovered: u64,
    /// Share of pairs discovered within 2 s of the announcement.
    pub within_2s: f64,
    /// Share of pairs discovered within 5 s of the announcement.
    pub within_5s: f64,
    /// Time for a late joiner to list 99 % of the live agents.
    pub late_join_ms: Option<Percentiles>,
    /// Late joiners that never reached 99 %.
    pub late_joiners_short: u64,
    /// Look-ups of live, uncached agents: started, and answered with the right machine.
    pub lookups_live: u64,
    /// Look-ups of live agents that found the right machine.
    pub lookups_live_found: u64,
    /// Latency of the live look-ups that succeeded.
    pub find_agent_ms: Option<Percentiles>,
    /// Look-ups of agents gone longer than the TTL.
    pub lookups_gone: u64,
    /// Gone look-ups answered `None` (the right answer).
    pub lookups_gone_none: u64,
    /// Gone look-ups answered with an address (must be 0).
    pub stale_answers: u64,
    /// Look-ups still open at the end of the run (counted as failures).
    pub lookups_unanswered: u64,
    /// Bytes sent per node per simulated second in the steady state after the look-ups.
    pub heartbeat_bytes_per_node_per_sec: f64,
}

/// The discovery workload's state inside the simulator.
#[derive(Debug, Default)]
pub(crate) struct DiscoveryState {
    /// New agents' ids → (node index, start time µs).
    pub(crate) new_agents: BTreeMap<AgentId, (u32, u64)>,
    /// Per new agent: the nodes live at its start (index list) and when each discovered it.
    pub(crate) expected: BTreeMap<AgentId, BTreeMap<u32, Option<u64>>>,
    /// Late joiners: node → (start µs, agents to list, listed so far, done at).
    pub(crate) late: BTreeMap<u32, (u64, usize, usize, Option<u64>)>,
    /// Open look-ups by (querier, query id).
    pub(crate) pending: BTreeMap<(u32, QueryId), PendingLookup>,
    /// Gone agents: node index and agent id.
    pub(crate) gone: Vec<(u32, AgentId)>,
    /// Look-ups answered while being started (from the cache), before they were registered.
    pub(crate) early: BTreeMap<(u32, QueryId), (Option<MachineId>, u64)>,
    pub(crate) lookup_latency: LatencyRecorder,
    pub(crate) report: DiscoveryReport,
    /// (simulated µs, total bytes sent) at the start of the steady-state window.
    pub(crate) snapshot: Option<(u64, u64)>,
}

impl DiscoveryState {
    /// Records an `AgentDiscovered` event at node `at`, at simulated time `now`.
    pub(crate) fn on_discovered(&mut self, at: u32, agent: AgentId, now: u64) {
        if let Some(pairs) = self.expected.get_mut(&agent)
            && let Some(slot @ None) = pairs.get_mut(&at)
        {
            *slot = Some(now);
        }
        if let Some((_, want, listed, done)) = self.late.get_mut(&at) {
            *listed += 1;
            if done.is_none() && *listed >= *want {
                *done = Some(now);
            }
        }
    }

    /// Records the end of look-up `query` at node `at`.
    pub(crate) fn on_query_finished(
        &mut self,
        at: u32,
        query: QueryId,
        found: Option<MachineId>,
        now: u64,
    ) {
        let Some(p) = self.pending.remove(&(at, query)) else {
            // Only look-ups end queries in the simulator; this one is being registered.
            if self.early.len() < 1024 {
                self.early.insert((at, query), (found, now));
            }
            return;
        };
        match p.expect {
            Some(m) => {
                if found == Some(m) {
                    self.report.lookups_live_found += 1;
                    self.lookup_latency.record(now - p.started);
                }
            }
            None => {
                if found.is_some() {
                    self.report.stale_answers += 1;
                } else {
                    self.report.lookups_gone_none += 1;
                }
            }
        }
    }

    /// Closes the measurements at simulated time `end` with `bytes_sent` in total so far and
    /// `n` nodes; returns the report, `discovery_ms` and `find_agent_success_ratio`.
    pub(crate) fn finish(
        mut self,
        end: u64,
        bytes_sent: u64,
        n: usize,
    ) -> (DiscoveryReport, Option<Percentiles>, Option<f64>) {
        let mut lat = LatencyRecorder::default();
        let (mut within2, mut within5) = (0u64, 0u64);
        for (agent, pairs) in &self.expected {
            let Some(&(_, start)) = self.new_agents.get(agent) else {
                continue;
            };
            for at in pairs.values() {
                self.report.pairs += 1;
                let d = match at {
                    Some(t) => {
                        self.report.pairs_discovered += 1;
                        t - start
                    }
                    // Never discovered: counted with the time it was observed for.
                    None => end - start,
                };
                within2 += u64::from(at.is_some() && d <= 2_000_000);
                within5 += u64::from(at.is_some() && d <= 5_000_000);
                lat.record(d);
            }
        }
        if self.report.pairs > 0 {
            self.report.within_2s = within2 as f64 / self.report.pairs as f64;
            self.report.within_5s = within5 as f64 / self.report.pairs as f64;
        }
        let mut late = LatencyRecorder::default();
        for (start, _, _, done) in self.late.values() {
            match done {
                Some(t) => late.record(t - start),
                None => self.report.late_joiners_short += 1,
            }
        }
        self.report.late_join_ms = late.percentiles();
        self.report.find_agent_ms = self.lookup_latency.percentiles();
        self.report.lookups_unanswered = self.pending.len() as u64;
        if let Some((t0, b0)) = self.snapshot
            && end > t0
            && n > 0
        {
            self.report.heartbeat_bytes_per_node_per_sec =
                (bytes_sent - b0) as f64 / n as f64 / ((end - t0) as f64 / 1e6);
        }
        let r = &self.report;
        let total = r.lookups_live + r.lookups_gone;
        let right = r.lookups_live_found + r.lookups_gone_none;
        let ratio = (total > 0).then(|| right as f64 / total as f64);
        let discovery_ms = lat.percentiles();
        (self.report, discovery_ms, ratio)
    }
}

impl World {
    /// Queues the discovery script of a run of `n` nodes after the warm-up.
    pub(crate) fn schedule_discovery(&mut self, d: &DiscoverySpec, n: usize) {
        let warmup_end = self.warmup_end;
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
            self.push(warmup_end + ms(at), Ev::Discovery(step));
        }
        for l in 0..d.lookups {
            let at = ph.lookups_ms + l as u64 * d.lookup_gap_ms;
            self.push(warmup_end + ms(at), Ev::Discovery(Step::Lookup));
        }
        self.push(warmup_end + ms(ph.crash_ms), Ev::Discovery(Step::CrashGone));
        self.push(
            warmup_end + ms(ph.crash_ms + 1000),
            Ev::Discovery(Step::Snapshot),
        );
        for g in 0..d.gone {
            let at = ph.gone_lookups_ms + g as u64 * d.lookup_gap_ms;
            self.push(
                warmup_end + ms(at),
                Ev::Discovery(Step::LookupGone(g as u32)),
            );
        }
    }
}

impl Sim<'_> {
    /// Runs one step of the discovery script.
    pub(crate) fn discovery_step(&mut self, step: Step) {
        let Some(spec) = self.sc.discovery.clone() else {
            return;
        };
        match step {
            Step::NewAgent(i) | Step::LateJoiner(i) => self.start_held_back(step, i),
            Step::Lookup => self.lookup_uncached(&spec),
            Step::CrashGone => self.crash_gone(&spec),
            Step::Snapshot => {
                let total = self.w.slots.iter().map(|s| s.bytes_sent).sum();
                let now = self.w.now;
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

    /// Starts held-back node `i` as a measured new agent or late joiner.
    fn start_held_back(&mut self, step: Step, i: u32) {
        let Some(agent) = self.nodes[i as usize].as_ref().map(Node::agent_id) else {
            return;
        };
        let now = self.w.now;
        // The agents live now (every started node announced on start).
        let live: Vec<u32> = (0..self.nodes.len() as u32)
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
        self.start_node(i);
    }

    /// Looks up, from a random live querier, a live agent it does not have cached (a few
    /// tries).
    fn lookup_uncached(&mut self, spec: &DiscoverySpec) {
        let n = self.nodes.len();
        let queriers: Vec<u32> = (0..n)
            .filter(|&j| spec.is_querier(j, n) && self.w.slots[j].alive)
            .map(|j| j as u32)
            .collect();
        if queriers.is_empty() {
            return;
        }
        let q = queriers[self.w.script_rng.random_range(0..queriers.len())];
        let t = Time::from_micros(self.w.now);
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

    /// Crashes the gone agents: random live nodes, never a querier (they must stay to ask).
    fn crash_gone(&mut self, spec: &DiscoverySpec) {
        let n = self.nodes.len();
        let mut gone: Vec<(u32, AgentId)> = Vec::new();
        for _ in 0..spec.gone {
            if let Some(j) = (0..64)
                .filter_map(|_| self.w.random_live(u32::MAX))
                .find(|&j| !spec.is_querier(j as usize, n) && !gone.iter().any(|g| g.0 == j))
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
}
