//! Deploys that reach every host of a deployment: one upload, every host runs the new version.
//!
//! A version is known by the SHA-256 of its module (its *hash*). An upload is validated on the
//! host that received it (exactly as a file or an admin upload always was: import allow-list,
//! ABI version, canary), then stored where every host can fetch it ([`store`]), made the room
//! type's active version, and announced on [`ANNOUNCEMENTS`]. Each host fetches the artifact,
//! checks its hash, validates it itself and answers on the deploy's own topic: `active`, or
//! `refused` with the reason (a host that refuses keeps serving its previous version). The
//! uploader's answer lists every live host's, or `timeout` for a host that said nothing in time.
//! A host that starts later activates the active version of every room type before it takes
//! rooms. Each host also keeps a short-lived note of what it runs ([`host_key`]), which
//! `GET /odeon/admin/plugins` reads for the deployment's state. A stored version can be made
//! active again by its hash ([`Deployer::activate_stored`]): a rollback.
//!
//! With `?migrate=1` each host also moves its running rooms of the type to the new version
//! ([`migrate`]), and answers how that went per room. With `?canary=P` the new version only
//! takes P% of new rooms ([`canary`]) until an activation finishes or reverts it, or its rooms'
//! faults revert it by themselves.
//!
//! With the embedded presence there is one host, and the same code serves it: the in-process
//! presence stores the versions (for as long as the process runs) and carries the announcements,
//! which no other host answers.

pub mod canary;
pub mod migrate;
mod prepare;
mod status;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::{OnceLock, Weak};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::matchmaker::Matchmaker;
use crate::plugins::{PluginError, PluginVersion, Plugins};
use crate::presence::Presence;
use migrate::{MigrationReport, Selection};
use store::{ArtifactStore, StoredVersion};

/// Where deploys are announced.
pub const ANNOUNCEMENTS: &str = "odeon:deploys";
/// Room type → the hash new rooms get.
pub const ACTIVE: &str = "odeon:plugins:active";
/// How long the uploader waits for the hosts' answers.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a host rewrites its note of what it runs; the note lives three times as long.
const NOTE_EVERY: Duration = Duration::from_secs(2);

/// Refuses options that do not go together.
fn check_options(options: &DeployOptions) -> Result<(), DeployError> {
    if options.canary.is_some_and(|p| !(1..=99).contains(&p)) {
        return Err(DeployError::BadRequest("canary must be a percentage from 1 to 99".into()));
    }
    Ok(())
}

/// The topic a deploy's answers come back on.
fn answers_topic(deploy_id: &str) -> String {
    format!("odeon:deploys:{deploy_id}")
}

/// The key of a host's note of what it runs.
pub fn host_key(process_id: &str) -> String {
    format!("odeon:plugins:host:{process_id}")
}

/// A deploy announced to every host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Announcement {
    deploy_id: String,
    /// The host that was asked; it has done its part already.
    #[serde(default)]
    origin: String,
    name: String,
    hash: String,
    #[serde(default, flatten)]
    options: DeployOptions,
}

/// How a deploy rolls out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployOptions {
    /// Move running rooms to the new version (`?migrate=1`); with a canary, only its share.
    #[serde(default)]
    pub migrate: bool,
    /// Give the new version only this percentage of new rooms (`?canary=P`, 1–99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u8>,
    /// This announcement reverts a canary: only the rooms on `from` move back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One host's answer to a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostAnswer {
    /// The host.
    pub process_id: String,
    /// `active`, `refused` or `timeout`.
    pub status: String,
    /// Why it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How its running rooms moved, when the deploy asked for a migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationReport>,
}

impl HostAnswer {
    fn active(process_id: &str, migration: Option<MigrationReport>) -> Self {
        Self { process_id: process_id.to_string(), status: "active".into(), reason: None, migration }
    }
}

/// What an upload answers.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// Room type.
    pub name: String,
    /// SHA-256 of the module, hex.
    pub hash: String,
    /// Every live host's answer.
    pub hosts: Vec<HostAnswer>,
    /// The canary's share of new rooms, for a canary deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<u8>,
}

/// Why a deploy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The module was refused here; nothing was stored or announced.
    #[error("{0}")]
    Refused(#[from] PluginError),
    /// The artifact could not be stored or the deploy announced.
    #[error("deploy store unavailable: {0}")]
    Store(String),
    /// No such stored version.
    #[error("{0}")]
    Unknown(String),
    /// The stored version did not load on the host asked to activate it.
    #[error("not activated: {0}")]
    NotActivated(String),
    /// The request's options do not make sense together.
    #[error("{0}")]
    BadRequest(String),
}

/// This host's part in deploys.
pub struct Deployer {
    process_id: String,
    plugins: Arc<Plugins>,
    presence: Arc<dyn Presence>,
    store: ArtifactStore,
    /// This host's rooms, once [`Deployer::attach`]ed: what migrations move.
    rooms: OnceLock<Weak<Matchmaker>>,
    /// The last migration of each room type on this host, for the deployment's state.
    migrations: std::sync::Mutex<BTreeMap<String, MigrationReport>>,
    /// The last version of each room type this host refused, and why, until it activates one.
    refusals: std::sync::Mutex<BTreeMap<String, Value>>,
    /// Compiles of versions about to be deployed, by hash (see `prepare`).
    prepared: std::sync::Mutex<std::collections::HashMap<String, prepare::Prepared>>,
    /// Faults of a canary's rooms on one host that revert it.
    canary_faults: u64,
}

impl Deployer {
    /// `store` is where artifacts are kept; [`ArtifactStore::Local`] means one host.
    pub fn new(
        process_id: String,
        plugins: Arc<Plugins>,
        presence: Arc<dyn Presence>,
        store: ArtifactStore,
    ) -> Self {
        Self {
            process_id,
            plugins,
            presence,
            store,
            rooms: OnceLock::new(),
            migrations: Default::default(),
            refusals: Default::default(),
            prepared: Default::default(),
            canary_faults: canary::DEFAULT_FAULTS,
        }
    }

    /// Faults of a canary's rooms on any one host that revert the canary (default 3).
    pub fn with_canary_faults(mut self, faults: u64) -> Self {
        self.canary_faults = faults.max(1);
        self
    }

    /// Gives the deployer this host's rooms, which `?migrate=1` moves; without it a migration
    /// finds no rooms.
    pub fn attach(&self, mm: &Arc<Matchmaker>) {
        let _ = self.rooms.set(Arc::downgrade(mm));
    }

    /// Moves this host's rooms of `to`'s type that `which` selects to `to`, and remembers how.
    async fn migrate_here(&self, to: Arc<PluginVersion>, which: Selection<'_>) -> MigrationReport {
        let name = to.manifest.name.clone();
        let report = match self.rooms.get().and_then(Weak::upgrade) {
            Some(mm) => migrate::migrate_rooms(&mm, to, which).await,
            None => MigrationReport { hash: to.hash.clone(), ..MigrationReport::default() },
        };
        self.migrations.lock().expect("migrations lock").insert(name, report.clone());
        report
    }

    /// Activates the deployment's active version of every room type this host does not run yet,
    /// before it takes rooms. A version that cannot be fetched or is refused is logged; the
    /// room type keeps the version this host loaded from its directory, if any.
    pub async fn activate_current(&self) {
        if self.store.is_local() {
            return;
        }
        let active = match self.presence.hgetall(ACTIVE).await {
            Ok(a) => a,
            Err(e) => return tracing::warn!("deployed versions unreadable at start: {e}"),
        };
        for (name, hash) in active {
            if let Err(reason) = self.activate(&name, &hash).await {
                tracing::warn!(room_type = %name, %hash, "deployed version not activated at start: {reason}");
            }
        }
    }

    /// Fetches, checks and loads `hash` unless it already serves `name`, and ends any canary of
    /// `name`.
    async fn activate(&self, name: &str, hash: &str) -> Result<Arc<PluginVersion>, String> {
        self.plugins.clear_canary(name);
        if let Some(v) = self.plugins.get(name).filter(|v| v.hash == hash) {
            return Ok(v);
        }
        let version = self.fetch(name, hash).await?;
        self.plugins.install(version.clone());
        Ok(version)
    }

    /// Fetches, checks and validates `hash`, a version of `name`, without serving it.
    async fn fetch(&self, name: &str, hash: &str) -> Result<Arc<PluginVersion>, String> {
        let from_store = || async {
            let bytes =
                self.store.get(hash).await.map_err(|e| e.to_string())?.ok_or("artifact not in the store")?;
            if store::sha256_hex(&bytes) != hash {
                return Err("artifact does not match its hash".to_string());
            }
            self.plugins.prepare(&format!("deploy:{hash}"), bytes).await.map_err(|e| e.to_string())
        };
        // Compiled (or compiling) here since the upload began, if its module was sent ahead.
        let version = match self.prepared_compile(hash) {
            Some(cell) => cell.get_or_init(from_store).await.clone()?,
            None => from_store().await?,
        };
        if version.manifest.name != name {
            return Err(format!("artifact is room type {}, not {name}", version.manifest.name));
        }
        Ok(version)
    }

    /// Carries out an announced deploy on this host: activates the version (or starts it as a
    /// canary) and migrates rooms if asked.
    async fn carry_out(&self, a: &Announcement) -> Result<Option<MigrationReport>, String> {
        let target = match a.options.canary {
            Some(percent) => {
                let version = match self.plugins.canary(&a.name).filter(|c| c.version.hash == a.hash) {
                    Some(c) => c.version,
                    None => self.fetch(&a.name, &a.hash).await?,
                };
                self.plugins.set_canary(version.clone(), percent);
                version
            }
            None => self.activate(&a.name, &a.hash).await?,
        };
        if !a.options.migrate {
            return Ok(None);
        }
        let which = Selection { from: a.options.from.as_deref(), share: a.options.canary };
        let report = self.migrate_here(target, which).await;
        if a.options.canary.is_some() {
            self.judge_canary_migration(&a.name, &a.hash, &report.failures()).await;
        }
        Ok(Some(report))
    }

    /// Follows announcements for as long as the host runs: each deploy is activated here and
    /// answered. Returns once subscribed.
    pub async fn follow(self: &Arc<Self>) -> Result<(), String> {
        if self.store.is_local() {
            return Ok(());
        }
        self.follow_prepares().await?;
        let mut rx = self.presence.subscribe(ANNOUNCEMENTS).await.map_err(|e| e.to_string())?;
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Ok(a) = serde_json::from_str::<Announcement>(&message) else { continue };
                if a.origin == this.process_id {
                    continue;
                }
                let answer = match this.carry_out(&a).await {
                    Ok(migration) => {
                        this.refusals.lock().expect("refusals lock").remove(&a.name);
                        HostAnswer::active(&this.process_id, migration)
                    }
                    Err(reason) => {
                        tracing::warn!(room_type = %a.name, hash = %a.hash, "refused a deployed version: {reason}");
                        let refusal = json!({ "hash": a.hash, "reason": reason });
                        this.refusals.lock().expect("refusals lock").insert(a.name.clone(), refusal);
                        HostAnswer {
                            process_id: this.process_id.clone(),
                            status: "refused".into(),
                            reason: Some(reason),
                            migration: None,
                        }
                    }
                };
                let text = serde_json::to_string(&answer).expect("an answer serializes");
                if let Err(e) = this.presence.publish(&answers_topic(&a.deploy_id), &text).await {
                    tracing::warn!("deploy answer not sent: {e}");
                }
            }
        });
        Ok(())
    }

    /// Deploys `bytes` to every live host (`live`: their process ids, this one included).
    pub async fn deploy(
        &self,
        bytes: Vec<u8>,
        source: &str,
        uploader: &str,
        live: Vec<String>,
        options: DeployOptions,
    ) -> Result<DeployReport, DeployError> {
        check_options(&options)?;
        let hash = store::sha256_hex(&bytes);
        let size = bytes.len();
        // The other hosts compile while this one validates.
        self.send_prepare(&hash, &bytes).await;
        let version = self.plugins.prepare(&format!("admin:{source}"), bytes.clone()).await?;
        let name = version.manifest.name.clone();
        let previous = self.plugins.get(&name);
        if options.canary.is_some() && previous.as_ref().is_none_or(|p| p.hash == hash) {
            return Err(DeployError::BadRequest(format!(
                "a canary needs another version of {name} to share new rooms with"
            )));
        }
        if !self.store.is_local() {
            let stored = StoredVersion {
                hash: hash.clone(),
                name: name.clone(),
                abi_version: odeon_protocol::abi::ABI_VERSION,
                size,
                uploader: uploader.to_string(),
                uploaded_at_ms: crate::clock::now_ms(),
            };
            self.store.put(&stored, &bytes).await.map_err(|e| DeployError::Store(e.to_string()))?;
        }
        let canary = options.canary;
        let here = self.roll_out_here(version, previous, &options).await?;
        let hosts = self.announce(&name, &hash, options, here, live).await?;
        Ok(DeployReport { name, hash, hosts, canary })
    }

    /// Makes a stored version the active one of its room type on every live host: a rollback,
    /// a roll forward to a version uploaded before, or the end of a canary (finished with its
    /// hash, reverted with the previous one). It is activated here first; a hash that is not
    /// stored, is another room type's or does not load here changes nothing.
    pub async fn activate_stored(
        &self,
        name: &str,
        hash: &str,
        live: Vec<String>,
        options: DeployOptions,
    ) -> Result<DeployReport, DeployError> {
        check_options(&options)?;
        if self.store.is_local() {
            return Err(DeployError::Store("this host keeps no versions to activate".into()));
        }
        if !self
            .store
            .versions(name)
            .await
            .map_err(|e| DeployError::Store(e.to_string()))?
            .iter()
            .any(|v| v.hash == hash)
        {
            return Err(DeployError::Unknown(format!("no stored version {hash} of {name}")));
        }
        let version = match self.plugins.get(name).filter(|v| v.hash == hash) {
            Some(v) => v,
            None => self.fetch(name, hash).await.map_err(DeployError::NotActivated)?,
        };
        let previous = self.plugins.get(name);
        let canary = options.canary;
        let here = self.roll_out_here(version, previous, &options).await?;
        let hosts = self.announce(name, hash, options, here, live).await?;
        Ok(DeployReport { name: name.to_string(), hash: hash.to_string(), hosts, canary })
    }

    /// This host's part of a deploy it was asked for: the version serves (or starts as a canary
    /// next to `previous`), the deployment's records say so, and rooms migrate if asked.
    async fn roll_out_here(
        &self,
        version: Arc<PluginVersion>,
        previous: Option<Arc<PluginVersion>>,
        options: &DeployOptions,
    ) -> Result<HostAnswer, DeployError> {
        let name = version.manifest.name.clone();
        let unavailable = |e: crate::presence::PresenceError| DeployError::Store(e.to_string());
        match options.canary {
            Some(percent) => {
                let previous = previous.map(|p| p.hash.clone()).unwrap_or_default();
                let record = canary::Record::running(&version.hash, percent, &previous);
                self.presence.hset(canary::CANARIES, &name, &record.to_json()).await.map_err(unavailable)?;
                self.plugins.set_canary(version.clone(), percent);
            }
            None => {
                self.presence.hset(ACTIVE, &name, &version.hash).await.map_err(unavailable)?;
                canary::finish(&*self.presence, &name, &version.hash).await.map_err(unavailable)?;
                self.plugins.clear_canary(&name);
                if self.plugins.get(&name).is_none_or(|v| v.hash != version.hash) {
                    self.plugins.install(version.clone());
                }
            }
        }
        if !options.migrate {
            return Ok(HostAnswer::active(&self.process_id, None));
        }
        let hash = version.hash.clone();
        let report = self.migrate_here(version, Selection { from: None, share: options.canary }).await;
        if options.canary.is_some() {
            self.judge_canary_migration(&name, &hash, &report.failures()).await;
        }
        Ok(HostAnswer::active(&self.process_id, Some(report)))
    }

    /// Announces `hash` of `name` and collects every live host's answer (`here` is this host's).
    async fn announce(
        &self,
        name: &str,
        hash: &str,
        options: DeployOptions,
        here: HostAnswer,
        live: Vec<String>,
    ) -> Result<Vec<HostAnswer>, DeployError> {
        if self.store.is_local() {
            return Ok(vec![here]);
        }
        let unavailable = |e: crate::presence::PresenceError| DeployError::Store(e.to_string());
        let deploy_id = crate::ids::generate();
        let mut answers = self.presence.subscribe(&answers_topic(&deploy_id)).await.map_err(unavailable)?;
        let announcement = Announcement {
            deploy_id,
            origin: self.process_id.clone(),
            name: name.to_string(),
            hash: hash.to_string(),
            options,
        };
        let text = serde_json::to_string(&announcement).expect("an announcement serializes");
        self.presence.publish(ANNOUNCEMENTS, &text).await.map_err(unavailable)?;
        let mut hosts: BTreeMap<String, HostAnswer> = BTreeMap::new();
        hosts.insert(self.process_id.clone(), here);
        let waiting = |hosts: &BTreeMap<String, HostAnswer>| live.iter().any(|p| !hosts.contains_key(p));
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        while waiting(&hosts) {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some(message)) => {
                    if let Ok(answer) = serde_json::from_str::<HostAnswer>(&message) {
                        hosts.entry(answer.process_id.clone()).or_insert(answer);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        for p in live {
            hosts.entry(p.clone()).or_insert(HostAnswer {
                process_id: p,
                status: "timeout".into(),
                reason: None,
                migration: None,
            });
        }
        Ok(hosts.into_values().collect())
    }
}
