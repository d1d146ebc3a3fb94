//! # x0x-driver-tokio — QUIC driver and `Agent` API for x0x-rs
//!
//! This crate runs an [`x0x_proto::Node`] over real networks: QUIC (quinn) with TLS 1.3 whose
//! identity is the machine's ML-DSA-65 key, on tokio by default. It holds **no protocol
//! decision**: everything it learns goes into the node (`handle_connected`,
//! `handle_disconnected`, `handle_dial_failed`, `handle_frame`, `handle_timeout`), everything
//! it sends comes out of it (`poll_transmit`, `poll_action`, `poll_event`, `poll_timeout`),
//! drained after every input.
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
//! let mut sub = agent.subscribe("news").await?;
//! agent.publish("news", b"hello".to_vec()).await?;
//! while let Some(msg) = sub.recv().await {
//!     println!("{} from {}", String::from_utf8_lossy(&msg.payload), msg.sender);
//! }
//! agent.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Architecture
//!
//! ```text
//!  Agent handles ──commands (bounded, oneshot reply)──►┐
//!                                                      │      ┌──────────────┐
//!  accept loop ─► handshake tasks ─┐                   ├─────►│ driver task  │ owns Node,
//!  dial tasks ─────────────────────┼─conn events ─────►┘      │              │ endpoint,
//!  reader task per connection ─────┘  (bounded)               └──────┬───────┘ conn map
//!                                                                    │ try_send (drop+count)
//!  writer task per connection ◄─── bounded frame queue ◄─────────────┤
//!  Subscription ◄───────────────── bounded message queue ◄───────────┤
//!  Events ◄─────────────────────── bounded event queue ◄─────────────┘
//! ```
//!
//! * **One driver task** owns the [`Node`](x0x_proto::Node) and the `quinn::Endpoint`. It
//!   waits on an `Agent` command, a connection event or the node's next timeout, feeds the
//!   input to the node with the current time and drains the node's outputs. The
//!   [`Agent`](crate::core::Agent) is only a handle: a bounded command channel plus a
//!   one-shot reply per request.
//! * **Connections.** The driver keeps at most one connection per `MachineId`
//!   (`identity::MachineId`): the one the node tracks. A second one (simultaneous dials) is
//!   offered to the node, which answers `Close { reason: Duplicate }`, and the newcomer is
//!   closed. A connection has a *reader* task and a *writer* task; the writer drains a bounded
//!   queue, and when it is full (a peer that does not read) frames are dropped and counted —
//!   the node loop never blocks on a peer.
//! * **Framing.** One unidirectional QUIC stream each way per connection, for the
//!   connection's life; each frame is `u32 big-endian length | frame`. A length above
//!   [`x0x_proto::wire::MAX_FRAME_LEN`] is refused before allocating: the connection is closed
//!   ([`core::CloseCode::FrameTooLarge`]) and nothing more from it reaches the node. Frames
//!   that do not decode are the node's business: it queues a `Close` with a reason and the
//!   driver closes the connection ([`core::CloseCode::BadFrames`]).
//! * **TLS identity** ([`core::tls`]). RFC 7250 raw public keys over TLS 1.3: each side's
//!   "certificate" is its machine key's SubjectPublicKeyInfo, the handshake is signed with
//!   ML-DSA-65 (scheme `mldsa65`), authentication is mutual, ALPN is `x0x-rs/1`. A dial that
//!   expects a machine carries its id in the SNI and the handshake fails if the server's key
//!   hashes to another id. The proven key gives the [`MachineId`](identity::MachineId) the node
//!   is told.
//! * **Time.** [`core::Clock`]: `Time` from a monotonic `Instant` anchored once to the wall
//!   clock.
//! * **Shutdown** closes every connection (letting writers flush briefly), closes the
//!   endpoint and waits for every task it spawned to end.
//!
//! ## Runtimes
//!
//! [`core`] never names a runtime: it needs [`core::Runtime`] (spawn, sleep, and the
//! `quinn::Runtime` the endpoint runs on — always passed to `Endpoint::new` explicitly). The
//! tokio glue, [`TokioRuntime`] and the [`Agent`] alias, sits behind the default feature
//! `tokio-runtime`; another driver depends on this crate with `default-features = false` and
//! supplies its own `Runtime`.
//!
//! ## Key files
//!
//! `with_machine_key(path)` / `with_agent_key_path(path)` load the key if the file exists and
//! create it otherwise — written to a temporary file in the same directory, synced, mode
//! 0600, linked into place without replacing anything. A file that is not a key of that role
//! is a typed error ([`Error::KeyFileInvalid`]) and is never overwritten.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod core;
#[cfg(feature = "tokio-runtime")]
mod tokio_runtime;

pub use crate::core::{
    AgentEvent, AgentStats, DiscoveredAgent, DriverStats, Error, Events, Message, PeerInfo, Result,
    Subscription, identity, network, tls,
};
pub use x0x_proto as proto;

#[cfg(feature = "tokio-runtime")]
pub use tokio_runtime::TokioRuntime;

/// An agent on tokio: see [`core::Agent`].
#[cfg(feature = "tokio-runtime")]
pub type Agent = core::Agent<TokioRuntime>;

/// The builder of an [`Agent`] on tokio: see [`core::AgentBuilder`].
#[cfg(feature = "tokio-runtime")]
pub type AgentBuilder = core::AgentBuilder<TokioRuntime>;
