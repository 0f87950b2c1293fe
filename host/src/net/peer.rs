//! Calls from another host of the deployment that do not go through Redis: a room moving off a
//! draining host arrives here ([`PEER_IMPORT_PATH`]), so the room's pause holds one round trip
//! between the two hosts and no hop through redis-server.
//!
//! The caller shows this host's peer key ([`PEER_HEADER`], from this host's registry entry);
//! anything else is refused before the body is read.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use odeon_protocol::registry::PEER_HEADER;

use super::{AppState, json_error, read_body};
use crate::cluster::Reply;

/// Longest time a transfer may take to arrive once its headers have.
const TRANSFER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST /odeon/peer/import`: takes over the room whose transfer is the body.
pub(super) async fn import(State(state): State<AppState>, req: Request<Body>) -> Response {
    let shown = req.headers().get(PEER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !state.mm.is_peer_key(shown) {
        return json_error(StatusCode::FORBIDDEN, "not a host of this deployment");
    }
    // A room's transfer holds its guest memory, which is at most the memory cap.
    let limit = state.mm.plugins().limits().memory_bytes + (16 << 20);
    let body = match read_body(req.into_body(), limit, TRANSFER_DEADLINE, "room transfer").await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    // On a task of its own: an import runs to its end even if the caller hangs up (the mover
    // then abandons it, and the copy ends by that), never stopped halfway.
    let mm = state.mm.clone();
    let reply = match tokio::spawn(async move { mm.import_room(&body).await }).await {
        Ok(Ok(())) => Reply::Imported,
        Ok(Err(message)) => Reply::Failed { custom_code: None, message },
        Err(e) => Reply::Failed { custom_code: None, message: format!("the import failed: {e}") },
    };
    Json(reply).into_response()
}
