//! The benchmark harness the drivers' examples share (feature `bench`), so the figures of
//! the two runtimes come from the same code: [`loopback`] is the `loopback_bench` example,
//! written once over a [`Runtime`](crate::Runtime); [`measure`] holds the helpers.

pub mod loopback;
pub mod measure;
