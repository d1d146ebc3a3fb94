//! Real `x0xd` processes on loopback, driven over HTTP and through the `x0x` CLI. LAN
//! discovery is off here (it would send multicast on the machine's interfaces); the one test
//! that uses it runs the daemons inside a network namespace it creates.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use x0xd::harness::{DaemonSpec, TestDaemon, free_ports, wait_until};

const X0XD: &str = env!("CARGO_BIN_EXE_x0xd");
const X0X: &str = env!("CARGO_BIN_EXE_x0x");

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Two daemons, B bootstrapped to A, connected.
fn pair(work: &Path) -> (TestDaemon, TestDaemon) {
    let p = free_ports(4).unwrap();
    let mut a = TestDaemon::new(
        Path::new(X0XD),
        work,
        DaemonSpec::loopback("a", p[0], p[1], &[]),
    );
    let mut b = TestDaemon::new(
        Path::new(X0XD),
        work,
        DaemonSpec::loopback("b", p[2], p[3], &[p[0]]),
    );
    assert!(a.start(), "A did not answer /health");
    assert!(b.start(), "B did not answer /health");
    assert!(
        wait_until(secs(20), ms(50), || a.peers() >= 1 && b.peers() >= 1),
        "A and B did not connect"
    );
    (a, b)
}

#[test]
fn pubsub_over_sse_is_exactly_once_and_unsubscribe_stops_delivery() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = pair(work.path());
    let sub = b.post("/subscribe", &json!({"topic": "t1"}));
    assert_eq!(sub.status, 200);
    let id = sub.json["subscription_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    let ev = b.sse("/events");
    // The subscription travels to A before A's publishes are routed to B.
    assert!(wait_until(secs(10), ms(50), || {
        a.post("/publish", &json!({"topic": "t1", "payload": b64("probe")}));
        ev.payloads().iter().any(|p| p == "probe")
    }));
    for i in 0..100 {
        assert_eq!(
            a.post(
                "/publish",
                &json!({"topic": "t1", "payload": b64(&format!("m-{i}"))})
            )
            .status,
            200
        );
    }
    assert!(wait_until(secs(20), ms(20), || ev
        .payloads()
        .iter()
        .filter(|p| p.starts_with("m-"))
        .count()
        >= 100));
    let got: Vec<String> = ev
        .payloads()
        .into_iter()
        .filter(|p| p.starts_with("m-"))
        .collect();
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    assert_eq!((got.len(), distinct.len()), (100, 100));
    // x0x's envelope.
    let first = ev.event(0);
    assert_eq!(first["type"], "message");
    assert_eq!(first["data"]["subscription_id"], id.as_str());
    assert_eq!(first["data"]["topic"], "t1");
    assert_eq!(first["data"]["sender"], a.agent_id().as_str());
    assert_eq!(first["data"]["verified"], true);
    // Every stage counted, nothing lost between decode and delivery.
    let g = b.get("/diagnostics/gossip").json;
    assert!(
        g["stats"]["delivered_to_subscriber"].as_u64().unwrap() >= 100,
        "{g}"
    );
    assert_eq!(g["stats"]["decode_to_delivery_drops"], 0, "{g}");
    // Unsubscribe: a later publish does not arrive (checked after a publish that does).
    let del = b.request("DELETE", &format!("/subscribe/{id}"), None, true);
    assert_eq!((del.status, del.json["ok"].clone()), (200, json!(true)));
    b.post("/subscribe", &json!({"topic": "t1-marker"}));
    a.post(
        "/publish",
        &json!({"topic": "t1", "payload": b64("after-unsub")}),
    );
    assert!(wait_until(secs(10), ms(50), || {
        a.post(
            "/publish",
            &json!({"topic": "t1-marker", "payload": b64("marker")}),
        );
        ev.payloads().iter().any(|p| p == "marker")
    }));
    assert!(
        !ev.payloads().iter().any(|p| p == "after-unsub"),
        "delivery continued after DELETE"
    );
    assert_eq!(
        b.request("DELETE", &format!("/subscribe/{id}"), None, true)
            .status,
        404
    );
}

#[test]
fn own_publish_reaches_own_subscriber_once() {
    let work = tempfile::tempdir().unwrap();
    let (a, _b) = pair(work.path());
    a.post("/subscribe", &json!({"topic": "self"}));
    let ev = a.sse("/events");
    a.post(
        "/publish",
        &json!({"topic": "self", "payload": b64("self-1")}),
    );
    assert!(wait_until(secs(5), ms(20), || ev
        .payloads()
        .contains(&"self-1".to_string())));
    // A second message after it proves the first is not coming again.
    a.post(
        "/publish",
        &json!({"topic": "self", "payload": b64("self-2")}),
    );
    assert!(wait_until(secs(5), ms(20), || ev
        .payloads()
        .contains(&"self-2".to_string())));
    assert_eq!(ev.payloads().iter().filter(|p| *p == "self-1").count(), 1);
}

#[test]
fn websocket_subscribe_publish_and_direct() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = pair(work.path());
    let url = format!("ws://{}/ws/direct?token={}", b.spec.api, b.token);
    let (mut ws, _) = tungstenite::connect(url).expect("WebSocket connect");
    let hello: Value = serde_json::from_str(&ws_read(&mut ws)).unwrap();
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["agent_id"], b.agent_id().as_str());
    let pong: Value = serde_json::from_str(&ws_read(&mut ws)).unwrap();
    assert_eq!(pong["type"], "pong");
    ws.send(tungstenite::Message::text(
        json!({"type": "subscribe", "topics": ["w1"]}).to_string(),
    ))
    .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&ws_read(&mut ws)).unwrap()["type"],
        "subscribed"
    );
    let sessions = b.get("/ws/sessions").json;
    assert_eq!(
        sessions["sessions"][0]["receives_direct"], true,
        "{sessions}"
    );
    assert_eq!(sessions["shared_subscriptions"]["w1"], 1, "{sessions}");
    // A publishes until the subscription has reached it; B's session gets the message.
    let mut got = None;
    for i in 0..100 {
        a.post(
            "/publish",
            &json!({"topic": "w1", "payload": b64(&format!("ws-{i}"))}),
        );
        if let Some(m) = ws_try_read(&mut ws, ms(200)) {
            got = Some(m);
            break;
        }
    }
    let m: Value = serde_json::from_str(&got.expect("no message on the WebSocket")).unwrap();
    assert_eq!(m["type"], "message");
    assert_eq!(m["topic"], "w1");
    assert_eq!(m["origin"], a.agent_id().as_str());
    // A direct message to B arrives on /ws/direct.
    let r = a.post(
        "/direct/send",
        &json!({"agent_id": b.agent_id(), "payload": b64("dm-ws")}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json);
    let dm = loop {
        let v: Value = serde_json::from_str(&ws_read(&mut ws)).unwrap();
        if v["type"] == "direct_message" {
            break v;
        }
    };
    assert_eq!(dm["sender"], a.agent_id().as_str());
    assert_eq!(
        STANDARD.decode(dm["payload"].as_str().unwrap()).unwrap(),
        b"dm-ws"
    );
    // Bad commands get an error frame, and the session goes on.
    ws.send(tungstenite::Message::text("{\"type\":\"nope\"}"))
        .unwrap();
    let e = loop {
        let v: Value = serde_json::from_str(&ws_read(&mut ws)).unwrap();
        if v["type"] == "error" {
            break v;
        }
    };
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid command"),
        "{e}"
    );
    ws.send(tungstenite::Message::text("{\"type\":\"ping\"}"))
        .unwrap();
    loop {
        let v: Value = serde_json::from_str(&ws_read(&mut ws)).unwrap();
        if v["type"] == "pong" {
            break;
        }
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn ws_read(ws: &mut Ws) -> String {
    ws_try_read(ws, secs(10)).expect("no WebSocket frame within 10 s")
}

fn ws_try_read(ws: &mut Ws, timeout: Duration) -> Option<String> {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(timeout)).unwrap();
    }
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => return Some(t.to_string()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn direct_send_returns_a_receipt_and_reaches_direct_events() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = pair(work.path());
    let ev = b.sse("/direct/events");
    let r = a.post(
        "/direct/send",
        &json!({"agent_id": b.agent_id(), "payload": b64("dm-1"), "require_ack_ms": 2000}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["path"], "raw_quic");
    assert_eq!(r.json["request_id"].as_str().unwrap().len(), 32);
    assert_eq!(r.json["require_ack"]["ok"], true);
    assert!(wait_until(secs(10), ms(20), || ev
        .payloads()
        .contains(&"dm-1".to_string())));
    let e = ev.event(0);
    assert_eq!(e["sender"], a.agent_id().as_str());
    assert_eq!(e["verified"], true);
    let conns = a.get("/direct/connections").json;
    assert!(conns.to_string().contains(&b.agent_id()), "{conns}");
    let dm = a.get("/diagnostics/dm").json;
    assert_eq!(dm["api"]["acknowledged"], 1, "{dm}");
    // An agent nobody announced: 404 with x0x's error kind.
    let r = a.post(
        "/direct/send",
        &json!({"agent_id": "11".repeat(32), "payload": b64("x")}),
    );
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (404, json!("recipient_key_unavailable")),
        "{:?}",
        r.json
    );
}

#[test]
fn discovery_find_and_connect() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = pair(work.path());
    let bid = b.agent_id();
    assert!(wait_until(secs(20), ms(100), || a
        .get("/agents/discovered")
        .json
        .to_string()
        .contains(&bid)));
    let one = a.get(&format!("/agents/discovered/{bid}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json["agent"]["machine_id"].as_str().unwrap().len(), 64);
    let f = a.post(&format!("/agents/find/{bid}"), &json!({}));
    assert_eq!(f.json["found"], true, "{:?}", f.json);
    assert!(!f.json["addresses"].as_array().unwrap().is_empty());
    let c = a.post("/agents/connect", &json!({"agent_id": bid}));
    assert_eq!(c.json["outcome"], "AlreadyConnected", "{:?}", c.json);
    let c = a.post("/agents/connect", &json!({"agent_id": "22".repeat(32)}));
    assert_eq!(c.json["outcome"], "NotFound", "{:?}", c.json);
    let m = a.get(&format!("/agents/{bid}/machine")).json;
    assert_eq!(m["machine"]["agent_ids"][0], bid.as_str(), "{m}");
    let r = a.get(&format!("/agents/reachability/{bid}")).json;
    assert_eq!(r["likely_direct"], true, "{r}");
    assert_eq!(a.get("/agents/discovered/zz").status, 400);
    assert_eq!(
        a.get(&format!("/agents/discovered/{}", "33".repeat(32)))
            .status,
        404
    );
}

#[test]
fn connections_report_a_post_quantum_key_exchange_and_tables_their_caps() {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = pair(work.path());
    assert!(wait_until(secs(20), ms(100), || a.peers() >= 1 && b.peers() >= 1));
    for d in [&a, &b] {
        let c = d.get("/diagnostics/connectivity").json;
        let conns = c["quic_connections"]
            .as_array()
            .expect("quic_connections")
            .clone();
        assert!(!conns.is_empty(), "{c}");
        assert!(
            conns.iter().all(|x| x["key_exchange"] == "X25519MLKEM768"),
            "{c}"
        );
        assert_eq!(c["classical_key_exchange_refused"], 0, "{c}");
        assert!(c["connections"].is_object(), "x0x's object stays: {c}");
    }
    let r = a.get("/diagnostics/resources").json;
    assert!(r["rss_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(r["open_fds"].as_u64().unwrap() > 0, "{r}");
    assert!(r["tasks"]["driver"].as_u64().unwrap() >= 1, "{r}");
    let tables = r["tables"].as_array().unwrap();
    for name in [
        "broadcast dedup window",
        "active view",
        "daemon subscriptions",
    ] {
        assert!(
            tables.iter().any(|t| t["table"] == name),
            "{name} missing: {r}"
        );
    }
    assert!(
        tables
            .iter()
            .all(|t| t["len"].as_u64().unwrap() <= t["cap"].as_u64().unwrap()),
        "{r}"
    );
}

#[test]
fn token_is_required_and_the_query_token_only_on_streams() {
    let work = tempfile::tempdir().unwrap();
    let p = free_ports(2).unwrap();
    let mut a = TestDaemon::new(
        Path::new(X0XD),
        work.path(),
        DaemonSpec::loopback("a", p[0], p[1], &[]),
    );
    assert!(a.start());
    assert_eq!(a.token.len(), 64);
    let health = a.get_open("/health");
    assert_eq!(
        (health.status, health.json["status"].clone()),
        (200, json!("healthy"))
    );
    assert!(health.json["version"].is_string());
    let r = a.get_open("/agent");
    assert_eq!(r.status, 401);
    assert_eq!(r.json["ok"], false);
    let mut wrong = TestDaemon::new(
        Path::new(X0XD),
        work.path(),
        DaemonSpec::loopback("w", p[0], p[1], &[]),
    );
    wrong.token = "0".repeat(64);
    assert_eq!(wrong.get("/agent").status, 401);
    let q = format!("?token={}", a.token);
    assert_eq!(
        a.get_open(&format!("/status{q}")).status,
        401,
        "query token outside the streams"
    );
    let ev = x0xd::harness::SseStream::open(&a.base(), &format!("/events{q}"), "");
    drop(ev);
    // The stream answered 200 with the query token: it is open, and /health still answers.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent.get(format!("{}/events{q}", a.base())).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    // CORS: local origins only, matched whole.
    let pre = agent
        .options(format!("{}/agent", a.base()))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "GET")
        .call()
        .unwrap();
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let pre = agent
        .options(format!("{}/agent", a.base()))
        .header("Origin", "http://localhost.evil")
        .header("Access-Control-Request-Method", "GET")
        .call()
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none());
    let routes = a.get("/routes").json;
    assert_eq!(
        routes["count"].as_u64().unwrap() as usize,
        x0xd::api::ROUTES.len()
    );
}

#[test]
fn bad_input_gets_its_status_and_the_daemon_keeps_serving() {
    let work = tempfile::tempdir().unwrap();
    let mut a = TestDaemon::lone(Path::new(X0XD), work.path(), "a");
    assert!(a.start());
    assert_eq!(
        a.request("POST", "/publish", Some(b"{not json"), true)
            .status,
        400
    );
    assert_eq!(a.post("/publish", &json!({"topic": "t"})).status, 422);
    let r = a.post("/publish", &json!({"topic": "t", "payload": "***"}));
    assert_eq!(r.status, 400);
    assert!(
        r.json["error"].as_str().unwrap().contains("base64"),
        "{:?}",
        r.json
    );
    assert_eq!(
        a.post("/publish", &json!({"topic": "", "payload": "aGk="}))
            .status,
        400
    );
    assert_eq!(
        a.request("DELETE", "/subscribe/ffff", None, true).status,
        404
    );
    assert_eq!(a.status_of_oversized("/publish", 2 << 20), 413);
    assert_eq!(a.get("/no/such/route").status, 404);
    // A flood of garbage, half without a token, does not stop good requests.
    for i in 0..500 {
        let r = a.request_alone("POST", "/publish", Some(b"\xff\xfe garbage"), i % 2 == 0);
        assert!(r.status == 400 || r.status == 401, "{}", r.status);
    }
    assert_eq!(a.get_open("/health").json["ok"], true);
    assert_eq!(
        a.post("/publish", &json!({"topic": "t", "payload": "aGk="}))
            .status,
        200
    );
    let g = a.get("/diagnostics/gossip").json;
    assert_eq!(g["stats"]["publish_total"], 1, "{g}");
}

#[test]
fn restart_keeps_the_identity_and_rejoins_from_the_peer_cache() {
    let work = tempfile::tempdir().unwrap();
    let (a, mut b) = pair(work.path());
    let (aid, bid) = (a.agent_id(), b.agent_id());
    // B dialled A, so A's address is in B's cache; restart B with no bootstrap list.
    assert!(wait_until(secs(10), ms(100), || {
        std::fs::read_to_string(b.dir.join("peers.json"))
            .is_ok_and(|s| s.contains(&a.spec.bind.to_string()))
    }));
    assert!(b.stop(), "B did not exit after /shutdown");
    assert!(
        !b.dir.join("api.port").exists(),
        "api.port left after shutdown"
    );
    b.set_config("bootstrap_peers", "[]");
    assert!(b.start());
    assert_eq!(b.agent_id(), bid);
    assert!(
        wait_until(secs(20), ms(100), || b.peers() >= 1),
        "B did not rejoin from its peer cache"
    );
    assert_eq!(a.agent_id(), aid);
    let cache = b.get("/network/bootstrap-cache").json;
    assert!(
        cache["peers"]
            .to_string()
            .contains(&a.spec.bind.to_string()),
        "{cache}"
    );
}

#[test]
fn sigterm_stops_cleanly_and_removes_api_port() {
    let work = tempfile::tempdir().unwrap();
    let mut a = TestDaemon::lone(Path::new(X0XD), work.path(), "a");
    assert!(a.start());
    let port = std::fs::read_to_string(a.dir.join("api.port")).unwrap();
    assert_eq!(port, a.spec.api.to_string());
    assert!(a.terminate(), "x0xd did not exit on SIGTERM");
    assert!(!a.dir.join("api.port").exists());
}

#[test]
fn a_bad_config_is_an_error_naming_line_and_key() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "log_level = \"info\"\nheartbeat_interval_secs = \"often\"\n",
    )
    .unwrap();
    let out = Command::new(X0XD)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("heartbeat_interval_secs"),
        "{err}"
    );
    // x0x's keys that x0xd does not implement are accepted (with a warning).
    std::fs::write(
        &cfg,
        "presence_beacon_interval_secs = 5\n[update]\nenabled = false\n",
    )
    .unwrap();
    let out = Command::new(X0XD)
        .arg("--config")
        .arg(&cfg)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(X0X)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("X0X_API_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn the_cli_starts_drives_and_stops_a_named_instance() {
    let work = tempfile::tempdir().unwrap();
    let home = work.path();
    // A config for the named instance keeps LAN discovery off (no multicast from tests).
    let cfg_dir = home.join(".config").join("x0x-cli1");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.toml"),
        "lan_discovery = false\nlog_level = \"warn\"\n",
    )
    .unwrap();
    let out = cli(home, &["--name", "cli1", "--json", "start"]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port_file = home.join(".local/share/x0x-cli1/api.port");
    assert!(port_file.exists());
    let out = cli(home, &["--name", "cli1", "--json", "health"]);
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["ok"], true);
    let out = cli(home, &["--name", "cli1", "--json", "agent"]);
    let ag: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ag["agent_id"].as_str().unwrap().len(), 64);
    let out = cli(home, &["--name", "cli1", "publish", "t", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(home, &["--name", "cli1", "status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("status: "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(home, &["--name", "cli1", "instances"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("running"));
    // Failures: one line and a non-zero exit.
    let out = cli(home, &["--name", "no-such", "health"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    let out = cli(home, &["--name", "cli1", "publish", "t", "***", "--base64"]);
    assert!(!out.status.success());
    let out = cli(home, &["--name", "cli1", "agents", "get", "zz"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 400"));
    let out = cli(home, &["--name", "cli1", "stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(secs(10), ms(50), || !port_file.exists()),
        "api.port left after stop"
    );
}

#[test]
fn docs_cover_every_route_key_and_verb() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/daemon.md")).unwrap();
    for r in x0xd::api::ROUTES {
        let line = format!("| {} | `{}` |", r.method, r.path);
        assert!(
            doc.contains(&line),
            "docs/daemon.md lacks the route row {line}"
        );
        if r.cli != "-" {
            assert!(
                doc.contains(&format!("`x0x {}`", r.cli)),
                "docs/daemon.md lacks `x0x {}`",
                r.cli
            );
        }
    }
    for k in x0xd::config::KEYS {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/daemon.md lacks the config key `{k}`"
        );
    }
}

/// LAN discovery finds a peer with no bootstrap list, inside a network namespace made for
/// the test (loopback plus a veth pair with multicast), never on the machine's interfaces.
#[test]
fn lan_discovery_finds_a_peer_inside_a_namespace() {
    let ns = format!("x0xd-lan-{}", std::process::id());
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        ip(&["netns", "add", &ns]),
        "cannot create a network namespace (needs root and iproute2)"
    );
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _guard = Ns(ns.clone());
    let exec = |cmd: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns, "sh", "-c", cmd])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(exec(
        "ip link set lo up && ip link add lan0 type veth peer name lan1 && ip addr add 10.91.0.1/24 dev lan0 && ip addr add 10.91.0.2/24 dev lan1 && ip link set lan0 multicast on up && ip link set lan1 multicast on up"
    ));
    let work = tempfile::tempdir().unwrap();
    let mut procs = Vec::new();
    for (name, bind, api) in [
        ("l1", "10.91.0.1:17001", "127.0.0.1:17101"),
        ("l2", "10.91.0.2:17002", "127.0.0.1:17102"),
    ] {
        let dir = work.path().join(name);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("data_dir = \"{}\"\nbind_address = \"{bind}\"\napi_address = \"{api}\"\nlan_discovery = true\nlog_level = \"warn\"\n", dir.display()),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, X0XD, "--config"])
            .arg(dir.join("config.toml"))
            .env("HOME", dir.join("home"))
            .stdout(std::fs::File::create(dir.join("log")).unwrap())
            .stderr(std::fs::File::create(dir.join("err")).unwrap())
            .spawn()
            .unwrap();
        procs.push(KillOnDrop(child));
    }
    let peers = |api: &str| -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &ns, X0X, "--api", api, "--json", "network", "status",
            ])
            .env(
                "X0X_API_TOKEN",
                std::fs::read_to_string(work.path().join("l1/api-token"))
                    .unwrap_or_default()
                    .trim(),
            )
            .output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["connected_peers"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        wait_until(secs(20), ms(200), || peers("127.0.0.1:17101") >= 1),
        "no peer found by LAN discovery within 20 s"
    );
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn presence_online_status_find_foaf_and_events() {
    let work = tempfile::tempdir().unwrap();
    let (a, mut b) = pair(work.path());
    let bid = b.agent_id();
    let events = a.sse("/presence/events");
    let online_b = |v: &Value| v["event"] == "online" && v["agent_id"] == bid.as_str();
    assert!(
        wait_until(secs(15), ms(50), || (0..events.len())
            .any(|i| online_b(&events.event(i)))),
        "no online event for B"
    );

    let ids = a.get("/presence").json;
    assert!(
        ids["agents"].as_array().unwrap().contains(&json!(bid)),
        "{ids}"
    );
    let online = a.get("/presence/online").json;
    assert!(
        online["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["agent_id"] == bid.as_str() && o["machine_id"].as_str().unwrap().len() == 64),
        "{online}"
    );
    let st = a.get(&format!("/presence/status/{bid}")).json;
    assert_eq!(
        (st["online"].clone(), st["agent"]["agent_id"].clone()),
        (json!(true), json!(bid)),
        "{st}"
    );
    let nobody = "44".repeat(32);
    let st = a.get(&format!("/presence/status/{nobody}")).json;
    assert_eq!(
        (st["online"].clone(), st["agent"].clone()),
        (json!(false), Value::Null),
        "{st}"
    );

    let f = a.get(&format!("/presence/find/{bid}?ttl=2&timeout_ms=2000"));
    assert_eq!(
        (f.status, f.json["agent"]["agent_id"].clone()),
        (200, json!(bid)),
        "{:?}",
        f.json
    );
    let f = a.get(&format!("/presence/find/{nobody}?timeout_ms=300"));
    assert_eq!(
        (f.status, f.json["agent"].clone()),
        (200, Value::Null),
        "{:?}",
        f.json
    );

    // FOAF shows contacts only: B is not one until A trusts it.
    let foaf = |a: &TestDaemon| a.get("/presence/foaf?ttl=2&timeout_ms=1000");
    let r = foaf(&a);
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(!r.json["agents"].to_string().contains(&bid), "{:?}", r.json);
    let t = a.post(
        "/contacts/trust",
        &json!({"agent_id": bid, "level": "known"}),
    );
    assert_eq!(t.status, 200, "{:?}", t.json);
    let r = foaf(&a);
    assert!(r.json["agents"].to_string().contains(&bid), "{:?}", r.json);

    // Bad input: x0x's statuses and message.
    let bad = a.get("/presence/status/zz");
    assert_eq!(
        (bad.status, bad.json["error"].clone()),
        (400, json!("invalid agent id (expected 64 hex chars)"))
    );
    assert_eq!(a.get(&format!("/presence/find/{bid}?ttl=x")).status, 400);
    assert_eq!(a.get("/presence/foaf?ttl=300").status, 400);
    assert_eq!(
        a.request(
            "GET",
            &format!("/presence/events?token={}", a.token),
            None,
            false
        )
        .status,
        401,
        "/presence/events takes the header token only, as in x0x"
    );

    // B stops: A's stream says it left.
    let before = events.len();
    assert!(b.terminate());
    let left = |v: &Value| v["event"] == "offline" && v["agent_id"] == bid.as_str();
    assert!(
        wait_until(secs(15), ms(50), || (before..events.len())
            .any(|i| left(&events.event(i)))),
        "no offline event for B"
    );
    let last = (before..events.len())
        .map(|i| events.event(i))
        .find(left)
        .unwrap();
    assert_eq!(last["reason"], "left", "{last}");
}
