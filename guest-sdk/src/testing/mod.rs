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
//!
//! # Presence and room queries
//!
//! The test host has its own in-memory presence, with the host's semantics on the test clock
//! (TTLs expire as [`TestRoom::advance`] moves it), and answers every operation the room issues
//! **right after the call that issued it**: once a test call's batch is handled, the room's
//! [`Room::on_presence`] and [`Room::on_rooms`] run in one more batch with the answers, in the
//! order the room asked; whatever the room asks while handling them is answered the same way,
//! until it stops asking. So when `room.join("a", ())` returns, the answers to what `on_join`
//! asked have already been handled.
//!
//! Local keys and topics (`&str`, [`Key::local`](crate::KeyExt::local)) live in the room type's
//! namespace and global ones ([`Key::global`](crate::KeyExt::global)) in the shared one, as on a
//! host. A publication on a topic the room subscribed to reaches its
//! [`Room::on_presence_message`], under the topic name the room subscribed with, in the same
//! batch as the publication's answer. Room queries answer with the listings given to
//! [`TestRoom::set_rooms`] (none by default), filtered by name.
//!
//! The rest of the world is played by the test: [`TestRoom::run_presence`] runs an operation as
//! another room would (to seed or read the store, or to publish to the room),
//! [`TestRoom::hold_answers`] keeps answers back until [`TestRoom::release_answers`] or a
//! hand-made [`TestRoom::answer_presence`], and [`TestRoom::presence_ops`] lists what the room
//! asked. After [`TestRoom::dispose`] the room gets no answers and no messages, as on a host.
//!
//! ```
//! use odeon_guest::prelude::*;
//! use odeon_guest::testing::TestRoom;
//!
//! pub struct Visits(Option<i64>);
//!
//! impl Room for Visits {
//!     const NAME: &'static str = "visits";
//!
//!     fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
//!         ctx.presence().incr(Key::global("visits"));
//!         Ok(Visits(None))
//!     }
//!
//!     fn on_presence(&mut self, _ctx: &mut Ctx, _op: OpId, result: Result<PresenceValue, String>) {
//!         self.0 = result.ok().and_then(|value| value.as_int());
//!     }
//! }
//!
//! let room = TestRoom::<Visits>::create(()).unwrap();
//! assert_eq!(room.room().0, Some(1));
//! ```

mod inputs;
mod store;

use std::collections::{BTreeMap, HashMap};

use odeon_protocol::abi::{AuthRequest, Batch, Outbound};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The ABI records tests inspect, re-exported so room crates need no other dependency.
pub use odeon_protocol::abi::{AuthDecision, Effect, Event, Key, Listing, PresenceOp, PresenceValue};

use crate::payload::encode_named;
use crate::presence::IntoKey;
use crate::rt::{self, Runtime};
use crate::{IntoMessageType, MessageType, OpId, Payload, Room, RoomError, Value};
use store::{Caller, Store};

pub use inputs::{INPUT_BUFFER, Response};
/// A request's outcome, as [`TestRoom::request`] reports it.
pub use odeon_protocol::abi::RequestStatus;

/// How many rounds of answers one test call may take before the room counts as stuck, asking
/// again in every answer.
const MAX_ANSWER_ROUNDS: usize = 1_000;

/// A room under test: a [`Runtime`] fed by test calls instead of the host.
pub struct TestRoom<R: Room> {
    runtime: Runtime<R>,
    now_ms: u64,
    /// Effects since the last [`TestRoom::take_effects`], with each broadcast's recipients.
    recorded: Vec<Recorded>,
    state: RoomState,
    timers: BTreeMap<u64, Timer>,
    presence: Store,
    listings: Vec<Listing>,
    /// Presence operations and room queries the room issued that were not answered yet.
    asked: Vec<(u64, Request)>,
    holding: bool,
    /// The room got [`Event::Dispose`]: it gets no answers or messages any more.
    disposed: bool,
    /// The room's inputs, as the host would buffer them (see `inputs`).
    inputs: inputs::Buffers,
}

/// Something the room asked that needs an answer.
enum Request {
    Presence(PresenceOp),
    Rooms(Option<String>),
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
            presence: Store::default(),
            listings: Vec::new(),
            asked: Vec::new(),
            holding: false,
            disposed: false,
            inputs: inputs::Buffers::default(),
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
    ///
    /// Then answers what the room asked, like every other call.
    ///
    /// # Panics
    /// When the room is still asking after a thousand rounds of answers.
    pub fn events(&mut self, events: Vec<Event>) {
        self.deliver(events);
        self.settle();
    }

    /// Runs a presence operation as another room of this type would, and returns its answer.
    ///
    /// Use it to seed or inspect the store, or to publish to the room: a publication on a topic
    /// the room subscribed to reaches its [`Room::on_presence_message`] before this returns.
    /// Subscribing here does not subscribe the room.
    pub fn run_presence(&mut self, op: PresenceOp) -> Result<PresenceValue, String> {
        self.run_presence_as(R::NAME, op)
    }

    /// Like [`TestRoom::run_presence`], for a room of type `room_type`, whose local keys and
    /// topics are not the room's.
    pub fn run_presence_as(&mut self, room_type: &str, op: PresenceOp) -> Result<PresenceValue, String> {
        let caller = Caller { room_type, under_test: false };
        let (answer, message) = self.presence.apply(op, caller, self.now_ms);
        if let Some(message) = message {
            self.events(vec![message]);
        }
        answer
    }

    /// Another room of this type publishes `message` on `topic`; returns whether the room had
    /// subscribed to `topic`, and so received it.
    ///
    /// To deliver a message whatever the subscriptions, send [`Event::PresenceMessage`] with
    /// [`TestRoom::events`].
    pub fn deliver_presence_message(&mut self, topic: impl IntoKey, message: impl Into<String>) -> bool {
        let op = PresenceOp::Publish { topic: topic.into_key(), message: message.into() };
        self.run_presence(op) == Ok(PresenceValue::Int(1))
    }

    /// Whether the room is subscribed to `topic`.
    pub fn is_subscribed(&self, topic: impl IntoKey) -> bool {
        self.presence.is_subscribed(&topic.into_key(), R::NAME)
    }

    /// The listings room queries answer with (filtered by the queried name); none by default.
    /// The room itself is only listed if it is among them.
    pub fn set_rooms(&mut self, listings: Vec<Listing>) {
        self.listings = listings;
    }

    /// Keeps the answers to the room's presence operations and room queries back from now on,
    /// until [`TestRoom::release_answers`]; [`TestRoom::held_ops`] lists them.
    pub fn hold_answers(&mut self) {
        self.holding = true;
    }

    /// Answers every held operation, as of now and in the order the room asked, and goes back to
    /// answering right away.
    pub fn release_answers(&mut self) {
        self.holding = false;
        self.settle();
    }

    /// The operations waiting for an answer while answers are held, in the order the room asked.
    pub fn held_ops(&self) -> Vec<OpId> {
        self.asked.iter().map(|&(id, _)| OpId::new(id)).collect()
    }

    /// Answers presence operation `op` with `result` instead of the store (which it leaves
    /// untouched), e.g. to fail it; a held operation is no longer held.
    pub fn answer_presence(&mut self, op: OpId, result: Result<PresenceValue, String>) {
        self.asked.retain(|&(id, _)| id != op.as_u64());
        self.events(vec![Event::PresenceResult { op_id: op.as_u64(), result }]);
    }

    /// Answers room query `op` with `result` instead of [`TestRoom::set_rooms`]'s listings; a
    /// held query is no longer held.
    pub fn answer_rooms(&mut self, op: OpId, result: Result<Vec<Listing>, String>) {
        self.asked.retain(|&(id, _)| id != op.as_u64());
        self.events(vec![Event::Rooms { op_id: op.as_u64(), result }]);
    }

    /// The presence operations the room issued, in order, since the last
    /// [`TestRoom::take_effects`].
    pub fn presence_ops(&self) -> Vec<PresenceOp> {
        self.recorded
            .iter()
            .filter_map(|r| match &r.effect {
                Effect::Presence { op, .. } => Some(op.clone()),
                _ => None,
            })
            .collect()
    }

    /// The room type names of the room queries the room issued (`None`: every type), in order,
    /// since the last [`TestRoom::take_effects`].
    pub fn room_queries(&self) -> Vec<Option<String>> {
        self.recorded
            .iter()
            .filter_map(|r| match &r.effect {
                Effect::QueryRooms { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
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

    /// Hands one batch to the room and records its effects.
    fn deliver(&mut self, events: Vec<Event>) {
        if events.iter().any(|event| matches!(event, Event::Dispose)) {
            self.disposed = true;
        }
        let effects = self.runtime.handle_batch(Batch { now_ms: self.now_ms, events });
        for effect in effects.effects {
            self.record(effect);
        }
    }

    /// Answers what the room asked, round after round, unless answers are held. A disposed room
    /// gets no answers and loses its subscriptions, though its last operations still change the
    /// store, as on a host.
    fn settle(&mut self) {
        if self.disposed {
            self.answer_asked();
            self.presence.unsubscribe_all();
            return;
        }
        for _ in 0..MAX_ANSWER_ROUNDS {
            if self.asked.is_empty() || self.holding {
                return;
            }
            let answers = self.answer_asked();
            self.deliver(answers);
        }
        panic!("room {:?} keeps asking for presence or rooms in answer to every answer", R::NAME);
    }

    /// Runs everything the room asked, in order: the events that answer it.
    fn answer_asked(&mut self) -> Vec<Event> {
        let caller = Caller { room_type: R::NAME, under_test: true };
        let mut answers = Vec::new();
        for (op_id, request) in std::mem::take(&mut self.asked) {
            match request {
                Request::Presence(op) => {
                    let (result, message) = self.presence.apply(op, caller, self.now_ms);
                    answers.extend(message);
                    answers.push(Event::PresenceResult { op_id, result });
                }
                Request::Rooms(name) => {
                    let listed = |l: &&Listing| name.as_ref().is_none_or(|name| l.name == *name);
                    let result = Ok(self.listings.iter().filter(listed).cloned().collect());
                    answers.push(Event::Rooms { op_id, result });
                }
            }
        }
        answers
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
            Effect::TicksUnhandled => {}
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
            Effect::Presence { op_id, op } => self.asked.push((*op_id, Request::Presence(op.clone()))),
            Effect::QueryRooms { op_id, name } => self.asked.push((*op_id, Request::Rooms(name.clone()))),
            Effect::SetInputs(decl) => self.inputs.declare(decl.clone()),
            Effect::Error { .. }
            | Effect::Respond { .. }
            | Effect::RejectJoin { .. }
            | Effect::CreateFailed { .. }
            | Effect::SetPatchRate(_)
            | Effect::SetAutoDispose(_)
            | Effect::SetSerializer { .. }
            | Effect::StateChanged
            | Effect::FullState(_)
            | Effect::StatePatch(_) => {}
        }
        self.recorded.push(Recorded { effect, recipients });
    }
}

/// A listing of room `room_id` of type `name` on process `test-process`, empty, unlocked,
/// public, without metadata: for [`TestRoom::set_rooms`]; change its fields as needed.
pub fn listing(name: &str, room_id: &str) -> Listing {
    Listing {
        room_id: room_id.to_owned(),
        name: name.to_owned(),
        process_id: "test-process".to_owned(),
        clients: 0,
        max_clients: None,
        locked: false,
        private: false,
        metadata: vec![0x80],
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
    use crate::{Auth, AuthContext, Client, Ctx, KeyExt, Message, MessageTypeExt, PresenceValueExt, TimerId};
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

    /// Runs the presence operations and room queries its clients send, and logs the answers.
    #[derive(Default)]
    struct Kv {
        log: Vec<String>,
        answers: Vec<(OpId, Result<PresenceValue, String>)>,
    }

    impl Room for Kv {
        const NAME: &'static str = "kv";

        fn on_create(_ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
            Ok(Kv::default())
        }

        fn on_message(&mut self, ctx: &mut Ctx, _client: &Client, message: Message) {
            match message.kind.as_str() {
                Some("op") => {
                    let op = ctx.presence().run(message.payload.decode().unwrap());
                    self.log.push(format!("asked {op}"));
                }
                Some("rooms") => {
                    let name: Option<String> = message.payload.decode().unwrap();
                    let op = ctx.query_rooms(name.as_deref());
                    self.log.push(format!("asked {op}"));
                }
                _ => {}
            }
        }

        fn on_presence(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<PresenceValue, String>) {
            self.log.push(format!("{op} {result:?}"));
            self.answers.push((op, result));
        }

        fn on_presence_message(&mut self, _ctx: &mut Ctx, topic: &str, message: &str) {
            self.log.push(format!("{topic}: {message}"));
        }

        fn on_rooms(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
            let ids = result.map(|listings| listings.into_iter().map(|l| l.room_id).collect::<Vec<_>>());
            self.log.push(format!("{op} rooms {ids:?}"));
        }

        fn on_dispose(&mut self, ctx: &mut Ctx) {
            ctx.presence().set("disposed", "yes");
        }
    }

    fn kv() -> TestRoom<Kv> {
        let mut room = TestRoom::<Kv>::create(()).unwrap();
        room.join("a", ()).unwrap();
        room
    }

    /// Has the room run `op`, and returns the answer its `on_presence` got.
    fn ask(room: &mut TestRoom<Kv>, op: PresenceOp) -> Result<PresenceValue, String> {
        let asked = room.room().answers.len();
        room.message("a", "op", &op);
        assert_eq!(room.room().answers.len(), asked + 1, "one answer to {op:?}");
        room.room().answers[asked].1.clone()
    }

    fn log(room: &TestRoom<Kv>) -> Vec<&str> {
        room.room().log.iter().map(String::as_str).collect()
    }

    #[test]
    fn presence_answers_every_operation_like_the_host() {
        use PresenceValue::{Bool, Int, Map, Nil, Str};
        let l = |name: &str| Key::local(name);
        let s = |v: &str| v.to_owned();
        let list = |items: &[&str]| PresenceValue::List(items.iter().map(|i| s(i)).collect());
        let wrong = |key: &str| Err(format!("wrong kind of value at key {key:?}"));
        let cases = [
            (PresenceOp::Get { key: l("s") }, Ok(Nil)),
            (PresenceOp::Set { key: l("s"), value: s("v"), ttl_ms: None }, Ok(Nil)),
            (PresenceOp::Get { key: l("s") }, Ok(Str(s("v")))),
            (PresenceOp::Exists { key: l("s") }, Ok(Bool(true))),
            (PresenceOp::Incr { key: l("s"), by: 1 }, wrong("s")),
            (PresenceOp::Del { key: l("s") }, Ok(Nil)),
            (PresenceOp::Exists { key: l("s") }, Ok(Bool(false))),
            (PresenceOp::Incr { key: l("n"), by: 5 }, Ok(Int(5))),
            (PresenceOp::Incr { key: l("n"), by: -7 }, Ok(Int(-2))),
            (PresenceOp::Get { key: l("n") }, Ok(Str(s("-2")))),
            (PresenceOp::SAdd { key: l("set"), member: s("b") }, Ok(Bool(true))),
            (PresenceOp::SAdd { key: l("set"), member: s("a") }, Ok(Bool(true))),
            (PresenceOp::SAdd { key: l("set"), member: s("a") }, Ok(Bool(false))),
            (PresenceOp::SIsMember { key: l("set"), member: s("a") }, Ok(Bool(true))),
            (PresenceOp::SIsMember { key: l("set"), member: s("z") }, Ok(Bool(false))),
            (PresenceOp::SCard { key: l("set") }, Ok(Int(2))),
            (PresenceOp::SMembers { key: l("set") }, Ok(list(&["a", "b"]))),
            (PresenceOp::SAdd { key: l("other"), member: s("b") }, Ok(Bool(true))),
            (PresenceOp::SInter { keys: vec![l("set"), l("other")] }, Ok(list(&["b"]))),
            (PresenceOp::SInter { keys: vec![l("set"), l("none")] }, Ok(list(&[]))),
            (PresenceOp::SInter { keys: vec![l("set"), l("n")] }, wrong("n")),
            (PresenceOp::SRem { key: l("set"), member: s("a") }, Ok(Bool(true))),
            (PresenceOp::SRem { key: l("set"), member: s("a") }, Ok(Bool(false))),
            (PresenceOp::SMembers { key: l("none") }, Ok(list(&[]))),
            (PresenceOp::SCard { key: l("none") }, Ok(Int(0))),
            (PresenceOp::SIsMember { key: l("n"), member: s("a") }, wrong("n")),
            (PresenceOp::HSet { key: l("h"), field: s("f"), value: s("1") }, Ok(Bool(true))),
            (PresenceOp::HSet { key: l("h"), field: s("f"), value: s("2") }, Ok(Bool(false))),
            (PresenceOp::HIncrBy { key: l("h"), field: s("f"), by: 3 }, Ok(Int(5))),
            (PresenceOp::HIncrBy { key: l("h"), field: s("g"), by: -1 }, Ok(Int(-1))),
            (PresenceOp::HGet { key: l("h"), field: s("f") }, Ok(Str(s("5")))),
            (PresenceOp::HGet { key: l("h"), field: s("x") }, Ok(Nil)),
            (PresenceOp::HGetAll { key: l("h") }, Ok(Map(vec![(s("f"), s("5")), (s("g"), s("-1"))]))),
            (PresenceOp::HLen { key: l("h") }, Ok(Int(2))),
            (PresenceOp::HDel { key: l("h"), field: s("g") }, Ok(Bool(true))),
            (PresenceOp::HDel { key: l("h"), field: s("g") }, Ok(Bool(false))),
            (PresenceOp::HLen { key: l("none") }, Ok(Int(0))),
            (PresenceOp::HGetAll { key: l("none") }, Ok(Map(vec![]))),
            (PresenceOp::HGet { key: l("set"), field: s("f") }, wrong("set")),
            (PresenceOp::HSet { key: l("h"), field: s("t"), value: s("text") }, Ok(Bool(true))),
            (PresenceOp::HIncrBy { key: l("h"), field: s("t"), by: 1 }, wrong("h")),
            (PresenceOp::RPush { key: l("l"), value: s("b") }, Ok(Int(1))),
            (PresenceOp::LPush { key: l("l"), value: s("a") }, Ok(Int(2))),
            (PresenceOp::RPush { key: l("l"), value: s("c") }, Ok(Int(3))),
            (PresenceOp::LLen { key: l("l") }, Ok(Int(3))),
            (PresenceOp::LPop { key: l("l") }, Ok(Str(s("a")))),
            (PresenceOp::RPop { key: l("l") }, Ok(Str(s("c")))),
            (PresenceOp::RPop { key: l("l") }, Ok(Str(s("b")))),
            (PresenceOp::RPop { key: l("l") }, Ok(Nil)),
            (PresenceOp::LPop { key: l("none") }, Ok(Nil)),
            (PresenceOp::LLen { key: l("none") }, Ok(Int(0))),
            (PresenceOp::LPush { key: l("h"), value: s("x") }, wrong("h")),
            (PresenceOp::Expire { key: l("none"), ttl_ms: 10 }, Ok(Bool(false))),
            (PresenceOp::Publish { topic: l("t"), message: s("m") }, Ok(Int(0))),
            (PresenceOp::Subscribe { topic: l("t") }, Ok(Nil)),
            (PresenceOp::Unsubscribe { topic: l("t") }, Ok(Nil)),
        ];
        let mut room = kv();
        for (op, expected) in cases {
            assert_eq!(ask(&mut room, op.clone()), expected, "{op:?}");
        }
        assert_eq!(room.presence_ops().len(), 56);
    }

    #[test]
    fn time_to_live_follows_the_test_clock() {
        let mut room = kv();
        let k = || Key::local("k");
        let get = |room: &mut TestRoom<Kv>| room.run_presence(PresenceOp::Get { key: k() });
        ask(&mut room, PresenceOp::Set { key: k(), value: "v".into(), ttl_ms: Some(100) }).unwrap();
        room.advance(99);
        assert_eq!(get(&mut room), Ok(PresenceValue::Str("v".into())));
        room.advance(1);
        assert_eq!(get(&mut room), Ok(PresenceValue::Nil));
        assert_eq!(
            ask(&mut room, PresenceOp::Expire { key: k(), ttl_ms: 5 }),
            Ok(PresenceValue::Bool(false))
        );

        ask(&mut room, PresenceOp::RPush { key: k(), value: "v".into() }).unwrap();
        assert_eq!(ask(&mut room, PresenceOp::Expire { key: k(), ttl_ms: 5 }), Ok(PresenceValue::Bool(true)));
        room.advance(5);
        assert_eq!(ask(&mut room, PresenceOp::LLen { key: k() }), Ok(PresenceValue::Int(0)));

        // Setting a key again without a time to live keeps it.
        ask(&mut room, PresenceOp::Set { key: k(), value: "1".into(), ttl_ms: Some(5) }).unwrap();
        ask(&mut room, PresenceOp::Set { key: k(), value: "2".into(), ttl_ms: None }).unwrap();
        room.advance(1_000);
        assert_eq!(get(&mut room), Ok(PresenceValue::Str("2".into())));
    }

    #[test]
    fn local_names_are_scoped_to_the_room_type() {
        let mut room = kv();
        let set = |key: Key, value: &str| PresenceOp::Set { key, value: value.into(), ttl_ms: None };
        ask(&mut room, set(Key::local("k"), "local")).unwrap();
        ask(&mut room, set(Key::global("k"), "global")).unwrap();

        let get = |key: Key| PresenceOp::Get { key };
        let str = |v: &str| Ok(PresenceValue::Str(v.into()));
        assert_eq!(room.run_presence(get(Key::local("k"))), str("local"));
        assert_eq!(room.run_presence(get(Key::global("k"))), str("global"));
        assert_eq!(room.run_presence_as("other", get(Key::local("k"))), Ok(PresenceValue::Nil));
        assert_eq!(room.run_presence_as("other", get(Key::global("k"))), str("global"));
        // A global name that looks like the room type's prefix is still another key.
        assert_eq!(room.run_presence(get(Key::global("kv:k"))), Ok(PresenceValue::Nil));
    }

    #[test]
    fn publications_reach_the_room_on_the_topics_it_subscribed_to() {
        let mut room = kv();
        let news = || Key::global("news");
        ask(&mut room, PresenceOp::Subscribe { topic: news() }).unwrap();
        ask(&mut room, PresenceOp::Subscribe { topic: Key::local("chat") }).unwrap();
        assert!(room.is_subscribed(news()) && room.is_subscribed("chat"));
        assert!(!room.is_subscribed("news") && !room.is_subscribed(Key::global("chat")));

        // The room's own publication: the message, then the answer, in one batch.
        let published = ask(&mut room, PresenceOp::Publish { topic: news(), message: "mine".into() });
        assert_eq!(published, Ok(PresenceValue::Int(1)));
        assert_eq!(log(&room)[4..], ["asked op 3", "news: mine", "op 3 Ok(Int(1))"]);

        assert!(room.deliver_presence_message(news(), "from afar"));
        assert!(room.deliver_presence_message("chat", "same type"));
        assert!(!room.deliver_presence_message("news", "local news"));
        let other = |topic: Key| PresenceOp::Publish { topic, message: "other type".into() };
        assert_eq!(room.run_presence_as("other", other(Key::local("chat"))), Ok(PresenceValue::Int(0)));
        assert_eq!(room.run_presence_as("other", other(news())), Ok(PresenceValue::Int(1)));
        // Another room subscribing does not subscribe this one.
        room.run_presence(PresenceOp::Subscribe { topic: Key::local("quiet") }).unwrap();
        assert!(!room.deliver_presence_message("quiet", "unheard"));
        assert_eq!(log(&room)[7..], ["news: from afar", "chat: same type", "news: other type"]);

        ask(&mut room, PresenceOp::Unsubscribe { topic: news() }).unwrap();
        assert!(!room.deliver_presence_message(news(), "gone"));
        assert!(room.is_subscribed("chat"));
        room.dispose();
        assert!(!room.is_subscribed("chat"));
        assert!(!room.deliver_presence_message("chat", "disposed"));
    }

    #[test]
    fn answers_arrive_right_after_the_call_and_may_ask_again() {
        /// Pops its queue until it is empty, one answer at a time.
        #[derive(Default)]
        struct Drain(Vec<String>);

        impl Room for Drain {
            const NAME: &'static str = "drain";

            fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
                for item in ["a", "b", "c"] {
                    ctx.presence().rpush("queue", item);
                }
                ctx.presence().lpop("queue");
                Ok(Drain::default())
            }

            fn on_presence(&mut self, ctx: &mut Ctx, _op: OpId, result: Result<PresenceValue, String>) {
                if let Some(item) = result.unwrap().into_string() {
                    self.0.push(item);
                    ctx.presence().lpop("queue");
                }
            }
        }

        let room = TestRoom::<Drain>::create(()).unwrap();
        assert_eq!(room.room().0, ["a", "b", "c"]);
        // Three pushes, and a pop for each item and the one that found the queue empty.
        assert_eq!(room.presence_ops().len(), 7);
    }

    #[test]
    #[should_panic(expected = "keeps asking")]
    fn a_room_asking_in_every_answer_fails_the_test() {
        struct Loop;

        impl Room for Loop {
            const NAME: &'static str = "loop";

            fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
                ctx.presence().get("k");
                Ok(Loop)
            }

            fn on_presence(&mut self, ctx: &mut Ctx, _op: OpId, _result: Result<PresenceValue, String>) {
                ctx.presence().get("k");
            }
        }

        let _ = TestRoom::<Loop>::create(());
    }

    #[test]
    fn held_answers_wait_for_release_or_a_hand_made_answer() {
        let mut room = kv();
        room.hold_answers();
        room.message("a", "op", &PresenceOp::Incr { key: Key::local("n"), by: 1 });
        room.message("a", "op", &PresenceOp::Incr { key: Key::local("n"), by: 10 });
        room.message("a", "rooms", &());
        let held = room.held_ops();
        assert_eq!(held.iter().map(|op| op.as_u64()).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(room.presence_ops().len(), 2);
        assert_eq!(room.room_queries(), [None]);
        assert!(room.room().answers.is_empty());

        room.answer_presence(held[0], Err("presence unavailable: down".into()));
        assert_eq!(room.room().answers, [(held[0], Err("presence unavailable: down".into()))]);
        assert_eq!(room.held_ops(), held[1..]);

        room.release_answers();
        assert_eq!(room.room().answers[1], (held[1], Ok(PresenceValue::Int(10))));
        assert_eq!(
            log(&room)[3..],
            ["op 1 Err(\"presence unavailable: down\")", "op 2 Ok(Int(10))", "op 3 rooms Ok([])"]
        );
        assert!(room.held_ops().is_empty());
        // Answers come right away again.
        assert_eq!(
            ask(&mut room, PresenceOp::Incr { key: Key::local("n"), by: 1 }),
            Ok(PresenceValue::Int(11))
        );
    }

    #[test]
    fn room_queries_answer_with_the_listings_set() {
        let mut room = kv();
        room.set_rooms(vec![listing("kv", "r1"), listing("other", "r2"), listing("kv", "r3")]);
        room.message("a", "rooms", &"kv");
        room.message("a", "rooms", &());
        room.message("a", "rooms", &"none");
        assert_eq!(room.room_queries(), [Some("kv".into()), None, Some("none".into())]);
        assert_eq!(
            log(&room),
            [
                "asked op 1",
                "op 1 rooms Ok([\"r1\", \"r3\"])",
                "asked op 2",
                "op 2 rooms Ok([\"r1\", \"r2\", \"r3\"])",
                "asked op 3",
                "op 3 rooms Ok([])",
            ]
        );

        room.hold_answers();
        room.message("a", "rooms", &());
        let op = room.held_ops()[0];
        room.answer_rooms(op, Err("driver unavailable".into()));
        assert_eq!(log(&room).last(), Some(&"op 4 rooms Err(\"driver unavailable\")"));
        room.release_answers();
        assert_eq!(log(&room).len(), 8);
    }

    #[test]
    fn a_disposed_room_gets_no_answers_but_its_last_operations_apply() {
        let mut room = kv();
        room.take_effects();
        room.dispose();
        assert_eq!(
            room.presence_ops(),
            [PresenceOp::Set { key: Key::local("disposed"), value: "yes".into(), ttl_ms: None }]
        );
        assert!(room.room().answers.is_empty());
        let get = PresenceOp::Get { key: Key::local("disposed") };
        assert_eq!(room.run_presence(get), Ok(PresenceValue::Str("yes".into())));
    }
}
