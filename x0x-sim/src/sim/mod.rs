//! The simulator: the nodes, the world around them and the run from setup to report (the
//! crate doc's "Layout" names the files).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use x0x_proto::Node;

use crate::report::Report;
use crate::scenario::Scenario;

mod connections;
mod event;
mod faults;
mod hostile;
mod outcome;
mod overlay;
mod setup;
mod trace;
mod world;

pub(crate) use event::Ev;
pub(crate) use outcome::Metrics;
pub(crate) use setup::{build_node, identity};
pub(crate) use trace::TraceTag;
pub(crate) use world::{Slot, World};

/// Simulated time starts at 2026-01-01T00:00:00Z (microseconds since the Unix epoch).
pub const EPOCH_US: u64 = 1_767_225_600 * 1_000_000;

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run seed.
    pub seed: u64,
    /// Overrides the scenario's node count.
    pub nodes: Option<usize>,
    /// Show a progress bar on stderr for runs longer than a few seconds (if it is a TTY).
    pub progress: bool,
}

/// What a run produced: the report and the data behind the charts.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// `(latency ms, fraction of deliveries <= it)` points of the latency CDF.
    pub latency_cdf: Vec<(f64, f64)>,
}

/// Runs `scenario` with `opts`: builds the nodes, runs the event loop to the end of the
/// script and measures. Deterministic in (scenario, node count, seed).
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Outcome {
    let mut sc = scenario.clone();
    if let Some(n) = opts.nodes {
        sc.nodes = n.max(1);
    }
    let setup = Instant::now();
    let mut sim = Sim::new(&sc, opts.seed);
    let setup_secs = setup.elapsed().as_secs_f64();
    if opts.progress {
        sim.w.progress = Some(Progress::new(sim.end_estimate_us()));
    }
    let wall = Instant::now();
    sim.run();
    let wall_secs = wall.elapsed().as_secs_f64();
    if let Some(p) = sim.w.progress.take() {
        p.bar.finish_and_clear();
    }
    sim.report(setup_secs, wall_secs)
}

/// The nodes and the world: what one run holds.
pub(crate) struct Sim<'a> {
    pub(crate) sc: &'a Scenario,
    pub(crate) seed: u64,
    /// Real ML-DSA keys (else stand-ins).
    pub(crate) real: bool,
    /// Node `i`, `None` while crashed.
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) w: World,
}

/// A 32-byte seed for the stream `ctx` of run `seed`, parameterised by `a` and `b`.
pub(crate) fn derive(ctx: &str, seed: u64, a: u64, b: u64) -> [u8; 32] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(&seed.to_le_bytes());
    m[8..16].copy_from_slice(&a.to_le_bytes());
    m[16..].copy_from_slice(&b.to_le_bytes());
    blake3::derive_key(ctx, &m)
}

/// Milliseconds to microseconds.
pub(crate) fn ms(x: u64) -> u64 {
    x.saturating_mul(1000)
}

/// The progress bar of a long run, shown only after two seconds of wall time.
pub(crate) struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: bool,
}

impl Progress {
    fn new(end_us: u64) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(end_us.saturating_sub(EPOCH_US) / 1000),
            ProgressDrawTarget::hidden(),
        );
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] sim {pos}/{len} ms {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    /// Shows simulated time `now` and the frames processed so far.
    pub(crate) fn tick(&mut self, now: u64, frames: u64) {
        if !self.shown && self.started.elapsed() > Duration::from_secs(2) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        self.bar.set_position((now - EPOCH_US) / 1000);
        self.bar.set_message(format!("{frames} frames"));
    }
}
