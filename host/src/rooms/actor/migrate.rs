//! Live migration of a running room to another version of its code, between two guest calls.
//!
//! The actor stops taking its inbox, sends the patch that is due so every client holds the
//! state the snapshot carries, asks the old instance for its snapshot, starts the new version
//! and hands it the snapshot, then swaps the instance. Everything the host keeps (clients and
//! their sockets, seats and reconnection windows, the schedule and patch clock, input buffers
//! and acks, the listing) stays where it is; what arrived meanwhile waits in the inbox and goes
//! to the new code, in order. Any failure before the swap leaves the old instance running as if
//! nothing happened.

use std::sync::Arc;
use std::time::Duration;

use odeon_protocol::abi::{Event, MigrateIn, MigrateInResult, MigrateOut};
use tokio::time::Instant;

use super::Room;
use crate::plugins::{Guest, PluginVersion};
use crate::rooms::Migrated;

/// A migration asked for: the version, its fresh instance in a migration slot, the reply.
pub(super) type Asked = (
    Arc<PluginVersion>,
    Box<(Guest, tokio::sync::OwnedSemaphorePermit)>,
    tokio::sync::oneshot::Sender<Migrated>,
);

impl Room {
    /// Runs the migration asked for in the inbox, if any. Returns false when the room failed
    /// on the way (its old code trapped) and is gone.
    pub(super) async fn migrate_if_asked(&mut self, events: &mut Vec<Event>) -> bool {
        let Some((to, fresh, reply)) = self.migration.take() else { return true };
        let frozen = Instant::now();
        // What the last call left for the guest belongs to the old code's time.
        if !self.settle(events).await {
            let _ = reply.send(Migrated::Kept("the room failed before its migration".into()));
            return false;
        }
        let (outcome, alive) = self.migrate(to, *fresh, frozen).await;
        match &outcome {
            Migrated::Moved { pause } => tracing::info!(
                room = self.tag(), room_type = %self.listing.name, version = self.plugin.load().version,
                pause_us = pause.as_micros() as u64, "room migrated"
            ),
            Migrated::Kept(reason) => {
                tracing::warn!(room = self.tag(), room_type = %self.listing.name, "room not migrated: {reason}")
            }
            Migrated::Already => {}
        }
        let _ = reply.send(outcome);
        alive
    }

    async fn migrate(
        &mut self,
        to: Arc<PluginVersion>,
        (mut guest, _slot): (Guest, tokio::sync::OwnedSemaphorePermit),
        frozen: Instant,
    ) -> (Migrated, bool) {
        if self.plugin.load().hash == to.hash {
            return (Migrated::Already, true);
        }
        if self.disposing {
            return (Migrated::Kept("the room is closing".into()), true);
        }
        let deadline = self.deps.limits.create_deadline;
        let snapshot = match self.guest.migrate_out(deadline).await {
            Ok(MigrateOut::Ready(snapshot)) => snapshot,
            Ok(MigrateOut::Refused(reason)) => return (Migrated::Kept(reason), true),
            Err(e) => {
                // The old code itself failed: the room is as dead as after any fault.
                let reason = format!("the old version failed to write its snapshot: {e}");
                self.crash(e);
                return (Migrated::Kept(reason), false);
            }
        };
        let input = MigrateIn {
            now_ms: crate::clock::now_ms(),
            from_hash: self.plugin.load().hash.clone(),
            snapshot,
        };
        let effects = match guest.migrate_in(&input, deadline).await {
            Ok(MigrateInResult::Adopted(effects)) => effects.effects,
            Ok(MigrateInResult::Refused(reason)) => return (Migrated::Kept(reason), true),
            Err(e) => return (Migrated::Kept(format!("the new version failed: {e}")), true),
        };
        // The swap: from here on the new code serves the room, and the old instance is freed.
        drop(std::mem::replace(&mut self.guest, guest));
        self.plugin.store(to.clone());
        self.listing.plugin_version = to.version;
        if std::mem::take(&mut self.ticks_unhandled) && self.inputs.is_none() {
            // The new code may have a tick hook: it says so again on its first tick if not.
            let every =
                (self.simulation_ms > 0).then(|| Duration::from_millis(u64::from(self.simulation_ms)));
            self.schedule.set_simulation_interval(every, Instant::now());
        }
        let mut follow_up = Vec::new();
        self.apply(effects, &mut follow_up);
        if let Some(fault) = self.take_fault() {
            self.crash(fault);
            return (Migrated::Moved { pause: frozen.elapsed() }, false);
        }
        let pause = frozen.elapsed();
        if !follow_up.is_empty() && !self.call(&mut follow_up).await {
            return (Migrated::Moved { pause }, false);
        }
        (Migrated::Moved { pause }, true)
    }
}
