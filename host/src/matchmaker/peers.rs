//! The matchmaker's side of the cluster: renewing this process's registry entry, sweeping dead
//! processes, and answering calls from other processes about this process's rooms.

use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;

use crate::cluster::{Envelope, Reply, Request};
use crate::rooms::{RoomHandle, RoomMsg, SeatError};

use super::Matchmaker;

impl Matchmaker {
    /// Starts the registry heartbeat, the sweeper of dead processes and serving calls from other
    /// processes. They run until the matchmaker shuts down or is dropped.
    pub async fn start(self: &Arc<Self>) -> Result<(), crate::cluster::CallError> {
        let mut requests = self.cluster.requests().await?;
        self.cluster.heartbeat(self.room_count(), self.client_count()).await;
        // Renewing this process's entry and sweeping dead ones are separate tasks, so a slow
        // sweep (a driver cleanup, say) never delays the renewal past the entry's TTL.
        every_heartbeat(self, |mm| async move {
            if mm.cluster.heartbeat(mm.room_count(), mm.client_count()).await {
                mm.republish_listings();
            }
        });
        every_heartbeat(self, |mm| async move {
            mm.cluster.sweep_dead().await;
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(json) = requests.recv().await {
                let Some(mm) = weak.upgrade() else { return };
                let envelope: Envelope = match serde_json::from_str(&json) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!("ignoring a malformed call: {e}");
                        continue;
                    }
                };
                tokio::spawn(async move {
                    let reply = mm.serve(envelope.request).await;
                    mm.cluster.reply(&envelope.id, &reply).await;
                });
            }
        });
        Ok(())
    }

    /// Another process swept this one as dead (its heartbeat came late) and removed its
    /// listings: every room writes its listing again.
    pub(super) fn republish_listings(&self) {
        let rooms: Vec<RoomHandle> = self.rooms.lock().expect("rooms lock").values().cloned().collect();
        tracing::warn!(
            rooms = rooms.len(),
            "this process was swept from the registry; publishing its listings again"
        );
        for room in &rooms {
            room.send(RoomMsg::Republish);
        }
    }

    /// Answers a call from another process, on this process's rooms only.
    pub(super) async fn serve(&self, request: Request) -> Reply {
        match request {
            Request::ReserveSeat { room_id, session_id, options, auth, takeover } => {
                match self.reserve_local(&room_id, session_id, options, auth, takeover).await {
                    Ok(_) => Reply::Reserved,
                    Err(SeatError::Locked) => Reply::Locked,
                    Err(SeatError::Gone) => Reply::Gone,
                    Err(SeatError::SessionTaken) => Reply::SessionTaken,
                }
            }
            Request::Create { room_name, options, session_id, auth, takeover } => {
                let Some(plugin) = self.plugins.get(&room_name) else {
                    return Reply::Failed {
                        custom_code: None,
                        message: format!("room type {room_name} not loaded here"),
                    };
                };
                match self.create_local(&plugin, &options, session_id, auth, takeover).await {
                    Ok(seat) => Reply::Created { room_id: seat.listing.room_id },
                    Err(e) => Reply::Failed { custom_code: e.custom_code, message: e.message },
                }
            }
            Request::CheckReconnectionToken { room_id, token } => {
                Reply::Session { session_id: self.check_token_local(&room_id, token).await }
            }
            Request::ImportRoom { transfer } => {
                let imported = match base64::engine::general_purpose::STANDARD.decode(transfer) {
                    Ok(bytes) => self.import_room(&bytes).await,
                    Err(e) => Err(format!("bad transfer: {e}")),
                };
                match imported {
                    Ok(()) => Reply::Imported,
                    Err(message) => Reply::Failed { custom_code: None, message },
                }
            }
            Request::ForwardInputs { room_id, inputs } => match self.room(&room_id) {
                Some(room) if room.send(RoomMsg::Forwarded { inputs }) => Reply::Forwarded,
                _ => Reply::Gone,
            },
            Request::AbandonImport { room_id, move_id } => {
                self.abandon_import(&room_id, &move_id).await;
                Reply::Gone
            }
        }
    }
}

/// Runs `step` every [`crate::cluster::HEARTBEAT`] on a task of its own, a step at a time, until
/// the matchmaker shuts down or is dropped.
fn every_heartbeat<F, Fut>(mm: &Arc<Matchmaker>, step: F)
where
    F: Fn(Arc<Matchmaker>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(mm);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::cluster::HEARTBEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(mm) = weak.upgrade() else { return };
            if mm.is_shutting_down() {
                return;
            }
            step(mm).await;
        }
    });
}
