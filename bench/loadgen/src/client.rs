//! One simulated client: matchmake, open the room WebSocket, handshake, then read (and, if
//! active, send `move` on a fixed schedule) until told to stop.
//!
//! Per frame a client does no allocation of its own: frames arrive as `Bytes` from tungstenite,
//! the decoder works in place, and counters are relaxed atomic adds.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::matchmake::{Endpoint, Matchmaker};
use crate::metrics::{Counters, Histogram};
use crate::reconnect::{self, Reconnects, Rejoin};
use crate::schema::{Applied, ArenaTracker};
use crate::wire::{self, close, code};

/// Everything the clients share.
pub struct Shared {
    /// The server.
    pub endpoint: Endpoint,
    /// Seat reservations.
    pub matchmaker: Matchmaker,
    /// Source addresses to bind client sockets to, round-robin; empty: the kernel picks.
    pub sources: Vec<Ipv4Addr>,
    /// Small buffers: thousands of sockets.
    pub ws_config: WebSocketConfig,
    /// Budget for one whole join (HTTP, WebSocket, JOIN_ROOM, first ROOM_STATE).
    pub join_timeout: Duration,
    /// Moves per second per active client.
    pub rate_hz: f64,
    /// Totals.
    pub counters: Counters,
    /// Echo latencies of moves sent in the measure window.
    pub echo: Histogram,
    /// How late sends in the measure window went out against their schedule.
    pub send_lateness: Histogram,
    /// Colyseus PINGs per second per active client (the `--ping-hz` probe); 0: none.
    pub ping_hz: f64,
    /// Round trips of the probe's PINGs sent in the measure window.
    pub ping_rtt: Histogram,
    /// Set during the measure window.
    pub measuring: AtomicBool,
    /// Reconnections after a 4010 close (`--reconnect-on-4010`).
    pub reconnects: Reconnects,
}

/// What the coordinator tells the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Joins are in progress: only read.
    Joining,
    /// Active clients start their schedules at this instant.
    Go(Instant),
    /// Close and exit.
    Stop,
}

/// Idle clients only read; active ones send moves too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads and answers pings, never sends.
    Idle,
    /// Sends `move`; `slot` is its 0-based index among the active clients.
    Active {
        /// Index among active clients: phase offset and the unique `x` values.
        slot: u32,
    },
}

/// A join's outcome: time from the HTTP request to the first ROOM_STATE.
#[derive(Debug)]
pub struct JoinReport {
    /// Which kind of client.
    pub role: Role,
    /// Latency, or why it failed.
    pub result: Result<Duration, String>,
}

/// A client's room socket.
pub type Ws = WebSocketStream<TcpStream>;

/// Runs one client to the end. The permit (join concurrency) is released once joined.
pub async fn run(
    shared: Arc<Shared>,
    index: u32,
    role: Role,
    permit: OwnedSemaphorePermit,
    reports: mpsc::UnboundedSender<JoinReport>,
    phase: watch::Receiver<Phase>,
) {
    let started = Instant::now();
    let joined = match tokio::time::timeout(shared.join_timeout, join(&shared, index)).await {
        Ok(r) => r,
        Err(_) => Err(anyhow!("join timed out after {:?}", shared.join_timeout)),
    };
    drop(permit);
    let (ws, tracker, mut rejoin) = match joined {
        Ok(j) => {
            let _ = reports.send(JoinReport { role, result: Ok(started.elapsed()) });
            j
        }
        Err(e) => {
            let _ = reports.send(JoinReport { role, result: Err(format!("{e:#}")) });
            return;
        }
    };
    drop(reports);
    steady(&shared, index, role, ws, tracker, &mut rejoin, phase).await;
}

/// A TCP connection to the endpoint, from the client's source address.
pub(crate) async fn connect(shared: &Shared, index: u32) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    // Closing sends RST: no TIME_WAIT on either side, so repeated runs never run out of ports.
    socket.set_zero_linger().context("SO_LINGER")?;
    socket.set_nodelay(true).context("TCP_NODELAY")?;
    if !shared.sources.is_empty() {
        let source = shared.sources[index as usize % shared.sources.len()];
        socket.bind(SocketAddr::new(source.into(), 0)).with_context(|| format!("bind {source}"))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(shared.endpoint.addr))
        .await
        .map_err(|_| anyhow!("TCP connect timed out"))?
        .with_context(|| format!("TCP connect to {}", shared.endpoint.addr))?;
    Ok(stream)
}

async fn join(shared: &Shared, index: u32) -> anyhow::Result<(Ws, ArenaTracker, Rejoin)> {
    let seat = shared.matchmaker.join_or_create().await?;
    let stream = connect(shared, index).await?;
    let url = seat.ws_url(&shared.endpoint);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(shared.ws_config))
            .await
            .with_context(|| format!("WebSocket handshake {url}"))?;
    let frame = next_binary(&mut ws, "JOIN_ROOM").await?;
    let token = wire::join_room_token(&frame).unwrap_or_default().to_owned();
    match frame.first() {
        Some(&code::JOIN_ROOM) => match wire::join_room_serializer(&frame) {
            Some("schema") => {}
            other => bail!("JOIN_ROOM with serializer {other:?}, expected \"schema\""),
        },
        _ => bail!("expected JOIN_ROOM, got frame {:02x?}", &frame[..frame.len().min(16)]),
    }
    ws.send(Message::Binary(Bytes::from_static(&wire::JOIN_ACK))).await.context("sending JOIN ack")?;
    let mut tracker = ArenaTracker::new(&seat.session_id);
    loop {
        let frame = next_binary(&mut ws, "ROOM_STATE").await?;
        if frame.first() == Some(&code::ROOM_STATE) {
            let mut applied = Applied::default();
            if tracker.apply(&frame[1..], &mut applied).is_err() || tracker.own_ref().is_none() {
                Counters::bump(&shared.counters.decode_errors);
            }
            let rejoin = Rejoin { url, token, session_id: seat.session_id };
            return Ok((ws, tracker, rejoin));
        }
        // Anything before the full state (there should be nothing) is ignored.
    }
}

/// The next binary frame during the handshake; an ERROR frame or a close is an error.
pub(crate) async fn next_binary(ws: &mut Ws, waiting_for: &str) -> anyhow::Result<Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&code::ERROR) => bail!(wire::error_text(&b)),
            Some(Ok(Message::Binary(b))) if !b.is_empty() => return Ok(b),
            Some(Ok(Message::Close(frame))) => bail!("closed while waiting for {waiting_for}: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("socket error while waiting for {waiting_for}: {e}"),
            None => bail!("socket ended while waiting for {waiting_for}"),
        }
    }
}

/// The schema `number` the server echoes is exact for integers within int32, so each move's
/// `x` is an integer unique to (active slot, send): `slot * STRIDE + seq % (STRIDE - 1) + 1`,
/// never 0 (the join position).
const STRIDE: u64 = 100_000;
const RING: usize = 32;
/// A send that takes longer than this waited for the socket (the server is not reading).
const SLOW_SEND: Duration = Duration::from_millis(5);

#[derive(Clone, Copy)]
struct Sent {
    seq: u64,
    at: Instant,
    in_window: bool,
}

/// The last few moves sent, waiting for their value to show up in a patch.
struct EchoRing {
    slot: u64,
    sent: [Option<Sent>; RING],
}

impl EchoRing {
    fn x_of(&self, seq: u64) -> f64 {
        (self.slot * STRIDE + seq % (STRIDE - 1) + 1) as f64
    }

    fn sent(&mut self, seq: u64, at: Instant, in_window: bool) {
        self.sent[seq as usize % RING] = Some(Sent { seq, at, in_window });
    }

    /// The seq residue of `x`, if `x` is one of this client's values.
    fn residue_of(&self, x: f64) -> Option<u64> {
        let base = (self.slot * STRIDE) as f64;
        if x.fract() != 0.0 || x <= base || x > base + (STRIDE - 1) as f64 {
            return None;
        }
        Some((x - base) as u64 - 1)
    }

    /// The own `x` was set to `x` by a patch received at `now`.
    fn observed(&mut self, x: f64, now: Instant, echo: &Histogram) {
        let Some(residue) = self.residue_of(x) else { return };
        // Sends are stored at `seq % RING`; seq < STRIDE - 1 in any bounded run, so the residue
        // is the seq itself and names its slot.
        let entry = &mut self.sent[residue as usize % RING];
        if let Some(s) = *entry
            && s.seq % (STRIDE - 1) == residue
        {
            if s.in_window {
                echo.record(now.duration_since(s.at));
            }
            *entry = None;
        }
    }

    /// Forgets the sends after the one whose value `x` is (every unshown one, if `x` is none of
    /// this client's) and returns how many there were. Called with the state a reconnection
    /// found: a room applies a client's moves in order, so these never reached it.
    fn forget_after(&mut self, x: f64) -> u64 {
        let shown = self.residue_of(x);
        let mut lost = 0;
        for entry in &mut self.sent {
            if entry.is_some_and(|s| shown.is_none_or(|j| s.seq % (STRIDE - 1) > j)) {
                *entry = None;
                lost += 1;
            }
        }
        lost
    }
}

/// Where in the send period an active client sends, as a fraction of it: the golden-ratio
/// sequence, so the sends of all clients *and* of any run of consecutive slots (one room of 50:
/// joinOrCreate fills rooms in join order) are spread evenly over the period. A plain
/// `slot / total` would put each room's sends into one short burst per period, and so half the
/// patches a room would otherwise send.
fn phase_fraction(slot: u32) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    (slot as f64 * GOLDEN).fract()
}

/// Drift-free schedule: slot `k` is due at `base + k / rate`.
struct Schedule {
    base: Instant,
    period: Duration,
    next: u64,
}

impl Schedule {
    fn due(&self, k: u64) -> Instant {
        self.base + self.period.mul_f64(k as f64)
    }
}

async fn steady(
    shared: &Shared,
    index: u32,
    role: Role,
    mut ws: Ws,
    mut tracker: ArenaTracker,
    rejoin: &mut Rejoin,
    mut phase: watch::Receiver<Phase>,
) {
    let counters = &shared.counters;
    let patches = match role {
        Role::Idle => &counters.patches_idle,
        Role::Active { .. } => &counters.patches_active,
    };
    let mut ring = match role {
        Role::Active { slot } => Some(EchoRing { slot: slot as u64, sent: [None; RING] }),
        Role::Idle => None,
    };
    let period = Duration::from_secs_f64(1.0 / shared.rate_hz.max(0.001));
    let mut schedule: Option<Schedule> = None;
    let sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(sleep);
    // The PING probe: its own schedule, half a period away from the moves' phase, and at most
    // one PING in flight (sent when, and whether in the window).
    let mut probe: Option<Schedule> = None;
    let probe_sleep = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(probe_sleep);
    let mut ping_out: Option<(Instant, bool)> = None;
    let mut applied = Applied::default();
    // A Go sent before this client got here still counts.
    let mut pending_phase = Some(*phase.borrow_and_update());
    loop {
        if let Some(p) = pending_phase.take() {
            match p {
                Phase::Stop => return,
                Phase::Go(t0) if ring.is_some() && schedule.is_none() => {
                    let Role::Active { slot } = role else { unreachable!("ring implies active") };
                    let offset = period.mul_f64(phase_fraction(slot));
                    let s = Schedule { base: t0 + offset, period, next: 0 };
                    sleep.as_mut().reset(s.due(0));
                    schedule = Some(s);
                    if shared.ping_hz > 0.0 {
                        let period = Duration::from_secs_f64(1.0 / shared.ping_hz);
                        let offset = period.mul_f64((phase_fraction(slot) + 0.5).fract());
                        let p = Schedule { base: t0 + offset, period, next: 0 };
                        probe_sleep.as_mut().reset(p.due(0));
                        probe = Some(p);
                    }
                }
                _ => {}
            }
        }
        tokio::select! {
            biased;
            changed = phase.changed() => match changed {
                Ok(()) => pending_phase = Some(*phase.borrow_and_update()),
                Err(_) => return,
            },
            () = &mut sleep, if schedule.is_some() => {
                let (Some(s), Some(ring)) = (schedule.as_mut(), ring.as_mut()) else { continue };
                let now = Instant::now();
                let mut k = s.next;
                let in_window = shared.measuring.load(Relaxed);
                if in_window {
                    shared.send_lateness.record(now.saturating_duration_since(s.due(k)));
                }
                // More than a period late: skip to the current slot instead of bursting.
                if now > s.due(k) + s.period {
                    let behind = now.duration_since(s.base).as_secs_f64() / s.period.as_secs_f64();
                    let current = behind.floor() as u64;
                    counters.skipped_sends.fetch_add(current.saturating_sub(k), Relaxed);
                    k = current.max(k);
                }
                let x = ring.x_of(k);
                let frame = wire::move_frame(x, k as f64);
                let sent_at = Instant::now();
                ring.sent(k, sent_at, in_window);
                if ws.send(Message::Binary(Bytes::copy_from_slice(&frame))).await.is_err() {
                    Counters::bump(&counters.socket_closes);
                    Counters::bump(&counters.disconnects);
                    return;
                }
                if sent_at.elapsed() > SLOW_SEND {
                    Counters::bump(&counters.slow_sends);
                }
                Counters::bump(&counters.moves_sent);
                if in_window {
                    Counters::bump(&counters.window_moves);
                }
                s.next = k + 1;
                sleep.as_mut().reset(s.due(s.next));
            }
            () = &mut probe_sleep, if probe.is_some() => {
                let Some(p) = probe.as_mut() else { continue };
                if ping_out.is_some() {
                    // Still unanswered a whole period later: skip rather than stack them up.
                    Counters::bump(&counters.pings_skipped);
                } else {
                    ping_out = Some((Instant::now(), shared.measuring.load(Relaxed)));
                    if ws.send(Message::Binary(Bytes::from_static(&wire::PING))).await.is_err() {
                        Counters::bump(&counters.socket_closes);
                        Counters::bump(&counters.disconnects);
                        return;
                    }
                    Counters::bump(&counters.pings_sent);
                }
                // The next slot after now: a late probe never bursts.
                let behind = Instant::now().saturating_duration_since(p.base).as_secs_f64() / p.period.as_secs_f64();
                p.next = (p.next + 1).max(behind.floor() as u64 + 1);
                probe_sleep.as_mut().reset(p.due(p.next));
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    Counters::bump(&counters.frames_received);
                    counters.bytes_received.fetch_add(frame.len() as u64, Relaxed);
                    let is_patch = match frame.first() {
                        Some(&code::ROOM_STATE_PATCH) => true,
                        Some(&code::ROOM_STATE) => false,
                        Some(&code::PING) => {
                            if let Some((at, in_window)) = ping_out.take()
                                && in_window
                            {
                                shared.ping_rtt.record(at.elapsed());
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    if is_patch {
                        Counters::bump(patches);
                    }
                    if tracker.apply(&frame[1..], &mut applied).is_err() {
                        Counters::bump(&counters.decode_errors);
                    }
                    if applied.own_x_set && let Some(ring) = ring.as_mut() {
                        ring.observed(tracker.x, Instant::now(), &shared.echo);
                    }
                }
                Some(Ok(Message::Close(frame))) if frame.as_ref().is_some_and(|f| u16::from(f.code) == close::MAY_TRY_RECONNECT) => {
                    let closed_at = Instant::now();
                    Counters::bump(&counters.socket_closes);
                    Counters::bump(&counters.closed_4010);
                    shared.reconnects.closed();
                    let back = match shared.reconnects.enabled {
                        true => reconnect::reconnect(shared, index, rejoin, closed_at).await,
                        false => None,
                    };
                    let Some((new_ws, new_tracker)) = back else {
                        Counters::bump(&counters.disconnects);
                        return;
                    };
                    (ws, tracker) = (new_ws, new_tracker);
                    // The room's state as it came over: a move sent before the close may be in it,
                    // and the moves after the one it shows are lost.
                    if let Some(ring) = ring.as_mut() {
                        ring.observed(tracker.x, Instant::now(), &shared.echo);
                        counters.moves_lost.fetch_add(ring.forget_after(tracker.x), Relaxed);
                    }
                    // A PING sent on the old socket is never answered.
                    ping_out = None;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    Counters::bump(&counters.socket_closes);
                    Counters::bump(&counters.disconnects);
                    return;
                }
                // tungstenite queues the pong and sends it with the next read or write.
                Some(Ok(Message::Ping(_))) => Counters::bump(&counters.ws_pings),
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_values_are_unique_and_matched() {
        let h = Histogram::default();
        let mut ring = EchoRing { slot: 1999, sent: [None; RING] };
        let t0 = Instant::now();
        let xs: Vec<f64> = (0..5).map(|k| ring.x_of(k)).collect();
        assert_eq!(xs[0], 199_900_001.0);
        assert!(xs.iter().all(|x| *x < i32::MAX as f64));
        for k in 0..5 {
            ring.sent(k, t0, k != 0);
        }
        ring.observed(xs[0], t0 + Duration::from_millis(5), &h);
        assert_eq!(h.count(), 0, "sent outside the window");
        ring.observed(xs[3], t0 + Duration::from_millis(40), &h);
        ring.observed(xs[3], t0 + Duration::from_millis(90), &h);
        assert_eq!(h.count(), 1, "the first patch showing a value counts, once");
        let q = h.quantiles_ms().unwrap();
        assert!((q.p50 - 40.0).abs() < 1.0);
        // A reconnection found the state at seq 1: sends 2 and 4 (3 was shown) never arrived.
        let mut lost = EchoRing { slot: 7, sent: [None; RING] };
        for k in 0..5 {
            lost.sent(k, t0, true);
        }
        lost.observed(lost.x_of(3), t0, &Histogram::default());
        assert_eq!(lost.forget_after(lost.x_of(1)), 2, "2 and 4; 0 and 1 reached the room, 3 was shown");
        assert_eq!(lost.forget_after(0.0), 2, "a state without the client's value: all unshown sends");
        // Another slot's value and the join position are not ours.
        ring.observed(EchoRing { slot: 3, sent: [None; RING] }.x_of(1), t0, &h);
        ring.observed(0.0, t0, &h);
        assert_eq!(h.count(), 1);
    }

    #[test]
    fn phases_spread_every_room_over_the_period() {
        // Any 50 consecutive slots (one room) leave no gap wider than a tenth of the period.
        for room in [0u32, 7, 39] {
            let mut f: Vec<f64> = (room * 50..room * 50 + 50).map(phase_fraction).collect();
            f.sort_by(f64::total_cmp);
            let widest = f.windows(2).map(|w| w[1] - w[0]).fold(f[0] + 1.0 - f[49], f64::max);
            assert!(widest < 0.1, "room {room}: gap {widest}");
        }
    }

    #[test]
    fn schedules_are_absolute() {
        let t0 = Instant::now();
        let s = Schedule { base: t0, period: Duration::from_millis(100), next: 0 };
        assert_eq!(s.due(0), t0);
        assert_eq!(s.due(600), t0 + Duration::from_secs(60));
    }
}
