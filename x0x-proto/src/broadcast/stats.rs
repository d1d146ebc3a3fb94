//! The broadcast layer's counters.

use serde::Serialize;

/// Counters of the broadcast layer, one per stage so that a loss can be located. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BroadcastStats {
    /// Messages published here.
    pub published: u64,
    /// GOSSIP frames received (new or not).
    pub gossip_received: u64,
    /// GOSSIP frames for an id already seen.
    pub duplicates: u64,
    /// Messages accepted (verified, first copy).
    pub accepted: u64,
    /// Messages handed to a local subscriber.
    pub delivered: u64,
    /// Messages not forwarded because they reached `max_hops`.
    pub hop_limited: u64,
    /// PRUNEs sent.
    pub prunes_sent: u64,
    /// GRAFTs sent (pulls and attachments to a parent).
    pub grafts_sent: u64,
    /// GRAFT requests we could not serve (message no longer cached).
    pub graft_misses: u64,
    /// Missing messages given up after every announcer was tried.
    pub graft_exhausted: u64,
    /// Moves to a parent closer to the root of a topic's tree.
    pub reparents: u64,
    /// Place changes announced to a topic's peers.
    pub place_updates: u64,
    /// What was dropped or forgotten, by reason.
    pub dropped: BroadcastDrops,
}

/// What the broadcast layer dropped or forgot, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BroadcastDrops {
    /// Subscriptions refused at `max_topics`.
    pub topic_cap: u64,
    /// Messages on a topic this node does not carry (the sender ignored its INTEREST): marked
    /// seen, not relayed.
    pub topic_not_carried: u64,
    /// IHAVEs from a peer that does not carry the topic with us.
    pub ihave_not_carried: u64,
    /// GRAFTs from a peer that does not carry the topic with us.
    pub graft_from_non_neighbor: u64,
    /// Announced ids not awaited because `max_missing` ids already were.
    pub missing_cap: u64,
    /// Messages evicted from the cache at `cache_capacity`.
    pub cache_evicted: u64,
    /// Ids the dedup window forgot at `seen_capacity`, before their retention (each raises
    /// its floor).
    pub seen_evicted: u64,
    /// Verified messages refused because they are stamped at or below the dedup window's
    /// floor: they may repeat an id it forgot during a flood.
    pub replay_floor: u64,
}
