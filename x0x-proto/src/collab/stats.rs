//! [`CollabStats`]: what the replicated stores did and refused.

use serde::{Deserialize, Serialize};

/// Counters of the node's replicated stores, over all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CollabStats {
    /// Changes this node made.
    pub local_changes: u64,
    /// Changes from others applied.
    pub remote_applied: u64,
    /// Changes received again (already applied).
    pub duplicates: u64,
    /// Changes refused by a store's policy (an author without write permission, a task
    /// rule, a second genesis), by every replica alike.
    pub refused_policy: u64,
    /// Changes refused because they are not the shape a store accepts (an unknown key, a
    /// nested object, an actor that is not the signer's).
    pub refused_malformed: u64,
    /// Batches whose signature, encoding or topic was wrong.
    pub bad_batches: u64,
    /// Changes refused because the store is at `max_store_bytes`.
    pub refused_full: u64,
    /// Changes waiting for their dependencies dropped at `max_pending`, or not kept at
    /// `max_waiting_bytes`.
    pub pending_dropped: u64,
    /// Anti-entropy requests sent.
    pub sync_requests: u64,
    /// Signed batches sent in anti-entropy answers.
    pub sync_batches_sent: u64,
    /// Bytes of signed batches sent in anti-entropy answers.
    pub sync_bytes_sent: u64,
    /// Anti-entropy frames for a store this node does not hold.
    pub sync_unknown_store: u64,
}
