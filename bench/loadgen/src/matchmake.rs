//! Matchmaking over HTTP (`POST /matchmake/joinOrCreate/{room}`) with a keep-alive client, and
//! the loopback endpoint the whole run talks to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// A server on a loopback address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where TCP connections go.
    pub addr: SocketAddr,
    /// `host:port` as given, for URLs and Host headers.
    pub authority: String,
}

impl Endpoint {
    /// Parses `http://127.0.0.1:2567` (or `ws://`, or a bare `host:port`); only 127.0.0.0/8 and
    /// `localhost` are accepted, because the bench never leaves the machine.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("ws://")).unwrap_or(s);
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("endpoint {s:?}: paths are not supported, give http://HOST:PORT");
        }
        let (host, port) =
            authority.rsplit_once(':').with_context(|| format!("endpoint {s:?} has no port"))?;
        let port: u16 = port.parse().with_context(|| format!("endpoint {s:?}: bad port"))?;
        let ip: IpAddr = if host == "localhost" {
            Ipv4Addr::LOCALHOST.into()
        } else {
            host.parse().with_context(|| format!("endpoint {s:?}: host must be a loopback IP"))?
        };
        if !ip.is_loopback() {
            bail!("endpoint {s:?} is not a loopback address; the bench only talks to 127.0.0.0/8");
        }
        Ok(Endpoint { addr: SocketAddr::new(ip, port), authority: authority.to_owned() })
    }
}

/// The 0.18 flat seat reservation.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Seat's session id.
    pub session_id: String,
    /// Room to connect to.
    pub room_id: String,
    /// Process that owns the room.
    pub process_id: String,
    /// Where the room's process is reachable (`host:port[/path]`), if not the endpoint.
    #[serde(default)]
    pub public_address: Option<String>,
}

impl Reservation {
    /// The room WebSocket URL. The TCP connection always goes to the endpoint's loopback
    /// address; a `publicAddress` only changes the URL's authority and path.
    pub fn ws_url(&self, endpoint: &Endpoint) -> String {
        let base = self.public_address.as_deref().unwrap_or(&endpoint.authority).trim_end_matches('/');
        format!("ws://{base}/{}/{}?sessionId={}", self.process_id, self.room_id, self.session_id)
    }
}

/// A keep-alive HTTP/1.1 client for matchmaking.
#[derive(Clone)]
pub struct Matchmaker {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
}

impl Matchmaker {
    /// A client for `POST http://{endpoint}/matchmake/joinOrCreate/{room}` keeping up to
    /// `pool` idle connections.
    pub fn new(endpoint: &Endpoint, room: &str, pool: usize) -> anyhow::Result<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let uri = format!("http://{}/matchmake/joinOrCreate/{room}", endpoint.addr)
            .parse()
            .context("matchmake URL")?;
        Ok(Matchmaker { client, uri })
    }

    /// Reserves a seat with options `{}`.
    pub async fn join_or_create(&self) -> anyhow::Result<Reservation> {
        let req = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))?;
        let resp = self.client.request(req).await.context("matchmake request")?;
        let status = resp.status();
        let body = resp.into_body().collect().await.context("matchmake response body")?.to_bytes();
        if !status.is_success() {
            bail!("matchmake HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("matchmake response {:?}", String::from_utf8_lossy(&body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_are_accepted() {
        let e = Endpoint::parse("http://127.0.0.1:2600").unwrap();
        assert_eq!(e.addr, "127.0.0.1:2600".parse().unwrap());
        assert_eq!(e.authority, "127.0.0.1:2600");
        assert_eq!(Endpoint::parse("ws://localhost:9/").unwrap().addr.port(), 9);
        assert!(Endpoint::parse("http://10.0.0.1:2600").is_err());
        assert!(Endpoint::parse("http://example.com:80").is_err());
        assert!(Endpoint::parse("http://127.0.0.1").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:1/x").is_err());
    }

    #[test]
    fn reservations_build_the_room_url() {
        let r: Reservation = serde_json::from_str(
            r#"{"name":"arena","sessionId":"UyyWFYn_9","roomId":"VwVq-sJOR","processId":"KlTIMinJo"}"#,
        )
        .unwrap();
        let e = Endpoint::parse("http://127.0.0.1:2600").unwrap();
        assert_eq!(r.ws_url(&e), "ws://127.0.0.1:2600/KlTIMinJo/VwVq-sJOR?sessionId=UyyWFYn_9");
        let r = Reservation { public_address: Some("127.0.0.1:3001/".into()), ..r };
        assert_eq!(r.ws_url(&e), "ws://127.0.0.1:3001/KlTIMinJo/VwVq-sJOR?sessionId=UyyWFYn_9");
    }
}
