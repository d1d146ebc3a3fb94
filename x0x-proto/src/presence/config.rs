//! [`PresenceConfig`]: beacon period, the failure detector, friend-of-a-friend queries and
//! the caps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Presence settings. Defaults follow x0x's where it has one (beacon every 30 s, record life
/// three beacons, FOAF fan-out 3, TTL 2, 5 s, rate limit burst 3 refilled at 0.2/s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PresenceConfig {
    /// Send beacons at all. Default true (the simulator turns it off outside presence
    /// scenarios: beacons would only shift its network model's random stream).
    pub enabled: bool,
    /// Beacon period. Default 30 s (x0x's).
    #[serde(with = "humantime_serde")]
    pub beacon_interval: Duration,
    /// A record holds this many beacon periods after it was made. Default 3 (x0x's).
    pub record_lifetime_intervals: u32,
    /// φ above which a connected peer whose beacons stopped is declared failed. Default 8:
    /// about 5.6 standard deviations past the mean interval (the φ paper and Akka use 8).
    pub phi_threshold: u32,
    /// Floor of the interval's standard deviation: with perfectly regular beacons a late one
    /// (a retransmission, a busy host) still has slack. Default 3 s (a tenth of the period).
    #[serde(with = "humantime_serde")]
    pub phi_min_std: Duration,
    /// Inter-arrival times kept per peer. Default 16.
    pub phi_history: usize,
    /// Most records held (agents); at the cap the record expiring first is dropped and
    /// counted. Default 4096.
    pub max_records: usize,
    /// Peers a browsing FOAF query is sent to, and forwarded to at each hop. Default 3
    /// (x0x's).
    pub foaf_fanout: usize,
    /// Default TTL of a FOAF query. Default 2 (x0x's).
    pub foaf_default_ttl: u8,
    /// Largest TTL honoured; more is clamped and counted. Default 4.
    pub foaf_max_ttl: u8,
    /// Default time a FOAF query gathers answers. Default 5 s (x0x's).
    #[serde(with = "humantime_serde")]
    pub foaf_timeout: Duration,
    /// A browsing query ends early after this many answers. Default 3 (x0x's).
    pub foaf_enough_answers: usize,
    /// Most of this node's own queries at once; one more is refused. Default 64.
    pub max_pending_queries: usize,
    /// Query ids remembered (dedup and the way answers go back). Default 4096 (oldest
    /// forgotten first, counted).
    pub seen_queries: usize,
    /// Beacons a peer may send in a burst. Default 3 (x0x's).
    pub rate_burst: u32,
    /// One more beacon allowed per this much time (a refill rate). Default 5 s: 0.2 per
    /// second, x0x's.
    #[serde(with = "humantime_serde")]
    pub rate_refill: Duration,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            beacon_interval: Duration::from_secs(30),
            record_lifetime_intervals: 3,
            phi_threshold: 8,
            phi_min_std: Duration::from_secs(3),
            phi_history: 16,
            max_records: 4096,
            foaf_fanout: 3,
            foaf_default_ttl: 2,
            foaf_max_ttl: 4,
            foaf_timeout: Duration::from_secs(5),
            foaf_enough_answers: 3,
            max_pending_queries: 64,
            seen_queries: 4096,
            rate_burst: 3,
            rate_refill: Duration::from_secs(5),
        }
    }
}

impl PresenceConfig {
    /// How long a record holds.
    pub fn record_lifetime(&self) -> Duration {
        self.beacon_interval * self.record_lifetime_intervals.max(1)
    }
}
