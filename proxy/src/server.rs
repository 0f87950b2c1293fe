//! Accepting connections: HTTP/1.1 served by hyper with upgrades, plain or over TLS, with a
//! header-read timeout, a header size limit and a cap on open connections (past it, new ones get
//! a 503 and are closed, so a flood costs a refusal each rather than the proxy's memory).

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::http::{Mode, Proxy, Scheme, json_error};

/// Largest request head (request line and headers); larger ones get 431 and the connection is
/// closed.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Open connections: HTTP connections and relayed WebSockets, against a cap.
pub struct Connections {
    open: AtomicUsize,
    max: usize,
}

/// One open connection; counted until dropped.
pub struct Guard(Arc<Connections>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    /// At most `max` open connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { open: AtomicUsize::new(0), max })
    }

    /// Connections open now.
    pub fn current(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a new client connection; `None` when the cap is reached.
    fn try_enter(self: &Arc<Self>) -> Option<Guard> {
        let n = self.open.fetch_add(1, Ordering::Relaxed);
        let guard = Guard(self.clone());
        (n < self.max).then_some(guard)
    }

    /// Counts a relayed WebSocket (it outlives the HTTP connection it came from).
    pub fn enter_relay(self: &Arc<Self>) -> Guard {
        self.open.fetch_add(1, Ordering::Relaxed);
        Guard(self.clone())
    }
}

/// What a listener speaks.
#[derive(Clone)]
pub enum Listener {
    /// Plain HTTP, proxied.
    Plain,
    /// TLS, proxied.
    Tls(TlsAcceptor),
    /// Plain HTTP answering with redirects to HTTPS on this port.
    Redirect(u16),
}

/// How connections are served.
#[derive(Clone)]
pub struct Serving {
    /// What the listener speaks.
    pub kind: Listener,
    /// How long a client may take to send its request headers (or its TLS handshake).
    pub header_timeout: Duration,
}

/// Accepts connections on `listener` forever.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    proxy: Arc<Proxy>,
    connections: Arc<Connections>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: keep serving.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let guard = connections.try_enter();
        let (proxy, kind, t) = (proxy.clone(), serving.kind.clone(), serving.header_timeout);
        tokio::spawn(async move {
            let overloaded = guard.is_none();
            match kind {
                Listener::Plain => http(stream, peer, Mode::Proxy(Scheme::Http), proxy, overloaded, t).await,
                Listener::Redirect(port) => {
                    http(stream, peer, Mode::RedirectTo(port), proxy, overloaded, t).await
                }
                Listener::Tls(acceptor) => tls(stream, peer, acceptor, proxy, overloaded, t).await,
            }
            drop(guard);
        });
    }
}

async fn tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    overloaded: bool,
    header_timeout: Duration,
) {
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            http(stream, peer, Mode::Proxy(Scheme::Https), proxy, overloaded, header_timeout).await
        }
        Ok(Err(e)) => tracing::debug!(%peer, "tls handshake failed: {e}"),
        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
    }
}

async fn http<S>(
    stream: S,
    peer: SocketAddr,
    mode: Mode,
    proxy: Arc<Proxy>,
    overloaded: bool,
    header_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        async move {
            if overloaded {
                let mut res =
                    json_error(StatusCode::SERVICE_UNAVAILABLE, "the proxy is at its connection limit");
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok::<_, std::convert::Infallible>(res);
            }
            Ok(proxy.handle(req, peer, mode).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = pin!(conn).await {
        tracing::debug!(%peer, "http connection ended: {e}");
    }
}
