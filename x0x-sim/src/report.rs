//! The JSON report of a run, multi-seed aggregates, and `compare`.
//!
//! [`Report`] is a contract other tools read: its first keys (`scenario` … `find_agent_success_ratio`)
//! keep their names and meaning; later keys are extras. Keys are written in declaration order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Three points of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

/// Bytes on the wire per node over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BytesPerNode {
    /// Mean bytes sent (frames handed out by `poll_transmit`).
    pub sent_mean: f64,
    /// Most bytes sent by one node.
    pub sent_max: u64,
    /// Mean bytes received (frames delivered into `handle_frame`).
    pub received_mean: f64,
    /// Most bytes received by one node.
    pub received_max: u64,
}

/// Frames the network did not deliver, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Drops {
    /// Bernoulli loss.
    pub loss: u64,
    /// Across an active partition.
    pub partition: u64,
    /// Sent to a machine the simulator does not know.
    pub unknown_peer: u64,
    /// Sent to a peer with no open connection from the sender's side.
    pub no_connection: u64,
    /// Arrived on a connection the receiver had already closed.
    pub closed_connection: u64,
    /// Arrived at a crashed (or not yet started) node: they vanish.
    pub dead_target: u64,
    /// A bandwidth-limited link's queue was full.
    pub queue_full: u64,
}

/// Sums of the nodes' own counters ([`x0x_proto::node::NodeStats`]) over the nodes alive at the end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeCounters {
    /// Frames the nodes accepted.
    pub frames_received: u64,
    /// Frames the nodes handed out.
    pub frames_sent: u64,
    /// Frames that failed to decode.
    pub frames_rejected: u64,
    /// Frames from a machine with no connection.
    pub frames_from_unknown_peer: u64,
    /// Transmits dropped on a full queue.
    pub transmits_dropped: u64,
    /// Events dropped on a full queue.
    pub events_dropped: u64,
    /// Dials reported failed.
    pub dials_failed: u64,
    /// Closes requested, by reason.
    pub closes: BTreeMap<String, u64>,
    /// Broadcast counters summed over the nodes (GRAFTs, PRUNEs, tree moves…).
    #[serde(default)]
    pub broadcast: BTreeMap<String, u64>,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Node count.
    pub nodes: usize,
    /// Run seed.
    pub seed: u64,
    /// Min over broadcasts of (eligible nodes that delivered) / (eligible nodes), the
    /// publisher excluded; eligible = subscribed to the topic and alive without restart from
    /// publish to the end of the round. Null when nothing was published.
    pub delivery_ratio: Option<f64>,
    /// Relative message redundancy: mean over rounds of the mean over the round's messages of
    /// `m / (n_delivered - 1) - 1` (m = Gossip frames received for the message, n_delivered
    /// includes the publisher). Null when no message reached anyone.
    pub rmr: Option<f64>,
    /// Largest `Delivery.hops` of any delivery (last delivery hop). Null without deliveries.
    pub ldh_max: Option<u32>,
    /// Delivery latency (simulated time of delivery − publish time), over all deliveries.
    pub latency_ms: Option<Percentiles>,
    /// Live nodes with an empty active view at the overlay measurement.
    pub isolated_nodes: usize,
    /// Connected components of the undirected active-view graph of the live nodes.
    pub components: usize,
    /// Frames delivered into `handle_frame`, all kinds.
    pub messages_processed: u64,
    /// Wall time of the event loop (node construction excluded: `setup_secs`).
    pub wall_secs: f64,
    /// BLAKE3 of the event trace, hex: same scenario, nodes and seed ⇒ same digest.
    pub digest: String,
    /// Time from a new agent's announcement to its discovery at each node live then
    /// (discovery scenarios; see [`crate::workload::discovery`]).
    pub discovery_ms: Option<Percentiles>,
    /// Right answers / look-ups: live uncached agents found, gone agents not found
    /// (discovery scenarios).
    pub find_agent_success_ratio: Option<f64>,

    // ----- extras -----
    /// Everything the discovery workload measured (discovery scenarios).
    pub discovery: Option<crate::workload::discovery::DiscoveryReport>,
    /// `real` (ML-DSA-65) or `stand-in` keys.
    pub crypto: String,
    /// Wall time of building identities and nodes.
    pub setup_secs: f64,
    /// Peak resident memory of the process (VmHWM), MiB, when the platform tells.
    pub max_rss_mb: Option<f64>,
    /// `messages_processed / wall_secs`.
    pub frames_per_wall_sec: f64,
    /// Simulated seconds covered.
    pub sim_secs: f64,
    /// Simulator events processed (frames, timers, connections, script).
    pub events_processed: u64,
    /// Rounds run.
    pub rounds: usize,
    /// Messages published.
    pub broadcasts: usize,
    /// Deliveries (`Event::Message` at a node other than the publisher).
    pub deliveries: u64,
    /// Deliveries of a message a node had already delivered (a protocol bug).
    pub duplicate_deliveries: u64,
    /// Deliveries at a node that (re)started after the message was published (history it
    /// caught up on), left out of every other delivery figure.
    pub deliveries_after_restart: u64,
    /// Delivery ratio of each round (min over its messages).
    pub delivery_per_round: Vec<Option<f64>>,
    /// RMR of each round.
    pub rmr_per_round: Vec<Option<f64>>,
    /// Last delivery hop of each round (max over its messages).
    pub ldh_per_round: Vec<Option<u32>>,
    /// Mean `Delivery.hops`.
    pub ldh_mean: Option<f64>,
    /// Deliveries per hop count (index = hops).
    pub hops_histogram: Vec<u64>,
    /// Live nodes per active-view size (index = size) at the overlay measurement.
    pub degree_histogram: Vec<u64>,
    /// Live nodes at the overlay measurement.
    pub live_nodes_at_overlay: usize,
    /// Frames delivered into `handle_frame`, by kind.
    pub frames_by_kind: BTreeMap<String, u64>,
    /// Frames handed out by `poll_transmit`, by kind.
    pub frames_sent_by_kind: BTreeMap<String, u64>,
    /// Frames the network did not deliver.
    pub drops: Drops,
    /// Bytes per node.
    pub bytes_per_node: BytesPerNode,
    /// Gossip frames received at subscribers of the message's topic.
    pub payload_frames_subscribers: u64,
    /// Gossip frames received at nodes not subscribed to the message's topic.
    pub payload_frames_nonsubscribers: u64,
    /// `payload_frames_nonsubscribers / payload_frames_subscribers` (topic scenarios only).
    pub topic_sparse_nonsub_ratio: Option<f64>,
    /// Dials requested by the nodes.
    pub dials: u64,
    /// Dials to a machine already connected from the dialler's side (not delivered).
    pub dials_redundant: u64,
    /// Connections established.
    pub connections: u64,
    /// Sums of the nodes' own counters.
    pub node_counters: NodeCounters,
    /// The direct-message workload (null without one). For a direct scenario,
    /// `delivery_ratio` is `direct.delivered / direct.messages` and `latency_ms` is the
    /// direct-message latency (send to delivery at the recipient).
    pub direct: Option<DirectSummary>,
    /// What the adversaries did and what it cost the honest nodes (adversarial scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adversary: Option<crate::adversary::AdversaryReport>,
    /// The spam blocked by part of the nodes (trust scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<crate::workload::spam::TrustReport>,
    /// Online and offline reports, crash detection and FOAF look-ups (presence scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<crate::workload::presence::PresenceReport>,
    /// Convergence of a replicated store through a partition (collab scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collab: Option<crate::workload::collab::CollabReport>,
    /// What the flood published and delivered (replay-flood scenarios).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood: Option<crate::workload::flood::FloodReport>,
    /// Most messages published within any 60 s of the run, every workload's.
    #[serde(default)]
    pub messages_published_in_60s_max: u64,
    /// SWIM failure detection: how soon crashed neighbours were declared dead, and how often
    /// a live one was.
    #[serde(default)]
    pub swim: SwimSummary,
}

/// SWIM failure detection over a run (`NeighborDown` with reason `Dead`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SwimSummary {
    /// The probe period of the nodes (detection times are compared with it).
    pub probe_interval_ms: f64,
    /// Nodes that crashed.
    pub crashed: u64,
    /// Crashed nodes some live neighbour declared dead.
    pub detected: u64,
    /// Crash to the first suspicion by any neighbour (`NeighborSuspected`), over crashed
    /// nodes: SWIM's detection time (its paper, §3.1), compared with the probe period.
    pub first_suspicion_ms: Option<DetectionMs>,
    /// Suspicions of nodes that were alive (most are refuted before `suspect_timeout`).
    pub live_suspicions: u64,
    /// Crash to the first `Dead` by any neighbour, over crashed nodes (suspicion plus
    /// `suspect_timeout`).
    pub first_detection_ms: Option<DetectionMs>,
    /// Crash to `Dead`, over every (neighbour, crashed node) pair.
    pub detection_ms: Option<DetectionMs>,
    /// `Dead` declared about a node that was alive. Under a partition this counts the nodes
    /// across the cut, which are alive but unreachable; read it as SWIM's false-positive
    /// count only for runs without partitions (`swim-steady`).
    pub false_positives: u64,
    /// Nodes × simulated time, in hours (the denominator of the false-positive rate).
    pub node_hours: f64,
}

/// A detection-time distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DetectionMs {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// What the direct-message workload measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DirectSummary {
    /// Messages the script sent (a live sender and recipient were found).
    pub messages: u64,
    /// `send_direct` calls refused at once.
    pub send_errors: u64,
    /// Messages delivered to their recipient (first delivery).
    pub delivered: u64,
    /// Deliveries of a message its recipient had already delivered (must be 0).
    pub duplicate_deliveries: u64,
    /// Deliveries at a node other than the recipient (must be 0).
    pub misdelivered: u64,
    /// Receipts at the senders.
    pub receipts: u64,
    /// Receipts by the path of the acknowledged attempt.
    pub receipts_by_path: BTreeMap<String, u64>,
    /// Retries, summed over the receipts.
    pub retries: u64,
    /// Failed sends, by reason.
    pub failures: BTreeMap<String, u64>,
    /// Attempts sent, by path (the nodes' counters).
    pub attempts_by_path: BTreeMap<String, u64>,
    /// Refusals at receivers, by reason (the nodes' counters; replays are retries whose ack
    /// was lost).
    pub rejected: BTreeMap<String, u64>,
    /// Send-to-delivery latency.
    pub latency_ms: Option<Percentiles>,
    /// Send-to-receipt latency.
    pub receipt_latency_ms: Option<Percentiles>,
}

/// Keys whose values depend on the wall clock or the machine, not on the simulation.
pub const WALL_CLOCK_KEYS: &[&str] = &[
    "wall_secs",
    "setup_secs",
    "max_rss_mb",
    "frames_per_wall_sec",
];

impl Report {
    /// The report as JSON with the wall-clock keys ([`WALL_CLOCK_KEYS`]) nulled: equal for
    /// equal scenario, node count and seed.
    pub fn deterministic_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for k in WALL_CLOCK_KEYS {
                if let Some(x) = m.get_mut(*k) {
                    *x = Value::Null;
                }
            }
        }
        v.to_string()
    }

    /// A readable table of the main figures.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>, d: usize| v.map_or("-".into(), |x| format!("{x:.d$}"));
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "  {k:<26} {v}");
        };
        row(
            "scenario",
            format!(
                "{} ({} nodes, seed {}, {})",
                self.scenario, self.nodes, self.seed, self.crypto
            ),
        );
        row("delivery_ratio", f(self.delivery_ratio, 4));
        row("rmr", f(self.rmr, 3));
        row(
            "ldh_max / mean",
            format!(
                "{} / {}",
                self.ldh_max.map_or("-".into(), |x| x.to_string()),
                f(self.ldh_mean, 2)
            ),
        );
        row(
            "latency_ms p50/p99/max",
            self.latency_ms.map_or("-".into(), |l| {
                format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max)
            }),
        );
        row(
            "overlay",
            format!(
                "{} components, {} isolated, {} live",
                self.components, self.isolated_nodes, self.live_nodes_at_overlay
            ),
        );
        row(
            "broadcasts / deliveries",
            format!(
                "{} / {} ({} rounds)",
                self.broadcasts, self.deliveries, self.rounds
            ),
        );
        row("messages_processed", self.messages_processed.to_string());
        row(
            "wall / setup secs",
            format!("{:.3} / {:.3}", self.wall_secs, self.setup_secs),
        );
        row(
            "frames per wall sec",
            format!("{:.0}", self.frames_per_wall_sec),
        );
        row("simulated secs", format!("{:.1}", self.sim_secs));
        row("max_rss_mb", f(self.max_rss_mb, 1));
        if let Some(r) = self.topic_sparse_nonsub_ratio {
            row("topic_sparse_nonsub_ratio", format!("{r:.4}"));
        }
        let sw = &self.swim;
        if let Some(d) = sw.first_suspicion_ms {
            row(
                "swim first suspicion ms",
                format!(
                    "mean {:.0} / p99 {:.0} (probe {:.0} ms; {} suspicions of live nodes)",
                    d.mean, d.p99, sw.probe_interval_ms, sw.live_suspicions
                ),
            );
        }
        if let Some(d) = sw.first_detection_ms {
            row(
                "swim first detection ms",
                format!(
                    "mean {:.0} / p99 {:.0} ({} of {} crashed, probe {:.0} ms)",
                    d.mean, d.p99, sw.detected, sw.crashed, sw.probe_interval_ms
                ),
            );
        }
        row(
            "swim false positives",
            format!("{} in {:.1} node-hours", sw.false_positives, sw.node_hours),
        );
        row("digest", self.digest.clone());
        s
    }
}

/// Numeric leaves of a JSON value as `a.b.c` paths (arrays skipped), in key order.
pub fn numeric_leaves(v: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
        match v {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_string(), x);
                }
            }
            Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// Mean, median and extremes of one metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Summary of the values (`None` if empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Self {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: v[(v.len() - 1) / 2],
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// The report of a multi-seed run: every run, and each numeric metric summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiReport {
    /// Scenario name.
    pub scenario: String,
    /// Node count.
    pub nodes: usize,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// Per metric path (`latency_ms.p99`, …): mean / p50 / min / max over the seeds.
    pub aggregate: BTreeMap<String, Summary>,
    /// The single-seed reports, in seed order.
    pub runs: Vec<Report>,
}

impl MultiReport {
    /// Aggregates `runs` (all of one scenario and size).
    pub fn new(runs: Vec<Report>) -> Self {
        let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &runs {
            let v = serde_json::to_value(r).unwrap_or(Value::Null);
            for (k, x) in numeric_leaves(&v) {
                if k == "seed" {
                    continue;
                }
                by_key.entry(k).or_default().push(x);
            }
        }
        Self {
            scenario: runs.first().map(|r| r.scenario.clone()).unwrap_or_default(),
            nodes: runs.first().map_or(0, |r| r.nodes),
            seeds: runs.iter().map(|r| r.seed).collect(),
            aggregate: by_key
                .into_iter()
                .filter_map(|(k, v)| Summary::of(&v).map(|s| (k, s)))
                .collect(),
            runs,
        }
    }
}

/// The metrics of a report file for `compare`: the numeric leaves of a single report, or the
/// means of a multi-seed report's aggregate.
pub fn comparable_metrics(v: &Value) -> BTreeMap<String, f64> {
    match v.get("aggregate") {
        Some(Value::Object(agg)) => agg
            .iter()
            .filter_map(|(k, s)| {
                s.get("mean")
                    .and_then(Value::as_f64)
                    .map(|m| (k.clone(), m))
            })
            .collect(),
        _ => numeric_leaves(v),
    }
}

/// A table of every metric of `a` and `b` with the change in percent.
pub fn compare_table(a: &Value, b: &Value) -> String {
    let (ma, mb) = (comparable_metrics(a), comparable_metrics(b));
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>16} {:>16} {:>10}",
        "metric", "A", "B", "change"
    );
    for k in keys {
        let (x, y) = (ma.get(k), mb.get(k));
        let fmt = |v: Option<&f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        let change = match (x, y) {
            (Some(x), Some(y)) if *x != 0.0 => format!("{:+.1}%", (y - x) / x.abs() * 100.0),
            (Some(x), Some(y)) if x == y => "0.0%".into(),
            _ => "-".into(),
        };
        let _ = writeln!(s, "{k:<40} {:>16} {:>16} {change:>10}", fmt(x), fmt(y));
    }
    s
}

/// Peak resident memory of this process in MiB (`VmHWM` of `/proc/self/status`), if readable.
pub fn max_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The non-zero counters of a named-field counter struct (`x0x_proto` stats), by field name.
pub(crate) fn named_counts(counters: &impl Serialize) -> Vec<(String, u64)> {
    let Ok(Value::Object(fields)) = serde_json::to_value(counters) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k, n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_keys_come_first_in_order() {
        let v = serde_json::to_value(Report::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        // serde_json without preserve_order sorts keys in a Value; check the string instead.
        assert!(keys.contains(&"digest"));
        let s = serde_json::to_string(&Report::default()).unwrap();
        let order = [
            "scenario",
            "nodes",
            "seed",
            "delivery_ratio",
            "rmr",
            "ldh_max",
            "latency_ms",
            "isolated_nodes",
            "components",
            "messages_processed",
            "wall_secs",
            "digest",
            "discovery_ms",
            "find_agent_success_ratio",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|k| s.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{s}");
    }

    #[test]
    fn summary_and_compare() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.mean, s.p50, s.min, s.max), (2.0, 2.0, 1.0, 3.0));
        let a = serde_json::json!({"rmr": 1.0, "latency_ms": {"p50": 100.0}});
        let b = serde_json::json!({"rmr": 1.5, "latency_ms": {"p50": 90.0}});
        let t = compare_table(&a, &b);
        assert!(t.contains("+50.0%") && t.contains("-10.0%"), "{t}");
    }
}
