//! Following a room that moved to another host (a drain) with the client's socket
//! (`odeon_protocol::handover`): when a relay ends with [`End::Moved`], the proxy opens the
//! room's WebSocket on the new process with [`RESUME_HEADER`], and splices the client onto it,
//! held bytes first. The new connection can follow the room again. When the resume fails, the
//! client gets a Close with [`CLOSE_MOVED`], after which the official SDKs reconnect by
//! themselves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use odeon_protocol::handover::{HANDOVER_HEADER, RESUME_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::frames::{close_frame, random_u64};
use crate::http::{Scheme, connect, set_forwarded};
use crate::identity::Identity;
use crate::relay::{self, End, Io, Moved};
use crate::routes::Routes;

/// The close code that tells a client to reconnect (its room moved and the proxy could not
/// follow it).
pub const CLOSE_MOVED: u16 = 4010;
/// Longest wait for the new host's answer to a resume.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, after a Close to the client, for the client to close.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What a relayed room WebSocket needs to follow its room to another host.
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
            // Awaited in place: `first.await` would move it into a second slot of the future.
            let end = (&mut first).await;
            if let Some(moved) = self.moved(end, &process) {
                Box::pin(self.follow(moved, process)).await;
            }
        }
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
    /// connection ends.
    async fn follow(&self, mut moved: Box<Moved>, mut process: String) {
        loop {
            let Moved { process_id, session_id, token, client, held, at } = *moved;
            let Resumed { io: upstream, leftover, connected } = match self
                .resume(&process_id, &session_id, &token)
                .await
            {
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
                held = held.len(),
                "client followed room {} to {process_id} (cutover {cutover:.1?})",
                self.room_id,
            );
            process = process_id;
            let end = relay::relay(client, Bytes::from(held), upstream, leftover, self.idle).await;
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
mod tests {
    use super::*;
    use crate::frames::tests::frame;
    use crate::routes::Route;
    use odeon_protocol::handover::{Control, held_payload};
    use odeon_protocol::registry::PROXY_HEADER;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.expect("bytes in time").unwrap();
        buf
    }

    /// A request head, lowercased: its request line and its headers.
    async fn head(s: &mut TcpStream) -> (String, Vec<String>) {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.extend(read_n(s, 1).await);
        }
        let text = String::from_utf8(head).unwrap();
        let mut lines = text.trim_end().split("\r\n");
        let first = lines.next().unwrap().to_string();
        (first, lines.map(str::to_ascii_lowercase).collect())
    }

    fn moved_to(process_id: &str) -> Vec<u8> {
        Control::Moved { process_id: process_id.into(), session_id: "s1".into(), token: "t/k".into() }
            .frame()
            .unwrap()
    }

    #[tokio::test]
    async fn a_client_follows_its_room_to_the_new_host_and_gets_4010_when_it_cannot() {
        let new_host = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routes = Arc::new(Routes::default());
        routes.insert(Route::new("p2".into(), new_host.local_addr().unwrap().to_string(), 0));
        let identity = Identity::generate().unwrap();
        let follow = Follow {
            routes,
            identity: identity.clone(),
            client_ip: "203.0.113.9".parse().unwrap(),
            scheme: Scheme::Https,
            host: Some(HeaderValue::from_static("game.example")),
            room_id: "room1".into(),
            idle: Duration::from_secs(30),
        };
        let (mut client, client_side) = pair().await;
        let (old_side, mut old_host) = pair().await;
        let fut =
            follow.relay(Io::Tcp(client_side), Bytes::new(), Io::Tcp(old_side), Bytes::new(), "p1".into());
        // An idle client's task is this future: the relay, its Follow and no more.
        assert!(
            std::mem::size_of_val(&fut) <= 704,
            "the follow future is {} bytes",
            std::mem::size_of_val(&fut)
        );
        let task = tokio::spawn(fut);
        // The old host holds the client, then sends its last frame and the marker.
        old_host.write_all(&Control::Hold { nonce: "h".into() }.frame().unwrap()).await.unwrap();
        let ping = read_n(&mut old_host, 6 + held_payload("h").len()).await;
        assert_eq!(ping[..2], [0x89, 0x80 | held_payload("h").len() as u8]);
        let held = frame(0x82, 300, true, 1);
        client.write_all(&held).await.unwrap();
        let (x, y) = (frame(0x82, 50, false, 2), frame(0x81, 5, false, 3));
        old_host.write_all(&[x.clone(), moved_to("p2")].concat()).await.unwrap();
        // The new host gets the resume, answers it with a frame right behind its 101, and then
        // gets the held frame.
        let (mut there, _) = timeout(Duration::from_secs(5), new_host.accept()).await.unwrap().unwrap();
        let (line, headers) = head(&mut there).await;
        assert_eq!(line, "GET /p2/room1?sessionId=s1&reconnectionToken=t%2Fk HTTP/1.1");
        let proof = format!("{PROXY_HEADER}: {}", identity.header().to_str().unwrap()).to_ascii_lowercase();
        for h in [
            "host: game.example",
            "connection: upgrade",
            "upgrade: websocket",
            "sec-websocket-version: 13",
            "x-odeon-resume: 1",
            "x-odeon-handover: 1",
            "x-forwarded-for: 203.0.113.9",
            "x-forwarded-proto: https",
            proof.as_str(),
        ] {
            assert!(headers.iter().any(|l| l == h), "{h} not in {headers:?}");
        }
        let key = headers.iter().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap();
        assert_eq!(key.len(), 24);
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        there.write_all(&[&answer[..], &y].concat()).await.unwrap();
        assert_eq!(read_n(&mut there, held.len()).await, held);
        let mut expected = x.clone();
        expected.extend_from_slice(&y);
        assert_eq!(read_n(&mut client, expected.len()).await, expected);
        // Spliced: both ways.
        let z = frame(0x82, 9, true, 4);
        client.write_all(&z).await.unwrap();
        assert_eq!(read_n(&mut there, z.len()).await, z);
        // The room moves again, to a process the proxy does not know: the client is closed
        // with 4010 right after the new host's last frame.
        let last = frame(0x82, 20, false, 5);
        there.write_all(&[last.clone(), moved_to("p3")].concat()).await.unwrap();
        assert_eq!(read_n(&mut client, last.len()).await, last);
        let close = read_n(&mut client, 2).await;
        assert_eq!(close[0], 0x88);
        let body = read_n(&mut client, usize::from(close[1])).await;
        assert_eq!(body[..2], [0x0f, 0xaa]);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[test]
    fn keys_and_query_values_are_encoded() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff; 16]), "/////////////////////w==");
        assert_eq!(base64(&[0u8; 16]).len(), 24);
        assert_eq!(encode("aZ9-_.~"), "aZ9-_.~");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
