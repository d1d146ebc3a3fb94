//! # x0x-driver-smol — the smol driver for x0x-rs
//!
//! The same [`Agent`] API as `x0x-driver-tokio`, on [smol](https://docs.rs/smol). The driver
//! logic is written once, generic over a small runtime trait
//! ([`x0x_driver_tokio::core::Runtime`]); this crate is the adapter: [`SmolRuntime`] hands
//! quinn its smol runtime explicitly (`Endpoint::new(.., Arc::new(quinn::SmolRuntime))`,
//! never the constructors that guess a runtime — with both drivers in one build, quinn has
//! both runtime features and would pick tokio), and spawns on smol's global executor.
//!
//! ```no_run
//! use x0x_driver_smol::{Agent, network::NetworkConfig};
//!
//! smol::block_on(async {
//!     let agent = Agent::builder()
//!         .with_machine_key("/var/lib/x0x/machine.key")
//!         .with_agent_key_path("/var/lib/x0x/agent.key")
//!         .with_network_config(NetworkConfig::default())
//!         .build()
//!         .await?;
//!     agent.join_network().await?;
//!     agent.publish("news", b"hello".to_vec()).await?;
//!     agent.shutdown().await
//! })
//! .unwrap();
//! ```
//!
//! Tasks run on smol's global executor, which has one thread unless `SMOL_THREADS` says
//! otherwise; `block_on` from any thread works.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

pub use x0x_driver_tokio::core::{
    AgentEvent, AgentStats, DiscoveredAgent, DriverStats, Error, Events, Message, PeerInfo, Result,
    Subscription, identity, network, tls,
};
pub use x0x_driver_tokio::proto;

/// Runs the driver on smol: quinn's `SmolRuntime` for the endpoint, its timers and
/// `smol::spawn` (through quinn's runtime) for tasks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmolRuntime;

impl x0x_driver_tokio::core::Runtime for SmolRuntime {
    fn quinn_runtime(&self) -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::SmolRuntime)
    }
}

/// An agent on smol: see [`x0x_driver_tokio::core::Agent`].
pub type Agent = x0x_driver_tokio::core::Agent<SmolRuntime>;

/// The builder of an [`Agent`] on smol.
pub type AgentBuilder = x0x_driver_tokio::core::AgentBuilder<SmolRuntime>;
