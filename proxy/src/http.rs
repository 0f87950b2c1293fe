//! What the proxy answers: the health path locally, `/matchmake/…` forwarded to the least loaded
//! host, `/{processId}/{roomId}` WebSockets passed through to exactly that process, and a JSON
//! error with the right status for everything else.
//!
//! The proxy is the edge: `X-Forwarded-For` and `X-Forwarded-Proto` are set from what it saw
//! (a client's own values are replaced, so they cannot be spoofed through it), and the `Host`
//! header is kept.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, future};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use odeon_protocol::handover::{HANDOVER_HEADER, RESUME_HEADER};
use odeon_protocol::registry::PROXY_HEADER;

use crate::handover::Follow;
use crate::identity::Identity;
use crate::relay::Io;
use crate::routes::{Route, Routes};
use crate::server::Connections;

/// A response body: a host's, streamed through, or the proxy's own.
pub type Body = Either<Incoming, Full<Bytes>>;

/// Longest wait for a TCP connection to a host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a host's answer to a forwarded request (matchmaking may wait on locks).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Hosts tried for one matchmaking request when they refuse connections.
const MATCHMAKE_ATTEMPTS: usize = 3;
/// Largest matchmaking request body (the hosts' own limit).
pub const MATCHMAKE_BODY_LIMIT: usize = 100 * 1024;

/// How the client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP and `ws://`.
    Http,
    /// TLS: HTTPS and `wss://`.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What a listener does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Proxies them.
    Proxy(Scheme),
    /// Redirects them to HTTPS on this port (the plain port when TLS is on); health still answers.
    RedirectTo(u16),
}

/// Settings of the request handling.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Path answered locally with the proxy's health.
    pub health_path: String,
    /// A relayed WebSocket with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this long of its headers.
    pub body_timeout: Duration,
}

/// The request handler shared by every connection.
pub struct Proxy {
    routes: Arc<Routes>,
    settings: Settings,
    connections: Arc<Connections>,
    /// What proves to hosts that a request came through this proxy.
    identity: Identity,
    /// Where rooms that moved off a host run now.
    moved: crate::moved::MovedRooms,
}

impl Proxy {
    /// A proxy routing by `routes`, proving itself to hosts as `identity`.
    pub fn new(
        routes: Arc<Routes>,
        settings: Settings,
        connections: Arc<Connections>,
        identity: Identity,
        moved: crate::moved::MovedRooms,
    ) -> Arc<Self> {
        Arc::new(Self { routes, settings, connections, identity, moved })
    }

    /// Answers one request from `peer`.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        mode: Mode,
    ) -> Response<Body> {
        let path = req.uri().path();
        if path == self.settings.health_path {
            return self.health();
        }
        let scheme = match mode {
            Mode::RedirectTo(port) => return redirect(&req, port),
            Mode::Proxy(scheme) => scheme,
        };
        if path.starts_with("/matchmake/") {
            return self.matchmake(req, peer.ip(), scheme).await;
        }
        if let Some(process_id) = room_path(path) {
            let process_id = process_id.to_owned();
            return self.room(req, &process_id, peer.ip(), scheme).await;
        }
        json_error(
            StatusCode::NOT_FOUND,
            "not found: the proxy serves /matchmake/… and /{processId}/{roomId}",
        )
    }

    fn health(&self) -> Response<Body> {
        let body = serde_json::json!({
            "status": "ok",
            "processes": self.routes.ids(),
            "connections": self.connections.current(),
        });
        json_response(StatusCode::OK, &body)
    }

    /// Forwards a matchmaking request to the least loaded host. The body is read whole first
    /// (bounded in size and time), so a client that stalls mid-body never holds a host
    /// connection. A host that refuses the connection is left out for a while and the next one
    /// is tried (nothing was sent yet).
    async fn matchmake(&self, req: Request<Incoming>, client: IpAddr, scheme: Scheme) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let body = match read_body(body, MATCHMAKE_BODY_LIMIT, self.settings.body_timeout).await {
            Ok(body) => body,
            Err(res) => return res,
        };
        let mut tried = Vec::new();
        let sender = loop {
            let Some(route) = self.routes.pick(&tried) else {
                return json_error(StatusCode::SERVICE_UNAVAILABLE, "no game server is available");
            };
            match connect::<Full<Bytes>>(&route).await {
                Ok(sender) => break sender,
                Err(e) => {
                    tracing::warn!(process = %route.process_id, endpoint = %route.endpoint, "host unreachable: {e}");
                    self.routes.suspect(&route);
                    tried.push(route.process_id.clone());
                    if tried.len() >= MATCHMAKE_ATTEMPTS {
                        return json_error(StatusCode::BAD_GATEWAY, "no game server answered");
                    }
                }
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        set_forwarded(&mut parts.headers, client, scheme, &self.identity);
        // The body goes on whole: hyper frames it with its own length.
        parts.headers.remove(header::CONTENT_LENGTH);
        forward(sender, Request::from_parts(parts, Full::new(body))).await
    }

    /// Passes a room WebSocket through to the process that runs the room.
    async fn room(
        &self,
        mut req: Request<Incoming>,
        process_id: &str,
        client: IpAddr,
        scheme: Scheme,
    ) -> Response<Body> {
        // A room whose process is gone or draining may have moved: its clients come back by
        // the path they knew, and go on to where it runs now.
        let known = self.routes.get(process_id);
        let mut route = known.clone();
        if known.as_ref().is_none_or(|r| r.is_draining())
            && let Some(room_id) = req.uri().path().rsplit('/').next().map(str::to_owned)
            && let Some(now) = self.moved.find(&room_id).await
            && let Some(there) = self.routes.get(&now)
        {
            let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("/{now}/{room_id}{query}").parse() {
                *req.uri_mut() = uri;
                route = Some(there);
            }
        }
        let Some(route) = route else {
            return json_error(
                StatusCode::NOT_FOUND,
                &format!("unknown process {process_id}: no such game server is running"),
            );
        };
        if !is_websocket_upgrade(req.headers()) {
            let mut res = json_error(StatusCode::UPGRADE_REQUIRED, "room paths take a WebSocket upgrade");
            res.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return res;
        }
        let sender = match connect::<Full<Bytes>>(&route).await {
            Ok(sender) => sender,
            Err(e) => {
                tracing::warn!(process = %route.process_id, endpoint = %route.endpoint, "host unreachable: {e}");
                self.routes.suspect(&route);
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    &format!("game server {process_id} is unreachable"),
                );
            }
        };
        let client_upgrade = hyper::upgrade::on(&mut req);
        let room_id = req.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
        let (mut parts, _) = req.into_parts();
        set_forwarded(&mut parts.headers, client, scheme, &self.identity);
        ask_for_handover(&mut parts.headers);
        let follow = Follow {
            routes: self.routes.clone(),
            identity: self.identity.clone(),
            client_ip: client,
            scheme,
            // Copied: a parsed header value is a slice of hyper's read buffer, which a clone
            // would keep for the relay's life.
            host: parts.headers.get(header::HOST).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()),
            room_id,
            idle: self.settings.idle_timeout,
        };
        let mut res = match upstream(sender, Request::from_parts(parts, Full::default())).await {
            Ok(res) => res,
            Err(res) => return res,
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The host's own refusal (an expired seat, say) goes back as it is.
            return res.map(Either::Left);
        }
        let host_upgrade = hyper::upgrade::on(&mut res);
        let guard = self.connections.enter_relay();
        let process = route.process_id.clone();
        // Combinators rather than an async block, which would keep its captures (the Follow
        // among them) beside the relay's future for the connection's life.
        let relayed = future::join(client_upgrade, host_upgrade).then(move |upgrades| match upgrades {
            (Ok(client), Ok(host)) => {
                let (client, client_leftover) = Io::from_upgraded(client);
                let (host, host_leftover) = Io::from_upgraded(host);
                future::Either::Left(follow.relay(client, client_leftover, host, host_leftover, process))
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(%process, "upgrade failed: {e}");
                future::Either::Right(future::ready(()))
            }
        });
        // The guard counts the client's connection across every host it follows its room to.
        tokio::spawn(relayed.map(move |()| drop(guard)));
        let (parts, _) = res.into_parts();
        Response::from_parts(parts, Either::Right(Full::default()))
    }
}

/// Opens a connection to a host, ready for one request (or an upgrade).
pub(crate) async fn connect<B>(route: &Route) -> std::io::Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(&route.endpoint))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("host connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Sends a request on a fresh host connection; the proxy's error response when it fails.
async fn upstream<B>(
    mut sender: SendRequest<B>,
    req: Request<B>,
) -> Result<Response<Incoming>, Response<Body>>
where
    B: hyper::body::Body + Send + 'static,
{
    match timeout(RESPONSE_TIMEOUT, sender.send_request(req)).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) => {
            tracing::warn!("host failed the request: {e}");
            Err(json_error(StatusCode::BAD_GATEWAY, "the game server failed to answer"))
        }
        Err(_) => Err(json_error(StatusCode::GATEWAY_TIMEOUT, "the game server did not answer in time")),
    }
}

async fn forward(sender: SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Response<Body> {
    match upstream(sender, req).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Err(res) => res,
    }
}

/// Reads a whole request body of at most `limit` bytes within `deadline`; otherwise the JSON
/// error to answer (408, 413 or 400), which closes the connection (the rest of the body is
/// never read).
async fn read_body<B>(body: B, limit: usize, deadline: Duration) -> Result<Bytes, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let refusal = |status: StatusCode, message: String| {
        let mut res = json_error(status, &message);
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    match timeout(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Err(_) => Err(refusal(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body did not arrive within {} ms", deadline.as_millis()),
        )),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the {limit}-byte limit"),
        )),
        Ok(Err(e)) => Err(refusal(StatusCode::BAD_REQUEST, format!("request body unreadable: {e}"))),
    }
}

/// The process id of a room path `/{processId}/{roomId}` (ids of letters, digits, `-` and `_`).
pub fn room_path(path: &str) -> Option<&str> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (process, room) = (segments.next()?, segments.next()?);
    let is_id = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (segments.next().is_none() && is_id(process) && is_id(room)).then_some(process)
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Replaces the forwarding headers with what the proxy saw, and its proof of identity with its
/// own (whatever a client sent in it is dropped).
pub(crate) fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, scheme: Scheme, identity: &Identity) {
    let ip = HeaderValue::from_str(&client.to_string()).expect("an address is a valid header value");
    headers.insert("x-forwarded-for", ip);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme.as_str()));
    headers.insert(PROXY_HEADER, identity.header().clone());
}

/// Says the proxy can follow the room to another host (`odeon_protocol::handover`), in place of
/// whatever the client said about handovers: a resume is the proxy's own to ask for.
fn ask_for_handover(headers: &mut HeaderMap) {
    headers.remove(RESUME_HEADER);
    headers.insert(HANDOVER_HEADER, HeaderValue::from_static("1"));
}

/// Removes the headers that describe one hop (RFC 9110 §7.6.1), and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<header::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| header::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in
        ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
    {
        headers.remove(name);
    }
}

/// Sends a plain-HTTP request to the same host and path over HTTPS.
fn redirect(req: &Request<Incoming>, tls_port: u16) -> Response<Body> {
    let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return json_error(StatusCode::BAD_REQUEST, "a Host header is required");
    };
    let Ok(authority) = host.parse::<hyper::http::uri::Authority>() else {
        return json_error(StatusCode::BAD_REQUEST, "bad Host header");
    };
    let name = authority.host();
    let port = if tls_port == 443 { String::new() } else { format!(":{tls_port}") };
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Ok(location) = HeaderValue::from_str(&format!("https://{name}{port}{path}")) else {
        return json_error(StatusCode::BAD_REQUEST, "bad Host header");
    };
    let mut res = json_response(
        StatusCode::PERMANENT_REDIRECT,
        &serde_json::json!({ "redirect": location.to_str().unwrap_or("") }),
    );
    res.headers_mut().insert(header::LOCATION, location);
    res
}

/// A JSON error: `{"error": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "error": message }))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_paths_are_two_id_segments() {
        assert_eq!(room_path("/abc_1-2/XYZ"), Some("abc_1-2"));
        for bad in
            ["/", "/abc", "/abc/", "//room", "/a/b/c", "/a b/c", "/matchmake/joinOrCreate/echo", "/a/%2e"]
        {
            // `/matchmake/joinOrCreate/echo` has three segments; the handler checks matchmake first anyway.
            assert_eq!(room_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarding_headers_replace_what_the_client_sent() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.append(PROXY_HEADER, HeaderValue::from_static("forged:guess"));
        let identity = Identity::generate().unwrap();
        set_forwarded(&mut h, "203.0.113.4".parse().unwrap(), Scheme::Http, &identity);
        assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["203.0.113.4"]);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h.get_all(PROXY_HEADER).iter().collect::<Vec<_>>(), [identity.header()]);
    }

    #[test]
    fn room_upgrades_ask_for_handover_and_a_clients_own_handover_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.append(HANDOVER_HEADER, HeaderValue::from_static("0"));
        h.append(HANDOVER_HEADER, HeaderValue::from_static("yes"));
        h.insert(RESUME_HEADER, HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        ask_for_handover(&mut h);
        assert_eq!(h.get_all(HANDOVER_HEADER).iter().collect::<Vec<_>>(), ["1"]);
        assert!(!h.contains_key(RESUME_HEADER));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_with_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    /// A body of `parts`, then one that never comes when `stall`.
    fn body(
        parts: &[&'static [u8]],
        stall: bool,
    ) -> impl hyper::body::Body<Data = Bytes, Error = std::io::Error> {
        use futures_util::{Stream, StreamExt, stream};
        type Frames =
            std::pin::Pin<Box<dyn Stream<Item = std::io::Result<hyper::body::Frame<Bytes>>> + Send>>;
        let frames = stream::iter(
            parts.iter().map(|p| Ok(hyper::body::Frame::data(Bytes::from_static(p)))).collect::<Vec<_>>(),
        );
        let frames: Frames = if stall { Box::pin(frames.chain(stream::pending())) } else { Box::pin(frames) };
        http_body_util::StreamBody::new(frames)
    }

    async fn refusal(res: Response<Body>) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let status = res.status();
        let connection = res.headers().get(header::CONNECTION).cloned();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap(), connection)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_is_read_whole_within_its_size_and_deadline_or_refused() {
        let whole = read_body(body(&[b"{\"mode\":", b"\"x\"}"], false), 64, Duration::from_secs(10)).await;
        assert_eq!(whole.unwrap(), Bytes::from_static(b"{\"mode\":\"x\"}"));
        // Ten bytes and then nothing: 408 at the deadline, and the connection is closed.
        let t0 = tokio::time::Instant::now();
        let stalled = read_body(body(&[b"{\"mode\":\"x"], true), 64, Duration::from_secs(10)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        let (status, json, connection) = refusal(stalled.unwrap_err()).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(json["error"], "request body did not arrive within 10000 ms");
        assert_eq!(connection.unwrap(), "close");
        let (status, json, _) = refusal(
            read_body(body(&[&[b'x'; 40], &[b'x'; 40]], true), 64, Duration::from_secs(10))
                .await
                .unwrap_err(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json["error"], "request body is over the 64-byte limit");
    }

    #[test]
    fn websocket_upgrades_are_recognised_by_their_tokens() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_websocket_upgrade(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!is_websocket_upgrade(&h));
    }
}
