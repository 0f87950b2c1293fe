//! odeon-proxy: the one public endpoint of an Odeon deployment. It follows the hosts' registry in
//! Redis, sends matchmaking to the least loaded host and passes each room WebSocket
//! (`/{processId}/{roomId}`) through to exactly the process that runs the room. It keeps no
//! state of its own: any number of proxies serve one deployment side by side.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`discovery`]: following the registry (announcements, periodic resync, Redis outages).
//! - [`routes`]: the route table and least-loaded choice.
//! - [`server`]: accepting connections (plain, TLS, redirect), timeouts and the connection cap.
//! - [`head`]: a request head read before hyper builds its connection.
//! - [`http`]: what each request gets: health, matchmaking, room WebSockets, errors.
//! - [`identity`]: the secret that proves to hosts a request came through this proxy.
//! - [`relay`]: the byte relay of an upgraded WebSocket.
//! - [`frames`]: WebSocket frame boundaries and the hosts' control frames in a relayed stream.
//! - [`handover`]: following a room that moved to another host, with the client's socket.
//! - [`os`]: the open-file limit, raised at start, and the connection cap it allows.
//! - [`tls`]: the certificate and its reloading.

pub mod config;
pub mod discovery;
pub mod frames;
pub mod handover;
pub mod head;
pub mod http;
pub mod identity;
pub mod moved;
pub mod os;
pub mod relay;
pub mod routes;
pub mod server;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;

use crate::routes::Routes;
use crate::server::{Connections, Listener, Serving};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A port could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key did not load.
    #[error("tls: {0}")]
    Tls(String),
}

/// Runs the proxy until `shutdown` completes. Routes are read from Redis before the ports open
/// (when Redis answers; otherwise the proxy starts empty and keeps trying).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| ProxyError::Config(format!("invalid redis url {}: {e}", config.redis_url)))?;
    let identity = identity::Identity::generate()
        .map_err(|e| ProxyError::Config(format!("no random source for the proxy's secret: {e}")))?;
    tokio::spawn(identity.clone().keep_registered(client.clone()));
    let routes = Arc::new(Routes::default());
    let mut discovery = discovery::Discovery::new(client.clone(), routes.clone());
    match discovery.start().await {
        Ok(n) => tracing::info!(processes = n, "registry read"),
        Err(e) => tracing::warn!("registry not read yet (retrying every resync): {e}"),
    }
    tokio::spawn(discovery.follow(Duration::from_millis(config.resync_ms.max(100))));

    let connections = Connections::new(config.max_connections);
    let settings = http::Settings {
        health_path: config.health_path.clone(),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
        body_timeout: Duration::from_millis(config.body_timeout_ms.max(1)),
    };
    let moved = moved::MovedRooms::new(client.clone());
    let proxy = http::Proxy::new(routes, settings, connections.clone(), identity.clone(), moved);

    let plain_addr = SocketAddr::new(config.bind, config.port);
    let plain = bind(plain_addr).await?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let certificate = tls::Certificate::load(cert, key)?;
            let acceptor = certificate.acceptor()?;
            certificate.watch();
            let addr = SocketAddr::new(config.bind, config.tls_port);
            Some((bind(addr).await?, acceptor))
        }
        _ => None,
    };
    let header_timeout = Duration::from_secs(config.header_timeout_secs.max(1));
    let serving = |kind| Serving { kind, header_timeout };
    match tls {
        Some((listener, acceptor)) => {
            let tls_port = listener.local_addr().map(|a| a.port()).unwrap_or(config.tls_port);
            tracing::info!(https = %SocketAddr::new(config.bind, tls_port), redirect = %plain_addr, "odeon-proxy listening");
            tokio::spawn(server::serve(
                listener,
                serving(Listener::Tls(acceptor)),
                proxy.clone(),
                connections.clone(),
            ));
            tokio::spawn(server::serve(plain, serving(Listener::Redirect(tls_port)), proxy, connections));
        }
        None => {
            tracing::info!(http = %plain_addr, "odeon-proxy listening");
            tokio::spawn(server::serve(plain, serving(Listener::Plain), proxy, connections));
        }
    }
    shutdown.await;
    tracing::info!(proxy = identity.id(), "odeon-proxy stopping");
    identity.unregister(&client).await;
    Ok(())
}

/// Connections the kernel queues for `accept` (tokio's default is 128): when a host's rooms
/// move, all their clients reconnect at once, and a full queue drops SYNs that then wait a
/// second to be retried.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ProxyError> {
    let listen = || {
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| ProxyError::Bind { addr, source })
}
