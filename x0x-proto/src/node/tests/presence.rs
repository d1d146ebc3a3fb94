//! Presence through whole nodes: beacons, the φ detector, refusals, FOAF queries, views.

use super::*;
use crate::node::{TrustChange, Visibility};
use crate::presence::OfflineReason;
use crate::trust::TrustLevel;
use crate::wire::PresenceRecord;

fn online_events(net: &testnet::Net, at: usize) -> Vec<AgentId> {
    net.events
        .iter()
        .filter(|(i, _)| *i == at)
        .filter_map(|(_, e)| match e {
            Event::AgentOnline { agent_id, .. } => Some(*agent_id),
            _ => None,
        })
        .collect()
}

fn offline_events(net: &testnet::Net, at: usize) -> Vec<(AgentId, OfflineReason)> {
    net.events
        .iter()
        .filter(|(i, _)| *i == at)
        .filter_map(|(_, e)| match e {
            Event::AgentOffline { agent_id, reason } => Some((*agent_id, *reason)),
            _ => None,
        })
        .collect()
}

fn agent_of(net: &testnet::Net, i: usize) -> AgentId {
    net.nodes[i].as_ref().unwrap().agent_id()
}

#[test]
fn connected_agents_come_online_at_once_and_a_crash_is_detected_within_three_beacons() {
    let mut net = testnet::Net::new(8, |_| Config::default());
    net.run_for(Duration::from_secs(5));
    let crashed = agent_of(&net, 5);
    // Every node's online set holds its connected peers' agents.
    for i in 0..8 {
        let peers = net.nodes[i].as_ref().unwrap().connected_peers();
        let online: Vec<MachineId> = {
            let n = net.nodes[i].as_ref().unwrap();
            n.online_agents(net.now, Visibility::Network)
                .into_iter()
                .map(|a| a.machine_id)
                .collect()
        };
        for p in peers {
            assert!(online.contains(&p), "node {i} lacks peer {p}");
        }
    }
    net.run_for(Duration::from_secs(120));
    let watchers: Vec<usize> = (0..8)
        .filter(|&i| i != 5 && net.nodes[i].as_ref().unwrap().is_online(&crashed))
        .collect();
    assert!(!watchers.is_empty());
    let crash_at = net.now;
    net.crash(5);
    net.run_for(Duration::from_secs(95));
    // Within three beacon periods every node that had it online reports it: failed where it
    // stayed connected (φ) or a neighbour (SWIM), out of view where the connection closed.
    for &w in &watchers {
        let off = offline_events(&net, w);
        let ours: Vec<_> = off.iter().filter(|(a, _)| *a == crashed).collect();
        assert_eq!(ours.len(), 1, "node {w} reports the crash once: {off:?}");
        assert_ne!(ours[0].1, OfflineReason::Left, "node {w}");
        assert!(!net.nodes[w].as_ref().unwrap().is_online(&crashed));
    }
    assert!(
        watchers
            .iter()
            .any(|&w| offline_events(&net, w).contains(&(crashed, OfflineReason::Failed))),
        "its neighbours say failed"
    );
    let _ = crash_at;
    // Nobody alive was reported failed.
    let alive: Vec<AgentId> = (0..8)
        .filter(|&i| i != 5)
        .map(|i| agent_of(&net, i))
        .collect();
    for w in 0..8 {
        if w == 5 {
            continue;
        }
        for (a, r) in offline_events(&net, w) {
            assert!(
                !(alive.contains(&a) && r == OfflineReason::Failed),
                "false failure of {a} at {w}"
            );
        }
    }
}

#[test]
fn steady_beacons_never_look_like_a_failure() {
    let mut net = testnet::Net::new(6, |_| Config::default());
    net.run_for(Duration::from_secs(1800));
    for w in 0..6 {
        let failed: Vec<_> = offline_events(&net, w)
            .into_iter()
            .filter(|(_, r)| *r != OfflineReason::OutOfView)
            .collect();
        assert!(failed.is_empty(), "node {w}: {failed:?}");
    }
    let sent = net.sum(|n| n.stats().presence.beacons_sent);
    let accepted = net.sum(|n| n.stats().presence.beacons_accepted);
    assert!(sent > 6 * 50, "beacons every 30 s: {sent}");
    assert_eq!(net.sum(|n| n.stats().presence.rejected.total()), 0);
    assert!(accepted > 0);
}

/// Signs a beacon body with `machine` (seed) claiming `agent`.
fn beacon(seed: u8, record: &PresenceRecord) -> Bytes {
    let key = Identity::from_seed([seed; 32]).machine;
    let signed = wire::Signed::sign(&key, Domain::PresenceBeacon, record, true);
    Frame::from(wire::Beacon { record: signed })
        .encode()
        .unwrap()
}

#[test]
fn forged_replayed_stale_and_flooding_beacons_are_refused_and_counted() {
    let mut a = node(1, Config::default());
    let mut b = node(2, Config::default());
    connect(&mut a, &mut b, t(0));
    drain_events(&mut a);
    let now = t(1000);
    let secs = now.as_secs();
    let rec = |machine: MachineId, seq: u64, expires: u64| PresenceRecord {
        agent: b.agent_id(),
        machine,
        addresses: vec![],
        since: 1,
        expires,
        seq,
    };
    let bm = b.machine_id();
    // Signed by another machine, sent on b's connection.
    let _ = a.handle_frame(now, bm, &beacon(9, &rec(bm, 5, secs + 60)));
    // Right signer, stale.
    let _ = a.handle_frame(now, bm, &beacon(2, &rec(bm, 6, secs - 1)));
    // A genuine one, then its replay.
    let good = beacon(2, &rec(bm, 7, secs + 60));
    let _ = a.handle_frame(now, bm, &good);
    let _ = a.handle_frame(now, bm, &good);
    // A flood of fresh ones: the burst (3 in all, the first beacon at connect included) is
    // spent, the rest refused.
    for seq in 8..20 {
        let _ = a.handle_frame(now, bm, &beacon(2, &rec(bm, seq, secs + 60)));
    }
    let r = a.stats().presence.rejected;
    assert_eq!(r.wrong_signer, 1, "{r:?}");
    assert_eq!(r.stale, 1, "{r:?}");
    assert!(r.replay >= 1, "{r:?}");
    assert!(r.rate_limited >= 10, "{r:?}");
    assert!(a.check_invariants().is_ok());
}

fn finished(
    events: &[Event],
    q: crate::presence::PresenceQueryId,
) -> Option<Vec<crate::presence::OnlineAgent>> {
    events.iter().find_map(|e| match e {
        Event::PresenceQueryFinished { query, agents } if *query == q => Some(agents.clone()),
        _ => None,
    })
}

#[test]
fn foaf_finds_an_agent_two_hops_away_and_browses_the_neighbourhood() {
    // A line a - b - c, connected by hand (membership would connect everyone).
    let mut nodes = vec![node(1, keep()), node(2, keep()), node(3, keep())];
    let ids: Vec<MachineId> = nodes.iter().map(Node::machine_id).collect();
    for (x, y) in [(0, 1), (1, 2)] {
        nodes[x].handle_connected(t(0), ids[y], addr(y as u16), Direction::Outbound);
        nodes[y].handle_connected(t(0), ids[x], addr(x as u16), Direction::Inbound);
    }
    let _ = pump_all(&mut nodes, t(0));
    let far = nodes[2].agent_id();
    assert!(
        nodes[0].presence_status(t(0), &far).is_none(),
        "a holds no record of c"
    );
    let q = nodes[0]
        .discover_agent_by_id(t(1), far, 2, Duration::from_secs(5))
        .unwrap();
    let _ = pump_all(&mut nodes, t(1));
    let found =
        finished(&drain_events(&mut nodes[0]), q).expect("the find ended at the first record");
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].agent_id, found[0].reachable), (far, false));
    // Browsing, with a TTL over the cap (clamped), ends at its timeout with what b holds.
    let q = nodes[0]
        .discover_agents_foaf(t(2000), 200, Duration::from_secs(2))
        .unwrap();
    let _ = pump_all(&mut nodes, t(2000));
    nodes[0].handle_timeout(t(5000));
    let browsed = finished(&drain_events(&mut nodes[0]), q).expect("the browse ended");
    assert!(browsed.iter().any(|a| a.agent_id == far));
    // b answers with its own record too; a's own record (which b holds) never comes back.
    let (me, mid) = (nodes[0].agent_id(), nodes[1].agent_id());
    assert!(browsed.iter().any(|a| a.agent_id == mid), "{browsed:?}");
    assert!(browsed.iter().all(|a| a.agent_id != me), "{browsed:?}");
    assert_eq!(nodes[0].stats().presence.ttl_clamped, 1);
    // A duplicate query copy is dropped, not answered twice.
    assert!(
        nodes
            .iter()
            .map(|n| n.stats().presence.queries_answered)
            .sum::<u64>()
            >= 2
    );
    for n in &nodes {
        n.check_invariants().unwrap();
    }
}

#[test]
fn views_hide_blocked_agents_and_social_shows_contacts_only() {
    let mut net = testnet::Net::new(4, |_| Config::default());
    net.run_for(Duration::from_secs(10));
    let online = |net: &testnet::Net, v| {
        net.nodes[0]
            .as_ref()
            .unwrap()
            .online_agents(net.now, v)
            .into_iter()
            .map(|a| a.agent_id)
            .collect::<Vec<_>>()
    };
    let all = online(&net, Visibility::Network);
    assert!(!all.is_empty());
    assert!(
        online(&net, Visibility::Social).is_empty(),
        "no contacts yet"
    );
    let x = all[0];
    net.with(0, |n, now| {
        n.change_trust(
            now,
            TrustChange::SetLevel {
                agent: x,
                level: TrustLevel::Known,
            },
        )
        .unwrap();
    });
    assert_eq!(online(&net, Visibility::Social), vec![x]);
    net.with(0, |n, now| {
        n.change_trust(
            now,
            TrustChange::SetLevel {
                agent: x,
                level: TrustLevel::Blocked,
            },
        )
        .unwrap();
    });
    assert!(!online(&net, Visibility::Network).contains(&x));
    assert!(
        net.nodes[0]
            .as_ref()
            .unwrap()
            .presence_status(net.now, &x)
            .is_none()
    );
    let _ = online_events(&net, 0);
}

#[test]
fn a_graceful_shutdown_is_reported_as_left() {
    let mut net = testnet::Net::new(4, |_| Config::default());
    net.run_for(Duration::from_secs(10));
    let leaving = agent_of(&net, 3);
    let watchers: Vec<usize> = (0..3)
        .filter(|&i| net.nodes[i].as_ref().unwrap().is_online(&leaving))
        .collect();
    net.with(3, |n, now| n.shutdown(now));
    net.run_for(Duration::from_secs(5));
    let left = watchers
        .iter()
        .filter(|&&w| offline_events(&net, w).contains(&(leaving, OfflineReason::Left)))
        .count();
    assert!(left >= 1, "a neighbour hears the leave");
}
