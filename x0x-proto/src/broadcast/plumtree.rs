//! Eager push and lazy push: GOSSIP to the eager set, IHAVE to the lazy set, PRUNE on a
//! duplicate, GRAFT to pull a message announced but not received.

use std::collections::VecDeque;
use std::time::Duration;

use super::stats::BroadcastStats;
use super::topic::{Neighbors, TopicState};
use super::{Broadcast, Out, Timer};
use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, Frame, IHaveEntry, MessageId, Signed, TopicId};

/// Most announcers (and GRAFT targets) remembered per missing message.
const MAX_ANNOUNCERS: usize = 8;

/// A message announced by IHAVE and not received yet.
#[derive(Debug)]
pub(super) struct Missing {
    topic: TopicId,
    /// Who announced it, with the hops it had travelled to them, first announcer first.
    pub(super) announcers: VecDeque<(MachineId, u8)>,
    /// Announcers a GRAFT for it went to, oldest first (at most `MAX_ANNOUNCERS`).
    grafted: Vec<MachineId>,
}

/// Moves `peer` to `topic`'s lazy set, where messages it had in flight do not make it eager
/// again until `until` (`prune_grace`), and sends it a PRUNE.
pub(super) fn prune_link(
    t: &mut TopicState,
    out: &mut VecDeque<Out>,
    stats: &mut BroadcastStats,
    topic: TopicId,
    peer: MachineId,
    until: Time,
) {
    t.eager.remove(&peer);
    t.lazy.insert(peer);
    t.pruned.insert(peer, until);
    stats.prunes_sent += 1;
    out.push_back(Out::Send(peer, wire::Prune { topic }.into()));
}

/// Sends `to` a GRAFT for `ids`: a pull, or without ids an attachment to a parent.
pub(super) fn send_graft(
    out: &mut VecDeque<Out>,
    stats: &mut BroadcastStats,
    topic: TopicId,
    to: MachineId,
    ids: Vec<MessageId>,
) {
    stats.grafts_sent += 1;
    out.push_back(Out::Send(to, wire::Graft { topic, ids }.into()));
}

impl Broadcast {
    /// A GOSSIP whose id was already seen: PRUNE the link it came over.
    pub(crate) fn on_duplicate(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        id: &MessageId,
    ) {
        self.stats.gossip_received += 1;
        self.stats.duplicates += 1;
        let grace = self.config.prune_grace;
        let mut from = from;
        if let Some(t) = self.topics.get_mut(&topic)
            && t.is_tree_link(&from)
        {
            let first = self
                .cache
                .get(id)
                .filter(|c| c.topic == topic)
                .and_then(|c| c.from);
            match first {
                // A child that pushes up what the parent brought is no child: it hangs
                // elsewhere and took this link for its own child (each end missed the
                // other's move). It loses the protection, and the link goes.
                Some(first) if t.parent() == Some(first) && t.remove_child(&from) => {}
                // Keep the tree link; the first copy's link goes instead, unless it is one too.
                Some(first) if !t.is_tree_link(&first) && t.eager.contains(&first) => from = first,
                _ => return,
            }
        }
        // The sender pushes to us eagerly whether or not we count it eager (it may sit in our
        // lazy set after its first push skipped it): prune it either way, or it would
        // keep sending duplicates. Within the grace of our last PRUNE to it, the duplicate was
        // in flight before that PRUNE arrived: no second PRUNE.
        if let Some(t) = self.topics.get_mut(&topic)
            && (t.eager.contains(&from)
                || (t.lazy.contains(&from)
                    && t.pruned.get(&from).is_none_or(|until| now >= *until)))
        {
            prune_link(t, &mut self.out, &mut self.stats, topic, from, now + grace);
        }
    }

    /// A GOSSIP with a new id, whose signature the node verified.
    /// Returns whether the message should be delivered to a local subscriber.
    /// `stamp` is the message's own time for the dedup window: when it was published, for a
    /// pub/sub message, else `now`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_gossip_verified(
        &mut self,
        now: Time,
        stamp: Time,
        from: MachineId,
        topic: TopicId,
        id: MessageId,
        hops: u8,
        message: Signed,
    ) -> bool {
        self.stats.gossip_received += 1;
        let Some(t) = self.topics.get_mut(&topic) else {
            // Not a topic we carry (a peer ignored our INTEREST): mark seen, do not relay.
            self.stats.dropped.topic_not_carried += 1;
            self.mark_seen(stamp, id);
            return false;
        };
        self.stats.accepted += 1;
        // "Upon first receipt, the sender becomes an eager peer" (§3.5, GOSSIP handler) —
        // unless the link was pruned moments ago and this message was in flight before the
        // peer saw the PRUNE (`prune_grace`), or it answers our GRAFT, which only pulls.
        let in_grace = t.pruned.get(&from).is_some_and(|until| now < *until);
        if !in_grace {
            t.pruned.remove(&from);
        }
        let pulled = self
            .missing
            .get(&id)
            .is_some_and(|m| m.grafted.contains(&from));
        if (self.neighbors.contains(&from) || t.links.contains(&from))
            && !in_grace
            && !pulled
            && t.lazy.remove(&from)
        {
            t.eager.insert(from);
        }
        let subscribed = t.subscribed;
        // Carriers that announced the message have it: the first push skips them.
        let announced: Vec<MachineId> = match self.missing.remove(&id) {
            Some(m) if !t.forwarded => m
                .announcers
                .iter()
                .map(|(p, _)| *p)
                .chain(m.grafted.iter().copied())
                .collect(),
            _ => Vec::new(),
        };
        self.remember(now, stamp, id, topic, hops, Some(from), message.clone());
        self.forward(topic, id, hops, Some(from), &announced, &message);
        self.arm_flush(now);
        if subscribed {
            self.stats.delivered += 1;
        }
        subscribed
    }

    /// Pushes a message this node is `distance` hops from the publisher of (0: its own) to
    /// the eager carriers of `topic` and queues an IHAVE for the lazy ones.
    pub(super) fn forward(
        &mut self,
        topic: TopicId,
        id: MessageId,
        distance: u8,
        from: Option<MachineId>,
        announced: &[MachineId],
        message: &Signed,
    ) {
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if !t.forwarded {
            t.forwarded = true;
            let fanout = self.config.first_push.fanout_at(distance);
            Self::seed_tree(t, &self.neighbors, from, announced, fanout);
        }
        let hops = distance.saturating_add(1);
        if hops > self.config.max_hops {
            self.stats.hop_limited += 1;
            return;
        }
        // A copy that came around the tree (a GRAFT's answer, a new link) goes down the tree
        // only; the parent gets an IHAVE, as its own copy is most likely on its way.
        let up = match (from, t.parent()) {
            (Some(f), Some(p)) if !t.is_tree_link(&f) => Some(p),
            _ => None,
        };
        let eager: Vec<MachineId> = t
            .eager
            .iter()
            .filter(|p| Some(**p) != from && Some(**p) != up)
            .copied()
            .collect();
        let lazy: Vec<MachineId> = t
            .lazy
            .iter()
            .chain(up.iter())
            .filter(|p| Some(**p) != from && !announced.contains(p))
            .copied()
            .collect();
        if !eager.is_empty() {
            let frame: Frame = wire::Gossip {
                topic,
                hops,
                root: t.wire_root(),
                depth: t.wire_depth(),
                message: message.clone(),
            }
            .into();
            self.out.push_back(Out::SendMany(eager, frame));
        }
        for p in lazy {
            self.lazy_queue
                .entry(p)
                .or_default()
                .entry(topic)
                .or_default()
                .push(IHaveEntry { id, hops });
        }
    }

    /// Before the first message of a topic leaves this node: carriers that `announced` it
    /// and all but the `fanout` fastest other eager carriers become lazy. The sender, tree
    /// links and topic links stay eager. See [`super::FirstPushConfig`].
    fn seed_tree(
        t: &mut TopicState,
        neighbors: &Neighbors,
        from: Option<MachineId>,
        announced: &[MachineId],
        fanout: usize,
    ) {
        for p in announced {
            if Some(*p) != from && !t.links.contains(p) && !t.is_tree_link(p) && t.eager.remove(p) {
                t.lazy.insert(*p);
            }
        }
        let mut ranked: Vec<(Duration, MachineId)> = t
            .eager
            .iter()
            .filter(|p| {
                Some(**p) != from
                    && !t.links.contains(p)
                    && !t.is_tree_link(p)
                    && !announced.contains(p)
            })
            .map(|p| (neighbors.rtt(p).unwrap_or(Duration::MAX), *p))
            .collect();
        if ranked.len() <= fanout {
            return;
        }
        ranked.sort_unstable();
        for (_, p) in ranked.into_iter().skip(fanout) {
            t.eager.remove(&p);
            t.lazy.insert(p);
        }
    }

    /// Arms the IHAVE flush if something waits for it.
    pub(super) fn arm_flush(&mut self, now: Time) {
        if (!self.lazy_queue.is_empty() || self.places_changed) && !self.flush_armed {
            self.flush_armed = true;
            self.timers
                .set(now + self.config.ihave_interval, Timer::FlushIHave);
        }
    }

    pub(crate) fn on_ihave(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        entries: &[IHaveEntry],
    ) {
        if !self.is_topic_peer(&topic, &from) {
            self.stats.dropped.ihave_not_carried += 1;
            return;
        }
        for e in entries {
            if self.cache.contains_key(&e.id) || self.is_known(&e.id) {
                continue;
            }
            match self.missing.get_mut(&e.id) {
                Some(m) => {
                    if m.announcers.len() < MAX_ANNOUNCERS
                        && !m.announcers.iter().any(|(p, _)| *p == from)
                    {
                        m.announcers.push_back((from, e.hops));
                    }
                }
                None => {
                    if self.missing.len() >= self.config.max_missing {
                        self.stats.dropped.missing_cap += 1;
                        continue;
                    }
                    self.missing.insert(
                        e.id,
                        Missing {
                            topic,
                            announcers: VecDeque::from([(from, e.hops)]),
                            grafted: Vec::new(),
                        },
                    );
                    // "Upon reception of an IHAVE for a message not received, set a timer; if it
                    // expires before the message arrives, GRAFT" (§3.5).
                    let fresh = self.topics.get(&topic).is_some_and(|t| !t.forwarded);
                    let grace = if fresh {
                        self.config.first_push.graft_timeout
                    } else {
                        self.config.graft_timeout
                    };
                    self.timers.set(now + grace, Timer::Graft(e.id));
                }
            }
        }
    }

    /// A GRAFT: without ids, `from` attaches to this node in the topic's tree; with ids, it
    /// pulls those messages, and the link stays as it is.
    pub(crate) fn on_graft(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        ids: &[MessageId],
    ) {
        if !self.is_topic_peer(&topic, &from) {
            self.stats.dropped.graft_from_non_neighbor += 1;
            return;
        }
        if ids.is_empty() {
            self.on_attach(now, from, topic);
            return;
        }
        let (root, depth) = self.wire_place(&topic);
        for id in ids {
            match self.cache.get(id) {
                Some(c) if c.topic == topic => {
                    let frame = wire::Gossip {
                        topic,
                        hops: c.hops.saturating_add(1),
                        root,
                        depth,
                        message: c.message.clone(),
                    };
                    self.out.push_back(Out::Send(from, frame.into()));
                }
                _ => self.stats.graft_misses += 1,
            }
        }
    }

    pub(crate) fn on_prune(&mut self, now: Time, from: MachineId, topic: TopicId) {
        if !self.tree_on_prune(now, from, topic) {
            return;
        }
        let grace = self.config.prune_grace;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if t.eager.remove(&from) && (self.neighbors.contains(&from) || t.links.contains(&from)) {
            t.lazy.insert(from);
            t.pruned.insert(from, now + grace);
        }
    }

    /// The graft timer of a missing message: GRAFT the next announcer, or give up when every
    /// announcer was tried.
    pub(super) fn graft_timer(&mut self, now: Time, id: MessageId) {
        let Some(m) = self.missing.get_mut(&id) else {
            return;
        };
        let topic = m.topic;
        let Some((peer, _)) = m.announcers.pop_front() else {
            self.missing.remove(&id);
            self.stats.graft_exhausted += 1;
            return;
        };
        if m.grafted.len() < MAX_ANNOUNCERS {
            m.grafted.push(peer);
        }
        send_graft(&mut self.out, &mut self.stats, topic, peer, vec![id]);
        self.timers
            .set(now + self.config.graft_retry, Timer::Graft(id));
    }

    /// Sends changed places, then the queued IHAVEs, per peer and topic.
    pub(super) fn flush_ihave(&mut self) {
        self.flush_armed = false;
        self.announce_places();
        for (peer, topics) in std::mem::take(&mut self.lazy_queue) {
            for (topic, entries) in topics {
                let (root, depth) = self.wire_place(&topic);
                for chunk in entries.chunks(wire::MAX_IDS_PER_FRAME) {
                    self.out.push_back(Out::Send(
                        peer,
                        wire::IHave {
                            topic,
                            root,
                            depth,
                            entries: chunk.to_vec(),
                        }
                        .into(),
                    ));
                }
            }
        }
    }
}
