//! A topic as this node carries it: the carriers among its neighbours (from their INTEREST),
//! its eager and lazy sets, and its topic links.
//!
//! A sparse topic, with fewer carriers among the neighbours than `topic_min_peers`, sends a
//! topic walk through the overlay; a carrier the walk meets offers the walker a topic link, a
//! connection outside the membership view that the topic's messages use like a neighbour's.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::tree::Tree;
use super::{Broadcast, Out};
use crate::identity::MachineId;
use crate::time::Time;
use crate::util::small_set::SmallSet;
use crate::wire::{self, IHaveEntry, MessageId, TopicId};

#[derive(Debug, Default)]
pub(super) struct TopicState {
    pub(super) subscribed: bool,
    pub(super) eager: SmallSet<MachineId>,
    pub(super) lazy: SmallSet<MachineId>,
    /// Topic links: connections to other carriers of this topic that are not membership
    /// neighbours, found by a topic walk (sparse topics).
    pub(super) links: SmallSet<MachineId>,
    /// Recent ids of this topic, newest last (for catch-up digests).
    pub(super) recent: VecDeque<(MessageId, u8)>,
    /// Peers of a recent PRUNE (either way) and until when their in-flight messages do not
    /// make them eager again (`prune_grace`). At most one entry per topic peer: entries go
    /// with the peer and are replaced, so the map is bounded by the eager and lazy sets.
    pub(super) pruned: BTreeMap<MachineId, Time>,
    /// Whether a message of the topic has passed through this node yet, so its first push
    /// is done (`first_push`).
    pub(super) forwarded: bool,
    /// This node's part in the topic's tree. Boxed and made on first use: a node carries a
    /// few topics, and an inline tree would move every topic state up an allocation size
    /// class.
    pub(super) tree: Option<Box<Tree>>,
}

impl TopicState {
    /// Drops every trace of `peer` from the topic, except a topic link. Losing the parent
    /// loses the place in the tree too, until a neighbour with a place shows up; returns
    /// whether the place changed.
    pub(super) fn forget(&mut self, peer: &MachineId) -> bool {
        self.eager.remove(peer);
        self.lazy.remove(peer);
        self.pruned.remove(peer);
        self.remove_child(peer);
        let was = self.place();
        if self.parent().as_ref() == Some(peer) {
            self.lose_parent();
        }
        self.place() != was
    }
}

/// The active neighbours, sorted by id, each with the smallest round trip measured to it.
///
/// The smallest sample tracks a link's propagation delay rather than momentary queueing; it
/// ranks the links of a topic's first push ([`super::FirstPushConfig`]). A sorted vector: a
/// view holds a handful of neighbours.
#[derive(Debug, Default)]
pub(super) struct Neighbors(Vec<(MachineId, u32)>);

/// `Neighbors`' mark of a neighbour whose round trip is not measured yet.
const UNMEASURED: u32 = u32::MAX;

impl Neighbors {
    fn find(&self, peer: &MachineId) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| p.cmp(peer))
    }
    pub(super) fn contains(&self, peer: &MachineId) -> bool {
        self.find(peer).is_ok()
    }
    pub(super) fn insert(&mut self, peer: MachineId) {
        if let Err(i) = self.find(&peer) {
            self.0.insert(i, (peer, UNMEASURED));
        }
    }
    pub(super) fn remove(&mut self, peer: &MachineId) {
        if let Ok(i) = self.find(peer) {
            self.0.remove(i);
        }
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = &MachineId> {
        self.0.iter().map(|(p, _)| p)
    }
    pub(super) fn rtt(&self, peer: &MachineId) -> Option<Duration> {
        let us = self.0[self.find(peer).ok()?].1;
        (us != UNMEASURED).then(|| Duration::from_micros(u64::from(us)))
    }
    /// Keeps the smallest sample, in microseconds (an hour at most); a peer that is not a
    /// neighbour is ignored.
    pub(super) fn rtt_sample(&mut self, peer: &MachineId, rtt: Duration) {
        if let Ok(i) = self.find(peer) {
            let us = u32::try_from(rtt.as_micros()).unwrap_or(UNMEASURED - 1);
            let best = &mut self.0[i].1;
            *best = (*best).min(us);
        }
    }
}

/// Whether `peer` is a neighbour that declared `topic` in its INTEREST.
pub(super) fn declares(
    neighbors: &Neighbors,
    interest: &BTreeMap<MachineId, SmallSet<TopicId>>,
    topic: &TopicId,
    peer: &MachineId,
) -> bool {
    neighbors.contains(peer) && interest.get(peer).is_some_and(|i| i.contains(topic))
}

impl Broadcast {
    /// Whether `peer` carries `topic` with us: a neighbour that declared it, or a topic link.
    pub(super) fn is_topic_peer(&self, topic: &TopicId, peer: &MachineId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.links.contains(peer))
            || declares(&self.neighbors, &self.interest, topic, peer)
    }

    fn is_link(&self, peer: &MachineId) -> bool {
        self.topics.values().any(|t| t.links.contains(peer))
    }

    pub(super) fn unpin_if_unused(&mut self, peer: MachineId) {
        if !self.is_link(&peer) {
            self.out.push_back(Out::Pin(peer, false));
        }
    }

    pub(crate) fn on_interest(&mut self, now: Time, from: MachineId, topics: &[TopicId]) {
        self.interest.insert(from, SmallSet::from_slice(topics));
        // Topics it no longer carries: out of both sets. New ones: adopt.
        for (topic, t) in self.topics.iter_mut() {
            if !topics.contains(topic) {
                self.places_changed |= t.forget(&from);
            }
        }
        self.adopt_carrier(from);
        self.arm_flush(now);
    }

    /// A neighbour that carries topics we carry enters their eager sets (their lazy sets
    /// where the topic has a tree), and gets a digest of what we recently saw so it can pull
    /// what it missed.
    pub(super) fn adopt_carrier(&mut self, peer: MachineId) {
        if !self.neighbors.contains(&peer) {
            return;
        }
        let Some(theirs) = self.interest.get(&peer) else {
            return;
        };
        let mut digests = Vec::new();
        for (topic, t) in self.topics.iter_mut() {
            if !theirs.contains(topic) {
                self.places_changed |= t.forget(&peer);
                continue;
            }
            if t.eager.contains(&peer) || t.lazy.contains(&peer) {
                continue;
            }
            if t.place().is_some() {
                // The tree has a place for this node already: a new carrier is announced to,
                // and hangs from this node or not by the depth rule.
                t.lazy.insert(peer);
            } else {
                // "New neighbours start in the eager set" (paper, §3.5).
                t.eager.insert(peer);
            }
            digests.push(*topic);
        }
        for topic in digests {
            self.send_digest(peer, topic);
        }
    }

    /// IHAVE of the topic's recent ids, so a new carrier can pull what it missed.
    fn send_digest(&mut self, peer: MachineId, topic: TopicId) {
        let Some(t) = self.topics.get(&topic) else {
            return;
        };
        let take = self.config.catch_up_ids.min(t.recent.len());
        let entries: Vec<IHaveEntry> = t
            .recent
            .iter()
            .skip(t.recent.len() - take)
            .filter(|(id, _)| self.cache.contains_key(id))
            .map(|(id, hops)| IHaveEntry {
                id: *id,
                hops: *hops,
            })
            .collect();
        if !entries.is_empty() {
            self.out.push_back(Out::Send(
                peer,
                wire::IHave {
                    topic,
                    root: t.wire_root(),
                    depth: t.wire_depth(),
                    entries,
                }
                .into(),
            ));
        }
    }

    // ----- topic links (sparse topics) -----

    pub(super) fn maintain_topics(&mut self) {
        let Some(me) = self.me.clone() else { return };
        let neighbors: Vec<MachineId> = self.neighbors.iter().copied().collect();
        if neighbors.is_empty() {
            return;
        }
        let mut walks = Vec::new();
        for (topic, t) in &self.topics {
            if !t.subscribed {
                continue;
            }
            let carriers = neighbors
                .iter()
                .filter(|p| self.interest.get(p).is_some_and(|i| i.contains(topic)))
                .count()
                + t.links.len();
            if carriers < self.config.topic_min_peers && t.links.len() < self.config.topic_max_links
            {
                walks.push(*topic);
            }
        }
        for topic in walks {
            self.walk_counter += 1;
            let first = neighbors[(self.walk_counter as usize) % neighbors.len()];
            self.out.push_back(Out::Send(
                first,
                wire::TopicWalk {
                    topic,
                    origin: me.clone(),
                    ttl: self.config.topic_walk_length,
                }
                .into(),
            ));
        }
    }

    pub(crate) fn on_topic_walk(&mut self, from: MachineId, w: &wire::TopicWalk) {
        let Some(me) = &self.me else { return };
        if w.origin.id == me.id {
            return;
        }
        if let Some(t) = self.topics.get(&w.topic)
            && t.subscribed
            && !t.links.contains(&w.origin.id)
            && !self.is_topic_peer(&w.topic, &w.origin.id)
            && t.links.len() < self.config.topic_max_links
        {
            // Found a carrier: offer the origin a link.
            self.out.push_back(Out::Connect(
                w.origin.clone(),
                wire::TopicLink {
                    topic: w.topic,
                    accepted: None,
                }
                .into(),
            ));
            return;
        }
        if w.ttl == 0 {
            return;
        }
        // Prefer a neighbour that carries the topic: the next hop finds one.
        let carriers: Vec<MachineId> = self
            .neighbors
            .iter()
            .filter(|p| **p != from && **p != w.origin.id)
            .filter(|p| self.interest.get(p).is_some_and(|i| i.contains(&w.topic)))
            .copied()
            .collect();
        let others: Vec<MachineId> = self
            .neighbors
            .iter()
            .filter(|p| **p != from && **p != w.origin.id)
            .copied()
            .collect();
        let pool = if carriers.is_empty() {
            others
        } else {
            carriers
        };
        if pool.is_empty() {
            return;
        }
        self.walk_counter += 1;
        let next = pool[(self.walk_counter as usize) % pool.len()];
        self.out.push_back(Out::Send(
            next,
            wire::TopicWalk {
                topic: w.topic,
                origin: w.origin.clone(),
                ttl: w.ttl - 1,
            }
            .into(),
        ));
    }

    pub(crate) fn on_topic_link(
        &mut self,
        from: MachineId,
        topic: TopicId,
        accepted: Option<bool>,
    ) {
        let max = self.config.topic_max_links;
        let Some(t) = self.topics.get_mut(&topic).filter(|t| t.subscribed) else {
            if accepted.is_none() {
                self.answer_link(from, topic, false);
            }
            return;
        };
        match accepted {
            None => {
                let ok = t.links.contains(&from) || t.links.len() < max;
                if ok {
                    self.add_link(from, topic);
                }
                self.answer_link(from, topic, ok);
            }
            Some(true) => {
                if t.links.len() < max {
                    self.add_link(from, topic);
                }
            }
            Some(false) => {}
        }
    }

    fn answer_link(&mut self, to: MachineId, topic: TopicId, accepted: bool) {
        let answer = wire::TopicLink {
            topic,
            accepted: Some(accepted),
        };
        self.out.push_back(Out::Send(to, answer.into()));
    }

    fn add_link(&mut self, peer: MachineId, topic: TopicId) {
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if !t.links.insert(peer) {
            return;
        }
        t.lazy.remove(&peer);
        t.eager.insert(peer);
        self.out.push_back(Out::Pin(peer, true));
        self.send_digest(peer, topic);
    }
}
