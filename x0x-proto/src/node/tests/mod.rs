//! Whole nodes: connections, the overlay, pub/sub, discovery, direct messages.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::announce::{AnnounceError, RejectReason};
use crate::broadcast::PubSubBody;
use crate::direct::{DirectFailure, DirectMessage, DirectReceipt};
use crate::identity::{AgentCertificate, AgentKeypair, Domain, UserKeypair};
use crate::membership::DownReason;
use crate::wire::{DecodeError, Frame, FrameKind, Hello, MessageId, Ping, RecordKind};

mod collab;
mod direct;
mod discovery;
mod membership;
mod nat;
mod presence;
mod pubsub;
mod rejoin;
mod testnet;
mod trust;

fn node(seed: u8, config: Config) -> Node {
    Node::new(Identity::from_seed([seed; 32]), config, [seed; 32]).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn t(ms: u64) -> Time {
    Time::from_millis(1_700_000_000_000 + ms)
}

fn drain_transmits(n: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| n.poll_transmit()).collect()
}

fn drain_actions(n: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

fn drain_events(n: &mut Node) -> Vec<Event> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

/// Connects two nodes and pumps frames between them until both are quiet.
fn connect(a: &mut Node, b: &mut Node, now: Time) {
    let (ida, idb) = (a.machine_id(), b.machine_id());
    a.handle_connected(now, idb, addr(2), Direction::Outbound);
    b.handle_connected(now, ida, addr(1), Direction::Inbound);
    pump(a, b, now);
}

/// A config whose membership keeps non-neighbour connections (tests that connect nodes by
/// hand, outside the membership protocol, which would otherwise close them after its linger).
fn keep() -> Config {
    let mut c = Config::default();
    c.membership.linger = Duration::from_secs(3600);
    c
}

/// Delivers every queued frame among `nodes` by destination until all are quiet; returns the
/// actions they asked for, by node.
fn pump_all(nodes: &mut [Node], now: Time) -> Vec<Vec<Action>> {
    let mut actions = vec![Vec::new(); nodes.len()];
    for _ in 0..100 {
        let mut any = false;
        for k in 0..nodes.len() {
            let from = nodes[k].machine_id();
            actions[k].extend(drain_actions(&mut nodes[k]));
            for tx in drain_transmits(&mut nodes[k]) {
                any = true;
                if let Some(to) = nodes.iter_mut().find(|n| n.machine_id() == tx.to) {
                    let _ = to.handle_frame(now, from, &tx.frame);
                }
            }
        }
        if !any {
            return actions;
        }
    }
    panic!("nodes did not go quiet");
}

fn pump(a: &mut Node, b: &mut Node, now: Time) {
    for _ in 0..100 {
        let ta = drain_transmits(a);
        let tb = drain_transmits(b);
        if ta.is_empty() && tb.is_empty() {
            return;
        }
        for tx in ta {
            assert_eq!(tx.to, b.machine_id());
            b.handle_frame(now, a.machine_id(), &tx.frame).unwrap();
        }
        for tx in tb {
            assert_eq!(tx.to, a.machine_id());
            a.handle_frame(now, b.machine_id(), &tx.frame).unwrap();
        }
    }
    panic!("nodes did not go quiet");
}

#[test]
fn config_is_validated() {
    let bad = Config {
        max_connections: 0,
        ..Config::default()
    };
    assert_eq!(
        Node::new(Identity::from_seed([1; 32]), bad, [0; 32]).unwrap_err(),
        ConfigError::Zero("max_connections")
    );
}

#[test]
fn start_dials_bootstrap_once_and_arms_a_timer() {
    let mut n = node(
        1,
        Config {
            bootstrap: vec![addr(9), addr(10)],
            ..Config::default()
        },
    );
    assert_eq!(n.poll_timeout(), None);
    n.start(t(0));
    n.start(t(1));
    assert_eq!(
        drain_actions(&mut n),
        vec![
            Action::Dial {
                addr: addr(9),
                expect: None
            },
            Action::Dial {
                addr: addr(10),
                expect: None
            }
        ]
    );
    let next = n.poll_timeout().expect("timers armed");
    assert!(next > t(0) && next <= t(0) + Config::default().keepalive_interval);
}

#[test]
fn hello_exchange_brings_peers_up_and_disconnect_down() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    // The Hello brings the peer up; its beacon, sent at once, brings its agent online.
    assert_eq!(
        drain_events(&mut a),
        vec![
            Event::PeerUp {
                peer: b.machine_id(),
                agent: b.agent_id()
            },
            Event::AgentOnline {
                agent_id: b.agent_id(),
                machine_id: b.machine_id(),
                addresses: vec![],
                reachable: true,
            }
        ]
    );
    assert_eq!(a.connected_peers(), vec![b.machine_id()]);
    assert_eq!(b.connected_peers(), vec![a.machine_id()]);
    a.handle_disconnected(t(1), b.machine_id());
    assert_eq!(
        drain_events(&mut a),
        vec![Event::PeerDown {
            peer: b.machine_id()
        }]
    );
    assert!(a.connected_peers().is_empty());
}

#[test]
fn garbage_closes_the_connection_with_a_counted_reason() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    drain_actions(&mut a);
    let err = a
        .handle_frame(
            t(1),
            b.machine_id(),
            &Bytes::from_static(&[1, 0x10, 0xff, 0xff]),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        FrameError::Decode(DecodeError::Malformed { .. })
    ));
    assert!(matches!(
        drain_actions(&mut a).as_slice(),
        [Action::Close {
            reason: CloseReason::BadFrames(_),
            ..
        }]
    ));
    assert_eq!(a.stats().frames_rejected.malformed, 1);
    assert_eq!(a.stats().closes.bad_frames, 1);
    // Further frames from the closing connection are ignored, not re-closed.
    let _ = a.handle_frame(t(2), b.machine_id(), &Bytes::from_static(&[0xff]));
    assert!(drain_actions(&mut a).is_empty());
}

#[test]
fn unknown_kinds_are_skipped_not_fatal() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    drain_actions(&mut a);
    assert_eq!(
        a.handle_frame(
            t(1),
            b.machine_id(),
            &Bytes::from_static(&[1, 0xee, 1, 2, 3])
        ),
        Err(FrameError::Decode(DecodeError::UnknownKind(0xee)))
    );
    assert!(drain_actions(&mut a).is_empty());
    assert_eq!(a.stats().frames_unknown_kind, 1);
}

#[test]
fn frames_before_hello_and_double_hello_are_violations() {
    let mut a = node(1, Config::default());
    let b = node(2, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    let ping = Frame::Ping(Ping { seq: 1 }).encode().unwrap();
    assert_eq!(
        a.handle_frame(t(0), b.machine_id(), &ping),
        Err(FrameError::Violation("frame before hello"))
    );
    let mut c = node(3, Config::default());
    let d = node(4, Config::default());
    c.handle_connected(t(0), d.machine_id(), addr(4), Direction::Inbound);
    let hello = Frame::Hello(Hello {
        agent: d.agent_id(),
        addrs: vec![],
    })
    .encode()
    .unwrap();
    c.handle_frame(t(0), d.machine_id(), &hello).unwrap();
    assert_eq!(
        c.handle_frame(t(0), d.machine_id(), &hello),
        Err(FrameError::Violation("second hello"))
    );
}

#[test]
fn silent_connection_is_closed_at_the_hello_deadline() {
    let mut a = node(1, Config::default());
    let b = node(2, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    let deadline = t(0) + Config::default().hello_timeout;
    a.handle_timeout(t(0) + (Config::default().hello_timeout - Duration::from_millis(1)));
    assert!(drain_actions(&mut a).is_empty());
    a.handle_timeout(deadline);
    assert_eq!(
        drain_actions(&mut a),
        vec![Action::Close {
            peer: b.machine_id(),
            reason: CloseReason::HelloTimeout
        }]
    );
}

#[test]
fn connection_cap_and_duplicates_are_refused() {
    let mut a = node(
        1,
        Config {
            max_connections: 1,
            ..Config::default()
        },
    );
    let b = node(2, Config::default());
    let c = node(3, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    a.handle_connected(t(0), c.machine_id(), addr(3), Direction::Inbound);
    assert_eq!(
        drain_actions(&mut a),
        vec![Action::Close {
            peer: c.machine_id(),
            reason: CloseReason::TooManyConnections
        }]
    );
    assert_eq!(a.stats().duplicate_connections, 1);
    // The first connection is still tracked.
    let kinds: Vec<_> = drain_transmits(&mut a).iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        vec![FrameKind::Hello, FrameKind::Observed],
        "one Hello (and where b is seen) to b"
    );
}

#[test]
fn idle_peers_are_pinged_and_answer() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    let ka = Config::default().keepalive_interval;
    a.handle_timeout(t(0) + ka);
    let tx: Vec<_> = drain_transmits(&mut a)
        .into_iter()
        .filter(|t| t.kind == FrameKind::Ping)
        .collect();
    assert_eq!(tx.len(), 1);
    b.handle_frame(t(0) + ka, a.machine_id(), &tx[0].frame)
        .unwrap();
    let back = drain_transmits(&mut b);
    assert_eq!(back[0].kind, FrameKind::Ack);
}

#[test]
fn transmit_queue_is_bounded_and_counts_drops() {
    let mut a = node(
        1,
        Config {
            max_queued_transmits: 1,
            ..Config::default()
        },
    );
    let b = node(2, Config::default());
    let c = node(3, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    a.handle_connected(t(0), c.machine_id(), addr(3), Direction::Inbound);
    // A Hello and an Observed to each: one fits, three are dropped and counted.
    assert_eq!(drain_transmits(&mut a).len(), 1);
    assert_eq!(a.stats().transmits_dropped, 3);
}

#[test]
fn frames_from_unknown_peers_are_counted() {
    let mut a = node(1, Config::default());
    let b = node(2, Config::default());
    assert_eq!(
        a.handle_frame(t(0), b.machine_id(), &Bytes::from_static(&[1, 1])),
        Err(FrameError::UnknownPeer(b.machine_id()))
    );
    assert_eq!(a.stats().frames_from_unknown_peer, 1);
}

#[test]
fn same_inputs_same_outputs() {
    let run = || {
        let mut a = node(1, Config::default());
        let mut b = node(2, Config::default());
        connect(&mut a, &mut b, t(0));
        a.handle_timeout(t(60_000));
        drain_transmits(&mut a)
    };
    assert_eq!(run(), run());
}

#[test]
fn shutdown_closes_everything_and_stops_timers() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    drain_actions(&mut a);
    a.shutdown(t(1));
    assert_eq!(
        drain_actions(&mut a),
        vec![Action::Close {
            peer: b.machine_id(),
            reason: CloseReason::Shutdown
        }]
    );
    assert_eq!(a.poll_timeout(), None);
}

fn topic() -> TopicId {
    TopicId::from_name("test")
}

fn subscribed_net(n: usize) -> testnet::Net {
    subscribed_net_with(n, Config::default)
}

fn subscribed_net_with(n: usize, config: impl Fn() -> Config) -> testnet::Net {
    let mut net = testnet::Net::new(n, |_| config());
    net.run_for(Duration::from_millis(10));
    for i in 0..n {
        net.with(i, |node, now| node.subscribe(now, topic()));
    }
    net.run_for(Duration::from_secs(30));
    net
}

fn fast_announce() -> Config {
    let mut c = Config::default();
    c.announce.heartbeat_interval = Duration::from_secs(5);
    c.announce.identity_ttl = Duration::from_secs(20);
    c
}

fn announced_net(n: usize, config: impl Fn(usize) -> Config) -> testnet::Net {
    let mut net = testnet::Net::new(n, config);
    net.run_for(Duration::from_millis(100));
    for i in 0..n {
        net.with(i, |node, now| {
            node.announce_identity(now, false, false).unwrap()
        });
    }
    net
}
