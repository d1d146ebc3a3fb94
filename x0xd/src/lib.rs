//! # x0xd — the x0x-rs daemon, and `x0x`, its CLI
//!
//! `x0xd` runs one [`Agent`](x0x_driver_tokio::Agent) and serves x0x's local control plane
//! over HTTP on `127.0.0.1`: REST with flattened `{"ok": …}` JSON bodies, Server-Sent Events
//! and a WebSocket, behind a bearer token. A script written against x0x's daemon works
//! against this one unchanged: the same config keys, flags, files, paths and JSON shapes.
//! docs/daemon.md is the user's manual; this crate holds HTTP and process plumbing only —
//! every protocol decision is the agent's.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the TOML file (x0x's keys), flags, instance rules |
//! | [`files`] | `api-token`, `api.port`, key files in the data dir |
//! | [`peer_cache`] | `peers.json`: the agent's scored peer cache, saved and restored |
//! | [`contacts`] | `contacts.json`: the contact store, saved after every change |
//! | [`daemon`] | start-up and graceful shutdown |
//! | [`state`] | the registries and counters behind the handlers |
//! | [`bus`] | fan-out to streaming clients, each with a bounded queue |
//! | [`api`] | the routes ([`api::ROUTES`]), auth, CORS, error bodies |
//! | [`cli`] | the `x0x` command line |
//! | [`harness`] | real `x0xd` processes for tests and benchmarks |
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod bus;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod daemon;
pub mod files;
pub mod harness;
pub mod netlab;
pub mod peer_cache;
pub mod state;
pub mod stores;
