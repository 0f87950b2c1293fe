//! The runtime behind [`export_room!`](crate::export_room): turns ABI records into hook calls.
//!
//! [`Runtime`] owns the room and its [`Ctx`] and handles a [`Batch`] of events; [`manifest`] and
//! [`auth`] serve the two static exports. Everything here is plain safe Rust that runs natively as
//! well; only `export` (on `wasm32`) deals with raw pointers into linear memory.

use odeon_protocol::abi::{self, AuthDecision, AuthRequest, Batch, Effect, Effects, Event, Manifest};

use crate::ctx::TimerId;
use crate::presence::OpKind;
use crate::{Auth, AuthContext, Client, Ctx, Message, Payload, Room, Value};

/// The code of [`Effect::CreateFailed`] when [`Room::on_create`] gives none.
pub const CREATE_FAILED: u32 = 523;
/// The code of [`Effect::RejectJoin`] when [`Room::on_join`] gives none.
pub const JOIN_FAILED: u32 = 526;

/// A room instance and its context, fed one [`Batch`] at a time.
#[derive(Debug)]
pub struct Runtime<R> {
    room: Option<R>,
    phase: Phase,
    ctx: Ctx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for [`Event::Create`].
    Pending,
    Live,
    /// `on_create` failed or the first batch was unreadable; later events are ignored.
    Failed,
    Disposed,
}

impl<R: Room> Default for Runtime<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Room> Runtime<R> {
    /// A runtime waiting for [`Event::Create`].
    pub fn new() -> Self {
        Self { room: None, phase: Phase::Pending, ctx: Ctx::default() }
    }

    /// The room, once created.
    pub fn room(&self) -> Option<&R> {
        self.room.as_ref()
    }

    /// The room's context, as its hooks see it.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Runs the hooks for `batch`'s events, in order, and returns what the room asked for.
    pub fn handle_batch(&mut self, batch: Batch) -> Effects {
        self.ctx.set_now(batch.now_ms);
        for event in batch.events {
            self.handle(event);
        }
        // Tell the host there is something to patch; it asks at the room's next patch tick.
        if self.phase == Phase::Live
            && let Some(state) = self.room.as_mut().and_then(|r| r.state())
            && state.has_changes()
        {
            self.ctx.push_effect(Effect::StateChanged);
        }
        Effects { effects: self.ctx.take_effects() }
    }

    /// [`Runtime::handle_batch`] on an encoded [`Batch`], returning encoded [`Effects`].
    ///
    /// Input that does not decode is logged; it fails a room still waiting for creation and is
    /// otherwise dropped.
    pub fn handle_encoded(&mut self, input: &[u8]) -> Vec<u8> {
        let effects = match abi::decode::<Batch>(input) {
            Ok(batch) => self.handle_batch(batch),
            Err(err) => {
                crate::log::error(format_args!("malformed event batch ({} bytes): {err}", input.len()));
                self.malformed_batch()
            }
        };
        abi::encode(&effects)
    }

    fn malformed_batch(&mut self) -> Effects {
        let mut effects = Effects::default();
        if self.phase == Phase::Pending {
            self.phase = Phase::Failed;
            let message = "malformed event batch".to_owned();
            effects.effects.push(Effect::CreateFailed { code: CREATE_FAILED, message });
        }
        effects
    }

    fn handle(&mut self, event: Event) {
        match (self.phase, event) {
            (Phase::Pending, Event::Create { room_id, room_name, options }) => {
                self.create(room_id, room_name, Payload::new(options));
            }
            (Phase::Live, event) => {
                let room = self.room.as_mut().expect("a live runtime has a room");
                if matches!(event, Event::Dispose) {
                    self.phase = Phase::Disposed;
                }
                dispatch(room, &mut self.ctx, event);
            }
            (Phase::Failed, _) => {}
            (phase, event) => {
                crate::log::warn(format_args!("ignoring {} while the room is {phase:?}", event_name(&event)));
            }
        }
    }

    fn create(&mut self, room_id: String, room_name: String, options: Payload) {
        self.ctx.set_room(room_id, room_name);
        let start = self.ctx.effect_count();
        match R::on_create(&mut self.ctx, options) {
            Ok(mut room) => {
                if let Some(state) = room.state() {
                    let (reflection_v4, reflection_v5) = (state.reflection_v4(), state.reflection_v5());
                    self.ctx.push_effect(Effect::SetSerializer { reflection_v4, reflection_v5 });
                }
                if let Some(inputs) = R::inputs() {
                    self.ctx.push_effect(Effect::SetInputs(inputs.into_decl()));
                }
                self.room = Some(room);
                self.phase = Phase::Live;
            }
            Err(err) => {
                // The room never existed, so nothing it asked for during creation applies.
                self.ctx.truncate_effects(start);
                self.phase = Phase::Failed;
                let code = err.code.unwrap_or(CREATE_FAILED);
                self.ctx.push_effect(Effect::CreateFailed { code, message: err.message });
            }
        }
    }
}

/// Calls the hook for one event on a live room, keeping [`Ctx::clients`] in step.
fn dispatch<R: Room>(room: &mut R, ctx: &mut Ctx, event: Event) {
    match event {
        Event::Create { .. } => crate::log::warn("ignoring a second Create event"),
        Event::Join { session_id, options, auth } => {
            let client = Client::new(session_id);
            ctx.add_client(&client);
            if let Err(err) = room.on_join(ctx, &client, Payload::new(options), Payload::new(auth)) {
                ctx.remove_client(&client);
                ctx.push_effect(Effect::RejectJoin {
                    session_id: client.session_id().to_owned(),
                    code: err.code.unwrap_or(JOIN_FAILED),
                    message: err.message,
                });
            }
        }
        Event::Leave { session_id, code } => {
            let client = Client::new(session_id);
            ctx.remove_client(&client);
            room.on_leave(ctx, &client, code);
        }
        Event::Drop { session_id, code } => {
            let client = Client::new(session_id);
            ctx.remove_client(&client);
            let start = ctx.effect_count();
            room.on_drop(ctx, &client, code);
            let kept_seat = ctx.effects_since(start).iter().any(|effect| {
                matches!(effect, Effect::AllowReconnection { session_id, .. } if session_id == client.session_id())
            });
            if !kept_seat {
                room.on_leave(ctx, &client, code);
            }
        }
        Event::Reconnect { session_id } => {
            let client = Client::new(session_id);
            ctx.add_client(&client);
            room.on_reconnect(ctx, &client);
        }
        Event::Message { session_id, kind, payload } => {
            let message = Message { kind, payload: Payload::new(payload) };
            room.on_message(ctx, &Client::new(session_id), message);
        }
        Event::Bytes { session_id, kind, payload } => {
            room.on_bytes(ctx, &Client::new(session_id), kind, &payload);
        }
        Event::Tick { dt_ms } => room.on_tick(ctx, dt_ms),
        Event::Request { session_id, request_id, kind, payload } => {
            let message = Message { kind, payload: Payload::new(payload) };
            crate::request::answer(room, ctx, session_id, request_id, message);
        }
        Event::Step { dt_ms, inputs } => room.on_step(ctx, crate::request::Step::new(dt_ms, inputs)),
        Event::Timer { id } => {
            if ctx.fire_timer(id) {
                room.on_timer(ctx, TimerId::new(id));
            } else {
                crate::log::debug(format_args!("ignoring timer {id}: it was cleared"));
            }
        }
        Event::Dispose => room.on_dispose(ctx),
        Event::PresenceResult { op_id, result } => match ctx.answer(op_id, OpKind::Presence) {
            Some(op) => room.on_presence(ctx, op, result),
            None => crate::log::warn(format_args!("ignoring an answer to unknown presence op {op_id}")),
        },
        Event::PresenceMessage { topic, message } => room.on_presence_message(ctx, &topic, &message),
        Event::Rooms { op_id, result } => match ctx.answer(op_id, OpKind::Rooms) {
            Some(op) => room.on_rooms(ctx, op, result),
            None => crate::log::warn(format_args!("ignoring an answer to unknown room query {op_id}")),
        },
        // Rooms without schema state never announce a serializer, so the host never asks.
        Event::FullState => match room.state() {
            Some(state) => {
                let bytes = state.full_state();
                ctx.push_effect(Effect::FullState(bytes));
            }
            None => crate::log::warn("ignoring FullState: this room has no synchronised state"),
        },
        Event::Patch => {
            if let Some(bytes) = room.state().and_then(|s| s.patch()) {
                ctx.push_effect(Effect::StatePatch(bytes));
            }
        }
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Create { .. } => "Create",
        Event::Join { .. } => "Join",
        Event::Leave { .. } => "Leave",
        Event::Drop { .. } => "Drop",
        Event::Reconnect { .. } => "Reconnect",
        Event::Message { .. } => "Message",
        Event::Bytes { .. } => "Bytes",
        Event::Tick { .. } => "Tick",
        Event::Timer { .. } => "Timer",
        Event::Dispose => "Dispose",
        Event::PresenceResult { .. } => "PresenceResult",
        Event::PresenceMessage { .. } => "PresenceMessage",
        Event::Rooms { .. } => "Rooms",
        Event::Request { .. } => "Request",
        Event::Step { .. } => "Step",
        Event::FullState => "FullState",
        Event::Patch => "Patch",
    }
}

/// What `R` declares about itself.
///
/// # Panics
/// When [`Room::default_options`] is not a map: a room bug, reported when the plugin loads.
pub fn manifest<R: Room>() -> Manifest {
    Manifest {
        name: R::NAME.to_owned(),
        filter_by: R::FILTER_BY.iter().map(|&key| key.to_owned()).collect(),
        sort_by: R::SORT_BY.iter().map(|&(key, order)| (key.to_owned(), order)).collect(),
        default_options: encode_value(&Value::Map(default_options::<R>())),
        has_auth: R::AUTH,
    }
}

/// The encoded [`manifest`].
pub fn manifest_encoded<R: Room>() -> Vec<u8> {
    abi::encode(&manifest::<R>())
}

/// The entries of [`Room::default_options`].
pub(crate) fn default_options<R: Room>() -> Vec<(Value, Value)> {
    match R::default_options() {
        None => Vec::new(),
        Some(Value::Map(entries)) => entries,
        Some(other) => panic!("{}::default_options() must return a map, not {other}", R::NAME),
    }
}

/// Runs `R`'s static auth hook.
pub fn auth<R: Room>(request: AuthRequest) -> AuthDecision {
    let context =
        AuthContext { options: Payload::new(request.options), token: request.token, ip: request.ip };
    match R::on_auth(&context) {
        Auth::Accept => AuthDecision::Accept,
        Auth::AcceptWith { auth, session_id } => {
            AuthDecision::AcceptWith { auth: encode_value(&auth), session_id }
        }
        Auth::Reject(message) => AuthDecision::Reject { message },
    }
}

/// [`auth`] on an encoded [`AuthRequest`]; a request that does not decode is logged and rejected.
pub fn auth_encoded<R: Room>(input: &[u8]) -> Vec<u8> {
    let decision = match abi::decode::<AuthRequest>(input) {
        Ok(request) => auth::<R>(request),
        Err(err) => {
            crate::log::error(format_args!("malformed auth request ({} bytes): {err}", input.len()));
            AuthDecision::Reject { message: "malformed auth request".to_owned() }
        }
    };
    abi::encode(&decision)
}

/// Compile-time check behind [`export_room!`](crate::export_room), so a type that is not a room
/// fails on every target with [`Room`]'s diagnostic.
pub fn assert_room<R: Room>() {}

pub(crate) fn encode_value(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).expect("writing to a Vec cannot fail");
    bytes
}

/// The raw exports' bodies: the only code that turns ABI pointers into Rust values.
#[cfg(target_arch = "wasm32")]
pub mod export {
    use std::any::Any;
    use std::cell::RefCell;
    use std::mem::MaybeUninit;
    use std::sync::Once;

    use odeon_protocol::abi::{ABI_VERSION, LogLevel, pack};

    use super::Runtime;
    use crate::Room;

    thread_local! {
        /// The room's runtime, created by the first `odeon_events` call. Type-erased so this
        /// non-generic static can hold any room type; a module exports exactly one.
        static RUNTIME: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
        /// The last call's output, which the host reads before its next call.
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// `odeon_abi_version`.
    pub fn abi_version() -> i32 {
        install_panic_hook();
        ABI_VERSION as i32
    }

    /// `odeon_alloc`: an uninitialised buffer of `len` bytes that the next call takes back.
    pub fn alloc(len: i32) -> i32 {
        install_panic_hook();
        let Ok(len) = usize::try_from(len) else {
            crate::log::error(format_args!("odeon_alloc: negative length {len}"));
            return 0;
        };
        let buffer: Box<[MaybeUninit<u8>]> = Box::new_uninit_slice(len);
        Box::into_raw(buffer).cast::<u8>().expose_provenance() as i32
    }

    /// `odeon_manifest`.
    pub fn manifest<R: Room>() -> i64 {
        install_panic_hook();
        publish(super::manifest_encoded::<R>())
    }

    /// `odeon_auth`.
    pub fn auth<R: Room>(ptr: i32, len: i32) -> i64 {
        install_panic_hook();
        let input = take_input(ptr, len);
        publish(super::auth_encoded::<R>(&input))
    }

    /// `odeon_events`.
    pub fn events<R: Room>(ptr: i32, len: i32) -> i64 {
        install_panic_hook();
        let input = take_input(ptr, len);
        let output = RUNTIME.with_borrow_mut(|slot| {
            let runtime = slot.get_or_insert_with(|| Box::new(Runtime::<R>::new()));
            let runtime = runtime.downcast_mut::<Runtime<R>>().expect("a plugin exports one room type");
            runtime.handle_encoded(&input)
        });
        publish(output)
    }

    /// Takes back the buffer the host filled; the ABI makes the callee its owner.
    // Rebuilding the `Box` that `alloc` leaked needs a raw pointer; see SAFETY below.
    #[allow(unsafe_code)]
    fn take_input(ptr: i32, len: i32) -> Box<[u8]> {
        let len = match usize::try_from(len) {
            Ok(0) => return Box::default(),
            Ok(len) => len,
            Err(_) => {
                crate::log::error(format_args!("input buffer with negative length {len}"));
                return Box::default();
            }
        };
        let data = std::ptr::with_exposed_provenance_mut::<MaybeUninit<u8>>(ptr as u32 as usize);
        // SAFETY: per the ABI, `ptr` came from `odeon_alloc(len)`, which leaked a
        // `Box<[MaybeUninit<u8>]>` of exactly `len` bytes; the host wrote all of them and hands the
        // buffer over to this call, once.
        unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)).assume_init() }
    }

    /// Keeps `bytes` alive until the next call and returns them packed for the host.
    fn publish(bytes: Vec<u8>) -> i64 {
        let packed = match bytes.len() {
            0 => 0,
            len => pack(bytes.as_ptr().expose_provenance() as u32, len as u32),
        };
        OUTPUT.set(bytes);
        packed
    }

    /// Routes panic messages to the host's log before the module aborts, since the trap alone
    /// says nothing about the cause.
    fn install_panic_hook() {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = info.payload_as_str().unwrap_or("(non-string panic payload)");
                let line = match info.location() {
                    Some(at) => format!("room panicked at {at}: {message}"),
                    None => format!("room panicked: {message}"),
                };
                crate::sys::log(LogLevel::Error, &line);
            }));
        });
    }
}

/// Exports a [`Room`](crate::Room) type as this plugin's room: `export_room!(MyRoom);` at the
/// crate root.
///
/// On `wasm32` it generates the ABI's exports (`odeon_abi_version`, `odeon_alloc`,
/// `odeon_manifest`, `odeon_auth`, `odeon_events`); on other targets it only checks that the type
/// is a room, so native tests can use [`TestRoom`](crate::testing::TestRoom). One per plugin.
#[macro_export]
macro_rules! export_room {
    ($room:ty $(,)?) => {
        const _: fn() = $crate::rt::assert_room::<$room>;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // `no_mangle` is what makes these the module's exports; each body only calls the SDK.
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_abi_version() -> i32 {
                $crate::rt::export::abi_version()
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_alloc(len: i32) -> i32 {
                $crate::rt::export::alloc(len)
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_manifest() -> i64 {
                $crate::rt::export::manifest::<$room>()
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_auth(ptr: i32, len: i32) -> i64 {
                $crate::rt::export::auth::<$room>(ptr, len)
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_events(ptr: i32, len: i32) -> i64 {
                $crate::rt::export::events::<$room>(ptr, len)
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, KeyExt, Listing, MessageType, OpId, PresenceOp, PresenceValue, RoomError, TimerId};
    use odeon_protocol::abi::Outbound;

    /// Records every hook call; its options steer the failure paths.
    #[derive(Debug, Default)]
    struct Probe {
        calls: Vec<String>,
    }

    impl Room for Probe {
        const NAME: &'static str = "probe";
        const FILTER_BY: &'static [&'static str] = &["mode", "level"];
        const SORT_BY: &'static [(&'static str, i8)] = &[("clients", -1)];
        const AUTH: bool = true;

        fn default_options() -> Option<Value> {
            Some(Value::Map(vec![("mode".into(), "solo".into())]))
        }

        fn on_auth(auth: &AuthContext) -> Auth {
            match auth.token.as_deref() {
                Some("vip") => Auth::AcceptWith { auth: "gold".into(), session_id: Some("v1".into()) },
                Some(_) => Auth::reject(format!("bad token from {}", auth.ip)),
                None => Auth::Accept,
            }
        }

        fn on_create(ctx: &mut Ctx, options: Payload) -> Result<Self, RoomError> {
            ctx.lock();
            match options.get("fail") {
                Some(Value::Integer(code)) => {
                    Err(RoomError::with_code(code.as_u64().unwrap() as u32, "nope"))
                }
                Some(_) => Err(RoomError::new("nope")),
                None => Ok(Probe::default()),
            }
        }

        fn on_join(
            &mut self,
            ctx: &mut Ctx,
            client: &Client,
            options: Payload,
            auth: Payload,
        ) -> Result<(), RoomError> {
            let seen = ctx.clients().len();
            self.calls.push(format!("join {client} {seen} {}", auth.value().unwrap()));
            match options.get("refuse") {
                Some(_) => Err(RoomError::new("refused")),
                None => Ok(()),
            }
        }

        fn on_leave(&mut self, ctx: &mut Ctx, client: &Client, code: u16) {
            self.calls.push(format!("leave {client} {code} {}", ctx.clients().len()));
        }

        fn on_drop(&mut self, ctx: &mut Ctx, client: &Client, code: u16) {
            self.calls.push(format!("drop {client} {code} {}", ctx.clients().len()));
            if client.session_id().starts_with("keep") {
                ctx.allow_reconnection(client, 5);
            }
        }

        fn on_reconnect(&mut self, ctx: &mut Ctx, client: &Client) {
            self.calls.push(format!("reconnect {client} {}", ctx.clients().len()));
        }

        fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
            let payload = message.payload.value().unwrap();
            self.calls.push(format!("message {client} {:?} {payload}", message.kind));
            if message.is("timeout") {
                let timer = ctx.set_timeout(10);
                self.calls.push(format!("set {timer}"));
            }
            if message.is("interval") {
                let timer = ctx.set_interval(10);
                self.calls.push(format!("set {timer}"));
            }
            if message.is("presence") {
                ctx.presence().get("k");
            }
            if message.is("rooms") {
                ctx.query_rooms(Some("probe"));
            }
        }

        fn on_presence(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<PresenceValue, String>) {
            self.calls.push(format!("{op} {result:?}"));
        }

        fn on_presence_message(&mut self, _ctx: &mut Ctx, topic: &str, message: &str) {
            self.calls.push(format!("{topic}: {message}"));
        }

        fn on_rooms(&mut self, _ctx: &mut Ctx, op: OpId, result: Result<Vec<Listing>, String>) {
            self.calls.push(format!("rooms {op} {result:?}"));
        }

        fn on_bytes(&mut self, _ctx: &mut Ctx, client: &Client, kind: MessageType, bytes: &[u8]) {
            self.calls.push(format!("bytes {client} {kind:?} {bytes:?}"));
        }

        fn on_tick(&mut self, ctx: &mut Ctx, dt_ms: f64) {
            self.calls.push(format!("tick {dt_ms} at {}", ctx.now()));
        }

        fn on_timer(&mut self, ctx: &mut Ctx, timer: TimerId) {
            self.calls.push(format!("{timer} fired"));
            if timer.as_u64() == 2 {
                ctx.clear_timer(timer);
            }
        }

        fn on_dispose(&mut self, _ctx: &mut Ctx) {
            self.calls.push("dispose".into());
        }
    }

    fn batch(events: Vec<Event>) -> Batch {
        Batch { now_ms: 1_000, events }
    }

    fn create(options: &[u8]) -> Event {
        Event::Create { room_id: "r1".into(), room_name: "probe".into(), options: options.to_vec() }
    }

    fn join(sid: &str) -> Event {
        Event::Join { session_id: sid.into(), options: vec![], auth: vec![] }
    }

    fn message(sid: &str, kind: &str) -> Event {
        Event::Message { session_id: sid.into(), kind: MessageType::Str(kind.into()), payload: vec![] }
    }

    fn live() -> Runtime<Probe> {
        let mut runtime = Runtime::<Probe>::new();
        runtime.handle_batch(batch(vec![create(&[0x80])]));
        runtime
    }

    fn calls(runtime: &Runtime<Probe>) -> Vec<&str> {
        runtime.room().unwrap().calls.iter().map(String::as_str).collect()
    }

    #[test]
    fn events_run_their_hooks_in_order() {
        let mut runtime = Runtime::<Probe>::new();
        let effects = runtime.handle_batch(batch(vec![
            create(&[0x80]),
            Event::Join { session_id: "a".into(), options: vec![], auth: vec![0xa4, b'g', b'o', b'l', b'd'] },
            join("b"),
            message("a", "hi"),
            Event::Bytes { session_id: "b".into(), kind: MessageType::Num(3.0), payload: vec![1, 2] },
            Event::Tick { dt_ms: 16.5 },
            Event::Leave { session_id: "b".into(), code: 4000 },
            Event::Dispose,
        ]));
        assert_eq!(effects.effects, [Effect::Lock]);
        assert_eq!(runtime.ctx().room_id(), "r1");
        assert_eq!(runtime.ctx().room_name(), "probe");
        assert_eq!(
            calls(&runtime),
            [
                "join a 1 \"gold\"",
                "join b 2 nil",
                "message a Str(\"hi\") nil",
                "bytes b Num(3.0) [1, 2]",
                "tick 16.5 at 1000",
                "leave b 4000 1",
                "dispose",
            ]
        );
        // Nothing runs after Dispose.
        runtime.handle_batch(batch(vec![message("a", "late")]));
        assert_eq!(calls(&runtime).len(), 7);
    }

    #[test]
    fn drop_without_reconnection_runs_leave_in_the_same_call() {
        let mut runtime = live();
        runtime.handle_batch(batch(vec![join("a"), join("keep-b")]));
        let effects = runtime.handle_batch(batch(vec![
            Event::Drop { session_id: "a".into(), code: 1006 },
            Event::Drop { session_id: "keep-b".into(), code: 1005 },
        ]));
        assert_eq!(effects.effects, [Effect::AllowReconnection { session_id: "keep-b".into(), seconds: 5 }]);
        assert_eq!(calls(&runtime)[2..], ["drop a 1006 1", "leave a 1006 1", "drop keep-b 1005 0"]);
        assert!(runtime.ctx().clients().is_empty());

        runtime.handle_batch(batch(vec![Event::Reconnect { session_id: "keep-b".into() }]));
        assert_eq!(calls(&runtime)[5], "reconnect keep-b 1");
        assert_eq!(runtime.ctx().client("keep-b").unwrap().session_id(), "keep-b");

        // The window passing arrives as a Leave.
        runtime.handle_batch(batch(vec![
            Event::Drop { session_id: "keep-b".into(), code: 1006 },
            Event::Leave { session_id: "keep-b".into(), code: 1006 },
        ]));
        assert_eq!(calls(&runtime)[6..], ["drop keep-b 1006 0", "leave keep-b 1006 0"]);
    }

    #[test]
    fn failed_create_discards_its_effects_and_ignores_later_events() {
        let mut runtime = Runtime::<Probe>::new();
        // {"fail": true}
        let effects =
            runtime.handle_batch(batch(vec![create(&[0x81, 0xa4, b'f', b'a', b'i', b'l', 0xc3]), join("a")]));
        assert_eq!(effects.effects, [Effect::CreateFailed { code: 523, message: "nope".into() }]);
        assert!(runtime.room().is_none());
        assert!(runtime.ctx().clients().is_empty());
        assert!(runtime.handle_batch(batch(vec![join("b"), Event::Dispose])).effects.is_empty());
        let answers = vec![
            Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Nil) },
            Event::PresenceMessage { topic: "t".into(), message: "m".into() },
            Event::Rooms { op_id: 2, result: Ok(vec![]) },
        ];
        assert!(runtime.handle_batch(batch(answers)).effects.is_empty());
        assert!(runtime.room().is_none());

        // {"fail": 4000}
        let mut runtime = Runtime::<Probe>::new();
        let effects = runtime
            .handle_batch(batch(vec![create(&[0x81, 0xa4, b'f', b'a', b'i', b'l', 0xcd, 0x0f, 0xa0])]));
        assert_eq!(effects.effects, [Effect::CreateFailed { code: 4000, message: "nope".into() }]);
    }

    #[test]
    fn events_before_create_are_ignored() {
        let mut runtime = Runtime::<Probe>::new();
        assert!(runtime.handle_batch(batch(vec![join("a")])).effects.is_empty());
        assert!(runtime.room().is_none());
        runtime.handle_batch(batch(vec![create(&[0x80]), create(&[0x80])]));
        assert_eq!(calls(&runtime).len(), 0);
    }

    #[test]
    fn refused_join_is_rejected_and_removed() {
        let mut runtime = live();
        // {"refuse": 1}
        let options = vec![0x81, 0xa6, b'r', b'e', b'f', b'u', b's', b'e', 0x01];
        let effects = runtime.handle_batch(batch(vec![
            Event::Join { session_id: "a".into(), options, auth: vec![] },
            join("b"),
        ]));
        assert_eq!(
            effects.effects,
            [Effect::RejectJoin { session_id: "a".into(), code: 526, message: "refused".into() }]
        );
        let clients: Vec<&str> = runtime.ctx().clients().iter().map(Client::session_id).collect();
        assert_eq!(clients, ["b"]);
    }

    #[test]
    fn timers_fire_until_cleared_and_one_shots_only_once() {
        let mut runtime = live();
        let effects =
            runtime.handle_batch(batch(vec![join("a"), message("a", "timeout"), message("a", "interval")]));
        assert_eq!(
            effects.effects,
            [
                Effect::SetTimer { id: 1, delay_ms: 10, repeat: false },
                Effect::SetTimer { id: 2, delay_ms: 10, repeat: true },
            ]
        );
        let effects = runtime.handle_batch(batch(vec![
            Event::Timer { id: 1 },
            Event::Timer { id: 1 },
            Event::Timer { id: 2 },
            Event::Timer { id: 2 },
            Event::Timer { id: 99 },
        ]));
        // Timer 2 clears itself when it fires; the one-shot needs no clearing.
        assert_eq!(effects.effects, [Effect::ClearTimer { id: 2 }]);
        let fired: Vec<&str> = calls(&runtime).into_iter().filter(|c| c.ends_with("fired")).collect();
        assert_eq!(fired, ["timer 1 fired", "timer 2 fired"]);
    }

    #[test]
    fn presence_and_room_answers_reach_their_hooks_once() {
        let mut runtime = live();
        let effects = runtime.handle_batch(batch(vec![
            join("a"),
            message("a", "presence"),
            message("a", "rooms"),
            Event::PresenceMessage { topic: "news".into(), message: "early".into() },
        ]));
        assert_eq!(
            effects.effects,
            [
                Effect::Presence { op_id: 1, op: PresenceOp::Get { key: Key::local("k") } },
                Effect::QueryRooms { op_id: 2, name: Some("probe".into()) },
            ]
        );
        let listing = Listing {
            room_id: "r1".into(),
            name: "probe".into(),
            process_id: "p".into(),
            clients: 1,
            max_clients: None,
            locked: false,
            private: false,
            metadata: vec![0x80],
        };
        runtime.handle_batch(batch(vec![
            // The wrong kind of answer, an unknown id and a second answer are ignored.
            Event::Rooms { op_id: 1, result: Ok(vec![]) },
            Event::PresenceResult { op_id: 2, result: Ok(PresenceValue::Nil) },
            Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Str("v".into())) },
            Event::PresenceResult { op_id: 1, result: Ok(PresenceValue::Nil) },
            Event::PresenceResult { op_id: 99, result: Err("late".into()) },
            Event::Rooms { op_id: 2, result: Ok(vec![listing.clone()]) },
            Event::Rooms { op_id: 2, result: Err("twice".into()) },
            Event::PresenceMessage { topic: "news".into(), message: "hi".into() },
        ]));
        let answers: Vec<&str> = calls(&runtime)
            .into_iter()
            .filter(|c| !c.starts_with("join") && !c.starts_with("message"))
            .collect();
        assert_eq!(answers[0], "news: early");
        assert_eq!(answers[1], "op 1 Ok(Str(\"v\"))");
        assert_eq!(answers[2], format!("rooms op 2 {:?}", Ok::<_, String>(vec![listing])));
        assert_eq!(answers[3], "news: hi");
        assert_eq!(answers.len(), 4);

        // Ids keep counting across hooks and kinds.
        let effects = runtime.handle_batch(batch(vec![message("a", "rooms")]));
        assert_eq!(effects.effects, [Effect::QueryRooms { op_id: 3, name: Some("probe".into()) }]);
    }

    #[test]
    fn manifest_declares_the_room() {
        let manifest = manifest::<Probe>();
        assert_eq!(manifest.name, "probe");
        assert_eq!(manifest.filter_by, ["mode", "level"]);
        assert_eq!(manifest.sort_by, [("clients".to_owned(), -1)]);
        assert_eq!(
            manifest.default_options,
            [0x81, 0xa4, b'm', b'o', b'd', b'e', 0xa4, b's', b'o', b'l', b'o']
        );
        assert!(manifest.has_auth);
        assert_eq!(abi::decode::<Manifest>(&manifest_encoded::<Probe>()).unwrap(), manifest);

        struct Bare;
        impl Room for Bare {
            const NAME: &'static str = "bare";
            fn on_create(_: &mut Ctx, _: Payload) -> Result<Self, RoomError> {
                Ok(Bare)
            }
        }
        let manifest = super::manifest::<Bare>();
        assert_eq!(manifest.default_options, [0x80]);
        assert!(manifest.filter_by.is_empty() && manifest.sort_by.is_empty() && !manifest.has_auth);
    }

    #[test]
    #[should_panic(expected = "default_options() must return a map")]
    fn manifest_refuses_non_map_defaults() {
        struct Odd;
        impl Room for Odd {
            const NAME: &'static str = "odd";
            fn default_options() -> Option<Value> {
                Some(Value::from(3))
            }
            fn on_create(_: &mut Ctx, _: Payload) -> Result<Self, RoomError> {
                Ok(Odd)
            }
        }
        manifest::<Odd>();
    }

    #[test]
    fn auth_maps_every_verdict() {
        let request = |token: Option<&str>| AuthRequest {
            options: vec![],
            token: token.map(Into::into),
            ip: "10.0.0.1".into(),
        };
        assert_eq!(auth::<Probe>(request(None)), AuthDecision::Accept);
        assert_eq!(
            auth::<Probe>(request(Some("vip"))),
            AuthDecision::AcceptWith {
                auth: vec![0xa4, b'g', b'o', b'l', b'd'],
                session_id: Some("v1".into())
            }
        );
        assert_eq!(
            auth::<Probe>(request(Some("x"))),
            AuthDecision::Reject { message: "bad token from 10.0.0.1".into() }
        );
        let encoded = auth_encoded::<Probe>(&abi::encode(&request(None)));
        assert_eq!(abi::decode::<AuthDecision>(&encoded).unwrap(), AuthDecision::Accept);
    }

    #[test]
    fn garbage_input_is_logged_not_fatal() {
        let garbage: [&[u8]; 5] = [b"", b"\xc1", b"\x92\xcf", b"garbage", &[0xdd, 0xff, 0xff, 0xff, 0xff]];
        for input in garbage {
            let decision = abi::decode::<AuthDecision>(&auth_encoded::<Probe>(input)).unwrap();
            assert_eq!(decision, AuthDecision::Reject { message: "malformed auth request".into() });

            // Before creation, unreadable input fails the room...
            let mut runtime = Runtime::<Probe>::new();
            let effects = abi::decode::<Effects>(&runtime.handle_encoded(input)).unwrap();
            assert_eq!(
                effects.effects,
                [Effect::CreateFailed { code: CREATE_FAILED, message: "malformed event batch".into() }]
            );
            // ...and after it, the batch is dropped and the room carries on.
            let mut runtime = live();
            let effects = abi::decode::<Effects>(&runtime.handle_encoded(input)).unwrap();
            assert!(effects.effects.is_empty());
            let next = abi::encode(&batch(vec![join("a"), message("a", "timeout")]));
            let effects = abi::decode::<Effects>(&runtime.handle_encoded(&next)).unwrap();
            assert_eq!(effects.effects, [Effect::SetTimer { id: 1, delay_ms: 10, repeat: false }]);
        }
    }

    #[test]
    fn sends_encode_named_maps_and_forward_payloads() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Hello {
            session_id: &'static str,
        }
        let mut ctx = Ctx::default();
        let a = Client::new("a".into());
        ctx.send(&a, "hello", &Hello { session_id: "a" });
        ctx.send_payload(&a, 7, &Payload::new(vec![0xcc, 0x01]));
        ctx.send_payload(&a, "none", &Payload::default());
        ctx.send_empty(&a, "empty");
        ctx.send_bytes(&a, "raw", &[9]);
        ctx.send_after_patch(&a, "later", &1);
        ctx.broadcast_with("b", &(), crate::BroadcastOptions::new().except(&a).after_patch());
        ctx.broadcast_bytes("bb", &[1], crate::BroadcastOptions::new());
        let out = |kind: MessageType, payload: Option<&[u8]>, bytes, after_patch| Outbound {
            kind,
            payload: payload.map(serde_bytes::ByteBuf::from),
            bytes,
            after_patch,
        };
        let s = |s: &str| MessageType::Str(s.into());
        let send = |message| Effect::Send { to: "a".into(), message };
        assert_eq!(
            ctx.take_effects(),
            [
                send(out(s("hello"), Some(b"\x81\xa9sessionId\xa1a"), false, false)),
                send(out(MessageType::Num(7.0), Some(&[0xcc, 0x01]), false, false)),
                send(out(s("none"), None, false, false)),
                send(out(s("empty"), None, false, false)),
                send(out(s("raw"), Some(&[9]), true, false)),
                send(out(s("later"), Some(&[1]), false, true)),
                Effect::Broadcast {
                    message: out(s("b"), Some(&[0xc0]), false, true),
                    except: vec!["a".into()]
                },
                Effect::Broadcast { message: out(s("bb"), Some(&[1]), true, false), except: vec![] },
            ]
        );
    }
}
