//! Following a room that moved to another host (a drain) with the client's socket
//! (`odeon_protocol::handover`): when a relay ends with [`End::Moved`], the proxy opens the
//! room's WebSocket on the new process with [`RESUME_HEADER`], and splices the client onto it,
//! held bytes first. The new connection can follow the room again. When the resume fails, the
//! client gets a Close with [`CLOSE_MOVED`], after which the official SDKs reconnect by
//! themselves.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use odeon_protocol::handover::{Destination, HANDOVER_HEADER, RESUME_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::frames::{close_frame, random_u64};
use crate::http::{Scheme, connect, set_forwarded};
use crate::identity::Identity;
use crate::relay::{self, End, Heading, Io, Moved, Relaying};
use crate::routes::Routes;

/// The close code that tells a client to reconnect (its room moved and the proxy could not
/// follow it).
pub const CLOSE_MOVED: u16 = 4010;
/// Longest wait for the new host's answer to a resume.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, after a Close to the client, for the client to close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What a relayed room WebSocket needs to follow its room to another host.
#[derive(Clone)]
pub struct Follow {
    /// The live processes.
    pub routes: Arc<Routes>,
    /// The proxy's proof of identity toward hosts.
    pub identity: Identity,
    /// The client's address, as the proxy saw it.
    pub client_ip: IpAddr,
    /// How the client reached the proxy.
    pub scheme: Scheme,
    /// The client's `Host` header.
    pub host: Option<HeaderValue>,
    /// The room.
    pub room_id: String,
    /// The relays' idle timeout.
    pub idle: Duration,
}

/// A resume opened while the room is held, before it has moved: the new host parks it until
/// the room arrives. Dropped (the task stopped, its socket closed) when the room goes elsewhere
/// or nowhere.
struct Preopened {
    to: Destination,
    task: JoinHandle<Result<Resumed, String>>,
}

impl Drop for Preopened {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Follow {
    /// Relays between `client` and `upstream` (a host running the room, `process`), and on to
    /// each process the room moves to, until the client's connection ends.
    ///
    /// A plain function around an async block, so the future holds the first relay (which has
    /// the sockets) and not a second copy of its arguments; a move's resume and the relays after
    /// it are boxed. An idle client costs the proxy this future.
    pub fn relay(
        self,
        client: Io,
        client_leftover: Bytes,
        upstream: Io,
        upstream_leftover: Bytes,
        process: String,
    ) -> impl Future<Output = ()> + Send {
        let mut first = relay::relay(client, client_leftover, upstream, upstream_leftover, self.idle);
        async move {
            let mut preopened = None;
            // Run in place: awaiting `first` by value would move it into a second slot of the
            // future.
            let end = self.run(&mut first, &mut preopened).await;
            if let Some(moved) = self.moved(end, &process) {
                Box::pin(self.follow(moved, process, preopened)).await;
            }
        }
    }

    /// Runs a relay to its end, opening the client's resume on the room's next host as soon as
    /// a hold names it (and dropping it when the hold ends without a move).
    ///
    /// A plain function returning the poll loop itself: an async fn would hold its arguments
    /// and then the loop's copy of them, in every idle client's future.
    fn run<'a>(
        &'a self,
        relaying: &'a mut Relaying,
        preopened: &'a mut Option<Box<Preopened>>,
    ) -> impl Future<Output = std::io::Result<End>> + Send + 'a {
        std::future::poll_fn(move |cx| {
            let end = Pin::new(&mut *relaying).poll(cx);
            match relaying.heading() {
                Some(Heading::To(to)) => *preopened = Some(Box::new(self.preopen(to))),
                Some(Heading::Nowhere) => *preopened = None,
                None => {}
            }
            end
        })
    }

    /// Starts opening the client's resume at `to` on a task of its own.
    fn preopen(&self, to: Destination) -> Preopened {
        let follow = self.clone();
        let (process_id, session_id, token) =
            (to.process_id.clone(), to.session_id.clone(), to.token.clone());
        let task = tokio::spawn(async move { follow.resume(&process_id, &session_id, &token).await });
        Preopened { to, task }
    }

    /// The room a relay's end says moved, if it does.
    fn moved(&self, end: std::io::Result<End>, process: &str) -> Option<Box<Moved>> {
        match end {
            Ok(End::Moved(moved)) => Some(moved),
            Ok(End::Idle) => {
                tracing::debug!(%process, "idle websocket closed");
                None
            }
            Ok(End::Closed) => None,
            Err(e) => {
                tracing::debug!(%process, "websocket relay ended: {e}");
                None
            }
        }
    }

    /// Follows the room from `process` to where it `moved`, and on, until the client's
    /// connection ends; `preopened` is the resume opened during the hold, if any.
    async fn follow(
        &self,
        mut moved: Box<Moved>,
        mut process: String,
        mut preopened: Option<Box<Preopened>>,
    ) {
        loop {
            let Moved { process_id, session_id, token, client, held, at } = *moved;
            let early = preopened.take().filter(|p| p.to.is(&process_id, &session_id, &token));
            let was_early = early.is_some();
            let resumed = match early {
                Some(mut early) => match (&mut early.task).await {
                    Ok(Ok(resumed)) => Ok(resumed),
                    Ok(Err(why)) => {
                        tracing::debug!("resume opened during the hold failed ({why}): opening another");
                        self.resume(&process_id, &session_id, &token).await
                    }
                    Err(e) => Err(format!("resume task failed: {e}")),
                },
                None => self.resume(&process_id, &session_id, &token).await,
            };
            let Resumed { io: upstream, leftover, connected } = match resumed {
                Ok(resumed) => resumed,
                Err(why) => {
                    tracing::warn!(
                        from = %process,
                        "client of room {} not resumed on {process_id} ({why}): closed with {CLOSE_MOVED}",
                        self.room_id,
                    );
                    return close_moved(client).await;
                }
            };
            let cutover = at.elapsed();
            tracing::info!(
                from = %process,
                cutover_ms = cutover.as_secs_f64() * 1000.0,
                connect_ms = connected.as_secs_f64() * 1000.0,
                preopened = was_early,
                held = held.len(),
                "client followed room {} to {process_id} (cutover {cutover:.1?})",
                self.room_id,
            );
            process = process_id;
            let mut next = relay::relay(client, Bytes::from(held), upstream, leftover, self.idle);
            let end = self.run(&mut next, &mut preopened).await;
            match self.moved(end, &process) {
                Some(next) => moved = next,
                None => return,
            }
        }
    }

    /// Opens the room's WebSocket on `process_id` for the session: the socket and what the host
    /// sent past its 101.
    async fn resume(&self, process_id: &str, session_id: &str, token: &str) -> Result<Resumed, String> {
        let route = self.routes.get(process_id).ok_or("no such process is running")?;
        let started = Instant::now();
        let mut sender = connect::<Full<Bytes>>(&route).await.map_err(|e| format!("unreachable: {e}"))?;
        let connected = started.elapsed();
        let req = self.request(&route.endpoint, process_id, session_id, token)?;
        let mut res = match timeout(RESUME_TIMEOUT, sender.send_request(req)).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return Err(format!("failed to answer: {e}")),
            Err(_) => return Err("did not answer in time".into()),
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(format!("answered {}", res.status()));
        }
        match timeout(RESUME_TIMEOUT, hyper::upgrade::on(&mut res)).await {
            Ok(Ok(upgraded)) => {
                let (io, leftover) = Io::from_upgraded(upgraded);
                Ok(Resumed { io, leftover, connected })
            }
            Ok(Err(e)) => Err(format!("upgrade failed: {e}")),
            Err(_) => Err("upgrade timed out".into()),
        }
    }

    /// The resume request: the room's WebSocket path with the session's reconnection token, as
    /// a proxy that can follow the room again.
    fn request(
        &self,
        endpoint: &str,
        process_id: &str,
        session_id: &str,
        token: &str,
    ) -> Result<Request<Full<Bytes>>, String> {
        let uri = format!(
            "/{}/{}?sessionId={}&reconnectionToken={}",
            encode(process_id),
            encode(&self.room_id),
            encode(session_id),
            encode(token)
        );
        let host = match &self.host {
            Some(host) => host.clone(),
            None => HeaderValue::from_str(endpoint).map_err(|e| format!("bad endpoint: {e}"))?,
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&random_u64().to_le_bytes());
        key[8..].copy_from_slice(&random_u64().to_le_bytes());
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::HOST, host)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, base64(&key))
            .header(RESUME_HEADER, "1")
            .header(HANDOVER_HEADER, "1")
            .body(Full::default())
            .map_err(|e| format!("bad request: {e}"))?;
        set_forwarded(req.headers_mut(), self.client_ip, self.scheme, &self.identity);
        Ok(req)
    }
}

/// A session opened on a room's new host.
struct Resumed {
    /// The socket.
    io: Io,
    /// What the host sent past its 101.
    leftover: Bytes,
    /// How long the TCP connection took (of the cutover: the rest is the host's answer).
    connected: Duration,
}

/// Tells the client its room moved and it must reconnect: a Close with [`CLOSE_MOVED`], then
/// a short wait for the client to close (so the Close is not lost to a reset).
async fn close_moved(mut client: Io) {
    let closed = async {
        client.write_all(&close_frame(CLOSE_MOVED, "room moved")).await?;
        client.flush().await?;
        client.shutdown().await?;
        let mut sink = [0u8; 1024];
        while client.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = timeout(CLOSE_LINGER, closed).await;
}

/// `s` percent-encoded for a path segment or a query value (all but the unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
