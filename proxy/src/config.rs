//! Proxy configuration, from flags and environment variables (the variables @colyseus/proxy
//! read, where it had one).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// odeon-proxy: the public endpoint of an Odeon deployment.
#[derive(Debug, Clone, Parser)]
#[command(name = "odeon-proxy", version)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "ODEON_PROXY_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port of plain HTTP and `ws://` (with TLS on, it only redirects to HTTPS).
    #[arg(long, env = "PORT", default_value_t = 80)]
    pub port: u16,
    /// Redis of the hosts' presence, where their registry is.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// TLS certificate chain (PEM); with `--tls-key`, serves HTTPS and `wss://` on `--tls-port`.
    #[arg(long, env = "SSL_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SSL_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Port of HTTPS and `wss://`.
    #[arg(long, env = "TLS_PORT", default_value_t = 443)]
    pub tls_port: u16,
    /// Path answered by the proxy itself with its health, on every port.
    #[arg(long, env = "HEALTH_CHECK_PATH", default_value = "/health")]
    pub health_path: String,
    /// Seconds a relayed WebSocket may carry nothing either way before it is closed (hosts ping
    /// their clients every 3 s, so only dead connections are this quiet).
    #[arg(long, env = "ODEON_PROXY_IDLE_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Seconds a client may take to send its request headers (and its TLS handshake). Each
    /// connection serves one request (answered with `Connection: close`), so none idles between
    /// requests.
    #[arg(long, env = "ODEON_PROXY_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Milliseconds a request body may take to arrive once its headers have; a slower one is
    /// answered 408 and its connection closed. Matchmaking bodies are read whole before a host
    /// is chosen, so a stalled one never holds a connection to a host.
    #[arg(long, env = "ODEON_PROXY_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
    /// Most connections open at once (HTTP and WebSocket); past it, new ones get 503.
    #[arg(long, env = "ODEON_PROXY_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Milliseconds between full resyncs of the registry.
    #[arg(long, env = "ODEON_PROXY_RESYNC_MS", default_value_t = 1000)]
    pub resync_ms: u64,
}
