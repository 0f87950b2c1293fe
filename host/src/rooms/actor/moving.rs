//! A room leaving this host for another (a drain), and a room arriving from one.
//!
//! Leaving: between two guest calls the actor serves what was queued before the request, sends
//! the patch that is due, and hands the mover a [`RoomTransfer`]; it then waits, frozen, for the
//! mover's word. Once the new host has the room, the actor closes its clients with 4010 (the
//! SDKs reconnect after it, and any host relays them to the room's new process), hands its
//! listing over without removing it, and ends without the guest's dispose hook: the room lives
//! on over there. If the new host refused it, the room carries on here as if nothing happened.

use std::sync::Arc;
use std::time::Duration;

use odeon_protocol::abi::Event;
use odeon_protocol::frame::close;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Room, Serializer};
use crate::driver::RoomListing;
use crate::plugins::{Guest, PluginVersion};
use crate::rooms::clients::Clients;
use crate::rooms::inputs::RoomInputs;
use crate::rooms::schedule::Schedule;
use crate::rooms::seats::Seats;
use crate::rooms::transfer::{MOVED_CLIENT_WINDOW, RoomTransfer};
use crate::rooms::{RoomDeps, RoomMsg, RoomStats};
use crate::services::RoomServices;

impl Room {
    /// Serves a move asked for in the inbox, if any. Returns false when the room left this host
    /// (or failed on the way).
    pub(super) async fn move_if_asked(&mut self, events: &mut Vec<Event>) -> bool {
        let Some((reply, commit)) = self.move_out.take() else { return true };
        if !self.settle(events).await {
            let _ = reply.send(Err("the room failed before its move".into()));
            return false;
        }
        if self.disposing {
            let _ = reply.send(Err("the room is closing".into()));
            return true;
        }
        if reply.send(Ok(Box::new(self.export()))).is_err() {
            return true;
        }
        match commit.await {
            Ok(true) => {
                self.leave_host();
                false
            }
            _ => true,
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

    fn export(&self) -> RoomTransfer {
        let now = Instant::now();
        let connected: Vec<(String, String)> =
            self.clients.sessions().map(|(sid, c)| (sid.to_string(), c.token.clone())).collect();
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
        }
    }

    /// The room runs on another host now.
    fn leave_host(&mut self) {
        tracing::info!(room = self.tag(), room_type = %self.listing.name, clients = self.clients.len(), "room moved away");
        self.clients.close_all(close::MAY_TRY_RECONNECT);
        if let Some(p) = self.publisher.take() {
            p.hand_over();
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
            room.inputs = Some(RoomInputs::new(decl.clone(), now)?);
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
        Ok(room)
    }
}
