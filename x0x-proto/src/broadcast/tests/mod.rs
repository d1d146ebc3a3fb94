//! Unit tests of the broadcast layer: the PlumTree rules here, the depth rule in `tree`.

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

fn is_eager(b: &Broadcast, topic: TopicId, peer: MachineId) -> bool {
    b.topic_peers(&topic)
        .is_some_and(|p| p.eager.contains(&peer))
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
    assert!(b.on_gossip_verified(t0, t0, peer, topic, id, 1, m));
    b.on_duplicate(t0, peer, topic, &id);
    assert!(!is_eager(&b, topic, peer), "pruned");
    // In flight: sent before the PRUNE arrived.
    let (id, m) = msg(2);
    b.on_gossip_verified(
        t0 + Duration::from_millis(50),
        t0 + Duration::from_millis(50),
        peer,
        topic,
        id,
        1,
        m,
    );
    assert!(
        !is_eager(&b, topic, peer),
        "the PRUNE holds during the grace"
    );
    // After the grace, a new message from it means it pushes to us on purpose.
    let (id, m) = msg(3);
    b.on_gossip_verified(
        t0 + Duration::from_secs(2),
        t0 + Duration::from_secs(2),
        peer,
        topic,
        id,
        1,
        m,
    );
    assert!(is_eager(&b, topic, peer));
}

/// A broadcast layer with `peers` as carrying neighbours of `topic`. Round trips fall with the
/// index, against id order: the last peer is the fastest, at 10 ms, and each one before it 10 ms
/// slower. Each peer also has a 500 ms sample, before its real one for even indices and after it
/// for odd ones (the smallest sample counts, not the latest).
fn carriers(topic: TopicId, peers: &[MachineId]) -> Broadcast {
    carriers_with(BroadcastConfig::default(), topic, peers)
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
    assert!(b.on_gossip_verified(t0, t0, peers[0], topic, id, 7, m));
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
    b.on_gossip_verified(t1, t1, peers[0], topic, id, 7, m);
    let (pushed, _) = pushes_and_ihaves(&mut b, t1);
    assert_eq!(pushed, vec![peers[3], peers[5]]);

    // Two hops from the publisher: every carrier but the sender.
    let mut b = carriers(topic, &peers);
    let (id, m) = msg(1);
    b.on_gossip_verified(t0, t0, peers[5], topic, id, 2, m);
    let (pushed, told) = pushes_and_ihaves(&mut b, t0);
    assert_eq!(pushed, peers[..5].to_vec());
    assert!(told.is_empty());
}

mod tree;
