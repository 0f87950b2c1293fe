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

use crate::cluster::{CallError, Cluster, Envelope, Reply, Request};
use crate::driver::{Driver, Query, RoomListing};
use crate::plugins::{PluginVersion, Plugins};
use crate::presence::Presence;
use crate::rooms::{self, CreateError, RoomDeps, RoomHandle, RoomMsg, SeatError};

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
    room_runtime: tokio::runtime::Handle,
    shutting_down: AtomicBool,
    /// The other processes of the deployment (only this one with the embedded presence).
    cluster: Arc<Cluster>,
}

/// How long joinOrCreate keeps trying when chosen rooms fill up or another caller is creating.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

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
        );
        Arc::new(Self {
            cluster,
            config,
            plugins,
            driver,
            presence,
            rooms: Arc::default(),
            creation_locks: Mutex::default(),
            room_runtime,
            shutting_down: AtomicBool::new(false),
        })
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

    /// Starts the registry heartbeat (which also sweeps dead processes) and serving calls from
    /// other processes. Both run until the runtime stops.
    pub async fn start(self: &Arc<Self>) -> Result<(), crate::cluster::CallError> {
        let mut requests = self.cluster.requests().await?;
        self.cluster.heartbeat(self.room_count(), self.client_count()).await;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::cluster::HEARTBEAT);
            loop {
                every.tick().await;
                let Some(mm) = weak.upgrade() else { return };
                if mm.is_shutting_down() {
                    return;
                }
                mm.cluster.heartbeat(mm.room_count(), mm.client_count()).await;
                mm.cluster.processes().await;
            }
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

    /// Answers a call from another process, on this process's rooms only.
    async fn serve(&self, request: Request) -> Reply {
        match request {
            Request::ReserveSeat { room_id, session_id, options, auth } => {
                match self.reserve_local(&room_id, session_id, options, auth).await {
                    Ok(_) => Reply::Reserved,
                    Err(SeatError::Locked) => Reply::Locked,
                    Err(SeatError::Gone) => Reply::Gone,
                }
            }
            Request::Create { room_name, options, session_id, auth } => {
                let Some(plugin) = self.plugins.get(&room_name) else {
                    return Reply::Failed {
                        custom_code: None,
                        message: format!("room type {room_name} not loaded here"),
                    };
                };
                match self.create_local(&plugin, &options, session_id, auth).await {
                    Ok(seat) => Reply::Created { room_id: seat.listing.room_id },
                    Err(e) => Reply::Failed { custom_code: e.custom_code, message: e.message },
                }
            }
            Request::CheckReconnectionToken { room_id, token } => {
                Reply::Session { session_id: self.check_token_local(&room_id, token).await }
            }
        }
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
                let (session_id, auth) = self.authenticate(&plugin, &options, token, ip).await?;
                match method {
                    "create" => self.create_and_reserve(&plugin, &options, session_id, auth).await,
                    "join" => self.join(&plugin, &options, session_id, auth, false).await,
                    _ => self.join(&plugin, &options, session_id, auth, true).await,
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
                let plugin = self.plugins.get(&listing.name).ok_or_else(|| {
                    MatchmakeError::new(ErrorCode::InvalidRoomId, format!("room \"{target}\" not found"))
                })?;
                let (session_id, auth) = self.authenticate(&plugin, &options, token, ip).await?;
                self.reserve(&listing, session_id, encode(&options), auth).await.map_err(|e| match e {
                    SeatError::Locked => {
                        MatchmakeError::new(ErrorCode::InvalidRoomId, format!("room \"{target}\" is locked"))
                    }
                    SeatError::Gone => {
                        MatchmakeError::new(ErrorCode::InvalidRoomId, format!("room \"{target}\" not found"))
                    }
                })
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
    ) -> Result<(String, Vec<u8>), MatchmakeError> {
        if !plugin.manifest.has_auth {
            return Ok((crate::ids::generate(), Vec::new()));
        }
        let request = AuthRequest { options: encode(options), token, ip };
        match plugin.auth(&request, self.plugins.limits()).await {
            Ok(AuthDecision::Accept) => Ok((crate::ids::generate(), Vec::new())),
            Ok(AuthDecision::AcceptWith { auth, session_id }) => {
                let session_id =
                    session_id.filter(|s| crate::ids::is_valid(s)).unwrap_or_else(crate::ids::generate);
                Ok((session_id, auth))
            }
            Ok(AuthDecision::Reject { message }) => Err(MatchmakeError::new(ErrorCode::AuthFailed, message)),
            Err(e) => {
                tracing::error!(room_type = %plugin.manifest.name, "auth hook failed: {e}");
                Err(MatchmakeError::new(ErrorCode::AuthFailed, "onAuth failed"))
            }
        }
    }

    async fn join(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
        create_if_missing: bool,
    ) -> Result<SeatReservation, MatchmakeError> {
        let query = self.query(plugin, options);
        let filter = serde_json::to_string(&query.filters).unwrap_or_default();
        // Callers in this process queue here; callers in other processes meet at the cluster
        // lock below, so concurrent joinOrCreate calls never create more rooms than needed.
        let lock = create_if_missing.then(|| self.creation_lock(&query));
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let unavailable =
            |e: crate::driver::DriverError| MatchmakeError::new(ErrorCode::Unhandled, e.to_string());
        let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if let Some(listing) = self.driver.find_one(&query).await.map_err(unavailable)? {
                match self.reserve(&listing, session_id.clone(), encode(options), auth.clone()).await {
                    Ok(r) => return Ok(r),
                    // Full since the listing was read, or its process is gone: look again once
                    // the room's listing publisher has had a moment to write the change.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                }
            }
            if !create_if_missing {
                return Err(MatchmakeError::new(
                    ErrorCode::InvalidCriteria,
                    "no rooms found with provided criteria",
                ));
            }
            if !self.cluster.try_lock(&query.name, &filter).await {
                // Another process is creating a room for this filter: wait for it to appear.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // A room may have appeared between the search and the lock.
            let result = match self.driver.find_one(&query).await.map_err(unavailable)? {
                Some(listing) => {
                    self.reserve(&listing, session_id.clone(), encode(options), auth.clone()).await.ok()
                }
                None => None,
            };
            let result = match result {
                Some(seat) => Ok(seat),
                None => self.create_and_reserve(plugin, options, session_id.clone(), auth.clone()).await,
            };
            self.cluster.unlock(&query.name, &filter).await;
            return result;
        }
        Err(MatchmakeError::new(ErrorCode::Unhandled, "failed to reserve a seat in time"))
    }

    fn query(&self, plugin: &PluginVersion, options: &Map<String, Value>) -> Query {
        Query {
            name: plugin.manifest.name.clone(),
            filters: plugin
                .manifest
                .filter_by
                .iter()
                .filter_map(|k| options.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            on_metadata: self.config.profile.filters_on_metadata(),
            sort_by: plugin.manifest.sort_by.iter().map(|(k, d)| (k.clone(), *d)).collect(),
        }
    }

    fn creation_lock(&self, query: &Query) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{}:{}", query.name, serde_json::to_string(&query.filters).unwrap_or_default());
        let mut locks = self.creation_locks.lock().expect("creation locks");
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key).or_default().clone()
    }

    /// Creates a room on the least-loaded live process and reserves the creator's seat. A
    /// process that fails to answer is never replaced by a local room unless it is dead, so a
    /// slow process cannot cause duplicate rooms.
    async fn create_and_reserve(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
    ) -> Result<SeatReservation, MatchmakeError> {
        for _ in 0..3 {
            let target = self.cluster.least_loaded().await;
            let Some(target) = target.filter(|p| p.process_id != self.config.process_id) else {
                return self.create_local(plugin, options, session_id, auth).await;
            };
            let request = Request::Create {
                room_name: plugin.manifest.name.clone(),
                options: options.clone(),
                session_id: session_id.clone(),
                auth: auth.clone(),
            };
            match self.cluster.call(&target.process_id, request).await {
                Ok(Reply::Created { room_id }) => {
                    let listing = self.find_by_id(&room_id).await?;
                    return Ok(SeatReservation { listing, session_id });
                }
                Ok(Reply::Failed { custom_code, message }) => {
                    return Err(MatchmakeError { code: ErrorCode::Unhandled, custom_code, message });
                }
                Ok(other) => {
                    return Err(MatchmakeError::new(
                        ErrorCode::Unhandled,
                        format!("unexpected reply {other:?}"),
                    ));
                }
                Err(e) => {
                    if self.cluster.is_alive(&target.process_id).await
                        && !matches!(e, CallError::Unreachable(_))
                    {
                        return Err(MatchmakeError::new(ErrorCode::Unhandled, e.to_string()));
                    }
                    self.cluster.sweep(&target.process_id).await;
                }
            }
        }
        self.create_local(plugin, options, session_id, auth).await
    }

    async fn create_local(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
    ) -> Result<SeatReservation, MatchmakeError> {
        if self.is_shutting_down() {
            return Err(MatchmakeError::new(ErrorCode::Unhandled, "server is shutting down"));
        }
        let mut merged: Map<String, Value> =
            rmp_serde::from_slice(&plugin.manifest.default_options).unwrap_or_default();
        merged.extend(options.clone());
        let create_filters: Map<String, Value> = plugin
            .manifest
            .filter_by
            .iter()
            .filter_map(|k| merged.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let room_id = crate::ids::generate();
        let mut listing = rooms::new_listing(
            &plugin.manifest.name,
            room_id.clone(),
            &self.config.process_id,
            create_filters.clone(),
            create_filters,
        );
        listing.public_address = self.config.public_address.clone();
        let rooms_map = self.rooms.clone();
        let deps = RoomDeps {
            driver: self.driver.clone(),
            presence: self.presence.clone(),
            on_exit: Arc::new(move |id| {
                rooms_map.lock().expect("rooms lock").remove(id);
            }),
            profile: self.config.profile,
            seat_timeout: self.config.seat_timeout,
            limits: self.plugins.limits(),
            hold_bytes: crate::net::wire::WireLimits::default().queue_bytes,
        };
        let (handle, _) = rooms::create(plugin.clone(), listing, encode(&merged), deps, &self.room_runtime)
            .await
            .map_err(|e| match e {
                CreateError::Refused { code, message } => MatchmakeError {
                    code: ErrorCode::Unhandled,
                    custom_code: Some(code).filter(|c| *c != 523),
                    message,
                },
                CreateError::Guest(g) => {
                    tracing::error!(room_type = %plugin.manifest.name, "room creation failed: {g}");
                    MatchmakeError::new(ErrorCode::Unhandled, format!("failed to create room: {g}"))
                }
            })?;
        self.rooms.lock().expect("rooms lock").insert(room_id.clone(), handle);
        self.cluster.heartbeat(self.room_count(), self.client_count()).await;
        self.reserve_local(&room_id, session_id, encode(options), auth)
            .await
            .map_err(|e| MatchmakeError::new(ErrorCode::Unhandled, format!("new room refused a seat: {e}")))
    }

    /// Reserves a seat in a room of any process.
    async fn reserve(
        &self,
        listing: &RoomListing,
        session_id: String,
        options: Vec<u8>,
        auth: Vec<u8>,
    ) -> Result<SeatReservation, SeatError> {
        if listing.process_id == self.config.process_id {
            return self.reserve_local(&listing.room_id, session_id, options, auth).await;
        }
        let request = Request::ReserveSeat {
            room_id: listing.room_id.clone(),
            session_id: session_id.clone(),
            options,
            auth,
        };
        match self.cluster.call(&listing.process_id, request).await {
            Ok(Reply::Reserved) => Ok(SeatReservation { listing: listing.clone(), session_id }),
            Ok(Reply::Locked) => Err(SeatError::Locked),
            Ok(_) => Err(SeatError::Gone),
            Err(e) => {
                tracing::warn!(room = %listing.room_id, process = %listing.process_id, "seat not reserved: {e}");
                if !self.cluster.is_alive(&listing.process_id).await {
                    self.cluster.sweep(&listing.process_id).await;
                }
                Err(SeatError::Gone)
            }
        }
    }

    async fn reserve_local(
        &self,
        room_id: &str,
        session_id: String,
        options: Vec<u8>,
        auth: Vec<u8>,
    ) -> Result<SeatReservation, SeatError> {
        let room = self.room(room_id).ok_or(SeatError::Gone)?;
        let (reply, rx) = oneshot::channel();
        room.send(RoomMsg::ReserveSeat { session_id: session_id.clone(), options, auth, reply });
        let listing = rx.await.map_err(|_| SeatError::Gone)??;
        Ok(SeatReservation { listing, session_id })
    }

    async fn check_token_local(&self, room_id: &str, token: String) -> Option<String> {
        let room = self.room(room_id)?;
        let (reply, rx) = oneshot::channel();
        room.send(RoomMsg::CheckReconnectionToken { token, reply });
        rx.await.ok().flatten()
    }
}

fn encode(options: &Map<String, Value>) -> Vec<u8> {
    rmp_serde::to_vec_named(options).expect("JSON always encodes as MessagePack")
}
