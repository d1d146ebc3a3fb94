//! The measurements of a run and the report assembled from them at the end.

use std::collections::BTreeMap;

use x0x_proto::wire::FrameKind;
use x0x_proto::{Config, Node};

use super::{EPOCH_US, Outcome, Sim};
use crate::report::{BytesPerNode, Drops, NodeCounters, Report, max_rss_mb};
use crate::stats::LatencyRecorder;
use crate::workload::broadcast::{HopFigures, RoundFigures};
use crate::workload::direct;

/// What the world counts while the run goes.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Frames delivered into `handle_frame`.
    pub(crate) processed: u64,
    pub(crate) events: u64,
    /// Frames received, by kind byte.
    pub(crate) recv_by_kind: Vec<u64>,
    /// Frames sent, by kind byte.
    pub(crate) sent_by_kind: Vec<u64>,
    pub(crate) drops: Drops,
    pub(crate) dials: u64,
    pub(crate) dials_redundant: u64,
    pub(crate) connections: u64,
    /// Delivery latency: broadcast deliveries and direct messages.
    pub(crate) latency: LatencyRecorder,
    /// Broadcast deliveries by hop count.
    pub(crate) hops: Vec<u64>,
    pub(crate) deliveries: u64,
    pub(crate) duplicate_deliveries: u64,
    pub(crate) deliveries_after_restart: u64,
    /// Gossip frames of a workload message received at a subscriber of its topic.
    pub(crate) sub_frames: u64,
    /// Gossip frames of a workload message received at a non-subscriber.
    pub(crate) nonsub_frames: u64,
    /// The overlay measurement.
    pub(crate) isolated: usize,
    pub(crate) components: usize,
    pub(crate) degrees: Vec<u64>,
    pub(crate) live_at_overlay: usize,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            recv_by_kind: vec![0; 256],
            sent_by_kind: vec![0; 256],
            hops: vec![0; 256],
            ..Self::default()
        }
    }
}

impl Sim<'_> {
    /// Ends the run: the report, with `setup_secs` and `wall_secs` of wall time, and the
    /// latency CDF.
    pub(super) fn report(mut self, setup_secs: f64, wall_secs: f64) -> Outcome {
        let adversary = self.adversary_report();
        let collab = self.collab_report();
        let Self {
            sc,
            seed,
            real,
            nodes,
            w,
        } = self;
        let n = nodes.len();
        let m = &w.m;
        let mut rounds = RoundFigures::of(&w.rounds, &w.msgs);
        let hops = HopFigures::of(&m.hops);
        let sent: Vec<u64> = w.slots.iter().map(|s| s.bytes_sent).collect();
        let recv: Vec<u64> = w.slots.iter().map(|s| s.bytes_recv).collect();
        let topic_scenario = sc.workload.subscribers_per_topic.is_some();
        let (disc_report, discovery_ms, find_agent_success_ratio) = match w.disc {
            Some(d) => {
                let (r, p, f) = d.finish(w.now, sent.iter().sum(), n);
                (Some(r), p, f)
            }
            None => (None, None, None),
        };
        let direct = (sc.direct.messages > 0).then(|| w.dm.summary(&nodes));
        if let Some(d) = &direct
            && w.rounds.is_empty()
        {
            rounds.delivery_ratio = Some(direct::delivery_ratio(d));
        }
        let mut report = Report {
            scenario: sc.name.clone(),
            nodes: n,
            seed,
            delivery_ratio: rounds.delivery_ratio,
            rmr: rounds.rmr,
            ldh_max: hops.ldh_max,
            latency_ms: m.latency.percentiles(),
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
            delivery_per_round: rounds.delivery_per_round,
            rmr_per_round: rounds.rmr_per_round,
            ldh_per_round: rounds.ldh_per_round,
            ldh_mean: hops.ldh_mean,
            hops_histogram: hops.histogram,
            degree_histogram: m.degrees.clone(),
            live_nodes_at_overlay: m.live_at_overlay,
            frames_by_kind: by_kind(&m.recv_by_kind),
            frames_sent_by_kind: by_kind(&m.sent_by_kind),
            drops: m.drops,
            bytes_per_node: bytes_per_node(&sent, &recv),
            payload_frames_subscribers: m.sub_frames,
            payload_frames_nonsubscribers: m.nonsub_frames,
            topic_sparse_nonsub_ratio: (topic_scenario && m.sub_frames > 0)
                .then(|| m.nonsub_frames as f64 / m.sub_frames as f64),
            dials: m.dials,
            dials_redundant: m.dials_redundant,
            connections: m.connections,
            node_counters: node_counters(&nodes),
            direct,
            adversary,
            trust: w.spam.as_ref().map(|s| {
                let refused = s
                    .blockers
                    .iter()
                    .filter_map(|&i| nodes[i as usize].as_ref())
                    .map(|node| node.stats().trust.refused.messages_blocked)
                    .sum();
                s.report(n, refused)
            }),
            collab,
            flood: w
                .flood
                .as_ref()
                .map(crate::workload::flood::FloodRun::report),
            messages_published_in_60s_max: w.published_in_60s_max,
            presence: w.presence.as_ref().map(|run| {
                let live = w.slots.iter().filter(|s| s.alive).count();
                let secs = w.now.saturating_sub(w.warmup_end) as f64 / 1e6;
                let interval = self
                    .sc
                    .node
                    .presence
                    .as_ref()
                    .map_or(Config::default().presence.beacon_interval, |p| {
                        p.beacon_interval
                    });
                run.report(interval, live as f64 * secs / 3600.0, n, secs)
            }),
            swim: w.swim.summary(
                n as f64 * (w.now - EPOCH_US) as f64 / 1e6 / 3600.0,
                Config::default().membership.probe_interval.as_secs_f64() * 1000.0,
            ),
        };
        let latency_cdf = m.latency.cdf(200);
        report.digest = w.trace.finish();
        Outcome {
            report,
            latency_cdf,
        }
    }
}

/// Frame counts by kind name (`kind_0x..` for an unknown byte), the zero ones left out.
fn by_kind(v: &[u64]) -> BTreeMap<String, u64> {
    v.iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(k, c)| {
            let name =
                FrameKind::from_byte(k as u8).map_or(format!("kind_{k:#04x}"), |f| f.to_string());
            (name, *c)
        })
        .collect()
}

/// Mean and largest bytes sent and received per node.
fn bytes_per_node(sent: &[u64], recv: &[u64]) -> BytesPerNode {
    let n = sent.len() as f64;
    BytesPerNode {
        sent_mean: sent.iter().sum::<u64>() as f64 / n,
        sent_max: sent.iter().copied().max().unwrap_or(0),
        received_mean: recv.iter().sum::<u64>() as f64 / n,
        received_max: recv.iter().copied().max().unwrap_or(0),
    }
}

/// The nodes' own counters summed over the nodes alive at the end.
fn node_counters(nodes: &[Option<Node>]) -> NodeCounters {
    let mut counters = NodeCounters::default();
    for node in nodes.iter().flatten() {
        let s = node.stats();
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
    counters
}
