//! Rooms as actors: one tokio task per room owns the room's guest instance, its clients, seats,
//! schedule and listing. Everything reaches it through its inbox; guest calls are serialised by
//! design, never by a lock.
//!
//! The actor drains its inbox in batches bounded in count and bytes, makes one guest call per
//! batch, then applies the effects the guest returned. Its parts each own their state and report
//! what happened: [`clients`] (fan-out), [`seats`], [`schedule`] (patch, tick and timers on a
//! fixed grid) and [`listing`] (the listing publisher).

mod actor;
mod clients;
mod inputs;
mod listing;
mod schedule;
mod seats;
pub mod transfer;

use std::sync::Arc;
use std::time::Duration;

use odeon_protocol::abi::{Batch, Effect, Event, MessageType};
use odeon_protocol::profile::Profile;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Driver, RoomListing};
use crate::net::wire::Wire;
use crate::plugins::{GuestError, GuestLimits, PluginVersion};
use crate::presence::Presence;
use crate::services::RoomServices;

pub use listing::LOBBY_CHANNEL;

/// A client frame for the room, decoded and normalised by `net`. Serialisable: frames that reach
/// a room while it moves away are forwarded to its new host.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ClientInput {
    /// The JOIN_ROOM ack.
    Ack,
    /// Consented leave.
    Leave,
    /// A message with a plain MessagePack payload.
    Message(MessageType, Vec<u8>),
    /// A bytes message.
    Bytes(MessageType, Vec<u8>),
    /// A request (0.18) with a plain MessagePack payload.
    Request {
        /// The client's request id.
        id: f64,
        /// The request type.
        kind: MessageType,
        /// The payload, empty if none.
        payload: Vec<u8>,
    },
    /// One reliable input's delta (0.18).
    Input(Vec<u8>),
    /// An unreliable input frame's body (0.18).
    InputUnreliable(Vec<u8>),
}

impl ClientInput {
    /// The payload bytes it carries into the room.
    pub fn payload_len(&self) -> usize {
        match self {
            Self::Message(_, p) | Self::Bytes(_, p) | Self::Request { payload: p, .. } => p.len(),
            Self::Input(p) | Self::InputUnreliable(p) => p.len(),
            Self::Ack | Self::Leave => 0,
        }
    }
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
    /// The session is connected, and the auth hook did not prove the new client owns it.
    #[error("session is already connected")]
    SessionTaken,
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
        /// The auth hook proved the session: the new connection replaces a live one of it.
        takeover: bool,
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
        /// The connection's outbound side.
        wire: Arc<Wire>,
        /// The client already has the state's reflection (`skipHandshake` on reconnection).
        skip_handshake: bool,
        /// The proxy in front follows handover control frames (`odeon_protocol::handover`).
        handover: bool,
        /// The proxy resumes a session whose room moved here: attach it as it was.
        resume: bool,
        /// Ok once the client has a slot; JOIN_ROOM follows on `tx`.
        reply: oneshot::Sender<Result<(), ConnectError>>,
    },
    /// A frame from a connected client.
    Input {
        /// The sender's session.
        session_id: Arc<str>,
        /// The sender's connection.
        conn_id: u64,
        /// What it sent.
        input: ClientInput,
        /// Bytes counted against the sender's inbound bound; released once the room took it.
        cost: usize,
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
    /// The proxy in front of a client answered the room's hold: every frame the client sent
    /// before it has reached the room, none after it will until the hold ends.
    Held {
        /// The session.
        session_id: String,
        /// The connection.
        conn_id: u64,
    },
    /// The host is shutting down: close everyone with 4001 and dispose.
    Shutdown,
    /// This is a copy of a room whose move was not confirmed (the mover kept it): end at once,
    /// without the dispose hook, and give the listing back to the process that runs the room
    /// (`owner`, whose clients reach it at `address`): this copy's arrival had taken it over.
    Abandon {
        /// The process the room came from, which kept it.
        owner: String,
        /// That process's public address, as the room's listing had it.
        address: Option<String>,
    },
    /// The host is draining: the room takes no new seat (it is listed as locked); its clients
    /// and reconnections carry on.
    Drain,
    /// Write the whole listing again: another process swept this one as dead and removed its
    /// listings.
    Republish,
    /// An answer from a shared service (presence, listings) for the guest, already in the
    /// form the guest receives it.
    Service(Event),
    /// The room is about to leave for another host (a drain): hold its clients behind proxies
    /// while it runs on, and say on `ready` when it may freeze (a `MoveOut` then freezes it at
    /// once). A `MoveOut` alone does both.
    PrepareMove {
        /// Told once the hold is ready.
        ready: oneshot::Sender<()>,
        /// The process the room is going to: each proxy is told, so it can open its client's
        /// WebSocket there while the room still runs here.
        to: String,
    },
    /// The room is leaving for another host (a drain): between two guest calls, answer its
    /// transfer on `reply`, then wait for `commit`: the other host's process id once it has the
    /// room (the room ends here), anything else to carry on here. Clients behind a proxy are
    /// held (`odeon_protocol::handover`) before the room freezes.
    MoveOut {
        /// The room's transfer, or why it cannot move.
        reply: oneshot::Sender<Result<Box<transfer::RoomTransfer>, String>>,
        /// The mover's word.
        commit: oneshot::Receiver<Option<String>>,
        /// Once the room left: what its clients that were closed with 4010 sent after it froze,
        /// in order, for the new host.
        late: oneshot::Sender<Vec<(String, ClientInput)>>,
    },
    /// Frames a room's clients sent to its old host while it moved here (sessions and inputs,
    /// in order): applied as theirs.
    Forwarded {
        /// The frames.
        inputs: Vec<(String, ClientInput)>,
    },
    /// Move the room to another version of its code (live migration) between two guest calls:
    /// messages queued behind this one are applied after the swap, by the new code.
    Migrate {
        /// The version to move to.
        to: Arc<PluginVersion>,
        /// A fresh instance of it, started before the room was asked (so the room is frozen only
        /// for the snapshot and the swap), in a migration slot held until the old one is gone.
        fresh: Box<(crate::plugins::Guest, tokio::sync::OwnedSemaphorePermit)>,
        /// How it went.
        reply: oneshot::Sender<Migrated>,
    },
}

/// The outcome of one room's live migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The room runs the new version; it was frozen for this long.
    Moved {
        /// From the freeze to the first call the new code could take.
        pause: Duration,
    },
    /// The room runs the old version still, for this reason.
    Kept(String),
    /// The room already ran that version.
    Already,
}

/// A cloneable handle to a room actor.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    /// The room id.
    pub room_id: Arc<str>,
    tx: mpsc::UnboundedSender<RoomMsg>,
    stats: Arc<RoomStats>,
    /// The version the room runs; a live migration replaces it.
    plugin: Arc<arc_swap::ArcSwap<PluginVersion>>,
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

    /// The plugin version the room runs.
    pub fn plugin(&self) -> Arc<PluginVersion> {
        self.plugin.load_full()
    }

    /// Moves the room to `to` (live migration) and waits for the outcome. The new instance is
    /// started first, while the room plays on; the room is frozen only for the swap.
    pub async fn migrate(&self, to: Arc<PluginVersion>, limits: GuestLimits) -> Migrated {
        if self.plugin().hash == to.hash {
            return Migrated::Already;
        }
        let fresh = match to.instantiate_for_migration(self.room_id.clone(), limits).await {
            Ok(started) => Box::new(started),
            Err(e) => return Migrated::Kept(format!("the new version did not start: {e}")),
        };
        let (reply, rx) = oneshot::channel();
        if !self.send(RoomMsg::Migrate { to, fresh, reply }) {
            return Migrated::Kept("the room is gone".into());
        }
        rx.await.unwrap_or_else(|_| Migrated::Kept("the room ended during its migration".into()))
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
    /// Bytes a client that has not finished joining may have held for it.
    pub hold_bytes: usize,
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
    let running = Arc::new(arc_swap::ArcSwap::new(plugin.clone()));
    let handle = RoomHandle { room_id: room_id.clone(), tx, stats: stats.clone(), plugin: running.clone() };
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
        let mut room = actor::Room::new(running, guest, listing, deps, rx, services, stats);
        room.apply(effects, &mut Vec::new());
        if let Some(fault) = room.take_fault() {
            let _ = ready_tx.send(Err(CreateError::Guest(fault)));
            return;
        }
        let listing = room.listing_now();
        // The one write a room waits for: it is not offered before its listing exists.
        let inserted =
            tokio::time::timeout(Duration::from_secs(5), room.deps().driver.insert(listing.clone())).await;
        if !matches!(inserted, Ok(Ok(()))) {
            let message = "room listing store unavailable".to_string();
            let _ = ready_tx.send(Err(CreateError::Refused { code: 523, message }));
            return;
        }
        listing::announce(&room.deps().presence, &listing.room_id, false).await;
        room.start_publishing(listing.clone());
        let _ = ready_tx.send(Ok(listing));
        room.run().await;
    });
    match ready_rx.await {
        Ok(Ok(listing)) => Ok((handle, listing)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CreateError::Guest(GuestError::Trap("room task ended during creation".into()))),
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
