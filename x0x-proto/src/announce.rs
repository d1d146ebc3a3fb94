//! Announcements: who an agent is and where it can be reached, signed by the key it speaks for.
//!
//! Three signed records travel on the global announcement topic ([`ANNOUNCE_TOPIC`]):
//!
//! | record | signed by | says |
//! |---|---|---|
//! | [`IdentityAnnouncement`] | agent key | "agent A runs on machine M, reachable at these addresses" (+ user, with consent) |
//! | [`MachineAnnouncement`] | machine key | "machine M (this public key) hosts agent A, reachable at these addresses" |
//! | [`UserAnnouncement`] | user key | "user U owns agent A" (only with explicit consent) |
//!
//! Each is a [`crate::wire::Signed`] with the signer's public key attached, so it verifies on
//! its own wherever it travels. Splitting the agent and machine statements keeps each under
//! 6 KB (one key and one signature each), where x0x's identity announcement carries two keys
//! and two signatures (~16 KB on the wire). The agent ↔ machine binding holds when both
//! statements name each other.
//!
//! A [`KemAnnouncement`] (agent-signed, sent without the key attached) publishes the agent's
//! ML-KEM-768 key on [`KEM_TOPIC`], so senders can seal direct messages to it.
//!
//! A [`RendezvousRecord`] (agent-signed, with an expiry) is published on [`RENDEZVOUS_TOPIC`]
//! by `advertise_identity`; an expired record is never returned.
//!
//! Shards: `shard_of(id)` maps an id to one of 65 536 shards (as x0x's rendezvous shards) and
//! [`identity_shard_topic`] names its topic. Every node carries the global topics; the shard
//! topics exist so that deployments too large for a global topic can subscribe by shard.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::{AgentCertificate, AgentId, MachineId};
use crate::wire::{self, TopicId};

/// Topic carrying identity, machine and user announcements.
pub const ANNOUNCE_TOPIC: &str = "x0x-rs/announce/v1";
/// Topic carrying agents' ML-KEM-768 key announcements ([`KemAnnouncement`]).
pub const KEM_TOPIC: &str = "x0x-rs/kem/v1";
/// Topic carrying rendezvous records.
pub const RENDEZVOUS_TOPIC: &str = "x0x-rs/rendezvous/v1";

/// Most addresses an announcement may list.
pub const MAX_ANNOUNCED_ADDRS: usize = wire::MAX_ADDRS_PER_PEER;

/// Announcement and discovery configuration. Each field says its default and where it comes
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AnnounceConfig {
    /// Interval between re-announcements (heartbeats). Default 300 s: x0x's identity
    /// heartbeat, which it lengthened from 60 s when shorter ones saturated its fleet.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// An agent whose newest announcement is older than this is no longer listed. Default
    /// 900 s, three missed heartbeats (x0x's identity TTL).
    #[serde(with = "humantime_serde")]
    pub identity_ttl: Duration,
    /// Announcements stamped further than this in the future are refused. Default 30 s (x0x).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Cap of the agent cache (least recently announced evicted first). Default 4096.
    pub max_agents: usize,
    /// Cap of the machine cache. Default 4096.
    pub max_machines: usize,
    /// Cap of the user cache. Default 1024.
    pub max_users: usize,
    /// Cap of the rendezvous record cache (soonest-expiring evicted first). Default 4096.
    pub max_rendezvous: usize,
    /// Most records sent to a neighbour that asks to catch up. Default 4096.
    pub sync_max_records: usize,
    /// The expanding rings of a `find_agent` query. Default 2 hops for 300 ms, then 8 hops for
    /// 800 ms: the neighbourhood first, then every node of a large overlay of degree 5,
    /// including the sought agent, which always answers for itself (x0x instead waits twice
    /// 5 s for a re-announcement).
    pub query_rings: Vec<QueryRing>,
    /// Most queries this node forwards or originates at once (older forgotten). Default 4096.
    pub max_tracked_queries: usize,
}

/// One ring of a `find_agent` query: how far it reaches and how long it waits for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRing {
    /// Hops the query travels.
    pub ttl: u8,
    /// How long to wait for an answer before the next ring.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(300),
            identity_ttl: Duration::from_secs(900),
            max_clock_skew: Duration::from_secs(30),
            max_agents: 4096,
            max_machines: 4096,
            max_users: 1024,
            max_rendezvous: 4096,
            sync_max_records: 4096,
            query_rings: vec![
                QueryRing {
                    ttl: 2,
                    wait: Duration::from_millis(300),
                },
                QueryRing {
                    ttl: 8,
                    wait: Duration::from_millis(800),
                },
            ],
            max_tracked_queries: 4096,
        }
    }
}

/// Reachability hints an agent may add to its announcement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatHints {
    /// Whether unsolicited inbound connections reach this node.
    pub can_receive_direct: Option<bool>,
    /// Free-form NAT classification (at most 32 bytes are kept).
    pub nat_type: Option<String>,
}

/// The signed body of an identity announcement ([`crate::identity::Domain::IdentityAnnouncement`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityAnnouncement {
    /// The machine the agent runs on.
    pub machine_id: MachineId,
    /// Where the agent can be reached.
    pub addresses: Vec<SocketAddr>,
    /// The announcing node's clock, unix seconds.
    pub announced_at: u64,
    /// Optional reachability hints.
    pub nat: Option<NatHints>,
    /// The user binding, present only when the agent's human consented to disclose it.
    pub user: Option<AgentCertificate>,
}

/// The signed body of a KEM key announcement ([`crate::identity::Domain::KemAnnouncement`]),
/// published by an agent with its identity announcement, **without** the agent's public key
/// attached: receivers verify it with the key from the identity announcement. Keeping it a
/// separate record keeps each announcement frame under 6 KB (ML-DSA key 1952 B + signature
/// 3309 B + KEM key 1184 B would not fit together).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KemAnnouncement {
    /// The agent's ML-KEM-768 encapsulation key.
    pub kem_key: crate::kem::KemPublicKey,
    /// Unix seconds.
    pub announced_at: u64,
}

/// The signed body of a machine announcement ([`crate::identity::Domain::MachineAnnouncement`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineAnnouncement {
    /// The agent hosted on this machine.
    pub agent_id: AgentId,
    /// Where the machine can be reached.
    pub addresses: Vec<SocketAddr>,
    /// Unix seconds.
    pub announced_at: u64,
}

/// The signed body of a user announcement ([`crate::identity::Domain::UserAnnouncement`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAnnouncement {
    /// The agents this user vouches for (each certificate names this user).
    pub agents: Vec<AgentId>,
    /// Unix seconds.
    pub announced_at: u64,
}

/// The signed body of a rendezvous record ([`crate::identity::Domain::RendezvousRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendezvousRecord {
    /// The machine the agent runs on.
    pub machine_id: MachineId,
    /// Where the agent can be reached.
    pub addresses: Vec<SocketAddr>,
    /// When the record was made, unix milliseconds.
    pub issued_at_ms: u64,
    /// After this instant (unix milliseconds) the record is void and never returned.
    pub expires_at_ms: u64,
}

/// Why `announce_identity` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// `include_user` without `human_consent`.
    #[error("disclosing the user identity needs explicit human consent")]
    ConsentRequired,
    /// `include_user` but this node has no user key and certificate.
    #[error("no user key / agent certificate to disclose")]
    NoUserIdentity,
}

/// Why an announcement, record or pub/sub message was refused (counted in
/// [`crate::discovery::RejectCounts`]; the message is the counter's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// No key attached and none cached.
    #[error("unknown_key")]
    UnknownKey,
    /// The attached key does not hash to the signer id.
    #[error("key_mismatch")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("bad_signature")]
    BadSignature,
    /// The signed body does not decode.
    #[error("malformed")]
    Malformed,
    /// Signed by the wrong role for its kind.
    #[error("wrong_signer")]
    WrongSigner,
    /// Stamped too far in the future.
    #[error("future_timestamp")]
    FutureTimestamp,
    /// Older than the TTL or past its expiry.
    #[error("stale")]
    Stale,
    /// A user id claimed without a valid certificate for this agent.
    #[error("bad_certificate")]
    BadCertificate,
    /// More addresses than allowed.
    #[error("too_many_addresses")]
    TooManyAddresses,
    /// Not newer than what is cached.
    #[error("not_newer")]
    NotNewer,
    /// The agent is blocked (or revoked) by this node's contacts ([`crate::trust`]).
    #[error("blocked")]
    Blocked,
    /// The agent is pinned to other machines than the one it announced.
    #[error("machine_mismatch")]
    MachineMismatch,
}

/// The shard (0..65 536) of a 32-byte id: `u16` from the first bytes of
/// `BLAKE3.derive_key("x0x-rs shard v1", id)`.
pub fn shard_of(id: &[u8; 32]) -> u16 {
    let h = blake3::derive_key("x0x-rs shard v1", id);
    u16::from_le_bytes([h[0], h[1]])
}

/// The identity shard topic of an agent.
pub fn identity_shard_topic(agent: &AgentId) -> TopicId {
    TopicId::from_name(&format!(
        "x0x-rs/announce/shard/{}",
        shard_of(agent.as_bytes())
    ))
}

/// Whether an address may be announced to the whole network (not loopback, private,
/// link-local, CGNAT, documentation, unspecified, or unique-local).
pub fn is_global(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

/// The addresses to announce. When there is no bootstrap address, or every bootstrap address
/// is local (loopback, private, link-local…), local addresses are announced too, so a mesh on
/// 127.0.0.1 or a LAN discovers itself; otherwise only global ones (no dead LAN candidates in
/// a public network). At most [`MAX_ANNOUNCED_ADDRS`], unspecified addresses and port 0
/// dropped.
pub fn announceable_addrs(listen: &[SocketAddr], bootstrap: &[SocketAddr]) -> Vec<SocketAddr> {
    let local_scope = bootstrap.iter().all(|a| !is_global(a));
    listen
        .iter()
        .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
        .filter(|a| local_scope || is_global(a))
        .copied()
        .take(MAX_ANNOUNCED_ADDRS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_scope_follows_the_bootstrap_list() {
        let listen = [
            a("127.0.0.1:5000"),
            a("192.168.1.2:5000"),
            a("8.8.8.8:5000"),
            a("0.0.0.0:5000"),
        ];
        // Loopback-only bootstrap (or none): local addresses are announced.
        assert_eq!(
            announceable_addrs(&listen, &[a("127.0.0.1:9000")]),
            vec![
                a("127.0.0.1:5000"),
                a("192.168.1.2:5000"),
                a("8.8.8.8:5000")
            ]
        );
        assert_eq!(announceable_addrs(&listen, &[]).len(), 3);
        // A public bootstrap: only global addresses.
        assert_eq!(
            announceable_addrs(&listen, &[a("1.1.1.1:5483")]),
            vec![a("8.8.8.8:5000")]
        );
    }

    #[test]
    fn global_classification() {
        for s in [
            "10.0.0.1:1",
            "172.16.0.1:1",
            "100.64.0.1:1",
            "169.254.1.1:1",
            "[::1]:1",
            "[fe80::1]:1",
            "[fd00::1]:1",
            "8.8.8.8:0",
        ] {
            assert!(!is_global(&a(s)), "{s}");
        }
        for s in ["8.8.8.8:1", "[2001:4860::1]:1", "100.128.0.1:1"] {
            assert!(is_global(&a(s)), "{s}");
        }
    }

    #[test]
    fn shards_spread_and_are_stable() {
        let x = shard_of(&[1; 32]);
        assert_eq!(x, shard_of(&[1; 32]));
        let distinct: std::collections::BTreeSet<u16> =
            (0u8..64).map(|i| shard_of(&[i; 32])).collect();
        assert!(distinct.len() > 60);
    }
}
