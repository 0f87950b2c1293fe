//! Reading a request head before hyper sees the connection.
//!
//! hyper gives every connection an 8 KiB write buffer when it is built and an 8 KiB read buffer
//! at its first read, and its connection task is a few KiB more: about 20 KiB for a socket that
//! has sent nothing yet. So a connection is handed to hyper only once its request head is in
//! (or its head limit is reached, which hyper then refuses with 431): until then it holds the
//! bytes it sent, in a buffer that grows with them, and its task. [`Prefixed`] replays those
//! bytes to hyper ahead of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// First allocation for a head; it doubles while more arrives.
const FIRST_READ: usize = 512;

/// Reads from `io` until a whole request head (up to its blank line) is in, or `limit` bytes
/// are. `None` when the peer closed first.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S, limit: usize) -> io::Result<Option<Bytes>> {
    let mut head: Vec<u8> = Vec::new();
    loop {
        if head.len() == head.capacity() {
            let more = head.capacity().max(FIRST_READ).min(limit - head.len());
            head.reserve_exact(more);
        }
        let before = head.len();
        let room = head.capacity().min(limit) - before;
        if io.read_buf(&mut (&mut head).limit(room)).await? == 0 {
            return Ok(None);
        }
        if head.len() >= limit || ends_head(&head, before) {
            return Ok(Some(Bytes::from(head)));
        }
    }
}

/// Whether `buf` holds a blank line (`\n\n` or `\n\r\n`) ending at or after `from` (earlier
/// bytes were checked by the previous call).
fn ends_head(buf: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(2);
    buf[start..].windows(2).any(|w| w == b"\n\n") || buf[start..].windows(3).any(|w| w == b"\n\r\n")
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    /// `io`, read from `prefix` first.
    pub fn new(prefix: Bytes, io: S) -> Self {
        Self { prefix, io }
    }

    /// The stream and what of the prefix was not read yet.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.io)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // Let the head's buffer go now rather than with the connection.
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_head_is_read_to_its_blank_line_in_a_buffer_the_size_of_what_came() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nearly bytes";
        let writer = tokio::spawn(async move {
            // Byte by byte: the end is found across reads.
            for b in req {
                client.write_all(&[*b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let head = read_head(&mut server, 32 * 1024).await.unwrap().unwrap();
        assert!(head.starts_with(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), "{head:?}");
        assert!(head.len() < FIRST_READ + 16);
        let client = writer.await.unwrap();
        // Replayed first, then the stream.
        let mut prefixed = Prefixed::new(head, server);
        let mut got = vec![0u8; req.len()];
        prefixed.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, req);
        drop(client);
    }

    #[tokio::test]
    async fn a_head_stops_at_the_limit_and_a_closed_peer_gives_none() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[b'a'; 5000]).await.unwrap();
        let head = read_head(&mut server, 4096).await.unwrap().unwrap();
        assert_eq!(head.len(), 4096);
        let (client, mut server) = tokio::io::duplex(1024);
        drop(client);
        assert!(read_head(&mut server, 4096).await.unwrap().is_none());
        // Bare line feeds end a head too.
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\nHost: x\n\n").await.unwrap();
        assert!(read_head(&mut server, 4096).await.unwrap().is_some());
    }
}
