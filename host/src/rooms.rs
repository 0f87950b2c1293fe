//! Rooms as actors: one tokio task per room owns the room's guest instance, its clients, seats,
//! timers and listing. Everything reaches it through its inbox; guest calls are serialised by
//! design, never by a lock.
//!
//! The actor drains its inbox in batches and makes one guest call per batch, then applies the
//! effects the guest returned (sending frames, updating the listing, timers…).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use odeon_protocol::abi::{Batch, Effect, Event, MessageType, Outbound};
use odeon_protocol::frame::{self, close};
use odeon_protocol::profile::Profile;
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::driver::{Driver, ListingUpdate, RoomListing};
use crate::plugins::{Guest, GuestError, GuestLimits, PluginVersion};
use crate::presence::Presence;
use crate::services::RoomServices;

/// Frames queued to one client's writer; bounded so a slow client cannot grow the room's memory.
pub const CLIENT_QUEUE: usize = 1024;

/// What a room sends to a client connection's writer task.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A binary frame.
    Frame(Bytes),
    /// Close the socket; `None` sends a close frame without a status code.
    Close(Option<u16>, String),
}

/// A client frame for the room, decoded and normalised by `net`.
#[derive(Debug)]
pub enum ClientInput {
    /// The JOIN_ROOM ack.
    Ack,
    /// Consented leave.
    Leave,
    /// A message with a plain MessagePack payload.
    Message(MessageType, Vec<u8>),
    /// A bytes message.
    Bytes(MessageType, Vec<u8>),
}

/// Why a WebSocket could not take a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No reservation for this session (or it expired), or a bad reconnection token.
    Expired,
}

/// Why a seat could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    /// The room is locked or full.
    #[error("room is locked")]
    Locked,
    /// The room is gone.
    #[error("room is disposed")]
    Gone,
}

/// Messages to a room actor.
#[derive(Debug)]
pub enum RoomMsg {
    /// Hold a seat for `session_id` until it connects or the reservation expires.
    ReserveSeat {
        /// The session that will connect.
        session_id: String,
        /// Join options, MessagePack.
        options: Vec<u8>,
        /// Auth data, MessagePack.
        auth: Vec<u8>,
        /// Ok with the listing after the reservation, or why not.
        reply: oneshot::Sender<Result<RoomListing, SeatError>>,
    },
    /// Which session a reconnection token belongs to (0.16 HTTP reconnect).
    CheckReconnectionToken {
        /// The token part of `roomId:token`.
        token: String,
        /// The session id, if the token is valid and its window open.
        reply: oneshot::Sender<Option<String>>,
    },
    /// A WebSocket arrived for a session.
    Connect {
        /// The session id from the URL.
        session_id: String,
        /// The reconnection token from the URL, if any.
        reconnection_token: Option<String>,
        /// Identifies this connection, so stale events from an older one are ignored.
        conn_id: u64,
        /// The connection's writer queue.
        tx: mpsc::Sender<Outgoing>,
        /// Closes the connection at once, skipping the queue (a client too slow to keep up).
        abort: Arc<Notify>,
        /// The client already has the state's reflection (`skipHandshake` on reconnection).
        skip_handshake: bool,
        /// Ok once the client has a slot; JOIN_ROOM follows on `tx`.
        reply: oneshot::Sender<Result<(), ConnectError>>,
    },
    /// A frame from a connected client.
    Input {
        /// The sender's session.
        session_id: String,
        /// The sender's connection.
        conn_id: u64,
        /// What it sent.
        input: ClientInput,
    },
    /// A client's socket closed (by the client, the network, or a protocol error).
    Closed {
        /// The session.
        session_id: String,
        /// The connection.
        conn_id: u64,
        /// The close code as the server saw it.
        code: u16,
    },
    /// The host is shutting down: close everyone with 4001 and dispose.
    Shutdown,
    /// An answer from a shared service (presence, listings) for the guest, already in the
    /// form the guest receives it.
    Service(Event),
}

/// A cloneable handle to a room actor.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    /// The room id.
    pub room_id: Arc<str>,
    tx: mpsc::UnboundedSender<RoomMsg>,
    stats: Arc<RoomStats>,
}

/// Counters a room keeps about itself.
#[derive(Debug, Default)]
pub struct RoomStats {
    /// Calls into the guest.
    pub guest_calls: std::sync::atomic::AtomicU64,
    /// Events delivered to the guest; more events than calls means batching is working.
    pub events: std::sync::atomic::AtomicU64,
    /// Clients connected now.
    pub clients: std::sync::atomic::AtomicUsize,
}

impl RoomHandle {
    /// Queues a message; returns false when the room is gone.
    pub fn send(&self, msg: RoomMsg) -> bool {
        self.tx.send(msg).is_ok()
    }

    /// Whether the actor has exited.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The room's counters.
    pub fn stats(&self) -> &RoomStats {
        &self.stats
    }
}

/// Everything a room needs from its host.
#[derive(Clone)]
pub struct RoomDeps {
    /// Listing storage.
    pub driver: Arc<dyn Driver>,
    /// Shared state for guests' presence operations.
    pub presence: Arc<dyn Presence>,
    /// Called with the room id when the actor exits.
    pub on_exit: Arc<dyn Fn(&str) + Send + Sync>,
    /// Protocol profile of this host.
    pub profile: Profile,
    /// How long a seat reservation waits for its WebSocket.
    pub seat_timeout: Duration,
    /// Guest limits.
    pub limits: GuestLimits,
}

/// Why creation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CreateError {
    /// The room's create hook refused, with a code.
    #[error("{message}")]
    Refused {
        /// Error code (523 unless the room gave one).
        code: u32,
        /// Message.
        message: String,
    },
    /// The guest failed.
    #[error("{0}")]
    Guest(#[from] GuestError),
}

/// Creates a room: instantiates its guest, runs `on_create`, inserts its listing, then spawns the
/// actor on `runtime`. Returns once the room is ready for seat reservations.
pub async fn create(
    plugin: Arc<PluginVersion>,
    listing: RoomListing,
    options: Vec<u8>,
    deps: RoomDeps,
    runtime: &tokio::runtime::Handle,
) -> Result<(RoomHandle, RoomListing), CreateError> {
    let mut listing = listing;
    listing.plugin_version = plugin.version;
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let room_id: Arc<str> = listing.room_id.clone().into();
    let inbox = tx.clone();
    let stats = Arc::new(RoomStats::default());
    let handle = RoomHandle { room_id: room_id.clone(), tx, stats: stats.clone() };
    runtime.spawn(async move {
        let mut guest = match plugin.instantiate(room_id.clone(), deps.limits).await {
            Ok(g) => g,
            Err(e) => {
                let _ = ready_tx.send(Err(CreateError::Guest(e)));
                return;
            }
        };
        let create = Event::Create {
            room_id: listing.room_id.clone(),
            room_name: listing.name.clone(),
            options: options.clone(),
        };
        let batch = Batch { now_ms: crate::clock::now_ms(), events: vec![create] };
        let effects = match guest.events(&batch, deps.limits.create_deadline).await {
            Ok(e) => e.effects,
            Err(e) => {
                let _ = ready_tx.send(Err(CreateError::Guest(e)));
                return;
            }
        };
        if let Some((code, message)) = effects.iter().find_map(|e| match e {
            Effect::CreateFailed { code, message } => Some((*code, message.clone())),
            _ => None,
        }) {
            let _ = ready_tx.send(Err(CreateError::Refused { code, message }));
            return;
        }
        let services = RoomServices::new(
            deps.presence.clone(),
            deps.driver.clone(),
            listing.name.clone(),
            inbox.downgrade(),
        );
        drop(inbox);
        let mut room = Room::new(plugin, guest, listing, deps, rx, services, stats);
        room.apply(effects, &mut Vec::new()).await;
        if !room.publish_listing(true).await {
            let message = "room listing store unavailable".to_string();
            let _ = ready_tx.send(Err(CreateError::Refused { code: 523, message }));
            return;
        }
        let _ = ready_tx.send(Ok(room.listing.clone()));
        room.run().await;
    });
    match ready_rx.await {
        Ok(Ok(listing)) => Ok((handle, listing)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CreateError::Guest(GuestError::Trap("room task ended during creation".into()))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Connected, JOIN_ROOM sent or about to be; frames are queued until the ack.
    Joining,
    /// Acked in a room with state: frames stay queued until its full state is sent.
    AwaitingState,
    /// Acked: frames flow.
    Joined,
}

struct Client {
    conn_id: u64,
    tx: mpsc::Sender<Outgoing>,
    abort: Arc<Notify>,
    skip_handshake: bool,
    token: String,
    state: ClientState,
    /// Frames sent before the ack, flushed on it.
    queued: Vec<Bytes>,
}

struct Reservation {
    options: Vec<u8>,
    auth: Vec<u8>,
    expires: Instant,
}

struct PendingReconnection {
    token: String,
    code: u16,
    expires: Instant,
}

/// The reflection handshake of a room's schema state, per layout.
struct Serializer {
    reflection_v4: Vec<u8>,
    reflection_v5: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Guest(u64),
}

struct Room {
    /// Presence and listing queries for the guest; dropping it ends the room's subscriptions.
    services: RoomServices,
    stats: Arc<RoomStats>,
    plugin: Arc<PluginVersion>,
    guest: Guest,
    listing: RoomListing,
    deps: RoomDeps,
    rx: mpsc::UnboundedReceiver<RoomMsg>,
    clients: HashMap<String, Client>,
    reservations: HashMap<String, Reservation>,
    reconnections: HashMap<String, PendingReconnection>,
    /// Clients dropped for being too slow, reported to the guest with the next batch.
    slow: Vec<String>,
    /// Dropped clients' tokens and close codes, until the guest has seen the drop.
    dropped: HashMap<String, (String, u16)>,
    /// Explicit `lock()`; the listing is also locked while full.
    explicit_lock: bool,
    auto_dispose: bool,
    patch_rate: Duration,
    simulation_interval: Option<Duration>,
    next_tick: Option<Instant>,
    last_tick: Instant,
    timers: BTreeMap<(Instant, u64), (TimerKey, Option<Duration>)>,
    timer_seq: u64,
    /// Messages held until after the next patch.
    after_patch: Vec<(Option<String>, Bytes, Vec<String>)>,
    next_patch: Option<Instant>,
    last_patch: Instant,
    /// The listing as last written to the driver.
    published: RoomListing,
    /// Reflection of the room's schema state; `None` is the "none" serializer.
    serializer: Option<Serializer>,
    /// The guest reported state changes not yet patched.
    state_dirty: bool,
    /// A Patch event is in flight: held messages go out after its patch.
    patch_pending: bool,
    /// Whether a seat was ever reserved; until then the room waits for its first seat until
    /// `first_seat_by`, as Colyseus does, whatever else happens in it.
    ever_seated: bool,
    first_seat_by: Instant,
    disposing: bool,
}

impl Room {
    fn new(
        plugin: Arc<PluginVersion>,
        guest: Guest,
        listing: RoomListing,
        deps: RoomDeps,
        rx: mpsc::UnboundedReceiver<RoomMsg>,
        services: RoomServices,
        stats: Arc<RoomStats>,
    ) -> Self {
        let now = Instant::now();
        let first_seat_by = now + deps.seat_timeout;
        let published = listing.clone();
        Self {
            services,
            stats,
            plugin,
            guest,
            listing,
            deps,
            rx,
            clients: HashMap::new(),
            reservations: HashMap::new(),
            reconnections: HashMap::new(),
            dropped: HashMap::new(),
            slow: Vec::new(),
            explicit_lock: false,
            auto_dispose: true,
            patch_rate: Duration::from_millis(50),
            simulation_interval: None,
            next_tick: None,
            last_tick: now,
            timers: BTreeMap::new(),
            timer_seq: 0,
            after_patch: Vec::new(),
            next_patch: None,
            last_patch: now,
            published,
            serializer: None,
            state_dirty: false,
            patch_pending: false,
            ever_seated: false,
            first_seat_by,
            disposing: false,
        }
    }

    fn tag(&self) -> &str {
        &self.listing.room_id
    }

    async fn run(mut self) {
        tracing::debug!(room = self.tag(), room_type = %self.listing.name, version = self.plugin.version, "room created");
        let mut events = Vec::new();
        loop {
            // Follow-up events from the last call (drops after a kick, say) go to the guest at
            // once; otherwise wait for the inbox or the next deadline.
            if events.is_empty() {
                self.wait(&mut events).await;
            }
            self.drop_slow_clients(&mut events);
            if !events.is_empty() && !self.call(&mut events).await {
                return;
            }
            // Seats reserved or expired without a guest call still change the listing.
            self.refresh_listing().await;
            if self.disposing || self.should_dispose() {
                self.dispose().await;
                return;
            }
        }
    }

    /// Waits for inbox messages or the next deadline and turns them into events.
    async fn wait(&mut self, events: &mut Vec<Event>) {
        let deadline = self.next_deadline();
        tokio::select! {
            msg = self.rx.recv() => {
                // The matchmaker holds a handle to every live room, so the inbox never closes
                // while the room runs; `None` can only mean the host is going away.
                let Some(msg) = msg else {
                    self.disposing = true;
                    return;
                };
                self.handle(msg, events);
                // Drain what else is already queued, so one guest call serves the batch.
                for _ in 0..256 {
                    match self.rx.try_recv() {
                        Ok(msg) => self.handle(msg, events),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep_until(deadline) => self.fire_due(events),
        }
    }

    /// Delivers the pending events to the guest and applies its effects. Returns false when the
    /// guest failed and the room is gone.
    async fn call(&mut self, events: &mut Vec<Event>) -> bool {
        // Clients whose join this batch carries get JOIN_ROOM after the guest accepted them.
        let joining: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Join { session_id, .. } | Event::Reconnect { session_id } => Some(session_id.clone()),
                _ => None,
            })
            .collect();
        let dropped: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Drop { session_id, .. } => Some(session_id.clone()),
                _ => None,
            })
            .collect();
        let batch = Batch { now_ms: crate::clock::now_ms(), events: std::mem::take(events) };
        self.stats.guest_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats.events.fetch_add(batch.events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let effects = match self.guest.events(&batch, self.deps.limits.call_deadline).await {
            Ok(e) => e.effects,
            Err(e) => {
                self.crash(e).await;
                return false;
            }
        };
        let mut follow_up = Vec::new();
        let rejected = self.apply(effects, &mut follow_up).await;
        for sid in dropped {
            // Without an AllowReconnection the SDK already ran the leave hook: the seat is gone.
            self.dropped.remove(&sid);
        }
        for sid in joining {
            if rejected.contains(&sid) {
                continue;
            }
            if let Some(c) = self.clients.get(&sid) {
                let frame = match &self.serializer {
                    Some(_) if c.skip_handshake => {
                        frame::join_room(self.deps.profile, &c.token, "schema", &[])
                    }
                    Some(s) => {
                        let reflection = if self.deps.profile.length_prefixed_join() {
                            &s.reflection_v5
                        } else {
                            &s.reflection_v4
                        };
                        frame::join_room(self.deps.profile, &c.token, "schema", reflection)
                    }
                    None => frame::join_room(self.deps.profile, &c.token, "none", &[]),
                };
                let _ = c.tx.try_send(Outgoing::Frame(frame.into()));
            }
        }
        if std::mem::take(&mut self.patch_pending) {
            // The guest had nothing to patch after all: held messages go out now.
            self.flush_after_patch();
        }
        self.drop_slow_clients(&mut follow_up);
        self.refresh_listing().await;
        events.extend(follow_up);
        true
    }

    fn handle(&mut self, msg: RoomMsg, events: &mut Vec<Event>) {
        match msg {
            RoomMsg::ReserveSeat { session_id, options, auth, reply } => {
                if self.disposing || self.is_locked() {
                    let _ = reply.send(Err(SeatError::Locked));
                    return;
                }
                let expires = Instant::now() + self.deps.seat_timeout;
                self.reservations.insert(session_id, Reservation { options, auth, expires });
                self.ever_seated = true;
                self.listing.clients = self.seats();
                self.listing.locked = self.is_locked();
                let _ = reply.send(Ok(self.listing.clone()));
            }
            RoomMsg::CheckReconnectionToken { token, reply } => {
                let found =
                    self.reconnections.iter().find(|(_, p)| p.token == token).map(|(sid, _)| sid.clone());
                let _ = reply.send(found);
            }
            RoomMsg::Connect {
                session_id,
                reconnection_token,
                conn_id,
                tx,
                abort,
                skip_handshake,
                reply,
            } => {
                // A reconnection keeps its token and skips the join hook; a new seat gets both.
                let (token, event) = match reconnection_token {
                    Some(token) => {
                        if self.reconnections.get(&session_id).is_none_or(|p| p.token != token) {
                            let _ = reply.send(Err(ConnectError::Expired));
                            return;
                        }
                        self.reconnections.remove(&session_id);
                        (token, Event::Reconnect { session_id: session_id.clone() })
                    }
                    None => {
                        let Some(seat) = self.reservations.remove(&session_id) else {
                            let _ = reply.send(Err(ConnectError::Expired));
                            return;
                        };
                        let join = Event::Join {
                            session_id: session_id.clone(),
                            options: seat.options,
                            auth: seat.auth,
                        };
                        (crate::ids::generate(), join)
                    }
                };
                let state = ClientState::Joining;
                let client = Client { conn_id, tx, abort, token, skip_handshake, state, queued: Vec::new() };
                self.clients.insert(session_id, client);
                events.push(event);
                let _ = reply.send(Ok(()));
            }
            RoomMsg::Input { session_id, conn_id, input } => {
                let Some(client) = self.clients.get_mut(&session_id).filter(|c| c.conn_id == conn_id) else {
                    return;
                };
                match input {
                    ClientInput::Ack => {
                        if client.state == ClientState::Joining {
                            if self.serializer.is_some() {
                                // Full state first, then what was queued during the join.
                                client.state = ClientState::AwaitingState;
                                if !events.iter().any(|e| matches!(e, Event::FullState)) {
                                    events.push(Event::FullState);
                                }
                            } else {
                                client.release();
                            }
                        }
                    }
                    ClientInput::Leave => {
                        let client = self.clients.remove(&session_id).expect("checked above");
                        let _ = client.tx.try_send(Outgoing::Close(Some(close::CONSENTED), String::new()));
                        events.push(Event::Leave { session_id, code: close::CONSENTED });
                    }
                    ClientInput::Message(kind, payload) => {
                        events.push(Event::Message { session_id, kind, payload });
                    }
                    ClientInput::Bytes(kind, payload) => {
                        events.push(Event::Bytes { session_id, kind, payload });
                    }
                }
            }
            RoomMsg::Closed { session_id, conn_id, code } => {
                if self.clients.get(&session_id).is_some_and(|c| c.conn_id == conn_id) {
                    self.drop_client(session_id, code, events);
                }
            }
            RoomMsg::Shutdown => {
                for (_, c) in self.clients.drain() {
                    let _ = c.tx.try_send(Outgoing::Close(Some(close::SERVER_SHUTDOWN), String::new()));
                }
                self.disposing = true;
            }
            RoomMsg::Service(event) => events.push(event),
        }
    }

    /// Applies effects; returns the sessions whose join was rejected.
    async fn apply(&mut self, effects: Vec<Effect>, events: &mut Vec<Event>) -> HashSet<String> {
        let mut rejected = HashSet::new();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(Some(to), frame, Vec::new());
                    } else {
                        self.send_to(&to, frame);
                    }
                }
                Effect::Broadcast { message, except } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(None, frame, except);
                    } else {
                        self.broadcast(frame, &except);
                    }
                }
                Effect::Error { to, code, message } => {
                    self.send_to(&to, frame::error(code, &message).into());
                }
                Effect::Leave { session_id, code } => {
                    let Some(c) = self.clients.get(&session_id) else { continue };
                    let _ = c.tx.try_send(Outgoing::Close(code, String::new()));
                    // Colyseus treats a server-side close like any other: only 4000 is consented.
                    match code.unwrap_or(close::NO_STATUS) {
                        close::CONSENTED => {
                            self.clients.remove(&session_id);
                            events.push(Event::Leave { session_id, code: close::CONSENTED });
                        }
                        code => self.drop_client(session_id, code, events),
                    }
                }
                Effect::RejectJoin { session_id, code, message } => {
                    if let Some(c) = self.clients.remove(&session_id) {
                        let _ = c.tx.try_send(Outgoing::Frame(frame::error(code, &message).into()));
                        let _ = c.tx.try_send(Outgoing::Close(Some(close::WITH_ERROR), message));
                    }
                    rejected.insert(session_id);
                }
                Effect::CreateFailed { code, message } => {
                    tracing::warn!(
                        room = self.tag(),
                        code,
                        "CreateFailed outside creation ignored: {message}"
                    );
                }
                Effect::Lock => self.explicit_lock = true,
                Effect::Unlock => self.explicit_lock = false,
                Effect::SetMetadata(bytes) => match rmp_serde::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(map)) => self.listing.metadata.extend(map),
                    _ => tracing::warn!(room = self.tag(), "metadata must be a map; ignored"),
                },
                Effect::SetPrivate(p) => self.listing.private = p,
                Effect::SetMaxClients(n) => self.listing.max_clients = (n > 0).then_some(n),
                Effect::SetPatchRate(ms) => {
                    self.patch_rate = Duration::from_millis(ms as u64);
                    self.next_patch = None;
                    self.schedule_patch();
                }
                Effect::SetSimulationInterval(ms) => {
                    self.simulation_interval = (ms > 0).then(|| Duration::from_millis(ms as u64));
                    self.last_tick = Instant::now();
                    self.next_tick = self.simulation_interval.map(|d| self.last_tick + d);
                }
                Effect::SetAutoDispose(v) => self.auto_dispose = v,
                Effect::AllowReconnection { session_id, seconds } => {
                    let Some((token, code)) = self.dropped.remove(&session_id) else { continue };
                    let expires = Instant::now() + Duration::from_secs(seconds as u64);
                    self.reconnections.insert(session_id, PendingReconnection { token, code, expires });
                }
                Effect::Disconnect { code } => {
                    for (_, c) in self.clients.drain() {
                        let _ = c.tx.try_send(Outgoing::Close(Some(code), String::new()));
                    }
                    self.disposing = true;
                }
                Effect::SetTimer { id, delay_ms, repeat } => {
                    let delay = Duration::from_millis(delay_ms.max(if repeat { 1 } else { 0 }));
                    self.timer_seq += 1;
                    self.timers.insert(
                        (Instant::now() + delay, self.timer_seq),
                        (TimerKey::Guest(id), repeat.then_some(delay)),
                    );
                }
                Effect::ClearTimer { id } => self.timers.retain(|_, (k, _)| *k != TimerKey::Guest(id)),
                Effect::SetSerializer { reflection_v4, reflection_v5 } => {
                    self.serializer = Some(Serializer { reflection_v4, reflection_v5 });
                }
                Effect::StateChanged => {
                    self.state_dirty = true;
                    self.schedule_patch();
                }
                Effect::FullState(bytes) => {
                    let frame = state_frame(frame::code::ROOM_STATE, &bytes);
                    for c in self.clients.values_mut().filter(|c| c.state == ClientState::AwaitingState) {
                        let _ = c.tx.try_send(Outgoing::Frame(frame.clone()));
                        c.release();
                    }
                }
                Effect::StatePatch(bytes) => {
                    // Encoded once by the guest, shared by every joined client.
                    let frame = state_frame(frame::code::ROOM_STATE_PATCH, &bytes);
                    let mut slow = Vec::new();
                    for (sid, c) in self.clients.iter_mut().filter(|(_, c)| c.state == ClientState::Joined) {
                        if !c.push(frame.clone()) {
                            slow.push(sid.clone());
                        }
                    }
                    for sid in slow {
                        self.drop_slow(&sid);
                    }
                    self.patch_pending = false;
                    self.flush_after_patch();
                }
                Effect::Presence { op_id, op } => self.services.presence(op_id, op),
                Effect::QueryRooms { op_id, name } => self.services.query_rooms(op_id, name),
            }
        }
        rejected
    }

    fn send_to(&mut self, session_id: &str, frame: Bytes) {
        let slow = match self.clients.get_mut(session_id) {
            Some(c) => !c.push(frame),
            None => false,
        };
        if slow {
            self.drop_slow(session_id);
        }
    }

    fn broadcast(&mut self, frame: Bytes, except: &[String]) {
        let mut slow = Vec::new();
        for (sid, c) in self.clients.iter_mut() {
            if except.iter().any(|e| e == sid) {
                continue;
            }
            if !c.push(frame.clone()) {
                slow.push(sid.clone());
            }
        }
        for sid in slow {
            self.drop_slow(&sid);
        }
    }

    /// A client whose queue is full is closed at once and dropped from the room (the guest sees a
    /// non-consented drop); the room carries on.
    fn drop_slow(&mut self, session_id: &str) {
        if let Some(c) = self.clients.get(session_id) {
            tracing::warn!(room = self.tag(), session = session_id, "client too slow; closing it");
            c.abort.notify_one();
            self.slow.push(session_id.to_string());
        }
    }

    fn drop_slow_clients(&mut self, events: &mut Vec<Event>) {
        for sid in std::mem::take(&mut self.slow) {
            self.drop_client(sid, close::WITH_ERROR, events);
        }
    }

    fn hold_after_patch(&mut self, to: Option<String>, frame: Bytes, except: Vec<String>) {
        self.after_patch.push((to, frame, except));
        if self.patch_rate.is_zero() {
            // Patches are off: there is no "next patch" to wait for.
            self.flush_after_patch();
        } else {
            self.schedule_patch();
        }
    }

    /// Plans the next patch tick, at most one patch interval after the previous one, when there
    /// is something to patch or held messages to release. Idle rooms get no patch ticks.
    fn schedule_patch(&mut self) {
        if self.next_patch.is_some() || self.patch_rate.is_zero() {
            return;
        }
        if self.state_dirty || !self.after_patch.is_empty() {
            self.next_patch = Some((self.last_patch + self.patch_rate).max(Instant::now()));
        }
    }

    fn flush_after_patch(&mut self) {
        for (to, frame, except) in std::mem::take(&mut self.after_patch) {
            match to {
                Some(sid) => self.send_to(&sid, frame),
                None => self.broadcast(frame, &except),
            }
        }
    }

    /// Removes a client whose connection ended without consent, remembering its token until the
    /// guest has seen the drop (it may keep the seat for a reconnection).
    fn drop_client(&mut self, session_id: String, code: u16, events: &mut Vec<Event>) {
        if let Some(c) = self.clients.remove(&session_id) {
            self.dropped.insert(session_id.clone(), (c.token, code));
            events.push(Event::Drop { session_id, code });
        }
    }

    fn seats(&self) -> u32 {
        (self.clients.len() + self.reservations.len() + self.reconnections.len()) as u32
    }

    fn is_locked(&self) -> bool {
        self.explicit_lock || self.listing.max_clients.is_some_and(|m| self.seats() >= m)
    }

    /// Brings the listing up to date and writes it to the driver when something a matchmaker
    /// sees changed (never on batches that changed nothing: the driver may be a database).
    async fn refresh_listing(&mut self) {
        self.stats.clients.store(self.clients.len(), std::sync::atomic::Ordering::Relaxed);
        let (clients, locked) = (self.seats(), self.is_locked());
        self.listing.clients = clients;
        self.listing.locked = locked;
        let l = &self.listing;
        let p = &self.published;
        let changed = (l.clients, l.locked, l.private, l.max_clients)
            != (p.clients, p.locked, p.private, p.max_clients)
            || l.metadata != p.metadata;
        // A failed write (the driver is down) is retried on the next refresh.
        if changed && self.publish_listing(false).await {
            self.published = self.listing.clone();
        }
    }

    /// Writes the listing to the driver. Returns an owned future: holding `&self` across the
    /// await would make the actor's future hold the (non-`Sync`) guest store.
    fn publish_listing(&self, insert: bool) -> impl Future<Output = bool> + Send + 'static {
        let presence = self.deps.presence.clone();
        let driver = self.deps.driver.clone();
        let listing = self.listing.clone();
        async move {
            let room_id = listing.room_id.clone();
            let result = if insert {
                driver.insert(listing).await
            } else {
                let update = ListingUpdate {
                    clients: Some(listing.clients),
                    locked: Some(listing.locked),
                    private: Some(listing.private),
                    max_clients: Some(listing.max_clients),
                    metadata: Some(listing.metadata),
                };
                driver.update(&room_id, update).await
            };
            match result {
                Ok(()) => {
                    announce(&presence, &room_id, false).await;
                    true
                }
                Err(e) => {
                    tracing::warn!(room = %room_id, "listing not updated: {e}");
                    false
                }
            }
        }
    }

    fn should_dispose(&self) -> bool {
        // Auto-dispose applies once the room has had a seat (its last one is gone) or its first
        // seat is overdue; a room busy with its own work before the first join stays.
        self.auto_dispose && self.seats() == 0 && (self.ever_seated || Instant::now() >= self.first_seat_by)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timers = self.timers.keys().next().map(|(t, _)| *t);
        let seats = self.reservations.values().map(|r| r.expires).min();
        let reconnects = self.reconnections.values().map(|r| r.expires).min();
        let first_seat = (!self.ever_seated).then_some(self.first_seat_by);
        [timers, seats, reconnects, self.next_tick, self.next_patch, first_seat].into_iter().flatten().min()
    }

    fn fire_due(&mut self, events: &mut Vec<Event>) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (TimerKey::Guest(id), repeat) = entry.remove();
            events.push(Event::Timer { id });
            if let Some(every) = repeat {
                self.timer_seq += 1;
                self.timers.insert((now + every, self.timer_seq), (TimerKey::Guest(id), Some(every)));
            }
        }
        self.reservations.retain(|_, r| r.expires > now);
        let expired: Vec<_> = self
            .reconnections
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(s, p)| (s.clone(), p.code))
            .collect();
        for (session_id, code) in expired {
            self.reconnections.remove(&session_id);
            events.push(Event::Leave { session_id, code });
        }
        if let (Some(at), Some(every)) = (self.next_tick, self.simulation_interval)
            && at <= now
        {
            let dt = now.duration_since(self.last_tick);
            self.last_tick = now;
            self.next_tick = Some(now + every);
            events.push(Event::Tick { dt_ms: dt.as_secs_f64() * 1000.0 });
        }
        if self.next_patch.is_some_and(|at| at <= now) {
            self.next_patch = None;
            self.last_patch = now;
            if self.serializer.is_some() && std::mem::take(&mut self.state_dirty) {
                events.push(Event::Patch);
                self.patch_pending = true;
            } else {
                self.flush_after_patch();
            }
        }
    }

    /// The guest failed: close its clients with 4002 and remove the room. Other rooms are
    /// untouched; the guest instance is dropped, never called again.
    async fn crash(&mut self, error: GuestError) {
        tracing::error!(
            room = self.tag(), room_type = %self.listing.name, version = self.plugin.version,
            "room disposed after guest failure: {error}"
        );
        for (_, c) in self.clients.drain() {
            let _ = c.tx.try_send(Outgoing::Close(Some(close::WITH_ERROR), String::new()));
        }
        self.remove_listing().await;
    }

    async fn dispose(&mut self) {
        let batch = Batch { now_ms: crate::clock::now_ms(), events: vec![Event::Dispose] };
        if let Err(e) = self.guest.events(&batch, self.deps.limits.call_deadline).await {
            tracing::warn!(room = self.tag(), "dispose hook failed: {e}");
        }
        for (_, c) in self.clients.drain() {
            let _ = c.tx.try_send(Outgoing::Close(Some(close::CONSENTED), String::new()));
        }
        tracing::debug!(room = self.tag(), "room disposed");
        self.remove_listing().await;
    }

    async fn remove_listing(&mut self) {
        if let Err(e) = self.deps.driver.remove(&self.listing.room_id).await {
            tracing::warn!(room = self.tag(), "listing not removed: {e}");
        }
        announce(&self.deps.presence, &self.listing.room_id, true).await;
        (self.deps.on_exit)(&self.listing.room_id);
        self.rx.close();
    }
}

impl Client {
    /// The client may receive frames now: send what was held for it.
    fn release(&mut self) {
        self.state = ClientState::Joined;
        for frame in self.queued.drain(..) {
            let _ = self.tx.try_send(Outgoing::Frame(frame));
        }
    }

    /// Queues a frame; returns false when the client's queue is full.
    fn push(&mut self, frame: Bytes) -> bool {
        match self.state {
            ClientState::Joining | ClientState::AwaitingState => {
                self.queued.push(frame);
                true
            }
            ClientState::Joined => {
                !matches!(self.tx.try_send(Outgoing::Frame(frame)), Err(mpsc::error::TrySendError::Full(_)))
            }
        }
    }
}

/// Tells lobbies on every process that a listing changed (`roomId,0`) or went away
/// (`roomId,1`), on the `$lobby` channel as Colyseus does.
async fn announce(presence: &Arc<dyn Presence>, room_id: &str, removed: bool) {
    let message = format!("{room_id},{}", u8::from(removed));
    if let Err(e) = presence.publish(LOBBY_CHANNEL, &message).await {
        tracing::debug!(room = room_id, "lobby not told: {e}");
    }
}

/// The channel on which listing changes are announced.
pub const LOBBY_CHANNEL: &str = "$lobby";

/// ROOM_STATE or ROOM_STATE_PATCH around the guest's encoded body.
fn state_frame(code: u8, body: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(body.len() + 1);
    frame.push(code);
    frame.extend_from_slice(body);
    frame.into()
}

fn outbound_frame(message: &Outbound) -> Bytes {
    frame::room_data(&message.kind, message.payload.as_deref().map(|b| b.as_ref()), message.bytes).into()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Builds the listing of a new room.
pub fn new_listing(
    name: &str,
    room_id: String,
    process_id: &str,
    metadata: Map<String, Value>,
    create_filters: Map<String, Value>,
) -> RoomListing {
    RoomListing {
        name: name.to_string(),
        room_id,
        process_id: process_id.to_string(),
        clients: 0,
        max_clients: None,
        locked: false,
        private: false,
        unlisted: false,
        metadata,
        create_filters,
        created_at: crate::clock::iso_now(),
        plugin_version: 0,
        public_address: None,
    }
}
