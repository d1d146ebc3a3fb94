//! Reaching machines behind NATs: learning the address others see this node at, and opening a
//! direct path between two NATed machines by dials coordinated through a common peer.
//!
//! * **Address discovery.** Right after `Hello` each side of a connection tells the other the
//!   address it sees it at ([`crate::wire::Observed`]). A node announces an observed address
//!   when a peer it dialled itself reported it, or when two peers agree on it: a single
//!   inbound peer cannot make it announce an address of its choosing.
//! * **Hole punching.** To reach a machine it is not connected to, a node dials the machine's
//!   announced addresses and asks its connected peers ([`crate::wire::PunchRequest`]) to tell
//!   that machine to dial back; a peer connected to both forwards the request
//!   ([`crate::wire::PunchNotify`]) with the address it sees the asker at. The two dials cross:
//!   each NAT has then sent to the other's public address and lets the other's packets in
//!   (an endpoint-independent mapping is all it takes; a symmetric NAT, which picks a new port
//!   per destination, defeats it).
//!
//! Bounded: one observation per connection (the first), removed with it; punch requests and
//! notices limited per pair of machines ([`NatConfig::punch_interval`]) in a capped table.

mod observed;
mod punch;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use observed::ObservedAddrs;
pub(crate) use punch::PunchLimiter;

/// NAT settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatConfig {
    /// Tell peers the address they are seen at, learn our own, and coordinate hole punches.
    /// Default true (the simulator turns it off: its addresses are already the real ones).
    pub enabled: bool,
    /// Connected peers a punch request goes to. Default 8.
    pub punch_fanout: usize,
    /// At most one punch request, forward or dial per pair of machines in this time.
    /// Default 5 s (a connect attempt's dial timeout is longer).
    #[serde(with = "humantime_serde")]
    pub punch_interval: Duration,
    /// Pairs remembered for that limit (oldest forgotten first). Default 1 024.
    pub punch_table: usize,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            punch_fanout: 8,
            punch_interval: Duration::from_secs(5),
            punch_table: 1024,
        }
    }
}

/// What NAT traversal counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NatStats {
    /// Observations received and kept.
    pub observed: u64,
    /// Observations refused: a second one on a connection, or an unusable address.
    pub observed_refused: u64,
    /// Punch requests sent (one per peer asked).
    pub punch_requests_sent: u64,
    /// Punch requests forwarded to their target.
    pub punch_forwarded: u64,
    /// Punch requests dropped: target not connected, or over the pair's limit.
    pub punch_dropped: u64,
    /// Dials made on a punch notice.
    pub punch_dials: u64,
    /// Punch notices ignored: already connected, ourselves, or over the limit.
    pub punch_ignored: u64,
}
