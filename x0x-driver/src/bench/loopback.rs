//! The loopback benchmark, written once for every runtime: two agents on 127.0.0.1 (B
//! bootstraps to A), A publishes to B.
//!
//! * latency: publish → delivery of 1 KiB payloads, one at a time (p50 / p99);
//! * throughput: `--messages` payloads published as fast as the node accepts them while B
//!   counts every delivery (loss must be zero);
//! * memory: resident set size per agent, idle after join.
//!
//! Top-level report keys (the contract the acceptance checks read): `p50_ms`, `p99_ms`,
//! `msgs_per_sec`, `rss_mb` (per agent); details below them. Each facade's `loopback_bench`
//! example calls [`main`] with its runtime, so the two drivers run the same code.

use std::time::{Duration, Instant};

use super::measure::{loopback_config, parse_flags, percentile, rss_mb, run_main};
use crate::network::NetworkConfig;
use crate::runtime::{Runtime, timeout};
use crate::{Agent, AgentEvent};
use futures_lite::future;
use serde_json::json;

const TOPIC: &str = "x0x-rs/bench";

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Args {
    /// `--json PATH`: where the report is written too.
    pub json: Option<String>,
    /// `--latency-messages N`: messages timed one at a time. Default 2000.
    pub latency_messages: usize,
    /// `--messages N`: messages of the throughput run. Default 20 000.
    pub messages: usize,
    /// `--payload BYTES`: payload size. Default 1024.
    pub payload: usize,
}

/// Parses the command line.
pub fn parse_args() -> Result<Args, String> {
    let (mut latency_messages, mut messages, mut payload) = (2000, 20_000, 1024);
    let json = parse_flags(&mut [
        ("latency-messages", &mut latency_messages),
        ("messages", &mut messages),
        ("payload", &mut payload),
    ])?;
    Ok(Args {
        json,
        latency_messages,
        messages,
        payload,
    })
}

fn config(bootstrap: Vec<std::net::SocketAddr>) -> NetworkConfig {
    NetworkConfig {
        // The bench reads as fast as it can; a large buffer keeps a scheduling hiccup from
        // dropping the subscriber.
        subscription_buffer: 1 << 16,
        ..loopback_config(bootstrap)
    }
}

/// Runs the benchmark on runtime `R` and returns the report.
pub async fn run<R: Runtime + Default>(
    args: Args,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let rt = R::default();
    let rss_before = rss_mb();
    let a = Agent::<R>::builder()
        .with_network_config(config(vec![]))
        .build()
        .await?;
    a.join_network().await?;
    let mut a_events = a.events().await?;
    let a_addr = a.bound_addr().await.ok_or("unbound")?;
    let b = Agent::<R>::builder()
        .with_network_config(config(vec![a_addr]))
        .build()
        .await?;
    b.join_network().await?;
    let mb = b.machine_id();
    timeout(&rt, Duration::from_secs(10), async {
        while let Some(ev) = a_events.recv().await {
            if ev == (AgentEvent::NeighborUp { machine_id: mb }) {
                break;
            }
        }
    })
    .await
    .ok_or("no neighbour within 10 s")?;
    drop(a_events);
    let mut sub = b.subscribe(TOPIC).await?;
    let _sub_a = a.subscribe(TOPIC).await?;
    // Warm-up: until one message arrives, so the topic tree is in place.
    let payload = vec![0x5a; args.payload];
    timeout(&rt, Duration::from_secs(10), async {
        a.publish(TOPIC, payload.clone()).await?;
        sub.recv().await.ok_or("subscription ended")?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
    .await
    .ok_or("warm-up message not delivered within 10 s")??;
    rt.sleep_until(Instant::now() + Duration::from_millis(500))
        .await;
    let rss_idle = rss_mb();

    // Latency, one message in flight at a time.
    let mut latencies = Vec::with_capacity(args.latency_messages);
    let mut publish_calls = Vec::with_capacity(args.latency_messages);
    for _ in 0..args.latency_messages {
        let t0 = Instant::now();
        a.publish(TOPIC, payload.clone()).await?;
        publish_calls.push(t0.elapsed());
        timeout(&rt, Duration::from_secs(5), sub.recv())
            .await
            .flatten()
            .ok_or("message not delivered within 5 s")?;
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    publish_calls.sort();

    // Throughput: publish as fast as the node accepts; count every delivery.
    let n = args.messages;
    let counter = async {
        let mut got = 0usize;
        let mut last = Instant::now();
        while got < n {
            match timeout(&rt, Duration::from_secs(5), sub.recv()).await {
                Some(Some(_)) => {
                    got += 1;
                    last = Instant::now();
                }
                _ => break,
            }
        }
        (got, last)
    };
    let started = Instant::now();
    let publisher = async {
        for _ in 0..n {
            a.publish(TOPIC, payload.clone()).await?;
        }
        Ok::<_, crate::Error>(started.elapsed())
    };
    let (published, (delivered, last)) = future::zip(publisher, counter).await;
    let published_in = published?;
    let elapsed = last.saturating_duration_since(started);
    let stats_a = a.stats().await?;
    let stats_b = b.stats().await?;
    b.shutdown().await?;
    a.shutdown().await?;

    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let rate = delivered as f64 / elapsed.as_secs_f64().max(1e-9);
    let per_agent = (rss_idle - rss_before) / 2.0;
    Ok(json!({
        "p50_ms": p50,
        "p99_ms": p99,
        "msgs_per_sec": rate,
        "rss_mb": per_agent,
        "runtime": std::any::type_name::<R>(),
        "payload_bytes": args.payload,
        "latency": {
            "messages": args.latency_messages,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": percentile(&latencies, 1.0),
            "publish_call_p50_ms": percentile(&publish_calls, 0.50),
            "publish_call_p99_ms": percentile(&publish_calls, 0.99),
        },
        "throughput": {
            "messages": n,
            "delivered": delivered,
            "lost": n - delivered,
            "seconds": elapsed.as_secs_f64(),
            "publish_seconds": published_in.as_secs_f64(),
            "msgs_per_sec": rate,
        },
        "memory_mb": {
            "process_before_agents": rss_before,
            "process_two_agents_idle": rss_idle,
            "per_agent": per_agent,
        },
        "drops": {
            "send_queue_full": stats_a.driver.send_queue_full_drops + stats_b.driver.send_queue_full_drops,
            "subscribers_dropped": stats_b.driver.subscribers_dropped,
            "node_transmits_dropped": stats_a.node.transmits_dropped + stats_b.node.transmits_dropped,
        },
        "signing": {
            "publish_batches": stats_a.driver.publish_batches,
            "signatures": stats_a.node.publish_signatures,
            "receiver_batch_root_hits": stats_b.node.batch_root_hits,
        },
    }))
}

/// Parses the arguments, runs the benchmark on `R`, prints the report and writes `--json`;
/// fails if a message was lost.
pub async fn main<R: Runtime + Default>() -> std::process::ExitCode {
    run_main(
        parse_args(),
        |args| args.json.clone(),
        run::<R>,
        |report| (report["throughput"]["lost"] != 0).then(|| "messages were lost".to_owned()),
    )
    .await
}
