//! Several host processes as one deployment: a process registry with heartbeats, and calls
//! between processes (reserve a seat in a room another process runs, create a room on the
//! least-loaded process, check a reconnection token), all over [`Presence`].
//!
//! With the embedded in-process presence the registry holds only this process and no call ever
//! leaves it; with Redis presence every host sees the others.
//!
//! - Registry: `odeon:process:<id>` holds this process's address and load with a short TTL,
//!   renewed every second; the set `odeon:processes` lists ids. A process whose key expired is
//!   dead: the sweeper of any host that notices removes it from the set and removes its room
//!   listings. A live process that was swept (its renewal came too late) finds itself missing
//!   from the set at its next renewal and publishes its listings again.
//!   Joining and leaving are also announced on [`REGISTRY_EVENTS`] for the proxy (`odeon-proxy`),
//!   which routes by `endpoint` and resyncs from the registry itself.
//! - Creation locks: `odeon:creating:<name>:<filter>` holds its owner's token; see
//!   [`Cluster::try_lock`].
//! - Calls: a request is published on `p:<id>`; the reply comes back on `ipc:<request id>`, which
//!   the caller subscribed to before publishing. A call that nobody receives fails at once; one
//!   that gets no reply fails after [`CALL_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::driver::Driver;
use crate::presence::{Presence, Subscription};

/// How long a process entry lives without a heartbeat.
pub const PROCESS_TTL: Duration = Duration::from_secs(3);
/// How often a process renews its entry and sweeps dead ones.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a call to another process waits for its reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

use odeon_protocol::registry::{PROCESSES, process_key};
pub use odeon_protocol::registry::{ProcessInfo, REGISTRY_EVENTS, RegistryEvent};

fn request_channel(process_id: &str) -> String {
    format!("p:{process_id}")
}

fn reply_channel(request_id: &str) -> String {
    format!("ipc:{request_id}")
}

/// A call from one process to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum Request {
    /// Reserve a seat in a room the callee runs.
    #[serde(rename_all = "camelCase")]
    ReserveSeat {
        /// The room.
        room_id: String,
        /// The session that will connect.
        session_id: String,
        /// Join options, MessagePack.
        options: Vec<u8>,
        /// Auth data, MessagePack.
        auth: Vec<u8>,
        /// The auth hook proved the session: a live connection of it is replaced.
        #[serde(default)]
        takeover: bool,
    },
    /// Create a room on the callee and reserve the creator's seat in it.
    #[serde(rename_all = "camelCase")]
    Create {
        /// Room type.
        room_name: String,
        /// The creator's options.
        options: Map<String, Value>,
        /// The creator's session.
        session_id: String,
        /// Auth data, MessagePack.
        auth: Vec<u8>,
        /// The auth hook proved the session: a live connection of it is replaced.
        #[serde(default)]
        takeover: bool,
    },
    /// Which session a reconnection token of a room belongs to.
    #[serde(rename_all = "camelCase")]
    CheckReconnectionToken {
        /// The room.
        room_id: String,
        /// The token.
        token: String,
    },
    /// Take over a room that is moving off the caller (a drain): `transfer` is its
    /// `RoomTransfer`, MessagePack, base64.
    #[serde(rename_all = "camelCase")]
    ImportRoom {
        /// The transfer.
        transfer: String,
    },
    /// Frames a moved room's clients sent to the caller (its old host) after it froze: for the
    /// room to apply as theirs.
    #[serde(rename_all = "camelCase")]
    ForwardInputs {
        /// The room.
        room_id: String,
        /// Sessions and their frames, in order.
        inputs: Vec<(String, crate::rooms::ClientInput)>,
    },
    /// An `ImportRoom` the caller got no answer to: the room stays on the caller, so a copy
    /// started here (or starting) ends quietly, its listing and clients left alone.
    #[serde(rename_all = "camelCase")]
    AbandonImport {
        /// The room.
        room_id: String,
        /// The attempt (`RoomTransfer::move_id`).
        #[serde(default)]
        move_id: String,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Reply {
    /// The seat is held.
    Reserved,
    /// A room was created with the seat held.
    #[serde(rename_all = "camelCase")]
    Created {
        /// The new room.
        room_id: String,
    },
    /// The session of a reconnection token, if valid.
    #[serde(rename_all = "camelCase")]
    Session {
        /// The session id.
        session_id: Option<String>,
    },
    /// The room moved here and runs.
    Imported,
    /// The forwarded frames went to the room.
    Forwarded,
    /// The room is locked or full.
    Locked,
    /// The room is not here.
    Gone,
    /// The session is connected there, and the auth hook did not prove the new client owns it.
    SessionTaken,
    /// A matchmaking error, with its code name and message.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// Whether it was a custom code from the room.
        custom_code: Option<u32>,
        /// The message.
        message: String,
    },
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Nobody listens on the process's channel: it is gone.
    #[error("process {0} is not reachable")]
    Unreachable(String),
    /// No reply in time.
    #[error("process {0} did not answer in time")]
    Timeout(String),
    /// Presence failed.
    #[error("{0}")]
    Presence(String),
}

/// An incoming request, to answer with [`Cluster::reply`].
#[derive(Debug, Deserialize, Serialize)]
pub struct Envelope {
    /// Request id: the reply channel's suffix.
    pub id: String,
    /// The request.
    pub request: Request,
}

/// A call whose reply channel is subscribed already ([`Cluster::prepare_call`]).
pub struct PreparedCall {
    id: String,
    replies: Subscription,
}

/// This process's view of the deployment.
pub struct Cluster {
    presence: Arc<dyn Presence>,
    driver: Arc<dyn Driver>,
    process_id: String,
    address: Option<String>,
    endpoint: Option<String>,
    /// This process is draining: its entry says so, and matchmaking leaves it out.
    draining: std::sync::atomic::AtomicBool,
    /// The most rooms this process runs, once set: at it, others place rooms elsewhere.
    room_limit: std::sync::OnceLock<usize>,
    /// What another host shows to send this one a moving room directly (in the registry entry,
    /// with the endpoint it is sent to).
    peer_key: String,
}

impl Cluster {
    /// The cluster as seen by `process_id`, reachable by clients at `address` and by a proxy at
    /// `endpoint`.
    pub fn new(
        presence: Arc<dyn Presence>,
        driver: Arc<dyn Driver>,
        process_id: String,
        address: Option<String>,
        endpoint: Option<String>,
    ) -> Arc<Self> {
        let (draining, room_limit) = Default::default();
        let peer_key = (0..4).map(|_| crate::ids::generate()).collect();
        Arc::new(Self { presence, driver, process_id, address, endpoint, draining, room_limit, peer_key })
    }

    /// Says in this process's entry that it runs at most `max` rooms.
    pub fn set_room_limit(&self, max: usize) {
        let _ = self.room_limit.set(max);
    }

    /// Announces a registry change to whoever follows the deployment; a failure is only logged
    /// (followers resync the whole registry periodically).
    async fn announce(&self, event: RegistryEvent) {
        let json = serde_json::to_string(&event).expect("registry events serialize");
        if let Err(e) = self.presence.publish(REGISTRY_EVENTS, &json).await {
            tracing::debug!("registry change not announced: {e}");
        }
    }

    /// This process's id.
    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    /// Whether `given` is this process's peer key.
    pub fn is_peer_key(&self, given: &str) -> bool {
        crate::net::token_eq(given.as_bytes(), self.peer_key.as_bytes())
    }

    /// Renews this process's registry entry. Returns `true` when this process had to be added
    /// back to the registry's set: another process swept it as dead (its heartbeat came late),
    /// which also removed its room listings, so the caller must publish them again.
    pub async fn heartbeat(&self, rooms: usize, clients: usize) -> bool {
        let info = ProcessInfo {
            process_id: self.process_id.clone(),
            address: self.address.clone(),
            endpoint: self.endpoint.clone(),
            rooms,
            clients,
            draining: self.is_draining(),
            max_rooms: self.room_limit.get().copied(),
            peer_key: self.endpoint.as_ref().map(|_| self.peer_key.clone()),
        };
        let json = serde_json::to_string(&info).expect("process info serializes");
        let key = process_key(&self.process_id);
        let result = async {
            self.presence.setex(&key, &json, PROCESS_TTL).await?;
            let added = self.presence.sadd(PROCESSES, &self.process_id).await?;
            // Colyseus's `roomcount` hash, for tools that read it.
            self.presence.hset("roomcount", &self.process_id, &format!("{rooms},{clients}")).await?;
            Ok::<_, crate::presence::PresenceError>(added)
        }
        .await;
        match result {
            Ok(added) => {
                if added {
                    self.announce(RegistryEvent::Add { process_id: self.process_id.clone() }).await;
                }
                added
            }
            Err(e) => {
                tracing::warn!("process registry not renewed: {e}");
                false
            }
        }
    }

    /// Removes this process from the registry (graceful shutdown).
    pub async fn unregister(&self) {
        let _ = self.presence.del(&process_key(&self.process_id)).await;
        let _ = self.presence.srem(PROCESSES, &self.process_id).await;
        let _ = self.presence.hdel("roomcount", &self.process_id).await;
        self.announce(RegistryEvent::Remove { process_id: self.process_id.clone() }).await;
    }

    /// The live processes.
    pub async fn processes(&self) -> Vec<ProcessInfo> {
        self.registry().await.map(|(alive, _)| alive).unwrap_or_default()
    }

    /// Sweeps the processes whose entry expired (see [`Cluster::sweep`]); returns how many.
    pub async fn sweep_dead(&self) -> usize {
        let Some((_, dead)) = self.registry().await else { return 0 };
        for id in &dead {
            self.sweep(id).await;
        }
        dead.len()
    }

    /// The registry in two round trips whatever its size (the set, then every entry in one
    /// MGET): the live processes, and the ids listed whose entry expired.
    async fn registry(&self) -> Option<(Vec<ProcessInfo>, Vec<String>)> {
        let ids = match self.presence.smembers(PROCESSES).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("process registry unreadable: {e}");
                return None;
            }
        };
        let keys: Vec<String> = ids.iter().map(|id| process_key(id)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let entries = match self.presence.mget(&keys).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!("process registry unreadable: {e}");
                return None;
            }
        };
        let (mut alive, mut dead) = (Vec::new(), Vec::new());
        for (id, entry) in ids.into_iter().zip(entries) {
            match entry {
                Some(json) => match serde_json::from_str::<ProcessInfo>(&json) {
                    Ok(info) => alive.push(info),
                    Err(e) => tracing::warn!(process = %id, "bad registry entry: {e}"),
                },
                None if id == self.process_id => {}
                None => dead.push(id),
            }
        }
        Some((alive, dead))
    }

    /// Whether a process's registry entry is current.
    pub async fn is_alive(&self, process_id: &str) -> bool {
        !matches!(self.presence.exists(&process_key(process_id)).await, Ok(false))
    }

    /// Forgets a dead process: its registry entry and its room listings.
    pub async fn sweep(&self, process_id: &str) {
        if process_id == self.process_id {
            return;
        }
        let _ = self.presence.srem(PROCESSES, process_id).await;
        let _ = self.presence.hdel("roomcount", process_id).await;
        self.announce(RegistryEvent::Remove { process_id: process_id.to_string() }).await;
        match self.driver.cleanup(process_id).await {
            Ok(n) => tracing::warn!(process = process_id, listings = n, "swept a dead process"),
            Err(e) => tracing::warn!(process = process_id, "listings of a dead process not removed: {e}"),
        }
    }

    /// Marks this process draining; its next heartbeat tells the deployment.
    pub fn set_draining(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Tells proxies to read this process's entry again now (it changed: it is draining).
    pub async fn announce_entry(&self) {
        self.announce(RegistryEvent::Add { process_id: self.process_id.clone() }).await;
    }

    /// Whether this process is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The live process that runs the fewest rooms (this one on ties), draining ones and those at
    /// their room limit left out.
    pub async fn least_loaded(&self) -> Option<ProcessInfo> {
        let mut all: Vec<ProcessInfo> =
            self.processes().await.into_iter().filter(ProcessInfo::takes_rooms).collect();
        all.sort_by_key(|p| (p.rooms, p.process_id != self.process_id, p.process_id.clone()));
        all.into_iter().next()
    }

    /// Subscribes to the requests addressed to this process.
    pub async fn requests(&self) -> Result<Subscription, CallError> {
        self.presence
            .subscribe(&request_channel(&self.process_id))
            .await
            .map_err(|e| CallError::Presence(e.to_string()))
    }

    /// Answers a request.
    pub async fn reply(&self, id: &str, reply: &Reply) {
        let json = serde_json::to_string(reply).expect("replies serialize");
        if let Err(e) = self.presence.publish(&reply_channel(id), &json).await {
            tracing::warn!("reply {id} not sent: {e}");
        }
    }

    /// Calls another process and waits for its reply.
    pub async fn call(&self, process_id: &str, request: Request) -> Result<Reply, CallError> {
        let prepared = self.prepare_call().await?;
        self.send_call(prepared, process_id, request).await
    }

    /// The first half of a call: its reply channel, subscribed, so that sending it later costs
    /// one publish (a drain prepares its import call before the room freezes).
    pub async fn prepare_call(&self) -> Result<PreparedCall, CallError> {
        let id = format!("{}{}", crate::ids::generate(), crate::ids::generate());
        let replies = self
            .presence
            .subscribe(&reply_channel(&id))
            .await
            .map_err(|e| CallError::Presence(e.to_string()))?;
        Ok(PreparedCall { id, replies })
    }

    /// Sends a prepared call to `process_id` and waits for its reply.
    pub async fn send_call(
        &self,
        prepared: PreparedCall,
        process_id: &str,
        request: Request,
    ) -> Result<Reply, CallError> {
        let PreparedCall { id, mut replies } = prepared;
        let presence_err = |e: crate::presence::PresenceError| CallError::Presence(e.to_string());
        let envelope = serde_json::to_string(&Envelope { id, request }).expect("requests serialize");
        let receivers =
            self.presence.publish(&request_channel(process_id), &envelope).await.map_err(presence_err)?;
        if receivers == 0 {
            return Err(CallError::Unreachable(process_id.to_string()));
        }
        match tokio::time::timeout(CALL_TIMEOUT, replies.recv()).await {
            Ok(Some(json)) => {
                serde_json::from_str(&json).map_err(|e| CallError::Presence(format!("bad reply: {e}")))
            }
            _ => Err(CallError::Timeout(process_id.to_string())),
        }
    }

    /// Takes the creation lock of a room type and filter across every process; `Ok(None)` when
    /// another caller holds it, `Err` when presence cannot be asked (nobody can create then).
    ///
    /// The lock is a key holding its owner's token (`SET NX PX`): contenders only read it, so
    /// they never extend it; its holder renews it every [`LOCK_RENEW`] while it creates; so a
    /// dead holder's lock expires within [`LOCK_TTL`].
    pub async fn try_lock(&self, name: &str, filter: &str) -> Result<Option<CreationLock>, CallError> {
        let key = format!("odeon:creating:{name}:{filter}");
        let token = format!("{}:{}", self.process_id, crate::ids::generate());
        match self.presence.set_nx(&key, &token, LOCK_TTL).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(CallError::Presence(e.to_string())),
        }
        let renewal = tokio::spawn({
            let (presence, key, token) = (self.presence.clone(), key.clone(), token.clone());
            async move {
                loop {
                    tokio::time::sleep(LOCK_RENEW).await;
                    match presence.expire_if_equal(&key, &token, LOCK_TTL).await {
                        Ok(true) => {}
                        Ok(false) => return tracing::warn!(lock = %key, "creation lock lost before release"),
                        Err(e) => tracing::warn!(lock = %key, "creation lock not renewed: {e}"),
                    }
                }
            }
        });
        Ok(Some(CreationLock { presence: self.presence.clone(), key, token, renewal: Some(renewal) }))
    }
}

/// How long a creation lock lives unless its holder renews it.
pub const LOCK_TTL: Duration = Duration::from_secs(3);
/// How often the holder of a creation lock renews it.
pub const LOCK_RENEW: Duration = Duration::from_secs(1);

/// A creation lock this process holds (see [`Cluster::try_lock`]); renewed until released.
/// Dropping it releases it too, from a task of its own.
pub struct CreationLock {
    presence: Arc<dyn Presence>,
    key: String,
    token: String,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl CreationLock {
    /// Releases the lock (only if it is still this holder's).
    pub async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if let Err(e) = self.presence.del_if_equal(&self.key, &self.token).await {
            tracing::warn!(lock = %self.key, "creation lock not released (it expires by itself): {e}");
        }
    }
}

impl Drop for CreationLock {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
            let (presence, key, token) = (self.presence.clone(), self.key.clone(), self.token.clone());
            tokio::spawn(async move {
                let _ = presence.del_if_equal(&key, &token).await;
            });
        }
    }
}
