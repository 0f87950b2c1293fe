//! A room WebSocket that reached the wrong host: relayed to the process that runs the room.
//!
//! Behind a proxy, seat reservations name no address, so a client that matchmade through a host
//! directly opens its socket on that host whatever process the room runs on. Instead of refusing
//! it, the host looks the process up in the registry, opens the same upgrade on it (same path,
//! query and key, marked as relayed so it is never relayed again), and only once that process
//! has answered 101 answers the client; from then on the bytes pass through unchanged, at TCP
//! level, in both directions. Anything else the process answers (a room that is gone, say)
//! goes back to the client with its status.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{AppState, json_error};

/// The header a relayed upgrade carries (the relaying process's id): it is never relayed again.
pub const RELAYED: &str = "x-odeon-relayed";
/// How long the owner may take to connect and answer the upgrade.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest response head accepted from the owner.
const MAX_HEAD: usize = 8 << 10;

/// Relays the upgrade `req` for a room of `process_id` (not this process) to that process, as
/// `target` (path and query) or, if `None`, as the client asked it.
pub(super) async fn relay(
    state: &AppState,
    process_id: &str,
    target: Option<String>,
    mut req: Request,
) -> Response {
    if req.headers().contains_key(RELAYED) {
        return json_error(StatusCode::NOT_FOUND, "no such process here");
    }
    let endpoint =
        state.mm.processes().await.into_iter().find(|p| p.process_id == process_id).and_then(|p| p.endpoint);
    let Some(endpoint) = endpoint else {
        return json_error(StatusCode::NOT_FOUND, &format!("process {process_id} is not live"));
    };
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return json_error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return json_error(StatusCode::BAD_REQUEST, "connection cannot be upgraded");
    };
    let target = target.unwrap_or_else(|| req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string());
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n{RELAYED}: {}\r\n\r\n",
        key.to_str().unwrap_or_default(),
        state.mm.process_id(),
    );
    let upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, open(&endpoint, head)).await;
    let (upstream, answer, early) = match upstream {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => {
            tracing::debug!(process = process_id, %endpoint, "relay to the room's process failed: {e}");
            return json_error(
                StatusCode::BAD_GATEWAY,
                &format!("the room's process {process_id} is unreachable"),
            );
        }
        Err(_) => {
            return json_error(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("the room's process {process_id} did not answer"),
            );
        }
    };
    if answer.status != StatusCode::SWITCHING_PROTOCOLS {
        let mut res = Response::new(Body::from(answer.body));
        *res.status_mut() = answer.status;
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return res;
    }
    let counted = state.mm.relaying();
    tokio::spawn(async move {
        let _counted = counted;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!("relayed websocket upgrade failed: {e}"),
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return tracing::error!("upgraded connection is not a TCP stream");
        };
        let hyper::upgrade::Parts { io, read_buf, .. } = parts;
        let mut client = io.into_inner();
        let mut upstream = upstream;
        let _ = client.set_nodelay(true);
        // What each side sent before the splice goes first.
        if !read_buf.is_empty() && upstream.write_all(&read_buf).await.is_err() {
            return;
        }
        if !early.is_empty() && client.write_all(&early).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Some(accept) = answer.accept {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res.into_response()
}

/// The owner's answer to the upgrade.
struct Answer {
    status: StatusCode,
    accept: Option<HeaderValue>,
    body: Vec<u8>,
}

/// Connects to `endpoint`, sends `head` and reads the answer's head (and, for a refusal, its
/// body). Returns the stream, the answer, and any bytes after a 101's head (frames the room sent
/// at once).
async fn open(endpoint: &str, head: String) -> std::io::Result<(TcpStream, Answer, Vec<u8>)> {
    let mut stream = TcpStream::connect(endpoint).await?;
    stream.set_nodelay(true)?;
    stream.write_all(head.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("response head too large"));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let header_value = |name: &str| {
        text.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let accept = header_value("sec-websocket-accept").and_then(|v| HeaderValue::from_str(&v).ok());
    let mut rest = buf[end..].to_vec();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((stream, Answer { status, accept, body: Vec::new() }, rest));
    }
    // A refusal: its JSON body, up to what it says (and at most a few KiB).
    let length = header_value("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0).min(4096);
    while rest.len() < length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    rest.truncate(length);
    Ok((stream, Answer { status, accept, body: rest }, Vec::new()))
}
