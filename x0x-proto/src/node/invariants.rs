//! The node's structural invariants, checked by the fuzzers, the property tests and the
//! simulator's hostile scenarios: what must hold after any sequence of inputs.

use super::Node;
use crate::identity::MachineId;
use crate::wire::TopicId;

/// An invariant [`Node::check_invariants`] found broken: a bug in the node, never a peer's
/// fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantError {
    /// A table or queue holds more than its configured cap.
    #[error("{table} holds {len}, over its cap of {cap}")]
    OverCap {
        /// Which table.
        table: &'static str,
        /// What it holds.
        len: usize,
        /// Its cap.
        cap: usize,
    },
    /// The node is in one of its own membership views.
    #[error("this node is in its own {view} view")]
    SelfInView {
        /// `active` or `passive`.
        view: &'static str,
    },
    /// A machine is in both membership views.
    #[error("{peer} is in both the active and the passive view")]
    InBothViews {
        /// The machine.
        peer: MachineId,
    },
    /// A topic's eager and lazy sets or its tree are malformed.
    #[error("topic {topic}: {what}")]
    Topic {
        /// The topic.
        topic: TopicId,
        /// What is wrong.
        what: &'static str,
    },
}

impl InvariantError {
    /// `Err(OverCap)` when `len` exceeds `cap`.
    pub(crate) fn check_cap(table: &'static str, len: usize, cap: usize) -> Result<(), Self> {
        if len > cap {
            return Err(Self::OverCap { table, len, cap });
        }
        Ok(())
    }
}

impl Node {
    /// Checks the node's structural invariants: the membership views within their caps,
    /// disjoint and without this node; the broadcast topics' trees well formed and their
    /// caches within their caps; the discovery caches, key caches, direct-message tables and
    /// every queue within their caps. An error is a bug in the node, never a peer's fault.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.membership.check_invariants()?;
        self.broadcast.check_invariants()?;
        let c = &self.config;
        InvariantError::check_cap(
            "transmit queue",
            self.transmits.len(),
            c.max_queued_transmits,
        )?;
        InvariantError::check_cap("event queue", self.events.len(), c.max_queued_events)?;
        InvariantError::check_cap("connections", self.peers.len(), c.max_connections)?;
        // One observation per connection, gone with it.
        InvariantError::check_cap("observed addresses", self.observed.len(), self.peers.len())?;
        InvariantError::check_cap("punch table", self.punch.len(), c.nat.punch_table.max(1))?;
        InvariantError::check_cap("peer cache", self.peer_cache.len(), c.peer_cache.capacity)?;
        self.discovery.check_invariants()?;
        self.verifier.check_invariants(&self.config)?;
        let (records, queries, routes, monitors) = self.presence.sizes();
        let p = &c.presence;
        InvariantError::check_cap("presence records", records, p.max_records)?;
        InvariantError::check_cap("presence queries", queries, p.max_pending_queries)?;
        InvariantError::check_cap("presence query ids", routes, p.seen_queries.max(1))?;
        InvariantError::check_cap("presence monitors", monitors, c.max_connections)?;
        InvariantError::check_cap("contacts", self.trust.len(), c.trust.max_contacts)?;
        self.direct.check_invariants()
    }
}
