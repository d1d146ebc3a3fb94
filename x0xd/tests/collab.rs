//! Replicated stores and task lists through real daemons: two edit a store and a task list,
//! a third joins later and sees it all, a non-owner's write never lands, a restart keeps it.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use x0xd::harness::{DaemonSpec, TestDaemon, free_ports, wait_until};

const X0XD: &str = env!("CARGO_BIN_EXE_x0xd");
const KV: &str = "team-kv";
const LIST: &str = "team-tasks";

fn keys(d: &TestDaemon) -> Vec<String> {
    d.get(&format!("/stores/{KV}/keys")).json["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn tasks(d: &TestDaemon) -> Vec<Value> {
    d.get(&format!("/task-lists/{LIST}/tasks")).json["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn put(d: &TestDaemon, key: &str, value: &str) -> u16 {
    d.request(
        "PUT",
        &format!("/stores/{KV}/{key}"),
        Some(
            json!({"value": STANDARD.encode(value), "content_type": "text/plain"})
                .to_string()
                .as_bytes(),
        ),
        true,
    )
    .status
}

fn patch(d: &TestDaemon, task: &str, action: &str) -> u16 {
    d.request(
        "PATCH",
        &format!("/task-lists/{LIST}/tasks/{task}"),
        Some(json!({ "action": action }).to_string().as_bytes()),
        true,
    )
    .status
}

fn soon(f: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(30), Duration::from_millis(50), f)
}

#[test]
fn two_edit_a_third_joins_later_and_a_restart_keeps_it_all() {
    let work = tempfile::tempdir().unwrap();
    let p = free_ports(6).unwrap();
    let spec = |name, i: usize, boot: &[u16]| DaemonSpec::loopback(name, p[i], p[i + 1], boot);
    // A lists B so that, restarted, it finds the mesh again (it never dialled anyone, so its
    // peer cache is empty).
    let mut a = TestDaemon::new(Path::new(X0XD), work.path(), spec("a", 0, &[p[2]]));
    let mut b = TestDaemon::new(Path::new(X0XD), work.path(), spec("b", 2, &[p[0]]));
    let mut c = TestDaemon::new(Path::new(X0XD), work.path(), spec("c", 4, &[p[0]]));
    assert!(a.start() && b.start());
    assert!(soon(|| a.peers() >= 1 && b.peers() >= 1));

    // A owns an allowlisted store and lets B write; both edit it.
    let r = a.post(
        "/stores",
        &json!({"name": "team", "topic": KV, "policy": "allowlisted", "allow": [b.agent_id()]}),
    );
    assert_eq!(r.status, 201, "{:?}", r.json);
    assert_eq!(r.json["id"], KV);
    let r = b.post(&format!("/stores/{KV}/join"), &json!({}));
    assert_eq!(r.status, 200, "{:?}", r.json);
    for i in 0..10 {
        assert_eq!(put(&a, &format!("a{i}"), &format!("from a {i}")), 200);
    }
    assert!(soon(|| keys(&b).len() == 10), "B: {:?}", keys(&b));
    assert_eq!(put(&b, "b0", "from b"), 200);
    assert!(soon(|| keys(&a).len() == 11), "A: {:?}", keys(&a));
    let r = a.get(&format!("/stores/{KV}/b0"));
    assert_eq!(
        STANDARD.decode(r.json["value"].as_str().unwrap()).unwrap(),
        b"from b"
    );
    assert_eq!(r.json["content_type"], "text/plain");

    // Both open the same task list; A adds, B claims and completes.
    assert_eq!(
        a.post("/task-lists", &json!({"name": "todo", "topic": LIST}))
            .status,
        201
    );
    let r = a.post(
        &format!("/task-lists/{LIST}/tasks"),
        &json!({"title": "ship it", "description": "today"}),
    );
    assert_eq!(r.status, 201, "{:?}", r.json);
    let task = r.json["task_id"].as_str().unwrap().to_owned();
    assert_eq!(
        b.post("/task-lists", &json!({"name": "todo", "topic": LIST}))
            .status,
        201
    );
    assert!(soon(|| tasks(&b).len() == 1));
    assert_eq!(patch(&b, &task, "complete"), 409, "complete before claim");
    assert_eq!(patch(&b, &task, "claim"), 200);
    assert_eq!(patch(&b, &task, "complete"), 200);
    let done = format!("done:{}", b.agent_id());
    assert!(soon(|| tasks(&a)
        .first()
        .is_some_and(|t| t["state"] == done.as_str())));
    assert_eq!(patch(&a, &task, "claim"), 409, "done is final");

    // C joins an hour late in spirit: nothing is re-published, anti-entropy brings it all.
    assert!(c.start());
    assert_eq!(
        c.post(&format!("/stores/{KV}/join"), &json!({})).status,
        200
    );
    assert_eq!(
        c.post("/task-lists", &json!({"name": "todo", "topic": LIST}))
            .status,
        201
    );
    assert!(soon(|| keys(&c).len() == 11), "C: {:?}", keys(&c));
    assert!(soon(|| tasks(&c)
        .first()
        .is_some_and(|t| t["state"] == done.as_str())));
    // C is not on the allowlist: refused here, and never reaches the others.
    assert_eq!(put(&c, "intruder", "x"), 403);

    // A restart keeps both, and the store keeps working.
    assert!(a.stop());
    assert!(a.start());
    assert_eq!(keys(&a).len(), 11);
    assert_eq!(tasks(&a).len(), 1);
    assert_eq!(put(&a, "after", "restart"), 200);
    assert!(
        soon(|| keys(&c).len() == 12),
        "C: {:?}; B: {:?}; peers a {} b {} c {}",
        keys(&c),
        keys(&b),
        a.peers(),
        b.peers(),
        c.peers()
    );
    assert!(!keys(&a).contains(&"intruder".to_owned()));

    // Bad input: unknown store, bad base64, too large, bad task id and action.
    assert_eq!(a.get("/stores/nope/keys").status, 404);
    let bad = a.request(
        "PUT",
        &format!("/stores/{KV}/k"),
        Some(br#"{"value":"%%%"}"#),
        true,
    );
    assert_eq!(bad.status, 400);
    let big = STANDARD.encode(vec![0u8; 65_537]);
    let r = a.request(
        "PUT",
        &format!("/stores/{KV}/big"),
        Some(json!({ "value": big }).to_string().as_bytes()),
        true,
    );
    assert_eq!(r.status, 413, "{:?}", r.json);
    assert_eq!(patch(&a, "xyz", "claim"), 400);
    assert_eq!(patch(&a, &task, "steal"), 400);
    assert_eq!(
        a.request("DELETE", &format!("/stores/{KV}/missing"), None, true)
            .status,
        404
    );
    for d in [&mut a, &mut b, &mut c] {
        assert!(d.stop());
    }
}

#[test]
fn a_corrupt_saved_store_is_kept_aside_and_the_daemon_starts() {
    let work = tempfile::tempdir().unwrap();
    let mut a = TestDaemon::lone(Path::new(X0XD), work.path(), "a");
    assert!(a.start());
    assert_eq!(
        a.post("/stores", &json!({"name": "n", "topic": KV})).status,
        201
    );
    assert_eq!(put(&a, "k", "v"), 200);
    assert!(a.stop());
    let dir = work.path().join("a").join("stores");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "store"))
        .expect("a saved store");
    std::fs::write(&file, b"not a store").unwrap();
    assert!(a.start());
    assert_eq!(a.get(&format!("/stores/{KV}/keys")).status, 404);
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(a.stop());
}
