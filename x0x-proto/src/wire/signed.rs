//! Signed content ([`Signed`]): the exact signed bytes with their signature, alone or as one
//! leaf of a batch signed once ([`BatchProof`]); [`MessageId`], the id of signed content.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::identity::{
    AgentId, Domain, KeyDecodeError, PublicKey, Signature, SignerId, SigningKey, VerifyError,
};
use crate::util::ids::{id_cmp, id_fmt};

/// The id of signed content (a broadcast message, a record): the BLAKE3 hash of its signed
/// body bytes, the same alone or batched.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 32]);

id_cmp!(MessageId);
id_fmt!(MessageId);

impl MessageId {
    /// The id of a message whose signed body is `body`.
    pub fn of_body(body: &[u8]) -> Self {
        Self(*blake3::hash(body).as_bytes())
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

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
/// each (an ML-DSA-65 signature costs far more than hashing), and a receiver verifies the
/// signature once per batch and then only folds hashes. Each message still travels and verifies on its own: it carries
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
pub(super) fn batch_tree(leaves: &[[u8; 32]]) -> ([u8; 32], Vec<Vec<[u8; 32]>>) {
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
#[non_exhaustive]
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
    pub fn covered(&self, domain: Domain) -> Result<(Domain, Cow<'_, [u8]>), VerifyError> {
        match &self.batch {
            None => Ok((domain, Cow::Borrowed(&self.body[..]))),
            Some(proof) => {
                let root = proof.root(&self.id().0).ok_or(VerifyError::BadSignature)?;
                Ok((
                    Domain::Batch,
                    Cow::Owned(batch_message(domain, proof.count, &root)),
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

/// [`Signed`]'s layout, borrowing its body and signature (from a frame decoded in place).
#[derive(Deserialize)]
pub(super) struct SignedRef<'a> {
    signer: SignerId,
    signer_key: Option<PublicKey>,
    body: &'a [u8],
    batch: Option<Box<BatchProof>>,
    signature: &'a [u8],
}

impl SignedRef<'_> {
    /// The content, its body and signature slices of `src`, the buffer it was decoded from.
    /// Refuses a signature of the wrong length.
    pub(super) fn into_shared(self, src: &Bytes) -> Result<Signed, KeyDecodeError> {
        // Both slices were borrowed from `src`, so `slice_ref` cannot panic.
        let signature = Signature::from_shared(src.slice_ref(self.signature))?;
        Ok(Signed {
            signer: self.signer,
            signer_key: self.signer_key,
            body: src.slice_ref(self.body),
            batch: self.batch,
            signature,
        })
    }
}
