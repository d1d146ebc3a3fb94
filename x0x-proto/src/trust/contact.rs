//! The records the store keeps: contacts, their machines, revocations.

use serde::{Deserialize, Serialize};

use super::{IdentityType, TrustLevel};
use crate::identity::{AgentId, MachineId};

/// An agent the user has an opinion about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The agent.
    pub agent_id: AgentId,
    /// How much it is trusted.
    pub trust_level: TrustLevel,
    /// A name for people.
    #[serde(default)]
    pub label: Option<String>,
    /// When it became a contact, unix seconds.
    pub added_at: u64,
    /// When something of it was last accepted, unix seconds.
    #[serde(default)]
    pub last_seen: Option<u64>,
    /// How its identity is bound to machines.
    #[serde(default)]
    pub identity_type: IdentityType,
    /// Machines it was seen on or pinned to.
    #[serde(default)]
    pub machines: Vec<MachineRecord>,
}

impl Contact {
    /// A new contact with no machines.
    pub fn new(agent_id: AgentId, trust_level: TrustLevel, now_secs: u64) -> Self {
        Self {
            agent_id,
            trust_level,
            label: None,
            added_at: now_secs,
            last_seen: None,
            identity_type: IdentityType::Anonymous,
            machines: Vec::new(),
        }
    }

    /// The record of `machine`, if any.
    pub fn machine(&self, machine: &MachineId) -> Option<&MachineRecord> {
        self.machines.iter().find(|m| &m.machine_id == machine)
    }

    /// Whether any machine is pinned.
    pub fn has_pinned_machine(&self) -> bool {
        self.machines.iter().any(|m| m.pinned)
    }
}

/// A machine a contact runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// The machine.
    pub machine_id: MachineId,
    /// A name for people.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was added, unix seconds.
    pub first_seen: u64,
    /// When it was last added or seen, unix seconds.
    pub last_seen: u64,
    /// Whether the contact is accepted from this machine when its identity type is `pinned`.
    #[serde(default)]
    pub pinned: bool,
}

/// A permanent block: a revoked agent stays `blocked` whatever is set later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked agent.
    pub agent_id: AgentId,
    /// Why, in the user's words.
    pub reason: String,
    /// When, unix seconds.
    pub timestamp: u64,
    /// Who revoked it, when not this node's user.
    #[serde(default)]
    pub revoker_id: Option<AgentId>,
}
