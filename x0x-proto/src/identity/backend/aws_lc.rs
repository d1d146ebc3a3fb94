//! The aws-lc-rs backend (feature `aws-lc-rs`): verification, and hedged signing for keypairs
//! made with `with_fast_signing`. Deterministic signing stays with RustCrypto
//! ([`super::ml_dsa::Signer`]): aws-lc-rs signs only hedged.

use std::sync::OnceLock;

use aws_lc_rs::signature::{ML_DSA_65, ML_DSA_65_SIGNING, ParsedPublicKey, PqdsaKeyPair};
use bytes::Bytes;

use super::ml_dsa;
use crate::identity::{PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN};

/// A public key parsed by aws-lc, or `None` if aws-lc refused the encoding.
pub(crate) struct VerifyingKey(Option<ParsedPublicKey>);

/// A signature of the right length (aws-lc checks the rest while verifying).
pub(crate) struct ParsedSignature<'a>(&'a [u8]);

impl<'a> ParsedSignature<'a> {
    /// `sig`, or `None` when it has the wrong length.
    pub(crate) fn parse(sig: &'a [u8]) -> Option<Self> {
        (sig.len() == SIGNATURE_LEN).then_some(Self(sig))
    }
}

impl VerifyingKey {
    /// Parses an encoded public key. Every 1952-byte string is a valid encoding, so parsing
    /// does not fail in practice; if aws-lc ever refuses one, no signature verifies under it.
    pub(crate) fn decode(bytes: &[u8; PUBLIC_KEY_LEN]) -> Self {
        Self(ParsedPublicKey::new(&ML_DSA_65, &bytes[..]).ok())
    }

    /// Whether `sig` is a pure ML-DSA-65 signature with an empty context over `msg`.
    pub(crate) fn verify(&self, msg: &[u8], sig: &ParsedSignature<'_>) -> bool {
        self.0
            .as_ref()
            .is_some_and(|key| key.verify_sig(msg, sig.0).is_ok())
    }
}

/// The signing state of one keypair: RustCrypto's deterministic signer, and for a keypair made
/// with `with_fast_signing` the aws-lc key pair, built from the seed on the first signature
/// and kept.
pub(crate) struct Signer {
    deterministic: ml_dsa::Signer,
    fast: Option<OnceLock<Option<PqdsaKeyPair>>>,
}

impl Signer {
    /// A signer that makes deterministic signatures (through RustCrypto).
    pub(crate) fn deterministic() -> Self {
        Self {
            deterministic: ml_dsa::Signer::deterministic(),
            fast: None,
        }
    }

    /// A signer that makes hedged signatures through aws-lc-rs.
    pub(crate) fn fast() -> Self {
        Self {
            deterministic: ml_dsa::Signer::deterministic(),
            fast: Some(OnceLock::new()),
        }
    }

    /// Signs `msg` with pure ML-DSA-65 and an empty context: hedged for a fast signer,
    /// deterministic otherwise.
    pub(crate) fn sign(&self, seed: &[u8; SEED_LEN], msg: &[u8]) -> Bytes {
        if let Some(fast) = &self.fast {
            let key = fast.get_or_init(|| PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, seed).ok());
            let mut out = vec![0u8; SIGNATURE_LEN];
            // aws-lc accepts every 32-byte seed, and signing into a buffer of the right size
            // does not fail; should either ever happen, the deterministic path below makes a
            // signature every verifier accepts.
            if let Some(k) = key
                && k.sign(msg, &mut out).is_ok()
            {
                return out.into();
            }
        }
        self.deterministic.sign(seed, msg)
    }
}
