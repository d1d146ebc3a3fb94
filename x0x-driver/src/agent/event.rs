//! [`AgentEvent`]: connection and membership changes, streamed by [`Events`].

use x0x_proto::membership::DownReason;
use x0x_proto::{AgentId, MachineId};

/// A connection or membership change, from [`Agent::events`](crate::Agent::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A connection completed its `Hello` exchange.
    PeerUp {
        /// The peer machine.
        machine_id: MachineId,
        /// Its agent.
        agent_id: AgentId,
    },
    /// A connection that had completed its `Hello` went away.
    PeerDown {
        /// The peer machine.
        machine_id: MachineId,
    },
    /// A machine entered the membership active view (messages flow through it).
    NeighborUp {
        /// The neighbour.
        machine_id: MachineId,
    },
    /// A neighbour missed its probe, directly and through others: SWIM suspects it. It is
    /// declared dead ([`AgentEvent::NeighborDown`] with [`DownReason::Dead`]) unless it shows
    /// a sign of life in time.
    NeighborSuspected {
        /// The neighbour.
        machine_id: MachineId,
    },
    /// A machine left the active view.
    NeighborDown {
        /// The neighbour.
        machine_id: MachineId,
        /// Why it left.
        reason: DownReason,
    },
    /// An agent entered the discovery cache for the first time.
    AgentDiscovered {
        /// The agent.
        agent_id: AgentId,
    },
    /// An agent's presence beacon reached this agent: it is online (and was not).
    AgentOnline {
        /// The agent.
        agent_id: AgentId,
        /// Its machine.
        machine_id: MachineId,
        /// Where it says it can be reached.
        addresses: Vec<std::net::SocketAddr>,
        /// Whether this agent has a connection to it.
        reachable: bool,
    },
    /// An agent left the online set: its beacons stopped (failed), it left, or its record
    /// expired after its connection closed (out of view).
    AgentOffline {
        /// The agent.
        agent_id: AgentId,
        /// Why.
        reason: x0x_proto::presence::OfflineReason,
    },
    /// The contact store changed: save [`Agent::trust_state`](crate::Agent::trust_state) to
    /// keep it across restarts.
    TrustChanged {
        /// The agent whose record changed.
        agent_id: AgentId,
    },
    /// A replicated store changed (a local write or others' changes): re-read it, and save
    /// [`Agent::store_snapshot`](crate::Agent::store_snapshot) to keep it across restarts.
    StoreChanged {
        /// The store's topic id.
        topic: x0x_proto::wire::TopicId,
    },
}

/// The stream returned by [`Agent::events`](crate::Agent::events). A watcher that falls 256 events behind is
/// dropped (its `recv` ends) rather than allowed to stall the agent.
#[derive(Debug)]
pub struct Events {
    pub(super) rx: async_channel::Receiver<AgentEvent>,
}

impl Events {
    /// The next event, or `None` once the agent shut down (or this watcher was dropped).
    pub async fn recv(&mut self) -> Option<AgentEvent> {
        self.rx.recv().await.ok()
    }
}
