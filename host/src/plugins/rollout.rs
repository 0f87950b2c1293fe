//! Gradual rollout: a canary version takes a fixed share of a room type's new rooms while the
//! rest keep the current version.
//!
//! Which rooms go to the canary is decided by the room id alone ([`in_share`]), so the same
//! room always falls on the same side, on every host: a migration of the canary's share picks
//! exactly the rooms that new-room placement would have given it.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{PluginVersion, Plugins};

/// A room type's canary.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The version under trial.
    pub version: Arc<PluginVersion>,
    /// The share of new rooms it takes, in percent (1–99).
    pub percent: u8,
}

/// Whether the room `room_id` falls in a canary's `percent` share.
pub fn in_share(room_id: &str, percent: u8) -> bool {
    let digest = Sha256::digest(room_id.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % 100 < u16::from(percent)
}

impl Plugins {
    /// Makes `version` the canary of its room type with `percent` of its new rooms.
    pub fn set_canary(&self, version: Arc<PluginVersion>, percent: u8) {
        let name = version.manifest.name.clone();
        tracing::info!(room_type = %name, hash = %version.hash, percent, "canary started");
        self.canaries.write().expect("canary lock").insert(name, Canary { version, percent });
    }

    /// Ends the room type's canary, if any; its rooms keep running on it.
    pub fn clear_canary(&self, name: &str) -> Option<Canary> {
        self.canaries.write().expect("canary lock").remove(name)
    }

    /// The room type's canary, if one runs.
    pub fn canary(&self, name: &str) -> Option<Canary> {
        self.canaries.read().expect("canary lock").get(name).cloned()
    }

    /// Every running canary.
    pub fn canaries(&self) -> Vec<Canary> {
        self.canaries.read().expect("canary lock").values().cloned().collect()
    }

    /// The version a new room `room_id` of type `name` gets: the canary for its share, else the
    /// current version.
    pub fn for_new_room(&self, name: &str, room_id: &str) -> Option<Arc<PluginVersion>> {
        match self.canary(name) {
            Some(c) if in_share(room_id, c.percent) => Some(c.version),
            _ => self.get(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::in_share;

    #[test]
    fn the_share_is_about_the_percentage_and_fixed_per_room() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("room{i}")).collect();
        for percent in [0u8, 10, 50, 90, 100] {
            let inside = ids.iter().filter(|id| in_share(id, percent)).count();
            let expected = 100 * usize::from(percent);
            assert!(inside.abs_diff(expected) <= 250, "{percent}%: {inside} of 10000");
        }
        assert!(ids.iter().all(|id| in_share(id, 30) == in_share(id, 30)));
        assert!(ids.iter().filter(|id| in_share(id, 10)).all(|id| in_share(id, 50)));
    }
}
