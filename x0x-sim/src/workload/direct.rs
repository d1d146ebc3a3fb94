//! The direct-message workload: messages between random pairs of live nodes, sent at
//! `per_sec` after the warm-up, and what became of them (deliveries, receipts, failures).
//!
//! Each sender imports the recipient's agent card just before sending, as an application
//! that got it out of band: the run measures direct messaging, not discovery.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use x0x_proto::Node;
use x0x_proto::direct::{DirectFailure, DirectOptions, DirectReceipt, PathPreference, RequestId};
use x0x_proto::wire::Record;

use crate::report::DirectSummary;
use crate::scenario::{DirectPathChoice, Scenario};
use crate::sim::{Sim, TraceTag, World, ms};
use crate::stats::LatencyRecorder;

/// One sent message.
#[derive(Debug)]
pub(crate) struct DmRec {
    pub(crate) dst: u32,
    pub(crate) sent: u64,
    pub(crate) delivered: bool,
}

/// The direct-message workload's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct DirectRun {
    pub(crate) msgs: Vec<DmRec>,
    pub(crate) by_id: BTreeMap<RequestId, u32>,
    /// Each node's agent card, made on first use.
    pub(crate) cards: Vec<Option<Vec<Record>>>,
    pub(crate) send_errors: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) misdelivered: u64,
    pub(crate) receipts: u64,
    pub(crate) receipts_by_path: BTreeMap<String, u64>,
    pub(crate) retries: u64,
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) latency: LatencyRecorder,
    pub(crate) receipt_latency: LatencyRecorder,
}

/// When message `k` is sent.
pub(crate) fn send_time(sc: &Scenario, warmup_end: u64, k: usize) -> u64 {
    warmup_end + ms(sc.direct.start_ms) + (k as f64 * 1e6 / sc.direct.per_sec) as u64
}

/// A direct scenario's delivery ratio: delivered exactly once to the right recipient
/// (duplicates and misdeliveries count against it).
pub(crate) fn delivery_ratio(d: &DirectSummary) -> f64 {
    let good = d
        .delivered
        .saturating_sub(d.duplicate_deliveries + d.misdelivered);
    if d.messages == 0 {
        0.0
    } else {
        good as f64 / d.messages as f64
    }
}

impl DirectRun {
    /// The bookkeeping of a run of `n` nodes.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            cards: vec![None; n],
            ..Self::default()
        }
    }

    /// The workload's figures, with the attempts and refusals the `nodes` counted.
    pub(crate) fn summary(&self, nodes: &[Option<Node>]) -> DirectSummary {
        let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        for node in nodes.iter().flatten() {
            let ds = node.stats().direct;
            for (k, v) in crate::report::named_counts(&ds.attempts) {
                *attempts.entry(k).or_default() += v;
            }
            for (k, v) in crate::report::named_counts(&ds.rejected) {
                *rejected.entry(k).or_default() += v;
            }
        }
        DirectSummary {
            messages: self.msgs.len() as u64 + self.send_errors,
            send_errors: self.send_errors,
            delivered: self.delivered,
            duplicate_deliveries: self.duplicates,
            misdelivered: self.misdelivered,
            receipts: self.receipts,
            receipts_by_path: self.receipts_by_path.clone(),
            retries: self.retries,
            failures: self.failures.clone(),
            attempts_by_path: attempts,
            rejected,
            latency_ms: self.latency.percentiles(),
            receipt_latency_ms: self.receipt_latency.percentiles(),
        }
    }
}

impl Sim<'_> {
    /// Sends direct message `k` between a random pair of live nodes.
    pub(crate) fn direct_send(&mut self, k: u32) {
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
        let (Some(card), Some(to)) = (
            self.agent_card(dst),
            self.nodes[dst as usize].as_ref().map(Node::agent_id),
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
        self.w
            .trace
            .rec(now, TraceTag::DirectSend, src, u64::from(dst));
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

    /// Node `j`'s agent card, made on first use.
    fn agent_card(&mut self, j: u32) -> Option<Vec<Record>> {
        if self.w.dm.cards[j as usize].is_none() {
            let mut card = None;
            self.call(j, |node, t| card = Some(node.agent_card(t)));
            self.w.dm.cards[j as usize] = card;
        }
        self.w.dm.cards[j as usize].clone()
    }
}

impl World {
    /// Node `j` received direct message `id`.
    pub(crate) fn on_direct_message(&mut self, j: u32, id: RequestId) {
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
        self.trace
            .rec(now, TraceTag::DirectMessage, j, u64::from(idx));
    }

    /// Sender `i` got receipt `r`.
    pub(crate) fn on_direct_receipt(&mut self, i: u32, r: &DirectReceipt) {
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
        self.trace
            .rec(self.now, TraceTag::DirectReceipt, i, u64::from(r.retries));
    }

    /// A send of node `i` failed for `reason`.
    pub(crate) fn on_direct_failed(&mut self, i: u32, reason: DirectFailure) {
        *self.dm.failures.entry(format!("{reason:?}")).or_default() += 1;
        self.trace.rec(self.now, TraceTag::DirectFailed, i, 0);
    }
}
