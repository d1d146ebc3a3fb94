//! Discovery frames: catch-up sync (SYNCREQUEST, SYNCRECORDS) and expanding-ring queries
//! (QUERY, QUERYHIT), each carrying signed [`Record`]s.

use serde::{Deserialize, Serialize};

use super::{MAX_RECORDS_PER_FRAME, MAX_RECORDS_PER_HIT, Signed, bounded_vec};
use crate::identity::AgentId;

/// Discovery: ask a neighbour for its live announcement cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Most records wanted.
    pub max_records: u32,
}

/// What kind of signed record a [`Record`] holds. With the signer's role it fixes the body
/// type and the signature domain: an announcement signed by an agent is an identity
/// announcement, by a machine a machine announcement, by a user a user announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    /// An identity, machine or user announcement (by signer role).
    Announcement,
    /// A rendezvous record (agent-signed).
    Rendezvous,
    /// An agent's ML-KEM-768 key announcement (agent-signed, key not attached).
    KemKey,
}

/// A signed discovery record outside a GOSSIP frame (where the topic says its kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What it is.
    pub kind: RecordKind,
    /// The signed record.
    pub signed: Signed,
}

/// Discovery: signed announcements (identity, machine, user) or rendezvous records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecords {
    /// The records, each verifiable on its own.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_RECORDS_PER_FRAME }>")]
    pub records: Vec<Record>,
}

/// What a query looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QueryTarget {
    /// The identity announcement of an agent.
    Agent(AgentId),
    /// A live rendezvous record of an agent.
    Rendezvous(AgentId),
}

/// Discovery: an expanding-ring query, answered by any node holding a matching record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Query id, random at the origin; hits carry it back along the reverse path.
    pub id: u64,
    /// What is sought.
    pub target: QueryTarget,
    /// Remaining hops.
    pub ttl: u8,
}

/// Discovery: the answer to a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryHit {
    /// The query id.
    pub id: u64,
    /// Matching signed records.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_RECORDS_PER_HIT }>")]
    pub records: Vec<Record>,
}
