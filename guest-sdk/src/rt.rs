//! The runtime behind [`export_room!`](crate::export_room): turns ABI records into hook calls.
//!
//! [`Runtime`] owns the room and its [`Ctx`](crate::Ctx) and handles a [`Batch`] of events; [`manifest`] and
//! [`auth`] serve the two static exports. Everything here is plain safe Rust that runs natively as
//! well; only `export` (on `wasm32`) deals with raw pointers into linear memory.

use odeon_protocol::abi::{self, AuthDecision, AuthRequest, Batch, Effect, Effects, Event, Manifest};

use crate::ctx::TimerId;
use crate::handler::Handlers;
use crate::presence::OpKind;
use crate::state::{Synced, is_synced};
use crate::{Auth, AuthContext, Client, Message, Payload, Room, RoomCtx, Value};

/// The code of [`Effect::CreateFailed`] when [`Room::on_create`] gives none.
pub const CREATE_FAILED: u32 = 523;
/// The code of [`Effect::RejectJoin`] when [`Room::on_join`] gives none.
pub const JOIN_FAILED: u32 = 526;

/// A room instance and its context, fed one [`Batch`] at a time.
pub struct Runtime<R: Room> {
    room: Option<R>,
    phase: Phase,
    ctx: RoomCtx<R>,
    /// The state's encoder, for a room with state, once the room exists.
    synced: Option<Synced<R::State>>,
    /// The room type's typed handlers ([`Room::handlers`]), registered once per instance.
    handlers: Handlers<R>,
}

impl<R: Room> std::fmt::Debug for Runtime<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("phase", &self.phase).field("ctx", &self.ctx).finish_non_exhaustive()
    }
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
        Self {
            room: None,
            phase: Phase::Pending,
            ctx: RoomCtx::<R>::default(),
            synced: None,
            handlers: Handlers::of(),
        }
    }

    /// The room, once created.
    pub fn room(&self) -> Option<&R> {
        self.room.as_ref()
    }

    /// The room's context, as its hooks see it.
    pub fn ctx(&self) -> &RoomCtx<R> {
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
            && let Some(synced) = self.synced.as_mut()
            && synced.with(&mut self.ctx.state, |encoder| encoder.has_changes())
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
                dispatch(room, &mut self.ctx, &self.handlers, self.synced.as_mut(), event);
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
            Ok(room) => {
                if is_synced::<R::State>() {
                    self.synced = Some(Synced::start(&mut self.ctx.state));
                    let (reflection_v4, reflection_v5) = Synced::<R::State>::reflections();
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

/// Calls the hook for one event on a live room, keeping [`Ctx::clients`](crate::Ctx::clients)
/// and the clients' user data in step.
fn dispatch<R: Room>(
    room: &mut R,
    ctx: &mut RoomCtx<R>,
    handlers: &Handlers<R>,
    synced: Option<&mut Synced<R::State>>,
    event: Event,
) {
    match event {
        Event::Create { .. } => crate::log::warn("ignoring a second Create event"),
        Event::Join { session_id, options, auth } => {
            let client = Client::new(session_id);
            ctx.add_client(&client);
            if let Err(err) = room.on_join(ctx, &client, Payload::new(options), Payload::new(auth)) {
                ctx.forget_client(&client);
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
            ctx.forget_client(&client);
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
                ctx.forget_client(&client);
            }
        }
        Event::Reconnect { session_id } => {
            let client = Client::new(session_id);
            ctx.add_client(&client);
            room.on_reconnect(ctx, &client);
        }
        Event::Message { session_id, kind, payload } => {
            let (client, payload) = (Client::new(session_id), Payload::new(payload));
            match handlers.get(&kind) {
                Some(handler) => {
                    if let Err(reject) = handler(room, ctx, &client, &payload) {
                        ctx.send_error(&client, reject.code, reject.message);
                    }
                }
                None => room.on_message(ctx, &client, Message { kind, payload }),
            }
        }
        Event::Bytes { session_id, kind, payload } => {
            room.on_bytes(ctx, &Client::new(session_id), kind, &payload);
        }
        Event::Tick { dt_ms } => room.on_tick(ctx, dt_ms),
        Event::Request { session_id, request_id, kind, payload } => {
            let (client, payload) = (Client::new(session_id), Payload::new(payload));
            match handlers.get(&kind) {
                Some(handler) => {
                    let outcome = handler(room, ctx, &client, &payload);
                    crate::request::respond(ctx, &client, request_id, outcome);
                }
                None => crate::request::answer(room, ctx, client, request_id, Message { kind, payload }),
            }
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
        Event::FullState => match synced {
            Some(synced) => {
                let bytes = synced.with(&mut ctx.state, |encoder| encoder.full_state());
                ctx.push_effect(Effect::FullState(bytes));
            }
            None => crate::log::warn("ignoring FullState: this room has no synchronised state"),
        },
        Event::Patch => {
            if let Some(bytes) = synced.and_then(|s| s.with(&mut ctx.state, |encoder| encoder.patch())) {
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
        Auth::AcceptWith { auth, session_id, proven } => {
            AuthDecision::AcceptWith { auth: encode_value(&auth), session_id, proven }
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

    /// `odeon_migrate_out`.
    pub fn migrate_out<R: Room>() -> i64 {
        install_panic_hook();
        let output = RUNTIME.with_borrow_mut(|slot| match slot.as_mut() {
            Some(runtime) => runtime
                .downcast_mut::<Runtime<R>>()
                .expect("a plugin exports one room type")
                .migrate_out_encoded(),
            None => odeon_protocol::abi::encode(&odeon_protocol::abi::MigrateOut::Refused(
                "the instance holds no room".into(),
            )),
        });
        publish(output)
    }

    /// `odeon_migrate_in`.
    pub fn migrate_in<R: Room>(ptr: i32, len: i32) -> i64 {
        install_panic_hook();
        let input = take_input(ptr, len);
        let output = RUNTIME.with_borrow_mut(|slot| {
            let runtime = slot.get_or_insert_with(|| Box::new(Runtime::<R>::new()));
            let runtime = runtime.downcast_mut::<Runtime<R>>().expect("a plugin exports one room type");
            runtime.migrate_in_encoded(&input)
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
/// `odeon_manifest`, `odeon_auth`, `odeon_events`, `odeon_migrate_out`, `odeon_migrate_in`); on other targets it only checks that the type
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

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_migrate_out() -> i64 {
                $crate::rt::export::migrate_out::<$room>()
            }

            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            extern "C" fn odeon_migrate_in(ptr: i32, len: i32) -> i64 {
                $crate::rt::export::migrate_in::<$room>(ptr, len)
            }
        };
    };
}

mod migrate;
#[cfg(test)]
mod tests;
