//! The overlay through whole nodes: views, probes, failure detection, refills.

use super::*;

#[test]
fn overlay_forms_without_isolated_nodes_and_views_respect_caps() {
    let net = subscribed_net(60);
    let (components, isolated) = net.components();
    assert_eq!(components, 1);
    assert_eq!(isolated, 0);
    for node in net.nodes.iter().flatten() {
        node.membership.check_invariants().unwrap();
        // Active views are symmetric.
        for peer in node.active_view() {
            let j = net.ids.iter().position(|id| *id == peer).unwrap();
            assert!(
                net.nodes[j]
                    .as_ref()
                    .unwrap()
                    .active_view()
                    .contains(&node.machine_id()),
                "asymmetric link"
            );
        }
    }
}

/// SWIM's direct probes measure each neighbour's round trip for the broadcast layer, which
/// ranks the links of a topic's first push by it.
#[test]
fn probes_measure_the_round_trip_of_every_neighbour() {
    let net = subscribed_net(12);
    let mut measured = 0;
    for (i, node) in net.nodes.iter().enumerate() {
        let node = node.as_ref().unwrap();
        for peer in node.active_view() {
            let j = net.ids.iter().position(|id| *id == peer).unwrap();
            let rtt = node.broadcast.neighbor_rtt(&peer);
            // Neighbours of the last few seconds may not have been probed yet.
            if let Some(rtt) = rtt {
                assert_eq!(rtt, net.latency(i, j) * 2, "node {i}, neighbour {j}");
                measured += 1;
            }
        }
    }
    let links: usize = net
        .nodes
        .iter()
        .flatten()
        .map(|n| n.active_view().len())
        .sum();
    assert!(
        measured * 10 >= links * 9,
        "{measured} of {links} links measured"
    );
}

#[test]
fn crashed_neighbours_are_detected_and_delivery_continues() {
    let n = 40;
    let mut net = subscribed_net(n);
    for i in (5..n).step_by(5) {
        net.crash(i);
    }
    net.run_for(Duration::from_secs(10));
    let dead: u64 = net
        .nodes
        .iter()
        .flatten()
        .map(|x| x.stats().membership.neighbor_down.get(&DownReason::Dead))
        .sum();
    assert!(dead > 0, "SWIM declared crashed neighbours dead");
    let live = net.nodes.iter().flatten().count();
    let before = net.deliveries.len();
    net.with(0, |node, now| {
        node.publish(now, topic(), Bytes::from_static(b"after crash"))
            .unwrap();
    });
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.deliveries.len() - before, live - 1);
    let (components, isolated) = net.components();
    assert_eq!((components, isolated), (1, 0));
}

/// Every JOIN into a full active view evicts a neighbour into the passive view; a stream of
/// joiners (a Sybil flood through one node) must not push the passive view past its cap.
#[test]
fn joins_into_a_full_active_view_keep_the_passive_view_at_its_cap() {
    let mut n = node(1, Config::default());
    let cap = n.config().membership.passive_view_capacity;
    let joiners = 2 * cap;
    // Two seconds apart: within the join budget (8 per 10 s), so every JOIN is taken.
    for i in 0..joiners {
        let peer = MachineId::from_bytes([i as u8 + 100; 32]);
        let a = SocketAddr::from(([10, 1, 0, i as u8], 5483));
        n.handle_connected(t(i as u64 * 2_000), peer, a, Direction::Inbound);
        let hello: Frame = Hello {
            agent: AgentId::from_bytes([i as u8 + 100; 32]),
            addrs: vec![a],
        }
        .into();
        n.handle_frame(t(i as u64 * 2_000), peer, &hello.encode().unwrap())
            .unwrap();
        let join: Frame = wire::Join { addrs: vec![a] }.into();
        n.handle_frame(t(i as u64 * 2_000), peer, &join.encode().unwrap())
            .unwrap();
        n.check_invariants().unwrap();
        drain_transmits(&mut n);
        drain_actions(&mut n);
        drain_events(&mut n);
    }
    assert_eq!(
        n.active_view().len(),
        n.config().membership.active_view_capacity
    );
    assert!(
        n.passive_view_len() <= cap,
        "{} > {cap}",
        n.passive_view_len()
    );
    assert!(n.stats().membership.passive_evicted > 0);
}

/// A node with `active` neighbours (machine ids `[100; 32]`, `[101; 32]`, …), joined at t(1).
fn node_with_neighbours(active: u8) -> Node {
    let mut n = node(1, Config::default());
    n.start(t(0));
    for i in 100..100 + active {
        let a = SocketAddr::from(([10, 2, 0, i], 5483));
        let id = MachineId::from_bytes([i; 32]);
        n.handle_connected(t(1), id, a, Direction::Inbound);
        for f in [
            Frame::from(Hello {
                agent: AgentId::from_bytes([i; 32]),
                addrs: vec![a],
            }),
            wire::Join { addrs: vec![a] }.into(),
        ] {
            n.handle_frame(t(1), id, &f.encode().unwrap()).unwrap();
        }
    }
    assert_eq!(n.active_view().len(), usize::from(active));
    n
}

/// A node with `active` neighbours (through JOIN) and ten passive candidates (through a
/// SHUFFLE), then one maintenance tick: returns the node, the time, and the dialled addresses.
fn node_asking_for_neighbours(active: u8) -> (Node, Time, Vec<SocketAddr>) {
    let mut n = node_with_neighbours(active);
    let peer = |i: u8| MachineId::from_bytes([i; 32]);
    let peer_addr = |i: u8| SocketAddr::from(([10, 2, 0, i], 5483));
    let shuffle: Frame = wire::Shuffle {
        origin: wire::PeerAddr {
            id: peer(100),
            addrs: vec![peer_addr(100)],
        },
        peers: (10..20)
            .map(|i| wire::PeerAddr {
                id: peer(i),
                addrs: vec![peer_addr(i)],
            })
            .collect(),
        ttl: 0,
    }
    .into();
    n.handle_frame(t(2), peer(100), &shuffle.encode().unwrap())
        .unwrap();
    drain_transmits(&mut n);
    drain_events(&mut n);
    drain_actions(&mut n);
    // The maintenance tick asks passive candidates for the free slots.
    let now = n.poll_timeout().unwrap().max(t(1_000));
    n.handle_timeout(now);
    let dials = drain_actions(&mut n)
        .into_iter()
        .filter_map(|a| match a {
            Action::Dial { addr, .. } => Some(addr),
            _ => None,
        })
        .collect();
    (n, now, dials)
}

/// Connects the node to the candidate at `a`, and returns whether it sent that candidate a
/// NEIGHBOR request.
fn neighbor_requested(n: &mut Node, now: Time, a: SocketAddr) -> bool {
    let IpAddr::V4(v4) = a.ip() else {
        unreachable!()
    };
    let i = v4.octets()[3];
    let id = MachineId::from_bytes([i; 32]);
    n.handle_connected(now, id, a, Direction::Outbound);
    let hello: Frame = Hello {
        agent: AgentId::from_bytes([i; 32]),
        addrs: vec![a],
    }
    .into();
    n.handle_frame(now, id, &hello.encode().unwrap()).unwrap();
    drain_transmits(n)
        .iter()
        .any(|tx| tx.to == id && matches!(Frame::decode(&tx.frame), Ok(Frame::Neighbor(_))))
}

/// The paper retries a refused NEIGHBOR at once with another passive peer (§4.3). A view at
/// least half full waits instead (`refill_backoff_max`), so nodes one short of a full view do
/// not chain through their passive views; a thin view still retries at once.
#[test]
fn refused_neighbor_requests_back_off_unless_the_view_is_thin() {
    let refuse: Frame = wire::NeighborReply { accepted: false }.into();
    for (active, retries_at_once) in [(3u8, false), (1, true)] {
        let (mut n, now, dials) = node_asking_for_neighbours(active);
        assert_eq!(
            dials.len(),
            5 - usize::from(active),
            "one dial per free slot"
        );
        assert!(neighbor_requested(&mut n, now, dials[0]));
        let IpAddr::V4(v4) = dials[0].ip() else {
            unreachable!()
        };
        let asked = MachineId::from_bytes([v4.octets()[3]; 32]);
        n.handle_frame(now, asked, &refuse.encode().unwrap())
            .unwrap();
        assert_eq!(n.stats().membership.neighbor_refused, 1);
        let new_dials = drain_actions(&mut n)
            .iter()
            .filter(|a| matches!(a, Action::Dial { .. }))
            .count();
        assert_eq!(
            new_dials > 0,
            retries_at_once,
            "{active} active: retried at once = {}",
            new_dials > 0
        );
    }
}

/// The probe goes to the neighbour heard from least recently (a silent one, while the others
/// keep talking), and an unanswered probe makes it a suspect two probe timeouts later, with
/// an event: SWIM's detection, measured by the simulator's `first_suspicion_ms`.
#[test]
fn the_silent_neighbour_is_probed_and_suspected_within_the_period() {
    let mut n = node_with_neighbours(3);
    let (talkers, silent) = (
        [
            MachineId::from_bytes([100; 32]),
            MachineId::from_bytes([101; 32]),
        ],
        MachineId::from_bytes([102; 32]),
    );
    let cfg = n.config().membership.clone();
    drain_transmits(&mut n);
    drain_events(&mut n);
    let ping: Frame = Ping { seq: 7 }.into();
    let ping = ping.encode().unwrap();
    let mut first_probe = None;
    let mut suspected_at = None;
    // Until the suspicion: the silent neighbour is declared dead 3 s later and leaves the
    // view, after which only talkers are left to probe.
    while suspected_at.is_none() {
        let now = n.poll_timeout().unwrap();
        assert!(now < t(6_000), "no suspicion within 6 s");
        // The talkers are heard at every step; the silent neighbour never again.
        for p in talkers {
            n.handle_frame(now, p, &ping).unwrap();
        }
        n.handle_timeout(now);
        for tx in drain_transmits(&mut n) {
            if let Ok(Frame::Ping(_)) = Frame::decode(&tx.frame) {
                assert_eq!(
                    tx.to, silent,
                    "a neighbour that keeps talking needs no probe"
                );
                first_probe.get_or_insert(now);
            }
        }
        for e in drain_events(&mut n) {
            if e == (Event::NeighborSuspected { peer: silent }) {
                suspected_at.get_or_insert(now);
            }
        }
    }
    let probed = first_probe.expect("the silent neighbour was probed");
    assert!(
        probed <= t(1) + cfg.probe_interval,
        "first probe at the first period"
    );
    assert_eq!(
        suspected_at.expect("and suspected"),
        probed + cfg.probe_timeout * 2,
        "suspected when the indirect probes time out, not at the end of the period"
    );
}

/// A node whose whole active view falls silent at once (half the network crashed) suspects
/// every neighbour and asks its passive view for stand-ins within one probe timeout of the
/// first suspicion: the other neighbours are checked at once rather than one per period, and
/// a suspect's slot is refilled without waiting for its suspicion to run out.
#[test]
fn a_node_whose_whole_view_goes_silent_seeks_stand_ins_at_once() {
    let (mut n, _, dials) = node_asking_for_neighbours(5);
    assert!(dials.is_empty(), "a full view asks for nobody");
    let cfg = n.config().membership.clone();
    let mut suspected = Vec::new();
    let mut stand_ins = Vec::new();
    while stand_ins.len() < 5 {
        let now = n.poll_timeout().unwrap();
        assert!(now < t(10_000), "no stand-ins within 10 s: {stand_ins:?}");
        n.handle_timeout(now);
        drain_transmits(&mut n);
        for e in drain_events(&mut n) {
            if let Event::NeighborSuspected { peer } = e {
                suspected.push((now, peer));
            }
        }
        for a in drain_actions(&mut n) {
            if let Action::Dial { addr, .. } = a {
                stand_ins.push((now, addr));
            }
        }
    }
    let first = suspected.first().expect("a suspicion").0;
    assert_eq!(
        suspected.len(),
        5,
        "every neighbour suspected: {suspected:?}"
    );
    assert!(
        stand_ins
            .iter()
            .all(|(at, _)| *at <= first + cfg.probe_timeout),
        "stand-ins sought within a probe timeout of the first suspicion ({first:?}): {stand_ins:?}"
    );
    assert!(first + cfg.probe_timeout < first + cfg.suspect_timeout);
    // Each went to a passive candidate (10.2.0.10–19), not to a suspect.
    assert!(
        stand_ins
            .iter()
            .all(|(_, a)| matches!(a.ip(), IpAddr::V4(v) if (10..20).contains(&v.octets()[3])))
    );
}

/// A stream of JOINs (an eclipse attempt): the two neighbours longest in the view are never
/// evicted, and past the join budget further joins are refused and counted; the budget
/// comes back with the next window.
#[test]
fn a_stream_of_joins_neither_evicts_the_oldest_neighbours_nor_passes_the_budget() {
    let mut n = node_with_neighbours(5);
    let cfg = n.config().membership.clone();
    let join = |n: &mut Node, now: Time, i: u8| {
        let a = SocketAddr::from(([10, 3, 0, i], 5483));
        let id = MachineId::from_bytes([i; 32]);
        n.handle_connected(now, id, a, Direction::Inbound);
        for f in [
            Frame::from(Hello {
                agent: AgentId::from_bytes([i; 32]),
                addrs: vec![a],
            }),
            wire::Join { addrs: vec![a] }.into(),
        ] {
            n.handle_frame(now, id, &f.encode().unwrap()).unwrap();
        }
    };
    for i in 200..220 {
        join(&mut n, t(2), i);
    }
    // A refused joiner is told (DISCONNECT), so it asks again with a NEIGHBOR request rather
    // than keep a one-sided link.
    let refused = MachineId::from_bytes([219; 32]);
    assert!(
        drain_transmits(&mut n)
            .iter()
            .any(|tx| tx.to == refused
                && matches!(Frame::decode(&tx.frame), Ok(Frame::Disconnect(_))))
    );
    let view = n.active_view();
    for oldest in [100u8, 101] {
        assert!(
            view.contains(&MachineId::from_bytes([oldest; 32])),
            "protected neighbour {oldest} evicted: {view:?}"
        );
    }
    // Five joins at t(1) and three now fill the budget of the window; the other 17 are refused.
    let taken = 5 + 3;
    assert_eq!(taken, cfg.join_budget);
    assert_eq!(n.stats().membership.joins_refused, 17);
    let attackers = view.iter().filter(|p| p.as_bytes()[0] >= 200).count();
    assert!((1..=3).contains(&attackers), "{view:?}");
    // A neighbour that joins again costs nothing and is not refused.
    let old = MachineId::from_bytes([100; 32]);
    let rejoin: Frame = wire::Join {
        addrs: vec![SocketAddr::from(([10, 2, 0, 100], 5483))],
    }
    .into();
    n.handle_frame(t(3), old, &rejoin.encode().unwrap())
        .unwrap();
    assert!(
        !drain_transmits(&mut n)
            .iter()
            .any(|tx| tx.to == old && matches!(Frame::decode(&tx.frame), Ok(Frame::Disconnect(_))))
    );
    assert!(n.active_view().contains(&old));
    // The next window takes joins again.
    join(&mut n, t(1) + cfg.join_window, 230);
    assert!(n.active_view().contains(&MachineId::from_bytes([230; 32])));
    assert_eq!(n.stats().membership.joins_refused, 17);
}
