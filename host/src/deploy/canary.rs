//! Canary deploys: a new version takes a sticky share of new rooms until an activation
//! finishes or reverts it, and reverts by itself when its rooms fail.
//!
//! The deployment's canaries live in the hash [`CANARIES`] (room type → [`Record`]); a record
//! stays after its canary ends, so the state shows how it ended and why. Every host watches
//! its own canary rooms: once they fault [`Deployer::canary_faults`](super::Deployer) times
//! (trap, deadline, memory cap), or as many fail to migrate to it, the host reverts the canary
//! for the whole deployment: the record says `reverted` with the reason, and an announcement
//! ends the canary on every host and moves its rooms that can move back to the previous
//! version.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Announcement, DeployOptions, Deployer};
use crate::presence::{Presence, PresenceError};

/// Room type → its canary's [`Record`].
pub const CANARIES: &str = "odeon:plugins:canaries";
/// Faults on one host that revert a canary, unless the host is told otherwise.
pub const DEFAULT_FAULTS: u64 = 3;
/// How often a host looks at its canaries' faults.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// A room type's canary, as the deployment records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The version under trial.
    pub hash: String,
    /// Its share of new rooms, in percent.
    pub percent: u8,
    /// The version the other new rooms get, and that a revert returns to.
    pub previous: String,
    /// `running`, `finished` or `reverted`.
    pub status: String,
    /// Why it was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

impl Record {
    /// A canary that starts now.
    pub fn running(hash: &str, percent: u8, previous: &str) -> Self {
        Self {
            hash: hash.into(),
            percent,
            previous: previous.into(),
            status: "running".into(),
            reason: None,
            started_at_ms: crate::clock::now_ms(),
        }
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a canary record serializes")
    }
}

/// Reads `name`'s canary record.
pub async fn record(presence: &dyn Presence, name: &str) -> Option<Record> {
    presence.hget(CANARIES, name).await.ok().flatten().and_then(|r| serde_json::from_str(&r).ok())
}

/// An activation of `hash` ends `name`'s running canary: `finished` if it made the canary's
/// version the active one, `reverted` otherwise.
pub async fn finish(presence: &dyn Presence, name: &str, hash: &str) -> Result<(), PresenceError> {
    let Some(mut r) = record(presence, name).await.filter(|r| r.status == "running") else {
        return Ok(());
    };
    if r.hash == hash {
        r.status = "finished".into();
    } else {
        r.status = "reverted".into();
        r.reason = Some(format!("an operator activated {hash}"));
    }
    presence.hset(CANARIES, name, &r.to_json()).await.map(|_| ())
}

impl Deployer {
    /// Watches this host's canaries for as long as it runs, and reverts one whose rooms fault.
    pub fn watch_canaries(self: &Arc<Self>) {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(WATCH_EVERY);
            loop {
                every.tick().await;
                let Some(this) = this.upgrade() else { return };
                for c in this.plugins.canaries() {
                    let faults = c.version.faults();
                    if faults >= this.canary_faults {
                        let reason = format!("{faults} of its rooms failed on {}", this.process_id);
                        this.revert_canary(&c.version.manifest.name, &c.version.hash, reason).await;
                    }
                }
            }
        });
    }

    /// A canary migration left rooms behind: as many as the fault limit revert the canary.
    pub(super) async fn judge_canary_migration(
        &self,
        name: &str,
        hash: &str,
        failed: &[super::migrate::KeptRoom],
    ) {
        if (failed.len() as u64) < self.canary_faults {
            return;
        }
        let reason = format!(
            "{} of its rooms failed to migrate on {}: {}",
            failed.len(),
            self.process_id,
            failed[0].reason
        );
        self.revert_canary(name, hash, reason).await;
    }

    /// Ends `name`'s canary of `hash` on every host, once: new rooms go back to the previous
    /// version and the canary's rooms move back where they can.
    pub(super) async fn revert_canary(&self, name: &str, hash: &str, reason: String) {
        self.plugins.clear_canary(name);
        let Some(mut r) =
            record(&*self.presence, name).await.filter(|r| r.hash == hash && r.status == "running")
        else {
            return;
        };
        tracing::warn!(room_type = %name, %hash, "canary reverted: {reason}");
        r.status = "reverted".into();
        r.reason = Some(reason);
        if let Err(e) = self.presence.hset(CANARIES, name, &r.to_json()).await {
            tracing::warn!("canary revert not recorded: {e}");
        }
        let options = DeployOptions { migrate: true, canary: None, from: Some(hash.to_string()) };
        let announcement = Announcement {
            deploy_id: crate::ids::generate(),
            origin: String::new(),
            name: name.to_string(),
            hash: r.previous.clone(),
            options,
        };
        // Every host, this one included, carries it out; nobody waits for the answers.
        if self.store.is_local() {
            // Alone: the revert's announcement, carried out here without judging it again.
            if let Ok(previous) = self.activate(name, &r.previous).await {
                self.migrate_here(previous, super::migrate::Selection { from: Some(hash), share: None })
                    .await;
            }
        } else if let Err(e) = self
            .presence
            .publish(super::ANNOUNCEMENTS, &serde_json::to_string(&announcement).expect("serializes"))
            .await
        {
            tracing::warn!("canary revert not announced: {e}");
        }
    }
}
