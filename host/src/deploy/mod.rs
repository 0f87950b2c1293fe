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
//! With the embedded presence there is one host: a deploy activates locally, as before.

pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::matchmaker::Matchmaker;
use crate::plugins::{PluginError, Plugins};
use crate::presence::Presence;
use store::{ArtifactStore, StoredVersion};

/// Where deploys are announced.
pub const ANNOUNCEMENTS: &str = "odeon:deploys";
/// Room type → the hash new rooms get.
pub const ACTIVE: &str = "odeon:plugins:active";
/// How long the uploader waits for the hosts' answers.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a host rewrites its note of what it runs; the note lives three times as long.
const NOTE_EVERY: Duration = Duration::from_secs(2);

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
    name: String,
    hash: String,
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
}

/// This host's part in deploys.
pub struct Deployer {
    process_id: String,
    plugins: Arc<Plugins>,
    presence: Arc<dyn Presence>,
    store: ArtifactStore,
}

impl Deployer {
    /// `store` is where artifacts are kept; [`ArtifactStore::Local`] means one host.
    pub fn new(
        process_id: String,
        plugins: Arc<Plugins>,
        presence: Arc<dyn Presence>,
        store: ArtifactStore,
    ) -> Self {
        Self { process_id, plugins, presence, store }
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

    /// Fetches, checks and loads `hash` unless it already serves `name`.
    async fn activate(&self, name: &str, hash: &str) -> Result<(), String> {
        if self.plugins.get(name).is_some_and(|v| v.hash == hash) {
            return Ok(());
        }
        let bytes =
            self.store.get(hash).await.map_err(|e| e.to_string())?.ok_or("artifact not in the store")?;
        if store::sha256_hex(&bytes) != hash {
            return Err("artifact does not match its hash".into());
        }
        let version = self.plugins.load(&format!("deploy:{hash}"), bytes).await.map_err(|e| e.to_string())?;
        if version.manifest.name != name {
            return Err(format!("artifact is room type {}, not {name}", version.manifest.name));
        }
        Ok(())
    }

    /// Follows announcements for as long as the host runs: each deploy is activated here and
    /// answered. Returns once subscribed.
    pub async fn follow(self: &Arc<Self>) -> Result<(), String> {
        if self.store.is_local() {
            return Ok(());
        }
        let mut rx = self.presence.subscribe(ANNOUNCEMENTS).await.map_err(|e| e.to_string())?;
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Ok(a) = serde_json::from_str::<Announcement>(&message) else { continue };
                let answer = match this.activate(&a.name, &a.hash).await {
                    Ok(()) => HostAnswer {
                        process_id: this.process_id.clone(),
                        status: "active".into(),
                        reason: None,
                    },
                    Err(reason) => {
                        tracing::warn!(room_type = %a.name, hash = %a.hash, "refused a deployed version: {reason}");
                        HostAnswer {
                            process_id: this.process_id.clone(),
                            status: "refused".into(),
                            reason: Some(reason),
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
    ) -> Result<DeployReport, DeployError> {
        let hash = store::sha256_hex(&bytes);
        let size = bytes.len();
        let version = self.plugins.load(&format!("admin:{source}"), bytes.clone()).await?;
        let name = version.manifest.name.clone();
        let here = HostAnswer { process_id: self.process_id.clone(), status: "active".into(), reason: None };
        if self.store.is_local() {
            return Ok(DeployReport { name, hash, hosts: vec![here] });
        }
        let stored = StoredVersion {
            hash: hash.clone(),
            name: name.clone(),
            abi_version: odeon_protocol::abi::ABI_VERSION,
            size,
            uploader: uploader.to_string(),
            uploaded_at_ms: crate::clock::now_ms(),
        };
        let store_err = |e: store::StoreError| DeployError::Store(e.to_string());
        self.store.put(&stored, &bytes).await.map_err(store_err)?;
        let hosts = self.announce(&name, &hash, here, live).await?;
        Ok(DeployReport { name, hash, hosts })
    }

    /// Makes a stored version the active one of its room type on every live host: a rollback,
    /// or a roll forward to a version uploaded before. It is activated here first; a hash that
    /// is not stored, is another room type's or does not load here changes nothing.
    pub async fn activate_stored(
        &self,
        name: &str,
        hash: &str,
        live: Vec<String>,
    ) -> Result<DeployReport, DeployError> {
        if self.store.is_local() {
            return Err(DeployError::Store("no shared store: rollback needs --redis-url".into()));
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
        self.activate(name, hash).await.map_err(DeployError::NotActivated)?;
        let here = HostAnswer { process_id: self.process_id.clone(), status: "active".into(), reason: None };
        let hosts = self.announce(name, hash, here, live).await?;
        Ok(DeployReport { name: name.to_string(), hash: hash.to_string(), hosts })
    }

    /// Makes `hash` the active version of `name`, announces it, and collects every live host's
    /// answer (`here` is this host's).
    async fn announce(
        &self,
        name: &str,
        hash: &str,
        here: HostAnswer,
        live: Vec<String>,
    ) -> Result<Vec<HostAnswer>, DeployError> {
        let unavailable = |e: crate::presence::PresenceError| DeployError::Store(e.to_string());
        self.presence.hset(ACTIVE, name, hash).await.map_err(unavailable)?;
        let deploy_id = crate::ids::generate();
        let mut answers = self.presence.subscribe(&answers_topic(&deploy_id)).await.map_err(unavailable)?;
        let announcement = Announcement { deploy_id, name: name.to_string(), hash: hash.to_string() };
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
                        // This host answers its own announcement too; its own result stands.
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
            });
        }
        Ok(hosts.into_values().collect())
    }

    /// Keeps this host's note of what it runs (room type → hash, rooms per hash) fresh.
    pub fn keep_note(self: &Arc<Self>, mm: Arc<Matchmaker>) {
        if self.store.is_local() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(NOTE_EVERY);
            loop {
                every.tick().await;
                let note = this.note(&mm).to_string();
                let _ = this.presence.setex(&host_key(&this.process_id), &note, NOTE_EVERY * 3).await;
            }
        });
    }

    /// What this host runs: `{types: {name: hash}, rooms: {name: {hash: count}}}`.
    fn note(&self, mm: &Matchmaker) -> Value {
        let types = self.plugins.hashes();
        let mut rooms: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for plugin in mm.room_plugins() {
            *rooms
                .entry(plugin.manifest.name.clone())
                .or_default()
                .entry(plugin.hash.clone())
                .or_default() += 1;
        }
        json!({ "processId": self.process_id, "types": types, "rooms": rooms })
    }

    /// The deployment's state: every room type, its active hash, its stored versions, and what
    /// each live host runs.
    pub async fn status(&self, mm: &Matchmaker) -> Value {
        let live: Vec<String> = mm.processes().await.into_iter().map(|p| p.process_id).collect();
        let mut notes = Vec::new();
        for p in &live {
            let note = if *p == self.process_id {
                Some(self.note(mm))
            } else {
                self.presence
                    .get(&host_key(p))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|n| serde_json::from_str(&n).ok())
            };
            notes.push(note.unwrap_or_else(|| json!({ "processId": p, "types": {}, "rooms": {} })));
        }
        let active = if self.store.is_local() {
            self.plugins.hashes()
        } else {
            self.presence.hgetall(ACTIVE).await.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>()
        };
        let mut types = Vec::new();
        let mut names: Vec<String> = active.keys().cloned().collect();
        names.extend(self.plugins.names());
        names.sort();
        names.dedup();
        for name in names {
            let versions = self.store.versions(&name).await.unwrap_or_default();
            let hosts: Vec<Value> = notes
                .iter()
                .map(|n| {
                    json!({
                        "processId": n["processId"],
                        "hash": n["types"][&name],
                        "rooms": n["rooms"].get(&name).cloned().unwrap_or(json!({})),
                    })
                })
                .collect();
            types.push(json!({ "name": name, "activeHash": active.get(&name), "versions": versions, "hosts": hosts }));
        }
        json!({ "roomTypes": types })
    }
}
