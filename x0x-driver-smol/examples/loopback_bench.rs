//! Loopback benchmark on smol: the same code as the tokio driver's (`#[path]` include), so
//! the two figures compare the runtimes and nothing else.
//!
//! ```sh
//! cargo run --release -p x0x-driver-smol --example loopback_bench -- --json bench.json
//! ```

#[path = "../../x0x-driver-tokio/examples/common/loopback.rs"]
mod loopback;
#[path = "../../x0x-driver-tokio/examples/common/measure.rs"]
mod measure;

fn main() -> std::process::ExitCode {
    smol::block_on(loopback::main::<x0x_driver_smol::SmolRuntime>())
}
