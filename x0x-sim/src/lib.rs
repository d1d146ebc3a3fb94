//! # x0x-sim — a deterministic discrete-event simulator of many `x0x_proto::Node`s
//!
//! The simulator drives the real sans-IO [`x0x_proto::Node`] — the same calls a QUIC driver
//! makes — over a modelled network, in simulated time, on one thread, and measures what the
//! protocol achieves: delivery, redundancy (RMR), hops, latency and the shape of the overlay.
//!
//! ## The model
//!
//! * **Time.** Simulated microseconds since the Unix epoch, starting at 2026-01-01T00:00:00Z
//!   ([`sim::EPOCH_US`]). A `BinaryHeap` holds `(time, seq, event)`, earliest first and FIFO
//!   among equal times. Nothing reads a clock; wall time is only reported.
//! * **Nodes.** Node `i` has the synthetic address `10.x.y.z:5483` ([`net::addr_of`]) and a
//!   deterministic identity: real ML-DSA-65 for runs of at most 1000 nodes, cheap stand-in keys
//!   above ([`scenario::CryptoMode`]). After **every** call into a node the simulator drains
//!   its transmits, actions and events, then re-arms the node's wake-up from `poll_timeout`
//!   (a new timer event only when the deadline moved earlier; stale wake-ups are ignored).
//! * **Connections.** `Action::Dial` to a live, reachable node completes after one round trip
//!   (both base latencies): the dialler gets `handle_connected(Outbound)`, the target
//!   `handle_connected(Inbound)`. A dial to a dead, unknown or cut-off address fails after
//!   `dial_timeout_ms`. At most one connection per pair: a dial to a machine the dialler is
//!   already connected to is dropped (counted as `dials_redundant`). `Action::Close` closes the
//!   closer's side at once (`handle_disconnected` immediately) and the other side one link
//!   latency + 1 µs later, after every frame already in flight on that connection.
//! * **Frames.** A frame travels on a connection: its arrival is send time + (bandwidth
//!   queueing) + base latency + jitter (+ a reorder delay), kept in order per connection
//!   unless reordered. Frames are dropped by loss, a partition, a full link queue, a closed
//!   connection, or a crashed receiver (silently: the protocol must detect crashes itself).
//!   Every drop is counted by cause ([`report::Drops`]).
//! * **Links.** A link's base latency is a pure function of (seed, ordered pair) — fixed,
//!   uniform or log-normal ([`scenario::Latency`]) — so no n² table is stored.
//! * **Script.** Nodes start staggered over `start_window_ms`; node 0 alone, node `i`
//!   bootstrapping to one random earlier node (or `bootstrap_nodes`). After `warmup_ms` the
//!   script runs: crashes, restarts, partitions, churn (Poisson leave/join) and publish rounds.
//!   A round ends when every eligible node delivered its messages, or after
//!   `round_timeout_ms`; the next starts `round_gap_ms` later.
//! * **Determinism.** Per-node RNG seeds, the network RNG and the script RNG are ChaCha8
//!   streams derived from the run seed; no threads, no hash-map iteration reaches the
//!   output. The same scenario, node count and seed give the same trace digest and the same
//!   report except the wall-clock keys ([`report::WALL_CLOCK_KEYS`]).
//!
//! ## Measurements
//!
//! See [`report::Report`] for every key. RMR and LDH follow the Plumtree paper (and
//! iroh-gossip's simulator): per message `RMR = m / (n_delivered − 1) − 1`, where `m` counts
//! the `Gossip` frames received for that message (found by decoding `Gossip` frames only).
//!
//! ## Use
//!
//! ```no_run
//! let report = x0x_sim::run_named("broadcast-single", 100, 1).unwrap();
//! assert_eq!(report.delivery_ratio, Some(1.0));
//! ```
//!
//! The CLI (`x0x-sim run <scenario>`, `x0x-sim compare a.json b.json`) is in `src/main.rs`.
//!
//! ## Layout
//!
//! [`sim`] runs a scenario: `setup` builds the nodes and queues the script, `world` holds
//! everything but the nodes and runs the event loop, `connections` carries frames between
//! nodes, `faults` crashes, restarts, partitions and churns them, `overlay` measures the
//! active views, `trace` hashes the events into the digest, `outcome` assembles the
//! [`Report`] and `hostile` plays the [`adversary`]. [`workload`] holds what the nodes are
//! asked to do and how it is measured: broadcast rounds, direct messages, discovery and SWIM
//! failure detection. [`scenario`] reads the TOML, [`net`] models the links, [`report`] and
//! [`plot`] write the results, [`stats`] holds the measuring structures.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod adversary;
pub mod net;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod stats;
pub mod workload;

pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
pub use sim::{Outcome, RunOptions, run};

/// Runs the scenario `name` (a shipped name or a file path) with `nodes` nodes and `seed`,
/// without a progress bar, and returns the report.
pub fn run_named(name: &str, nodes: usize, seed: u64) -> Result<Report, ScenarioError> {
    let sc = Scenario::load(name)?;
    Ok(run(
        &sc,
        &RunOptions {
            seed,
            nodes: Some(nodes),
            progress: false,
        },
    )
    .report)
}

/// Runs seeds `first..first + count` of `scenario` on up to `threads` OS threads (each run is
/// single-threaded and deterministic); returns the outcomes in seed order. `on_done` is called
/// after each finished run.
pub fn run_seeds(
    scenario: &Scenario,
    nodes: Option<usize>,
    first: u64,
    count: u64,
    threads: usize,
    on_done: &(dyn Fn(&Outcome) + Sync),
) -> Vec<Outcome> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count {
                        break;
                    }
                    let out = run(
                        scenario,
                        &RunOptions {
                            seed: first + k,
                            nodes,
                            progress: false,
                        },
                    );
                    on_done(&out);
                    if let Ok(mut r) = results.lock() {
                        r.push((k, out));
                    }
                }
            });
        }
    });
    let mut v = results.into_inner().unwrap_or_default();
    v.sort_by_key(|(k, _)| *k);
    v.into_iter().map(|(_, o)| o).collect()
}
