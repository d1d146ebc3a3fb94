//! Two `x0xd` processes on loopback, 1 KiB payloads published through REST on A and read
//! from B's `/events` stream.
//!
//! * `health_ms`: spawn → first `/health` answer (the slower of the two daemons);
//! * `rss_mb`: resident memory of an idle daemon after both joined (the larger);
//! * `p50_ms`, `p99_ms`: `POST /publish` sent → SSE event read, one message at a time;
//! * `msgs_per_sec`: messages published through one WebSocket session on A as fast as the
//!   mesh delivers them — at most `--window` (default 512) published and not yet read from B's
//!   stream, which stays below the daemon's per-client queue (a stream reader that falls 1 024
//!   events behind is disconnected by design) — divided by the time until B's stream delivered
//!   the last one; `lost` must be 0;
//! * `details.rest_msgs_per_sec`: the same through `POST /publish` from `--clients`
//!   keep-alive HTTP clients (`--rest-messages`, default 5000).
//!
//! `cargo run --release -p x0xd --example daemon_bench -- --json PATH` (needs the release
//! `x0xd` binary: `cargo build --release --bin x0xd`). Flags: `--latency-messages N`
//! (default 1000), `--messages N` (default 20000), `--clients N` (default 4).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use x0xd::harness::{DaemonSpec, TestDaemon, free_ports, wait_until};

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let latency_messages = flag("--latency-messages", 1000);
    let messages = flag("--messages", 20_000);
    let clients = flag("--clients", 4).max(1);
    let rest_messages = flag("--rest-messages", 5000);
    let window = flag("--window", 512).max(1);

    let exe = std::env::current_exe()?
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("x0xd"))
        .filter(|p| p.exists())
        .ok_or(
            "x0xd binary not found next to the examples dir: cargo build --release --bin x0xd",
        )?;
    let work = tempfile::tempdir()?;
    let ports = free_ports(4)?;
    let mut a = TestDaemon::new(
        &exe,
        work.path(),
        DaemonSpec::loopback("bench-a", ports[0], ports[1], &[]),
    );
    let mut b = TestDaemon::new(
        &exe,
        work.path(),
        DaemonSpec::loopback("bench-b", ports[2], ports[3], &[ports[0]]),
    );
    if !a.start() || !b.start() {
        return Err("a daemon did not answer /health".into());
    }
    let health_ms = a.health_ms.max(b.health_ms);
    if !wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        a.peers() >= 1 && b.peers() >= 1
    }) {
        return Err("daemons did not connect".into());
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_mb = a.rss_mb().max(b.rss_mb());

    let topic = "x0xd-bench";
    b.post("/subscribe", &json!({"topic": topic}));
    let sse = b.sse("/events");
    let payload = |i: usize| {
        let mut p = format!("{i:08}").into_bytes();
        p.resize(1024, b'.');
        STANDARD.encode(p)
    };
    let received = |sse: &x0xd::harness::SseStream| sse.len();

    // Warm-up: the first messages build the tree.
    for i in 0..20 {
        a.post("/publish", &json!({"topic": topic, "payload": payload(i)}));
    }
    wait_until(Duration::from_secs(10), Duration::from_millis(1), || {
        received(&sse) >= 20
    });

    // Latency, one at a time.
    let mut lat = Vec::with_capacity(latency_messages);
    for i in 0..latency_messages {
        let before = received(&sse);
        let t0 = Instant::now();
        a.post("/publish", &json!({"topic": topic, "payload": payload(i)}));
        if !wait_until(Duration::from_secs(5), Duration::from_micros(20), || {
            received(&sse) > before
        }) {
            return Err(format!("message {i} not delivered within 5 s").into());
        }
        let at = sse.arrived(before).unwrap_or_else(Instant::now);
        lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    lat.sort_by(|x, y| x.total_cmp(y));

    // Throughput through the WebSocket: one session, frames sent back to back.
    let (sent_at, secs, got) = {
        let start_count = received(&sse);
        let url = format!("ws://{}/ws?token={}", a.spec.api, a.token);
        let (mut ws, _) = tungstenite::connect(url)?;
        let t0 = Instant::now();
        for i in 0..messages {
            let frame =
                json!({"type": "publish", "topic": topic, "payload": payload(i)}).to_string();
            ws.send(tungstenite::Message::text(frame))?;
        }
        let sent_at = t0.elapsed().as_secs_f64();
        wait_until(Duration::from_secs(60), Duration::from_millis(1), || {
            received(&sse) >= start_count + messages
        });
        let last = sse
            .arrived(sse.len().saturating_sub(1))
            .unwrap_or_else(Instant::now);
        let _ = ws.close(None);
        (
            sent_at,
            last.duration_since(t0).as_secs_f64(),
            received(&sse) - start_count,
        )
    };
    let lost = messages.saturating_sub(got);

    // Throughput through REST: `clients` threads with keep-alive connections share the messages.
    let start_count = received(&sse);
    let next = Arc::new(AtomicU64::new(0));
    let base = a.base();
    let token = a.token.clone();
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (next, base, token) = (next.clone(), base.clone(), token.clone());
            let sse = sse.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut failed = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= rest_messages {
                        break;
                    }
                    while start_count + i > sse.len() + window {
                        std::thread::yield_now();
                    }
                    let body = json!({"topic": topic, "payload": payload(i)}).to_string();
                    let ok = agent
                        .post(format!("{base}/publish"))
                        .header("Authorization", format!("Bearer {token}"))
                        .header("Content-Type", "application/json")
                        .send(body)
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    failed += u64::from(!ok);
                }
                failed
            })
        })
        .collect();
    let failed: u64 = threads
        .into_iter()
        .map(|t| t.join().unwrap_or(u64::MAX))
        .sum();
    wait_until(Duration::from_secs(60), Duration::from_millis(1), || {
        received(&sse) >= start_count + rest_messages
    });
    let rest_last = sse
        .arrived(sse.len().saturating_sub(1))
        .unwrap_or_else(Instant::now);
    let rest_secs = rest_last.duration_since(t0).as_secs_f64();
    let rest_got = received(&sse) - start_count;
    let gossip: Value = b.get("/diagnostics/gossip").json;

    let report = json!({
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "msgs_per_sec": if lost == 0 { messages as f64 / secs } else { 0.0 },
        "rss_mb": rss_mb,
        "health_ms": health_ms,
        "details": {
            "latency_messages": latency_messages,
            "messages": messages,
            "clients": clients,
            "window": window,
            "received": got,
            "lost": lost,
            "ws_send_secs": sent_at,
            "deliver_secs": secs,
            "rest_messages": rest_messages,
            "rest_received": rest_got,
            "rest_lost": rest_messages.saturating_sub(rest_got),
            "rest_publish_failed": failed,
            "rest_msgs_per_sec": if rest_got >= rest_messages { rest_messages as f64 / rest_secs } else { 0.0 },
            "max_ms": lat.last().copied().unwrap_or(0.0),
            "b_gossip": gossip["stats"],
        },
    });
    a.stop();
    b.stop();
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(p) = json_path {
        std::fs::write(PathBuf::from(p), serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
