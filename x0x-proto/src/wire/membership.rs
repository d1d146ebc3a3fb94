//! Membership frames: HyParView (JOIN … SHUFFLEREPLY) and SWIM (PING … PINGREQACK).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{MAX_ADDRS_PER_PEER, MAX_PEERS_PER_FRAME, PeerAddr, bounded_vec};
use crate::identity::MachineId;

/// HyParView JOIN: the sender wants to enter the overlay through the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Where the joiner can be dialled.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}

/// HyParView FORWARDJOIN: a join on its random walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardJoin {
    /// The node that joined.
    pub joiner: PeerAddr,
    /// Remaining walk length.
    pub ttl: u8,
}

/// HyParView NEIGHBOR: ask the receiver to add the sender to its active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    /// High priority: the sender has no active neighbour left and must be accepted.
    pub high_priority: bool,
}

/// HyParView NEIGHBOR reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborReply {
    /// Whether the receiver added the sender to its active view.
    pub accepted: bool,
}

/// HyParView DISCONNECT: the sender dropped the receiver from its active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// The sender stays online (keep it in the passive view) or is leaving.
    pub alive: bool,
}

/// HyParView SHUFFLE: a sample of the origin's views on a random walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shuffle {
    /// The node that started the shuffle (the reply goes to it).
    pub origin: PeerAddr,
    /// The sample.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_PEERS_PER_FRAME }>")]
    pub peers: Vec<PeerAddr>,
    /// Remaining walk length.
    pub ttl: u8,
}

/// HyParView SHUFFLEREPLY: a sample of the replier's passive view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleReply {
    /// The sample.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_PEERS_PER_FRAME }>")]
    pub peers: Vec<PeerAddr>,
}

/// SWIM PING / ACK: a probe and its answer carry the same sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Probe sequence number, echoed by the ack.
    pub seq: u64,
}

/// SWIM ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The sequence number of the answered probe.
    pub seq: u64,
}

/// SWIM PING-REQ: probe `target` on the sender's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReq {
    /// The suspect.
    pub target: MachineId,
    /// The requester's sequence number, echoed in the answer.
    pub seq: u64,
}

/// SWIM indirect-probe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReqAck {
    /// The suspect that was probed.
    pub target: MachineId,
    /// The requester's sequence number.
    pub seq: u64,
    /// Whether the target answered.
    pub alive: bool,
}
