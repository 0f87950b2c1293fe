//! Where deployed plugin artifacts are kept, by content hash, so every host can fetch them.
//!
//! - [`ArtifactStore::Local`]: nothing is stored (a host used without a deployment, in tests).
//! - [`ArtifactStore::Shared`]: the deployment's presence (Redis), when there is no MongoDB, or
//!   the embedded default's in-process presence (one host; versions last as long as the process):
//!   the module base64-encoded at `odeon:plugin:<hash>`, and its [`StoredVersion`] as JSON in the
//!   hash `odeon:plugins:versions:<name>` under its hash.
//! - [`ArtifactStore::Mongo`]: GridFS (bucket `odeonplugins`) in the MongoDB the listings use
//!   (`--mongo-uri`): one file per version, its id the hash, its filename the room type, its
//!   metadata the [`StoredVersion`]; modules up to the 32 MiB upload cap fit (GridFS chunks them).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::TryStreamExt;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use mongodb::bson::{Bson, doc};
use mongodb::gridfs::GridFsBucket;
use mongodb::options::{ClientOptions, GridFsBucketOptions};
use serde::{Deserialize, Serialize};

use crate::presence::{Presence, PresenceError};

/// What is known of a stored version besides its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredVersion {
    /// SHA-256 of the module, hex.
    pub hash: String,
    /// Room type.
    pub name: String,
    /// The guest ABI it was built for.
    pub abi_version: u32,
    /// Module size in bytes.
    pub size: usize,
    /// The address that uploaded it.
    pub uploader: String,
    /// When, in Unix milliseconds.
    pub uploaded_at_ms: u64,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store could not be reached or refused.
    #[error("{0}")]
    Unavailable(#[from] PresenceError),
    /// What it holds does not decode.
    #[error("stored artifact is corrupt: {0}")]
    Corrupt(String),
    /// MongoDB could not be reached in time or refused.
    #[error("artifact store: {0}")]
    Mongo(String),
}

/// The longest any one MongoDB store operation may take (a 32 MiB module included).
const MONGO_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a MongoDB operation within [`MONGO_TIMEOUT`].
async fn bounded<T>(op: impl IntoFuture<Output = mongodb::error::Result<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(MONGO_TIMEOUT, op.into_future()).await {
        Ok(r) => r.map_err(|e| StoreError::Mongo(e.to_string())),
        Err(_) => Err(StoreError::Mongo("no answer in time".into())),
    }
}

/// The GridFS bucket of plugin artifacts in the database `uri` names (else `odeon`).
pub async fn mongo_bucket(uri: &str) -> Result<GridFsBucket, StoreError> {
    let mut options = bounded(ClientOptions::parse(uri)).await?;
    options.server_selection_timeout.get_or_insert(Duration::from_secs(3));
    options.connect_timeout.get_or_insert(Duration::from_secs(3));
    options.app_name.get_or_insert_with(|| "odeon-host".into());
    let database = options.default_database.clone().unwrap_or_else(|| "odeon".into());
    let client = mongodb::Client::with_options(options).map_err(|e| StoreError::Mongo(e.to_string()))?;
    let bucket = GridFsBucketOptions::builder().bucket_name("odeonplugins".to_string()).build();
    Ok(client.database(&database).gridfs_bucket(bucket))
}

/// Where artifacts are kept.
#[derive(Clone)]
pub enum ArtifactStore {
    /// One host: nothing is shared.
    Local,
    /// The deployment's shared presence.
    Shared(Arc<dyn Presence>),
    /// GridFS in the deployment's MongoDB.
    Mongo(GridFsBucket),
}

pub use crate::plugins::content_hash as sha256_hex;

fn artifact_key(hash: &str) -> String {
    format!("odeon:plugin:{hash}")
}

fn versions_key(name: &str) -> String {
    format!("odeon:plugins:versions:{name}")
}

impl ArtifactStore {
    /// Whether this is the one-host store.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local)
    }

    /// Keeps `bytes` under `version.hash`, with its description.
    pub async fn put(&self, version: &StoredVersion, bytes: &[u8]) -> Result<(), StoreError> {
        if let Self::Mongo(bucket) = self {
            let id = Bson::String(version.hash.clone());
            if bounded(bucket.find_one(doc! { "_id": &version.hash })).await?.is_some() {
                return Ok(()); // the same bytes, uploaded before
            }
            let metadata =
                mongodb::bson::to_document(version).map_err(|e| StoreError::Mongo(e.to_string()))?;
            let mut upload =
                bounded(bucket.open_upload_stream(&version.name).id(id).metadata(metadata)).await?;
            let written = async {
                upload.write_all(bytes).await?;
                upload.close().await
            };
            return match tokio::time::timeout(MONGO_TIMEOUT, written).await {
                Ok(r) => r.map_err(|e| StoreError::Mongo(e.to_string())),
                Err(_) => Err(StoreError::Mongo("upload took too long".into())),
            };
        }
        let Self::Shared(p) = self else { return Ok(()) };
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        p.set(&artifact_key(&version.hash), &encoded).await?;
        let meta = serde_json::to_string(version).expect("a version serializes");
        p.hset(&versions_key(&version.name), &version.hash, &meta).await?;
        Ok(())
    }

    /// The module stored under `hash`, if any.
    pub async fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Self::Mongo(bucket) = self {
            if bounded(bucket.find_one(doc! { "_id": hash })).await?.is_none() {
                return Ok(None);
            }
            let mut download = bounded(bucket.open_download_stream(Bson::String(hash.to_string()))).await?;
            let mut bytes = Vec::new();
            return match tokio::time::timeout(MONGO_TIMEOUT, download.read_to_end(&mut bytes)).await {
                Ok(Ok(_)) => Ok(Some(bytes)),
                Ok(Err(e)) => Err(StoreError::Mongo(e.to_string())),
                Err(_) => Err(StoreError::Mongo("download took too long".into())),
            };
        }
        let Self::Shared(p) = self else { return Ok(None) };
        let Some(encoded) = p.get(&artifact_key(hash)).await? else { return Ok(None) };
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Every stored version of a room type, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<StoredVersion>, StoreError> {
        if let Self::Mongo(bucket) = self {
            let files: Vec<_> =
                bounded(async { bucket.find(doc! { "filename": name }).await?.try_collect().await }).await?;
            let mut all: Vec<StoredVersion> = files
                .into_iter()
                .filter_map(|f| f.metadata.and_then(|m| mongodb::bson::from_document(m).ok()))
                .collect();
            all.sort_by_key(|v| v.uploaded_at_ms);
            return Ok(all);
        }
        let Self::Shared(p) = self else { return Ok(Vec::new()) };
        let mut all: Vec<StoredVersion> = p
            .hgetall(&versions_key(name))
            .await?
            .into_values()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        all.sort_by_key(|v| v.uploaded_at_ms);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[tokio::test]
    async fn a_shared_store_keeps_artifacts_by_hash_and_lists_versions() {
        let presence: Arc<dyn Presence> = Arc::new(crate::presence::LocalPresence::default());
        let store = ArtifactStore::Shared(presence);
        let bytes = vec![0u8, 97, 115, 109, 255];
        let v = |hash: &str, at| StoredVersion {
            hash: hash.into(),
            name: "echo".into(),
            abi_version: 1,
            size: 5,
            uploader: "127.0.0.1".into(),
            uploaded_at_ms: at,
        };
        store.put(&v("h2", 20), &bytes).await.unwrap();
        store.put(&v("h1", 10), &bytes).await.unwrap();
        assert_eq!(store.get("h1").await.unwrap(), Some(bytes));
        assert_eq!(store.get("nope").await.unwrap(), None);
        let hashes: Vec<String> = store.versions("echo").await.unwrap().into_iter().map(|v| v.hash).collect();
        assert_eq!(hashes, ["h1", "h2"]);
        assert!(ArtifactStore::Local.versions("echo").await.unwrap().is_empty());
    }
}
