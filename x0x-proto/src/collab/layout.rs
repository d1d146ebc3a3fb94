//! How a store lives in its automerge document: every value is a scalar under one root key,
//! so a change is a flat list of puts and deletes the judge can read op by op.
//!
//! | key | value | store |
//! |---|---|---|
//! | `m/kind`, `m/name`, `m/owner`, `m/policy` | string | the creation |
//! | `a/<agent hex>` | `true` | KV allowlist (owner only) |
//! | `k/<key>` | bytes: [`KvEntry`] | KV entries |
//! | `t/<task id hex>` | bytes: [`TaskItem`] | tasks, written once |
//! | `p/<task id hex>` | f64 | a task's place in the list |
//! | `s/<task id hex>` | `claimed:<agent hex>` / `done:<agent hex>` | a task's state |
//!
//! Nested objects are avoided on purpose: two replicas creating the same nested map at once
//! would make two objects, and one would hide the other.

use automerge::ActorId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StoreKind;
use crate::identity::AgentId;

/// Room for an entry's or task's fields besides its value.
pub(super) const ENTRY_OVERHEAD: usize = 512;

/// What a root key is, for a store of `kind`.
pub(super) enum KeyKind<'a> {
    Meta(&'a str),
    Allow,
    Entry,
    Task(&'a str),
    Position,
    State(&'a str),
}

impl<'a> KeyKind<'a> {
    /// Classifies `key`; `None` for a key outside the store's layout.
    pub(super) fn of(kind: StoreKind, key: &'a str) -> Option<Self> {
        let (prefix, rest) = key.split_at_checked(2)?;
        let k = match (kind, prefix) {
            (_, "m/") if matches!(rest, "kind" | "name" | "owner" | "policy") => Self::Meta(rest),
            (StoreKind::Kv, "a/") if AgentId::from_hex(rest).is_ok() => Self::Allow,
            (StoreKind::Kv, "k/") if !rest.is_empty() => Self::Entry,
            (StoreKind::TaskList, "t/") if is_task_id(rest) => Self::Task(rest),
            (StoreKind::TaskList, "p/") if is_task_id(rest) => Self::Position,
            (StoreKind::TaskList, "s/") if is_task_id(rest) => Self::State(rest),
            _ => return None,
        };
        Some(k)
    }
}

fn is_task_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(super) fn entry_key(key: &str) -> String {
    format!("k/{key}")
}
pub(super) fn allow_key(agent: &AgentId) -> String {
    format!("a/{}", agent.to_hex())
}
pub(super) fn task_key(id: &str) -> String {
    format!("t/{id}")
}
pub(super) fn position_key(id: &str) -> String {
    format!("p/{id}")
}
pub(super) fn state_key(id: &str) -> String {
    format!("s/{id}")
}

/// The actor a node writes a store as: its agent id, then 8 bytes that tell its sessions
/// apart (two sessions of one agent must never reuse a sequence number).
pub(super) fn actor_for(agent: &AgentId, incarnation: u64) -> ActorId {
    let mut b = agent.as_bytes().to_vec();
    b.extend_from_slice(&incarnation.to_be_bytes());
    ActorId::from(b)
}

/// Whether `actor` was derived from `agent` ([`actor_for`]).
pub(super) fn actor_is(actor: &ActorId, agent: &AgentId) -> bool {
    let b = actor.to_bytes();
    b.len() == 40 && b[..32] == agent.as_bytes()[..]
}

/// One KV entry as stored under `k/<key>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The value's media type.
    pub content_type: String,
    /// When the key was first written (ms since the epoch, the writer's clock).
    pub created_at_ms: u64,
    /// When this value was written.
    pub updated_at_ms: u64,
    /// The value.
    pub value: Bytes,
}

/// A task's fixed fields, stored once under `t/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TaskItem {
    pub title: String,
    pub description: String,
    pub created_by: AgentId,
    pub created_at_ms: u64,
}

/// A task's state, stored under `s/<id>`; absent means open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Nobody holds it.
    Open,
    /// Claimed by this agent.
    Claimed(AgentId),
    /// Completed by this agent (final).
    Done(AgentId),
}

impl TaskState {
    /// Parses `claimed:<hex>` / `done:<hex>`.
    pub(super) fn parse(s: &str) -> Option<Self> {
        if let Some(h) = s.strip_prefix("claimed:") {
            AgentId::from_hex(h).ok().map(Self::Claimed)
        } else if let Some(h) = s.strip_prefix("done:") {
            AgentId::from_hex(h).ok().map(Self::Done)
        } else {
            None
        }
    }

    /// The agent the state names.
    pub fn agent(&self) -> Option<AgentId> {
        match self {
            Self::Open => None,
            Self::Claimed(a) | Self::Done(a) => Some(*a),
        }
    }

    /// x0x's display form: `empty`, `claimed:<hex>`, `done:<hex>`.
    pub fn display(&self) -> String {
        match self {
            Self::Open => "empty".into(),
            Self::Claimed(a) => format!("claimed:{}", a.to_hex()),
            Self::Done(a) => format!("done:{}", a.to_hex()),
        }
    }
}

/// A task's state from the values its `s/` key holds: `winner` is automerge's pick, `all`
/// every concurrent value. A completion concurrent with a claim would lose to it half the
/// time; done is final, so any `done` wins (the greatest agent's, if several), the same on
/// every replica since all replicas hold the same concurrent values.
pub(super) fn resolve_state<'a>(
    winner: Option<&str>,
    all: impl IntoIterator<Item = &'a str>,
) -> TaskState {
    let done = all
        .into_iter()
        .filter_map(TaskState::parse)
        .filter(|s| matches!(s, TaskState::Done(_)))
        .max_by_key(|s| s.agent());
    done.or_else(|| winner.and_then(TaskState::parse))
        .unwrap_or(TaskState::Open)
}

/// Decodes a postcard value with no trailing bytes.
pub(super) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(b) {
        Ok((v, [])) => Some(v),
        _ => None,
    }
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail"))
}
