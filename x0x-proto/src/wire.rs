//! The wire format: one versioned frame for every message the protocol sends.
//!
//! ```text
//! frame = version(u8 = 1) | kind(u8) | body (postcard)
//! ```
//!
//! * `version` changes only for an incompatible change of the framing itself.
//! * `kind` names the body type ([`FrameKind`]). New message types get new kinds; a receiver
//!   that does not know a kind reports [`DecodeError::UnknownKind`] and can skip the frame,
//!   so a fleet can add messages without a flag day (x0x's positional bincode broke releases).
//! * `body` is the [postcard] encoding of the kind's struct. Trailing bytes are an error, so
//!   every frame has exactly one encoding.
//!
//! Sizes are checked **before** decoding: a frame longer than [`MAX_FRAME_LEN`] or than its
//! kind's own limit ([`FrameKind::max_len`]) is refused without looking at the body, and every
//! variable-length list has an element cap enforced while decoding ([`MAX_PEERS_PER_FRAME`]…),
//! so hostile bytes cannot make the decoder allocate beyond the frame they arrived in.
//!
//! Signed content travels as [`Signed`]: the exact body bytes that were signed, and the
//! signature. Nothing is re-encoded before verification (docs/protocol.md, "Signed bytes").

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::identity::{
    AgentId, Domain, MachineId, PublicKey, Signature, SignerId, SigningKey, VerifyError,
};

/// The framing version this build speaks.
pub const WIRE_VERSION: u8 = 1;
const SIGNATURE_LEN_HINT: usize = crate::identity::SIGNATURE_LEN + 3;
const PUBLIC_KEY_LEN_HINT: usize = crate::identity::PUBLIC_KEY_LEN + 3;

/// Hard upper bound of any frame, in bytes (version and kind included).
pub const MAX_FRAME_LEN: usize = 256 * 1024;
/// Most peer entries one membership frame may carry.
pub const MAX_PEERS_PER_FRAME: usize = 64;
/// Most addresses one peer entry may carry.
pub const MAX_ADDRS_PER_PEER: usize = 16;
/// Most message ids one IHAVE or GRAFT may carry.
pub const MAX_IDS_PER_FRAME: usize = 1024;
/// Most topics one interest frame may carry.
pub const MAX_TOPICS_PER_FRAME: usize = 256;
/// Most signed records one SYNCRECORDS frame may carry.
pub const MAX_RECORDS_PER_FRAME: usize = 40;
/// Most signed records one QUERYHIT may carry.
pub const MAX_RECORDS_PER_HIT: usize = 8;
/// Limit for small control frames (membership, probes, PRUNE…).
pub const MAX_CONTROL_FRAME_LEN: usize = 16 * 1024;

/// Errors from [`Frame::decode`]. Each says what was wrong; none is a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than the two header bytes.
    #[error("frame too short ({0} bytes)")]
    TooShort(usize),
    /// Longer than [`MAX_FRAME_LEN`] or the kind's limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} for {kind}")]
    TooLarge {
        /// Frame length.
        len: usize,
        /// The limit that applied.
        limit: usize,
        /// The kind byte, as far as it is known.
        kind: KindByte,
    },
    /// A framing version this build does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A kind this build does not know (may be newer than us: skippable).
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The body is not a valid encoding of the kind's struct.
    #[error("malformed {kind} body: {reason}")]
    Malformed {
        /// The frame kind.
        kind: FrameKind,
        /// The decoder's complaint.
        reason: String,
    },
    /// Bytes left over after the body.
    #[error("{kind} body followed by {extra} trailing bytes")]
    TrailingBytes {
        /// The frame kind.
        kind: FrameKind,
        /// How many bytes were left.
        extra: usize,
    },
}

/// Errors from [`Frame::encode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded frame would exceed its kind's limit.
    #[error("{kind} frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The frame kind.
        kind: FrameKind,
        /// Encoded length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A list holds more elements than the wire allows.
    #[error("{kind} frame has a list of {len} entries, more than {limit}")]
    TooManyEntries {
        /// The frame kind.
        kind: FrameKind,
        /// The list length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A raw kind byte, printed by name when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindByte(pub u8);

impl fmt::Display for KindByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match FrameKind::from_byte(self.0) {
            Some(k) => k.fmt(f),
            None => write!(f, "kind {:#04x}", self.0),
        }
    }
}

macro_rules! frame_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $byte:expr, $limit:expr; )*) => {
        /// The kind tag of a frame: which body struct follows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum FrameKind {
            $( $(#[$doc])* $variant, )*
        }

        impl FrameKind {
            /// Every kind, in tag order.
            pub const ALL: &'static [FrameKind] = &[ $( Self::$variant, )* ];

            /// The tag byte.
            pub const fn byte(self) -> u8 {
                match self { $( Self::$variant => $byte, )* }
            }

            /// The kind for a tag byte, if known.
            pub const fn from_byte(b: u8) -> Option<Self> {
                match b { $( $byte => Some(Self::$variant), )* _ => None }
            }

            /// Largest frame of this kind, in bytes, header included.
            pub const fn max_len(self) -> usize {
                match self { $( Self::$variant => $limit, )* }
            }
        }

        impl fmt::Display for FrameKind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $( Self::$variant => stringify!($variant), )* })
            }
        }

        /// Every message of the protocol.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[allow(missing_docs)] // each variant carries the struct of the same name
        pub enum Frame {
            $( $variant($variant), )*
        }

        impl Frame {
            /// This frame's kind.
            pub fn kind(&self) -> FrameKind {
                match self { $( Self::$variant(_) => FrameKind::$variant, )* }
            }

            fn encode_body(&self, out: Vec<u8>) -> Vec<u8> {
                match self {
                    $( Self::$variant(b) => postcard::to_extend(b, out), )*
                }
                .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data"))
            }

            /// Length of the encoded body (the frame without its two header bytes).
            fn body_size(&self) -> usize {
                match self {
                    $( Self::$variant(b) => postcard::serialize_with_flavor(b, postcard::ser_flavors::Size::default()), )*
                }
                .unwrap_or(usize::MAX)
            }

            fn decode_body(kind: FrameKind, body: &[u8]) -> Result<Self, DecodeError> {
                match kind {
                    $( FrameKind::$variant => decode_exact::<$variant>(kind, body).map(Self::$variant), )*
                }
            }
        }

        $(
            impl From<$variant> for Frame {
                fn from(b: $variant) -> Self { Self::$variant(b) }
            }
        )*
    };
}

frame_kinds! {
    /// First frame on every connection: who I am beyond the TLS-proven machine.
    Hello = 0x01, MAX_CONTROL_FRAME_LEN;
    /// HyParView: a new node asks to join the overlay.
    Join = 0x10, MAX_CONTROL_FRAME_LEN;
    /// HyParView: a join travelling a random walk.
    ForwardJoin = 0x11, MAX_CONTROL_FRAME_LEN;
    /// HyParView: ask to become an active neighbour.
    Neighbor = 0x12, MAX_CONTROL_FRAME_LEN;
    /// HyParView: answer to a neighbour request.
    NeighborReply = 0x13, MAX_CONTROL_FRAME_LEN;
    /// HyParView: leave the sender's active view.
    Disconnect = 0x14, MAX_CONTROL_FRAME_LEN;
    /// HyParView: a passive-view exchange on a random walk.
    Shuffle = 0x15, MAX_CONTROL_FRAME_LEN;
    /// HyParView: the answer to a shuffle.
    ShuffleReply = 0x16, MAX_CONTROL_FRAME_LEN;
    /// SWIM: direct probe.
    Ping = 0x18, MAX_CONTROL_FRAME_LEN;
    /// SWIM: answer to a probe.
    Ack = 0x19, MAX_CONTROL_FRAME_LEN;
    /// SWIM: ask a neighbour to probe a target for us.
    PingReq = 0x1a, MAX_CONTROL_FRAME_LEN;
    /// SWIM: the outcome of an indirect probe.
    PingReqAck = 0x1b, MAX_CONTROL_FRAME_LEN;
    /// PlumTree: a message pushed eagerly.
    Gossip = 0x20, MAX_FRAME_LEN;
    /// PlumTree: ids of messages the sender has (lazy push).
    IHave = 0x21, 64 * 1024;
    /// PlumTree: please send these messages and make me an eager peer.
    Graft = 0x22, 64 * 1024;
    /// PlumTree: stop pushing this topic to me eagerly.
    Prune = 0x23, MAX_CONTROL_FRAME_LEN;
    /// Which topics the sender carries.
    Interest = 0x24, 16 * 1024;
    /// A random walk looking for another carrier of a sparse topic.
    TopicWalk = 0x25, MAX_CONTROL_FRAME_LEN;
    /// Offer / accept a topic link.
    TopicLink = 0x26, MAX_CONTROL_FRAME_LEN;
    /// Discovery: send me your live announcements (a new node catching up).
    SyncRequest = 0x30, MAX_CONTROL_FRAME_LEN;
    /// Discovery: a batch of signed announcements or records.
    SyncRecords = 0x31, MAX_FRAME_LEN;
    /// Discovery: who has a record for this target? (expanding-ring flood)
    Query = 0x32, MAX_CONTROL_FRAME_LEN;
    /// Discovery: answer to a query, routed back along the query's path.
    QueryHit = 0x33, 64 * 1024;
    /// Direct message over the connection to the recipient's machine.
    Direct = 0x40, 128 * 1024;
    /// Acknowledgement of a direct message.
    DirectAck = 0x41, MAX_CONTROL_FRAME_LEN;
}

fn decode_exact<'a, T: Deserialize<'a>>(kind: FrameKind, body: &'a [u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes {
            kind,
            extra: rest.len(),
        }),
        Err(e) => Err(DecodeError::Malformed {
            kind,
            reason: e.to_string(),
        }),
    }
}

/// A GOSSIP frame's layout, borrowing the message's body and signature from the frame.
#[derive(Deserialize)]
struct GossipRef<'a> {
    topic: TopicId,
    hops: u8,
    root: u32,
    depth: u8,
    #[serde(borrow)]
    message: SignedRef<'a>,
}

/// [`Signed`]'s layout, borrowing its body and signature.
#[derive(Deserialize)]
struct SignedRef<'a> {
    signer: SignerId,
    signer_key: Option<PublicKey>,
    body: &'a [u8],
    batch: Option<Box<BatchProof>>,
    signature: &'a [u8],
}

/// A GOSSIP body whose message body and signature are slices of `src`, the whole frame.
fn decode_gossip_shared(src: &Bytes, body: &[u8]) -> Result<Gossip, DecodeError> {
    let kind = FrameKind::Gossip;
    let g: GossipRef<'_> = decode_exact(kind, body)?;
    let m = g.message;
    // Both slices were borrowed from `src`, so `slice_ref` cannot panic.
    let signature =
        Signature::from_shared(src.slice_ref(m.signature)).map_err(|e| DecodeError::Malformed {
            kind,
            reason: e.to_string(),
        })?;
    Ok(Gossip {
        topic: g.topic,
        hops: g.hops,
        root: g.root,
        depth: g.depth,
        message: Signed {
            signer: m.signer,
            signer_key: m.signer_key,
            body: src.slice_ref(m.body),
            batch: m.batch,
            signature,
        },
    })
}

impl Frame {
    /// Encodes the frame, refusing one over its kind's limit or with an over-long list.
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let kind = self.kind();
        self.check_lists()?;
        let mut head = Vec::with_capacity(self.size_hint());
        head.extend_from_slice(&[WIRE_VERSION, kind.byte()]);
        let out = self.encode_body(head);
        if out.len() > kind.max_len() {
            return Err(EncodeError::TooLarge {
                kind,
                len: out.len(),
                limit: kind.max_len(),
            });
        }
        Ok(Bytes::from(out))
    }

    /// Decodes one frame. Length limits are checked before the body is read.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_from(bytes, None)
    }

    /// Decodes one frame held in a shared buffer, like [`Frame::decode`], except that a
    /// GOSSIP's message body and signature stay slices of `bytes` instead of copies, so
    /// receivers of one sent frame share it. A message kept from it keeps all of `bytes`
    /// alive, including a signer's key the frame carries (1 952 bytes): worth it only where
    /// many receivers share one buffer, as in a simulator ([`crate::node::Config::share_frames`]).
    pub fn decode_shared(bytes: &Bytes) -> Result<Self, DecodeError> {
        Self::decode_from(bytes, Some(bytes))
    }

    fn decode_from(bytes: &[u8], shared: Option<&Bytes>) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_FRAME_LEN,
                kind: KindByte(bytes.get(1).copied().unwrap_or(0)),
            });
        }
        let [version, kind, body @ ..] = bytes else {
            return Err(DecodeError::TooShort(bytes.len()));
        };
        if *version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(*version));
        }
        let kind = FrameKind::from_byte(*kind).ok_or(DecodeError::UnknownKind(*kind))?;
        if bytes.len() > kind.max_len() {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: kind.max_len(),
                kind: KindByte(kind.byte()),
            });
        }
        let frame = match (kind, shared) {
            (FrameKind::Gossip, Some(src)) => decode_gossip_shared(src, body).map(Self::Gossip)?,
            _ => Self::decode_body(kind, body)?,
        };
        // postcard accepts over-long varints (`ff ff ff 00` decodes like `ff ff 7f`), so two
        // byte strings could carry one frame. Found by the `frame_decode` fuzz target; the
        // canonical encoding must be the input for "one frame, one encoding" to hold. Varints
        // are postcard's only encodings with a choice, and a longer one is the only kind it
        // accepts, so comparing lengths is enough (and spares re-encoding every frame).
        // Invariant this relies on: no frame type's decoder normalises what it reads (a set
        // or map dropping duplicates, a catch-all enum variant, clamping); such a type would
        // need the byte comparison back. The `frame_decode` fuzz target still compares bytes.
        if frame.body_size() != body.len() {
            return Err(DecodeError::Malformed {
                kind,
                reason: "non-canonical encoding".into(),
            });
        }
        Ok(frame)
    }

    /// A capacity guess for the encoded frame (avoids re-allocating while encoding).
    fn size_hint(&self) -> usize {
        let signed = |s: &Signed| {
            s.body.len()
                + SIGNATURE_LEN_HINT
                + if s.signer_key.is_some() {
                    PUBLIC_KEY_LEN_HINT
                } else {
                    0
                }
                + 48
        };
        match self {
            Self::Gossip(g) => 40 + signed(&g.message),
            Self::Direct(d) => {
                160 + d.envelope.payload.len() + d.binding.as_ref().map_or(0, signed)
            }
            Self::SyncRecords(r) => 8 + r.records.iter().map(|r| signed(&r.signed)).sum::<usize>(),
            Self::QueryHit(h) => 16 + h.records.iter().map(|r| signed(&r.signed)).sum::<usize>(),
            Self::IHave(i) => 40 + 34 * i.entries.len(),
            Self::Graft(g) => 40 + 33 * g.ids.len(),
            _ => 128,
        }
    }

    /// The decoder caps lists while reading; the encoder refuses to write what would be refused.
    fn check_lists(&self) -> Result<(), EncodeError> {
        let kind = self.kind();
        let check = |len: usize, limit: usize| {
            if len > limit {
                Err(EncodeError::TooManyEntries { kind, len, limit })
            } else {
                Ok(())
            }
        };
        let peers = |p: &[PeerAddr]| -> Result<(), EncodeError> {
            check(p.len(), MAX_PEERS_PER_FRAME)?;
            p.iter()
                .try_for_each(|p| check(p.addrs.len(), MAX_ADDRS_PER_PEER))
        };
        match self {
            Self::Hello(h) => check(h.addrs.len(), MAX_ADDRS_PER_PEER),
            Self::Join(j) => check(j.addrs.len(), MAX_ADDRS_PER_PEER),
            Self::ForwardJoin(f) => peers(std::slice::from_ref(&f.joiner)),
            Self::Shuffle(s) => {
                peers(std::slice::from_ref(&s.origin))?;
                peers(&s.peers)
            }
            Self::ShuffleReply(s) => peers(&s.peers),
            Self::IHave(i) => check(i.entries.len(), MAX_IDS_PER_FRAME),
            Self::Graft(g) => check(g.ids.len(), MAX_IDS_PER_FRAME),
            Self::Interest(i) => check(i.topics.len(), MAX_TOPICS_PER_FRAME),
            Self::TopicWalk(w) => peers(std::slice::from_ref(&w.origin)),
            Self::SyncRecords(r) => check(r.records.len(), MAX_RECORDS_PER_FRAME),
            Self::QueryHit(h) => check(h.records.len(), MAX_RECORDS_PER_HIT),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded list decoding
// ---------------------------------------------------------------------------------------------

/// Deserialises a `Vec<T>` of at most `N` elements, allocating at most `N` slots whatever
/// length prefix the input claims.
fn bounded_vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for V<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {N} entries")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > N {
                return Err(serde::de::Error::invalid_length(claimed, &self));
            }
            let mut out = Vec::with_capacity(claimed);
            while let Some(v) = seq.next_element()? {
                if out.len() == N {
                    return Err(serde::de::Error::invalid_length(N + 1, &self));
                }
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<T, N>(PhantomData))
}

// ---------------------------------------------------------------------------------------------
// Ids carried on the wire
// ---------------------------------------------------------------------------------------------

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        id_cmp!($name);

        impl $name {
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let n = if f.alternate() { 32 } else { 5 };
                for b in &self.0[..n] {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

hash_id!(
    /// A pub/sub topic: `BLAKE3::derive_key("x0x-rs topic v1", name)`.
    TopicId
);
hash_id!(
    /// A broadcast message: the BLAKE3 hash of its signed body bytes.
    MessageId
);

impl TopicId {
    /// The topic id of a topic name.
    pub fn from_name(name: &str) -> Self {
        Self(blake3::derive_key("x0x-rs topic v1", name.as_bytes()))
    }
}

impl MessageId {
    /// The id of a message whose signed body is `body`.
    pub fn of_body(body: &[u8]) -> Self {
        Self(*blake3::hash(body).as_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// Frame bodies
// ---------------------------------------------------------------------------------------------

/// A machine and the addresses it can be dialled at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The machine.
    pub id: MachineId,
    /// Where to dial it (at most [`MAX_ADDRS_PER_PEER`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}

/// First frame on a connection, sent by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent running on the sending machine.
    pub agent: AgentId,
    /// Addresses the sender listens on (at most [`MAX_ADDRS_PER_PEER`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}

/// HyParView JOIN: the sender wants to enter the overlay through the receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// Where the joiner can be dialled.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_ADDRS_PER_PEER }>")]
    pub addrs: Vec<SocketAddr>,
}

/// HyParView FORWARDJOIN: a join on its random walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardJoin {
    /// The node that joined.
    pub joiner: PeerAddr,
    /// Remaining walk length.
    pub ttl: u8,
}

/// HyParView NEIGHBOR: ask the receiver to add the sender to its active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbor {
    /// High priority: the sender has no active neighbour left and must be accepted.
    pub high_priority: bool,
}

/// HyParView NEIGHBOR reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborReply {
    /// Whether the receiver added the sender to its active view.
    pub accepted: bool,
}

/// HyParView DISCONNECT: the sender dropped the receiver from its active view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// The sender stays online (keep it in the passive view) or is leaving.
    pub alive: bool,
}

/// HyParView SHUFFLE: a sample of the origin's views on a random walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shuffle {
    /// The node that started the shuffle (the reply goes to it).
    pub origin: PeerAddr,
    /// The sample.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_PEERS_PER_FRAME }>")]
    pub peers: Vec<PeerAddr>,
    /// Remaining walk length.
    pub ttl: u8,
}

/// HyParView SHUFFLEREPLY: a sample of the replier's passive view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleReply {
    /// The sample.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_PEERS_PER_FRAME }>")]
    pub peers: Vec<PeerAddr>,
}

/// SWIM PING / ACK: a probe and its answer carry the same sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Probe sequence number, echoed by the ack.
    pub seq: u64,
}

/// SWIM ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The sequence number of the answered probe.
    pub seq: u64,
}

/// SWIM PING-REQ: probe `target` on the sender's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReq {
    /// The suspect.
    pub target: MachineId,
    /// The requester's sequence number, echoed in the answer.
    pub seq: u64,
}

/// SWIM indirect-probe answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReqAck {
    /// The suspect that was probed.
    pub target: MachineId,
    /// The requester's sequence number.
    pub seq: u64,
    /// Whether the target answered.
    pub alive: bool,
}

/// The `depth` of a node that has no place in a topic's tree yet.
pub const NO_DEPTH: u8 = u8::MAX;

/// PlumTree GOSSIP: a message pushed eagerly along the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// The topic.
    pub topic: TopicId,
    /// Hops travelled so far (1 at the publisher's neighbours).
    pub hops: u8,
    /// The root of the sender's tree for the topic (see [`IHave::root`]).
    pub root: u32,
    /// The sender's depth in the topic's tree ([`NO_DEPTH`]: it has none yet).
    pub depth: u8,
    /// The signed message.
    pub message: Signed,
}

/// One entry of an IHAVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHaveEntry {
    /// The message.
    pub id: MessageId,
    /// Hops the message had travelled when the sender received it.
    pub hops: u8,
}

/// PlumTree IHAVE: the sender has these messages of `topic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHave {
    /// The topic.
    pub topic: TopicId,
    /// The root of the sender's tree for the topic: the first four bytes of the root's
    /// [`MachineId`], big-endian (0 when `depth` is [`NO_DEPTH`]).
    pub root: u32,
    /// The sender's depth in the topic's tree ([`NO_DEPTH`]: it has none yet).
    pub depth: u8,
    /// The ids (at most [`MAX_IDS_PER_FRAME`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_IDS_PER_FRAME }>")]
    pub entries: Vec<IHaveEntry>,
}

/// PlumTree GRAFT: send me these messages and push `topic` to me eagerly from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graft {
    /// The topic.
    pub topic: TopicId,
    /// Messages wanted (may be empty: only re-enter the eager set).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_IDS_PER_FRAME }>")]
    pub ids: Vec<MessageId>,
}

/// PlumTree PRUNE: stop pushing `topic` eagerly to the sender; IHAVE is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prune {
    /// The topic.
    pub topic: TopicId,
}

/// The topics the sender carries (subscribes to or relays), replacing any earlier list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// The topics (at most [`MAX_TOPICS_PER_FRAME`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_TOPICS_PER_FRAME }>")]
    pub topics: Vec<TopicId>,
}

/// Discovery: ask a neighbour for its live announcement cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Most records wanted.
    pub max_records: u32,
}

/// What kind of signed record a [`Record`] holds. With the signer's role it fixes the body
/// type and the signature domain: an announcement signed by an agent is an identity
/// announcement, by a machine a machine announcement, by a user a user announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    /// An identity, machine or user announcement (by signer role).
    Announcement,
    /// A rendezvous record (agent-signed).
    Rendezvous,
    /// An agent's ML-KEM-768 key announcement (agent-signed, key not attached).
    KemKey,
}

/// A signed discovery record outside a GOSSIP frame (where the topic says its kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What it is.
    pub kind: RecordKind,
    /// The signed record.
    pub signed: Signed,
}

/// Discovery: signed announcements (identity, machine, user) or rendezvous records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecords {
    /// The records, each verifiable on its own.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_RECORDS_PER_FRAME }>")]
    pub records: Vec<Record>,
}

/// What a query looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum QueryTarget {
    /// The identity announcement of an agent.
    Agent(AgentId),
    /// A live rendezvous record of an agent.
    Rendezvous(AgentId),
}

/// Discovery: an expanding-ring query, answered by any node holding a matching record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Query id, random at the origin; hits carry it back along the reverse path.
    pub id: u64,
    /// What is sought.
    pub target: QueryTarget,
    /// Remaining hops.
    pub ttl: u8,
}

/// Discovery: the answer to a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryHit {
    /// The query id.
    pub id: u64,
    /// Matching signed records.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_RECORDS_PER_HIT }>")]
    pub records: Vec<Record>,
}

/// A walk looking for another carrier of `topic`; the carrier it reaches offers `origin` a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicWalk {
    /// The topic.
    pub topic: TopicId,
    /// The subscriber looking for carriers.
    pub origin: PeerAddr,
    /// Remaining hops.
    pub ttl: u8,
}

/// A topic link offer (`accepted: None`) or its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicLink {
    /// The topic.
    pub topic: TopicId,
    /// `None` in an offer; the answer in a reply.
    pub accepted: Option<bool>,
}

/// A direct message on the connected path ([`crate::direct`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direct {
    /// The envelope.
    pub envelope: crate::direct::DirectEnvelope,
    /// The sender's signed identity announcement, attached until the receiver has
    /// acknowledged a message from this connection, so it can bind the sender agent to the
    /// TLS-proven machine without a lookup.
    pub binding: Option<Signed>,
}

/// The acknowledgement of a direct message: over the connection it came on (connected path)
/// or as the payload of a pub/sub message signed by the recipient (sealed path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectAck {
    /// The acknowledged request.
    pub request_id: crate::direct::RequestId,
    /// The original sender (the ack's addressee).
    pub sender: AgentId,
    /// The recipient (who acknowledges).
    pub recipient: AgentId,
    /// The attempt number being answered (RTT sampling).
    pub attempt: u8,
    /// What the recipient did.
    pub outcome: crate::direct::DirectOutcome,
}

// ---------------------------------------------------------------------------------------------
// Signed content
// ---------------------------------------------------------------------------------------------

/// Signed content: the exact body bytes that were signed, the signer's agent id, its public
/// key when the sender chose to attach it, and the signature.
///
/// Alone, the signature is ML-DSA-65 over `body` for the [`Domain`]
/// ([`crate::identity::signed_message`]) — nothing else. In a batch (`batch` is set) it is
/// over the batch root instead, and `body` is one leaf of the batch ([`BatchProof`]). `body` is
/// the postcard encoding of a typed struct; it is decoded only after the signature verified
/// ([`Signed::open`]). The id of the content is `BLAKE3(body)` ([`MessageId::of_body`]), the same
/// alone or batched.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// The signing key's role and id.
    pub signer: SignerId,
    /// The signer's public key, attached so a receiver that does not know it yet can verify.
    pub signer_key: Option<PublicKey>,
    /// The signed bytes.
    pub body: Bytes,
    /// Where `body` sits in a signed batch, if it was signed as part of one.
    pub batch: Option<Box<BatchProof>>,
    /// The signature over `body`, or over the batch root.
    pub signature: Signature,
}

/// Most bodies one signature covers ([`Signed::sign_batch`] splits larger batches). Bounds
/// the proof to 8 hashes (256 bytes).
pub const MAX_BATCH: usize = 256;

/// The place of one body in a batch signed once (a binary BLAKE3 hash tree over the bodies'
/// [`MessageId`]s).
///
/// A busy publisher signs one root for up to [`MAX_BATCH`] messages instead of one signature
/// each (ML-DSA-65 signing costs 0.1–0.7 ms), and a receiver verifies the signature once per
/// batch and then only folds hashes (design doc, "One signature per message": "a busy
/// publisher amortises it"). Each message still travels and verifies on its own: it carries
/// the signature and the sibling hashes from its leaf to the root.
///
/// The tree: leaves are the message ids `BLAKE3(body)`; an inner node is
/// `BLAKE3::derive_key("x0x-rs/batch-node/v1", left | right)` — a different function from
/// the leaf hash, so a body can never pose as an inner node. At each level the nodes are
/// paired left to right, and an odd last node moves up unchanged (so it has no sibling at that
/// level). The signature covers `Domain::Batch` over
/// `len(domain tag) | domain tag | count (u16 LE) | root` ([`batch_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProof {
    /// The leaf's index, `< count`.
    pub index: u16,
    /// Number of leaves, `2..=MAX_BATCH`.
    pub count: u16,
    /// Sibling hashes from the leaf level up; exactly one per level where the node has one.
    pub path: Vec<[u8; 32]>,
}

const BATCH_NODE_CONTEXT: &str = "x0x-rs/batch-node/v1";

fn batch_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(BATCH_NODE_CONTEXT);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The root of the batch tree over `leaves` and, for each leaf, its sibling path.
fn batch_tree(leaves: &[[u8; 32]]) -> ([u8; 32], Vec<Vec<[u8; 32]>>) {
    let mut paths = vec![Vec::new(); leaves.len()];
    // `members[i]`: the leaves under node `i` of the current level.
    let mut level: Vec<([u8; 32], Vec<usize>)> = leaves
        .iter()
        .enumerate()
        .map(|(i, h)| (*h, vec![i]))
        .collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut it = level.into_iter();
        while let Some((l, mut lm)) = it.next() {
            match it.next() {
                Some((r, rm)) => {
                    for &i in &lm {
                        paths[i].push(r);
                    }
                    for &i in &rm {
                        paths[i].push(l);
                    }
                    lm.extend(rm);
                    next.push((batch_node(&l, &r), lm));
                }
                None => next.push((l, lm)),
            }
        }
        level = next;
    }
    let root = level.first().map(|(h, _)| *h).unwrap_or([0; 32]);
    (root, paths)
}

impl BatchProof {
    /// The root this proof leads to from `leaf`, or `None` when the proof's shape is wrong
    /// (count out of range, index past count, too few or too many hashes).
    pub fn root(&self, leaf: &[u8; 32]) -> Option<[u8; 32]> {
        let count = usize::from(self.count);
        let mut index = usize::from(self.index);
        if !(2..=MAX_BATCH).contains(&count) || index >= count {
            return None;
        }
        let mut width = count;
        let mut hash = *leaf;
        let mut path = self.path.iter();
        while width > 1 {
            let sibling = index ^ 1;
            if sibling < width {
                let s = path.next()?;
                hash = if index & 1 == 0 {
                    batch_node(&hash, s)
                } else {
                    batch_node(s, &hash)
                };
            }
            index /= 2;
            width = width.div_ceil(2);
        }
        path.next().is_none().then_some(hash)
    }
}

/// What a batch signature covers for bodies of `domain`: `len(tag) | tag | count | root`
/// (signed for [`Domain::Batch`]).
pub fn batch_message(domain: Domain, count: u16, root: &[u8; 32]) -> Vec<u8> {
    let ctx = domain.context();
    let mut m = Vec::with_capacity(1 + ctx.len() + 2 + 32);
    m.push(ctx.len() as u8);
    m.extend_from_slice(ctx);
    m.extend_from_slice(&count.to_le_bytes());
    m.extend_from_slice(root);
    m
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("signer", &self.signer)
            .field("has_key", &self.signer_key.is_some())
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// Why [`Signed::open`] refused content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The signature (or the key/id binding) did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The signed bytes are not a valid body.
    #[error("signed body is malformed: {0}")]
    Malformed(String),
}

impl Signed {
    /// Encodes `body` once and signs those bytes with `key` for `domain`.
    pub fn sign<K: SigningKey, T: Serialize>(
        key: &K,
        domain: Domain,
        body: &T,
        attach_key: bool,
    ) -> Self {
        let body = postcard::to_allocvec(body)
            .unwrap_or_else(|_| unreachable!("postcard to Vec cannot fail for plain data"));
        let signature = key.sign(domain, &body);
        Self {
            signer: key.signer_id(),
            signer_key: attach_key.then(|| key.public_key().clone()),
            body: Bytes::from(body),
            batch: None,
            signature,
        }
    }

    /// Signs already-encoded bodies for `domain` with one signature per [`MAX_BATCH`] of them
    /// ([`BatchProof`]); a lone body (or a lone remainder) is signed on its own. The result is
    /// in input order.
    pub fn sign_batch<K: SigningKey>(
        key: &K,
        domain: Domain,
        bodies: Vec<Bytes>,
        attach_key: bool,
    ) -> Vec<Self> {
        let mut out = Vec::with_capacity(bodies.len());
        let signer = key.signer_id();
        let signer_key = attach_key.then(|| key.public_key().clone());
        let mut rest = bodies.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Bytes> = rest.by_ref().take(MAX_BATCH).collect();
            if chunk.len() == 1 {
                for body in chunk {
                    let signature = key.sign(domain, &body);
                    out.push(Self {
                        signer,
                        signer_key: signer_key.clone(),
                        body,
                        batch: None,
                        signature,
                    });
                }
                continue;
            }
            let leaves: Vec<[u8; 32]> = chunk.iter().map(|b| MessageId::of_body(b).0).collect();
            let (root, paths) = batch_tree(&leaves);
            // `chunk.len() <= MAX_BATCH = 256` fits in u16.
            let count = chunk.len() as u16;
            let signature = key.sign(Domain::Batch, &batch_message(domain, count, &root));
            for (i, (body, path)) in chunk.into_iter().zip(paths).enumerate() {
                out.push(Self {
                    signer,
                    signer_key: signer_key.clone(),
                    body,
                    batch: Some(Box::new(BatchProof {
                        index: i as u16,
                        count,
                        path,
                    })),
                    signature: signature.clone(),
                });
            }
        }
        out
    }

    /// The domain and the bytes the signature must verify over when this content is checked
    /// for `domain`: `(domain, body)` alone, `(Domain::Batch, batch message)` in a batch.
    /// A batch proof of the wrong shape is [`VerifyError::BadSignature`].
    pub fn covered(
        &self,
        domain: Domain,
    ) -> Result<(Domain, std::borrow::Cow<'_, [u8]>), VerifyError> {
        match &self.batch {
            None => Ok((domain, std::borrow::Cow::Borrowed(&self.body[..]))),
            Some(proof) => {
                let root = proof.root(&self.id().0).ok_or(VerifyError::BadSignature)?;
                Ok((
                    Domain::Batch,
                    std::borrow::Cow::Owned(batch_message(domain, proof.count, &root)),
                ))
            }
        }
    }

    /// The content id: `BLAKE3(body)`.
    pub fn id(&self) -> MessageId {
        MessageId::of_body(&self.body)
    }

    /// The signing agent, if an agent signed this.
    pub fn agent(&self) -> Option<AgentId> {
        match self.signer {
            SignerId::Agent(a) => Some(a),
            _ => None,
        }
    }

    /// Checks that `key` is the signer's, verifies the signature for `domain`, then decodes the
    /// body. Trailing bytes in the body are refused.
    pub fn open<T: DeserializeOwned>(
        &self,
        key: &PublicKey,
        domain: Domain,
    ) -> Result<T, OpenError> {
        self.signer.verify_key(key)?;
        let (domain, msg) = self.covered(domain)?;
        key.verify(domain, &msg, &self.signature)?;
        self.decode_body()
    }

    /// Decodes the body without checking the signature (for callers that verified it by other
    /// means, e.g. a simulation stand-in). Trailing bytes are refused.
    pub fn decode_body<T: DeserializeOwned>(&self) -> Result<T, OpenError> {
        match postcard::take_from_bytes::<T>(&self.body) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(OpenError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            ))),
            Err(e) => Err(OpenError::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
