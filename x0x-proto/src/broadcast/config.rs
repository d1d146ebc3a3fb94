//! The broadcast layer's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Broadcast configuration. Each field says its default and why; the protocol is described
/// in the [module documentation](crate::broadcast).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BroadcastConfig {
    /// Grace between the first IHAVE for a missing message and its GRAFT. Default 150 ms: the
    /// paper asks for a few round trips of slack so that the eager copy usually wins
    /// (iroh-gossip guesses 80 ms).
    #[serde(with = "humantime_serde")]
    pub graft_timeout: Duration,
    /// Wait before grafting from the next announcer when a GRAFT went unanswered. Default
    /// 100 ms, about one round trip (as the paper suggests).
    #[serde(with = "humantime_serde")]
    pub graft_retry: Duration,
    /// IHAVEs (and changed tree places) are batched and flushed at this interval. Default
    /// 20 ms: short next to the graft timeout, long enough to batch a burst.
    #[serde(with = "humantime_serde")]
    pub ihave_interval: Duration,
    /// Messages are not forwarded beyond this many hops, and no tree grows deeper. Default 32:
    /// far above the diameter of any overlay the membership layer builds.
    pub max_hops: u8,
    /// Messages kept to answer GRAFTs and catch-up digests. Default 4096, oldest evicted first.
    pub cache_capacity: usize,
    /// How long a message stays in the cache. Default 30 s (as iroh-gossip).
    #[serde(with = "humantime_serde")]
    pub cache_retention: Duration,
    /// Message ids remembered for deduplication. Default 65 536, oldest evicted first.
    pub seen_capacity: usize,
    /// How long an id is remembered. Default 120 s (iroh-gossip: 90 s).
    #[serde(with = "humantime_serde")]
    pub seen_retention: Duration,
    /// Pub/sub messages published longer ago than this are refused (`stale`), so a replay
    /// after its id left the dedup window is never delivered again. Default 60 s, twice the
    /// cache retention. `max_message_age + max_clock_skew` must stay below `seen_retention`
    /// (checked by `Node::new`).
    #[serde(with = "humantime_serde")]
    pub max_message_age: Duration,
    /// Pub/sub messages stamped further in the future than this are refused
    /// (`future_timestamp`). Default 30 s of clock difference between publisher and receiver.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Most recent ids sent in the catch-up digest to a new carrier of a topic. Default 128.
    pub catch_up_ids: usize,
    /// Most ids awaiting a GRAFT at once. Default 4096; more are refused and counted.
    pub max_missing: usize,
    /// Most topics carried at once. Default 1024.
    pub max_topics: usize,
    /// A subscribed topic with fewer carriers than this among its neighbours and links starts
    /// a topic walk to find more. Default 3: a random graph of minimum degree 3 over the
    /// subscribers is connected with high probability.
    pub topic_min_peers: usize,
    /// Most topic links per topic. Default 6.
    pub topic_max_links: usize,
    /// Length of a topic walk. Default 16 hops.
    pub topic_walk_length: u8,
    /// Interval of the topic-link check. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub topic_maintenance_interval: Duration,
    /// After a PRUNE on a link (sent or received), messages that arrive over it within this
    /// time do not make the sender eager again, and a PRUNE from a parent just attached to is
    /// taken as older than the attaching GRAFT. Default 1 s, several round trips: the messages
    /// in flight when the PRUNE left have arrived by then. A deviation from the paper, whose
    /// GOSSIP handler makes every sender of a new message eager (§3.5).
    #[serde(with = "humantime_serde")]
    pub prune_grace: Duration,
    /// How the first message of a topic is pushed, before the topic has a tree.
    pub first_push: FirstPushConfig,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            graft_timeout: Duration::from_millis(150),
            graft_retry: Duration::from_millis(100),
            ihave_interval: Duration::from_millis(20),
            max_hops: 32,
            cache_capacity: 4096,
            cache_retention: Duration::from_secs(30),
            seen_capacity: 65_536,
            seen_retention: Duration::from_secs(120),
            max_message_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(30),
            catch_up_ids: 128,
            max_missing: 4096,
            max_topics: 1024,
            topic_min_peers: 3,
            topic_max_links: 6,
            topic_walk_length: 16,
            topic_maintenance_interval: Duration::from_secs(2),
            prune_grace: Duration::from_secs(1),
            first_push: FirstPushConfig::default(),
        }
    }
}

/// How a node pushes the first message of a topic it forwards, before the topic's tree has
/// formed. A deviation from the paper, where every carrier starts eager (§3.5) and the first
/// message crosses every overlay link, which is most of a run's redundancy.
///
/// Here a node pushes it only to its fastest carriers (round trips from SWIM's probes; a
/// neighbour not yet measured ranks last) and sends an IHAVE to the rest; carriers that
/// announced the message already get neither (topic links are always eager). Few fast links
/// per node make long chains, so the fanout grows near the publisher: the number of nodes
/// grows with each hop, so extra pushes there are cheap and shorten every path below them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FirstPushConfig {
    /// Nodes at most this many hops from the publisher push to every carrier. Default 2.
    pub flood_within: u8,
    /// Nodes further out, but at most this many hops from the publisher, push to
    /// `wide_fanout` carriers. Default 4.
    pub wide_within: u8,
    /// Fanout between `flood_within` and `wide_within`. Default 3.
    pub wide_fanout: usize,
    /// Fanout of every node further out. Default 2: a random graph in which every node links
    /// to two others is connected with high probability, and IHAVEs repair what it misses.
    pub fanout: usize,
    /// Grace between an IHAVE and its GRAFT while this node has not yet seen a message of the
    /// topic. Default 20 ms (one IHAVE batch): with few eager pushes per node an announced
    /// message is often not on its way eagerly, and a chain of fast links that brings it is
    /// long.
    #[serde(with = "humantime_serde")]
    pub graft_timeout: Duration,
}

impl FirstPushConfig {
    /// The paper's start: every carrier eager.
    pub fn flood() -> Self {
        Self {
            flood_within: u8::MAX,
            ..Self::default()
        }
    }

    /// Carriers a node `distance` hops from the publisher pushes to.
    pub(super) fn fanout_at(&self, distance: u8) -> usize {
        if distance <= self.flood_within {
            usize::MAX
        } else if distance <= self.wide_within {
            self.wide_fanout
        } else {
            self.fanout
        }
    }
}

impl Default for FirstPushConfig {
    fn default() -> Self {
        Self {
            flood_within: 2,
            wide_within: 4,
            wide_fanout: 3,
            fanout: 2,
            graft_timeout: Duration::from_millis(20),
        }
    }
}
