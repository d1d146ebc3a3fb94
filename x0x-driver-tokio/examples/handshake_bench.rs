//! Handshake benchmark: sequential QUIC handshakes between two endpoints on 127.0.0.1 with
//! the drivers' TLS (mutual ML-DSA-65 raw public keys, and the key exchange `tls` selects),
//! beside the same run's ML-DSA-65 sign and verify times as the machine's reference.
//!
//! ```sh
//! cargo run --release -p x0x-driver-tokio --example handshake_bench -- --json hs.json
//! ```
//! Options: `--handshakes N` (500). Uses only `tls::server_config` / `tls::client_config`,
//! so the same file measures any revision of the drivers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use x0x_driver::identity::MachineKeypair;
use x0x_driver::network::NetworkConfig;
use x0x_driver::tls;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let n: usize = flag("--handshakes").map_or(500, |v| v.parse().expect("--handshakes N"));
    let net = NetworkConfig::default();
    let server_key = MachineKeypair::generate().expect("key");
    let client_key = MachineKeypair::generate().expect("key");
    let server = quinn::Endpoint::server(
        tls::server_config(&server_key, &net).expect("server config"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .expect("server endpoint");
    let addr = server.local_addr().expect("address");
    let accepting = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    let mut client =
        quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
    client.set_default_client_config(tls::client_config(&client_key, &net).expect("config"));
    let name = tls::server_name(Some(&server_key.machine_id()));
    let mut times = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let conn = client
            .connect(addr, &name)
            .expect("connect")
            .await
            .expect("handshake");
        times.push(t.elapsed());
        conn.close(0u32.into(), b"");
    }
    let total = started.elapsed();
    client.wait_idle().await;
    accepting.abort();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (sign_us, verify_us) = crypto_reference(&client_key);
    let report = serde_json::json!({
        "handshakes": n,
        "handshake_p50_ms": ms(times[n / 2]),
        "handshake_p99_ms": ms(times[n * 99 / 100]),
        "handshakes_per_sec": n as f64 / total.as_secs_f64(),
        "reference": { "mldsa65_sign_us": sign_us, "mldsa65_verify_us": verify_us },
    });
    println!("{report:#}");
    if let Some(path) = flag("--json") {
        std::fs::write(path, report.to_string()).expect("write --json");
    }
}

/// Mean ML-DSA-65 sign and verify times in this run (µs), the machine's reference.
fn crypto_reference(key: &MachineKeypair) -> (f64, f64) {
    let msg = [7u8; 64];
    let rounds = 200;
    let t = Instant::now();
    let mut sig = Vec::new();
    for _ in 0..rounds {
        sig = key.sign_tls13(&msg);
    }
    let sign = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let public = key.public_key();
    let t = Instant::now();
    for _ in 0..rounds {
        public.verify_tls13(&msg, &sig).expect("verifies");
    }
    let verify = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    (sign, verify)
}
