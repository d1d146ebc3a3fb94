//! Frames about the connection itself: [`Hello`], and [`PeerAddr`], how a machine is dialled.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{MAX_ADDRS_PER_PEER, bounded_vec};
use crate::identity::{AgentId, MachineId};

/// A machine and the addresses it can be dialled at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The machine.
    pub id: MachineId,
    /// Where to dial it (at most [`MAX_ADDRS_PER_PEER`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}

/// First frame on a connection, sent by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent running on the sending machine.
    pub agent: AgentId,
    /// Addresses the sender listens on (at most [`MAX_ADDRS_PER_PEER`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}
