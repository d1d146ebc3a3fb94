//! The RustCrypto `ml-dsa` backend: pure Rust, deterministic signatures.
//!
//! Key generation, deterministic signing and SubjectPublicKeyInfo handling are used in every
//! build; `VerifyingKey` and `ParsedSignature` only without the `aws-lc-rs` feature (they stay
//! compiled, so the pure-Rust verifier is type-checked in both builds).

use std::sync::OnceLock;

use bytes::Bytes;
use ml_dsa::{EncodedVerifyingKey, ExpandedSigningKey, MlDsa65};

use crate::identity::{PUBLIC_KEY_LEN, SEED_LEN};

/// The public key of the keypair derived from `seed` (FIPS 204 `ML-DSA.KeyGen_internal`).
pub(crate) fn public_key(seed: &[u8; SEED_LEN]) -> [u8; PUBLIC_KEY_LEN] {
    // The expanded key is dropped after key generation; a signer rebuilds it on its first
    // signature (see `Signer`).
    let esk = ExpandedSigningKey::<MlDsa65>::from_seed(&(*seed).into());
    let enc = esk.verifying_key().encode();
    let mut arr = [0u8; PUBLIC_KEY_LEN];
    arr.copy_from_slice(enc.as_slice());
    arr
}

/// A decoded ML-DSA-65 public key (the matrix A expanded), ready to verify.
#[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
pub(crate) struct VerifyingKey(ml_dsa::VerifyingKey<MlDsa65>);

/// A decoded ML-DSA-65 signature.
#[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
pub(crate) struct ParsedSignature(ml_dsa::Signature<MlDsa65>);

#[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
impl ParsedSignature {
    /// Decodes `sig`, or `None` when it is no ML-DSA-65 signature.
    pub(crate) fn parse(sig: &[u8]) -> Option<Self> {
        ml_dsa::Signature::<MlDsa65>::try_from(sig).ok().map(Self)
    }
}

#[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
impl VerifyingKey {
    /// Decodes an encoded public key. Infallible: every bit pattern of the right length
    /// decodes (t1 coefficients are 10-bit packed, all values valid).
    pub(crate) fn decode(bytes: &[u8; PUBLIC_KEY_LEN]) -> Self {
        let enc = EncodedVerifyingKey::<MlDsa65>::try_from(&bytes[..])
            .unwrap_or_else(|_| unreachable!("the length is fixed by the type"));
        Self(ml_dsa::VerifyingKey::decode(&enc))
    }

    /// Whether `sig` is a pure ML-DSA-65 signature with an empty context over `msg`.
    pub(crate) fn verify(&self, msg: &[u8], sig: &ParsedSignature) -> bool {
        self.0.verify_with_context(msg, b"", &sig.0)
    }
}

/// The signing state of one keypair: the expanded signing key, built on the first signature
/// (most keys in a simulation never sign) and kept (expanding costs about a key generation).
pub(crate) struct Signer {
    expanded: OnceLock<Box<ExpandedSigningKey<MlDsa65>>>,
}

impl Signer {
    /// A signer that makes deterministic signatures.
    pub(crate) fn deterministic() -> Self {
        Self {
            expanded: OnceLock::new(),
        }
    }

    /// Signs `msg` with pure ML-DSA-65, an empty context and no randomness.
    pub(crate) fn sign(&self, seed: &[u8; SEED_LEN], msg: &[u8]) -> Bytes {
        let esk = self
            .expanded
            .get_or_init(|| Box::new(ExpandedSigningKey::<MlDsa65>::from_seed(&(*seed).into())));
        // Only fails for a context longer than 255 bytes; ours is empty.
        let sig = esk
            .sign_deterministic(msg, b"")
            .unwrap_or_else(|_| unreachable!("the empty context is < 255 bytes"));
        Bytes::copy_from_slice(sig.encode().as_slice())
    }
}

/// The DER SubjectPublicKeyInfo (`id-ml-dsa-65`, no parameters) of an encoded key.
pub(crate) fn spki_der(key: &[u8; PUBLIC_KEY_LEN]) -> Vec<u8> {
    use ml_dsa::pkcs8::der::Encode;
    use ml_dsa::pkcs8::der::asn1::BitStringRef;
    use ml_dsa::pkcs8::spki::{AssociatedAlgorithmIdentifier, SubjectPublicKeyInfo};
    let spki = SubjectPublicKeyInfo {
        algorithm: MlDsa65::ALGORITHM_IDENTIFIER,
        subject_public_key: BitStringRef::new(0, &key[..])
            .unwrap_or_else(|_| unreachable!("a byte-aligned bit string is always valid")),
    };
    spki.to_der()
        .unwrap_or_else(|_| unreachable!("a 1952-byte SPKI always encodes"))
}

/// The key bytes of a DER SubjectPublicKeyInfo holding an ML-DSA-65 key, or `None` when `der`
/// is not one (the length is checked by the caller).
pub(crate) fn spki_public_key(der: &[u8]) -> Option<&[u8]> {
    use ml_dsa::pkcs8::der::Decode;
    use ml_dsa::pkcs8::spki::{AssociatedAlgorithmIdentifier, SubjectPublicKeyInfoRef};
    let spki = SubjectPublicKeyInfoRef::from_der(der).ok()?;
    if spki.algorithm.oid != MlDsa65::ALGORITHM_IDENTIFIER.oid
        || spki.algorithm.parameters.is_some()
    {
        return None;
    }
    spki.subject_public_key.as_bytes()
}
