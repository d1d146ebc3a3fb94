//! Identities: machine, agent and user keys (ML-DSA-65), their ids and the agent certificate.
//!
//! Three layers, as in x0x:
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
//! Two backends produce and check the same signatures:
//!
//! * RustCrypto `ml-dsa` (the default): pure Rust, *deterministic* signatures, so simulations
//!   are reproducible and signing needs no RNG;
//! * aws-lc-rs, behind the `aws-lc-rs` feature (the drivers turn it on): verification goes
//!   through it (faster, same verdicts), and a keypair made with `with_fast_signing` signs
//!   through it (faster still, *hedged*, i.e. randomised, signatures). Message ids hash the
//!   signed body, never the signature, so nothing the protocol decides depends on which
//!   backend signed; keys without `with_fast_signing` keep signing deterministically, so a
//!   simulation replays byte for byte even in a build with the feature on.
//!
//! The backend is chosen in one place (the private `backend` module); the rest of this module
//! does not know which one it runs on.
//!
//! Verification never panics: every path returns a [`VerifyError`]. Decoding an ML-DSA public
//! key costs about as much as a verification, so a [`PublicKey`] decodes itself once, on first
//! use, and keeps the decoded form; clones share it.

mod backend;
mod certificate;
mod domain;
mod ids;
mod keys;
mod public_key;
#[cfg(feature = "stand-in-crypto")]
pub mod stand_in;

pub use certificate::{AgentCertificate, CERT_EXPIRY_SKEW_SECS};
pub use domain::{
    Domain, MAX_APPLICATION_CONTEXT, SIGNED_MESSAGE_TAG, application_message, signed_message,
};
pub use ids::{AgentId, MachineId, Role, RoleTag, SignerId, UserId};
pub use keys::{AgentKeypair, MachineKeypair, SigningKey, UserKeypair};
pub use public_key::{PublicKey, Signature};

/// A key seed for tests: 32 copies of `b`.
#[cfg(test)]
fn test_seed(b: u8) -> [u8; SEED_LEN] {
    [b; SEED_LEN]
}

/// Length of an encoded ML-DSA-65 public key.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Length of an encoded ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = 3309;
/// Length of a private-key seed (FIPS 204 `ξ`).
pub const SEED_LEN: usize = 32;
/// Length of every id.
pub const ID_LEN: usize = 32;

/// Errors from decoding keys, ids or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum GenerateError {
    /// The operating system refused to provide randomness.
    #[error("operating system RNG failed: {0}")]
    Rng(String),
}
