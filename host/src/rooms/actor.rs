//! The room actor's loop: wait for the inbox or the schedule, batch, call the guest once, apply
//! its effects.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use odeon_protocol::abi::{Batch, Effect, Event, Outbound};
use odeon_protocol::frame::{self, close};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clients::{Client, ClientState, Clients};
use super::listing::ListingPublisher;
use super::schedule::Schedule;
use super::seats::Seats;
use super::{ClientInput, ConnectError, RoomDeps, RoomMsg, RoomStats, SeatError};
use crate::driver::RoomListing;
use crate::plugins::{Guest, GuestError, PluginVersion};
use crate::services::RoomServices;

/// Most inbox messages one guest call serves.
const BATCH_MESSAGES: usize = 256;
/// Most client input bytes one guest call serves (at least one message always goes).
const BATCH_BYTES: usize = 1 << 20;

/// The reflection handshake of a room's schema state, per layout.
struct Serializer {
    reflection_v4: Vec<u8>,
    reflection_v5: Vec<u8>,
}

pub(super) struct Room {
    /// Presence and listing queries for the guest; dropping it ends the room's subscriptions.
    services: RoomServices,
    stats: Arc<RoomStats>,
    plugin: Arc<PluginVersion>,
    guest: Guest,
    listing: RoomListing,
    publisher: Option<ListingPublisher>,
    deps: RoomDeps,
    rx: mpsc::UnboundedReceiver<RoomMsg>,
    clients: Clients,
    seats: Seats,
    schedule: Schedule,
    /// Explicit `lock()`; the listing is also locked while full.
    explicit_lock: bool,
    auto_dispose: bool,
    /// Messages held until after the next patch: recipient (or all but `except`), frame.
    after_patch: Vec<(Option<String>, Bytes, Vec<String>)>,
    /// Reflection of the room's schema state; `None` is the "none" serializer.
    serializer: Option<Serializer>,
    /// The guest reported state changes not yet patched.
    state_dirty: bool,
    /// A Patch event is in flight: held messages go out after its patch.
    patch_pending: bool,
    /// The guest has no tick hook (it said so on its first tick).
    ticks_unhandled: bool,
    disposing: bool,
    /// A host limit the guest's last effects broke; the room fails once they are applied.
    fault: Option<GuestError>,
}

/// The most timers one room may have pending.
pub(super) const MAX_TIMERS: usize = 10_000;

impl Room {
    pub(super) fn new(
        plugin: Arc<PluginVersion>,
        guest: Guest,
        listing: RoomListing,
        deps: RoomDeps,
        rx: mpsc::UnboundedReceiver<RoomMsg>,
        services: RoomServices,
        stats: Arc<RoomStats>,
    ) -> Self {
        let now = Instant::now();
        Self {
            services,
            stats,
            plugin,
            guest,
            listing,
            publisher: None,
            clients: Clients::new(deps.hold_bytes),
            seats: Seats::new(deps.seat_timeout, now),
            schedule: Schedule::new(now),
            deps,
            rx,
            explicit_lock: false,
            auto_dispose: true,
            after_patch: Vec::new(),
            serializer: None,
            state_dirty: false,
            patch_pending: false,
            ticks_unhandled: false,
            disposing: false,
            fault: None,
        }
    }

    pub(super) fn deps(&self) -> &RoomDeps {
        &self.deps
    }

    fn tag(&self) -> &str {
        &self.listing.room_id
    }

    /// The listing with its seat count and lock brought up to date.
    pub(super) fn listing_now(&mut self) -> RoomListing {
        self.listing.clients = self.seat_count();
        self.listing.locked = self.is_locked();
        self.listing.clone()
    }

    pub(super) fn start_publishing(&mut self, published: RoomListing) {
        self.publisher =
            Some(ListingPublisher::start(self.deps.driver.clone(), self.deps.presence.clone(), published));
    }

    pub(super) async fn run(mut self) {
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
            self.refresh_listing();
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
                let mut bytes = self.handle(msg, events);
                // Drain what else is already queued, so one guest call serves the batch.
                for _ in 1..BATCH_MESSAGES {
                    if bytes >= BATCH_BYTES {
                        break;
                    }
                    match self.rx.try_recv() {
                        Ok(msg) => bytes += self.handle(msg, events),
                        Err(_) => break,
                    }
                }
            }
            () = sleep_until(deadline) => self.fire_due(events),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.schedule.next_deadline(), self.seats.next_deadline()].into_iter().flatten().min()
    }

    fn fire_due(&mut self, events: &mut Vec<Event>) {
        let now = Instant::now();
        let due = self.schedule.take_due(now);
        events.extend(due.timers.into_iter().map(|id| Event::Timer { id }));
        for (session_id, code) in self.seats.expire(now) {
            events.push(Event::Leave { session_id, code });
        }
        if let Some(dt_ms) = due.tick_dt_ms {
            events.push(Event::Tick { dt_ms });
        }
        if due.patch {
            if self.serializer.is_some() && std::mem::take(&mut self.state_dirty) {
                events.push(Event::Patch);
                self.patch_pending = true;
            } else {
                self.flush_after_patch();
            }
        }
    }

    /// Delivers the pending events to the guest and applies its effects. Returns false when the
    /// guest failed and the room is gone.
    async fn call(&mut self, events: &mut Vec<Event>) -> bool {
        // Clients whose join this batch carries get JOIN_ROOM after the guest accepted them.
        let mut joining = Vec::new();
        let mut dropped = Vec::new();
        for e in events.iter() {
            match e {
                Event::Join { session_id, .. } | Event::Reconnect { session_id } => {
                    joining.push(session_id.clone())
                }
                Event::Drop { session_id, .. } => dropped.push(session_id.clone()),
                _ => {}
            }
        }
        let batch = Batch { now_ms: crate::clock::now_ms(), events: std::mem::take(events) };
        self.stats.guest_calls.fetch_add(1, Ordering::Relaxed);
        self.stats.events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        let effects = match self.guest.events(&batch, self.deps.limits.call_deadline).await {
            Ok(e) => e.effects,
            Err(e) => {
                self.crash(e);
                return false;
            }
        };
        let mut follow_up = Vec::new();
        let rejected = self.apply(effects, &mut follow_up);
        if let Some(fault) = self.take_fault() {
            self.crash(fault);
            return false;
        }
        for sid in dropped {
            // Without an AllowReconnection the SDK already ran the leave hook: the seat is gone.
            self.seats.forget_drop(&sid);
        }
        for sid in joining.iter().filter(|s| !rejected.contains(*s)) {
            if let Some(frame) = self.join_frame(sid) {
                self.clients.send_now(sid, &frame);
            }
        }
        if std::mem::take(&mut self.patch_pending) {
            // The guest had nothing to patch after all: held messages go out now.
            self.flush_after_patch();
        }
        self.drop_slow_clients(&mut follow_up);
        events.extend(follow_up);
        true
    }

    /// JOIN_ROOM for a client the guest accepted.
    fn join_frame(&self, session_id: &str) -> Option<Bytes> {
        let c = self.clients.get(session_id)?;
        let profile = self.deps.profile;
        let frame = match &self.serializer {
            Some(_) if c.skip_handshake => frame::join_room(profile, &c.token, "schema", &[]),
            Some(s) => {
                let reflection =
                    if profile.length_prefixed_join() { &s.reflection_v5 } else { &s.reflection_v4 };
                frame::join_room(profile, &c.token, "schema", reflection)
            }
            None => frame::join_room(profile, &c.token, "none", &[]),
        };
        Some(frame.into())
    }

    /// Turns one inbox message into events; returns the client input bytes it carried.
    fn handle(&mut self, msg: RoomMsg, events: &mut Vec<Event>) -> usize {
        match msg {
            RoomMsg::ReserveSeat { session_id, options, auth, reply } => {
                if self.disposing || self.is_locked() {
                    let _ = reply.send(Err(SeatError::Locked));
                    return 0;
                }
                self.seats.reserve(session_id, options, auth, Instant::now());
                let _ = reply.send(Ok(self.listing_now()));
            }
            RoomMsg::CheckReconnectionToken { token, reply } => {
                let _ = reply.send(self.seats.session_of_token(&token));
            }
            RoomMsg::Connect { session_id, reconnection_token, conn_id, wire, skip_handshake, reply } => {
                // A reconnection keeps its token and skips the join hook; a new seat gets both.
                let (token, event) = match reconnection_token {
                    Some(token) => {
                        if !self.seats.take_reconnection(&session_id, &token) {
                            let _ = reply.send(Err(ConnectError::Expired));
                            return 0;
                        }
                        (token, Event::Reconnect { session_id: session_id.clone() })
                    }
                    None => {
                        let Some(seat) = self.seats.take_reservation(&session_id) else {
                            let _ = reply.send(Err(ConnectError::Expired));
                            return 0;
                        };
                        // A second seat for a session still connected (an auth hook that
                        // names sessions, say) replaces the first connection: the guest sees
                        // that one leave before this one joins.
                        if let Some(old) = self.clients.remove(&session_id) {
                            old.wire.close(Some(close::WITH_ERROR), "");
                            events.push(Event::Leave {
                                session_id: session_id.clone(),
                                code: close::WITH_ERROR,
                            });
                        }
                        let join = Event::Join {
                            session_id: session_id.clone(),
                            options: seat.options,
                            auth: seat.auth,
                        };
                        (crate::ids::generate(), join)
                    }
                };
                self.clients.insert(session_id, Client::new(conn_id, wire, token, skip_handshake));
                events.push(event);
                let _ = reply.send(Ok(()));
            }
            RoomMsg::Input { session_id, conn_id, input, cost } => {
                let Some(client) = self.clients.get_mut(&session_id).filter(|c| c.conn_id == conn_id) else {
                    return 0;
                };
                client.wire.release_inbound(cost);
                let session_id = session_id.to_string();
                let bytes = match &input {
                    ClientInput::Message(_, p) | ClientInput::Bytes(_, p) => p.len(),
                    ClientInput::Ack | ClientInput::Leave => 0,
                };
                match input {
                    ClientInput::Ack => {
                        if client.state == ClientState::Joining {
                            if self.serializer.is_some() {
                                // Full state first, then what was held during the join.
                                client.state = ClientState::AwaitingState;
                                if !events.iter().any(|e| matches!(e, Event::FullState)) {
                                    events.push(Event::FullState);
                                }
                            } else {
                                self.clients.release(&session_id);
                            }
                        }
                    }
                    ClientInput::Leave => {
                        let client = self.clients.remove(&session_id).expect("checked above");
                        client.wire.close(Some(close::CONSENTED), "");
                        events.push(Event::Leave { session_id, code: close::CONSENTED });
                    }
                    ClientInput::Message(kind, payload) => {
                        events.push(Event::Message { session_id, kind, payload })
                    }
                    ClientInput::Bytes(kind, payload) => {
                        events.push(Event::Bytes { session_id, kind, payload })
                    }
                }
                return bytes;
            }
            RoomMsg::Closed { session_id, conn_id, code } => {
                if self.clients.get(&session_id).is_some_and(|c| c.conn_id == conn_id) {
                    self.drop_client(session_id, code, events);
                }
            }
            RoomMsg::Shutdown => {
                self.clients.close_all(close::SERVER_SHUTDOWN);
                self.disposing = true;
            }
            RoomMsg::Service(event) => events.push(event),
            RoomMsg::Republish => {
                if let Some(p) = &mut self.publisher {
                    p.rewrite(&self.listing);
                }
            }
        }
        0
    }

    /// Applies effects; returns the sessions whose join was rejected.
    pub(super) fn apply(&mut self, effects: Vec<Effect>, events: &mut Vec<Event>) -> HashSet<String> {
        let mut rejected = HashSet::new();
        let now = Instant::now();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(Some(to), frame, Vec::new());
                    } else {
                        self.clients.send_to(&to, &frame);
                    }
                }
                Effect::Broadcast { message, except } => {
                    let frame = outbound_frame(&message);
                    if message.after_patch {
                        self.hold_after_patch(None, frame, except);
                    } else {
                        self.clients.broadcast(&frame, &except);
                    }
                }
                Effect::Error { to, code, message } => {
                    self.clients.send_to(&to, &frame::error(code, &message).into());
                }
                Effect::Leave { session_id, code } => {
                    if self.clients.get(&session_id).is_none() {
                        continue;
                    }
                    self.clients.close(&session_id, code);
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
                        let _ = c.wire.send(&frame::error(code, &message).into());
                        c.wire.close(Some(close::WITH_ERROR), &message);
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
                    self.schedule.set_patch_rate(Duration::from_millis(u64::from(ms)), now);
                    if !self.schedule.patches_on() {
                        self.flush_after_patch();
                    }
                }
                Effect::SetSimulationInterval(ms) => {
                    // A room without a tick hook never gets ticks: they would be empty calls.
                    let every =
                        (ms > 0 && !self.ticks_unhandled).then(|| Duration::from_millis(u64::from(ms)));
                    self.schedule.set_simulation_interval(every, now);
                }
                Effect::SetAutoDispose(v) => self.auto_dispose = v,
                Effect::AllowReconnection { session_id, seconds } => {
                    self.seats.allow_reconnection(&session_id, seconds, now);
                }
                Effect::Disconnect { code } => {
                    self.clients.close_all(code);
                    self.disposing = true;
                }
                Effect::SetTimer { id, delay_ms, repeat } => {
                    if self.schedule.timer_count() >= MAX_TIMERS {
                        self.fault
                            .get_or_insert(GuestError::Flood(format!("over {MAX_TIMERS} pending timers")));
                        continue;
                    }
                    let delay = Duration::from_millis(delay_ms.max(if repeat { 1 } else { 0 }));
                    self.schedule.set_timer(id, delay, repeat, now);
                }
                Effect::ClearTimer { id } => self.schedule.clear_timer(id),
                Effect::SetSerializer { reflection_v4, reflection_v5 } => {
                    self.serializer = Some(Serializer { reflection_v4, reflection_v5 });
                }
                Effect::StateChanged => {
                    self.state_dirty = true;
                    self.schedule.want_patch(now);
                }
                Effect::FullState(bytes) => {
                    self.clients.full_state(&state_frame(frame::code::ROOM_STATE, &bytes))
                }
                Effect::StatePatch(bytes) => {
                    // Encoded once by the guest, shared by every joined client.
                    self.clients.patch(&state_frame(frame::code::ROOM_STATE_PATCH, &bytes));
                    self.patch_pending = false;
                    self.flush_after_patch();
                }
                Effect::Presence { op_id, op } => self.services.presence(op_id, op),
                Effect::QueryRooms { op_id, name } => self.services.query_rooms(op_id, name),
                Effect::TicksUnhandled => {
                    self.ticks_unhandled = true;
                    self.schedule.set_simulation_interval(None, now);
                }
            }
        }
        rejected
    }

    /// Writes what the last step sent, then drops the clients that could not take it.
    fn drop_slow_clients(&mut self, events: &mut Vec<Event>) {
        self.clients.flush();
        for sid in self.clients.take_slow() {
            tracing::warn!(room = self.tag(), session = %sid, "client too slow; closing it");
            self.drop_client(sid, close::WITH_ERROR, events);
        }
    }

    fn hold_after_patch(&mut self, to: Option<String>, frame: Bytes, except: Vec<String>) {
        self.after_patch.push((to, frame, except));
        if self.schedule.patches_on() {
            self.schedule.want_patch(Instant::now());
        } else {
            // Patches are off: there is no "next patch" to wait for.
            self.flush_after_patch();
        }
    }

    fn flush_after_patch(&mut self) {
        for (to, frame, except) in std::mem::take(&mut self.after_patch) {
            match to {
                Some(sid) => self.clients.send_to(&sid, &frame),
                None => self.clients.broadcast(&frame, &except),
            }
        }
    }

    /// Removes a client whose connection ended without consent, remembering its token until the
    /// guest has seen the drop (it may keep the seat for a reconnection).
    fn drop_client(&mut self, session_id: String, code: u16, events: &mut Vec<Event>) {
        if let Some(c) = self.clients.remove(&session_id) {
            self.seats.remember_drop(session_id.clone(), c.token, code);
            events.push(Event::Drop { session_id, code });
        }
    }

    fn seat_count(&self) -> u32 {
        (self.clients.len() + self.seats.held()) as u32
    }

    fn is_locked(&self) -> bool {
        self.explicit_lock || self.listing.max_clients.is_some_and(|m| self.seat_count() >= m)
    }

    /// Hands the listing to the publisher when something a matchmaker sees changed; the room
    /// never waits for the driver.
    fn refresh_listing(&mut self) {
        self.stats.clients.store(self.clients.len(), Ordering::Relaxed);
        self.listing.clients = self.seat_count();
        self.listing.locked = self.is_locked();
        if let Some(p) = &mut self.publisher {
            p.update(&self.listing);
        }
    }

    fn should_dispose(&self) -> bool {
        // Auto-dispose applies once the room has had a seat (its last one is gone) or its first
        // seat is overdue; a room busy with its own work before the first join stays.
        self.auto_dispose && self.seat_count() == 0 && self.seats.past_first_seat(Instant::now())
    }

    /// The guest failed: close its clients with 4002 and remove the room. Other rooms are
    /// untouched; the guest instance is dropped, never called again.
    /// The host limit the last effects broke, if any.
    pub(super) fn take_fault(&mut self) -> Option<GuestError> {
        self.fault.take()
    }

    fn crash(&mut self, error: GuestError) {
        tracing::error!(
            room = self.tag(), room_type = %self.listing.name, version = self.plugin.version,
            "room disposed after guest failure: {error}"
        );
        self.clients.close_all(close::WITH_ERROR);
        self.exit();
    }

    async fn dispose(&mut self) {
        let batch = Batch { now_ms: crate::clock::now_ms(), events: vec![Event::Dispose] };
        if let Err(e) = self.guest.events(&batch, self.deps.limits.call_deadline).await {
            tracing::warn!(room = self.tag(), "dispose hook failed: {e}");
        }
        self.clients.close_all(close::CONSENTED);
        tracing::debug!(room = self.tag(), "room disposed");
        self.exit();
    }

    fn exit(&mut self) {
        if let Some(p) = &self.publisher {
            p.remove();
        }
        (self.deps.on_exit)(&self.listing.room_id);
        self.rx.close();
    }
}

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
