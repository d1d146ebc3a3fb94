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
//!
//! This file holds the frame table ([`FrameKind`], [`Frame`]) and the codec; the frame bodies
//! live by family, all re-exported here: `transport` ([`Hello`], [`PeerAddr`]), `membership`
//! (HyParView and SWIM), `broadcast` (PlumTree and topics), `discovery`, `direct`, `presence`,
//! `nat`, `collab` (anti-entropy of replicated stores), and
//! `signed` ([`Signed`], batch signatures, [`MessageId`]).

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

mod broadcast;
mod collab;
mod direct;
mod discovery;
mod membership;
mod nat;
mod presence;
mod signed;
#[cfg(test)]
mod tests;
mod transport;

pub use broadcast::{
    Gossip, Graft, IHave, IHaveEntry, Interest, NO_DEPTH, Prune, TopicId, TopicLink, TopicWalk,
};
pub use collab::{CollabBatches, CollabHeads, MAX_BATCHES_PER_FRAME};
pub use direct::{Direct, DirectAck};
pub use discovery::{Query, QueryHit, QueryTarget, Record, RecordKind, SyncRecords, SyncRequest};
pub use membership::{
    Ack, Disconnect, ForwardJoin, Join, Neighbor, NeighborReply, Ping, PingReq, PingReqAck,
    Shuffle, ShuffleReply,
};
pub use nat::{Observed, PunchNotify, PunchRequest};
pub use presence::{Beacon, MAX_PRESENCE_RECORDS, PresenceAnswer, PresenceQuery, PresenceRecord};
pub use signed::{BatchProof, MAX_BATCH, MessageId, OpenError, Signed, batch_message};
pub use transport::{Hello, PeerAddr};

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
#[non_exhaustive]
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
#[non_exhaustive]
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
    /// Right after `Hello`: the address the sender sees the receiver at.
    Observed = 0x02, MAX_CONTROL_FRAME_LEN;
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
    /// PlumTree: ids of messages the sender has (lazy push), and its place in the tree.
    IHave = 0x21, 64 * 1024;
    /// PlumTree: send me these messages (a pull), or, without ids, take me as your child in
    /// the topic's tree.
    Graft = 0x22, 64 * 1024;
    /// PlumTree: this link is no longer a tree link; stop pushing the topic over it.
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
    /// Presence: the sender machine's signed record (point to point).
    Beacon = 0x50, MAX_CONTROL_FRAME_LEN;
    /// Presence: a friend-of-a-friend query.
    PresenceQuery = 0x51, MAX_CONTROL_FRAME_LEN;
    /// Presence: live records for a query, routed back along its path.
    PresenceAnswer = 0x52, MAX_FRAME_LEN;
    /// NAT traversal: ask a common peer to have the target dial the sender.
    PunchRequest = 0x60, MAX_CONTROL_FRAME_LEN;
    /// NAT traversal: a machine is dialling you; dial it now.
    PunchNotify = 0x61, MAX_CONTROL_FRAME_LEN;
    /// Replicated stores: the sender's heads of a store (anti-entropy).
    CollabHeads = 0x70, 64 * 1024;
    /// Replicated stores: signed batches of changes the receiver lacks.
    CollabBatches = 0x71, MAX_FRAME_LEN;
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
            (FrameKind::Gossip, Some(src)) => {
                broadcast::decode_gossip_shared(src, body).map(Self::Gossip)?
            }
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
