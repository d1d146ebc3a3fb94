//! NAT traversal through whole nodes: address discovery and a punch coordinated by a common
//! peer.

use super::*;
use crate::node::ConnectStart;

#[test]
fn a_nated_node_learns_its_public_address_and_a_common_peer_coordinates_a_punch() {
    // a and c sit behind NATs; s sees them at their public mappings.
    let (a_pub, c_pub): (SocketAddr, SocketAddr) = (
        "198.51.100.1:40001".parse().unwrap(),
        "198.51.100.3:40003".parse().unwrap(),
    );
    let mut nodes = vec![
        node(1, Config::default()),
        node(2, Config::default()),
        node(3, Config::default()),
    ];
    let ids: Vec<MachineId> = nodes.iter().map(Node::machine_id).collect();
    // a and c dial s; s sees them at their public addresses.
    for (x, seen) in [(0, a_pub), (2, c_pub)] {
        nodes[x].handle_connected(t(0), ids[1], addr(2), Direction::Outbound);
        nodes[1].handle_connected(t(0), ids[x], seen, Direction::Inbound);
    }
    let _ = pump_all(&mut nodes, t(0));
    // Each dialled s, so s's report counts.
    assert_eq!(nodes[0].told_addrs(), vec![a_pub]);
    assert_eq!(nodes[2].told_addrs(), vec![c_pub]);
    // s dialled nobody, but its two peers agree on where it is.
    assert_eq!(nodes[1].told_addrs(), vec![addr(2)]);

    // a learns c from its card, which lists c's public address.
    let card = nodes[2].agent_card(t(1));
    nodes[0].import_agent_card(t(1), &card).unwrap();
    let c_agent = nodes[2].agent_id();
    assert_eq!(
        nodes[0].connect_agent(t(2), &c_agent),
        ConnectStart::Dialing {
            machine: ids[2],
            addr: c_pub
        }
    );
    let actions = pump_all(&mut nodes, t(2));
    assert!(actions[0].contains(&Action::Dial {
        addr: c_pub,
        expect: Some(ids[2])
    }));
    // c dials back a's public address, told by s.
    assert!(
        actions[2].contains(&Action::Dial {
            addr: a_pub,
            expect: Some(ids[0])
        }),
        "{:?}",
        actions[2]
    );
    let (sa, ss, sc) = (
        nodes[0].stats().nat,
        nodes[1].stats().nat,
        nodes[2].stats().nat,
    );
    assert_eq!(sa.punch_requests_sent, 1, "s is a's only other peer");
    assert_eq!(ss.punch_forwarded, 1);
    assert_eq!(sc.punch_dials, 1);

    // Asking again at once is over the pair's limit; nothing is sent.
    let _ = nodes[0].connect_agent(t(3), &c_agent);
    let _ = pump_all(&mut nodes, t(3));
    assert_eq!(nodes[0].stats().nat.punch_requests_sent, 1);
    for n in &nodes {
        n.check_invariants().unwrap();
    }
}

#[test]
fn a_second_observation_and_a_punch_for_an_unconnected_target_are_refused() {
    let mut a = node(1, Config::default());
    let b = node(2, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    let hello: Frame = Hello {
        agent: b.agent_id(),
        addrs: vec![addr(2)],
    }
    .into();
    a.handle_frame(t(0), b.machine_id(), &hello.encode().unwrap())
        .unwrap();
    for port in [7, 8] {
        let o: Frame = wire::Observed {
            addr: SocketAddr::from(([203, 0, 113, 1], port)),
        }
        .into();
        a.handle_frame(t(0), b.machine_id(), &o.encode().unwrap())
            .unwrap();
    }
    let s = a.stats().nat;
    assert_eq!((s.observed, s.observed_refused), (1, 1));
    // One inbound reporter is not enough to announce an address.
    assert!(a.told_addrs().is_empty());
    let r: Frame = wire::PunchRequest {
        target: MachineId::from_bytes([9; 32]),
    }
    .into();
    a.handle_frame(t(0), b.machine_id(), &r.encode().unwrap())
        .unwrap();
    assert_eq!(a.stats().nat.punch_dropped, 1);
}
