//! The odeon-proxy binary: flags, logging (to stderr), the open-file limit, signals; everything
//! else is in the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let mut config = odeon_proxy::Config::parse();
    // Before any socket: the soft open-file limit raised to the hard one, and the connection
    // cap lowered (with a warning) if even that cannot hold it.
    config.max_connections = odeon_proxy::os::fit_connections(config.max_connections);
    odeon_proxy::run(config, shutdown()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
