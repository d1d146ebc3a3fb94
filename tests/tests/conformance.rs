//! One conformance suite, run against both drivers: every scenario is written once, generic
//! over the driver's [`Runtime`], and the `conformance!` macro instantiates it as
//! `tokio_<name>` and `smol_<name>` tests, each driven by its own runtime's `block_on`.
//!
//! Waits are on events (`AgentDiscovered`, `NeighborUp`, a subscription's next message, a
//! close) with one bound, [`WAIT`]; nothing sleeps to let time pass.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;
use x0x_driver::identity::{AgentId, UserKeypair};
use x0x_driver::network::NetworkConfig;
use x0x_driver::runtime::{Runtime, timeout};
use x0x_driver::tls;
use x0x_driver::{Agent, AgentBuilder, AgentEvent, CloseCode, Events};
use x0x_proto::identity::MachineKeypair;
use x0x_proto::wire::MAX_FRAME_LEN;

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(15);

fn loopback(bootstrap: Vec<SocketAddr>) -> NetworkConfig {
    NetworkConfig {
        bind_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        bootstrap_nodes: bootstrap,
        ..Default::default()
    }
}

/// Runs `fut`, failing the test if it takes longer than [`WAIT`].
async fn within<R: Runtime + Default, T>(fut: impl Future<Output = T>) -> T {
    timeout(&R::default(), WAIT, fut)
        .await
        .expect("timed out waiting")
}

fn builder<R: Runtime + Default>(bootstrap: Vec<SocketAddr>) -> AgentBuilder<R> {
    Agent::<R>::builder().with_network_config(loopback(bootstrap))
}

async fn joined<R: Runtime + Default>(b: AgentBuilder<R>) -> (Agent<R>, Events) {
    let agent = b.build().await.expect("build agent");
    let events = agent.events().await.expect("events");
    within::<R, _>(agent.join_network()).await.expect("join");
    (agent, events)
}

async fn addr<R: Runtime>(a: &Agent<R>) -> SocketAddr {
    a.bound_addr().await.expect("bound address")
}

/// Waits until `events` yields an event matching `pred`.
async fn wait_event<R: Runtime + Default>(events: &mut Events, pred: impl Fn(&AgentEvent) -> bool) {
    within::<R, _>(async {
        loop {
            let ev = events.recv().await.expect("event stream ended");
            if pred(&ev) {
                return;
            }
        }
    })
    .await;
}

async fn discovered<R: Runtime + Default>(events: &mut Events, agent: AgentId) {
    wait_event::<R>(events, |e| {
        *e == AgentEvent::AgentDiscovered { agent_id: agent }
    })
    .await;
}

async fn shutdown<R: Runtime + Default>(agents: &[&Agent<R>]) {
    for a in agents {
        within::<R, _>(a.shutdown()).await.expect("shutdown");
    }
}

// ----- the scenarios -----

/// Seed scenario 1: A announces; B, bootstrapped to A, discovers it with the machine key.
async fn announce_and_discover<R: Runtime + Default>() {
    let (a, _) = joined(builder::<R>(vec![])).await;
    let (b, mut b_events) = joined(builder::<R>(vec![addr(&a).await])).await;
    a.announce_identity(false, false).await.unwrap();
    discovered::<R>(&mut b_events, a.agent_id()).await;
    let list = b.discovered_agents().await.unwrap();
    let entry = list.iter().find(|d| d.agent_id == a.agent_id()).unwrap();
    assert_eq!(entry.machine_id, a.machine_id());
    assert_eq!(entry.user_id, None);
    assert!(entry.announced_at > 0);
    assert_eq!(entry.machine_public_key.len(), 1952);
    assert!(entry.addresses.contains(&addr(&a).await));
    shutdown(&[&b, &a]).await;
}

/// Seed scenario 2: B joins after A's announcement (heartbeat far away) and still lists A:
/// the catch-up from its neighbour, not the heartbeat, brings it.
async fn late_joiner_discovers_earlier_agent<R: Runtime + Default>() {
    let (a, _) = joined(builder::<R>(vec![]).with_heartbeat_interval(300)).await;
    a.announce_identity(false, false).await.unwrap();
    let (b, mut b_events) = joined(builder::<R>(vec![addr(&a).await])).await;
    discovered::<R>(&mut b_events, a.agent_id()).await;
    assert!(
        b.discovered_agents()
            .await
            .unwrap()
            .iter()
            .any(|d| d.agent_id == a.agent_id())
    );
    shutdown(&[&b, &a]).await;
}

/// Seed scenario 3: once cached, `find_agent` answers from the cache with A's address.
async fn find_agent_from_cache<R: Runtime + Default>() {
    let (a, _) = joined(builder::<R>(vec![])).await;
    let (b, mut b_events) = joined(builder::<R>(vec![addr(&a).await])).await;
    a.announce_identity(false, false).await.unwrap();
    discovered::<R>(&mut b_events, a.agent_id()).await;
    let found = within::<R, _>(b.find_agent(a.agent_id())).await.unwrap();
    assert_eq!(found, Some(vec![addr(&a).await]));
    shutdown(&[&b, &a]).await;
}

/// Seed scenario 4: A discloses its user (with consent); B finds A by user id. Without
/// consent the disclosure is refused.
async fn find_agents_by_user<R: Runtime + Default>() {
    let user = UserKeypair::generate().unwrap();
    let uid = user.user_id();
    let (a, _) = joined(builder::<R>(vec![]).with_user_key(user)).await;
    assert!(a.announce_identity(true, false).await.is_err());
    a.announce_identity(true, true).await.unwrap();
    let (b, mut b_events) = joined(builder::<R>(vec![addr(&a).await])).await;
    discovered::<R>(&mut b_events, a.agent_id()).await;
    // B may first learn A from its join-time announcement (no user) and the disclosing one
    // a frame later; no event marks an update, so poll the cache (bounded by WAIT).
    let rt = R::default();
    let by_user = within::<R, _>(async {
        loop {
            let v = b.find_agents_by_user(uid).await.unwrap();
            if !v.is_empty() {
                return v;
            }
            rt.sleep_until(std::time::Instant::now() + Duration::from_millis(50))
                .await;
        }
    })
    .await;
    assert_eq!(by_user[0].agent_id, a.agent_id());
    assert_eq!(by_user[0].user_id, Some(uid));
    shutdown(&[&b, &a]).await;
}

/// Rendezvous: A and B know only C; B looks A up while A advertises.
async fn rendezvous_finds_an_advertised_agent<R: Runtime + Default>() {
    let (c, _) = joined(builder::<R>(vec![])).await;
    let c_addr = addr(&c).await;
    let (a, _) = joined(builder::<R>(vec![c_addr])).await;
    let (b, _) = joined(builder::<R>(vec![c_addr])).await;
    let lookup = b.find_agent_rendezvous(a.agent_id(), 10);
    let advertise = a.advertise_identity(3_600_000);
    let (found, advertised) = futures_lite::future::zip(lookup, advertise).await;
    advertised.unwrap();
    let found = found.unwrap().expect("rendezvous record found");
    assert!(found.contains(&addr(&a).await), "{found:?}");
    shutdown(&[&a, &b, &c]).await;
}

/// Pub/sub across a line A–B–C: A's message reaches C through B, once, signed by A.
async fn pubsub_crosses_a_line_of_three<R: Runtime + Default>() {
    let (a, mut a_events) = joined(builder::<R>(vec![])).await;
    let (b, mut b_events) = joined(builder::<R>(vec![addr(&a).await])).await;
    wait_event::<R>(
        &mut a_events,
        |e| matches!(e, AgentEvent::NeighborUp { machine_id } if *machine_id == b.machine_id()),
    )
    .await;
    let (c, _) = joined(builder::<R>(vec![addr(&b).await])).await;
    wait_event::<R>(
        &mut b_events,
        |e| matches!(e, AgentEvent::NeighborUp { machine_id } if *machine_id == c.machine_id()),
    )
    .await;
    let mut sub_c = c.subscribe("line").await.unwrap();
    let _sub_b = b.subscribe("line").await.unwrap();
    let _sub_a = a.subscribe("line").await.unwrap();
    // Publish until the topic tree carries it to C (subscriptions spread by frames too).
    let msg = within::<R, _>(async {
        let mut i = 0u32;
        loop {
            a.publish("line", format!("hello {i}").into_bytes())
                .await
                .unwrap();
            let rt = R::default();
            let next = timeout(&rt, Duration::from_millis(500), sub_c.recv()).await;
            if let Some(m) = next {
                return m.expect("subscription open");
            }
            i += 1;
        }
    })
    .await;
    assert_eq!(msg.sender, a.agent_id());
    assert!(msg.payload.starts_with(b"hello "));
    shutdown(&[&c, &b, &a]).await;
}

/// Shutdown and restart with the same key files keeps the same ids.
async fn restart_with_key_files_keeps_ids<R: Runtime + Default>() {
    let dir = TempDir::new().unwrap();
    let make = || {
        builder::<R>(vec![])
            .with_machine_key(dir.path().join("machine.key"))
            .with_agent_key_path(dir.path().join("agent.key"))
    };
    let first = make().build().await.unwrap();
    let ids = (first.agent_id(), first.machine_id());
    within::<R, _>(first.shutdown()).await.unwrap();
    // The shut-down agent answers no more.
    assert!(first.discovered_agents().await.is_err());
    let second = make().build().await.unwrap();
    assert_eq!((second.agent_id(), second.machine_id()), ids);
    shutdown(&[&second]).await;
}

/// A hostile peer: garbage bytes, then an oversized length prefix, each get its connection
/// closed with a counted reason, and the agent keeps serving an honest peer.
async fn hostile_peer_is_closed_and_agent_keeps_serving<R: Runtime + Default>() {
    let (a, _) = joined(builder::<R>(vec![])).await;
    let a_addr = addr(&a).await;
    let key = MachineKeypair::generate().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        R::default().quinn_runtime(),
    )
    .unwrap();
    ep.set_default_client_config(tls::client_config(&key, &NetworkConfig::default()).unwrap());
    let too_long = u32::try_from(MAX_FRAME_LEN + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    let garbage = [&8u32.to_be_bytes()[..], &[0xff; 8]].concat();
    let mut codes = Vec::new();
    for bytes in [garbage, too_long] {
        let conn = within::<R, _>(ep.connect(a_addr, &tls::server_name(None)).unwrap())
            .await
            .expect("handshake");
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&bytes).await.unwrap();
        match within::<R, _>(conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(c) => {
                codes.push(CloseCode::from_varint(c.error_code));
            }
            other => panic!("expected an application close, got {other}"),
        }
    }
    assert_eq!(
        codes,
        vec![Some(CloseCode::BadFrames), Some(CloseCode::FrameTooLarge)]
    );
    ep.close(0u32.into(), b"");
    let stats = a.stats().await.unwrap();
    assert_eq!(stats.driver.frames_too_large, 1);
    assert!(stats.node.frames_rejected.total() >= 1);
    // An honest peer still gets served.
    let (b, mut b_events) = joined(builder::<R>(vec![a_addr])).await;
    a.announce_identity(false, false).await.unwrap();
    discovered::<R>(&mut b_events, a.agent_id()).await;
    shutdown(&[&b, &a]).await;
}

/// Direct messages, connected path: A sends to B once B is discovered; B receives it with
/// the proven sender, and A gets a receipt naming the same request.
async fn direct_message_connected_path_with_receipt<R: Runtime + Default>() {
    let (a, mut a_events) = joined(builder::<R>(vec![])).await;
    let (b, _) = joined(builder::<R>(vec![addr(&a).await])).await;
    b.announce_identity(false, false).await.unwrap();
    discovered::<R>(&mut a_events, b.agent_id()).await;
    let receipt = within::<R, _>(a.send_direct(b.agent_id(), b"hello b".to_vec()))
        .await
        .expect("delivered");
    assert_eq!(receipt.recipient, b.agent_id());
    let m = within::<R, _>(b.recv_direct()).await.expect("b receives");
    assert_eq!(m.request_id, receipt.request_id);
    assert_eq!(m.sender, a.agent_id());
    assert_eq!(m.sender_machine, a.machine_id());
    assert_eq!(&m.payload[..], b"hello b");
    shutdown(&[&b, &a]).await;
}

/// Post-quantum key exchange: both ends of a live connection read X25519MLKEM768 as the
/// group their handshake negotiated, and a peer offering only classical X25519 finishes its
/// handshake, is closed with `ClassicalKeyExchange` and is counted, never reaching the node.
async fn key_exchange_is_post_quantum_and_classical_peers_are_refused<R: Runtime + Default>() {
    let (a, mut a_events) = joined(builder::<R>(vec![])).await;
    let a_addr = addr(&a).await;
    let (b, _) = joined(builder::<R>(vec![a_addr])).await;
    wait_event::<R>(
        &mut a_events,
        |e| matches!(e, AgentEvent::NeighborUp { machine_id } if *machine_id == b.machine_id()),
    )
    .await;
    for (agent, peer) in [(&a, &b), (&b, &a)] {
        let peers = agent.peers().await.unwrap();
        let conn = peers.iter().find(|p| p.machine_id == peer.machine_id());
        assert_eq!(
            conn.and_then(|p| p.key_exchange.as_deref()),
            Some("X25519MLKEM768")
        );
    }
    let key = MachineKeypair::generate().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        R::default().quinn_runtime(),
    )
    .unwrap();
    ep.set_default_client_config(
        tls::classical_client_config(&key, &NetworkConfig::default()).unwrap(),
    );
    let conn = within::<R, _>(ep.connect(a_addr, &tls::server_name(None)).unwrap())
        .await
        .expect("the classical handshake completes, to be refused by name");
    match within::<R, _>(conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
            CloseCode::from_varint(c.error_code),
            Some(CloseCode::ClassicalKeyExchange)
        ),
        other => panic!("expected an application close, got {other}"),
    }
    ep.close(0u32.into(), b"");
    // The refusal reaches A's driver as an event just after the close; no agent event marks
    // it, so poll the counter (bounded by WAIT).
    let rt = R::default();
    let stats = within::<R, _>(async {
        loop {
            let stats = a.stats().await.unwrap();
            if stats.driver.classical_key_exchange_refused > 0 {
                break stats;
            }
            rt.sleep_until(std::time::Instant::now() + Duration::from_millis(20))
                .await;
        }
    })
    .await;
    assert_eq!(stats.driver.classical_key_exchange_refused, 1);
    assert_eq!(a.peers().await.unwrap().len(), 1, "only b is connected");
    shutdown(&[&b, &a]).await;
}

// ----- instantiation per driver -----

fn block_on_tokio<F: Future>(fut: F) -> F::Output {
    ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

fn block_on_smol<F: Future>(fut: F) -> F::Output {
    ::smol::block_on(fut)
}

/// One module of tests per driver, each scenario listed once.
macro_rules! conformance {
    ($($scenario:ident),+ $(,)?) => {
        conformance!(@driver tokio, x0x_driver_tokio::TokioRuntime, block_on_tokio: $($scenario),+);
        conformance!(@driver smol, x0x_driver_smol::SmolRuntime, block_on_smol: $($scenario),+);
    };
    (@driver $prefix:ident, $runtime:ty, $block_on:ident: $($scenario:ident),+) => {
        mod $prefix {
            $(
                #[test]
                fn $scenario() {
                    super::$block_on(super::$scenario::<$runtime>());
                }
            )+
        }
    };
}

conformance!(
    announce_and_discover,
    late_joiner_discovers_earlier_agent,
    find_agent_from_cache,
    find_agents_by_user,
    rendezvous_finds_an_advertised_agent,
    pubsub_crosses_a_line_of_three,
    restart_with_key_files_keeps_ids,
    hostile_peer_is_closed_and_agent_keeps_serving,
    direct_message_connected_path_with_receipt,
    key_exchange_is_post_quantum_and_classical_peers_are_refused,
);
