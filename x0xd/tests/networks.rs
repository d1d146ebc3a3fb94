//! Real `x0xd` processes on emulated networks ([`x0xd::netlab`]): namespaces and links this
//! test makes (inside a network namespace of its own) and removes, even when it fails.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use x0xd::harness::{DaemonSpec, TestDaemon, wait_until};
use x0xd::netlab::{End, Lab, isolate_this_thread};

const X0XD: &str = env!("CARGO_BIN_EXE_x0xd");

/// A lab in a network namespace of the test's own.
fn lab(tag: &str) -> Lab {
    isolate_this_thread().expect("a network namespace of our own (needs root and iproute2)");
    Lab::new(tag)
}

/// A daemon in namespace `ns`, bound to `bind`, whose API the test reaches over management
/// link number `k` (`10.71.<k>.2:12700`). Not started.
fn daemon(
    lab: &Lab,
    work: &Path,
    name: &str,
    (ns, k): (&str, u8),
    bind: &str,
    bootstrap: &[&str],
) -> TestDaemon {
    let (here, there) = (format!("10.71.{k}.1/24"), format!("10.71.{k}.2/24"));
    let (m, mg) = (format!("m{k}"), format!("mg{k}"));
    lab.link(End::at(None, &m, &here), End::at(Some(ns), &mg, &there))
        .unwrap();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let spec = DaemonSpec {
        name: name.into(),
        bind: addr(bind),
        api: addr(&format!("10.71.{k}.2:12700")),
        bootstrap: bootstrap.iter().map(|b| addr(b)).collect(),
        lan_discovery: false,
        extra: String::new(),
        netns: Some(ns.into()),
    };
    TestDaemon::new(Path::new(X0XD), work, spec)
}

/// A node whose only link goes down notices (its status leaves `connected`), keeps trying, and
/// is back by itself once the link returns: a subscription opened before the cut receives
/// again, without a restart.
#[test]
fn a_cut_link_is_noticed_and_the_node_rejoins_by_itself() {
    let mut lab = lab("cut");
    let s_ns = lab.namespace("s").unwrap();
    let a_ns = lab.namespace("a").unwrap();
    lab.link(
        End::at(Some(&s_ns), "d0", "10.70.0.1/24"),
        End::at(Some(&a_ns), "d1", "10.70.0.2/24"),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut s = daemon(&lab, work.path(), "s", (&s_ns, 1), "10.70.0.1:5483", &[]);
    let mut a = daemon(
        &lab,
        work.path(),
        "a",
        (&a_ns, 2),
        "10.70.0.2:5483",
        &["10.70.0.1:5483"],
    );
    assert!(s.start() && a.start(), "the daemons did not answer /health");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || a
            .peers()
            >= 1),
        "a did not join s"
    );
    let sub = a.post("/subscribe", &json!({"topic": "after-cut"}));
    assert_eq!(sub.status, 200, "{:?}", sub.json);
    let events = a.sse("/events");
    let status = |d: &TestDaemon| {
        d.get("/status").json["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status(&a), "connected");

    lab.set_link(&a_ns, "d1", false).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
            a.peers() == 0 && matches!(status(&a).as_str(), "isolated" | "connecting")
        }),
        "a still says {} with the link down",
        status(&a)
    );
    // Several rejoin attempts fail while the link is down.
    let attempts = |d: &TestDaemon| {
        d.get("/diagnostics/gossip").json["node"]["membership"]["rejoin_attempts"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = attempts(&a);
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            attempts(&a) >= before + 3
        }),
        "a stopped trying to rejoin: {} attempts",
        attempts(&a)
    );

    lab.set_link(&a_ns, "d1", true).unwrap();
    let up = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            a.peers() >= 1 && status(&a) == "connected"
        }),
        "a did not rejoin within 30 s of the link's return"
    );
    eprintln!("rejoined {:?} after the link returned", up.elapsed());
    let payload = STANDARD.encode("post-cut");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
            // Published until it arrives: the tree may still be repairing.
            s.post(
                "/publish",
                &json!({"topic": "after-cut", "payload": payload}),
            );
            events.payloads().iter().any(|p| p == "post-cut")
        }),
        "the subscription from before the cut received nothing after it"
    );
    assert!(a.terminate() && s.terminate());
}

/// An agent behind a NAT learns the address the public side sees it at, and that (not its
/// private address) is what the network finds for it.
#[test]
fn an_agent_behind_a_nat_announces_its_public_address() {
    let mut lab = lab("nat");
    let s_ns = lab.namespace("s").unwrap();
    let r_ns = lab.namespace("r").unwrap();
    let a_ns = lab.namespace("a").unwrap();
    lab.link(
        End::at(Some(&s_ns), "p0", "198.18.0.10/24"),
        End::at(Some(&r_ns), "wan", "198.18.0.2/24"),
    )
    .unwrap();
    lab.link(
        End::at(Some(&r_ns), "lan", "10.80.2.1/24"),
        End::at(Some(&a_ns), "h0", "10.80.2.2/24"),
    )
    .unwrap();
    lab.default_route(&a_ns, "10.80.2.1").unwrap();
    lab.nat(&r_ns, "wan", false)
        .expect("iptables in the router's namespace");
    let work = tempfile::tempdir().unwrap();
    let mut s = daemon(&lab, work.path(), "s", (&s_ns, 1), "198.18.0.10:5483", &[]);
    let mut a = daemon(
        &lab,
        work.path(),
        "a",
        (&a_ns, 2),
        "0.0.0.0:5483",
        &["198.18.0.10:5483"],
    );
    assert!(s.start() && a.start(), "the daemons did not answer /health");
    let aid = a.agent_id();
    let addrs_at_s = || {
        s.get(&format!("/agents/discovered/{aid}")).json["agent"]["addresses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            addrs_at_s().contains(&json!("198.18.0.2:5483"))
        }),
        "s never saw a's public address announced: {:?}",
        addrs_at_s()
    );
    assert!(
        !addrs_at_s()
            .iter()
            .any(|x| x.as_str().unwrap_or("").starts_with("10.80.")),
        "a private address was announced: {:?}",
        addrs_at_s()
    );
    let ns = a.get("/network/status").json;
    assert_eq!(ns["external_addrs"], json!(["198.18.0.2:5483"]), "{ns}");
    let card = a.get("/agent/card").json;
    assert_eq!(
        card["card"]["addresses"],
        json!(["198.18.0.2:5483"]),
        "{card}"
    );
    let nat = a.get("/diagnostics/gossip").json["node"]["nat"].clone();
    assert_eq!(nat["observed"], 1, "{nat}");
    assert!(a.terminate() && s.terminate());
}
