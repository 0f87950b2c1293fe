//! Relaying an upgraded WebSocket: bytes copied unchanged between the client and its host, with
//! backpressure both ways and an idle timeout.
//!
//! Buffer discipline: a connection owns no buffer while its peer keeps up. Each read lands in a
//! chunk on the stack of the task that polls it and is written straight to the other side; only
//! what the other side does not take at once is copied into that direction's pending buffer,
//! and the direction reads nothing more until the buffer is written out and freed. So an idle
//! or a fast client costs its sockets and this task, and a client that never reads holds at
//! most one chunk before its host's socket fills and the host's own slow-client policy applies.

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::head::Prefixed;

/// Largest read: a step's worth of frames to one client fits with room to spare.
const CHUNK: usize = 16 * 1024;
/// The idle timer checks for traffic this many times per timeout.
const IDLE_CHECKS: u32 = 4;

/// One side of a relayed connection.
pub enum Io {
    /// Plain TCP (the host side, and clients of the plain listener).
    Tcp(TcpStream),
    /// A client of the TLS listener.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Anything else hyper upgraded (not expected; kept working rather than refused).
    Other(TokioIo<Upgraded>),
}

impl Io {
    /// The stream under an upgraded connection, and the bytes already read past the handshake
    /// (by hyper, then what of the pre-read head hyper had not read yet).
    pub fn from_upgraded(upgraded: Upgraded) -> (Io, Bytes) {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return (Io::Tcp(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        let upgraded = match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
            Ok(parts) => {
                let (rest, io) = parts.io.into_inner().into_parts();
                return (Io::Tcp(io), joined(parts.read_buf, rest));
            }
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Prefixed<tokio_rustls::server::TlsStream<TcpStream>>>>() {
            Ok(parts) => {
                let (rest, io) = parts.io.into_inner().into_parts();
                (Io::Tls(Box::new(io)), joined(parts.read_buf, rest))
            }
            Err(upgraded) => (Io::Other(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

fn joined(first: Bytes, then: Bytes) -> Bytes {
    if then.is_empty() {
        return first;
    }
    [first, then].concat().into()
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Io::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Io::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
            Io::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Io::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Both sides closed.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
}

/// One direction: what was read and not yet written, and whether its source has ended.
#[derive(Default)]
struct Half {
    pending: Vec<u8>,
    written: usize,
    unflushed: bool,
    eof: bool,
    done: bool,
}

impl Half {
    fn with(leftover: Bytes) -> Self {
        Half { pending: leftover.to_vec(), ..Half::default() }
    }

    /// Moves bytes from `src` to `dst` until `src` has nothing more or `dst` takes nothing more.
    /// Ready when the direction is finished (its source ended and `dst` was shut down).
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        active: &mut bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            while self.written < self.pending.len() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.unflushed = true;
            }
            if !self.pending.is_empty() {
                // Caught up: give the memory back rather than keep it for the next burst.
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.eof {
                ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut *src).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    if self.unflushed {
                        // Plain TCP has nothing to flush; TLS writes out its records here.
                        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = buf.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            *active = true;
            let mut off = 0;
            while off < data.len() {
                match Pin::new(&mut *dst).poll_write(cx, &data[off..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => off += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // The other side is slow: keep the rest and stop reading this way.
                        self.pending.extend_from_slice(&data[off..]);
                        return Poll::Pending;
                    }
                }
            }
            self.unflushed = true;
        }
    }
}

/// Relays between `client` and `upstream` until both directions end, either side fails, or
/// nothing moves for `idle`. `client_leftover` and `upstream_leftover` are bytes already read
/// from each side (past the handshake) and are delivered first.
pub async fn relay(
    mut client: Io,
    client_leftover: Bytes,
    mut upstream: Io,
    upstream_leftover: Bytes,
    idle: Duration,
) -> io::Result<End> {
    let mut up = Half::with(client_leftover);
    let mut down = Half::with(upstream_leftover);
    let check = idle / IDLE_CHECKS;
    let mut timer = Box::pin(tokio::time::sleep(check));
    // Traffic since the timer's last check, and how many checks in a row saw none.
    let (mut seen, mut quiet) = (false, 0);
    std::future::poll_fn(move |cx| {
        let a = up.poll(cx, &mut client, &mut upstream, &mut seen)?;
        let b = down.poll(cx, &mut upstream, &mut client, &mut seen)?;
        if a.is_ready() && b.is_ready() {
            return Poll::Ready(Ok(End::Closed));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if seen {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet >= IDLE_CHECKS {
                    return Poll::Ready(Ok(End::Idle));
                }
            }
            seen = false;
            timer.as_mut().reset(tokio::time::Instant::now() + check);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback TCP streams.
    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    type Relayed = (TcpStream, TcpStream, tokio::task::JoinHandle<io::Result<End>>);

    /// A client and a host with a relay between them, started with these leftovers.
    async fn relayed(
        client_leftover: &'static [u8],
        host_leftover: &'static [u8],
        idle: Duration,
    ) -> Relayed {
        let (client, client_proxy_side) = pair().await;
        let (upstream_proxy_side, host) = pair().await;
        let task = tokio::spawn(relay(
            Io::Tcp(client_proxy_side),
            Bytes::from_static(client_leftover),
            Io::Tcp(upstream_proxy_side),
            Bytes::from_static(host_leftover),
            idle,
        ));
        (client, host, task)
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_both_ways_leftovers_first_and_close_ends_the_relay() {
        let (mut client, mut host, task) = relayed(b"early-", b"hello-", Duration::from_secs(10)).await;
        client.write_all(b"up").await.unwrap();
        let mut got = [0u8; 8];
        host.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"early-up");
        host.write_all(b"down").await.unwrap();
        let mut got = [0u8; 10];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello-down");
        // A megabyte each way, concurrently, arrives whole and in order.
        let blob: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let (mut cr, mut cw) = client.into_split();
        let (mut hr, mut hw) = host.into_split();
        let (b1, b2) = (blob.clone(), blob.clone());
        let w1 = tokio::spawn(async move {
            cw.write_all(&b1).await.unwrap();
            cw
        });
        let w2 = tokio::spawn(async move {
            hw.write_all(&b2).await.unwrap();
            hw
        });
        let mut at_host = vec![0u8; blob.len()];
        let mut at_client = vec![0u8; blob.len()];
        hr.read_exact(&mut at_host).await.unwrap();
        cr.read_exact(&mut at_client).await.unwrap();
        assert!(at_host == blob && at_client == blob);
        drop((w1.await.unwrap(), w2.await.unwrap(), cr, hr));
        assert_eq!(task.await.unwrap().unwrap(), End::Closed);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_holds_at_most_one_chunk() {
        let (client, mut host, task) = relayed(b"", b"", Duration::from_secs(30)).await;
        // The host writes until its socket is full: with the client not reading, that happens
        // after the kernel buffers, not after an unbounded amount queued in the proxy.
        let chunk = vec![1u8; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_millis(500), host.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
            assert!(sent < 64 << 20, "the relay kept reading from the host: {sent} bytes");
        }
        drop(client);
        drop(host);
        let _ = task.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_relay_times_out_and_traffic_keeps_it_open() {
        let (mut client, mut host, task) = relayed(b"", b"", Duration::from_millis(400)).await;
        // Traffic every 150 ms for 1.5 s keeps it open.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            host.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished());
        let quiet_from = tokio::time::Instant::now();
        assert_eq!(task.await.unwrap().unwrap(), End::Idle);
        let waited = quiet_from.elapsed();
        // Between one timeout and one timeout plus a check (and scheduling slack).
        assert!(waited >= Duration::from_millis(300) && waited <= Duration::from_secs(3), "{waited:?}");
        // Both sockets were closed by the relay.
        let mut b = [0u8; 1];
        assert_eq!(host.read(&mut b).await.unwrap(), 0);
    }
}
