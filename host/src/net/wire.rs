//! The outbound half of one client connection, shared by its room and its connection task.
//!
//! A room writes a frame straight to the socket with a non-blocking vectored write (the frame's
//! WebSocket header plus the shared `Bytes` body, no copy), so a patch to fifty clients is fifty
//! `writev`s on the room's own task: no channel, no wake-up of another task. Only what the kernel
//! does not take at once is queued, bounded in bytes; the connection task then drains the queue
//! when the socket turns writable, under a deadline. A client that cannot keep up is closed and
//! freed, never waited for.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use odeon_protocol::handover::{self, Control};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{Frame, FrameHeader};

/// Per-connection bounds, the same for every client of a host.
#[derive(Debug, Clone, Copy)]
pub struct WireLimits {
    /// Bytes queued for a client beyond what its socket took; past this it is too slow.
    pub queue_bytes: usize,
    /// How long queued bytes may wait for the socket before the client is closed.
    pub write_deadline: Duration,
    /// Bytes of this client's input the room may hold unprocessed; the reader stops reading
    /// (TCP backpressure on that client alone) until the room catches up.
    pub inbound_bytes: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        Self { queue_bytes: 2 << 20, write_deadline: Duration::from_secs(10), inbound_bytes: 256 << 10 }
    }
}

/// The longest head a frame may carry of its own ([`OutFrame::with_head`]): a TIMED prefix.
pub const HEAD_MAX: usize = 9;

/// One binary message for the socket: a short head of its own (a TIMED state prefix, which
/// differs per recipient) before a body shared with other recipients. The head is written in
/// the same slice as the WebSocket header, so the body is never copied per client.
#[derive(Debug, Clone)]
pub struct OutFrame {
    head: [u8; HEAD_MAX],
    head_len: u8,
    body: Bytes,
}

impl OutFrame {
    /// `head` (at most [`HEAD_MAX`] bytes) then `body`, as one message.
    pub fn with_head(head: &[u8], body: Bytes) -> Self {
        assert!(head.len() <= HEAD_MAX, "a frame head is at most {HEAD_MAX} bytes");
        let mut h = [0u8; HEAD_MAX];
        h[..head.len()].copy_from_slice(head);
        Self { head: h, head_len: head.len() as u8, body }
    }

    /// The message's length on the wire, without the WebSocket header.
    pub fn len(&self) -> usize {
        self.head_len as usize + self.body.len()
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The WebSocket header and the head, in `out`; returns their length.
    fn header(&self, out: &mut [u8; HEADER_MAX + HEAD_MAX]) -> usize {
        let mut ws = [0u8; HEADER_MAX];
        let n = binary_header(self.len(), &mut ws);
        out[..n].copy_from_slice(&ws[..n]);
        let h = self.head_len as usize;
        out[n..n + h].copy_from_slice(&self.head[..h]);
        n + h
    }
}

impl From<Bytes> for OutFrame {
    fn from(body: Bytes) -> Self {
        Self { head: [0; HEAD_MAX], head_len: 0, body }
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The client's queue is over its byte bound (or its deadline passed): it is being closed.
    TooSlow,
}

/// What the connection task should do next, read under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Frames flow.
    Open,
    /// A close frame is queued: flush it, then end the connection.
    Closing,
    /// Give up at once: the client was too slow, or the socket failed.
    Abort,
    /// The client missed its heartbeats: drop it without a close frame (it is gone).
    Dead,
}

struct State {
    /// Bytes the socket has not taken yet, in order; `head_sent` of the first are already out.
    queue: VecDeque<Bytes>,
    head_sent: usize,
    /// Wire bytes in `queue` not yet written.
    queued_bytes: usize,
    /// Entries ever popped from `queue`: with it, `pong_at` names an entry however the queue moved.
    popped: u64,
    /// The queued pong not yet started, as `popped` counts entries: a newer pong replaces it.
    pong_at: Option<u64>,
    /// When the queue last went from empty to non-empty.
    stalled_since: Option<Instant>,
    phase: Phase,
    /// The nonce of a hold sent to the proxy in front of this client, until its answer.
    hold: Option<Arc<str>>,
    /// The code of the Close the room sent, once it did.
    closed_with: Option<u16>,
}

/// The outbound side of one client's socket.
pub struct Wire {
    socket: Arc<TcpStream>,
    state: Mutex<State>,
    /// Wakes the connection task: bytes are queued, or the phase changed.
    wake: Notify,
    limits: WireLimits,
    /// Input bytes handed to the room and not yet processed by it.
    inbound: AtomicUsize,
    /// Wakes the reader when the room has caught up with its input.
    inbound_drained: Notify,
    /// Heartbeat state: [`HEARD`] since the last beat, plus the beats missed in a row.
    liveness: std::sync::atomic::AtomicU8,
}

/// Set in `liveness` when anything arrived from the client since the last heartbeat.
const HEARD: u8 = 0x80;

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").field("peer", &self.socket.peer_addr().ok()).finish()
    }
}

/// The longest WebSocket frame header (RFC 6455 §5.2).
const HEADER_MAX: usize = 14;

/// Frames written in one `writev` at most when draining a queue.
const MAX_SLICES: usize = 64;

/// What one queued entry costs beyond its bytes: its slot in the queue and the allocation
/// behind a copied header or control frame. The queue's bound counts it, so a client cannot
/// make the host hold many times the bound in tiny frames (a ping flood's pongs, say).
const ENTRY_COST: usize = 64;

/// Queue slots kept once a backlog has drained; a larger queue gives its memory back.
const IDLE_QUEUE_SLOTS: usize = 16;

impl State {
    /// The memory the queue holds for the bound: its bytes plus each entry's cost.
    fn held(&self) -> usize {
        self.queued_bytes + self.queue.len() * ENTRY_COST
    }

    /// Whether `bytes` more wire bytes in `entries` more entries would break `limit`.
    fn over(&self, bytes: usize, entries: usize, limit: usize) -> bool {
        self.held() + bytes + entries * ENTRY_COST > limit
    }

    fn pop_front(&mut self) {
        self.queue.pop_front();
        self.popped += 1;
        if self.pong_at.is_some_and(|at| at < self.popped) {
            self.pong_at = None;
        }
    }
}

impl Wire {
    /// The outbound side of `socket`.
    pub fn new(socket: Arc<TcpStream>, limits: WireLimits) -> Self {
        Self {
            socket,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head_sent: 0,
                queued_bytes: 0,
                popped: 0,
                pong_at: None,
                stalled_since: None,
                phase: Phase::Open,
                hold: None,
                closed_with: None,
            }),
            wake: Notify::new(),
            limits,
            inbound: AtomicUsize::new(0),
            inbound_drained: Notify::new(),
            liveness: std::sync::atomic::AtomicU8::new(HEARD),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than the panic itself; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one binary WebSocket message. Written at once when the socket takes it; queued
    /// otherwise. `Err` means the client is too slow and is being closed: the caller drops it.
    pub fn send(&self, frame: &Bytes) -> Result<(), WireError> {
        let mut header = [0u8; HEADER_MAX];
        let header_len = binary_header(frame.len(), &mut header);
        self.send_parts(&header[..header_len], frame)
    }

    /// Sends several binary messages with as few `writev`s as the kernel allows (one, normally):
    /// a room's frames for one client from one guest call go out together.
    pub fn send_all(&self, frames: &[OutFrame]) -> Result<(), WireError> {
        if let [frame] = frames
            && frame.head_len == 0
        {
            return self.send(&frame.body);
        }
        let mut st = self.lock();
        if st.phase != Phase::Open {
            return Ok(());
        }
        let mut sent = 0;
        if st.queue.is_empty() {
            while sent < frames.len() {
                let chunk = &frames[sent..frames.len().min(sent + MAX_SLICES / 2)];
                let mut headers = [[0u8; HEADER_MAX + HEAD_MAX]; MAX_SLICES / 2];
                let mut lens = [0usize; MAX_SLICES / 2];
                for (k, f) in chunk.iter().enumerate() {
                    lens[k] = f.header(&mut headers[k]);
                }
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                for (k, f) in chunk.iter().enumerate() {
                    slices[2 * k] = IoSlice::new(&headers[k][..lens[k]]);
                    slices[2 * k + 1] = IoSlice::new(&f.body);
                }
                let total: usize = chunk.iter().enumerate().map(|(k, f)| lens[k] + f.body.len()).sum();
                let Some(mut written) = self.write_now(&mut st, &slices[..2 * chunk.len()]) else {
                    return Ok(());
                };
                if written == total {
                    sent += chunk.len();
                    continue;
                }
                // The kernel took part of the chunk: queue the rest of it, byte-exact.
                for (k, f) in chunk.iter().enumerate() {
                    let (h, body) = (&headers[k][..lens[k]], &f.body);
                    if written >= h.len() + body.len() {
                        written -= h.len() + body.len();
                        continue;
                    }
                    if written < h.len() {
                        st.queue.push_back(Bytes::copy_from_slice(&h[written..]));
                        st.queue.push_back(body.clone());
                    } else {
                        st.queue.push_back(body.slice(written - h.len()..));
                    }
                    written = 0;
                }
                st.queued_bytes = st.queue.iter().map(Bytes::len).sum();
                st.stalled_since = Some(Instant::now());
                sent += chunk.len();
                break;
            }
            if sent == frames.len() && st.queue.is_empty() {
                return Ok(());
            }
        }
        for f in &frames[sent..] {
            let mut header = [0u8; HEADER_MAX + HEAD_MAX];
            let n = f.header(&mut header);
            if st.over(n + f.body.len(), 2, self.limits.queue_bytes) {
                st.phase = Phase::Abort;
                drop(st);
                self.wake.notify_one();
                return Err(WireError::TooSlow);
            }
            st.queue.push_back(Bytes::copy_from_slice(&header[..n]));
            st.queue.push_back(f.body.clone());
            st.queued_bytes += n + f.body.len();
        }
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// One non-blocking `writev`: the bytes the kernel took (0 when it took none), or `None`
    /// when the socket failed; the connection is then aborted (its reader sees the same failure
    /// and reports the close to the room).
    fn write_now(&self, st: &mut State, slices: &[IoSlice<'_>]) -> Option<usize> {
        match self.socket.try_write_vectored(slices) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(0),
            Err(_) => {
                st.phase = Phase::Abort;
                self.wake.notify_one();
                None
            }
        }
    }

    fn send_parts(&self, header: &[u8], body: &Bytes) -> Result<(), WireError> {
        let mut st = self.lock();
        match st.phase {
            Phase::Open => {}
            // Closing or gone: the frame would never be read.
            Phase::Closing | Phase::Abort | Phase::Dead => return Ok(()),
        }
        let total = header.len() + body.len();
        if st.queue.is_empty() {
            let Some(written) = self.write_now(&mut st, &[IoSlice::new(header), IoSlice::new(body)]) else {
                return Ok(());
            };
            if written == total {
                return Ok(());
            }
            if written < header.len() {
                st.queue.push_back(Bytes::copy_from_slice(&header[written..]));
                st.queue.push_back(body.clone());
            } else {
                st.queue.push_back(body.slice(written - header.len()..));
            }
            st.queued_bytes = total - written;
            st.stalled_since = Some(Instant::now());
            drop(st);
            self.wake.notify_one();
            return Ok(());
        }
        let parts = usize::from(!header.is_empty()) + usize::from(!body.is_empty());
        if st.over(total, parts, self.limits.queue_bytes) {
            st.phase = Phase::Abort;
            drop(st);
            self.wake.notify_one();
            return Err(WireError::TooSlow);
        }
        if !header.is_empty() {
            st.queue.push_back(Bytes::copy_from_slice(header));
        }
        if !body.is_empty() {
            st.queue.push_back(body.clone());
        }
        st.queued_bytes += total;
        Ok(())
    }

    /// Queues a close frame (`None`: no status code, the client sees 1005) after everything
    /// already queued; the connection ends once it is written.
    pub fn close(&self, code: Option<u16>, reason: &str) {
        let frame = Frame::close(
            code.map(|c| CloseFrame { code: CloseCode::from(c), reason: reason.to_string().into() }),
        );
        let mut bytes = Vec::with_capacity(frame.len());
        if frame.format(&mut bytes).is_ok() {
            let _ = self.send_parts(&[], &Bytes::from(bytes));
        }
        let mut st = self.lock();
        if st.phase == Phase::Open {
            st.phase = Phase::Closing;
            st.closed_with = code;
        }
        drop(st);
        self.wake.notify_one();
    }

    /// The code of the Close the room sent this client, if it did.
    pub(crate) fn closed_with(&self) -> Option<u16> {
        self.lock().closed_with
    }

    /// Sends the proxy in front of this client a handover control frame
    /// (`odeon_protocol::handover`), in order with the frames before it. A hold is remembered
    /// until [`Wire::take_held`] sees its answer.
    /// False, and nothing sent, when the control does not fit in a control frame.
    pub fn send_control(&self, control: &Control) -> bool {
        let Some(frame) = control.frame() else { return false };
        if let Control::Hold { nonce, .. } = control {
            self.lock().hold = Some(nonce.as_str().into());
        }
        let _ = self.send_parts(&[], &Bytes::from(frame));
        true
    }

    /// Whether a Ping's payload answers the hold sent on this wire (and forgets the hold).
    pub(crate) fn take_held(&self, payload: &[u8]) -> bool {
        let mut st = self.lock();
        if st.hold.as_deref().is_some_and(|nonce| handover::is_held(payload, nonce)) {
            st.hold = None;
            return true;
        }
        false
    }

    /// Ends the connection after what is queued and `last` (a `moved` control frame), without a
    /// close frame: the proxy in front carries the client on to the room's new host.
    pub fn hand_over(&self, last: &Control) {
        let _ = self.send_control(last);
        let mut st = self.lock();
        if st.phase == Phase::Open {
            st.phase = Phase::Closing;
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Closes the client at once, dropping what is queued: it was too slow to keep up.
    pub fn abort(&self) {
        self.lock().phase = Phase::Abort;
        self.wake.notify_one();
    }

    /// Raw bytes from the protocol engine (pongs, close replies), in order with the frames.
    /// A pong that must wait behind a backlog replaces the pong already waiting, if that one has
    /// not started: only the newest ping is answered (RFC 6455 §5.5.3 allows it), so pings
    /// cannot grow the queue.
    pub(crate) fn send_raw(&self, bytes: &[u8]) {
        if is_one_pong(bytes) {
            let mut st = self.lock();
            if st.phase == Phase::Open
                && let Some(at) = st.pong_at
                && (at > st.popped || st.head_sent == 0)
            {
                let i = (at - st.popped) as usize;
                let old = st.queue[i].len();
                st.queue[i] = Bytes::copy_from_slice(bytes);
                st.queued_bytes = st.queued_bytes - old + bytes.len();
                return;
            }
            drop(st);
            let _ = self.send_parts(&[], &Bytes::copy_from_slice(bytes));
            let mut st = self.lock();
            if !st.queue.is_empty() && st.queue.back().is_some_and(|b| b[..] == *bytes) {
                st.pong_at = Some(st.popped + st.queue.len() as u64 - 1);
            }
            return;
        }
        let _ = self.send_parts(&[], &Bytes::copy_from_slice(bytes));
    }

    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Something arrived from the client: it is alive.
    pub(crate) fn heard(&self) {
        self.liveness.store(HEARD, Ordering::Relaxed);
    }

    /// One heartbeat: a client heard from since the last one is fine; a silent one is pinged;
    /// one silent for `MAX_MISSED` beats in a row is dropped.
    pub(crate) fn beat(&self) {
        let missed = match self.liveness.fetch_and(!HEARD, Ordering::Relaxed) {
            v if v & HEARD != 0 => 0,
            v => v + 1,
        };
        self.liveness.store(missed, Ordering::Relaxed);
        if missed >= super::heartbeat::MAX_MISSED {
            let mut st = self.lock();
            if st.phase == Phase::Open {
                st.phase = Phase::Dead;
            }
            drop(st);
            self.wake.notify_one();
        } else if missed > 0 {
            self.send_raw(&[0x89, 0x00]);
        }
    }

    /// Whether frames still flow (no close queued, not aborted).
    pub fn is_open(&self) -> bool {
        self.phase() == Phase::Open
    }

    /// Waits until there is something for the connection task to do.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Writes as much of the queue as the socket takes now. Returns `None` when the queue is
    /// empty, else when the rest must be gone by (the write deadline).
    pub(crate) fn drain(&self) -> io::Result<Option<Instant>> {
        let mut st = self.lock();
        loop {
            if st.queue.is_empty() {
                st.stalled_since = None;
                if st.queue.capacity() > IDLE_QUEUE_SLOTS {
                    st.queue.shrink_to(IDLE_QUEUE_SLOTS);
                }
                return Ok(None);
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut n = 0;
                for (i, b) in st.queue.iter().take(MAX_SLICES).enumerate() {
                    slices[i] = IoSlice::new(if i == 0 { &b[st.head_sent..] } else { b });
                    n = i + 1;
                }
                match self.socket.try_write_vectored(&slices[..n]) {
                    Ok(w) => w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(st.stalled_since.map(|t| t + self.limits.write_deadline));
                    }
                    Err(e) => return Err(e),
                }
            };
            st.queued_bytes -= written;
            let mut left = written;
            while left > 0 {
                let head = st.queue.front().map_or(0, |b| b.len()) - st.head_sent;
                if left >= head {
                    st.pop_front();
                    st.head_sent = 0;
                    left -= head;
                } else {
                    st.head_sent += left;
                    left = 0;
                }
            }
        }
    }

    /// Waits until the socket can take more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.socket.writable().await
    }

    /// Writes a close frame if the socket takes it now, without waiting: the last word to a
    /// client that is being dropped.
    pub(crate) fn try_close_now(&self, code: u16, reason: &str) {
        let frame =
            Frame::close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }));
        let mut bytes = Vec::with_capacity(frame.len());
        if frame.format(&mut bytes).is_ok() && self.lock().queue.is_empty() {
            let _ = self.socket.try_write(&bytes);
        }
    }

    /// Counts input handed to the room; returns whether the reader must wait for the room.
    pub(crate) fn take_inbound(&self, bytes: usize) -> bool {
        self.inbound.fetch_add(bytes, Ordering::AcqRel) + bytes > self.limits.inbound_bytes
    }

    /// Waits until the room has processed enough of this client's input.
    pub(crate) async fn inbound_room(&self) {
        loop {
            let notified = self.inbound_drained.notified();
            if self.inbound.load(Ordering::Acquire) <= self.limits.inbound_bytes / 2 {
                return;
            }
            notified.await;
        }
    }

    /// The room processed `bytes` of this client's input.
    pub fn release_inbound(&self, bytes: usize) {
        let before = self.inbound.fetch_sub(bytes, Ordering::AcqRel);
        let after = before.saturating_sub(bytes);
        if before > self.limits.inbound_bytes / 2 && after <= self.limits.inbound_bytes / 2 {
            self.inbound_drained.notify_one();
        }
    }
}

/// Whether `bytes` are exactly one unmasked pong frame, as the protocol engine writes them.
fn is_one_pong(bytes: &[u8]) -> bool {
    matches!(bytes, [0x8a, len, ..] if *len < 126 && bytes.len() == 2 + *len as usize)
}

/// A server-to-client (unmasked, final) binary frame header for a payload of `len` bytes.
fn binary_header(len: usize, out: &mut [u8; HEADER_MAX]) -> usize {
    let header = FrameHeader { opcode: OpCode::Data(Data::Binary), ..FrameHeader::default() };
    let mut cursor = io::Cursor::new(&mut out[..]);
    header.format(len as u64, &mut cursor).expect("a frame header fits its maximum size");
    cursor.position() as usize
}

#[cfg(test)]
mod tests;
