//! The message cache (GRAFT answers, catch-up digests) and the dedup window of seen ids.
//!
//! Both are bounded twice: by count (oldest evicted first, counted) and by age (expired once
//! a second). The node checks an id against the dedup window before it verifies a signature,
//! and marks an id seen only once the message verified, so a forged copy cannot shadow the
//! genuine message.

use super::Broadcast;
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{MessageId, Signed, TopicId};

/// A message kept for GRAFT answers and catch-up digests.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) topic: TopicId,
    /// Hops it had travelled to reach this node.
    pub(super) hops: u8,
    /// The peer its first copy came from (`None`: published here).
    pub(super) from: Option<MachineId>,
    pub(super) message: Signed,
    /// When it was cached (its expiry counts from here).
    pub(super) at: Time,
}

impl Broadcast {
    /// Whether the message id was seen (delivered or forwarded) recently.
    pub(crate) fn is_known(&self, id: &MessageId) -> bool {
        self.seen.contains(id) || self.refused.contains_key(id)
    }

    /// Whether the message `id` stamped `stamp`, not known, may repeat an id the dedup window
    /// forgot under a flood (`seen.rs`): the node refuses it, counted here. The id is kept
    /// apart (oldest first out, at `seen_capacity / 16`), so its copies and IHAVEs cost a
    /// lookup rather than more GRAFTs and verifications.
    pub(crate) fn refuse_below_floor(&mut self, id: MessageId, stamp: Time) -> bool {
        let below = self.seen.below_floor(stamp);
        if below {
            self.stats.dropped.replay_floor += 1;
            self.missing.remove(&id);
            self.refused.push(id, ());
        }
        below
    }

    /// Marks `id` (stamped `stamp`) seen and caches its message, and lists it among its
    /// topic's recent ids.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remember(
        &mut self,
        now: Time,
        stamp: Time,
        id: MessageId,
        topic: TopicId,
        hops: u8,
        from: Option<MachineId>,
        message: Signed,
    ) {
        self.mark_seen(stamp, id);
        if self.cache.contains_key(&id) {
            return;
        }
        let cached = Cached {
            topic,
            hops,
            from,
            message,
            at: now,
        };
        if self.cache.push(id, cached).is_some() {
            self.stats.dropped.cache_evicted += 1;
        }
        if let Some(t) = self.topics.get_mut(&topic) {
            if t.recent.len() >= self.config.catch_up_ids {
                t.recent.pop_front();
            }
            t.recent.push_back((id, hops));
        }
    }

    /// Puts `id` in the dedup window with its message's stamp: when it was published, for a
    /// pub/sub message, else when it arrived. (A message refused for its age is remembered
    /// too, so a repeat costs a lookup rather than another verification.)
    pub(crate) fn mark_seen(&mut self, stamp: Time, id: MessageId) {
        if self.seen.insert(id, stamp) {
            self.stats.dropped.seen_evicted += 1;
        }
    }

    /// Drops cached messages and seen ids past their retention.
    pub(super) fn expire(&mut self, now: Time) {
        let (cache, seen) = (self.config.cache_retention, self.config.seen_retention);
        self.cache.pop_oldest_while(|c| now - c.at >= cache);
        let seen_us = u64::try_from(seen.as_micros()).unwrap_or(u64::MAX);
        if let Some(before) = now.as_micros().checked_sub(seen_us) {
            self.seen.expire(Time::from_micros(before));
        }
    }
}
