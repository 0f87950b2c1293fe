//! What the deployment runs: each host's note of its versions, canaries, rooms per version, last
//! migration and last refusal (`odeon:plugins:host:<id>`, rewritten every 2 s), and the state
//! `GET /odeon/admin/plugins` answers from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{ACTIVE, Deployer, NOTE_EVERY, canary, host_key};
use crate::matchmaker::Matchmaker;

impl Deployer {
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
        let canaries: BTreeMap<String, String> = self
            .plugins
            .canaries()
            .into_iter()
            .map(|c| (c.version.manifest.name.clone(), c.version.hash.clone()))
            .collect();
        let migrations = self.migrations.lock().expect("migrations lock").clone();
        let refusals = self.refusals.lock().expect("refusals lock").clone();
        json!({
            "processId": self.process_id, "types": types, "canaries": canaries, "rooms": rooms,
            "migrations": migrations, "refused": refusals,
        })
    }

    /// The deployment's state: every room type, its active hash, its stored versions, and what
    /// each live host runs.
    pub async fn status(&self, mm: &Matchmaker) -> Value {
        let processes = mm.processes().await;
        let draining: Vec<String> =
            processes.iter().filter(|p| p.draining).map(|p| p.process_id.clone()).collect();
        let live: Vec<String> = processes.into_iter().map(|p| p.process_id).collect();
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
        // A type whose plugin file was removed is listed until its last room here ends.
        names.extend(self.plugins.retired_names());
        names.sort();
        names.dedup();
        for name in names {
            let versions = self.store.versions(&name).await.unwrap_or_default();
            let hosts: Vec<Value> = notes
                .iter()
                .map(|n| {
                    json!({
                        "processId": n["processId"],
                        "draining": n["processId"].as_str().is_some_and(|p| draining.iter().any(|d| d == p)),
                        "hash": n["types"][&name],
                        "canaryHash": n["canaries"].get(&name),
                        "rooms": n["rooms"].get(&name).cloned().unwrap_or(json!({})),
                        "lastMigration": n["migrations"].get(&name),
                        "refused": n["refused"].get(&name),
                    })
                })
                .collect();
            let canary = canary::record(&*self.presence, &name).await;
            let retired = self.plugins.is_retired(&name);
            types.push(json!({
                "name": name, "activeHash": active.get(&name), "canary": canary, "versions": versions,
                "hosts": hosts, "retired": retired,
            }));
        }
        json!({ "roomTypes": types })
    }
}
