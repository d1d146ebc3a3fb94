//! Announcements and discovery through whole nodes.

use super::*;

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
