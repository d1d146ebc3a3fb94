//! The contact store and the evaluator: pure, bounded, serialisable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Contact, IdentityType, MachineRecord, Revocation, TrustDecision, TrustLevel};
use crate::identity::{AgentId, MachineId};

/// Caps of the store. Every field has a default; the store refuses (and counts) rather than
/// grow past one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrustConfig {
    /// Most contacts. At the cap a new contact evicts the least recently seen contact of
    /// level `unknown` (it carries no decision), or is refused when there is none. Default
    /// 10 000.
    pub max_contacts: usize,
    /// Most machine records per contact; one more is refused. Default 32.
    pub max_machines_per_contact: usize,
    /// Most revocations; one more is refused, because dropping one would un-block an agent.
    /// Default 10 000.
    pub max_revocations: usize,
    /// Longest label, bytes. Default 256.
    pub max_label_len: usize,
    /// Longest revocation reason, bytes. Default 1 024.
    pub max_reason_len: usize,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            max_contacts: 10_000,
            max_machines_per_contact: 32,
            max_revocations: 10_000,
            max_label_len: 256,
            max_reason_len: 1024,
        }
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The agent is not a contact.
    #[error("contact not found")]
    ContactNotFound,
    /// The contact has no record of that machine.
    #[error("machine not found")]
    MachineNotFound,
    /// The agent was revoked: it stays blocked.
    #[error("agent {0:#} is revoked and stays blocked")]
    Revoked(AgentId),
    /// A cap was reached and nothing could be evicted.
    #[error("{what} limit of {cap} reached")]
    Full {
        /// What is full.
        what: &'static str,
        /// Its cap.
        cap: usize,
    },
    /// A text field is too long.
    #[error("{field} of {len} bytes exceeds {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// The store as it is saved (x0x's `contacts.json` shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// Every contact.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Every revocation.
    #[serde(default)]
    pub revocations: Vec<Revocation>,
}

/// A saved state the store cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustStateError {
    /// More entries than the caps allow.
    #[error("{what}: {count} entries exceed the cap of {cap}")]
    OverCap {
        /// Contacts, machines or revocations.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The cap.
        cap: usize,
    },
    /// The same agent twice.
    #[error("agent {0:#} appears twice")]
    Duplicate(AgentId),
    /// A revoked agent whose contact is not blocked (the file was edited by hand).
    #[error("agent {0:#} is revoked but its contact is not blocked")]
    RevokedNotBlocked(AgentId),
}

/// What the store counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustStats {
    /// Contacts evicted at the cap.
    pub contacts_evicted: u64,
    /// Changes refused at a cap.
    pub refused_full: u64,
    /// Attempts to raise a revoked agent's trust, refused.
    pub refused_revoked: u64,
}

/// Contacts, machine pinning and revocations, and the evaluator over them.
///
/// * **Queries:** [`evaluate`](Self::evaluate), [`level`](Self::level),
///   [`contact`](Self::contact), [`contacts`](Self::contacts),
///   [`revocations`](Self::revocations), [`is_revoked`](Self::is_revoked).
/// * **Changes** (each `Ok` is a change a driver persists): [`add`](Self::add),
///   [`set_trust`](Self::set_trust), [`set_identity_type`](Self::set_identity_type),
///   [`remove`](Self::remove), [`revoke`](Self::revoke), [`add_machine`](Self::add_machine),
///   [`remove_machine`](Self::remove_machine), [`pin`](Self::pin), [`unpin`](Self::unpin).
/// * **State:** [`from_state`](Self::from_state), [`state`](Self::state),
///   [`stats`](Self::stats), [`touch`](Self::touch) (last seen; not a change to persist at once).
#[derive(Debug, Clone, Default)]
pub struct ContactStore {
    config: TrustConfig,
    contacts: BTreeMap<AgentId, Contact>,
    revocations: BTreeMap<AgentId, Revocation>,
    stats: TrustStats,
}

impl ContactStore {
    /// An empty store.
    pub fn new(config: TrustConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A store from its saved state, checked against the caps and the revocation rule.
    pub fn from_state(state: TrustState, config: TrustConfig) -> Result<Self, TrustStateError> {
        let over = |what, count, cap| TrustStateError::OverCap { what, count, cap };
        if state.contacts.len() > config.max_contacts {
            return Err(over("contacts", state.contacts.len(), config.max_contacts));
        }
        if state.revocations.len() > config.max_revocations {
            return Err(over(
                "revocations",
                state.revocations.len(),
                config.max_revocations,
            ));
        }
        let mut store = Self::new(config);
        for r in state.revocations {
            if store.revocations.insert(r.agent_id, r.clone()).is_some() {
                return Err(TrustStateError::Duplicate(r.agent_id));
            }
        }
        for c in state.contacts {
            if c.machines.len() > store.config.max_machines_per_contact {
                return Err(over(
                    "machines",
                    c.machines.len(),
                    store.config.max_machines_per_contact,
                ));
            }
            if store.is_revoked(&c.agent_id) && c.trust_level != TrustLevel::Blocked {
                return Err(TrustStateError::RevokedNotBlocked(c.agent_id));
            }
            let id = c.agent_id;
            if store.contacts.insert(id, c).is_some() {
                return Err(TrustStateError::Duplicate(id));
            }
        }
        Ok(store)
    }

    /// The state to save.
    pub fn state(&self) -> TrustState {
        TrustState {
            contacts: self.contacts.values().cloned().collect(),
            revocations: self.revocations.values().cloned().collect(),
        }
    }

    /// What the store counted.
    pub fn stats(&self) -> TrustStats {
        self.stats
    }

    /// The caps.
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    // ----- queries -----

    /// The evaluator: what to do with something `agent` sent from `machine`.
    ///
    /// In order: not a contact → `unknown`; blocked (or revoked) → `reject_blocked`; pinned
    /// identity on a machine that is not pinned → `reject_machine_mismatch`; pinned on a
    /// pinned machine → `accept`; trusted → `accept`; known → `accept_with_flag`; otherwise
    /// `unknown`.
    pub fn evaluate(&self, agent: &AgentId, machine: &MachineId) -> TrustDecision {
        if self.is_revoked(agent) {
            return TrustDecision::RejectBlocked;
        }
        let Some(c) = self.contacts.get(agent) else {
            return TrustDecision::Unknown;
        };
        if c.trust_level == TrustLevel::Blocked {
            return TrustDecision::RejectBlocked;
        }
        if c.identity_type == IdentityType::Pinned {
            return match c.machine(machine) {
                Some(m) if m.pinned => TrustDecision::Accept,
                _ => TrustDecision::RejectMachineMismatch,
            };
        }
        match c.trust_level {
            TrustLevel::Trusted => TrustDecision::Accept,
            TrustLevel::Known => TrustDecision::AcceptWithFlag,
            _ => TrustDecision::Unknown,
        }
    }

    /// The agent's trust level (`unknown` for a stranger, `blocked` once revoked).
    pub fn level(&self, agent: &AgentId) -> TrustLevel {
        if self.is_revoked(agent) {
            return TrustLevel::Blocked;
        }
        self.contacts
            .get(agent)
            .map_or(TrustLevel::Unknown, |c| c.trust_level)
    }

    /// Whether the agent is blocked (its level, or a revocation).
    pub fn is_blocked(&self, agent: &AgentId) -> bool {
        self.level(agent) == TrustLevel::Blocked
    }

    /// The contact, if any.
    pub fn contact(&self, agent: &AgentId) -> Option<&Contact> {
        self.contacts.get(agent)
    }

    /// Every contact, in id order.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.contacts.values()
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// Whether there are no contacts.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    /// Whether the agent was revoked.
    pub fn is_revoked(&self, agent: &AgentId) -> bool {
        self.revocations.contains_key(agent)
    }

    /// The agent's revocation, if any.
    pub fn revocation(&self, agent: &AgentId) -> Option<&Revocation> {
        self.revocations.get(agent)
    }

    /// Every revocation, in id order.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revocations.values()
    }

    // ----- changes -----

    /// Adds a contact, replacing any record of it (machines and identity type start over).
    pub fn add(
        &mut self,
        agent: AgentId,
        level: TrustLevel,
        label: Option<String>,
        now_secs: u64,
    ) -> Result<&Contact, TrustError> {
        self.check_label(label.as_deref())?;
        self.check_not_revoked(&agent, level)?;
        self.make_room(&agent)?;
        let mut c = Contact::new(agent, level, now_secs);
        c.label = label;
        if level >= TrustLevel::Known {
            c.identity_type = IdentityType::Known;
        }
        self.contacts.insert(agent, c);
        Ok(&self.contacts[&agent])
    }

    /// Sets the trust level, creating the contact if needed. Raising it to `known` or
    /// `trusted` upgrades an `anonymous` identity to `known`.
    pub fn set_trust(
        &mut self,
        agent: AgentId,
        level: TrustLevel,
        now_secs: u64,
    ) -> Result<&Contact, TrustError> {
        self.check_not_revoked(&agent, level)?;
        let c = self.upsert(agent, level, now_secs)?;
        c.trust_level = level;
        if level >= TrustLevel::Known && c.identity_type == IdentityType::Anonymous {
            c.identity_type = IdentityType::Known;
        }
        Ok(c)
    }

    /// Sets the identity type, creating the contact (level `unknown`) if needed.
    pub fn set_identity_type(
        &mut self,
        agent: AgentId,
        ty: IdentityType,
        now_secs: u64,
    ) -> Result<&Contact, TrustError> {
        let c = self.upsert(agent, TrustLevel::Unknown, now_secs)?;
        c.identity_type = ty;
        Ok(c)
    }

    /// Removes a contact. A revocation stays: the agent remains blocked.
    pub fn remove(&mut self, agent: &AgentId) -> Result<Contact, TrustError> {
        self.contacts
            .remove(agent)
            .ok_or(TrustError::ContactNotFound)
    }

    /// Revokes an agent for good: it is blocked now and whatever is set later. Revoking again
    /// keeps the first record.
    pub fn revoke(
        &mut self,
        agent: AgentId,
        reason: String,
        now_secs: u64,
    ) -> Result<&Revocation, TrustError> {
        if reason.len() > self.config.max_reason_len {
            return Err(TrustError::TooLong {
                field: "reason",
                len: reason.len(),
                max: self.config.max_reason_len,
            });
        }
        if !self.revocations.contains_key(&agent) {
            if self.revocations.len() >= self.config.max_revocations {
                self.stats.refused_full += 1;
                return Err(TrustError::Full {
                    what: "revocation",
                    cap: self.config.max_revocations,
                });
            }
            let c = self.upsert(agent, TrustLevel::Blocked, now_secs)?;
            c.trust_level = TrustLevel::Blocked;
            self.revocations.insert(
                agent,
                Revocation {
                    agent_id: agent,
                    reason,
                    timestamp: now_secs,
                    revoker_id: None,
                },
            );
        }
        Ok(&self.revocations[&agent])
    }

    /// Adds (or updates) a machine record, creating the contact (level `unknown`) if needed.
    /// Returns the record and whether it is new.
    pub fn add_machine(
        &mut self,
        agent: AgentId,
        machine: MachineId,
        label: Option<String>,
        pinned: Option<bool>,
        now_secs: u64,
    ) -> Result<(MachineRecord, bool), TrustError> {
        self.check_label(label.as_deref())?;
        let cap = self.config.max_machines_per_contact;
        let new_contact = !self.contacts.contains_key(&agent);
        let full = self
            .contacts
            .get(&agent)
            .is_some_and(|c| c.machine(&machine).is_none() && c.machines.len() >= cap);
        if full {
            self.stats.refused_full += 1;
            return Err(TrustError::Full {
                what: "machine",
                cap,
            });
        }
        let c = self.upsert(agent, TrustLevel::Unknown, now_secs)?;
        let created = match c.machines.iter_mut().find(|m| m.machine_id == machine) {
            Some(m) => {
                m.last_seen = now_secs;
                if label.is_some() {
                    m.label = label;
                }
                if let Some(p) = pinned {
                    m.pinned = p;
                }
                false
            }
            None => {
                c.machines.push(MachineRecord {
                    machine_id: machine,
                    label,
                    first_seen: now_secs,
                    last_seen: now_secs,
                    pinned: pinned.unwrap_or(false),
                });
                true
            }
        };
        let record = c
            .machine(&machine)
            .cloned()
            .unwrap_or_else(|| unreachable!("just inserted"));
        Ok((record, created || new_contact))
    }

    /// Removes a machine record.
    pub fn remove_machine(
        &mut self,
        agent: &AgentId,
        machine: &MachineId,
    ) -> Result<(), TrustError> {
        let c = self
            .contacts
            .get_mut(agent)
            .ok_or(TrustError::MachineNotFound)?;
        let before = c.machines.len();
        c.machines.retain(|m| &m.machine_id != machine);
        if c.machines.len() == before {
            return Err(TrustError::MachineNotFound);
        }
        if c.identity_type == IdentityType::Pinned && !c.has_pinned_machine() {
            c.identity_type = IdentityType::Known;
        }
        Ok(())
    }

    /// Pins a recorded machine: the contact becomes `pinned` and is accepted only from its
    /// pinned machines. `false` if the contact or the machine is unknown.
    pub fn pin(&mut self, agent: &AgentId, machine: &MachineId) -> bool {
        let Some(c) = self.contacts.get_mut(agent) else {
            return false;
        };
        let Some(m) = c.machines.iter_mut().find(|m| &m.machine_id == machine) else {
            return false;
        };
        m.pinned = true;
        c.identity_type = IdentityType::Pinned;
        true
    }

    /// Unpins a machine; with no pinned machine left the identity type falls back to `known`.
    /// `false` if the contact or the machine is unknown.
    pub fn unpin(&mut self, agent: &AgentId, machine: &MachineId) -> bool {
        let Some(c) = self.contacts.get_mut(agent) else {
            return false;
        };
        let Some(m) = c.machines.iter_mut().find(|m| &m.machine_id == machine) else {
            return false;
        };
        m.pinned = false;
        if c.identity_type == IdentityType::Pinned && !c.has_pinned_machine() {
            c.identity_type = IdentityType::Known;
        }
        true
    }

    /// Notes that something of `agent` was accepted now (its `last_seen`). Not a change worth
    /// persisting on its own; it is saved with the next one.
    pub fn touch(&mut self, agent: &AgentId, now_secs: u64) {
        if let Some(c) = self.contacts.get_mut(agent) {
            c.last_seen = Some(now_secs);
        }
    }

    // ----- internals -----

    fn check_label(&self, label: Option<&str>) -> Result<(), TrustError> {
        match label {
            Some(l) if l.len() > self.config.max_label_len => Err(TrustError::TooLong {
                field: "label",
                len: l.len(),
                max: self.config.max_label_len,
            }),
            _ => Ok(()),
        }
    }

    fn check_not_revoked(&mut self, agent: &AgentId, level: TrustLevel) -> Result<(), TrustError> {
        if level != TrustLevel::Blocked && self.is_revoked(agent) {
            self.stats.refused_revoked += 1;
            return Err(TrustError::Revoked(*agent));
        }
        Ok(())
    }

    /// The contact, created with `level` if absent (making room first).
    fn upsert(
        &mut self,
        agent: AgentId,
        level: TrustLevel,
        now_secs: u64,
    ) -> Result<&mut Contact, TrustError> {
        if !self.contacts.contains_key(&agent) {
            self.make_room(&agent)?;
            let level = if self.is_revoked(&agent) {
                TrustLevel::Blocked
            } else {
                level
            };
            self.contacts
                .insert(agent, Contact::new(agent, level, now_secs));
        }
        Ok(self
            .contacts
            .get_mut(&agent)
            .unwrap_or_else(|| unreachable!("inserted above")))
    }

    /// At the cap, evicts the least recently seen `unknown` contact that is not revoked (the
    /// only kind that carries no decision), or refuses.
    fn make_room(&mut self, incoming: &AgentId) -> Result<(), TrustError> {
        if self.contacts.contains_key(incoming) || self.contacts.len() < self.config.max_contacts {
            return Ok(());
        }
        let victim = self
            .contacts
            .values()
            .filter(|c| {
                c.trust_level == TrustLevel::Unknown
                    && c.identity_type != IdentityType::Pinned
                    && !self.revocations.contains_key(&c.agent_id)
            })
            .min_by_key(|c| (c.last_seen.unwrap_or(c.added_at), c.agent_id))
            .map(|c| c.agent_id);
        match victim {
            Some(v) => {
                self.contacts.remove(&v);
                self.stats.contacts_evicted += 1;
                Ok(())
            }
            None => {
                self.stats.refused_full += 1;
                Err(TrustError::Full {
                    what: "contact",
                    cap: self.config.max_contacts,
                })
            }
        }
    }
}
