//! Loopback benchmark on tokio: two agents on 127.0.0.1, publish → delivery latency,
//! sustained throughput and idle memory. The code is shared with the smol driver's
//! benchmark (`x0x_driver::bench::loopback`).
//!
//! ```sh
//! cargo run --release -p x0x-driver-tokio --example loopback_bench -- --json bench.json
//! ```
//! Options: `--latency-messages N` (2000), `--messages N` (20000), `--payload BYTES` (1024).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    x0x_driver::bench::loopback::main::<x0x_driver_tokio::TokioRuntime>().await
}
