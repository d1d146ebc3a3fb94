//! Signature verification with two caches: decoded agent keys, so a repeated author verifies
//! without decoding its key again, and verified batch roots, so the members of a batch after
//! the first verify by hashing alone.

use super::{Config, Node, NodeStats, TableSize};
use crate::announce::RejectReason;
use crate::identity::{AgentId, Domain, PublicKey, SignerId};
use crate::util::fifo::Fifo;
use crate::wire;

/// The node's signature verifier and its key and batch-root caches.
#[derive(Debug)]
pub(super) struct Verifier {
    /// Decoded keys by signer ([`Config::key_cache_capacity`], oldest evicted).
    keys: Fifo<SignerId, PublicKey>,
    /// Batch roots whose signature verified, by signer and `BLAKE3(batch message)`
    /// ([`Config::batch_cache_capacity`], oldest evicted).
    batch_roots: Fifo<(SignerId, [u8; 32]), ()>,
    /// Whether simulation stand-in signatures are accepted.
    #[cfg(feature = "stand-in-crypto")]
    allow_stand_in: bool,
}

impl Verifier {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            keys: Fifo::new(config.key_cache_capacity),
            batch_roots: Fifo::new(config.batch_cache_capacity),
            #[cfg(feature = "stand-in-crypto")]
            allow_stand_in: config.allow_stand_in_signatures,
        }
    }

    /// Verifies `signed` for `domain` with its attached key, the cached key of its signer, or
    /// for an agent that sent none (a KEM announcement) the key `known` gives (the agent's
    /// identity announcement); then caches the key. Counts batch-root hits and evictions.
    pub(super) fn verify(
        &mut self,
        signed: &wire::Signed,
        domain: Domain,
        known: impl FnOnce(&AgentId) -> Option<PublicKey>,
        stats: &mut NodeStats,
    ) -> Result<PublicKey, RejectReason> {
        let key = match (self.keys.get(&signed.signer), &signed.signer_key) {
            (Some(k), _) => k.clone(),
            (None, Some(k)) => k.clone(),
            (None, None) => match signed.signer {
                SignerId::Agent(a) => known(&a).ok_or(RejectReason::UnknownKey)?,
                _ => return Err(RejectReason::UnknownKey),
            },
        };
        if signed.signer.verify_key(&key).is_err() {
            return Err(RejectReason::KeyMismatch);
        }
        let (domain, msg) = signed
            .covered(domain)
            .map_err(|_| RejectReason::BadSignature)?;
        // A batch member whose root already verified needs no second ML-DSA verification:
        // the root binds every member, and the proof just led this body to it.
        let root_key = signed
            .batch
            .is_some()
            .then(|| (signed.signer, *blake3::hash(&msg).as_bytes()));
        if let Some(k) = &root_key
            && self.batch_roots.contains_key(k)
        {
            stats.batch_root_hits += 1;
            return Ok(key);
        }
        self.check(&key, domain, &msg, &signed.signature)?;
        if !self.keys.contains_key(&signed.signer) {
            self.keys.push(signed.signer, key.clone());
        }
        if let Some(k) = root_key
            && self.batch_roots.push(k, ()).is_some()
        {
            stats.batch_roots_evicted += 1;
        }
        Ok(key)
    }

    /// Verifies `signed` for `domain` with `key` alone, leaving both caches as they are: for
    /// content whose key the caller keeps itself (a connected peer's presence beacons), so a
    /// stream of one-off signers cannot fill the key cache with decoded keys.
    pub(super) fn verify_with(
        &self,
        signed: &wire::Signed,
        domain: Domain,
        key: &PublicKey,
    ) -> Result<(), RejectReason> {
        if signed.signer.verify_key(key).is_err() {
            return Err(RejectReason::KeyMismatch);
        }
        let (domain, msg) = signed
            .covered(domain)
            .map_err(|_| RejectReason::BadSignature)?;
        self.check(key, domain, &msg, &signed.signature)
    }

    /// The signature check itself (a stand-in one where the simulation allows it).
    fn check(
        &self,
        key: &PublicKey,
        domain: Domain,
        msg: &[u8],
        signature: &crate::identity::Signature,
    ) -> Result<(), RejectReason> {
        let ok = {
            #[cfg(feature = "stand-in-crypto")]
            {
                if self.allow_stand_in && crate::identity::stand_in::is_stand_in(key) {
                    crate::identity::stand_in::verify(key, domain, msg, signature)
                } else {
                    key.verify(domain, msg, signature)
                }
            }
            #[cfg(not(feature = "stand-in-crypto"))]
            {
                key.verify(domain, msg, signature)
            }
        };
        ok.map_err(|_| RejectReason::BadSignature)
    }

    /// Points a verified message's attached key at the key cache's copy. The broadcast cache
    /// keeps every message it may relay, key included: without this each cached message would
    /// hold its own copy of its publisher's key, where one copy per publisher is shared.
    pub(super) fn share_key(&self, signed: &mut wire::Signed) {
        if signed.signer_key.is_some()
            && let Some(k) = self.keys.get(&signed.signer)
        {
            signed.signer_key = Some(k.clone());
        }
    }

    /// Both caches, for [`Node::table_sizes`].
    pub(super) fn table_sizes(&self, config: &Config, out: &mut Vec<TableSize>) {
        out.extend([
            TableSize::new("key cache", self.keys.len(), config.key_cache_capacity),
            TableSize::new(
                "batch root cache",
                self.batch_roots.len(),
                config.batch_cache_capacity,
            ),
        ]);
    }
}

impl Node {
    /// Verifies `signed` for `domain` (see [`Verifier::verify`]); an agent that sent no key is
    /// looked up in the discovery cache.
    pub(super) fn verify(
        &mut self,
        signed: &wire::Signed,
        domain: Domain,
    ) -> Result<PublicKey, RejectReason> {
        let discovery = &self.discovery;
        self.verifier
            .verify(signed, domain, |a| discovery.agent_key(a), &mut self.stats)
    }
}
