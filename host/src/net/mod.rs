//! The network edge: matchmaking HTTP, the room WebSocket, health and the admin endpoint.
//!
//! This module and `odeon_protocol` are the only places that know the wire format: `serve` is
//! the accept loop (HTTP/1.1 with upgrades), `ws` the room WebSocket, `wire` a client's outbound
//! side. Frames are decoded and msgpackr payloads normalised here, so rooms see typed inputs only.

mod heartbeat;
mod serve;
pub mod wire;
mod ws;

pub use serve::serve;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use odeon_protocol::profile::Profile;
use serde_json::{Value, json};

use crate::matchmaker::{Matchmaker, SeatReservation};
use wire::WireLimits;

/// Settings of the network edge.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Bearer token of the admin endpoint; `None` disables it.
    pub admin_token: Option<String>,
    /// Where uploaded plugins are stored, so a restart keeps them.
    pub plugins_dir: PathBuf,
    /// Largest client WebSocket message; larger ones close that client with 1009.
    pub max_message_bytes: usize,
    /// Largest payload after expanding msgpackr records; larger ones close that client with 1009.
    pub max_expanded_bytes: usize,
    /// Bounds of each client's queues.
    pub wire: WireLimits,
    /// Interval of WebSocket pings; a client that misses two is dropped.
    pub heartbeat: Duration,
    /// Matchmaking requests per second per client address (bursts of twice that); 0: no limit.
    pub matchmake_rate: u32,
    /// Messages per second one client may send (bursts of twice that); over it the client is
    /// closed with 1008. 0: no limit.
    pub max_messages_per_sec: u32,
    /// Peers whose `X-Forwarded-For` names the client (the proxies in front of this host).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Clone)]
struct AppState {
    mm: Arc<Matchmaker>,
    config: Arc<NetConfig>,
    next_conn: Arc<AtomicU64>,
    heartbeats: Arc<heartbeat::Heartbeats>,
    /// One plugin upload at a time: the version that serves is the one left on disk.
    uploads: Arc<tokio::sync::Mutex<()>>,
    /// Matchmaking requests per client address.
    matchmaking: Arc<crate::limits::PerAddress>,
}

/// Largest matchmaking request body (the client's options), as Colyseus's `express.json()`.
const MATCHMAKE_BODY_LIMIT: usize = 100 * 1024;

/// Builds the HTTP router.
pub fn router(mm: Arc<Matchmaker>, config: NetConfig) -> Router {
    let heartbeats = heartbeat::Heartbeats::start(config.heartbeat);
    let upload_limit = mm.plugins().limits().max_plugin_bytes;
    // Bursts of two seconds' worth.
    let matchmaking = crate::limits::PerAddress::new(config.matchmake_rate * 2, Duration::from_secs(2));
    let state = AppState {
        mm,
        config: Arc::new(config),
        next_conn: Arc::new(AtomicU64::new(1)),
        heartbeats,
        uploads: Arc::default(),
        matchmaking,
    };
    Router::new()
        .route(
            "/matchmake/{method}/{*target}",
            post(matchmake).options(preflight).layer(DefaultBodyLimit::max(MATCHMAKE_BODY_LIMIT)),
        )
        .route("/odeon/health", get(health))
        .route("/odeon/admin/plugins", post(upload_plugin).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/odeon/admin/rooms", get(list_rooms))
        .route("/{process_id}/{room_id}", get(ws::websocket))
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_refusal(&e, MATCHMAKE_BODY_LIMIT, "matchmaking request"),
    };
    let client = client_ip(peer.ip(), &headers, &state.config.trusted_proxies);
    if !state.matchmaking.allow(client) {
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many matchmaking requests from this address");
    }
    let profile = state.mm.profile();
    if state.mm.is_shutting_down() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let options = match odeon_protocol::matchmake::options(&body) {
        Ok(options) => options,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    match state.mm.matchmake(&method, &target, options, token, client.to_string()).await {
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

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last address of
/// `X-Forwarded-For` that is not itself a trusted proxy (the one the outermost trusted proxy saw).
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    // All trusted (a client on the proxies' own network): the first is the client.
    forwarded.iter().rev().find(|ip| !is_trusted(ip)).or(forwarded.first()).copied().unwrap_or(peer)
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
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(refusal) = admin_refusal(&state, &headers) {
        return refusal;
    }
    let plugins = state.mm.plugins();
    let body = match body {
        Ok(body) => body,
        Err(e) => return body_refusal(&e, plugins.limits().max_plugin_bytes, "plugin"),
    };
    let source = query.get("file").cloned().unwrap_or_else(|| "upload".into());
    let _one_at_a_time = state.uploads.lock().await;
    match plugins.load(&format!("admin:{source}"), body.to_vec()).await {
        Ok(version) => {
            let file = state.config.plugins_dir.join(format!("{}.wasm", version.manifest.name));
            let saved = {
                let (file, body) = (file.clone(), body.clone());
                tokio::task::spawn_blocking(move || write_atomically(&file, &body)).await
            };
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!("uploaded plugin serves but was not saved to {}: {e}", file.display())
                }
                Err(e) => {
                    tracing::warn!("uploaded plugin serves but was not saved to {}: {e}", file.display())
                }
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

/// A body that could not be read: too large (413) or broken off, as a JSON error.
fn body_refusal(e: &BytesRejection, limit: usize, what: &str) -> Response {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        json_error(status, &format!("{what} body is over the {limit}-byte limit"))
    } else {
        json_error(status, &format!("{what} body unreadable: {e}"))
    }
}

/// Writes `bytes` to `path` through a hidden temporary file of this process (the plugin watcher
/// ignores hidden files), then renames it into place.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plugin.wasm");
    let tmp = path.with_file_name(format!(".{name}.{}.upload", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spoofed = forwarded(&["6.6.6.6"]);
        // An untrusted peer's header is ignored: it could say anything.
        assert_eq!(client_ip(ip("203.0.113.9"), &spoofed, &trusted), ip("203.0.113.9"));
        // No trusted networks (not behind a proxy): the peer, whatever the header says.
        assert_eq!(client_ip(ip("127.0.0.1"), &spoofed, &[]), ip("127.0.0.1"));
        // From a proxy: the last untrusted entry; what the client prepended is skipped.
        let chain = forwarded(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &chain, &trusted), ip("198.51.100.7"));
        // A client on the proxies' own network.
        assert_eq!(client_ip(ip("127.0.0.1"), &forwarded(&["127.0.0.2"]), &trusted), ip("127.0.0.2"));
        // A proxy that sent no header, or garbage: the peer.
        assert_eq!(client_ip(ip("127.0.0.1"), &forwarded(&["nonsense"]), &trusted), ip("127.0.0.1"));
    }
}
