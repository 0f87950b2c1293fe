//! Room types as wasm plugins: the wasmtime engine, validation, the registry of current versions,
//! hot loading (directory watcher and admin upload), and [`Guest`], one sandboxed instance.
//!
//! A room keeps an `Arc` of the [`PluginVersion`] that created it, so a new version only affects
//! rooms created after the swap and an old version unloads when its last room disposes. A type
//! whose file leaves the directory is retired (`retire`): no new rooms, and gone with its last one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use odeon_protocol::abi::{self, AuthDecision, AuthRequest, Manifest};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig,
};

use crate::imports::{self, RoomEnv};
use validate::{check_exports, check_imports, check_manifest};

mod guest;
mod retire;
pub mod rollout;
mod validate;

pub use guest::{Guest, GuestImage};

/// Limits applied to every guest.
#[derive(Debug, Clone, Copy)]
pub struct GuestLimits {
    /// Linear memory cap per room, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one guest call.
    pub call_deadline: Duration,
    /// Budget of room creation and of the load-time canary, which may do more setup work.
    pub create_deadline: Duration,
    /// Most rooms (instances) alive at once in this host.
    pub max_instances: u32,
    /// Largest plugin file accepted.
    pub max_plugin_bytes: usize,
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(200),
            create_deadline: Duration::from_secs(2),
            max_instances: 1000,
            max_plugin_bytes: 32 << 20,
        }
    }
}

/// The most effects one guest call may return (sends, timers, presence operations, …): a guest
/// that returns more is flooding the host and its room fails like any other fault.
pub const MAX_EFFECTS_PER_CALL: usize = 65_536;

/// How often the engine's epoch advances; deadlines are whole multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a plugin was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Bigger than `max_plugin_bytes`.
    #[error("plugin is {0} bytes, over the {1}-byte limit")]
    TooLarge(usize, usize),
    /// Not a valid wasm module.
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    /// Imports something the host does not provide.
    #[error("unsupported import {module}::{name}: {reason}")]
    Import {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("export {name}: {reason}")]
    Export {
        /// Export name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Built against another ABI.
    #[error("plugin speaks ABI version {found}, host implements {expected}")]
    AbiVersion {
        /// The guest's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The manifest is unusable.
    #[error("bad manifest: {0}")]
    Manifest(String),
    /// The guest failed while being instantiated or asked for its manifest.
    #[error("canary failed: {0}")]
    Canary(GuestError),
}

/// A guest call that failed. The instance must not be called again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    /// The guest ran past its deadline.
    #[error("guest ran past its {0:?} deadline")]
    Deadline(Duration),
    /// The guest asked for more memory than its cap and died of it.
    #[error("guest exceeded its memory cap of {0} bytes")]
    MemoryCap(usize),
    /// The guest trapped (a panic is `unreachable`).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest broke the ABI: bad buffers, undecodable records.
    #[error("guest broke the ABI: {0}")]
    Abi(String),
    /// The host has no free instance slot.
    #[error("no instance slot available: {0}")]
    Capacity(String),
    /// The guest asked the host to hold more than a room may (timers, effects in one call).
    #[error("guest exceeded a host limit: {0}")]
    Flood(String),
}

/// One loaded, validated version of a room type.
pub struct PluginVersion {
    /// What the plugin declared.
    pub manifest: Manifest,
    /// Host-local version number, increasing with each load.
    pub version: u64,
    /// Where it came from (file name or `admin`).
    pub source: String,
    /// SHA-256 of the module bytes, hex: the version's name across a deployment, and how an
    /// identical file is recognised and not loaded again.
    pub hash: String,
    pre: InstancePre<RoomEnv>,
    aux: Arc<tokio::sync::Semaphore>,
    migration_slots: Arc<tokio::sync::Semaphore>,
    /// Rooms of this version that failed (trap, deadline, memory cap, broken ABI): what a
    /// canary is judged by.
    faults: AtomicU64,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("name", &self.manifest.name)
            .field("version", &self.version)
            .field("source", &self.source)
            .finish()
    }
}

/// The engine, the linker and the registry of current room types.
pub struct Plugins {
    engine: Engine,
    linker: Linker<RoomEnv>,
    limits: GuestLimits,
    current: RwLock<HashMap<String, Arc<PluginVersion>>>,
    /// Room types whose plugin file was removed while rooms of them ran, with their last
    /// version: no new rooms, but joins by id (see `retire`). Locked after `current`, never before.
    retired: RwLock<HashMap<String, Arc<PluginVersion>>>,
    /// Plugin file name → the room type it was loaded as, so a removed file names its type.
    files: Mutex<HashMap<String, String>>,
    /// Room type → the canary that takes a share of its new rooms (see `rollout`).
    canaries: RwLock<HashMap<String, rollout::Canary>>,
    next_version: AtomicU64,
    /// Instance slots beyond the rooms', for short-lived auth and canary instances; the
    /// matchmaker keeps rooms to `max_instances`, so these never take a room's slot.
    aux: Arc<tokio::sync::Semaphore>,
    /// Instance slots for the new instances of rooms being migrated, which run beside the old
    /// ones until the swap.
    migration_slots: Arc<tokio::sync::Semaphore>,
}

/// Instance slots kept for auth hooks and load-time canaries (at most this many run at once).
const AUX_SLOTS: u32 = 16;
/// Instance slots for live migrations (at most this many rooms are between their old and new
/// instance at once).
pub const MIGRATION_SLOTS: u32 = 64;

impl Plugins {
    /// Builds the engine (pooling allocator, epoch interruption) and links the imports once.
    pub fn new(limits: GuestLimits) -> Result<Arc<Self>, anyhow::Error> {
        let mut config = Config::new();
        config.epoch_interruption(true).cranelift_opt_level(OptLevel::Speed);
        let slots = limits.max_instances + AUX_SLOTS + MIGRATION_SLOTS;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memory_size(limits.memory_bytes)
            .max_unused_warm_slots(32);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        imports::link(&mut linker)?;
        spawn_epoch_ticker(&engine);
        Ok(Arc::new(Self {
            engine,
            linker,
            limits,
            current: RwLock::default(),
            retired: RwLock::default(),
            files: Mutex::default(),
            canaries: RwLock::default(),
            next_version: AtomicU64::new(1),
            aux: Arc::new(tokio::sync::Semaphore::new(AUX_SLOTS as usize)),
            migration_slots: Arc::new(tokio::sync::Semaphore::new(MIGRATION_SLOTS as usize)),
        }))
    }

    /// The limits every guest runs under.
    pub fn limits(&self) -> GuestLimits {
        self.limits
    }

    /// The current version of a room type.
    pub fn get(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.current.read().expect("registry lock").get(name).cloned()
    }

    /// Names of every registered room type.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.current.read().expect("registry lock").keys().cloned().collect();
        names.sort();
        names
    }

    /// Every registered room type with its current version number.
    pub fn versions(&self) -> Vec<(String, u64)> {
        let mut all: Vec<_> =
            self.current.read().expect("registry lock").iter().map(|(n, v)| (n.clone(), v.version)).collect();
        all.sort();
        all
    }

    /// Every registered room type with the hash of its current version.
    pub fn hashes(&self) -> std::collections::BTreeMap<String, String> {
        self.current.read().expect("registry lock").iter().map(|(n, v)| (n.clone(), v.hash.clone())).collect()
    }

    /// Validates `bytes` and, if they pass, makes them the current version of the room type they
    /// declare. On any failure the previous version keeps serving.
    pub async fn load(
        self: &Arc<Self>,
        source: &str,
        bytes: Vec<u8>,
    ) -> Result<Arc<PluginVersion>, PluginError> {
        let version = self.prepare(source, bytes).await?;
        self.install(version.clone());
        Ok(version)
    }

    /// Validates `bytes` (compile, import allow-list, exports, a trial instance) into a version
    /// that serves nothing yet: [`Plugins::install`] it, or run it as a canary.
    pub async fn prepare(
        self: &Arc<Self>,
        source: &str,
        bytes: Vec<u8>,
    ) -> Result<Arc<PluginVersion>, PluginError> {
        let hash = content_hash(&bytes);
        let this = self.clone();
        let source_owned = source.to_string();
        // Compiling takes 100 ms or more: keep it off the async workers.
        let compiled = tokio::task::spawn_blocking(move || {
            let compiled = this.compile(&bytes);
            crate::os::release_free_heap();
            compiled
        });
        let (module, pre) =
            compiled.await.map_err(|e| PluginError::Invalid(format!("compiler task failed: {e}")))??;
        let manifest = self.trial(&pre, &source_owned).await?;
        drop(module);
        Ok(Arc::new(PluginVersion {
            manifest,
            version: self.next_version.fetch_add(1, Ordering::Relaxed),
            source: source_owned,
            hash,
            pre,
            aux: self.aux.clone(),
            migration_slots: self.migration_slots.clone(),
            faults: AtomicU64::new(0),
        }))
    }

    /// Makes `version` the current version of its room type: new rooms get it (a retired type is
    /// registered again).
    pub fn install(&self, version: Arc<PluginVersion>) {
        let mut current = self.current.write().expect("registry lock");
        let previous = current.insert(version.manifest.name.clone(), version.clone());
        self.retired.write().expect("retired lock").remove(&version.manifest.name);
        drop(current);
        let source = &version.source;
        match previous {
            Some(old) => tracing::info!(
                room_type = %version.manifest.name, source, version = version.version, previous = old.version,
                "loaded new plugin version; running rooms keep theirs"
            ),
            None => {
                tracing::info!(room_type = %version.manifest.name, source, version = version.version, "loaded plugin")
            }
        }
    }

    /// The room type whose current version has exactly these bytes, if a file with them is
    /// already serving.
    fn current_with(&self, bytes: &[u8]) -> Option<String> {
        let hash = content_hash(bytes);
        let current = self.current.read().expect("registry lock");
        current.iter().find(|(_, v)| v.hash == hash).map(|(name, _)| name.clone())
    }

    /// Loads every `*.wasm` in `dir`; a refused file is logged and skipped.
    pub async fn load_dir(self: &Arc<Self>, dir: &Path) -> std::io::Result<usize> {
        // File I/O on the blocking pool, never on an async worker.
        let mut entries = tokio::fs::read_dir(dir).await?;
        let mut paths: Vec<PathBuf> = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            if is_plugin_file(&entry.path()) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        let mut loaded = 0;
        for path in paths {
            if self.load_file(&path).await.0 {
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    /// Loads one file, logging the outcome; returns whether it is now serving, and the room type
    /// it retired, if any (the file declared another type before). The file is remembered as its
    /// room type's, so removing it retires the type (`retire`).
    pub async fn load_file(self: &Arc<Self>, path: &Path) -> (bool, Option<String>) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(plugin = %name, "cannot read plugin: {e}");
                return (false, None);
            }
        };
        if let Some(current) = self.current_with(&bytes) {
            return (true, self.record_file(path, &current));
        }
        match self.load(&name, bytes).await {
            Ok(version) => (true, self.record_file(path, &version.manifest.name)),
            Err(e) => {
                tracing::error!(plugin = %name, "refused plugin: {e}; any previous version keeps serving");
                (false, None)
            }
        }
    }

    fn compile(&self, bytes: &[u8]) -> Result<(Module, InstancePre<RoomEnv>), PluginError> {
        if bytes.len() > self.limits.max_plugin_bytes {
            return Err(PluginError::TooLarge(bytes.len(), self.limits.max_plugin_bytes));
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| PluginError::Invalid(one_line(&e)))?;
        check_imports(&module)?;
        check_exports(&module)?;
        let pre = self.linker.instantiate_pre(&module).map_err(|e| PluginError::Invalid(one_line(&e)))?;
        Ok((module, pre))
    }

    /// The load-time canary instance: it must start and answer its ABI version and manifest.
    async fn trial(&self, pre: &InstancePre<RoomEnv>, source: &str) -> Result<Manifest, PluginError> {
        let tag: Arc<str> = format!("canary:{source}").into();
        let _slot = self.aux.acquire().await.expect("the semaphore is never closed");
        let mut guest = Guest::instantiate(pre, tag, self.limits).await.map_err(PluginError::Canary)?;
        let found = guest.abi_version().await.map_err(PluginError::Canary)?;
        if found != abi::ABI_VERSION {
            return Err(PluginError::AbiVersion { found, expected: abi::ABI_VERSION });
        }
        let manifest = guest.manifest().await.map_err(PluginError::Canary)?;
        check_manifest(&manifest)?;
        Ok(manifest)
    }
}

impl PluginVersion {
    /// A fresh sandboxed instance for a room.
    pub async fn instantiate(&self, tag: Arc<str>, limits: GuestLimits) -> Result<Guest, GuestError> {
        Guest::instantiate(&self.pre, tag, limits).await
    }

    /// An instance of this version for a room being migrated to it, in a slot of its own: the
    /// slot is held as long as the permit, which the caller keeps until the old instance is gone.
    pub async fn instantiate_for_migration(
        &self,
        tag: Arc<str>,
        limits: GuestLimits,
    ) -> Result<(Guest, tokio::sync::OwnedSemaphorePermit), GuestError> {
        let permit =
            self.migration_slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        Ok((Guest::instantiate(&self.pre, tag, limits).await?, permit))
    }

    /// Counts a failed room of this version.
    pub fn record_fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }

    /// How many rooms of this version failed on this host.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Runs the static auth hook in a short-lived instance of its own.
    pub async fn auth(&self, request: &AuthRequest, limits: GuestLimits) -> Result<AuthDecision, GuestError> {
        let tag: Arc<str> = format!("auth:{}", self.manifest.name).into();
        let _slot = self.aux.acquire().await.expect("the semaphore is never closed");
        let mut guest = self.instantiate(tag, limits).await?;
        guest.auth(request).await
    }
}

/// Whether a path names a plugin file (`*.wasm`, not a hidden or temporary file).
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// An error chain on one line, so each refusal is one log line.
fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SHA-256 of a module, lowercase hex: what names a version across a deployment.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("odeon-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker");
}
