//! The depth rule: one tree per topic, every node hanging from a neighbour nearest the root.
//!
//! The paper's tree keeps, at every node, the link the first copy of each message came over.
//! That tree is fast for the publisher whose messages built it, but its paths between two
//! other nodes are up to twice its depth, and every message from elsewhere reshapes it. Here a
//! node keeps a *place* per topic, (root, depth), and a parent:
//! * The first publisher without a place roots the tree under its tag (the first four bytes of
//!   its `MachineId`). Every GOSSIP and IHAVE carries the sender's place.
//! * A node takes the place below a neighbour when it is better than its own: a smaller root,
//!   or the same root at least one level closer to it. As in a bridged LAN's spanning tree
//!   (IEEE 802.1D), the smallest root wins and every node hangs from a neighbour nearest to
//!   it, so the tree is a breadth-first tree of the overlay: its paths between any two nodes
//!   are at most twice the root's eccentricity.
//! * Moving sends a GRAFT without ids to the new parent, which counts the node as a child, and
//!   a PRUNE to the old one. A node never moves below one of its children. A changed place is
//!   announced to the topic's peers by an IHAVE without ids at the next IHAVE flush (at most
//!   one per topic per `ihave_interval`), so the tree settles within a round and a neighbour
//!   that keeps changing its place cannot make the tree below it flood.
//! * A node whose parent loses its place (or leaves) loses its own, and says so; it keeps the
//!   link, follows the parent back to a place, or moves to the first neighbour that offers
//!   one. A node its parent prunes drops parent and place without a word: its children keep
//!   their places and follow its next one. A PRUNE that comes within `prune_grace` of
//!   attaching was most likely sent before the attaching GRAFT arrived (for a copy pushed just
//!   before the move): the node attaches again. Two nodes that each attached to the other let
//!   go of each other.
//! * A duplicate never prunes a tree link (parent or child); the link its first copy came over
//!   goes instead, if that is outside the tree. A message pushed over a link outside the tree
//!   prunes that link at once.
//! * A GRAFT for ids only pulls them: neither end makes the link eager. The pulled copy goes
//!   down the tree; the parent, whose own copy is most likely on its way, gets an IHAVE. A new
//!   carrier of a topic that has a tree starts lazy.

use std::collections::VecDeque;

use super::plumtree::{prune_link, send_graft};
use super::stats::BroadcastStats;
use super::topic::TopicState;
use super::{Broadcast, Out};
use crate::identity::MachineId;
use crate::time::Time;
use crate::util::small_set::SmallSet;
use crate::wire::{self, Frame, TopicId};

/// A node's part in a topic's tree.
#[derive(Debug)]
pub(super) struct Tree {
    /// This node's distance from the root of the topic's tree, if it has a place in it.
    depth: Option<u8>,
    /// The root's tag ([`wire::IHave::root`]), when `depth` is set.
    root: u32,
    /// The neighbour one level closer to the root.
    parent: Option<MachineId>,
    /// Neighbours that hang from this node (they sent an attaching GRAFT).
    pub(super) children: SmallSet<MachineId>,
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
        children: SmallSet::new(),
        place_changed: false,
        attached_until: None,
    };
}

/// The tree of a topic without one.
static NO_TREE: Tree = Tree::EMPTY;

impl TopicState {
    /// The topic's tree, read only (empty if none was made).
    pub(super) fn tree(&self) -> &Tree {
        self.tree.as_deref().unwrap_or(&NO_TREE)
    }

    /// The topic's tree, made on first use.
    fn tree_mut(&mut self) -> &mut Tree {
        self.tree.get_or_insert_with(|| Box::new(Tree::EMPTY))
    }

    /// The depth this node advertises.
    pub(super) fn wire_depth(&self) -> u8 {
        self.tree().depth.unwrap_or(wire::NO_DEPTH)
    }

    /// The root this node advertises.
    pub(super) fn wire_root(&self) -> u32 {
        self.place().map_or(0, |(root, _)| root)
    }

    /// This node's place: (root, depth).
    pub(super) fn place(&self) -> Option<(u32, u8)> {
        let t = self.tree();
        t.depth.map(|d| (t.root, d))
    }

    pub(super) fn parent(&self) -> Option<MachineId> {
        self.tree().parent
    }

    pub(super) fn is_child(&self, peer: &MachineId) -> bool {
        self.tree().children.contains(peer)
    }

    pub(super) fn remove_child(&mut self, peer: &MachineId) -> bool {
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
    pub(super) fn lose_parent(&mut self) {
        if let Some(t) = self.tree.as_mut() {
            t.parent = None;
        }
        self.set_place(None);
    }

    /// Whether `peer` is this node's parent or child in the tree.
    pub(super) fn is_tree_link(&self, peer: &MachineId) -> bool {
        self.parent().as_ref() == Some(peer) || self.is_child(peer)
    }
}

/// Sends `parent` a GRAFT without ids: this node hangs below it in `topic`'s tree, and the
/// parent counts it as a child.
fn send_attach(
    out: &mut VecDeque<Out>,
    stats: &mut BroadcastStats,
    topic: TopicId,
    parent: MachineId,
) {
    send_graft(out, stats, topic, parent, Vec::new());
}

impl Broadcast {
    /// The first publisher without a place in `topic`'s tree roots it.
    pub(super) fn root_tree(&mut self, topic: TopicId) {
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        if t.place().is_some() {
            return;
        }
        let tag = self.me.as_ref().map_or(0, |me| {
            let b = me.id.as_bytes();
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        });
        t.set_place(Some((tag, 0)));
        t.tree_mut().parent = None;
        self.places_changed = true;
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
        if !self.is_topic_peer(&topic, &from) {
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

    /// An attaching GRAFT (no ids) from `from`: it hangs from this node now, unless it is our
    /// parent. Then each took the other's place as it was before the other moved; neither
    /// link can be a tree link, and both ends let go and find new places.
    pub(super) fn on_attach(&mut self, now: Time, from: MachineId, topic: TopicId) {
        let grace = self.config.prune_grace;
        let Some(t) = self.topics.get_mut(&topic) else {
            return;
        };
        t.lazy.remove(&from);
        t.eager.insert(from);
        if t.parent() == Some(from) {
            t.lose_parent();
            prune_link(t, &mut self.out, &mut self.stats, topic, from, now + grace);
            self.places_changed = true;
            self.arm_flush(now);
            return;
        }
        t.pruned.remove(&from);
        t.tree_mut().children.insert(from);
    }

    /// A PRUNE from `from`, as the tree sees it: from the parent right after attaching it
    /// predates the attaching GRAFT (attach again, and the PRUNE is done); from the parent
    /// later, it drops parent and place quietly. Returns whether the PRUNE still applies.
    pub(super) fn tree_on_prune(&mut self, now: Time, from: MachineId, topic: TopicId) -> bool {
        let Some(t) = self.topics.get_mut(&topic) else {
            return false;
        };
        if t.parent() == Some(from) {
            if t.tree().attached_until.is_some_and(|until| now < until) {
                // Most likely sent before our attaching GRAFT reached it, for a copy we
                // pushed before moving. Attach again, so both ends agree either way.
                send_attach(&mut self.out, &mut self.stats, topic, from);
                return false;
            }
            t.drop_parent_quietly();
        }
        t.remove_child(&from);
        true
    }

    /// This node's place in `topic`'s tree as GOSSIP and IHAVE carry it.
    pub(super) fn wire_place(&self, topic: &TopicId) -> (u32, u8) {
        self.topics
            .get(topic)
            .map_or((0, wire::NO_DEPTH), |t| (t.wire_root(), t.wire_depth()))
    }

    /// Announces changed places, one IHAVE without ids per topic to all its peers: at most one
    /// per topic per flush interval, however often the place moved (a hostile neighbour
    /// changing its own place on every frame cannot make the tree below it flood).
    pub(super) fn announce_places(&mut self) {
        if !std::mem::take(&mut self.places_changed) {
            return;
        }
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
}
