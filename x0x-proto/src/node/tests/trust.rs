//! Trust through whole nodes: blocked publishers and senders, pinned machines, receipts.

use std::collections::BTreeMap;

use super::*;
use crate::direct::{DirectError, DirectFailure, DirectPath, RejectCode};
use crate::node::{TrustApplied, TrustChange};
use crate::trust::{IdentityType, TrustDecision, TrustLevel};

/// Two connected nodes that know each other from their cards.
fn pair() -> (Node, Node) {
    let mut a = node(1, keep());
    let mut b = node(2, keep());
    connect(&mut a, &mut b, t(0));
    let ca = a.agent_card(t(0));
    let cb = b.agent_card(t(0));
    a.import_agent_card(t(0), &cb).unwrap();
    b.import_agent_card(t(0), &ca).unwrap();
    drain_events(&mut a);
    drain_events(&mut b);
    (a, b)
}

fn set(n: &mut Node, now: Time, change: TrustChange) -> TrustApplied {
    let r = n.change_trust(now, change).unwrap();
    let changed = drain_events(n)
        .iter()
        .any(|e| matches!(e, Event::TrustChanged { .. }));
    assert!(
        changed,
        "every change is reported for the driver to persist"
    );
    r
}

/// A direct message from `from` to `to`, run through both nodes; returns what `to` delivered
/// and what `from` learned.
fn dm(from: &mut Node, to: &mut Node, now: Time, text: &'static [u8]) -> (Vec<Event>, Vec<Event>) {
    from.send_direct(now, to.agent_id(), Bytes::from_static(text))
        .unwrap();
    pump(from, to, now);
    (drain_events(to), drain_events(from))
}

#[test]
fn a_blocked_publishers_messages_never_reach_the_application() {
    let n = 8;
    let mut net = subscribed_net(n);
    let author = net.nodes[0].as_ref().unwrap().agent_id();
    let publish = |net: &mut testnet::Net, text: &'static [u8]| {
        let mut id = None;
        net.with(0, |node, now| {
            id = node.publish(now, topic(), Bytes::from_static(text)).ok();
        });
        net.run_for(Duration::from_secs(2));
        let got: BTreeMap<usize, TrustLevel> = net
            .deliveries
            .iter()
            .filter(|(_, d, _)| Some(d.id) == id)
            .map(|(i, d, _)| (*i, d.trust_level))
            .collect();
        got
    };
    let got = publish(&mut net, b"before");
    assert_eq!(got.len(), n - 1);
    assert!(
        got.values().all(|l| *l == TrustLevel::Unknown),
        "strangers are delivered as unknown"
    );
    // Node 3 knows the author, node 5 blocks it.
    net.with(3, |node, now| {
        node.change_trust(
            now,
            TrustChange::SetLevel {
                agent: author,
                level: TrustLevel::Known,
            },
        )
        .unwrap();
    });
    net.with(5, |node, now| {
        node.change_trust(
            now,
            TrustChange::SetLevel {
                agent: author,
                level: TrustLevel::Blocked,
            },
        )
        .unwrap();
    });
    let got = publish(&mut net, b"while blocked");
    assert!(!got.contains_key(&5), "the blocking node never delivers it");
    assert_eq!(
        got.len(),
        n - 2,
        "everyone else does (the blocking node still relays)"
    );
    assert_eq!(got[&3], TrustLevel::Known);
    assert_eq!(
        net.nodes[5]
            .as_ref()
            .unwrap()
            .stats()
            .trust
            .refused
            .messages_blocked,
        1
    );
    // Unblocked, delivery resumes.
    net.with(5, |node, now| {
        node.change_trust(
            now,
            TrustChange::SetLevel {
                agent: author,
                level: TrustLevel::Trusted,
            },
        )
        .unwrap();
    });
    let got = publish(&mut net, b"after");
    assert_eq!(got.get(&5), Some(&TrustLevel::Trusted));
}

#[test]
fn a_blocked_senders_dms_are_refused_with_a_policy_receipt() {
    let (mut a, mut b) = pair();
    let (delivered, _) = dm(&mut a, &mut b, t(1), b"hi");
    let got: Vec<_> = delivered
        .iter()
        .filter_map(|e| match e {
            Event::DirectMessage(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].trust, TrustDecision::Unknown);
    set(
        &mut b,
        t(2),
        TrustChange::Add {
            agent: a.agent_id(),
            level: TrustLevel::Blocked,
            label: None,
        },
    );
    let (delivered, learned) = dm(&mut a, &mut b, t(3), b"blocked");
    assert!(
        !delivered
            .iter()
            .any(|e| matches!(e, Event::DirectMessage(_)))
    );
    assert!(
        learned.iter().any(|e| matches!(
            e,
            Event::DirectFailed {
                reason: DirectFailure::RejectedByRecipient(RejectCode::Policy),
                ..
            }
        )),
        "the sender learns the policy refusal: {learned:?}"
    );
    assert_eq!(b.stats().trust.refused.direct_refused, 1);
    assert_eq!(b.stats().direct.rejected.policy, 1);
    assert_eq!(a.stats().direct.failures.rejected_by_policy, 1);
    // And b refuses to send to a blocked agent, before anything leaves.
    assert_eq!(
        b.send_direct(t(4), a.agent_id(), Bytes::from_static(b"x")),
        Err(DirectError::Blocked(a.agent_id()))
    );
    assert_eq!(b.stats().trust.refused.direct_to_blocked, 1);
}

#[test]
fn a_pinned_agent_is_refused_from_another_machine_and_accepted_from_its_own() {
    let (mut a, mut b) = pair();
    let elsewhere = MachineId::from_bytes([9; 32]);
    set(
        &mut b,
        t(1),
        TrustChange::AddMachine {
            agent: a.agent_id(),
            machine: elsewhere,
            label: None,
            pinned: None,
        },
    );
    set(
        &mut b,
        t(1),
        TrustChange::Pin {
            agent: a.agent_id(),
            machine: elsewhere,
        },
    );
    assert_eq!(
        b.evaluate_trust(&a.agent_id(), &a.machine_id()),
        TrustDecision::RejectMachineMismatch
    );
    // Its direct messages from its real machine are refused...
    let (delivered, learned) = dm(&mut a, &mut b, t(2), b"from my machine");
    assert!(
        !delivered
            .iter()
            .any(|e| matches!(e, Event::DirectMessage(_)))
    );
    assert!(
        learned
            .iter()
            .any(|e| matches!(e, Event::DirectFailed { .. }))
    );
    // ...and so is its identity announcement (neither cached nor relayed).
    let fresh = a.agent_card(t(3));
    let rejected_before = b.stats().discovery.rejected.machine_mismatch;
    let _ = b.import_agent_card(t(3) + Duration::from_secs(400), &fresh);
    assert!(b.stats().trust.refused.announcements_machine_mismatch >= 1);
    assert!(b.stats().discovery.rejected.machine_mismatch > rejected_before);
    // Pinned to its real machine, it is accepted (even at level unknown).
    set(
        &mut b,
        t(4),
        TrustChange::AddMachine {
            agent: a.agent_id(),
            machine: a.machine_id(),
            label: None,
            pinned: Some(true),
        },
    );
    assert_eq!(
        b.contacts().contact(&a.agent_id()).unwrap().identity_type,
        IdentityType::Pinned
    );
    assert_eq!(
        b.evaluate_trust(&a.agent_id(), &a.machine_id()),
        TrustDecision::Accept
    );
    let (delivered, _) = dm(&mut a, &mut b, t(5), b"pinned");
    let m = delivered.iter().find_map(|e| match e {
        Event::DirectMessage(m) => Some(m.clone()),
        _ => None,
    });
    let m = m.expect("delivered from the pinned machine");
    assert_eq!(
        (m.trust, m.path),
        (TrustDecision::Accept, DirectPath::Connected)
    );
}

#[test]
fn blocked_agents_are_hidden_from_discovery_lists_and_their_announcements_dropped() {
    let (mut a, mut b) = pair();
    assert!(
        b.discovered_agents(t(1))
            .iter()
            .any(|x| x.agent_id == a.agent_id())
    );
    set(
        &mut b,
        t(1),
        TrustChange::SetLevel {
            agent: a.agent_id(),
            level: TrustLevel::Blocked,
        },
    );
    assert!(
        !b.discovered_agents(t(1))
            .iter()
            .any(|x| x.agent_id == a.agent_id())
    );
    assert!(
        b.all_discovered_agents(t(1))
            .iter()
            .any(|x| x.agent_id == a.agent_id())
    );
    let before = b.stats().trust.refused.announcements_blocked;
    let fresh = a.agent_card(t(2) + Duration::from_secs(400));
    let _ = b.import_agent_card(t(2) + Duration::from_secs(400), &fresh);
    assert_eq!(b.stats().trust.refused.announcements_blocked, before + 1);
}

#[test]
fn a_revoked_agent_stays_blocked_and_the_state_round_trips() {
    let (_a, mut b) = pair();
    let x = AgentId::from_bytes([7; 32]);
    set(
        &mut b,
        t(1),
        TrustChange::Revoke {
            agent: x,
            reason: "stolen".into(),
        },
    );
    assert!(
        b.change_trust(
            t(2),
            TrustChange::SetLevel {
                agent: x,
                level: TrustLevel::Trusted
            }
        )
        .is_err()
    );
    assert!(
        drain_events(&mut b)
            .iter()
            .all(|e| !matches!(e, Event::TrustChanged { .. })),
        "a refused change is not reported"
    );
    let state = b.trust_state();
    let c = node(3, Config::default()).with_contacts(state).unwrap();
    assert_eq!(c.contacts().level(&x), TrustLevel::Blocked);
    assert_eq!(c.contacts().revocation(&x).unwrap().reason, "stolen");
}
