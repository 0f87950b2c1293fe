//! Moving rooms between hosts: a draining host sends each of its rooms to the least-loaded live
//! host (`move_rooms`), which takes it over under the same room id (`import_room`).
//!
//! The room is frozen between two guest calls while it moves; its transfer travels over the
//! cluster's call channel. The room leaves this host only once the other one runs it; if the
//! other host refuses (another version, no slot, a failed restore), it carries on here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::oneshot;

use super::Matchmaker;
use super::handoff::Link;
use super::placement::RoomSlot;
use crate::cluster::{Reply, Request};
use crate::rooms::transfer::{self, RoomTransfer};
use crate::rooms::{self, RoomHandle, RoomMsg};
use odeon_protocol::registry::ProcessInfo;

/// Rooms frozen at once: one per core the host may use. A room is frozen from its export to the
/// other host's answer; more at once would only make each wait for the others on the same
/// cores (the bench saw a wave of 8 on one core freeze each room for the whole wave).
fn at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Rooms being prepared (their clients held behind proxies, the room running on) per room
/// frozen: a hold waits on the proxies, not on this host's cores, so the next rooms' holds run
/// while the current ones move.
const PREPARED_PER_FROZEN: usize = 4;

/// The longest a mover waits for a room's hold to be ready (the room's own limit is 2 s).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(4);

/// How one room's move went.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The room.
    pub room_id: String,
    /// Where it went, or why it stayed.
    pub outcome: Result<String, String>,
    /// How long it was frozen: from its transfer to the other host's answer.
    pub took: Duration,
    /// How long the room ran on, its clients behind proxies held, before it froze.
    pub held: Duration,
    /// How its transfer went: `direct` (host to host) or `redis`; empty if it did not go.
    pub via: &'static str,
}

impl Matchmaker {
    /// Sends every room of this host to another live host; returns how each move went.
    pub async fn move_rooms(&self) -> Vec<Moved> {
        use futures_util::StreamExt as _;
        let rooms: Vec<RoomHandle> = self.rooms.lock().expect("rooms lock").values().cloned().collect();
        let frozen = tokio::sync::Semaphore::new(at_once());
        let sent = std::sync::Mutex::default();
        let (frozen, sent) = (&frozen, &sent);
        let moved: Vec<Moved> = futures_util::stream::iter(rooms)
            .map(|room| async move { self.move_room(&room, frozen, sent).await })
            .buffer_unordered(at_once() * PREPARED_PER_FROZEN)
            .collect()
            .await;
        for m in &moved {
            match &m.outcome {
                Ok(to) => {
                    tracing::info!(
                        room = %m.room_id, to = %to, took_ms = m.took.as_secs_f64() * 1000.0,
                        held_ms = m.held.as_secs_f64() * 1000.0, "room moved"
                    )
                }
                Err(why) => tracing::warn!(room = %m.room_id, "room stays: {why}"),
            }
        }
        moved
    }

    /// A stopping host's moves (SIGTERM, SIGINT). With no other live host, it waits up to `wait`
    /// for one (a rolling restart starts the next instance as this one stops), unless every
    /// other host is stopping too (the whole deployment is going down).
    pub async fn move_rooms_on_stop(&self, wait: Duration) -> Vec<Moved> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.room_count() > 0 {
            let others: Vec<_> = self
                .processes()
                .await
                .into_iter()
                .filter(|p| p.process_id != self.config.process_id)
                .collect();
            if others.iter().any(|p| !p.draining) {
                return self.move_rooms().await;
            }
            if !others.is_empty() || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Vec::new()
    }

    /// Moves one room: its clients are held first (the room runs on), then, with one of the
    /// `frozen` permits, it freezes and moves.
    async fn move_room(
        &self,
        room: &RoomHandle,
        frozen_permits: &tokio::sync::Semaphore,
        sent: &std::sync::Mutex<HashMap<String, usize>>,
    ) -> Moved {
        let asked = Instant::now();
        let moved =
            |outcome, took, held, via| Moved { room_id: room.room_id.to_string(), outcome, took, held, via };
        // No place to go: the room is not held at all.
        let target = match self.target(sent).await {
            Ok(target) => target,
            Err(why) => return moved(Err(why), Duration::ZERO, Duration::ZERO, ""),
        };
        let (ready, is_ready) = oneshot::channel();
        if room.send(RoomMsg::PrepareMove { ready, to: target.process_id.clone() }) {
            // A room that cannot say (it is closing, say) is asked to move all the same.
            let _ = tokio::time::timeout(PREPARE_TIMEOUT, is_ready).await;
        }
        // The import's way is ready now, not while the room is frozen: a connection to the
        // target, or else the Redis call's reply channel, subscribed.
        let prepared = match Link::open(&target).await {
            Some(link) => Carrier::Direct(link),
            None => Carrier::Redis(self.cluster.prepare_call().await.ok()),
        };
        let via = match prepared {
            Carrier::Direct(_) => "direct",
            Carrier::Redis(_) => "redis",
        };
        let _permit = frozen_permits.acquire().await.expect("the semaphore is never closed");
        let (mut frozen, mut late) = (None, None);
        let outcome = self.try_move(room, target, prepared, &mut frozen, &mut late).await;
        let frozen = frozen.unwrap_or(asked);
        let took = frozen.elapsed();
        // Awaited (the room is unfrozen on its new host by now): the drain ends, and the host
        // exits, only after what came in between has gone on.
        if let (Ok(to), Some(late)) = (&outcome, late) {
            self.forward_late(room.room_id.to_string(), to, late).await;
        }
        moved(outcome, took, frozen - asked, via)
    }

    /// The live host a room goes to: the other one that takes rooms with the fewest, counting
    /// those this drain has `sent` it already (the registry learns of them at the next beat).
    async fn target(&self, sent: &std::sync::Mutex<HashMap<String, usize>>) -> Result<ProcessInfo, String> {
        let candidates: Vec<ProcessInfo> = self
            .cluster
            .processes()
            .await
            .into_iter()
            .filter(|p| p.process_id != self.config.process_id && p.takes_rooms())
            .collect();
        let mut sent = sent.lock().expect("sent lock");
        let load = |p: &ProcessInfo| p.rooms + sent.get(&p.process_id).copied().unwrap_or(0);
        let target = candidates
            .into_iter()
            .filter(|p| p.max_rooms.is_none_or(|max| load(p) < max))
            .min_by_key(|p| (load(p), p.process_id.clone()))
            .ok_or("no other live host can take it (none, or all draining or at their room limit)")?;
        *sent.entry(target.process_id.clone()).or_default() += 1;
        Ok(target)
    }

    /// Moves `room` to `target` (by the way `prepared` before the freeze);
    /// `frozen` is set when its transfer arrives (the room froze just before).
    async fn try_move(
        &self,
        room: &RoomHandle,
        target: ProcessInfo,
        prepared: Carrier,
        frozen: &mut Option<Instant>,
        late: &mut Option<oneshot::Receiver<Vec<(String, crate::rooms::ClientInput)>>>,
    ) -> Result<String, String> {
        let (reply, transfer) = oneshot::channel();
        let (commit, word) = oneshot::channel();
        let (late_tx, late_rx) = oneshot::channel();
        if !room.send(RoomMsg::MoveOut { reply, commit: word, late: late_tx }) {
            return Err("the room is gone".into());
        }
        let mut transfer = transfer.await.map_err(|_| "the room ended".to_string())??;
        *frozen = Some(Instant::now());
        let move_id = format!("{}{}", crate::ids::generate(), crate::ids::generate());
        transfer.move_id = move_id.clone();
        let answer = match prepared {
            Carrier::Direct(link) => link.import(transfer.encode()).await,
            Carrier::Redis(prepared) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(transfer.encode());
                let request = Request::ImportRoom { transfer: encoded };
                match prepared {
                    Some(prepared) => self.cluster.send_call(prepared, &target.process_id, request).await,
                    None => self.cluster.call(&target.process_id, request).await,
                }
            }
        };
        match answer {
            Ok(Reply::Imported) => {
                let _ = commit.send(Some(target.process_id.clone()));
                *late = Some(late_rx);
                Ok(target.process_id)
            }
            Ok(Reply::Failed { message, .. }) => {
                let _ = commit.send(None);
                Err(format!("{} refused it: {message}", target.process_id))
            }
            Ok(other) => {
                let _ = commit.send(None);
                Err(format!("{} answered {other:?}", target.process_id))
            }
            Err(e) => {
                // Unanswered: the other host may run it now, or soon. It stays here, and the
                // other host is told to end its copy quietly (without touching the listing,
                // which this room writes again).
                let _ = commit.send(None);
                let (cluster, to) = (self.cluster.clone(), target.process_id.clone());
                let room_id = room.room_id.to_string();
                tokio::spawn(async move {
                    let abandon = Request::AbandonImport { room_id: room_id.clone(), move_id };
                    if let Err(e) = cluster.call(&to, abandon).await {
                        tracing::warn!(room = %room_id, to = %to, "could not tell the other host to drop its copy: {e}");
                    }
                });
                Err(format!("{} did not answer: {e}", target.process_id))
            }
        }
    }

    /// Sends the room's new host what its 4010-closed clients sent here after it froze, once the
    /// room has collected it (`late`).
    async fn forward_late(
        &self,
        room_id: String,
        to: &str,
        late: oneshot::Receiver<Vec<(String, crate::rooms::ClientInput)>>,
    ) {
        let Ok(inputs) = late.await else { return };
        if inputs.is_empty() {
            return;
        }
        let frames = inputs.len();
        match self.cluster.call(to, Request::ForwardInputs { room_id: room_id.clone(), inputs }).await {
            Ok(Reply::Forwarded) => {}
            Ok(other) => {
                tracing::warn!(room = %room_id, %to, frames, "forwarded frames not taken: {other:?}")
            }
            Err(e) => tracing::warn!(room = %room_id, %to, frames, "forwarded frames not sent: {e}"),
        }
    }

    /// Ends the copy of a room whose mover got no answer to its import (it kept the room): the
    /// copy leaves without its dispose hook, its listing untouched, and the room's forwarding
    /// address is removed if it names this process. An import of that move still under way ends
    /// the same way once it is in; another move of the same room is not touched.
    pub(super) async fn abandon_import(&self, room_id: &str, move_id: &str) {
        let now = std::time::Instant::now();
        {
            let mut abandoned = self.abandoned.lock().expect("abandoned lock");
            abandoned.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
            abandoned.insert((room_id.to_string(), move_id.to_string()), now);
        }
        self.end_copy(room_id, move_id).await;
    }

    /// Whether the mover gave up on this move of the room.
    fn is_abandoned(&self, room_id: &str, move_id: &str) -> bool {
        self.abandoned
            .lock()
            .expect("abandoned lock")
            .contains_key(&(room_id.to_string(), move_id.to_string()))
    }

    async fn end_copy(&self, room_id: &str, move_id: &str) {
        let arrival = {
            let mut arrivals = self.arrived_from.lock().expect("arrivals lock");
            let this_move = arrivals.get(room_id).is_some_and(|a| a.move_id == move_id);
            if this_move { arrivals.remove(room_id) } else { None }
        };
        let Some(arrival) = arrival else { return };
        if let Some(room) = self.room(room_id) {
            tracing::warn!(room = %room_id, "dropping the copy of a room whose move was not confirmed");
            let owner = arrival.from.last().cloned().unwrap_or_default();
            room.send(RoomMsg::Abandon { owner, address: arrival.address });
        }
        unforward(&self.presence, room_id, &self.config.process_id).await;
    }

    /// The room `room_id`, once it runs here: at once if it does, else when it arrives from
    /// another host (a drain), if it does `within`. For a proxy's resume opened while the room
    /// is still held on its old host.
    pub async fn arriving_room(&self, room_id: &str, within: Duration) -> Option<RoomHandle> {
        if let Some(room) = self.room(room_id) {
            return Some(room);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut awaited = self.awaited.lock().expect("awaited lock");
            // Waits that timed out leave their senders behind (rooms that never came): they go
            // here, the room's own at each wait, every room's once there are many.
            if awaited.len() > 64 {
                awaited.retain(|_, waiters| waiters.iter().any(|w| !w.is_closed()));
            }
            let waiters = awaited.entry(room_id.to_string()).or_default();
            waiters.retain(|w| !w.is_closed());
            waiters.push(tx);
        }
        // It may have arrived between the first look and the registration.
        if let Some(room) = self.room(room_id) {
            return Some(room);
        }
        tokio::time::timeout(within, rx).await.ok()?.ok().filter(|room| !room.is_closed())
    }

    /// Whether the room `room_id` runs here after moving from `process_id`: its clients come
    /// back by paths that name that process.
    pub fn arrived_from(&self, room_id: &str, process_id: &str) -> bool {
        self.arrived_from
            .lock()
            .expect("arrivals lock")
            .get(room_id)
            .is_some_and(|a| a.from.iter().any(|p| p == process_id))
            && self.room(room_id).is_some()
    }

    /// Takes over a room moving off another host (`bytes`: its [`RoomTransfer`], MessagePack):
    /// the same version must run here, and a room slot be free.
    pub async fn import_room(&self, bytes: &[u8]) -> Result<(), String> {
        if self.is_draining() || self.is_shutting_down() {
            return Err("this host is stopping".into());
        }
        let started = Instant::now();
        let transfer = RoomTransfer::decode(bytes)?;
        let decoded = started.elapsed();
        let plugin = self
            .plugins
            .get(&transfer.name)
            .filter(|v| v.hash == transfer.hash)
            .or_else(|| {
                self.plugins.canary(&transfer.name).map(|c| c.version).filter(|v| v.hash == transfer.hash)
            })
            .ok_or_else(|| {
                format!("this host does not run version {} of {}", transfer.hash, transfer.name)
            })?;
        let max = self.plugins.limits().max_instances as usize;
        let slot = RoomSlot::take(&self.room_slots, max).ok_or("this host runs its limit of rooms")?;
        let mut listing = rooms::new_listing(
            &transfer.name,
            transfer.room_id.clone(),
            &self.config.process_id,
            transfer.metadata.clone(),
            transfer.create_filters.clone(),
        );
        listing.max_clients = transfer.max_clients;
        listing.private = transfer.private;
        listing.unlisted = transfer.unlisted;
        listing.created_at = transfer.created_at.clone();
        listing.public_address = self.config.public_address.clone();
        listing.plugin_version = plugin.version;
        let room_id = transfer.room_id.clone();
        let arrival = Arrival {
            from: transfer.previous_processes.clone(),
            move_id: transfer.move_id.clone(),
            address: transfer.public_address.clone(),
        };
        let deps = self.room_deps(slot);
        let handle = transfer::arrive(plugin, transfer, listing, deps, &self.room_runtime).await?;
        tracing::info!(
            room = %room_id, bytes = bytes.len(), decode_ms = decoded.as_secs_f64() * 1000.0,
            took_ms = started.elapsed().as_secs_f64() * 1000.0, "room arrived"
        );
        self.rooms.lock().expect("rooms lock").insert(room_id.clone(), handle.clone());
        // The resumes the proxies opened while the room was held attach now.
        for waiter in self.awaited.lock().expect("awaited lock").remove(&room_id).unwrap_or_default() {
            let _ = waiter.send(handle.clone());
        }
        {
            let live: std::collections::HashSet<String> =
                self.rooms.lock().expect("rooms lock").keys().cloned().collect();
            let mut arrived = self.arrived_from.lock().expect("arrivals lock");
            arrived.retain(|id, _| live.contains(id));
            arrived.insert(room_id.clone(), arrival.clone());
        }
        if self.is_abandoned(&room_id, &arrival.move_id) {
            self.end_copy(&room_id, &arrival.move_id).await;
            return Err("the mover gave up on this import".into());
        }
        // Proxies send the room's clients here when they come back by its old path (written
        // after the answer: the room is not frozen for it; until then the old host, which
        // runs until its rooms are gone, relays them here by the listing).
        let key = odeon_protocol::registry::moved_key(&room_id);
        let ttl = Duration::from_secs(odeon_protocol::registry::MOVED_TTL_SECS);
        let (presence, process_id, abandoned) =
            (self.presence.clone(), self.config.process_id.clone(), self.abandoned.clone());
        tokio::spawn(async move {
            if let Err(e) = presence.setex(&key, &process_id, ttl).await {
                tracing::warn!(room = %room_id, "moved room's forwarding address not written: {e}");
            }
            // An abandon that came while it was written found nothing to remove.
            let gave_up =
                abandoned.lock().expect("abandoned lock").contains_key(&(room_id.clone(), arrival.move_id));
            if gave_up {
                unforward(&presence, &room_id, &process_id).await;
            }
        });
        // The room count others place by, at once rather than at the next beat.
        let (cluster, rooms, clients) = (self.cluster.clone(), self.room_count(), self.client_count());
        tokio::spawn(async move { cluster.heartbeat(rooms, clients).await });
        Ok(())
    }
}

/// A room that moved here: the processes it ran on before, and the move that brought it.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    from: Vec<String>,
    move_id: String,
    /// The public address of the process it came from.
    address: Option<String>,
}

/// Removes a room's forwarding address if it names `process_id`.
async fn unforward(
    presence: &std::sync::Arc<dyn crate::presence::Presence>,
    room_id: &str,
    process_id: &str,
) {
    let key = odeon_protocol::registry::moved_key(room_id);
    if presence.get(&key).await.ok().flatten().as_deref() == Some(process_id) {
        let _ = presence.del(&key).await;
    }
}

/// How a room's transfer goes to its target, made ready before the room freezes.
enum Carrier {
    /// A connection to the target ([`handoff`](super::handoff)).
    Direct(Link),
    /// A call through Redis, its reply channel subscribed if that worked.
    Redis(Option<crate::cluster::PreparedCall>),
}
