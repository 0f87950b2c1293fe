//! The network edge: matchmaking HTTP, the room WebSocket, health and the admin endpoint.
//!
//! This module and `odeon_protocol` are the only places that know the wire format. Each
//! WebSocket gets a reader (this task) and a writer task; frames are decoded and msgpackr payloads
//! normalised here, so rooms see typed inputs only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use odeon_protocol::frame::{self, ClientFrame, close};
use odeon_protocol::msgpackr;
use odeon_protocol::profile::Profile;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::matchmaker::{Matchmaker, SeatReservation};
use crate::rooms::{CLIENT_QUEUE, ClientInput, ConnectError, Outgoing, RoomHandle, RoomMsg};

/// Settings of the network edge.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Bearer token of the admin endpoint; `None` disables it.
    pub admin_token: Option<String>,
    /// Where uploaded plugins are stored, so a restart keeps them.
    pub plugins_dir: PathBuf,
    /// Largest client WebSocket message; larger ones close that client.
    pub max_message_bytes: usize,
    /// Interval of WebSocket pings; a client that misses two is dropped.
    pub heartbeat: Duration,
}

#[derive(Clone)]
struct AppState {
    mm: Arc<Matchmaker>,
    config: Arc<NetConfig>,
    next_conn: Arc<AtomicU64>,
}

/// Builds the HTTP router.
pub fn router(mm: Arc<Matchmaker>, config: NetConfig) -> Router {
    let state = AppState { mm, config: Arc::new(config), next_conn: Arc::new(AtomicU64::new(1)) };
    Router::new()
        .route("/matchmake/{method}/{*target}", post(matchmake).options(preflight))
        .route("/odeon/health", get(health))
        .route("/odeon/admin/plugins", post(upload_plugin))
        .route("/odeon/admin/rooms", get(list_rooms))
        .route("/{process_id}/{room_id}", get(websocket))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

/// Adds Colyseus's CORS headers to every response, echoing the request's Origin (a `*` is
/// refused by browsers when credentials are included).
async fn cors(State(state): State<AppState>, req: Request<axum::body::Body>, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned().unwrap_or(HeaderValue::from_static("*"));
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(state.mm.profile().cors_methods()),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("2592000"));
    res
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    let mut processes: Vec<String> = state.mm.processes().await.into_iter().map(|p| p.process_id).collect();
    processes.sort();
    Json(json!({
        "processes": processes,
        "status": "ok",
        "processId": state.mm.process_id(),
        "protocol": state.mm.profile().to_string(),
        "rooms": state.mm.room_count(),
        "roomTypes": state.mm.plugins().versions().into_iter()
            .map(|(name, version)| json!({ "name": name, "version": version }))
            .collect::<Vec<_>>(),
    }))
}

async fn matchmake(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((method, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let profile = state.mm.profile();
    if state.mm.is_shutting_down() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return json_error(StatusCode::BAD_REQUEST, "options must be a JSON object"),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}")),
        }
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    match state.mm.matchmake(&method, &target, options, token, peer.ip().to_string()).await {
        Ok(seat) => Json(reservation_json(profile, &seat)).into_response(),
        Err(e) => {
            let code = e.code_in(profile);
            let status = match profile {
                Profile::V0_16 => StatusCode::OK,
                _ => StatusCode::from_u16(code as u16)
                    .ok()
                    .filter(|_| (100..600).contains(&code))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            };
            let mut res = (status, Json(json!({ "code": code, "error": e.message }))).into_response();
            // Colyseus's status line reads `525 unknown` for its non-standard codes.
            if status.canonical_reason().is_none() {
                res.extensions_mut().insert(hyper::ext::ReasonPhrase::from_static(b"unknown"));
            }
            res
        }
    }
}

/// The seat-reservation JSON of a profile: 0.16 nests the listing under `room` (with filterBy
/// values top level); 0.17+ are flat.
fn reservation_json(profile: Profile, seat: &SeatReservation) -> Value {
    let l = &seat.listing;
    if profile.nested_reservation() {
        let mut room = serde_json::to_value(l).expect("listing serializes");
        if let Value::Object(map) = &mut room {
            for (k, v) in &l.create_filters {
                map.insert(k.clone(), v.clone());
            }
        }
        json!({ "room": room, "sessionId": seat.session_id })
    } else {
        let mut v = json!({
            "name": l.name,
            "sessionId": seat.session_id,
            "roomId": l.room_id,
            "processId": l.process_id,
        });
        if let Some(addr) = &l.public_address {
            v["publicAddress"] = json!(addr);
        }
        v
    }
}

/// Checks the admin bearer token; `Some` is the refusal to send.
fn admin_refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &state.config.admin_token else {
        return Some(json_error(
            StatusCode::NOT_FOUND,
            "admin endpoint disabled (no admin token configured)",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authorized = given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes()));
    (!authorized).then(|| json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
}

/// Every room listing of this deployment, with the plugin version each room runs.
async fn list_rooms(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refusal) = admin_refusal(&state, &headers) {
        return refusal;
    }
    match state.mm.listings().await {
        Ok(rooms) => {
            let rooms: Vec<Value> = rooms
                .iter()
                .map(|l| {
                    let mut v = serde_json::to_value(l).expect("listing serializes");
                    v["pluginVersion"] = json!(l.plugin_version);
                    v
                })
                .collect();
            Json(json!({ "rooms": rooms })).into_response()
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn upload_plugin(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = admin_refusal(&state, &headers) {
        return refusal;
    }
    let plugins = state.mm.plugins();
    let source = query.get("file").cloned().unwrap_or_else(|| "upload".into());
    match plugins.load(&format!("admin:{source}"), body.to_vec()).await {
        Ok(version) => {
            let file = state.config.plugins_dir.join(format!("{}.wasm", version.manifest.name));
            if let Err(e) = write_atomically(&file, &body) {
                tracing::warn!("uploaded plugin serves but was not saved to {}: {e}", file.display());
            }
            Json(json!({ "name": version.manifest.name, "version": version.version })).into_response()
        }
        Err(e) => {
            tracing::error!(source, "refused uploaded plugin: {e}; any previous version keeps serving");
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

async fn websocket(
    State(state): State<AppState>,
    Path((_process_id, room_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = state.config.max_message_bytes;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let session_id = query.get("sessionId").cloned().unwrap_or_default();
        let token = query.get("reconnectionToken").cloned().filter(|t| !t.is_empty());
        let skip_handshake = query.contains_key("skipHandshake");
        let room = state.mm.room(&room_id);
        Connection { state, session_id, token, skip_handshake }.run(socket, room).await;
    })
}

struct Connection {
    state: AppState,
    session_id: String,
    token: Option<String>,
    skip_handshake: bool,
}

impl Connection {
    async fn run(self, socket: WebSocket, room: Option<RoomHandle>) {
        let profile = self.state.mm.profile();
        let conn_id = self.state.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out_tx, out_rx) = mpsc::channel(CLIENT_QUEUE);
        let abort = Arc::new(Notify::new());
        let (mut sink, mut stream) = socket.split();

        let seated = match &room {
            Some(room) if !self.session_id.is_empty() => {
                let (reply, rx) = oneshot::channel();
                room.send(RoomMsg::Connect {
                    session_id: self.session_id.clone(),
                    reconnection_token: self.token.clone(),
                    conn_id,
                    tx: out_tx.clone(),
                    abort: abort.clone(),
                    skip_handshake: self.skip_handshake,
                    reply,
                });
                matches!(rx.await, Ok(Ok(())))
            }
            _ => false,
        };
        let Some(room) = room.filter(|_| seated) else {
            let err: Result<(), ConnectError> = Err(ConnectError::Expired);
            tracing::debug!(session = %self.session_id, "websocket without a seat: {err:?}");
            let frame = frame::error(profile.expired_seat_code(), "seat reservation expired.");
            let code = if self.token.is_some() { close::FAILED_TO_RECONNECT } else { close::WITH_ERROR };
            let _ = sink.send(Message::Binary(frame.into())).await;
            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: "".into() }))).await;
            return;
        };

        let alive = Arc::new(AtomicBool::new(true));
        let writer =
            tokio::spawn(write_loop(sink, out_rx, abort, alive.clone(), self.state.config.heartbeat));
        let code = self.read_loop(&mut stream, &room, conn_id, &out_tx, &alive, profile).await;
        room.send(RoomMsg::Closed { session_id: self.session_id.clone(), conn_id, code });
        drop(out_tx);
        // The writer ends once the room has dropped its queue handle and everything is flushed;
        // bound the wait so a stuck peer cannot keep the task.
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }

    /// Reads frames until the socket ends; returns the close code the room should see.
    async fn read_loop(
        &self,
        stream: &mut futures_util::stream::SplitStream<WebSocket>,
        room: &RoomHandle,
        conn_id: u64,
        out_tx: &mpsc::Sender<Outgoing>,
        alive: &AtomicBool,
        profile: Profile,
    ) -> u16 {
        let fail = |reason: String| {
            let _ = out_tx.try_send(Outgoing::Close(Some(close::WITH_ERROR), reason));
            close::WITH_ERROR
        };
        while let Some(msg) = stream.next().await {
            let bytes = match msg {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Text(t)) => Bytes::from(t.as_bytes().to_vec()),
                Ok(Message::Pong(_)) | Ok(Message::Ping(_)) => {
                    alive.store(true, Ordering::Relaxed);
                    continue;
                }
                Ok(Message::Close(frame)) => return frame.map_or(close::NO_STATUS, |f| f.code),
                Err(e) => {
                    tracing::debug!(session = %self.session_id, "websocket error: {e}");
                    let message_too_big =
                        e.to_string().contains("too long") || e.to_string().contains("too big");
                    return if message_too_big { fail("message too large".into()) } else { close::ABNORMAL };
                }
            };
            alive.store(true, Ordering::Relaxed);
            let input = match frame::parse_client(&bytes, profile) {
                Ok(ClientFrame::JoinAck) => ClientInput::Ack,
                Ok(ClientFrame::Leave) => ClientInput::Leave,
                Ok(ClientFrame::Ping) => {
                    if profile.answers_ping() {
                        let _ = out_tx.try_send(Outgoing::Frame(vec![frame::code::PING].into()));
                    }
                    continue;
                }
                Ok(ClientFrame::Unknown(_)) => continue,
                Ok(ClientFrame::Data { kind, payload }) => {
                    let payload =
                        if payload.is_empty() { Ok(Vec::new()) } else { msgpackr::normalize(payload) };
                    match payload {
                        Ok(p) => ClientInput::Message(kind, p),
                        Err(e) => {
                            tracing::debug!(session = %self.session_id, "malformed payload: {e}");
                            return fail(String::new());
                        }
                    }
                }
                Ok(ClientFrame::Bytes { kind, payload }) => ClientInput::Bytes(kind, payload.to_vec()),
                Err(e) => return fail(e.to_string()),
            };
            if !room.send(RoomMsg::Input { session_id: self.session_id.clone(), conn_id, input }) {
                return close::WITH_ERROR;
            }
        }
        close::ABNORMAL
    }
}

/// Writes queued frames; pings on the heartbeat (started at a random offset so heartbeats of many
/// clients spread over the interval) and drops a client that missed two.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    abort: Arc<Notify>,
    alive: Arc<AtomicBool>,
    heartbeat: Duration,
) {
    let offset = heartbeat.mul_f64(rand::random::<f64>());
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat + offset, heartbeat);
    let mut missed = 0u8;
    loop {
        tokio::select! {
            // The room gave up on this client (its queue filled): close now, without draining.
            () = abort.notified() => {
                let frame = CloseFrame { code: close::WITH_ERROR, reason: "client too slow".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            out = rx.recv() => match out {
                Some(Outgoing::Frame(frame)) => {
                    if sink.send(Message::Binary(frame)).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let frame = code.map(|code| CloseFrame { code, reason: reason.into() });
                    let _ = sink.send(Message::Close(frame)).await;
                    return;
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            _ = ticker.tick() => {
                if alive.swap(false, Ordering::Relaxed) {
                    missed = 0;
                } else {
                    missed += 1;
                    if missed >= 2 {
                        let _ = sink.close().await;
                        return;
                    }
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}
