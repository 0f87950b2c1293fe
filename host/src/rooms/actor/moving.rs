//! A room leaving this host for another (a drain), and a room arriving from one.
//!
//! Leaving: first the proxy in front of each client that has one is asked to hold it
//! (`odeon_protocol::handover`), while the room runs on; once every proxy answered (everything
//! the client sent before is in the inbox), between two guest calls the actor serves what was
//! queued, sends the patch that is due, and hands the mover a [`RoomTransfer`]; it then waits,
//! frozen, for the mover's word. Once the new host has the room, the actor sends each held
//! client's proxy `moved` after the last frame it had for it (the proxy resumes the client on
//! the new host, which sends what the room sent it meanwhile), closes the other clients with
//! 4010 (the SDKs reconnect after it, and any host relays them to the room's new process),
//! hands its listing over without removing it, and ends without the guest's dispose hook: the
//! room lives on over there. If the new host refused it, the room tells the proxies to resume
//! and carries on here as if nothing happened.

use std::sync::Arc;
use std::time::Duration;

use odeon_protocol::abi::Event;
use odeon_protocol::frame::close;
use odeon_protocol::handover::Control;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Room, Serializer};
use crate::driver::RoomListing;
use crate::plugins::{Guest, PluginVersion};
use crate::rooms::clients::{Client, ClientState, Clients};
use crate::rooms::inputs::RoomInputs;
use crate::rooms::schedule::Schedule;
use crate::rooms::seats::Seats;
use crate::rooms::transfer::{MOVED_CLIENT_WINDOW, RESUME_WINDOW, RoomTransfer};
use crate::rooms::{ClientInput, RoomDeps, RoomMsg, RoomStats};

/// Longest wait, after a room left, for its 4010-closed clients' sockets to close.
const LINGER: Duration = Duration::from_secs(1);
use crate::services::RoomServices;

impl Room {
    /// Serves a move asked for in the inbox, if any. Returns false when the room left this host
    /// (or failed on the way).
    ///
    /// Clients behind a proxy are held first (`hold`): the room runs on, and freezes once the
    /// hold is ready.
    pub(super) async fn move_if_asked(&mut self, events: &mut Vec<Event>) -> bool {
        if !self.hold_ready(Instant::now()) || self.move_out.is_none() {
            return true;
        }
        let hold = self.hold.take().expect("a ready hold");
        let (reply, commit, late) = self.move_out.take().expect("checked above");
        // What is already in the inbox (inputs read before the hold answers, service answers)
        // is served here, before the room freezes.
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg, events);
        }
        if !self.settle(events).await {
            let _ = reply.send(Err("the room failed before its move".into()));
            return false;
        }
        let handovers: Vec<(String, String)> = self
            .clients
            .sessions()
            .filter(|(sid, c)| hold.holds(sid) && c.state == ClientState::Joined && c.wire.is_some())
            .map(|(sid, c)| (sid.to_string(), c.token.clone()))
            .collect();
        let outcome =
            if self.disposing { Err("the room is closing".to_string()) } else { Ok(self.export(&handovers)) };
        let moved = match outcome {
            Ok(transfer) => match reply.send(Ok(Box::new(transfer))) {
                Ok(()) => commit.await.ok().flatten(),
                Err(_) => None,
            },
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        };
        match moved {
            Some(to) => {
                let closed = self.leave_host(&to, &handovers);
                let _ = late.send(self.linger(closed).await);
                self.rx.close();
                false
            }
            None => {
                // It stays: the held clients' frames flow to this host again, and its listing
                // is written again (a copy the other host started may have written its own).
                if let Some(p) = &mut self.publisher {
                    p.rewrite(&self.listing);
                }
                self.release_hold(hold);
                true
            }
        }
    }

    /// Brings the room to a point where it can be handed over (to a new version or another
    /// host): what the last call left for the guest is served, and the due patch sent, so every
    /// client holds exactly the state that is handed over. False when the room failed on the way.
    pub(super) async fn settle(&mut self, events: &mut Vec<Event>) -> bool {
        if self.serializer.is_some() && std::mem::take(&mut self.state_dirty) {
            self.patch_pending = true;
            events.push(Event::Patch);
        }
        while !events.is_empty() {
            if !self.call(events).await {
                return false;
            }
        }
        true
    }

    fn export(&self, handovers: &[(String, String)]) -> RoomTransfer {
        let now = Instant::now();
        let connected: Vec<(String, String)> = self
            .clients
            .sessions()
            .filter(|(sid, _)| !handovers.iter().any(|(h, _)| h == sid))
            .map(|(sid, c)| (sid.to_string(), c.token.clone()))
            .collect();
        let l = &self.listing;
        RoomTransfer {
            name: l.name.clone(),
            room_id: l.room_id.clone(),
            hash: self.plugin.load().hash.clone(),
            previous_processes: {
                let mut previous = self.previous_processes.clone();
                previous.push(l.process_id.clone());
                previous
            },
            image: self.guest.image(),
            seats: self.seats.export(connected, MOVED_CLIENT_WINDOW, now),
            schedule: self.schedule.export(now),
            serializer: self
                .serializer
                .as_ref()
                .map(|s| (s.reflection_v4.clone().into(), s.reflection_v5.clone().into())),
            inputs: self.inputs.as_ref().map(|i| i.decl().clone()),
            metadata: l.metadata.clone(),
            public_address: l.public_address.clone(),
            create_filters: l.create_filters.clone(),
            max_clients: l.max_clients,
            private: l.private,
            unlisted: l.unlisted,
            created_at: l.created_at.clone(),
            locked: self.explicit_lock,
            auto_dispose: self.auto_dispose,
            ticks_unhandled: self.ticks_unhandled,
            simulation_ms: self.simulation_ms,
            subscriptions: self.services.topics(),
            handovers: handovers.to_vec(),
            // The mover names the attempt.
            move_id: String::new(),
            inputs_state: self.inputs.as_ref().map(|i| i.export(now)),
        }
    }

    /// The room runs on process `to` now: clients behind a proxy are handed over (after what
    /// was sent to them here), the others closed with 4010.
    /// Leaves this host for `to`: the clients of `handovers` follow through their proxies, the
    /// others are closed with 4010. Returns those: their frames still on the way are collected
    /// for the new host ([`Self::linger`]).
    fn leave_host(&mut self, to: &str, handovers: &[(String, String)]) -> Vec<(String, u64)> {
        tracing::info!(
            room = self.tag(), room_type = %self.listing.name, to, clients = self.clients.len(),
            handed_over = handovers.len(), "room moved away"
        );
        self.clients.flush();
        for (sid, token) in handovers {
            if let Some(wire) = self.clients.get(sid).and_then(|c| c.wire.as_ref()) {
                let moved = Control::Moved {
                    process_id: to.to_string(),
                    session_id: sid.clone(),
                    token: token.clone(),
                };
                wire.hand_over(&moved);
            }
        }
        let closed: Vec<(String, u64)> = self
            .clients
            .sessions()
            .filter(|(sid, _)| !handovers.iter().any(|(h, _)| h == sid))
            .map(|(sid, c)| (sid.to_string(), c.conn_id))
            .collect();
        self.clients.close_all(close::MAY_TRY_RECONNECT);
        if let Some(p) = self.publisher.take() {
            p.hand_over();
        }
        (self.deps.on_exit)(&self.listing.room_id);
        closed
    }

    /// After the room left: collects what the clients closed with 4010 (`closed`, session and
    /// connection) sent since it froze, until each one's socket has closed (a client sends
    /// nothing after the Close) or [`LINGER`] passes. Those frames go to the new host, which
    /// applies them as theirs: nothing a client sent in between is lost.
    async fn linger(&mut self, mut closed: Vec<(String, u64)>) -> Vec<(String, ClientInput)> {
        let mut late = Vec::new();
        let deadline = Instant::now() + LINGER;
        while !closed.is_empty() {
            let msg = match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => msg,
                Ok(None) | Err(_) => break,
            };
            match msg {
                RoomMsg::Input { session_id, conn_id, input, cost }
                    if closed.iter().any(|(s, c)| **s == *session_id && *c == conn_id) =>
                {
                    if let Some(wire) = self.clients.get(&session_id).and_then(|c| c.wire.as_ref()) {
                        wire.release_inbound(cost);
                    }
                    late.push((session_id.to_string(), input));
                }
                RoomMsg::Closed { session_id, conn_id, .. } => {
                    closed.retain(|(s, c)| !(*s == session_id && *c == conn_id))
                }
                // Anything else is for a room that is gone; its senders see their channel end.
                _ => {}
            }
        }
        if !late.is_empty() {
            tracing::info!(
                room = self.tag(),
                frames = late.len(),
                "frames that came while the room moved go to its new host"
            );
        }
        late
    }

    /// Applies frames a client sent to the room's old host while it moved here: as if the client
    /// had sent them here (it waits in its reconnection window, or is back already). A consented
    /// leave among them is not applied: the window ends it, or the client comes back.
    pub(super) fn forwarded(&mut self, inputs: Vec<(String, ClientInput)>, events: &mut Vec<Event>) {
        let count = inputs.len();
        for (session_id, input) in inputs {
            match input {
                ClientInput::Message(kind, payload) => {
                    events.push(Event::Message { session_id, kind, payload })
                }
                ClientInput::Bytes(kind, payload) => events.push(Event::Bytes { session_id, kind, payload }),
                ClientInput::Request { id, kind, payload } => {
                    events.push(Event::Request { session_id, request_id: id, kind, payload })
                }
                ClientInput::Input(delta) => self.input(&session_id, &delta, false),
                ClientInput::InputUnreliable(body) => self.input(&session_id, &body, true),
                ClientInput::Ack | ClientInput::Leave => {}
            }
        }
        tracing::info!(
            room = self.tag(),
            frames = count,
            "applied frames forwarded from the room's old host"
        );
    }

    /// A copy of a room whose move was not confirmed: it ends quietly, and its listing goes back
    /// to the room it copies (`owner`'s, at `address`), which its arrival had overwritten. It is
    /// written whole, not removed: the room it copies may have written it before this copy did.
    pub(super) fn abandon(&mut self, owner: String, address: Option<String>) {
        self.clients.close_all(close::MAY_TRY_RECONNECT);
        if let Some(p) = self.publisher.take() {
            let mut listing = self.listing.clone();
            listing.process_id = owner;
            listing.public_address = address;
            p.give_back(&listing);
        }
        (self.deps.on_exit)(&self.listing.room_id);
        self.rx.close();
    }

    /// A room that moved here, on `guest` (a fresh instance of `plugin` holding the transfer's
    /// image) with `listing` (this host's).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::rooms) fn arrive(
        plugin: Arc<arc_swap::ArcSwap<PluginVersion>>,
        guest: Guest,
        transfer: &RoomTransfer,
        listing: RoomListing,
        deps: RoomDeps,
        rx: mpsc::UnboundedReceiver<RoomMsg>,
        services: RoomServices,
        stats: Arc<RoomStats>,
    ) -> Result<Self, String> {
        let now = Instant::now();
        let mut room = Self::new(plugin, guest, listing, deps, rx, services, stats);
        room.clients = Clients::new(room.deps.hold_bytes);
        room.seats = Seats::import(transfer.seats.clone(), room.deps.seat_timeout, now);
        room.schedule = Schedule::import(&transfer.schedule, now);
        room.serializer = transfer
            .serializer
            .as_ref()
            .map(|(v4, v5)| Serializer { reflection_v4: v4.to_vec(), reflection_v5: v5.to_vec() });
        if let Some(decl) = &transfer.inputs {
            let image = transfer.inputs_state.clone().unwrap_or_default();
            let inputs = RoomInputs::import(decl.clone(), image, now)?;
            room.created =
                now.checked_sub(Duration::from_millis(inputs.server_now(now).into())).unwrap_or(now);
            room.inputs = Some(inputs);
            let step = Duration::from_secs_f64(room.inputs.as_ref().map_or(50.0, |i| i.step_ms()) / 1000.0);
            room.schedule.set_simulation_interval(Some(step), now);
            room.schedule.want_patch(now);
        }
        room.explicit_lock = transfer.locked;
        room.auto_dispose = transfer.auto_dispose;
        room.ticks_unhandled = transfer.ticks_unhandled;
        room.simulation_ms = transfer.simulation_ms;
        room.previous_processes = transfer.previous_processes.clone();
        room.services.resubscribe(transfer.subscriptions.clone());
        for (sid, token) in &transfer.handovers {
            room.clients.insert(sid.clone(), Client::resuming(token.clone(), now + RESUME_WINDOW));
        }
        Ok(room)
    }
}
