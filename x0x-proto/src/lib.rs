//! # x0x-proto — the sans-IO core of x0x-rs
//!
//! This crate is the whole x0x protocol with no I/O: no sockets, no clocks, no threads, no
//! global RNG. A [`Node`] is a plain value. You feed it what happened — a connection came up,
//! a frame arrived, time passed — and you drain what it wants done — frames to send,
//! connections to open or close, events for the application, and the next time it wants to be
//! woken. The QUIC drivers (`x0x-driver-tokio`, `x0x-driver-smol`) and the simulator
//! (`x0x-sim`) drive exactly the same calls, which is why a simulation of ten thousand nodes
//! exercises the code that runs in production.
//!
//! The shape follows quinn-proto and str0m.
//!
//! ## Modules
//!
//! | module | holds |
//! |---|---|
//! | [`node`] | [`Node`], its [`Config`], [`Identity`], inputs, outputs and [`node::NodeStats`]: the front end every driver calls |
//! | [`membership`] | the overlay: HyParView active and passive views, SWIM failure detection |
//! | [`broadcast`] | pub/sub dissemination: PlumTree per topic over one tree per topic (the depth rule), topic links for sparse topics |
//! | [`announce`] | the signed announcement and rendezvous records, address scoping |
//! | [`discovery`] | the bounded caches of announced agents, and the query that finds one |
//! | [`direct`] | direct messages: connected and sealed paths, acks, retries, dedup |
//! | [`trust`] | the contact store and the trust evaluator every path consults |
//! | [`collab`] | replicated KV stores and task lists: signed changes, policies, anti-entropy |
//! | [`presence`] | beacons, the φ accrual failure detector, friend-of-a-friend queries |
//! | [`nat`] | where peers see this node, and dials coordinated through a common peer |
//! | [`peer_cache`] | scored addresses to (re)join through, saved by the driver |
//! | [`identity`] | machine / agent / user ML-DSA-65 keys, ids, [`identity::AgentCertificate`] |
//! | [`kem`] | ML-KEM-768 agent keys and the sealed box (ChaCha20-Poly1305) |
//! | [`wire`] | every frame type, the versioned framing, size limits, [`wire::Signed`] content |
//! | [`time`] | [`Time`], the time value passed into every call |
//!
//! The protocol layers ([`membership`], [`broadcast`], [`discovery`], [`direct`],
//! [`presence`]) are small
//! state machines inside the node, each with a config whose fields say their defaults and
//! where they come from; every config deserialises (serde, durations as `"150ms"`), so a
//! simulator scenario can set any knob. Crate-private helpers (timer sets, bounded FIFOs,
//! small sorted sets, counters by reason) live in `util`.
//!
//! ## The run loop
//!
//! ```text
//!            ┌──────────── handle_connected / handle_disconnected / handle_dial_failed
//!  driver ───┼──────────── handle_frame(now, peer, bytes)
//!            └──────────── handle_timeout(now)
//!                               │
//!                             Node
//!                               │
//!            ┌──────────── poll_transmit()  → frames for connected peers
//!  driver ◄──┼──────────── poll_action()    → Dial { addr } / Close { peer, reason }
//!            ├──────────── poll_event()     → PeerUp, PeerDown, … for the application
//!            └──────────── poll_timeout()   → the next Time to call handle_timeout
//! ```
//!
//! 1. Build the node: [`Node::new`]`(identity, config, rng_seed)`.
//! 2. Call [`Node::start`]`(now)` (or any `handle_*`, which starts it implicitly).
//! 3. After **every** input, drain all four outputs until each returns `None`. Outputs are
//!    queued in the order the node produced them; a driver that stops draining causes the
//!    bounded queues to drop (and count, see [`node::NodeStats`]) rather than grow.
//! 4. Sleep until [`Node::poll_timeout`] or until the next input, whichever comes first, then
//!    call [`Node::handle_timeout`]. Calling it early or twice is harmless.
//!
//! ```
//! use x0x_proto::{Config, Identity, Node, Time};
//!
//! let mut node = Node::new(Identity::from_seed([7; 32]), Config::default(), [1; 32]).unwrap();
//! let now = Time::from_secs(1_700_000_000);
//! node.start(now);
//! while let Some(t) = node.poll_transmit() { let _ = t; /* write t.frame to t.to's stream */ }
//! while let Some(a) = node.poll_action() { let _ = a; /* dial or close */ }
//! while let Some(e) = node.poll_event() { let _ = e; /* hand to the application */ }
//! assert!(node.poll_timeout().is_some());
//! ```
//!
//! ## Connections and peers
//!
//! The driver owns transport connections, at most one per machine. The transport handshake
//! proves the peer's [`MachineId`] (TLS with the machine's ML-DSA-65 key as a raw public key);
//! the driver passes that id to [`Node::handle_connected`] and tags every incoming frame with
//! it. The node never learns about sockets beyond the `SocketAddr`s it asks to dial and the
//! addresses peers tell it. Each frame is one [`wire::Frame`]; the driver delimits frames on
//! its streams (a length prefix) and refuses lengths above [`wire::MAX_FRAME_LEN`].
//!
//! ## The time model
//!
//! [`Time`] is microseconds since the Unix epoch, passed in as `now`. The same value stamps
//! signed records (whole seconds) and schedules timers, so a driver derives it from a monotonic
//! clock anchored once to the wall clock. The node never compares `now` with anything but
//! earlier values it was given; a `now` that goes backwards delays timers, it does not break
//! them. Deadlines are absolute.
//!
//! ## Randomness and determinism
//!
//! Every random choice comes from a ChaCha8 RNG seeded at construction. Iteration that can
//! reach an output uses ordered maps. Signatures are deterministic ML-DSA with the default
//! (pure-Rust) backend. So the same identity, config, seed and sequence of inputs produce the
//! same outputs, byte for byte — the property the simulator and the fuzzers rely on. With the
//! `aws-lc-rs` feature signatures are hedged: the signature bytes vary, while message ids,
//! timers and every decision stay the same (ids hash the signed body, not the signature).
//!
//! ## Panics, errors and hostile input
//!
//! No input makes the node panic. Bytes from the network are decoded against explicit size
//! limits before any allocation they could drive, and every failure is a typed error
//! ([`wire::DecodeError`], [`identity::VerifyError`], [`node::FrameError`]) plus a counter in
//! [`node::NodeStats`]. A peer that sends undecodable frames is disconnected with a reason. The
//! remaining `unreachable!`s mark states the types rule out (e.g. encoding a value into a
//! `Vec` cannot fail), each with a comment. Configuration is validated by [`Node::new`], which
//! returns [`node::ConfigError`] rather than asserting. [`Node::check_invariants`] checks what
//! must hold after any input (caps, disjoint views, well-formed trees) and returns a typed
//! [`node::InvariantError`]; the fuzzers and the simulator's hostile scenarios call it.
//!
//! ## Bounded memory
//!
//! Every queue and table has a cap, an eviction or refusal rule, and a counter: outgoing frames
//! ([`Config::max_queued_transmits`]), events ([`Config::max_queued_events`]), connections
//! ([`Config::max_connections`]); direct messages in flight, the receiver dedup window and the
//! RTT table ([`direct::DirectConfig`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod announce;
pub mod broadcast;
pub mod collab;
pub mod direct;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod kem;
pub mod membership;
pub mod nat;
pub mod node;
pub mod peer_cache;
pub mod presence;
pub mod time;
pub mod trust;
pub(crate) mod util;
pub mod wire;

pub use identity::{AgentId, MachineId, UserId};
pub use node::{Action, Config, Event, Identity, Node, Transmit};
pub use time::Time;
