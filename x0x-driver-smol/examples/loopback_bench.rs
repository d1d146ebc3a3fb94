//! Loopback benchmark on smol: the same code as the tokio driver's
//! (`x0x_driver::bench::loopback`), so the two figures compare the runtimes and nothing else.
//!
//! ```sh
//! cargo run --release -p x0x-driver-smol --example loopback_bench -- --json bench.json
//! ```
//! Options: `--latency-messages N` (2000), `--messages N` (20000), `--payload BYTES` (1024).

fn main() -> std::process::ExitCode {
    smol::block_on(x0x_driver::bench::loopback::main::<
        x0x_driver_smol::SmolRuntime,
    >())
}
