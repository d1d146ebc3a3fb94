//! `x0x-sim`: run a scenario, write its JSON report and charts, compare two reports.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget};
use x0x_sim::report::{MultiReport, compare_table};
use x0x_sim::{Outcome, Report, RunOptions, Scenario, plot, run, run_seeds};

/// Deterministic discrete-event simulator of x0x-proto nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario (a name from x0x-sim/scenarios/ or a TOML path).
    Run(RunArgs),
    /// Compare two JSON reports metric by metric.
    Compare {
        /// The baseline report.
        a: PathBuf,
        /// The report compared with it.
        b: PathBuf,
    },
    /// List the shipped scenarios.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenario name or path.
    scenario: String,
    /// Node count (overrides the scenario's).
    #[arg(long)]
    nodes: Option<usize>,
    /// Run seed (the first one with --seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this many seeds, seed..seed+K, on two threads, and aggregate.
    #[arg(long)]
    seeds: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write SVG charts into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No table and no progress bar.
    #[arg(long)]
    quiet: bool,
    /// Fail unless every run's delivery_ratio is at least this.
    #[arg(long)]
    expect_delivery: Option<f64>,
    /// Fail unless every run's overlay has at most this many components.
    #[arg(long)]
    expect_components: Option<usize>,
    /// Fail unless every run has at most this many isolated nodes.
    #[arg(long)]
    expect_isolated: Option<usize>,
    /// Fail unless every run's rmr is at most this.
    #[arg(long)]
    expect_rmr_max: Option<f64>,
}

/// The simulator allocates and frees many small frames and map nodes; mimalloc does that
/// faster than the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run(a) => run_cmd(a),
        Cmd::Compare { a, b } => {
            let load = |p: &PathBuf| -> Result<serde_json::Value, String> {
                let s = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&s).map_err(|e| format!("{}: {e}", p.display()))
            };
            match (load(&a), load(&b)) {
                (Ok(x), Ok(y)) => {
                    println!("A = {}\nB = {}\n", a.display(), b.display());
                    print!("{}", compare_table(&x, &y));
                    ExitCode::SUCCESS
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::List => {
            for (name, _) in x0x_sim::scenario::BUILTIN {
                let d = Scenario::builtin(name)
                    .map(|s| s.description)
                    .unwrap_or_default();
                println!("{name:<18} {d}");
            }
            ExitCode::SUCCESS
        }
    }
}

fn run_cmd(a: RunArgs) -> ExitCode {
    let sc = match Scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = run_outcomes(&a, &sc);
    let reports: Vec<&Report> = outcomes.iter().map(|o| &o.report).collect();
    if !a.quiet {
        for r in &reports {
            println!("{}", r.table());
        }
    }
    let json = report_json(&a, &reports);
    if let Some(path) = &a.json {
        let written = json
            .map_err(|e| format!("serialising the report: {e}"))
            .and_then(|s| {
                std::fs::write(path, s + "\n")
                    .map_err(|e| format!("writing {}: {e}", path.display()))
            });
        if let Err(e) = written {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(dir) = &a.plot
        && let Err(e) = write_plots(&a, dir, &outcomes)
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let mut failed = false;
    for r in &reports {
        failed |= !meets_expectations(&a, r);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the seed, or the seeds on two threads with a progress bar.
fn run_outcomes(a: &RunArgs, sc: &Scenario) -> Vec<Outcome> {
    let nodes = a.nodes.unwrap_or(sc.nodes);
    let tty = std::io::stderr().is_terminal();
    let Some(k) = a.seeds else {
        return vec![run(
            sc,
            &RunOptions {
                seed: a.seed,
                nodes: Some(nodes),
                progress: !a.quiet && tty,
            },
        )];
    };
    let k = k.max(1);
    let bar = if !a.quiet && tty {
        ProgressBar::with_draw_target(Some(k), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("seeds");
    let outs = run_seeds(sc, Some(nodes), a.seed, k, 2, &|_| bar.inc(1));
    bar.finish_and_clear();
    outs
}

/// The JSON of the single report, or of the multi-seed report (whose main aggregates are
/// printed unless quiet).
fn report_json(a: &RunArgs, reports: &[&Report]) -> serde_json::Result<String> {
    if a.seeds.is_none() {
        return serde_json::to_string_pretty(reports[0]);
    }
    let multi = MultiReport::new(reports.iter().map(|r| (*r).clone()).collect());
    if !a.quiet {
        for key in [
            "delivery_ratio",
            "rmr",
            "ldh_max",
            "latency_ms.p50",
            "latency_ms.p99",
            "components",
            "isolated_nodes",
            "wall_secs",
        ] {
            if let Some(s) = multi.aggregate.get(key) {
                println!(
                    "  {key:<18} mean {:.4}  p50 {:.4}  min {:.4}  max {:.4}",
                    s.mean, s.p50, s.min, s.max
                );
            }
        }
    }
    serde_json::to_string_pretty(&multi)
}

/// Writes each run's charts into `dir` (a subdirectory per seed for several).
fn write_plots(a: &RunArgs, dir: &Path, outcomes: &[Outcome]) -> Result<(), String> {
    for o in outcomes {
        let d = if outcomes.len() > 1 {
            dir.join(format!("seed-{}", o.report.seed))
        } else {
            dir.to_path_buf()
        };
        let paths = plot::write_plots(&d, o)
            .map_err(|e| format!("writing charts to {}: {e}", d.display()))?;
        if !a.quiet {
            for p in paths {
                println!("wrote {}", p.display());
            }
        }
    }
    Ok(())
}

/// Whether run `r` meets every `--expect-*` bound; prints what it missed and how to replay it.
fn meets_expectations(a: &RunArgs, r: &Report) -> bool {
    let mut why = Vec::new();
    if let Some(x) = a.expect_delivery
        && r.delivery_ratio.is_none_or(|d| d < x)
    {
        why.push(format!("delivery_ratio {:?} < {x}", r.delivery_ratio));
    }
    if let Some(x) = a.expect_components
        && r.components > x
    {
        why.push(format!("components {} > {x}", r.components));
    }
    if let Some(x) = a.expect_isolated
        && r.isolated_nodes > x
    {
        why.push(format!("isolated_nodes {} > {x}", r.isolated_nodes));
    }
    if let Some(x) = a.expect_rmr_max
        && r.rmr.is_none_or(|v| v > x)
    {
        why.push(format!("rmr {:?} > {x}", r.rmr));
    }
    if why.is_empty() {
        return true;
    }
    eprintln!("FAILED: {}", why.join("; "));
    eprintln!(
        "replay: x0x-sim run {} --nodes {} --seed {}",
        a.scenario, r.nodes, r.seed
    );
    false
}
