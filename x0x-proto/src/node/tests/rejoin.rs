//! A node that loses every connection keeps trying, with a backoff capped at 5 s, and is back
//! as soon as a dial succeeds.

use super::*;

/// Completes a connection from `a` to `b` (a dialled), both Hellos exchanged.
fn connect_out(a: &mut Node, b: &mut Node, now: Time, b_addr: SocketAddr) {
    a.handle_connected(now, b.machine_id(), b_addr, Direction::Outbound);
    b.handle_connected(now, a.machine_id(), addr(1), Direction::Inbound);
    for _ in 0..10 {
        let mut any = false;
        for tx in drain_transmits(a) {
            any = true;
            let _ = b.handle_frame(now, a.machine_id(), &tx.frame);
        }
        for tx in drain_transmits(b) {
            any = true;
            let _ = a.handle_frame(now, b.machine_id(), &tx.frame);
        }
        if !any {
            break;
        }
    }
}

#[test]
fn an_isolated_node_retries_with_a_capped_backoff_and_rejoins() {
    let boot = addr(2);
    let mut a = node(
        1,
        Config {
            bootstrap: vec![boot],
            ..Config::default()
        },
    );
    let mut b = node(2, Config::default());
    a.start(t(0));
    assert!(drain_actions(&mut a).contains(&Action::Dial {
        addr: boot,
        expect: None
    }));
    connect_out(&mut a, &mut b, t(0), boot);
    assert_eq!(a.active_view(), vec![b.machine_id()]);

    // The network goes: the connection drops and every dial fails at once.
    a.handle_disconnected(t(100), b.machine_id());
    let mut dials = Vec::new();
    let mut now = t(100);
    while now < t(60_000) {
        now = now + Duration::from_millis(100);
        a.handle_timeout(now);
        for act in drain_actions(&mut a) {
            if let Action::Dial { addr, .. } = act {
                dials.push(now);
                a.handle_dial_failed(now, addr);
            }
        }
        drain_transmits(&mut a);
    }
    assert!(dials.len() >= 10, "kept trying: {} dials", dials.len());
    let gaps: Vec<Duration> = dials.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().max().copied().unwrap();
    assert!(
        longest <= Duration::from_secs(5),
        "never more than 5 s between tries: {longest:?}"
    );
    assert!(a.stats().membership.rejoin_attempts >= 10);

    // The network is back: the next dial succeeds and the node is in again; the retries stop.
    let mut back = None;
    while back.is_none() {
        now = now + Duration::from_millis(100);
        a.handle_timeout(now);
        for act in drain_actions(&mut a) {
            if let Action::Dial { addr, .. } = act
                && addr == boot
                && back.is_none()
            {
                back = Some(now);
            }
        }
        drain_transmits(&mut a);
    }
    let mut b = node(2, Config::default());
    connect_out(&mut a, &mut b, now, boot);
    assert_eq!(a.active_view(), vec![b.machine_id()]);
    let attempts = a.stats().membership.rejoin_attempts;
    // b answers whatever a sends (probes, keepalives): a stays in.
    for _ in 0..100 {
        now = now + Duration::from_millis(100);
        a.handle_timeout(now);
        b.handle_timeout(now);
        drain_actions(&mut a);
        for _ in 0..4 {
            for tx in drain_transmits(&mut a) {
                let _ = b.handle_frame(now, a.machine_id(), &tx.frame);
            }
            for tx in drain_transmits(&mut b) {
                let _ = a.handle_frame(now, b.machine_id(), &tx.frame);
            }
        }
    }
    assert_eq!(a.active_view(), vec![b.machine_id()]);
    assert_eq!(a.stats().membership.rejoin_attempts, attempts);
}
