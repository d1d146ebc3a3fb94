//! The ML-DSA-65 implementation behind the identity types, chosen here and nowhere else.
//!
//! Each backend offers the same three things:
//!
//! * `VerifyingKey`: a public key in the form verification needs, built from its encoding
//!   (`decode`), kept by [`super::PublicKey`] after its first verification, and checking a
//!   `ParsedSignature` over a message (`verify`);
//! * `ParsedSignature`: a signature as the verifier takes it (`parse` refuses what cannot be
//!   one, before the key is decoded);
//! * `Signer`: the signing state of one keypair (`deterministic()`, `sign(seed, msg)`).
//!
//! [`ml_dsa`] (RustCrypto, pure Rust) is the default. With the `aws-lc-rs` feature, [`aws_lc`]
//! verifies, and signs for keypairs made with `with_fast_signing` (`Signer::fast()`); key
//! generation, deterministic signing and the SubjectPublicKeyInfo encoding stay with
//! RustCrypto in every build, because aws-lc-rs signs only hedged and both builds must derive
//! the same keys.

#[cfg(feature = "aws-lc-rs")]
mod aws_lc;
mod ml_dsa;

#[cfg(feature = "aws-lc-rs")]
pub(super) use self::aws_lc::{ParsedSignature, Signer, VerifyingKey};
#[cfg(not(feature = "aws-lc-rs"))]
pub(super) use self::ml_dsa::{ParsedSignature, Signer, VerifyingKey};
pub(super) use self::ml_dsa::{public_key, spki_der, spki_public_key};
