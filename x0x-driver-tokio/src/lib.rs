//! # x0x-driver-tokio
//!
//! The quinn + tokio driver for [`x0x_proto`]. It will hold the `Agent` API the seed tests use
//! (`Agent::builder()…build().await`, `join_network`, `announce_identity`, discovery,
//! `subscribe`/`publish`, direct messages), key-file handling, and the QUIC transport with the
//! machine's ML-DSA-65 key as the TLS raw public key. It makes no protocol decision: what it
//! learns goes into `x0x_proto::Node`, what it sends comes out of it.
//!
//! Status: placeholder until the driver issue lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use x0x_proto as proto;
