//! Room listings: what matchmaking searches. [`Driver`] is the storage trait; [`LocalDriver`] is the
//! embedded default (an in-process map), so a single host needs no database.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

/// A room as matchmaking sees it (Colyseus's `IRoomCache`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomListing {
    /// Room type name.
    pub name: String,
    /// Room id.
    pub room_id: String,
    /// The host process that runs the room.
    pub process_id: String,
    /// Joined clients plus held seats (reservations and pending reconnections).
    pub clients: u32,
    /// Seat limit; `None` is unlimited.
    pub max_clients: Option<u32>,
    /// Not offered by matchmaking: explicitly locked, or full.
    pub locked: bool,
    /// Not found by name, only by id.
    pub private: bool,
    /// Hidden from lobby listings.
    pub unlisted: bool,
    /// Room metadata; 0.17+ matches filterBy values here.
    pub metadata: Map<String, Value>,
    /// The creator's filterBy option values; 0.16 matches (and shows) these top level.
    #[serde(skip)]
    pub create_filters: Map<String, Value>,
    /// When the room was created, ISO 8601.
    pub created_at: String,
    /// Host-local version of the plugin that runs the room, so operators can see mixed fleets
    /// during a rollout. Not part of the listing clients see.
    #[serde(skip)]
    pub plugin_version: u64,
    /// Address clients should connect to, when it differs from the matchmaking endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
}

/// What matchmaking is looking for.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Room type name.
    pub name: String,
    /// filterBy keys and the wanted values (keys absent from the options are not listed).
    pub filters: Vec<(String, Value)>,
    /// Match filters against metadata (0.17+) instead of the creator's options (0.16).
    pub on_metadata: bool,
    /// Sort keys: listing fields or metadata keys, with 1 ascending or -1 descending.
    pub sort_by: Vec<(String, i8)>,
}

/// A change to a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListingUpdate {
    /// New client count.
    pub clients: Option<u32>,
    /// New lock state.
    pub locked: Option<bool>,
    /// New private flag.
    pub private: Option<bool>,
    /// New seat limit.
    pub max_clients: Option<Option<u32>>,
    /// New metadata.
    pub metadata: Option<Map<String, Value>>,
}

/// Listing storage failures.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The backing store could not be reached or refused the operation.
    #[error("room listing store unavailable: {0}")]
    Unavailable(String),
}

/// Storage for room listings, shared by every host of a deployment.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Adds a new room.
    async fn insert(&self, listing: RoomListing) -> Result<(), DriverError>;
    /// Applies a change to a room's listing.
    async fn update(&self, room_id: &str, update: ListingUpdate) -> Result<(), DriverError>;
    /// Removes a room.
    async fn remove(&self, room_id: &str) -> Result<(), DriverError>;
    /// A room by id, locked or not.
    async fn find_by_id(&self, room_id: &str) -> Result<Option<RoomListing>, DriverError>;
    /// The best joinable room for a query: unlocked, public, matching filters, first by sort order.
    async fn find_one(&self, query: &Query) -> Result<Option<RoomListing>, DriverError>;
    /// Every listing of a room type (all types if `name` is `None`).
    async fn query(&self, name: Option<&str>) -> Result<Vec<RoomListing>, DriverError>;
}

/// The embedded driver: listings in this process's memory.
#[derive(Debug, Default)]
pub struct LocalDriver {
    rooms: Mutex<HashMap<String, RoomListing>>,
}

#[async_trait::async_trait]
impl Driver for LocalDriver {
    async fn insert(&self, listing: RoomListing) -> Result<(), DriverError> {
        self.rooms.lock().expect("listing lock").insert(listing.room_id.clone(), listing);
        Ok(())
    }

    async fn update(&self, room_id: &str, update: ListingUpdate) -> Result<(), DriverError> {
        if let Some(l) = self.rooms.lock().expect("listing lock").get_mut(room_id) {
            update.apply(l);
        }
        Ok(())
    }

    async fn remove(&self, room_id: &str) -> Result<(), DriverError> {
        self.rooms.lock().expect("listing lock").remove(room_id);
        Ok(())
    }

    async fn find_by_id(&self, room_id: &str) -> Result<Option<RoomListing>, DriverError> {
        Ok(self.rooms.lock().expect("listing lock").get(room_id).cloned())
    }

    async fn find_one(&self, query: &Query) -> Result<Option<RoomListing>, DriverError> {
        let rooms = self.rooms.lock().expect("listing lock");
        let mut found: Vec<&RoomListing> = rooms.values().filter(|l| query.matches(l)).collect();
        found.sort_by(|a, b| query.compare(a, b));
        Ok(found.first().map(|l| (*l).clone()))
    }

    async fn query(&self, name: Option<&str>) -> Result<Vec<RoomListing>, DriverError> {
        let rooms = self.rooms.lock().expect("listing lock");
        let mut all: Vec<_> = rooms.values().filter(|l| name.is_none_or(|n| l.name == n)).cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(all)
    }
}

impl ListingUpdate {
    /// Applies the change to a listing.
    pub fn apply(self, l: &mut RoomListing) {
        if let Some(c) = self.clients {
            l.clients = c;
        }
        if let Some(v) = self.locked {
            l.locked = v;
        }
        if let Some(v) = self.private {
            l.private = v;
        }
        if let Some(v) = self.max_clients {
            l.max_clients = v;
        }
        if let Some(m) = self.metadata {
            l.metadata = m;
        }
    }
}

impl Query {
    /// Whether a listing is joinable for this query.
    pub fn matches(&self, l: &RoomListing) -> bool {
        l.name == self.name
            && !l.locked
            && !l.private
            && self.filters.iter().all(|(k, want)| {
                let source = if self.on_metadata { &l.metadata } else { &l.create_filters };
                source.get(k) == Some(want)
            })
    }

    /// Orders two listings by the sort keys, oldest first on ties.
    pub fn compare(&self, a: &RoomListing, b: &RoomListing) -> std::cmp::Ordering {
        for (key, dir) in &self.sort_by {
            let ord = compare_values(&sort_value(a, key), &sort_value(b, key));
            let ord = if *dir < 0 { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        a.created_at.cmp(&b.created_at)
    }
}

fn sort_value(l: &RoomListing, key: &str) -> Value {
    match key {
        "clients" => l.clients.into(),
        "maxClients" => l.max_clients.map_or(Value::Null, Value::from),
        "createdAt" => l.created_at.clone().into(),
        other => l.metadata.get(other).cloned().unwrap_or(Value::Null),
    }
}

fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0))
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Greater,
        (_, Value::Null) => std::cmp::Ordering::Less,
        _ => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(id: &str, clients: u32, mode: Option<&str>, created: &str) -> RoomListing {
        let mut metadata = Map::new();
        metadata.insert("mode".into(), json!(mode.unwrap_or("default")));
        let mut create_filters = Map::new();
        if let Some(m) = mode {
            create_filters.insert("mode".into(), json!(m));
        }
        RoomListing {
            name: "echo".into(),
            room_id: id.into(),
            process_id: "p".into(),
            clients,
            max_clients: Some(4),
            locked: false,
            private: false,
            unlisted: false,
            metadata,
            create_filters,
            created_at: created.into(),
            plugin_version: 1,
            public_address: None,
        }
    }

    #[tokio::test]
    async fn filters_follow_the_profile() {
        let d = LocalDriver::default();
        d.insert(listing("a", 1, None, "1")).await.unwrap();
        d.insert(listing("b", 1, Some("ctf"), "2")).await.unwrap();
        let q = |mode: &str, on_metadata| Query {
            name: "echo".into(),
            filters: vec![("mode".into(), json!(mode))],
            on_metadata,
            sort_by: vec![],
        };
        assert_eq!(d.find_one(&q("default", true)).await.unwrap().unwrap().room_id, "a");
        assert!(d.find_one(&q("default", false)).await.unwrap().is_none());
        assert_eq!(d.find_one(&q("ctf", false)).await.unwrap().unwrap().room_id, "b");
        let any = Query { name: "echo".into(), ..Query::default() };
        assert_eq!(d.find_one(&any).await.unwrap().unwrap().room_id, "a", "oldest first");
    }

    #[tokio::test]
    async fn locked_and_private_rooms_are_not_offered_and_sort_applies() {
        let d = LocalDriver::default();
        d.insert(listing("a", 1, None, "1")).await.unwrap();
        d.insert(listing("b", 3, None, "2")).await.unwrap();
        let most_full =
            Query { name: "echo".into(), sort_by: vec![("clients".into(), -1)], ..Query::default() };
        assert_eq!(d.find_one(&most_full).await.unwrap().unwrap().room_id, "b");
        d.update("b", ListingUpdate { locked: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(d.find_one(&most_full).await.unwrap().unwrap().room_id, "a");
        d.update("a", ListingUpdate { private: Some(true), ..Default::default() }).await.unwrap();
        assert!(d.find_one(&most_full).await.unwrap().is_none());
        assert!(d.find_by_id("a").await.unwrap().is_some());
        d.remove("a").await.unwrap();
        assert!(d.find_by_id("a").await.unwrap().is_none());
    }
}
