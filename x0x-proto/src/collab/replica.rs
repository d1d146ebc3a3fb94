//! [`Replica`]: one store's automerge document, the signed batches that prove who wrote each
//! change, the changes waiting for their past, and the anti-entropy selection.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, Change, ChangeHash, ROOT, ReadDoc, ScalarValue};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::chunk;
use super::error::{CollabError, Refusal};
use super::layout;
use super::policy::{AccessPolicy, Judge, Verdict};
use super::{CollabConfig, CollabStats, StoreKind};
use crate::identity::AgentId;

/// What applying one signed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Changes applied now (including waiting ones this batch completed).
    pub applied: usize,
    /// Changes refused.
    pub refused: usize,
    /// Changes that wait for their dependencies.
    pub waiting: usize,
    /// Changes already known.
    pub duplicates: usize,
}

/// A change held until its dependencies arrive.
#[derive(Debug)]
struct Waiting {
    change: Change,
    author: AgentId,
    proof: u32,
}

/// A store as saved by a driver ([`Replica::snapshot`]): its identity and the signed batches
/// it holds, in the order it applied them. Loading replays (and re-verifies) the batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSnapshot {
    /// Format version (1).
    pub version: u8,
    /// The store's topic.
    pub topic: String,
    /// KV store or task list.
    pub kind: StoreKind,
    /// The owner a joiner asked for, if it named one.
    pub expected_owner: Option<AgentId>,
    /// The signed batches, each as its encoded [`crate::wire::Signed`] pub/sub message.
    pub proofs: Vec<Bytes>,
}

/// One replica of a store.
///
/// Its methods, by role:
/// * **Applying** what others wrote: [`Replica::apply`] (a verified batch).
/// * **Writing**: `Replica::commit` (crate-internal) makes a local change (the KV and task methods in
///   `kv.rs` and `tasks.rs` call it), [`Replica::record_local`] files its signed batch.
/// * **Anti-entropy**: [`Replica::heads`], [`Replica::batches_missing_from`].
/// * **Reading**: [`Replica::topic`], [`Replica::kind`], [`Replica::owner`],
///   [`Replica::policy`], [`Replica::name`], [`Replica::holds`], [`Replica::proof_bytes`],
///   [`Replica::change_count`], [`Replica::waiting`].
/// * **Saving**: [`Replica::snapshot`].
#[derive(Debug)]
pub struct Replica {
    topic: String,
    kind: StoreKind,
    pub(super) doc: Automerge,
    pub(super) author: AgentId,
    owner: Option<AgentId>,
    policy: AccessPolicy,
    expected_owner: Option<AgentId>,
    proofs: Vec<Bytes>,
    /// Whether each kept batch has an applied change (a batch kept only for waiting changes
    /// is counted in `unapplied_bytes` and not saved).
    proof_applied: Vec<bool>,
    unapplied_bytes: usize,
    proof_bytes: usize,
    /// Every applied change, with the batch that proves it.
    known: BTreeMap<ChangeHash, u32>,
    waiting: BTreeMap<ChangeHash, Waiting>,
    waiting_order: VecDeque<ChangeHash>,
    refused: BTreeSet<ChangeHash>,
    /// The last sequence number in the document per actor (automerge keeps its own, but not
    /// where we can read it): what [`Replica::fits`] checks a change against.
    seqs: BTreeMap<ActorId, u64>,
}

impl Replica {
    /// An empty replica of `topic` for `author`, writing as `incarnation` (distinct per
    /// session, e.g. drawn from the node's RNG). `expected_owner` pins a KV store's owner:
    /// without it the first creation that arrives is taken.
    pub fn new(
        topic: String,
        kind: StoreKind,
        author: AgentId,
        incarnation: u64,
        expected_owner: Option<AgentId>,
    ) -> Self {
        let doc = Automerge::new().with_actor(layout::actor_for(&author, incarnation));
        Self {
            topic,
            kind,
            doc,
            author,
            owner: None,
            policy: if kind == StoreKind::TaskList {
                AccessPolicy::Open
            } else {
                AccessPolicy::Signed
            },
            expected_owner,
            proofs: Vec::new(),
            proof_applied: Vec::new(),
            unapplied_bytes: 0,
            proof_bytes: 0,
            known: BTreeMap::new(),
            waiting: BTreeMap::new(),
            waiting_order: VecDeque::new(),
            refused: BTreeSet::new(),
            seqs: BTreeMap::new(),
        }
    }

    // ----- reading -----

    /// The store's topic (x0x uses it as the store's id).
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// KV store or task list.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }
    /// The KV store's owner, once its creation arrived.
    pub fn owner(&self) -> Option<AgentId> {
        self.owner
    }
    /// Who may write.
    pub fn policy(&self) -> AccessPolicy {
        self.policy
    }
    /// The store's name (the last one written).
    pub fn name(&self) -> String {
        match self.doc.get(ROOT, "m/name") {
            Ok(Some((v, _))) => v.as_str().map(str::to_owned).unwrap_or_default(),
            _ => String::new(),
        }
    }
    /// Whether change `hash` is applied here.
    pub fn holds(&self, hash: &ChangeHash) -> bool {
        self.known.contains_key(hash)
    }
    /// Bytes of signed batches held.
    pub fn proof_bytes(&self) -> usize {
        self.proof_bytes
    }
    /// Changes applied.
    pub fn change_count(&self) -> usize {
        self.known.len()
    }
    /// The size of the document as automerge saves it (compressed, history included): the
    /// state's encoding without the authorship proofs.
    pub fn encoded_len(&self) -> usize {
        self.doc.save().len()
    }
    /// Changes waiting for their dependencies.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
    /// The current heads (the changes nothing applied depends on), sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        let mut h = self.doc.get_heads();
        h.sort();
        h
    }
    /// Whether this agent may write to the store now.
    pub fn may_write(&self) -> Result<(), CollabError> {
        if self.kind == StoreKind::TaskList {
            return Ok(());
        }
        let owner = self.owner.ok_or(CollabError::NotSynced)?;
        if owner == self.author
            || (self.policy == AccessPolicy::Allowlisted && self.allowlisted(&self.author))
        {
            Ok(())
        } else {
            Err(CollabError::NotPermitted(Refusal::NotAWriter))
        }
    }
    /// Whether `agent` is on the allowlist now.
    pub fn allowlisted(&self, agent: &AgentId) -> bool {
        matches!(
            self.doc.get(ROOT, layout::allow_key(agent)),
            Ok(Some((v, _))) if v.as_bool() == Some(true)
        )
    }

    // ----- applying -----

    /// Applies the changes of one batch whose signature the caller verified: `author` signed
    /// `proof` (the batch as it travels), which carries `changes`.
    pub fn apply(
        &mut self,
        author: AgentId,
        proof: Bytes,
        changes: &[Bytes],
        config: &CollabConfig,
        stats: &mut CollabStats,
    ) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        // The batch is filed once one of its changes is applied or waits: a batch of refused
        // changes is never kept (nor relayed).
        let mut slot = ProofSlot {
            bytes: proof,
            idx: None,
        };
        // Accepted changes go into the document together: automerge's cost per
        // `apply_changes` call grows with the document, so one call per change made a large
        // store quadratic (docs/benchmarks.md, replicated stores).
        let mut group = Accepted::default();
        for raw in changes {
            // Checked before automerge reads it: a compressed change, or one whose operations
            // name an actor it does not list, would make automerge inflate it without bound
            // or panic (`chunk`).
            let parsed = chunk::well_formed(raw).then(|| Change::try_from(&raw[..]).ok());
            let Some(Some(change)) = parsed else {
                stats.refused_malformed += 1;
                out.refused += 1;
                continue;
            };
            // A signer vouches for its own changes only. Checked before anything is
            // remembered about the change: another agent's change re-signed by a third party
            // must not be refused, nor held waiting under the wrong author, when it arrives
            // from its real author.
            if !layout::actor_is(change.actor_id(), &author) {
                stats.refused_malformed += 1;
                out.refused += 1;
                continue;
            }
            let hash = change.hash();
            if self.known.contains_key(&hash)
                || self.waiting.contains_key(&hash)
                || group.hashes.contains(&hash)
            {
                stats.duplicates += 1;
                out.duplicates += 1;
                continue;
            }
            if self.refused.contains(&hash) {
                out.refused += 1;
                continue;
            }
            if slot.idx.is_none() && self.proof_bytes + slot.bytes.len() > config.max_store_bytes {
                stats.refused_full += 1;
                out.refused += 1;
                continue;
            }
            if change
                .deps()
                .iter()
                .all(|d| self.known.contains_key(d) || group.hashes.contains(d))
            {
                self.accept(
                    change, author, None, &mut group, &mut slot, &mut out, config, stats,
                );
            } else if slot.idx.is_none()
                && self.unapplied_bytes + slot.bytes.len() > config.max_waiting_bytes
            {
                // Kept, the batch would count against the store's cap for good if its past
                // never comes (an outsider's); a real one comes back by anti-entropy.
                stats.pending_dropped += 1;
            } else {
                let idx = self.file(&mut slot);
                self.wait(change, author, idx, config, stats);
                out.waiting += 1;
            }
        }
        self.flush(&mut group, &mut slot, &mut out, config, stats);
        let released = self.release_waiting(config, stats);
        out.applied += released;
        out.waiting = out.waiting.saturating_sub(released);
        out
    }

    /// Batch `idx` has an applied change now.
    fn mark_applied(&mut self, idx: u32) {
        if let Some(a) = self.proof_applied.get_mut(idx as usize)
            && !*a
        {
            *a = true;
            self.unapplied_bytes -= self.proofs[idx as usize].len();
        }
    }

    /// Files the slot's batch (once) and returns its index.
    fn file(&mut self, slot: &mut ProofSlot) -> u32 {
        if let Some(i) = slot.idx {
            return i;
        }
        let i = self.proofs.len() as u32;
        self.proof_bytes += slot.bytes.len();
        self.unapplied_bytes += slot.bytes.len();
        self.proofs.push(slot.bytes.clone());
        self.proof_applied.push(false);
        slot.idx = Some(i);
        i
    }

    /// Judges one change whose dependencies are applied or in `group`, and adds it to
    /// `group` if it passes (`proof`: its filed batch, `None` for the slot's). A judge that
    /// needs the document as of a change still in `group` gets it applied first.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        change: Change,
        author: AgentId,
        proof: Option<u32>,
        group: &mut Accepted,
        slot: &mut ProofSlot,
        out: &mut ApplyOutcome,
        config: &CollabConfig,
        stats: &mut CollabStats,
    ) {
        let hash = change.hash();
        if !self.fits(&change, group) {
            stats.refused_malformed += 1;
            self.remember_refused(hash, config);
            out.refused += 1;
            return;
        }
        let verdict = loop {
            let judge = Judge {
                doc: &self.doc,
                kind: self.kind,
                owner: self.owner,
                policy: self.policy,
                expected_owner: self.expected_owner,
                config,
                pending: &group.hashes,
                stale: Cell::new(false),
            };
            let verdict = judge.judge(&author, &change);
            if judge.stale.get() {
                self.flush(group, slot, out, config, stats);
                continue;
            }
            break verdict;
        };
        match verdict {
            Err(r) => {
                if r.is_malformed() {
                    stats.refused_malformed += 1;
                } else {
                    stats.refused_policy += 1;
                }
                self.remember_refused(hash, config);
                out.refused += 1;
            }
            Ok(Verdict::Accept) => group.push(change, author, proof),
            Ok(Verdict::Genesis { owner, policy }) => {
                // Binds the replica: in the document before anything is judged after it.
                group.push(change, author, proof);
                self.flush(group, slot, out, config, stats);
                if self.known.contains_key(&hash) {
                    self.owner = Some(owner);
                    self.policy = policy;
                }
            }
        }
    }

    /// Whether automerge can take `change` after the document and `group`: the next sequence
    /// number of its actor, only actors the document knows, no author footer. automerge 0.12
    /// panics on an actor it has not registered (a first change with a sequence number above 1,
    /// or another actor it never saw) rather than returning an error, and x0x never writes an
    /// author. A change automerge made always fits once its past is applied: its actor's
    /// previous change is in that past, and so is every actor its operations name.
    fn fits(&self, change: &Change, group: &Accepted) -> bool {
        let last = |a: &ActorId| group.seqs.get(a).or_else(|| self.seqs.get(a)).copied();
        change.seq() == last(change.actor_id()).unwrap_or(0).saturating_add(1)
            && change.other_actor_ids().iter().all(|a| last(a).is_some())
            && change.extra_bytes().is_empty()
    }

    /// Applies `group` to the document and records its changes as held. If automerge refuses
    /// the run (an actor reusing a sequence number with other content: equivocation), the
    /// changes go in one by one as before: the offender is refused, and what depended on it
    /// waits.
    fn flush(
        &mut self,
        group: &mut Accepted,
        slot: &mut ProofSlot,
        out: &mut ApplyOutcome,
        config: &CollabConfig,
        stats: &mut CollabStats,
    ) {
        if group.changes.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut group.changes);
        let meta = std::mem::take(&mut group.meta);
        group.hashes.clear();
        group.seqs.clear();
        let all_in = self.doc.apply_changes(changes.iter().cloned()).is_ok();
        for (change, (hash, author, proof)) in changes.into_iter().zip(meta) {
            if !all_in {
                if !change.deps().iter().all(|d| self.known.contains_key(d)) {
                    let idx = proof.unwrap_or_else(|| self.file(slot));
                    self.wait(change, author, idx, config, stats);
                    out.waiting += 1;
                    continue;
                }
                if !self.fits(&change, &Accepted::default())
                    || self.doc.apply_changes([change.clone()]).is_err()
                {
                    stats.refused_malformed += 1;
                    self.remember_refused(hash, config);
                    out.refused += 1;
                    continue;
                }
            }
            self.seqs.insert(change.actor_id().clone(), change.seq());
            let idx = proof.unwrap_or_else(|| self.file(slot));
            self.mark_applied(idx);
            self.known.insert(hash, idx);
            if author != self.author {
                stats.remote_applied += 1;
            }
            out.applied += 1;
        }
    }

    fn remember_refused(&mut self, hash: ChangeHash, config: &CollabConfig) {
        if self.refused.len() >= config.max_pending
            && let Some(first) = self.refused.iter().next().copied()
        {
            self.refused.remove(&first);
        }
        self.refused.insert(hash);
    }

    fn wait(
        &mut self,
        change: Change,
        author: AgentId,
        proof: u32,
        config: &CollabConfig,
        stats: &mut CollabStats,
    ) {
        while self.waiting.len() >= config.max_pending {
            let Some(old) = self.waiting_order.pop_front() else {
                break;
            };
            if self.waiting.remove(&old).is_some() {
                stats.pending_dropped += 1;
            }
        }
        let hash = change.hash();
        self.waiting_order.push_back(hash);
        self.waiting.insert(
            hash,
            Waiting {
                change,
                author,
                proof,
            },
        );
    }

    /// Applies every waiting change whose dependencies are now applied; the count applied.
    fn release_waiting(&mut self, config: &CollabConfig, stats: &mut CollabStats) -> usize {
        let mut out = ApplyOutcome::default();
        let mut none = ProofSlot {
            bytes: Bytes::new(),
            idx: None,
        };
        loop {
            let ready: Vec<ChangeHash> = self
                .waiting
                .iter()
                .filter(|(_, w)| w.change.deps().iter().all(|d| self.known.contains_key(d)))
                .map(|(h, _)| *h)
                .collect();
            if ready.is_empty() {
                break;
            }
            // Ready changes do not depend on each other (each one's past is applied).
            let mut group = Accepted::default();
            for h in ready {
                if let Some(w) = self.waiting.remove(&h) {
                    self.accept(
                        w.change,
                        w.author,
                        Some(w.proof),
                        &mut group,
                        &mut none,
                        &mut out,
                        config,
                        stats,
                    );
                }
            }
            self.flush(&mut group, &mut none, &mut out, config, stats);
            self.waiting_order.retain(|h| self.waiting.contains_key(h));
        }
        debug_assert!(
            none.idx.is_none(),
            "released changes have their batches filed"
        );
        out.applied
    }

    // ----- writing -----

    /// Makes one local change with `edit` (committed at `now_ms`); the caller signs and
    /// publishes its bytes, then files the batch with [`Replica::record_local`]. `None` when
    /// `edit` changed nothing.
    pub(crate) fn commit(
        &mut self,
        now_ms: u64,
        edit: impl FnOnce(&mut Transaction<'_>) -> Result<(), automerge::AutomergeError>,
    ) -> Result<Option<Change>, CollabError> {
        let mut tx = self.doc.transaction();
        if let Err(e) = edit(&mut tx) {
            tx.rollback();
            return Err(CollabError::Invalid {
                what: "change",
                why: e.to_string(),
            });
        }
        let secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let (hash, _) = tx.commit_with(CommitOptions::default().with_time(secs));
        let Some(hash) = hash else {
            return Ok(None);
        };
        let change = self.doc.get_change_by_hash(&hash);
        if let Some(c) = &change {
            self.seqs.insert(c.actor_id().clone(), c.seq());
        }
        Ok(change)
    }

    /// Files the signed batch `proof` that carries this replica's own changes `hashes`.
    pub fn record_local(&mut self, hashes: &[ChangeHash], proof: Bytes, stats: &mut CollabStats) {
        let idx = self.proofs.len() as u32;
        self.proof_bytes += proof.len();
        self.proofs.push(proof);
        self.proof_applied.push(true);
        for h in hashes {
            self.known.insert(*h, idx);
            stats.local_changes += 1;
        }
    }

    /// The creation of a KV store owned by this replica's agent.
    pub(crate) fn genesis(
        &mut self,
        now_ms: u64,
        name: &str,
        policy: AccessPolicy,
        allow: &[AgentId],
    ) -> Result<Option<Change>, CollabError> {
        let kind = self.kind;
        let owner = self.author;
        let change = self.commit(now_ms, |tx| {
            tx.put(ROOT, "m/kind", kind.as_str())?;
            tx.put(ROOT, "m/name", name)?;
            if kind == StoreKind::Kv {
                tx.put(ROOT, "m/owner", owner.to_hex())?;
                tx.put(ROOT, "m/policy", policy.as_str())?;
                for a in allow {
                    tx.put(ROOT, layout::allow_key(a), ScalarValue::Boolean(true))?;
                }
            }
            Ok(())
        })?;
        if kind == StoreKind::Kv {
            self.owner = Some(owner);
            self.policy = policy;
        }
        Ok(change)
    }

    // ----- anti-entropy -----

    /// The signed batches a replica whose heads are `their_heads` lacks, oldest first, up to
    /// `budget` bytes (at least one batch). Also says whether more remain and whether
    /// `their_heads` names changes this replica lacks (the other side should hear our heads).
    pub fn batches_missing_from(&self, their_heads: &[ChangeHash], budget: usize) -> Missing {
        let known: Vec<ChangeHash> = their_heads
            .iter()
            .filter(|h| self.known.contains_key(h))
            .copied()
            .collect();
        let they_have_more = known.len() < their_heads.len();
        // The batches in the causal order of the first missing change each carries (the
        // order the changes were applied here), not in the order they were filed: a batch
        // filed while its change waited for its past may be older than that past's batch, and
        // sending by filing order could fill every round's budget with batches the other side
        // can only hold waiting, never reaching the ones they wait for. In causal order the
        // first batch of a round always brings a change whose past the other side holds.
        // (Only the hashes are needed: `get_changes_meta` does not rebuild the changes.)
        let mut seen = BTreeSet::new();
        let mut idx = Vec::new();
        for c in self.doc.get_changes_meta(&known) {
            if let Some(&i) = self.known.get(&c.hash)
                && seen.insert(i)
            {
                idx.push(i);
            }
        }
        let mut batches = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for i in idx {
            let p = &self.proofs[i as usize];
            if !batches.is_empty() && bytes + p.len() > budget {
                more = true;
                break;
            }
            bytes += p.len();
            batches.push(p.clone());
        }
        Missing {
            batches,
            more,
            they_have_more,
        }
    }

    // ----- checking -----

    /// The agents whose changes the document holds (from their actors).
    pub(crate) fn held_authors(&self) -> BTreeSet<[u8; 32]> {
        self.doc
            .get_changes_meta(&[])
            .iter()
            .filter_map(|c| c.actor.to_bytes().get(..32)?.try_into().ok())
            .collect()
    }

    /// The replica's internal consistency: what it says it holds is what its document
    /// holds, every held change points at a filed batch, the byte count is the batches'.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let held = self.doc.get_changes_meta(&[]);
        if held.len() != self.known.len() {
            return Err(format!(
                "{} changes known, {} in the document",
                self.known.len(),
                held.len()
            ));
        }
        if let Some(c) = held.iter().find(|c| !self.known.contains_key(&c.hash)) {
            return Err(format!("{:?} in the document, not known", c.hash));
        }
        if self.heads().iter().any(|h| !self.known.contains_key(h)) {
            return Err("a head is not known".into());
        }
        if self
            .known
            .values()
            .any(|&i| i as usize >= self.proofs.len())
        {
            return Err("a change points past the batches".into());
        }
        let unapplied: usize = self
            .proofs
            .iter()
            .zip(&self.proof_applied)
            .filter(|(_, a)| !**a)
            .map(|(p, _)| p.len())
            .sum();
        if self.proof_applied.len() != self.proofs.len() || unapplied != self.unapplied_bytes {
            return Err("unapplied_bytes is not the unapplied batches' size".into());
        }
        if self.proofs.iter().map(Bytes::len).sum::<usize>() != self.proof_bytes {
            return Err("proof_bytes is not the batches' size".into());
        }
        if self.waiting.len() != self.waiting_order.len()
            || self
                .waiting_order
                .iter()
                .any(|h| !self.waiting.contains_key(h))
        {
            return Err("the waiting order is not the waiting set".into());
        }
        if self.waiting.keys().any(|h| self.known.contains_key(h)) {
            return Err("a change both waits and is applied".into());
        }
        Ok(())
    }

    // ----- saving -----

    /// The replica as a driver saves it.
    pub fn snapshot(&self) -> StoreSnapshot {
        StoreSnapshot {
            version: 1,
            topic: self.topic.clone(),
            kind: self.kind,
            expected_owner: self.expected_owner.or(self.owner),
            // A batch kept only for changes that still wait is left out: if its past comes,
            // anti-entropy brings it again.
            proofs: self
                .proofs
                .iter()
                .zip(&self.proof_applied)
                .filter(|(_, applied)| **applied)
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }
}

/// Changes that passed the judge, not yet in the document (see [`Replica::flush`]).
#[derive(Default)]
struct Accepted {
    changes: Vec<Change>,
    /// Each change's hash, author and filed batch (`None`: the batch being applied).
    meta: Vec<(ChangeHash, AgentId, Option<u32>)>,
    hashes: BTreeSet<ChangeHash>,
    /// The last sequence number per actor in `changes`.
    seqs: BTreeMap<ActorId, u64>,
}

impl Accepted {
    fn push(&mut self, change: Change, author: AgentId, proof: Option<u32>) {
        let hash = change.hash();
        self.hashes.insert(hash);
        self.seqs.insert(change.actor_id().clone(), change.seq());
        self.meta.push((hash, author, proof));
        self.changes.push(change);
    }
}

/// A batch being applied, and where it was filed if it was.
struct ProofSlot {
    bytes: Bytes,
    idx: Option<u32>,
}

/// What [`Replica::batches_missing_from`] found.
#[derive(Debug, Clone, Default)]
pub struct Missing {
    /// The batches to send, oldest first.
    pub batches: Vec<Bytes>,
    /// More batches remain past the budget.
    pub more: bool,
    /// The other side holds changes this replica lacks.
    pub they_have_more: bool,
}
