//! The room WebSocket: the upgrade handshake and one task per connection.
//!
//! The task owns the read side: it decodes frames (tungstenite's protocol engine over a
//! non-blocking socket, with a small read buffer that grows only for a client sending large
//! frames), normalises msgpackr payloads and hands each input straight to the room's inbox. It
//! also drains the client's write queue when the socket backs up and enforces the write
//! deadline. Rooms write to the socket themselves through the shared [`Wire`]; heartbeats come
//! from the host's one sweeper (`heartbeat`).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use odeon_protocol::frame::{self, ClientFrame, close};
use odeon_protocol::handover;
use odeon_protocol::msgpackr;
use odeon_protocol::profile::Profile;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error as WsError, Message};

use super::wire::{Phase, Wire};
use super::{AppState, json_error};
use crate::rooms::{ClientInput, RoomHandle, RoomMsg};

/// Close code for a message over the size limit, as the `ws` library Colyseus uses sends.
const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a client over its message rate (RFC 6455 "policy violation").
const POLICY_VIOLATION: u16 = 1008;
/// How long a closed connection waits for the client's close reply before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(3);
/// Pings and pongs one client may send per second (bursts of twice that), whatever its message
/// rate: each ping costs a pong, and a client answering the host's heartbeats needs one pong
/// every few seconds.
const CONTROL_FRAMES_PER_SEC: u32 = 10;
/// Frames a closed connection parses while it waits for the client's close reply; past them,
/// what the client sends is discarded unparsed.
const LINGER_FRAMES: u32 = 64;
/// Read buffer of a connection (and the most one `recv` reads); a larger frame grows it while
/// it is read. It is touched on every read, so its size is most of an idle client's memory.
const READ_BUFFER: usize = 1024;
/// Longest a proxy's resume for a room moving here waits for the room (the proxy opens it as
/// soon as the room's clients are held, before the room has moved; a move that does not come
/// releases the hold within 10 s).
const RESUME_PARK: Duration = Duration::from_secs(12);

/// `GET /{processId}/{roomId}`: validates the upgrade, answers 101 and starts the connection.
pub(super) async fn websocket(
    State(state): State<AppState>,
    Path((process_id, room_id)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return json_error(StatusCode::UPGRADE_REQUIRED, "this path is a room WebSocket: upgrade required");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return json_error(StatusCode::BAD_REQUEST, "unsupported Sec-WebSocket-Version (13 expected)");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return json_error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    // A room path names its process. Another live process's room is relayed there (a client
    // that matchmade through this host while the room runs elsewhere); a process that is not
    // live (one that ran on this port before a restart, say) is not this host's to answer.
    // A room that moved (a drain) is reached by the path its clients knew: served here if it
    // moved here from that process, else relayed to where it runs now.
    let here = state.mm.room(&room_id).is_some()
        && (process_id == state.mm.process_id() || state.mm.arrived_from(&room_id, &process_id));
    // Behind odeon-proxy, the socket can follow its room to another host (a drain), and the
    // proxy's socket to a room's new host resumes the seat it took over.
    let handover = match req.headers().contains_key(handover::HANDOVER_HEADER) {
        true => {
            let headers = req.headers().clone();
            state.forwarded.is_proxy(&headers).await
        }
        false => false,
    };
    let resume = handover && req.headers().contains_key(handover::RESUME_HEADER);
    // A proxy's resume for a room moving here may come before the room (the proxy opens it
    // during the hold): it waits here for the room rather than going to the room's old owner.
    let arriving = resume && process_id == state.mm.process_id();
    if !here && !arriving && !req.headers().contains_key(super::relay::RELAYED) {
        let live_elsewhere = process_id != state.mm.process_id() && state.mm.is_live(&process_id).await;
        let owner = match live_elsewhere {
            true => None,
            false => state.mm.owner_of(&room_id).await,
        };
        if let Some(owner) = owner {
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            let target = format!("/{owner}/{room_id}{query}");
            return super::relay::relay(&state, &owner, Some(target), req).await;
        }
    }
    if process_id != state.mm.process_id() && !here {
        return super::relay::relay(&state, &process_id, None, req).await;
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return json_error(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    let params = Params {
        handover,
        resume,
        session_id: query.get("sessionId").cloned().unwrap_or_default(),
        token: query.get("reconnectionToken").cloned().filter(|t| !t.is_empty()),
        skip_handshake: query.contains_key("skipHandshake"),
        room: state.mm.room(&room_id),
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!("websocket upgrade failed: {e}"),
        };
        let mut params = params;
        if arriving && params.room.is_none() {
            params.room = state.mm.arriving_room(&room_id, RESUME_PARK).await;
        }
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                // Copy what the client sent after its request, then let hyper's read buffer go:
                // `read_buf` shares hyper's whole buffer (8 KiB or more), and keeping it across
                // the connection's life was most of an idle client's memory.
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                let leftover = read_buf.to_vec();
                drop(read_buf);
                Connection::start(state, params, io.into_inner(), leftover).await
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    res.into_response()
}

struct Params {
    /// The proxy in front follows handover control frames.
    handover: bool,
    /// The proxy resumes a session whose room moved here.
    resume: bool,
    session_id: String,
    token: Option<String>,
    skip_handshake: bool,
    room: Option<RoomHandle>,
}

/// The socket as tungstenite sees it: reads never block (`WouldBlock` when nothing is there),
/// and everything it writes (pongs, close replies) joins the client's outbound order.
struct Io {
    socket: Arc<TcpStream>,
    wire: Arc<Wire>,
}

impl Read for Io {
    /// A read that came back short means the socket is drained for now: it clears the socket's
    /// readiness in the same step, so the engine's next read is answered `WouldBlock` without
    /// a second `recv` that would find nothing (one syscall less per client frame). Readiness
    /// that arrives meanwhile is a newer event and is kept.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        let socket = socket2::SockRef::from(&*self.socket);
        let r = self.socket.try_io(tokio::io::Interest::READABLE, || {
            got = (&*socket).read(buf)?;
            if got > 0 && got < buf.len() { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(got) }
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            r => r,
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wire.send_raw(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a connection ended, as the room should see it.
enum End {
    /// The client or the network closed it, with this code.
    Closed(u16),
    /// The room closed it (a close frame is queued).
    ByRoom,
    /// Dropped at once: too slow, missed heartbeats, or a socket error.
    Aborted(u16),
}

/// A client's message allowance: bursts of `2 × rate`, refilled at `rate` a second.
struct MessageRate {
    tokens: f32,
    at: Instant,
}

impl MessageRate {
    fn new(rate: u32) -> Self {
        Self { tokens: 2.0 * rate as f32, at: Instant::now() }
    }

    /// Takes one message; false when the client is over its rate (`0` is unlimited).
    fn take(&mut self, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f32() * rate as f32;
        self.tokens = (self.tokens + refill).min(2.0 * rate as f32);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

struct Connection {
    state: AppState,
    session_id: Arc<str>,
    conn_id: u64,
    profile: Profile,
    socket: Arc<TcpStream>,
    wire: Arc<Wire>,
    ws: WebSocket<Io>,
    rate: MessageRate,
    /// Pings and pongs, on a budget of their own as well as the message rate.
    control: MessageRate,
}

impl Connection {
    async fn start(state: AppState, params: Params, stream: TcpStream, leftover: Vec<u8>) {
        let socket = Arc::new(stream);
        let wire = Arc::new(Wire::new(socket.clone(), state.config.wire));
        state.heartbeats.register(&wire);
        let max = state.config.max_message_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws = WebSocket::from_partially_read(
            Io { socket: socket.clone(), wire: wire.clone() },
            leftover,
            Role::Server,
            Some(config),
        );
        let profile = state.mm.profile();
        let conn_id = state.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session_id: Arc<str> = params.session_id.as_str().into();
        let rate = MessageRate::new(state.config.max_messages_per_sec);
        let control = MessageRate::new(CONTROL_FRAMES_PER_SEC);
        let mut conn = Connection { state, session_id, conn_id, profile, socket, wire, ws, rate, control };

        let seated = match &params.room {
            Some(room) if !conn.session_id.is_empty() => {
                let (reply, rx) = oneshot::channel();
                room.send(RoomMsg::Connect {
                    session_id: params.session_id.clone(),
                    reconnection_token: params.token.clone(),
                    conn_id,
                    wire: conn.wire.clone(),
                    skip_handshake: params.skip_handshake,
                    handover: params.handover,
                    resume: params.resume,
                    reply,
                });
                matches!(rx.await, Ok(Ok(())))
            }
            _ => false,
        };
        let Some(room) = params.room.filter(|_| seated) else {
            tracing::debug!(session = %conn.session_id, "websocket without a seat");
            if params.resume {
                // The proxy's resume found no seat: the client reconnects by itself after 4010.
                conn.wire.close(Some(close::MAY_TRY_RECONNECT), "");
                conn.linger(None).await;
                return;
            }
            let code = if params.token.is_some() { close::FAILED_TO_RECONNECT } else { close::WITH_ERROR };
            let _ = conn
                .wire
                .send(&frame::error(profile.expired_seat_code(), "seat reservation expired.").into());
            conn.wire.close(Some(code), "");
            conn.linger(None).await;
            return;
        };
        let end = conn.serve(&room).await;
        let code = match end {
            End::Closed(code) | End::Aborted(code) => code,
            End::ByRoom => close::CONSENTED,
        };
        if matches!(end, End::ByRoom) && conn.wire.closed_with() == Some(close::MAY_TRY_RECONNECT) {
            // Closed because its room moved (or is following it): what the client sent before
            // it got the Close still goes to the room, which forwards it to the room's new host;
            // the room hears of the close once the client's Close is in.
            conn.linger(Some(&room)).await;
            room.send(RoomMsg::Closed { session_id: conn.session_id.to_string(), conn_id, code });
            return;
        }
        room.send(RoomMsg::Closed { session_id: conn.session_id.to_string(), conn_id, code });
        match end {
            End::Aborted(_) => {}
            End::Closed(_) | End::ByRoom => conn.linger(None).await,
        }
    }

    /// Runs the connection until it ends.
    async fn serve(&mut self, room: &RoomHandle) -> End {
        let mut waiting_for_room = false;
        loop {
            if !waiting_for_room {
                match self.read_available(room) {
                    Ok(Some(wait)) => waiting_for_room = wait,
                    Ok(None) => {}
                    Err(end) => return end,
                }
            }
            match self.wire.phase() {
                Phase::Open => {}
                Phase::Closing => return End::ByRoom,
                Phase::Abort => {
                    self.wire.try_close_now(close::WITH_ERROR, "client too slow");
                    return End::Aborted(close::WITH_ERROR);
                }
                Phase::Dead => return End::Aborted(close::ABNORMAL),
            }
            let deadline = match self.wire.drain() {
                Ok(deadline) => deadline,
                Err(_) => return End::Aborted(close::ABNORMAL),
            };
            let backlog = deadline.is_some();
            tokio::select! {
                r = self.socket.readable(), if !waiting_for_room => {
                    if r.is_err() {
                        return End::Aborted(close::ABNORMAL);
                    }
                }
                () = self.wire.inbound_room(), if waiting_for_room => waiting_for_room = false,
                () = self.wire.woken() => {}
                r = self.wire.writable(), if backlog => {
                    if r.is_err() {
                        return End::Aborted(close::ABNORMAL);
                    }
                }
                () = sleep_until(deadline), if backlog => {
                    tracing::warn!(session = %self.session_id, "client did not read for the write deadline; closing it");
                    self.wire.abort();
                }
            }
        }
    }

    /// Reads every message the socket has now. `Ok(Some(true))`: the room holds as much of
    /// this client's input as it may; stop reading until it catches up.
    fn read_available(&mut self, room: &RoomHandle) -> Result<Option<bool>, End> {
        loop {
            let msg = match self.ws.read() {
                Ok(msg) => msg,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(WsError::Capacity(e)) => {
                    tracing::debug!(session = %self.session_id, "closing client: {e}");
                    self.wire.close(Some(MESSAGE_TOO_BIG), "message too big");
                    return Err(End::Closed(MESSAGE_TOO_BIG));
                }
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    return Err(End::Closed(close::ABNORMAL));
                }
                Err(e) => {
                    tracing::debug!(session = %self.session_id, "websocket error: {e}");
                    return Err(End::Aborted(close::ABNORMAL));
                }
            };
            self.wire.heard();
            if let Message::Ping(payload) = &msg
                && self.wire.take_held(payload)
            {
                // The proxy holds this client's frames from here on: the room has all before.
                room.send(RoomMsg::Held { session_id: self.session_id.to_string(), conn_id: self.conn_id });
                continue;
            }
            let bytes = match msg {
                Message::Binary(b) => Some(b),
                Message::Text(t) => Some(t.into()),
                // Control frames are metered too: every ping costs the host a pong.
                Message::Ping(_) | Message::Pong(_) => None,
                Message::Frame(_) => continue,
                Message::Close(frame) => {
                    return Err(End::Closed(frame.map_or(close::NO_STATUS, |f| f.code.into())));
                }
            };
            let control_over = bytes.is_none() && !self.control.take(CONTROL_FRAMES_PER_SEC);
            if control_over || !self.rate.take(self.state.config.max_messages_per_sec) {
                tracing::debug!(session = %self.session_id, "closing client: over its message rate");
                self.wire.close(Some(POLICY_VIOLATION), "message rate limit exceeded");
                return Err(End::Closed(POLICY_VIOLATION));
            }
            let Some(bytes) = bytes else { continue };
            match self.input(&bytes) {
                Ok(Some((input, cost))) => {
                    let wait = cost > 0 && self.wire.take_inbound(cost);
                    let msg = RoomMsg::Input {
                        session_id: self.session_id.clone(),
                        conn_id: self.conn_id,
                        input,
                        cost,
                    };
                    if !room.send(msg) {
                        self.wire.close(Some(close::WITH_ERROR), "");
                        return Err(End::Closed(close::WITH_ERROR));
                    }
                    if wait {
                        return Ok(Some(true));
                    }
                }
                Ok(None) => {}
                Err((code, reason)) => {
                    self.wire.close(Some(code), &reason);
                    return Err(End::Closed(code));
                }
            }
        }
    }

    /// A client payload as plain MessagePack (msgpackr records expanded, within the cap).
    fn normalized(&self, payload: &[u8]) -> Result<Vec<u8>, msgpackr::MsgpackError> {
        if payload.is_empty() {
            return Ok(Vec::new());
        }
        msgpackr::normalize_within(payload, self.state.config.max_expanded_bytes)
    }

    /// Decodes one client frame; `None` for frames answered here or ignored. The cost is the
    /// bytes the room will hold for it.
    fn input(&self, bytes: &[u8]) -> Result<Option<(ClientInput, usize)>, (u16, String)> {
        let input = match frame::parse_client(bytes, self.profile) {
            Ok(ClientFrame::JoinAck) => ClientInput::Ack,
            Ok(ClientFrame::Leave) => ClientInput::Leave,
            Ok(ClientFrame::Ping) => {
                if self.profile.answers_ping() {
                    let _ = self.wire.send(&bytes::Bytes::from_static(&[frame::code::PING]));
                }
                return Ok(None);
            }
            Ok(ClientFrame::Unknown(_)) => return Ok(None),
            Ok(ClientFrame::Data { kind, payload }) => match self.normalized(payload) {
                Ok(p) => ClientInput::Message(kind, p),
                Err(msgpackr::MsgpackError::TooLarge(_)) => {
                    return Err((MESSAGE_TOO_BIG, "message too big".into()));
                }
                Err(e) => {
                    tracing::debug!(session = %self.session_id, "malformed payload: {e}");
                    return Err((close::WITH_ERROR, String::new()));
                }
            },
            Ok(ClientFrame::Bytes { kind, payload }) => ClientInput::Bytes(kind, payload.to_vec()),
            Ok(ClientFrame::Request { id, kind, payload }) => {
                match self.normalized(payload) {
                    Ok(payload) => ClientInput::Request { id, kind, payload },
                    Err(msgpackr::MsgpackError::TooLarge(_)) => {
                        return Err((MESSAGE_TOO_BIG, "message too big".into()));
                    }
                    // An undecodable request payload fails that request only; the socket stays.
                    Err(e) => {
                        let error = frame::request_error("Error", &e.to_string(), None);
                        let frame = frame::room_response(id, frame::status::ERROR, Some(&error));
                        let _ = self.wire.send(&frame.into());
                        return Ok(None);
                    }
                }
            }
            Ok(ClientFrame::Input { delta }) => ClientInput::Input(delta.to_vec()),
            Ok(ClientFrame::InputUnreliable { body }) => ClientInput::InputUnreliable(body.to_vec()),
            Err(e) => return Err((close::WITH_ERROR, e.to_string())),
        };
        let cost = match &input {
            ClientInput::Ack | ClientInput::Leave => 0,
            other => other.payload_len() + 16,
        };
        Ok(Some((input, cost)))
    }

    /// Hands the room a message read after its Close, as the client's input.
    fn deliver(&mut self, room: &RoomHandle, message: Message) {
        let bytes = match message {
            Message::Binary(b) => b,
            Message::Text(t) => t.into(),
            _ => return,
        };
        if let Ok(Some((input, _))) = self.input(&bytes) {
            let session_id = self.session_id.clone();
            room.send(RoomMsg::Input { session_id, conn_id: self.conn_id, input, cost: 0 });
        }
    }

    /// After a close frame: flush it and wait (bounded) for the client's reply, so the socket
    /// ends with a clean close rather than a reset that could swallow the close frame. With
    /// `room` (the room closed the client with 4010 because it moved), what the client sent
    /// before its reply still goes to the room, which forwards it to the room's new host.
    async fn linger(&mut self, room: Option<&RoomHandle>) {
        let until = Instant::now() + CLOSE_LINGER;
        // Frames parsed while waiting for the close reply. A client that keeps sending instead
        // (a flood that got it closed) then has its bytes discarded unparsed, pongs and all,
        // until it closes or the linger ends: cheap, and the socket is never dropped with
        // input unread (an RST that could swallow the close frame queued for it).
        let mut frames_left = LINGER_FRAMES;
        loop {
            let backlog = match self.wire.drain() {
                Ok(deadline) => deadline.is_some(),
                Err(_) => return,
            };
            if matches!(self.wire.phase(), Phase::Abort | Phase::Dead) {
                return;
            }
            loop {
                if frames_left == 0 {
                    match discard_available(&self.socket) {
                        Ok(()) => break,
                        Err(_) => return,
                    }
                }
                match self.ws.read() {
                    Ok(message) => {
                        frames_left -= 1;
                        if let Some(room) = room {
                            self.deliver(room, message);
                        }
                    }
                    Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        if !backlog {
                            return;
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                r = self.socket.readable() => if r.is_err() { return },
                r = self.wire.writable(), if backlog => if r.is_err() { return },
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }
}

/// Reads and drops whatever the socket has now; `Err` once the client has closed or the socket
/// failed. A plain function, so its buffer is on the thread's stack only while it runs, never in
/// a connection's future.
fn discard_available(socket: &TcpStream) -> io::Result<()> {
    let mut scratch = [0u8; 16 << 10];
    loop {
        match socket.try_read(&mut scratch) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
