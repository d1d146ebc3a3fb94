//! The depth rule.

use super::*;

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
    b.on_gossip_verified(t0, t0, parent, topic, id, 4, m);
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
    b.on_gossip_verified(t2, t2, lazy, topic, id, 3, m);
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
    b.on_gossip_verified(t0, t0, child, topic, id, 1, m);
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
    b.on_gossip_verified(t1, t1, other, topic, id, 7, m);
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

/// A suspected parent is left at once: the node drops its place (and says so), keeps the
/// suspect as a lazy carrier, and attaches below the next carrier that announces a place,
/// even one deeper than the place it had.
#[test]
fn a_suspected_parent_is_left_before_it_is_declared_dead() {
    let (topic, p, mut b, t0) = depth_node(3);
    let (parent, other) = (p[0], p[1]);
    let (id, m) = msg(1);
    b.on_depth(t0, parent, topic, 7, 3, true);
    b.on_gossip_verified(t0, t0, parent, topic, id, 4, m);
    drain(&mut b, t0);
    assert_eq!(b.topics[&topic].parent(), Some(parent));
    b.parent_suspected(t0, parent);
    let out = drain(&mut b, t0);
    assert_eq!(b.topics[&topic].parent(), None);
    assert_eq!(
        announced_place(&out),
        Some((0, wire::NO_DEPTH)),
        "no place: {out:?}"
    );
    assert!(!is_eager(&b, topic, parent) && b.topics[&topic].lazy.contains(&parent));
    b.on_depth(t0, other, topic, 7, 5, false);
    assert!(attaches_to(&drain(&mut b, t0), other));
    b.check_invariants().unwrap();
}
