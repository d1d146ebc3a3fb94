//! Replicated stores through whole nodes: gossip, anti-entropy for late joiners, policies,
//! task rules, snapshots.

use super::*;
use crate::collab::{AccessPolicy, CollabError, Refusal, StoreKind, TaskState};

const TOPIC: &str = "team-kv";

fn keys(n: &Node, topic: &str) -> Vec<String> {
    n.store(topic)
        .map(|r| r.kv_entries().into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

fn agent(net: &mut testnet::Net, i: usize) -> AgentId {
    net.node(i).agent_id()
}

/// Node 0 creates the KV store on [`TOPIC`] with `policy` and `allow`; nodes 1..`joiners`+1
/// join it.
fn open_kv(net: &mut testnet::Net, joiners: usize, policy: AccessPolicy, allow: &[AgentId]) {
    net.with(0, |n, now| {
        n.create_store(now, StoreKind::Kv, TOPIC, "team", policy, allow)
            .unwrap()
    });
    for i in 1..=joiners {
        net.with(i, |n, now| {
            n.join_store(now, StoreKind::Kv, TOPIC, None).unwrap()
        });
    }
}

#[test]
fn writes_reach_every_replica_and_a_late_joiner_catches_up() {
    let mut net = testnet::Net::new(6, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    open_kv(&mut net, 3, AccessPolicy::Signed, &[]);
    net.run_for(Duration::from_secs(2));
    for k in 0..20 {
        net.with(0, |n, now| {
            n.store_put(
                now,
                TOPIC,
                &format!("k{k:02}"),
                Bytes::from(vec![k; 10]),
                "text/plain",
            )
            .unwrap()
        });
    }
    net.run_for(Duration::from_secs(2));
    for i in 1..4 {
        assert_eq!(keys(net.node(i), TOPIC).len(), 20, "replica {i}");
    }
    // Node 5 joins later: gossip is over, anti-entropy brings everything.
    net.with(5, |n, now| {
        n.join_store(now, StoreKind::Kv, TOPIC, None).unwrap()
    });
    net.run_for(Duration::from_secs(12));
    assert_eq!(keys(net.node(5), TOPIC).len(), 20);
    let heads0 = net.node(0).store(TOPIC).unwrap().heads();
    assert_eq!(net.node(5).store(TOPIC).unwrap().heads(), heads0);
    assert_eq!(
        net.node(5)
            .store(TOPIC)
            .unwrap()
            .kv_get("k07")
            .unwrap()
            .value,
        Bytes::from(vec![7; 10])
    );
    assert!(net.node(5).collab_stats().remote_applied >= 21);
}

#[test]
fn a_non_writer_is_refused_locally_and_by_every_replica() {
    let mut net = testnet::Net::new(4, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    let writer = agent(&mut net, 1);
    open_kv(&mut net, 3, AccessPolicy::Allowlisted, &[writer]);
    net.run_for(Duration::from_secs(8));
    net.with(1, |n, now| {
        n.store_put(now, TOPIC, "ok", Bytes::from_static(b"1"), "")
            .unwrap()
    });
    let refused = {
        let mut r = Ok(());
        net.with(2, |n, now| {
            r = n.store_put(now, TOPIC, "bad", Bytes::from_static(b"2"), "")
        });
        r
    };
    assert_eq!(refused, Err(CollabError::NotPermitted(Refusal::NotAWriter)));
    net.run_for(Duration::from_secs(2));
    for i in 0..4 {
        assert_eq!(
            keys(net.node(i), TOPIC),
            vec!["ok".to_owned()],
            "replica {i}"
        );
    }
    // The owner takes node 1 off the list: its later writes are refused everywhere.
    net.with(0, |n, now| {
        n.store_allow(now, TOPIC, writer, false).unwrap()
    });
    net.run_for(Duration::from_secs(2));
    let r = {
        let mut r = Ok(());
        net.with(1, |n, now| {
            r = n.store_put(now, TOPIC, "late", Bytes::from_static(b"3"), "")
        });
        r
    };
    assert!(r.is_err());
}

#[cfg(feature = "adversary")]
#[test]
fn a_forged_write_is_refused_by_every_other_replica() {
    let mut net = testnet::Net::new(4, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    open_kv(&mut net, 3, AccessPolicy::Signed, &[]);
    net.run_for(Duration::from_secs(8));
    let mut hash = None;
    net.with(3, |n, now| {
        hash = Some(
            n.forge_store_put(now, TOPIC, "evil", Bytes::from_static(b"x"))
                .unwrap(),
        )
    });
    net.run_for(Duration::from_secs(12));
    let hash = hash.unwrap();
    // The forger's own replica judges it too.
    for i in 0..4 {
        assert!(
            !net.node(i).store(TOPIC).unwrap().holds(&hash),
            "replica {i}"
        );
    }
    for i in 0..3 {
        assert!(
            net.node(i).collab_stats().refused_policy >= 1,
            "replica {i}"
        );
    }
}

#[test]
fn task_rules_hold_and_concurrent_claims_resolve_alike() {
    let mut net = testnet::Net::new(3, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    let list = "team-tasks";
    let mut id = String::new();
    net.with(0, |n, now| {
        n.create_store(
            now,
            StoreKind::TaskList,
            list,
            "todo",
            AccessPolicy::Open,
            &[],
        )
        .unwrap();
        id = n.task_add(now, list, "write tests", "all of them").unwrap();
    });
    // The same topic opened elsewhere joins the list (the creations merge).
    for i in 1..3 {
        net.with(i, |n, now| {
            n.create_store(
                now,
                StoreKind::TaskList,
                list,
                "todo",
                AccessPolicy::Open,
                &[],
            )
            .unwrap()
        });
    }
    net.run_for(Duration::from_secs(8));
    for i in 1..3 {
        assert_eq!(
            net.node(i).store(list).unwrap().tasks().len(),
            1,
            "replica {i}"
        );
    }
    // Completing without a claim is refused; two claims at once end the same everywhere.
    let mut r = Ok(());
    net.with(1, |n, now| r = n.task_complete(now, list, &id));
    assert_eq!(r, Err(CollabError::NotPermitted(Refusal::TaskNotClaimed)));
    net.with(1, |n, now| n.task_claim(now, list, &id).unwrap());
    net.with(2, |n, now| n.task_claim(now, list, &id).unwrap());
    net.run_for(Duration::from_secs(8));
    let states: Vec<TaskState> = (0..3)
        .map(|i| net.node(i).store(list).unwrap().task(&id).unwrap().state)
        .collect();
    assert!(matches!(states[0], TaskState::Claimed(_)));
    assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
    let holder = (1..3)
        .find(|&i| Some(agent(&mut net, i)) == states[0].agent())
        .unwrap();
    let other = 3 - holder;
    net.with(other, |n, now| r = n.task_complete(now, list, &id));
    assert_eq!(r, Err(CollabError::NotPermitted(Refusal::TaskNotClaimed)));
    net.with(holder, |n, now| n.task_complete(now, list, &id).unwrap());
    net.run_for(Duration::from_secs(3));
    for i in 0..3 {
        assert!(matches!(
            net.node(i).store(list).unwrap().task(&id).unwrap().state,
            TaskState::Done(_)
        ));
    }
    net.with(0, |n, now| r = n.task_claim(now, list, &id));
    assert_eq!(r, Err(CollabError::NotPermitted(Refusal::TaskDone)));
}

#[test]
fn a_snapshot_restores_the_store_after_a_restart() {
    let mut net = testnet::Net::new(2, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    net.with(0, |n, now| {
        n.create_store(now, StoreKind::Kv, TOPIC, "t", AccessPolicy::Signed, &[])
            .unwrap();
        for k in 0..5 {
            n.store_put(now, TOPIC, &format!("k{k}"), Bytes::from_static(b"v"), "")
                .unwrap();
        }
    });
    let snap = net.node(0).store_snapshot(TOPIC).unwrap();
    let bytes = postcard::to_allocvec(&snap).unwrap();
    let mut fresh = node(0, Config::default());
    let snap = postcard::from_bytes(&bytes).unwrap();
    fresh.restore_store(t(0), snap).unwrap();
    assert_eq!(keys(&fresh, TOPIC).len(), 5);
    // The restored owner writes on (a new actor, no sequence clash).
    fresh
        .store_put(t(1), TOPIC, "k9", Bytes::from_static(b"v"), "")
        .unwrap();
    assert_eq!(keys(&fresh, TOPIC).len(), 6);
    assert_eq!(fresh.store(TOPIC).unwrap().owner(), Some(fresh.agent_id()));
}

#[test]
fn a_catch_up_is_not_sent_back_to_the_neighbour_it_came_from() {
    let jc = Config {
        bootstrap: vec![addr(1)],
        ..Config::default()
    };
    let (mut w, mut j) = (node(1, Config::default()), node(2, jc));
    w.create_store(t(0), StoreKind::Kv, TOPIC, "t", AccessPolicy::Signed, &[])
        .unwrap();
    // Enough batches for several anti-entropy frames.
    for b in 0..20u64 {
        let items = (0..100)
            .map(|k| {
                (
                    format!("k{b}-{k}"),
                    Bytes::from(vec![7; 100]),
                    String::new(),
                )
            })
            .collect();
        w.store_put_batch(t(1 + b), TOPIC, items).unwrap();
    }
    drain_transmits(&mut w);
    let now = t(100);
    w.start(now);
    j.start(now);
    assert!(
        drain_actions(&mut j)
            .iter()
            .any(|a| matches!(a, Action::Dial { addr: to, .. } if *to == addr(1)))
    );
    j.handle_connected(now, w.machine_id(), addr(1), Direction::Outbound);
    w.handle_connected(now, j.machine_id(), addr(2), Direction::Inbound);
    pump(&mut w, &mut j, now);
    assert_eq!(w.active_view(), vec![j.machine_id()]);
    j.join_store(now, StoreKind::Kv, TOPIC, Some(w.agent_id()))
        .unwrap();
    let mut back = Vec::new();
    for _ in 0..50 {
        let (tw, tj) = (drain_transmits(&mut w), drain_transmits(&mut j));
        if tw.is_empty() && tj.is_empty() {
            break;
        }
        for tx in tw {
            let _ = j.handle_frame(now, w.machine_id(), &tx.frame);
        }
        for tx in tj {
            back.push(tx.kind);
            let _ = w.handle_frame(now, j.machine_id(), &tx.frame);
        }
    }
    assert_eq!(keys(&j, TOPIC).len(), 2000);
    assert!(!back.contains(&FrameKind::Gossip), "{back:?}");
}

#[test]
fn done_wins_over_a_concurrent_claim_on_every_replica() {
    let mut net = testnet::Net::new(3, |_| Config::default());
    net.run_for(Duration::from_secs(3));
    let list = "race-tasks";
    let mut id = String::new();
    for i in 0..3 {
        net.with(i, |n, now| {
            n.create_store(
                now,
                StoreKind::TaskList,
                list,
                "todo",
                AccessPolicy::Open,
                &[],
            )
            .unwrap();
        });
    }
    net.with(0, |n, now| id = n.task_add(now, list, "race", "").unwrap());
    net.run_for(Duration::from_secs(8));
    // Node 1 claims and completes; node 2 claims before hearing of either.
    net.with(1, |n, now| {
        n.task_claim(now, list, &id).unwrap();
        n.task_complete(now, list, &id).unwrap();
    });
    // Its claim gets the greater op counter (automerge's pick among concurrent values).
    net.with(2, |n, now| {
        for k in 0..5 {
            n.task_add(now, list, &format!("filler {k}"), "").unwrap();
        }
        n.task_claim(now, list, &id).unwrap();
    });
    net.run_for(Duration::from_secs(8));
    let done_by = agent(&mut net, 1);
    for i in 0..3 {
        let state = net.node(i).store(list).unwrap().task(&id).unwrap().state;
        assert_eq!(state, TaskState::Done(done_by), "replica {i}");
    }
}
