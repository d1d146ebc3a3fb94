//! `x0x`: the command line for a running x0xd. See docs/daemon.md.

use clap::Parser;

fn main() -> std::process::ExitCode {
    x0xd::cli::run(x0xd::cli::Args::parse())
}
