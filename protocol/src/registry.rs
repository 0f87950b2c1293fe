//! The process registry in Redis, as hosts write it and the proxy (`odeon-proxy`) reads it.
//!
//! - `odeon:processes` ([`PROCESSES`]) is the set of process ids.
//! - `odeon:process:<id>` ([`process_key`]) holds a [`ProcessInfo`] as JSON with a short TTL,
//!   renewed every second by its host; a process whose entry expired is dead.
//! - [`REGISTRY_EVENTS`] announces joins and leaves as [`RegistryEvent`] JSON, so followers react
//!   at once; they still resync from the set and entries, since announcements can be missed.
//! - `odeon:proxy:<id>` ([`proxy_key`]) holds the secret of a running proxy, with a short TTL
//!   renewed by it. The proxy sends `<id>:<secret>` in [`PROXY_HEADER`] with every request it
//!   forwards; a host believes that request's `X-Forwarded-For` only when the secret matches, so
//!   a process that reaches a host directly cannot choose its own client address.
//! - A host's entry gives a `peerKey` (random, its own): another host that shows it may send it
//!   a moving room directly ([`PEER_IMPORT_PATH`]), with no Redis hop in the room's pause.
//!   Whoever reads the registry can already call a host through Redis, so it grants no more.

use serde::{Deserialize, Serialize};

/// The set of registered process ids.
pub const PROCESSES: &str = "odeon:processes";

/// The pub/sub channel of [`RegistryEvent`]s.
pub const REGISTRY_EVENTS: &str = "odeon:processes:events";

/// The key of a process's entry.
pub fn process_key(process_id: &str) -> String {
    format!("odeon:process:{process_id}")
}

/// The key naming the process a room moved to (a drain): its value is the process id. Clients
/// come back to the room by the path they knew (`/{old process}/{room}`); a proxy or host that
/// finds this key sends them to the new process instead.
pub fn moved_key(room_id: &str) -> String {
    format!("odeon:moved:{room_id}")
}

/// How long a moved room's forwarding address is kept, in seconds.
pub const MOVED_TTL_SECS: u64 = 3600;

/// The header in which a proxy proves itself to a host: `<proxy id>:<secret>`.
pub const PROXY_HEADER: &str = "x-odeon-proxy";

/// The header in which a host proves itself to another: the callee's `peerKey`.
pub const PEER_HEADER: &str = "x-odeon-peer";

/// Where a host takes a room moving off another host (a drain): `POST`, the room's transfer
/// (MessagePack) as the body, [`PEER_HEADER`]; the answer is the call's reply as JSON. The
/// same call also goes through Redis, base64 in JSON, to a host that gives no `peerKey`.
pub const PEER_IMPORT_PATH: &str = "/odeon/peer/import";

/// How long a proxy's secret lives unless the proxy renews it (every third of it).
pub const PROXY_TTL_MS: u64 = 10_000;

/// The key of a running proxy's secret.
pub fn proxy_key(proxy_id: &str) -> String {
    format!("odeon:proxy:{proxy_id}")
}

/// What the registry says about a live process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    /// Process id.
    pub process_id: String,
    /// Where clients reach it, if it advertises an address (the reservations' `publicAddress`).
    pub address: Option<String>,
    /// Where a proxy in front of the deployment reaches it (`host:port`), if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Rooms it runs.
    pub rooms: usize,
    /// Clients connected to it.
    pub clients: usize,
    /// It is draining (stopping): matchmaking places no new room or seat on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// The most rooms it runs at once (`--max-rooms`): at it, matchmaking places rooms elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms: Option<usize>,
    /// The key another host shows in [`PEER_HEADER`] to send it a moving room at its
    /// `endpoint` ([`PEER_IMPORT_PATH`]); without it, moves go through Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key: Option<String>,
}

impl ProcessInfo {
    /// Whether it takes a new room (not draining, below its room limit).
    pub fn takes_rooms(&self) -> bool {
        !self.draining && self.max_rooms.is_none_or(|max| self.rooms < max)
    }
}

/// An announcement on [`REGISTRY_EVENTS`]: a process joined the registry (again) or left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum RegistryEvent {
    /// The process's id was added to [`PROCESSES`].
    #[serde(rename_all = "camelCase")]
    Add {
        /// Process id.
        process_id: String,
    },
    /// The process left (graceful shutdown) or was swept as dead.
    #[serde(rename_all = "camelCase")]
    Remove {
        /// Process id.
        process_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_events_have_their_documented_json() {
        let info = ProcessInfo {
            process_id: "p1".into(),
            address: None,
            endpoint: Some("10.0.0.5:3001".into()),
            rooms: 2,
            clients: 7,
            draining: false,
            max_rooms: None,
            peer_key: None,
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"processId": "p1", "address": null, "endpoint": "10.0.0.5:3001", "rooms": 2, "clients": 7})
        );
        let draining = ProcessInfo { draining: true, ..info.clone() };
        assert_eq!(serde_json::to_value(&draining).unwrap()["draining"], true);
        assert!(info.takes_rooms() && !draining.takes_rooms());
        // A process at its room limit takes no new room; below it, it does.
        let full = ProcessInfo { max_rooms: Some(2), ..info.clone() };
        assert_eq!(serde_json::to_value(&full).unwrap()["maxRooms"], 2);
        assert!(!full.takes_rooms());
        assert!(ProcessInfo { rooms: 1, ..full }.takes_rooms());
        let direct = ProcessInfo { peer_key: Some("k".into()), ..info.clone() };
        assert_eq!(serde_json::to_value(&direct).unwrap()["peerKey"], "k");
        // Entries written before `endpoint` existed still parse.
        let old: ProcessInfo =
            serde_json::from_str(r#"{"processId":"p0","address":"h:1","rooms":0,"clients":0}"#).unwrap();
        assert_eq!(old.endpoint, None);
        let event = serde_json::to_string(&RegistryEvent::Remove { process_id: "p1".into() }).unwrap();
        assert_eq!(event, r#"{"event":"remove","processId":"p1"}"#);
    }
}
