//! Identities: machine, agent and user keys (ML-DSA-65), their ids and the agent certificate.
//!
//! Three layers, as in x0x (reference/x0x-spec.md §2.1):
//!
//! | layer   | key            | id          | role |
//! |---------|----------------|-------------|------|
//! | machine | [`MachineKeypair`] | [`MachineId`] | the QUIC/TLS identity of a host; proven per connection |
//! | agent   | [`AgentKeypair`]   | [`AgentId`]   | the logical agent; signs messages and announcements |
//! | user    | [`UserKeypair`]    | [`UserId`]    | an optional human owner; binds agents with an [`AgentCertificate`] |
//!
//! Every key is ML-DSA-65 (FIPS 204) generated from a 32-byte seed. An id is a
//! **role-separated** BLAKE3 hash of the encoded public key, so the same key material used as a
//! machine key and as an agent key yields two unrelated ids (x0x hashes all three roles alike).
//!
//! Signatures are pure FIPS 204 ML-DSA-65 signatures with an empty context, over a message that
//! starts with a tag naming what is signed ([`Domain`], see [`signed_message`]): a signature
//! made for one purpose never verifies for another. The domain is in the message rather than in
//! the FIPS 204 context string because not every implementation exposes contexts (aws-lc-rs
//! does not), and we want any FIPS 204 implementation to interoperate.
//!
//! Two backends produce and check the same signatures (reference/deps.md §2, "Interop"):
//!
//! * RustCrypto `ml-dsa` (the default): pure Rust, *deterministic* signatures, so simulations
//!   are reproducible and signing needs no RNG;
//! * aws-lc-rs, behind the `aws-lc-rs` feature (the drivers turn it on): verification goes
//!   through it (2–3× faster, same verdicts), and a keypair made with `with_fast_signing`
//!   signs through it (about 7× faster, *hedged*, i.e. randomised, signatures). Message ids
//!   hash the signed body, never the signature, so nothing the protocol decides depends on
//!   which backend signed; keys without `with_fast_signing` keep signing deterministically,
//!   so a simulation replays byte for byte even in a build with the feature on.
//!
//! Verification never panics: every path returns a [`VerifyError`]. Decoding an ML-DSA public
//! key costs about as much as a verification (71 µs, reference/deps.md §1), so a [`PublicKey`]
//! decodes itself once, on first use, and keeps the decoded form; clones share it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
#[cfg(not(feature = "aws-lc-rs"))]
use ml_dsa::EncodedVerifyingKey;
use ml_dsa::{ExpandedSigningKey, MlDsa65, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// Length of an encoded ML-DSA-65 public key.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Length of an encoded ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = 3309;
/// Length of a private-key seed (FIPS 204 `ξ`).
pub const SEED_LEN: usize = 32;
/// Length of every id.
pub const ID_LEN: usize = 32;

/// Magic prefix of a serialised keypair (`X0K`), followed by a format version byte.
const KEY_MAGIC: &[u8; 3] = b"X0K";
/// Current keypair serialisation version.
const KEY_VERSION: u8 = 1;
/// `magic(3) | version(1) | role(1) | seed(32)`.
const KEY_FILE_LEN: usize = 3 + 1 + 1 + SEED_LEN;

/// Clock skew tolerated when checking a certificate's `not_after`, in seconds (x0x uses 300 s).
pub const CERT_EXPIRY_SKEW_SECS: u64 = 300;

/// Errors from decoding keys, ids or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDecodeError {
    /// The input has the wrong length.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The serialised keypair does not start with the `X0K` magic.
    #[error("not an x0x key (bad magic)")]
    BadMagic,
    /// The serialised keypair has a version this build does not know.
    #[error("unsupported key format version {0}")]
    UnsupportedVersion(u8),
    /// The serialised keypair is for another role (e.g. a machine key loaded as an agent key).
    #[error("key is for role {found}, expected {expected}")]
    WrongRole {
        /// The role the caller asked for.
        expected: Role,
        /// The role recorded in the bytes (or `unknown`).
        found: RoleTag,
    },
    /// Hex text is not valid hex.
    #[error("invalid hex")]
    Hex,
    /// DER is not an ML-DSA-65 SubjectPublicKeyInfo.
    #[error("not an ML-DSA-65 SubjectPublicKeyInfo")]
    BadSpki,
}

/// Errors from signature verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature does not verify under this key, message and domain.
    #[error("signature does not verify")]
    BadSignature,
    /// A public key does not hash to the id it was presented with.
    #[error("public key does not match the claimed id")]
    IdMismatch,
    /// A certificate is past its `not_after` (plus skew).
    #[error("certificate expired at {not_after} (now {now})")]
    Expired {
        /// The certificate's `not_after`, unix seconds.
        not_after: u64,
        /// The time of the check, unix seconds.
        now: u64,
    },
    /// A certificate's `issued_at` lies in the future beyond the allowed skew.
    #[error("certificate issued in the future ({issued_at} > {now} + skew)")]
    IssuedInFuture {
        /// The certificate's `issued_at`, unix seconds.
        issued_at: u64,
        /// The time of the check, unix seconds.
        now: u64,
    },
    /// A certificate names a different agent than the one it is presented for.
    #[error("certificate is for another agent")]
    WrongAgent,
}

/// Errors from key generation with the operating system RNG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The operating system refused to provide randomness.
    #[error("operating system RNG failed: {0}")]
    Rng(String),
}

/// The role a key plays. Part of the id derivation and of serialised keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A host's transport identity.
    Machine,
    /// A logical agent.
    Agent,
    /// A human owner.
    User,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Self::Machine => 1,
            Self::Agent => 2,
            Self::User => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Machine),
            2 => Some(Self::Agent),
            3 => Some(Self::User),
            _ => None,
        }
    }

    /// BLAKE3 `derive_key` context for this role's ids.
    fn id_context(self) -> &'static str {
        match self {
            Self::Machine => "x0x-rs 2026-11 machine-id v1",
            Self::Agent => "x0x-rs 2026-11 agent-id v1",
            Self::User => "x0x-rs 2026-11 user-id v1",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Machine => "machine",
            Self::Agent => "agent",
            Self::User => "user",
        })
    }
}

/// The role byte found in a serialised key, which may be one this build does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleTag(pub u8);

impl fmt::Display for RoleTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Role::from_tag(self.0) {
            Some(r) => r.fmt(f),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

/// What a signature is for. Each domain's tag starts the signed message ([`signed_message`]),
/// so a signature made for one purpose never verifies for another. The strings are part of the protocol
/// (docs/protocol.md, "Signed bytes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Domain {
    /// A user key certifying an agent key ([`AgentCertificate`]).
    AgentCertificate,
    /// An agent signing a pub/sub message envelope.
    PubSubMessage,
    /// An agent signing its identity announcement.
    IdentityAnnouncement,
    /// A machine signing its machine announcement.
    MachineAnnouncement,
    /// A user signing its user announcement.
    UserAnnouncement,
    /// A machine signing a rendezvous record.
    RendezvousRecord,
    /// An agent signing a direct message.
    DirectMessage,
    /// An agent signing the announcement of its ML-KEM-768 key ([`crate::kem`]).
    KemAnnouncement,
    /// A signer signing the root of a batch of bodies, each for its own domain
    /// ([`crate::wire::BatchProof`]).
    Batch,
}

impl Domain {
    /// The domain's tag, placed in every signed message ([`signed_message`]).
    pub const fn context(self) -> &'static [u8] {
        match self {
            Self::AgentCertificate => b"x0x-rs/agent-cert/v1",
            Self::PubSubMessage => b"x0x-rs/pubsub-msg/v1",
            Self::IdentityAnnouncement => b"x0x-rs/identity-announce/v1",
            Self::MachineAnnouncement => b"x0x-rs/machine-announce/v1",
            Self::UserAnnouncement => b"x0x-rs/user-announce/v1",
            Self::RendezvousRecord => b"x0x-rs/rendezvous/v1",
            Self::DirectMessage => b"x0x-rs/direct/v1",
            Self::KemAnnouncement => b"x0x-rs/kem-announce/v1",
            Self::Batch => b"x0x-rs/batch/v1",
        }
    }

    /// Every domain, for tests and docs.
    pub const ALL: [Self; 9] = [
        Self::AgentCertificate,
        Self::PubSubMessage,
        Self::IdentityAnnouncement,
        Self::MachineAnnouncement,
        Self::UserAnnouncement,
        Self::RendezvousRecord,
        Self::DirectMessage,
        Self::KemAnnouncement,
        Self::Batch,
    ];
}

/// Starts every protocol signature's message. TLS 1.3 handshake signatures (the only other
/// thing our keys sign) start with 64 spaces (RFC 8446 §4.4.3), so the two never collide.
pub const SIGNED_MESSAGE_TAG: &[u8] = b"x0x-rs/signed/v1\0";

/// The exact bytes an ML-DSA-65 signature (empty FIPS 204 context) covers when `msg` is signed
/// for `domain`: `SIGNED_MESSAGE_TAG | len(tag) as u8 | domain tag | msg`. The length byte
/// makes the split between tag and message unambiguous.
pub fn signed_message(domain: Domain, msg: &[u8]) -> Vec<u8> {
    let ctx = domain.context();
    let mut out = Vec::with_capacity(SIGNED_MESSAGE_TAG.len() + 1 + ctx.len() + msg.len());
    out.extend_from_slice(SIGNED_MESSAGE_TAG);
    // Domain tags are constants under 40 bytes.
    out.push(ctx.len() as u8);
    out.extend_from_slice(ctx);
    out.extend_from_slice(msg);
    out
}

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex32(s: &str) -> Result<[u8; ID_LEN], KeyDecodeError> {
    if s.len() != ID_LEN * 2 {
        return Err(KeyDecodeError::Length {
            expected: ID_LEN * 2,
            got: s.len(),
        });
    }
    let mut out = [0u8; ID_LEN];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16).ok_or(KeyDecodeError::Hex)?;
        let lo = (chunk[1] as char).to_digit(16).ok_or(KeyDecodeError::Hex)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        ///
        /// `Display` prints the first 5 bytes as hex; `{:#}` and [`Self::to_hex`] print all 32.
        #[derive(Clone, Copy, Serialize, Deserialize)]
        pub struct $name([u8; ID_LEN]);

        id_cmp!($name);

        impl $name {
            /// The id of a public key for this role.
            pub fn from_public_key(key: &PublicKey) -> Self {
                Self(key.id_bytes($role))
            }

            /// Wraps raw id bytes (no check is possible: any 32 bytes may be an id).
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// The raw id bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Full lowercase hex (64 characters).
            pub fn to_hex(&self) -> String {
                format!("{self:#}")
            }

            /// Parses 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self, KeyDecodeError> {
                parse_hex32(s).map(Self)
            }

            /// Checks that `key` hashes to this id.
            pub fn verify_key(&self, key: &PublicKey) -> Result<(), VerifyError> {
                if Self::from_public_key(key) == *self {
                    Ok(())
                } else {
                    Err(VerifyError::IdMismatch)
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if f.alternate() {
                    write_hex(f, &self.0)
                } else {
                    write_hex(f, &self.0[..5])
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

id_type!(
    /// The id of a machine: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    MachineId,
    Role::Machine
);
id_type!(
    /// The id of an agent: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    AgentId,
    Role::Agent
);
id_type!(
    /// The id of a user: a role-separated BLAKE3 hash of its ML-DSA-65 public key.
    UserId,
    Role::User
);

// ---------------------------------------------------------------------------------------------
// Public keys and signatures
// ---------------------------------------------------------------------------------------------

struct PublicKeyInner {
    bytes: Box<[u8; PUBLIC_KEY_LEN]>,
    /// Decoded on first verification and kept: decoding expands the matrix A (71 µs).
    #[cfg(not(feature = "aws-lc-rs"))]
    decoded: OnceLock<VerifyingKey<MlDsa65>>,
    /// The aws-lc-rs form, parsed on first verification and kept.
    #[cfg(feature = "aws-lc-rs")]
    decoded: OnceLock<Option<aws_lc_rs::signature::ParsedPublicKey>>,
    /// The id for each role, hashed once (hashing 1952 bytes is ~1.5 µs, and ids are compared
    /// on every message).
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
/// the warm cost (~77 µs) from then on.
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
        Ok(Self(Arc::new(PublicKeyInner::new(Box::new(arr)))))
    }

    fn from_verifying_key(vk: VerifyingKey<MlDsa65>) -> Self {
        let enc = vk.encode();
        let mut arr = [0u8; PUBLIC_KEY_LEN];
        arr.copy_from_slice(enc.as_slice());
        // The decoded form is not kept: it holds the expanded matrix A (~30 KB), and most keys
        // a node owns are verified by others, not by itself.
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

    #[cfg(not(feature = "aws-lc-rs"))]
    fn decoded(&self) -> &VerifyingKey<MlDsa65> {
        self.0.decoded.get_or_init(|| {
            // Infallible: the length was checked at construction and every bit pattern of the
            // right length decodes (t1 coefficients are 10-bit packed, all values valid).
            let enc = EncodedVerifyingKey::<MlDsa65>::try_from(&self.0.bytes[..])
                .unwrap_or_else(|_| unreachable!("length checked in from_bytes"));
            VerifyingKey::decode(&enc)
        })
    }

    /// Verifies a pure ML-DSA-65 signature with an empty context over `msg`: the one primitive
    /// every protocol and TLS verification goes through.
    #[cfg(not(feature = "aws-lc-rs"))]
    fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        let Ok(sig) = ml_dsa::Signature::<MlDsa65>::try_from(sig) else {
            return Err(VerifyError::BadSignature);
        };
        if self.decoded().verify_with_context(msg, b"", &sig) {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }

    /// Verifies a pure ML-DSA-65 signature with an empty context over `msg` (aws-lc-rs).
    #[cfg(feature = "aws-lc-rs")]
    fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        use aws_lc_rs::signature::{ML_DSA_65, ParsedPublicKey};
        if sig.len() != SIGNATURE_LEN {
            return Err(VerifyError::BadSignature);
        }
        let parsed = self
            .0
            .decoded
            .get_or_init(|| ParsedPublicKey::new(&ML_DSA_65, &self.0.bytes[..]).ok());
        // Every 1952-byte string is a valid encoding, so parsing does not fail in practice; if
        // aws-lc ever refuses one, no signature verifies under it.
        match parsed {
            Some(key) if key.verify_sig(msg, sig).is_ok() => Ok(()),
            _ => Err(VerifyError::BadSignature),
        }
    }

    fn id_bytes(&self, role: Role) -> [u8; ID_LEN] {
        *self.0.ids[usize::from(role.tag() - 1)]
            .get_or_init(|| blake3::derive_key(role.id_context(), &self.0.bytes[..]))
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
        use ml_dsa::pkcs8::der::Encode;
        use ml_dsa::pkcs8::der::asn1::BitStringRef;
        use ml_dsa::pkcs8::spki::{AssociatedAlgorithmIdentifier, SubjectPublicKeyInfo};
        let spki = SubjectPublicKeyInfo {
            algorithm: MlDsa65::ALGORITHM_IDENTIFIER,
            subject_public_key: BitStringRef::new(0, &self.0.bytes[..])
                .unwrap_or_else(|_| unreachable!("a byte-aligned bit string is always valid")),
        };
        spki.to_der()
            .unwrap_or_else(|_| unreachable!("a 1952-byte SPKI always encodes"))
    }

    /// Parses a DER SubjectPublicKeyInfo holding an ML-DSA-65 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyDecodeError> {
        use ml_dsa::pkcs8::der::Decode;
        use ml_dsa::pkcs8::spki::{AssociatedAlgorithmIdentifier, SubjectPublicKeyInfoRef};
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| KeyDecodeError::BadSpki)?;
        if spki.algorithm.oid != MlDsa65::ALGORITHM_IDENTIFIER.oid
            || spki.algorithm.parameters.is_some()
        {
            return Err(KeyDecodeError::BadSpki);
        }
        let bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or(KeyDecodeError::BadSpki)?;
        Self::from_bytes(bytes)
    }

    /// Verifies a TLS 1.3 handshake signature (pure ML-DSA-65, empty context).
    pub fn verify_tls13(&self, msg: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
        self.verify_raw(msg, sig)
    }
}

impl MachineKeypair {
    /// Signs a TLS 1.3 handshake transcript (pure ML-DSA-65, empty context). Only for the
    /// transport's CertificateVerify; protocol content is signed with a [`Domain`].
    pub fn sign_tls13(&self, msg: &[u8]) -> Vec<u8> {
        self.0.sign_raw(msg).0.to_vec()
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
/// at once, and 3309 bytes per copy add up.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(Bytes);

impl Signature {
    /// Wraps an encoded signature, checking only its length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        if bytes.len() != SIGNATURE_LEN {
            return Err(KeyDecodeError::Length {
                expected: SIGNATURE_LEN,
                got: bytes.len(),
            });
        }
        Ok(Self(Bytes::copy_from_slice(bytes)))
    }

    /// Wraps a shared buffer (e.g. a slice of a received frame) without copying it.
    pub(crate) fn from_shared(bytes: Bytes) -> Result<Self, KeyDecodeError> {
        if bytes.len() != SIGNATURE_LEN {
            return Err(KeyDecodeError::Length {
                expected: SIGNATURE_LEN,
                got: bytes.len(),
            });
        }
        Ok(Self(bytes))
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

// ---------------------------------------------------------------------------------------------
// Keypairs
// ---------------------------------------------------------------------------------------------

struct KeypairInner {
    seed: [u8; SEED_LEN],
    public: PublicKey,
    /// The expanded signing key (~tens of KB): built on the first signature, because most keys
    /// in a simulation never sign, and kept because expanding costs about a keygen (211 µs).
    expanded: OnceLock<Box<ExpandedSigningKey<MlDsa65>>>,
    /// The aws-lc-rs key pair of a keypair made with `with_fast_signing`, built from the seed
    /// on the first signature and kept; `None` inside when signing stays deterministic.
    #[cfg(feature = "aws-lc-rs")]
    fast: Option<OnceLock<Option<aws_lc_rs::signature::PqdsaKeyPair>>>,
    /// A simulation stand-in key (see [`stand_in`]).
    #[cfg(feature = "stand-in-crypto")]
    stand_in: bool,
}

impl Drop for KeypairInner {
    fn drop(&mut self) {
        // The expanded key zeroizes itself (ml-dsa `zeroize` feature); wipe the seed too.
        self.seed = [0u8; SEED_LEN];
    }
}

impl KeypairInner {
    fn from_seed(seed: [u8; SEED_LEN]) -> Self {
        // Dropped after key generation; rebuilt on the first signature (see `expanded`).
        let esk = ExpandedSigningKey::<MlDsa65>::from_seed(&seed.into());
        let public = PublicKey::from_verifying_key(esk.verifying_key());
        Self {
            seed,
            public,
            expanded: OnceLock::new(),
            #[cfg(feature = "aws-lc-rs")]
            fast: None,
            #[cfg(feature = "stand-in-crypto")]
            stand_in: false,
        }
    }

    #[cfg(feature = "aws-lc-rs")]
    fn with_fast_signing(&self) -> Self {
        Self {
            seed: self.seed,
            public: self.public.clone(),
            expanded: OnceLock::new(),
            fast: Some(OnceLock::new()),
            #[cfg(feature = "stand-in-crypto")]
            stand_in: self.stand_in,
        }
    }

    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        #[cfg(feature = "stand-in-crypto")]
        if self.stand_in {
            return stand_in::sign(&self.public, domain, msg);
        }
        self.sign_raw(&signed_message(domain, msg))
    }

    /// Signs `msg` with pure ML-DSA-65 and an empty context: hedged through aws-lc-rs for a
    /// keypair made with `with_fast_signing`, deterministic through RustCrypto otherwise.
    fn sign_raw(&self, msg: &[u8]) -> Signature {
        #[cfg(feature = "aws-lc-rs")]
        if let Some(fast) = &self.fast {
            use aws_lc_rs::signature::{ML_DSA_65_SIGNING, PqdsaKeyPair};
            let key =
                fast.get_or_init(|| PqdsaKeyPair::from_seed(&ML_DSA_65_SIGNING, &self.seed).ok());
            let mut out = vec![0u8; SIGNATURE_LEN];
            // aws-lc accepts every 32-byte seed, and signing into a buffer of the right size
            // does not fail; should either ever happen, the deterministic path below makes a
            // signature every verifier accepts.
            if let Some(k) = key
                && k.sign(msg, &mut out).is_ok()
            {
                return Signature(out.into());
            }
        }
        let esk = self
            .expanded
            .get_or_init(|| Box::new(ExpandedSigningKey::<MlDsa65>::from_seed(&self.seed.into())));
        // Only fails for a context longer than 255 bytes; ours is empty.
        let sig = esk
            .sign_deterministic(msg, b"")
            .unwrap_or_else(|_| unreachable!("the empty context is < 255 bytes"));
        Signature(Bytes::copy_from_slice(sig.encode().as_slice()))
    }

    fn to_bytes(&self, role: Role) -> Vec<u8> {
        let mut v = Vec::with_capacity(KEY_FILE_LEN);
        v.extend_from_slice(KEY_MAGIC);
        v.push(KEY_VERSION);
        v.push(role.tag());
        v.extend_from_slice(&self.seed);
        v
    }

    fn from_bytes(role: Role, bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        if bytes.len() < 4 || &bytes[..3] != KEY_MAGIC {
            return Err(KeyDecodeError::BadMagic);
        }
        if bytes[3] != KEY_VERSION {
            return Err(KeyDecodeError::UnsupportedVersion(bytes[3]));
        }
        if bytes.len() != KEY_FILE_LEN {
            return Err(KeyDecodeError::Length {
                expected: KEY_FILE_LEN,
                got: bytes.len(),
            });
        }
        if bytes[4] != role.tag() {
            return Err(KeyDecodeError::WrongRole {
                expected: role,
                found: RoleTag(bytes[4]),
            });
        }
        let mut seed = [0u8; SEED_LEN];
        seed.copy_from_slice(&bytes[5..]);
        Ok(Self::from_seed(seed))
    }
}

macro_rules! keypair_type {
    ($(#[$doc:meta])* $name:ident, $id:ident, $id_fn:ident, $role:expr) => {
        $(#[$doc])*
        ///
        /// Cheap to clone (shared). `Debug` never prints secret material.
        #[derive(Clone)]
        pub struct $name(Arc<KeypairInner>);

        impl $name {
            /// Derives the keypair from a 32-byte seed (FIPS 204 `ML-DSA.KeyGen_internal`):
            /// the same seed always gives the same key.
            pub fn from_seed(seed: [u8; SEED_LEN]) -> Self {
                Self(Arc::new(KeypairInner::from_seed(seed)))
            }

            /// A **simulation stand-in** keypair: cheap to make and to sign with, verifiable by
            /// anyone (so forgeable by anyone). Only a node configured to accept stand-ins
            /// treats its signatures as valid; [`PublicKey::verify`] always refuses them.
            #[cfg(feature = "stand-in-crypto")]
            pub fn stand_in_from_seed(seed: [u8; SEED_LEN]) -> Self {
                Self(Arc::new(stand_in::keypair(seed)))
            }

            /// Generates a keypair from a caller-supplied cryptographic RNG.
            pub fn from_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
                let mut seed = [0u8; SEED_LEN];
                rng.fill_bytes(&mut seed);
                Self::from_seed(seed)
            }

            /// Generates a keypair from the operating system's RNG.
            #[cfg(feature = "os-rng")]
            pub fn generate() -> Result<Self, GenerateError> {
                let mut seed = [0u8; SEED_LEN];
                getrandom::fill(&mut seed).map_err(|e| GenerateError::Rng(e.to_string()))?;
                Ok(Self::from_seed(seed))
            }

            /// The public key.
            pub fn public_key(&self) -> &PublicKey {
                &self.0.public
            }

            /// The id of this keypair's public key.
            pub fn $id_fn(&self) -> $id {
                $id::from_public_key(&self.0.public)
            }

            /// Signs `msg` for `domain` (ML-DSA-65 over [`signed_message`]; deterministic
            /// unless the keypair was made with `with_fast_signing`).
            pub fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
                self.0.sign(domain, msg)
            }

            /// The same key, signing through aws-lc-rs: about 7× faster (0.1 ms instead of
            /// 0.7 ms), with hedged (randomised) instead of deterministic signatures. Every
            /// verifier accepts them alike. What the drivers use; a simulation keeps the
            /// deterministic default so its runs replay byte for byte.
            #[cfg(feature = "aws-lc-rs")]
            pub fn with_fast_signing(&self) -> Self {
                Self(Arc::new(self.0.with_fast_signing()))
            }

            /// Serialises the private key: `"X0K" | version 1 | role | seed(32)` (37 bytes).
            /// Treat the result as secret.
            pub fn to_bytes(&self) -> Vec<u8> {
                self.0.to_bytes($role)
            }

            /// Parses bytes written by [`Self::to_bytes`], refusing other roles and versions.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
                KeypairInner::from_bytes($role, bytes).map(|k| Self(Arc::new(k)))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.$id_fn())
            }
        }
    };
}

keypair_type!(
    /// A machine's ML-DSA-65 keypair: the host's transport (TLS) identity.
    MachineKeypair,
    MachineId,
    machine_id,
    Role::Machine
);
keypair_type!(
    /// An agent's ML-DSA-65 keypair: signs the agent's messages and announcements.
    AgentKeypair,
    AgentId,
    agent_id,
    Role::Agent
);
impl AgentKeypair {
    /// The agent's ML-KEM-768 keypair for sealed direct messages, derived from the agent seed
    /// (`BLAKE3.derive_key("x0x-rs agent kem v1", seed)` extended to the 64-byte FIPS 203
    /// seed), so the agent key file is the only secret to keep. Costs one ML-KEM keygen
    /// (~51 µs); callers keep the result.
    pub fn kem_keypair(&self) -> crate::kem::KemKeypair {
        let mut seed = [0u8; crate::kem::KEM_SEED_LEN];
        blake3::Hasher::new_derive_key("x0x-rs agent kem v1")
            .update(&self.0.seed)
            .finalize_xof()
            .fill(&mut seed);
        crate::kem::KemKeypair::from_seed(seed)
    }
}

keypair_type!(
    /// A user's ML-DSA-65 keypair: certifies the agents the user owns.
    UserKeypair,
    UserId,
    user_id,
    Role::User
);

/// Simulation stand-in keys and signatures (feature `stand-in-crypto`).
///
/// An ML-DSA-65 keygen costs ~0.2 ms and a verification ~0.08 ms, which caps a many-node
/// simulation far below its message rate. A stand-in key is 1952 bytes starting with
/// [`stand_in::MARKER`]; its "signature" is 3309 bytes of keyed BLAKE3 output over the domain
/// and message, so sizes on the wire stay realistic. Anyone can compute it from the public key:
/// it proves nothing, and production verification ([`PublicKey::verify`]) refuses it. A
/// `Node` accepts stand-ins only when its config says so explicitly.
#[cfg(feature = "stand-in-crypto")]
pub mod stand_in {
    use super::*;

    /// First bytes of every stand-in public key.
    pub const MARKER: &[u8; 16] = b"x0x-rs-STAND-IN\0";

    pub(super) fn keypair(seed: [u8; SEED_LEN]) -> KeypairInner {
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk[..16].copy_from_slice(MARKER);
        blake3::Hasher::new_derive_key("x0x-rs stand-in public key v1")
            .update(&seed)
            .finalize_xof()
            .fill(&mut pk[16..]);
        KeypairInner {
            seed,
            public: PublicKey::from_bytes(&pk).unwrap_or_else(|_| unreachable!("fixed length")),
            expanded: OnceLock::new(),
            #[cfg(feature = "aws-lc-rs")]
            fast: None,
            stand_in: true,
        }
    }

    /// A 32-byte keyed BLAKE3 MAC; the rest of the 3309 bytes are zero (sizes stay real,
    /// verification stays cheap).
    fn expected(key: &PublicKey, domain: Domain, msg: &[u8]) -> [u8; 32] {
        let k = key.0.stand_in_key.get_or_init(|| {
            blake3::derive_key("x0x-rs stand-in signature v1", &key.as_bytes()[..])
        });
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
}

/// Which key signed something: the role and the id of its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignerId {
    /// A machine key.
    Machine(MachineId),
    /// An agent key.
    Agent(AgentId),
    /// A user key.
    User(UserId),
}

impl SignerId {
    /// Checks that `key` is the key this id names (same role, same hash).
    pub fn verify_key(&self, key: &PublicKey) -> Result<(), VerifyError> {
        match self {
            Self::Machine(id) => id.verify_key(key),
            Self::Agent(id) => id.verify_key(key),
            Self::User(id) => id.verify_key(key),
        }
    }
}

impl fmt::Display for SignerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(id) => write!(f, "machine:{id}"),
            Self::Agent(id) => write!(f, "agent:{id}"),
            Self::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// A keypair that can sign protocol content: the three role keypairs.
pub trait SigningKey {
    /// The signer's role and id.
    fn signer_id(&self) -> SignerId;
    /// The public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg` for `domain`.
    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature;
}

impl SigningKey for MachineKeypair {
    fn signer_id(&self) -> SignerId {
        SignerId::Machine(self.machine_id())
    }
    fn public_key(&self) -> &PublicKey {
        &self.0.public
    }
    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        self.0.sign(domain, msg)
    }
}

impl SigningKey for AgentKeypair {
    fn signer_id(&self) -> SignerId {
        SignerId::Agent(self.agent_id())
    }
    fn public_key(&self) -> &PublicKey {
        &self.0.public
    }
    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        self.0.sign(domain, msg)
    }
}

impl SigningKey for UserKeypair {
    fn signer_id(&self) -> SignerId {
        SignerId::User(self.user_id())
    }
    fn public_key(&self) -> &PublicKey {
        &self.0.public
    }
    fn sign(&self, domain: Domain, msg: &[u8]) -> Signature {
        self.0.sign(domain, msg)
    }
}

// ---------------------------------------------------------------------------------------------
// Agent certificate
// ---------------------------------------------------------------------------------------------

/// A user key's statement that an agent belongs to that user.
///
/// Carries the user's public key (so anyone can derive the [`UserId`] and check the signature)
/// and the certified [`AgentId`] (which binds the agent's public key through its hash).
/// Signed bytes: postcard of `(user_id, agent_id, issued_at, not_after)` under
/// [`Domain::AgentCertificate`] (docs/protocol.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCertificate {
    user_public_key: PublicKey,
    agent_id: AgentId,
    issued_at: u64,
    not_after: Option<u64>,
    signature: Signature,
}

#[derive(Serialize)]
struct CertSigned<'a> {
    user_id: &'a UserId,
    agent_id: &'a AgentId,
    issued_at: u64,
    not_after: Option<u64>,
}

impl AgentCertificate {
    /// Issues a certificate: `user` vouches for `agent` from `issued_at` (unix seconds) until
    /// `not_after` (unix seconds, `None` = no expiry).
    pub fn issue(
        user: &UserKeypair,
        agent: AgentId,
        issued_at: u64,
        not_after: Option<u64>,
    ) -> Self {
        let user_id = user.user_id();
        let msg = Self::signed_bytes_for(&user_id, &agent, issued_at, not_after);
        Self {
            user_public_key: user.public_key().clone(),
            agent_id: agent,
            issued_at,
            not_after,
            signature: user.sign(Domain::AgentCertificate, &msg),
        }
    }

    fn signed_bytes_for(
        user_id: &UserId,
        agent_id: &AgentId,
        issued_at: u64,
        not_after: Option<u64>,
    ) -> Vec<u8> {
        postcard::to_allocvec(&CertSigned {
            user_id,
            agent_id,
            issued_at,
            not_after,
        })
        .unwrap_or_else(|_| unreachable!("postcard never fails on plain data"))
    }

    /// The exact bytes the user key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Self::signed_bytes_for(
            &self.user_id(),
            &self.agent_id,
            self.issued_at,
            self.not_after,
        )
    }

    /// The certifying user.
    pub fn user_id(&self) -> UserId {
        UserId::from_public_key(&self.user_public_key)
    }

    /// The user's public key.
    pub fn user_public_key(&self) -> &PublicKey {
        &self.user_public_key
    }

    /// The certified agent.
    pub fn agent_id(&self) -> AgentId {
        self.agent_id
    }

    /// Issue time, unix seconds.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// Expiry, unix seconds (`None`: never expires).
    pub fn not_after(&self) -> Option<u64> {
        self.not_after
    }

    /// Checks the signature, that the certificate names `agent`, and its validity at
    /// `now_secs` (unix seconds) with [`CERT_EXPIRY_SKEW_SECS`] of tolerance either way.
    pub fn verify(&self, agent: &AgentId, now_secs: u64) -> Result<(), VerifyError> {
        if self.agent_id != *agent {
            return Err(VerifyError::WrongAgent);
        }
        if self.issued_at > now_secs.saturating_add(CERT_EXPIRY_SKEW_SECS) {
            return Err(VerifyError::IssuedInFuture {
                issued_at: self.issued_at,
                now: now_secs,
            });
        }
        if let Some(not_after) = self.not_after
            && now_secs > not_after.saturating_add(CERT_EXPIRY_SKEW_SECS)
        {
            return Err(VerifyError::Expired {
                not_after,
                now: now_secs,
            });
        }
        self.user_public_key.verify(
            Domain::AgentCertificate,
            &self.signed_bytes(),
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn same_seed_same_key_and_id() {
        let a = AgentKeypair::from_seed(seed(1));
        let b = AgentKeypair::from_seed(seed(1));
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.agent_id(), b.agent_id());
        assert_ne!(a.agent_id(), AgentKeypair::from_seed(seed(2)).agent_id());
    }

    #[test]
    fn ids_are_role_separated() {
        let m = MachineKeypair::from_seed(seed(3));
        let a = AgentKeypair::from_seed(seed(3));
        assert_eq!(m.public_key(), a.public_key());
        assert_ne!(m.machine_id().as_bytes(), a.agent_id().as_bytes());
    }

    #[test]
    fn display_short_and_full() {
        let id = AgentKeypair::from_seed(seed(4)).agent_id();
        assert_eq!(format!("{id}").len(), 10);
        assert_eq!(format!("{id:#}").len(), 64);
        assert_eq!(id.to_hex(), format!("{id:#}"));
        assert_eq!(AgentId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(format!("{id:?}").starts_with("AgentId("));
        assert_eq!(
            AgentId::from_hex("zz"),
            Err(KeyDecodeError::Length {
                expected: 64,
                got: 2
            })
        );
        assert_eq!(AgentId::from_hex(&"g".repeat(64)), Err(KeyDecodeError::Hex));
    }

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

    #[test]
    fn domains_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for d in Domain::ALL {
            assert!(seen.insert(d.context()), "duplicate context {d:?}");
            assert!(d.context().len() <= 255);
        }
    }

    #[test]
    fn keypair_bytes_round_trip_and_refuse_other_roles() {
        let k = MachineKeypair::from_seed(seed(8));
        let bytes = k.to_bytes();
        assert_eq!(bytes.len(), KEY_FILE_LEN);
        let back = MachineKeypair::from_bytes(&bytes).unwrap();
        assert_eq!(back.machine_id(), k.machine_id());
        assert_eq!(
            AgentKeypair::from_bytes(&bytes).unwrap_err(),
            KeyDecodeError::WrongRole {
                expected: Role::Agent,
                found: RoleTag(1)
            }
        );
        let mut v2 = bytes.clone();
        v2[3] = 9;
        assert_eq!(
            MachineKeypair::from_bytes(&v2).unwrap_err(),
            KeyDecodeError::UnsupportedVersion(9)
        );
        assert_eq!(
            MachineKeypair::from_bytes(b"nope").unwrap_err(),
            KeyDecodeError::BadMagic
        );
        assert!(!format!("{k:?}").contains(&format!("{:?}", k.0.seed)));
    }

    #[test]
    fn certificate_binds_user_and_agent() {
        let user = UserKeypair::from_seed(seed(9));
        let agent = AgentKeypair::from_seed(seed(10)).agent_id();
        let cert = AgentCertificate::issue(&user, agent, 1_000, Some(2_000));
        assert_eq!(cert.user_id(), user.user_id());
        cert.verify(&agent, 1_500).unwrap();
        // Skew tolerated on both ends.
        cert.verify(&agent, 2_000 + CERT_EXPIRY_SKEW_SECS).unwrap();
        assert!(matches!(
            cert.verify(&agent, 2_001 + CERT_EXPIRY_SKEW_SECS),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            cert.verify(&agent, 1_000 - CERT_EXPIRY_SKEW_SECS - 1),
            Err(VerifyError::IssuedInFuture { .. })
        ));
        let other = AgentKeypair::from_seed(seed(11)).agent_id();
        assert_eq!(cert.verify(&other, 1_500), Err(VerifyError::WrongAgent));
        // A certificate whose fields were changed after signing fails.
        let mut forged = cert.clone();
        forged.not_after = None;
        assert_eq!(forged.verify(&agent, 1_500), Err(VerifyError::BadSignature));
        // Someone else's user key cannot stand in.
        let mut stolen = cert.clone();
        stolen.user_public_key = UserKeypair::from_seed(seed(12)).public_key().clone();
        assert_eq!(stolen.verify(&agent, 1_500), Err(VerifyError::BadSignature));
    }

    #[test]
    fn certificate_serde_round_trip() {
        let user = UserKeypair::from_seed(seed(13));
        let agent = AgentKeypair::from_seed(seed(14)).agent_id();
        let cert = AgentCertificate::issue(&user, agent, 5, None);
        let bytes = postcard::to_allocvec(&cert).unwrap();
        let back: AgentCertificate = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, cert);
        back.verify(&agent, 10).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Ids compare as words (`id_cmp!`); the order and equality must stay the bytes'.
        /// Pairs share a random prefix, so later words decide too.
        #[test]
        fn ids_order_as_their_bytes(
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
            shared in 0usize..=32,
        ) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            let (x, y) = (MachineId::from_bytes(a), MachineId::from_bytes(b));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
            let (m, n) = (crate::wire::MessageId(a), crate::wire::MessageId(b));
            prop_assert_eq!(m.cmp(&n), a.cmp(&b));
            prop_assert_eq!(m == n, a == b);
        }

        #[test]
        fn arbitrary_bytes_never_panic_key_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = MachineKeypair::from_bytes(&bytes);
            let _ = AgentKeypair::from_bytes(&bytes);
            let _ = UserKeypair::from_bytes(&bytes);
            let _ = PublicKey::from_bytes(&bytes);
            let _ = Signature::from_bytes(&bytes);
            let _ = postcard::from_bytes::<AgentCertificate>(&bytes);
            let _ = postcard::from_bytes::<PublicKey>(&bytes);
        }

        #[test]
        fn keypair_bytes_round_trip(s in any::<[u8; 32]>()) {
            let k = UserKeypair::from_seed(s);
            let back = UserKeypair::from_bytes(&k.to_bytes()).unwrap();
            prop_assert_eq!(back.user_id(), k.user_id());
        }

        #[test]
        fn id_hex_round_trip(b in any::<[u8; 32]>()) {
            let id = MachineId::from_bytes(b);
            prop_assert_eq!(MachineId::from_hex(&id.to_hex()).unwrap(), id);
        }

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
