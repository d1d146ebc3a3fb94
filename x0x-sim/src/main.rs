//! `x0x-sim`: run a scenario, write its JSON report and charts, compare two reports.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
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

/// The simulator allocates and frees millions of small frames and map nodes per simulated
/// minute; glibc's allocator spent about a sixth of a 10 000-node run (perf), mimalloc less.
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
    let nodes = a.nodes.unwrap_or(sc.nodes);
    let tty = std::io::stderr().is_terminal();
    let outcomes: Vec<Outcome> = match a.seeds {
        None => vec![run(
            &sc,
            &RunOptions {
                seed: a.seed,
                nodes: Some(nodes),
                progress: !a.quiet && tty,
            },
        )],
        Some(k) => {
            let k = k.max(1);
            let bar = if !a.quiet && tty {
                ProgressBar::with_draw_target(Some(k), ProgressDrawTarget::stderr())
            } else {
                ProgressBar::hidden()
            };
            bar.set_message("seeds");
            let outs = run_seeds(&sc, Some(nodes), a.seed, k, 2, &|_| bar.inc(1));
            bar.finish_and_clear();
            outs
        }
    };
    let reports: Vec<&Report> = outcomes.iter().map(|o| &o.report).collect();
    if !a.quiet {
        for r in &reports {
            println!("{}", r.table());
        }
    }
    let json = if a.seeds.is_some() {
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
    } else {
        serde_json::to_string_pretty(reports[0])
    };
    if let Some(path) = &a.json {
        match json {
            Ok(s) => {
                if let Err(e) = std::fs::write(path, s + "\n") {
                    eprintln!("error: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("error: serialising the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(dir) = &a.plot {
        for o in &outcomes {
            let d = if outcomes.len() > 1 {
                dir.join(format!("seed-{}", o.report.seed))
            } else {
                dir.clone()
            };
            match plot::write_plots(&d, o) {
                Ok(paths) if !a.quiet => {
                    for p in paths {
                        println!("wrote {}", p.display());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("error: writing charts to {}: {e}", d.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let mut failed = false;
    for r in &reports {
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
        if !why.is_empty() {
            failed = true;
            eprintln!("FAILED: {}", why.join("; "));
            eprintln!(
                "replay: x0x-sim run {} --nodes {} --seed {}",
                a.scenario, r.nodes, r.seed
            );
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
