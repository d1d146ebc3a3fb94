//! ML-KEM-768 keys and the sealed box used by sealed direct messages.
//!
//! Every agent has an ML-KEM-768 (FIPS 203) keypair **derived from its agent key seed**
//! ([`crate::identity::AgentKeypair::kem_keypair`]), so no extra key file exists and the same
//! agent key always publishes the same KEM key. The public half ([`KemPublicKey`], 1184 bytes)
//! is published in an agent-signed [`crate::announce::KemAnnouncement`] next to the identity announcement.
//!
//! [`seal`] encrypts to a [`KemPublicKey`]: ML-KEM-768 encapsulation gives a fresh 32-byte
//! shared secret; `BLAKE3.derive_key("x0x-rs/direct-seal/v1", secret)` is the
//! ChaCha20-Poly1305 key; the 12-byte nonce is random; the caller's AAD binds the context
//! (for direct messages: sender, recipient, request id and timestamps — docs/protocol.md).
//! The encapsulation randomness comes from the caller's RNG (a node's seeded ChaCha RNG), so a
//! simulation stays deterministic.
//!
//! Failures are typed ([`SealError`]); no input panics.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ml_kem::{Decapsulate, Encapsulate, EncapsulationKey768, KeyExport};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// Length of an encoded ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of the ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the Poly1305 tag appended to every sealed body.
pub const TAG_LEN: usize = 16;
/// Length of the ML-KEM seed (`d || z`, FIPS 203).
pub const KEM_SEED_LEN: usize = 64;

/// Why sealing or opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The public key bytes are not a valid ML-KEM-768 encapsulation key.
    #[error("invalid ML-KEM-768 public key")]
    BadPublicKey,
    /// The KEM ciphertext has the wrong length.
    #[error("KEM ciphertext of wrong length")]
    BadCiphertext,
    /// The AEAD tag did not verify: tampered, wrong key, or wrong AAD.
    #[error("sealed body failed authentication")]
    Tampered,
}

/// An ML-KEM-768 encapsulation key (1184 bytes). Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Arc<[u8; KEM_PUBLIC_KEY_LEN]>);

impl KemPublicKey {
    /// Parses and validates an encoded encapsulation key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let arr: [u8; KEM_PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|_| SealError::BadPublicKey)?;
        // Validate once here (FIPS 203 modulus check), so a bad key is refused on receipt.
        decode_ek(&arr)?;
        Ok(Self(Arc::new(arr)))
    }

    /// The encoded key.
    pub fn as_bytes(&self) -> &[u8; KEM_PUBLIC_KEY_LEN] {
        &self.0
    }

    /// `BLAKE3` of the key, for logs and binding.
    pub fn fingerprint(&self) -> [u8; 32] {
        *blake3::hash(&self.0[..]).as_bytes()
    }
}

fn decode_ek(bytes: &[u8; KEM_PUBLIC_KEY_LEN]) -> Result<EncapsulationKey768, SealError> {
    let key = ml_kem::array::Array::try_from(&bytes[..]).map_err(|_| SealError::BadPublicKey)?;
    EncapsulationKey768::new(&key).map_err(|_| SealError::BadPublicKey)
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp = self.fingerprint();
        write!(
            f,
            "KemPublicKey({:02x}{:02x}{:02x}{:02x})",
            fp[0], fp[1], fp[2], fp[3]
        )
    }
}

impl Serialize for KemPublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0[..])
    }
}

impl<'de> Deserialize<'de> for KemPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KemPublicKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{KEM_PUBLIC_KEY_LEN} bytes of ML-KEM-768 public key")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<KemPublicKey, E> {
                KemPublicKey::from_bytes(v).map_err(E::custom)
            }
            fn visit_borrowed_bytes<E: serde::de::Error>(
                self,
                v: &'de [u8],
            ) -> Result<KemPublicKey, E> {
                self.visit_bytes(v)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// An ML-KEM-768 keypair (its seed and public half). Cheap to clone.
///
/// The expanded decapsulation key is not kept: it is rebuilt from the 64-byte seed for each
/// [`KemKeypair::open`]. Every node holds one of these for its whole life, while sealed
/// messages are the fallback path of direct messaging: keeping the expanded key would cost
/// every node a noticeable share of its idle memory (docs/benchmarks.md), rebuilding it costs
/// one key generation per sealed message opened.
#[derive(Clone)]
pub struct KemKeypair {
    seed: Arc<KemSeed>,
    public: KemPublicKey,
}

/// A KEM seed, wiped when dropped.
struct KemSeed([u8; KEM_SEED_LEN]);

impl Drop for KemSeed {
    fn drop(&mut self) {
        self.0 = [0u8; KEM_SEED_LEN];
    }
}

impl KemKeypair {
    /// Derives the keypair from a 64-byte seed (`d || z`, FIPS 203 `ML-KEM.KeyGen_internal`).
    pub fn from_seed(seed: [u8; KEM_SEED_LEN]) -> Self {
        let dk = ml_kem::DecapsulationKey768::from_seed(seed.into());
        let ek = dk.encapsulation_key().to_bytes();
        let mut arr = [0u8; KEM_PUBLIC_KEY_LEN];
        arr.copy_from_slice(&ek);
        Self {
            seed: Arc::new(KemSeed(seed)),
            public: KemPublicKey(Arc::new(arr)),
        }
    }

    /// The public (encapsulation) key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.public
    }

    /// Opens a box made by [`seal`] for this key with the same `aad`.
    pub fn open(&self, sealed: &SealedBox, aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let dk = ml_kem::DecapsulationKey768::from_seed(self.seed.0.into());
        let ss = dk
            .decapsulate_slice(&sealed.kem_ciphertext)
            .map_err(|_| SealError::BadCiphertext)?;
        let cipher = aead_for(&ss);
        cipher
            .decrypt(
                (&sealed.nonce).into(),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map_err(|_| SealError::Tampered)
    }
}

impl fmt::Debug for KemKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KemKeypair({:?})", self.public)
    }
}

fn aead_for(shared_secret: &[u8]) -> ChaCha20Poly1305 {
    let key = blake3::derive_key("x0x-rs/direct-seal/v1", shared_secret);
    ChaCha20Poly1305::new(&key.into())
}

/// A sealed box: the KEM ciphertext, the AEAD nonce and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// ML-KEM-768 ciphertext ([`KEM_CIPHERTEXT_LEN`] bytes).
    pub kem_ciphertext: Bytes,
    /// ChaCha20-Poly1305 nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Bytes,
}

/// Seals `plaintext` to `recipient` with `aad` authenticated alongside. The KEM randomness and
/// the nonce come from `rng`.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &KemPublicKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    let ek = decode_ek(&recipient.0)?;
    let (ct, ss) = ek.encapsulate_with_rng(rng);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ciphertext = aead_for(&ss)
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Only fails for plaintexts beyond ChaCha20's 256 GiB limit; ours are capped far below.
        .unwrap_or_else(|_| unreachable!("plaintext within the AEAD limit"));
    Ok(SealedBox {
        kem_ciphertext: Bytes::copy_from_slice(&ct),
        nonce,
        ciphertext: Bytes::from(ciphertext),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    #[test]
    fn direct_seal_round_trip_and_tamper_detection() {
        let kp = KemKeypair::from_seed([3; 64]);
        let other = KemKeypair::from_seed([4; 64]);
        let mut rng = ChaCha8Rng::from_seed([1; 32]);
        let sealed = seal(&mut rng, kp.public_key(), b"aad", b"hello").unwrap();
        assert_eq!(sealed.kem_ciphertext.len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(kp.open(&sealed, b"aad").unwrap(), b"hello");
        assert_eq!(kp.open(&sealed, b"other aad"), Err(SealError::Tampered));
        assert_eq!(other.open(&sealed, b"aad"), Err(SealError::Tampered));
        let mut bad = sealed.clone();
        let mut c = bad.ciphertext.to_vec();
        c[0] ^= 1;
        bad.ciphertext = c.into();
        assert_eq!(kp.open(&bad, b"aad"), Err(SealError::Tampered));
        let mut short = sealed;
        short.kem_ciphertext = Bytes::from_static(b"short");
        assert_eq!(kp.open(&short, b"aad"), Err(SealError::BadCiphertext));
        // Public keys round-trip through serde and refuse wrong lengths.
        let enc = postcard::to_allocvec(kp.public_key()).unwrap();
        let dec: KemPublicKey = postcard::from_bytes(&enc).unwrap();
        assert_eq!(&dec, kp.public_key());
        assert!(KemPublicKey::from_bytes(&[0u8; 10]).is_err());
    }

    #[test]
    fn same_seed_same_key() {
        assert_eq!(
            KemKeypair::from_seed([9; 64]).public_key(),
            KemKeypair::from_seed([9; 64]).public_key()
        );
    }
}
