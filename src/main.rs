//! The `parlor` binary: reads the configuration, sets up logging, and runs one node.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use parlor::Config;
use tracing_subscriber::EnvFilter;

/// A multiplayer WebSocket session server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (default: ./config.toml if present, else the embedded defaults).
    #[arg(long, env = "PARLOR_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, overriding server.bind.
    #[arg(long)]
    bind: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Reporting a failed log write goes to stderr with eprintln!, which panics when stderr
        // is a closed pipe: a dead log reader must not take the workers down with it.
        .log_internal_errors(false)
        .init();
    let mut config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("parlor: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(bind) = args.bind {
        config.server.bind = bind;
    }
    match actix_web::rt::System::new().block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("parlor: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> std::io::Result<()> {
    let node = parlor::bind(&config)?;
    for addr in &node.addrs {
        tracing::info!("listening on ws://{addr}/ws (health: http://{addr}/health)");
    }
    node.run_until_signalled().await
}
