//! The QUIC transport against peers that do not play by the rules: a wrong machine behind an
//! address, garbage frames, an oversized length prefix.

use std::time::Duration;

use x0x_driver_tokio::CloseCode;
use x0x_driver_tokio::tls;
use x0x_proto::identity::MachineKeypair;
use x0x_proto::wire::MAX_FRAME_LEN;
use x0x_tests::{addr, joined_agent, raw_endpoint, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_expecting_another_machine_fails_in_the_handshake() {
    let a = joined_agent(vec![]).await;
    let key = MachineKeypair::generate().unwrap();
    let ep = raw_endpoint(&key);

    // Expecting the right machine: the handshake proves it.
    let name = tls::server_name(Some(&a.machine_id()));
    let conn = within(ep.connect(addr(&a).await, &name).unwrap())
        .await
        .expect("handshake with the expected machine");
    assert_eq!(tls::peer_machine_id(&conn), Some(a.machine_id()));
    conn.close(0u32.into(), b"");

    // The address answers with a key that hashes to another id: refused in the handshake.
    let other = MachineKeypair::generate().unwrap().machine_id();
    let name = tls::server_name(Some(&other));
    let err = within(ep.connect(addr(&a).await, &name).unwrap())
        .await
        .expect_err("a different machine must be refused");
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("crypto"),
        "unexpected error: {text}"
    );

    // A name we never make is refused too (no fallback to "any machine").
    let err = within(ep.connect(addr(&a).await, "example.com").unwrap()).await;
    assert!(err.is_err());

    ep.close(0u32.into(), b"");
    within(a.shutdown()).await.unwrap();
}

/// Connects a raw peer to `agent`, writes `bytes` on a uni stream, and returns the code the
/// agent closed the connection with.
async fn send_raw_and_wait_close(agent: std::net::SocketAddr, bytes: &[u8]) -> Option<CloseCode> {
    let key = MachineKeypair::generate().unwrap();
    let ep = raw_endpoint(&key);
    let conn = within(ep.connect(agent, &tls::server_name(None)).unwrap())
        .await
        .expect("handshake");
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(bytes).await.unwrap();
    let reason = within(conn.closed()).await;
    ep.close(0u32.into(), b"");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => CloseCode::from_varint(c.error_code),
        other => panic!("expected an application close, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_disconnected_and_the_agent_keeps_serving() {
    let a = joined_agent(vec![]).await;
    let a_addr = addr(&a).await;

    // A well-delimited frame that is garbage: the node refuses it and asks for a close.
    let mut garbage = 64u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0xAB; 64]);
    assert_eq!(
        send_raw_and_wait_close(a_addr, &garbage).await,
        Some(CloseCode::BadFrames)
    );

    // A length prefix above the limit: closed before anything is allocated or decoded.
    let huge = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
    assert_eq!(
        send_raw_and_wait_close(a_addr, &huge).await,
        Some(CloseCode::FrameTooLarge)
    );
    assert_eq!(
        send_raw_and_wait_close(a_addr, &u32::MAX.to_be_bytes()).await,
        Some(CloseCode::FrameTooLarge)
    );

    // A zero-length frame is garbage too.
    assert_eq!(
        send_raw_and_wait_close(a_addr, &[0, 0, 0, 0]).await,
        Some(CloseCode::BadFrames)
    );

    let stats = a.stats().await.unwrap();
    assert_eq!(stats.driver.frames_too_large, 2);
    assert_eq!(stats.node.closes.bad_frames, 2);
    assert_eq!(stats.connections, 0);

    // A well-behaved peer is still served.
    let b = joined_agent(vec![a_addr]).await;
    let mut sub = b.subscribe("tests/hostile").await.unwrap();
    let _sub_a = a.subscribe("tests/hostile").await.unwrap();
    a.publish("tests/hostile", b"still here".to_vec())
        .await
        .unwrap();
    let m = within(sub.recv()).await.expect("B receives");
    assert_eq!(m.payload, b"still here");

    within(b.shutdown()).await.unwrap();
    within(a.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_does_not_disturb_others_and_shutdown_closes_it() {
    // A peer that completes the handshake but never sends Hello stays tracked until the
    // node's hello timeout (10 s by default); here we only check it does not disturb others
    // and that shutdown closes it promptly.
    let a = joined_agent(vec![]).await;
    let key = MachineKeypair::generate().unwrap();
    let ep = raw_endpoint(&key);
    let conn = within(ep.connect(addr(&a).await, &tls::server_name(None)).unwrap())
        .await
        .expect("handshake");
    let b = joined_agent(vec![addr(&a).await]).await;
    assert_eq!(b.peers().await.unwrap().len(), 1);

    let started = std::time::Instant::now();
    within(a.shutdown()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let reason = within(conn.closed()).await;
    assert!(matches!(
        reason,
        quinn::ConnectionError::ApplicationClosed(_)
    ));
    ep.close(0u32.into(), b"");
    within(b.shutdown()).await.unwrap();
}
