//! Broadcast: PlumTree per topic over the active neighbours that carry the topic, with one
//! tree per topic shaped by distance from a root.
//!
//! *Epidemic Broadcast Trees* (Leitão, Pereira, Rodrigues, SRDS 2007): each node keeps, per
//! topic, an **eager** set of neighbours it pushes full messages to and a **lazy** set it only
//! tells message ids (IHAVE). A duplicate arrival PRUNEs the link it came over into the lazy
//! set, so the eager links converge to a spanning tree; a missing message announced by IHAVE is
//! pulled with GRAFT after a grace period (`plumtree.rs`).
//!
//! Where we deviate, and why:
//! * **Per topic, among carriers only.** The eager/lazy sets of a topic hold only active
//!   neighbours that declared the topic (INTEREST), plus topic links found by walks for sparse
//!   topics (`topic.rs`); x0x floods every topic over every connection.
//! * **Dedup before verify.** The signature (one per message, by the publishing agent) is
//!   checked by the node only for a message id not seen before; a forged copy is not marked as
//!   seen, so it cannot shadow the genuine message (`cache.rs`).
//! * **Catch-up digest.** When a neighbour starts carrying a topic we send it an IHAVE of the
//!   topic's recent ids, so a late subscriber or a new link pulls what it missed (bounded by the
//!   cache), instead of losing "the first message after join" as x0x does.
//! * **Hop limit.** Every GOSSIP carries the hops travelled; a node does not forward past
//!   `max_hops` (x0x never decrements its TTL).
//! * **First push over the fastest links.** The paper starts every carrier eager, so a topic's
//!   first message crosses every overlay link. Here a node pushes it only to its fastest
//!   carriers, more of them near the publisher ([`FirstPushConfig`]).
//! * **In-flight messages do not undo a PRUNE** (`prune_grace`).
//! * **A tree by depth, not by race** (`tree.rs`). The paper's tree keeps, at every node, the
//!   link the first copy of each message came over: fast for the publisher whose messages
//!   built it, but reshaped by every message from elsewhere. Here each topic's tree grows from
//!   one root, every node hanging from a neighbour closest to it, so paths stay short whoever
//!   publishes, and a GRAFT for missing ids only pulls them: it never makes a link eager.

mod cache;
mod config;
mod plumtree;
mod seen;
mod stats;
mod topic;
mod tree;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use self::cache::Cached;
pub use self::config::{BroadcastConfig, FirstPushConfig};
use self::plumtree::Missing;
use self::seen::SeenWindow;
pub use self::stats::{BroadcastDrops, BroadcastStats};
use self::topic::{Neighbors, TopicState};
use crate::identity::MachineId;
use crate::node::{InvariantError, TableSize};
use crate::time::Time;
use crate::util::fifo::Fifo;
use crate::util::small_set::SmallSet;
use crate::util::timers::Timers;
use crate::wire::{self, Frame, IHaveEntry, MessageId, PeerAddr, Signed, TopicId};

/// The signed body of a pub/sub message ([`crate::identity::Domain::PubSubMessage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubSubBody {
    /// The topic; must equal the topic of the GOSSIP frame carrying it.
    pub topic: TopicId,
    /// A random nonce: publishing the same bytes twice makes two messages.
    pub nonce: u64,
    /// Publisher's clock at publish time, unix milliseconds.
    pub published_at_ms: u64,
    /// The application payload.
    pub payload: Bytes,
}

/// The eager and lazy peers of a topic ([`crate::Node::topic_peers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicPeers {
    /// Peers that get full messages, in id order.
    pub eager: Vec<MachineId>,
    /// Peers that get IHAVEs, in id order.
    pub lazy: Vec<MachineId>,
}

/// Most ids remembered as refused at the dedup window's floor.
fn refused_capacity(config: &BroadcastConfig) -> usize {
    (config.seen_capacity / 16).max(1)
}

/// How full the broadcast caches are ([`crate::Node::broadcast_cache_sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BroadcastCacheSizes {
    /// Messages cached for GRAFT answers and catch-up (`cache_capacity`).
    pub cache: usize,
    /// Ids in the dedup window (`seen_capacity`).
    pub seen: usize,
    /// Ids awaiting a GRAFT (`max_missing`).
    pub missing: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Out {
    Send(MachineId, Frame),
    /// The same frame to several peers: encoded once.
    SendMany(Vec<MachineId>, Frame),
    /// Connect to a peer (if needed) and send it a frame.
    Connect(PeerAddr, Frame),
    /// Keep the connection to a peer open (a topic link uses it) / no longer needed.
    Pin(MachineId, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Graft(MessageId),
    FlushIHave,
    Expire,
    TopicMaintenance,
}

/// The broadcast state machine.
#[derive(Debug)]
pub(crate) struct Broadcast {
    config: BroadcastConfig,
    /// Boxed: a map leaf has room for eleven entries whether or not they are used, and a node
    /// carries few topics; boxed, the leaf holds pointers.
    topics: BTreeMap<TopicId, Box<TopicState>>,
    /// Topics each connected peer carries (from its INTEREST).
    interest: BTreeMap<MachineId, SmallSet<TopicId>>,
    neighbors: Neighbors,
    /// Messages kept for GRAFT answers and catch-up, oldest evicted first.
    cache: Fifo<MessageId, Cached>,
    /// The dedup window: ids seen, with their messages' stamps, and its floor (`seen.rs`).
    seen: SeenWindow,
    /// Ids refused at the window's floor (`refuse_below_floor`).
    refused: Fifo<MessageId, ()>,
    missing: BTreeMap<MessageId, Missing>,
    lazy_queue: BTreeMap<MachineId, BTreeMap<TopicId, Vec<IHaveEntry>>>,
    timers: Timers<Timer>,
    flush_armed: bool,
    /// Some topic's place changed since the last flush (`TopicState::tree`).
    places_changed: bool,
    me: Option<PeerAddr>,
    /// Rotates topic walks over neighbours.
    walk_counter: u64,
    out: VecDeque<Out>,
    stats: BroadcastStats,
}

impl Broadcast {
    pub(crate) fn new(config: BroadcastConfig) -> Self {
        Self {
            topics: BTreeMap::new(),
            interest: BTreeMap::new(),
            neighbors: Neighbors::default(),
            cache: Fifo::new(config.cache_capacity),
            seen: SeenWindow::new(config.seen_capacity),
            refused: Fifo::new(refused_capacity(&config)),
            missing: BTreeMap::new(),
            lazy_queue: BTreeMap::new(),
            timers: Timers::default(),
            flush_armed: false,
            places_changed: false,
            me: None,
            walk_counter: 0,
            out: VecDeque::new(),
            stats: BroadcastStats::default(),
            config,
        }
    }

    pub(crate) fn start(&mut self, now: Time, me: PeerAddr) {
        self.me = Some(me);
        self.timers.set(now + Duration::from_secs(1), Timer::Expire);
        self.timers.set(
            now + self.config.topic_maintenance_interval,
            Timer::TopicMaintenance,
        );
    }

    pub(crate) fn set_me(&mut self, me: PeerAddr) {
        self.me = Some(me);
    }

    pub(crate) fn stats(&self) -> &BroadcastStats {
        &self.stats
    }

    pub(crate) fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    pub(crate) fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    pub(crate) fn is_subscribed(&self, topic: &TopicId) -> bool {
        self.topics.get(topic).is_some_and(|t| t.subscribed)
    }

    pub(crate) fn subscribed_topics(&self) -> Vec<TopicId> {
        self.topics
            .iter()
            .filter(|(_, t)| t.subscribed)
            .map(|(id, _)| *id)
            .collect()
    }

    fn interest_frame(&self) -> Frame {
        wire::Interest {
            topics: self
                .subscribed_topics()
                .into_iter()
                .take(wire::MAX_TOPICS_PER_FRAME)
                .collect(),
        }
        .into()
    }

    // ----- commands -----

    pub(crate) fn subscribe(&mut self, topic: TopicId) -> bool {
        if !self.topics.contains_key(&topic) && self.topics.len() >= self.config.max_topics {
            self.stats.dropped.topic_cap += 1;
            return false;
        }
        let carriers: Vec<MachineId> = self
            .neighbors
            .iter()
            .filter(|p| self.interest.get(p).is_some_and(|t| t.contains(&topic)))
            .copied()
            .collect();
        let t = self.topics.entry(topic).or_default();
        t.subscribed = true;
        for p in carriers {
            if !t.lazy.contains(&p) {
                t.eager.insert(p);
            }
        }
        self.announce_interest();
        true
    }

    pub(crate) fn unsubscribe(&mut self, topic: TopicId) {
        if let Some(t) = self.topics.remove(&topic) {
            for link in t.links {
                self.unpin_if_unused(link);
            }
            self.announce_interest();
        }
    }

    fn announce_interest(&mut self) {
        let frame = self.interest_frame();
        let to: Vec<MachineId> = self.neighbors.iter().copied().collect();
        self.out.push_back(Out::SendMany(to, frame));
    }

    /// Sends a freshly signed message.
    pub(crate) fn publish(&mut self, now: Time, topic: TopicId, message: Signed) {
        self.stats.published += 1;
        self.root_tree(topic);
        let id = message.id();
        self.remember(now, now, id, topic, 0, None, message.clone());
        self.forward(topic, id, 0, None, &[], &message);
        self.arm_flush(now);
    }

    /// Sends `message`, signed by someone else and learnt outside the tree from `source`
    /// (a replicated store's anti-entropy), down the topic's tree as this node's own publish
    /// would go, except to `source`, which has it.
    pub(crate) fn publish_learnt(
        &mut self,
        now: Time,
        topic: TopicId,
        message: Signed,
        source: MachineId,
    ) {
        self.stats.published += 1;
        self.root_tree(topic);
        let id = message.id();
        // A store's message: replays are duplicates the store drops, so arrival stamps it.
        self.remember(now, now, id, topic, 0, None, message.clone());
        self.forward(topic, id, 0, Some(source), &[source], &message);
        self.arm_flush(now);
    }

    // ----- neighbours -----

    pub(crate) fn neighbor_up(&mut self, peer: MachineId) {
        self.neighbors.insert(peer);
        let frame = self.interest_frame();
        self.out.push_back(Out::Send(peer, frame));
        self.adopt_carrier(peer);
    }

    pub(crate) fn neighbor_down(&mut self, now: Time, peer: MachineId) {
        self.neighbors.remove(&peer);
        for t in self.topics.values_mut() {
            if t.links.contains(&peer) {
                continue; // still a topic link
            }
            self.places_changed |= t.forget(&peer);
        }
        self.arm_flush(now);
        self.lazy_queue.remove(&peer);
        for m in self.missing.values_mut() {
            m.announcers.retain(|(p, _)| *p != peer);
        }
    }

    /// SWIM suspects `peer`: in every topic whose tree hangs this node below it, the node
    /// leaves it now (it stays a lazy carrier, so a refuted suspicion costs nothing) and
    /// looks for another parent, rather than waiting until it is declared dead.
    pub(crate) fn parent_suspected(&mut self, now: Time, peer: MachineId) {
        for t in self.topics.values_mut() {
            if t.parent().as_ref() == Some(&peer) {
                t.eager.remove(&peer);
                t.lazy.insert(peer);
                let was = t.place();
                t.lose_parent();
                self.places_changed |= t.place() != was;
            }
        }
        self.arm_flush(now);
    }

    /// A round trip to a neighbour was measured (SWIM's direct probe).
    pub(crate) fn rtt_sample(&mut self, peer: MachineId, rtt: Duration) {
        self.neighbors.rtt_sample(&peer, rtt);
    }

    /// The smallest round trip measured to a neighbour.
    #[cfg(test)]
    pub(crate) fn neighbor_rtt(&self, peer: &MachineId) -> Option<Duration> {
        self.neighbors.rtt(peer)
    }

    pub(crate) fn connection_down(&mut self, now: Time, peer: MachineId) {
        for t in self.topics.values_mut() {
            t.links.remove(&peer);
        }
        self.neighbor_down(now, peer);
        self.interest.remove(&peer);
    }

    // ----- timers -----

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Graft(id) => self.graft_timer(now, id),
                Timer::FlushIHave => self.flush_ihave(),
                Timer::Expire => {
                    self.expire(now);
                    self.timers.set(now + Duration::from_secs(1), Timer::Expire);
                }
                Timer::TopicMaintenance => {
                    self.maintain_topics();
                    self.timers.set(
                        now + self.config.topic_maintenance_interval,
                        Timer::TopicMaintenance,
                    );
                }
            }
        }
    }

    // ----- queries -----

    /// Checks the topics' structure: eager and lazy sets disjoint; the parent and the
    /// children eager and distinct; a depth within the hop limit.
    pub(crate) fn check_invariants(&self) -> Result<(), InvariantError> {
        for (id, t) in &self.topics {
            let broken = |what| Err(InvariantError::Topic { topic: *id, what });
            let pushed = |p: &MachineId| t.eager.contains(p);
            if t.eager.iter().any(|p| t.lazy.contains(p)) {
                return broken("a peer both eager and lazy");
            }
            if t.parent()
                .as_ref()
                .is_some_and(|p| !pushed(p) || t.is_child(p))
            {
                return broken("parent not eager, or also a child");
            }
            if t.tree().children.iter().any(|c| !pushed(c)) {
                return broken("a child not eager");
            }
            if t.place().is_some_and(|(_, d)| d > self.config.max_hops) {
                return broken("depth beyond the hop limit");
            }
        }
        Ok(())
    }

    /// The caches, for [`crate::Node::table_sizes`].
    pub(crate) fn table_sizes(&self, out: &mut Vec<TableSize>) {
        let (sizes, c) = (self.sizes(), &self.config);
        out.extend([
            TableSize::new("broadcast cache", sizes.cache, c.cache_capacity),
            TableSize::new("broadcast dedup window", sizes.seen, c.seen_capacity),
            TableSize::new(
                "broadcast ids refused at the floor",
                self.refused.len(),
                refused_capacity(c),
            ),
            TableSize::new("broadcast missing ids", sizes.missing, c.max_missing),
        ]);
    }

    /// How full the caches are.
    pub(crate) fn sizes(&self) -> BroadcastCacheSizes {
        BroadcastCacheSizes {
            cache: self.cache.len(),
            seen: self.seen.len(),
            missing: self.missing.len(),
        }
    }

    /// Eager and lazy peers of a topic.
    pub(crate) fn topic_peers(&self, topic: &TopicId) -> Option<TopicPeers> {
        self.topics.get(topic).map(|t| TopicPeers {
            eager: t.eager.iter().copied().collect(),
            lazy: t.lazy.iter().copied().collect(),
        })
    }
}
