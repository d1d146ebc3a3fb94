use proptest::prelude::*;

use super::*;
use crate::identity::{AgentId, MachineId};

fn a(n: u8) -> AgentId {
    AgentId::from_bytes([n; 32])
}

fn m(n: u8) -> MachineId {
    MachineId::from_bytes([n; 32])
}

#[test]
fn every_decision_path() {
    let mut s = ContactStore::new(TrustConfig::default());
    assert_eq!(
        s.evaluate(&a(1), &m(1)),
        TrustDecision::Unknown,
        "not a contact"
    );
    s.add(a(1), TrustLevel::Unknown, None, 10).unwrap();
    assert_eq!(
        s.evaluate(&a(1), &m(1)),
        TrustDecision::Unknown,
        "unknown contact"
    );
    s.set_trust(a(1), TrustLevel::Known, 11).unwrap();
    assert_eq!(s.evaluate(&a(1), &m(1)), TrustDecision::AcceptWithFlag);
    s.set_trust(a(1), TrustLevel::Trusted, 12).unwrap();
    assert_eq!(s.evaluate(&a(1), &m(1)), TrustDecision::Accept);
    s.add_machine(a(1), m(1), None, None, 13).unwrap();
    assert!(s.pin(&a(1), &m(1)));
    assert_eq!(
        s.contact(&a(1)).unwrap().identity_type,
        IdentityType::Pinned
    );
    assert_eq!(
        s.evaluate(&a(1), &m(2)),
        TrustDecision::RejectMachineMismatch
    );
    assert_eq!(s.evaluate(&a(1), &m(1)), TrustDecision::Accept);
    // Pinned accepts on the pinned machine even at level unknown.
    s.set_trust(a(1), TrustLevel::Unknown, 14).unwrap();
    assert_eq!(s.evaluate(&a(1), &m(1)), TrustDecision::Accept);
    s.set_trust(a(1), TrustLevel::Blocked, 15).unwrap();
    assert_eq!(
        s.evaluate(&a(1), &m(1)),
        TrustDecision::RejectBlocked,
        "blocked beats pinned"
    );
}

#[test]
fn raising_trust_upgrades_anonymous_to_known() {
    let mut s = ContactStore::new(TrustConfig::default());
    s.set_identity_type(a(1), IdentityType::Anonymous, 1)
        .unwrap();
    s.set_trust(a(1), TrustLevel::Known, 2).unwrap();
    assert_eq!(s.contact(&a(1)).unwrap().identity_type, IdentityType::Known);
    s.set_identity_type(a(2), IdentityType::Trusted, 1).unwrap();
    s.set_trust(a(2), TrustLevel::Trusted, 2).unwrap();
    assert_eq!(
        s.contact(&a(2)).unwrap().identity_type,
        IdentityType::Trusted,
        "only anonymous is upgraded"
    );
}

#[test]
fn revocation_is_final() {
    let mut s = ContactStore::new(TrustConfig::default());
    s.add(a(1), TrustLevel::Trusted, Some("x".into()), 1)
        .unwrap();
    s.revoke(a(1), "stolen key".into(), 2).unwrap();
    assert_eq!(s.level(&a(1)), TrustLevel::Blocked);
    assert_eq!(
        s.set_trust(a(1), TrustLevel::Trusted, 3).unwrap_err(),
        TrustError::Revoked(a(1))
    );
    assert!(matches!(
        s.add(a(1), TrustLevel::Known, None, 3),
        Err(TrustError::Revoked(_))
    ));
    s.remove(&a(1)).unwrap();
    assert_eq!(
        s.evaluate(&a(1), &m(1)),
        TrustDecision::RejectBlocked,
        "removing the contact keeps the block"
    );
    // Revoking again keeps the first record.
    s.revoke(a(1), "again".into(), 9).unwrap();
    assert_eq!(s.revocation(&a(1)).unwrap().reason, "stolen key");
    assert_eq!(s.stats().refused_revoked, 2);
}

#[test]
fn unpinning_the_last_machine_falls_back_to_known() {
    let mut s = ContactStore::new(TrustConfig::default());
    let (_, created) = s
        .add_machine(a(1), m(1), Some("laptop".into()), Some(false), 1)
        .unwrap();
    assert!(created);
    let (_, created) = s.add_machine(a(1), m(1), None, None, 2).unwrap();
    assert!(!created);
    assert!(s.pin(&a(1), &m(1)));
    assert!(s.unpin(&a(1), &m(1)));
    assert_eq!(s.contact(&a(1)).unwrap().identity_type, IdentityType::Known);
    assert!(!s.pin(&a(1), &m(9)), "unknown machine");
    assert!(!s.pin(&a(9), &m(1)), "unknown contact");
    assert_eq!(
        s.remove_machine(&a(1), &m(9)),
        Err(TrustError::MachineNotFound)
    );
    s.remove_machine(&a(1), &m(1)).unwrap();
    assert_eq!(s.remove(&a(7)).unwrap_err(), TrustError::ContactNotFound);
}

#[test]
fn the_cap_evicts_an_unknown_contact_or_refuses() {
    let cfg = TrustConfig {
        max_contacts: 2,
        ..TrustConfig::default()
    };
    let mut s = ContactStore::new(cfg);
    s.add(a(1), TrustLevel::Unknown, None, 1).unwrap();
    s.add(a(2), TrustLevel::Trusted, None, 2).unwrap();
    s.add(a(3), TrustLevel::Blocked, None, 3).unwrap();
    assert!(
        s.contact(&a(1)).is_none(),
        "the unknown contact was evicted"
    );
    assert_eq!(s.stats().contacts_evicted, 1);
    assert!(matches!(
        s.add(a(4), TrustLevel::Known, None, 4),
        Err(TrustError::Full { .. })
    ));
    assert_eq!(
        s.level(&a(3)),
        TrustLevel::Blocked,
        "a block is never evicted"
    );
}

#[test]
fn state_round_trips_and_bad_states_are_refused() {
    let mut s = ContactStore::new(TrustConfig::default());
    s.add(a(1), TrustLevel::Known, Some("k".into()), 1).unwrap();
    s.add_machine(a(1), m(1), None, Some(true), 2).unwrap();
    s.revoke(a(2), "r".into(), 3).unwrap();
    let json = serde_json::to_string(&s.state()).unwrap();
    let back: TrustState = serde_json::from_str(&json).unwrap();
    let s2 = ContactStore::from_state(back.clone(), TrustConfig::default()).unwrap();
    assert_eq!(s2.state(), s.state());
    let mut bad = back.clone();
    bad.contacts.push(bad.contacts[0].clone());
    assert!(matches!(
        ContactStore::from_state(bad, TrustConfig::default()),
        Err(TrustStateError::Duplicate(_))
    ));
    let mut bad = back;
    bad.contacts
        .iter_mut()
        .for_each(|c| c.trust_level = TrustLevel::Trusted);
    assert!(matches!(
        ContactStore::from_state(bad, TrustConfig::default()),
        Err(TrustStateError::RevokedNotBlocked(_))
    ));
}

#[test]
fn levels_and_types_parse_case_insensitively() {
    assert_eq!(
        "Trusted".parse::<TrustLevel>().unwrap(),
        TrustLevel::Trusted
    );
    assert_eq!(
        "BLOCKED".parse::<TrustLevel>().unwrap(),
        TrustLevel::Blocked
    );
    assert!(
        "superb"
            .parse::<TrustLevel>()
            .unwrap_err()
            .to_string()
            .contains("valid values")
    );
    assert_eq!(
        "Pinned".parse::<IdentityType>().unwrap(),
        IdentityType::Pinned
    );
    assert!("x".parse::<IdentityType>().is_err());
    assert_eq!(TrustDecision::AcceptWithFlag.as_str(), "accept_with_flag");
    assert_eq!(TrustDecision::AcceptWithFlag.title(), "AcceptWithFlag");
    assert!(TrustLevel::Blocked < TrustLevel::Unknown && TrustLevel::Known < TrustLevel::Trusted);
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, TrustLevel),
    SetTrust(u8, TrustLevel),
    SetType(u8, IdentityType),
    Remove(u8),
    Revoke(u8),
    AddMachine(u8, u8, bool),
    RemoveMachine(u8, u8),
    Pin(u8, u8),
    Unpin(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let level = prop::sample::select(TrustLevel::ALL.to_vec());
    let ty = prop::sample::select(IdentityType::ALL.to_vec());
    let id = 0u8..12;
    prop_oneof![
        (id.clone(), level.clone()).prop_map(|(i, l)| Op::Add(i, l)),
        (id.clone(), level).prop_map(|(i, l)| Op::SetTrust(i, l)),
        (id.clone(), ty).prop_map(|(i, t)| Op::SetType(i, t)),
        id.clone().prop_map(Op::Remove),
        id.clone().prop_map(Op::Revoke),
        (id.clone(), 0u8..6, any::<bool>()).prop_map(|(i, k, p)| Op::AddMachine(i, k, p)),
        (id.clone(), 0u8..6).prop_map(|(i, k)| Op::RemoveMachine(i, k)),
        (id.clone(), 0u8..6).prop_map(|(i, k)| Op::Pin(i, k)),
        (id, 0u8..6).prop_map(|(i, k)| Op::Unpin(i, k)),
    ]
}

proptest! {
    /// Caps hold, revocation is final, a pinned contact is accepted only from a pinned
    /// machine, and the saved state always loads back to the same store.
    #[test]
    fn store_invariants(ops in prop::collection::vec(op(), 0..200)) {
        let cfg = TrustConfig { max_contacts: 6, max_machines_per_contact: 3, max_revocations: 4, ..TrustConfig::default() };
        let mut s = ContactStore::new(cfg.clone());
        let mut ever_revoked = std::collections::BTreeSet::new();
        for (t, o) in ops.into_iter().enumerate() {
            let now = t as u64;
            match o {
                Op::Add(i, l) => { let _ = s.add(a(i), l, None, now); }
                Op::SetTrust(i, l) => { let _ = s.set_trust(a(i), l, now); }
                Op::SetType(i, ty) => { let _ = s.set_identity_type(a(i), ty, now); }
                Op::Remove(i) => { let _ = s.remove(&a(i)); }
                Op::Revoke(i) => { if s.revoke(a(i), "r".into(), now).is_ok() { ever_revoked.insert(i); } }
                Op::AddMachine(i, k, p) => { let _ = s.add_machine(a(i), m(k), None, Some(p), now); }
                Op::RemoveMachine(i, k) => { let _ = s.remove_machine(&a(i), &m(k)); }
                Op::Pin(i, k) => { s.pin(&a(i), &m(k)); }
                Op::Unpin(i, k) => { s.unpin(&a(i), &m(k)); }
            }
            prop_assert!(s.len() <= cfg.max_contacts);
            prop_assert!(s.revocations().count() <= cfg.max_revocations);
            for c in s.contacts() {
                prop_assert!(c.machines.len() <= cfg.max_machines_per_contact);
            }
            for i in &ever_revoked {
                prop_assert_eq!(s.level(&a(*i)), TrustLevel::Blocked);
                prop_assert_eq!(s.evaluate(&a(*i), &m(0)), TrustDecision::RejectBlocked);
            }
            for c in s.contacts() {
                if c.identity_type == IdentityType::Pinned && c.trust_level != TrustLevel::Blocked && !s.is_revoked(&c.agent_id) {
                    for k in 0..6 {
                        let pinned = c.machine(&m(k)).is_some_and(|r| r.pinned);
                        prop_assert_eq!(s.evaluate(&c.agent_id, &m(k)) == TrustDecision::Accept, pinned);
                    }
                }
            }
        }
        let back = ContactStore::from_state(s.state(), cfg).unwrap();
        prop_assert_eq!(back.state(), s.state());
    }
}
