//! [`MongoDriver`]: room listings in a MongoDB collection, shared by the hosts of a deployment.
//!
//! One document per room in the `roomcaches` collection, as with Colyseus's Mongoose driver:
//! `name, roomId, processId, clients, maxClients, locked, private, unlisted, metadata, filters,
//! createdAt, publicAddress, pluginVersion`. `filters` holds the creator's filterBy values (0.16
//! matches on them), `createdAt` is a BSON date and `publicAddress` is left out when there is none.
//!
//! Queries are translated so that they mean exactly what [`Query::matches`] and [`Query::compare`]
//! mean: filters compare type and value through `$expr` (a plain `{"metadata.mode": "ctf"}` would
//! also match an array holding `"ctf"`, `1.0` for `1`, and a missing key for `null`), and sort keys
//! are ranked by type in an aggregation before they are sorted (MongoDB puts null first).
//!
//! The `mongodb` client reconnects by itself: while the server is down, a call fails once server
//! selection times out (3 s unless the URI says otherwise), and the same driver works again as soon
//! as the server is back.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, RawDocumentBuf, bson, doc};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use serde_json::{Map, Value};

use super::{Driver, DriverError, ListingUpdate, Query, RoomListing};

/// The collection Colyseus's Mongoose driver uses.
const COLLECTION: &str = "roomcaches";
/// The database when the URI names none.
const DEFAULT_DATABASE: &str = "odeon";
/// How long a call waits for a usable server, unless the URI sets `serverSelectionTimeoutMS`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a connection may take, unless the URI sets `connectTimeoutMS`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Room listings in MongoDB, for deployments of several host processes.
#[derive(Debug, Clone)]
pub struct MongoDriver {
    rooms: Collection<Document>,
    /// The same collection, read as raw BSON: decoding a `Document` through serde would take a
    /// metadata object such as `{"$date": "soon"}` for extended JSON and fail.
    raw: Collection<RawDocumentBuf>,
    /// Bound on one call, so that a server that accepts connections but never answers cannot hold
    /// matchmaking forever: server selection plus connecting.
    call_timeout: Duration,
}

impl MongoDriver {
    /// Connects to `uri` (`mongodb://…` or `mongodb+srv://…`) and creates the indexes matchmaking
    /// needs. The database is the one the URI names, else `odeon`. Fails within a few seconds when
    /// no server answers.
    pub async fn connect(uri: &str) -> Result<Self, DriverError> {
        let parse = ClientOptions::parse(uri);
        // Parsing a `mongodb+srv` URI resolves DNS records: bound it like any call.
        let mut options = tokio::time::timeout(SERVER_SELECTION_TIMEOUT + CONNECT_TIMEOUT, parse)
            .await
            .map_err(|_| DriverError::Unavailable("no dns answer for the uri in time".into()))?
            .map_err(|e| match e.kind.as_ref() {
                ErrorKind::DnsResolve { .. } | ErrorKind::Io(_) => DriverError::Unavailable(describe(&e)),
                _ => DriverError::InvalidUri(describe(&e)),
            })?;
        let selection = *options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        let connect = *options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        options.app_name.get_or_insert_with(|| "odeon-host".into());
        let database = options.default_database.clone().unwrap_or_else(|| DEFAULT_DATABASE.into());
        let client = Client::with_options(options).map_err(|e| DriverError::InvalidUri(describe(&e)))?;
        let rooms = client.database(&database).collection::<Document>(COLLECTION);
        let driver = Self { raw: rooms.clone_with_type(), rooms, call_timeout: selection + connect };
        driver.call(driver.rooms.create_indexes(indexes())).await?;
        Ok(driver)
    }

    /// Runs one operation within the call timeout and maps its error.
    async fn call<T>(
        &self,
        op: impl IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, DriverError> {
        match tokio::time::timeout(self.call_timeout, op).await {
            Ok(result) => result.map_err(|e| DriverError::Unavailable(describe(&e))),
            Err(_) => Err(DriverError::Unavailable(format!(
                "no answer within {} ms",
                self.call_timeout.as_millis()
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Driver for MongoDriver {
    async fn insert(&self, listing: RoomListing) -> Result<(), DriverError> {
        let document = to_document(&listing)?;
        self.call(self.rooms.replace_one(doc! { "roomId": &listing.room_id }, document).upsert(true)).await?;
        Ok(())
    }

    async fn update(&self, room_id: &str, owner: &str, update: ListingUpdate) -> Result<(), DriverError> {
        let set = set_document(update);
        if set.is_empty() {
            return Ok(());
        }
        let filter = doc! { "roomId": room_id, "processId": owner };
        self.call(self.rooms.update_one(filter, doc! { "$set": set })).await?;
        Ok(())
    }

    async fn remove(&self, room_id: &str) -> Result<(), DriverError> {
        self.call(self.rooms.delete_one(doc! { "roomId": room_id })).await?;
        Ok(())
    }

    async fn find_by_id(&self, room_id: &str) -> Result<Option<RoomListing>, DriverError> {
        let found = self.call(self.raw.find_one(doc! { "roomId": room_id })).await?;
        found.as_ref().map(from_raw).transpose()
    }

    async fn find_one(&self, query: &Query) -> Result<Option<RoomListing>, DriverError> {
        let pipeline = pipeline(query);
        let found = self
            .call(async {
                let mut cursor = self.rooms.aggregate(pipeline).with_type::<RawDocumentBuf>().await?;
                cursor.try_next().await
            })
            .await?;
        found.as_ref().map(from_raw).transpose()
    }

    async fn query(&self, name: Option<&str>) -> Result<Vec<RoomListing>, DriverError> {
        let filter = name.map_or_else(Document::new, |n| doc! { "name": n });
        let found: Vec<RawDocumentBuf> = self
            .call(async {
                let cursor = self.raw.find(filter).sort(doc! { "createdAt": 1, "roomId": 1 }).await?;
                cursor.try_collect().await
            })
            .await?;
        found.iter().map(from_raw).collect()
    }

    async fn cleanup(&self, process_id: &str) -> Result<u64, DriverError> {
        let result = self.call(self.rooms.delete_many(doc! { "processId": process_id })).await?;
        Ok(result.deleted_count)
    }
}

/// The indexes matchmaking queries use: joinable rooms by name, rooms by id, a process's rooms.
fn indexes() -> Vec<IndexModel> {
    let unique = IndexOptions::builder().unique(true).build();
    vec![
        IndexModel::builder().keys(doc! { "name": 1, "locked": 1, "private": 1 }).build(),
        IndexModel::builder().keys(doc! { "roomId": 1 }).options(unique).build(),
        IndexModel::builder().keys(doc! { "processId": 1 }).build(),
    ]
}

/// The aggregation that finds the best joinable room for a query.
fn pipeline(query: &Query) -> Vec<Document> {
    let source = if query.on_metadata { "metadata" } else { "filters" };
    let mut wanted = doc! { "name": &query.name, "locked": false, "private": false };
    if !query.exclude.is_empty() {
        wanted.insert("roomId", doc! { "$nin": &query.exclude });
    }
    if !query.filters.is_empty() {
        let all: Vec<Bson> =
            query.filters.iter().map(|(key, want)| equals(field(source, key), want)).collect();
        wanted.insert("$expr", doc! { "$and": all });
    }
    let mut stages = vec![doc! { "$match": wanted }];
    let (mut ranks, mut values, mut sort) = (Document::new(), Document::new(), Document::new());
    for (i, (key, dir)) in query.sort_by.iter().enumerate() {
        let value = sort_field(key);
        let (rank, sorted) = (format!("_sortRank{i}"), format!("_sortValue{i}"));
        ranks.insert(&rank, sort_rank(value.clone()));
        // Arrays and objects are tied within their rank, as in `compare_values`.
        values.insert(&sorted, doc! { "$cond": [{ "$lte": [format!("${rank}"), 2] }, value, Bson::Null] });
        let dir = if *dir < 0 { -1 } else { 1 };
        sort.insert(rank, dir);
        sort.insert(sorted, dir);
    }
    if !query.sort_by.is_empty() {
        stages.push(doc! { "$addFields": ranks });
        stages.push(doc! { "$addFields": values });
    }
    sort.insert("createdAt", 1);
    sort.insert("roomId", 1);
    stages.push(doc! { "$sort": sort });
    stages.push(doc! { "$limit": 1 });
    stages
}

/// An expression for `parent.key` that reads `key` as one field name, dots and all.
fn field(parent: &str, key: &str) -> Bson {
    if !key.is_empty() && !key.contains('.') && !key.starts_with('$') {
        Bson::String(format!("${parent}.{key}"))
    } else {
        bson!({ "$getField": { "field": { "$literal": key }, "input": format!("${parent}") } })
    }
}

/// The expression a sort key reads: a listing field or a metadata key (see `sort_value`).
fn sort_field(key: &str) -> Bson {
    match key {
        "clients" | "maxClients" | "createdAt" => Bson::String(format!("${key}")),
        other => field("metadata", other),
    }
}

/// The rank `sort_rank` gives a value, computed from its BSON type (`createdAt` is a date where
/// `LocalDriver` holds a string: both rank with strings).
fn sort_rank(value: Bson) -> Bson {
    bson!({ "$let": {
        "vars": { "t": { "$type": value } },
        "in": { "$switch": {
            "branches": [
                { "case": { "$in": ["$$t", ["double", "int", "long", "decimal"]] }, "then": 0 },
                { "case": { "$in": ["$$t", ["string", "date"]] }, "then": 1 },
                { "case": { "$eq": ["$$t", "bool"] }, "then": 2 },
                { "case": { "$in": ["$$t", ["null", "missing", "undefined"]] }, "then": 4 },
            ],
            "default": 3,
        } },
    } })
}

/// `value == want` as `Query::matches` means it: same JSON type, equal value.
fn equals(value: Bson, want: &Value) -> Bson {
    let want = json_to_bson(want);
    let types = match &want {
        Bson::Int32(_) | Bson::Int64(_) => vec!["int", "long"],
        Bson::Double(_) => vec!["double"],
        Bson::String(_) => vec!["string"],
        Bson::Boolean(_) => vec!["bool"],
        Bson::Array(_) => vec!["array"],
        Bson::Document(_) => vec!["object"],
        _ => vec!["null"],
    };
    bson!({ "$and": [
        { "$in": [{ "$type": value.clone() }, types] },
        { "$eq": [value, { "$literal": want }] },
    ] })
}

/// A listing as a document.
fn to_document(l: &RoomListing) -> Result<Document, DriverError> {
    let created_at = DateTime::parse_rfc3339_str(&l.created_at)
        .map_err(|_| invalid(&l.room_id, format!("createdAt {:?} is not an iso 8601 date", l.created_at)))?;
    let plugin_version = i64::try_from(l.plugin_version)
        .map_err(|_| invalid(&l.room_id, format!("pluginVersion {} is too large", l.plugin_version)))?;
    let mut document = doc! {
        "name": &l.name,
        "roomId": &l.room_id,
        "processId": &l.process_id,
        "clients": count(l.clients),
        "maxClients": l.max_clients.map(count),
        "locked": l.locked,
        "private": l.private,
        "unlisted": l.unlisted,
        "metadata": json_document(&l.metadata),
        "filters": json_document(&l.create_filters),
        "createdAt": created_at,
        "pluginVersion": plugin_version,
    };
    if let Some(address) = &l.public_address {
        document.insert("publicAddress", address);
    }
    Ok(document)
}

/// The `$set` of an update's changed fields.
fn set_document(update: ListingUpdate) -> Document {
    let mut set = Document::new();
    if let Some(c) = update.clients {
        set.insert("clients", count(c));
    }
    if let Some(v) = update.locked {
        set.insert("locked", v);
    }
    if let Some(v) = update.private {
        set.insert("private", v);
    }
    if let Some(v) = update.max_clients {
        set.insert("maxClients", v.map(count));
    }
    if let Some(m) = update.metadata {
        set.insert("metadata", json_document(&m));
    }
    set
}

fn from_raw(raw: &RawDocumentBuf) -> Result<RoomListing, DriverError> {
    let document = Document::try_from(raw.as_ref())
        .map_err(|e| DriverError::InvalidListing(format!("unreadable document: {}", tidy(&e.to_string()))))?;
    from_document(&document)
}

/// A document as a listing; numbers written by other clients (doubles, longs) are accepted.
fn from_document(d: &Document) -> Result<RoomListing, DriverError> {
    let room_id = text(d, "?", "roomId")?;
    let id = room_id.as_str();
    let created_at = match d.get("createdAt") {
        Some(Bson::DateTime(t)) => iso(*t),
        Some(Bson::String(s)) => s.clone(),
        _ => return Err(invalid(id, "createdAt is not a date".into())),
    };
    Ok(RoomListing {
        name: text(d, id, "name")?,
        process_id: text(d, id, "processId")?,
        clients: number(d, id, "clients")?.unwrap_or(0),
        max_clients: number(d, id, "maxClients")?,
        locked: flag(d, id, "locked")?,
        private: flag(d, id, "private")?,
        unlisted: flag(d, id, "unlisted")?,
        metadata: object(d, id, "metadata")?,
        create_filters: object(d, id, "filters")?,
        created_at,
        plugin_version: number(d, id, "pluginVersion")?.unwrap_or(0),
        public_address: match d.get("publicAddress") {
            Some(Bson::String(s)) => Some(s.clone()),
            _ => None,
        },
        room_id,
    })
}

fn text(d: &Document, id: &str, key: &str) -> Result<String, DriverError> {
    match d.get(key) {
        Some(Bson::String(s)) => Ok(s.clone()),
        _ => Err(invalid(id, format!("{key} is not a string"))),
    }
}

fn number<T: TryFrom<i64>>(d: &Document, id: &str, key: &str) -> Result<Option<T>, DriverError> {
    let n = match d.get(key) {
        None | Some(Bson::Null) => return Ok(None),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Double(f)) if f.fract() == 0.0 && f.abs() < 2f64.powi(53) => Some(*f as i64),
        _ => None,
    };
    match n.and_then(|n| T::try_from(n).ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(invalid(id, format!("{key} is not a count"))),
    }
}

fn flag(d: &Document, id: &str, key: &str) -> Result<bool, DriverError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(false),
        Some(Bson::Boolean(b)) => Ok(*b),
        _ => Err(invalid(id, format!("{key} is not a boolean"))),
    }
}

fn object(d: &Document, id: &str, key: &str) -> Result<Map<String, Value>, DriverError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(Map::new()),
        Some(Bson::Document(inner)) => Ok(json_object(inner)),
        _ => Err(invalid(id, format!("{key} is not a document"))),
    }
}

fn invalid(room_id: &str, what: String) -> DriverError {
    DriverError::InvalidListing(format!("room {room_id}: {what}"))
}

/// A count as the smallest BSON integer that holds it.
fn count(n: u32) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n.into()), Bson::Int32)
}

fn iso(t: DateTime) -> String {
    crate::clock::iso(u64::try_from(t.timestamp_millis()).unwrap_or(0))
}

/// JSON as BSON, literally: unlike `Bson::try_from`, objects such as `{"$date": …}` stay objects.
/// Integers become int32 or int64, other numbers doubles (integers beyond i64 too).
fn json_to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect()),
        Value::Object(m) => Bson::Document(json_document(m)),
    }
}

fn json_document(m: &Map<String, Value>) -> Document {
    m.iter().map(|(k, v)| (k.clone(), json_to_bson(v))).collect()
}

/// BSON as JSON: numbers stay numbers (int32 and int64 integers, doubles floats), dates become ISO
/// strings, other BSON types their relaxed extended JSON.
fn bson_to_json(v: &Bson) -> Value {
    match v {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => Value::from(*f),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(bson_to_json).collect()),
        Bson::Document(d) => Value::Object(json_object(d)),
        Bson::DateTime(t) => Value::String(iso(*t)),
        other => other.clone().into_relaxed_extjson(),
    }
}

fn json_object(d: &Document) -> Map<String, Value> {
    d.iter().map(|(k, v)| (k.clone(), bson_to_json(v))).collect()
}

/// A driver error as a short lowercase message.
fn describe(e: &MongoError) -> String {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. } => "no server answered in time (server selection timed out)".into(),
        ErrorKind::Io(io) => format!("i/o error: {}", tidy(&io.to_string())),
        ErrorKind::ConnectionPoolCleared { .. } => "connection to the server lost".into(),
        ErrorKind::Command(c) => format!("{} ({} {})", tidy(&c.message), c.code_name, c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => format!("{} (code {})", tidy(&w.message), w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            format!("write concern: {} (code {})", tidy(&w.message), w.code)
        }
        ErrorKind::InvalidArgument { message, .. }
        | ErrorKind::Authentication { message, .. }
        | ErrorKind::DnsResolve { message, .. }
        | ErrorKind::InvalidTlsConfig { message, .. }
        | ErrorKind::InvalidResponse { message, .. } => tidy(message),
        other => tidy(&other.to_string()),
    }
}

/// Lowercases a leading capitalised word ("Connection refused", not "E11000" or "I/O") and drops a
/// trailing dot.
fn tidy(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(message[first.len_utf8()..].chars()).collect()
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing() -> RoomListing {
        RoomListing {
            name: "echo".into(),
            room_id: "r1".into(),
            process_id: "p1".into(),
            clients: 2,
            max_clients: None,
            locked: true,
            private: false,
            unlisted: true,
            metadata: json!({ "mode": "ctf", "n": 1, "x": 1.5, "deep": { "$date": [null, true] } })
                .as_object()
                .cloned()
                .unwrap(),
            create_filters: json!({ "mode": "ctf" }).as_object().cloned().unwrap(),
            created_at: "2026-11-26T10:20:30.456Z".into(),
            plugin_version: 7,
            public_address: Some("eu.example.com".into()),
        }
    }

    #[test]
    fn listings_round_trip_through_documents() {
        let l = listing();
        let d = to_document(&l).unwrap();
        assert_eq!(d.get("createdAt"), Some(&Bson::DateTime(DateTime::from_millis(1_795_688_430_456))));
        assert_eq!(d.get("maxClients"), Some(&Bson::Null));
        assert_eq!(d.get_document("filters").unwrap(), &doc! { "mode": "ctf" });
        assert_eq!(from_document(&d).unwrap(), l);
        let without = RoomListing { public_address: None, max_clients: Some(4), ..l };
        let d = to_document(&without).unwrap();
        assert!(!d.contains_key("publicAddress"));
        assert_eq!(from_document(&d).unwrap(), without);
    }

    #[test]
    fn json_keeps_its_number_types() {
        for v in
            [json!(1), json!(-1), json!(3_000_000_000_i64), json!(1.0), json!(0.25), json!({ "$oid": "x" })]
        {
            assert_eq!(bson_to_json(&json_to_bson(&v)), v);
        }
        assert_eq!(json_to_bson(&json!(1.0)), Bson::Double(1.0));
        assert_eq!(json_to_bson(&json!(7)), Bson::Int32(7));
    }

    #[test]
    fn bad_listings_and_documents_are_reported() {
        let err = to_document(&RoomListing { created_at: "yesterday".into(), ..listing() }).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid room listing: room r1: createdAt "yesterday" is not an iso 8601 date"#
        );
        let mut d = to_document(&listing()).unwrap();
        d.insert("clients", -1);
        assert_eq!(
            from_document(&d).unwrap_err().to_string(),
            "invalid room listing: room r1: clients is not a count"
        );
        d.insert("clients", 3.0);
        assert_eq!(from_document(&d).unwrap().clients, 3);
    }

    #[test]
    fn updates_set_only_what_changed() {
        assert!(set_document(ListingUpdate::default()).is_empty());
        let set = set_document(ListingUpdate {
            clients: Some(3),
            max_clients: Some(None),
            ..ListingUpdate::default()
        });
        assert_eq!(set, doc! { "clients": 3, "maxClients": Bson::Null });
    }

    #[test]
    fn keys_with_dots_are_read_as_one_field() {
        assert_eq!(field("metadata", "mode"), Bson::String("$metadata.mode".into()));
        assert_eq!(
            field("filters", "a.b"),
            bson!({ "$getField": { "field": { "$literal": "a.b" }, "input": "$filters" } })
        );
    }

    #[test]
    fn messages_are_lowercase_without_a_trailing_dot() {
        assert_eq!(tidy("Connection refused (os error 111)."), "connection refused (os error 111)");
        assert_eq!(tidy("E11000 duplicate key"), "E11000 duplicate key");
        assert_eq!(tidy("I/O error"), "I/O error");
    }
}
