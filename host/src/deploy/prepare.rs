//! Compiling a deployed version on every host at once.
//!
//! Compiling a module takes most of a deploy's time (0.7 s of CPU for the example rooms). The
//! host that gets an upload validates it before anything is stored or activated, and the other
//! hosts validate it again themselves; done one after the other, that is two compiles. So the
//! receiving host first sends the module's bytes on [`PREPARE_TOPIC`]: every other host starts
//! compiling them (validation included) at once, and keeps the result for its hash a little
//! while. When the deploy is announced, a host that prepared the version uses that result (or
//! waits for it to finish); one that did not fetches the artifact from the store as before. A
//! version that is not announced (the receiving host refused it) is forgotten unused.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Deployer, store};
use crate::plugins::PluginVersion;

/// Where modules about to be deployed are sent.
pub const PREPARE_TOPIC: &str = "odeon:deploys:prepare";
/// How long a prepared version waits for its announcement.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// A compile that started before its deploy was announced; its result, once there.
pub(super) type Prepared = Arc<tokio::sync::OnceCell<Result<Arc<PluginVersion>, String>>>;

/// The bytes of a module about to be deployed.
#[derive(Debug, Serialize, Deserialize)]
struct Prepare {
    origin: String,
    hash: String,
    /// The module, base64.
    module: String,
}

impl Deployer {
    /// Sends `bytes` to every other host to compile, before this one validates them. Best effort:
    /// a host that misses it compiles on the announcement.
    pub(super) async fn send_prepare(&self, hash: &str, bytes: &[u8]) {
        if self.store.is_local() {
            return;
        }
        let message = Prepare {
            origin: self.process_id.clone(),
            hash: hash.to_string(),
            module: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        let text = serde_json::to_string(&message).expect("a prepare message serializes");
        if let Err(e) = self.presence.publish(PREPARE_TOPIC, &text).await {
            tracing::debug!(%hash, "prepare not sent: {e}");
        }
    }

    /// Follows [`PREPARE_TOPIC`]: each module another host is about to deploy is compiled here
    /// at once. Returns once subscribed.
    pub(super) async fn follow_prepares(self: &Arc<Self>) -> Result<(), String> {
        let mut rx = self.presence.subscribe(PREPARE_TOPIC).await.map_err(|e| e.to_string())?;
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let Some(this) = this.upgrade() else { return };
                let Ok(p) = serde_json::from_str::<Prepare>(&message) else { continue };
                if p.origin == this.process_id {
                    continue;
                }
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&p.module) else { continue };
                if store::sha256_hex(&bytes) != p.hash {
                    continue;
                }
                let cell = this.prepared(&p.hash);
                let plugins = this.plugins.clone();
                let source = format!("deploy:{}", p.hash);
                tokio::spawn(async move {
                    cell.get_or_init(|| async {
                        plugins.prepare(&source, bytes).await.map_err(|e| e.to_string())
                    })
                    .await;
                });
            }
        });
        Ok(())
    }

    /// The slot of `hash`'s compile, made (and forgotten after [`KEEP_FOR`]) if there is none.
    fn prepared(self: &Arc<Self>, hash: &str) -> Prepared {
        let mut prepared = self.prepared.lock().expect("prepared lock");
        if let Some(cell) = prepared.get(hash) {
            return cell.clone();
        }
        let cell = Prepared::default();
        prepared.insert(hash.to_string(), cell.clone());
        let (this, hash) = (Arc::downgrade(self), hash.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_FOR).await;
            if let Some(this) = this.upgrade() {
                this.prepared.lock().expect("prepared lock").remove(&hash);
            }
        });
        cell
    }

    /// The compile of `hash` that [`PREPARE_TOPIC`] started here, if any.
    pub(super) fn prepared_compile(&self, hash: &str) -> Option<Prepared> {
        self.prepared.lock().expect("prepared lock").get(hash).cloned()
    }
}
