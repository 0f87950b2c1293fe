//! Relaying an upgraded WebSocket: bytes copied unchanged between the client and its host, with
//! backpressure both ways and an idle timeout.
//!
//! Buffer discipline: a connection owns no buffer while its peer keeps up. Each read lands in a
//! chunk on the stack of the task that polls it and is written straight to the other side; only
//! what the other side does not take at once is copied into that direction's pending buffer,
//! and the direction reads nothing more until the buffer is written out and freed. So an idle
//! or a fast client costs its sockets and this task, and a client that never reads holds at
//! most one chunk before its host's socket fills and the host's own slow-client policy applies.
//!
//! Both directions follow the WebSocket frame headers as they pass ([`crate::frames`]; the
//! payloads are neither copied nor unmasked) for the handover of a room to another host
//! (`odeon_protocol::handover`): the host's control frames are taken out of its stream, and a
//! hold stops the client's frames at a frame boundary ([`hold`]). A room that moved ends the
//! relay with [`End::Moved`], the client's socket and its held bytes, for the caller to splice
//! onto the room's new host.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use odeon_protocol::handover::{Control, Destination};

use crate::head::Prefixed;
use hold::{Down, Marker, Up};

#[cfg(test)]
mod handover_tests;
mod hold;
#[cfg(test)]
mod tests;

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

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Io::Tcp(_) => "Io::Tcp",
            Io::Tls(_) => "Io::Tls",
            Io::Other(_) => "Io::Other",
        })
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum End {
    /// Both sides closed.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The host handed the room to another process: resume the client there.
    Moved(Box<Moved>),
}

/// A room that moved to another process (`Control::Moved`), and the client that follows it.
/// Everything the old host sent before it has been written to the client; the old host's
/// connection is closed.
#[derive(Debug)]
pub struct Moved {
    /// The process that runs the room now.
    pub process_id: String,
    /// The client's session.
    pub session_id: String,
    /// The session's reconnection token.
    pub token: String,
    /// The client's socket.
    pub client: Io,
    /// What the client sent that the old host did not get, from a frame boundary on.
    pub held: Vec<u8>,
    /// When the proxy read the marker.
    pub at: Instant,
}

/// One direction: what was read and not yet written, and whether its source has ended.
#[derive(Default)]
struct Half {
    /// Read before the relay began; taken as the first read.
    leftover: Bytes,
    pending: Vec<u8>,
    written: usize,
    unflushed: bool,
    eof: bool,
    done: bool,
}

/// What a direction does with the bytes it reads.
trait Filter {
    /// Takes `data`, read from the source: writes to `dst`, or pends in `half`, what goes on.
    fn take<W: AsyncWrite + Unpin>(
        &mut self,
        half: &mut Half,
        cx: &mut Context<'_>,
        data: &[u8],
        dst: &mut W,
    ) -> io::Result<()>;
    /// Whether the source may be read now.
    fn may_read(&self) -> bool;
    /// Whether the source's end may be passed on (the destination shut down).
    fn may_close(&self) -> bool;
    /// Whether the last read changed what the relay must look at before this direction goes on.
    fn interrupted(&self) -> bool;
}

impl Half {
    fn with(leftover: Bytes) -> Self {
        // Copied, or dropped when empty: an upgrade's leftover is a slice of hyper's read
        // buffer (8 KiB or more), which even an empty slice would keep for the relay's life.
        let leftover = if leftover.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(&leftover) };
        Half { leftover, ..Half::default() }
    }

    /// Whether everything taken so far is written and flushed.
    fn caught_up(&self) -> bool {
        self.pending.is_empty() && self.leftover.is_empty() && !self.unflushed
    }

    /// Writes `data` to `dst` now, and keeps in `pending` what `dst` does not take at once
    /// (or all of it behind bytes pending already).
    #[inline]
    fn forward<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
        dst: &mut W,
    ) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return Ok(());
        }
        let mut off = 0;
        while off < data.len() {
            match Pin::new(&mut *dst).poll_write(cx, &data[off..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    off += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    // The other side is slow: keep the rest and stop reading this way.
                    self.pending.extend_from_slice(&data[off..]);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Moves bytes from `src` through `filter` to `dst` until `src` has nothing more, `dst`
    /// takes nothing more, or the filter stops it. Ready when the direction is finished (its
    /// source ended and `dst` was shut down).
    fn poll<R, W, F>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        active: &mut bool,
        filter: &mut F,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        F: Filter,
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
            if !self.leftover.is_empty() {
                let leftover = std::mem::take(&mut self.leftover);
                filter.take(self, cx, &leftover, dst)?;
                if filter.interrupted() {
                    return Poll::Pending;
                }
                continue;
            }
            if !filter.may_read() || (self.eof && !filter.may_close()) {
                if self.unflushed {
                    ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                    self.unflushed = false;
                }
                return Poll::Pending;
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
            filter.take(self, cx, data, dst)?;
            if filter.interrupted() {
                return Poll::Pending;
            }
        }
    }
}

/// Relays between `client` and `upstream` until both directions end, either side fails,
/// nothing moves for `idle`, or the host moves the room. `client_leftover` and
/// `upstream_leftover` are bytes already read from each side (past the handshake; each starts
/// at a frame boundary) and are delivered first.
pub fn relay(
    client: Io,
    client_leftover: Bytes,
    upstream: Io,
    upstream_leftover: Bytes,
    idle: Duration,
) -> Relaying {
    let state = Relay {
        up_half: Half::with(client_leftover),
        up: Up::default(),
        down_half: Half::with(upstream_leftover),
        down: Down::default(),
        hold_timer: None,
        check: idle / IDLE_CHECKS,
        timer: Box::pin(tokio::time::sleep(idle / IDLE_CHECKS)),
        seen: false,
        quiet: 0,
        heading: None,
    };
    Relaying { state, client: Some(client), upstream }
}

/// A relay under way: a future of how it ended. It owns the state and both sockets and no
/// more, since it is what every idle client costs.
pub struct Relaying {
    state: Relay,
    client: Option<Io>,
    upstream: Io,
}

/// Where a hold said the room is going, or that it is not going after all.
#[derive(Debug)]
pub enum Heading {
    /// A hold named the room's next host (`Control::Hold`'s `to`).
    To(Destination),
    /// The hold ended without a move (`Control::Resume`).
    Nowhere,
}

impl Relaying {
    /// What the host said, since the last call, about where the room is going: the caller may
    /// open the client's resume there while the room is held (`odeon_protocol::handover`).
    pub fn heading(&mut self) -> Option<Heading> {
        self.state.heading.take().map(|h| *h)
    }
}

impl Future for Relaying {
    type Output = io::Result<End>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let io = this.client.as_mut().expect("polled after it ended");
        let end = ready!(this.state.poll(cx, io, &mut this.upstream))?;
        Poll::Ready(Ok(match end {
            None => End::Closed,
            Some(Ended::Idle) => End::Idle,
            Some(Ended::Moved(marker)) => {
                let Marker { process_id, session_id, token, at } = *marker;
                let client = this.client.take().expect("taken once");
                End::Moved(Box::new(Moved {
                    process_id,
                    session_id,
                    token,
                    client,
                    held: this.state.up.take_held(),
                    at,
                }))
            }
        }))
    }
}

/// Why the relay ended, other than both sides closing.
enum Ended {
    Idle,
    Moved(Box<Marker>),
}

/// A relay's state between polls.
struct Relay {
    up_half: Half,
    up: Up,
    down_half: Half,
    down: Down,
    /// When a hold that did not end becomes a resume (or a move, the wait for the client's
    /// frame in flight, an error).
    hold_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    check: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Traffic since the timer's last check, and how many checks in a row saw none.
    seen: bool,
    quiet: u32,
    /// What a hold said about where the room goes, for [`Relaying::heading`].
    heading: Option<Box<Heading>>,
}

impl Relay {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut Io,
        upstream: &mut Io,
    ) -> Poll<io::Result<Option<Ended>>> {
        loop {
            let a = self.up_half.poll(cx, client, upstream, &mut self.seen, &mut self.up)?;
            let b = self.down_half.poll(cx, upstream, client, &mut self.seen, &mut self.down)?;
            if self.handover(cx)? {
                // The host's controls or the hold timer changed a direction: go round again.
                continue;
            }
            if self.down.moved.is_some() && self.down_half.caught_up() && self.up.is_held() {
                let marker = self.down.moved.take().expect("checked");
                return Poll::Ready(Ok(Some(Ended::Moved(marker))));
            }
            if a.is_ready() && b.is_ready() {
                return Poll::Ready(Ok(None));
            }
            while self.timer.as_mut().poll(cx).is_ready() {
                if self.seen {
                    self.quiet = 0;
                } else {
                    self.quiet += 1;
                    if self.quiet >= IDLE_CHECKS {
                        return Poll::Ready(Ok(Some(Ended::Idle)));
                    }
                }
                self.seen = false;
                self.timer.as_mut().reset(tokio::time::Instant::now() + self.check);
            }
            return Poll::Pending;
        }
    }

    /// Applies what the host's stream said and what the hold timer says; whether anything
    /// changed.
    fn handover(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        // The common case, every poll of every relay: no handover under way.
        if self.down.controls.is_empty() && self.down.moved.is_none() && self.hold_timer.is_none() {
            return Ok(false);
        }
        let mut changed = false;
        for control in std::mem::take(&mut self.down.controls) {
            changed = true;
            match &control {
                Control::Hold { to: Some(to), .. } => self.heading = Some(Box::new(Heading::To(to.clone()))),
                Control::Resume => self.heading = Some(Box::new(Heading::Nowhere)),
                _ => {}
            }
            if self.up.control(&mut self.up_half, control) {
                self.hold_timer = Some(Box::pin(tokio::time::sleep(hold::HOLD_TIMEOUT)));
            } else if !self.up.is_holding() {
                self.hold_timer = None;
            }
        }
        if self.down.moved.is_some() && !self.up.is_moved() {
            changed = true;
            self.up.moved(&mut self.up_half);
            // Past the marker only a client frame in flight is waited for, and not forever.
            self.hold_timer = (!self.up.is_held()).then(|| Box::pin(tokio::time::sleep(hold::HOLD_TIMEOUT)));
        }
        if let Some(timer) = &mut self.hold_timer
            && timer.as_mut().poll(cx).is_ready()
        {
            self.hold_timer = None;
            if self.down.moved.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the room moved and the client's frame in flight did not end",
                ));
            }
            tracing::warn!("a hold was neither resumed nor moved within {:?}: resuming", hold::HOLD_TIMEOUT);
            self.up.resume(&mut self.up_half);
            changed = true;
        }
        Ok(changed)
    }
}
