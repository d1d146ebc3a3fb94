//! Replicated state: KV stores and task lists that converge on every replica, late joiners
//! and restarted nodes included, where only authorised writers count.
//!
//! The merge is [automerge](https://automerge.org)'s (docs/design.md says why automerge and
//! not loro); this module adds what a gossip mesh of mutually distrusting agents needs on top:
//!
//! * **Signed authorship.** Each local change travels as the payload of a pub/sub message on
//!   the store's topic, so the message's ML-DSA-65 signature (one per batch of changes) is the
//!   proof of who wrote it. A replica keeps those signed messages as they are and relays them
//!   in anti-entropy, so a late joiner verifies every change it receives second-hand. A
//!   change's automerge actor is derived from its author's agent id, so a signer cannot pass
//!   off another agent's changes as its own.
//! * **Policies judged in the causal past** ([`policy`]): a change is judged against the
//!   document as of its own dependencies, so every replica refuses the same changes.
//! * **Anti-entropy** ([`Replica::batches_missing_from`]): a replica sends a neighbour its
//!   heads; the neighbour answers with the signed batches behind the changes those heads do
//!   not reach, oldest first, up to a byte budget per round, and says if it lacks something
//!   itself. The heads are the summary: nothing is replayed that the other side has.
//! * **Bounds**: stores per node, bytes per store, changes waiting for their past, value and
//!   text sizes, each with a counter ([`CollabStats`]).
//!
//! Everything here is deterministic given its inputs (time comes in as `now_ms`, the
//! incarnation from the node's RNG) and does no I/O; the [`crate::Node`] verifies signatures,
//! routes topic messages and anti-entropy frames, and runs the timer.

mod chunk;
mod config;
mod error;
mod kv;
mod layout;
pub mod policy;
mod replica;
mod stats;
mod tasks;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::config::CollabConfig;
pub use self::error::{CollabError, Refusal};
pub use self::kv::MAX_KEY_LEN;
pub use self::layout::{KvEntry, TaskState};
pub use self::policy::AccessPolicy;
pub use self::replica::{ApplyOutcome, Missing, Replica, StoreSnapshot};
pub use self::stats::CollabStats;
pub use self::tasks::Task;
pub use automerge::ChangeHash;

/// What a store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Keys to values.
    Kv,
    /// Tasks to claim and complete.
    TaskList,
}

impl StoreKind {
    /// The kind's name as written in a store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::TaskList => "tasks",
        }
    }
}

/// The payload of a pub/sub message that carries changes: the raw automerge changes, in
/// causal order. The message's signature covers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPayload {
    /// A tag that tells a store's messages from anything else published on its topic.
    pub magic: [u8; 4],
    /// The changes.
    pub changes: Vec<Bytes>,
}

impl ChangesPayload {
    /// [`ChangesPayload::magic`]'s value.
    pub const MAGIC: [u8; 4] = *b"x0xc";

    /// Wraps `changes`.
    pub fn new(changes: Vec<Bytes>) -> Self {
        Self {
            magic: Self::MAGIC,
            changes,
        }
    }

    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        Bytes::from(layout::encode(self))
    }

    /// Decodes a payload; `None` for anything else (trailing bytes, wrong magic).
    pub fn decode(b: &[u8]) -> Option<Self> {
        layout::decode::<Self>(b).filter(|p| p.magic == Self::MAGIC)
    }
}
