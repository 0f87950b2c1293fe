//! Matchmaking: joinOrCreate, create, join, joinById and reconnect, with filterBy, sortBy, locks,
//! private rooms, auth and seat reservations. It talks to rooms through their handles and to the
//! world through [`Driver`] and [`Presence`] only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use odeon_protocol::abi::{AuthDecision, AuthRequest};
use odeon_protocol::profile::{ErrorCode, Profile};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::cluster::{Cluster, Reply, Request};
use crate::driver::{Driver, RoomListing};
use crate::plugins::{PluginVersion, Plugins};
use crate::presence::Presence;
use crate::rooms::{RoomHandle, RoomMsg, SeatError};

mod handoff;
mod moves;
mod peers;
mod placement;

pub use moves::Moved;

/// A held seat, ready to be turned into the profile's seat-reservation JSON.
#[derive(Debug, Clone)]
pub struct SeatReservation {
    /// The room's listing after the reservation.
    pub listing: RoomListing,
    /// The session that must connect.
    pub session_id: String,
}

/// A matchmaking failure, with Colyseus's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MatchmakeError {
    /// Which error, independent of the profile.
    pub code: ErrorCode,
    /// A custom numeric code from the room, overriding the profile's.
    pub custom_code: Option<u32>,
    /// The message clients see.
    pub message: String,
}

impl MatchmakeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, custom_code: None, message: message.into() }
    }

    /// The numeric code in a profile.
    pub fn code_in(&self, profile: Profile) -> u32 {
        self.custom_code.unwrap_or_else(|| profile.error_code(self.code))
    }
}

/// Settings of the matchmaker.
/// A relayed socket, counted while it lives.
pub struct RelayGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for RelayGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct MatchmakerConfig {
    /// This host's process id.
    pub process_id: String,
    /// Protocol profile.
    pub profile: Profile,
    /// Seat reservation lifetime.
    pub seat_timeout: Duration,
    /// Address clients should connect to, if not the matchmaking endpoint.
    pub public_address: Option<String>,
    /// Where a proxy reaches this host, for the process registry.
    pub endpoint: Option<String>,
    /// Rooms one client address may have created per minute (bursts of as many); 0: no limit.
    pub room_creates_per_min: u32,
}

/// Finds or creates rooms and reserves seats in them.
pub struct Matchmaker {
    config: MatchmakerConfig,
    plugins: Arc<Plugins>,
    driver: Arc<dyn Driver>,
    presence: Arc<dyn Presence>,
    rooms: Arc<Mutex<HashMap<String, RoomHandle>>>,
    /// Serialises find-or-create per room type and filter, so concurrent joinOrCreate calls
    /// never create more rooms than needed.
    creation_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Rooms being created here: listed already, not yet in `rooms`. A seat asked of one is
    /// `Locked` (ask again), not `Gone`.
    creating: Mutex<std::collections::HashSet<String>>,
    /// Rooms of this process alive or being created (see `placement::RoomSlot`).
    room_slots: Arc<std::sync::atomic::AtomicUsize>,
    /// Rooms created per client address.
    creates: crate::limits::DeploymentLimit,
    room_runtime: tokio::runtime::Handle,
    shutting_down: AtomicBool,
    /// Sockets this host relays to another process (clients of rooms that moved away, or that
    /// matchmade here for a room elsewhere): a drained host waits for them before it exits.
    relays: Arc<std::sync::atomic::AtomicUsize>,
    /// Rooms that moved here, with the processes they ran on before and the move that brought
    /// them.
    arrived_from: Mutex<HashMap<String, moves::Arrival>>,
    /// Imports their sender gave up on (it got no answer and kept the room), by room and move,
    /// for a minute.
    abandoned: Arc<Mutex<HashMap<(String, String), std::time::Instant>>>,
    /// Proxies' resumes waiting for a room that is moving here, by room.
    awaited: Mutex<HashMap<String, Vec<tokio::sync::oneshot::Sender<RoomHandle>>>>,
    /// The other processes of the deployment (only this one with the embedded presence).
    cluster: Arc<Cluster>,
}

/// How long joinOrCreate keeps trying when chosen rooms fill up or another caller is creating.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
/// First and longest wait before asking a full (or not yet ready) room for a seat again.
const RETRY_BACKOFF: (Duration, Duration) = (Duration::from_millis(2), Duration::from_millis(100));

impl Matchmaker {
    /// A matchmaker whose rooms run on `room_runtime`.
    pub fn new(
        config: MatchmakerConfig,
        plugins: Arc<Plugins>,
        driver: Arc<dyn Driver>,
        presence: Arc<dyn Presence>,
        room_runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        let cluster = Cluster::new(
            presence.clone(),
            driver.clone(),
            config.process_id.clone(),
            config.public_address.clone(),
            config.endpoint.clone(),
        );
        cluster.set_room_limit(plugins.limits().max_instances as usize);
        let creates = crate::limits::DeploymentLimit::new(
            "creates",
            config.room_creates_per_min,
            Duration::from_secs(60),
            presence.clone(),
        );
        Arc::new(Self {
            cluster,
            config,
            plugins,
            driver,
            presence,
            rooms: Arc::default(),
            creation_locks: Mutex::default(),
            creating: Mutex::default(),
            room_slots: Arc::default(),
            creates,
            room_runtime,
            shutting_down: AtomicBool::new(false),
            relays: Arc::default(),
            arrived_from: Mutex::default(),
            abandoned: Arc::default(),
            awaited: Mutex::default(),
        })
    }

    /// The plugin version of every room this host runs.
    pub fn room_plugins(&self) -> Vec<Arc<crate::plugins::PluginVersion>> {
        self.rooms.lock().expect("rooms lock").values().map(|r| r.plugin()).collect()
    }

    /// Handles to this host's rooms of type `name`.
    pub fn rooms_of(&self, name: &str) -> Vec<RoomHandle> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms.values().filter(|r| r.plugin().manifest.name == name).cloned().collect()
    }

    /// A plugin file in the plugins directory is new or changed: it is loaded, and a room type
    /// it declared before and declares no more is retired as if its file were removed.
    pub async fn plugin_file_changed(&self, path: &std::path::Path) {
        if let (_, Some(name)) = self.plugins.load_file(path).await
            && self.rooms_of(&name).is_empty()
        {
            self.plugins.unregister_retired(&name);
        }
    }

    /// A plugin file left the plugins directory: its room type takes no new rooms, and is
    /// unregistered now if no room of it runs here, else when the last one ends (`room_deps`).
    pub async fn plugin_file_removed(&self, path: &std::path::Path) {
        if let Some(name) = self.plugins.file_removed(path).await
            && self.rooms_of(&name).is_empty()
        {
            self.plugins.unregister_retired(&name);
        }
    }

    /// The presence this host shares with the others of its deployment.
    pub fn presence(&self) -> &Arc<dyn Presence> {
        &self.presence
    }

    /// Whether another host's call shows this host's peer key (it may send a moving room).
    pub fn is_peer_key(&self, given: &str) -> bool {
        self.cluster.is_peer_key(given)
    }

    /// This host's process id.
    pub fn process_id(&self) -> &str {
        &self.config.process_id
    }

    /// The protocol profile.
    pub fn profile(&self) -> Profile {
        self.config.profile
    }

    /// The plugin registry.
    pub fn plugins(&self) -> &Arc<Plugins> {
        &self.plugins
    }

    /// A live room of this process.
    pub fn room(&self, room_id: &str) -> Option<RoomHandle> {
        self.rooms.lock().expect("rooms lock").get(room_id).cloned().filter(|h| !h.is_closed())
    }

    /// Clients connected to this process's rooms.
    pub fn client_count(&self) -> usize {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms.values().map(|r| r.stats().clients.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }

    /// Number of live rooms in this process.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().expect("rooms lock").len()
    }

    /// Every room listing, all types.
    pub async fn listings(&self) -> Result<Vec<RoomListing>, crate::driver::DriverError> {
        self.driver.query(None).await
    }

    /// The live processes of the deployment.
    pub async fn processes(&self) -> Vec<crate::cluster::ProcessInfo> {
        self.cluster.processes().await
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Starts draining: the registry says so at once, matchmaking anywhere places no new room
    /// or seat here, and every room is locked (reconnections still come in). Rooms play on
    /// until they end.
    pub async fn drain(&self) {
        if self.cluster.is_draining() {
            return;
        }
        self.cluster.set_draining();
        tracing::info!(rooms = self.room_count(), "draining: no new rooms or seats here");
        for room in self.rooms.lock().expect("rooms lock").values() {
            room.send(RoomMsg::Drain);
        }
        self.cluster.heartbeat(self.room_count(), self.client_count()).await;
        self.cluster.announce_entry().await;
    }

    /// Whether this host is draining.
    pub fn is_draining(&self) -> bool {
        self.cluster.is_draining()
    }

    /// Counts a socket relayed to another process for as long as the guard lives.
    pub fn relaying(&self) -> RelayGuard {
        self.relays.fetch_add(1, Ordering::Relaxed);
        RelayGuard(self.relays.clone())
    }

    /// Resolves once this host is draining and holds no room and relays no socket, or has
    /// drained for `timeout`.
    pub async fn drained(&self, timeout: Duration) {
        let mut since = None;
        loop {
            if self.is_draining() {
                let started = *since.get_or_insert_with(tokio::time::Instant::now);
                if self.room_count() == 0 && self.relays.load(Ordering::Relaxed) == 0 {
                    return tracing::info!("drained: no room or relayed socket left");
                }
                if started.elapsed() >= timeout {
                    return tracing::warn!(
                        rooms = self.room_count(),
                        "drain timed out; closing what is left"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops matchmaking and closes every room with 4001; waits up to `grace` for them to go.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Relaxed);
        let rooms: Vec<RoomHandle> = self.rooms.lock().expect("rooms lock").values().cloned().collect();
        for room in &rooms {
            room.send(RoomMsg::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.room_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.cluster.unregister().await;
    }

    /// Runs one matchmaking request: `method` on `target` (a room name or, for joinById and
    /// reconnect, a room id) with the client's JSON options.
    pub async fn matchmake(
        &self,
        method: &str,
        target: &str,
        options: Map<String, Value>,
        token: Option<String>,
        ip: String,
    ) -> Result<SeatReservation, MatchmakeError> {
        match method {
            "joinOrCreate" | "create" | "join" => {
                let plugin = self.plugins.get(target).ok_or_else(|| {
                    MatchmakeError::new(
                        ErrorCode::NoHandler,
                        format!("provided room name \"{target}\" not defined"),
                    )
                })?;
                let creator = ip.parse().ok();
                let Admitted { session_id, auth, takeover } =
                    self.authenticate(&plugin, &options, token, ip).await?;
                match method {
                    "create" => {
                        self.may_create(creator).await?;
                        self.create_and_reserve(&plugin, &options, session_id, auth, takeover).await
                    }
                    "join" => self.join(&plugin, &options, session_id, auth, takeover, None).await,
                    _ => self.join(&plugin, &options, session_id, auth, takeover, Some(creator)).await,
                }
            }
            "joinById" => {
                let listing = self.find_by_id(target).await?;
                if listing.locked {
                    return Err(MatchmakeError::new(
                        ErrorCode::InvalidRoomId,
                        format!("room \"{target}\" is locked"),
                    ));
                }
                // A retired type's rooms still take joins by id until they end.
                let plugin = self.plugins.get_or_retired(&listing.name).ok_or_else(|| {
                    MatchmakeError::new(ErrorCode::InvalidRoomId, format!("room \"{target}\" not found"))
                })?;
                let Admitted { session_id, auth, takeover } =
                    self.authenticate(&plugin, &options, token, ip).await?;
                let named = session_id.clone();
                self.reserve(&listing, session_id, encode(&options), auth, takeover).await.map_err(
                    |e| match e {
                        SeatError::Locked => MatchmakeError::new(
                            ErrorCode::InvalidRoomId,
                            format!("room \"{target}\" is locked"),
                        ),
                        SeatError::Gone => MatchmakeError::new(
                            ErrorCode::InvalidRoomId,
                            format!("room \"{target}\" not found"),
                        ),
                        SeatError::SessionTaken => placement::session_taken(&named),
                    },
                )
            }
            "reconnect" => {
                let listing = self.find_by_id(target).await?;
                let Some(Value::String(token)) = options.get("reconnectionToken") else {
                    return Err(MatchmakeError::new(
                        ErrorCode::Unhandled,
                        "'reconnectionToken' must be provided for reconnection.",
                    ));
                };
                let expired =
                    || MatchmakeError::new(ErrorCode::Expired, "reconnection token invalid or expired.");
                let session_id = if listing.process_id == self.config.process_id {
                    self.check_token_local(&listing.room_id, token.clone()).await
                } else {
                    let request = Request::CheckReconnectionToken {
                        room_id: listing.room_id.clone(),
                        token: token.clone(),
                    };
                    match self.cluster.call(&listing.process_id, request).await {
                        Ok(Reply::Session { session_id }) => session_id,
                        _ => None,
                    }
                };
                Ok(SeatReservation { listing, session_id: session_id.ok_or_else(expired)? })
            }
            other => Err(MatchmakeError::new(ErrorCode::NoHandler, format!("invalid method \"{other}\""))),
        }
    }

    /// Whether the client at `creator` may have another room created now (see
    /// `--room-creates-per-min`).
    async fn may_create(&self, creator: Option<std::net::IpAddr>) -> Result<(), MatchmakeError> {
        match creator {
            Some(ip) if !self.creates.allow(ip).await => Err(MatchmakeError::new(
                ErrorCode::Unhandled,
                "too many rooms created from this address; try again in a moment",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `process_id` is a live process of the deployment.
    pub async fn is_live(&self, process_id: &str) -> bool {
        self.processes().await.iter().any(|p| p.process_id == process_id)
    }

    /// The process a room this host does not run runs on now (it may have moved away), if its
    /// listing says.
    pub async fn owner_of(&self, room_id: &str) -> Option<String> {
        let listing = self.driver.find_by_id(room_id).await.ok().flatten()?;
        (listing.process_id != self.config.process_id).then_some(listing.process_id)
    }

    async fn find_by_id(&self, room_id: &str) -> Result<RoomListing, MatchmakeError> {
        self.driver
            .find_by_id(room_id)
            .await
            .map_err(|e| MatchmakeError::new(ErrorCode::Unhandled, e.to_string()))?
            .ok_or_else(|| {
                MatchmakeError::new(ErrorCode::InvalidRoomId, format!("room \"{room_id}\" not found"))
            })
    }

    async fn authenticate(
        &self,
        plugin: &PluginVersion,
        options: &Map<String, Value>,
        token: Option<String>,
        ip: String,
    ) -> Result<Admitted, MatchmakeError> {
        let generated = || Admitted { session_id: crate::ids::generate(), auth: Vec::new(), takeover: false };
        if !plugin.manifest.has_auth {
            return Ok(generated());
        }
        let request = AuthRequest { options: encode(options), token, ip };
        match plugin.auth(&request, self.plugins.limits()).await {
            Ok(AuthDecision::Accept) => Ok(generated()),
            Ok(AuthDecision::AcceptWith { auth, session_id, proven }) => {
                let named = session_id.filter(|s| crate::ids::is_valid(s));
                // Only a session the hook proved may replace a live connection of it.
                let takeover = proven && named.is_some();
                Ok(Admitted { session_id: named.unwrap_or_else(crate::ids::generate), auth, takeover })
            }
            Ok(AuthDecision::Reject { message }) => Err(MatchmakeError::new(ErrorCode::AuthFailed, message)),
            Err(e) => {
                tracing::error!(room_type = %plugin.manifest.name, "auth hook failed: {e}");
                Err(MatchmakeError::new(ErrorCode::AuthFailed, "onAuth failed"))
            }
        }
    }

    async fn check_token_local(&self, room_id: &str, token: String) -> Option<String> {
        let room = self.room(room_id)?;
        let (reply, rx) = oneshot::channel();
        room.send(RoomMsg::CheckReconnectionToken { token, reply });
        rx.await.ok().flatten()
    }
}

/// Who the auth hook let in.
struct Admitted {
    session_id: String,
    /// Auth data, MessagePack, for `on_join`.
    auth: Vec<u8>,
    /// The hook proved the client owns the session it named: a live connection of that
    /// session is replaced by this one. Otherwise a seat for a connected session is refused.
    takeover: bool,
}

fn encode(options: &Map<String, Value>) -> Vec<u8> {
    rmp_serde::to_vec_named(options).expect("JSON always encodes as MessagePack")
}
