//! The admin endpoints (`/odeon/admin/*`) and their bearer token.
//!
//! Nothing of a request is read before its token is checked ([`Authorized`]): an unauthenticated upload is
//! answered from its headers alone and its connection closed, so it never makes the host hold
//! its body. The compare takes the same time whatever the guess (its length included), the
//! `Bearer` scheme is matched case-insensitively (RFC 9110 §11.1), and an address that keeps
//! failing is refused for a while without its guesses being checked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::forwarded::token_eq;
use super::{AppState, json_error, read_body};
use crate::deploy::{DeployError, DeployOptions};

/// Failed attempts one address may make per window before it is refused outright.
const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Every failed attempt is answered this late, so guesses cost time even under the cap.
const FAILURE_DELAY: Duration = Duration::from_millis(250);
/// Addresses tracked at most; past it the expired ones are dropped first.
const MAX_TRACKED: usize = 10_000;
/// How long an authorized upload may take to arrive.
const UPLOAD_DEADLINE: Duration = Duration::from_secs(120);

/// The admin token and who has been failing it.
pub(super) struct AdminAuth {
    token: Option<String>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Why an admin request was refused.
enum Refusal {
    Disabled,
    Throttled,
    Wrong,
}

impl AdminAuth {
    pub(super) fn new(token: Option<String>) -> Self {
        Self { token, failures: Mutex::new(HashMap::new()) }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a request's token; `Err` is the refusal to send, after the failure delay.
    async fn check(&self, ip: IpAddr, headers: &HeaderMap) -> Result<(), Response> {
        let refusal = self.judge(ip, headers, Instant::now());
        let Some(refusal) = refusal else { return Ok(()) };
        let mut res = match refusal {
            Refusal::Disabled => {
                json_error(StatusCode::NOT_FOUND, "admin endpoint disabled (no admin token configured)")
            }
            Refusal::Throttled => {
                tokio::time::sleep(FAILURE_DELAY).await;
                json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed admin attempts from this address")
            }
            Refusal::Wrong => {
                tokio::time::sleep(FAILURE_DELAY).await;
                json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            }
        };
        // The body, if any, is never read: the connection cannot carry another request.
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        Err(res)
    }

    fn judge(&self, ip: IpAddr, headers: &HeaderMap, now: Instant) -> Option<Refusal> {
        let Some(expected) = &self.token else { return Some(Refusal::Disabled) };
        let mut failures = self.failures();
        let entry =
            failures.get(&ip).copied().filter(|(_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        if entry.is_some_and(|(n, _)| n >= MAX_FAILURES) {
            return Some(Refusal::Throttled);
        }
        if bearer(headers).is_some_and(|given| token_eq(given.as_bytes(), expected.as_bytes())) {
            return None;
        }
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
            if failures.len() >= MAX_TRACKED {
                // A flood from more addresses than we track: forget the oldest half at random.
                let forget: Vec<IpAddr> = failures.keys().take(MAX_TRACKED / 2).copied().collect();
                for k in &forget {
                    failures.remove(k);
                }
            }
        }
        let (n, since) = entry.unwrap_or((0, now));
        failures.insert(ip, (n + 1, since));
        Some(Refusal::Wrong)
    }
}

/// An admin request whose token checked out: taking it as a handler argument runs the check
/// (from the head alone) before the handler, and anything else is refused.
pub(super) struct Authorized;

impl axum::extract::FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        state.admin.check(peer, &parts.headers).await.map(|()| Authorized)
    }
}

/// The credentials of an `Authorization: Bearer <token>` header, the scheme in any case.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Why a token is weak, if it is: short, or too few distinct characters to be random.
pub fn weak_token(token: &str) -> Option<String> {
    let distinct = token.chars().collect::<std::collections::HashSet<_>>().len();
    if token.len() < 16 {
        Some(format!("it is {} characters long; use at least 16", token.len()))
    } else if distinct < 8 {
        Some(format!("it has only {distinct} distinct characters; use a random one"))
    } else {
        None
    }
}

/// Every room listing of this deployment, with the plugin version each room runs.
pub(super) async fn list_rooms(State(state): State<AppState>, _: Authorized) -> Response {
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
            Json(json!({ "draining": state.mm.is_draining(), "rooms": rooms })).into_response()
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `POST /odeon/admin/drain`: this host stops taking rooms and seats (the registry says it is
/// draining, so no host or proxy places anything here) and moves its rooms to the other live
/// hosts; what cannot move plays on here until it ends. It exits once it holds no room and
/// relays no socket (or after `--drain-timeout-secs`). The answer says where each room went.
pub(super) async fn drain(State(state): State<AppState>, _: Authorized) -> Response {
    state.mm.drain().await;
    let moves = state.mm.move_rooms().await;
    let moved: Vec<Value> = moves
        .iter()
        .filter_map(|m| {
            let to = m.outcome.as_ref().ok()?;
            Some(json!({
                "roomId": m.room_id,
                "to": to,
                "tookMs": m.took.as_secs_f64() * 1000.0,
                "heldMs": m.held.as_secs_f64() * 1000.0,
                "via": m.via,
            }))
        })
        .collect();
    let stayed: Vec<Value> = moves
        .iter()
        .filter_map(|m| Some(json!({ "roomId": m.room_id, "reason": m.outcome.as_ref().err()? })))
        .collect();
    Json(json!({
        "processId": state.mm.process_id(),
        "draining": true,
        "moved": moved,
        "stayed": stayed,
        "rooms": state.mm.room_count(),
    }))
    .into_response()
}

/// `POST /odeon/admin/plugins`: a new plugin version, validated, activated and kept on disk.
/// The token is checked from the headers before a byte of the body is read.
pub(super) async fn upload_plugin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _: Authorized,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let options = match deploy_options(&query) {
        Ok(options) => options,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let plugins = state.mm.plugins();
    let body = match read_body(body, plugins.limits().max_plugin_bytes, UPLOAD_DEADLINE, "plugin").await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let source = query.get("file").cloned().unwrap_or_else(|| "upload".into());
    let _one_at_a_time = state.uploads.lock().await;
    let live: Vec<String> = state.mm.processes().await.into_iter().map(|p| p.process_id).collect();
    match state.deployer.deploy(body.to_vec(), &source, &peer.ip().to_string(), live, options).await {
        Ok(report) => {
            // Kept on disk too, so this host restarts with it even without the shared store; a
            // canary is not (the directory's version is the one that serves every new room).
            if report.canary.is_none() {
                let file = state.config.plugins_dir.join(format!("{}.wasm", report.name));
                let saved = {
                    let (file, body) = (file.clone(), body.clone());
                    tokio::task::spawn_blocking(move || write_atomically(&file, &body)).await
                };
                let error = match saved {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = error {
                    tracing::warn!("uploaded plugin serves but was not saved to {}: {e}", file.display());
                }
            }
            let version = plugins.get(&report.name).map_or(0, |v| v.version);
            let mut answer = serde_json::to_value(&report).expect("a report serializes");
            answer["version"] = json!(version);
            Json(answer).into_response()
        }
        Err(DeployError::Refused(e)) => {
            tracing::error!(source, "refused uploaded plugin: {e}; any previous version keeps serving");
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e @ DeployError::BadRequest(_)) => json_error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `GET /odeon/admin/plugins`: every room type, its active hash, its stored versions, and what
/// each live host runs.
pub(super) async fn plugins_state(State(state): State<AppState>, _: Authorized) -> Response {
    Json(state.deployer.status(&state.mm).await).into_response()
}

/// `POST /odeon/admin/plugins/{name}/activate` with `{"hash": "…"}`: a stored version becomes the
/// active one on every host (a rollback by hash).
pub(super) async fn activate_plugin(
    State(state): State<AppState>,
    _: Authorized,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let options = match deploy_options(&query) {
        Ok(options) => options,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let body = match read_body(body, 4096, state.config.body_timeout, "activation").await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let Some(hash) =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["hash"].as_str().map(str::to_owned))
    else {
        return json_error(StatusCode::BAD_REQUEST, "expected {\"hash\": \"<sha-256 of a stored version>\"}");
    };
    let _one_at_a_time = state.uploads.lock().await;
    let live: Vec<String> = state.mm.processes().await.into_iter().map(|p| p.process_id).collect();
    match state.deployer.activate_stored(&name, &hash, live, options).await {
        Ok(report) => Json(report).into_response(),
        Err(e @ DeployError::Unknown(_)) => json_error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ (DeployError::NotActivated(_) | DeployError::BadRequest(_))) => {
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// `?migrate=1` and `?canary=P` of an upload or an activation.
fn deploy_options(query: &HashMap<String, String>) -> Result<DeployOptions, String> {
    let migrate = match query.get("migrate").map(String::as_str) {
        None | Some("0" | "false") => false,
        Some("1" | "true" | "") => true,
        Some(other) => return Err(format!("migrate must be 1 or 0, not {other:?}")),
    };
    let canary = match query.get("canary") {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(p @ 1..=99) => Some(p),
            _ => return Err(format!("canary must be a percentage from 1 to 99, not {p:?}")),
        },
    };
    Ok(DeployOptions { migrate, canary, from: None })
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

    fn auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(bearer(&auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&auth("bearer abc")), Some("abc"));
        assert_eq!(bearer(&auth("BEARER  abc ")), Some("abc"));
        assert_eq!(bearer(&auth("Basic abc")), None);
        assert_eq!(bearer(&auth("Bearer")), None);
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_without_a_check() {
        let admin = AdminAuth::new(Some("a-long-enough-token-123".into()));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(matches!(admin.judge(a, &auth("Bearer nope"), now), Some(Refusal::Wrong)));
        }
        // Now even the right token is not checked for a.
        assert!(matches!(
            admin.judge(a, &auth("Bearer a-long-enough-token-123"), now),
            Some(Refusal::Throttled)
        ));
        // Another address is unaffected, and a's window ends.
        assert!(admin.judge(b, &auth("Bearer a-long-enough-token-123"), now).is_none());
        let later = now + FAILURE_WINDOW + Duration::from_secs(1);
        assert!(admin.judge(a, &auth("bearer a-long-enough-token-123"), later).is_none());
    }

    #[test]
    fn weak_tokens_are_named() {
        assert!(weak_token("secret").unwrap().contains("6 characters"));
        assert!(weak_token("aaaaaaaaaaaaaaaaaaaa").unwrap().contains("distinct"));
        assert_eq!(weak_token("3f9a0c27d1e84b6f95a2c7e0"), None);
    }
}
