//! Load and soak on real QUIC over loopback: one publisher, N agents, every subscriber's
//! receipts counted per message, one subscriber that stops reading.
//!
//! ```sh
//! cargo run --release -p x0x-tests --example load -- --messages 10000
//! cargo run --release -p x0x-tests --example load -- --messages 2000 --minutes 3
//! ```
//! Options: `--agents N` (10), `--messages N` (10000), `--payload BYTES` (256),
//! `--window N` (256), `--no-stall` (every subscriber reads), `--minutes M` (soak after the
//! delivery phase, RSS sampled every `--sample-secs S`, default 10), `--json PATH`.

use std::process::ExitCode;
use std::time::Duration;

use x0x_tests::load::{LoadConfig, run};

fn parse() -> Result<(LoadConfig, Option<String>), String> {
    let mut cfg = LoadConfig {
        messages: 10_000,
        ..LoadConfig::default()
    };
    let mut json = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--agents" => cfg.agents = num(value()?)? as usize,
            "--messages" => cfg.messages = num(value()?)? as usize,
            "--payload" => cfg.payload = num(value()?)? as usize,
            "--window" => cfg.window = num(value()?)? as usize,
            "--no-stall" => cfg.stalled_subscriber = false,
            "--minutes" => cfg.soak = Some(Duration::from_secs_f64(num(value()?)? * 60.0)),
            "--sample-secs" => cfg.sample_every = Duration::from_secs_f64(num(value()?)?),
            "--json" => json = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((cfg, json))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (cfg, json) = match parse() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match run(cfg).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = report.to_json();
    println!("{text}");
    if let Some(path) = json
        && let Err(e) = std::fs::write(&path, text + "\n")
    {
        eprintln!("cannot write {path}: {e}");
        return ExitCode::FAILURE;
    }
    if report.all_exactly_once() && report.others_dropped == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("a reading subscriber missed a message, got one twice, or was dropped");
        ExitCode::FAILURE
    }
}
