//! The network edge: matchmaking HTTP, the room WebSocket, health and the admin endpoint.
//!
//! This module and `odeon_protocol` are the only places that know the wire format: `serve` is
//! the accept loop (HTTP/1.1 with upgrades), `ws` the room WebSocket, `wire` a client's outbound
//! side. Frames are decoded and msgpackr payloads normalised here, so rooms see typed inputs only.

mod admin;
mod forwarded;
mod heartbeat;
mod peer;
mod relay;
mod serve;
pub mod wire;
mod ws;

pub use admin::weak_token;
pub(crate) use forwarded::token_eq;
pub use serve::{listen, serve};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
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
    /// Behind `odeon-proxy`: also believe `X-Forwarded-For` from requests carrying a running
    /// proxy's secret from the registry.
    pub trust_registry: bool,
    /// How long a request body may take to arrive once its headers have.
    pub body_timeout: Duration,
    /// Origins matchmaking answers CORS requests from; `None`: any but `null`.
    pub cors_origins: Option<Vec<String>>,
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
    matchmaking: Arc<crate::limits::DeploymentLimit>,
    /// The admin token and the addresses failing it.
    admin: Arc<admin::AdminAuth>,
    /// Who may say where a request came from.
    forwarded: Arc<forwarded::Forwarded>,
    /// Deploys to every host of the deployment.
    deployer: Arc<crate::deploy::Deployer>,
}

/// Largest matchmaking request body (the client's options), as Colyseus's `express.json()`.
const MATCHMAKE_BODY_LIMIT: usize = 100 * 1024;

/// Builds the HTTP router.
pub fn router(mm: Arc<Matchmaker>, deployer: Arc<crate::deploy::Deployer>, config: NetConfig) -> Router {
    let heartbeats = heartbeat::Heartbeats::start(config.heartbeat);
    // Bursts of two seconds' worth.
    let matchmaking = Arc::new(crate::limits::DeploymentLimit::new(
        "matchmake",
        config.matchmake_rate * 2,
        Duration::from_secs(2),
        mm.presence().clone(),
    ));
    let admin = Arc::new(admin::AdminAuth::new(config.admin_token.clone()));
    let registry = config.trust_registry.then(|| mm.presence().clone());
    let forwarded = Arc::new(forwarded::Forwarded::new(config.trusted_proxies.clone(), registry));
    let state = AppState {
        mm,
        admin,
        forwarded,
        deployer,
        config: Arc::new(config),
        next_conn: Arc::new(AtomicU64::new(1)),
        heartbeats,
        uploads: Arc::default(),
        matchmaking,
    };
    Router::new()
        .route(
            "/matchmake/{method}/{*target}",
            post(matchmake)
                .options(preflight)
                .route_layer(middleware::from_fn_with_state(state.clone(), cors)),
        )
        .route("/odeon/health", get(health))
        .route("/odeon/admin/plugins", post(admin::upload_plugin).get(admin::plugins_state))
        .route("/odeon/admin/plugins/{name}/activate", post(admin::activate_plugin))
        .route("/odeon/admin/rooms", get(admin::list_rooms))
        .route("/odeon/admin/drain", post(admin::drain))
        .route(odeon_protocol::registry::PEER_IMPORT_PATH, post(peer::import))
        .route("/{process_id}/{room_id}", get(ws::websocket))
        .fallback(not_found)
        .with_state(state)
}

/// Colyseus's CORS headers, on matchmaking only: the request's Origin echoed (a `*` is refused
/// by browsers when credentials are included, and the official SDKs always include them), when
/// it is allowed: any origin but `null` by default, or those of `--cors-origins`. Matchmaking
/// reads no cookies, so a credentialed cross-origin request gains a page nothing it could not
/// do itself. `Vary: Origin` keeps caches from serving one origin's answer to another.
async fn cors(State(state): State<AppState>, req: Request<axum::body::Body>, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let allowed = origin.filter(|o| match &state.config.cors_origins {
        Some(list) => list.iter().any(|a| a.as_bytes() == o.as_bytes()),
        None => o.as_bytes() != b"null",
    });
    let Some(origin) = allowed else { return res };
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
        "draining": state.mm.is_draining(),
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
    body: Body,
) -> Response {
    // The limit is taken from the headers, before the body is read: a request over it, or one
    // whose body stalls, holds nothing for long.
    let client = state.forwarded.client_ip(peer.ip(), &headers).await;
    if !state.matchmaking.allow(client).await {
        let mut res =
            json_error(StatusCode::TOO_MANY_REQUESTS, "too many matchmaking requests from this address");
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let body =
        match read_body(body, MATCHMAKE_BODY_LIMIT, state.config.body_timeout, "matchmaking request").await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
    let profile = state.mm.profile();
    if state.mm.is_shutting_down() {
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let options = match odeon_protocol::matchmake::options(&body) {
        Ok(options) => options,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let token = admin::bearer(&headers).map(str::to_string);
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

/// Reads a request body of at most `limit` bytes within `deadline`; the refusal is a JSON error
/// (413 too large, 408 too slow, 400 broken off) on a connection that then closes.
pub(super) async fn read_body(
    body: Body,
    limit: usize,
    deadline: Duration,
    what: &str,
) -> Result<Bytes, Response> {
    let refusal = |status: StatusCode, message: String| {
        let mut res = json_error(status, &message);
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Err(_) => Err(refusal(
            StatusCode::REQUEST_TIMEOUT,
            format!("{what} body did not arrive within {} ms", deadline.as_millis()),
        )),
        Ok(Err(e)) => {
            // `to_bytes` reports a body over its limit as a `LengthLimitError` somewhere in the
            // error's sources.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return Err(refusal(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("{what} body is over the {limit}-byte limit"),
                    ));
                }
                source = err.source();
            }
            Err(refusal(StatusCode::BAD_REQUEST, format!("{what} body unreadable: {e}")))
        }
    }
}
