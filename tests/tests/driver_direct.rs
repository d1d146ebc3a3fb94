//! Direct messages between tokio agents over real QUIC on 127.0.0.1.

use std::time::Duration;

use x0x_driver_tokio::proto::AgentId;
use x0x_driver_tokio::proto::direct::DirectError;
use x0x_driver_tokio::{Agent, DirectOptions, DirectPath, Error, PathPreference};
use x0x_tests::{addr, joined_agent, within};

/// Waits until `agent` has discovered `target` (and its ML-KEM key when `kem`): announcements
/// arrive by gossip, the KEM record right after the identity announcement. The cache is read
/// again on every agent event (`AgentDiscovered` wakes it for the identity); the KEM record has
/// no event of its own, so for it the wait also wakes every 20 ms. `within` bounds it all.
async fn wait_known(agent: &Agent, target: AgentId, kem: bool) {
    let mut events = agent.events().await.unwrap();
    within(async {
        loop {
            let known = agent.discovered_agents().await.unwrap();
            if known
                .iter()
                .any(|d| d.agent_id == target && (!kem || d.kem_public_key.is_some()))
            {
                return;
            }
            if let Ok(None) = tokio::time::timeout(Duration::from_millis(20), events.recv()).await {
                // A watcher that fell behind is dropped: watch again.
                events = agent.events().await.unwrap();
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_connected_path_between_two_agents_delivers_with_receipt() {
    let a = joined_agent(vec![]).await;
    let b = joined_agent(vec![addr(&a).await]).await;
    let (aid, bid) = (a.agent_id(), b.agent_id());
    wait_known(&a, bid, false).await;

    let receipt = within(a.send_direct(bid, b"hello b".to_vec()))
        .await
        .expect("delivered");
    assert_eq!(receipt.recipient, bid);
    assert_eq!(receipt.path, DirectPath::Connected);
    let m = within(b.recv_direct()).await.expect("b receives");
    assert_eq!(m.request_id, receipt.request_id);
    assert_eq!(m.sender, aid);
    assert_eq!(m.sender_machine, a.machine_id());
    assert_eq!(m.path, DirectPath::Connected);
    assert_eq!(&m.payload[..], b"hello b");

    // And back.
    wait_known(&b, aid, false).await;
    let r2 = within(b.send_direct(aid, b"hello a".to_vec()))
        .await
        .expect("delivered");
    let m2 = within(a.recv_direct()).await.expect("a receives");
    assert_eq!((m2.request_id, m2.sender), (r2.request_id, bid));

    // Typed refusals.
    let stranger = x0x_driver_tokio::proto::identity::AgentKeypair::from_seed([42; 32]).agent_id();
    assert!(matches!(
        a.send_direct(stranger, b"?".to_vec()).await,
        Err(Error::DirectSend(DirectError::RecipientUnknown(x))) if x == stranger
    ));
    assert!(matches!(
        a.send_direct(bid, vec![0; 64 * 1024]).await,
        Err(Error::DirectSend(DirectError::PayloadTooLarge { .. }))
    ));

    within(b.shutdown()).await.unwrap();
    within(a.shutdown()).await.unwrap();
}

/// Three agents joined as a line (B to A, C to B), as in `driver_pubsub`. Note: HyParView's
/// FORWARDJOIN usually makes A and C neighbours too in so small a network, so this checks the
/// sealed path end to end over real QUIC, not that B relays it; relaying by non-recipients is
/// checked by the core test `direct_sealed_path_delivers_through_the_mesh`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_sealed_path_between_three_agents() {
    let a = joined_agent(vec![]).await;
    let b = joined_agent(vec![addr(&a).await]).await;
    let c = joined_agent(vec![addr(&b).await]).await;
    let (aid, cid) = (a.agent_id(), c.agent_id());
    wait_known(&a, cid, true).await;

    let sealed = DirectOptions {
        path: PathPreference::Sealed,
        lifetime: None,
    };
    let receipt = within(a.send_direct_with(cid, b"through b".to_vec().into(), sealed))
        .await
        .expect("delivered");
    assert_eq!(receipt.path, DirectPath::Sealed);
    let m = within(c.recv_direct()).await.expect("c receives");
    assert_eq!(m.request_id, receipt.request_id);
    assert_eq!(m.sender, aid);
    assert_eq!(m.sender_machine, a.machine_id());
    assert_eq!(m.path, DirectPath::Sealed);
    assert_eq!(&m.payload[..], b"through b");

    for agent in [&c, &b, &a] {
        within(agent.shutdown()).await.unwrap();
    }
}
