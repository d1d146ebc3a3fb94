//! [`NodeStats`]: every counter of the node and its layers, in one serialisable value.

use serde::Serialize;

use super::CloseReason;
use crate::broadcast::BroadcastStats;
use crate::direct::DirectStats;
use crate::discovery::{DiscoveryStats, RejectCounts};
use crate::membership::MembershipStats;
use crate::util::counts::counts_by;
use crate::wire::DecodeError;

/// Counters of everything the node and its layers did or refused ([`super::Node::stats`]).
/// Monotonic; never reset. The node's own counters are fields of this struct; each protocol
/// layer's are nested under its name. Serialises with named fields (serde).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// Frames accepted by `handle_frame` (decoded successfully).
    pub frames_received: u64,
    /// Frames handed out by `poll_transmit`.
    pub frames_sent: u64,
    /// Frames that failed to decode, by reason.
    pub frames_rejected: DecodeErrorCounts,
    /// Frames of a kind this build does not know (skipped, not an error).
    pub frames_unknown_kind: u64,
    /// Frames from a machine with no connection (driver bug or race), dropped.
    pub frames_from_unknown_peer: u64,
    /// Outgoing frames dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Outgoing frames that could not be encoded (over a size limit), dropped.
    pub transmits_unencodable: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Connections closed by the node, by reason.
    pub closes: CloseCounts,
    /// Dials the driver reported as failed.
    pub dials_failed: u64,
    /// `handle_connected` calls for a machine that already had a connection (resolved dials).
    pub duplicate_connections: u64,
    /// Pub/sub messages refused before delivery, by reason.
    pub messages_rejected: MessageRejects,
    /// Broadcast frames from a connected machine that is not a neighbour.
    pub frames_from_non_neighbor: u64,
    /// Batch members verified from a remembered batch root, without an ML-DSA verification.
    pub batch_root_hits: u64,
    /// Batch roots forgotten to make room ([`super::Config::batch_cache_capacity`]).
    pub batch_roots_evicted: u64,
    /// Signatures made by [`super::Node::publish_batch`] (one per batch of up to
    /// [`crate::wire::MAX_BATCH`]).
    pub publish_signatures: u64,
    /// The membership layer (HyParView, SWIM).
    pub membership: MembershipStats,
    /// The broadcast layer (PlumTree).
    pub broadcast: BroadcastStats,
    /// Announcements, caches and queries.
    pub discovery: DiscoveryStats,
    /// Direct messages.
    pub direct: DirectStats,
    /// Contacts and what the trust evaluator refused.
    pub trust: super::TrustStats,
    /// Presence: beacons, refusals by reason, online and offline reports, FOAF queries.
    pub presence: crate::presence::PresenceStats,
    /// NAT traversal: observations, punch requests, forwards and dials.
    pub nat: crate::nat::NatStats,
    /// The peer cache: entries, evictions, refusals.
    pub peer_cache: crate::peer_cache::PeerCacheStats,
}

counts_by! {
    /// Frames that failed to decode, by [`DecodeError`].
    pub struct DecodeErrorCounts(DecodeError) {
        /// Shorter than its header or a length it declares.
        too_short: DecodeError::TooShort(_),
        /// Over a size limit.
        too_large: DecodeError::TooLarge { .. },
        /// A wire version this build does not speak.
        unsupported_version: DecodeError::UnsupportedVersion(_),
        /// A frame kind this build does not know.
        unknown_kind: DecodeError::UnknownKind(_),
        /// A body that does not decode.
        malformed: DecodeError::Malformed { .. },
        /// Bytes after the body.
        trailing_bytes: DecodeError::TrailingBytes { .. },
    }
}

counts_by! {
    /// Connections the node closed, by [`CloseReason`].
    pub struct CloseCounts(CloseReason) {
        /// The connection limit was reached.
        too_many_connections: CloseReason::TooManyConnections,
        /// A second connection to a machine that has one.
        duplicate: CloseReason::Duplicate,
        /// Frames that do not decode.
        bad_frames: CloseReason::BadFrames(_),
        /// A protocol violation.
        protocol_violation: CloseReason::ProtocolViolation(_),
        /// No `Hello` in time.
        hello_timeout: CloseReason::HelloTimeout,
        /// The node shut down.
        shutdown: CloseReason::Shutdown,
        /// The membership layer no longer needs it.
        not_needed: CloseReason::NotNeeded,
    }
}

/// Pub/sub messages refused before delivery, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MessageRejects {
    /// Refused as a record would be: bad signature, unknown key, stale, …
    #[serde(flatten)]
    pub reason: RejectCounts,
    /// The signed body names another topic than the frame carrying it.
    pub topic_mismatch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::announce::RejectReason;
    use crate::membership::DownReason;

    /// One value, named fields, each layer nested under its name; a reason's counter is named
    /// as the reason.
    #[test]
    fn stats_serialise_with_named_fields_nested_per_layer() {
        let mut s = NodeStats::default();
        s.closes.count(&CloseReason::HelloTimeout);
        s.messages_rejected.reason.count(&RejectReason::Stale);
        s.messages_rejected.topic_mismatch += 1;
        s.membership.neighbor_down.count(&DownReason::Dead);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["closes"]["hello_timeout"], 1);
        assert_eq!(v["messages_rejected"]["stale"], 1);
        assert_eq!(v["messages_rejected"]["topic_mismatch"], 1);
        assert_eq!(v["membership"]["neighbor_down"]["dead"], 1);
        assert_eq!(v["broadcast"]["dropped"]["cache_evicted"], 0);
        assert_eq!(v["discovery"]["rejected"]["not_newer"], 0);
        assert_eq!(v["direct"]["attempts"]["sealed"], 0);
        assert_eq!(s.closes.total(), 1);
        assert_eq!(s.membership.neighbor_down.get(&DownReason::Dead), 1);
    }
}
