//! Scripted faults: crashes and restarts, the mass crash, partitions and churn.
//!
//! A crash is silent: the node's state is gone and frames to it vanish; its peers learn of it
//! only through the protocol (or after `crash_idle_timeout_ms`, when set). A restart builds
//! the node again with the same identity and fresh state.

use rand::RngExt;

use super::event::Ev;
use super::trace::TraceTag;
use super::world::{UNARMED, choose_k};
use super::{Sim, World, build_node, identity, ms};
use crate::scenario::ChurnSpec;

impl Sim<'_> {
    /// Crashes node `j` (if alive): its node is dropped and its connections left dangling.
    pub(crate) fn crash(&mut self, j: u32) {
        let w = &mut self.w;
        let now = w.now;
        let s = &mut w.slots[j as usize];
        if !s.alive {
            return;
        }
        self.nodes[j as usize] = None;
        s.alive = false;
        s.armed = UNARMED;
        let conns = std::mem::take(&mut s.conns);
        w.trace.rec(now, TraceTag::Crash, j, 0);
        w.swim.crashed_at.insert(j, now);
        if let Some(run) = w.presence.as_mut() {
            run.on_crash(j, now);
        }
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

    /// Restarts crashed node `j`, bootstrapping to a random live node (or the scenario's
    /// bootstrap nodes).
    pub(crate) fn restart(&mut self, j: u32) {
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
        self.w
            .trace
            .rec(self.w.now, TraceTag::Restart, j, u64::from(inc));
        self.boot_node(j);
    }

    /// The scenario's mass crash: a random fraction of the live nodes (never the fixed
    /// publisher), each restarted later if the scenario says so.
    pub(super) fn mass_crash(&mut self) {
        let Some(c) = self.sc.crash.clone() else {
            return;
        };
        let keep = self.fixed_publisher();
        let mut live: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.w.slots[i as usize].alive && Some(i) != keep)
            .collect();
        let k = ((self.nodes.len() as f64 * c.fraction).round() as usize).min(live.len());
        choose_k(&mut self.w.script_rng, &mut live, k);
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

    /// Splits the nodes into two random groups that cannot reach each other.
    pub(super) fn partition_start(&mut self) {
        let Some(p) = self.sc.partition.clone() else {
            return;
        };
        let n = self.nodes.len();
        let mut idx: Vec<u32> = (0..n as u32).collect();
        let k = ((n as f64 * p.fraction).round() as usize).min(n);
        choose_k(&mut self.w.script_rng, &mut idx, k);
        self.w.group = vec![0; n];
        for &i in &idx[..k] {
            self.w.group[i as usize] = 1;
        }
        self.w.partition_active = true;
        self.w
            .trace
            .rec(self.w.now, TraceTag::PartitionStart, k as u32, 0);
    }

    /// A churn departure: a random live node (never the fixed publisher) leaves, gracefully
    /// for `graceful_fraction` of them; then the next departure is drawn.
    pub(super) fn churn_leave(&mut self) {
        let Some(c) = self.churn_running() else {
            return;
        };
        let keep = self.fixed_publisher();
        if let Some(j) = self.w.random_live(keep.unwrap_or(u32::MAX)) {
            if c.graceful_fraction > 0.0 && self.w.script_rng.random_bool(c.graceful_fraction) {
                self.call(j, |n, t| n.shutdown(t));
            }
            self.crash(j);
        }
        self.w.churn_next(c.leave_per_sec, Ev::ChurnLeave);
    }

    /// A churn arrival: a random departed node restarts; then the next arrival is drawn.
    pub(super) fn churn_join(&mut self) {
        let Some(c) = self.churn_running() else {
            return;
        };
        let dead: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| !self.w.slots[i as usize].alive)
            .collect();
        if !dead.is_empty() {
            let j = dead[self.w.script_rng.random_range(0..dead.len())];
            self.restart(j);
        }
        self.w.churn_next(c.join_per_sec, Ev::ChurnJoin);
    }

    /// The churn spec while churn lasts.
    fn churn_running(&self) -> Option<ChurnSpec> {
        let c = self.sc.churn.clone()?;
        let end = self.w.warmup_end + ms(c.start_ms + c.duration_ms);
        (self.w.now <= end).then_some(c)
    }
}

impl World {
    /// The partition heals.
    pub(super) fn partition_end(&mut self) {
        self.partition_active = false;
        self.trace.rec(self.now, TraceTag::PartitionEnd, 0, 0);
    }

    /// Queues churn event `ev` after an exponential gap for `rate` per second.
    pub(super) fn churn_next(&mut self, rate: f64, ev: Ev) {
        let d = self.exp_us(rate);
        self.push(self.now + d, ev);
    }
}
