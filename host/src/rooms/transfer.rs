//! A room on its way to another host (a drain): everything the receiving host needs to run it
//! on from where it stopped, under the same room id.
//!
//! The guest's state is its memory image (the same version runs there, so it needs no help from
//! the room author); the host's is the room's seats (reservations, reconnection windows, and the
//! connected clients, who come back on silent windows: the guest still counts them as joined),
//! its schedule (timers keep what was left of their delays; the patch and simulation grids
//! restart), its serializer, its inputs (declaration, clock, values and acks) and its listing's
//! fields. Clients behind `odeon-proxy` are not closed: they travel as handovers, held by the
//! proxy and resumed on the new host as they were.

use odeon_protocol::abi::InputDecl;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schedule::ScheduleImage;
use super::seats::SeatsImage;
use crate::plugins::GuestImage;

/// How long a moved room's clients have to come back to it on its new host.
pub const MOVED_CLIENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a moved room's clients behind a proxy have for the proxy to resume them on the new
/// host; past it they count as dropped (the room's reconnection rules apply).
pub const RESUME_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// A room as it moves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomTransfer {
    /// Room type.
    pub name: String,
    /// Room id, kept.
    pub room_id: String,
    /// The plugin version's hash: the receiving host must run the same one.
    pub hash: String,
    /// The processes it ran on before, the one it leaves last: its clients come back by paths
    /// that name any of them.
    pub previous_processes: Vec<String>,
    /// The guest's memory between two calls.
    pub image: GuestImage,
    /// Seats, connected clients included.
    pub seats: SeatsImage,
    /// Patch rate, ticks and timers.
    pub schedule: ScheduleImage,
    /// Schema reflection (v4, v5), if the room has state.
    pub serializer: Option<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    /// The room's inputs (0.18), if it declared them.
    pub inputs: Option<InputDecl>,
    /// Listing: metadata, filters, seat limit, privacy, creation time.
    pub metadata: Map<String, Value>,
    /// Creation filters.
    pub create_filters: Map<String, Value>,
    /// Seat limit.
    pub max_clients: Option<u32>,
    /// Private room.
    pub private: bool,
    /// Unlisted (lobby-invisible).
    pub unlisted: bool,
    /// When it was created (ISO time).
    pub created_at: String,
    /// Explicit lock.
    pub locked: bool,
    /// Auto-dispose.
    pub auto_dispose: bool,
    /// The guest has no tick hook.
    pub ticks_unhandled: bool,
    /// The simulation interval the guest asked for, ms.
    pub simulation_ms: u32,
    /// The presence topics the room is subscribed to.
    pub subscriptions: Vec<odeon_protocol::abi::Key>,
    /// Clients behind a proxy that follows the room (session, token): they stay connected, and
    /// the proxy resumes each on the new host (`odeon_protocol::handover`).
    #[serde(default)]
    pub handovers: Vec<(String, String)>,
    /// The public address in the room's listing on the host it comes from (an abandoned copy
    /// writes the listing back with it).
    #[serde(default)]
    pub public_address: Option<String>,
    /// Which attempt to move the room this is (the mover's): an `AbandonImport` names it, so a
    /// later attempt of the same room is not taken for the abandoned one.
    #[serde(default)]
    pub move_id: String,
    /// The inputs' clock, values, waiting copies and acks, if the room declared inputs.
    #[serde(default)]
    pub inputs_state: Option<super::inputs::InputsImage>,
}

impl RoomTransfer {
    /// The transfer as bytes (MessagePack).
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a transfer serializes")
    }

    /// A transfer from bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(bytes).map_err(|e| format!("undecodable room transfer: {e}"))
    }
}

/// Starts a room that moved here: a fresh instance of `plugin` (the transfer's version) given the
/// transfer's image, the actor rebuilt from the transfer, and `listing` (this host's, same room
/// id) written before the room takes anything. Returns once the room runs.
pub async fn arrive(
    plugin: std::sync::Arc<crate::plugins::PluginVersion>,
    transfer: RoomTransfer,
    listing: crate::driver::RoomListing,
    deps: super::RoomDeps,
    runtime: &tokio::runtime::Handle,
) -> Result<super::RoomHandle, String> {
    use std::sync::Arc;

    if plugin.hash != transfer.hash {
        return Err(format!("this host runs {} of {}, not {}", plugin.hash, transfer.name, transfer.hash));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let room_id: Arc<str> = transfer.room_id.clone().into();
    let inbox = tx.clone();
    let stats = Arc::new(super::RoomStats::default());
    let running = Arc::new(arc_swap::ArcSwap::new(plugin.clone()));
    let handle =
        super::RoomHandle { room_id: room_id.clone(), tx, stats: stats.clone(), plugin: running.clone() };
    runtime.spawn(async move {
        let started = async {
            let mut guest =
                plugin.instantiate(room_id.clone(), deps.limits).await.map_err(|e| e.to_string())?;
            guest.restore_image(&transfer.image).map_err(|e| e.to_string())?;
            let services = crate::services::RoomServices::new(
                deps.presence.clone(),
                deps.driver.clone(),
                listing.name.clone(),
                inbox.downgrade(),
            );
            super::actor::Room::arrive(running, guest, &transfer, listing, deps, rx, services, stats)
        };
        let mut room = match started.await {
            Ok(room) => room,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        drop(inbox);
        let listing = room.listing_now();
        let inserted = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            room.deps().driver.insert(listing.clone()),
        )
        .await;
        if !matches!(inserted, Ok(Ok(()))) {
            let _ = ready_tx.send(Err("room listing store unavailable".to_string()));
            return;
        }
        // Announced after the answer: the room is not frozen for it.
        let (presence, room_id) = (room.deps().presence.clone(), listing.room_id.clone());
        tokio::spawn(async move { super::listing::announce(&presence, &room_id, false).await });
        room.start_publishing(listing);
        let _ = ready_tx.send(Ok(()));
        room.run().await;
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("room task ended on arrival".into()),
    }
}
