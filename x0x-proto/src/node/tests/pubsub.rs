//! Pub/sub through whole nodes: delivery, the tree, batches, replays, sparse topics.

use super::*;

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

#[test]
fn own_publishes_reach_own_subscribers_exactly_once() {
    let n = 8;
    let mut net = subscribed_net(n);
    let mut id = None;
    net.with(3, |node, now| {
        id = Some(
            node.publish(now, topic(), Bytes::from_static(b"mine"))
                .unwrap(),
        );
    });
    net.run_for(Duration::from_secs(2));
    let own: Vec<_> = net
        .own_deliveries
        .iter()
        .filter(|(_, d, _)| Some(d.id) == id)
        .collect();
    assert_eq!(
        own.len(),
        1,
        "delivered to the publisher once, not again from the network"
    );
    let (i, d, _) = own[0];
    assert_eq!((*i, d.hops, d.payload.as_ref()), (3, 0, &b"mine"[..]));
    assert_eq!(d.via, net.ids[3]);
    assert_eq!(
        net.deliveries
            .iter()
            .filter(|(_, d, _)| Some(d.id) == id)
            .count(),
        n - 1
    );
    // A topic the publisher does not subscribe to is not delivered to it.
    let other = TopicId::from_name("not-subscribed");
    net.with(3, |node, now| {
        node.publish(now, other, Bytes::from_static(b"x")).unwrap();
    });
    net.run_for(Duration::from_secs(1));
    assert!(net.own_deliveries.iter().all(|(_, d, _)| d.topic != other));
}

/// A node that publishes on a topic it does not subscribe to joins the topic's tree to do so:
/// every subscriber gets the message, the publisher's application gets nothing of the topic,
/// and the node leaves the topic `publish_carry` after its last publish.
#[test]
fn a_publisher_that_does_not_subscribe_reaches_the_subscribers() {
    let n = 12;
    let mut net = testnet::Net::new(n, |_| Config {
        publish_carry: Duration::from_secs(120),
        ..Config::default()
    });
    net.run_for(Duration::from_millis(10));
    for i in 1..n {
        net.with(i, |node, now| node.subscribe(now, topic()));
    }
    net.run_for(Duration::from_secs(30));
    for round in 0..3u8 {
        let mut id = None;
        net.with(0, |node, now| {
            id = Some(
                node.publish(now, topic(), Bytes::from(vec![round; 10]))
                    .unwrap(),
            );
        });
        net.run_for(Duration::from_secs(2));
        let who: BTreeSet<usize> = net
            .deliveries
            .iter()
            .filter(|(_, d, _)| Some(d.id) == id)
            .map(|(i, _, _)| *i)
            .collect();
        assert_eq!(who, (1..n).collect(), "round {round}");
    }
    // A subscriber's message does not reach the publisher's application.
    net.with(5, |node, now| {
        node.publish(now, topic(), Bytes::from_static(b"from 5"))
            .unwrap();
    });
    net.run_for(Duration::from_secs(2));
    assert!(net.deliveries.iter().all(|(i, _, _)| *i != 0));
    assert!(net.own_deliveries.iter().all(|(i, _, _)| *i != 0));
    let carried = |net: &mut testnet::Net| {
        let mut c = false;
        net.with(0, |node, _| c = node.topic_peers(&topic()).is_some());
        c
    };
    assert!(carried(&mut net));
    net.run_for(Duration::from_secs(200));
    assert!(!carried(&mut net), "left after publish_carry");
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

/// More messages within `max_message_age` than the dedup window holds by count: the window
/// forgets the earliest ids, and replays of them, still young, are refused rather than
/// delivered again (the old count-only window let them through).
#[test]
fn a_flood_past_the_dedup_windows_count_opens_no_replay_window() {
    let mut c = Config::default();
    c.broadcast.seen_capacity = 64;
    let (mut a, mut b) = (node(1, c.clone()), node(2, c));
    a.start(t(0));
    b.start(t(0));
    connect(&mut a, &mut b, t(0));
    b.subscribe(t(0), topic());
    pump(&mut a, &mut b, t(0));
    drain_events(&mut b);
    let agent = Identity::from_seed([1; 32]).agent;
    let gossip = |at_ms: u64, nonce: u64| -> Bytes {
        let body = PubSubBody {
            topic: topic(),
            nonce,
            published_at_ms: t(at_ms).as_millis(),
            payload: Bytes::from_static(b"flood"),
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
    // 200 messages in 2 s: three times the window.
    let frames: Vec<_> = (0..200).map(|k| gossip(1000 + 10 * k, k)).collect();
    for (k, f) in frames.iter().enumerate() {
        b.handle_frame(t(1000 + 10 * k as u64), a.machine_id(), f)
            .unwrap();
    }
    assert_eq!(deliveries(&mut b), 200);
    assert_eq!(b.broadcast_cache_sizes().seen, 64);
    // Replays of every one of them, 5 s later (well within max_message_age).
    for f in &frames {
        b.handle_frame(t(5000), a.machine_id(), f).unwrap();
    }
    assert_eq!(deliveries(&mut b), 0, "a replay was delivered again");
    let dropped = b.stats().broadcast.dropped;
    assert_eq!(dropped.replay_floor, 200 - 64, "{dropped:?}");
    // A new message, stamped now, still goes through.
    b.handle_frame(t(5000), a.machine_id(), &gossip(5000, 999))
        .unwrap();
    assert_eq!(deliveries(&mut b), 1);
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
    let gossip = |i: usize| {
        net.nodes[i]
            .as_ref()
            .unwrap()
            .stats()
            .broadcast
            .gossip_received
    };
    let at_non_subscribers: u64 = (0..n)
        .filter(|i| !subscribers.contains(i))
        .map(gossip)
        .sum();
    let at_subscribers: u64 = subscribers.iter().map(|i| gossip(*i)).sum();
    // Non-subscribers still carry the discovery topics; none of the sparse payloads.
    let _ = at_subscribers;
    assert_eq!(at_non_subscribers, 0);
}
