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
    assert_eq!(
        drain_events(&mut a),
        vec![Event::PeerUp {
            peer: b.machine_id(),
            agent: b.agent_id()
        }]
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
    assert_eq!(drain_transmits(&mut a).len(), 1, "one Hello to b");
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
    assert_eq!(drain_transmits(&mut a).len(), 1);
    assert_eq!(a.stats().transmits_dropped, 1);
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

mod direct;
mod testnet;

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

#[test]
fn broadcast_reaches_every_subscriber_once_and_tree_settles() {
    let n = 60;
    let mut net = subscribed_net(n);
    let mut payload_frames = Vec::new();
    for round in 0..12u8 {
        let before = net.deliveries.len();
        let gossip_before: u64 = net.sum(|x| x.stats().broadcast.gossip_received);
        let mut id = None;
        net.with(0, |node, now| {
            id = Some(
                node.publish(now, topic(), Bytes::from(vec![round; 100]))
                    .unwrap(),
            )
        });
        net.run_for(Duration::from_secs(2));
        let got: Vec<_> = net.deliveries[before..]
            .iter()
            .filter(|(_, d, _)| Some(d.id) == id)
            .collect();
        let mut who: Vec<usize> = got.iter().map(|(i, _, _)| *i).collect();
        who.sort();
        who.dedup();
        assert_eq!(
            got.len(),
            n - 1,
            "round {round}: every other node delivers exactly once"
        );
        assert_eq!(who.len(), n - 1);
        let gossip_after: u64 = net.sum(|x| x.stats().broadcast.gossip_received);
        payload_frames.push(gossip_after - gossip_before);
    }
    // Once the tree settled, a message crosses each tree edge once: n-1 payload frames. The
    // overlay still evolves (refills, shuffles), so a later round may pay a duplicate or two
    // for a new link, but the settled rounds average an RMR under 0.05.
    let settled = &payload_frames[6..];
    assert!(
        settled.contains(&((n - 1) as u64)),
        "frames per round {payload_frames:?}"
    );
    let mean = settled.iter().sum::<u64>() as f64 / settled.len() as f64;
    assert!(
        mean / (n - 1) as f64 - 1.0 <= 0.05,
        "frames per round {payload_frames:?}"
    );
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

/// A first push over one link per node leaves most links lazy at one end and eager at the
/// other, so a node may push to a peer that holds it in its *lazy* set; that peer must still
/// PRUNE it on a duplicate, or the duplicates never stop.
#[test]
fn duplicates_from_a_lazy_set_peer_are_pruned_too() {
    let n = 40;
    let mut net = subscribed_net_with(n, || {
        let mut c = Config::default();
        c.broadcast.first_push.flood_within = 0;
        c.broadcast.first_push.wide_within = 0;
        c.broadcast.first_push.fanout = 1;
        c
    });
    let mut dups = Vec::new();
    for round in 0..8u8 {
        let before: u64 = net.sum(|x| x.stats().broadcast.duplicates);
        net.with(0, |node, now| {
            node.publish(now, topic(), Bytes::from(vec![round; 10]))
                .unwrap();
        });
        net.run_for(Duration::from_secs(3));
        let after: u64 = net.sum(|x| x.stats().broadcast.duplicates);
        dups.push(after - before);
    }
    assert!(
        dups[4..].iter().all(|d| *d <= 1),
        "duplicates per round {dups:?}"
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

#[test]
fn a_batch_is_signed_once_and_every_message_delivered_once() {
    let n = 12;
    let mut net = subscribed_net(n);
    let before = net.deliveries.len();
    let mut results = Vec::new();
    let max = Config::default().max_payload_len;
    let mut items: Vec<(TopicId, Bytes)> = (0..20u8)
        .map(|i| (topic(), Bytes::from(vec![i; 100])))
        .collect();
    // One refused item in the middle does not stop the rest.
    items.insert(7, (topic(), Bytes::from(vec![0; max + 1])));
    net.with(0, |node, now| results = node.publish_batch(now, items));
    assert_eq!(results.len(), 21);
    assert_eq!(
        results[7],
        Err(PublishError::PayloadTooLarge { len: max + 1, max })
    );
    let ids: BTreeSet<MessageId> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(ids.len(), 20);
    net.run_for(Duration::from_secs(3));
    let publisher = net.nodes[0].as_ref().unwrap();
    assert_eq!(
        publisher.stats().publish_signatures,
        1,
        "one signature for 20"
    );
    for id in &ids {
        let got: BTreeSet<usize> = net.deliveries[before..]
            .iter()
            .filter(|(_, d, _)| d.id == *id)
            .map(|(i, _, _)| *i)
            .collect();
        assert_eq!(got.len(), n - 1, "every other node delivers each message");
    }
    assert_eq!(net.deliveries.len() - before, 20 * (n - 1), "exactly once");
    // Every receiver verified the signature once and folded hashes for the rest.
    for node in net.nodes.iter().flatten().skip(1) {
        assert!(
            node.stats().batch_root_hits >= 19,
            "{}",
            node.stats().batch_root_hits
        );
        node.check_invariants().unwrap();
    }
}

/// Runs two connected nodes from `from` to `to` (ms) in 500 ms steps, pumping frames.
fn run_pair(a: &mut Node, b: &mut Node, from: u64, to: u64) {
    let mut ms = from;
    while ms < to {
        ms += 500;
        a.handle_timeout(t(ms));
        b.handle_timeout(t(ms));
        pump(a, b, t(ms));
    }
}

fn deliveries(n: &mut Node) -> usize {
    drain_events(n)
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count()
}

#[test]
fn replays_after_the_dedup_window_and_future_stamps_are_refused() {
    let (mut a, mut b) = (node(1, Config::default()), node(2, Config::default()));
    a.start(t(0));
    b.start(t(0));
    connect(&mut a, &mut b, t(0));
    b.subscribe(t(0), topic());
    pump(&mut a, &mut b, t(0));
    drain_events(&mut b);
    // A genuine message of A's agent, as A would publish it at `at_ms`.
    let agent = Identity::from_seed([1; 32]).agent;
    let gossip = |at_ms: u64, nonce: u64| {
        let body = PubSubBody {
            topic: topic(),
            nonce,
            published_at_ms: t(at_ms).as_millis(),
            payload: Bytes::from_static(b"once"),
        };
        let frame: Frame = wire::Gossip {
            topic: topic(),
            hops: 1,
            root: 0,
            depth: wire::NO_DEPTH,
            message: wire::Signed::sign(&agent, Domain::PubSubMessage, &body, true),
        }
        .into();
        frame.encode().unwrap()
    };
    let original = gossip(1000, 1);
    b.handle_frame(t(1000), a.machine_id(), &original).unwrap();
    assert_eq!(deliveries(&mut b), 1);
    // Inside the window: a duplicate.
    b.handle_frame(t(2000), a.machine_id(), &original).unwrap();
    assert_eq!(deliveries(&mut b), 0);
    // Past the dedup window (120 s): refused for its age, not delivered again.
    run_pair(&mut a, &mut b, 2000, 130_000);
    // B closed the idle non-neighbour connection meanwhile (its driver would report the
    // close to both sides); A connects again.
    assert_eq!(b.stats().closes.not_needed, 1);
    a.handle_disconnected(t(130_000), b.machine_id());
    b.handle_disconnected(t(130_000), a.machine_id());
    connect(&mut a, &mut b, t(130_000));
    drain_events(&mut b);
    b.handle_frame(t(130_000), a.machine_id(), &original)
        .unwrap();
    assert_eq!(deliveries(&mut b), 0);
    assert_eq!(b.stats().messages_rejected.reason.stale, 1);
    // Stamped a minute ahead of the receiver's clock: refused.
    b.handle_frame(t(130_000), a.machine_id(), &gossip(190_000, 2))
        .unwrap();
    assert_eq!(deliveries(&mut b), 0);
    assert_eq!(b.stats().messages_rejected.reason.future_timestamp, 1);
}

#[test]
fn a_message_age_limit_that_outlives_the_dedup_window_is_refused() {
    let mut c = Config::default();
    c.broadcast.max_message_age = Duration::from_secs(100);
    assert!(matches!(
        Node::new(Identity::from_seed([1; 32]), c, [1; 32]),
        Err(ConfigError::Inconsistent(_))
    ));
}

#[test]
fn oversized_publish_is_refused_with_a_typed_error() {
    let mut a = node(1, Config::default());
    let max = Config::default().max_payload_len;
    assert_eq!(
        a.publish(t(0), topic(), Bytes::from(vec![0; max + 1])),
        Err(PublishError::PayloadTooLarge { len: max + 1, max })
    );
}

#[test]
fn same_bytes_twice_are_two_messages() {
    let mut a = node(1, Config::default());
    a.subscribe(t(0), topic());
    let x = a
        .publish(t(0), topic(), Bytes::from_static(b"same"))
        .unwrap();
    let y = a
        .publish(t(0), topic(), Bytes::from_static(b"same"))
        .unwrap();
    assert_ne!(x, y);
}

// ----- announcements and discovery -----

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

#[test]
fn every_agent_discovers_every_other_with_machine_keys() {
    let n = 30;
    let mut net = announced_net(n, |_| Config::default());
    net.run_for(Duration::from_secs(5));
    let now = net.now;
    let agents: Vec<AgentId> = net.nodes.iter().flatten().map(|x| x.agent_id()).collect();
    for node in net.nodes.iter().flatten() {
        let seen = node.discovered_agents(now);
        assert_eq!(seen.len(), n, "every agent (self included) is listed");
        let mut ids: Vec<AgentId> = seen.iter().map(|a| a.agent_id).collect();
        ids.sort();
        let mut want = agents.clone();
        want.sort();
        assert_eq!(ids, want);
        for a in &seen {
            assert!(
                a.machine_public_key.is_some(),
                "machine key of {}",
                a.agent_id
            );
            assert_eq!(a.addresses.len(), 1);
            assert!(a.user_id.is_none());
        }
    }
}

#[test]
fn identity_announcement_fits_in_6_kb() {
    let mut a = node(
        1,
        Config {
            listen_addrs: vec![addr(1)],
            ..Config::default()
        },
    );
    let b = node(2, Config::default());
    a.handle_connected(t(0), b.machine_id(), addr(2), Direction::Inbound);
    let hello = Frame::Hello(Hello {
        agent: b.agent_id(),
        addrs: vec![addr(2)],
    })
    .encode()
    .unwrap();
    a.handle_frame(t(0), b.machine_id(), &hello).unwrap();
    a.handle_frame(
        t(0),
        b.machine_id(),
        &Frame::Join(wire::Join {
            addrs: vec![addr(2)],
        })
        .encode()
        .unwrap(),
    )
    .unwrap();
    a.handle_frame(
        t(0),
        b.machine_id(),
        &Frame::Interest(wire::Interest {
            topics: vec![TopicId::from_name(crate::announce::ANNOUNCE_TOPIC)],
        })
        .encode()
        .unwrap(),
    )
    .unwrap();
    drain_transmits(&mut a);
    a.announce_identity(t(1), false, false).unwrap();
    let gossip: Vec<Transmit> = drain_transmits(&mut a)
        .into_iter()
        .filter(|t| t.kind == FrameKind::Gossip)
        .collect();
    assert_eq!(gossip.len(), 2, "identity and machine announcement");
    for g in &gossip {
        assert!(
            g.frame.len() <= 6 * 1024,
            "announcement frame of {} bytes",
            g.frame.len()
        );
    }
}

#[test]
fn late_joiner_catches_up_without_waiting_for_a_heartbeat() {
    let n = 21;
    // Node 20 starts 20 s after the others; heartbeats are at the default 300 s.
    let mut net = testnet::Net::new_with(
        n,
        |_| Config::default(),
        |i| Duration::from_secs(if i == 20 { 20 } else { 0 }),
    );
    net.run_for(Duration::from_millis(100));
    for i in 0..20 {
        net.with(i, |node, now| {
            node.announce_identity(now, false, false).unwrap()
        });
    }
    net.run_for(Duration::from_millis(19_800));
    let late = net.nodes[20].as_ref().unwrap();
    assert!(!late.started && late.discovered_agents(net.now).is_empty());
    // It starts at 20 s; 2 s later it lists everyone.
    net.run_for(Duration::from_millis(2_100));
    let now = net.now;
    let late = net.nodes[20].as_ref().unwrap();
    assert_eq!(
        late.discovered_agents(now).len(),
        20,
        "caught up within 2 s of joining"
    );
    assert!(late.stats().discovery.accepted.identity >= 20);
}

fn finished(net: &testnet::Net, node: usize, query: QueryId) -> Option<Option<Found>> {
    net.events.iter().find_map(|(i, e)| match e {
        Event::QueryFinished {
            query: q, found, ..
        } if *i == node && *q == query => Some(found.clone()),
        _ => None,
    })
}

#[test]
fn find_agent_answers_from_cache_then_by_query() {
    let n = 30;
    // Node 0 caches at most 2 agents, so most agents are not in its cache.
    let mut net = announced_net(n, |i| {
        let mut c = Config::default();
        if i == 0 {
            c.announce.max_agents = 2;
        }
        c
    });
    net.run_for(Duration::from_secs(5));
    let target = net.nodes[17].as_ref().unwrap().agent_id();
    let now = net.now;
    assert!(
        net.nodes[0]
            .as_ref()
            .unwrap()
            .discovered_agent(now, &target)
            .is_none(),
        "not cached"
    );
    let mut q = QueryId(0);
    net.with(0, |node, now| q = node.find_agent(now, target));
    net.run_for(Duration::from_secs(1));
    let found = finished(&net, 0, q)
        .expect("query finished within 1 s")
        .expect("found");
    assert_eq!(found.agent_id, target);
    assert_eq!(found.via, FoundVia::Query);
    assert_eq!(found.machine_id, net.ids[17]);
    // Cached now: the next lookup answers at once.
    let mut q2 = QueryId(0);
    net.with(0, |node, now| q2 = node.find_agent(now, target));
    assert_eq!(finished(&net, 0, q2).unwrap().unwrap().via, FoundVia::Cache);
}

#[test]
fn an_agent_gone_past_the_ttl_is_never_returned() {
    let n = 20;
    let mut net = announced_net(n, |_| fast_announce());
    net.run_for(Duration::from_secs(3));
    let gone = net.nodes[9].as_ref().unwrap().agent_id();
    net.crash(9);
    net.run_for(Duration::from_secs(25));
    let now = net.now;
    for node in net.nodes.iter().flatten() {
        assert!(node.discovered_agent(now, &gone).is_none());
        assert_eq!(node.discovered_agents(now).len(), n - 1);
    }
    let mut q = QueryId(0);
    net.with(0, |node, now| q = node.find_agent(now, gone));
    net.run_for(Duration::from_secs(5));
    assert_eq!(finished(&net, 0, q), Some(None), "no stale answer");
}

#[test]
fn user_disclosure_needs_consent_and_is_kept_by_heartbeats() {
    let user = UserKeypair::from_seed([42; 32]);
    let mut net = testnet::Net::new(10, |_| fast_announce());
    // Give node 3 a user identity.
    {
        let node = net.node(3);
        let cert = AgentCertificate::issue(&user, node.agent_id(), t(0).as_secs(), None);
        node.identity.user = Some((user.clone(), cert));
    }
    net.run_for(Duration::from_millis(100));
    net.with(3, |node, now| {
        assert_eq!(
            node.announce_identity(now, true, false),
            Err(AnnounceError::ConsentRequired)
        );
        node.announce_identity(now, true, true).unwrap();
    });
    net.with(4, |node, now| {
        assert_eq!(
            node.announce_identity(now, true, true),
            Err(AnnounceError::NoUserIdentity)
        );
    });
    net.run_for(Duration::from_secs(12)); // two heartbeats later
    let now = net.now;
    let agent3 = net.nodes[3].as_ref().unwrap().agent_id();
    for node in net.nodes.iter().flatten() {
        let by_user = node.find_agents_by_user(now, &user.user_id());
        assert_eq!(by_user.len(), 1);
        assert_eq!(by_user[0].agent_id, agent3);
        assert_eq!(by_user[0].user_id, Some(user.user_id()));
    }
}

#[test]
fn rendezvous_records_are_found_and_never_returned_after_expiry() {
    let mut net = testnet::Net::new(10, |_| Config::default());
    net.run_for(Duration::from_secs(2));
    let target = net.nodes[7].as_ref().unwrap().agent_id();
    net.with(7, |node, now| {
        node.advertise_identity(now, Duration::from_secs(10))
    });
    net.run_for(Duration::from_secs(1));
    let mut q = QueryId(0);
    net.with(2, |node, now| {
        q = node.find_agent_rendezvous(now, target, Duration::from_secs(3))
    });
    let found = finished(&net, 2, q).expect("cached").expect("found");
    assert_eq!(found.via, FoundVia::Rendezvous);
    assert_eq!(found.machine_id, net.ids[7]);
    net.run_for(Duration::from_secs(10));
    let mut q = QueryId(0);
    net.with(2, |node, now| {
        q = node.find_agent_rendezvous(now, target, Duration::from_secs(3))
    });
    net.run_for(Duration::from_secs(4));
    assert_eq!(
        finished(&net, 2, q),
        Some(None),
        "expired record never returned"
    );
}

#[test]
fn forged_and_invalid_announcements_are_rejected_and_counted() {
    use crate::announce::{IdentityAnnouncement, MachineAnnouncement};
    let mut a = node(1, Config::default());
    let b = node(2, Config::default());
    let now = t(0);
    a.start(now);
    let honest = AgentKeypair::from_seed([5; 32]);
    let ann = |at: u64, addrs: usize, user: Option<AgentCertificate>| IdentityAnnouncement {
        machine_id: b.machine_id(),
        addresses: vec![addr(9); addrs],
        announced_at: at,
        nat: None,
        user,
    };
    let sign = |body: &IdentityAnnouncement| {
        wire::Signed::sign(&honest, Domain::IdentityAnnouncement, body, true)
    };
    // Forged: the signature is over other bytes.
    let mut forged = sign(&ann(now.as_secs(), 1, None));
    forged.body = Bytes::from(postcard::to_allocvec(&ann(now.as_secs(), 2, None)).unwrap());
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &forged),
        Err(RejectReason::BadSignature)
    );
    // Someone else's key attached.
    let mut wrong_key = sign(&ann(now.as_secs(), 1, None));
    wrong_key.signer_key = Some(AgentKeypair::from_seed([6; 32]).public_key().clone());
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &wrong_key),
        Err(RejectReason::KeyMismatch)
    );
    // Far future.
    let future = sign(&ann(now.as_secs() + 3600, 1, None));
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &future),
        Err(RejectReason::FutureTimestamp)
    );
    // Oversized address list.
    let many = sign(&ann(now.as_secs(), 17, None));
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &many),
        Err(RejectReason::TooManyAddresses)
    );
    // A user id with someone else's certificate (names another agent).
    let user = UserKeypair::from_seed([7; 32]);
    let other_cert = AgentCertificate::issue(
        &user,
        AgentKeypair::from_seed([8; 32]).agent_id(),
        now.as_secs(),
        None,
    );
    let stolen = sign(&ann(now.as_secs(), 1, Some(other_cert)));
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &stolen),
        Err(RejectReason::BadCertificate)
    );
    // A machine announcement signed by an agent key claiming to be a machine record: wrong domain.
    let as_machine = wire::Signed::sign(
        &honest,
        Domain::MachineAnnouncement,
        &MachineAnnouncement {
            agent_id: honest.agent_id(),
            addresses: vec![],
            announced_at: now.as_secs(),
        },
        true,
    );
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &as_machine),
        Err(RejectReason::BadSignature)
    );
    assert!(a.discovered_agents(now).is_empty(), "nothing cached");
    let rejected = &a.stats().discovery.rejected;
    for reason in [
        RejectReason::BadSignature,
        RejectReason::KeyMismatch,
        RejectReason::FutureTimestamp,
        RejectReason::TooManyAddresses,
        RejectReason::BadCertificate,
    ] {
        assert!(rejected.get(&reason) >= 1, "{reason} counted");
    }
    // The honest one is accepted, and an older one after it is refused.
    let good = sign(&ann(now.as_secs(), 1, None));
    a.accept_record(now, RecordKind::Announcement, &good)
        .unwrap();
    let older = sign(&ann(now.as_secs() - 10, 1, None));
    assert_eq!(
        a.accept_record(now, RecordKind::Announcement, &older),
        Err(RejectReason::NotNewer)
    );
    assert_eq!(a.discovered_agents(now).len(), 1);
}

#[test]
fn sparse_topic_reaches_every_subscriber_without_payloads_at_non_subscribers() {
    let n = 80;
    let sparse = TopicId::from_name("sparse");
    let subscribers: Vec<usize> = (0..n).filter(|i| i % 10 == 3).collect();
    let mut net = testnet::Net::new(n, |_| Config::default());
    net.run_for(Duration::from_secs(5));
    for &i in &subscribers {
        net.with(i, |node, now| node.subscribe(now, sparse));
    }
    net.run_for(Duration::from_secs(20));
    for (k, &publisher) in subscribers.iter().enumerate() {
        let before = net.deliveries.len();
        net.with(publisher, |node, now| {
            node.publish(now, sparse, Bytes::from(vec![k as u8; 64]))
                .unwrap();
        });
        net.run_for(Duration::from_secs(2));
        let mut got: Vec<usize> = net.deliveries[before..]
            .iter()
            .map(|(i, _, _)| *i)
            .collect();
        got.sort();
        let want: Vec<usize> = subscribers
            .iter()
            .copied()
            .filter(|i| *i != publisher)
            .collect();
        assert_eq!(got, want, "publisher {publisher}");
    }
    let at_non_subscribers: u64 = (0..n)
        .filter(|i| !subscribers.contains(i))
        .map(|i| {
            net.nodes[i]
                .as_ref()
                .unwrap()
                .stats()
                .broadcast
                .gossip_received
        })
        .sum();
    let at_subscribers: u64 = subscribers
        .iter()
        .map(|i| {
            net.nodes[*i]
                .as_ref()
                .unwrap()
                .stats()
                .broadcast
                .gossip_received
        })
        .sum();
    // Non-subscribers still carry the discovery topics; none of the sparse payloads.
    let _ = at_subscribers;
    assert_eq!(at_non_subscribers, 0);
}

/// Every JOIN into a full active view evicts a neighbour into the passive view; a stream of
/// joiners (a Sybil flood through one node) must not push the passive view past its cap.
#[test]
fn joins_into_a_full_active_view_keep_the_passive_view_at_its_cap() {
    let mut n = node(1, Config::default());
    let cap = n.config().membership.passive_view_capacity;
    let joiners = 2 * cap;
    for i in 0..joiners {
        let peer = MachineId::from_bytes([i as u8 + 100; 32]);
        let a = SocketAddr::from(([10, 1, 0, i as u8], 5483));
        n.handle_connected(t(i as u64), peer, a, Direction::Inbound);
        let hello: Frame = Hello {
            agent: AgentId::from_bytes([i as u8 + 100; 32]),
            addrs: vec![a],
        }
        .into();
        n.handle_frame(t(i as u64), peer, &hello.encode().unwrap())
            .unwrap();
        let join: Frame = wire::Join { addrs: vec![a] }.into();
        n.handle_frame(t(i as u64), peer, &join.encode().unwrap())
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
