//! What the node hands out: frames to send ([`Transmit`]), instructions for the driver
//! ([`Action`]) and events for the application ([`Event`]).

use std::net::SocketAddr;

use bytes::Bytes;

use super::{Found, QueryId};
use crate::direct::{DirectFailure, DirectMessage, DirectReceipt, RequestId};
use crate::identity::{AgentId, MachineId};
use crate::membership::DownReason;
use crate::wire::{DecodeError, FrameKind, MessageId, QueryTarget, TopicId};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled.
    Outbound,
    /// They dialled.
    Inbound,
}

/// A frame to send to a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer (a machine with a live connection).
    pub to: MachineId,
    /// What the frame carries; lets a driver or simulator prioritise or count without decoding.
    pub kind: FrameKind,
    /// The encoded frame ([`wire`](crate::wire)); the driver length-prefixes it on its stream.
    pub frame: Bytes,
}

/// Why the node asks for a connection to be closed, or why one went down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The connection limit was reached.
    TooManyConnections,
    /// A second connection to a machine that already has one.
    Duplicate,
    /// The peer sent frames that do not decode.
    BadFrames(DecodeError),
    /// The peer broke the protocol (e.g. a frame before `Hello`, a `Hello` twice).
    ProtocolViolation(&'static str),
    /// No `Hello` within [`Config::hello_timeout`](super::Config::hello_timeout).
    HelloTimeout,
    /// The node is shutting down.
    Shutdown,
    /// The membership layer no longer needs this connection.
    NotNeeded,
}

/// An instruction for the driver that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a connection to `addr`. When it succeeds, call
    /// [`Node::handle_connected`](super::Node::handle_connected); when it fails,
    /// [`Node::handle_dial_failed`](super::Node::handle_dial_failed). If `expect` is set, the TLS
    /// handshake must prove that machine, or the connection must be refused.
    Dial {
        /// Where to dial.
        addr: SocketAddr,
        /// The machine expected at that address, if known.
        expect: Option<MachineId>,
    },
    /// Close the connection to `peer`, then call
    /// [`Node::handle_disconnected`](super::Node::handle_disconnected).
    Close {
        /// The peer.
        peer: MachineId,
        /// Why (for logs and counters).
        reason: CloseReason,
    },
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection completed its `Hello` exchange.
    PeerUp {
        /// The peer machine (proven by the transport).
        peer: MachineId,
        /// The agent it says it runs.
        agent: AgentId,
    },
    /// A connection that had completed its `Hello` went away.
    PeerDown {
        /// The peer machine.
        peer: MachineId,
    },
    /// A pub/sub message for a subscribed topic, verified and delivered once.
    Message(Delivery),
    /// An agent entered the discovery cache for the first time.
    AgentDiscovered {
        /// The agent.
        agent_id: AgentId,
    },
    /// A `find_agent` / `find_agent_rendezvous` query ended.
    QueryFinished {
        /// The query handle returned when it started.
        query: QueryId,
        /// What was sought.
        target: QueryTarget,
        /// The answer, or `None` if nothing live was found.
        found: Option<Found>,
    },
    /// A machine entered the membership active view.
    NeighborUp {
        /// The neighbour.
        peer: MachineId,
    },
    /// A neighbour did not answer its probe, directly or through others: SWIM suspects it.
    /// It is declared dead ([`Event::NeighborDown`] with [`DownReason::Dead`]) unless it shows
    /// a sign of life within `suspect_timeout`.
    NeighborSuspected {
        /// The neighbour.
        peer: MachineId,
    },
    /// A machine left the membership active view.
    NeighborDown {
        /// The neighbour.
        peer: MachineId,
        /// Why.
        reason: DownReason,
    },
    /// A direct message for this agent, verified and delivered once.
    DirectMessage(DirectMessage),
    /// A direct message we sent was acknowledged by its recipient.
    DirectReceipt(DirectReceipt),
    /// An agent's beacon reached this node: it is online (and was not).
    AgentOnline {
        /// The agent.
        agent_id: AgentId,
        /// Its machine.
        machine_id: MachineId,
        /// Where it says it can be reached.
        addresses: Vec<SocketAddr>,
        /// Whether this node has a connection to it.
        reachable: bool,
    },
    /// An agent left this node's online set, and why.
    AgentOffline {
        /// The agent.
        agent_id: AgentId,
        /// Failed, left, or out of view.
        reason: crate::presence::OfflineReason,
    },
    /// A friend-of-a-friend query ended.
    PresenceQueryFinished {
        /// The handle `discover_agents_foaf` / `discover_agent_by_id` returned.
        query: crate::presence::PresenceQueryId,
        /// The live records gathered (for a find, the agent's, if found).
        agents: Vec<crate::presence::OnlineAgent>,
    },
    /// The contact store changed ([`Node::change_trust`](super::Node::change_trust)): a
    /// driver saves [`Node::trust_state`](super::Node::trust_state).
    TrustChanged {
        /// The agent whose record changed.
        agent_id: AgentId,
    },
    /// A replicated store changed (a local write, or others' changes applied): a driver
    /// re-reads it and saves [`Node::store_snapshot`](super::Node::store_snapshot).
    StoreChanged {
        /// The store's topic.
        topic: TopicId,
    },
    /// A direct message we sent will not be delivered.
    DirectFailed {
        /// The request id returned by `send_direct`.
        request_id: RequestId,
        /// The recipient.
        recipient: AgentId,
        /// Why.
        reason: DirectFailure,
    },
}

/// A pub/sub message delivered to this node's subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: TopicId,
    /// The message id (`BLAKE3` of the signed body).
    pub id: MessageId,
    /// The publishing agent, proven by its signature.
    pub author: AgentId,
    /// Hops the message travelled to reach us (1 = straight from the publisher).
    pub hops: u8,
    /// The machine it arrived from.
    pub via: MachineId,
    /// The author's trust level at delivery (a blocked author's messages are not delivered).
    pub trust_level: crate::trust::TrustLevel,
    /// When the publisher published it (its clock, unix milliseconds).
    pub published_at_ms: u64,
    /// The application payload.
    pub payload: Bytes,
}
