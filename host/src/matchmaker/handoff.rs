//! The direct link a drain sends a frozen room over: an HTTP/1.1 connection to the target
//! host's endpoint, opened and handshaken before the room freezes, carrying one
//! `POST` [`PEER_IMPORT_PATH`] with the room's transfer (MessagePack) and the target's peer key.
//! While the room is frozen only the request and its answer cross, between the two hosts: no
//! hop through redis-server, whose CPU a busy deployment shares with everything else, and no
//! base64 or JSON around the transfer.
//!
//! A target that gives no endpoint or peer key, or that cannot be connected to, gets the move
//! through Redis instead ([`crate::cluster::Cluster::prepare_call`]).

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use odeon_protocol::registry::{PEER_HEADER, PEER_IMPORT_PATH, ProcessInfo};
use tokio::net::TcpStream;

use crate::cluster::{CALL_TIMEOUT, CallError, Reply};

/// Longest wait to connect to the target (before the room freezes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an import the mover gave up on is still listened to.
const LATE_ANSWER: Duration = Duration::from_secs(60);
/// Largest answer read.
const MAX_ANSWER: usize = 64 << 10;

/// A connection to the target host, ready for the import.
pub struct Link {
    sender: SendRequest<Body>,
    process_id: String,
    endpoint: String,
    key: String,
}

impl Link {
    /// Opens the link to `target`, if it takes moves directly and answers.
    pub async fn open(target: &ProcessInfo) -> Option<Link> {
        let (endpoint, key) = (target.endpoint.clone()?, target.peer_key.clone()?);
        let connected = async {
            let stream = TcpStream::connect(&endpoint).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("peer link closed: {e}");
                }
            });
            std::io::Result::Ok(sender)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
            Ok(Ok(sender)) => Some(Link { sender, process_id: target.process_id.clone(), endpoint, key }),
            Ok(Err(e)) => {
                tracing::warn!(to = %target.process_id, %endpoint, "no direct link for a move ({e}); it goes through Redis");
                None
            }
            Err(_) => {
                tracing::warn!(to = %target.process_id, %endpoint, "no direct link for a move (connect timed out); it goes through Redis");
                None
            }
        }
    }

    /// Sends the room's transfer and waits for the target's answer. An error means the room
    /// may or may not run there now: the caller treats it as unanswered.
    pub async fn import(self, transfer: Vec<u8>) -> Result<Reply, CallError> {
        let Link { mut sender, process_id, endpoint, key } = self;
        let req = hyper::Request::builder()
            .method(Method::POST)
            .uri(PEER_IMPORT_PATH)
            .header(hyper::header::HOST, &endpoint)
            .header(hyper::header::CONTENT_TYPE, "application/msgpack")
            .header(PEER_HEADER, &key)
            .body(Body::from(transfer))
            .map_err(|e| CallError::Presence(format!("bad import request: {e}")))?;
        let mut answered = Box::pin(async move {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status.is_client_error() {
                // Refused before it took the room (a wrong key, a transfer over its limit).
                let message =
                    format!("refused the direct import ({status}): {}", String::from_utf8_lossy(&body));
                return Ok(Reply::Failed { custom_code: None, message });
            }
            if status != StatusCode::OK {
                return Err(format!("answered {status}: {}", String::from_utf8_lossy(&body)));
            }
            serde_json::from_slice::<Reply>(&body).map_err(|e| format!("bad answer: {e}"))
        });
        match tokio::time::timeout(CALL_TIMEOUT, &mut answered).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                tracing::warn!(to = %process_id, "the direct import failed: {e}");
                Err(CallError::Timeout(process_id))
            }
            Err(_) => {
                // The connection stays open for a late answer, so the target reads the whole
                // request and ends its copy by the abandonment, rather than having it cut off
                // at some unknown point.
                let to = process_id.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(LATE_ANSWER, answered).await {
                        Ok(Ok(reply)) => tracing::info!(%to, "late answer to an abandoned import: {reply:?}"),
                        Ok(Err(e)) => tracing::debug!(%to, "abandoned import failed: {e}"),
                        Err(_) => tracing::debug!(%to, "no answer to an abandoned import"),
                    }
                });
                Err(CallError::Timeout(process_id))
            }
        }
    }
}
