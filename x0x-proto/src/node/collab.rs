//! Replicated stores on the node: opening, writing and reading them, routing their topic's
//! messages and the anti-entropy frames to them, and the anti-entropy timer
//! ([`crate::collab`]).

use std::time::Duration;

use automerge::{Change, ChangeHash};
use bytes::Bytes;
use rand_core::Rng;

use super::{Event, Node, Timer};
use crate::collab::{
    AccessPolicy, ChangesPayload, CollabError, CollabStats, Replica, StoreKind, StoreSnapshot,
};
use crate::identity::{AgentId, MachineId};
use crate::time::Time;
use crate::wire::{self, TopicId};

/// Largest payload of changes one local write publishes: a 64 KiB value and its change's
/// overhead, well inside a frame.
const MAX_CHANGES_PAYLOAD: usize = 160 * 1024;

/// Bytes of batches one anti-entropy frame carries (a frame is at most 256 KiB).
const FRAME_BATCH_BYTES: usize = 200 * 1024;

impl Node {
    // ----- commands: opening -----

    /// Creates a store of `kind` on `topic`, owned by this agent: a KV store with `policy`
    /// and `allow` (its allowlist, for [`AccessPolicy::Allowlisted`]); a task list is
    /// [`AccessPolicy::Open`] whatever `policy` says, and creating one on a topic others
    /// already use joins theirs (the two creations merge).
    pub fn create_store(
        &mut self,
        now: Time,
        kind: StoreKind,
        topic: &str,
        name: &str,
        policy: AccessPolicy,
        allow: &[AgentId],
    ) -> Result<(), CollabError> {
        self.open_replica(now, kind, topic, None)?;
        let id = TopicId::from_name(topic);
        let r = self.collab.get_mut(&id).ok_or(CollabError::UnknownStore)?;
        let change = r.genesis(now.as_millis(), name, policy, allow)?;
        self.publish_changes(now, id, change.into_iter().collect());
        Ok(())
    }

    /// Joins the store on `topic`: subscribes to it and catches up by anti-entropy with
    /// neighbours. `owner` pins a KV store's owner; without it the first creation that
    /// arrives is taken.
    pub fn join_store(
        &mut self,
        now: Time,
        kind: StoreKind,
        topic: &str,
        owner: Option<AgentId>,
    ) -> Result<(), CollabError> {
        self.open_replica(now, kind, topic, owner)?;
        self.sync_store_now(TopicId::from_name(topic));
        Ok(())
    }

    /// Reopens a store saved with [`Node::store_snapshot`], re-verifying every signed batch.
    /// A batch that fails is skipped and counted (`bad_batches`); the store then catches up
    /// from its neighbours.
    pub fn restore_store(&mut self, now: Time, snapshot: StoreSnapshot) -> Result<(), CollabError> {
        if snapshot.version != 1 {
            return Err(CollabError::CorruptSnapshot(format!(
                "unknown version {}",
                snapshot.version
            )));
        }
        self.open_replica(now, snapshot.kind, &snapshot.topic, snapshot.expected_owner)?;
        let id = TopicId::from_name(&snapshot.topic);
        for proof in snapshot.proofs {
            self.apply_proof(now, id, proof, None);
        }
        self.sync_store_now(id);
        Ok(())
    }

    /// Closes the store on `topic` here (others keep theirs).
    pub fn leave_store(&mut self, now: Time, topic: &str) -> Result<(), CollabError> {
        let id = TopicId::from_name(topic);
        self.collab.remove(&id).ok_or(CollabError::UnknownStore)?;
        self.broadcast.unsubscribe(id);
        self.drain_layers(now);
        Ok(())
    }

    fn open_replica(
        &mut self,
        now: Time,
        kind: StoreKind,
        topic: &str,
        owner: Option<AgentId>,
    ) -> Result<(), CollabError> {
        self.start(now);
        let id = TopicId::from_name(topic);
        if let Some(r) = self.collab.get(&id) {
            return Err(if r.kind() == kind {
                CollabError::AlreadyOpen
            } else {
                CollabError::WrongKind {
                    topic: topic.to_owned(),
                    actual: r.kind().as_str(),
                    wanted: kind.as_str(),
                }
            });
        }
        if self.collab.len() >= self.config.collab.max_stores {
            return Err(CollabError::TooManyStores {
                max: self.config.collab.max_stores,
            });
        }
        let incarnation = self.rng.next_u64();
        let replica = Replica::new(topic.to_owned(), kind, self.agent_id(), incarnation, owner);
        self.collab.insert(id, replica);
        self.publish_joined.remove(&id);
        self.broadcast.subscribe(id);
        if !self.collab_sync_armed {
            self.collab_sync_armed = true;
            let d = self.sync_delay();
            self.timers.set(now + d, Timer::CollabSync);
        }
        self.drain_layers(now);
        Ok(())
    }

    // ----- commands: writing -----

    /// Writes `key` in the KV store on `topic`.
    pub fn store_put(
        &mut self,
        now: Time,
        topic: &str,
        key: &str,
        value: Bytes,
        content_type: &str,
    ) -> Result<(), CollabError> {
        let cfg = self.config.collab.clone();
        self.write(now, topic, |r| {
            r.kv_put(now.as_millis(), key, value, content_type, &cfg)
        })
    }

    /// Writes several keys of the KV store on `topic` at once: one change per key, all
    /// under one signature (several, if they exceed one message). Stops at the first
    /// refused item; the ones before it are written.
    pub fn store_put_batch(
        &mut self,
        now: Time,
        topic: &str,
        items: Vec<(String, Bytes, String)>,
    ) -> Result<(), CollabError> {
        self.start(now);
        let id = TopicId::from_name(topic);
        let cfg = self.config.collab.clone();
        let mut batch = Vec::new();
        let mut size = 0;
        let mut result = Ok(());
        for (key, value, ct) in items {
            let r = self.collab.get_mut(&id).ok_or(CollabError::UnknownStore)?;
            if r.proof_bytes() >= cfg.max_store_bytes {
                result = Err(CollabError::StoreFull {
                    max: cfg.max_store_bytes,
                });
                break;
            }
            match r.kv_put(now.as_millis(), &key, value, &ct, &cfg) {
                Ok(Some(c)) => {
                    size += c.raw_bytes().len();
                    batch.push(c);
                }
                Ok(None) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if size >= MAX_CHANGES_PAYLOAD {
                self.publish_changes(now, id, std::mem::take(&mut batch));
                size = 0;
            }
        }
        self.publish_changes(now, id, batch);
        result
    }

    /// Removes `key` from the KV store on `topic`.
    pub fn store_remove(&mut self, now: Time, topic: &str, key: &str) -> Result<(), CollabError> {
        self.write(now, topic, |r| r.kv_remove(now.as_millis(), key))
    }

    /// Adds `agent` to (or removes it from) the allowlist of the KV store on `topic`
    /// (owner only).
    pub fn store_allow(
        &mut self,
        now: Time,
        topic: &str,
        agent: AgentId,
        allowed: bool,
    ) -> Result<(), CollabError> {
        self.write(now, topic, |r| r.kv_allow(now.as_millis(), &agent, allowed))
    }

    /// Adds a task to the task list on `topic`; its id (64 hex characters).
    pub fn task_add(
        &mut self,
        now: Time,
        topic: &str,
        title: &str,
        description: &str,
    ) -> Result<String, CollabError> {
        let cfg = self.config.collab.clone();
        let mut task = String::new();
        self.write(now, topic, |r| {
            let (id, c) = r.task_add(now.as_millis(), title, description, &cfg)?;
            task = id;
            Ok(c)
        })?;
        Ok(task)
    }

    /// Claims task `id` of the task list on `topic` for this agent.
    pub fn task_claim(&mut self, now: Time, topic: &str, id: &str) -> Result<(), CollabError> {
        self.write(now, topic, |r| r.task_step(now.as_millis(), id, false))
    }

    /// Completes task `id` (this agent must hold the claim; done is final).
    pub fn task_complete(&mut self, now: Time, topic: &str, id: &str) -> Result<(), CollabError> {
        self.write(now, topic, |r| r.task_step(now.as_millis(), id, true))
    }

    /// Moves task `id` to index `to` of the list.
    pub fn task_move(
        &mut self,
        now: Time,
        topic: &str,
        id: &str,
        to: usize,
    ) -> Result<(), CollabError> {
        self.write(now, topic, |r| r.task_move(now.as_millis(), id, to))
    }

    /// Writes without this node's own permission check, as a node that ignores the store's
    /// policy would: every other replica must refuse the change. For the simulator's
    /// adversaries only.
    #[cfg(feature = "adversary")]
    pub fn forge_store_put(
        &mut self,
        now: Time,
        topic: &str,
        key: &str,
        value: Bytes,
    ) -> Result<ChangeHash, CollabError> {
        let id = TopicId::from_name(topic);
        let incarnation = self.rng.next_u64();
        let r = self.collab.get(&id).ok_or(CollabError::UnknownStore)?;
        let change = r.kv_put_unchecked(now.as_millis(), key, value, incarnation)?;
        let payload =
            ChangesPayload::new(vec![Bytes::copy_from_slice(change.raw_bytes())]).encode();
        self.publish_signed(now, id, payload);
        Ok(change.hash())
    }

    /// Runs `edit` on the store on `topic` and publishes the change it made.
    fn write(
        &mut self,
        now: Time,
        topic: &str,
        edit: impl FnOnce(&mut Replica) -> Result<Option<Change>, CollabError>,
    ) -> Result<(), CollabError> {
        self.start(now);
        let id = TopicId::from_name(topic);
        let max = self.config.collab.max_store_bytes;
        let r = self.collab.get_mut(&id).ok_or(CollabError::UnknownStore)?;
        if r.proof_bytes() >= max {
            return Err(CollabError::StoreFull { max });
        }
        if let Some(change) = edit(r)? {
            self.publish_changes(now, id, vec![change]);
        }
        Ok(())
    }

    /// Signs `changes` as one pub/sub message on the store's topic, sends it and files it as
    /// their proof.
    fn publish_changes(&mut self, now: Time, id: TopicId, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let hashes: Vec<ChangeHash> = changes.iter().map(Change::hash).collect();
        let payload = ChangesPayload::new(
            changes
                .iter()
                .map(|c| Bytes::copy_from_slice(c.raw_bytes()))
                .collect(),
        )
        .encode();
        debug_assert!(payload.len() <= MAX_CHANGES_PAYLOAD + 4096);
        let signed = self.publish_signed(now, id, payload);
        let proof = encode_proof(&signed);
        if let Some(r) = self.collab.get_mut(&id) {
            r.record_local(&hashes, proof, &mut self.collab_stats);
        }
        self.emit(Event::StoreChanged { topic: id });
    }

    // ----- queries -----

    /// The store on `topic`, if open here.
    pub fn store(&self, topic: &str) -> Option<&Replica> {
        self.collab.get(&TopicId::from_name(topic))
    }

    /// Every store open here, in topic-id order.
    pub fn stores(&self) -> impl Iterator<Item = &Replica> {
        self.collab.values()
    }

    /// The store on `topic` as a driver saves it.
    pub fn store_snapshot(&self, topic: &str) -> Option<StoreSnapshot> {
        self.store(topic).map(Replica::snapshot)
    }

    /// Counters of the replicated stores.
    pub fn collab_stats(&self) -> CollabStats {
        self.collab_stats.clone()
    }

    // ----- the network side -----

    /// A verified pub/sub message on a store's topic.
    pub(super) fn on_store_message(
        &mut self,
        now: Time,
        author: AgentId,
        topic: TopicId,
        signed: wire::Signed,
        payload: &[u8],
    ) {
        let Some(p) = ChangesPayload::decode(payload) else {
            self.collab_stats.bad_batches += 1;
            return;
        };
        let proof = encode_proof(&signed);
        self.apply_verified(now, topic, author, proof, &p.changes);
    }

    /// Verifies a signed batch that came by anti-entropy (or from a saved store) and applies
    /// it. A recent batch `from` a neighbour that brought something new goes down the topic's
    /// tree (not back to that neighbour), so the rest of the store's carriers get it without
    /// waiting for their own anti-entropy.
    fn apply_proof(&mut self, now: Time, topic: TopicId, proof: Bytes, from: Option<MachineId>) {
        let Ok(signed) = postcard::from_bytes::<wire::Signed>(&proof) else {
            self.collab_stats.bad_batches += 1;
            return;
        };
        let (author, body) = match self.open_pubsub(&signed) {
            Ok(v) if v.1.topic == topic => v,
            _ => {
                self.collab_stats.bad_batches += 1;
                return;
            }
        };
        let Some(p) = ChangesPayload::decode(&body.payload) else {
            self.collab_stats.bad_batches += 1;
            return;
        };
        let applied = self.apply_verified(now, topic, author, proof, &p.changes);
        let window = u64::try_from(self.config.collab.relay_window.as_millis()).unwrap_or(u64::MAX);
        let recent = now.as_millis().saturating_sub(body.published_at_ms) < window;
        if let Some(source) = from
            && recent
            && applied > 0
            && !self.broadcast.is_known(&signed.id())
        {
            self.broadcast.publish_learnt(now, topic, signed, source);
            self.drain_layers(now);
        }
    }

    /// Applies the changes of a verified batch; the count applied.
    fn apply_verified(
        &mut self,
        _now: Time,
        topic: TopicId,
        author: AgentId,
        proof: Bytes,
        changes: &[Bytes],
    ) -> usize {
        let cfg = &self.config.collab;
        let Some(r) = self.collab.get_mut(&topic) else {
            return 0;
        };
        let out = r.apply(author, proof, changes, cfg, &mut self.collab_stats);
        if out.applied > 0 {
            self.emit(Event::StoreChanged { topic });
        }
        out.applied
    }

    /// Anti-entropy: a neighbour's heads of a store.
    pub(super) fn on_collab_heads(&mut self, now: Time, peer: MachineId, h: wire::CollabHeads) {
        let _ = now;
        let Some(r) = self.collab.get(&h.topic) else {
            self.collab_stats.sync_unknown_store += 1;
            return;
        };
        let heads: Vec<ChangeHash> = h.heads.iter().map(|b| ChangeHash(*b)).collect();
        let missing = r.batches_missing_from(&heads, self.config.collab.sync_round_bytes);
        let ours = self.heads_frame(h.topic, false);
        let mut frame = Vec::new();
        let mut bytes = 0;
        let n = missing.batches.len();
        for (i, b) in missing.batches.into_iter().enumerate() {
            if !frame.is_empty()
                && (bytes + b.len() > FRAME_BATCH_BYTES
                    || frame.len() >= wire::MAX_BATCHES_PER_FRAME)
            {
                self.send_batches(peer, h.topic, std::mem::take(&mut frame), false);
                bytes = 0;
            }
            bytes += b.len();
            frame.push(b);
            if i + 1 == n {
                self.send_batches(peer, h.topic, std::mem::take(&mut frame), missing.more);
            }
        }
        if missing.they_have_more
            && h.reply
            && let Some(f) = ours
        {
            self.send(peer, f.into());
        }
    }

    fn send_batches(&mut self, peer: MachineId, topic: TopicId, batches: Vec<Bytes>, more: bool) {
        self.collab_stats.sync_batches_sent += batches.len() as u64;
        self.collab_stats.sync_bytes_sent += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        self.send(
            peer,
            wire::CollabBatches {
                topic,
                batches,
                more,
            }
            .into(),
        );
    }

    /// Anti-entropy: batches a neighbour sent.
    pub(super) fn on_collab_batches(&mut self, now: Time, peer: MachineId, b: wire::CollabBatches) {
        if !self.collab.contains_key(&b.topic) {
            self.collab_stats.sync_unknown_store += 1;
            return;
        }
        for proof in b.batches {
            self.apply_proof(now, b.topic, proof, Some(peer));
        }
        if b.more
            && let Some(f) = self.heads_frame(b.topic, true)
        {
            self.collab_stats.sync_requests += 1;
            self.send(peer, f.into());
        }
    }

    fn heads_frame(&self, topic: TopicId, reply: bool) -> Option<wire::CollabHeads> {
        let r = self.collab.get(&topic)?;
        let mut heads: Vec<[u8; 32]> = r.heads().into_iter().map(|h| h.0).collect();
        heads.truncate(wire::MAX_IDS_PER_FRAME);
        Some(wire::CollabHeads {
            topic,
            heads,
            reply,
        })
    }

    /// A new neighbour: exchange heads of every store (it may hold some of them).
    pub(super) fn collab_neighbor_up(&mut self, peer: MachineId) {
        let topics: Vec<TopicId> = self.collab.keys().copied().collect();
        for t in topics {
            if let Some(f) = self.heads_frame(t, true) {
                self.collab_stats.sync_requests += 1;
                self.send(peer, f.into());
            }
        }
    }

    /// Sends the store's heads to one neighbour that carries its topic (or any neighbour).
    fn sync_store_now(&mut self, topic: TopicId) {
        let mut peers: Vec<MachineId> = self
            .broadcast
            .topic_peers(&topic)
            .map(|p| p.eager.into_iter().chain(p.lazy).collect())
            .unwrap_or_default();
        if peers.is_empty() {
            peers = self.membership.active().copied().collect();
        }
        if peers.is_empty() {
            return;
        }
        let peer = peers[(self.rng.next_u64() % peers.len() as u64) as usize];
        if let Some(f) = self.heads_frame(topic, true) {
            self.collab_stats.sync_requests += 1;
            self.send(peer, f.into());
        }
    }

    /// The anti-entropy timer: one exchange per store, then re-armed.
    pub(super) fn collab_tick(&mut self, now: Time) {
        if self.collab.is_empty() {
            self.collab_sync_armed = false;
            return;
        }
        let topics: Vec<TopicId> = self.collab.keys().copied().collect();
        for t in topics {
            self.sync_store_now(t);
        }
        let d = self.sync_delay();
        self.timers.set(now + d, Timer::CollabSync);
    }

    /// The anti-entropy period with ±20 % jitter, so neighbours do not sync in lockstep.
    fn sync_delay(&mut self) -> Duration {
        let base = self.config.collab.sync_interval;
        let jitter = 0.8 + 0.4 * (self.rng.next_u32() as f64 / u32::MAX as f64);
        base.mul_f64(jitter)
    }
}

/// A signed batch as a replica keeps and relays it.
fn encode_proof(signed: &wire::Signed) -> Bytes {
    Bytes::from(
        postcard::to_allocvec(signed)
            .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data")),
    )
}
