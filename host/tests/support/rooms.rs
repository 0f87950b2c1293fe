//! Rooms under the real engine without a network: the compiled example plugins behind a
//! matchmaker, and clients that are real loopback sockets the room writes WebSocket frames to.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use odeon_host::driver::LocalDriver;
use odeon_host::matchmaker::{Matchmaker, MatchmakerConfig, SeatReservation};
use odeon_host::net::wire::{Wire, WireLimits};
use odeon_host::plugins::{GuestLimits, Plugins};
use odeon_host::presence::LocalPresence;
use odeon_host::rooms::{ClientInput, RoomMsg};
use odeon_protocol::abi::MessageType;
use odeon_protocol::profile::Profile;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A compiled example plugin from `$ODEON_PLUGINS_DIR` (default `target/plugins`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ODEON_PLUGINS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `just plugins` first", path.display()))
}

/// A test build from `$ODEON_PLUGIN_VARIANTS_DIR` (default `target/plugin-variants`), by file
/// name (`echo-v2.wasm`).
pub fn variant_bytes(file: &str) -> Vec<u8> {
    let dir =
        std::env::var_os("ODEON_PLUGIN_VARIANTS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-variants")
        });
    let path = dir.join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `just plugins` first", path.display()))
}

pub fn limits() -> GuestLimits {
    GuestLimits {
        memory_bytes: 32 << 20,
        call_deadline: Duration::from_millis(100),
        max_instances: 32,
        ..GuestLimits::default()
    }
}

pub struct Harness {
    pub mm: Arc<Matchmaker>,
    pub driver: Arc<LocalDriver>,
}

impl Harness {
    /// `echo`, `faults` and `arena` under the 0.17 profile.
    pub async fn new() -> Self {
        Self::with(Profile::V0_17, &["echo", "faults", "arena"]).await
    }

    pub async fn with(profile: Profile, names: &[&str]) -> Self {
        let plugins = Plugins::new(limits()).unwrap();
        for name in names {
            plugins.load(&format!("{name}.wasm"), plugin_bytes(name)).await.unwrap();
        }
        let driver = Arc::new(LocalDriver::default());
        let mm = Matchmaker::new(
            MatchmakerConfig {
                process_id: "proc".into(),
                profile,
                seat_timeout: Duration::from_secs(5),
                public_address: None,
                endpoint: None,
                room_creates_per_min: 0,
            },
            plugins,
            driver.clone(),
            Arc::new(LocalPresence::default()),
            tokio::runtime::Handle::current(),
        );
        Self { mm, driver }
    }

    pub async fn seat(&self, method: &str, target: &str, options: Value) -> SeatReservation {
        let Value::Object(options) = options else { panic!("options must be an object") };
        self.mm.matchmake(method, target, options, None, "127.0.0.1".into()).await.unwrap()
    }

    /// Connects a client over a real loopback socket (the room writes WebSocket frames to it;
    /// there is no connection task, so what the kernel does not take stays queued) and acks the
    /// join.
    pub async fn connect(&self, seat: &SeatReservation) -> TestClient {
        self.connect_with(seat, WireLimits::default()).await
    }

    pub async fn connect_with(&self, seat: &SeatReservation, limits: WireLimits) -> TestClient {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let wire = Arc::new(Wire::new(Arc::new(server), limits));
        let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let room = self.mm.room(&seat.listing.room_id).expect("room is live");
        let (reply, ok) = oneshot::channel();
        let session_id = seat.session_id.clone();
        room.send(RoomMsg::Connect {
            session_id: session_id.clone(),
            reconnection_token: None,
            conn_id: 1,
            wire: wire.clone(),
            skip_handshake: false,
            handover: false,
            resume: false,
            reply,
        });
        ok.await.unwrap().expect("seat accepted");
        let join = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert!(matches!(&join, Message::Binary(f) if f[0] == 10), "JOIN_ROOM first, got {join:?}");
        let session: Arc<str> = session_id.as_str().into();
        let client = TestClient { room, session_id: session, ws, wire };
        client.input(ClientInput::Ack);
        client
    }
}

pub struct TestClient {
    pub room: odeon_host::rooms::RoomHandle,
    pub session_id: Arc<str>,
    pub ws: WebSocketStream<TcpStream>,
    pub wire: Arc<Wire>,
}

/// A client's sending half: hands the room decoded frames, as the connection task would.
pub struct Sender {
    pub room: odeon_host::rooms::RoomHandle,
    pub session_id: Arc<str>,
    /// The server side of the socket, kept open while the client sends.
    pub wire: Arc<Wire>,
}

impl Sender {
    pub fn input(&self, input: ClientInput) {
        self.room.send(RoomMsg::Input { session_id: self.session_id.clone(), conn_id: 1, input, cost: 0 });
    }
}

impl TestClient {
    /// Splits the client so its socket can be read on another task while it sends.
    pub fn into_parts(self) -> (Sender, WebSocketStream<TcpStream>) {
        (Sender { room: self.room, session_id: self.session_id, wire: self.wire }, self.ws)
    }

    /// Hands the room one decoded client frame, as the connection task would.
    pub fn input(&self, input: ClientInput) {
        self.room.send(RoomMsg::Input { session_id: self.session_id.clone(), conn_id: 1, input, cost: 0 });
    }

    pub fn send(&self, kind: &str, payload: Value) {
        let payload = if payload.is_null() { Vec::new() } else { rmp_serde::to_vec_named(&payload).unwrap() };
        self.input(ClientInput::Message(MessageType::Str(kind.into()), payload));
    }

    /// The next message the room wrote to this client.
    pub async fn next(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(5), self.ws.next())
            .await
            .expect("timed out")
            .expect("socket closed")
            .expect("socket error")
    }

    /// Waits for a ROOM_DATA of `kind` and returns its payload as JSON.
    pub async fn expect_message(&mut self, kind: &str) -> Value {
        loop {
            if let Message::Binary(f) = self.next().await
                && f[0] == 13
                && f[1] as usize == 0xa0 + kind.len()
                && &f[2..2 + kind.len()] == kind.as_bytes()
            {
                let rest = &f[2 + kind.len()..];
                return if rest.is_empty() { Value::Null } else { rmp_serde::from_slice(rest).unwrap() };
            }
        }
    }

    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            if let Message::Close(frame) = self.next().await {
                return frame.map(|f| u16::from(f.code));
            }
        }
    }
}
