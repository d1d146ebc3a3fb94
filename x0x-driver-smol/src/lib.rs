//! # x0x-driver-smol — the x0x-rs agent on smol
//!
//! The [`Agent`] API of [`x0x_driver`] bound to [`SmolRuntime`]: this crate is a facade that
//! picks the runtime and re-exports the driver's API, the same items as `x0x-driver-tokio`.
//! How the driver works (tasks, framing, TLS identity, time, shutdown) is in
//! [`x0x_driver`]'s documentation.
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

pub use x0x_driver::facade::*;
pub use x0x_driver::runtime::SmolRuntime;

/// An agent on smol: see [`x0x_driver::Agent`].
pub type Agent = x0x_driver::Agent<SmolRuntime>;

/// The builder of an [`Agent`] on smol: see [`x0x_driver::AgentBuilder`].
pub type AgentBuilder = x0x_driver::AgentBuilder<SmolRuntime>;
