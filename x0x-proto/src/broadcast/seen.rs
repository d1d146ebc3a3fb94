//! The dedup window: the ids of messages seen, each with its message's stamp (when it was
//! published, for pub/sub messages; when it arrived, for the rest).
//!
//! A window bounded by count alone has a replay hole: a flood of more than `seen_capacity`
//! messages within `max_message_age` pushes an id out while its message is still young enough
//! to pass the age check, and a replay of it is then delivered again. This window closes the
//! hole at any rate:
//!
//! * it forgets in stamp order (the oldest stamp first), not in arrival order;
//! * an id forgotten before its retention raises a *floor* to its stamp. Every id seen with a
//!   stamp above the floor is still in the window, so a message that is not in the window and
//!   is stamped at or below the floor may be a replay, and the node refuses it
//!   ([`BroadcastDrops::replay_floor`](super::BroadcastDrops::replay_floor));
//! * ids past their retention (counted from the stamp) are forgotten without touching the
//!   floor: a copy of one is older than `max_message_age` and refused as stale.
//!
//! The price, only while a flood exceeds the cap, is that a genuinely new message stamped
//! before the floor (one that took longer to arrive than the window's span) is refused.
//! docs/design.md (*No replay window*) has the argument.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Time;
use crate::wire::MessageId;

/// Message ids with their stamps, forgotten oldest stamp first, with a floor.
#[derive(Debug)]
pub(super) struct SeenWindow {
    ids: BTreeMap<MessageId, Time>,
    by_stamp: BTreeSet<(Time, MessageId)>,
    cap: usize,
    /// The newest stamp of an id forgotten before its retention.
    floor: Option<Time>,
}

impl SeenWindow {
    /// An empty window of at most `cap` ids.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            ids: BTreeMap::new(),
            by_stamp: BTreeSet::new(),
            cap,
            floor: None,
        }
    }

    pub(super) fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains_key(id)
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Remembers `id` stamped `stamp` (an id already present keeps its first stamp). At the
    /// cap the oldest stamp goes, possibly this one, and raises the floor; returns whether
    /// that happened.
    pub(super) fn insert(&mut self, id: MessageId, stamp: Time) -> bool {
        if self.ids.contains_key(&id) {
            return false;
        }
        self.ids.insert(id, stamp);
        self.by_stamp.insert((stamp, id));
        if self.ids.len() <= self.cap {
            return false;
        }
        if let Some((oldest, gone)) = self.by_stamp.pop_first() {
            self.ids.remove(&gone);
            self.floor = Some(self.floor.map_or(oldest, |f| f.max(oldest)));
        }
        true
    }

    /// Forgets the ids stamped before `before` (past their retention); the floor stays.
    pub(super) fn expire(&mut self, before: Time) {
        while let Some(&(stamp, id)) = self.by_stamp.first() {
            if stamp >= before {
                break;
            }
            self.by_stamp.pop_first();
            self.ids.remove(&id);
        }
    }

    /// Whether a message stamped `stamp` that is not in the window may repeat an id the
    /// window forgot early.
    pub(super) fn below_floor(&self, stamp: Time) -> bool {
        self.floor.is_some_and(|f| stamp <= f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(k: u64) -> MessageId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&k.to_le_bytes());
        MessageId(b)
    }

    #[test]
    fn forgets_the_oldest_stamp_first_and_raises_the_floor() {
        let mut w = SeenWindow::new(2);
        assert!(!w.insert(id(1), Time::from_secs(10)));
        assert!(!w.insert(id(2), Time::from_secs(5)));
        assert!(!w.below_floor(Time::from_secs(1)));
        assert!(w.insert(id(3), Time::from_secs(20)));
        // Stamp 5 went, though it arrived after stamp 10.
        assert!(!w.contains(&id(2)) && w.contains(&id(1)) && w.contains(&id(3)));
        assert!(w.below_floor(Time::from_secs(5)));
        assert!(!w.below_floor(Time::from_secs(6)));
        w.expire(Time::from_secs(15));
        assert_eq!(w.len(), 1);
        assert!(
            !w.below_floor(Time::from_secs(10)),
            "expiry leaves the floor"
        );
    }

    proptest! {
        /// Whatever the order, stamps and cap: an id seen before is either still in the
        /// window or, if it was forgotten early, its stamp is at or below the floor — so a
        /// replay of it is always recognised.
        #[test]
        fn a_seen_id_is_known_or_below_the_floor(
            cap in 1usize..16,
            stamps in proptest::collection::vec(0u64..200, 1..200),
        ) {
            let mut w = SeenWindow::new(cap);
            for (k, s) in stamps.iter().enumerate() {
                w.insert(id(k as u64), Time::from_secs(*s));
                prop_assert!(w.len() <= cap);
                for (j, sj) in stamps.iter().enumerate().take(k + 1) {
                    prop_assert!(
                        w.contains(&id(j as u64)) || w.below_floor(Time::from_secs(*sj)),
                        "id {} (stamp {}) forgotten above the floor", j, sj
                    );
                }
            }
        }
    }
}
