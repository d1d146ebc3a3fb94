//! Contacts and trust through real daemons: the evaluator's paths over REST, blocking cuts
//! pub/sub and direct messages, contacts survive a restart, a corrupt file is kept aside.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use x0xd::harness::{DaemonSpec, TestDaemon, free_ports, wait_until};

const X0XD: &str = env!("CARGO_BIN_EXE_x0xd");

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

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
    assert!(a.start() && b.start());
    assert!(wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || a.peers() >= 1 && b.peers() >= 1
    ));
    (a, b)
}

fn decision(d: &TestDaemon, agent: &str, machine: &str) -> String {
    d.post(
        "/trust/evaluate",
        &json!({"agent_id": agent, "machine_id": machine}),
    )
    .json["decision"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn every_evaluator_path_over_rest() {
    let work = tempfile::tempdir().unwrap();
    let mut a = TestDaemon::lone(Path::new(X0XD), work.path(), "a");
    assert!(a.start());
    let (x, m, other) = ("c".repeat(64), "d".repeat(64), "e".repeat(64));
    assert_eq!(decision(&a, &x, &m), "Unknown");
    let r = a.post(
        "/contacts",
        &json!({"agent_id": x, "trust_level": "Known", "label": "k"}),
    );
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(decision(&a, &x, &m), "AcceptWithFlag");
    a.post(
        "/contacts/trust",
        &json!({"agent_id": x, "level": "trusted"}),
    );
    assert_eq!(decision(&a, &x, &m), "Accept");
    let r = a.post(
        &format!("/contacts/{x}/machines"),
        &json!({"machine_id": m, "label": "laptop"}),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        a.post(
            &format!("/contacts/{x}/machines"),
            &json!({"machine_id": m})
        )
        .status,
        200
    );
    assert_eq!(
        a.post(&format!("/contacts/{x}/machines/{m}/pin"), &json!({}))
            .json["pinned"],
        true
    );
    assert_eq!(decision(&a, &x, &other), "RejectMachineMismatch");
    assert_eq!(decision(&a, &x, &m), "Accept");
    let list = a.get("/contacts").json;
    assert_eq!(list["contacts"][0]["identity_type"], "pinned", "{list}");
    a.post(
        &format!("/contacts/{x}/revoke"),
        &json!({"reason": "stolen"}),
    );
    assert_eq!(decision(&a, &x, &m), "RejectBlocked");
    let r = a.post(
        "/contacts/trust",
        &json!({"agent_id": x, "level": "trusted"}),
    );
    assert_eq!(r.status, 422, "un-revoking is refused: {:?}", r.json);
    assert_eq!(decision(&a, &x, &m), "RejectBlocked");
    let revs = a.get(&format!("/contacts/{x}/revocations")).json;
    assert_eq!(revs["revocations"][0]["reason"], "stolen");
    assert_eq!(
        a.get(&format!("/contacts/{}/revocations", "f".repeat(64)))
            .json["revocations"],
        json!([])
    );
    // Bad input.
    assert_eq!(
        a.post(
            "/contacts/trust",
            &json!({"agent_id": x, "level": "superb"})
        )
        .status,
        400
    );
    assert_eq!(a.post("/contacts", &json!({"agent_id": "zz"})).status, 400);
    assert_eq!(
        a.post("/contacts", &json!({"agent_id": x, "extra": 1}))
            .status,
        422
    );
    assert_eq!(
        a.request(
            "DELETE",
            &format!("/contacts/{}", "a".repeat(64)),
            None,
            true
        )
        .status,
        404
    );
    assert_eq!(
        a.request(
            "DELETE",
            &format!("/contacts/{x}/machines/{other}"),
            None,
            true
        )
        .status,
        404
    );
    assert_eq!(
        a.request("DELETE", &format!("/contacts/{x}/machines/{m}"), None, true)
            .status,
        204
    );
    let r = a.request(
        "PATCH",
        &format!("/contacts/{x}"),
        Some(br#"{"identity_type": "royal"}"#),
        true,
    );
    assert_eq!(r.status, 400);
}

#[test]
fn blocking_cuts_pubsub_and_dms_and_contacts_survive_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let (mut a, b) = pair(work.path());
    let (aid, bid) = (a.agent_id(), b.agent_id());
    a.post("/subscribe", &json!({"topic": "tr"}));
    let sse = a.sse("/events");
    let dms = a.sse("/direct/events");
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            b.post(
                "/publish",
                &json!({"topic": "tr", "payload": b64("before")}),
            );
            sse.payloads().iter().any(|p| p == "before")
        }
    ));
    let r = b.post(
        "/direct/send",
        &json!({"agent_id": aid, "payload": b64("dm-before")}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || dms.payloads().contains(&"dm-before".to_string())
    ));
    let ev = sse.event(0);
    assert_eq!(ev["data"]["trust_level"], "unknown", "{ev}");
    assert_eq!(dms.event(0)["trust_decision"], "unknown");
    // A blocks B.
    assert_eq!(
        a.post(
            "/contacts",
            &json!({"agent_id": bid, "trust_level": "Blocked"})
        )
        .status,
        201
    );
    b.post(
        "/publish",
        &json!({"topic": "tr", "payload": b64("while-blocked")}),
    );
    let r = b.post(
        "/direct/send",
        &json!({"agent_id": aid, "payload": b64("dm-while-blocked")}),
    );
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (403, json!("recipient_rejected")),
        "{:?}",
        r.json
    );
    assert_eq!(
        a.post(
            "/direct/send",
            &json!({"agent_id": bid, "payload": b64("x")})
        )
        .status,
        403
    );
    // A later message from B that is delivered proves the blocked one is not coming.
    a.post(
        "/contacts/trust",
        &json!({"agent_id": bid, "level": "trusted"}),
    );
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            b.post("/publish", &json!({"topic": "tr", "payload": b64("after")}));
            sse.payloads().iter().any(|p| p == "after")
        }
    ));
    assert!(!sse.payloads().iter().any(|p| p == "while-blocked"));
    assert!(!dms.payloads().iter().any(|p| p == "dm-while-blocked"));
    let g = a.get("/diagnostics/gossip").json;
    assert!(
        g["node"]["trust"]["refused"]["messages_blocked"]
            .as_u64()
            .unwrap()
            >= 1,
        "{g}"
    );
    // Contacts survive a restart.
    a.post(
        &format!("/contacts/{}/revoke", "9".repeat(64)),
        &json!({"reason": "r"}),
    );
    let before = a.get("/contacts").json["contacts"]
        .as_array()
        .unwrap()
        .len();
    assert!(a.stop());
    assert!(a.dir.join("contacts.json").exists());
    assert!(a.start());
    let after: Value = a.get("/contacts").json;
    assert_eq!(after["contacts"].as_array().unwrap().len(), before);
    assert_eq!(
        decision(&a, &"9".repeat(64), &"1".repeat(64)),
        "RejectBlocked"
    );
}

#[test]
fn a_corrupt_contacts_file_is_kept_aside_and_reported() {
    let work = tempfile::tempdir().unwrap();
    let mut a = TestDaemon::lone(Path::new(X0XD), work.path(), "a");
    std::fs::write(a.dir.join("contacts.json"), b"{\"contacts\": [oops").unwrap();
    assert!(
        a.start(),
        "a corrupt contacts file does not stop the daemon"
    );
    assert_eq!(a.get("/contacts").json["contacts"], json!([]));
    let kept: Vec<_> = std::fs::read_dir(&a.dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("contacts.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file is kept aside");
    let log = std::fs::read_to_string(a.dir.join("log")).unwrap();
    assert!(log.contains("contacts.json is unusable"), "{log}");
}
