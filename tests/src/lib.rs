//! Cross-crate integration tests for x0x-rs live in `tests/tests/`: real QUIC on loopback
//! through the drivers, and simulator scenarios. This library holds shared test helpers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
