//! SWIM failure detection as the nodes report it: how soon a crashed node is suspected
//! (`NeighborSuspected`) and declared dead by its neighbours (`NeighborDown` with reason
//! `Dead`, or `Replaced`: suspected and replaced by a stand-in before the suspicion ran out),
//! and how often a live node is.

use std::collections::{BTreeMap, BTreeSet};

use crate::report::{DetectionMs, SwimSummary};

/// The detection bookkeeping of a run.
#[derive(Debug, Default)]
pub(crate) struct SwimTrack {
    /// Crash time of every node that is down now.
    pub(crate) crashed_at: BTreeMap<u32, u64>,
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
    /// Some node suspected `peer` at `now`.
    pub(crate) fn on_suspected(&mut self, now: u64, peer: u32) {
        match self.crashed_at.get(&peer) {
            Some(&at) => {
                if self.suspected.insert(peer) {
                    self.first_suspicion.push(now.saturating_sub(at));
                }
            }
            None => self.live_suspicions += 1,
        }
    }

    /// Some node declared `peer` dead at `now`.
    pub(crate) fn on_dead(&mut self, now: u64, peer: u32) {
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

    /// The report section, with `node_hours` of observation and the nodes' probe period.
    pub(crate) fn summary(&self, node_hours: f64, probe_interval_ms: f64) -> SwimSummary {
        SwimSummary {
            probe_interval_ms,
            crashed: self.crashed_at.len() as u64 + self.detected_restarted(),
            detected: self.first.len() as u64,
            first_suspicion_ms: detection_ms(&self.first_suspicion),
            live_suspicions: self.live_suspicions,
            first_detection_ms: detection_ms(&self.first),
            detection_ms: detection_ms(&self.all),
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

/// Mean and quantiles of detection times `v` (µs), in milliseconds.
fn detection_ms(v: &[u64]) -> Option<DetectionMs> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let pick = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    Some(DetectionMs {
        mean: s.iter().sum::<u64>() as f64 / s.len() as f64 / 1000.0,
        p50: pick(0.5),
        p99: pick(0.99),
        max: pick(1.0),
    })
}
