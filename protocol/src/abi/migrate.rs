//! Live migration records: how a running room moves from one version of its code to another
//! between two guest calls.
//!
//! The host calls `odeon_migrate_out` on the old instance, which answers [`MigrateOut`]: a
//! snapshot (the room's own bytes and what the SDK keeps: clients, timers, outstanding
//! operations and, for schema state, what the clients hold), or why the room cannot move. It
//! then instantiates the new version and calls `odeon_migrate_in` with [`MigrateIn`]; the new
//! instance rebuilds the room from the snapshot and answers [`MigrateInResult`]. The snapshot's
//! layout belongs to the SDK, which both sides run; the host only carries it.
//!
//! Both exports are optional for the host: a module without them (built with an SDK from
//! before migration) is simply never migrated.

use serde::{Deserialize, Serialize};

use super::Effects;

/// What the old instance answers to `odeon_migrate_out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MigrateOut {
    /// The room's snapshot, for the new version's `odeon_migrate_in`.
    Ready(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The room cannot move now (no migration hooks, its hook failed, a patch is pending); it
    /// keeps running on this instance.
    Refused(String),
}

/// The input of `odeon_migrate_in` on a fresh instance of the new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateIn {
    /// Host wall clock in milliseconds.
    pub now_ms: u64,
    /// The content hash (SHA-256, hex) of the version the room ran on.
    pub from_hash: String,
    /// What the old instance's `odeon_migrate_out` returned.
    #[serde(with = "serde_bytes")]
    pub snapshot: Vec<u8>,
}

/// What the new instance answers to `odeon_migrate_in`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MigrateInResult {
    /// The room runs on this instance now; these are the effects of its restore hook.
    Adopted(Effects),
    /// The new version cannot take the room (its hook failed, the state's schema changed, the
    /// restored state differs from what the clients hold); the old instance keeps it.
    Refused(String),
}
