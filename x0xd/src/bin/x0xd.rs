//! `x0xd`: the x0x-rs daemon. See docs/daemon.md.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use x0xd::config::{self, ConfigFile, LogFormat, Overrides, Settings};

/// The x0x-rs daemon: one agent on the mesh, x0x's REST/SSE/WebSocket API on localhost.
#[derive(Debug, Parser)]
#[command(name = "x0xd", version, about)]
struct Args {
    /// TOML config file (x0x's keys). Default: the OS config dir's x0x/config.toml, if any.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Run a named instance: data dir `x0x-<NAME>`, API and QUIC on ephemeral ports.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Replace the port of api_address.
    #[arg(long, value_name = "PORT")]
    api_port: Option<u16>,
    /// Do not dial the built-in bootstrap list (which is empty in x0x-rs); the config's
    /// bootstrap_peers, the peer cache and LAN discovery stay.
    #[arg(long)]
    no_hard_coded_bootstrap: bool,
    /// Deprecated alias of --no-hard-coded-bootstrap.
    #[arg(long, hide = true)]
    no_bootstrap: bool,
    /// trace, debug, info, warn or error (overrides log_level).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Load the config, print the settings and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.no_bootstrap {
        eprintln!("x0xd: --no-bootstrap is deprecated; use --no-hard-coded-bootstrap");
    }
    let path = args
        .config
        .clone()
        .or_else(|| Some(config::default_config_path(args.name.as_deref())).filter(|p| p.exists()));
    let (file, ignored) = match &path {
        Some(p) => match ConfigFile::load(p) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("x0xd: {e}");
                return ExitCode::from(2);
            }
        },
        None => (ConfigFile::default(), Vec::new()),
    };
    let flags = Overrides {
        name: args.name.clone(),
        api_port: args.api_port,
        log_level: args.log_level.clone(),
        no_hard_coded_bootstrap: args.no_hard_coded_bootstrap || args.no_bootstrap,
    };
    let settings = match Settings::resolve(file, &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("x0xd: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("Configuration is valid");
        for (k, v) in settings.describe() {
            println!("{k} = {v}");
        }
        return ExitCode::SUCCESS;
    }
    init_logging(&settings);
    for k in &ignored {
        if k.x0x_key {
            tracing::warn!(key = %k.key, "config key of x0x's daemon accepted but not implemented by x0xd");
        } else {
            tracing::warn!(key = %k.key, "unknown config key ignored");
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("x0xd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Listen before the API answers, so a SIGTERM sent as soon as `/health` is up is
        // a clean shutdown rather than the default kill.
        let signalled = shutdown_signal();
        let running = match x0xd::daemon::start(settings).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("x0xd: {e}");
                return ExitCode::FAILURE;
            }
        };
        let state = running.state.clone();
        tokio::spawn(async move {
            signalled.await;
            state.begin_shutdown();
        });
        let _ = running.done.await;
        ExitCode::SUCCESS
    })
}

fn init_logging(s: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "warn,x0xd={0},x0x_driver_tokio={0},x0x_driver={0}",
            s.log_level
        ))
    });
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    match s.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Text => b.init(),
    }
}

/// Registers for SIGINT and SIGTERM now (SIGINT only where there is no SIGTERM) and returns
/// a future that resolves when one arrives.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let registered = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            if let (Ok(mut term), Ok(mut int)) = registered {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            } else {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        let _ = tokio::signal::ctrl_c().await;
    }
}
