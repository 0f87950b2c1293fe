//! Room listings: what matchmaking searches. [`Driver`] is the storage trait; [`LocalDriver`] is the
//! embedded default (an in-process map), so a single host needs no database. [`MongoDriver`] keeps
//! the listings in MongoDB, so that several host processes share them.
//!
//! [`Query::matches`] and [`Query::compare`] define what a query means; every driver returns the
//! same answers for the same listings (`host/tests/driver.rs` runs one suite against each).

use serde::Serialize;
use serde_json::{Map, Value};

mod local;
mod mongo;

pub use local::LocalDriver;
pub use mongo::MongoDriver;

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
    /// When the room was created, ISO 8601 UTC with milliseconds (`crate::clock::iso`), so that
    /// string order is time order.
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
    /// Room ids to leave out (rooms this request already found gone).
    pub exclude: Vec<String>,
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
    /// The backing store could not be reached, did not answer in time, or refused the operation.
    #[error("room listing store unavailable: {0}")]
    Unavailable(String),
    /// The store's address or options are not valid.
    #[error("invalid room listing store uri: {0}")]
    InvalidUri(String),
    /// A listing could not be stored as it is, or a stored document is not a listing.
    #[error("invalid room listing: {0}")]
    InvalidListing(String),
}

/// Storage for room listings, shared by every host of a deployment.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Adds a room; a listing with the same room id is replaced.
    async fn insert(&self, listing: RoomListing) -> Result<(), DriverError>;
    /// Applies a change to a room's listing while it names `owner` as its process; an unknown
    /// room, or one another process has taken over since (a room that moved: the old host's
    /// last update may land after the new host wrote its listing), is not an error and is left
    /// as it is.
    async fn update(&self, room_id: &str, owner: &str, update: ListingUpdate) -> Result<(), DriverError>;
    /// Removes a room; an unknown room is not an error.
    async fn remove(&self, room_id: &str) -> Result<(), DriverError>;
    /// A room by id, locked or not.
    async fn find_by_id(&self, room_id: &str) -> Result<Option<RoomListing>, DriverError>;
    /// The best joinable room for a query: unlocked, public, matching filters, first by sort order.
    async fn find_one(&self, query: &Query) -> Result<Option<RoomListing>, DriverError>;
    /// Every listing of a room type (all types if `name` is `None`), locked and private ones too,
    /// oldest first.
    async fn query(&self, name: Option<&str>) -> Result<Vec<RoomListing>, DriverError>;
    /// Removes every listing of a process (one that died); returns how many were removed.
    async fn cleanup(&self, process_id: &str) -> Result<u64, DriverError>;
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
    /// Whether a listing is joinable for this query. A filter value matches a value of the same
    /// JSON type that is equal to it (`1` does not match `1.0`, `"1"` or `[1]`; `null` does not
    /// match a missing key).
    pub fn matches(&self, l: &RoomListing) -> bool {
        l.name == self.name
            && !l.locked
            && !l.private
            && !self.exclude.contains(&l.room_id)
            && self.filters.iter().all(|(k, want)| {
                let source = if self.on_metadata { &l.metadata } else { &l.create_filters };
                source.get(k) == Some(want)
            })
    }

    /// Orders two listings by the sort keys, then oldest first, then by room id.
    ///
    /// Under a sort key, numbers come first, then strings, then booleans, then arrays and objects
    /// (all tied), then null or missing values; descending reverses all of it. Numbers compare by
    /// value, strings byte-wise, `false` before `true`.
    pub fn compare(&self, a: &RoomListing, b: &RoomListing) -> std::cmp::Ordering {
        for (key, dir) in &self.sort_by {
            let ord = compare_values(&sort_value(a, key), &sort_value(b, key));
            let ord = if *dir < 0 { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        a.created_at.cmp(&b.created_at).then_with(|| a.room_id.cmp(&b.room_id))
    }
}

/// The value a sort key reads from a listing: a listing field or a metadata key.
fn sort_value(l: &RoomListing, key: &str) -> Value {
    match key {
        "clients" => l.clients.into(),
        "maxClients" => l.max_clients.map_or(Value::Null, Value::from),
        "createdAt" => l.created_at.clone().into(),
        other => l.metadata.get(other).cloned().unwrap_or(Value::Null),
    }
}

/// Where a value sorts among values of other types; `MongoDriver` computes the same ranks.
fn sort_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) | Value::Object(_) => 3,
        Value::Null => 4,
    }
}

fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    sort_rank(a).cmp(&sort_rank(b)).then_with(|| match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0))
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    })
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
            exclude: vec![],
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
        d.update("b", "p", ListingUpdate { locked: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(d.find_one(&most_full).await.unwrap().unwrap().room_id, "a");
        d.update("a", "p", ListingUpdate { private: Some(true), ..Default::default() }).await.unwrap();
        assert!(d.find_one(&most_full).await.unwrap().is_none());
        assert!(d.find_by_id("a").await.unwrap().is_some());
        d.remove("a").await.unwrap();
        assert!(d.find_by_id("a").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn cleanup_removes_only_the_dead_process() {
        let d = LocalDriver::default();
        for (id, pid) in [("a", "p1"), ("b", "p2"), ("c", "p1")] {
            d.insert(RoomListing { process_id: pid.into(), ..listing(id, 0, None, id) }).await.unwrap();
        }
        assert_eq!(d.cleanup("p1").await.unwrap(), 2);
        assert_eq!(d.cleanup("p1").await.unwrap(), 0);
        let left: Vec<_> = d.query(None).await.unwrap().into_iter().map(|l| l.room_id).collect();
        assert_eq!(left, ["b"]);
    }

    #[test]
    fn mixed_types_sort_in_a_total_order() {
        // Numbers, strings, booleans, other, null: a total order, so sorting never sees a cycle
        // such as 1 = "x" = 2 < 1.
        let values = [json!(2), json!("b"), json!(null), json!(true), json!([1]), json!(1), json!("a")];
        let mut sorted = values.to_vec();
        sorted.sort_by(compare_values);
        assert_eq!(
            sorted,
            [json!(1), json!(2), json!("a"), json!("b"), json!(true), json!([1]), json!(null)]
        );
        for a in &values {
            for b in &values {
                assert_eq!(compare_values(a, b), compare_values(b, a).reverse(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn ties_go_to_the_oldest_then_the_room_id() {
        let q = Query { sort_by: vec![("clients".into(), -1)], ..Query::default() };
        let (a, b, c) = (listing("a", 2, None, "2"), listing("b", 2, None, "1"), listing("c", 2, None, "1"));
        let mut all = [&a, &c, &b];
        all.sort_by(|x, y| q.compare(x, y));
        assert_eq!(all.map(|l| l.room_id.as_str()), ["b", "c", "a"]);
    }
}
