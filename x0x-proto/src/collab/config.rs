//! [`CollabConfig`]: the caps and the anti-entropy period of replicated stores.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits and timing of the node's replicated stores ([`crate::collab`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollabConfig {
    /// Stores (KV stores and task lists together) one node holds. Default 64; opening one
    /// more is refused ([`super::CollabError::TooManyStores`]).
    pub max_stores: usize,
    /// Bytes of signed changes one store keeps (the proofs it relays). Default 64 MiB;
    /// changes past it are refused and counted.
    pub max_store_bytes: usize,
    /// Changes held per store while their dependencies are missing. Default 4096; the oldest
    /// is dropped (and counted) to make room, and comes back through anti-entropy.
    pub max_pending: usize,
    /// Bytes of kept batches none of whose changes is applied yet (they wait for their
    /// past). Default 8 MiB; a waiting change past it is dropped (and counted) instead of
    /// kept, so an outsider's changes whose past never comes cannot fill the store. A batch
    /// still unapplied is not saved.
    pub max_waiting_bytes: usize,
    /// Largest value a KV entry holds inline. Default 65 536 bytes (x0x's limit).
    pub max_value_len: usize,
    /// Largest title or description of a task. Default 4096 bytes.
    pub max_task_text: usize,
    /// Period of the anti-entropy exchange with one neighbour, per store. Default 5 s (x0x
    /// uses 30 s; a shorter period bounds how long a missed change stays missing).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Bytes of signed changes one anti-entropy round sends. Default 4 MiB: a 10,000-key
    /// store fits in one round; a larger gap takes several.
    pub sync_round_bytes: usize,
    /// A batch learnt by anti-entropy is pushed down the store's topic tree only if it was
    /// published less than this long ago. Default 10 min: a partition's writes spread across
    /// a whole side at once after the heal, while a late joiner catching up on older history
    /// does not send it all back to carriers that have it.
    #[serde(with = "humantime_serde")]
    pub relay_window: Duration,
}

impl Default for CollabConfig {
    fn default() -> Self {
        Self {
            max_stores: 64,
            max_store_bytes: 64 << 20,
            max_pending: 4096,
            max_waiting_bytes: 8 << 20,
            max_value_len: 65_536,
            max_task_text: 4096,
            sync_interval: Duration::from_secs(5),
            sync_round_bytes: 4 << 20,
            relay_window: Duration::from_secs(600),
        }
    }
}
