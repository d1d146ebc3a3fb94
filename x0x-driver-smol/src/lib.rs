//! # x0x-driver-smol
//!
//! The quinn + smol driver for [`x0x_proto`]: the same `Agent` surface as `x0x-driver-tokio`,
//! sharing its runtime-independent logic rather than copying it.
//!
//! Status: placeholder until the smol driver issue lands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use x0x_proto as proto;
