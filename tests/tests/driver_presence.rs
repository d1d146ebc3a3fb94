//! Presence through the agent: a connected peer comes online at once, views filter by trust,
//! look-ups find friends of friends, and a peer that leaves goes offline saying so.

use std::time::Duration;

use x0x_driver_tokio::proto::node::TrustChange;
use x0x_driver_tokio::proto::trust::TrustLevel;
use x0x_driver_tokio::{AgentEvent, OfflineReason, PresenceEvents, Visibility};
use x0x_tests::{addr, joined_agent, within};

/// Waits for a presence event matching `pred`.
async fn wait_presence(
    events: &mut PresenceEvents,
    pred: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    within(async {
        loop {
            let ev = events.recv().await.expect("presence stream ended");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_comes_online_is_found_and_goes_offline_when_it_leaves() {
    let a = joined_agent(vec![]).await;
    let mut a_presence = a.presence_events().await.unwrap();
    let b = joined_agent(vec![addr(&a).await]).await;
    let mut b_presence = b.presence_events().await.unwrap();
    let c = joined_agent(vec![addr(&b).await]).await;
    let (ib, ic) = (b.agent_id(), c.agent_id());

    // B's first beacon rides its new connection: no beacon interval to wait for.
    let online = wait_presence(
        &mut a_presence,
        |e| matches!(e, AgentEvent::AgentOnline { agent_id, .. } if *agent_id == ib),
    )
    .await;
    let AgentEvent::AgentOnline {
        machine_id,
        reachable,
        addresses,
        ..
    } = online
    else {
        unreachable!()
    };
    assert_eq!(machine_id, b.machine_id());
    assert!(reachable, "A is connected to B");
    assert!(addresses.contains(&addr(&b).await), "{addresses:?}");

    let listed = a.online_agents(Visibility::Network).await.unwrap();
    assert!(listed.iter().any(|o| o.agent_id == ib), "{listed:?}");
    assert_eq!(
        a.presence_status(ib).await.unwrap().map(|o| o.machine_id),
        Some(b.machine_id())
    );

    // C is B's peer: once B holds C's record, A's look-up reaches it through B (or A holds it
    // itself, if it met C). Asked earlier, B could answer before it knew C (a CI failure).
    wait_presence(
        &mut b_presence,
        |e| matches!(e, AgentEvent::AgentOnline { agent_id, .. } if *agent_id == ic),
    )
    .await;
    let found = within(a.discover_agent_by_id(ic, 2, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(found.map(|o| o.machine_id), Some(c.machine_id()));
    let foaf = within(a.discover_agents_foaf(2, Duration::from_secs(2), Visibility::Network))
        .await
        .unwrap();
    assert!(foaf.iter().any(|o| o.agent_id == ic), "{foaf:?}");

    // B shuts down: A hears it leave.
    within(b.shutdown()).await.unwrap();
    let offline = wait_presence(
        &mut a_presence,
        |e| matches!(e, AgentEvent::AgentOffline { agent_id, .. } if *agent_id == ib),
    )
    .await;
    assert_eq!(
        offline,
        AgentEvent::AgentOffline {
            agent_id: ib,
            reason: OfflineReason::Left
        }
    );
    assert!(
        !a.online_agents(Visibility::Network)
            .await
            .unwrap()
            .iter()
            .any(|o| o.agent_id == ib)
    );
    within(c.shutdown()).await.unwrap();
    within(a.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_follow_trust_blocked_hidden_social_only_contacts() {
    let a = joined_agent(vec![]).await;
    let mut a_presence = a.presence_events().await.unwrap();
    let b = joined_agent(vec![addr(&a).await]).await;
    let ib = b.agent_id();
    wait_presence(
        &mut a_presence,
        |e| matches!(e, AgentEvent::AgentOnline { agent_id, .. } if *agent_id == ib),
    )
    .await;
    let has_b = |v: Vec<x0x_driver_tokio::OnlineAgent>| v.iter().any(|o| o.agent_id == ib);

    // Not a contact: in the network view, not in the social one.
    assert!(has_b(a.online_agents(Visibility::Network).await.unwrap()));
    assert!(!has_b(a.online_agents(Visibility::Social).await.unwrap()));

    let set = |level| TrustChange::SetLevel { agent: ib, level };
    a.change_trust(set(TrustLevel::Known)).await.unwrap();
    assert!(has_b(a.online_agents(Visibility::Social).await.unwrap()));

    a.change_trust(set(TrustLevel::Blocked)).await.unwrap();
    assert!(!has_b(a.online_agents(Visibility::Network).await.unwrap()));
    assert!(a.presence_status(ib).await.unwrap().is_none());
    let found = within(a.discover_agent_by_id(ib, 2, Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(found.is_none(), "a blocked agent is never found");
    within(b.shutdown()).await.unwrap();
    within(a.shutdown()).await.unwrap();
}
