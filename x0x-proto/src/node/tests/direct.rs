//! Direct messages through whole nodes: paths, acks, retries, dedup and hostile input.

use super::*;
use crate::direct::{
    DirectEnvelope, DirectError, DirectOptions, DirectPath, PathPreference, RequestId,
};

/// Two connected nodes; `a` knows `b` from its card.
fn pair() -> (Node, Node) {
    let mut a = node(1, keep());
    let mut b = node(2, keep());
    connect(&mut a, &mut b, t(0));
    let card = b.agent_card(t(0));
    a.import_agent_card(t(0), &card).unwrap();
    drain_events(&mut a);
    drain_events(&mut b);
    (a, b)
}

fn direct_messages(events: &[Event]) -> Vec<DirectMessage> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DirectMessage(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn receipts(events: &[Event]) -> Vec<DirectReceipt> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DirectReceipt(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn direct_frames(txs: &[Transmit]) -> Vec<wire::Direct> {
    txs.iter()
        .filter_map(|tx| match Frame::decode(&tx.frame) {
            Ok(Frame::Direct(d)) => Some(d),
            _ => None,
        })
        .collect()
}

fn deliver_all(to: &mut Node, from: MachineId, txs: &[Transmit], now: Time) {
    for tx in txs {
        let _ = to.handle_frame(now, from, &tx.frame);
    }
}

#[test]
fn direct_connected_path_delivers_once_with_receipt() {
    let (mut a, mut b) = pair();
    let id = a
        .send_direct(t(1), b.agent_id(), Bytes::from_static(b"hello"))
        .unwrap();
    // The first message carries a's identity announcement as the agent <-> machine binding.
    let txs = drain_transmits(&mut a);
    let frames = direct_frames(&txs);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].binding.is_some());
    deliver_all(&mut b, a.machine_id(), &txs, t(1));
    pump(&mut a, &mut b, t(2));
    let got = direct_messages(&drain_events(&mut b));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].request_id, id);
    assert_eq!(got[0].sender, a.agent_id());
    assert_eq!(got[0].sender_machine, a.machine_id());
    assert_eq!(got[0].path, DirectPath::Connected);
    assert_eq!(&got[0].payload[..], b"hello");
    let r = receipts(&drain_events(&mut a));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].request_id, r[0].path, r[0].retries),
        (id, DirectPath::Connected, 0)
    );
    assert_eq!(a.direct_in_flight(), 0);
    // Acknowledged once: later messages go without the binding (no per-message signature).
    a.send_direct(t(3), b.agent_id(), Bytes::from_static(b"again"))
        .unwrap();
    let txs = drain_transmits(&mut a);
    assert!(direct_frames(&txs)[0].binding.is_none());
    deliver_all(&mut b, a.machine_id(), &txs, t(3));
    pump(&mut a, &mut b, t(3));
    assert_eq!(direct_messages(&drain_events(&mut b)).len(), 1);
    assert_eq!(b.stats().direct.delivered, 2);
    assert!(
        a.direct_rtt(&b.machine_id()).is_some(),
        "acks measured an RTT"
    );
}

#[test]
fn direct_retries_keep_the_request_id_and_deliver_exactly_once() {
    let (mut a, mut b) = pair();
    let id = a
        .send_direct(t(1), b.agent_id(), Bytes::from_static(b"x"))
        .unwrap();
    // Attempt 1 is lost.
    let lost = drain_transmits(&mut a);
    assert_eq!(direct_frames(&lost).len(), 1);
    // No RTT known yet: the first timeout is the initial one (1 s).
    a.handle_timeout(t(1) + Duration::from_millis(900));
    assert!(
        direct_frames(&drain_transmits(&mut a)).is_empty(),
        "not yet"
    );
    a.handle_timeout(t(1) + Duration::from_millis(1001));
    let second = drain_transmits(&mut a);
    let f2 = direct_frames(&second);
    assert_eq!(f2.len(), 1);
    assert_eq!(f2[0].envelope.request_id, id);
    assert_eq!(f2[0].envelope.attempt, 2);
    // Attempt 2 arrives, but its ack is lost.
    deliver_all(&mut b, a.machine_id(), &second, t(1100));
    assert_eq!(direct_messages(&drain_events(&mut b)).len(), 1);
    let _lost_ack = drain_transmits(&mut b);
    // Attempt 3 (after 2 s) is a duplicate at b: re-acknowledged, not delivered again.
    a.handle_timeout(t(1) + Duration::from_millis(3002));
    let third = drain_transmits(&mut a);
    assert_eq!(direct_frames(&third)[0].envelope.attempt, 3);
    deliver_all(&mut b, a.machine_id(), &third, t(3100));
    pump(&mut a, &mut b, t(3100));
    assert!(direct_messages(&drain_events(&mut b)).is_empty());
    assert_eq!(b.stats().direct.duplicates, 1);
    assert_eq!(b.stats().direct.rejected.replay, 1);
    let r = receipts(&drain_events(&mut a));
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].request_id, r[0].retries), (id, 2));
    assert_eq!(a.stats().direct.retries, 2);
}

#[test]
fn direct_forged_sender_and_bad_envelopes_are_rejected_with_typed_reasons() {
    let (mut a, mut b) = pair();
    let mut c = node(3, Config::default());
    connect(&mut c, &mut b, t(0));
    // b knows a's binding (a runs on machine a).
    let card = a.agent_card(t(0));
    b.import_agent_card(t(0), &card).unwrap();
    drain_events(&mut b);
    let now = t(10);
    let ms = now.as_millis();
    let env =
        |sender: AgentId, recipient: AgentId, created: u64, expires: u64, n: u8| DirectEnvelope {
            request_id: RequestId([n; 16]),
            sender,
            recipient,
            created_at_ms: created,
            expires_at_ms: expires,
            attempt: 1,
            payload: Bytes::from_static(b"evil"),
        };
    let send = |b: &mut Node, from: MachineId, e: DirectEnvelope, binding: Option<wire::Signed>| {
        let frame = Frame::Direct(wire::Direct {
            envelope: e,
            binding,
        })
        .encode()
        .unwrap();
        b.handle_frame(now, from, &frame).unwrap();
    };
    let (aid, bid, cid) = (a.agent_id(), b.agent_id(), c.agent_id());
    // c claims to be a, even attaching a's genuine announcement: a is bound to another machine.
    let binding = card[0].signed.clone();
    send(
        &mut b,
        c.machine_id(),
        env(aid, bid, ms, ms + 60_000, 1),
        Some(binding),
    );
    // Expired, far-future, over-long lifetime, and addressed to someone else.
    send(
        &mut b,
        a.machine_id(),
        env(aid, bid, ms - 90_000, ms - 1, 2),
        None,
    );
    send(
        &mut b,
        a.machine_id(),
        env(aid, bid, ms + 40_000, ms + 90_000, 3),
        None,
    );
    send(
        &mut b,
        a.machine_id(),
        env(aid, bid, ms, ms + 700_000, 4),
        None,
    );
    send(
        &mut b,
        a.machine_id(),
        env(aid, cid, ms, ms + 60_000, 5),
        None,
    );
    let s = b.stats().direct;
    assert_eq!(s.rejected.forged_sender, 1);
    assert_eq!(s.rejected.expired, 1);
    assert_eq!(s.rejected.from_future, 1);
    assert_eq!(s.rejected.bad_lifetime, 1);
    assert_eq!(s.rejected.wrong_recipient, 1);
    assert_eq!(s.delivered, 0);
    assert!(direct_messages(&drain_events(&mut b)).is_empty());
    // A replayed genuine frame is delivered once.
    let good = env(aid, bid, ms, ms + 60_000, 6);
    send(&mut b, a.machine_id(), good.clone(), None);
    send(&mut b, a.machine_id(), good, None);
    assert_eq!(direct_messages(&drain_events(&mut b)).len(), 1);
    assert_eq!(b.stats().direct.rejected.replay, 1);
    // An ack from a machine that is not the recipient's is refused.
    let id = a
        .send_direct(now, b.agent_id(), Bytes::from_static(b"q"))
        .unwrap();
    let forged_ack = Frame::DirectAck(wire::DirectAck {
        request_id: id,
        sender: a.agent_id(),
        recipient: b.agent_id(),
        attempt: 1,
        outcome: crate::direct::DirectOutcome::Accepted,
    })
    .encode()
    .unwrap();
    let mut c2 = node(4, Config::default());
    let _to_b = drain_transmits(&mut a);
    connect(&mut a, &mut c2, now);
    drain_events(&mut a);
    a.handle_frame(now, c2.machine_id(), &forged_ack).unwrap();
    assert_eq!(a.stats().direct.rejected.forged_sender, 1);
    assert!(receipts(&drain_events(&mut a)).is_empty());
    assert_eq!(a.direct_in_flight(), 1);
}

#[test]
fn direct_unknown_recipient_and_oversized_payload_are_refused() {
    let (mut a, b) = pair();
    let stranger = node(9, Config::default()).agent_id();
    assert_eq!(
        a.send_direct(t(1), stranger, Bytes::from_static(b"?")),
        Err(DirectError::RecipientUnknown(stranger))
    );
    let big = Bytes::from(vec![0u8; 48 * 1024 + 1]);
    assert!(matches!(
        a.send_direct(t(1), b.agent_id(), big),
        Err(DirectError::PayloadTooLarge { .. })
    ));
    assert_eq!(a.direct_in_flight(), 0);
    // To ourselves: delivered locally with a receipt.
    let me = a.agent_id();
    let id = a.send_direct(t(1), me, Bytes::from_static(b"me")).unwrap();
    let ev = drain_events(&mut a);
    assert_eq!(direct_messages(&ev)[0].path, DirectPath::Local);
    assert_eq!(receipts(&ev)[0].request_id, id);
}

fn announced(n: usize) -> testnet::Net {
    let mut net = announced_net(n, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    net
}

/// The events node `i` of `net` emitted.
fn events_of(net: &testnet::Net, i: usize) -> Vec<Event> {
    net.events
        .iter()
        .filter(|(j, _)| *j == i)
        .map(|(_, e)| e.clone())
        .collect()
}

fn net_direct(net: &testnet::Net, i: usize) -> Vec<DirectMessage> {
    direct_messages(&events_of(net, i))
}

fn net_receipts(net: &testnet::Net, i: usize) -> Vec<DirectReceipt> {
    receipts(&events_of(net, i))
}

/// The highest-numbered node with no connection to `src`.
fn unconnected_to(net: &mut testnet::Net, src: usize) -> usize {
    (0..net.ids.len())
        .rev()
        .filter(|&j| j != src)
        .find(|&j| {
            let m = net.ids[j];
            !net.node(src).connected_peers().contains(&m)
        })
        .expect("some node is not connected to the source")
}

#[test]
fn direct_sealed_path_delivers_through_the_mesh() {
    let n = 8;
    let mut net = announced(n);
    let src = 0;
    // A recipient with no connection to the sender: the sealed path never dials, so the
    // message can only arrive relayed by other nodes.
    let dst = unconnected_to(&mut net, src);
    let to = net.node(dst).agent_id();
    let dst_machine = net.ids[dst];
    let from_machine = net.node(src).machine_id();
    assert!(
        {
            let now = net.now;
            net.node(src)
                .discovered_agent(now, &to)
                .unwrap()
                .kem_public_key
                .is_some()
        },
        "the KEM key was announced"
    );
    let mut id = None;
    let opts = DirectOptions {
        path: PathPreference::Sealed,
        lifetime: None,
    };
    net.with(src, |node, now| {
        id = Some(
            node.send_direct_with(now, to, Bytes::from_static(b"sealed hi"), opts)
                .unwrap(),
        );
    });
    net.run_for(Duration::from_secs(3));
    assert!(
        !net.node(src).connected_peers().contains(&dst_machine),
        "still not connected: it was relayed"
    );
    let got = net_direct(&net, dst);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, DirectPath::Sealed);
    assert_eq!(got[0].sender_machine, from_machine);
    assert_eq!(&got[0].payload[..], b"sealed hi");
    for i in (0..n).filter(|&i| i != dst) {
        assert!(
            net_direct(&net, i).is_empty(),
            "only the recipient opens it"
        );
    }
    let r = net_receipts(&net, src);
    assert_eq!(r.len(), 1);
    assert_eq!((Some(r[0].request_id), r[0].path), (id, DirectPath::Sealed));
    // Other nodes relayed it without opening it.
    let relays = (1..n)
        .filter(|&i| i != dst && net.node(i).stats().direct.inbox_not_for_us >= 1)
        .count();
    assert!(relays >= 1);
}

#[test]
fn direct_auto_path_dials_an_unconnected_recipient() {
    let n = 8;
    let mut net = announced(n);
    let src = 0;
    let dst = unconnected_to(&mut net, src);
    let to = net.node(dst).agent_id();
    net.with(src, |node, now| {
        node.send_direct(now, to, Bytes::from_static(b"dialled"))
            .unwrap();
    });
    net.run_for(Duration::from_secs(2));
    assert_eq!(net_direct(&net, dst).len(), 1);
    let r = net_receipts(&net, src);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].path, r[0].retries), (DirectPath::Connected, 0));
}

#[test]
fn direct_send_to_a_crashed_agent_expires_with_a_typed_failure() {
    let n = 6;
    let mut net = announced(n);
    let to = net.node(5).agent_id();
    net.crash(5);
    let opts = DirectOptions {
        path: PathPreference::Auto,
        lifetime: Some(Duration::from_secs(4)),
    };
    net.with(0, |node, now| {
        node.send_direct_with(now, to, Bytes::from_static(b"anyone?"), opts)
            .unwrap();
    });
    net.run_for(Duration::from_secs(6));
    let failed: Vec<_> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::DirectFailed { reason, .. } if *i == 0 => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![DirectFailure::Expired]);
    assert!(
        net.node(0).stats().direct.retries >= 1,
        "it retried before expiring"
    );
    assert_eq!(net.node(0).direct_in_flight(), 0);
}
