//! Broadcast frames: PlumTree (GOSSIP, IHAVE, GRAFT, PRUNE) with each sender's place in the
//! topic's tree, and the topic layer (INTEREST, TOPICWALK, TOPICLINK); [`TopicId`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::signed::SignedRef;
use super::{
    DecodeError, FrameKind, MAX_IDS_PER_FRAME, MAX_TOPICS_PER_FRAME, MessageId, PeerAddr, Signed,
    bounded_vec, decode_exact,
};
use crate::util::ids::{id_cmp, id_fmt};

/// A pub/sub topic: `BLAKE3::derive_key("x0x-rs topic v1", name)`.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct TopicId(pub [u8; 32]);

id_cmp!(TopicId);
id_fmt!(TopicId);

impl TopicId {
    /// The topic id of a topic name.
    pub fn from_name(name: &str) -> Self {
        Self(blake3::derive_key("x0x-rs topic v1", name.as_bytes()))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
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

/// PlumTree IHAVE: the sender has these messages of `topic`. Without entries it only
/// announces the sender's place in the topic's tree (after the place changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IHave {
    /// The topic.
    pub topic: TopicId,
    /// The root of the sender's tree for the topic: the first four bytes of the root's
    /// [`MachineId`](crate::identity::MachineId), big-endian (0 when `depth` is [`NO_DEPTH`]).
    pub root: u32,
    /// The sender's depth in the topic's tree ([`NO_DEPTH`]: it has none yet).
    pub depth: u8,
    /// The ids (at most [`MAX_IDS_PER_FRAME`]).
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_IDS_PER_FRAME }>")]
    pub entries: Vec<IHaveEntry>,
}

/// PlumTree GRAFT, in one of two forms (docs/protocol.md, "The depth rule").
///
/// * With ids, a pull: the receiver sends the messages it still has; the link stays what it
///   was (a GRAFT does not make the sender eager).
/// * Without ids, an attach: the sender moves below the receiver in `topic`'s tree, so the
///   receiver counts it as a child and pushes to it eagerly from now on. If the sender is the
///   receiver's own parent, neither link can be a tree link: the receiver lets go of it and
///   PRUNEs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graft {
    /// The topic.
    pub topic: TopicId,
    /// Messages wanted (at most [`MAX_IDS_PER_FRAME`]); empty in an attaching GRAFT.
    #[serde(deserialize_with = "bounded_vec::<_, _, { MAX_IDS_PER_FRAME }>")]
    pub ids: Vec<MessageId>,
}

/// PlumTree PRUNE: the link is no longer a tree link. The receiver stops pushing `topic`
/// eagerly to the sender (IHAVE is enough) and no longer counts it as a child, or as its
/// parent.
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

/// A GOSSIP body whose message body and signature are slices of `src`, the whole frame.
pub(super) fn decode_gossip_shared(src: &Bytes, body: &[u8]) -> Result<Gossip, DecodeError> {
    let kind = FrameKind::Gossip;
    let g: GossipRef<'_> = decode_exact(kind, body)?;
    let message = g
        .message
        .into_shared(src)
        .map_err(|e| DecodeError::Malformed {
            kind,
            reason: e.to_string(),
        })?;
    Ok(Gossip {
        topic: g.topic,
        hops: g.hops,
        root: g.root,
        depth: g.depth,
        message,
    })
}
