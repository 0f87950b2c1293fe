//! Retiring a room type whose plugin file left the plugins directory: new rooms of it are
//! refused at once (as for a type never loaded), its running rooms play on with their versions,
//! and the type is unregistered when the last of them ends.
//!
//! The registry remembers which file each room type was loaded from, so a removed file names the
//! type it served, and a file that now declares another type (the room's `NAME` changed) retires
//! the one it declared before. Another file in the directory that declares the same type keeps
//! it registered.

use std::path::Path;
use std::sync::Arc;

use super::{PluginVersion, Plugins};

impl Plugins {
    /// Remembers that the plugin file `path` serves (or last served) room type `name`. When the
    /// file declared another type before (the room's `NAME` changed), that type is retired
    /// unless another file declares it: its name, for the caller to unregister once its rooms
    /// are gone ([`Plugins::unregister_retired`]).
    pub(super) fn record_file(&self, path: &Path, name: &str) -> Option<String> {
        let file = file_name(path)?;
        let before = {
            let mut files = self.files.lock().expect("files lock");
            let before = files.insert(file.clone(), name.to_string()).filter(|b| b != name)?;
            let declared_elsewhere =
                files.iter().any(|(f, n)| *n == before && *f != file && path.with_file_name(f).is_file());
            (!declared_elsewhere).then_some(before)?
        };
        let version = self.retire(&before)?;
        tracing::info!(
            room_type = %before, file, now = name, version = version.version,
            "plugin file declares another room type now: no new rooms of the old one; its running rooms play on until they end"
        );
        Some(before)
    }

    /// The plugin file `path` is gone from the plugins directory. When no other file there
    /// declares its room type, the type is retired: the name of a type now retired, whose rooms
    /// still run, for the caller to unregister once they are gone ([`Plugins::unregister_retired`]).
    pub async fn file_removed(self: &Arc<Self>, path: &Path) -> Option<String> {
        let file = file_name(path)?;
        let (name, other) = {
            let mut files = self.files.lock().expect("files lock");
            let name = files.remove(&file)?;
            // Among other files of the type, the last by name: the one `load_dir` would have
            // made current.
            let other = files
                .iter()
                .filter(|(f, n)| **n == name && path.with_file_name(f).is_file())
                .map(|(f, _)| f.clone())
                .max();
            (name, other)
        };
        if let Some(other) = other {
            tracing::info!(room_type = %name, removed = %file, serving = %other, "plugin file removed; another file declares its room type");
            // A no-op when that file's bytes are already current.
            let _ = self.load_file(&path.with_file_name(other)).await;
            return None;
        }
        let version = self.retire(&name)?;
        tracing::info!(
            room_type = %name, file, version = version.version,
            "plugin file removed: no new rooms of this type; running rooms play on until they end"
        );
        Some(name)
    }

    /// Stops creating rooms of type `name` (its canary too); running rooms keep their versions.
    /// The version that was current, if the type was registered.
    pub fn retire(&self, name: &str) -> Option<Arc<PluginVersion>> {
        // Moved under the registry's lock, so a join by id never finds the type in neither map.
        let mut current = self.current.write().expect("registry lock");
        let version = current.remove(name)?;
        self.retired.write().expect("retired lock").insert(name.to_string(), version.clone());
        drop(current);
        self.clear_canary(name);
        Some(version)
    }

    /// Forgets the retired room type `name` (when its last room has ended); nothing if the type
    /// is not retired, or was loaded again since.
    pub fn unregister_retired(&self, name: &str) {
        if !self.is_retired(name) {
            return;
        }
        if self.retired.write().expect("retired lock").remove(name).is_some() {
            tracing::info!(room_type = %name, "room type unregistered: its plugin file is gone and its last room ended");
        }
    }

    /// Whether `name` is retired: no new rooms, but rooms of it still run.
    pub fn is_retired(&self, name: &str) -> bool {
        self.retired.read().expect("retired lock").contains_key(name)
    }

    /// Names of the retired room types, sorted.
    pub fn retired_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.retired.read().expect("retired lock").keys().cloned().collect();
        names.sort();
        names
    }

    /// The version that admits clients to an existing room of type `name`: the current one, or
    /// the last of a retired type (whose rooms still take joins by id and reconnections).
    pub fn get_or_retired(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.get(name).or_else(|| self.retired.read().expect("retired lock").get(name).cloned())
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}
