//! Accepting connections: HTTP/1.1 served by hyper with upgrades, plain or over TLS, one request
//! per connection, with a header-read timeout, a header size limit and a cap on open
//! connections (past it, new ones get a 503 and are closed, so a flood costs a refusal each
//! rather than the proxy's memory). A connection costs hyper's buffers only once its request
//! head is in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::head::{self, Prefixed};
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

/// Accept failures: logged at most once per [`ACCEPT_LOG_EVERY`] with a count of those not
/// logged, and, when the process is out of a resource (descriptors, memory), followed by a
/// pause that doubles up to [`ACCEPT_BACKOFF_MAX`] while the failures last, so a storm of
/// `EMFILE` neither floods the log nor spins the accept loop.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
    backoff: Duration,
}

/// Least interval between two logged accept failures.
pub const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);
/// First pause after a failure for want of a resource.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between two accepts while they fail for want of a resource.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(200);

impl AcceptErrors {
    /// A connection was accepted: the next failure starts over.
    pub fn accepted(&mut self) {
        self.backoff = Duration::ZERO;
    }

    /// Records a failure at `now`; returns how long to wait before accepting again.
    pub fn failed(&mut self, e: &std::io::Error, now: Instant) -> Duration {
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the next accept fails too until something is freed.
        // Anything else (a connection reset or aborted before it was accepted) is that
        // connection's alone.
        let exhausted =
            matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
        if self.last_logged.is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_EVERY) {
            let unlogged = std::mem::take(&mut self.unlogged);
            if exhausted {
                tracing::warn!(unlogged, "accept failed: {e} (the proxy is out of descriptors or memory)");
            } else {
                tracing::debug!(unlogged, "accept failed: {e}");
            }
            self.last_logged = Some(now);
        } else {
            self.unlogged += 1;
        }
        self.backoff = if exhausted {
            (self.backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX)
        } else {
            Duration::ZERO
        };
        self.backoff
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
    let mut errors = AcceptErrors::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => {
                errors.accepted();
                conn
            }
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: keep serving.
                let wait = errors.failed(&e, Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let guard = connections.try_enter();
        let (proxy, t) = (proxy.clone(), serving.header_timeout);
        // One task per kind, each the size of its own future: a plain connection does not
        // carry the room of a TLS one.
        match &serving.kind {
            Listener::Plain => tokio::spawn(http(stream, peer, Mode::Proxy(Scheme::Http), proxy, guard, t)),
            Listener::Redirect(port) => {
                tokio::spawn(http(stream, peer, Mode::RedirectTo(*port), proxy, guard, t))
            }
            Listener::Tls(acceptor) => tokio::spawn(tls(stream, peer, acceptor.clone(), proxy, guard, t)),
        };
    }
}

async fn tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    guard: Option<Guard>,
    header_timeout: Duration,
) {
    // Until its first byte a socket holds no TLS state: the handshake and what follows are
    // allocated when the client speaks.
    let deadline = tokio::time::Instant::now() + header_timeout;
    match tokio::time::timeout_at(deadline, stream.readable()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return tracing::debug!(%peer, "tls connection failed: {e}"),
        Err(_) => return tracing::debug!(%peer, "tls handshake timed out"),
    }
    let served = async move {
        match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                http(stream, peer, Mode::Proxy(Scheme::Https), proxy, guard, header_timeout).await
            }
            Ok(Err(e)) => tracing::debug!(%peer, "tls handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
        }
    };
    Box::pin(served).await
}

/// Serves one request on a connection, then closes it (the proxy's HTTP side is matchmaking,
/// one request per join, and an idle keep-alive connection would hold hyper's buffers). Until
/// the request head is in ([`head`]) the connection holds only its task and what it sent.
async fn http<S>(
    mut stream: S,
    peer: SocketAddr,
    mode: Mode,
    proxy: Arc<Proxy>,
    guard: Option<Guard>,
    header_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head =
        match tokio::time::timeout(header_timeout, head::read_head(&mut stream, MAX_HEADER_BYTES)).await {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return tracing::debug!(%peer, "reading the request head failed: {e}"),
            Err(_) => return tracing::debug!(%peer, "no request head within the header timeout"),
        };
    let overloaded = guard.is_none();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        async move {
            let mut res = if overloaded {
                json_error(StatusCode::SERVICE_UNAVAILABLE, "the proxy is at its connection limit")
            } else {
                proxy.handle(req, peer, mode).await
            };
            if res.status() != StatusCode::SWITCHING_PROTOCOLS {
                res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        // Not `keep_alive(false)`: hyper would then answer a 101 with `Connection: close` in
        // place of `Connection: upgrade`, which strict WebSocket clients refuse. Every other
        // answer says `Connection: close` above, which ends the connection after it.
        .serve_connection(TokioIo::new(Prefixed::new(head, stream)), service)
        .with_upgrades();
    // Boxed: the task waiting for a head above is not sized for hyper's connection.
    if let Err(e) = Box::pin(conn).await {
        tracing::debug!(%peer, "http connection ended: {e}");
    }
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn an_accept_storm_is_logged_once_a_second_and_backs_off() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        // The first failure is logged; the next ones, within the second, only counted.
        let waits: Vec<Duration> =
            (0..8).map(|i| errors.failed(&emfile(), t0 + Duration::from_millis(i * 10))).collect();
        assert_eq!(errors.unlogged, 7);
        assert_eq!(waits[0], ACCEPT_BACKOFF_MIN);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        // A second later the next one is logged with the count, which starts over.
        errors.failed(&emfile(), t0 + Duration::from_millis(1100));
        assert_eq!(errors.unlogged, 0);
        assert_eq!(errors.last_logged, Some(t0 + Duration::from_millis(1100)));
        // An accepted connection ends the pause; a connection's own failure never pauses.
        errors.accepted();
        assert_eq!(errors.failed(&emfile(), t0 + Duration::from_millis(1200)), ACCEPT_BACKOFF_MIN);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(errors.failed(&reset, t0 + Duration::from_millis(1210)), Duration::ZERO);
        assert_eq!(errors.unlogged, 2);
    }
}
