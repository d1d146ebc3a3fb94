//! Convergence under any delivery: replicas of one store that receive the same signed batches
//! in any order, any number of times, end in the same state and refuse the same changes,
//! whatever the writers did concurrently: allowlist removals racing writes, concurrent task
//! claims, writes by agents outside the policy, malformed changes, another agent's changes
//! re-signed as its own, restarts under a new incarnation.
//!
//! Writers are [`Replica`]s driven through the crate's own write methods; a write the writer's
//! own checks refuse is made anyway with [`Replica::commit`] (a node that ignores the policy),
//! so it sits in the writer's document and everything the writer writes after it depends on
//! it. Proofs are opaque bytes here: signatures are the node's business.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use automerge::legacy::OpType;
use automerge::transaction::{Transactable, Transaction};
use automerge::{AutomergeError, Change, ChangeHash, ObjType, ROOT, ReadDoc, ScalarValue};
use bytes::Bytes;
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::layout::{self, KvEntry, TaskItem};
use super::{AccessPolicy, CollabConfig, CollabError, CollabStats, Replica, StoreKind};
use crate::identity::{AgentId, AgentKeypair};

/// Creates both stores; always allowed to write the KV store.
const OWNER: usize = 0;
/// On the KV store's allowlist at creation.
const W1: usize = 1;
/// Not on the allowlist at creation; the owner may add it.
const W2: usize = 2;
/// Never on the allowlist; re-signs other writers' changes.
const X: usize = 3;
const WRITERS: usize = 4;
const MAX_READERS: usize = 5;
/// The KV store and the task list, as indices into per-store arrays.
const KV: usize = 0;
const TASKS: usize = 1;

/// Agent ids from real keys: the writers, then the readers, then one for the
/// anti-entropy replica. Derived once per process.
fn agent(i: usize) -> AgentId {
    static A: OnceLock<Vec<AgentId>> = OnceLock::new();
    A.get_or_init(|| {
        (0..=WRITERS + MAX_READERS)
            .map(|i| AgentKeypair::from_seed([i as u8 + 1; 32]).agent_id())
            .collect()
    })[i]
}

fn cfg() -> CollabConfig {
    CollabConfig::default()
}

/// What every replica must do with a change whose past it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accept,
    Policy,
    Malformed,
}

#[derive(Debug)]
struct ChangeInfo {
    store: usize,
    author: usize,
    expect: Expect,
    deps: Vec<ChangeHash>,
}

#[derive(Debug)]
struct Batch {
    store: usize,
    author: usize,
    proof: Bytes,
    changes: Vec<Bytes>,
    /// Another writer's changes signed by `author` (not their actor).
    replay: bool,
}

/// A store pair of one agent, and the batches it has seen (authored or applied).
#[derive(Debug)]
struct Site {
    stores: [Replica; 2],
    seen: BTreeSet<usize>,
    stats: CollabStats,
}

impl Site {
    fn new(who: usize, incarnation: u64, owner: Option<AgentId>) -> Self {
        Self {
            stores: [
                Replica::new("kv".into(), StoreKind::Kv, agent(who), incarnation, owner),
                Replica::new(
                    "tasks".into(),
                    StoreKind::TaskList,
                    agent(who),
                    incarnation,
                    None,
                ),
            ],
            seen: BTreeSet::new(),
            stats: CollabStats::default(),
        }
    }

    fn apply(&mut self, i: usize, b: &Batch) {
        let before = self.stores[b.store].change_count();
        let out = self.stores[b.store].apply(
            agent(b.author),
            b.proof.clone(),
            &b.changes,
            &cfg(),
            &mut self.stats,
        );
        assert_eq!(
            self.stores[b.store].change_count(),
            before + out.applied,
            "batch {i}: the count grows by what apply reports"
        );
        if let Err(e) = self.stores[b.store].check_invariants() {
            panic!("batch {i}: {e}");
        }
        self.seen.insert(i);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put { who: usize, key: u8, n: u8 },
    Delete { who: usize, key: u8 },
    Allow { who: usize, w2: bool, allowed: bool },
    Junk { who: usize, store: usize, how: u8 },
    AddTask { who: usize },
    Claim { who: usize, task: u8 },
    Complete { who: usize, task: u8 },
    Move { who: usize, task: u8, to: u8 },
    Readd { who: usize, task: u8 },
    Replay { batch: u8 },
    Sync { to: usize, from: usize },
    Restart { who: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..WRITERS;
    let other = 1..WRITERS;
    prop_oneof![
        5 => (who.clone(), any::<u8>(), 1u8..4).prop_map(|(who, key, n)| Op::Put { who, key, n }),
        1 => (who.clone(), any::<u8>()).prop_map(|(who, key)| Op::Delete { who, key }),
        2 => (who.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(who, w2, allowed)| Op::Allow { who, w2, allowed }),
        1 => (other.clone(), 0..2usize, any::<u8>())
            .prop_map(|(who, store, how)| Op::Junk { who, store, how }),
        2 => who.clone().prop_map(|who| Op::AddTask { who }),
        3 => (who.clone(), any::<u8>()).prop_map(|(who, task)| Op::Claim { who, task }),
        2 => (who.clone(), any::<u8>()).prop_map(|(who, task)| Op::Complete { who, task }),
        1 => (who.clone(), any::<u8>(), any::<u8>())
            .prop_map(|(who, task, to)| Op::Move { who, task, to }),
        1 => (other, any::<u8>()).prop_map(|(who, task)| Op::Readd { who, task }),
        1 => any::<u8>().prop_map(|batch| Op::Replay { batch }),
        5 => (who.clone(), who.clone()).prop_map(|(to, from)| Op::Sync { to, from }),
        2 => who.prop_map(|who| Op::Restart { who }),
    ]
}

/// The writers, every batch they published, and every change in them.
struct World {
    sites: Vec<Site>,
    batches: Vec<Batch>,
    changes: BTreeMap<ChangeHash, ChangeInfo>,
    /// `changes` in creation order (a change's dependencies come before it).
    order: Vec<ChangeHash>,
    now: u64,
    incarnations: u64,
}

/// Commits `edit` on `r` with no permission check.
/// `None` when it changes nothing (the value is already there).
fn force(
    r: &mut Replica,
    now: u64,
    edit: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
) -> Option<Change> {
    r.commit(now, edit).expect("the edit is valid automerge")
}

fn refused_locally(e: &CollabError) -> bool {
    matches!(e, CollabError::NotPermitted(_) | CollabError::NotSynced)
}

impl World {
    fn new() -> Self {
        let mut w = Self {
            sites: (0..WRITERS).map(|i| Site::new(i, i as u64, None)).collect(),
            batches: Vec::new(),
            changes: BTreeMap::new(),
            order: Vec::new(),
            now: 1_800_000_000_000,
            incarnations: WRITERS as u64,
        };
        let now = w.now;
        let c = w.sites[OWNER].stores[KV]
            .genesis(now, "team", AccessPolicy::Allowlisted, &[agent(W1)])
            .unwrap();
        w.publish(
            OWNER,
            KV,
            c.into_iter().map(|c| (c, Expect::Accept)).collect(),
        );
        // Two creations of the same task list: they merge.
        for who in [OWNER, W1] {
            let c = w.sites[who].stores[TASKS]
                .genesis(now, "todo", AccessPolicy::Open, &[])
                .unwrap();
            w.publish(
                who,
                TASKS,
                c.into_iter().map(|c| (c, Expect::Accept)).collect(),
            );
        }
        for to in 1..WRITERS {
            w.sync(to, OWNER);
        }
        w
    }

    /// Files `changes`, just made by `who` on `store`, as one signed batch.
    fn publish(&mut self, who: usize, store: usize, changes: Vec<(Change, Expect)>) {
        if changes.is_empty() {
            return;
        }
        let i = self.batches.len();
        let proof = Bytes::from(format!("batch {i} by {who}"));
        let hashes: Vec<ChangeHash> = changes.iter().map(|(c, _)| c.hash()).collect();
        let site = &mut self.sites[who];
        site.stores[store].record_local(&hashes, proof.clone(), &mut site.stats);
        site.seen.insert(i);
        for (c, expect) in &changes {
            self.order.push(c.hash());
            self.changes.insert(
                c.hash(),
                ChangeInfo {
                    store,
                    author: who,
                    expect: *expect,
                    deps: c.deps().to_vec(),
                },
            );
        }
        self.batches.push(Batch {
            store,
            author: who,
            proof,
            changes: changes
                .iter()
                .map(|(c, _)| Bytes::copy_from_slice(c.raw_bytes()))
                .collect(),
            replay: false,
        });
    }

    /// `to` applies every batch `from` has seen and it has not.
    fn sync(&mut self, to: usize, from: usize) {
        let new: Vec<usize> = self.sites[from]
            .seen
            .difference(&self.sites[to].seen)
            .copied()
            .collect();
        for i in new {
            self.sites[to].apply(i, &self.batches[i]);
        }
    }

    /// `who` restarts under a new incarnation and replays every batch it has seen, its own
    /// included: its writes the stores refuse are gone from its document.
    fn restart(&mut self, who: usize) {
        self.incarnations += 1;
        let mut site = Site::new(who, self.incarnations, None);
        for &i in &self.sites[who].seen {
            site.apply(i, &self.batches[i]);
        }
        self.sites[who] = site;
    }

    fn task_id(&self, who: usize, pick: u8) -> Option<String> {
        let list = self.sites[who].stores[TASKS].tasks();
        (!list.is_empty()).then(|| list[usize::from(pick) % list.len()].id.clone())
    }

    fn run(&mut self, op: &Op) {
        self.now += 1000;
        let now = self.now;
        let cfg = cfg();
        match *op {
            Op::Put { who, key, n } => {
                let r = &mut self.sites[who].stores[KV];
                let mut batch = Vec::new();
                for i in 0..n {
                    let key = format!("k{}", (key.wrapping_add(i)) % 6);
                    let value = Bytes::from(format!("{who}@{now}"));
                    match r.kv_put(now, &key, value.clone(), "text/plain", &cfg) {
                        Ok(Some(c)) => batch.push((c, Expect::Accept)),
                        Ok(None) => {}
                        Err(e) if refused_locally(&e) => {
                            let entry = layout::encode(&KvEntry {
                                content_type: "text/plain".into(),
                                created_at_ms: now,
                                updated_at_ms: now,
                                value,
                            });
                            let c = force(r, now, |tx| {
                                tx.put(ROOT, layout::entry_key(&key), ScalarValue::Bytes(entry))
                            });
                            batch.extend(c.map(|c| (c, Expect::Policy)));
                        }
                        Err(e) => panic!("put: {e}"),
                    }
                }
                self.publish(who, KV, batch);
            }
            Op::Delete { who, key } => {
                let key = format!("k{}", key % 6);
                let r = &mut self.sites[who].stores[KV];
                if r.kv_get(&key).is_none() {
                    return;
                }
                let c = match r.kv_remove(now, &key) {
                    Ok(c) => c.map(|c| (c, Expect::Accept)),
                    Err(e) if refused_locally(&e) => {
                        force(r, now, |tx| tx.delete(ROOT, layout::entry_key(&key)))
                            .map(|c| (c, Expect::Policy))
                    }
                    Err(e) => panic!("delete: {e}"),
                };
                self.publish(who, KV, c.into_iter().collect());
            }
            Op::Allow { who, w2, allowed } => {
                let target = agent(if w2 { W2 } else { W1 });
                let r = &mut self.sites[who].stores[KV];
                let c = if who == OWNER {
                    match r.kv_allow(now, &target, allowed) {
                        Ok(c) => c.map(|c| (c, Expect::Accept)),
                        // Removing an agent that is not on the list.
                        Err(CollabError::Invalid { .. }) => None,
                        Err(e) => panic!("allow: {e}"),
                    }
                } else {
                    assert!(r.kv_allow(now, &target, allowed).is_err());
                    force(r, now, |tx| {
                        tx.put(ROOT, layout::allow_key(&target), ScalarValue::Boolean(true))
                    })
                    .map(|c| (c, Expect::Policy))
                };
                self.publish(who, KV, c.into_iter().collect());
            }
            Op::Junk { who, store, how } => {
                let r = &mut self.sites[who].stores[store];
                let c = force(r, now, |tx| match how % 4 {
                    0 => tx.put(ROOT, "junk", 1),
                    1 => tx.put_object(ROOT, "k/nested", ObjType::Map).map(|_| ()),
                    2 => tx.put(ROOT, "k/str", "not an entry"),
                    _ => tx.put(ROOT, "p/0000", 1.5),
                });
                self.publish(
                    who,
                    store,
                    c.map(|c| (c, Expect::Malformed)).into_iter().collect(),
                );
            }
            Op::AddTask { who } => {
                let title = format!("task {who}@{now}");
                let (_, c) = self.sites[who].stores[TASKS]
                    .task_add(now, &title, "", &cfg)
                    .unwrap();
                self.publish(
                    who,
                    TASKS,
                    c.map(|c| (c, Expect::Accept)).into_iter().collect(),
                );
            }
            Op::Claim { who, task } | Op::Complete { who, task } => {
                let done = matches!(op, Op::Complete { .. });
                let Some(id) = self.task_id(who, task) else {
                    return;
                };
                let r = &mut self.sites[who].stores[TASKS];
                let c = match r.task_step(now, &id, done) {
                    Ok(c) => c.map(|c| (c, Expect::Accept)),
                    Err(CollabError::NotPermitted(_)) if who == OWNER => None,
                    Err(CollabError::NotPermitted(_)) => {
                        let me = agent(who).to_hex();
                        let state = if done {
                            format!("done:{me}")
                        } else {
                            format!("claimed:{me}")
                        };
                        // Put over a conflict whose winner already holds the value,
                        // automerge writes a delete of the other values: a task list never
                        // deletes, so that is malformed rather than against the task rules.
                        force(r, now, |tx| tx.put(ROOT, layout::state_key(&id), state)).map(|c| {
                            let delete = c
                                .decode()
                                .operations
                                .iter()
                                .any(|op| op.action == OpType::Delete);
                            (
                                c,
                                if delete {
                                    Expect::Malformed
                                } else {
                                    Expect::Policy
                                },
                            )
                        })
                    }
                    Err(e) => panic!("task step: {e}"),
                };
                self.publish(who, TASKS, c.into_iter().collect());
            }
            Op::Move { who, task, to } => {
                let Some(id) = self.task_id(who, task) else {
                    return;
                };
                let c = self.sites[who].stores[TASKS]
                    .task_move(now, &id, usize::from(to % 4))
                    .unwrap();
                self.publish(
                    who,
                    TASKS,
                    c.map(|c| (c, Expect::Accept)).into_iter().collect(),
                );
            }
            Op::Readd { who, task } => {
                let Some(id) = self.task_id(who, task) else {
                    return;
                };
                let item = layout::encode(&TaskItem {
                    title: "again".into(),
                    description: String::new(),
                    created_by: agent(who),
                    created_at_ms: now,
                });
                let r = &mut self.sites[who].stores[TASKS];
                let c = force(r, now, |tx| {
                    tx.put(ROOT, layout::task_key(&id), ScalarValue::Bytes(item))
                });
                self.publish(
                    who,
                    TASKS,
                    c.map(|c| (c, Expect::Policy)).into_iter().collect(),
                );
            }
            Op::Replay { batch } => {
                // X signs another writer's batch as its own: the actor is not the signer's.
                let i = usize::from(batch) % self.batches.len();
                let b = &self.batches[i];
                if b.author == X || b.replay {
                    return;
                }
                let j = self.batches.len();
                let replay = Batch {
                    store: b.store,
                    author: X,
                    proof: Bytes::from(format!("batch {j}: {i} replayed by {X}")),
                    changes: b.changes.clone(),
                    replay: true,
                };
                self.batches.push(replay);
                self.sites[X].seen.insert(j);
            }
            Op::Sync { to, from } => self.sync(to, from),
            Op::Restart { who } => self.restart(who),
        }
    }
}

/// What every replica that received every batch must show, per store.
#[derive(Debug, Default)]
struct Expected {
    held: [BTreeSet<ChangeHash>; 2],
    /// Changes refused outright (their past was accepted): by the policy or the task rules,
    /// and as malformed.
    policy: u64,
    malformed: u64,
    /// Changes that wait for ever: their past holds a refused change.
    waiting: [usize; 2],
}

fn expected(w: &World) -> Expected {
    let mut tainted = BTreeSet::new();
    let mut e = Expected::default();
    for h in &w.order {
        let c = &w.changes[h];
        let past_ok = c.deps.iter().all(|d| {
            assert!(w.changes.contains_key(d), "a dependency outside the log");
            !tainted.contains(d)
        });
        match (past_ok, c.expect) {
            (true, Expect::Accept) => {
                e.held[c.store].insert(*h);
                continue;
            }
            (true, Expect::Policy) => e.policy += 1,
            (true, Expect::Malformed) => e.malformed += 1,
            (false, _) => e.waiting[c.store] += 1,
        }
        tainted.insert(*h);
    }
    e
}

/// Batches `0..n`, some of them twice, in an order drawn from `seed`.
fn delivery(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let extra = (rng.next_u64() % (n as u64 / 2 + 1)) as usize;
    for _ in 0..extra {
        order.push((rng.next_u64() % n as u64) as usize);
    }
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The state every replica must agree on.
fn state(s: &Site) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        s.stores[KV].heads(),
        s.stores[TASKS].heads(),
        s.stores[KV].kv_entries(),
        s.stores[TASKS].tasks(),
        s.stores[KV].owner(),
        s.stores[KV].policy(),
        s.stores[KV].name(),
    )
}

fn check(ops: &[Op], readers: &[(u64, bool)], budget: usize) {
    let mut w = World::new();
    for op in ops {
        w.run(op);
    }
    let e = expected(&w);
    let n = w.batches.len();

    let mut sites = Vec::new();
    for (k, &(seed, pinned)) in readers.iter().enumerate() {
        let who = WRITERS + k;
        let mut site = Site::new(who, who as u64, pinned.then(|| agent(OWNER)));
        // Re-signed changes are refused at every arrival (nothing is remembered of them).
        let mut replayed = 0;
        for i in delivery(n, seed) {
            let b = &w.batches[i];
            if b.replay {
                replayed += b.changes.len() as u64;
            }
            site.apply(i, b);
        }
        for store in [KV, TASKS] {
            let r = &site.stores[store];
            for (h, c) in w.changes.iter().filter(|(_, c)| c.store == store) {
                assert_eq!(
                    r.holds(h),
                    e.held[store].contains(h),
                    "reader {k}: change by {} expected {:?}",
                    c.author,
                    c.expect
                );
                if store == KV && c.author == X {
                    assert!(
                        !r.holds(h),
                        "reader {k} holds a write by an agent outside the policy"
                    );
                }
            }
            assert_eq!(r.waiting(), e.waiting[store], "reader {k}, store {store}");
            assert_eq!(r.change_count(), e.held[store].len(), "reader {k}");
        }
        let st = &site.stats;
        assert_eq!(st.refused_policy, e.policy, "reader {k}: {st:?}");
        assert_eq!(
            st.refused_malformed,
            e.malformed + replayed,
            "reader {k}: {st:?}"
        );
        let held = (e.held[KV].len() + e.held[TASKS].len()) as u64;
        assert_eq!(st.remote_applied, held, "reader {k}");
        assert_eq!((st.refused_full, st.pending_dropped), (0, 0));
        sites.push(site);
    }
    let first = state(&sites[0]);
    for (k, s) in sites.iter().enumerate().skip(1) {
        assert_eq!(state(s), first, "reader {k} differs from reader 0");
    }
    assert_eq!(sites[0].stores[KV].owner(), Some(agent(OWNER)));

    // The owner, which never writes against the rules, agrees once it has heard everyone.
    for from in 1..WRITERS {
        w.sync(OWNER, from);
    }
    assert_eq!(state(&w.sites[OWNER]), first, "the owner's own replica");

    // A late joiner catching up from reader 0 by anti-entropy alone, `budget` bytes a round.
    let by_proof: HashMap<&Bytes, usize> = w
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (&b.proof, i))
        .collect();
    let mut late = Site::new(WRITERS + MAX_READERS, 99, None);
    for store in [KV, TASKS] {
        let mut rounds = 0;
        loop {
            let m =
                sites[0].stores[store].batches_missing_from(&late.stores[store].heads(), budget);
            assert!(!m.they_have_more, "the joiner holds nothing reader 0 lacks");
            if m.batches.is_empty() {
                break;
            }
            rounds += 1;
            assert!(
                rounds <= n + 1,
                "anti-entropy makes no progress (store {store})"
            );
            for p in &m.batches {
                let i = by_proof[p];
                late.apply(i, &w.batches[i]);
            }
        }
        assert_eq!(
            late.stores[store].heads(),
            sites[0].stores[store].heads(),
            "store {store} after {rounds} rounds"
        );
    }
    assert_eq!(state(&late), first, "the anti-entropy joiner");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Same batches, any order, duplicates: same state, same refusals, on every replica.
    #[test]
    fn replicas_converge_and_refuse_alike_under_any_delivery(
        ops in proptest::collection::vec(op(), 1..40),
        readers in proptest::collection::vec((any::<u64>(), any::<bool>()), 3..=MAX_READERS),
        budget in prop_oneof![Just(1usize), Just(64), Just(1 << 20)],
    ) {
        check(&ops, &readers, budget);
    }
}

/// A deterministic case of each race the property covers, so a failure names it.
#[test]
fn races_converge() {
    use Op::*;
    let ops = [
        // W1 writes while the owner removes it; W1 writes again after hearing it.
        Put {
            who: W1,
            key: 0,
            n: 2,
        },
        Allow {
            who: OWNER,
            w2: false,
            allowed: false,
        },
        Sync {
            to: W1,
            from: OWNER,
        },
        Put {
            who: W1,
            key: 1,
            n: 1,
        },
        Restart { who: W1 },
        // X writes; W2 writes before and after the owner adds it.
        Put {
            who: X,
            key: 2,
            n: 1,
        },
        Put {
            who: W2,
            key: 3,
            n: 1,
        },
        Allow {
            who: OWNER,
            w2: true,
            allowed: true,
        },
        Sync {
            to: W2,
            from: OWNER,
        },
        Put {
            who: W2,
            key: 3,
            n: 1,
        },
        // Two claims of one task at once, then the loser completes before hearing the winner.
        AddTask { who: OWNER },
        Sync {
            to: W1,
            from: OWNER,
        },
        Sync {
            to: W2,
            from: OWNER,
        },
        Claim { who: W1, task: 0 },
        Claim { who: W2, task: 0 },
        Complete { who: W2, task: 0 },
        Sync { to: W1, from: W2 },
        Claim { who: W1, task: 0 },
        Readd { who: X, task: 0 },
        Junk {
            who: X,
            store: KV,
            how: 1,
        },
        Replay { batch: 5 },
    ];
    for seed in 0..8 {
        for budget in [1, 64, 1 << 20] {
            check(
                &ops,
                &[(seed, false), (seed + 100, true), (seed + 200, false)],
                budget,
            );
        }
    }
}

/// Regression: a change re-signed by another agent, arriving before the real batch, was
/// remembered as refused (or held waiting under the wrong author), so that replica refused
/// the real change for ever while others held it.
#[test]
fn a_change_re_signed_by_another_agent_does_not_block_the_real_one() {
    let mut w = World::new();
    w.run(&Op::Put {
        who: OWNER,
        key: 0,
        n: 2,
    });
    w.run(&Op::Put {
        who: OWNER,
        key: 1,
        n: 1,
    });
    let (first, second) = (w.batches.len() - 2, w.batches.len() - 1);
    for i in [first, second] {
        w.run(&Op::Replay { batch: i as u8 });
    }
    let n = w.batches.len();
    // Replays first, the later one before its past; then the real batches.
    let mut r = Site::new(WRITERS, 7, None);
    for i in (0..first).chain([n - 1, n - 2, second, first]) {
        r.apply(i, &w.batches[i]);
    }
    let e = expected(&w);
    assert_eq!(r.stores[KV].change_count(), e.held[KV].len());
    assert_eq!(r.stores[KV].waiting(), 0);
    assert_eq!(r.stats.refused_malformed, 3);
    assert!(r.stores[KV].kv_get("k0").is_some() && r.stores[KV].kv_get("k1").is_some());
}

/// Regression: anti-entropy sent batches in the order the sender filed them; a batch filed
/// while its change waited comes before the batch of its past, and with a small budget every
/// round resent the waiting one and never the past it waited for.
#[test]
fn anti_entropy_reaches_the_past_a_batch_waits_for() {
    let mut w = World::new();
    for _ in 0..3 {
        w.run(&Op::Put {
            who: OWNER,
            key: 0,
            n: 1,
        });
    }
    let n = w.batches.len();
    // The source got the newest batch first: it waited, and was filed before its past.
    let mut source = Site::new(WRITERS, 7, None);
    for i in (0..n).rev() {
        source.apply(i, &w.batches[i]);
    }
    assert_eq!(source.stores[KV].waiting(), 0);
    let by_proof: HashMap<&Bytes, usize> = w
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (&b.proof, i))
        .collect();
    for store in [KV, TASKS] {
        let mut late = Site::new(WRITERS + 1, 8, None);
        let mut rounds = 0;
        loop {
            let m = source.stores[store].batches_missing_from(&late.stores[store].heads(), 1);
            if m.batches.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= n, "store {store}: no progress");
            assert_eq!(m.batches.len(), 1, "the budget fits one batch");
            let i = by_proof[&m.batches[0]];
            late.apply(i, &w.batches[i]);
            assert_eq!(late.stores[store].waiting(), 0, "sent in causal order");
        }
        assert_eq!(late.stores[store].heads(), source.stores[store].heads());
    }
}

/// A KV write with no past (no creation in it) is refused by every replica, whether the
/// creation arrived before it or not, even when its author is the owner (an owner's session
/// that never saw its own creation).
#[test]
fn a_write_without_the_creation_in_its_past_is_refused_in_any_order() {
    let mut w = World::new();
    let genesis = 0;
    let mut stray = Site::new(OWNER, 1234, None);
    let r = &mut stray.stores[KV];
    assert_eq!(
        r.kv_put(1, "k0", Bytes::from_static(b"v"), "", &cfg()),
        Err(CollabError::NotSynced)
    );
    let c = force(r, 1, |tx| {
        tx.put(ROOT, layout::entry_key("k0"), ScalarValue::Bytes(vec![1]))
    })
    .unwrap();
    w.batches.push(Batch {
        store: KV,
        author: OWNER,
        proof: Bytes::from_static(b"stray"),
        changes: vec![Bytes::copy_from_slice(c.raw_bytes())],
        replay: false,
    });
    let stray_batch = w.batches.len() - 1;
    for order in [[genesis, stray_batch], [stray_batch, genesis]] {
        let mut r = Site::new(WRITERS, 7, None);
        for i in order {
            r.apply(i, &w.batches[i]);
        }
        assert!(!r.stores[KV].holds(&c.hash()), "order {order:?}");
        assert_eq!(r.stats.refused_policy, 1, "order {order:?}");
    }
}

/// Regression: moving a task to the position it already shows, while a concurrent move left
/// a conflict on it, made automerge resolve the conflict with a delete, which every replica
/// refuses as malformed: the mover's replica kept it and everything it wrote after it waited
/// for ever elsewhere.
#[test]
fn a_move_onto_the_winning_position_of_a_conflict_writes_nothing() {
    let mut w = World::new();
    for _ in 0..3 {
        w.run(&Op::AddTask { who: OWNER });
    }
    w.run(&Op::Sync {
        to: W1,
        from: OWNER,
    });
    w.run(&Op::Sync {
        to: W2,
        from: OWNER,
    });
    let ids: Vec<String> = w.sites[W1].stores[TASKS]
        .tasks()
        .into_iter()
        .map(|t| t.id)
        .collect();
    let last = ids.len() as u8 - 1;
    // Two moves of the last task at once: to the front, and between the first two.
    w.run(&Op::Move {
        who: W1,
        task: last,
        to: 0,
    });
    w.run(&Op::Move {
        who: W2,
        task: last,
        to: 1,
    });
    w.run(&Op::Sync { to: W1, from: W2 });
    let r = &w.sites[W1].stores[TASKS];
    let shown = r.task(&ids[2]).unwrap().position;
    let at = r.tasks().iter().position(|t| t.id == ids[2]).unwrap();
    // Moving it where it shows computes the position it has.
    let to = if shown == 0.0 { 0 } else { 1 };
    let before = w.batches.len();
    w.run(&Op::Move {
        who: W1,
        task: at as u8,
        to,
    });
    assert_eq!(w.batches.len(), before, "nothing to write");
    w.run(&Op::AddTask { who: W1 });
    let mut reader = Site::new(WRITERS, 7, None);
    for i in 0..w.batches.len() {
        reader.apply(i, &w.batches[i]);
    }
    let e = expected(&w);
    assert_eq!(reader.stores[TASKS].change_count(), e.held[TASKS].len());
    assert_eq!(reader.stores[TASKS].waiting(), 0);
    assert_eq!(
        reader.stores[TASKS].heads(),
        w.sites[W1].stores[TASKS].heads()
    );
}

/// Regression: a change with no operations passed every rule (it touches no key), so an agent
/// outside the policy could fill every replica of a store with empty changes, which were kept
/// and relayed to every joiner.
#[test]
fn an_empty_change_is_refused_from_anyone() {
    let mut w = World::new();
    for who in [X, OWNER] {
        let r = &mut w.sites[who].stores[KV];
        let h = r
            .doc
            .empty_commit(automerge::transaction::CommitOptions::default());
        let c = r.doc.get_change_by_hash(&h).unwrap();
        w.publish(who, KV, vec![(c, Expect::Malformed)]);
    }
    let mut reader = Site::new(WRITERS, 7, None);
    for i in 0..w.batches.len() {
        reader.apply(i, &w.batches[i]);
    }
    let e = expected(&w);
    assert_eq!(reader.stores[KV].change_count(), e.held[KV].len());
    assert_eq!(reader.stats.refused_malformed, 2);
}

/// An actor reusing a sequence number with other content (a session restarted under the
/// same incarnation): automerge refuses the second change, and the replica, which applies a
/// batch's changes in one call, falls back to one at a time: the reused number is refused,
/// what depends on it waits, the rest of the batch is applied.
#[test]
fn an_equivocating_change_is_refused_and_the_rest_of_its_batch_applied() {
    let mut w = World::new();
    w.run(&Op::Put {
        who: OWNER,
        key: 0,
        n: 1,
    });
    // A second session of the owner under the same incarnation, which saw only the creation.
    let mut twin = Site::new(OWNER, OWNER as u64, None);
    twin.apply(0, &w.batches[0]);
    let cfg = cfg();
    let twin_kv = &mut twin.stores[KV];
    let other = twin_kv.kv_put(w.now + 1, "k5", Bytes::from_static(b"x"), "", &cfg);
    let other = other.unwrap().unwrap();
    let next = twin_kv.kv_put(w.now + 2, "k4", Bytes::from_static(b"y"), "", &cfg);
    let next = next.unwrap().unwrap();
    assert_eq!(other.seq(), 2, "the sequence number the first session used");
    // A change of the twin's batch that does not depend on the reused number.
    let mut third = Site::new(OWNER, 77, None);
    third.apply(0, &w.batches[0]);
    let fine = third.stores[KV]
        .kv_put(w.now + 3, "k3", Bytes::from_static(b"z"), "", &cfg)
        .unwrap()
        .unwrap();
    let batch = Batch {
        store: KV,
        author: OWNER,
        proof: Bytes::from_static(b"twin"),
        changes: [&fine, &other, &next]
            .iter()
            .map(|c| Bytes::copy_from_slice(c.raw_bytes()))
            .collect(),
        replay: false,
    };
    let mut r = Site::new(WRITERS, 7, None);
    for i in 0..w.batches.len() {
        r.apply(i, &w.batches[i]);
    }
    let before = r.stores[KV].change_count();
    let out = r.stores[KV].apply(
        agent(OWNER),
        batch.proof.clone(),
        &batch.changes,
        &cfg,
        &mut r.stats,
    );
    assert_eq!(
        (out.applied, out.refused, out.waiting),
        (1, 1, 1),
        "{out:?}"
    );
    assert_eq!(r.stores[KV].change_count(), before + 1);
    assert!(r.stores[KV].holds(&fine.hash()) && !r.stores[KV].holds(&other.hash()));
    assert_eq!(r.stores[KV].waiting(), 1);
    r.stores[KV].check_invariants().unwrap();
}

/// A change in automerge's compressed form is refused before it is parsed (parsing inflates
/// it first, with no bound); the same change as x0x sends it is applied.
#[test]
fn a_compressed_change_is_refused_unparsed() {
    let w = World::new();
    let mut owner = Site::new(OWNER, 500, None);
    owner.apply(0, &w.batches[0]);
    let mut c = owner.stores[KV]
        .kv_put(1, "big", Bytes::from(vec![0; 4096]), "", &cfg())
        .unwrap()
        .unwrap();
    let compressed = Bytes::from(c.bytes().into_owned());
    assert_eq!(compressed[8], 2, "automerge compressed it");
    assert!(compressed.len() < c.raw_bytes().len());
    let mut r = Site::new(WRITERS, 7, None);
    r.apply(0, &w.batches[0]);
    let cfg = cfg();
    let kv = &mut r.stores[KV];
    let out = kv.apply(
        agent(OWNER),
        Bytes::from_static(b"z"),
        &[compressed],
        &cfg,
        &mut r.stats,
    );
    assert_eq!((out.applied, out.refused), (0, 1));
    assert_eq!(r.stats.refused_malformed, 1);
    let raw = Bytes::copy_from_slice(c.raw_bytes());
    let out = kv.apply(
        agent(OWNER),
        Bytes::from_static(b"r"),
        &[raw],
        &cfg,
        &mut r.stats,
    );
    assert_eq!(out.applied, 1);
}

/// An outsider's changes whose past never comes cannot fill a store: past
/// `max_waiting_bytes` of such batches nothing more is kept, and none of them is saved.
#[test]
fn changes_waiting_for_a_past_that_never_comes_are_bounded_and_not_saved() {
    let config = CollabConfig {
        max_waiting_bytes: 64 * 1024,
        ..CollabConfig::default()
    };
    let mut stats = CollabStats::default();
    let (owner, outsider) = (agent(OWNER), agent(X));
    let mut own = Replica::new("t".into(), StoreKind::Kv, owner, 1, None);
    let genesis = own
        .genesis(1, "t", AccessPolicy::Signed, &[])
        .unwrap()
        .unwrap();
    own.record_local(&[genesis.hash()], Bytes::from_static(b"g"), &mut stats);
    let mut reader = Replica::new("t".into(), StoreKind::Kv, agent(W1), 2, Some(owner));
    reader.apply(
        owner,
        Bytes::from_static(b"g"),
        &[Bytes::copy_from_slice(genesis.raw_bytes())],
        &config,
        &mut stats,
    );
    // The outsider writes on its own copy; only the second change of each pair is sent, so
    // the first (its past) never arrives.
    let mut theirs = Replica::new("t".into(), StoreKind::Kv, outsider, 3, None);
    for k in 0..100u64 {
        let first = force(&mut theirs, k, |tx| {
            tx.put(ROOT, layout::entry_key("a"), k as i64)
        });
        let second = force(&mut theirs, k, |tx| {
            tx.put(ROOT, layout::entry_key("b"), k as i64)
        });
        assert!(first.is_some() && second.is_some());
        let batch = Bytes::from(vec![k as u8; 4096]);
        reader.apply(
            outsider,
            batch,
            &[Bytes::copy_from_slice(second.unwrap().raw_bytes())],
            &config,
            &mut stats,
        );
    }
    assert!(
        reader.proof_bytes() <= 1 + config.max_waiting_bytes,
        "{}",
        reader.proof_bytes()
    );
    assert!(stats.pending_dropped > 0);
    assert_eq!(reader.snapshot().proofs, vec![Bytes::from_static(b"g")]);
    reader.check_invariants().unwrap();
}
