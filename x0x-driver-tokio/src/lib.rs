//! # x0x-driver-tokio — the x0x-rs agent on tokio
//!
//! The [`Agent`] API of [`x0x_driver`] bound to [`TokioRuntime`]: this crate is a facade
//! that picks the runtime and re-exports the driver's API. How the driver works (tasks,
//! framing, TLS identity, time, shutdown) is in [`x0x_driver`]'s documentation.
//!
//! ```no_run
//! use x0x_driver_tokio::{Agent, network::NetworkConfig};
//!
//! # async fn demo() -> x0x_driver_tokio::Result<()> {
//! let agent = Agent::builder()
//!     .with_machine_key("/var/lib/x0x/machine.key")
//!     .with_agent_key_path("/var/lib/x0x/agent.key")
//!     .with_network_config(NetworkConfig {
//!         bootstrap_nodes: vec!["192.0.2.1:5483".parse().unwrap()],
//!         ..Default::default()
//!     })
//!     .build()
//!     .await?;
//! agent.join_network().await?;
//! agent.publish("news", b"hello".to_vec()).await?;
//! agent.shutdown().await
//! # }
//! ```
//!
//! `build()` must be called inside a tokio runtime. The agent reads tokio's clock, so a
//! paused clock (`#[tokio::test(start_paused = true)]`) drives its timers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use x0x_driver::facade::*;
pub use x0x_driver::runtime::TokioRuntime;

/// An agent on tokio: see [`x0x_driver::Agent`].
pub type Agent = x0x_driver::Agent<TokioRuntime>;

/// The builder of an [`Agent`] on tokio: see [`x0x_driver::AgentBuilder`].
pub type AgentBuilder = x0x_driver::AgentBuilder<TokioRuntime>;
