//! Moving a host's running rooms of one type to a new version (`?migrate=1`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::matchmaker::Matchmaker;
use crate::plugins::PluginVersion;
use crate::rooms::Migrated;

/// How many rooms migrate at once on one host: one per core the host may use (and at most one
/// per instance slot kept for migrations). A room is frozen from its snapshot to its swap; more
/// at once would only make each wait for the others' guest calls on the same cores.
fn at_once() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(crate::plugins::MIGRATION_SLOTS as usize)
}

/// One host's migration of a room type, as the deploy answer and the deployment state show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    /// The version the rooms were moved to.
    pub hash: String,
    /// Rooms that run the new version now.
    pub migrated: usize,
    /// Rooms that stayed on their version, and why.
    pub kept: Vec<KeptRoom>,
    /// The longest pause of a migrated room (from its freeze to its first call on the new
    /// code), in microseconds.
    pub pause_max_us: u64,
    /// The median pause.
    pub pause_p50_us: u64,
    /// The 99th percentile pause.
    pub pause_p99_us: u64,
    /// How long the whole migration on this host took, in microseconds.
    pub elapsed_us: u64,
}

impl MigrationReport {
    /// The rooms that failed to move: those kept for any reason but having no migration hooks.
    pub fn failures(&self) -> Vec<KeptRoom> {
        self.kept.iter().filter(|k| !k.reason.contains(NO_HOOKS)).cloned().collect()
    }
}

/// What the reason of a room type without migration hooks says (the SDK's wording, and the
/// host's for modules built before migration).
const NO_HOOKS: &str = "no migration hooks";

/// A room that stayed on its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptRoom {
    /// The room.
    pub room_id: String,
    /// Why it was not migrated.
    pub reason: String,
}

/// Which of a room type's running rooms a migration moves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// Only rooms that run this version (a canary being reverted).
    pub from: Option<&'a str>,
    /// Only rooms in a canary's share of this many percent.
    pub share: Option<u8>,
}

/// Moves the rooms of `to`'s type on this host that `which` selects and that run another
/// version to `to`.
pub async fn migrate_rooms(mm: &Matchmaker, to: Arc<PluginVersion>, which: Selection<'_>) -> MigrationReport {
    let rooms: Vec<_> = mm
        .rooms_of(&to.manifest.name)
        .into_iter()
        .filter(|r| which.from.is_none_or(|hash| r.plugin().hash == hash))
        .filter(|r| which.share.is_none_or(|p| crate::plugins::rollout::in_share(&r.room_id, p)))
        .collect();
    let mut report = MigrationReport { hash: to.hash.clone(), ..MigrationReport::default() };
    let started = std::time::Instant::now();
    let mut pauses: Vec<Duration> = Vec::new();
    for wave in rooms.chunks(at_once()) {
        let mut tasks = Vec::with_capacity(wave.len());
        for room in wave {
            let (room, to) = (room.clone(), to.clone());
            let limits = mm.plugins().limits();
            tasks.push(tokio::spawn(async move {
                let outcome = room.migrate(to, limits).await;
                (room.room_id.to_string(), outcome)
            }));
        }
        for task in tasks {
            let Ok((room_id, outcome)) = task.await else { continue };
            match outcome {
                Migrated::Moved { pause } => {
                    report.migrated += 1;
                    pauses.push(pause);
                }
                Migrated::Kept(reason) => report.kept.push(KeptRoom { room_id, reason }),
                Migrated::Already => {}
            }
        }
    }
    pauses.sort();
    let at = |q: f64| pauses.get(((pauses.len() as f64 * q).ceil() as usize).saturating_sub(1));
    let micros = |d: Option<&Duration>| d.map_or(0, |d| d.as_micros() as u64);
    report.pause_max_us = micros(pauses.last());
    report.pause_p50_us = micros(at(0.5));
    report.pause_p99_us = micros(at(0.99));
    report.elapsed_us = started.elapsed().as_micros() as u64;
    report
}
