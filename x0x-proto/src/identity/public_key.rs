//! [`PublicKey`] (with the decoded form cached inside, and the TLS 1.3 support of machine keys)
//! and [`Signature`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::backend::{self, ParsedSignature, VerifyingKey};
use super::{
    Domain, ID_LEN, KeyDecodeError, PUBLIC_KEY_LEN, Role, SIGNATURE_LEN, VerifyError,
    signed_message,
};
use crate::util::ids::write_hex;

struct PublicKeyInner {
    bytes: Box<[u8; PUBLIC_KEY_LEN]>,
    /// Decoded on first verification and kept: decoding costs about a verification.
    decoded: OnceLock<VerifyingKey>,
    /// The id for each role, hashed once: ids are compared on every message, and hashing the
    /// whole key each time would cost more than the comparison.
    ids: [OnceLock<[u8; ID_LEN]>; 3],
    /// Stand-in MAC key, derived once.
    #[cfg(feature = "stand-in-crypto")]
    stand_in_key: OnceLock<[u8; 32]>,
}

impl PublicKeyInner {
    fn new(bytes: Box<[u8; PUBLIC_KEY_LEN]>) -> Self {
        Self {
            bytes,
            decoded: OnceLock::new(),
            ids: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
            #[cfg(feature = "stand-in-crypto")]
            stand_in_key: OnceLock::new(),
        }
    }
}

/// An ML-DSA-65 public key in its 1952-byte encoding.
///
/// Cheap to clone (shared). The decoded form needed for verification is computed once, on the
/// first [`PublicKey::verify`], and cached inside the key, so a key kept in a cache verifies at
/// the warm cost from then on.
#[derive(Clone)]
pub struct PublicKey(Arc<PublicKeyInner>);

impl PublicKey {
    /// Wraps an encoded public key. Only the length is checked here; every 1952-byte string is
    /// a valid ML-DSA-65 encoding, and a wrong key simply fails to verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KeyDecodeError::Length {
            expected: PUBLIC_KEY_LEN,
            got: bytes.len(),
        })?;
        Ok(Self::from_array(arr))
    }

    /// Wraps an encoded public key of the right length.
    pub(super) fn from_array(arr: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(Arc::new(PublicKeyInner::new(Box::new(arr))))
    }

    /// The 1952-byte encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0.bytes
    }

    /// Whether the decoded form is already cached (a verification will be warm).
    pub fn is_decoded(&self) -> bool {
        self.0.decoded.get().is_some()
    }

    /// Verifies a pure ML-DSA-65 signature with an empty context over `msg`: the one primitive
    /// every protocol and TLS verification goes through. A signature that cannot be one is
    /// refused before the key is decoded.
    fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let Some(sig) = ParsedSignature::parse(sig) else {
            return Err(VerifyError::BadSignature);
        };
        let key = self
            .0
            .decoded
            .get_or_init(|| VerifyingKey::decode(&self.0.bytes));
        if key.verify(msg, &sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// The id of this key in `role`, hashed once per role.
    pub(super) fn id_bytes(&self, role: Role) -> [u8; ID_LEN] {
        *self.0.ids[usize::from(role.tag() - 1)]
            .get_or_init(|| blake3::derive_key(role.id_context(), &self.0.bytes[..]))
    }

    /// The cell for the stand-in MAC key ([`super::stand_in`]), derived once per key.
    #[cfg(feature = "stand-in-crypto")]
    pub(super) fn stand_in_key(&self) -> &OnceLock<[u8; 32]> {
        &self.0.stand_in_key
    }

    /// Verifies `sig` over `msg` for `domain`.
    pub fn verify(&self, domain: Domain, msg: &[u8], sig: &Signature) -> Result<(), VerifyError> {
        self.verify_raw(&signed_message(domain, msg), &sig.0)
    }
}

/// TLS 1.3 support: the machine key is the QUIC endpoint's raw public key (RFC 7250).
///
/// TLS signs its handshake transcript with *pure ML-DSA and an empty context* (the
/// `mldsa65` signature scheme, 0x0905); the certificate is the key's SubjectPublicKeyInfo.
impl PublicKey {
    /// The DER SubjectPublicKeyInfo (`id-ml-dsa-65`, no parameters) of this key.
    pub fn to_spki_der(&self) -> Vec<u8> {
        backend::spki_der(&self.0.bytes)
    }

    /// Parses a DER SubjectPublicKeyInfo holding an ML-DSA-65 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyDecodeError> {
        Self::from_bytes(backend::spki_public_key(der).ok_or(KeyDecodeError::BadSpki)?)
    }

    /// Verifies a TLS 1.3 handshake signature (pure ML-DSA-65, empty context).
    pub fn verify_tls13(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        self.verify_raw(msg, sig)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.bytes == other.0.bytes
    }
}
impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        write_hex(f, &blake3::hash(&self.0.bytes[..]).as_bytes()[..5])?;
        write!(f, "…)")
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.bytes[..])
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(FixedBytesVisitor::<PUBLIC_KEY_LEN>)
            .and_then(|v| Self::from_bytes(&v).map_err(serde::de::Error::custom))
    }
}

/// An ML-DSA-65 signature (exactly [`SIGNATURE_LEN`] bytes).
///
/// Shared on clone: a verified record is kept by the broadcast cache and the discovery caches
/// at once, and a copy per cache would add up.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(pub(super) Bytes);

impl Signature {
    /// Wraps an encoded signature, checking only its length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        Self::check_len(bytes.len())?;
        Ok(Self(Bytes::copy_from_slice(bytes)))
    }

    /// Wraps a shared buffer (e.g. a slice of a received frame) without copying it.
    pub(crate) fn from_shared(bytes: Bytes) -> Result<Self, KeyDecodeError> {
        Self::check_len(bytes.len())?;
        Ok(Self(bytes))
    }

    fn check_len(len: usize) -> Result<(), KeyDecodeError> {
        if len != SIGNATURE_LEN {
            return Err(KeyDecodeError::Length {
                expected: SIGNATURE_LEN,
                got: len,
            });
        }
        Ok(())
    }

    /// The encoded signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        write_hex(f, &blake3::hash(&self.0).as_bytes()[..5])?;
        write!(f, "…)")
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(FixedBytesVisitor::<SIGNATURE_LEN>)
            .and_then(|v| Self::from_bytes(&v).map_err(serde::de::Error::custom))
    }
}

/// Accepts a byte string of exactly `N` bytes without allocating for any other length.
struct FixedBytesVisitor<const N: usize>;

impl<'de, const N: usize> serde::de::Visitor<'de> for FixedBytesVisitor<N> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a byte string of {N} bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        if v.len() != N {
            return Err(E::invalid_length(v.len(), &self));
        }
        Ok(v.to_vec())
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.visit_bytes(v)
    }
}

#[cfg(test)]
mod tests {
    use ml_dsa::{ExpandedSigningKey, MlDsa65};
    use proptest::prelude::*;

    use super::*;
    use crate::identity::test_seed as seed;
    use crate::identity::{AgentKeypair, MachineKeypair, SIGNED_MESSAGE_TAG};

    #[test]
    fn sign_verify_and_domain_separation() {
        let k = AgentKeypair::from_seed(seed(5));
        let sig = k.sign(Domain::PubSubMessage, b"hello");
        assert_eq!(sig.as_bytes().len(), SIGNATURE_LEN);
        k.public_key()
            .verify(Domain::PubSubMessage, b"hello", &sig)
            .unwrap();
        assert_eq!(
            k.public_key().verify(Domain::DirectMessage, b"hello", &sig),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            k.public_key().verify(Domain::PubSubMessage, b"hellp", &sig),
            Err(VerifyError::BadSignature)
        );
        let other = AgentKeypair::from_seed(seed(6));
        assert_eq!(
            other
                .public_key()
                .verify(Domain::PubSubMessage, b"hello", &sig),
            Err(VerifyError::BadSignature)
        );
    }

    /// The wire format names pure ML-DSA-65 with an empty context over [`signed_message`]:
    /// check it against RustCrypto called directly, whichever backend this build uses, so the
    /// two backends interoperate.
    #[test]
    fn signatures_are_pure_ml_dsa_over_the_tagged_message() {
        let s = seed(9);
        let k = AgentKeypair::from_seed(s);
        let esk = ExpandedSigningKey::<MlDsa65>::from_seed(&s.into());
        let vk = esk.verifying_key();
        let m = signed_message(Domain::PubSubMessage, b"payload");
        assert!(m.starts_with(SIGNED_MESSAGE_TAG));
        // Ours verifies under RustCrypto.
        let ours = k.sign(Domain::PubSubMessage, b"payload");
        let ours = ml_dsa::Signature::<MlDsa65>::try_from(ours.as_bytes()).unwrap();
        assert!(vk.verify_with_context(&m, b"", &ours));
        assert!(!vk.verify_with_context(&m, Domain::PubSubMessage.context(), &ours));
        // RustCrypto's verifies under ours.
        let theirs = esk.sign_deterministic(&m, b"").unwrap();
        let theirs = Signature(Bytes::copy_from_slice(theirs.encode().as_slice()));
        k.public_key()
            .verify(Domain::PubSubMessage, b"payload", &theirs)
            .unwrap();
        // The fast (aws-lc-rs, hedged) signer makes signatures RustCrypto accepts too.
        #[cfg(feature = "aws-lc-rs")]
        {
            let fast = k.with_fast_signing();
            assert_eq!(fast.agent_id(), k.agent_id());
            let a = fast.sign(Domain::PubSubMessage, b"payload");
            let b = fast.sign(Domain::PubSubMessage, b"payload");
            assert_ne!(a, b, "hedged");
            let a = ml_dsa::Signature::<MlDsa65>::try_from(a.as_bytes()).unwrap();
            assert!(vk.verify_with_context(&m, b"", &a));
        }
        // The TLS path signs the raw transcript.
        let tls = MachineKeypair::from_seed(s).sign_tls13(b"transcript");
        let tls = ml_dsa::Signature::<MlDsa65>::try_from(&tls[..]).unwrap();
        assert!(vk.verify_with_context(b"transcript", b"", &tls));
    }

    #[test]
    fn decoded_key_is_cached_and_shared() {
        let k = AgentKeypair::from_seed(seed(7));
        let sig = k.sign(Domain::PubSubMessage, b"m");
        let cold = PublicKey::from_bytes(k.public_key().as_bytes()).unwrap();
        assert!(!cold.is_decoded());
        let shared = cold.clone();
        cold.verify(Domain::PubSubMessage, b"m", &sig).unwrap();
        assert!(shared.is_decoded(), "clones share the decoded key");
    }

    #[test]
    fn spki_and_tls_signatures() {
        let m = MachineKeypair::from_seed(seed(20));
        let der = m.public_key().to_spki_der();
        assert_eq!(der.len(), 1952 + 22);
        let back = PublicKey::from_spki_der(&der).unwrap();
        assert_eq!(&back, m.public_key());
        assert_eq!(
            PublicKey::from_spki_der(&der[1..]),
            Err(KeyDecodeError::BadSpki)
        );
        let sig = m.sign_tls13(b"transcript");
        back.verify_tls13(b"transcript", &sig).unwrap();
        assert!(back.verify_tls13(b"other", &sig).is_err());
        // A TLS signature is not a protocol signature and vice versa.
        let sig = Signature::from_bytes(&sig).unwrap();
        assert!(
            back.verify(Domain::PubSubMessage, b"transcript", &sig)
                .is_err()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_public_keys_and_signatures_fail_cleanly(
            pk in proptest::collection::vec(any::<u8>(), PUBLIC_KEY_LEN),
            sig in proptest::collection::vec(any::<u8>(), SIGNATURE_LEN),
            msg in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let pk = PublicKey::from_bytes(&pk).unwrap();
            let sig = Signature::from_bytes(&sig).unwrap();
            prop_assert_eq!(pk.verify(Domain::PubSubMessage, &msg, &sig), Err(VerifyError::BadSignature));
        }
    }
}
