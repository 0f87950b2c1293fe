//! The Odeon host: Colyseus-compatible matchmaking and rooms, each room type a sandboxed wasm plugin.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`net`]: matchmaking HTTP, the room WebSocket, health and admin endpoints; with
//!   `odeon_protocol`, the only code that knows the wire format.
//! - [`matchmaker`]: joinOrCreate/create/join/joinById/reconnect, filters, locks, seat reservations.
//! - [`cluster`]: the process registry and calls between host processes.
//! - [`rooms`]: one actor per room, owning its guest instance, clients, seats and timers.
//! - [`plugins`]: the wasmtime engine, plugin validation, the registry of versions, hot loading.
//! - [`imports`]: every host function a guest can call, and guest stdout/stderr.
//! - [`services`]: presence operations and listing queries on behalf of rooms, answered as events.
//! - [`presence`], [`driver`]: shared state and room listings behind traits, with in-process
//!   embedded defaults.
//! - [`os`]: file-descriptor limit and heap trimming, the host's only `unsafe`.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod driver;
pub mod ids;
pub mod imports;
pub mod limits;
pub mod matchmaker;
pub mod net;
pub mod os;
pub mod plugins;
pub mod presence;
pub mod rooms;
pub mod services;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;

use crate::driver::{Driver, LocalDriver, MongoDriver};
use crate::matchmaker::{Matchmaker, MatchmakerConfig};
use crate::plugins::Plugins;
use crate::presence::{LocalPresence, Presence, RedisPresence};

/// Runs a host on `listener` until `shutdown` completes, then closes rooms with 4001.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(why) = config.admin_token.as_deref().and_then(net::weak_token) {
        tracing::warn!("the admin token is weak ({why}): anyone who guesses it can replace room code");
    }
    if config.behind_proxy && config.redis_url.is_none() && config.trusted_proxies.is_empty() {
        tracing::warn!(
            "--behind-proxy without --redis-url or --trusted-proxies: no proxy can prove itself, so \
             X-Forwarded-For is never believed and every client has the proxy's address"
        );
    }
    let plugins = Plugins::new(config.guest_limits()).context("starting the wasm engine")?;
    tokio::fs::create_dir_all(&config.plugins)
        .await
        .with_context(|| format!("creating plugins directory {}", config.plugins.display()))?;
    // Watched before it is read, so no change falls between the two; the changes are applied
    // once the matchmaker exists (a removed file retires a type only when its rooms are gone).
    let watcher = (!config.no_watch).then(|| watch_plugins(&config.plugins)).transpose()?;
    let loaded = plugins.load_dir(&config.plugins).await.context("reading the plugins directory")?;
    tracing::info!(dir = %config.plugins.display(), loaded, room_types = ?plugins.names(), "plugins loaded");

    let process_id = config.process_id.clone().unwrap_or_else(ids::generate);
    let addr = listener.local_addr()?;
    // With shared presence, clients may be seated on another process: reservations must say
    // where each room's process is. `{port}` lets instances that share one configuration (PM2)
    // each advertise their own port.
    // Behind a proxy, reservations name no address unless one is given: clients come back
    // through the proxy they matchmade through, which routes by process id.
    let public_address =
        config.public_address.as_ref().map(|a| a.replace("{port}", &addr.port().to_string())).or_else(|| {
            (config.redis_url.is_some() && !config.behind_proxy && !addr.ip().is_unspecified())
                .then(|| addr.to_string())
        });
    let endpoint =
        config.internal_address.clone().or_else(|| (!addr.ip().is_unspecified()).then(|| addr.to_string()));
    let presence: Arc<dyn Presence> = match &config.redis_url {
        Some(url) => Arc::new(RedisPresence::connect(url).await.context("connecting to Redis presence")?),
        None => Arc::new(LocalPresence::default()),
    };
    let driver: Arc<dyn Driver> = match &config.mongo_uri {
        Some(uri) => Arc::new(MongoDriver::connect(uri).await.context("connecting to the MongoDB driver")?),
        None => Arc::new(LocalDriver::default()),
    };
    let mm = Matchmaker::new(
        MatchmakerConfig {
            process_id: process_id.clone(),
            profile: config.protocol,
            seat_timeout: Duration::from_secs(config.seat_reservation_secs),
            public_address,
            endpoint,
            room_creates_per_min: config.room_creates_per_min,
        },
        plugins,
        driver,
        presence,
        tokio::runtime::Handle::current(),
    );
    if let Some(watcher) = watcher {
        watcher.apply(mm.clone());
    }
    // Artifacts are shared when the hosts share Redis: in MongoDB (GridFS) when there is one,
    // else in Redis. Alone, a host keeps them in its in-process presence, so rollback and canaries
    // work the same; they last as long as the process (its plugins directory keeps what serves).
    let store = match (&config.redis_url, &config.mongo_uri) {
        (Some(_), Some(uri)) => deploy::store::ArtifactStore::Mongo(
            deploy::store::mongo_bucket(uri).await.context("opening the plugin artifact store")?,
        ),
        (_, _) => deploy::store::ArtifactStore::Shared(mm.presence().clone()),
    };
    let deployer = Arc::new(
        deploy::Deployer::new(process_id.clone(), mm.plugins().clone(), mm.presence().clone(), store)
            .with_canary_faults(config.canary_faults),
    );
    deployer.attach(&mm);
    // The deployment's versions before any room: a host that starts after a deploy runs it.
    deployer.activate_current().await;
    mm.start().await.context("joining the process registry")?;
    if let Err(e) = deployer.follow().await {
        tracing::warn!("deploy announcements unavailable: {e}");
    }
    deployer.keep_note(mm.clone());
    deployer.watch_canaries();
    let app = net::router(
        mm.clone(),
        deployer,
        net::NetConfig {
            admin_token: config.admin_token.clone(),
            plugins_dir: config.plugins.clone(),
            max_message_bytes: config.max_message_bytes,
            max_expanded_bytes: config.max_message_bytes.saturating_mul(4).max(256 << 10),
            wire: net::wire::WireLimits::default(),
            heartbeat: Duration::from_secs(3),
            matchmake_rate: config.matchmake_rate,
            max_messages_per_sec: config.max_messages_per_sec,
            trusted_proxies: config.trusted_proxies.clone(),
            trust_registry: config.behind_proxy,
            body_timeout: Duration::from_millis(config.body_timeout_ms),
            cors_origins: (!config.cors_origins.is_empty()).then(|| config.cors_origins.clone()),
        },
    );
    tracing::info!(%addr, process_id, protocol = %config.protocol, "odeon host listening");
    let mm_for_shutdown = mm.clone();
    let drain_timeout = Duration::from_secs(config.drain_timeout_secs);
    // Alone on the embedded presence there is never a peer to wait for.
    let peer_wait = match config.redis_url {
        Some(_) => Duration::from_millis(config.drain_peer_wait_ms),
        None => Duration::ZERO,
    };
    net::serve(listener, app, async move {
        // A signal, or a drain (`POST /odeon/admin/drain`) that has run its course.
        tokio::select! {
            () = shutdown => {
                // A signal (SIGTERM, SIGINT: `pm2 reload` and `pm2 stop` send it): the rooms
                // that can move to another host do; the rest are closed below.
                mm_for_shutdown.drain().await;
                mm_for_shutdown.move_rooms_on_stop(peer_wait).await;
            }
            () = mm_for_shutdown.drained(drain_timeout) => {
                // Rooms that had nowhere to go at the drain may have somewhere now.
                if mm_for_shutdown.room_count() > 0 {
                    mm_for_shutdown.move_rooms().await;
                }
            }
        }
        tracing::info!("shutting down: closing rooms");
        mm_for_shutdown.shutdown(Duration::from_secs(3)).await;
    })
    .await
    .context("serving")?;
    Ok(())
}

/// The plugins directory's watcher, and the plugin files it saw change, not yet applied.
struct PluginWatcher {
    watcher: notify::RecommendedWatcher,
    changed: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
}

/// Watches `dir` for plugin files created, replaced (a temporary file renamed over the old one)
/// or removed.
fn watch_plugins(dir: &std::path::Path) -> anyhow::Result<PluginWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, changed) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove())
        {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("starting the plugin watcher")?;
    watcher.watch(dir, RecursiveMode::NonRecursive).context("watching the plugins directory")?;
    Ok(PluginWatcher { watcher, changed })
}

impl PluginWatcher {
    /// Loads each changed plugin file that is there and retires the room type of each that is
    /// gone. Events are debounced, so a file is loaded once it is complete, and a file removed
    /// and written again (or renamed over) is loaded, never retired.
    fn apply(self, mm: Arc<Matchmaker>) {
        let Self { watcher, mut changed } = self;
        tokio::spawn(async move {
            let _watcher = watcher;
            while let Some(first) = changed.recv().await {
                let mut paths = vec![first];
                tokio::time::sleep(Duration::from_millis(250)).await;
                while let Ok(p) = changed.try_recv() {
                    paths.push(p);
                }
                paths.sort();
                paths.dedup();
                paths.retain(|p| plugins::is_plugin_file(p));
                // Present files first: a type whose file was renamed is loaded from its new name
                // before its old name is found gone.
                let (present, gone): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| p.is_file());
                for path in present {
                    mm.plugin_file_changed(&path).await;
                }
                for path in gone.iter().filter(|p| !p.exists()) {
                    mm.plugin_file_removed(path).await;
                }
            }
        });
    }
}
