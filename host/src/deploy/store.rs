//! Where deployed plugin artifacts are kept, by content hash, so every host can fetch them.
//!
//! - [`ArtifactStore::Local`]: the embedded default, one host: nothing is stored (the plugins
//!   directory keeps what serves).
//! - [`ArtifactStore::Shared`]: the deployment's presence (Redis): the module base64-encoded at
//!   `odeon:plugin:<hash>`, and its [`StoredVersion`] as JSON in the hash
//!   `odeon:plugins:versions:<name>` under its hash.

use std::sync::Arc;

use base64::Engine as _;
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
}

/// Where artifacts are kept.
#[derive(Clone)]
pub enum ArtifactStore {
    /// One host: nothing is shared.
    Local,
    /// The deployment's shared presence.
    Shared(Arc<dyn Presence>),
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
        let Self::Shared(p) = self else { return Ok(()) };
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        p.set(&artifact_key(&version.hash), &encoded).await?;
        let meta = serde_json::to_string(version).expect("a version serializes");
        p.hset(&versions_key(&version.name), &version.hash, &meta).await?;
        Ok(())
    }

    /// The module stored under `hash`, if any.
    pub async fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Self::Shared(p) = self else { return Ok(None) };
        let Some(encoded) = p.get(&artifact_key(hash)).await? else { return Ok(None) };
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Every stored version of a room type, oldest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<StoredVersion>, StoreError> {
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
