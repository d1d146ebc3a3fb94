//! The trust workload (`[spam]`): one node publishes spam on the measured topic each round;
//! a share of the other nodes block it in their contacts from the start. The honest rounds are
//! measured as usual (their delivery must stay 1.0); the spam must never be delivered at a
//! node that blocks its author, while the blocking nodes still relay it to the others.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use x0x_proto::node::TrustChange;
use x0x_proto::trust::TrustLevel;
use x0x_proto::wire::MessageId;
use x0x_proto::{AgentId, Time};

use crate::sim::{Sim, derive};

/// `[spam]` in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpamSpec {
    /// The spamming node. Default 1 (node 0 is the usual fixed publisher).
    pub spammer: usize,
    /// Share of the other nodes that block the spammer. Default 0.5.
    pub block_fraction: f64,
    /// Spam messages per round. Default 1.
    pub per_round: usize,
}

impl Default for SpamSpec {
    fn default() -> Self {
        Self {
            spammer: 1,
            block_fraction: 0.5,
            per_round: 1,
        }
    }
}

/// What the spam did (report key `trust`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrustReport {
    /// The spamming node.
    pub spammer: usize,
    /// Nodes that block it.
    pub blockers: usize,
    /// Nodes that do not (the spammer excluded).
    pub others: usize,
    /// Spam messages published.
    pub spam_published: u64,
    /// Spam deliveries at blocking nodes. Must be 0.
    pub spam_delivered_at_blockers: u64,
    /// Spam deliveries at the other nodes (they do not block it, and the blockers relay it).
    pub spam_delivered_elsewhere: u64,
    /// Spam deliveries the other nodes could make (published × others).
    pub spam_deliverable_elsewhere: u64,
    /// Spam messages the blocking nodes counted as refused (`messages_blocked`), summed.
    pub refused_at_blockers: u64,
}

/// The spam run's state.
#[derive(Debug, Default)]
pub(crate) struct SpamRun {
    pub(crate) spammer: u32,
    pub(crate) blockers: BTreeSet<u32>,
    ids: BTreeSet<MessageId>,
    published: u64,
    at_blockers: u64,
    elsewhere: u64,
}

impl SpamRun {
    /// Chooses the blocking nodes of `spec` among `n` (a hash of the seed and the index, so
    /// the choice consumes no random stream another workload uses).
    pub(crate) fn new(spec: &SpamSpec, n: usize, seed: u64) -> Self {
        let spammer = spec.spammer.min(n.saturating_sub(1)) as u32;
        let cut = (spec.block_fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
        let blockers = (0..n as u32)
            .filter(|&i| i != spammer)
            .filter(|&i| {
                let h = derive("x0x-sim spam blockers v1", seed, u64::from(i), 0);
                u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8])) < cut
            })
            .collect();
        Self {
            spammer,
            blockers,
            ..Self::default()
        }
    }

    /// Whether `id` is spam; if so, counts its delivery at node `j`.
    pub(crate) fn on_delivery(&mut self, j: u32, id: &MessageId) -> bool {
        if !self.ids.contains(id) {
            return false;
        }
        if j == self.spammer {
            // Its own copy (a publisher subscribed to the topic gets one).
        } else if self.blockers.contains(&j) {
            self.at_blockers += 1;
        } else {
            self.elsewhere += 1;
        }
        true
    }

    pub(crate) fn report(&self, n: usize, refused_at_blockers: u64) -> TrustReport {
        let others = n.saturating_sub(1 + self.blockers.len());
        TrustReport {
            spammer: self.spammer as usize,
            blockers: self.blockers.len(),
            others,
            spam_published: self.published,
            spam_delivered_at_blockers: self.at_blockers,
            spam_delivered_elsewhere: self.elsewhere,
            spam_deliverable_elsewhere: self.published * others as u64,
            refused_at_blockers,
        }
    }
}

impl Sim<'_> {
    /// Every blocking node blocks the spammer's agent (once, at start).
    pub(crate) fn block_spammer(&mut self, spammer: AgentId) {
        let Some(run) = self.w.spam.as_ref() else {
            return;
        };
        let blockers: Vec<u32> = run.blockers.iter().copied().collect();
        for i in blockers {
            self.call(i, |node, now| {
                let change = TrustChange::SetLevel {
                    agent: spammer,
                    level: TrustLevel::Blocked,
                };
                // The store is empty and far below its cap: this cannot be refused.
                let _ = node.change_trust(now, change);
            });
        }
    }

    /// The spammer publishes this round's spam on topic 0.
    pub(crate) fn publish_spam(&mut self, r: u32) {
        let (Some(spec), Some(run)) = (self.sc.spam.as_ref(), self.w.spam.as_ref()) else {
            return;
        };
        let (p, per_round) = (run.spammer, spec.per_round);
        let topic = self.w.topics[0];
        let now = self.w.now;
        for k in 0..per_round {
            let mut payload = b"spam".to_vec();
            payload.extend_from_slice(&r.to_le_bytes());
            payload.extend_from_slice(&(k as u64).to_le_bytes());
            let Some(node) = self.nodes[p as usize].as_mut() else {
                return;
            };
            if let Ok(id) = node.publish(Time::from_micros(now), topic, Bytes::from(payload))
                && let Some(run) = self.w.spam.as_mut()
            {
                run.ids.insert(id);
                run.published += 1;
            }
            self.w.drain(p, node);
        }
    }
}
