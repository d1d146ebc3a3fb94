//! Agents over real QUIC on 127.0.0.1: connection, pub/sub, relaying, shutdown.

use x0x_driver_tokio::{AgentEvent, Error};
use x0x_tests::{addr, joined_agent, wait_event, within};

const TOPIC: &str = "tests/pubsub";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_connect_and_exchange_messages() {
    let a = joined_agent(vec![]).await;
    let mut a_events = a.events().await.unwrap();
    let b = joined_agent(vec![addr(&a).await]).await;

    // B's join returned once A was its neighbour; A learns B from B's Join.
    let (ma, mb) = (a.machine_id(), b.machine_id());
    wait_event(&mut a_events, |e| {
        *e == AgentEvent::NeighborUp { machine_id: mb }
    })
    .await;
    let a_peers = a.peers().await.unwrap();
    let b_peers = b.peers().await.unwrap();
    assert_eq!(a_peers.len(), 1);
    assert_eq!(a_peers[0].machine_id, mb);
    assert_eq!(a_peers[0].agent_id, Some(b.agent_id()));
    assert_eq!(a_peers[0].outbound, Some(false));
    assert_eq!(b_peers.len(), 1);
    assert_eq!(b_peers[0].machine_id, ma);
    assert_eq!(b_peers[0].agent_id, Some(a.agent_id()));
    assert_eq!(b_peers[0].addr, Some(addr(&a).await));

    let mut sub_a = a.subscribe(TOPIC).await.unwrap();
    let mut sub_b = b.subscribe(TOPIC).await.unwrap();
    a.publish(TOPIC, b"from a".to_vec()).await.unwrap();
    let m = within(sub_b.recv()).await.expect("B receives");
    assert_eq!(m.payload, b"from a");
    assert_eq!(m.sender, a.agent_id());
    assert_eq!(m.topic, TOPIC);
    assert_eq!(m.via, ma);

    // A's own message reaches A's own subscription, once (hops 0), before B's.
    let own = within(sub_a.recv()).await.expect("A receives its own");
    assert_eq!((own.payload.as_slice(), own.hops), (&b"from a"[..], 0));
    b.publish(TOPIC, b"from b".to_vec()).await.unwrap();
    let m = within(sub_a.recv()).await.expect("A receives");
    assert_eq!(m.payload, b"from b");
    assert_eq!(m.sender, b.agent_id());

    // Other topics are not delivered.
    b.publish("tests/other", b"x".to_vec()).await.unwrap();
    b.publish(TOPIC, b"second".to_vec()).await.unwrap();
    let m = within(sub_a.recv()).await.expect("A receives");
    assert_eq!(m.payload, b"second");

    within(b.shutdown()).await.unwrap();
    within(a.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_crosses_a_line_of_three() {
    let a = joined_agent(vec![]).await;
    let b = joined_agent(vec![addr(&a).await]).await;
    let mut b_events = b.events().await.unwrap();
    let c = joined_agent(vec![addr(&b).await]).await;
    let mc = c.machine_id();
    wait_event(&mut b_events, |e| {
        *e == AgentEvent::NeighborUp { machine_id: mc }
    })
    .await;

    let _sub_a = a.subscribe(TOPIC).await.unwrap();
    let _sub_b = b.subscribe(TOPIC).await.unwrap();
    let mut sub_c = c.subscribe(TOPIC).await.unwrap();
    a.publish(TOPIC, b"to the end of the line".to_vec())
        .await
        .unwrap();
    let m = within(sub_c.recv()).await.expect("C receives");
    assert_eq!(m.payload, b"to the end of the line");
    assert_eq!(m.sender, a.agent_id());

    for agent in [&c, &b, &a] {
        within(agent.shutdown()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_clean_and_final() {
    let a = joined_agent(vec![]).await;
    let b = joined_agent(vec![addr(&a).await]).await;
    let mut b_events = b.events().await.unwrap();
    let mut sub = a.subscribe(TOPIC).await.unwrap();
    let a_clone = a.clone();

    let started = std::time::Instant::now();
    within(a.shutdown()).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    // Every handle sees the agent gone; subscriptions end; shutdown again is a no-op.
    assert!(matches!(a_clone.peers().await, Err(Error::Shutdown)));
    assert!(matches!(
        a_clone.publish(TOPIC, vec![1]).await,
        Err(Error::Shutdown)
    ));
    assert!(within(sub.recv()).await.is_none());
    within(a_clone.shutdown()).await.unwrap();

    // The peer notices the closed connection.
    let ma = a.machine_id();
    wait_event(&mut b_events, |e| {
        *e == AgentEvent::PeerDown { machine_id: ma }
    })
    .await;
    assert!(b.peers().await.unwrap().is_empty());
    within(b.shutdown()).await.unwrap();
}

/// Two free loopback ports (released just before use; fine on a test machine).
fn free_ports() -> (std::net::SocketAddr, std::net::SocketAddr) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_end_with_one_working_connection() {
    use x0x_driver_tokio::Agent;
    let (pa, pb) = free_ports();
    let cfg = |me, other| x0x_driver_tokio::network::NetworkConfig {
        bind_addr: Some(me),
        bootstrap_nodes: vec![other],
        ..Default::default()
    };
    let a = Agent::builder()
        .with_network_config(cfg(pa, pb))
        .build()
        .await
        .unwrap();
    let b = Agent::builder()
        .with_network_config(cfg(pb, pa))
        .build()
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.join_network(), b.join_network());
    eprintln!("join results: {ra:?} {rb:?}");
    let mut sub_b = b.subscribe(TOPIC).await.unwrap();
    let _sub_a = a.subscribe(TOPIC).await.unwrap();
    let got = within(async {
        loop {
            a.publish(TOPIC, b"both dialled".to_vec()).await.unwrap();
            if let Ok(Some(m)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), sub_b.recv()).await
            {
                return m;
            }
        }
    })
    .await;
    assert_eq!(got.payload, b"both dialled");
    let sa = a.stats().await.unwrap();
    let sb = b.stats().await.unwrap();
    eprintln!("A {:?}\nB {:?}", sa.driver, sb.driver);
    eprintln!(
        "A peers {:?}\nB peers {:?}",
        a.peers().await.unwrap(),
        b.peers().await.unwrap()
    );
    within(a.shutdown()).await.unwrap();
    within(b.shutdown()).await.unwrap();
}
