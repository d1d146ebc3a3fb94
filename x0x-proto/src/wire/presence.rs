//! Presence frames: the beacon a node sends each connected peer (BEACON), and the
//! friend-of-a-friend query and its answer (PRESENCEQUERY, PRESENCEANSWER).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{MAX_ADDRS_PER_PEER, Signed, bounded_vec};
use crate::identity::{AgentId, MachineId};

/// Most records one presence answer carries.
pub const MAX_PRESENCE_RECORDS: usize = 16;

/// The signed body of a beacon: who runs here, where it can be reached, for how long the
/// record holds. Signed by the machine key (domain `x0x-rs/presence-beacon/v1`); a receiver
/// keeps it only from the connection that machine authenticated, or verified in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    /// The agent on the machine.
    pub agent: AgentId,
    /// The machine (the signer).
    pub machine: MachineId,
    /// Addresses others can reach it at (never unspecified ones).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addresses: Vec<SocketAddr>,
    /// When the node started, unix seconds: a newer `since` is a restart.
    pub since: u64,
    /// When the record stops holding, unix seconds (three beacon intervals after it was made).
    pub expires: u64,
    /// Monotonic per `since`: a receiver keeps only a higher one.
    pub seq: u64,
}

/// Presence: this machine's signed record, sent to a connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// A [`PresenceRecord`] signed by the sending machine.
    pub record: Signed,
}

/// Presence: who is online near you? (friend of a friend)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceQuery {
    /// Query id, random at the origin; answers carry it back along the reverse path.
    pub id: u64,
    /// Hops left after this one (0: answer, do not forward).
    pub ttl: u8,
    /// One agent sought (answers carry only its record), or every live record.
    pub target: Option<AgentId>,
}

/// Presence: the live records a node holds, for a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceAnswer {
    /// The query answered.
    pub id: u64,
    /// Signed [`PresenceRecord`]s, each verifiable on its own.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_PRESENCE_RECORDS }>")]
    pub records: Vec<Signed>,
}
