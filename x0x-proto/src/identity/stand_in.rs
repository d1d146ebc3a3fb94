//! Simulation stand-in keys and signatures (feature `stand-in-crypto`).
//!
//! Real ML-DSA-65 key generation and verification cost far more per message than a many-node
//! simulation can afford. A stand-in key is 1952 bytes starting with [`MARKER`]; its
//! "signature" is 3309 bytes whose first 32 are a keyed BLAKE3 MAC over the domain and
//! message, so sizes on the wire stay realistic. Anyone can compute it from the public key:
//! it proves nothing, and production verification ([`PublicKey::verify`]) refuses it. A
//! `Node` accepts stand-ins only when its config says so explicitly.

use super::{Domain, PUBLIC_KEY_LEN, PublicKey, SEED_LEN, SIGNATURE_LEN, Signature, VerifyError};

/// First bytes of every stand-in public key.
pub const MARKER: &[u8; 16] = b"x0x-rs-STAND-IN\0";

/// The stand-in public key of `seed`: [`MARKER`], then bytes derived from the seed.
pub(super) fn public_key(seed: &[u8; SEED_LEN]) -> PublicKey {
    let mut pk = [0u8; PUBLIC_KEY_LEN];
    pk[..16].copy_from_slice(MARKER);
    blake3::Hasher::new_derive_key("x0x-rs stand-in public key v1")
        .update(seed)
        .finalize_xof()
        .fill(&mut pk[16..]);
    PublicKey::from_array(pk)
}

/// A 32-byte keyed BLAKE3 MAC; the rest of the 3309 bytes are zero (sizes stay real,
/// verification stays cheap).
fn expected(key: &PublicKey, domain: Domain, msg: &[u8]) -> [u8; 32] {
    let k = key
        .stand_in_key()
        .get_or_init(|| blake3::derive_key("x0x-rs stand-in signature v1", &key.as_bytes()[..]));
    *blake3::Hasher::new_keyed(k)
        .update(&[domain.context().len() as u8])
        .update(domain.context())
        .update(msg)
        .finalize()
        .as_bytes()
}

pub(super) fn sign(key: &PublicKey, domain: Domain, msg: &[u8]) -> Signature {
    let mut out = vec![0u8; SIGNATURE_LEN];
    out[..32].copy_from_slice(&expected(key, domain, msg));
    Signature(out.into())
}

/// Whether `key` is a stand-in key.
pub fn is_stand_in(key: &PublicKey) -> bool {
    key.as_bytes().starts_with(MARKER)
}

/// Verifies a stand-in signature. Refuses non-stand-in keys.
pub fn verify(
    key: &PublicKey,
    domain: Domain,
    msg: &[u8],
    sig: &Signature,
) -> Result<(), VerifyError> {
    let (mac, rest) = sig.as_bytes().split_at(32);
    if is_stand_in(key) && mac == expected(key, domain, msg) && rest.iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}
