//! The errors of the replicated stores: what an application's call gets ([`CollabError`])
//! and why a change from the network was refused ([`Refusal`]).

/// Why a store operation asked by the application failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollabError {
    /// No store (or task list) with this topic is open here.
    #[error("store not found")]
    UnknownStore,
    /// The store holds no such key.
    #[error("key not found")]
    UnknownKey,
    /// The task list holds no such task.
    #[error("task not found")]
    UnknownTask,
    /// The topic names a store of the other kind (a KV store used as a task list or back).
    #[error("{topic} is a {actual}, not a {wanted}")]
    WrongKind {
        /// The topic.
        topic: String,
        /// What it is.
        actual: &'static str,
        /// What the call wanted.
        wanted: &'static str,
    },
    /// The store is already open here.
    #[error("store already open")]
    AlreadyOpen,
    /// The node holds `max_stores` stores.
    #[error("too many stores (at most {max})")]
    TooManyStores {
        /// The cap.
        max: usize,
    },
    /// The value is larger than `max_value_len`.
    #[error("value too large: {len} bytes (at most {max})")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A key or task text is empty or too long.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was invalid ("key", "title", …).
        what: &'static str,
        /// Why.
        why: String,
    },
    /// This agent may not write to the store (its policy says who may).
    #[error("not permitted: {0}")]
    NotPermitted(Refusal),
    /// The store's owner is not known yet (a joiner that has not received the store's
    /// creation): nothing can be judged, so nothing is written.
    #[error("the store's creation has not arrived yet")]
    NotSynced,
    /// The store is at `max_store_bytes`.
    #[error("store full ({max} bytes)")]
    StoreFull {
        /// The cap.
        max: usize,
    },
    /// A saved store could not be read back.
    #[error("corrupt saved store: {0}")]
    CorruptSnapshot(String),
}

/// Why a replica refused a change. Every replica judges a change against the same causal
/// past, so every replica refuses the same changes for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The author is neither the owner nor on the allowlist in the change's causal past.
    #[error("the author may not write to this store")]
    NotAWriter,
    /// Only the owner edits the allowlist and the store's description.
    #[error("only the owner may do this")]
    OwnerOnly,
    /// A second creation of a store that already has one (another owner's store on the
    /// same topic).
    #[error("the store was created by another owner")]
    ForeignGenesis,
    /// The change's actor is not derived from the agent that signed it.
    #[error("the change's actor is not its signer")]
    ActorNotSigner,
    /// The change does something a store never does (a nested object, a list, a counter, a
    /// key outside the store's layout, a value of the wrong type or size).
    #[error("the change has the wrong shape for this store")]
    Malformed,
    /// A task that is done changes no more.
    #[error("the task is done")]
    TaskDone,
    /// A claim over someone else's claim the author had seen.
    #[error("the task is claimed by another agent")]
    TaskClaimed,
    /// A completion by an agent that does not hold the claim.
    #[error("the task is not claimed by this agent")]
    TaskNotClaimed,
    /// A task created twice under one id.
    #[error("the task exists")]
    TaskExists,
}

impl Refusal {
    /// Whether this refusal is about the change's shape rather than the store's policy.
    pub fn is_malformed(self) -> bool {
        matches!(self, Self::Malformed | Self::ActorNotSigner)
    }
}
