//! The broadcast workload: publish rounds, deliveries and the figures they give.
//!
//! A round publishes one message per publisher (one fixed node, a random live subscriber,
//! or every live subscriber) and ends when every eligible node delivered its messages, or
//! after `round_timeout_ms`; the next starts `round_gap_ms` later. Eligible: subscribed, not
//! the publisher, and alive without a restart from the round's start to its end. A node that
//! (re)started after a publish catches up on history: those deliveries are counted apart.
//!
//! RMR and LDH are as the crate doc defines them.

use bytes::Bytes;
use rand::RngExt;
use x0x_proto::Time;
use x0x_proto::wire::{Frame, MessageId};

use crate::scenario::Publishers;
use crate::sim::{Ev, Sim, Slot, TraceTag, World, ms};
use crate::stats::Bitset;

/// A round snapshot's entry for a node that was down at the round's start.
const DEAD: u32 = u32::MAX;

/// One published message.
#[derive(Debug)]
pub(crate) struct MsgRec {
    pub(crate) round: u32,
    pub(crate) publisher: u32,
    /// Topic index.
    pub(crate) topic: u16,
    pub(crate) published: u64,
    /// Nodes that delivered it (first deliveries).
    pub(crate) delivered: Bitset,
    pub(crate) delivered_count: u32,
    /// Eligible nodes at the round's end.
    pub(crate) eligible_end: u32,
    /// Eligible nodes that delivered by the round's end.
    pub(crate) credited_end: u32,
    /// `Gossip` frames received for it (the `m` of RMR).
    pub(crate) gossip_frames: u64,
    /// Largest hop count of a first delivery.
    pub(crate) ldh: u8,
}

/// One round.
#[derive(Debug)]
pub(crate) struct RoundRec {
    /// Its messages (indices into the message list).
    pub(crate) msgs: std::ops::Range<u32>,
    pub(crate) open: bool,
    /// Deliveries still awaited from eligible nodes.
    pub(crate) pending: u64,
    /// Each node's incarnation at the start ([`DEAD`] if down), taken at the end.
    pub(crate) snapshot: Vec<u32>,
    /// Min over its messages of credited / eligible.
    pub(crate) ratio: Option<f64>,
}

impl Sim<'_> {
    /// The fixed publisher, in a scenario that has one.
    pub(crate) fn fixed_publisher(&self) -> Option<u32> {
        (self.sc.workload.publishers == Publishers::Fixed)
            .then(|| self.sc.workload.publisher.min(self.nodes.len() - 1) as u32)
    }

    /// The (publisher, topic) pairs of round `r`, in a deterministic order.
    fn publishers(&mut self, r: u32) -> Vec<(u32, u16)> {
        let n = self.nodes.len();
        let ntopics = self.w.topics.len();
        let live_sub =
            |w: &World, i: u32, t: usize| w.slots[i as usize].alive && w.subs[t].get(i as usize);
        let mut pubs: Vec<(u32, u16)> = Vec::new();
        match self.sc.workload.publishers {
            Publishers::Fixed => {
                let p = self.fixed_publisher().unwrap_or(0);
                let t = (r as usize % ntopics) as u16;
                if self.w.slots[p as usize].alive {
                    pubs.push((p, t));
                }
            }
            Publishers::Random => {
                let t = self.w.script_rng.random_range(0..ntopics) as u16;
                let cands: Vec<u32> = (0..n as u32)
                    .filter(|&i| live_sub(&self.w, i, t as usize))
                    .collect();
                if !cands.is_empty() {
                    pubs.push((cands[self.w.script_rng.random_range(0..cands.len())], t));
                }
            }
            Publishers::All => {
                for t in 0..ntopics {
                    for i in 0..n as u32 {
                        if live_sub(&self.w, i, t) {
                            pubs.push((i, t as u16));
                        }
                    }
                }
            }
        }
        pubs
    }

    /// Starts round `r`: publishes its messages and waits for their deliveries.
    pub(crate) fn start_round(&mut self, r: u32) {
        let pubs = self.publishers(r);
        let snapshot: Vec<u32> = self
            .w
            .slots
            .iter()
            .map(|s| if s.alive { s.inc } else { DEAD })
            .collect();
        let first = self.w.msgs.len() as u32;
        for (k, (p, t)) in pubs.into_iter().enumerate() {
            self.publish(r, k as u64, p, t);
        }
        self.publish_spam(r);
        let last = self.w.msgs.len() as u32;
        self.w.rounds.push(RoundRec {
            msgs: first..last,
            open: true,
            pending: 0,
            snapshot,
            ratio: None,
        });
        // Deliveries made during the publish calls happened before the round existed.
        self.w.recount_pending(r);
        if self.w.rounds[r as usize].pending == 0 {
            self.w.close_round(r);
        } else {
            let timeout = ms(self.sc.workload.round_timeout_ms);
            self.w.push(self.w.now + timeout, Ev::RoundTimeout(r));
        }
    }

    /// Node `p` publishes message `k` of round `r` on topic `t`; a payload that names them.
    fn publish(&mut self, r: u32, k: u64, p: u32, t: u16) {
        let size = self.sc.workload.payload_bytes.max(24);
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&self.seed.to_le_bytes());
        payload[8..12].copy_from_slice(&r.to_le_bytes());
        payload[12..16].copy_from_slice(&p.to_le_bytes());
        payload[16..24].copy_from_slice(&k.to_le_bytes());
        let topic = self.w.topics[t as usize];
        let n = self.nodes.len();
        let Some(node) = self.nodes[p as usize].as_mut() else {
            return;
        };
        let now = self.w.now;
        // Register before draining: a protocol may deliver locally at once.
        let mut registered = false;
        if let Ok(id) = node.publish(Time::from_micros(now), topic, Bytes::from(payload))
            && !self.w.msg_by_id.contains_key(&id)
        {
            self.w.msg_by_id.insert(id, self.w.msgs.len() as u32);
            self.w.msgs.push(MsgRec {
                round: r,
                publisher: p,
                topic: t,
                published: now,
                delivered: Bitset::new(n),
                delivered_count: 0,
                eligible_end: 0,
                credited_end: 0,
                gossip_frames: 0,
                ldh: 0,
            });
            registered = true;
            self.w.count_publish();
        }
        self.w
            .trace
            .rec(now, TraceTag::Publish, p, u64::from(registered));
        self.w.drain(p, node);
    }
}

/// The nodes of `snapshot` still in the same incarnation.
fn unchanged_since(slots: &[Slot], snapshot: &[u32]) -> Bitset {
    let mut live = Bitset::new(slots.len());
    for (i, &inc) in snapshot.iter().enumerate() {
        if inc != DEAD && slots[i].alive && slots[i].inc == inc {
            live.set(i);
        }
    }
    live
}

/// The eligible nodes among `live` for a message of publisher `p` to subscribers `subs`.
fn eligible(live: &Bitset, subs: &Bitset, p: u32) -> u64 {
    let p = p as usize;
    live.count_and(Some(subs)) - u64::from(live.get(p) && subs.get(p))
}

impl World {
    /// Counts a received `Gossip` frame against its workload message (for RMR).
    pub(crate) fn attribute_gossip(&mut self, to: u32, bytes: &[u8]) {
        let Ok(Frame::Gossip(g)) = Frame::decode(bytes) else {
            return;
        };
        let id = g.message.id();
        let Some(&mi) = self.msg_by_id.get(&id) else {
            return;
        };
        let rec = &mut self.msgs[mi as usize];
        rec.gossip_frames += 1;
        if self.subs[rec.topic as usize].get(to as usize) {
            self.m.sub_frames += 1;
        } else {
            self.m.nonsub_frames += 1;
        }
    }

    /// Node `j` delivered message `id` after `hops` hops.
    pub(crate) fn on_delivery(&mut self, j: u32, id: MessageId, hops: u8) {
        if let Some(again) = self.flood.as_mut().and_then(|f| f.on_delivery(j, &id)) {
            if again {
                self.adversary_redelivery(j);
            }
            return;
        }
        if let Some(spam) = self.spam.as_mut()
            && spam.on_delivery(j, &id)
        {
            return;
        }
        let Some(&mi) = self.msg_by_id.get(&id) else {
            self.adversary_unknown_delivery(j);
            return;
        };
        let now = self.now;
        let rec = &mut self.msgs[mi as usize];
        if j == rec.publisher {
            return;
        }
        if self.slots[j as usize].started_at > rec.published {
            // A node (re)started after the publish catching up on history: not a receipt of
            // a broadcast it was there for.
            self.m.deliveries_after_restart += 1;
            return;
        }
        if rec.delivered.get(j as usize) {
            self.m.duplicate_deliveries += 1;
            self.adversary_redelivery(j);
            return;
        }
        rec.delivered.set(j as usize);
        rec.delivered_count += 1;
        self.m.deliveries += 1;
        self.m.latency.record(now - rec.published);
        self.m.hops[hops as usize] += 1;
        rec.ldh = rec.ldh.max(hops);
        self.trace.rec(
            now,
            TraceTag::Delivery,
            j,
            (u64::from(mi) << 8) | u64::from(hops),
        );
        let (r, topic) = (rec.round, rec.topic);
        let round = &mut self.rounds[r as usize];
        if round.open
            && round.snapshot[j as usize] == self.slots[j as usize].inc
            && self.subs[topic as usize].get(j as usize)
        {
            round.pending = round.pending.saturating_sub(1);
            if round.pending == 0 {
                self.close_round(r);
            }
        }
    }

    /// Recomputes the pending count of an open round: eligible nodes (live since the
    /// snapshot, subscribed, not the publisher) that have not delivered.
    pub(crate) fn recount_pending(&mut self, r: u32) {
        let round = &self.rounds[r as usize];
        let live = unchanged_since(&self.slots, &round.snapshot);
        let mut pending = 0u64;
        for mi in round.msgs.clone() {
            let rec = &self.msgs[mi as usize];
            let subs = &self.subs[rec.topic as usize];
            pending += eligible(&live, subs, rec.publisher) - rec.delivered.count_and2(&live, subs);
        }
        self.rounds[r as usize].pending = pending;
    }

    /// Node `j` crashed or left: it will not deliver the open round's messages.
    pub(crate) fn node_gone(&mut self, j: u32) {
        let Some(r) = self.rounds.iter().rposition(|x| x.open) else {
            return;
        };
        let round = &self.rounds[r];
        if round.snapshot[j as usize] != self.slots[j as usize].inc {
            return;
        }
        let mut gone = 0u64;
        for mi in round.msgs.clone() {
            let rec = &self.msgs[mi as usize];
            if rec.publisher != j
                && self.subs[rec.topic as usize].get(j as usize)
                && !rec.delivered.get(j as usize)
            {
                gone += 1;
            }
        }
        let round = &mut self.rounds[r];
        round.pending = round.pending.saturating_sub(gone);
        if round.pending == 0 {
            self.close_round(r as u32);
        }
    }

    /// Ends round `r`: computes its delivery ratio and schedules what comes next.
    pub(crate) fn close_round(&mut self, r: u32) {
        let round = &mut self.rounds[r as usize];
        if !round.open {
            return;
        }
        round.open = false;
        let snapshot = std::mem::take(&mut round.snapshot);
        let stable = unchanged_since(&self.slots, &snapshot);
        let mut ratio: Option<f64> = None;
        for mi in round.msgs.clone() {
            let rec = &mut self.msgs[mi as usize];
            let subs = &self.subs[rec.topic as usize];
            let eligible = eligible(&stable, subs, rec.publisher);
            let credited = rec.delivered.count_and2(&stable, subs);
            rec.eligible_end = eligible as u32;
            rec.credited_end = credited as u32;
            if eligible > 0 {
                let x = credited as f64 / eligible as f64;
                ratio = Some(ratio.map_or(x, |y: f64| y.min(x)));
            }
        }
        round.ratio = ratio;
        self.trace.rec(
            self.now,
            TraceTag::RoundClosed,
            r,
            ratio.map_or(u64::MAX, f64::to_bits),
        );
        if r + 1 < self.total_rounds {
            self.push(self.now + self.round_gap_us, Ev::Round(r + 1));
        } else {
            let end = (self.now + self.drain_us).max(self.script_end + self.drain_us);
            self.push(end, Ev::End);
        }
    }
}

/// The per-round figures of a run.
#[derive(Debug, Default)]
pub(crate) struct RoundFigures {
    /// Min over the rounds' ratios.
    pub(crate) delivery_ratio: Option<f64>,
    /// Mean over the rounds with a defined RMR.
    pub(crate) rmr: Option<f64>,
    pub(crate) delivery_per_round: Vec<Option<f64>>,
    pub(crate) rmr_per_round: Vec<Option<f64>>,
    pub(crate) ldh_per_round: Vec<Option<u32>>,
}

impl RoundFigures {
    /// The figures of `rounds` over their messages `msgs`.
    pub(crate) fn of(rounds: &[RoundRec], msgs: &[MsgRec]) -> Self {
        let mut f = Self::default();
        for r in rounds {
            let msgs = &msgs[r.msgs.start as usize..r.msgs.end as usize];
            let vals: Vec<f64> = msgs
                .iter()
                .filter(|x| x.delivered_count > 0)
                .map(|x| x.gossip_frames as f64 / f64::from(x.delivered_count) - 1.0)
                .collect();
            f.rmr_per_round
                .push((!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64));
            f.ldh_per_round.push(
                msgs.iter()
                    .filter(|x| x.delivered_count > 0)
                    .map(|x| u32::from(x.ldh))
                    .max(),
            );
            f.delivery_per_round.push(r.ratio);
            if let Some(x) = r.ratio {
                f.delivery_ratio = Some(f.delivery_ratio.map_or(x, |d: f64| d.min(x)));
            }
        }
        let defined: Vec<f64> = f.rmr_per_round.iter().flatten().copied().collect();
        f.rmr = (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        f
    }
}

/// The hop figures of a run's deliveries.
#[derive(Debug)]
pub(crate) struct HopFigures {
    /// Largest hop count.
    pub(crate) ldh_max: Option<u32>,
    pub(crate) ldh_mean: Option<f64>,
    /// Deliveries per hop count, up to the largest.
    pub(crate) histogram: Vec<u64>,
}

impl HopFigures {
    /// The figures of `hops`, deliveries by hop count.
    pub(crate) fn of(hops: &[u64]) -> Self {
        let total: u64 = hops.iter().sum();
        let ldh_max = hops.iter().rposition(|&c| c > 0).map(|h| h as u32);
        let ldh_mean = (total > 0).then(|| {
            hops.iter()
                .enumerate()
                .map(|(h, &c)| h as f64 * c as f64)
                .sum::<f64>()
                / total as f64
        });
        let mut histogram = hops.to_vec();
        histogram.truncate(ldh_max.map_or(0, |h| h as usize + 1));
        Self {
            ldh_max,
            ldh_mean,
            histogram,
        }
    }
}
