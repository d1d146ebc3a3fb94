//! What an agent knows of others: the peers it is connected to ([`PeerInfo`]) and the
//! agents it learned from announcements ([`DiscoveredAgent`]).

use std::net::SocketAddr;

use x0x_proto::identity::UserId;
use x0x_proto::{AgentId, MachineId};

/// An agent learned from an identity announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// The machine it runs on.
    pub machine_id: MachineId,
    /// Its user, when it announced one with consent.
    pub user_id: Option<UserId>,
    /// When it announced, unix seconds.
    pub announced_at: u64,
    /// When this agent last heard an announcement of it, unix seconds.
    pub last_seen: u64,
    /// The machine's ML-DSA-65 public key (1952 bytes).
    pub machine_public_key: Vec<u8>,
    /// Where it can be reached.
    pub addresses: Vec<SocketAddr>,
    /// Its ML-KEM-768 key for sealed direct messages (1184 bytes), once announced.
    pub kem_public_key: Option<Vec<u8>>,
}

impl DiscoveredAgent {
    pub(crate) fn from_proto(a: &x0x_proto::discovery::DiscoveredAgent) -> Self {
        Self {
            agent_id: a.agent_id,
            machine_id: a.machine_id,
            user_id: a.user_id,
            announced_at: a.announced_at,
            last_seen: a.last_seen.as_secs(),
            machine_public_key: a
                .machine_public_key
                .as_ref()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default(),
            addresses: a.addresses.clone(),
            kem_public_key: a.kem_public_key.as_ref().map(|k| k.as_bytes().to_vec()),
        }
    }
}

/// A connected peer, as returned by [`Agent::peers`](crate::Agent::peers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer machine (proven by the TLS handshake).
    pub machine_id: MachineId,
    /// The agent it said it runs in its `Hello`.
    pub agent_id: Option<AgentId>,
    /// The connection's remote address.
    pub addr: Option<SocketAddr>,
    /// Whether we dialled (`Some(true)`) or it did.
    pub outbound: Option<bool>,
    /// The key-exchange group of the connection's handshake (`X25519MLKEM768`).
    pub key_exchange: Option<String>,
}
