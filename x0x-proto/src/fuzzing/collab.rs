//! The `collab_changes` target: replicated stores fed hostile batches, payloads and
//! anti-entropy frames.

use bytes::Bytes;

use super::{RECORD_FUZZ_NOW_SECS, round_trip};
use crate::identity::AgentKeypair;

/// The agents of `collab_changes`: the KV store's owner, a writer on its allowlist, an agent
/// outside its policy (keys derived once).
fn collab_keys() -> &'static [AgentKeypair; 3] {
    static KEYS: std::sync::OnceLock<[AgentKeypair; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| std::array::from_fn(|i| AgentKeypair::from_seed([0x40 + i as u8; 32])))
}

/// The topics of `collab_changes`' KV store and task list.
const COLLAB_FUZZ_TOPICS: [&str; 2] = ["fuzz-kv", "fuzz-tasks"];

/// The agent of `collab_changes`' replicas.
const COLLAB_FUZZ_ME: crate::AgentId = crate::AgentId::from_bytes([0x4f; 32]);

/// The clock of `collab_changes`' writes (ms).
const COLLAB_FUZZ_NOW_MS: u64 = RECORD_FUZZ_NOW_SECS * 1000;

/// One batch as a replica applies it.
#[derive(Debug, Clone)]
struct FuzzBatch {
    store: usize,
    author: crate::AgentId,
    proof: Bytes,
    changes: Vec<Bytes>,
}

/// The stores `collab_changes` starts from, as the signed batches that build them, and the
/// seed inputs of its corpus.
#[derive(Debug)]
struct CollabFixture {
    batches: Vec<FuzzBatch>,
    seeds: Vec<(&'static str, Vec<u8>)>,
}

/// Signs `changes` as the pub/sub message a node publishes for them on `store`'s topic.
fn collab_sign(key: &AgentKeypair, store: usize, changes: &[Bytes]) -> Bytes {
    use crate::broadcast::PubSubBody;
    use crate::collab::ChangesPayload;
    use crate::identity::Domain;
    use crate::wire::{Signed, TopicId};

    let body = PubSubBody {
        topic: TopicId::from_name(COLLAB_FUZZ_TOPICS[store]),
        nonce: changes.len() as u64,
        published_at_ms: COLLAB_FUZZ_NOW_MS,
        payload: ChangesPayload::new(changes.to_vec()).encode(),
    };
    let body = Bytes::from(postcard::to_allocvec(&body).unwrap_or_default());
    let signed = Signed::sign_batch(key, Domain::PubSubMessage, vec![body], true);
    Bytes::from(postcard::to_allocvec(&signed[0]).unwrap_or_default())
}

fn collab_fixture() -> &'static CollabFixture {
    static FX: std::sync::OnceLock<CollabFixture> = std::sync::OnceLock::new();
    FX.get_or_init(build_collab_fixture)
}

/// An owned, allowlisted KV store with two entries (one by the writer) and a task list with a
/// claimed task; the seeds: changes each agent could send next, a payload, anti-entropy bodies.
fn build_collab_fixture() -> CollabFixture {
    use automerge::ROOT;
    use automerge::ReadDoc;
    use automerge::transaction::{CommitOptions, Transactable};

    use crate::collab::{
        AccessPolicy, ChangesPayload, CollabConfig, CollabStats, Replica, StoreKind,
    };
    use crate::wire::{CollabBatches, CollabHeads, TopicId};

    let [owner, writer, outsider] = collab_keys();
    let cfg = CollabConfig::default();
    let mut stats = CollabStats::default();
    let now = COLLAB_FUZZ_NOW_MS;
    let raw = |c: &automerge::Change| Bytes::copy_from_slice(c.raw_bytes());
    let kinds = [StoreKind::Kv, StoreKind::TaskList];
    let replica = |key: &AgentKeypair, store: usize, inc: u64| {
        Replica::new(
            COLLAB_FUZZ_TOPICS[store].into(),
            kinds[store],
            key.agent_id(),
            inc,
            None,
        )
    };
    let mut batches: Vec<FuzzBatch> = Vec::new();
    // Files `changes`, just made on `r` by `key`, as a signed batch.
    let publish = |batches: &mut Vec<FuzzBatch>,
                   r: &mut Replica,
                   key: &AgentKeypair,
                   store: usize,
                   changes: Vec<automerge::Change>,
                   stats: &mut CollabStats| {
        let raws: Vec<Bytes> = changes.iter().map(raw).collect();
        let proof = collab_sign(key, store, &raws);
        let hashes: Vec<_> = changes.iter().map(|c| c.hash()).collect();
        r.record_local(&hashes, proof.clone(), stats);
        batches.push(FuzzBatch {
            store,
            author: key.agent_id(),
            proof,
            changes: raws,
        });
        batches.len() - 1
    };
    let some = |c: Result<Option<automerge::Change>, _>| {
        c.ok()
            .flatten()
            .unwrap_or_else(|| unreachable!("a fixture write"))
    };

    // The owner creates both stores and writes.
    let mut kv = replica(owner, 0, 1);
    let g = some(kv.genesis(now, "fuzz", AccessPolicy::Allowlisted, &[writer.agent_id()]));
    let b0 = publish(&mut batches, &mut kv, owner, 0, vec![g], &mut stats);
    let p = some(kv.kv_put(now, "alpha", Bytes::from_static(b"1"), "text/plain", &cfg));
    let b1 = publish(&mut batches, &mut kv, owner, 0, vec![p], &mut stats);
    let mut tasks = replica(owner, 1, 1);
    let g = some(tasks.genesis(now, "todo", AccessPolicy::Open, &[]));
    let (id, add) = tasks
        .task_add(now, "fuzz", "the task list", &cfg)
        .unwrap_or_else(|_| unreachable!("a fixture write"));
    let add = add.unwrap_or_else(|| unreachable!("a fixture write"));
    publish(&mut batches, &mut tasks, owner, 1, vec![g, add], &mut stats);
    let claim = some(tasks.task_step(now, &id, false));
    publish(&mut batches, &mut tasks, owner, 1, vec![claim], &mut stats);

    // The writer, having heard the owner, writes a key.
    let mut wkv = replica(writer, 0, 2);
    for b in [b0, b1] {
        let b = &batches[b];
        wkv.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let w = some(wkv.kv_put(now, "beta", Bytes::from_static(b"2"), "text/plain", &cfg));
    let b2 = publish(&mut batches, &mut wkv, writer, 0, vec![w], &mut stats);
    let b = &batches[b2];
    kv.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);

    // Seeds: what each agent could send next.
    let owner_put = some(kv.kv_put(now + 1, "gamma", Bytes::from_static(b"3"), "", &cfg));
    let mut okv2 = replica(owner, 0, 6);
    for b in batches.iter().filter(|b| b.store == 0) {
        okv2.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let owner_allow = some(okv2.kv_allow(now + 1, &outsider.agent_id(), true));
    let writer_put = some(wkv.kv_put(now + 1, "alpha", Bytes::from_static(b"4"), "", &cfg));
    let mut okv = replica(outsider, 0, 3);
    for b in batches.iter().filter(|b| b.store == 0) {
        okv.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let outsider_put = some(okv.commit(now + 1, |tx| {
        tx.put(ROOT, "k/alpha", automerge::ScalarValue::Bytes(vec![5]))
    }));
    // An empty change over the store, as the outsider.
    let mut actor = outsider.agent_id().as_bytes().to_vec();
    actor.extend_from_slice(&5u64.to_be_bytes());
    let mut doc = automerge::Automerge::new().with_actor(automerge::ActorId::from(actor));
    for b in batches.iter().filter(|b| b.store == 0) {
        for c in &b.changes {
            if let Ok(c) = automerge::Change::try_from(&c[..]) {
                let _ = doc.apply_changes([c]);
            }
        }
    }
    let h = doc.empty_commit(CommitOptions::default());
    let outsider_empty = doc
        .get_change_by_hash(&h)
        .unwrap_or_else(|| unreachable!("just committed"));
    let mut stray = replica(owner, 0, 4);
    let no_past = some(stray.commit(now + 1, |tx| {
        tx.put(ROOT, "k/zeta", automerge::ScalarValue::Bytes(vec![6]))
    }));
    let mut otasks = replica(outsider, 1, 3);
    for b in batches.iter().filter(|b| b.store == 1) {
        otasks.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let outsider_claim = some(otasks.commit(now + 1, |tx| {
        tx.put(
            ROOT,
            format!("s/{id}"),
            format!("claimed:{}", outsider.agent_id().to_hex()),
        )
    }));
    let mut otasks2 = replica(outsider, 1, 6);
    for b in batches.iter().filter(|b| b.store == 1) {
        otasks2.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let (_, outsider_add) = otasks2
        .task_add(now + 1, "more", "", &cfg)
        .unwrap_or_else(|_| unreachable!("a fixture write"));
    let outsider_add = outsider_add.unwrap_or_else(|| unreachable!("a fixture write"));

    // The owner's next write in automerge's compressed form (never sent by x0x).
    let mut okv3 = replica(owner, 0, 7);
    for b in batches.iter().filter(|b| b.store == 0) {
        okv3.apply(b.author, b.proof.clone(), &b.changes, &cfg, &mut stats);
    }
    let mut big = some(okv3.kv_put(now + 1, "delta", Bytes::from(vec![0; 1024]), "", &cfg));
    let compressed = big.bytes().into_owned();

    let payload = ChangesPayload::new(vec![raw(&owner_put), raw(&writer_put)]).encode();
    let mut heads: Vec<[u8; 32]> = kv.heads().into_iter().map(|h| h.0).collect();
    heads.push([7; 32]);
    let heads = CollabHeads {
        topic: TopicId::from_name(COLLAB_FUZZ_TOPICS[0]),
        heads,
        reply: true,
    };
    let frame = CollabBatches {
        topic: TopicId::from_name(COLLAB_FUZZ_TOPICS[0]),
        batches: vec![
            collab_sign(owner, 0, &[raw(&owner_put), raw(&owner_allow)]),
            collab_sign(outsider, 0, &[raw(&outsider_put)]),
            collab_sign(writer, 0, &[raw(&writer_put)]),
        ],
        more: false,
    };
    let seeds = vec![
        ("owner_put", raw(&owner_put).to_vec()),
        ("owner_allow", raw(&owner_allow).to_vec()),
        ("writer_put", raw(&writer_put).to_vec()),
        ("outsider_put", raw(&outsider_put).to_vec()),
        ("outsider_empty", raw(&outsider_empty).to_vec()),
        ("owner_no_past", raw(&no_past).to_vec()),
        ("outsider_claim", raw(&outsider_claim).to_vec()),
        ("outsider_task_add", raw(&outsider_add).to_vec()),
        ("owner_put_compressed", compressed),
        ("payload", payload.to_vec()),
        ("heads", postcard::to_allocvec(&heads).unwrap_or_default()),
        ("batches", postcard::to_allocvec(&frame).unwrap_or_default()),
    ];
    CollabFixture { batches, seeds }
}

/// The seed inputs of `collab_changes` (written by the corpus generator), by name.
pub fn collab_seeds() -> Vec<(&'static str, Vec<u8>)> {
    collab_fixture().seeds.clone()
}

/// A KV store and a task list rebuilt from the fixture, with every batch they were given, so
/// their saved batches can be replayed.
struct CollabSite {
    stores: [crate::collab::Replica; 2],
    given: std::collections::HashMap<Bytes, FuzzBatch>,
    stats: crate::collab::CollabStats,
}

impl CollabSite {
    fn new() -> Self {
        use crate::collab::{Replica, StoreKind};
        let me = COLLAB_FUZZ_ME;
        let mut site = Self {
            stores: [
                Replica::new(COLLAB_FUZZ_TOPICS[0].into(), StoreKind::Kv, me, 9, None),
                Replica::new(
                    COLLAB_FUZZ_TOPICS[1].into(),
                    StoreKind::TaskList,
                    me,
                    9,
                    None,
                ),
            ],
            given: std::collections::HashMap::new(),
            stats: Default::default(),
        };
        for b in &collab_fixture().batches {
            site.apply(b.clone());
        }
        site
    }

    /// Applies `b`: the store's change count grows by exactly what `apply` reports applied.
    fn apply(&mut self, b: FuzzBatch) {
        let r = &mut self.stores[b.store];
        let before = r.change_count();
        let out = r.apply(
            b.author,
            b.proof.clone(),
            &b.changes,
            &crate::collab::CollabConfig::default(),
            &mut self.stats,
        );
        assert_eq!(
            r.change_count(),
            before + out.applied,
            "the count grows by what apply reports"
        );
        assert!(out.refused + out.waiting + out.duplicates + out.applied >= b.changes.len());
        self.given.insert(b.proof.clone(), b);
    }

    /// Every invariant, then: the KV store holds changes of its owner and writer only; its
    /// saved batches replayed into a fresh replica give the same state; a joiner reaches the
    /// same heads by anti-entropy alone.
    fn check(&self) {
        use crate::collab::{CollabConfig, CollabStats, Replica};
        let [owner, writer, _] = collab_keys();
        for r in &self.stores {
            r.check_invariants()
                .unwrap_or_else(|e| panic!("replica invariant broken: {e}"));
        }
        let allowed = [*owner.agent_id().as_bytes(), *writer.agent_id().as_bytes()];
        for a in self.stores[0].held_authors() {
            assert!(
                allowed.contains(&a),
                "the KV store holds an outsider's change"
            );
        }
        assert_eq!(self.stores[0].owner(), Some(owner.agent_id()));
        let cfg = CollabConfig::default();
        let mut stats = CollabStats::default();
        for r in &self.stores {
            let fresh = |inc| Replica::new(r.topic().into(), r.kind(), COLLAB_FUZZ_ME, inc, None);
            let mut again = fresh(10);
            for p in r.snapshot().proofs {
                let b = &self.given[&p];
                again.apply(b.author, p.clone(), &b.changes, &cfg, &mut stats);
            }
            assert_eq!(again.heads(), r.heads(), "a restored store differs");
            assert_eq!(again.kv_entries(), r.kv_entries());
            assert_eq!(again.tasks(), r.tasks());
            let mut joiner = fresh(11);
            for _ in 0..=self.given.len() {
                let m = r.batches_missing_from(&joiner.heads(), 64);
                assert!(!m.they_have_more);
                if m.batches.is_empty() {
                    break;
                }
                for p in m.batches {
                    let b = &self.given[&p];
                    joiner.apply(b.author, p.clone(), &b.changes, &cfg, &mut stats);
                }
            }
            assert_eq!(joiner.heads(), r.heads(), "anti-entropy did not converge");
        }
    }
}

/// Feeds arbitrary bytes to the replicated stores: as a [`crate::collab::ChangesPayload`]
/// (round trip), as one raw automerge change and as the payload's changes, each signed by the
/// KV store's owner, a writer on its allowlist and an agent outside its policy, into replicas
/// that already hold a store (an allowlisted KV store with two entries, a task list with a
/// claimed task); and as the bodies of the anti-entropy frames (`CollabHeads` answered by a
/// replica, `CollabBatches` whose signed batches are applied as from their signer). Never
/// panics; after every batch the count of held changes grew by what `apply` reported; after
/// each input the replicas' invariants hold, the KV store holds nothing by an agent outside
/// its policy, its saved batches replay to the same state and a joiner catches up with it.
pub fn collab_changes(data: &[u8]) {
    use automerge::ChangeHash;

    use crate::broadcast::PubSubBody;
    use crate::collab::ChangesPayload;
    use crate::wire::{CollabBatches, CollabHeads, Signed};

    let payload = ChangesPayload::decode(data);
    if let Some(p) = &payload {
        assert_eq!(
            ChangesPayload::decode(&p.encode()).as_ref(),
            Some(p),
            "a payload round trip changed it"
        );
    }
    for (k, key) in collab_keys().iter().enumerate() {
        let mut site = CollabSite::new();
        for store in 0..2 {
            let author = key.agent_id();
            site.apply(FuzzBatch {
                store,
                author,
                proof: Bytes::from(format!("raw {k} {store}")),
                changes: vec![Bytes::copy_from_slice(data)],
            });
            if let Some(p) = &payload {
                site.apply(FuzzBatch {
                    store,
                    author,
                    proof: Bytes::from(format!("payload {k} {store}")),
                    changes: p.changes.clone(),
                });
            }
        }
        site.check();
    }

    if let Some(h) = round_trip::<CollabHeads>(data, "collab heads") {
        let site = CollabSite::new();
        let heads: Vec<ChangeHash> = h.heads.iter().map(|b| ChangeHash(*b)).collect();
        for r in &site.stores {
            let budget = data.len() * 64;
            let m = r.batches_missing_from(&heads, budget);
            assert_eq!(m.they_have_more, heads.iter().any(|h| !r.holds(h)));
            let saved = r.snapshot().proofs;
            assert!(
                m.batches.iter().all(|b| saved.contains(b)),
                "an unsaved batch sent"
            );
            if heads == r.heads() {
                assert!(
                    m.batches.is_empty(),
                    "batches sent to a replica that has them"
                );
            }
            if m.more {
                assert!(!m.batches.is_empty());
            }
        }
    }
    if let Some(f) = round_trip::<CollabBatches>(data, "collab batches") {
        let mut site = CollabSite::new();
        let store = usize::from(f.topic != crate::wire::TopicId::from_name(COLLAB_FUZZ_TOPICS[0]));
        for proof in f.batches {
            let Ok(signed) = postcard::from_bytes::<Signed>(&proof) else {
                continue;
            };
            let (Some(author), Ok(body)) = (signed.agent(), signed.decode_body::<PubSubBody>())
            else {
                continue;
            };
            let Some(p) = ChangesPayload::decode(&body.payload) else {
                continue;
            };
            // As the node does once the signature verified (not checked here: the fuzzer
            // cannot sign, and the signature is the node's business, fuzzed elsewhere).
            site.apply(FuzzBatch {
                store,
                author,
                proof,
                changes: p.changes,
            });
        }
        site.check();
    }
}

/// Decodes a saved store (the daemon's `stores/<topic id>.store` file, a postcard
/// [`crate::collab::StoreSnapshot`]) and restores it into a fresh node, as a driver does at
/// start: a typed refusal or a store, never a panic, and the node's invariants hold after.
/// A restored store holds only batches that verify, so it is the same store as one rebuilt
/// from those batches alone.
pub fn store_snapshot_decode(data: &[u8]) {
    use crate::collab::StoreSnapshot;
    let Some(snapshot) = round_trip::<StoreSnapshot>(data, "store snapshot") else {
        return;
    };
    let now = crate::Time::from_millis(COLLAB_FUZZ_NOW_MS);
    let Ok(mut node) = crate::Node::new(super::fuzz_identity(), crate::Config::default(), [3; 32])
    else {
        return;
    };
    let topic = snapshot.topic.clone();
    if node.restore_store(now, snapshot).is_ok() {
        let saved = node
            .store_snapshot(&topic)
            .expect("a restored store is held");
        let mut again = crate::Node::new(super::fuzz_identity(), crate::Config::default(), [3; 32])
            .expect("same config");
        again
            .restore_store(now, saved.clone())
            .expect("a store's own snapshot restores");
        assert_eq!(
            again.store_snapshot(&topic).map(|s| s.proofs),
            Some(saved.proofs),
            "a saved store restores to the same batches"
        );
    }
    node.check_invariants()
        .expect("invariants hold after a restore");
}

/// A genuine saved store to start the snapshot fuzzer from: a KV store of this identity with
/// three entries, encoded as the daemon writes it.
pub fn store_snapshot_seed() -> Vec<u8> {
    let now = crate::Time::from_millis(COLLAB_FUZZ_NOW_MS);
    let mut node = crate::Node::new(super::fuzz_identity(), crate::Config::default(), [3; 32])
        .expect("default config");
    node.create_store(
        now,
        crate::collab::StoreKind::Kv,
        COLLAB_FUZZ_TOPICS[0],
        "fuzz",
        crate::collab::AccessPolicy::Signed,
        &[],
    )
    .expect("a new store");
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        node.store_put(now, COLLAB_FUZZ_TOPICS[0], k, Bytes::from(v), "text/plain")
            .expect("the owner writes");
    }
    let snap = node.store_snapshot(COLLAB_FUZZ_TOPICS[0]).expect("held");
    postcard::to_allocvec(&snap).expect("encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `collab_changes` only reaches the judge past the parser if its seeds do: each seed
    /// change, signed by the agent it was made for, is applied or refused for the reason it
    /// was built to hit.
    #[test]
    fn collab_seeds_reach_the_judge() {
        use crate::collab::{ChangesPayload, CollabStats};
        use crate::wire::{CollabBatches, CollabHeads};

        let seeds: std::collections::HashMap<_, _> = collab_seeds().into_iter().collect();
        let [owner, writer, outsider] = collab_keys();
        let run = |name: &str, store: usize, key: &AgentKeypair| -> (usize, CollabStats) {
            let mut site = CollabSite::new();
            let before = site.stats.clone();
            let count = site.stores[store].change_count();
            site.apply(FuzzBatch {
                store,
                author: key.agent_id(),
                proof: Bytes::from_static(b"seed"),
                changes: vec![Bytes::from(seeds[name].clone())],
            });
            site.check();
            let s = &site.stats;
            let delta = CollabStats {
                refused_policy: s.refused_policy - before.refused_policy,
                refused_malformed: s.refused_malformed - before.refused_malformed,
                ..CollabStats::default()
            };
            (site.stores[store].change_count() - count, delta)
        };
        for (name, store, key) in [
            ("owner_put", 0, owner),
            ("owner_allow", 0, owner),
            ("writer_put", 0, writer),
            ("outsider_task_add", 1, outsider),
        ] {
            assert_eq!(run(name, store, key).0, 1, "{name} applied");
        }
        for (name, store, key) in [
            ("outsider_put", 0, outsider),
            ("owner_no_past", 0, owner),
            ("outsider_claim", 1, outsider),
        ] {
            let (n, s) = run(name, store, key);
            assert_eq!(
                (n, s.refused_policy),
                (0, 1),
                "{name} refused by the policy"
            );
        }
        for (name, store, key) in [
            ("outsider_empty", 0, outsider),
            ("owner_put", 0, writer),
            ("owner_put_compressed", 0, owner),
        ] {
            let (n, s) = run(name, store, key);
            assert_eq!(
                (n, s.refused_malformed),
                (0, 1),
                "{name} refused as malformed"
            );
        }
        assert_eq!(
            ChangesPayload::decode(&seeds["payload"])
                .unwrap()
                .changes
                .len(),
            2
        );
        let heads: CollabHeads = postcard::from_bytes(&seeds["heads"]).unwrap();
        assert_eq!(heads.heads.len(), 2);
        let frame: CollabBatches = postcard::from_bytes(&seeds["batches"]).unwrap();
        assert_eq!(frame.batches.len(), 3);
        // Through the target: the owner's two changes and the writer's one are applied.
        collab_changes(&seeds["batches"]);
    }
}
