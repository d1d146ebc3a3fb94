//! Contacts and trust at the node: the store it holds, the changes an application makes
//! (each reported as [`Event::TrustChanged`] so a driver persists it), and the counters of
//! what the evaluator refused on each path. Where each decision is applied: announcements
//! (`node/discovery.rs`), pub/sub delivery (`node/pubsub.rs`), direct messages
//! (`node/direct.rs`), discovery lists (here).

use serde::Serialize;

use super::{Event, Node};
use crate::discovery::DiscoveredAgent;
use crate::identity::{AgentId, MachineId};
use crate::time::Time;
use crate::trust::{
    Contact, ContactStore, IdentityType, MachineRecord, Revocation, TrustDecision, TrustError,
    TrustLevel, TrustState, TrustStateError,
};

/// A change to the contact store, as an application asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustChange {
    /// Add (or replace) a contact.
    Add {
        /// The agent.
        agent: AgentId,
        /// Its trust level.
        level: TrustLevel,
        /// A name for people.
        label: Option<String>,
    },
    /// Set a trust level (creating the contact if needed).
    SetLevel {
        /// The agent.
        agent: AgentId,
        /// The level.
        level: TrustLevel,
    },
    /// Set an identity type (creating the contact if needed).
    SetIdentityType {
        /// The agent.
        agent: AgentId,
        /// The type.
        identity_type: IdentityType,
    },
    /// Remove a contact (a revocation stays).
    Remove {
        /// The agent.
        agent: AgentId,
    },
    /// Revoke an agent for good.
    Revoke {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: String,
    },
    /// Add or update a machine record.
    AddMachine {
        /// The agent.
        agent: AgentId,
        /// The machine.
        machine: MachineId,
        /// A name for people.
        label: Option<String>,
        /// Set the pinned flag.
        pinned: Option<bool>,
    },
    /// Remove a machine record.
    RemoveMachine {
        /// The agent.
        agent: AgentId,
        /// The machine.
        machine: MachineId,
    },
    /// Pin a recorded machine (the contact becomes `pinned`).
    Pin {
        /// The agent.
        agent: AgentId,
        /// The machine.
        machine: MachineId,
    },
    /// Unpin a machine.
    Unpin {
        /// The agent.
        agent: AgentId,
        /// The machine.
        machine: MachineId,
    },
}

impl TrustChange {
    /// The agent the change is about.
    pub fn agent(&self) -> AgentId {
        match self {
            Self::Add { agent, .. }
            | Self::SetLevel { agent, .. }
            | Self::SetIdentityType { agent, .. }
            | Self::Remove { agent }
            | Self::Revoke { agent, .. }
            | Self::AddMachine { agent, .. }
            | Self::RemoveMachine { agent, .. }
            | Self::Pin { agent, .. }
            | Self::Unpin { agent, .. } => *agent,
        }
    }
}

/// What a [`TrustChange`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustApplied {
    /// The contact as it is now.
    Contact(Contact),
    /// The contact was removed.
    Removed(Contact),
    /// The revocation (the first one, when revoked before).
    Revoked(Revocation),
    /// The machine record, and whether it is new.
    Machine {
        /// The record.
        record: MachineRecord,
        /// Whether the record (or the contact) was created.
        created: bool,
    },
    /// The machine record was removed.
    MachineRemoved,
    /// Whether the pin or unpin found the contact and machine.
    Pinned(bool),
}

/// What the evaluator refused, by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustRefusals {
    /// Identity announcements of blocked (or revoked) agents, dropped.
    pub announcements_blocked: u64,
    /// Identity announcements of pinned agents from an unpinned machine, dropped.
    pub announcements_machine_mismatch: u64,
    /// Pub/sub messages of blocked agents, relayed but not delivered.
    pub messages_blocked: u64,
    /// Direct messages refused by policy (blocked, or a pinned agent's other machine); the
    /// sender gets a `RejectedByPolicy` acknowledgement.
    pub direct_refused: u64,
    /// Direct messages to a blocked agent, refused before sending.
    pub direct_to_blocked: u64,
}

/// The trust section of [`NodeStats`](super::NodeStats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustStats {
    /// What the evaluator refused.
    pub refused: TrustRefusals,
    /// The store's own counters (evictions, refusals at a cap, un-revoke attempts).
    pub store: crate::trust::TrustStats,
    /// Contacts held now.
    pub contacts: usize,
}

impl Node {
    /// Takes a saved contact store (e.g. a driver's `contacts.json`), checked against
    /// [`Config::trust`](super::Config::trust). Meant right after [`Node::new`].
    pub fn with_contacts(mut self, state: TrustState) -> Result<Self, TrustStateError> {
        self.trust = ContactStore::from_state(state, self.config.trust.clone())?;
        Ok(self)
    }

    // ----- commands -----

    /// Changes the contact store; on success emits [`Event::TrustChanged`] so the driver
    /// saves [`Node::trust_state`].
    pub fn change_trust(
        &mut self,
        now: Time,
        change: TrustChange,
    ) -> Result<TrustApplied, TrustError> {
        let secs = now.as_secs();
        let agent = change.agent();
        let applied = match change {
            TrustChange::Add {
                agent,
                level,
                label,
            } => TrustApplied::Contact(self.trust.add(agent, level, label, secs)?.clone()),
            TrustChange::SetLevel { agent, level } => {
                TrustApplied::Contact(self.trust.set_trust(agent, level, secs)?.clone())
            }
            TrustChange::SetIdentityType {
                agent,
                identity_type,
            } => TrustApplied::Contact(
                self.trust
                    .set_identity_type(agent, identity_type, secs)?
                    .clone(),
            ),
            TrustChange::Remove { agent } => TrustApplied::Removed(self.trust.remove(&agent)?),
            TrustChange::Revoke { agent, reason } => {
                TrustApplied::Revoked(self.trust.revoke(agent, reason, secs)?.clone())
            }
            TrustChange::AddMachine {
                agent,
                machine,
                label,
                pinned,
            } => {
                let (record, created) = self
                    .trust
                    .add_machine(agent, machine, label, pinned, secs)?;
                TrustApplied::Machine { record, created }
            }
            TrustChange::RemoveMachine { agent, machine } => {
                self.trust.remove_machine(&agent, &machine)?;
                TrustApplied::MachineRemoved
            }
            TrustChange::Pin { agent, machine } => {
                TrustApplied::Pinned(self.trust.pin(&agent, &machine))
            }
            TrustChange::Unpin { agent, machine } => {
                TrustApplied::Pinned(self.trust.unpin(&agent, &machine))
            }
        };
        self.emit(Event::TrustChanged { agent_id: agent });
        Ok(applied)
    }

    // ----- queries -----

    /// The contact store.
    pub fn contacts(&self) -> &ContactStore {
        &self.trust
    }

    /// The contact store as a driver saves it.
    pub fn trust_state(&self) -> TrustState {
        self.trust.state()
    }

    /// The evaluator's decision for something `agent` sent from `machine`.
    pub fn evaluate_trust(&self, agent: &AgentId, machine: &MachineId) -> TrustDecision {
        self.trust.evaluate(agent, machine)
    }

    /// Every live discovered agent, blocked ones included (the discovery lists hide them).
    pub fn all_discovered_agents(&self, now: Time) -> Vec<DiscoveredAgent> {
        self.discovery.agents(now)
    }

    // ----- internals -----

    pub(super) fn trust_stats(&self) -> TrustStats {
        TrustStats {
            refused: self.trust_refused,
            store: self.trust.stats(),
            contacts: self.trust.len(),
        }
    }
}
