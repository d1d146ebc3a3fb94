//! Who may write what: [`AccessPolicy`] and the judge every replica runs on every change.
//!
//! A change is judged against the document **as of its own dependencies** (its causal past),
//! never against whatever the replica happens to hold: two replicas that receive the same
//! changes in different orders, or one of them much later, see the same past for each change
//! and so reach the same verdict. That is what makes a refusal final everywhere.

use automerge::legacy::{Key, ObjectId, OpType};
use std::cell::Cell;
use std::collections::BTreeSet;

use automerge::{Automerge, Change, ChangeHash, ROOT, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};

use super::error::Refusal;
use super::layout::{self, KeyKind, TaskState};
use super::{CollabConfig, StoreKind};
use crate::identity::AgentId;

/// Who may write to a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccessPolicy {
    /// Only the owner (the agent that created the store) writes. x0x's default.
    #[default]
    Signed,
    /// The owner and the agents on an allowlist only the owner edits; a write is judged
    /// against the allowlist in its own causal past.
    Allowlisted,
    /// Every agent writes, each change still signed by its author (task lists: agents add,
    /// claim and complete tasks; the task rules apply).
    Open,
}

impl AccessPolicy {
    /// The policy's name as written in a store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Allowlisted => "allowlisted",
            Self::Open => "open",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "signed" => Some(Self::Signed),
            "allowlisted" => Some(Self::Allowlisted),
            "open" => Some(Self::Open),
            _ => None,
        }
    }
}

/// What the replica knows about a store when it judges a change.
pub(super) struct Judge<'a> {
    pub(super) doc: &'a Automerge,
    pub(super) kind: StoreKind,
    pub(super) owner: Option<AgentId>,
    pub(super) policy: AccessPolicy,
    pub(super) expected_owner: Option<AgentId>,
    pub(super) config: &'a CollabConfig,
    /// Changes accepted but not yet in `doc`: the document as of a past that includes one
    /// cannot be read yet.
    pub(super) pending: &'a BTreeSet<ChangeHash>,
    /// Set when the judge needed such a past: its verdict does not count, and the caller
    /// applies the pending changes and asks again.
    pub(super) stale: Cell<bool>,
}

/// A change that passed: either an ordinary one or the store's creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// An ordinary change.
    Accept,
    /// The creation of a store with an owner: the replica binds to it.
    Genesis {
        owner: AgentId,
        policy: AccessPolicy,
    },
}

impl Judge<'_> {
    /// Judges `change`, signed by `author`, whose dependencies are all applied.
    pub(super) fn judge(&self, author: &AgentId, change: &Change) -> Result<Verdict, Refusal> {
        if !layout::actor_is(change.actor_id(), author) {
            return Err(Refusal::ActorNotSigner);
        }
        let deps = change.deps();
        let ops = change.decode().operations;
        // No local write is ever empty (a commit that changes nothing makes no change); an
        // empty change would pass every rule below, so anyone could fill a store with them.
        if ops.is_empty() {
            return Err(Refusal::Malformed);
        }
        let mut genesis_owner = None;
        let mut genesis_policy = None;
        let mut touches_meta = false;
        let mut needs_writer = false;
        let mut needs_owner = false;
        for op in &ops {
            if op.obj != ObjectId::Root || op.insert {
                return Err(Refusal::Malformed);
            }
            let Key::Map(key) = &op.key else {
                return Err(Refusal::Malformed);
            };
            let value = match &op.action {
                OpType::Put(v) => Some(v),
                OpType::Delete => None,
                _ => return Err(Refusal::Malformed),
            };
            let kind = KeyKind::of(self.kind, key).ok_or(Refusal::Malformed)?;
            match kind {
                KeyKind::Meta(field) => {
                    touches_meta = true;
                    let Some(ScalarValue::Str(s)) = value else {
                        return Err(Refusal::Malformed);
                    };
                    match field {
                        "owner" => {
                            genesis_owner =
                                Some(AgentId::from_hex(s).map_err(|_| Refusal::Malformed)?)
                        }
                        "policy" => {
                            genesis_policy = Some(AccessPolicy::parse(s).ok_or(Refusal::Malformed)?)
                        }
                        "kind" if s.as_str() != self.kind.as_str() => {
                            return Err(Refusal::Malformed);
                        }
                        _ => {}
                    }
                }
                KeyKind::Allow => {
                    needs_owner = true;
                    if !matches!(value, None | Some(ScalarValue::Boolean(true))) {
                        return Err(Refusal::Malformed);
                    }
                }
                KeyKind::Entry => {
                    needs_writer = true;
                    match value {
                        None => {}
                        Some(ScalarValue::Bytes(b))
                            if b.len() <= self.config.max_value_len + layout::ENTRY_OVERHEAD => {}
                        _ => return Err(Refusal::Malformed),
                    }
                }
                KeyKind::Task(id) => {
                    match value {
                        Some(ScalarValue::Bytes(b))
                            if b.len()
                                <= 2 * self.config.max_task_text + layout::ENTRY_OVERHEAD => {}
                        _ => return Err(Refusal::Malformed),
                    }
                    if self.get_at(&layout::task_key(id), deps).is_some() {
                        return Err(Refusal::TaskExists);
                    }
                }
                KeyKind::Position => {
                    if !matches!(value, Some(ScalarValue::F64(p)) if p.is_finite()) {
                        return Err(Refusal::Malformed);
                    }
                }
                KeyKind::State(id) => {
                    let Some(ScalarValue::Str(s)) = value else {
                        return Err(Refusal::Malformed);
                    };
                    let new = TaskState::parse(s).ok_or(Refusal::Malformed)?;
                    if new.agent() != Some(*author) {
                        return Err(Refusal::Malformed);
                    }
                    let old = self.state_at(&layout::state_key(id), deps);
                    check_task_step(&old, &new, author)?;
                }
            }
        }
        if self.kind == StoreKind::TaskList {
            return Ok(Verdict::Accept);
        }
        if touches_meta {
            // A KV store's creation: no past, owned by its signer, written once.
            let (Some(owner), Some(policy)) = (genesis_owner, genesis_policy) else {
                return Err(Refusal::Malformed);
            };
            if !deps.is_empty() || owner != *author || policy == AccessPolicy::Open {
                return Err(Refusal::Malformed);
            }
            if self.owner.is_some() || self.expected_owner.is_some_and(|e| e != owner) {
                return Err(Refusal::ForeignGenesis);
            }
            return Ok(Verdict::Genesis { owner, policy });
        }
        // The creation is the only accepted change without a past, so every other accepted
        // change has it in its past. A change with no past was written where the store did
        // not exist yet: nobody may write there. Judging it against the owner this replica
        // happens to know would make the verdict depend on whether the creation came first.
        if deps.is_empty() {
            return Err(Refusal::NotAWriter);
        }
        let Some(owner) = self.owner else {
            return Err(Refusal::NotAWriter);
        };
        if *author == owner {
            return Ok(Verdict::Accept);
        }
        if needs_owner {
            return Err(Refusal::OwnerOnly);
        }
        if needs_writer {
            let allowed = self.policy == AccessPolicy::Allowlisted
                && matches!(
                    self.get_at(&layout::allow_key(author), deps),
                    Some(ScalarValue::Boolean(true))
                );
            if !allowed {
                return Err(Refusal::NotAWriter);
            }
        }
        Ok(Verdict::Accept)
    }

    /// The winning value of a root key as of `heads`.
    /// A task's state as of `heads` ([`layout::resolve_state`]).
    fn state_at(&self, key: &str, heads: &[ChangeHash]) -> TaskState {
        let winner = match self.get_at(key, heads) {
            Some(ScalarValue::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        let all: Vec<String> = match self.doc.get_all_at(ROOT, key, heads) {
            Ok(v) => v
                .into_iter()
                .filter_map(|(v, _)| v.as_str().map(str::to_owned))
                .collect(),
            Err(_) => Vec::new(),
        };
        layout::resolve_state(winner.as_deref(), all.iter().map(String::as_str))
    }

    fn get_at(&self, key: &str, heads: &[ChangeHash]) -> Option<ScalarValue> {
        if heads.iter().any(|h| self.pending.contains(h)) {
            self.stale.set(true);
            return None;
        }
        match self.doc.get_at(ROOT, key, heads) {
            Ok(Some((v, _))) => v.as_scalar().cloned(),
            _ => None,
        }
    }
}

/// The task rules: claim before complete, done is final, no claim over a claim seen.
pub(super) fn check_task_step(
    old: &TaskState,
    new: &TaskState,
    author: &AgentId,
) -> Result<(), Refusal> {
    match (old, new) {
        (TaskState::Done(_), _) => Err(Refusal::TaskDone),
        (TaskState::Claimed(a), TaskState::Claimed(_)) if a != author => Err(Refusal::TaskClaimed),
        (TaskState::Claimed(a), TaskState::Done(_)) if a == author => Ok(()),
        (_, TaskState::Done(_)) => Err(Refusal::TaskNotClaimed),
        _ => Ok(()),
    }
}
