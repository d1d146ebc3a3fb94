//! Direct-message loopback benchmark: two agents on 127.0.0.1 (B bootstraps to A), A sends
//! direct messages to B one at a time, over each path.
//!
//! * `connected`: over the QUIC connection (`PathPreference::Connected`);
//! * `sealed`: sealed to B's ML-KEM-768 key and carried on the inbox topic
//!   (`PathPreference::Sealed`; one ML-DSA signature per message and per ack).
//!
//! For each: send → delivery at B (`recv_direct`) and send → receipt at A, p50 / p99 / max.
//!
//! ```sh
//! cargo run --release -p x0x-driver-tokio --example direct_bench -- --json direct.json
//! ```
//! Options: `--messages N` (2000, connected), `--sealed-messages N` (300), `--payload BYTES`
//! (256).

use std::time::{Duration, Instant};

use serde_json::json;
use x0x_driver::bench::measure::{self, loopback_config, percentile};
use x0x_driver_tokio::{Agent, DirectOptions, DirectPath, PathPreference};

struct Args {
    json: Option<String>,
    messages: usize,
    sealed_messages: usize,
    payload: usize,
}

fn parse_args() -> Result<Args, String> {
    let (mut messages, mut sealed_messages, mut payload) = (2000, 300, 256);
    let json = measure::parse_flags(&mut [
        ("messages", &mut messages),
        ("sealed-messages", &mut sealed_messages),
        ("payload", &mut payload),
    ])?;
    Ok(Args {
        json,
        messages,
        sealed_messages,
        payload,
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends `n` messages one at a time; returns (send→delivery, send→receipt) sorted.
async fn measure(
    a: &Agent,
    b: &Agent,
    n: usize,
    payload: &[u8],
    path: PathPreference,
) -> Result<(Vec<Duration>, Vec<Duration>), BoxError> {
    let to = b.agent_id();
    let opts = DirectOptions {
        path,
        lifetime: None,
    };
    let mut deliver = Vec::with_capacity(n);
    let mut receipt = Vec::with_capacity(n);
    for _ in 0..n {
        let sender = a.clone();
        let body = bytes::Bytes::copy_from_slice(payload);
        let t0 = Instant::now();
        let send = tokio::spawn(async move { sender.send_direct_with(to, body, opts).await });
        let m = tokio::time::timeout(Duration::from_secs(10), b.recv_direct())
            .await?
            .ok_or("agent stopped")?;
        deliver.push(t0.elapsed());
        let r = tokio::time::timeout(Duration::from_secs(10), send).await???;
        receipt.push(t0.elapsed());
        if r.request_id != m.request_id {
            return Err("receipt for another message".into());
        }
        let want = match path {
            PathPreference::Sealed => DirectPath::Sealed,
            _ => DirectPath::Connected,
        };
        if m.path != want || r.path != want {
            return Err(format!("expected {want:?}, got {:?} / {:?}", m.path, r.path).into());
        }
    }
    deliver.sort();
    receipt.sort();
    Ok((deliver, receipt))
}

fn summary(n: usize, (d, r): &(Vec<Duration>, Vec<Duration>)) -> serde_json::Value {
    json!({
        "messages": n,
        "p50_ms": percentile(d, 0.50),
        "p99_ms": percentile(d, 0.99),
        "max_ms": percentile(d, 1.0),
        "receipt_p50_ms": percentile(r, 0.50),
        "receipt_p99_ms": percentile(r, 0.99),
    })
}

async fn run(args: Args) -> Result<serde_json::Value, BoxError> {
    let a = Agent::builder()
        .with_network_config(loopback_config(vec![]))
        .build()
        .await?;
    a.join_network().await?;
    let a_addr = a.bound_addr().await.ok_or("unbound")?;
    let b = Agent::builder()
        .with_network_config(loopback_config(vec![a_addr]))
        .build()
        .await?;
    b.join_network().await?;
    // Wait until A knows B's announcement and KEM key (gossip from B's join).
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let known = a.discovered_agents().await?;
            if known
                .iter()
                .any(|d| d.agent_id == b.agent_id() && d.kem_public_key.is_some())
            {
                return Ok::<_, BoxError>(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await??;
    let payload = vec![0x5a; args.payload];
    // Warm-up: the first message carries the binding and measures the RTT.
    measure(&a, &b, 20, &payload, PathPreference::Connected).await?;
    let connected = measure(&a, &b, args.messages, &payload, PathPreference::Connected).await?;
    measure(&a, &b, 5, &payload, PathPreference::Sealed).await?;
    let sealed = measure(
        &a,
        &b,
        args.sealed_messages,
        &payload,
        PathPreference::Sealed,
    )
    .await?;
    let stats_a = a.stats().await?;
    b.shutdown().await?;
    a.shutdown().await?;
    Ok(json!({
        "payload_bytes": args.payload,
        "connected": summary(args.messages, &connected),
        "sealed": summary(args.sealed_messages, &sealed),
        "sender_frames_sent": stats_a.node.frames_sent,
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    measure::run_main(parse_args(), |args| args.json.clone(), run, |_| None).await
}
