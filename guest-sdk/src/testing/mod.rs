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
//!     type State = ();
//!     type UserData = ();
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
//!     type State = ();
//!     type UserData = ();
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

mod clients;
mod decoder;
mod inputs;
mod inspect;
mod migrate;
mod presence;
mod store;

use std::collections::{BTreeMap, HashMap};

use odeon_protocol::abi::{AuthRequest, Batch, Outbound};
use serde::Serialize;

/// The ABI records tests inspect, re-exported so room crates need no other dependency.
pub use odeon_protocol::abi::{AuthDecision, Effect, Event, Key, Listing, PresenceOp, PresenceValue};

use crate::payload::encode_named;
use crate::rt::{self, Runtime};
use crate::{IntoMessageType, MessageType, Payload, Room, RoomError, Value};
use store::Store;

pub use clients::ROOM_LOCKED;
pub use decoder::DecodeError;
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
    /// The clients' seats and views of the state (see `clients`).
    clients: clients::Clients,
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
            clients: clients::Clients::default(),
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

    /// Joins client `session_id` with `options` and no auth data; `Err` if the room refused it,
    /// or if the host would have: a locked room, or one with as many clients as its
    /// `max_clients` (code [`ROOM_LOCKED`]). The client then gets the whole state.
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
        self.disconnect_client(session_id, false);
        self.event(Event::Leave { session_id: session_id.to_owned(), code });
    }

    /// Client `session_id`'s connection drops with `code` (1006 for an abnormal close).
    pub fn drop_client(&mut self, session_id: &str, code: u16) {
        let start = self.recorded.len();
        self.deliver(vec![Event::Drop { session_id: session_id.to_owned(), code }]);
        let kept = self.recorded[start..].iter().any(
            |r| matches!(&r.effect, Effect::AllowReconnection { session_id: sid, .. } if sid == session_id),
        );
        self.disconnect_client(session_id, kept);
        self.settle();
        self.patch_clients();
    }

    /// Dropped client `session_id` reconnects.
    pub fn reconnect(&mut self, session_id: &str) {
        self.deliver(vec![Event::Reconnect { session_id: session_id.to_owned() }]);
        self.settle();
        self.connect_client(session_id);
        self.patch_clients();
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
        self.patch_clients();
    }

    /// What `pick` takes from each recorded effect, in order.
    fn recorded_where<T>(&self, pick: impl FnMut(&Effect) -> Option<T>) -> Vec<T> {
        self.recorded.iter().map(|r| &r.effect).filter_map(pick).collect()
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

    fn join_event(&mut self, session_id: &str, options: Vec<u8>, auth: Vec<u8>) -> Result<(), RoomError> {
        if let Some(refusal) = self.seat_refusal() {
            return Err(refusal);
        }
        let start = self.recorded.len();
        self.deliver(vec![Event::Join { session_id: session_id.to_owned(), options, auth }]);
        self.settle();
        let refusal = self.recorded[start..].iter().find_map(|r| match &r.effect {
            Effect::RejectJoin { session_id: sid, code, message } if sid == session_id => {
                Some(RoomError::with_code(*code, message.clone()))
            }
            _ => None,
        });
        if refusal.is_none() {
            self.connect_client(session_id);
        }
        self.patch_clients();
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
            Effect::SetSerializer { reflection_v5, .. } => {
                self.clients.reflection = Some(reflection_v5.clone())
            }
            Effect::Error { .. }
            | Effect::Respond { .. }
            | Effect::RejectJoin { .. }
            | Effect::CreateFailed { .. }
            | Effect::SetPatchRate(_)
            | Effect::SetAutoDispose(_)
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
mod tests;
