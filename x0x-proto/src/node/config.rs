//! The node's [`Config`] and its validation.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::announce::AnnounceConfig;
use crate::broadcast::BroadcastConfig;
use crate::direct::DirectConfig;
use crate::membership::MembershipConfig;

/// Node configuration. Each field says its default and why; the layers' settings are nested
/// under their names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Addresses to dial at start-up to enter the network. Default: none.
    pub bootstrap: Vec<SocketAddr>,
    /// Addresses this node can be reached at, told to peers in `Hello`. Default: none (the
    /// driver fills in its bound address).
    pub listen_addrs: Vec<SocketAddr>,
    /// Most simultaneous connections; one more is closed at once. Default 64: the active view
    /// (5), the transient connections of shuffles and joins, and room for direct messages.
    pub max_connections: usize,
    /// A connection that has not sent its `Hello` within this time is closed. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// Interval of the keepalive ping on an idle connection. Default 15 s: half of a typical
    /// QUIC idle timeout of 30 s (x0x uses the same pair).
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// Cap on queued outgoing frames not yet polled; more are dropped and counted.
    /// Default 65 536 (a driver drains after every input, so this is a safety net).
    pub max_queued_transmits: usize,
    /// Cap on queued events not yet polled; more are dropped and counted. Default 65 536.
    pub max_queued_events: usize,
    /// Malformed or oversized frames tolerated from one connection before it is closed.
    /// Default 0: the first one closes it (an honest peer never sends one).
    pub max_frame_errors: u32,
    /// Largest pub/sub payload [`Node::publish`](super::Node::publish) accepts. Default 64 KiB:
    /// what fits a `Gossip` frame with its signature and key with room to spare.
    pub max_payload_len: usize,
    /// Accept simulation stand-in signatures ([`crate::identity::stand_in`]). Default false;
    /// only the simulator sets it.
    #[cfg(feature = "stand-in-crypto")]
    pub allow_stand_in_signatures: bool,
    /// Keep a received message's body and signature as slices of the frame buffer given to
    /// [`Node::handle_frame`](super::Node::handle_frame)
    /// ([`Frame::decode_shared`](crate::wire::Frame::decode_shared)) instead of copying them.
    /// Default false: on a real transport each frame is its own buffer, and a slice would keep the
    /// frame's copy of the signer's key alive with every cached message. A simulator that hands one
    /// sent frame to every receiver turns it on, so the receivers share one buffer.
    pub share_frames: bool,
    /// Membership (HyParView + SWIM) settings.
    pub membership: MembershipConfig,
    /// Broadcast (PlumTree) settings.
    pub broadcast: BroadcastConfig,
    /// Most agent public keys kept decoded for verification. Default 4096 (oldest evicted).
    pub key_cache_capacity: usize,
    /// Most verified batch roots remembered ([`wire::BatchProof`](crate::wire::BatchProof)), so the
    /// members of a batch after the first verify by hashing alone. Default 1024 (oldest evicted): a
    /// few seconds of batches from a few busy publishers.
    pub batch_cache_capacity: usize,
    /// How long a topic this node joined only to publish on (the application does not
    /// subscribe to it) stays joined after the last publish. Default 10 min: a publisher has to
    /// carry a topic to have a place in its tree, and a periodic publisher should not rejoin
    /// every time.
    #[serde(with = "humantime_serde")]
    pub publish_carry: Duration,
    /// Announcement, heartbeat and discovery settings.
    pub announce: AnnounceConfig,
    /// Direct-message settings.
    pub direct: DirectConfig,
    /// Contact store caps.
    pub trust: crate::trust::TrustConfig,
    /// Presence: beacons, failure detection, FOAF queries.
    pub presence: crate::presence::PresenceConfig,
    /// NAT traversal: address discovery and coordinated dials.
    pub nat: crate::nat::NatConfig,
    /// The cache of addresses to (re)join through.
    pub peer_cache: crate::peer_cache::PeerCacheConfig,
    /// Replicated stores and task lists: caps and anti-entropy.
    pub collab: crate::collab::CollabConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            listen_addrs: Vec::new(),
            max_connections: 64,
            hello_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            max_queued_transmits: 65_536,
            max_queued_events: 65_536,
            max_frame_errors: 0,
            max_payload_len: 64 * 1024,
            #[cfg(feature = "stand-in-crypto")]
            allow_stand_in_signatures: false,
            share_frames: false,
            membership: MembershipConfig::default(),
            broadcast: BroadcastConfig::default(),
            key_cache_capacity: 4096,
            batch_cache_capacity: 1024,
            publish_carry: Duration::from_secs(600),
            announce: AnnounceConfig::default(),
            direct: DirectConfig::default(),
            trust: crate::trust::TrustConfig::default(),
            presence: crate::presence::PresenceConfig::default(),
            nat: crate::nat::NatConfig::default(),
            peer_cache: crate::peer_cache::PeerCacheConfig::default(),
            collab: crate::collab::CollabConfig::default(),
        }
    }
}

/// A configuration the node refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A cap or interval that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Settings that contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(&'static str),
}

impl Config {
    /// Checks the caps and intervals [`Node::new`](super::Node::new) checks, so a driver or a
    /// simulator can refuse a configuration before it builds a node.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("max_connections", self.max_connections == 0),
            ("hello_timeout", self.hello_timeout.is_zero()),
            ("keepalive_interval", self.keepalive_interval.is_zero()),
            ("max_queued_transmits", self.max_queued_transmits == 0),
            ("max_queued_events", self.max_queued_events == 0),
            (
                "membership.active_view_capacity",
                self.membership.active_view_capacity == 0,
            ),
            (
                "membership.probe_interval",
                self.membership.probe_interval.is_zero(),
            ),
            (
                "membership.shuffle_interval",
                self.membership.shuffle_interval.is_zero(),
            ),
            (
                "broadcast.cache_capacity",
                self.broadcast.cache_capacity == 0,
            ),
            ("broadcast.seen_capacity", self.broadcast.seen_capacity == 0),
            ("key_cache_capacity", self.key_cache_capacity == 0),
            ("batch_cache_capacity", self.batch_cache_capacity == 0),
            ("publish_carry", self.publish_carry.is_zero()),
            (
                "announce.heartbeat_interval",
                self.announce.heartbeat_interval.is_zero(),
            ),
            ("announce.max_agents", self.announce.max_agents == 0),
            ("announce.max_machines", self.announce.max_machines == 0),
            ("announce.max_users", self.announce.max_users == 0),
            ("announce.max_rendezvous", self.announce.max_rendezvous == 0),
            (
                "announce.max_tracked_queries",
                self.announce.max_tracked_queries == 0,
            ),
            ("announce.query_rings", self.announce.query_rings.is_empty()),
            ("collab.sync_interval", self.collab.sync_interval.is_zero()),
            ("collab.sync_round_bytes", self.collab.sync_round_bytes == 0),
            ("collab.max_pending", self.collab.max_pending == 0),
            ("direct.max_attempts", self.direct.max_attempts == 0),
            ("direct.dedup_capacity", self.direct.dedup_capacity == 0),
            ("direct.max_outstanding", self.direct.max_outstanding == 0),
            ("direct.max_rtt_entries", self.direct.max_rtt_entries == 0),
            (
                "direct.default_lifetime",
                self.direct.default_lifetime.is_zero(),
            ),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        let b = &self.broadcast;
        // A message must be refused as too old before its id can leave the dedup window, or
        // a replay after the window would be delivered again.
        if b.max_message_age + b.max_clock_skew >= b.seen_retention {
            return Err(ConfigError::Inconsistent(
                "broadcast.max_message_age + max_clock_skew must be below seen_retention",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::QueryRing;

    /// A scenario file sets the knobs it varies; every other field keeps its default, and a
    /// misspelt knob is refused rather than ignored.
    #[test]
    fn a_config_file_sets_its_knobs_and_keeps_every_other_default() {
        let text = r#"
            max_connections = 32
            [broadcast]
            graft_timeout = "50ms"
            [broadcast.first_push]
            fanout = 3
            [membership]
            probe_interval = "2s"
            [announce]
            query_rings = [{ ttl = 3, wait = "1s" }]
            [direct]
            max_attempts = 4
        "#;
        let config: Config = toml::from_str(text).unwrap();
        let mut want = Config {
            max_connections: 32,
            ..Config::default()
        };
        want.broadcast.graft_timeout = Duration::from_millis(50);
        want.broadcast.first_push.fanout = 3;
        want.membership.probe_interval = Duration::from_secs(2);
        want.announce.query_rings = vec![QueryRing {
            ttl: 3,
            wait: Duration::from_secs(1),
        }];
        want.direct.max_attempts = 4;
        assert_eq!(config, want);

        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
        let toml_text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<Config>(&toml_text).unwrap(), config);

        let one: BroadcastConfig =
            serde_json::from_str(r#"{ "prune_grace": "1s 500ms" }"#).unwrap();
        assert_eq!(one.prune_grace, Duration::from_millis(1500));
        assert_eq!(one.graft_timeout, BroadcastConfig::default().graft_timeout);

        assert!(toml::from_str::<Config>("[broadcast]\ngraft_timout = \"1s\"").is_err());
        assert!(toml::from_str::<Config>("[membership]\nprobe_interval = 5").is_err());
    }
}
