//! The [`Room`] trait and the values its hooks receive and return.

use std::fmt;

use crate::handler::Handlers;
use crate::migration::Migration;
use crate::request::{Answer, Inputs, Step};
use crate::{
    Ctx, Listing, Message, MessageType, OpId, Payload, PayloadError, PresenceValue, Schema, TimerId, Value,
};

/// A room type: its matchmaking settings and its lifecycle hooks, as in Colyseus 0.17.
///
/// The host calls the hooks one at a time, in the order events happened; a hook acts on the world
/// only through [`Ctx`], whose requests the host carries out after the hook returns. Export the
/// type from the plugin crate with [`export_room!`](crate::export_room).
///
/// ```
/// use odeon_guest::prelude::*;
///
/// pub struct Lobby;
///
/// impl Room for Lobby {
///     const NAME: &'static str = "lobby";
///     type State = ();
///     type UserData = ();
///
///     fn on_create(ctx: &mut Ctx, _options: Payload) -> Result<Self, RoomError> {
///         ctx.set_max_clients(8);
///         Ok(Lobby)
///     }
///
///     fn on_message(&mut self, ctx: &mut Ctx, client: &Client, message: Message) {
///         if message.is("ping") {
///             ctx.send_empty(client, "pong");
///         }
///     }
/// }
///
/// export_room!(Lobby);
/// ```
///
/// # What kills a room
///
/// A typed handler ([`Room::handlers`]) whose payload does not decode, or that returns `Err`,
/// costs one message: the sender gets an error or a rejected request, and the room carries on.
/// These still end the room, closing its clients with 4002 while every other room carries on:
///
/// - a panic anywhere in the room's code (an `unwrap` on `None`, an index out of range, a
///   `borrow_mut` of a child already borrowed). Plugins build with `panic = "abort"` (the
///   `wasm` profile) and wasm cannot unwind, so a panic traps the instance; its message
///   reaches the host's log.
/// - a call that runs past the host's deadline (`--call-deadline-ms`, 200 ms by default): an
///   endless loop.
/// - memory past the host's cap (`--room-memory-mb`, 64 MiB by default).
///
/// So validate input by returning `Err` from typed handlers rather than with `unwrap` or
/// `expect`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an Odeon room",
    label = "needs `impl odeon_guest::Room for {Self}`",
    note = "a room needs `const NAME: &'static str`, `type State` (`()` for none), `type UserData` \
            (`()` for none) and `fn on_create(ctx: &mut Ctx<State, UserData>, options: Payload) -> \
            Result<Self, RoomError>`; every other hook has a default"
)]
pub trait Room: Sized + 'static {
    /// The room type name clients matchmake with, e.g. `joinOrCreate("echo")`.
    const NAME: &'static str;

    /// The room's synchronised state (Colyseus's `this.state`): a `#[derive(Schema, Default)]`
    /// struct, or `()` for a room without one. The SDK creates it with `Default` before
    /// [`Room::on_create`], keeps it in [`Ctx::state`] where every hook reads and changes it as
    /// a plain value, and sends its changes to the clients (`room.state`).
    type State: Schema + Default;

    /// What the room keeps per client (Colyseus's `client.userData`), in
    /// [`Ctx::user_data`]: `Default` when the client joins, kept across a reconnection and a
    /// move to another host, dropped once it has left. `()` for nothing. A live migration to
    /// new code does not carry it: the new code's [`Room::migrate_in`] starts without any.
    type UserData: Default + 'static;

    /// Option keys that partition rooms (Colyseus `filterBy`).
    const FILTER_BY: &'static [&'static str] = &[];

    /// Listing fields that order candidate rooms, `1` ascending and `-1` descending (`sortBy`).
    const SORT_BY: &'static [(&'static str, i8)] = &[];

    /// Whether the host runs [`Room::on_auth`] at matchmaking.
    const AUTH: bool = false;

    /// This code's version, as the next version's [`Room::migrate_in`] sees it
    /// ([`Migration::version`]); raise it when what [`Room::migrate_out`] writes changes.
    const VERSION: u32 = 1;

    /// How many seconds the default [`Room::on_drop`] keeps a dropped client's seat, so the
    /// official SDKs' automatic reconnection finds it; 0 (the default) keeps none, and the
    /// client leaves at once.
    const RECONNECT_SECS: u32 = 0;

    /// Options merged under the creator's options at creation; must be a map.
    fn default_options() -> Option<Value> {
        None
    }

    /// Decides at matchmaking, before any room is chosen, whether a client may join; only called
    /// when [`Room::AUTH`] is `true`.
    fn on_auth(auth: &AuthContext) -> Auth {
        let _ = auth;
        Auth::Accept
    }

    /// Creates the room from the merged creation options; an error fails the matchmaking request.
    fn on_create(ctx: &mut Ctx<Self::State, Self::UserData>, options: Payload) -> Result<Self, RoomError>;

    /// A client joined; it is already in [`Ctx::clients`]. An error refuses it.
    fn on_join(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        client: &Client,
        options: Payload,
        auth: Payload,
    ) -> Result<(), RoomError> {
        let _ = (ctx, client, options, auth);
        Ok(())
    }

    /// A client left for good; it is no longer in [`Ctx::clients`].
    fn on_leave(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, client: &Client, code: u16) {
        let _ = (ctx, client, code);
    }

    /// A client's connection dropped without its consent. Call [`Ctx::allow_reconnection`] here
    /// to keep its seat; otherwise [`Room::on_leave`] runs right after with the same code. The
    /// default keeps it [`Room::RECONNECT_SECS`] seconds when that is not 0.
    fn on_drop(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, client: &Client, code: u16) {
        let _ = code;
        if Self::RECONNECT_SECS > 0 {
            ctx.allow_reconnection(client, Self::RECONNECT_SECS);
        }
    }

    /// A dropped client came back within its reconnection window.
    fn on_reconnect(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, client: &Client) {
        let _ = (ctx, client);
    }

    /// Registers the room type's typed message handlers, once per room instance, before any
    /// hook runs: `on.message("move", Self::play)`. Each handler gets its payload decoded and
    /// answers `send`, `send` with a callback and `request` of its type alike
    /// ([`Handlers::message`]); a payload that does not decode, or an `Err`, is answered to the
    /// sender and costs that message only.
    fn handlers(on: &mut Handlers<Self>) {
        let _ = on;
    }

    /// A client sent a message of a type without a typed handler ([`Room::handlers`]).
    fn on_message(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, client: &Client, message: Message) {
        let _ = (ctx, client, message);
    }

    /// A client sent a request (`room.request(type, payload)` or `room.send(type, payload,
    /// callback)`, @colyseus/sdk 0.18) of a type without a typed handler ([`Room::handlers`]);
    /// the answer goes back at once. The default has no
    /// handler for any type ([`Answer::NoHandler`]). A handler that acts like a message handler
    /// and has nothing to return answers [`Answer::empty`] after its side effects:
    /// `self.on_message(ctx, client, request); Answer::empty()`.
    fn on_request(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        client: &Client,
        request: Message,
    ) -> Answer {
        let _ = (ctx, client, request);
        Answer::NoHandler
    }

    /// The room's inputs (0.18 `room.input()`), if it takes any: their type and the fixed
    /// timestep of [`Room::on_step`]. Called once, at creation.
    fn inputs() -> Option<Inputs> {
        None
    }

    /// A fixed-timestep step of a room with [`Room::inputs`], with at most one input per client.
    fn on_step(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, step: Step) {
        let _ = (ctx, step);
    }

    /// A client sent a bytes message (`sendBytes`).
    fn on_bytes(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        client: &Client,
        kind: MessageType,
        bytes: &[u8],
    ) {
        let _ = (ctx, client, kind, bytes);
    }

    /// A simulation tick, at the interval set with [`Ctx::set_simulation_interval`].
    fn on_tick(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, dt_ms: f64) {
        let _ = dt_ms;
        // Only this default reports itself: the host then stops the empty ticks.
        ctx.ticks_unhandled();
    }

    /// A timer set with [`Ctx::set_timeout`] or [`Ctx::set_interval`] fired.
    fn on_timer(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>, timer: TimerId) {
        let _ = (ctx, timer);
    }

    /// The answer to the presence operation `op`, issued through [`Ctx::presence`] in an earlier
    /// hook: the value, or why the operation failed. Each operation is answered once.
    fn on_presence(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        op: OpId,
        result: Result<PresenceValue, String>,
    ) {
        let _ = (ctx, op, result);
    }

    /// A message was published on `topic`, which the room subscribed to with
    /// [`Presence::subscribe`](crate::Presence::subscribe); `topic` is the name as the room gave
    /// it. The room's own publications arrive here too.
    fn on_presence_message(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        topic: &str,
        message: &str,
    ) {
        let _ = (ctx, topic, message);
    }

    /// The answer to the room query `op`, issued with [`Ctx::query_rooms`] in an earlier hook.
    fn on_rooms(
        &mut self,
        ctx: &mut Ctx<Self::State, Self::UserData>,
        op: OpId,
        result: Result<Vec<Listing>, String>,
    ) {
        let _ = (ctx, op, result);
    }

    /// The room is being disposed; no hook runs after this one.
    fn on_dispose(&mut self, ctx: &mut Ctx<Self::State, Self::UserData>) {
        let _ = ctx;
    }

    /// Live migration, out: the room's own data as bytes, for the next version's
    /// [`Room::migrate_in`] (see [`crate::migration`]). Write them with
    /// [`migration::encode`](crate::migration::encode). The default has no hooks: the room is
    /// not migrated and keeps its version until it disposes. An error keeps the room where it
    /// is.
    fn migrate_out(&mut self, ctx: &Ctx<Self::State, Self::UserData>) -> Result<Vec<u8>, RoomError> {
        let _ = ctx;
        Err(RoomError::new(crate::migration::NO_HOOKS))
    }

    /// Live migration, in: rebuilds the room, in the new version of its code, from what the
    /// previous version's [`Room::migrate_out`] wrote. [`Ctx`] already has the room's clients,
    /// timers and outstanding operations; a schema state must come back exactly as the clients
    /// hold it (same schema, same content), or the room stays on its old code. An error keeps
    /// the room on its old code too.
    fn migrate_in(ctx: &mut Ctx<Self::State, Self::UserData>, from: Migration) -> Result<Self, RoomError> {
        let _ = (ctx, from);
        Err(RoomError::new(crate::migration::NO_HOOKS))
    }
}

/// The context of room type `R`'s hooks.
pub(crate) type RoomCtx<R> = Ctx<<R as Room>::State, <R as Room>::UserData>;

/// A joined client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Client {
    session_id: String,
}

impl Client {
    pub(crate) fn new(session_id: String) -> Self {
        Self { session_id }
    }

    /// The client's session id, stable across reconnections.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

/// The session id, so a [`Client`] goes wherever a session id does
/// ([`Ctx::user_data`](crate::Ctx::user_data)).
impl AsRef<str> for Client {
    fn as_ref(&self) -> &str {
        &self.session_id
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.session_id)
    }
}

/// A hook's failure, sent to the client as an error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RoomError {
    /// The error code; `None` uses the default of the failing hook (523 for create, 526 for join).
    pub code: Option<u32>,
    /// The error message.
    pub message: String,
}

impl RoomError {
    /// An error with the hook's default code.
    pub fn new(message: impl Into<String>) -> Self {
        Self { code: None, message: message.into() }
    }

    /// An error with an explicit code.
    pub fn with_code(code: u32, message: impl Into<String>) -> Self {
        Self { code: Some(code), message: message.into() }
    }
}

impl From<PayloadError> for RoomError {
    fn from(err: PayloadError) -> Self {
        Self::new(err.to_string())
    }
}

/// What [`Room::on_auth`] sees.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthContext {
    /// The client's join options.
    pub options: Payload,
    /// The bearer token from the `Authorization` header, if any.
    pub token: Option<String>,
    /// The client's address as the host saw it.
    pub ip: String,
}

/// The verdict of [`Room::on_auth`].
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Let the client in.
    Accept,
    /// Let the client in with auth data, which reaches [`Room::on_join`].
    AcceptWith {
        /// Auth data.
        auth: Value,
        /// A session id to give the client instead of a generated one (an account's, say).
        session_id: Option<String>,
        /// Whether this hook *verified* that the client owns `session_id` (a signature it
        /// checked, not a name the client sent). Only then does the new connection replace a
        /// live connection of the same session (the old one is closed with 4002 and the room
        /// sees it leave); otherwise a seat for a session that is connected is refused. Never
        /// set it for an id taken from the join options or any other unverified input: anyone
        /// could then take over another player's connection.
        proven: bool,
    },
    /// Refuse the client with this message.
    Reject(String),
}

impl Auth {
    /// Refuses the client with Colyseus's message for a falsy `onAuth`: `onAuth failed`.
    pub fn deny() -> Self {
        Self::Reject("onAuth failed".into())
    }

    /// Refuses the client with `message`.
    pub fn reject(message: impl Into<String>) -> Self {
        Self::Reject(message.into())
    }

    /// Lets the client in with `auth` data.
    pub fn accept_with(auth: impl Into<Value>) -> Self {
        Self::AcceptWith { auth: auth.into(), session_id: None, proven: false }
    }

    /// Lets the client in under the session id `session_id`, which it claims but has not
    /// proven: it is refused while that session is connected.
    pub fn accept_as(auth: impl Into<Value>, session_id: impl Into<String>) -> Self {
        Self::AcceptWith { auth: auth.into(), session_id: Some(session_id.into()), proven: false }
    }

    /// Lets the client in under `session_id`, which this hook verified it owns (see
    /// [`Auth::AcceptWith`]'s `proven`): a live connection of that session is replaced.
    pub fn accept_as_proven(auth: impl Into<Value>, session_id: impl Into<String>) -> Self {
        Self::AcceptWith { auth: auth.into(), session_id: Some(session_id.into()), proven: true }
    }
}
