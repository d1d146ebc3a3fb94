//! Direct messages: one agent to another, acknowledged, retried, delivered exactly once.
//!
//! [`crate::Node::send_direct`] returns a [`RequestId`] at once; the outcome arrives later as
//! [`crate::Event::DirectReceipt`] (delivered: path taken, retries used, elapsed time) or
//! [`crate::Event::DirectFailed`] (a typed [`DirectFailure`]). The recipient gets
//! [`crate::Event::DirectMessage`] with the **verified** sender agent and machine.
//!
//! ## Two paths
//!
//! * **Connected** ([`DirectPath::Connected`]): a [`crate::wire::Direct`] frame straight over
//!   the QUIC connection to the recipient's machine (dialled first when the recipient's
//!   announcement gives an address and no connection exists — x0x's `connect_to_agent`). The
//!   payload is not signed: QUIC/TLS proves the sending **machine**, and the receiver accepts
//!   the claimed sender agent only if that agent's signed identity announcement names that
//!   machine. The sender attaches its own identity announcement until the peer has acknowledged
//!   once, so a receiver that never heard of it can check the binding (one ML-DSA verify per
//!   peer, not per message). This keeps the connected path free of per-message signatures: an
//!   ML-DSA-65 signature costs more than a loopback round trip.
//! * **Sealed** ([`DirectPath::Sealed`]): a [`SealedEnvelope`] — the payload encrypted to the
//!   recipient's ML-KEM-768 key ([`crate::kem`]) with ChaCha20-Poly1305, the AAD binding
//!   sender agent and machine, recipient, request id and both timestamps ([`aad`]) —
//!   published as a pub/sub message on the inbox topic [`INBOX_TOPIC`]. The pub/sub signature
//!   (one ML-DSA signature by the sending agent) authenticates the sender; the recipient
//!   checks that the signer is the envelope's sender.
//!
//! **Routing of the sealed path, and why.** We chose the simpler routing: one inbox topic
//! that every node carries (x0x v0.19.17's `x0x/dm/v1/bus`), rather than a per-recipient
//! inbox. Our broadcast layer only disseminates a topic among its carriers, and a topic
//! carried by one recipient cannot be found by a random topic walk in a large
//! unstructured overlay; routing to "the recipient's side of the mesh" needs a structured
//! overlay (DHT) we do not have yet. The cost is one relay per node per sealed message, which
//! is acceptable because the sealed path is the **fallback**: [`PathPreference::Auto`] uses the
//! connected path whenever a connection is up or can be dialled, and the sealed path when a
//! dial to the recipient's machine failed within [`UNDIALABLE_FOR`] (NAT, offline) or no
//! address is known. Non-recipients learn only that *someone* sent *something* sealed to an agent.
//!
//! ## Acknowledgements, retries, dedup, expiry
//!
//! The recipient answers every accepted (or duplicate) message with a [`crate::wire::DirectAck`]
//! echoing the request id and the attempt number: over the connection it came on, or on the
//! inbox topic for the sealed path. The sender retries with the **same** request id until an
//! ack, the envelope's expiry, or [`DirectConfig::max_attempts`]. The per-attempt timeout adapts
//! to the RTT measured from acks (RFC 6298: `SRTT + 4·RTTVAR` per peer, or the node-wide
//! estimate of the same path for a peer never measured; clamped to
//! [`DirectConfig::min_timeout`]..[`DirectConfig::max_timeout`], doubled per retry); echoing the
//! attempt number makes every sample unambiguous (no Karn ambiguity). x0x used a fixed
//! 5 s × 2, which made fast links wait and slow links fail.
//!
//! The receiver keeps a dedup window of `(sender, request id)` → outcome
//! ([`DirectConfig::dedup_capacity`], retained for the longest valid envelope lifetime plus the
//! clock skew, oldest evicted first and counted), so a retry or replay inside the envelope's
//! validity is re-acknowledged and never delivered twice, and one outside it is refused as
//! expired.
//!
//! ## Hostile input
//!
//! Every refusal is a typed [`DirectReject`] counted in [`DirectStats::rejected`] under its
//! name: tampered ciphertext, wrong recipient, expired or far-future envelopes, over-long
//! lifetimes, forged or unbound senders, oversized payloads, malformed items. Nothing refused
//! is delivered; nothing panics.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::identity::{AgentId, MachineId};
use crate::kem::{KemKeypair, SealedBox};
use crate::node::TableSize;
use crate::time::Time;
use crate::util::counts::counts_by;
use crate::util::fifo::Fifo;

/// The inbox topic every node carries for sealed direct messages and their acks.
pub const INBOX_TOPIC: &str = "x0x-rs/direct/inbox/v1";
/// Context prefix of the sealed path's AAD.
pub const AAD_CONTEXT: &[u8] = b"x0x-rs/direct-aad/v1";

/// Direct-message configuration. Each field says its default and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectConfig {
    /// Largest payload accepted by `send_direct` and by a receiver. Default 48 KiB (x0x's DM
    /// payload limit of 49 152 B).
    pub max_payload_len: usize,
    /// Lifetime of an envelope when the caller gives none. Default 120 s (x0x's default send
    /// lifetime).
    #[serde(with = "humantime_serde")]
    pub default_lifetime: Duration,
    /// Longest lifetime accepted (`expires - created`). Default 600 s (x0x).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Envelopes created further than this in the future are refused. Default 30 s (x0x).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Per-attempt timeout before any RTT was measured to a peer. Default 1 s (RFC 6298's
    /// initial RTO).
    #[serde(with = "humantime_serde")]
    pub initial_timeout: Duration,
    /// Per-attempt timeout of the sealed path before any RTT was measured to the recipient.
    /// Default 2 s: a few gossip hops plus a possible IHAVE/GRAFT repair (150 ms grace).
    #[serde(with = "humantime_serde")]
    pub sealed_initial_timeout: Duration,
    /// Lower clamp of the adaptive timeout. Default 20 ms: above scheduler noise on loopback,
    /// so fast links retry fast without spurious retries.
    #[serde(with = "humantime_serde")]
    pub min_timeout: Duration,
    /// Upper clamp of the adaptive timeout (after backoff). Default 30 s (x0x HEAD's clamp).
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// Most attempts per message (first send included). Default 8: with doubling timeouts this
    /// spans minutes on a slow path, and expiry usually ends a hopeless send first.
    pub max_attempts: u8,
    /// Receiver dedup window size. Default 10 000 entries (x0x).
    pub dedup_capacity: usize,
    /// Most messages in flight from this node; more are refused. Default 4096.
    pub max_outstanding: usize,
    /// Most peers with an RTT estimate (oldest-created evicted). Default 1024.
    pub max_rtt_entries: usize,
}

impl Default for DirectConfig {
    fn default() -> Self {
        Self {
            max_payload_len: 48 * 1024,
            default_lifetime: Duration::from_secs(120),
            max_lifetime: Duration::from_secs(600),
            max_clock_skew: Duration::from_secs(30),
            initial_timeout: Duration::from_secs(1),
            sealed_initial_timeout: Duration::from_secs(2),
            min_timeout: Duration::from_millis(20),
            max_timeout: Duration::from_secs(30),
            max_attempts: 8,
            dedup_capacity: 10_000,
            max_outstanding: 4096,
            max_rtt_entries: 1024,
        }
    }
}

/// The id of one direct message: random at the sender, the same on every retry.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// The way a direct message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirectPath {
    /// To this node's own agent (no network).
    Local,
    /// Over the QUIC connection to the recipient's machine.
    Connected,
    /// Sealed to the recipient's ML-KEM key, through the gossip mesh.
    Sealed,
}

/// Which path `send_direct_with` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathPreference {
    /// Connected when possible (dialling if needed), sealed as the fallback.
    #[default]
    Auto,
    /// Only the connected path (dialling if needed).
    Connected,
    /// Only the sealed path, even when connected.
    Sealed,
}

/// Options of one send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectOptions {
    /// Path choice.
    pub path: PathPreference,
    /// Envelope lifetime; `None` = [`DirectConfig::default_lifetime`].
    pub lifetime: Option<Duration>,
}

/// A direct message delivered to this node's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// The request id (the same on every retry).
    pub request_id: RequestId,
    /// The sending agent, verified (announcement binding or signature).
    pub sender: AgentId,
    /// The sending agent's machine (TLS-proven for the connected path; signed by the sender
    /// for the sealed path).
    pub sender_machine: MachineId,
    /// How it came.
    pub path: DirectPath,
    /// When the sender created it (its clock, unix milliseconds).
    pub created_at_ms: u64,
    /// The trust evaluator's decision for the sender and its machine (only accepted and
    /// unknown senders are delivered; refusals are answered with `RejectCode::Policy`).
    pub trust: crate::trust::TrustDecision,
    /// The payload.
    pub payload: Bytes,
}

/// The sender's proof of delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectReceipt {
    /// The request id.
    pub request_id: RequestId,
    /// The recipient.
    pub recipient: AgentId,
    /// The path of the acknowledged attempt.
    pub path: DirectPath,
    /// Attempts beyond the first that were sent.
    pub retries: u8,
    /// From `send_direct` to the acknowledgement.
    pub elapsed: Duration,
}

/// Why a send ended without delivery (reported as [`crate::Event::DirectFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectFailure {
    /// The envelope expired before an acknowledgement arrived.
    #[error("expired before it was acknowledged")]
    Expired,
    /// Every attempt timed out.
    #[error("no acknowledgement after every attempt")]
    RetriesExhausted,
    /// The recipient refused it (`RejectCode::Policy`: its trust policy, x0x's
    /// `RejectedByPolicy`).
    #[error("rejected by the recipient: {0:?}")]
    RejectedByRecipient(RejectCode),
}

/// Why `send_direct` refused at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectError {
    /// The payload exceeds [`DirectConfig::max_payload_len`].
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// No live announcement of the recipient (call `find_agent` first).
    #[error("recipient {0} is unknown")]
    RecipientUnknown(AgentId),
    /// The sealed path was required but the recipient published no KEM key.
    #[error("recipient {0} has no known ML-KEM key")]
    RecipientKeyUnknown(AgentId),
    /// The lifetime exceeds [`DirectConfig::max_lifetime`] or is zero.
    #[error("lifetime out of range")]
    BadLifetime,
    /// [`DirectConfig::max_outstanding`] messages are in flight.
    #[error("too many direct messages in flight")]
    TooManyOutstanding,
    /// The recipient is blocked by this node's contacts ([`crate::trust`]).
    #[error("recipient {0} is blocked")]
    Blocked(AgentId),
}

/// The recipient's answer, carried in an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectOutcome {
    /// Delivered to the recipient agent (now or on an earlier attempt).
    Accepted,
    /// Refused.
    Rejected(RejectCode),
}

/// A refusal the recipient reports back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectCode {
    /// The recipient cannot bind the sender agent to the sending machine: re-send with the
    /// identity announcement attached.
    UnknownSender,
    /// The payload exceeds the recipient's limit.
    TooLarge,
    /// The recipient's trust policy refuses the sender (blocked, or a pinned agent's other
    /// machine): x0x's `RejectedByPolicy`.
    Policy,
}

/// Why a received direct message or ack was refused (counted in [`DirectRejectCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum DirectReject {
    /// The sealed body failed authentication (tampered, or sealed to another key).
    #[error("tampered")]
    Tampered,
    /// Addressed to another agent.
    #[error("wrong_recipient")]
    WrongRecipient,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Created further in the future than the allowed clock skew.
    #[error("from_future")]
    FromFuture,
    /// `expires - created` exceeds the maximum lifetime (or is negative).
    #[error("bad_lifetime")]
    BadLifetime,
    /// A request id already delivered (re-acknowledged, not delivered again).
    #[error("replay")]
    Replay,
    /// The claimed sender is not who signed it / not bound to the sending machine.
    #[error("forged_sender")]
    ForgedSender,
    /// The sender agent is unknown here and sent no binding (asked to re-send with one).
    #[error("unbound_sender")]
    UnboundSender,
    /// Payload over the limit.
    #[error("too_large")]
    TooLarge,
    /// An inbox item that does not decode.
    #[error("malformed")]
    Malformed,
    /// An ack that matches nothing in flight (late, duplicate, or forged).
    #[error("unmatched_ack")]
    UnmatchedAck,
    /// The trust policy refuses the sender ([`crate::trust`]).
    #[error("policy")]
    Policy,
}

/// The connected path's envelope (inside [`crate::wire::Direct`]). Not signed: the QUIC
/// connection proves the machine and the announcement binds the agent to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectEnvelope {
    /// The request id.
    pub request_id: RequestId,
    /// The sending agent (checked against the connection's machine).
    pub sender: AgentId,
    /// The recipient agent.
    pub recipient: AgentId,
    /// Sender's clock at creation, unix milliseconds.
    pub created_at_ms: u64,
    /// After this instant (unix milliseconds) the envelope is void.
    pub expires_at_ms: u64,
    /// Attempt number (1 = first send), echoed by the ack for RTT sampling.
    pub attempt: u8,
    /// The payload.
    pub payload: Bytes,
}

/// The sealed path's envelope, carried as the payload of an agent-signed pub/sub message on
/// [`INBOX_TOPIC`] (inside [`InboxItem::Sealed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEnvelope {
    /// The request id.
    pub request_id: RequestId,
    /// The sending agent: must be the pub/sub signer.
    pub sender: AgentId,
    /// The machine the sending agent runs on (its statement, covered by its signature).
    pub sender_machine: MachineId,
    /// The recipient agent.
    pub recipient: AgentId,
    /// Sender's clock at creation, unix milliseconds.
    pub created_at_ms: u64,
    /// Expiry, unix milliseconds.
    pub expires_at_ms: u64,
    /// Attempt number (1 = first send).
    pub attempt: u8,
    /// The payload sealed to the recipient's KEM key with [`aad`].
    pub sealed: SealedBox,
}

/// What travels on the inbox topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxItem {
    /// A sealed direct message.
    Sealed(SealedEnvelope),
    /// An acknowledgement of a sealed message (signed by the recipient as pub/sub author).
    Ack(crate::wire::DirectAck),
}

/// The AAD of a sealed envelope: `AAD_CONTEXT || request_id(16) || sender(32) ||
/// sender_machine(32) || recipient(32) || created_at_ms(u64 BE) || expires_at_ms(u64 BE)`.
pub fn aad(
    request_id: &RequestId,
    sender: &AgentId,
    sender_machine: &MachineId,
    recipient: &AgentId,
    created_at_ms: u64,
    expires_at_ms: u64,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(AAD_CONTEXT.len() + 16 + 3 * 32 + 16);
    v.extend_from_slice(AAD_CONTEXT);
    v.extend_from_slice(&request_id.0);
    v.extend_from_slice(sender.as_bytes());
    v.extend_from_slice(sender_machine.as_bytes());
    v.extend_from_slice(recipient.as_bytes());
    v.extend_from_slice(&created_at_ms.to_be_bytes());
    v.extend_from_slice(&expires_at_ms.to_be_bytes());
    v
}

/// Checks an envelope's validity window at `now`: created at most `max_clock_skew` ahead,
/// not expired, lifetime within `max_lifetime`.
pub fn check_window(
    config: &DirectConfig,
    now: Time,
    created_at_ms: u64,
    expires_at_ms: u64,
) -> Result<(), DirectReject> {
    let now_ms = now.as_millis();
    if created_at_ms > now_ms.saturating_add(config.max_clock_skew.as_millis() as u64) {
        return Err(DirectReject::FromFuture);
    }
    if expires_at_ms < created_at_ms
        || expires_at_ms - created_at_ms > config.max_lifetime.as_millis() as u64
    {
        return Err(DirectReject::BadLifetime);
    }
    if now_ms >= expires_at_ms {
        return Err(DirectReject::Expired);
    }
    Ok(())
}

/// Opens a sealed envelope addressed to `me`, signed (as pub/sub author) by `author`. Checks,
/// in order: recipient, sender == author, validity window, size, then the AEAD.
pub fn open_sealed(
    config: &DirectConfig,
    now: Time,
    me: &AgentId,
    kem: &KemKeypair,
    author: &AgentId,
    env: &SealedEnvelope,
) -> Result<Bytes, DirectReject> {
    if env.recipient != *me {
        return Err(DirectReject::WrongRecipient);
    }
    if env.sender != *author {
        return Err(DirectReject::ForgedSender);
    }
    check_window(config, now, env.created_at_ms, env.expires_at_ms)?;
    if env.sealed.ciphertext.len() > config.max_payload_len + crate::kem::TAG_LEN {
        return Err(DirectReject::TooLarge);
    }
    let aad = aad(
        &env.request_id,
        &env.sender,
        &env.sender_machine,
        &env.recipient,
        env.created_at_ms,
        env.expires_at_ms,
    );
    kem.open(&env.sealed, &aad)
        .map(Bytes::from)
        .map_err(|_| DirectReject::Tampered)
}

/// How long a machine whose dial failed is reached by the sealed path instead of a new dial.
/// 60 s: long enough not to re-dial on every retry, short enough to notice it came back.
pub const UNDIALABLE_FOR: Duration = Duration::from_secs(60);

/// Counters of the direct-message layer. Monotonic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DirectStats {
    /// Messages accepted by `send_direct`.
    pub sent: u64,
    /// Attempts sent, by path.
    pub attempts: PathCounts,
    /// Attempts after the first.
    pub retries: u64,
    /// Receipts (acknowledged sends).
    pub receipts: u64,
    /// Failed sends, by reason.
    pub failures: FailureCounts,
    /// Messages delivered to this agent (each once).
    pub delivered: u64,
    /// Copies of an already delivered message (re-acknowledged, not delivered).
    pub duplicates: u64,
    /// Received messages or acks refused, by reason.
    pub rejected: DirectRejectCounts,
    /// Acks sent.
    pub acks_sent: u64,
    /// Sealed envelopes on the inbox topic addressed to another agent (relayed, not opened).
    pub inbox_not_for_us: u64,
    /// Dedup entries evicted by the capacity limit before their retention ended.
    pub dedup_evicted: u64,
    /// RTT estimates evicted by the capacity limit.
    pub rtt_evicted: u64,
}

counts_by! {
    /// Direct-message attempts, by [`DirectPath`].
    pub struct PathCounts(DirectPath) {
        /// To this node's own agent.
        local: DirectPath::Local,
        /// Over a connection.
        connected: DirectPath::Connected,
        /// Sealed, through the mesh.
        sealed: DirectPath::Sealed,
    }
}

counts_by! {
    /// Direct messages that failed, by [`DirectFailure`].
    pub struct FailureCounts(DirectFailure) {
        /// Expired before an acknowledgement.
        expired: DirectFailure::Expired,
        /// Every attempt timed out.
        retries_exhausted: DirectFailure::RetriesExhausted,
        /// The recipient's trust policy refused it.
        rejected_by_policy: DirectFailure::RejectedByRecipient(RejectCode::Policy),
        /// The recipient refused it for another reason.
        rejected_by_recipient: DirectFailure::RejectedByRecipient(_),
    }
}

counts_by! {
    /// Received direct messages and acks refused, by [`DirectReject`].
    pub struct DirectRejectCounts(DirectReject) {
        /// The sealed body failed authentication.
        tampered: DirectReject::Tampered,
        /// Addressed to another agent.
        wrong_recipient: DirectReject::WrongRecipient,
        /// Past its expiry.
        expired: DirectReject::Expired,
        /// Created too far in the future.
        from_future: DirectReject::FromFuture,
        /// Lifetime over the maximum, or negative.
        bad_lifetime: DirectReject::BadLifetime,
        /// A request id already delivered.
        replay: DirectReject::Replay,
        /// The claimed sender is not who signed it or not bound to the sending machine.
        forged_sender: DirectReject::ForgedSender,
        /// An unknown sender without a binding.
        unbound_sender: DirectReject::UnboundSender,
        /// Payload over the limit.
        too_large: DirectReject::TooLarge,
        /// An inbox item that does not decode.
        malformed: DirectReject::Malformed,
        /// An ack that matches nothing in flight.
        unmatched_ack: DirectReject::UnmatchedAck,
        /// Refused by the trust policy.
        policy: DirectReject::Policy,
    }
}

/// What the RTT estimate is keyed by: a machine (connected path) or an agent (sealed path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RttKey {
    Machine(MachineId),
    Sealed(AgentId),
}

impl RttKey {
    /// The node-wide estimate of the same path kind, used for a peer never measured: a fresh
    /// peer is most likely about as far as the others, which beats a fixed constant.
    fn aggregate(self) -> AggregateRtt {
        match self {
            Self::Machine(_) => AggregateRtt::Connected,
            Self::Sealed(_) => AggregateRtt::Sealed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AggregateRtt {
    Connected,
    Sealed,
}

/// RFC 6298 smoothed RTT, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rtt {
    srtt: u64,
    rttvar: u64,
}

impl Rtt {
    fn first(sample: u64) -> Self {
        Self {
            srtt: sample,
            rttvar: sample / 2,
        }
    }

    fn update(&mut self, sample: u64) {
        // RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT = 7/8 SRTT + 1/8 R.
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = (3 * self.rttvar + diff) / 4;
        self.srtt = (7 * self.srtt + sample) / 8;
    }

    fn rto(&self) -> u64 {
        self.srtt + 4 * self.rttvar
    }
}

/// One message in flight.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub recipient: AgentId,
    pub payload: Bytes,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub pref: PathPreference,
    pub started: Time,
    /// Send time and path of each attempt (index = attempt - 1).
    pub sent: Vec<(Time, DirectPath)>,
    /// When the current attempt times out.
    pub deadline: Time,
    /// The machine the connected attempts went to.
    pub machine: Option<MachineId>,
}

/// Receiver dedup window: `(sender, request id)` → outcome, bounded by count and age.
#[derive(Debug)]
pub(crate) struct Dedup {
    /// Each outcome with when it was remembered.
    entries: Fifo<(AgentId, RequestId), (Time, DirectOutcome)>,
    retention: Duration,
}

impl Dedup {
    fn new(cap: usize, retention: Duration) -> Self {
        Self {
            entries: Fifo::new(cap),
            retention,
        }
    }

    pub(crate) fn get(&self, k: &(AgentId, RequestId)) -> Option<DirectOutcome> {
        self.entries.get(k).map(|(_, outcome)| *outcome)
    }

    /// Remembers an outcome; returns how many entries the cap evicted (0 or 1).
    pub(crate) fn insert(
        &mut self,
        now: Time,
        k: (AgentId, RequestId),
        outcome: DirectOutcome,
    ) -> u64 {
        let retention = self.retention;
        self.entries
            .pop_oldest_while(|(at, _)| now - *at >= retention);
        u64::from(self.entries.push(k, (now, outcome)).is_some())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The direct-message state of a node.
#[derive(Debug)]
pub(crate) struct DirectState {
    pub config: DirectConfig,
    pub kem: KemKeypair,
    pub outgoing: BTreeMap<RequestId, Outgoing>,
    rtt: Fifo<RttKey, Rtt>,
    rtt_all: BTreeMap<AggregateRtt, Rtt>,
    /// Addresses we asked to dial for a direct message, and the machine expected there.
    dialing: BTreeMap<std::net::SocketAddr, MachineId>,
    /// Machines whose dial failed recently: the next attempts go sealed.
    undialable: BTreeMap<MachineId, Time>,
    pub dedup: Dedup,
    /// Peers that acknowledged one of our connected messages, so they know our binding
    /// (forgetting one only means re-attaching the announcement).
    bound: Fifo<MachineId, ()>,
    pub stats: DirectStats,
}

impl DirectState {
    pub(crate) fn new(config: DirectConfig, kem: KemKeypair) -> Self {
        // An envelope is valid for at most max_lifetime after a creation time at most
        // max_clock_skew ahead: remembering ids that long catches every valid replay.
        let retention = config.max_lifetime + config.max_clock_skew;
        Self {
            dedup: Dedup::new(config.dedup_capacity, retention),
            kem,
            outgoing: BTreeMap::new(),
            rtt: Fifo::new(config.max_rtt_entries),
            rtt_all: BTreeMap::new(),
            dialing: BTreeMap::new(),
            undialable: BTreeMap::new(),
            bound: Fifo::new(config.max_rtt_entries),
            stats: DirectStats::default(),
            config,
        }
    }

    /// The timeout of attempt number `attempt` (1-based) over `key`.
    pub(crate) fn timeout(&self, key: RttKey, attempt: u8, dialing: bool) -> Duration {
        let measured = self
            .rtt
            .get(&key)
            .or_else(|| self.rtt_all.get(&key.aggregate()));
        let base = match (measured, key) {
            (Some(r), _) => Duration::from_micros(r.rto()),
            (None, RttKey::Machine(_)) => self.config.initial_timeout,
            (None, RttKey::Sealed(_)) => self.config.sealed_initial_timeout,
        };
        let mut t = base.clamp(self.config.min_timeout, self.config.max_timeout);
        if dialing {
            // A dial costs a round trip and the Hello exchange before the message goes out.
            t *= 2;
        }
        let shift = u32::from(attempt.saturating_sub(1)).min(16);
        t.saturating_mul(1 << shift).min(self.config.max_timeout)
    }

    pub(crate) fn rtt_sample(&mut self, key: RttKey, sample: Duration) {
        let us = sample.as_micros().min(u128::from(u64::MAX)) as u64;
        match self.rtt_all.get_mut(&key.aggregate()) {
            Some(r) => r.update(us),
            None => {
                self.rtt_all.insert(key.aggregate(), Rtt::first(us));
            }
        }
        if let Some(r) = self.rtt.get_mut(&key) {
            r.update(us);
            return;
        }
        if self.rtt.push(key, Rtt::first(us)).is_some() {
            self.stats.rtt_evicted += 1;
        }
    }

    /// The smoothed RTT towards `key`, if measured.
    pub(crate) fn srtt(&self, key: RttKey) -> Option<Duration> {
        self.rtt.get(&key).map(|r| Duration::from_micros(r.srtt))
    }

    /// Remembers that a direct message asked to dial `addr` expecting `machine`.
    pub(crate) fn dialing(&mut self, addr: std::net::SocketAddr, machine: MachineId) {
        if self.dialing.len() >= self.config.max_rtt_entries {
            self.dialing.pop_first();
        }
        self.dialing.insert(addr, machine);
    }

    /// A dial failed: if a direct message asked for it, its machine is undialable for a while.
    pub(crate) fn dial_failed(&mut self, now: Time, addr: std::net::SocketAddr) {
        if let Some(m) = self.dialing.remove(&addr) {
            if self.undialable.len() >= self.config.max_rtt_entries {
                self.undialable.pop_first();
            }
            self.undialable.insert(m, now);
        }
    }

    /// Whether a dial to `machine` failed within the last [`UNDIALABLE_FOR`].
    pub(crate) fn undialable(&self, now: Time, machine: &MachineId) -> bool {
        self.undialable
            .get(machine)
            .is_some_and(|t| now.saturating_since(*t) < UNDIALABLE_FOR)
    }

    pub(crate) fn is_bound(&self, peer: &MachineId) -> bool {
        self.bound.contains_key(peer)
    }

    pub(crate) fn set_bound(&mut self, peer: MachineId, bound: bool) {
        if bound {
            self.bound.push(peer, ());
        } else {
            self.bound.remove(&peer);
        }
    }

    /// Remembers a receive outcome, counting a capacity eviction.
    pub(crate) fn remember(&mut self, now: Time, k: (AgentId, RequestId), o: DirectOutcome) {
        self.stats.dedup_evicted += self.dedup.insert(now, k, o);
    }

    /// The dedup window and the messages in flight, for [`crate::Node::table_sizes`].
    pub(crate) fn table_sizes(&self, out: &mut Vec<TableSize>) {
        let c = &self.config;
        out.extend([
            TableSize::new("direct dedup window", self.dedup.len(), c.dedup_capacity),
            TableSize::new(
                "direct messages in flight",
                self.outgoing.len(),
                c.max_outstanding,
            ),
        ]);
    }
}

#[cfg(test)]
mod tests;
