//! A native test host: run a room's hooks in a plain `#[test]`, with a clock the test controls.
//!
//! ```
//! use odeon_guest::prelude::*;
//! use odeon_guest::testing::TestRoom;
//!
//! pub struct Counter(u32);
//!
//! impl Room for Counter {
//!     const NAME: &'static str = "counter";
//!
//!     fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
//!         ctx.set_interval(1_000);
//!         Ok(Counter(0))
//!     }
//!
//!     fn on_timer(&mut self, ctx: &mut Ctx, _timer: TimerId) {
//!         self.0 += 1;
//!         ctx.broadcast("count", &self.0);
//!     }
//! }
//!
//! let mut room = TestRoom::<Counter>::create(()).unwrap();
//! room.join("alice", ()).unwrap();
//! room.advance(2_500);
//! assert_eq!(room.sent_to::<u32>("alice", "count"), [1, 2]);
//! ```
//!
//! The module compiles on every target so a room's plain `#[cfg(test)]` module builds under
//! `cargo clippy --target wasm32-wasip1 --all-targets`; it is only linked into test binaries.
//!
//! Every call delivers one batch of events, as the host would, and records the room's effects.
//! Message helpers ([`TestRoom::sent_to`] and friends) read the effects recorded since the last
//! [`TestRoom::take_effects`]; state helpers ([`TestRoom::is_locked`] and friends) reflect the
//! whole history. The test host does not act on the room's requests beyond bookkeeping: after a
//! kick, for instance, call [`TestRoom::drop_client`] to play the host's part.

use std::collections::{BTreeMap, HashMap};

use odeon_protocol::abi::{AuthRequest, Batch, Outbound};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The ABI records tests inspect, re-exported so room crates need no other dependency.
pub use odeon_protocol::abi::{AuthDecision, Effect, Event};

use crate::payload::encode_named;
use crate::rt::{self, Runtime};
use crate::{IntoMessageType, MessageType, Payload, Room, RoomError, Value};

/// A room under test: a [`Runtime`] fed by test calls instead of the host.
pub struct TestRoom<R: Room> {
    runtime: Runtime<R>,
    now_ms: u64,
    /// Effects since the last [`TestRoom::take_effects`], with each broadcast's recipients.
    recorded: Vec<Recorded>,
    state: RoomState,
    timers: BTreeMap<u64, Timer>,
}

/// An effect, and for a message, who received it.
struct Recorded {
    effect: Effect,
    recipients: Vec<String>,
}

/// What the room's effects changed, over its whole life.
#[derive(Default)]
struct RoomState {
    locked: bool,
    private: bool,
    metadata: Option<Vec<u8>>,
    max_clients: Option<u32>,
    simulation_interval: Option<u32>,
    reconnection: HashMap<String, u32>,
    closed: HashMap<String, Option<u16>>,
    disconnected: Option<u16>,
}

struct Timer {
    due_ms: u64,
    every_ms: Option<u64>,
}

impl<R: Room> TestRoom<R> {
    /// The room id the test host gives the room.
    pub const ROOM_ID: &'static str = "test-room";
    /// The test clock's start, in milliseconds since the Unix epoch (2023-11-14).
    pub const START_MS: u64 = 1_700_000_000_000;

    /// Creates the room with `options` merged over [`Room::default_options`], as the host does.
    ///
    /// `()` stands for "no options". A failed [`Room::on_create`] returns its error, with the
    /// code the host would use.
    pub fn create(options: impl Serialize) -> Result<Self, RoomError> {
        let options = merge_defaults::<R>(&encode(&options));
        let mut room = Self {
            runtime: Runtime::new(),
            now_ms: Self::START_MS,
            recorded: Vec::new(),
            state: RoomState::default(),
            timers: BTreeMap::new(),
        };
        room.events(vec![Event::Create {
            room_id: Self::ROOM_ID.to_owned(),
            room_name: R::NAME.to_owned(),
            options,
        }]);
        let failure = room.recorded.iter().find_map(|r| match &r.effect {
            Effect::CreateFailed { code, message } => Some(RoomError::with_code(*code, message.clone())),
            _ => None,
        });
        match failure {
            Some(err) => Err(err),
            None => Ok(room),
        }
    }

    /// Runs the static auth hook as matchmaking would, from address `127.0.0.1`.
    pub fn auth(options: impl Serialize, token: Option<&str>) -> AuthDecision {
        rt::auth::<R>(AuthRequest {
            options: encode(&options),
            token: token.map(str::to_owned),
            ip: "127.0.0.1".to_owned(),
        })
    }

    /// Joins client `session_id` with `options` and no auth data; `Err` if the room refused it.
    pub fn join(&mut self, session_id: &str, options: impl Serialize) -> Result<(), RoomError> {
        self.join_event(session_id, encode(&options), Vec::new())
    }

    /// Joins client `session_id` with `options` and `auth` data, as an accepting auth hook gives.
    pub fn join_with_auth(
        &mut self,
        session_id: &str,
        options: impl Serialize,
        auth: impl Serialize,
    ) -> Result<(), RoomError> {
        self.join_event(session_id, encode(&options), encode(&auth))
    }

    /// Client `session_id` leaves for good with `code` (4000 for a consented leave).
    pub fn leave(&mut self, session_id: &str, code: u16) {
        self.event(Event::Leave { session_id: session_id.to_owned(), code });
    }

    /// Client `session_id`'s connection drops with `code` (1006 for an abnormal close).
    pub fn drop_client(&mut self, session_id: &str, code: u16) {
        self.event(Event::Drop { session_id: session_id.to_owned(), code });
    }

    /// Dropped client `session_id` reconnects.
    pub fn reconnect(&mut self, session_id: &str) {
        self.event(Event::Reconnect { session_id: session_id.to_owned() });
    }

    /// Client `session_id` sends a message whose payload is `payload`, encoded as JavaScript would
    /// (structs as maps).
    pub fn message<T: Serialize + ?Sized>(
        &mut self,
        session_id: &str,
        kind: impl IntoMessageType,
        payload: &T,
    ) {
        self.message_raw(session_id, kind, encode(payload));
    }

    /// Client `session_id` sends a message without a payload.
    pub fn message_empty(&mut self, session_id: &str, kind: impl IntoMessageType) {
        self.message_raw(session_id, kind, Vec::new());
    }

    /// Client `session_id` sends a message with exactly these MessagePack bytes.
    pub fn message_raw(&mut self, session_id: &str, kind: impl IntoMessageType, payload: Vec<u8>) {
        let kind = kind.into_message_type();
        self.event(Event::Message { session_id: session_id.to_owned(), kind, payload });
    }

    /// Client `session_id` sends a bytes message.
    pub fn bytes(&mut self, session_id: &str, kind: impl IntoMessageType, bytes: &[u8]) {
        let kind = kind.into_message_type();
        self.event(Event::Bytes { session_id: session_id.to_owned(), kind, payload: bytes.to_vec() });
    }

    /// Delivers one simulation tick; the clock does not move.
    pub fn tick(&mut self, dt_ms: f64) {
        self.event(Event::Tick { dt_ms });
    }

    /// Moves the clock `ms` forward, firing due timers in order, each in its own batch at its due
    /// time.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now_ms + ms;
        while let Some(id) = self.next_due(target) {
            let timer = self.timers.get_mut(&id).expect("next_due returns a live timer");
            self.now_ms = self.now_ms.max(timer.due_ms);
            match timer.every_ms {
                // A zero interval still moves forward, so `advance` always ends.
                Some(every) => timer.due_ms += every.max(1),
                None => {
                    self.timers.remove(&id);
                }
            }
            self.event(Event::Timer { id });
        }
        self.now_ms = target;
    }

    /// Disposes the room.
    pub fn dispose(&mut self) {
        self.event(Event::Dispose);
    }

    /// Delivers `events` as one batch at the current time: for sequences the helpers don't cover.
    pub fn events(&mut self, events: Vec<Event>) {
        let effects = self.runtime.handle_batch(Batch { now_ms: self.now_ms, events });
        for effect in effects.effects {
            self.record(effect);
        }
    }

    /// The room's state.
    pub fn room(&self) -> &R {
        self.runtime.room().expect("TestRoom only exists for a created room")
    }

    /// The test clock, in milliseconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now_ms
    }

    /// The room id the room was created with.
    pub fn room_id(&self) -> &str {
        Self::ROOM_ID
    }

    /// The session ids of the joined clients, in join order.
    pub fn clients(&self) -> Vec<&str> {
        self.runtime.ctx().clients().iter().map(|c| c.session_id()).collect()
    }

    /// Returns the effects recorded since the last call, and forgets them.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        self.recorded.drain(..).map(|r| r.effect).collect()
    }

    /// The payloads of `kind` messages sent or broadcast to `session_id`, decoded.
    ///
    /// # Panics
    /// When a payload does not decode into `T`.
    pub fn sent_to<T: DeserializeOwned>(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<T> {
        let kind = kind.into_message_type();
        self.messages_to(session_id, &kind, false)
            .map(|payload| {
                Payload::new(payload.unwrap_or_default())
                    .decode()
                    .unwrap_or_else(|err| panic!("{kind:?} message to {session_id}: {err}"))
            })
            .collect()
    }

    /// The raw payloads of `kind` messages sent or broadcast to `session_id`; `None` for a
    /// message without one.
    pub fn raw_sent_to(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<Option<Vec<u8>>> {
        self.messages_to(session_id, &kind.into_message_type(), false).collect()
    }

    /// The bytes of `kind` bytes messages sent or broadcast to `session_id`.
    pub fn bytes_sent_to(&self, session_id: &str, kind: impl IntoMessageType) -> Vec<Vec<u8>> {
        self.messages_to(session_id, &kind.into_message_type(), true).map(Option::unwrap_or_default).collect()
    }

    /// The `(code, message)` of every error sent to `session_id`.
    pub fn errors_to(&self, session_id: &str) -> Vec<(u32, String)> {
        self.recorded
            .iter()
            .filter_map(|r| match &r.effect {
                Effect::Error { to, code, message } if to == session_id => Some((*code, message.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether the room is locked.
    pub fn is_locked(&self) -> bool {
        self.state.locked
    }

    /// Whether the room is private.
    pub fn is_private(&self) -> bool {
        self.state.private
    }

    /// The room's listing metadata, decoded; `None` if it never set any.
    ///
    /// # Panics
    /// When the metadata does not decode into `T`.
    pub fn metadata<T: DeserializeOwned>(&self) -> Option<T> {
        let bytes = self.state.metadata.clone()?;
        Some(Payload::new(bytes).decode().unwrap_or_else(|err| panic!("room metadata: {err}")))
    }

    /// The maximum number of clients the room set, if it did.
    pub fn max_clients(&self) -> Option<u32> {
        self.state.max_clients
    }

    /// The simulation interval the room set, if it did.
    pub fn simulation_interval(&self) -> Option<u32> {
        self.state.simulation_interval
    }

    /// The reconnection window, in seconds, the room last granted `session_id`.
    pub fn allowed_reconnection(&self, session_id: &str) -> Option<u32> {
        self.state.reconnection.get(session_id).copied()
    }

    /// Whether the room closed `session_id`'s connection: `Some(None)` for a kick without a code,
    /// `Some(Some(code))` for a leave with one.
    pub fn kicked(&self, session_id: &str) -> Option<Option<u16>> {
        self.state.closed.get(session_id).copied()
    }

    /// The close code the room disconnected everyone with, if it did.
    pub fn disconnected(&self) -> Option<u16> {
        self.state.disconnected
    }

    /// How many timers are pending.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    fn event(&mut self, event: Event) {
        self.events(vec![event]);
    }

    fn join_event(&mut self, session_id: &str, options: Vec<u8>, auth: Vec<u8>) -> Result<(), RoomError> {
        let start = self.recorded.len();
        self.event(Event::Join { session_id: session_id.to_owned(), options, auth });
        let refusal = self.recorded[start..].iter().find_map(|r| match &r.effect {
            Effect::RejectJoin { session_id: sid, code, message } if sid == session_id => {
                Some(RoomError::with_code(*code, message.clone()))
            }
            _ => None,
        });
        refusal.map_or(Ok(()), Err)
    }

    fn next_due(&self, target: u64) -> Option<u64> {
        self.timers
            .iter()
            .filter(|(_, timer)| timer.due_ms <= target)
            .min_by_key(|&(&id, timer)| (timer.due_ms, id))
            .map(|(&id, _)| id)
    }

    fn messages_to<'a>(
        &'a self,
        session_id: &'a str,
        kind: &'a MessageType,
        bytes: bool,
    ) -> impl Iterator<Item = Option<Vec<u8>>> + 'a {
        self.recorded.iter().filter_map(move |r| {
            let message: &Outbound = match &r.effect {
                Effect::Send { message, .. } | Effect::Broadcast { message, .. } => message,
                _ => return None,
            };
            let matches = message.kind == *kind
                && message.bytes == bytes
                && r.recipients.iter().any(|to| to == session_id);
            matches.then(|| message.payload.clone().map(|p| p.into_vec()))
        })
    }

    fn record(&mut self, effect: Effect) {
        let mut recipients = Vec::new();
        let state = &mut self.state;
        match &effect {
            Effect::Send { to, .. } => recipients.push(to.clone()),
            Effect::Broadcast { except, .. } => {
                // The host broadcasts to the clients joined once the batch is handled.
                recipients = self
                    .runtime
                    .ctx()
                    .clients()
                    .iter()
                    .map(|c| c.session_id().to_owned())
                    .filter(|sid| !except.contains(sid))
                    .collect();
            }
            Effect::Lock => state.locked = true,
            Effect::Unlock => state.locked = false,
            Effect::SetMetadata(bytes) => state.metadata = Some(bytes.clone()),
            Effect::SetPrivate(private) => state.private = *private,
            Effect::SetMaxClients(max) => state.max_clients = Some(*max),
            Effect::SetSimulationInterval(ms) => state.simulation_interval = Some(*ms),
            Effect::AllowReconnection { session_id, seconds } => {
                state.reconnection.insert(session_id.clone(), *seconds);
            }
            Effect::Leave { session_id, code } => {
                state.closed.insert(session_id.clone(), *code);
            }
            Effect::Disconnect { code } => state.disconnected = Some(*code),
            Effect::SetTimer { id, delay_ms, repeat } => {
                let timer = Timer { due_ms: self.now_ms + delay_ms, every_ms: repeat.then_some(*delay_ms) };
                self.timers.insert(*id, timer);
            }
            Effect::ClearTimer { id } => {
                self.timers.remove(id);
            }
            Effect::Error { .. }
            | Effect::RejectJoin { .. }
            | Effect::CreateFailed { .. }
            | Effect::SetPatchRate(_)
            | Effect::SetAutoDispose(_) => {}
        }
        self.recorded.push(Recorded { effect, recipients });
    }
}

/// Encodes a test value as a JavaScript client would.
fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    encode_named(value).unwrap_or_else(|err| panic!("cannot encode test payload: {err}"))
}

/// Puts the room's default options under the creator's, as the host does.
fn merge_defaults<R: Room>(options: &[u8]) -> Vec<u8> {
    let defaults = rt::default_options::<R>();
    let options = Payload::new(options.to_vec()).value().expect("encoded options decode");
    let mut entries = match options {
        Value::Nil => Vec::new(),
        Value::Map(entries) => entries,
        other => return rt::encode_value(&other),
    };
    for (key, value) in defaults {
        if !entries.iter().any(|(k, _)| *k == key) {
            entries.push((key, value));
        }
    }
    rt::encode_value(&Value::Map(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Auth, AuthContext, Client, Ctx, Message, MessageTypeExt, TimerId};
    use serde::Deserialize;
    use serde_json::{Value as Json, json};

    /// A clock room: options set timers, messages drive the rest of the API.
    #[derive(Default)]
    struct Clock {
        fired: Vec<(u64, u64)>,
        interval: Option<TimerId>,
    }

    #[derive(Deserialize)]
    struct Options {
        every: u64,
        once: u64,
        #[serde(default)]
        refuse: Option<String>,
    }

    impl Room for Clock {
        const NAME: &'static str = "clock";
        const AUTH: bool = true;

        fn default_options() -> Option<Value> {
            Some(Value::Map(vec![("every".into(), 100.into()), ("once".into(), 250.into())]))
        }

        fn on_auth(auth: &AuthContext) -> Auth {
            match &auth.token {
                Some(token) => Auth::accept_with(token.as_str()),
                None => Auth::deny(),
            }
        }

        fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
            let options: Options = options.decode()?;
            if let Some(reason) = options.refuse {
                return Err(RoomError::new(reason));
            }
            let interval = ctx.set_interval(options.every);
            ctx.set_timeout(options.once);
            ctx.set_metadata(&json!({"every": options.every}));
            Ok(Clock { interval: Some(interval), ..Clock::default() })
        }

        fn on_join(
            &mut self,
            ctx: &mut Ctx,
            client: &Client,
            options: Payload,
            auth: Payload,
        ) -> Result<(), RoomError> {
            if options.get("refuse").is_some() {
                return Err(RoomError::with_code(4100, "full"));
            }
            let auth: Option<String> = auth.decode()?;
            ctx.broadcast("hello", &(client.session_id(), auth));
            Ok(())
        }

        fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
            match message.kind.as_str() {
                Some("stop") => ctx.clear_timer(self.interval.take().expect("running")),
                Some("leave") => ctx.leave(client, 4001),
                Some("private") => ctx.set_private(true),
                Some("end") => ctx.disconnect(4002),
                _ => {}
            }
        }

        fn on_timer(&mut self, ctx: &mut Ctx, timer: TimerId) {
            self.fired.push((timer.as_u64(), ctx.now() - TestRoom::<Clock>::START_MS));
        }
    }

    #[test]
    fn advance_fires_due_timers_at_their_time() {
        let mut room = TestRoom::<Clock>::create(()).unwrap();
        assert_eq!(room.pending_timers(), 2);
        room.advance(99);
        assert!(room.room().fired.is_empty());
        room.advance(251);
        assert_eq!(room.room().fired, [(1, 100), (1, 200), (2, 250), (1, 300)]);
        assert_eq!(room.now(), TestRoom::<Clock>::START_MS + 350);
        assert_eq!(room.pending_timers(), 1);

        room.join("a", ()).unwrap();
        room.message_empty("a", "stop");
        room.advance(1_000);
        assert_eq!(room.room().fired.len(), 4);
        assert_eq!(room.pending_timers(), 0);
    }

    #[test]
    fn create_merges_defaults_under_options_and_reports_failure() {
        let room = TestRoom::<Clock>::create(json!({"every": 7})).unwrap();
        assert_eq!(room.metadata::<Json>(), Some(json!({"every": 7})));

        let err = TestRoom::<Clock>::create(json!({"refuse": "closed"})).err().unwrap();
        assert_eq!(err, RoomError::with_code(523, "closed"));
    }

    #[test]
    fn auth_and_join_with_auth() {
        assert_eq!(
            TestRoom::<Clock>::auth((), None),
            AuthDecision::Reject { message: "onAuth failed".into() }
        );
        let AuthDecision::AcceptWith { auth, session_id: None } = TestRoom::<Clock>::auth((), Some("t0k"))
        else {
            panic!("expected AcceptWith");
        };
        let mut room = TestRoom::<Clock>::create(()).unwrap();
        room.join("a", ()).unwrap();
        room.join_with_auth("b", (), Payload::new(auth).value().unwrap()).unwrap();
        let hello: Vec<(String, Option<String>)> = room.sent_to("a", "hello");
        assert_eq!(hello, [("a".into(), None), ("b".into(), Some("t0k".into()))]);
        assert_eq!(room.sent_to::<Json>("b", "hello"), [json!(["b", "t0k"])]);

        let err = room.join("c", json!({"refuse": true})).unwrap_err();
        assert_eq!(err, RoomError::with_code(4100, "full"));
        assert_eq!(room.clients(), ["a", "b"]);
    }

    #[test]
    fn state_helpers_outlive_take_effects() {
        let mut room = TestRoom::<Clock>::create(()).unwrap();
        room.join("a", ()).unwrap();
        assert_eq!(room.take_effects().len(), 4);
        room.message_empty("a", "leave");
        room.message_empty("a", "private");
        room.message_empty("a", "end");
        assert_eq!(room.take_effects().len(), 3);
        assert!(room.take_effects().is_empty());
        assert_eq!(room.kicked("a"), Some(Some(4001)));
        assert!(room.is_private());
        assert!(!room.is_locked());
        assert_eq!(room.disconnected(), Some(4002));
        assert_eq!(room.max_clients(), None);
        assert_eq!(room.allowed_reconnection("a"), None);
    }
}
