//! Anti-entropy frames of replicated stores ([`crate::collab`]): [`CollabHeads`] (what I
//! have) and [`CollabBatches`] (the signed batches you lack). Changes themselves travel as
//! pub/sub messages on the store's topic; these frames only repair what gossip missed.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{MAX_IDS_PER_FRAME, TopicId, bounded_vec};

/// Most signed batches one [`CollabBatches`] frame carries.
pub const MAX_BATCHES_PER_FRAME: usize = 1024;

/// "These are my heads of the store on `topic`": the receiver answers with the batches the
/// sender lacks, and (if `reply`) with its own heads when the sender holds changes it lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollabHeads {
    /// The store's topic.
    pub topic: TopicId,
    /// The sender's heads (automerge change hashes), at most [`MAX_IDS_PER_FRAME`].
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_IDS_PER_FRAME }>")]
    pub heads: Vec<[u8; 32]>,
    /// Whether the receiver should send its heads back if the sender has something it lacks.
    pub reply: bool,
}

/// Signed batches of changes for the store on `topic`, oldest first: each an encoded
/// [`super::Signed`] pub/sub message, verified by the receiver as if it came by gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollabBatches {
    /// The store's topic.
    pub topic: TopicId,
    /// The batches.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_BATCHES_PER_FRAME }>")]
    pub batches: Vec<Bytes>,
    /// The sender had more than its per-round budget: ask again.
    pub more: bool,
}
