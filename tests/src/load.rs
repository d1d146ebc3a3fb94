//! Load harness on real QUIC over loopback: several agents in one process, one publisher,
//! every subscriber's receipts counted per message, an optional subscriber that stops
//! reading, and a soak mode that samples the resident set size.
//!
//! Used by `tests/tests/load.rs` at a size that fits CI and by `examples/load.rs` at full
//! size (`cargo run --release -p x0x-tests --example load -- --messages 10000`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use x0x_driver_tokio::network::NetworkConfig;
use x0x_driver_tokio::{Agent, Subscription};

/// The topic of the load messages.
pub const TOPIC: &str = "x0x-rs/load";

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Agents, the publisher included (it subscribes too but does not count).
    pub agents: usize,
    /// Messages published in the delivery phase.
    pub messages: usize,
    /// Payload bytes (at least 8: the sequence number).
    pub payload: usize,
    /// Whether the last agent's subscriber stops reading after its first message.
    pub stalled_subscriber: bool,
    /// Subscription buffer of the stalled subscriber's agent (the others get a large one, so
    /// only the stalled one can fall behind).
    pub stalled_buffer: usize,
    /// Most messages published and not yet received by every reading subscriber (flow
    /// control of the publisher; the QUIC send queues are bounded and drop when full).
    pub window: usize,
    /// Soak: keep publishing for this long after the delivery phase, sampling RSS.
    pub soak: Option<Duration>,
    /// Interval of the RSS samples in the soak.
    pub sample_every: Duration,
    /// How long to wait for the last deliveries before giving up.
    pub settle: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            agents: 10,
            messages: 1000,
            payload: 256,
            stalled_subscriber: true,
            stalled_buffer: 64,
            window: 256,
            soak: None,
            sample_every: Duration::from_secs(10),
            settle: Duration::from_secs(30),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Agents.
    pub agents: usize,
    /// Messages published in the delivery phase.
    pub messages: usize,
    /// Per reading subscriber: messages received exactly once.
    pub exactly_once: Vec<usize>,
    /// Per reading subscriber: messages never received.
    pub missing: Vec<usize>,
    /// Per reading subscriber: messages received more than once (extra copies).
    pub duplicates: Vec<usize>,
    /// Wall time from the first publish to the last delivery of the delivery phase.
    pub seconds: f64,
    /// Messages delivered to all reading subscribers per second (per subscriber).
    pub msgs_per_sec: f64,
    /// Messages the stalled subscriber took before it stopped reading.
    pub stalled_received: usize,
    /// `DriverStats::subscribers_dropped` of the stalled subscriber's agent.
    pub stalled_dropped: u64,
    /// `DriverStats::subscribers_dropped` summed over the other agents (must be 0).
    pub others_dropped: u64,
    /// Frames dropped on full QUIC send queues, over all agents.
    pub send_queue_full_drops: u64,
    /// Soak: `(seconds since the soak started, resident set size MiB, messages published)`.
    pub rss_mb: Vec<(f64, f64, u64)>,
}

impl LoadReport {
    /// Whether every reading subscriber got every message exactly once.
    pub fn all_exactly_once(&self) -> bool {
        self.exactly_once.iter().all(|&n| n == self.messages)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rss = self
            .rss_mb
            .iter()
            .map(|(t, m, p)| format!("[{t:.1}, {m:.1}, {p}]"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{{\n  \"agents\": {},\n  \"messages\": {},\n  \"exactly_once\": [{}],\n  \"missing\": [{}],\n  \"duplicates\": [{}],\n  \"seconds\": {:.3},\n  \"msgs_per_sec\": {:.1},\n  \"stalled_received\": {},\n  \"stalled_dropped\": {},\n  \"others_dropped\": {},\n  \"send_queue_full_drops\": {},\n  \"rss_mb\": [{}]\n}}",
            self.agents,
            self.messages,
            list(&self.exactly_once),
            list(&self.missing),
            list(&self.duplicates),
            self.seconds,
            self.msgs_per_sec,
            self.stalled_received,
            self.stalled_dropped,
            self.others_dropped,
            self.send_queue_full_drops,
            rss
        )
    }
}

pub use x0x_driver::bench::measure::rss_mb;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config(bootstrap: Vec<SocketAddr>, buffer: usize) -> NetworkConfig {
    NetworkConfig {
        bind_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        bootstrap_nodes: bootstrap,
        subscription_buffer: buffer,
        ..Default::default()
    }
}

/// Receipt counts of one reading subscriber, shared with the harness.
struct Counts {
    /// Copies received per sequence number (saturating at 255).
    seen: std::sync::Mutex<Vec<u8>>,
    /// Distinct sequence numbers received (soak messages, past `seen`, are counted without
    /// being stored, so the harness itself does not grow during a soak).
    distinct: AtomicU64,
    /// Warm-up messages received.
    warm: AtomicU64,
}

/// Reads a subscription until it ends, counting receipts by sequence number: the first
/// `tracked` sequence numbers one by one, later ones (the soak) only in `distinct`, warm-up
/// messages (sequence `u64::MAX`) in `warm`.
fn spawn_reader(mut sub: Subscription, tracked: usize, counts: Arc<Counts>, progress: Arc<Notify>) {
    tokio::spawn(async move {
        while let Some(m) = sub.recv().await {
            let Some(seq) = m.payload.get(..8) else {
                continue;
            };
            let seq = u64::from_le_bytes(seq.try_into().unwrap_or([0; 8]));
            if seq == u64::MAX {
                counts.warm.fetch_add(1, Ordering::Relaxed);
            } else if (seq as usize) >= tracked {
                counts.distinct.fetch_add(1, Ordering::Relaxed);
            } else if let Ok(mut seen) = counts.seen.lock() {
                let i = seq as usize;
                if seen[i] == 0 {
                    counts.distinct.fetch_add(1, Ordering::Relaxed);
                }
                seen[i] = seen[i].saturating_add(1);
            }
            progress.notify_waiters();
        }
    });
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len.max(8)];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p
}

/// Runs the harness.
pub async fn run(cfg: LoadConfig) -> Result<LoadReport, BoxError> {
    let n = cfg.agents.max(2);
    // Agent 0 publishes; everyone bootstraps to the previous agents so the overlay is a mesh.
    let mut agents: Vec<Agent> = Vec::with_capacity(n);
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..n {
        let stalled = cfg.stalled_subscriber && i == n - 1;
        // Readers stay within `window` messages of the publisher, so 16 windows of buffer
        // never fill; the buffer is allocated up front, so it is not made larger.
        let buffer = if stalled {
            cfg.stalled_buffer
        } else {
            16 * cfg.window.max(64)
        };
        let boot: Vec<SocketAddr> = addrs.iter().rev().take(2).copied().collect();
        let a = Agent::builder()
            .with_network_config(config(boot, buffer))
            .build()
            .await?;
        tokio::time::timeout(Duration::from_secs(10), a.join_network()).await??;
        addrs.push(a.bound_addr().await.ok_or("unbound")?);
        agents.push(a);
    }
    let progress = Arc::new(Notify::new());
    let mut readers: Vec<Arc<Counts>> = Vec::new();
    // The publisher carries the topic like everyone; its own copies are read and discarded.
    let mut own = agents[0].subscribe(TOPIC).await?;
    tokio::spawn(async move { while own.recv().await.is_some() {} });
    let mut stalled_sub = None;
    for (i, a) in agents.iter().enumerate().skip(1) {
        let sub = a.subscribe(TOPIC).await?;
        if cfg.stalled_subscriber && i == n - 1 {
            stalled_sub = Some(sub);
            continue;
        }
        let counts = Arc::new(Counts {
            seen: std::sync::Mutex::new(vec![0; cfg.messages]),
            distinct: AtomicU64::new(0),
            warm: AtomicU64::new(0),
        });
        spawn_reader(sub, cfg.messages, counts.clone(), progress.clone());
        readers.push(counts);
    }
    // Warm-up: publish until every reader (and the stalled one) got a message, so the topic
    // trees are in place before counting.
    let warm = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stalled_got = 0usize;
        loop {
            // Armed before publishing, so a delivery in between is not missed.
            let delivered = progress.notified();
            agents[0]
                .publish(TOPIC, payload(u64::MAX, cfg.payload))
                .await?;
            // Until a reader takes a message, or 100 ms: then publish again (a message sent
            // before the trees reached every reader is not repaired for it).
            let _ = tokio::time::timeout(Duration::from_millis(100), delivered).await;
            if let Some(s) = stalled_sub.as_mut() {
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(1), s.recv()).await
                {
                    stalled_got += 1;
                }
            }
            let ready = readers.iter().all(|c| c.warm.load(Ordering::Relaxed) > 0)
                && (stalled_sub.is_none() || stalled_got > 0);
            if ready {
                return Ok::<usize, BoxError>(stalled_got);
            }
        }
    })
    .await??;
    let stalled_received = warm;

    // Delivery phase: publish with a bounded window of messages not yet at every reader.
    let total = cfg.messages as u64;
    let min_distinct = |readers: &[Arc<Counts>]| {
        readers
            .iter()
            .map(|c| c.distinct.load(Ordering::Relaxed))
            .min()
            .unwrap_or(total)
    };
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut seq = 0u64;
    while seq < total {
        while seq < total && seq < min_distinct(&readers) + cfg.window as u64 {
            agents[0].publish(TOPIC, payload(seq, cfg.payload)).await?;
            seq += 1;
        }
        let notified = progress.notified();
        if seq < min_distinct(&readers) + cfg.window as u64 {
            continue;
        }
        if tokio::time::timeout(Duration::from_millis(200), notified)
            .await
            .is_ok()
        {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > cfg.settle {
            break; // a message is lost for good; the counts will show it
        }
    }
    // Wait for the tail.
    let deadline = Instant::now() + cfg.settle;
    while min_distinct(&readers) < total && Instant::now() < deadline {
        let notified = progress.notified();
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut report = LoadReport {
        agents: n,
        messages: cfg.messages,
        seconds,
        msgs_per_sec: total as f64 / seconds.max(1e-9),
        stalled_received,
        ..LoadReport::default()
    };
    for c in &readers {
        let seen = c.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let got = |i: usize| seen.get(i).copied().unwrap_or(0);
        report
            .exactly_once
            .push((0..cfg.messages).filter(|&i| got(i) == 1).count());
        report
            .missing
            .push((0..cfg.messages).filter(|&i| got(i) == 0).count());
        report.duplicates.push(
            (0..cfg.messages)
                .map(|i| usize::from(got(i).saturating_sub(1)))
                .sum(),
        );
    }

    // Soak: keep the same load going, sample RSS.
    if let Some(soak) = cfg.soak {
        let soak_start = Instant::now();
        let mut next_sample = soak_start;
        while soak_start.elapsed() < soak {
            if Instant::now() >= next_sample {
                report
                    .rss_mb
                    .push((soak_start.elapsed().as_secs_f64(), rss_mb(), seq));
                next_sample += cfg.sample_every;
            }
            while seq < min_distinct(&readers) + cfg.window as u64 {
                agents[0].publish(TOPIC, payload(seq, cfg.payload)).await?;
                seq += 1;
            }
            let notified = progress.notified();
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
        report
            .rss_mb
            .push((soak_start.elapsed().as_secs_f64(), rss_mb(), seq));
    }

    for (i, a) in agents.iter().enumerate() {
        let s = a.stats().await?;
        report.send_queue_full_drops += s.driver.send_queue_full_drops;
        if cfg.stalled_subscriber && i == n - 1 {
            report.stalled_dropped = s.driver.subscribers_dropped;
        } else {
            report.others_dropped += s.driver.subscribers_dropped;
        }
    }
    drop(stalled_sub);
    for a in agents.iter().rev() {
        a.shutdown().await?;
    }
    Ok(report)
}
