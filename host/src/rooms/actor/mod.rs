//! The room actor's loop: wait for the inbox or the schedule, batch, call the guest once, apply
//! its effects.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use odeon_protocol::abi::{Batch, Event};
use odeon_protocol::frame::{self, close};
use tokio::sync::mpsc;
use tokio::time::Instant;

mod connect;
mod effects;
mod hold;
mod migrate;
mod moving;

use super::clients::{ClientState, Clients};
use super::inputs::RoomInputs;
use super::listing::ListingPublisher;
use super::schedule::Schedule;
use super::seats::Seats;
use super::{ClientInput, Migrated, RoomDeps, RoomMsg, RoomStats, SeatError};
use crate::driver::RoomListing;
use crate::net::wire::OutFrame;
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
    /// The version the room runs, shared with its handle; a live migration replaces it.
    plugin: Arc<arc_swap::ArcSwap<PluginVersion>>,
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
    /// The host is draining: no new seats, the listing locked.
    draining: bool,
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
    /// The simulation interval the guest asked for, in milliseconds (0: none).
    simulation_ms: u32,
    /// A live migration asked for in the inbox, run once the batch before it is served.
    migration: Option<migrate::Asked>,
    /// A move to another host asked for in the inbox (see `moving`), and its clients' hold.
    move_out: Option<MoveOut>,
    hold: Option<hold::Hold>,
    /// The processes the room ran on before it moved here, oldest first.
    previous_processes: Vec<String>,
    disposing: bool,
    /// A host limit the guest's last effects broke; the room fails once they are applied.
    fault: Option<GuestError>,
    /// The room's inputs, when it declared them (0.18): its state frames are TIMED, and every
    /// patch tick sends each joined client a frame (a heartbeat when nothing changed).
    inputs: Option<RoomInputs>,
    /// When the room was created: its clock for TIMED frames starts here.
    created: Instant,
}

/// A move's reply channel and the mover's word.
type MoveOut = (
    tokio::sync::oneshot::Sender<Result<Box<crate::rooms::transfer::RoomTransfer>, String>>,
    tokio::sync::oneshot::Receiver<Option<String>>,
    tokio::sync::oneshot::Sender<Vec<(String, ClientInput)>>,
);

/// The most timers one room may have pending.
pub(super) const MAX_TIMERS: usize = 10_000;

impl Room {
    pub(super) fn new(
        plugin: Arc<arc_swap::ArcSwap<PluginVersion>>,
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
            draining: false,
            auto_dispose: true,
            after_patch: Vec::new(),
            serializer: None,
            state_dirty: false,
            patch_pending: false,
            ticks_unhandled: false,
            simulation_ms: 0,
            migration: None,
            move_out: None,
            hold: None,
            previous_processes: Vec::new(),
            disposing: false,
            fault: None,
            inputs: None,
            created: now,
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
        tracing::debug!(room = self.tag(), room_type = %self.listing.name, version = self.plugin.load().version, "room created");
        let mut events = Vec::new();
        loop {
            // Follow-up events from the last call (drops after a kick, say) go to the guest at
            // once; otherwise wait for the inbox or the next deadline.
            if events.is_empty() {
                self.wait(&mut events).await;
            }
            if self.rx.is_closed() && self.publisher.is_none() {
                // Abandoned: the room runs where it came from.
                return;
            }
            self.drop_slow_clients(&mut events);
            if !events.is_empty() && !self.call(&mut events).await {
                return;
            }
            if !self.migrate_if_asked(&mut events).await || !self.move_if_asked(&mut events).await {
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
                    // A migration waits for this batch; what comes after it goes to the new code.
                    let moving = self.move_out.is_some() && self.hold.is_none();
                    if bytes >= BATCH_BYTES || self.migration.is_some() || moving {
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
        let hold = self.hold.as_ref().map(|h| h.deadline());
        let resume = self.clients.next_resume_deadline();
        [self.schedule.next_deadline(), self.seats.next_deadline(), hold, resume].into_iter().flatten().min()
    }

    fn fire_due(&mut self, events: &mut Vec<Event>) {
        let now = Instant::now();
        let due = self.schedule.take_due(now);
        events.extend(due.timers.into_iter().map(|id| Event::Timer { id }));
        for (session_id, code) in self.seats.expire(now) {
            events.push(Event::Leave { session_id, code });
        }
        for session_id in self.clients.overdue(now) {
            // A moved room's client the proxy never resumed: it dropped.
            self.drop_client(session_id, close::MAY_TRY_RECONNECT, events);
        }
        // Taking a step counts its inputs as consumed at once, but the guest applies them only
        // in the call this batch goes to: until then no state frame may be sent.
        let mut stepped = false;
        if let Some(dt_ms) = due.tick_dt_ms {
            match &mut self.inputs {
                Some(inputs) => {
                    let step = inputs.take_step(|sid| self.clients.get(sid).is_some());
                    events.push(Event::Step { dt_ms: inputs.step_ms(), inputs: step });
                    stepped = true;
                }
                None => events.push(Event::Tick { dt_ms }),
            }
        }
        if due.patch {
            // The patch is taken after the step in the same call, and acks are read when its
            // frames are built, so a TIMED frame's ack and body describe the same instant: the
            // ack counts exactly the inputs whose effects the body includes. A step that
            // changes nothing still moves the acks: its heartbeat goes out after the call too.
            let dirty = self.serializer.is_some() && std::mem::take(&mut self.state_dirty);
            if dirty || stepped {
                if self.serializer.is_some() {
                    events.push(Event::Patch);
                }
                self.patch_pending = true;
            } else {
                self.heartbeat();
                self.flush_after_patch();
            }
            if self.inputs.is_some() {
                // Rooms with inputs send every joined client a frame on every patch tick.
                self.schedule.want_patch(now);
            }
        }
    }

    /// A room with inputs: a 9-byte TIMED frame to every joined client (the patch tick found
    /// nothing to patch), carrying the room clock and that client's ack.
    fn heartbeat(&mut self) {
        if let Some(inputs) = &self.inputs {
            let now = Instant::now();
            let code = frame::code::ROOM_STATE_PATCH;
            self.clients.patch(|sid| OutFrame::with_head(&inputs.head(code, sid, now), Bytes::new()));
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
            self.heartbeat();
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
        let mut frame = frame;
        if let Some(inputs) = &self.inputs
            && profile.length_prefixed_join()
        {
            // The input sections, also on a `skipHandshake` reconnection.
            frame.extend_from_slice(&inputs.sections(self.schedule.patch_rate_ms()));
        }
        Some(frame.into())
    }

    /// Turns one inbox message into events; returns the client input bytes it carried.
    fn handle(&mut self, msg: RoomMsg, events: &mut Vec<Event>) -> usize {
        match msg {
            RoomMsg::ReserveSeat { session_id, options, auth, takeover, reply } => {
                if self.disposing || self.is_locked() {
                    let _ = reply.send(Err(SeatError::Locked));
                    return 0;
                }
                if !takeover && self.clients.get(&session_id).is_some() {
                    let _ = reply.send(Err(SeatError::SessionTaken));
                    return 0;
                }
                self.seats.reserve(session_id, options, auth, takeover, Instant::now());
                let _ = reply.send(Ok(self.listing_now()));
            }
            RoomMsg::CheckReconnectionToken { token, reply } => {
                let _ = reply.send(self.seats.session_of_token(&token));
            }
            RoomMsg::Connect {
                session_id,
                reconnection_token,
                conn_id,
                wire,
                skip_handshake,
                handover,
                resume,
                reply,
            } => {
                let connect = connect::Connect {
                    session_id,
                    reconnection_token,
                    conn_id,
                    wire,
                    skip_handshake,
                    handover,
                    resume,
                };
                let _ = reply.send(self.connect(connect, events));
            }
            RoomMsg::Input { session_id, conn_id, input, cost } => {
                let Some(client) = self.clients.get_mut(&session_id).filter(|c| c.conn_id == conn_id) else {
                    return 0;
                };
                if let Some(wire) = &client.wire {
                    wire.release_inbound(cost);
                }
                let session_id = session_id.to_string();
                let bytes = input.payload_len();
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
                        client.close(Some(close::CONSENTED), "");
                        events.push(Event::Leave { session_id, code: close::CONSENTED });
                    }
                    ClientInput::Message(kind, payload) => {
                        events.push(Event::Message { session_id, kind, payload })
                    }
                    ClientInput::Bytes(kind, payload) => {
                        events.push(Event::Bytes { session_id, kind, payload })
                    }
                    ClientInput::Request { id, kind, payload } => {
                        events.push(Event::Request { session_id, request_id: id, kind, payload })
                    }
                    ClientInput::Input(delta) => self.input(&session_id, &delta, false),
                    ClientInput::InputUnreliable(body) => self.input(&session_id, &body, true),
                }
                return bytes;
            }
            RoomMsg::Closed { session_id, conn_id, code } => {
                if self.clients.get(&session_id).is_some_and(|c| c.conn_id == conn_id) {
                    self.drop_client(session_id, code, events);
                }
            }
            RoomMsg::Held { session_id, conn_id } => self.held(&session_id, conn_id),
            RoomMsg::PrepareMove { ready, to } => self.prepare_move(ready, to),
            RoomMsg::Drain => self.draining = true,
            RoomMsg::Abandon { owner, address } => self.abandon(owner, address),
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
            RoomMsg::Forwarded { inputs } => self.forwarded(inputs, events),
            RoomMsg::MoveOut { reply, commit, late } => {
                if let Some((earlier, ..)) = self.move_out.replace((reply, commit, late)) {
                    let _ = earlier.send(Err("a later move replaced this one".into()));
                }
            }
            RoomMsg::Migrate { to, fresh, reply } => {
                if let Some((_, _, earlier)) = self.migration.replace((to, fresh, reply)) {
                    let _ = earlier.send(Migrated::Kept("a later migration replaced this one".into()));
                }
            }
        }
        0
    }

    /// Buffers a client's input frame; ignored, as Colyseus does, in a room without inputs.
    fn input(&mut self, session_id: &str, body: &[u8], unreliable: bool) {
        let Some(inputs) = &mut self.inputs else { return };
        let applied =
            if unreliable { inputs.unreliable(session_id, body) } else { inputs.reliable(session_id, body) };
        if let Err(e) = applied {
            tracing::debug!(room = %self.listing.room_id, session = session_id, "bad input frame: {e}");
        }
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
        self.explicit_lock
            || self.draining
            || self.listing.max_clients.is_some_and(|m| self.seat_count() >= m)
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
        self.plugin.load().record_fault();
        tracing::error!(
            room = self.tag(), room_type = %self.listing.name, version = self.plugin.load().version,
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
