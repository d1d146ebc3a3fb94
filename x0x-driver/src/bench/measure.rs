//! Measuring helpers: flag parsing, percentiles, resident memory.

use std::time::Duration;

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
