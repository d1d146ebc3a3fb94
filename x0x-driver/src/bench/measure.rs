//! Measuring helpers: flag parsing, a loopback configuration, percentiles, resident memory.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::network::NetworkConfig;

/// An agent's configuration for a benchmark on 127.0.0.1 (an ephemeral port), joining
/// through `bootstrap`.
pub fn loopback_config(bootstrap: Vec<SocketAddr>) -> NetworkConfig {
    NetworkConfig {
        bind_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        bootstrap_nodes: bootstrap,
        ..Default::default()
    }
}

/// Parses `--json PATH` and the numeric flags named in `numbers` (each `--name N`), leaving
/// the defaults already in `numbers` for flags not given. Returns the `--json` path.
pub fn parse_flags(numbers: &mut [(&str, &mut usize)]) -> Result<Option<String>, String> {
    let mut json = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        if flag == "--json" {
            json = Some(value);
            continue;
        }
        let slot = numbers
            .iter_mut()
            .find(|(name, _)| flag.strip_prefix("--") == Some(*name))
            .ok_or(format!("unknown argument {flag}"))?;
        *slot.1 = value.parse().map_err(|e| format!("{value}: {e}"))?;
    }
    Ok(json)
}

/// The `p` quantile of sorted durations, in milliseconds (0 when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Resident set size of this process, MiB (Linux; 0 elsewhere).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The body of a benchmark's `main`: runs `run` on the parsed `args`, prints the report and
/// writes it to the `--json` path `json` finds in them. Exits with 2 when the arguments do not
/// parse, with failure when the run fails, the file cannot be written or `check` names a
/// problem with the report.
pub async fn run_main<A, E, F>(
    args: Result<A, String>,
    json: impl FnOnce(&A) -> Option<String>,
    run: impl FnOnce(A) -> F,
    check: impl FnOnce(&serde_json::Value) -> Option<String>,
) -> ExitCode
where
    F: Future<Output = Result<serde_json::Value, E>>,
    E: Display,
{
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let json_path = json(&args);
    let report = match run(args).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = serde_json::to_string_pretty(&report).expect("serialisable");
    println!("{text}");
    if let Some(path) = json_path
        && let Err(e) = std::fs::write(&path, text + "\n")
    {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(problem) = check(&report) {
        eprintln!("{problem}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
