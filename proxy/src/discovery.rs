//! Following the hosts' registry in Redis (`odeon_protocol::registry`): announcements patch the
//! route table as they happen, and a full resync every period replaces it, which also drops a
//! host whose entry expired because its heartbeat stopped (a crash announces nothing).
//!
//! Every Redis call is bounded by [`TIMEOUT`]. When Redis is slow, restarting or unreachable the
//! table is left as it was, so the last known routes keep serving; the subscription and the
//! connection are made again at the next period.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use odeon_protocol::registry::{PROCESSES, ProcessInfo, REGISTRY_EVENTS, RegistryEvent, process_key};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Client};
use tokio::time::timeout;

use crate::routes::{Route, Routes};

/// Longest wait for any one Redis call.
pub const TIMEOUT: Duration = Duration::from_secs(1);

type Events = Pin<Box<dyn Stream<Item = redis::Msg> + Send>>;

/// The registry follower's connections; both are made again when lost.
pub struct Discovery {
    client: Client,
    routes: Arc<Routes>,
    commands: Option<MultiplexedConnection>,
    events: Option<Events>,
}

impl Discovery {
    /// A follower of the registry at `client` that keeps `routes`.
    pub fn new(client: Client, routes: Arc<Routes>) -> Self {
        Self { client, routes, commands: None, events: None }
    }

    /// Subscribes to announcements and reads the whole registry once. Fails when Redis could not
    /// be asked; the table is then empty, and [`Discovery::follow`] keeps trying.
    pub async fn start(&mut self) -> Result<usize, redis::RedisError> {
        self.subscribe().await?;
        self.resync().await
    }

    /// Follows the registry forever: announcements as they come, a resync every `period`.
    pub async fn follow(mut self, period: Duration) {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    if self.events.is_none()
                        && let Err(e) = self.subscribe().await
                    {
                        tracing::warn!("registry announcements unavailable (resyncing only): {e}");
                    }
                    if let Err(e) = self.resync().await {
                        tracing::warn!(routes = self.routes.len(), "registry unreadable, keeping the last known routes: {e}");
                    }
                }
                msg = next(&mut self.events) => match msg {
                    Some(msg) => self.announcement(msg).await,
                    None => {
                        tracing::warn!("registry announcements lost; subscribing again");
                        self.events = None;
                    }
                },
            }
        }
    }

    async fn subscribe(&mut self) -> Result<(), redis::RedisError> {
        let mut pubsub = bounded(self.client.get_async_pubsub()).await?;
        bounded(pubsub.subscribe(REGISTRY_EVENTS)).await?;
        self.events = Some(Box::pin(pubsub.into_on_message()));
        Ok(())
    }

    async fn connection(&mut self) -> Result<MultiplexedConnection, redis::RedisError> {
        if let Some(c) = &self.commands {
            return Ok(c.clone());
        }
        let c = bounded(self.client.get_multiplexed_async_connection()).await?;
        self.commands = Some(c.clone());
        Ok(c)
    }

    /// Replaces the table with the registry's live processes; returns how many.
    async fn resync(&mut self) -> Result<usize, redis::RedisError> {
        let mut con = self.connection().await?;
        let read = async {
            let ids: Vec<String> = con.smembers(PROCESSES).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| process_key(id)).collect();
            let entries: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
            Ok(entries.into_iter().flatten().filter_map(|json| route(&json)).collect())
        };
        match bounded(read).await {
            Ok(routes) => {
                let n = routes.len();
                let before = self.routes.ids();
                self.routes.replace(routes);
                let after = self.routes.ids();
                if before != after {
                    tracing::info!(processes = ?after, "routes resynced");
                }
                Ok(n)
            }
            Err(e) => {
                self.commands = None;
                Err(e)
            }
        }
    }

    async fn announcement(&mut self, msg: redis::Msg) {
        let Ok(json) = msg.get_payload::<String>() else { return };
        match serde_json::from_str::<RegistryEvent>(&json) {
            Ok(RegistryEvent::Remove { process_id }) => {
                if self.routes.remove(&process_id) {
                    tracing::info!(process = %process_id, "process left; route removed");
                }
            }
            Ok(RegistryEvent::Add { process_id }) => {
                let entry = match self.connection().await {
                    Ok(mut con) => bounded(con.get::<_, Option<String>>(process_key(&process_id))).await,
                    Err(e) => Err(e),
                };
                match entry {
                    Ok(Some(json)) => {
                        if let Some(r) = route(&json) {
                            tracing::info!(process = %r.process_id, endpoint = %r.endpoint, "process joined; route added");
                            self.routes.insert(r);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.commands = None;
                        tracing::warn!(process = %process_id, "new process not read (the next resync will): {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("ignoring a malformed registry announcement: {e}"),
        }
    }
}

/// The route of a registry entry; `None` (logged) for an entry without an endpoint.
fn route(json: &str) -> Option<Route> {
    match serde_json::from_str::<ProcessInfo>(json) {
        Ok(ProcessInfo { process_id, endpoint: Some(endpoint), clients, draining, .. }) => {
            Some(Route::new(process_id, endpoint, clients).draining(draining))
        }
        Ok(info) => {
            tracing::debug!(process = %info.process_id, "process announces no endpoint; not routable");
            None
        }
        Err(e) => {
            tracing::warn!("bad registry entry: {e}");
            None
        }
    }
}

async fn bounded<T>(
    call: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, redis::RedisError> {
    match timeout(TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis did not answer in time",
        ))),
    }
}

/// The next announcement; `None` when the subscription is lost; never resolves without one.
async fn next(events: &mut Option<Events>) -> Option<redis::Msg> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
