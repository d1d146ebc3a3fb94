//! Broadcast: PlumTree per topic over the active neighbours that carry the topic.
//!
//! *Epidemic Broadcast Trees* (Leitão, Pereira, Rodrigues, SRDS 2007): each node keeps, per
//! topic, an **eager** set of neighbours it pushes full messages to and a **lazy** set it only
//! tells message ids (IHAVE). A duplicate arrival PRUNEs the link it came over into the lazy
//! set, so the eager links converge to a spanning tree; a missing message announced by IHAVE is
//! pulled with GRAFT after a grace period, which also repairs the tree.
//!
//! Where we deviate, and why:
//! * **Per topic, among carriers only.** The eager/lazy sets of a topic hold only active
//!   neighbours that declared the topic (INTEREST); x0x floods every topic over every
//!   connection.
//! * **Dedup before verify.** The signature (one per message, by the publishing agent) is
//!   checked by the node only for a message id not seen before; a forged copy is not marked as
//!   seen, so it cannot shadow the genuine message.
//! * **Catch-up digest.** When a neighbour starts carrying a topic we send it an IHAVE of the
//!   topic's recent ids, so a late subscriber or a new link pulls what it missed (bounded by the
//!   cache), instead of losing "the first message after join" as x0x does.
//! * **Hop limit.** Every GOSSIP carries the hops travelled; a node does not forward past
//!   `max_hops` (x0x never decrements its TTL).
//! * **First push over the fastest links.** The paper starts every carrier eager, so a topic's
//!   first message crosses every overlay link. Here a node pushes it only to its fastest
//!   carriers (SWIM's round trips), more of them near the publisher
//!   ([`FirstPushConfig`]), and grafts sooner while it has not seen the topic.
//! * **Time wins over arrival order.** If a GRAFT for a message went out before its eager
//!   copy came, the grafted peer's path was the faster one: the late eager sender is pruned,
//!   not the grafted peer (the paper prunes whichever copy comes second).
//! * **Optimisation on early IHAVEs too.** The paper's tree optimisation (§3.8) compares an
//!   IHAVE with a message already received; we also apply it when the IHAVE came first.
//! * **A tree by depth, not by race** (default; [`BroadcastConfig::depth_tree`]). Each
//!   topic's tree grows from one root, every node hanging from a neighbour closest to it, so
//!   paths stay short whoever publishes. The two rules above, and §3.8, then stay off; a
//!   GRAFT for missing ids only pulls them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::identity::MachineId;
use crate::time::Time;
use crate::wire::{self, Frame, IHaveEntry, MessageId, PeerAddr, Signed, TopicId};

/// Broadcast configuration. Defaults and their provenance are on each field.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BroadcastConfig {
    /// Grace period between the first IHAVE for a missing message and the GRAFT. Default
    /// 150 ms: the paper asks for "a few round trips" of slack so the eager copy usually wins;
    /// our simulated links are 10–50 ms one way. (iroh-gossip guesses 80 ms.)
    pub graft_timeout: Duration,
    /// Wait before grafting from the next announcer when a GRAFT went unanswered. Default
    /// 100 ms (about one round trip, as the paper suggests).
    pub graft_retry: Duration,
    /// Lazy-push batching: IHAVEs are collected and flushed at this interval. Default 20 ms.
    pub ihave_interval: Duration,
    /// Tree optimisation: when an IHAVE shows a path more than this many hops shorter than
    /// the eager one, graft the announcer and prune the eager sender. Default 4 (the paper's experiments use
    /// 7; our overlays are small-diameter after warm-up, so a smaller gap matters). Only
    /// without `depth_tree`.
    pub optimization_threshold: u8,
    /// Messages are not forwarded beyond this many hops. Default 32.
    pub max_hops: u8,
    /// Messages kept for GRAFT answers and catch-up. Default 4096 (oldest evicted first).
    pub cache_capacity: usize,
    /// How long a message stays in the cache. Default 30 s (iroh-gossip: 30 s).
    pub cache_retention: Duration,
    /// Message ids remembered for deduplication. Default 65 536 (oldest evicted first).
    pub seen_capacity: usize,
    /// How long an id is remembered. Default 120 s (iroh-gossip: 90 s).
    pub seen_retention: Duration,
    /// Pub/sub messages published longer ago than this are refused (`stale`), so a replay
    /// after its id left the dedup window is never delivered again. Default 60 s: twice the
    /// cache retention, so catch-up and GRAFT answers are well inside it. `max_message_age +
    /// max_clock_skew` must stay below `seen_retention` (checked by `Node::new`).
    pub max_message_age: Duration,
    /// Pub/sub messages stamped further in the future than this are refused
    /// (`future_timestamp`). Default 30 s of clock difference between publisher and receiver.
    pub max_clock_skew: Duration,
    /// Most recent ids sent in the catch-up digest to a new carrier of a topic. Default 128.
    pub catch_up_ids: usize,
    /// Most ids awaiting a GRAFT at once. Default 4096 (new ones refused and counted).
    pub max_missing: usize,
    /// Most topics carried at once. Default 1024.
    pub max_topics: usize,
    /// A subscribed topic with fewer carriers than this among its neighbours and links starts
    /// a topic walk to find more (sparse topics). Default 3: a random graph of minimum degree
    /// 3 over the subscribers is connected with high probability.
    pub topic_min_peers: usize,
    /// Most topic links per topic. Default 6.
    pub topic_max_links: usize,
    /// Length of a topic walk. Default 16 hops.
    pub topic_walk_length: u8,
    /// Interval of the topic-link check. Default 2 s.
    pub topic_maintenance_interval: Duration,
    /// After a PRUNE on a link (sent or received), messages arriving over it within this
    /// time do not make the sender eager again. Default 1 s (several round trips).
    ///
    /// Deviation from the paper, whose GOSSIP handler makes every sender of a new message
    /// eager (§3.5). Under concurrent traffic that undoes PRUNEs: messages the peer sent
    /// before our PRUNE reached it arrive after it, re-eager the link, and the duplicates and
    /// PRUNEs repeat every round (`broadcast-all`, 100 publishers at once: RMR 1.40 in every
    /// round before this). A message sent after the peer processed our PRUNE never comes
    /// eagerly, so only in-flight ones are ignored; a peer that is really needed is grafted.
    ///
    /// The same grace also makes a GRAFT on such a link a pull only: within it, a GRAFT for
    /// missing ids is answered but neither end puts the link back in its eager set (each end
    /// checks its own PRUNE record). Deviation from the paper, where a GRAFT always re-grafts
    /// the link (§3.5: "upon receive GRAFT … eagerPushPeers ∪ {sender}"). Under concurrent
    /// traffic the re-grafted link pushed every later message of the burst, most of them
    /// duplicates, so it was pruned again at once and its in-flight messages (about ten per
    /// PRUNE at 100 publishers) were duplicates too: `broadcast-all` (n=100) spent 1.2
    /// duplicates per delivery on this prune/graft flapping, 0.6 with the pull-only GRAFT. A
    /// link still needed after the grace is grafted as usual.
    pub prune_grace: Duration,
    /// How the first message of a topic is pushed, before the topic has a tree.
    pub first_push: FirstPushConfig,
    /// Shape each topic's tree by distance from one root (the depth rule) instead of by each
    /// message's race. Default on.
    ///
    /// The paper's tree keeps, at every node, the link the first copy of each message came
    /// over. That tree is fast for the publisher whose messages built it, but its paths
    /// between two other nodes are up to twice its depth, and every message from elsewhere
    /// reshapes it (GRAFTs after IHAVEs won races, PRUNEs of the losers). With a new
    /// publisher every round (`broadcast-random`, n=1000) that gave a last delivery 22 hops
    /// out and 0.28 duplicates per delivery.
    ///
    /// With the depth rule a node keeps a *place* per topic, (root, depth), and a parent:
    /// * The first publisher without a place roots the tree under its tag (the first four
    ///   bytes of its `MachineId`). Every GOSSIP and IHAVE carries the sender's place.
    /// * A node takes the place below a neighbour when it is better than its own: a smaller
    ///   root, or the same root at least one level closer to it. As in a bridged LAN's
    ///   spanning tree (IEEE 802.1D), the smallest root wins and every node hangs from a
    ///   neighbour nearest to it, so the tree is a breadth-first tree of the overlay: its
    ///   paths between any two nodes are at most twice the root's eccentricity.
    /// * Moving sends a GRAFT without ids to the new parent, which counts the node as a
    ///   child, and a PRUNE to the old one. A node never moves below one of its children. A
    ///   changed place is announced to the topic's peers by an IHAVE without ids, at the next
    ///   IHAVE flush (at most one per topic per `ihave_interval`), so the tree settles within
    ///   a round and a neighbour that keeps changing its place cannot make the tree below it
    ///   flood.
    /// * A node whose parent loses its place (or leaves) loses its own, and says so; it keeps
    ///   the link, follows the parent back to a place, or moves to the first neighbour that
    ///   offers one. A node its parent prunes drops parent and place without a word: its
    ///   children keep their places and follow its next one. A PRUNE that comes within
    ///   `prune_grace` of attaching was most likely sent before the attaching GRAFT arrived
    ///   (for a copy pushed just before the move): the node attaches again. Two nodes that
    ///   each attached to the other let go of each other.
    /// * A duplicate never prunes a tree link (parent or child); the link its first copy came
    ///   over goes instead, if that is outside the tree. A message pushed over a link outside
    ///   the tree prunes that link at once.
    /// * A GRAFT for ids only pulls them: neither end makes the link eager. The pulled copy
    ///   goes down the tree; the parent, whose own copy is most likely on its way, gets an
    ///   IHAVE. A new carrier of a topic that has a tree starts lazy.
    /// * The paper's optimisation (§3.8, `optimization_threshold`) and the late-copy rule are
    ///   off: they bend the tree toward each message's publisher.
    ///
    /// Measured (docs/benchmarks.md): `broadcast-random` n=1000, LDH 13 and RMR 0.06;
    /// `broadcast-single` keeps its first round and then reaches everyone in 7 hops.
    pub depth_tree: bool,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            graft_timeout: Duration::from_millis(150),
            graft_retry: Duration::from_millis(100),
            ihave_interval: Duration::from_millis(20),
            optimization_threshold: 4,
            max_hops: 32,
            cache_capacity: 4096,
            cache_retention: Duration::from_secs(30),
            seen_capacity: 65_536,
            seen_retention: Duration::from_secs(120),
            max_message_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(30),
            catch_up_ids: 128,
            max_missing: 4096,
            max_topics: 1024,
            topic_min_peers: 3,
            topic_max_links: 6,
            topic_walk_length: 16,
            topic_maintenance_interval: Duration::from_secs(2),
            prune_grace: Duration::from_secs(1),
            first_push: FirstPushConfig::default(),
            depth_tree: true,
        }
    }
}

/// How a node pushes the first message of a topic it forwards, before PRUNEs have shaped the
/// topic's tree. Deviation from the paper, where every carrier starts eager (§3.5).
///
/// Why: with every carrier eager, the first message crosses every overlay link once or twice.
/// A 1000-node overlay of degree 5 pays about three duplicates per node for it
/// (`rmr_per_round[0]` ≈ 2.9 in `broadcast-single`), which is most of a 30-round run's
/// redundancy. The tree that survives the PRUNEs is made of the links that delivered first,
/// which are mostly fast ones. So a node pushes its first message only over its fastest links
/// (round trips measured by SWIM's probes; a peer not yet measured ranks last) and sends an
/// IHAVE over the rest. Carriers that announced the message before it arrived have it already
/// and get neither (topic links excepted: they are always eager).
///
/// Few fast links per node make long chains, though, so the fanout depends on how far the
/// node is from the publisher: the number of nodes grows with each hop, so extra pushes near
/// the publisher are cheap and shorten every path below them. Measured at n=1000
/// (docs/benchmarks.md): two fastest links everywhere give a first round of 1.06 duplicates
/// per node but a last delivery 16 hops out; these defaults give 1.3 and 10–12 hops, where
/// the paper's flood gives 2.9 and 10.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FirstPushConfig {
    /// Nodes at most this many hops from the publisher push to every carrier. Default 2.
    pub flood_within: u8,
    /// Nodes further out, but at most this many hops from the publisher, push to
    /// `wide_fanout` carriers. Default 4.
    pub wide_within: u8,
    /// Fanout between `flood_within` and `wide_within`. Default 3.
    pub wide_fanout: usize,
    /// Fanout of every node further out. Default 2: a random graph in which every node links
    /// to two others is connected with high probability, and IHAVEs repair what it misses.
    pub fanout: usize,
    /// Grace between an IHAVE and its GRAFT while this node has not yet seen a message of the
    /// topic. Default 20 ms (one IHAVE batch): with few eager pushes per node, an announced
    /// message is often not on its way eagerly, and a chain of fast links that does bring it
    /// is long. A late eager copy then loses its link (see `on_gossip_verified`).
    pub graft_timeout: Duration,
}

impl FirstPushConfig {
    /// The paper's start: every carrier eager.
    pub fn flood() -> Self {
        Self {
            flood_within: u8::MAX,
            ..Self::default()
        }
    }

    /// Carriers a node `distance` hops from the publisher pushes to.
    fn fanout_at(&self, distance: u8) -> usize {
        if distance <= self.flood_within {
            usize::MAX
        } else if distance <= self.wide_within {
            self.wide_fanout
        } else {
            self.fanout
        }
    }
}

impl Default for FirstPushConfig {
    fn default() -> Self {
        Self {
            flood_within: 2,
            wide_within: 4,
            wide_fanout: 3,
            fanout: 2,
            graft_timeout: Duration::from_millis(20),
        }
    }
}

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

/// Counters of the broadcast layer, one per stage so a loss can be located.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastStats {
    /// Messages published here.
    pub published: u64,
    /// GOSSIP frames received (new or not).
    pub gossip_received: u64,
    /// GOSSIP frames for an id already seen.
    pub duplicates: u64,
    /// Messages accepted (verified, first copy).
    pub accepted: u64,
    /// Messages handed to a local subscriber.
    pub delivered: u64,
    /// Messages not forwarded because they reached `max_hops`.
    pub hop_limited: u64,
    /// PRUNEs sent.
    pub prunes_sent: u64,
    /// GRAFTs sent.
    pub grafts_sent: u64,
    /// GRAFT requests we could not serve (message no longer cached).
    pub graft_misses: u64,
    /// Missing messages given up after every announcer was tried.
    pub graft_exhausted: u64,
    /// Tree optimisations (graft a shorter path, prune the longer).
    pub optimizations: u64,
    /// Moves to a parent closer to the root of a topic's tree (`depth_tree`).
    pub reparents: u64,
    /// Place changes announced to a topic's peers (`depth_tree`).
    pub place_updates: u64,
    /// Drops by reason (cache/seen evictions, caps, unknown topics…).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl BroadcastStats {
    fn drop(&mut self, why: &'static str) {
        *self.dropped.entry(why).or_default() += 1;
    }
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

/// A small ordered set: a sorted vector. A topic's eager, lazy and link sets hold a handful
/// of peers (bounded by the active view and `topic_max_links`), each neighbour's topic list a
/// handful of topics, and a node carries several topics (four internal ones plus its own); a
/// `BTreeSet` leaf reserves room for eleven entries (368 bytes for ids) from the first insert,
/// this holds what it holds (heaptrack, simulator `idle`). Iteration is in order, as with the
/// `BTreeSet` it replaces (outputs stay deterministic).
#[derive(Debug)]
struct SmallSet<T>(Vec<T>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord + Copy> SmallSet<T> {
    fn from_slice(items: &[T]) -> Self {
        let mut v = items.to_vec();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }
    fn contains(&self, x: &T) -> bool {
        self.0.binary_search(x).is_ok()
    }
    /// Whether `x` was new.
    fn insert(&mut self, x: T) -> bool {
        match self.0.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, x);
                true
            }
        }
    }
    /// Whether `x` was there.
    fn remove(&mut self, x: &T) -> bool {
        match self.0.binary_search(x) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

/// The active neighbours, sorted by id, each with the smallest round trip measured to it.
///
/// The smallest sample tracks a link's propagation delay rather than momentary queueing; it
/// ranks the links of a topic's first push ([`FirstPushConfig`]). A sorted vector: a view
/// holds a handful of neighbours, and a B-tree leaf has room for eleven.
#[derive(Debug, Default)]
struct Neighbors(Vec<(MachineId, u32)>);

/// `Neighbors`' mark of a neighbour whose round trip is not measured yet.
const UNMEASURED: u32 = u32::MAX;

impl Neighbors {
    fn find(&self, peer: &MachineId) -> Result<usize, usize> {
        self.0.binary_search_by(|(p, _)| p.cmp(peer))
    }
    fn contains(&self, peer: &MachineId) -> bool {
        self.find(peer).is_ok()
    }
    fn insert(&mut self, peer: MachineId) {
        if let Err(i) = self.find(&peer) {
            self.0.insert(i, (peer, UNMEASURED));
        }
    }
    fn remove(&mut self, peer: &MachineId) {
        if let Ok(i) = self.find(peer) {
            self.0.remove(i);
        }
    }
    fn iter(&self) -> impl Iterator<Item = &MachineId> {
        self.0.iter().map(|(p, _)| p)
    }
    fn rtt(&self, peer: &MachineId) -> Option<Duration> {
        let us = self.0[self.find(peer).ok()?].1;
        (us != UNMEASURED).then(|| Duration::from_micros(u64::from(us)))
    }
    /// Keeps the smallest sample, in microseconds (an hour at most); a peer that is not a
    /// neighbour is ignored.
    fn rtt_sample(&mut self, peer: &MachineId, rtt: Duration) {
        if let Ok(i) = self.find(peer) {
            let us = u32::try_from(rtt.as_micros()).unwrap_or(UNMEASURED - 1);
            let best = &mut self.0[i].1;
            *best = (*best).min(us);
        }
    }
}

#[derive(Debug, Default)]
struct TopicState {
    subscribed: bool,
    eager: SmallSet<MachineId>,
    lazy: SmallSet<MachineId>,
    /// Topic links: connections to other carriers of this topic that are not membership
    /// neighbours, found by a topic walk (sparse topics).
    links: SmallSet<MachineId>,
    /// Recent ids of this topic, newest last (for catch-up digests).
    recent: VecDeque<(MessageId, u8)>,
    /// Peers of a recent PRUNE (either way) and until when their in-flight messages do not
    /// make them eager again (`prune_grace`). At most one entry per topic peer: entries go
    /// with the peer and are replaced, so the map is bounded by the eager and lazy sets.
    pruned: BTreeMap<MachineId, Time>,
    /// Whether a message of the topic has passed through this node yet, so its first push
    /// is done (`first_push`).
    forwarded: bool,
    /// This node's part in the topic's tree (`depth_tree`). Boxed and made on first use: a
    /// node carries a few topics, and an inline tree moved every topic state up a size
    /// class, 64 bytes per topic (the `idle` scenario's memory per node).
    tree: Option<Box<Tree>>,
}

/// A node's part in a topic's tree (the depth rule, [`BroadcastConfig::depth_tree`]).
#[derive(Debug)]
struct Tree {
    /// This node's distance from the root of the topic's tree, if it has a place in it.
    depth: Option<u8>,
    /// The root's tag ([`wire::IHave::root`]), when `depth` is set.
    root: u32,
    /// The neighbour one level closer to the root.
    parent: Option<MachineId>,
    /// Neighbours that hang from this node (they sent an attaching GRAFT).
    children: SmallSet<MachineId>,
    /// The place changed since the topic's peers were last told (at the next IHAVE flush).
    place_changed: bool,
    /// Until when a PRUNE from the parent is older than our attaching GRAFT to it.
    attached_until: Option<Time>,
}

impl Tree {
    /// No place, no parent, no children.
    const EMPTY: Self = Self {
        depth: None,
        root: 0,
        parent: None,
        children: SmallSet(Vec::new()),
        place_changed: false,
        attached_until: None,
    };
}

/// The tree of a topic without one.
static NO_TREE: Tree = Tree::EMPTY;

impl TopicState {
    /// The topic's tree, read only (empty if none was made).
    fn tree(&self) -> &Tree {
        self.tree.as_deref().unwrap_or(&NO_TREE)
    }

    /// The topic's tree, made on first use.
    fn tree_mut(&mut self) -> &mut Tree {
        self.tree.get_or_insert_with(|| Box::new(Tree::EMPTY))
    }

    /// The depth this node advertises.
    fn wire_depth(&self) -> u8 {
        self.tree().depth.unwrap_or(wire::NO_DEPTH)
    }

    /// The root this node advertises.
    fn wire_root(&self) -> u32 {
        self.place().map_or(0, |(root, _)| root)
    }

    /// This node's place: (root, depth).
    fn place(&self) -> Option<(u32, u8)> {
        let t = self.tree();
        t.depth.map(|d| (t.root, d))
    }

    fn parent(&self) -> Option<MachineId> {
        self.tree().parent
    }

    fn is_child(&self, peer: &MachineId) -> bool {
        self.tree().children.contains(peer)
    }

    fn remove_child(&mut self, peer: &MachineId) -> bool {
        self.tree.as_mut().is_some_and(|t| t.children.remove(peer))
    }

    fn set_place(&mut self, place: Option<(u32, u8)>) {
        if place == self.place() {
            return;
        }
        let t = self.tree_mut();
        t.place_changed = true;
        t.root = place.map_or(0, |(r, _)| r);
        t.depth = place.map(|(_, d)| d);
    }

    /// The parent lost its place: so does this node, and announces it, so that no node keeps
    /// a place the tree no longer backs. The link to the parent stays: if the parent finds a
    /// place again this node follows it, and if another neighbour offers one first (any
    /// offer is better than none) this node moves there and PRUNEs the old parent.
    fn lose_place(&mut self) {
        self.set_place(None);
    }

    /// The parent pruned this node: no parent and no place, taken again from the next
    /// neighbour that offers one. Not announced: the children keep their places and follow
    /// this node's next one, instead of the whole subtree letting go.
    fn drop_parent_quietly(&mut self) {
        if let Some(t) = self.tree.as_mut() {
            t.parent = None;
            t.depth = None;
            t.root = 0;
        }
    }

    /// The link to the parent is gone: no parent, no place.
    fn lose_parent(&mut self) {
        if let Some(t) = self.tree.as_mut() {
            t.parent = None;
        }
        self.set_place(None);
    }

    /// Drops every trace of `peer` from the topic, except a topic link. Losing the parent
    /// loses the place in the tree too, until a neighbour with a place shows up; returns
    /// whether the place changed.
    fn forget(&mut self, peer: &MachineId) -> bool {
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

    /// Whether `peer` is this node's parent or child in the tree.
    fn is_tree_link(&self, peer: &MachineId) -> bool {
        self.parent().as_ref() == Some(peer) || self.is_child(peer)
    }
}

#[derive(Debug)]
struct Cached {
    topic: TopicId,
    hops: u8,
    from: Option<MachineId>,
    message: Signed,
    at: Time,
}

/// Moves `peer` to `topic`'s lazy set, where messages it had in flight do not make it eager
/// again until `until` (`prune_grace`), and sends it a PRUNE.
fn prune_link(
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

/// Sends `parent` a GRAFT without ids: this node hangs below it in `topic`'s tree, and the
/// parent counts it as a child (`depth_tree`).
fn send_attach(
    out: &mut VecDeque<Out>,
    stats: &mut BroadcastStats,
    topic: TopicId,
    parent: MachineId,
) {
    stats.grafts_sent += 1;
    let attach = wire::Graft {
        topic,
        ids: Vec::new(),
    };
    out.push_back(Out::Send(parent, attach.into()));
}

/// Whether `peer` is a neighbour that declared `topic` in its INTEREST.
fn declares(
    neighbors: &Neighbors,
    interest: &BTreeMap<MachineId, SmallSet<TopicId>>,
    topic: &TopicId,
    peer: &MachineId,
) -> bool {
    neighbors.contains(peer) && interest.get(peer).is_some_and(|i| i.contains(topic))
}

/// Most announcers (and GRAFT targets) remembered per missing message.
const MAX_ANNOUNCERS: usize = 8;

/// Most GRAFT answers awaited at once (`Broadcast::graft_answers`).
const GRAFT_ANSWERS_CAP: usize = 16;

#[derive(Debug)]
struct Missing {
    topic: TopicId,
    announcers: VecDeque<(MachineId, u8)>,
    /// Announcers a GRAFT for it went to, oldest first (at most `MAX_ANNOUNCERS`).
    grafted: Vec<MachineId>,
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
    /// Boxed: a map leaf has room for 11 entries whether or not they are used, and a node
    /// carries few topics, so inline states cost 1.8 KB per node for one topic (heaptrack,
    /// `idle`); boxed, the leaf holds pointers.
    topics: BTreeMap<TopicId, Box<TopicState>>,
    /// Topics each connected peer carries (from its INTEREST).
    interest: BTreeMap<MachineId, SmallSet<TopicId>>,
    neighbors: Neighbors,
    /// GRAFTs answered late because a slower eager copy came first, whose answers must not
    /// PRUNE the grafted peer: (id, peer), oldest first, at most `GRAFT_ANSWERS_CAP`; the
    /// oldest is dropped (its answer then prunes as usual).
    graft_answers: VecDeque<(MessageId, MachineId)>,
    cache: BTreeMap<MessageId, Cached>,
    cache_order: VecDeque<(Time, MessageId)>,
    seen: BTreeMap<MessageId, Time>,
    seen_order: VecDeque<(Time, MessageId)>,
    missing: BTreeMap<MessageId, Missing>,
    lazy_queue: BTreeMap<MachineId, BTreeMap<TopicId, Vec<IHaveEntry>>>,
    timers: BTreeSet<(Time, Timer)>,
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
            config,
            topics: BTreeMap::new(),
            interest: BTreeMap::new(),
            neighbors: Neighbors::default(),
            graft_answers: VecDeque::new(),
            cache: BTreeMap::new(),
            cache_order: VecDeque::new(),
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
            missing: BTreeMap::new(),
            lazy_queue: BTreeMap::new(),
            timers: BTreeSet::new(),
            flush_armed: false,
            places_changed: false,
            me: None,
            walk_counter: 0,
            out: VecDeque::new(),
            stats: BroadcastStats::default(),
        }
    }

    pub(crate) fn start(&mut self, now: Time, me: PeerAddr) {
        self.me = Some(me);
        self.timers
            .insert((now + Duration::from_secs(1), Timer::Expire));
        self.timers.insert((
            now + self.config.topic_maintenance_interval,
            Timer::TopicMaintenance,
        ));
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
        self.timers.first().map(|(t, _)| *t)
    }

    pub(crate) fn subscribed_topics(&self) -> Vec<TopicId> {
        self.topics
            .iter()
            .filter(|(_, t)| t.subscribed)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether the message id was seen (delivered or forwarded) recently.
    pub(crate) fn is_known(&self, id: &MessageId) -> bool {
        self.seen.contains_key(id)
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
            self.stats.drop("topic_cap");
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
            for link in t.links.0 {
                self.unpin_if_unused(link);
            }
            self.announce_interest();
        }
    }

    fn is_link(&self, peer: &MachineId) -> bool {
        self.topics.values().any(|t| t.links.contains(peer))
    }

    fn unpin_if_unused(&mut self, peer: MachineId) {
        if !self.is_link(&peer) {
            self.out.push_back(Out::Pin(peer, false));
        }
    }

    /// Whether `peer` carries `topic` with us: a neighbour that declared it, or a topic link.
    fn is_topic_peer(&self, topic: &TopicId, peer: &MachineId) -> bool {
        self.topics
            .get(topic)
            .is_some_and(|t| t.links.contains(peer))
            || declares(&self.neighbors, &self.interest, topic, peer)
    }

    fn announce_interest(&mut self) {
        let frame = self.interest_frame();
        let to: Vec<MachineId> = self.neighbors.iter().copied().collect();
        self.out.push_back(Out::SendMany(to, frame));
    }

    /// Sends a freshly signed message.
    pub(crate) fn publish(&mut self, now: Time, topic: TopicId, message: Signed) {
        self.stats.published += 1;
        if self.config.depth_tree
            && let Some(t) = self.topics.get_mut(&topic)
            && t.place().is_none()
        {
            // The first publisher without a place in the tree roots it.
            let tag = self.me.as_ref().map_or(0, |me| {
                let b = me.id.as_bytes();
                u32::from_be_bytes([b[0], b[1], b[2], b[3]])
            });
            t.set_place(Some((tag, 0)));
            t.tree_mut().parent = None;
            self.places_changed = true;
        }
        let id = message.id();
        self.remember(now, id, topic, 0, None, message.clone());
        self.forward(topic, id, 0, None, &[], &message);
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

    /// A neighbour that carries topics we carry enters their eager sets, and gets a digest of
    /// what we recently saw so it can pull what it missed.
    fn adopt_carrier(&mut self, peer: MachineId) {
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
            if self.config.depth_tree && t.place().is_some() {
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

    fn maintain_topics(&mut self) {
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
                self.out.push_back(Out::Send(
                    from,
                    wire::TopicLink {
                        topic,
                        accepted: Some(false),
                    }
                    .into(),
                ));
            }
            return;
        };
        match accepted {
            None => {
                let ok = t.links.contains(&from) || t.links.len() < max;
                if ok {
                    self.add_link(from, topic);
                }
                self.out.push_back(Out::Send(
                    from,
                    wire::TopicLink {
                        topic,
                        accepted: Some(ok),
                    }
                    .into(),
                ));
            }
            Some(true) => {
                if t.links.len() < max {
                    self.add_link(from, topic);
                }
            }
            Some(false) => {}
        }
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

    // ----- frames -----

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

    /// The depth rule, on a GOSSIP or IHAVE from `from`, whose place in `topic`'s tree is
    /// `root` and `depth`. Call it before [`Self::on_gossip_verified`] (`first_copy`) so the
    /// message is forwarded with this node's new place.
    pub(crate) fn on_depth(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        root: u32,
        depth: u8,
        first_copy: bool,
    ) {
        if !self.config.depth_tree || !self.is_topic_peer(&topic, &from) {
            return;
        }
        let grace = self.config.prune_grace;
        let max_depth = self.config.max_hops;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        let before = t.place();
        // The place this node would have below `from`. Deeper than the hop limit (or than a
        // depth the wire can carry) is no place.
        let via = (depth < max_depth.min(wire::NO_DEPTH - 1)).then(|| (root, depth + 1));
        let mut attach = false;
        if t.parent() == Some(from) {
            // Follow the parent up and down.
            if via.is_none() {
                t.lose_place();
            } else {
                t.set_place(via);
            }
        } else if let Some(v) = via
            && !t.is_child(&from)
            && before.is_none_or(|b| v < b)
        {
            // A first place, a smaller root, or a place at least one level closer to the root.
            // Never below a child: its place hangs from ours.
            if before.is_some() {
                self.stats.reparents += 1;
            }
            attach = true;
            if let Some(old) = t.tree_mut().parent.replace(from) {
                prune_link(t, &mut self.out, &mut self.stats, topic, old, now + grace);
            }
            t.set_place(via);
        }
        if !attach
            && first_copy
            && t.parent().is_some()
            && !t.is_tree_link(&from)
            && !t.links.contains(&from)
            && t.eager.contains(&from)
        {
            // Pushed to us over a link outside the tree (a first push, a new carrier): the
            // next message would come over both, so the link goes now.
            prune_link(t, &mut self.out, &mut self.stats, topic, from, now + grace);
        }
        if attach {
            // Tell the new parent, so it counts this node as a child.
            t.tree_mut().attached_until = Some(now + grace);
            t.remove_child(&from);
            t.pruned.remove(&from);
            t.lazy.remove(&from);
            t.eager.insert(from);
            send_attach(&mut self.out, &mut self.stats, topic, from);
        }
        if t.tree().place_changed {
            self.places_changed = true;
            self.arm_flush(now);
        }
    }

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
        if let Some(i) = self
            .graft_answers
            .iter()
            .position(|(m, p)| m == id && *p == from)
        {
            // The answer to a GRAFT whose peer replaced a slower eager sender: keep the link.
            self.graft_answers.remove(i);
            return;
        }
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
    pub(crate) fn on_gossip_verified(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        id: MessageId,
        hops: u8,
        message: Signed,
    ) -> bool {
        self.stats.gossip_received += 1;
        let Some(t) = self.topics.get_mut(&topic) else {
            // Not a topic we carry (a peer ignored our INTEREST): mark seen, do not relay.
            self.stats.drop("topic_not_carried");
            self.mark_seen(now, id);
            return false;
        };
        self.stats.accepted += 1;
        // "Upon first receipt, the sender becomes an eager peer" (§3.5, GOSSIP handler) —
        // unless the link was pruned moments ago and this message was in flight before the
        // peer saw the PRUNE (`prune_grace`).
        let in_grace = t.pruned.get(&from).is_some_and(|until| now < *until);
        if !in_grace {
            t.pruned.remove(&from);
        }
        // With the depth rule, a GRAFT's answer leaves the link lazy (`pulls_only`).
        let pulled = self.config.depth_tree
            && self
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
        let missing = self.missing.remove(&id);
        // Carriers that announced the message have it: the first push skips them.
        let mut announced: Vec<MachineId> = match &missing {
            Some(m) if !t.forwarded => m
                .announcers
                .iter()
                .map(|(p, _)| *p)
                .chain(m.grafted.iter().copied())
                .collect(),
            _ => Vec::new(),
        };
        // `is_topic_peer`, with the topic state already borrowed.
        let carries = |p: &MachineId| {
            t.links.contains(p) || declares(&self.neighbors, &self.interest, &topic, p)
        };
        let mut new_parent = None;
        // With the depth rule, a grown tree is shaped by depth only: these two rules would
        // bend it toward each message's publisher.
        if let Some(m) = &missing
            && !self.config.depth_tree
            && !t.links.contains(&from)
            && !m.grafted.contains(&from)
        {
            match m.grafted.last() {
                // A GRAFT for this id went out before this copy came (and this is not a
                // GRAFT's answer): the grafted peer announced it at least a graft timeout
                // earlier, so its path is the faster one. Keep it (its answer, a duplicate by
                // now, must not prune it) and prune this late sender instead; otherwise the
                // tree keeps the slow path and the same GRAFT, duplicate and PRUNE repeat for
                // every later message. Deviation from the paper, which prunes whichever copy
                // comes second (§3.5). Not after a GRAFT that only pulled (`prune_grace`):
                // the grafted link is not eager then.
                Some(&grafted) if t.eager.contains(&grafted) => {
                    if self.graft_answers.len() >= GRAFT_ANSWERS_CAP {
                        self.graft_answers.pop_front();
                        self.stats.drop("graft_answers_cap");
                    }
                    self.graft_answers.push_back((id, grafted));
                    new_parent = Some((grafted, false));
                }
                Some(_) => {}
                // Tree optimisation (§3.8) for an IHAVE that came before the message: it was
                // both earlier and much shorter than this path; make its sender the parent.
                // The paper only compares IHAVEs that come after the message.
                None => {
                    new_parent = m
                        .announcers
                        .iter()
                        .filter(|(p, _)| *p != from && carries(p))
                        .min_by_key(|(_, h)| *h)
                        .filter(|(_, h)| {
                            hops > h.saturating_add(self.config.optimization_threshold)
                        })
                        .map(|(p, _)| (*p, true));
                }
            }
        }
        if let Some((parent, graft)) = new_parent {
            // The new parent stays eager through the first push.
            announced.retain(|p| *p != parent);
            if t.eager.contains(&from) {
                let until = now + self.config.prune_grace;
                prune_link(t, &mut self.out, &mut self.stats, topic, from, until);
            }
            if graft {
                self.stats.optimizations += 1;
                self.graft(now, parent, topic, Vec::new());
            }
        }
        self.remember(now, id, topic, hops, Some(from), message.clone());
        self.forward(topic, id, hops, Some(from), &announced, &message);
        self.arm_flush(now);
        if subscribed {
            self.stats.delivered += 1;
        }
        subscribed
    }

    /// Pushes a message this node is `distance` hops from the publisher of (0: its own) to
    /// the eager carriers of `topic` and queues an IHAVE for the lazy ones.
    fn forward(
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
            (Some(f), Some(p)) if self.config.depth_tree && !t.is_tree_link(&f) => Some(p),
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
    /// and all but the `fanout` fastest other eager carriers become lazy. The sender and
    /// topic links stay eager. See [`FirstPushConfig`].
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

    fn arm_flush(&mut self, now: Time) {
        if (!self.lazy_queue.is_empty() || self.places_changed) && !self.flush_armed {
            self.flush_armed = true;
            self.timers
                .insert((now + self.config.ihave_interval, Timer::FlushIHave));
        }
    }

    fn remember(
        &mut self,
        now: Time,
        id: MessageId,
        topic: TopicId,
        hops: u8,
        from: Option<MachineId>,
        message: Signed,
    ) {
        self.mark_seen(now, id);
        if self.cache.contains_key(&id) {
            // Already cached (and queued for eviction once): a second order entry would make
            // a later eviction pop an id that is gone and let the cache pass its cap.
            return;
        }
        while self.cache.len() >= self.config.cache_capacity {
            let Some((_, old)) = self.cache_order.pop_front() else {
                break;
            };
            if self.cache.remove(&old).is_some() {
                self.stats.drop("cache_evicted");
            }
        }
        self.cache.insert(
            id,
            Cached {
                topic,
                hops,
                from,
                message,
                at: now,
            },
        );
        self.cache_order.push_back((now, id));
        if let Some(t) = self.topics.get_mut(&topic) {
            if t.recent.len() >= self.config.catch_up_ids {
                t.recent.pop_front();
            }
            t.recent.push_back((id, hops));
        }
    }

    pub(crate) fn mark_seen(&mut self, now: Time, id: MessageId) {
        if self.seen.contains_key(&id) {
            return;
        }
        if self.seen.len() >= self.config.seen_capacity
            && let Some((_, old)) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
            self.stats.drop("seen_evicted");
        }
        self.seen.insert(id, now);
        self.seen_order.push_back((now, id));
    }

    pub(crate) fn on_ihave(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        entries: &[IHaveEntry],
    ) {
        if !self.is_topic_peer(&topic, &from) {
            self.stats.drop("ihave_not_carried");
            return;
        }
        for e in entries {
            if let Some(c) = self.cache.get(&e.id) {
                // Tree optimisation (§3.8): a much shorter path exists through `from`.
                if !self.config.depth_tree
                    && c.hops > e.hops.saturating_add(self.config.optimization_threshold)
                    && let Some(eager_from) = c.from
                    && eager_from != from
                {
                    self.stats.optimizations += 1;
                    self.graft(now, from, topic, Vec::new());
                    if let Some(t) = self.topics.get_mut(&topic)
                        && t.eager.remove(&eager_from)
                    {
                        t.lazy.insert(eager_from);
                        self.stats.prunes_sent += 1;
                        self.out
                            .push_back(Out::Send(eager_from, wire::Prune { topic }.into()));
                    }
                }
                continue;
            }
            if self.seen.contains_key(&e.id) {
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
                        self.stats.drop("missing_cap");
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
                    self.timers.insert((now + grace, Timer::Graft(e.id)));
                }
            }
        }
    }

    /// Sends a GRAFT, making the link eager unless it only pulls (`pulls_only`).
    fn graft(&mut self, now: Time, to: MachineId, topic: TopicId, ids: Vec<MessageId>) {
        if !self.pulls_only(now, topic, &to, &ids)
            && let Some(t) = self.topics.get_mut(&topic)
        {
            t.lazy.remove(&to);
            t.eager.insert(to);
        }
        self.stats.grafts_sent += 1;
        self.out
            .push_back(Out::Send(to, wire::Graft { topic, ids }.into()));
    }

    /// Whether a GRAFT on the link to `peer` only pulls `ids`, leaving the link lazy: it asks
    /// for messages and a PRUNE on the link (either way) is younger than `prune_grace`. Both
    /// ends apply the same rule to their own PRUNE record; an empty GRAFT (tree optimisation)
    /// always re-grafts.
    fn pulls_only(&self, now: Time, topic: TopicId, peer: &MachineId, ids: &[MessageId]) -> bool {
        !ids.is_empty()
            && (self.config.depth_tree
                || self
                    .topics
                    .get(&topic)
                    .and_then(|t| t.pruned.get(peer))
                    .is_some_and(|until| now < *until))
    }

    pub(crate) fn on_graft(
        &mut self,
        now: Time,
        from: MachineId,
        topic: TopicId,
        ids: &[MessageId],
    ) {
        if !self.is_topic_peer(&topic, &from) {
            self.stats.drop("graft_from_non_neighbor");
            return;
        }
        if !self.pulls_only(now, topic, &from, ids)
            && let Some(t) = self.topics.get_mut(&topic)
        {
            t.lazy.remove(&from);
            t.eager.insert(from);
            if self.config.depth_tree && ids.is_empty() {
                if t.parent() == Some(from) {
                    // Our parent wants to hang from us: each took the other's place as it
                    // was before the other moved. Neither link can be a tree link; both
                    // ends let go and find new places.
                    t.lose_parent();
                    let until = now + self.config.prune_grace;
                    prune_link(t, &mut self.out, &mut self.stats, topic, from, until);
                    self.places_changed = true;
                    self.arm_flush(now);
                    return;
                }
                // An attaching GRAFT: the sender hangs from this node now.
                t.pruned.remove(&from);
                t.tree_mut().children.insert(from);
            }
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
        let grace = self.config.prune_grace;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if t.parent() == Some(from) {
            if t.tree().attached_until.is_some_and(|until| now < until) {
                // Most likely sent before our attaching GRAFT reached it, for a copy we
                // pushed before moving. Attach again, so both ends agree either way.
                send_attach(&mut self.out, &mut self.stats, topic, from);
                return;
            }
            t.drop_parent_quietly();
        }
        t.remove_child(&from);
        if t.eager.remove(&from) && (self.neighbors.contains(&from) || t.links.contains(&from)) {
            t.lazy.insert(from);
            t.pruned.insert(from, now + grace);
        }
    }

    // ----- timers -----

    pub(crate) fn handle_timeout(&mut self, now: Time) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Graft(id) => self.graft_timer(now, id),
                Timer::FlushIHave => self.flush_ihave(),
                Timer::Expire => {
                    self.expire(now);
                    self.timers
                        .insert((now + Duration::from_secs(1), Timer::Expire));
                }
                Timer::TopicMaintenance => {
                    self.maintain_topics();
                    self.timers.insert((
                        now + self.config.topic_maintenance_interval,
                        Timer::TopicMaintenance,
                    ));
                }
            }
        }
    }

    fn graft_timer(&mut self, now: Time, id: MessageId) {
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
        self.graft(now, peer, topic, vec![id]);
        self.timers
            .insert((now + self.config.graft_retry, Timer::Graft(id)));
    }

    fn flush_ihave(&mut self) {
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

    /// This node's place in `topic`'s tree as GOSSIP and IHAVE carry it.
    fn wire_place(&self, topic: &TopicId) -> (u32, u8) {
        self.topics
            .get(topic)
            .map_or((0, wire::NO_DEPTH), |t| (t.wire_root(), t.wire_depth()))
    }

    fn announce_places(&mut self) {
        if !std::mem::take(&mut self.places_changed) {
            return;
        }
        // Changed places first, one IHAVE without ids per topic to all its peers: at most one
        // per topic per flush interval, however often the place moved (a hostile neighbour
        // changing its own place on every frame cannot make the tree below it flood).
        for (topic, t) in self.topics.iter_mut() {
            if !t
                .tree
                .as_mut()
                .is_some_and(|tr| std::mem::take(&mut tr.place_changed))
            {
                continue;
            }
            let mut to: Vec<MachineId> = t
                .eager
                .iter()
                .chain(t.lazy.iter())
                .chain(t.links.iter())
                .copied()
                .collect();
            to.sort_unstable();
            to.dedup();
            if !to.is_empty() {
                self.stats.place_updates += 1;
                let frame: Frame = wire::IHave {
                    topic: *topic,
                    root: t.wire_root(),
                    depth: t.wire_depth(),
                    entries: Vec::new(),
                }
                .into();
                self.out.push_back(Out::SendMany(to, frame));
            }
        }
    }

    fn expire(&mut self, now: Time) {
        while let Some(&(at, id)) = self.cache_order.front() {
            if now - at < self.config.cache_retention {
                break;
            }
            self.cache_order.pop_front();
            if self.cache.get(&id).is_some_and(|c| c.at == at) {
                self.cache.remove(&id);
            }
        }
        while let Some(&(at, id)) = self.seen_order.front() {
            if now - at < self.config.seen_retention {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&id);
        }
    }

    /// Checks the topics' structure: eager and lazy sets disjoint; the parent and the
    /// children are eager (or topic links) and distinct; a depth within the hop limit.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (id, t) in &self.topics {
            let pushed = |p: &MachineId| t.eager.contains(p);
            if t.eager.iter().any(|p| t.lazy.contains(p)) {
                return Err(format!("topic {id}: a peer both eager and lazy"));
            }
            if t.parent()
                .as_ref()
                .is_some_and(|p| !pushed(p) || t.is_child(p))
            {
                return Err(format!("topic {id}: parent not eager, or also a child"));
            }
            if t.tree().children.iter().any(|c| !pushed(c)) {
                return Err(format!("topic {id}: a child not eager"));
            }
            if t.place().is_some_and(|(_, d)| d > self.config.max_hops) {
                return Err(format!("topic {id}: depth beyond the hop limit"));
            }
        }
        Ok(())
    }

    /// Sizes for invariant checks and reports: (cache, seen, missing).
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (self.cache.len(), self.seen.len(), self.missing.len())
    }

    /// Eager and lazy peers of a topic (for tests and reports).
    pub(crate) fn topic_peers(&self, topic: &TopicId) -> Option<(Vec<MachineId>, Vec<MachineId>)> {
        self.topics.get(topic).map(|t| {
            (
                t.eager.iter().copied().collect(),
                t.lazy.iter().copied().collect(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{AgentId, Signature, SignerId};

    fn msg(n: u8) -> (MessageId, Signed) {
        let signed = Signed {
            signer: SignerId::Agent(AgentId::from_bytes([1; 32])),
            signer_key: None,
            body: Bytes::from(vec![n; 8]),
            batch: None,
            signature: Signature::from_bytes(&[0; crate::identity::SIGNATURE_LEN])
                .unwrap_or_else(|_| unreachable!("right length")),
        };
        (signed.id(), signed)
    }

    /// The paper's tree, shaped by each message's race (`depth_tree` off).
    fn classic() -> BroadcastConfig {
        BroadcastConfig {
            depth_tree: false,
            ..BroadcastConfig::default()
        }
    }

    fn is_eager(b: &Broadcast, topic: TopicId, peer: MachineId) -> bool {
        b.topic_peers(&topic)
            .is_some_and(|(eager, _)| eager.contains(&peer))
    }

    /// A message the peer sent before our PRUNE reached it must not make it eager again; one
    /// after the grace does (the paper's rule).
    #[test]
    fn messages_in_flight_after_a_prune_do_not_undo_it() {
        let topic = TopicId::from_name("t");
        let peer = MachineId::from_bytes([9; 32]);
        let mut b = Broadcast::new(BroadcastConfig::default());
        b.subscribe(topic);
        b.neighbor_up(peer);
        b.on_interest(Time::ZERO, peer, &[topic]);
        assert!(is_eager(&b, topic, peer));
        let t0 = Time::from_millis(1_000_000);
        let (id, m) = msg(1);
        assert!(b.on_gossip_verified(t0, peer, topic, id, 1, m));
        b.on_duplicate(t0, peer, topic, &id);
        assert!(!is_eager(&b, topic, peer), "pruned");
        // In flight: sent before the PRUNE arrived.
        let (id, m) = msg(2);
        b.on_gossip_verified(t0 + Duration::from_millis(50), peer, topic, id, 1, m);
        assert!(
            !is_eager(&b, topic, peer),
            "the PRUNE holds during the grace"
        );
        // After the grace, a new message from it means it pushes to us on purpose.
        let (id, m) = msg(3);
        b.on_gossip_verified(t0 + Duration::from_secs(2), peer, topic, id, 1, m);
        assert!(is_eager(&b, topic, peer));
    }

    /// Within the grace of a PRUNE, a GRAFT for ids is a pull: answered, but the link stays
    /// lazy at both ends; after the grace it re-grafts the link (the paper's rule).
    #[test]
    fn a_graft_within_the_prune_grace_only_pulls() {
        let topic = TopicId::from_name("t");
        let peer = MachineId::from_bytes([9; 32]);
        let other = MachineId::from_bytes([8; 32]);
        let mut b = Broadcast::new(classic());
        b.subscribe(topic);
        for p in [peer, other] {
            b.neighbor_up(p);
            b.on_interest(Time::ZERO, p, &[topic]);
        }
        let t0 = Time::from_millis(1_000_000);
        let (id, m) = msg(1);
        b.on_gossip_verified(t0, other, topic, id, 1, m);
        b.on_duplicate(t0, peer, topic, &id);
        assert!(!is_eager(&b, topic, peer), "pruned");
        while b.poll_out().is_some() {}

        // The peer pulls message 1: served, link stays lazy.
        b.on_graft(t0 + Duration::from_millis(100), peer, topic, &[id]);
        let served = std::iter::from_fn(|| b.poll_out())
            .any(|o| matches!(o, Out::Send(to, Frame::Gossip(_)) if to == peer));
        assert!(served, "the pull is answered");
        assert!(!is_eager(&b, topic, peer), "a pull does not re-graft");

        // We miss message 2, announced only by the pruned peer: our GRAFT pulls it.
        let (id2, _) = msg(2);
        let t1 = t0 + Duration::from_millis(200);
        b.on_ihave(t1, peer, topic, &[IHaveEntry { id: id2, hops: 2 }]);
        b.handle_timeout(t1 + b.config.graft_timeout);
        let grafted = std::iter::from_fn(|| b.poll_out())
            .any(|o| matches!(o, Out::Send(to, Frame::Graft(g)) if to == peer && g.ids == [id2]));
        assert!(grafted, "the missing message is pulled");
        assert!(
            !is_eager(&b, topic, peer),
            "our pull does not re-graft either"
        );

        // After the grace, a GRAFT re-grafts the link.
        b.on_graft(t0 + Duration::from_secs(2), peer, topic, &[id]);
        assert!(is_eager(&b, topic, peer));
    }

    /// A broadcast layer with `peers` as carrying neighbours of `topic`, with the paper's
    /// tree (`classic`). Round trips fall with the index, against id order: the last peer
    /// is the fastest, at 10 ms, and each one before it 10 ms slower. Each peer also has a
    /// 500 ms sample, before its real one for even indices and after it for odd ones (the
    /// smallest sample counts, not the latest).
    fn carriers(topic: TopicId, peers: &[MachineId]) -> Broadcast {
        carriers_with(classic(), topic, peers)
    }

    /// [`carriers`] with `config`.
    fn carriers_with(config: BroadcastConfig, topic: TopicId, peers: &[MachineId]) -> Broadcast {
        let mut b = Broadcast::new(config);
        b.subscribe(topic);
        let n = peers.len() as u64;
        for (i, p) in peers.iter().enumerate() {
            b.neighbor_up(*p);
            b.on_interest(Time::ZERO, *p, &[topic]);
            let rtt = Duration::from_millis(10 * (n - i as u64));
            let slow = Duration::from_millis(500);
            let samples = if i % 2 == 0 { [slow, rtt] } else { [rtt, slow] };
            for sample in samples {
                b.rtt_sample(*p, sample);
            }
        }
        while b.poll_out().is_some() {}
        b
    }

    /// Pushed-to and announced-to peers in the output, after the IHAVE flush.
    fn pushes_and_ihaves(b: &mut Broadcast, now: Time) -> (Vec<MachineId>, Vec<MachineId>) {
        b.handle_timeout(now + b.config.ihave_interval);
        let (mut pushed, mut told) = (Vec::new(), Vec::new());
        while let Some(o) = b.poll_out() {
            match o {
                Out::SendMany(to, Frame::Gossip(_)) => pushed.extend(to),
                Out::Send(to, Frame::Gossip(_)) => pushed.push(to),
                Out::Send(to, Frame::IHave(_)) => told.push(to),
                _ => {}
            }
        }
        pushed.sort();
        told.sort();
        (pushed, told)
    }

    /// Far from the publisher, the first message of a topic goes eagerly to the `fanout`
    /// fastest carriers only; slower ones get an IHAVE, and one that announced it gets
    /// nothing. Near the publisher every carrier gets it.
    #[test]
    fn the_first_push_goes_to_the_fastest_carriers() {
        let topic = TopicId::from_name("t");
        let peers: Vec<MachineId> = (1..=6).map(|i| MachineId::from_bytes([i; 32])).collect();
        let t0 = Time::from_millis(1_000_000);

        let mut b = carriers(topic, &peers);
        // peers[4] (20 ms, the second fastest) announced the message first; it comes from
        // peers[0] (60 ms). Left: peers[5] (10 ms), [3] (30), [2] (40), [1] (50).
        let (id, m) = msg(1);
        b.on_ihave(t0, peers[4], topic, &[IHaveEntry { id, hops: 6 }]);
        assert!(b.on_gossip_verified(t0, peers[0], topic, id, 7, m));
        let (pushed, told) = pushes_and_ihaves(&mut b, t0);
        assert_eq!(b.config.first_push.fanout, 2);
        assert_eq!(
            pushed,
            vec![peers[3], peers[5]],
            "the two fastest that lack it"
        );
        assert_eq!(told, vec![peers[1], peers[2]]);
        // The choice sticks: the next message follows the same eager set (the tree).
        let (id, m) = msg(2);
        let t1 = t0 + Duration::from_secs(1);
        b.on_gossip_verified(t1, peers[0], topic, id, 7, m);
        let (pushed, _) = pushes_and_ihaves(&mut b, t1);
        assert_eq!(pushed, vec![peers[3], peers[5]]);

        // Two hops from the publisher: every carrier but the sender.
        let mut b = carriers(topic, &peers);
        let (id, m) = msg(1);
        b.on_gossip_verified(t0, peers[5], topic, id, 2, m);
        let (pushed, told) = pushes_and_ihaves(&mut b, t0);
        assert_eq!(pushed, peers[..5].to_vec());
        assert!(told.is_empty());
    }

    /// Two carriers of `topic` after message 1 came from `eager` and its duplicate from
    /// `lazy`, which it made lazy; output drained. Returns the time of message 1.
    fn eager_and_lazy(topic: TopicId, eager: MachineId, lazy: MachineId) -> (Broadcast, Time) {
        let mut b = carriers(topic, &[eager, lazy]);
        let t0 = Time::from_millis(1_000_000);
        let (id, m) = msg(1);
        b.on_gossip_verified(t0, eager, topic, id, 1, m);
        b.on_duplicate(t0, lazy, topic, &id);
        assert!(is_eager(&b, topic, eager) && !is_eager(&b, topic, lazy));
        while b.poll_out().is_some() {}
        (b, t0)
    }

    /// A GRAFT went out, then the eager copy came late: the late sender is pruned and the
    /// grafted peer's answer, a duplicate by then, does not prune it; it is the parent now.
    #[test]
    fn a_late_eager_copy_loses_its_link_to_the_grafted_peer() {
        let topic = TopicId::from_name("t");
        let slow = MachineId::from_bytes([1; 32]);
        let fast = MachineId::from_bytes([2; 32]);
        let (mut b, t0) = eager_and_lazy(topic, slow, fast);

        // Message 2: `fast` announces it, the GRAFT goes out (after the prune grace, so it
        // re-grafts), and only then the eager copy from `slow` comes.
        let t1 = t0 + Duration::from_secs(5);
        let (id, m) = msg(2);
        b.on_ihave(t1, fast, topic, &[IHaveEntry { id, hops: 2 }]);
        let t2 = t1 + b.config.graft_timeout;
        b.handle_timeout(t2);
        assert!(is_eager(&b, topic, fast), "grafted");
        while b.poll_out().is_some() {}
        b.on_gossip_verified(t2 + Duration::from_millis(5), slow, topic, id, 2, m);
        let out: Vec<Out> = std::iter::from_fn(|| b.poll_out()).collect();
        assert!(
            out.iter()
                .any(|o| matches!(o, Out::Send(to, Frame::Prune(_)) if *to == slow)),
            "the late sender is pruned"
        );
        assert!(!is_eager(&b, topic, slow));
        // The GRAFT's answer is a duplicate now, and keeps its link.
        b.on_duplicate(t2 + Duration::from_millis(20), fast, topic, &id);
        assert!(
            !std::iter::from_fn(|| b.poll_out())
                .any(|o| matches!(o, Out::Send(_, Frame::Prune(_)))),
            "no PRUNE to the grafted peer"
        );
        assert!(is_eager(&b, topic, fast));
        // Any other duplicate from it still prunes.
        b.on_duplicate(t2 + Duration::from_millis(30), fast, topic, &id);
        assert!(!is_eager(&b, topic, fast));
    }

    /// An IHAVE that came before the message over a much shorter path makes its sender the
    /// parent (tree optimisation), even though the eager copy came within the graft grace.
    #[test]
    fn an_earlier_much_shorter_announcement_becomes_the_parent() {
        let topic = TopicId::from_name("t");
        let deep = MachineId::from_bytes([1; 32]);
        let near = MachineId::from_bytes([2; 32]);
        let (mut b, t0) = eager_and_lazy(topic, deep, near);

        let t1 = t0 + Duration::from_secs(5);
        let (id, m) = msg(2);
        b.on_ihave(t1, near, topic, &[IHaveEntry { id, hops: 2 }]);
        let gap = b.config.optimization_threshold + 3;
        b.on_gossip_verified(t1 + Duration::from_millis(10), deep, topic, id, gap, m);
        let out: Vec<Out> = std::iter::from_fn(|| b.poll_out()).collect();
        assert!(out.iter().any(
            |o| matches!(o, Out::Send(to, Frame::Graft(g)) if *to == near && g.ids.is_empty())
        ));
        assert!(
            out.iter()
                .any(|o| matches!(o, Out::Send(to, Frame::Prune(_)) if *to == deep))
        );
        assert!(is_eager(&b, topic, near) && !is_eager(&b, topic, deep));
        assert_eq!(b.stats.optimizations, 1);

        // The same on a topic's first message: the first push must not demote the new
        // parent, although it announced the message.
        let mut b = carriers(topic, &[deep, near]);
        let (id, m) = msg(3);
        b.on_ihave(t0, near, topic, &[IHaveEntry { id, hops: 2 }]);
        b.on_gossip_verified(t0 + Duration::from_millis(5), deep, topic, id, gap, m);
        assert!(is_eager(&b, topic, near), "the new parent stays eager");
        assert!(!is_eager(&b, topic, deep));
    }

    /// Two GRAFTs went out for one message and the first one's answer arrives first: that
    /// answer is not a late eager copy, so nobody is pruned for it.
    #[test]
    fn the_first_graft_answer_is_not_taken_for_a_late_copy() {
        let topic = TopicId::from_name("t");
        let (a1, a2, e) = (
            MachineId::from_bytes([1; 32]),
            MachineId::from_bytes([2; 32]),
            MachineId::from_bytes([3; 32]),
        );
        let mut b = carriers(topic, &[a1, a2, e]);
        let t0 = Time::from_millis(1_000_000);
        let (id, m) = msg(1);
        b.on_gossip_verified(t0, e, topic, id, 1, m);
        while b.poll_out().is_some() {}
        // Message 2 is announced by a1 and a2; GRAFTs go to a1, then (unanswered) to a2.
        let t1 = t0 + Duration::from_secs(5);
        let (id, m) = msg(2);
        b.on_ihave(t1, a1, topic, &[IHaveEntry { id, hops: 2 }]);
        b.on_ihave(t1, a2, topic, &[IHaveEntry { id, hops: 2 }]);
        let t2 = t1 + b.config.graft_timeout;
        b.handle_timeout(t2);
        b.handle_timeout(t2 + b.config.graft_retry);
        while b.poll_out().is_some() {}
        // a1's answer comes now.
        b.on_gossip_verified(t2 + b.config.graft_retry, a1, topic, id, 3, m);
        let pruned =
            std::iter::from_fn(|| b.poll_out()).any(|o| matches!(o, Out::Send(_, Frame::Prune(_))));
        assert!(!pruned, "no PRUNE for a GRAFT's own answer");
        assert!(is_eager(&b, topic, a1) && is_eager(&b, topic, a2));
    }

    // ----- the depth rule -----

    fn peers(n: u8) -> Vec<MachineId> {
        (1..=n).map(|i| MachineId::from_bytes([i; 32])).collect()
    }

    /// A node with the depth rule and `n` carriers of topic "t": (topic, carriers, node, t0).
    fn depth_node(n: u8) -> (TopicId, Vec<MachineId>, Broadcast, Time) {
        let topic = TopicId::from_name("t");
        let p = peers(n);
        let b = carriers_with(BroadcastConfig::default(), topic, &p);
        (topic, p, b, Time::from_millis(1_000_000))
    }

    /// The output up to the IHAVE flush after `now` (which carries place announcements).
    fn drain(b: &mut Broadcast, now: Time) -> Vec<Out> {
        b.handle_timeout(now + b.config.ihave_interval);
        std::iter::from_fn(|| b.poll_out()).collect()
    }

    fn attaches_to(out: &[Out], peer: MachineId) -> bool {
        out.iter()
            .any(|o| matches!(o, Out::Send(to, Frame::Graft(g)) if *to == peer && g.ids.is_empty()))
    }

    fn prunes(out: &[Out], peer: MachineId) -> bool {
        out.iter()
            .any(|o| matches!(o, Out::Send(to, Frame::Prune(_)) if *to == peer))
    }

    /// The place announced to the topic's peers (an IHAVE without ids), if any.
    fn announced_place(out: &[Out]) -> Option<(u32, u8)> {
        out.iter().find_map(|o| match o {
            Out::SendMany(_, Frame::IHave(i)) if i.entries.is_empty() => Some((i.root, i.depth)),
            _ => None,
        })
    }

    /// A node hangs from the sender of its first copy, then from any neighbour that offers a
    /// place at least one level closer to the root, or under a smaller root; each move
    /// attaches to the new parent, prunes the old one and announces the new place.
    #[test]
    fn a_node_hangs_from_the_shallowest_neighbour() {
        let (topic, p, mut b, t0) = depth_node(3);

        b.on_depth(t0, p[0], topic, 7, 3, true);
        let out = drain(&mut b, t0);
        assert!(attaches_to(&out, p[0]));
        assert_eq!(announced_place(&out), Some((7, 4)));

        // p[1] is one level above p[0]: not enough to move (the same place).
        b.on_depth(t0, p[1], topic, 7, 3, false);
        assert!(drain(&mut b, t0).is_empty(), "the same place: no move");

        // p[2] is two levels above: move.
        b.on_depth(t0, p[2], topic, 7, 1, false);
        let out = drain(&mut b, t0);
        assert!(attaches_to(&out, p[2]) && prunes(&out, p[0]));
        assert_eq!(announced_place(&out), Some((7, 2)));
        assert!(is_eager(&b, topic, p[2]) && !is_eager(&b, topic, p[0]));

        // A smaller root wins even from deeper down.
        b.on_depth(t0, p[1], topic, 3, 9, false);
        let out = drain(&mut b, t0);
        assert!(attaches_to(&out, p[1]) && prunes(&out, p[2]));
        assert_eq!(announced_place(&out), Some((3, 10)));
        // A larger one does not.
        b.on_depth(t0, p[0], topic, 9, 0, false);
        assert!(drain(&mut b, t0).is_empty());
        assert_eq!(b.stats.reparents, 2);

        // The parent's moves carry this node along, up or down.
        b.on_depth(t0, p[1], topic, 3, 12, false);
        assert_eq!(announced_place(&drain(&mut b, t0)), Some((3, 13)));
        b.check_invariants().unwrap();
    }

    /// The first publisher roots the tree under its own tag; a root hearing of a smaller one
    /// hangs from it.
    #[test]
    fn a_root_yields_to_a_smaller_root() {
        let (topic, p, mut b, t0) = depth_node(2);
        b.set_me(PeerAddr {
            id: MachineId::from_bytes([0x80; 32]),
            addrs: Vec::new(),
        });
        let (_, m) = msg(1);
        b.publish(t0, topic, m);
        let pushed = drain(&mut b, t0).into_iter().find_map(|o| match o {
            Out::SendMany(_, Frame::Gossip(g)) => Some((g.root, g.depth)),
            _ => None,
        });
        assert_eq!(pushed, Some((0x8080_8080, 0)));

        b.on_depth(t0, p[0], topic, 0x9000_0000, 0, false);
        assert!(drain(&mut b, t0).is_empty(), "a larger root is ignored");
        b.on_depth(t0, p[1], topic, 0x1000_0000, 5, false);
        let out = drain(&mut b, t0);
        assert!(attaches_to(&out, p[1]));
        assert_eq!(announced_place(&out), Some((0x1000_0000, 6)));
    }

    /// A GRAFT's answer leaves the link lazy at both ends, and the copy it brings goes down
    /// the tree only: the parent, whose own copy is on its way, gets an IHAVE.
    #[test]
    fn a_pulled_copy_goes_down_the_tree_only() {
        let (topic, p, mut b, t0) = depth_node(3);
        let (parent, child, lazy) = (p[0], p[1], p[2]);
        let (id, m) = msg(1);
        b.on_depth(t0, parent, topic, 7, 3, true);
        b.on_gossip_verified(t0, parent, topic, id, 4, m);
        b.on_graft(t0, child, topic, &[]);
        b.on_duplicate(t0, lazy, topic, &id);
        assert!(!is_eager(&b, topic, lazy));
        drain(&mut b, t0);

        let t1 = t0 + Duration::from_secs(5);
        let (id, m) = msg(2);
        b.on_ihave(t1, lazy, topic, &[IHaveEntry { id, hops: 2 }]);
        let t2 = t1 + b.config.graft_timeout;
        b.handle_timeout(t2);
        assert!(!is_eager(&b, topic, lazy), "a GRAFT for ids only pulls");
        drain(&mut b, t2);
        b.on_depth(t2, lazy, topic, 7, 5, true);
        b.on_gossip_verified(t2, lazy, topic, id, 3, m);
        assert!(
            !is_eager(&b, topic, lazy),
            "its answer does not graft either"
        );
        let (pushed, told) = pushes_and_ihaves(&mut b, t2);
        assert_eq!(pushed, vec![child]);
        assert_eq!(told, vec![parent]);

        // The other end: a GRAFT for ids is answered, and the link stays lazy.
        b.on_graft(t2, lazy, topic, &[id]);
        assert!(!is_eager(&b, topic, lazy));
        b.check_invariants().unwrap();
    }

    /// A duplicate over a tree link never prunes it; the first copy's link, outside the tree,
    /// goes instead. A first copy pushed over a link outside the tree prunes that link.
    #[test]
    fn duplicates_keep_the_tree_links() {
        let (topic, p, mut b, t0) = depth_node(3);
        let (parent, child, other) = (p[0], p[1], p[2]);
        b.on_depth(t0, parent, topic, 7, 3, true);
        b.on_graft(t0, child, topic, &[]);
        drain(&mut b, t0);

        // Message 1 comes from the child first (its publisher is below), then from the
        // parent: both are tree links, nobody is pruned.
        let (id, m) = msg(1);
        b.on_gossip_verified(t0, child, topic, id, 1, m);
        b.on_duplicate(t0, parent, topic, &id);
        assert!(
            !drain(&mut b, t0)
                .iter()
                .any(|o| matches!(o, Out::Send(_, Frame::Prune(_))))
        );
        assert!(is_eager(&b, topic, parent) && is_eager(&b, topic, child));

        // Message 2 is pushed by `other`, eager but outside the tree: pruned at once.
        let (id, m) = msg(2);
        let t1 = t0 + Duration::from_secs(5);
        b.on_depth(t1, other, topic, 7, 6, true);
        b.on_gossip_verified(t1, other, topic, id, 7, m);
        assert!(prunes(&drain(&mut b, t1), other));
        assert!(!is_eager(&b, topic, other));
        b.check_invariants().unwrap();
    }

    /// A PRUNE from the new parent right after attaching predates the GRAFT: attach again.
    /// A later one drops parent and place, without announcing it. A GRAFT from one's own
    /// parent (each attached to the other) makes this end let go and PRUNE.
    #[test]
    fn prunes_from_the_parent() {
        let (topic, p, mut b, t0) = depth_node(2);
        b.on_depth(t0, p[0], topic, 7, 3, true);
        drain(&mut b, t0);

        b.on_prune(t0 + Duration::from_millis(60), p[0], topic);
        assert!(attaches_to(&drain(&mut b, t0), p[0]), "attached again");
        assert!(is_eager(&b, topic, p[0]));

        let t1 = t0 + b.config.prune_grace + Duration::from_millis(1);
        b.on_prune(t1, p[0], topic);
        b.handle_timeout(t1 + b.config.ihave_interval);
        assert!(drain(&mut b, t1).is_empty(), "no GRAFT, no announcement");
        assert!(!is_eager(&b, topic, p[0]));
        // Placeless: the next offer, even a deep one, is taken.
        b.on_depth(t1, p[1], topic, 7, 20, false);
        assert!(attaches_to(&drain(&mut b, t1), p[1]));

        // p[1], our parent, attaches to us.
        b.on_graft(t1, p[1], topic, &[]);
        assert!(prunes(&drain(&mut b, t1), p[1]));
        assert!(!is_eager(&b, topic, p[1]));
        b.check_invariants().unwrap();
    }
}
