//! A flood: honest publishers publish at a fixed rate on topic 0, so every node sees more
//! message ids than its dedup window holds by count (`replay-flood`). Flood messages are
//! counted apart from the rounds; a second delivery of one at an honest node is a replay that
//! got through ([`crate::adversary::AdversaryReport::replayed_redeliveries`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use x0x_proto::Time;
use x0x_proto::wire::MessageId;

use crate::sim::{Ev, Sim, World, ms};
use crate::stats::Bitset;

/// The `[flood]` section of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodSpec {
    /// Nodes `0..publishers` publish the flood. Default 4.
    pub publishers: usize,
    /// Messages per second, all publishers together. Default 1 500.
    #[serde(deserialize_with = "crate::scenario::num")]
    pub per_sec: f64,
    /// When the flood starts, after the warm-up. Default 0.
    pub start_ms: u64,
    /// How long it lasts. Default 60 000 ms.
    pub duration_ms: u64,
    /// Payload size in bytes. Default 64.
    pub payload_bytes: usize,
    /// Interval between publishing bursts. Default 100 ms.
    pub tick_ms: u64,
}

impl Default for FloodSpec {
    fn default() -> Self {
        Self {
            publishers: 4,
            per_sec: 1500.0,
            start_ms: 0,
            duration_ms: 60_000,
            payload_bytes: 64,
            tick_ms: 100,
        }
    }
}

impl FloodSpec {
    /// Checks ranges.
    pub fn validate(&self, nodes: usize) -> Result<(), String> {
        if self.publishers == 0 || self.publishers > nodes {
            return Err("flood.publishers must be in 1..=nodes".into());
        }
        if self.per_sec.is_nan() || self.per_sec <= 0.0 || self.tick_ms == 0 {
            return Err("flood.per_sec and flood.tick_ms must be > 0".into());
        }
        Ok(())
    }
}

/// What the flood did (report key `flood`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloodReport {
    /// Flood messages published.
    pub published: u64,
    /// First deliveries of flood messages (a publisher's own copy included).
    pub delivered: u64,
    /// Second deliveries of a flood message at a node (a replay that got through).
    pub redelivered: u64,
}

/// The flood's running state.
#[derive(Debug, Default)]
pub(crate) struct FloodRun {
    /// Flood message ids, each with the nodes that delivered it.
    ids: BTreeMap<MessageId, Bitset>,
    /// Fractional messages carried to the next tick.
    carry: f64,
    /// Publisher of the next message (round robin).
    next_publisher: usize,
    report: FloodReport,
}

impl FloodRun {
    /// If `id` is a flood message: records its delivery at `j` and says whether it was a
    /// second one.
    pub(crate) fn on_delivery(&mut self, j: u32, id: &MessageId) -> Option<bool> {
        let delivered = self.ids.get_mut(id)?;
        if delivered.get(j as usize) {
            self.report.redelivered += 1;
            return Some(true);
        }
        delivered.set(j as usize);
        self.report.delivered += 1;
        Some(false)
    }

    pub(crate) fn report(&self) -> FloodReport {
        self.report.clone()
    }
}

impl World {
    /// Queues the flood's first tick.
    pub(crate) fn schedule_flood(&mut self, spec: &FloodSpec) {
        self.push(self.warmup_end + ms(spec.start_ms), Ev::Flood);
        let end = self.warmup_end + ms(spec.start_ms + spec.duration_ms);
        self.script_end = self.script_end.max(end);
    }
}

impl Sim<'_> {
    /// One burst of the flood, then the next tick until the flood's end.
    pub(crate) fn flood_tick(&mut self) {
        let Some(spec) = self.sc.flood.clone() else {
            return;
        };
        let Some(run) = self.w.flood.as_mut() else {
            return;
        };
        run.carry += spec.per_sec * spec.tick_ms as f64 / 1000.0;
        let count = run.carry.floor() as u64;
        run.carry -= count as f64;
        let topic = self.w.topics[0];
        let n = self.nodes.len();
        for _ in 0..count {
            let Some(run) = self.w.flood.as_mut() else {
                return;
            };
            let p = run.next_publisher % spec.publishers;
            run.next_publisher += 1;
            let k = run.report.published;
            let mut payload = vec![0u8; spec.payload_bytes.max(16)];
            payload[..8].copy_from_slice(b"flood-v1");
            payload[8..16].copy_from_slice(&k.to_le_bytes());
            let now = self.w.now;
            let Some(node) = self.nodes[p].as_mut() else {
                continue;
            };
            // Registered before draining: the publisher may deliver its own copy at once.
            if let Ok(id) = node.publish(Time::from_micros(now), topic, Bytes::from(payload))
                && let Some(run) = self.w.flood.as_mut()
            {
                run.ids.insert(id, Bitset::new(n));
                run.report.published += 1;
                self.w.count_publish();
            }
            self.w.drain(p as u32, node);
        }
        let end = self.w.warmup_end + ms(spec.start_ms + spec.duration_ms);
        let next = self.w.now + ms(spec.tick_ms);
        if next < end {
            self.w.push(next, Ev::Flood);
        }
    }
}
