//! The runtime-agnostic driver: everything except the runtime glue.
//!
//! Nothing here names an async runtime. A driver crate for another runtime implements
//! [`Runtime`] (a few lines around its `quinn::Runtime`), then re-exports this module's API
//! with `type Agent = core::Agent<ItsRuntime>`.

pub mod agent;
pub mod clock;
mod driver;
pub mod error;
pub mod identity;
pub mod keys;
pub mod network;
pub mod runtime;
pub mod tls;
pub mod transport;

pub use agent::{
    Agent, AgentBuilder, AgentEvent, AgentStats, DiscoveredAgent, DriverStats, Events, Message,
    PeerInfo, Subscription,
};
pub use clock::Clock;
pub use error::{Error, Result};
pub use runtime::Runtime;
pub use transport::CloseCode;
