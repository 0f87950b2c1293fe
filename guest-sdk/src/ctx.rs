//! [`Ctx`]: a hook's view of its room and its only way to act on the world.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use odeon_protocol::abi::{Effect, Outbound};
use serde::Serialize;
use serde_bytes::ByteBuf;

use crate::payload::encode_named;
use crate::presence::OpKind;
use crate::{Client, IntoMessageType, Level, MessageType, OpId, Payload, Presence};

/// The room a hook runs in: its synchronised state, its clients and their user data, and the
/// only way to act on the world.
///
/// `S` is the room's [`Room::State`](crate::Room::State) and `U` its
/// [`Room::UserData`](crate::Room::UserData); a room without either has `Ctx` (`Ctx<(), ()>`).
///
/// Every action is queued as an effect that the host carries out after the current batch of
/// events; nothing blocks, and nothing a hook does is visible to clients before it returns.
pub struct Ctx<S = (), U = ()> {
    /// The room's synchronised state (Colyseus's `this.state`), a plain value: read and assign
    /// its fields as any Rust struct's (`ctx.state.turn = next.into()`, `ctx.state.board[i] =
    /// 1`, `ctx.state.players.get_mut(id)`). The SDK finds what changed and sends every client
    /// a patch at the room's patch rate.
    pub state: S,
    /// Each joined (or reconnecting) client's [`Ctx::user_data`].
    user_data: BTreeMap<String, U>,
    room_id: String,
    room_name: String,
    now_ms: u64,
    clients: Vec<Client>,
    effects: Vec<Effect>,
    /// Live timers and whether they repeat; one-shot timers are forgotten once they fire.
    timers: BTreeMap<u64, bool>,
    last_timer: u64,
    /// Presence operations and room queries waiting for their answer.
    ops: BTreeMap<u64, OpKind>,
    last_op: u64,
}

/// Identifies a timer set with [`Ctx::set_timeout`] or [`Ctx::set_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(u64);

impl TimerId {
    pub(crate) fn new(id: u64) -> Self {
        Self(id)
    }

    /// The id the room chose, as the host sees it.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timer {}", self.0)
    }
}

/// Who gets a broadcast, and when: `BroadcastOptions::new().except(client).after_patch()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    except: Vec<String>,
    after_patch: bool,
}

impl BroadcastOptions {
    /// Every joined client, right away.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves `client` out; call again to leave out more.
    pub fn except(mut self, client: &Client) -> Self {
        self.except.push(client.session_id().to_owned());
        self
    }

    /// Holds the message until after the room's next state patch.
    pub fn after_patch(mut self) -> Self {
        self.after_patch = true;
        self
    }
}

impl<S: Default, U> Default for Ctx<S, U> {
    fn default() -> Self {
        Self {
            state: S::default(),
            user_data: BTreeMap::new(),
            room_id: String::new(),
            room_name: String::new(),
            now_ms: 0,
            clients: Vec::new(),
            effects: Vec::new(),
            timers: BTreeMap::new(),
            last_timer: 0,
            ops: BTreeMap::new(),
            last_op: 0,
        }
    }
}

impl<S, U> fmt::Debug for Ctx<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("room_id", &self.room_id)
            .field("clients", &self.clients)
            .field("effects", &self.effects.len())
            .finish_non_exhaustive()
    }
}

impl<S, U> Ctx<S, U> {
    /// The room's id.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The room type name.
    pub fn room_name(&self) -> &str {
        &self.room_name
    }

    /// The time the current batch of events was built, in milliseconds since the Unix epoch.
    ///
    /// It does not move during a hook, and in [`testing`](crate::testing) it is the test's clock.
    pub fn now(&self) -> u64 {
        self.now_ms
    }

    /// The joined clients, in join order. Dropped clients waiting to reconnect are not included.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// The joined client with this session id.
    pub fn client(&self, session_id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.session_id() == session_id)
    }

    /// `client`'s user data (Colyseus's `client.userData`): the room's own value of type
    /// [`Room::UserData`](crate::Room::UserData) for each client, `Default` when the client
    /// joins, kept while it is away within a reconnection window, and dropped once it has
    /// left (after [`Room::on_leave`](crate::Room::on_leave)). `client` is a [`Client`] or a
    /// session id, so a client that is away has its data too. `None` for a client that is not
    /// in the room.
    pub fn user_data(&self, client: impl AsRef<str>) -> Option<&U> {
        self.user_data.get(client.as_ref())
    }

    /// `client`'s user data, to change (see [`Ctx::user_data`]); a client the room does not
    /// know gets a fresh `Default` value, dropped when it leaves.
    pub fn user_data_mut(&mut self, client: impl AsRef<str>) -> &mut U
    where
        U: Default,
    {
        self.user_data.entry(client.as_ref().to_owned()).or_default()
    }

    /// Sends `message` to `to` as a MessagePack map (structs are encoded by field name).
    ///
    /// JavaScript clients decode 64-bit integers beyond 32 bits as `BigInt`; send timestamps
    /// and other large numbers as `f64` to get plain numbers, as a Colyseus server would.
    pub fn send<T: Serialize + ?Sized>(&mut self, to: &Client, kind: impl IntoMessageType, message: &T) {
        self.send_encoded(to, kind.into_message_type(), message, false);
    }

    /// Like [`Ctx::send`], but delivered after the room's next state patch.
    pub fn send_after_patch<T: Serialize + ?Sized>(
        &mut self,
        to: &Client,
        kind: impl IntoMessageType,
        message: &T,
    ) {
        self.send_encoded(to, kind.into_message_type(), message, true);
    }

    /// Forwards a payload to `to` byte for byte; an empty payload sends a message without one.
    pub fn send_payload(&mut self, to: &Client, kind: impl IntoMessageType, payload: &Payload) {
        let payload = (!payload.is_empty()).then(|| ByteBuf::from(payload.as_bytes()));
        self.push_send(to, outbound(kind.into_message_type(), payload, false, false));
    }

    /// Sends a message without a payload.
    pub fn send_empty(&mut self, to: &Client, kind: impl IntoMessageType) {
        self.push_send(to, outbound(kind.into_message_type(), None, false, false));
    }

    /// Sends a bytes message (the client's `onMessageBytes`).
    pub fn send_bytes(&mut self, to: &Client, kind: impl IntoMessageType, bytes: &[u8]) {
        let payload = Some(ByteBuf::from(bytes));
        self.push_send(to, outbound(kind.into_message_type(), payload, true, false));
    }

    /// Sends `message` to every joined client.
    pub fn broadcast<T: Serialize + ?Sized>(&mut self, kind: impl IntoMessageType, message: &T) {
        self.broadcast_with(kind, message, BroadcastOptions::new());
    }

    /// Sends `message` to every joined client but `except`.
    pub fn broadcast_except<T: Serialize + ?Sized>(
        &mut self,
        kind: impl IntoMessageType,
        message: &T,
        except: &Client,
    ) {
        self.broadcast_with(kind, message, BroadcastOptions::new().except(except));
    }

    /// Sends `message` to the joined clients `options` selects.
    pub fn broadcast_with<T: Serialize + ?Sized>(
        &mut self,
        kind: impl IntoMessageType,
        message: &T,
        options: BroadcastOptions,
    ) {
        let kind = kind.into_message_type();
        if let Some(payload) = self.encode(&kind, message) {
            self.push_broadcast(outbound(kind, Some(payload), false, options.after_patch), options);
        }
    }

    /// Sends a bytes message to the joined clients `options` selects.
    pub fn broadcast_bytes(&mut self, kind: impl IntoMessageType, bytes: &[u8], options: BroadcastOptions) {
        let message =
            outbound(kind.into_message_type(), Some(ByteBuf::from(bytes)), true, options.after_patch);
        self.push_broadcast(message, options);
    }

    /// Sends an error frame to `to` (the client's `onError`); its connection stays open.
    pub fn send_error(&mut self, to: &Client, code: u32, message: impl Into<String>) {
        self.effects.push(Effect::Error { to: to.session_id().to_owned(), code, message: message.into() });
    }

    /// Closes `client`'s connection without a status code (the client sees 1005).
    ///
    /// Colyseus treats this as an unconsented close: the room's [`Room::on_drop`](crate::Room::on_drop) runs.
    pub fn kick(&mut self, client: &Client) {
        self.effects.push(Effect::Leave { session_id: client.session_id().to_owned(), code: None });
    }

    /// Closes `client`'s connection with `code`.
    pub fn leave(&mut self, client: &Client, code: u16) {
        self.effects.push(Effect::Leave { session_id: client.session_id().to_owned(), code: Some(code) });
    }

    /// Stops matchmaking from offering the room.
    pub fn lock(&mut self) {
        self.effects.push(Effect::Lock);
    }

    /// Lets matchmaking offer the room again.
    pub fn unlock(&mut self) {
        self.effects.push(Effect::Unlock);
    }

    /// Replaces the room's listing metadata; `metadata` should serialize to a map (a struct).
    pub fn set_metadata<T: Serialize + ?Sized>(&mut self, metadata: &T) {
        match encode_named(metadata) {
            Ok(bytes) => self.effects.push(Effect::SetMetadata(bytes)),
            Err(err) => crate::log::error(format_args!("cannot encode room metadata: {err}")),
        }
    }

    /// Hides the room from matchmaking by name (it stays joinable by id), or shows it again.
    pub fn set_private(&mut self, private: bool) {
        self.effects.push(Effect::SetPrivate(private));
    }

    /// Sets the maximum number of clients; `0` means unlimited.
    pub fn set_max_clients(&mut self, max_clients: u32) {
        self.effects.push(Effect::SetMaxClients(max_clients));
    }

    /// Sets the state patch interval in milliseconds; `0` disables patches.
    pub fn set_patch_rate(&mut self, ms: u32) {
        self.effects.push(Effect::SetPatchRate(ms));
    }

    /// Sets the simulation interval in milliseconds, which drives [`Room::on_tick`](crate::Room::on_tick);
    /// `0` stops ticks.
    pub fn set_simulation_interval(&mut self, ms: u32) {
        self.effects.push(Effect::SetSimulationInterval(ms));
    }

    /// Tells the host that the room has no tick hook (the default [`Room::on_tick`](crate::Room::on_tick)).
    #[doc(hidden)]
    pub fn ticks_unhandled(&mut self) {
        self.effects.push(Effect::TicksUnhandled);
    }

    /// Whether the room disposes itself when its last client leaves (the default).
    pub fn set_auto_dispose(&mut self, auto_dispose: bool) {
        self.effects.push(Effect::SetAutoDispose(auto_dispose));
    }

    /// Keeps a dropped client's seat for `seconds`; call it from [`Room::on_drop`](crate::Room::on_drop).
    pub fn allow_reconnection(&mut self, client: &Client, seconds: u32) {
        self.effects.push(Effect::AllowReconnection { session_id: client.session_id().to_owned(), seconds });
    }

    /// Closes every client with `code` and disposes the room.
    pub fn disconnect(&mut self, code: u16) {
        self.effects.push(Effect::Disconnect { code });
    }

    /// Fires [`Room::on_timer`](crate::Room::on_timer) once, `ms` milliseconds from now.
    pub fn set_timeout(&mut self, ms: u64) -> TimerId {
        self.set_timer(ms, false)
    }

    /// Fires [`Room::on_timer`](crate::Room::on_timer) every `ms` milliseconds until cleared.
    pub fn set_interval(&mut self, ms: u64) -> TimerId {
        self.set_timer(ms, true)
    }

    /// Cancels a timer; clearing a timer that already finished does nothing.
    pub fn clear_timer(&mut self, timer: TimerId) {
        if self.timers.remove(&timer.0).is_some() {
            self.effects.push(Effect::ClearTimer { id: timer.0 });
        }
    }

    /// The room's presence: shared keys, hashes, sets, counters, lists and pub/sub.
    ///
    /// Each operation returns an [`OpId`] at once; its answer arrives in a later call as
    /// [`Room::on_presence`](crate::Room::on_presence) with that id.
    ///
    /// ```
    /// # use odeon_guest::prelude::*;
    /// # fn hook(ctx: &mut Ctx) {
    /// ctx.presence().subscribe(Key::global("news"));
    /// let op: OpId = ctx.presence().hget("scores", "alice");
    /// # }
    /// ```
    pub fn presence(&mut self) -> Presence<'_, S, U> {
        Presence::new(self)
    }

    /// Lists the rooms of type `name` (every type for `None`), on every host; the answer arrives
    /// in a later call as [`Room::on_rooms`](crate::Room::on_rooms) with the returned id.
    pub fn query_rooms(&mut self, name: Option<&str>) -> OpId {
        let name = name.map(str::to_owned);
        self.issue(OpKind::Rooms, |op_id| Effect::QueryRooms { op_id, name })
    }

    /// Writes a log line, tagged by the host with the room's id.
    pub fn log(&self, level: Level, message: impl Display) {
        crate::log::log(level, message);
    }

    /// Writes a log line at [`Level::Debug`].
    pub fn debug(&self, message: impl Display) {
        self.log(Level::Debug, message);
    }

    /// Writes a log line at [`Level::Info`].
    pub fn info(&self, message: impl Display) {
        self.log(Level::Info, message);
    }

    /// Writes a log line at [`Level::Warn`].
    pub fn warn(&self, message: impl Display) {
        self.log(Level::Warn, message);
    }

    /// Writes a log line at [`Level::Error`]. To send an error to a client, use [`Ctx::send_error`].
    pub fn error(&self, message: impl Display) {
        self.log(Level::Error, message);
    }

    fn set_timer(&mut self, delay_ms: u64, repeat: bool) -> TimerId {
        self.last_timer += 1;
        let id = self.last_timer;
        self.timers.insert(id, repeat);
        self.effects.push(Effect::SetTimer { id, delay_ms, repeat });
        TimerId(id)
    }

    /// Queues an operation that needs an answer, under a fresh id.
    pub(crate) fn issue(&mut self, kind: OpKind, effect: impl FnOnce(u64) -> Effect) -> OpId {
        self.last_op += 1;
        let id = self.last_op;
        self.ops.insert(id, kind);
        self.effects.push(effect(id));
        OpId::new(id)
    }

    fn send_encoded<T: Serialize + ?Sized>(
        &mut self,
        to: &Client,
        kind: MessageType,
        message: &T,
        after_patch: bool,
    ) {
        if let Some(payload) = self.encode(&kind, message) {
            self.push_send(to, outbound(kind, Some(payload), false, after_patch));
        }
    }

    /// Encodes a message payload; a type whose `Serialize` fails is a room bug, logged, not fatal.
    fn encode<T: Serialize + ?Sized>(&self, kind: &MessageType, message: &T) -> Option<ByteBuf> {
        match encode_named(message) {
            Ok(bytes) => Some(ByteBuf::from(bytes)),
            Err(err) => {
                self.error(format_args!("cannot encode message {kind:?}: {err}"));
                None
            }
        }
    }

    fn push_send(&mut self, to: &Client, message: Outbound) {
        self.effects.push(Effect::Send { to: to.session_id().to_owned(), message });
    }

    fn push_broadcast(&mut self, message: Outbound, options: BroadcastOptions) {
        self.effects.push(Effect::Broadcast { message, except: options.except });
    }
}

/// The runtime's side of the context: what it maintains between hooks.
impl<S, U> Ctx<S, U> {
    pub(crate) fn set_room(&mut self, room_id: String, room_name: String) {
        self.room_id = room_id;
        self.room_name = room_name;
    }

    pub(crate) fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    pub(crate) fn add_client(&mut self, client: &Client)
    where
        U: Default,
    {
        if self.client(client.session_id()).is_none() {
            self.clients.push(client.clone());
        }
        self.user_data.entry(client.session_id().to_owned()).or_default();
    }

    /// `client` is gone for now (dropped, perhaps back within a reconnection window); its user
    /// data stays.
    pub(crate) fn remove_client(&mut self, client: &Client) {
        self.clients.retain(|c| c != client);
    }

    /// `client` is gone for good: its user data goes too.
    pub(crate) fn forget_client(&mut self, client: &Client) {
        self.remove_client(client);
        self.user_data.remove(client.session_id());
    }

    /// Whether `id` is a live timer; a one-shot timer is forgotten as it fires.
    pub(crate) fn fire_timer(&mut self, id: u64) -> bool {
        match self.timers.get(&id) {
            Some(true) => true,
            Some(false) => self.timers.remove(&id).is_some(),
            None => false,
        }
    }

    /// The id of the `kind` operation `id` answers, forgotten from now on; `None` if no such
    /// operation is waiting.
    pub(crate) fn answer(&mut self, id: u64, kind: OpKind) -> Option<OpId> {
        match self.ops.get(&id) {
            Some(&waiting) if waiting == kind => {
                self.ops.remove(&id);
                Some(OpId::new(id))
            }
            _ => None,
        }
    }

    pub(crate) fn effect_count(&self) -> usize {
        self.effects.len()
    }

    pub(crate) fn effects_since(&self, start: usize) -> &[Effect] {
        &self.effects[start..]
    }

    pub(crate) fn truncate_effects(&mut self, len: usize) {
        self.effects.truncate(len);
    }

    pub(crate) fn push_effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(crate) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// What the runtime keeps between hooks, for a live migration to another version.
    pub(crate) fn carry(&self) -> CtxCarry {
        CtxCarry {
            room_id: self.room_id.clone(),
            room_name: self.room_name.clone(),
            clients: self.clients.iter().map(|c| c.session_id().to_owned()).collect(),
            timers: self.timers.iter().map(|(&id, &repeat)| (id, repeat)).collect(),
            last_timer: self.last_timer,
            ops: self.ops.iter().map(|(&id, &kind)| (id, kind == OpKind::Rooms)).collect(),
            last_op: self.last_op,
        }
    }

    /// The context a migrated room continues with: its state `Default` until the room's
    /// `migrate_in` restores it, and no user data.
    pub(crate) fn from_carry(carry: CtxCarry, now_ms: u64) -> Self
    where
        S: Default,
    {
        let kind = |rooms: bool| if rooms { OpKind::Rooms } else { OpKind::Presence };
        Self {
            state: S::default(),
            user_data: BTreeMap::new(),
            room_id: carry.room_id,
            room_name: carry.room_name,
            now_ms,
            clients: carry.clients.into_iter().map(Client::new).collect(),
            effects: Vec::new(),
            timers: carry.timers.into_iter().collect(),
            last_timer: carry.last_timer,
            ops: carry.ops.into_iter().map(|(id, rooms)| (id, kind(rooms))).collect(),
            last_op: carry.last_op,
        }
    }
}

/// [`Ctx`]'s runtime state in a migration snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct CtxCarry {
    room_id: String,
    room_name: String,
    clients: Vec<String>,
    /// Live timers and whether they repeat.
    timers: Vec<(u64, bool)>,
    last_timer: u64,
    /// Outstanding operations; `true` for room queries.
    ops: Vec<(u64, bool)>,
    last_op: u64,
}

fn outbound(kind: MessageType, payload: Option<ByteBuf>, bytes: bool, after_patch: bool) -> Outbound {
    Outbound { kind, payload, bytes, after_patch }
}
