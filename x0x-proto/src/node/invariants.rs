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

/// One bounded table or queue: what it holds against its cap ([`Node::table_sizes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct TableSize {
    /// Which table (`"broadcast dedup window"`, …).
    pub table: &'static str,
    /// Entries it holds now.
    pub len: usize,
    /// Its configured cap.
    pub cap: usize,
}

impl TableSize {
    pub(crate) const fn new(table: &'static str, len: usize, cap: usize) -> Self {
        Self { table, len, cap }
    }

    /// `Err(OverCap)` when the table holds more than its cap.
    pub(crate) fn check(self) -> Result<(), InvariantError> {
        if self.len > self.cap {
            return Err(InvariantError::OverCap {
                table: self.table,
                len: self.len,
                cap: self.cap,
            });
        }
        Ok(())
    }
}

impl Node {
    /// Checks the node's structural invariants: the membership views disjoint and without
    /// this node; the broadcast topics' trees well formed; every table and queue of
    /// [`Node::table_sizes`] within its cap. An error is a bug in the node, never a peer's
    /// fault.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.membership.check_invariants()?;
        self.broadcast.check_invariants()?;
        self.table_sizes()
            .into_iter()
            .try_for_each(TableSize::check)
    }

    /// Every bounded table and queue of the node, with its size and cap: what a soak test
    /// watches for growth, and what [`Node::check_invariants`] holds to its cap.
    pub fn table_sizes(&self) -> Vec<TableSize> {
        let c = &self.config;
        let mut out = Vec::with_capacity(32);
        self.membership.table_sizes(&mut out);
        self.broadcast.table_sizes(&mut out);
        let (records, queries, routes, monitors) = self.presence.sizes();
        let p = &c.presence;
        out.extend([
            TableSize::new(
                "transmit queue",
                self.transmits.len(),
                c.max_queued_transmits,
            ),
            TableSize::new("event queue", self.events.len(), c.max_queued_events),
            TableSize::new("connections", self.peers.len(), c.max_connections),
            // One observation per connection, gone with it.
            TableSize::new("observed addresses", self.observed.len(), self.peers.len()),
            TableSize::new("punch table", self.punch.len(), c.nat.punch_table.max(1)),
            TableSize::new("peer cache", self.peer_cache.len(), c.peer_cache.capacity),
            TableSize::new("presence records", records, p.max_records),
            TableSize::new("presence queries", queries, p.max_pending_queries),
            TableSize::new("presence query ids", routes, p.seen_queries.max(1)),
            TableSize::new("presence monitors", monitors, c.max_connections),
            TableSize::new("contacts", self.trust.len(), c.trust.max_contacts),
            TableSize::new("stores", self.collab.len(), c.collab.max_stores),
        ]);
        self.discovery.table_sizes(&mut out);
        self.verifier.table_sizes(&self.config, &mut out);
        self.direct.table_sizes(&mut out);
        out
    }
}
