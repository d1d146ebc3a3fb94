//! The membership layer's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Membership configuration. Each field says its default and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MembershipConfig {
    /// Active view capacity. Default 5: fanout 4 + 1 (HyParView paper, §5).
    pub active_view_capacity: usize,
    /// Passive view capacity. Default 30, the paper's experimental setting.
    pub passive_view_capacity: usize,
    /// Active random walk length for FORWARDJOIN. Default 6 (paper).
    pub active_random_walk_length: u8,
    /// Passive random walk length: at this remaining TTL the joiner enters the passive view.
    /// Default 3 (paper).
    pub passive_random_walk_length: u8,
    /// Random walk length of a SHUFFLE. Default 6, as the active walk (iroh-gossip's choice).
    pub shuffle_random_walk_length: u8,
    /// Active-view entries sent in a SHUFFLE (ka). Default 3 (paper).
    pub shuffle_active_count: usize,
    /// Passive-view entries sent in a SHUFFLE (kp). Default 4 (paper).
    pub shuffle_passive_count: usize,
    /// Interval between SHUFFLEs and graveyard re-contacts. Default 10 s: the paper leaves it
    /// open (iroh-gossip 60 s, x0x 30 s); shorter mixes a young overlay faster and re-merges
    /// a healed partition sooner, at one small walk per node per interval.
    #[serde(with = "humantime_serde")]
    pub shuffle_interval: Duration,
    /// SWIM protocol period: one neighbour is probed per period. Default 1 s (the SWIM
    /// paper's experiments; x0x too).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Time to wait for a direct ACK before asking others to probe, and then for their
    /// answers. Default 400 ms: above the round trip of a wide-area link, with room for
    /// queueing.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// How many neighbours are asked to probe indirectly (SWIM's k). Default 3 (x0x: 3).
    pub indirect_probes: usize,
    /// Time a suspect has to show a sign of life before it is declared dead. Default 3 s (x0x).
    #[serde(with = "humantime_serde")]
    pub suspect_timeout: Duration,
    /// How long a connection that is not (or no longer) an active neighbour is kept open so
    /// queued replies can flush. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Most remembered dead neighbours for partition re-merge. Default 16.
    pub graveyard_capacity: usize,
    /// How long a dead neighbour is remembered. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub graveyard_retention: Duration,
    /// Interval of the active-view refill check. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Longest wait between refill attempts of an active view that is at least half full and
    /// keeps being refused. Default 16 s. A deviation from the paper, which asks the next
    /// passive peer at once after a refusal (§4.3): a node one short of a full view asks peers
    /// that are mostly full themselves, and without a backoff it chains through its passive
    /// view on every maintenance tick. A view under half full still retries at once.
    #[serde(with = "humantime_serde")]
    pub refill_backoff_max: Duration,
    /// With no neighbour at all, the node dials its dead neighbours, a passive peer and a
    /// bootstrap address again, first after a maintenance interval, then with a doubling,
    /// jittered wait up to this. Default 5 s: a node whose network comes back rejoins within
    /// seconds, never stays at zero peers (x0x's users saw one sit there for 14 hours).
    #[serde(with = "humantime_serde")]
    pub rejoin_backoff_max: Duration,
    /// The neighbours longest in the active view that a newcomer (a JOIN, a high-priority
    /// NEIGHBOR request) never evicts. Default 2. A deviation from the paper, which drops a
    /// random neighbour (§4.3): a stream of joins — an eclipse attack, a Sybil flood — could
    /// then replace the whole view. Kept below `active_view_capacity`, so a newcomer always
    /// finds a slot and the overlay keeps changing; only the oldest links are pinned. Long
    /// standing is what an attacker cannot fake quickly (Sybil-resistant overlays use the
    /// same rule: Bitcoin keeps its longest-connected peers from eviction).
    pub protected_neighbors: usize,
    /// JOINs a node accepts per `join_window` (each adds the joiner and sends it on four
    /// random walks, each ending in an eviction somewhere). Default 8 per 10 s. Past it a
    /// JOIN (from a node not already a neighbour) is refused with a DISCONNECT: the joiner
    /// keeps us in its passive view and comes back by NEIGHBOR request (high priority while
    /// it has no other neighbour), which needs no walks and evicts no protected neighbour. A deviation from the paper, which accepts every JOIN (§4.2): a flood of joins
    /// through one node (10 000 Sybils in 10 s) would otherwise be spread across the
    /// overlay, evicting honest neighbours everywhere. Honest joins come far slower: in a
    /// 10 000-node warm-up a node takes about ten in all. Evictions at the end of a walk or
    /// for a high-priority request are not budgeted (budgeting them split the overlay during
    /// warm-up); protection bounds them instead.
    pub join_budget: u32,
    /// The window of `join_budget`. Default 10 s (the shuffle interval).
    #[serde(with = "humantime_serde")]
    pub join_window: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            active_view_capacity: 5,
            passive_view_capacity: 30,
            active_random_walk_length: 6,
            passive_random_walk_length: 3,
            shuffle_random_walk_length: 6,
            shuffle_active_count: 3,
            shuffle_passive_count: 4,
            shuffle_interval: Duration::from_secs(10),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(400),
            indirect_probes: 3,
            suspect_timeout: Duration::from_secs(3),
            linger: Duration::from_secs(2),
            graveyard_capacity: 16,
            graveyard_retention: Duration::from_secs(600),
            maintenance_interval: Duration::from_secs(1),
            refill_backoff_max: Duration::from_secs(16),
            rejoin_backoff_max: Duration::from_secs(5),
            protected_neighbors: 2,
            join_budget: 8,
            join_window: Duration::from_secs(10),
        }
    }
}
