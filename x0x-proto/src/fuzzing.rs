//! Entry points for the fuzz targets in `fuzz/` and for replaying their corpora as plain tests.
//!
//! Each function takes arbitrary bytes, must never panic, and checks an invariant of the
//! decoder it drives. Keeping the bodies here lets the corpus replay run on stable in
//! `cargo test` (see `tests/fuzz_corpus.rs`) while `cargo fuzz` explores.

use crate::identity::{
    AgentCertificate, AgentKeypair, MachineKeypair, PublicKey, Signature, UserKeypair,
};
use crate::wire::{Frame, MAX_FRAME_LEN};

/// Decodes a frame; whatever decodes must re-encode to the same bytes.
pub fn frame_decode(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let again = frame
            .encode()
            .unwrap_or_else(|e| panic!("decoded frame does not re-encode: {e}"));
        assert_eq!(&again[..], data, "a frame has exactly one encoding");
        assert!(data.len() <= MAX_FRAME_LEN);
    }
}

/// Feeds the key, signature and certificate decoders.
pub fn key_decode(data: &[u8]) {
    let _ = MachineKeypair::from_bytes(data);
    let _ = AgentKeypair::from_bytes(data);
    let _ = UserKeypair::from_bytes(data);
    let _ = PublicKey::from_bytes(data);
    let _ = PublicKey::from_spki_der(data);
    let _ = Signature::from_bytes(data);
    let _ = postcard::from_bytes::<AgentCertificate>(data);
}

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every target, by name, for corpus replay.
pub const TARGETS: &[(&str, Target)] =
    &[("frame_decode", frame_decode), ("key_decode", key_decode)];
