//! Where a player goes: a seat in an existing room that matches (on this process or another), or
//! a new room on the least-loaded process, under a creation lock so concurrent joinOrCreate
//! calls never create more rooms than needed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::cluster::{CallError, Reply, Request};
use crate::driver::{Query, RoomListing};
use crate::plugins::PluginVersion;
use crate::rooms::{self, CreateError, RoomDeps, RoomMsg, SeatError};

use super::{JOIN_DEADLINE, MatchmakeError, Matchmaker, RETRY_BACKOFF, SeatReservation, encode};
use odeon_protocol::profile::ErrorCode;

impl Matchmaker {
    pub(super) async fn join(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
        takeover: bool,
        // `Some(address)` for joinOrCreate: create a room if none matches, on behalf of that
        // client address (which the per-address creation limit counts).
        create_for: Option<Option<std::net::IpAddr>>,
    ) -> Result<SeatReservation, MatchmakeError> {
        let create_if_missing = create_for.is_some();
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
        let mut query = query;
        let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
        let mut backoff = RETRY_BACKOFF.0;
        while tokio::time::Instant::now() < deadline {
            if let Some(listing) = self.driver.find_one(&query).await.map_err(unavailable)? {
                match self
                    .reserve(&listing, session_id.clone(), encode(options), auth.clone(), takeover)
                    .await
                {
                    Ok(r) => return Ok(r),
                    // Full since the listing was read: look again once the room's listing
                    // publisher has had a moment to write the change, backing off.
                    Err(SeatError::Locked) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_BACKOFF.1);
                        continue;
                    }
                    // Not there (its process is gone, or a stale listing): leave it out of this
                    // request's searches, so the next one finds another room or creates one.
                    Err(SeatError::Gone) => {
                        query.exclude.push(listing.room_id);
                        continue;
                    }
                    Err(SeatError::SessionTaken) => return Err(session_taken(&session_id)),
                }
            }
            if !create_if_missing {
                return Err(MatchmakeError::new(
                    ErrorCode::InvalidCriteria,
                    "no rooms found with provided criteria",
                ));
            }
            let lock = self.cluster.try_lock(&query.name, &filter).await.map_err(|e| {
                MatchmakeError::new(ErrorCode::Unhandled, format!("cannot create a room now: {e}"))
            })?;
            let Some(lock) = lock else {
                // Another process is creating a room for this filter: wait for it to appear.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            // A room may have appeared between the search and the lock.
            let result = match self.driver.find_one(&query).await {
                Ok(Some(listing)) => self
                    .reserve(&listing, session_id.clone(), encode(options), auth.clone(), takeover)
                    .await
                    .ok(),
                Ok(None) => None,
                Err(e) => {
                    lock.release().await;
                    return Err(unavailable(e));
                }
            };
            let result = match result {
                Some(seat) => Ok(seat),
                None => match self.may_create(create_for.flatten()).await {
                    Ok(()) => {
                        self.create_and_reserve(plugin, options, session_id.clone(), auth.clone(), takeover)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            lock.release().await;
            return result;
        }
        Err(MatchmakeError::new(ErrorCode::Unhandled, "failed to reserve a seat in time"))
    }

    pub(super) fn query(&self, plugin: &PluginVersion, options: &Map<String, Value>) -> Query {
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
            exclude: Vec::new(),
        }
    }

    pub(super) fn creation_lock(&self, query: &Query) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{}:{}", query.name, serde_json::to_string(&query.filters).unwrap_or_default());
        let mut locks = self.creation_locks.lock().expect("creation locks");
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key).or_default().clone()
    }

    /// Creates a room on the least-loaded live process and reserves the creator's seat. A
    /// process that fails to answer is never replaced by a local room unless it is dead, so a
    /// slow process cannot cause duplicate rooms.
    pub(super) async fn create_and_reserve(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
        takeover: bool,
    ) -> Result<SeatReservation, MatchmakeError> {
        for _ in 0..3 {
            let target = self.cluster.least_loaded().await;
            let Some(target) = target.filter(|p| p.process_id != self.config.process_id) else {
                return self.create_local(plugin, options, session_id, auth, takeover).await;
            };
            let request = Request::Create {
                room_name: plugin.manifest.name.clone(),
                options: options.clone(),
                session_id: session_id.clone(),
                auth: auth.clone(),
                takeover,
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
        self.create_local(plugin, options, session_id, auth, takeover).await
    }

    pub(super) async fn create_local(
        &self,
        plugin: &Arc<PluginVersion>,
        options: &Map<String, Value>,
        session_id: String,
        auth: Vec<u8>,
        takeover: bool,
    ) -> Result<SeatReservation, MatchmakeError> {
        if self.is_shutting_down() {
            return Err(MatchmakeError::new(ErrorCode::Unhandled, "server is shutting down"));
        }
        if self.is_draining() {
            return Err(MatchmakeError::new(
                ErrorCode::Unhandled,
                "this process is draining and no other process can take a new room",
            ));
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
        let Some(slot) = RoomSlot::take(&self.room_slots, self.plugins.limits().max_instances as usize)
        else {
            return Err(MatchmakeError::new(
                ErrorCode::Unhandled,
                format!("this process runs its limit of {} rooms", self.plugins.limits().max_instances),
            ));
        };
        let room_id = crate::ids::generate();
        // A canary takes its share of new rooms, by room id.
        let plugin =
            &self.plugins.for_new_room(&plugin.manifest.name, &room_id).unwrap_or_else(|| plugin.clone());
        let mut listing = rooms::new_listing(
            &plugin.manifest.name,
            room_id.clone(),
            &self.config.process_id,
            create_filters.clone(),
            create_filters,
        );
        listing.public_address = self.config.public_address.clone();
        let deps = self.room_deps(slot);
        self.creating.lock().expect("creating lock").insert(room_id.clone());
        let created = rooms::create(plugin.clone(), listing, encode(&merged), deps, &self.room_runtime).await;
        if let Ok((handle, _)) = &created {
            self.rooms.lock().expect("rooms lock").insert(room_id.clone(), handle.clone());
            if self.is_draining() {
                // Created as the drain began: it takes no more seats than the creator's.
                handle.send(RoomMsg::Drain);
            }
        }
        self.creating.lock().expect("creating lock").remove(&room_id);
        created.map_err(|e| match e {
            CreateError::Refused { code, message } => MatchmakeError {
                code: ErrorCode::Unhandled,
                custom_code: Some(code).filter(|c| *c != 523),
                message,
            },
            CreateError::Guest(g) => {
                plugin.record_fault();
                tracing::error!(room_type = %plugin.manifest.name, "room creation failed: {g}");
                MatchmakeError::new(ErrorCode::Unhandled, format!("failed to create room: {g}"))
            }
        })?;
        self.cluster.heartbeat(self.room_count(), self.client_count()).await;
        self.reserve_local(&room_id, session_id, encode(options), auth, takeover)
            .await
            .map_err(|e| MatchmakeError::new(ErrorCode::Unhandled, format!("new room refused a seat: {e}")))
    }

    /// What a room of this host depends on; `slot` is freed when the room's last handle on them
    /// goes.
    pub(super) fn room_deps(&self, slot: RoomSlot) -> RoomDeps {
        let rooms_map = self.rooms.clone();
        let plugins = self.plugins.clone();
        RoomDeps {
            driver: self.driver.clone(),
            presence: self.presence.clone(),
            on_exit: Arc::new(move |id| {
                let _held = &slot;
                let last_of_type = {
                    let mut rooms = rooms_map.lock().expect("rooms lock");
                    rooms
                        .remove(id)
                        .map(|ended| ended.plugin().manifest.name.clone())
                        .filter(|name| !rooms.values().any(|r| r.plugin().manifest.name == *name))
                };
                // The last room of a type whose plugin file was removed takes the type with it.
                if let Some(name) = last_of_type {
                    plugins.unregister_retired(&name);
                }
            }),
            profile: self.config.profile,
            seat_timeout: self.config.seat_timeout,
            limits: self.plugins.limits(),
            hold_bytes: crate::net::wire::WireLimits::default().queue_bytes,
        }
    }

    /// Reserves a seat in a room of any process.
    pub(super) async fn reserve(
        &self,
        listing: &RoomListing,
        session_id: String,
        options: Vec<u8>,
        auth: Vec<u8>,
        takeover: bool,
    ) -> Result<SeatReservation, SeatError> {
        if listing.process_id == self.config.process_id {
            return self.reserve_local(&listing.room_id, session_id, options, auth, takeover).await;
        }
        let request = Request::ReserveSeat {
            room_id: listing.room_id.clone(),
            session_id: session_id.clone(),
            options,
            auth,
            takeover,
        };
        match self.cluster.call(&listing.process_id, request).await {
            Ok(Reply::Reserved) => Ok(SeatReservation { listing: listing.clone(), session_id }),
            Ok(Reply::Locked) => Err(SeatError::Locked),
            Ok(Reply::SessionTaken) => Err(SeatError::SessionTaken),
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

    pub(super) async fn reserve_local(
        &self,
        room_id: &str,
        session_id: String,
        options: Vec<u8>,
        auth: Vec<u8>,
        takeover: bool,
    ) -> Result<SeatReservation, SeatError> {
        let Some(room) = self.room(room_id) else {
            if self.creating.lock().expect("creating lock").contains(room_id) {
                return Err(SeatError::Locked);
            }
            // A listing of this process's that names no room here is stale (a room that ended
            // without its listing removed): remove it, off the request's path.
            let (driver, room_id) = (self.driver.clone(), room_id.to_string());
            tokio::spawn(async move {
                match driver.remove(&room_id).await {
                    Ok(()) => tracing::debug!(room = %room_id, "removed a stale listing"),
                    Err(e) => tracing::warn!(room = %room_id, "stale listing not removed: {e}"),
                }
            });
            return Err(SeatError::Gone);
        };
        let (reply, rx) = oneshot::channel();
        room.send(RoomMsg::ReserveSeat { session_id: session_id.clone(), options, auth, takeover, reply });
        let listing = rx.await.map_err(|_| SeatError::Gone)??;
        Ok(SeatReservation { listing, session_id })
    }
}

/// The refusal of a seat for a session that is connected, when the auth hook did not prove it.
pub(super) fn session_taken(session_id: &str) -> MatchmakeError {
    MatchmakeError::new(
        ErrorCode::Unhandled,
        format!("session \"{session_id}\" is already connected; it must leave before it joins again"),
    )
}

/// One of the process's room slots (at most `--max-rooms` rooms run at once), free again when
/// dropped.
pub(super) struct RoomSlot(Arc<std::sync::atomic::AtomicUsize>);

impl RoomSlot {
    pub(super) fn take(slots: &Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Self> {
        use std::sync::atomic::Ordering;
        slots.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Self(slots.clone()))
    }
}

impl Drop for RoomSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
