//! # x0x-driver — the QUIC driver and `Agent` API of x0x-rs, on any async runtime
//!
//! This crate runs an [`x0x_proto::Node`] over real networks: QUIC (quinn) with TLS 1.3 whose
//! identity is the machine's ML-DSA-65 key. It holds **no protocol decision**: everything it
//! learns goes into the node (`handle_connected`, `handle_disconnected`, `handle_dial_failed`,
//! `handle_frame`, `handle_timeout`), everything it sends comes out of it (`poll_transmit`,
//! `poll_action`, `poll_event`, `poll_timeout`), drained after every input.
//!
//! Applications use a facade: `x0x-driver-tokio` or `x0x-driver-smol`, which pick the runtime
//! and re-export this crate's API (the items of [`facade`]) with `Agent` and `AgentBuilder`
//! bound to it. Code that should run on either writes against [`Agent<R>`](Agent) for any
//! [`Runtime`] `R`:
//!
//! ```no_run
//! use x0x_driver::{Agent, Runtime, network::NetworkConfig};
//!
//! async fn demo<R: Runtime + Default>() -> x0x_driver::Result<()> {
//!     let agent = Agent::<R>::builder()
//!         .with_machine_key("/var/lib/x0x/machine.key")
//!         .with_agent_key_path("/var/lib/x0x/agent.key")
//!         .with_network_config(NetworkConfig {
//!             bootstrap_nodes: vec!["192.0.2.1:5483".parse().unwrap()],
//!             ..Default::default()
//!         })
//!         .build()
//!         .await?;
//!     agent.join_network().await?;
//!     let mut sub = agent.subscribe("news").await?;
//!     agent.publish("news", b"hello".to_vec()).await?;
//!     while let Some(msg) = sub.recv().await {
//!         println!("{} from {}", String::from_utf8_lossy(&msg.payload), msg.sender);
//!     }
//!     // Direct messages: a receipt (path, retries) or a typed error; `recv_direct` on the
//!     // other side yields the verified sender and payload.
//!     # let friend = agent.agent_id();
//!     let receipt = agent.send_direct(friend, b"hi".to_vec()).await?;
//!     println!("delivered over {:?} after {} retries", receipt.path, receipt.retries);
//!     if let Some(dm) = agent.recv_direct().await {
//!         println!("{} says {:?}", dm.sender, dm.payload);
//!     }
//!     agent.shutdown().await
//! }
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
//!   input to the node with the current time and drains the node's outputs. The [`Agent`] is
//!   only a handle: a bounded command channel plus a one-shot reply per request.
//! * **Connections.** The driver keeps at most one connection per
//!   [`MachineId`](identity::MachineId): the one the node tracks. A second one (simultaneous
//!   dials) is still reported to the node, which takes it as the outcome of its dial, and the
//!   newcomer is closed. A connection has a *reader* task and a *writer* task; the writer
//!   drains a bounded queue, and when it is full (a peer that does not read) frames are
//!   dropped and counted — the node loop never blocks on a peer.
//! * **Framing.** One unidirectional QUIC stream each way per connection, for the
//!   connection's life; each frame is `u32 big-endian length | frame`. A length above
//!   [`x0x_proto::wire::MAX_FRAME_LEN`] is refused before allocating: the connection is closed
//!   ([`CloseCode::FrameTooLarge`]) and nothing more from it reaches the node. Frames that do
//!   not decode are the node's business: it queues a `Close` with a reason and the driver
//!   closes the connection ([`CloseCode::BadFrames`]).
//! * **TLS identity** ([`tls`]). RFC 7250 raw public keys over TLS 1.3: each side's
//!   "certificate" is its machine key's SubjectPublicKeyInfo, the handshake is signed with
//!   ML-DSA-65 (scheme `mldsa65`), authentication is mutual, ALPN is `x0x-rs/1`. A dial that
//!   expects a machine carries its id in the SNI and the handshake fails if the server's key
//!   hashes to another id. The proven key gives the [`MachineId`](identity::MachineId) the
//!   node is told.
//! * **Time.** Every time the driver reads comes from [`Runtime::now`], turned into protocol
//!   [`Time`](x0x_proto::Time) by an offset fixed once from the wall clock: node timers never
//!   run backwards when the system clock is adjusted, and on tokio a paused clock
//!   (`#[tokio::test(start_paused = true)]`) drives the agent's heartbeats and timeouts.
//! * **Shutdown** closes every connection (letting writers flush briefly), closes the
//!   endpoint and waits for every task it spawned to end.
//!
//! ## Runtimes
//!
//! Nothing outside [`runtime`] names a runtime: the driver needs a [`Runtime`] (the time,
//! spawn, sleep, and the `quinn::Runtime` the endpoint runs on — always passed to
//! `Endpoint::new` explicitly, since with both runtime features in one build quinn would
//! guess tokio). Two ship behind features: `runtime::TokioRuntime` (`tokio`) and
//! `runtime::SmolRuntime` (`smol`).
//!
//! ## Key files
//!
//! `with_machine_key(path)` / `with_agent_key_path(path)` load the key if the file exists and
//! create it otherwise — written to a temporary file in the same directory, synced, mode
//! 0600, linked into place without replacing anything ([`keys`]). A file that is not a key of
//! that role is a typed error ([`Error::KeyFileInvalid`]) and is never overwritten.
//!
//! ## Features
//!
//! `tokio`, `smol` (the runtimes above), `aws-lc-rs` (sign and verify through aws-lc-rs; on
//! by default in the facades), `bench` (module `bench`: the harness the benchmark examples of
//! both facades share).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod agent;
#[cfg(feature = "bench")]
pub mod bench;
mod clock;
mod driver;
mod error;
pub mod identity;
pub mod keys;
mod lan;
pub mod network;
pub mod runtime;
pub mod tls;
mod transport;

pub use agent::{
    Agent, AgentBuilder, AgentEvent, AgentStats, AppSignature, AppSignatureError, ConnectOutcome,
    DiscoveredAgent, DriverStats, Events, Message, PeerInfo, PresenceEvents, StoreInfo,
    Subscription,
};
pub use error::{CardError, Error, Result, TlsError};
pub use runtime::Runtime;
pub use transport::CloseCode;
pub use x0x_proto as proto;
pub use x0x_proto::collab::{AccessPolicy, KvEntry, StoreKind, StoreSnapshot, Task, TaskState};
pub use x0x_proto::direct::{
    DirectFailure, DirectMessage, DirectOptions, DirectPath, DirectReceipt, PathPreference,
};
pub use x0x_proto::membership::DownReason;
pub use x0x_proto::node::Visibility;
pub use x0x_proto::peer_cache::{CachedPeer, ScoredPeer};
pub use x0x_proto::presence::{OfflineReason, OnlineAgent};

/// What every driver facade re-exports, besides its runtime and the `Agent` / `AgentBuilder`
/// aliases over it: one list, so `x0x-driver-tokio` and `x0x-driver-smol` offer the same API.
pub mod facade {
    pub use crate::{
        AccessPolicy, AgentEvent, AgentStats, AppSignature, AppSignatureError, CachedPeer,
        CardError, CloseCode, ConnectOutcome, DirectFailure, DirectMessage, DirectOptions,
        DirectPath, DirectReceipt, DiscoveredAgent, DownReason, DriverStats, Error, Events,
        KvEntry, Message, OfflineReason, OnlineAgent, PathPreference, PeerInfo, PresenceEvents,
        Result, ScoredPeer, StoreInfo, StoreKind, StoreSnapshot, Subscription, Task, TaskState,
        TlsError, Visibility, identity, keys, network, proto, tls,
    };
}
