//! The replicated-store workload (`[collab]`): one KV store, written by several agents
//! through a partition, measured for convergence after the heal.
//!
//! * Node 0 creates the store (policy `allowlisted`, the next `writers - 1` nodes on its
//!   allowlist) at `open_at_ms`; every other node joins it then, and catches up by
//!   anti-entropy.
//! * From `writes_from_ms` to `writes_until_ms` each writer puts a random one of `keys` keys
//!   every `write_interval_ms` (staggered). Writes made while a partition holds are counted
//!   per side.
//! * `forged` times, spread over the write window, a node that is not a writer writes
//!   anyway (`Node::forge_store_put`, skipping its own permission check): every other
//!   replica must refuse it.
//! * From the heal (or the last write, without a partition) every `check_ms` the live
//!   replicas' heads are compared; the first time all are equal is the convergence time.

use rand::RngExt;
use serde::{Deserialize, Serialize};
use x0x_proto::collab::{AccessPolicy, ChangeHash, StoreKind};

use crate::sim::{Ev, Sim, World, ms};

/// The store's topic in a collab scenario.
const TOPIC: &str = "x0x-sim/collab";

/// `[collab]` in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollabSpec {
    /// Agents that may write (node 0, the owner, and the next ones). Default 20.
    pub writers: u32,
    /// When the store is created and joined, after the warm-up, ms. Default 0.
    pub open_at_ms: u64,
    /// First write, after the warm-up, ms. Default 5 000.
    pub writes_from_ms: u64,
    /// No write at or after this, ms after the warm-up. Default 50 000.
    pub writes_until_ms: u64,
    /// Each writer's period, ms. Default 2 000.
    pub write_interval_ms: u64,
    /// Distinct keys written. Default 100.
    pub keys: u32,
    /// Bytes per value. Default 64.
    pub value_len: usize,
    /// Writes by non-writers. Default 4.
    pub forged: u32,
    /// Period of the convergence check, ms. Default 100.
    pub check_ms: u64,
    /// Give up on convergence this long after the heal, ms. Default 60 000.
    pub give_up_ms: u64,
}

impl Default for CollabSpec {
    fn default() -> Self {
        Self {
            writers: 20,
            open_at_ms: 0,
            writes_from_ms: 5000,
            writes_until_ms: 50_000,
            write_interval_ms: 2000,
            keys: 100,
            value_len: 64,
            forged: 4,
            check_ms: 100,
            give_up_ms: 60_000,
        }
    }
}

/// What the store did (report key `collab`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollabReport {
    /// Every live replica held the same heads at some check after the heal.
    pub converged: bool,
    /// From the heal to that check, ms (simulated).
    pub converge_ms: Option<f64>,
    /// Live nodes holding the store at the end.
    pub replicas: u64,
    /// Writes made by the writers.
    pub writes: u64,
    /// Writes made while the partition held, by side (group 0, group 1).
    pub writes_per_side: [u64; 2],
    /// Writes refused by the writer's own node (none expected: writers are allowlisted).
    pub writes_refused_locally: u64,
    /// Forged writes made by non-writers.
    pub unauthorised_injected: u64,
    /// (replica, forged write) pairs where the replica applied it: must be 0.
    pub refused_applied: u64,
    /// Changes refused by policy, summed over replicas.
    pub refused_policy: u64,
    /// Changes each replica holds at the end (equal when converged).
    pub changes_per_replica: u64,
    /// Anti-entropy bytes sent per replica over the run.
    pub sync_bytes_per_replica: f64,
    /// BLAKE3 of node 0's heads at the end (two runs with one seed must agree).
    pub state_digest: String,
}

/// The run's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct CollabRun {
    spec: CollabSpec,
    pub(crate) report: CollabReport,
    forged: Vec<ChangeHash>,
    measure_from: u64,
    done: bool,
}

impl CollabRun {
    pub(crate) fn new(spec: &CollabSpec) -> Self {
        Self {
            spec: spec.clone(),
            ..Self::default()
        }
    }
}

impl World {
    /// Queues the opening, the writes, the forgeries and the first check.
    pub(crate) fn schedule_collab(&mut self, spec: &CollabSpec, heal_at: Option<u64>) {
        let w0 = self.warmup_end;
        self.push(w0 + ms(spec.open_at_ms), Ev::CollabOpen);
        let span = spec.writes_until_ms.saturating_sub(spec.writes_from_ms);
        let per = spec.write_interval_ms.max(1);
        for k in 0..spec.writers {
            let offset = per * u64::from(k) / u64::from(spec.writers.max(1));
            let mut t = spec.writes_from_ms + offset;
            while t < spec.writes_until_ms {
                self.push(w0 + ms(t), Ev::CollabWrite(k));
                t += per;
            }
        }
        for f in 0..spec.forged {
            let t =
                spec.writes_from_ms + span * (2 * u64::from(f) + 1) / (2 * u64::from(spec.forged));
            self.push(w0 + ms(t), Ev::CollabForge(f));
        }
        let from = heal_at
            .unwrap_or(w0 + ms(spec.writes_until_ms))
            .max(w0 + ms(spec.writes_until_ms));
        self.push(from, Ev::CollabCheck);
        self.script_end = self.script_end.max(from + ms(spec.give_up_ms));
        if let Some(run) = self.collab.as_mut() {
            run.measure_from = from;
        }
    }
}

impl Sim<'_> {
    /// The owner creates the store; every other node joins it.
    pub(crate) fn collab_open(&mut self) {
        let Some(run) = self.w.collab.as_ref() else {
            return;
        };
        let writers = run.spec.writers.min(self.nodes.len() as u32);
        let allow: Vec<_> = (1..writers)
            .filter_map(|i| self.nodes[i as usize].as_ref().map(|n| n.agent_id()))
            .collect();
        self.call(0, |n, now| {
            let _ = n.create_store(
                now,
                StoreKind::Kv,
                TOPIC,
                "sim",
                AccessPolicy::Allowlisted,
                &allow,
            );
        });
        let owner = self.nodes[0].as_ref().map(|n| n.agent_id());
        for i in 1..self.nodes.len() as u32 {
            self.call(i, |n, now| {
                let _ = n.join_store(now, StoreKind::Kv, TOPIC, owner);
            });
        }
    }

    /// Writer `k` puts a random key.
    pub(crate) fn collab_write(&mut self, k: u32) {
        let Some(run) = self.w.collab.as_ref() else {
            return;
        };
        if !self.w.slots[k as usize].alive {
            return;
        }
        let (keys, len) = (run.spec.keys.max(1), run.spec.value_len);
        let key = format!("key{}", self.w.script_rng.random_range(0..keys));
        let value = bytes::Bytes::from(vec![k as u8; len]);
        let mut ok = false;
        self.call(k, |n, now| {
            ok = n
                .store_put(now, TOPIC, &key, value, "application/octet-stream")
                .is_ok();
        });
        let side = self
            .w
            .partition_active
            .then(|| self.w.group[k as usize] as usize);
        let Some(run) = self.w.collab.as_mut() else {
            return;
        };
        if ok {
            run.report.writes += 1;
            if let Some(s) = side {
                run.report.writes_per_side[s.min(1)] += 1;
            }
        } else {
            run.report.writes_refused_locally += 1;
        }
    }

    /// Forgery `f`: a non-writer writes without permission.
    pub(crate) fn collab_forge(&mut self, f: u32) {
        let Some(run) = self.w.collab.as_ref() else {
            return;
        };
        let n = self.nodes.len() as u32;
        let writers = run.spec.writers;
        if n <= writers {
            return;
        }
        let forger = writers + (f * 7919) % (n - writers);
        if !self.w.slots[forger as usize].alive {
            return;
        }
        let mut hash = None;
        self.call(forger, |node, now| {
            hash = node
                .forge_store_put(now, TOPIC, "forged", bytes::Bytes::from_static(b"x"))
                .ok();
        });
        if let (Some(h), Some(run)) = (hash, self.w.collab.as_mut()) {
            run.report.unauthorised_injected += 1;
            run.forged.push(h);
        }
    }

    /// Compares the live replicas' heads; records the first time they agree.
    pub(crate) fn collab_check(&mut self) {
        let Some(run) = self.w.collab.as_ref() else {
            return;
        };
        if run.done {
            return;
        }
        let mut first = None;
        let mut same = true;
        for (i, node) in self.nodes.iter().enumerate() {
            if !self.w.slots[i].alive {
                continue;
            }
            let heads = node
                .as_ref()
                .and_then(|n| n.store(TOPIC))
                .map(|r| r.heads());
            match (&first, heads) {
                (_, None) => {
                    same = false;
                    break;
                }
                (None, Some(h)) => first = Some(h),
                (Some(f), Some(h)) => {
                    if *f != h {
                        same = false;
                        break;
                    }
                }
            }
        }
        let now = self.w.now;
        let Some(run) = self.w.collab.as_mut() else {
            return;
        };
        if same && first.is_some() {
            run.done = true;
            run.report.converged = true;
            run.report.converge_ms = Some(now.saturating_sub(run.measure_from) as f64 / 1000.0);
        } else if now < run.measure_from + ms(run.spec.give_up_ms) {
            let next = now + ms(run.spec.check_ms.max(1));
            self.w.push(next, Ev::CollabCheck);
        } else {
            run.done = true;
        }
    }

    /// The report, read from the replicas at the end.
    pub(crate) fn collab_report(&self) -> Option<CollabReport> {
        let run = self.w.collab.as_ref()?;
        let mut r = run.report.clone();
        let mut sync_bytes = 0u64;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node.as_ref().filter(|_| self.w.slots[i].alive) else {
                continue;
            };
            let Some(store) = node.store(TOPIC) else {
                continue;
            };
            r.replicas += 1;
            r.changes_per_replica = r.changes_per_replica.max(store.change_count() as u64);
            let stats = node.collab_stats();
            r.refused_policy += stats.refused_policy;
            sync_bytes += stats.sync_bytes_sent;
            for h in &run.forged {
                if store.holds(h) {
                    r.refused_applied += 1;
                }
            }
        }
        r.sync_bytes_per_replica = sync_bytes as f64 / r.replicas.max(1) as f64;
        if let Some(store) = self.nodes[0].as_ref().and_then(|n| n.store(TOPIC)) {
            let mut h = blake3::Hasher::new();
            for head in store.heads() {
                h.update(&head.0);
            }
            r.state_digest = h.finalize().to_hex().to_string();
        }
        Some(r)
    }
}
