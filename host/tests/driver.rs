//! The room-listing store: one conformance suite run against `LocalDriver` (`local::*`) and against
//! `MongoDriver` on a real MongoDB-wire server (`mongo::*`), plus what only MongoDB can do wrong
//! (`mongo_only::*`): document shape, indexes, an outage and the recovery after it.
//!
//! The server is SecantusDB's `secantusd-py` (PyPI `secantusdb==0.7.0b3`), a single-node
//! MongoDB-wire server on WiredTiger; it is not mongod. Each MongoDB test starts its own on a free
//! loopback port with a fresh data directory and kills that process, by its id, when the test ends,
//! passed or failed (`support/secantus.rs`); without the binary these tests fail and say how to
//! install it.

mod support;

use std::time::{Duration, Instant};

use mongodb::bson::{Bson, Document, doc};
use odeon_host::clock;
use odeon_host::driver::{Driver, DriverError, ListingUpdate, MongoDriver, Query, RoomListing};
use serde_json::{Map, Value, json};
use support::free_port;
use support::secantus::Secantus;

// ---------------------------------------------------------------------------------------------
// The conformance suite: every case takes a fresh, empty driver.

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&odeon_host::driver::LocalDriver::default()).await;
                }
            )*
        }
        mod mongo {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = super::Secantus::start().await;
                    let driver = server.driver().await;
                    super::$case(&driver).await;
                }
            )*
        }
    };
}

conformance!(
    insert_find_update_remove,
    filters_on_metadata_compare_type_and_value,
    filters_on_create_options_for_0_16,
    absent_filter_keys_match_any_room,
    locked_private_and_other_types_are_not_offered,
    sort_by_listing_fields,
    sort_by_metadata_keys_ranks_types,
    ties_go_to_the_oldest,
    excluded_rooms_are_not_offered,
    query_lists_a_room_type_oldest_first,
    cleanup_removes_the_rooms_of_one_process,
);

/// 2026-11-26T00:00:00Z; listings are created `s` seconds after it.
const EPOCH_MS: u64 = 1_795_651_200_000;

fn room(id: &str, created_s: u64) -> RoomListing {
    RoomListing {
        name: "arena".into(),
        room_id: id.into(),
        process_id: "p1".into(),
        clients: 0,
        max_clients: Some(8),
        locked: false,
        private: false,
        unlisted: false,
        metadata: Map::new(),
        create_filters: Map::new(),
        created_at: clock::iso(EPOCH_MS + created_s * 1000),
        plugin_version: 1,
        public_address: None,
    }
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("a JSON object")
}

fn query(filters: &[(&str, Value)], on_metadata: bool, sort_by: &[(&str, i8)]) -> Query {
    Query {
        name: "arena".into(),
        filters: filters.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        on_metadata,
        sort_by: sort_by.iter().map(|(k, d)| (k.to_string(), *d)).collect(),
        exclude: Vec::new(),
    }
}

async fn insert_all(d: &dyn Driver, rooms: impl IntoIterator<Item = RoomListing>) {
    for r in rooms {
        d.insert(r).await.unwrap();
    }
}

fn lock(locked: bool) -> ListingUpdate {
    ListingUpdate { locked: Some(locked), ..ListingUpdate::default() }
}

/// Every room `find_one` offers for `q`, best first: it takes the best, locks it, asks again, and
/// unlocks them all at the end.
async fn offered(d: &dyn Driver, q: &Query) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    while let Some(l) = d.find_one(q).await.unwrap() {
        assert!(!ids.contains(&l.room_id), "find_one offered locked room {} again", l.room_id);
        d.update(&l.room_id, &l.process_id, lock(true)).await.unwrap();
        ids.push(l.room_id);
    }
    for id in &ids {
        d.update(id, "p1", lock(false)).await.unwrap();
    }
    ids
}

async fn insert_find_update_remove(d: &dyn Driver) {
    let full = RoomListing {
        clients: 2,
        max_clients: None,
        unlisted: true,
        metadata: object(json!({
            "mode": "ctf", "ratio": 0.5, "big": 5_000_000_000_i64,
            "level": { "min": 3, "tags": ["x", true, null], "$date": "not a date" }
        })),
        create_filters: object(json!({ "mode": "ctf", "map": "de_dust" })),
        plugin_version: 42,
        public_address: Some("eu-1.example.com:2567".into()),
        ..room("a", 1)
    };
    d.insert(full.clone()).await.unwrap();
    assert_eq!(d.find_by_id("a").await.unwrap().as_ref(), Some(&full), "every field round-trips");
    assert_eq!(d.find_by_id("b").await.unwrap(), None);

    d.update("a", "p1", ListingUpdate { clients: Some(3), ..ListingUpdate::default() }).await.unwrap();
    let mut want = RoomListing { clients: 3, ..full.clone() };
    assert_eq!(d.find_by_id("a").await.unwrap().as_ref(), Some(&want), "only clients changed");

    let update = ListingUpdate {
        clients: Some(4),
        locked: Some(true),
        private: Some(true),
        max_clients: Some(Some(5)),
        metadata: Some(object(json!({ "mode": "dm" }))),
    };
    update.clone().apply(&mut want);
    d.update("a", "p1", update).await.unwrap();
    assert_eq!(d.find_by_id("a").await.unwrap().as_ref(), Some(&want));
    d.update("a", "p1", ListingUpdate { max_clients: Some(None), ..ListingUpdate::default() }).await.unwrap();
    assert_eq!(d.find_by_id("a").await.unwrap().unwrap().max_clients, None);

    d.update("nope", "p1", ListingUpdate { clients: Some(1), ..ListingUpdate::default() }).await.unwrap();
    assert_eq!(d.find_by_id("nope").await.unwrap(), None, "an update creates nothing");

    // The room moved: its new host wrote the listing, and the old host's late update (the drain's
    // lock, say) must not land on it.
    let moved = RoomListing { process_id: "p2".into(), clients: 1, ..full.clone() };
    d.insert(moved.clone()).await.unwrap();
    d.update("a", "p1", ListingUpdate { locked: Some(true), clients: Some(7), ..ListingUpdate::default() })
        .await
        .unwrap();
    assert_eq!(
        d.find_by_id("a").await.unwrap().as_ref(),
        Some(&moved),
        "another process's update is ignored"
    );

    d.insert(room("a", 5)).await.unwrap();
    assert_eq!(d.query(None).await.unwrap(), [room("a", 5)], "a second insert replaces the listing");

    d.remove("a").await.unwrap();
    assert_eq!(d.find_by_id("a").await.unwrap(), None);
    d.remove("a").await.unwrap();
}

async fn filters_on_metadata_compare_type_and_value(d: &dyn Driver) {
    let values = [
        ("string", json!("ctf")),
        ("other-string", json!("dm")),
        ("array", json!(["ctf"])),
        ("null", json!(null)),
        ("int", json!(1)),
        ("float", json!(1.0)),
        ("numeric-string", json!("1")),
        ("bool", json!(true)),
        ("object", json!({ "team": "red" })),
    ];
    let mut rooms: Vec<RoomListing> = values
        .iter()
        .enumerate()
        .map(|(i, (id, v))| RoomListing { metadata: object(json!({ "mode": v })), ..room(id, i as u64) })
        .collect();
    rooms.push(room("missing", 20));
    // A key with a dot is one field name, not a path.
    rooms.push(RoomListing { metadata: object(json!({ "a.b": "x" })), ..room("dotted", 21) });
    rooms.push(RoomListing { metadata: object(json!({ "a": { "b": "x" } })), ..room("nested", 22) });
    insert_all(d, rooms).await;

    assert_eq!(offered(d, &query(&[("a.b", json!("x"))], true, &[])).await, ["dotted"]);
    for (id, v) in &values {
        assert_eq!(offered(d, &query(&[("mode", v.clone())], true, &[])).await, [*id], "mode = {v}");
    }
    assert!(offered(d, &query(&[("mode", json!("red"))], true, &[])).await.is_empty());
    assert!(offered(d, &query(&[("team", json!("red"))], true, &[])).await.is_empty());
    assert!(
        offered(d, &query(&[("mode", json!("ctf"))], false, &[])).await.is_empty(),
        "0.16 does not look at metadata"
    );
}

async fn filters_on_create_options_for_0_16(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing {
                create_filters: object(json!({ "mode": "ctf", "map": "de_dust" })),
                metadata: object(json!({ "mode": "dm" })),
                ..room("c1", 1)
            },
            RoomListing {
                create_filters: object(json!({ "mode": "dm", "level": 3 })),
                metadata: object(json!({ "mode": "ctf" })),
                ..room("c2", 2)
            },
            room("c3", 3),
        ],
    )
    .await;
    assert_eq!(offered(d, &query(&[("mode", json!("ctf"))], false, &[])).await, ["c1"]);
    assert_eq!(offered(d, &query(&[("mode", json!("dm"))], false, &[])).await, ["c2"]);
    assert_eq!(offered(d, &query(&[("level", json!(3))], false, &[])).await, ["c2"]);
    assert!(offered(d, &query(&[("level", json!(3.0))], false, &[])).await.is_empty());
    assert_eq!(
        offered(d, &query(&[("mode", json!("ctf")), ("map", json!("de_dust"))], false, &[])).await,
        ["c1"]
    );
    assert!(
        offered(d, &query(&[("mode", json!("ctf")), ("map", json!("aztec"))], false, &[])).await.is_empty()
    );
    assert_eq!(
        offered(d, &query(&[("mode", json!("ctf"))], true, &[])).await,
        ["c2"],
        "0.17 looks at metadata"
    );
}

async fn absent_filter_keys_match_any_room(d: &dyn Driver) {
    // filterBy is ["mode", "map"]; a client that gives only `mode` has no `map` in the query.
    let options = [
        json!({ "mode": "ctf", "map": "a" }),
        json!({ "mode": "ctf", "map": "b" }),
        json!({ "mode": "ctf" }),
    ];
    let mut rooms: Vec<RoomListing> = options
        .iter()
        .enumerate()
        .map(|(i, o)| RoomListing {
            metadata: object(o.clone()),
            create_filters: object(o.clone()),
            ..room(&format!("r{i}"), i as u64)
        })
        .collect();
    rooms.push(RoomListing {
        metadata: object(json!({ "mode": "dm", "map": "a" })),
        create_filters: object(json!({ "mode": "dm", "map": "a" })),
        ..room("r3", 3)
    });
    insert_all(d, rooms).await;
    for on_metadata in [true, false] {
        assert_eq!(offered(d, &query(&[("mode", json!("ctf"))], on_metadata, &[])).await, ["r0", "r1", "r2"]);
        assert_eq!(offered(d, &query(&[("map", json!("a"))], on_metadata, &[])).await, ["r0", "r3"]);
        assert_eq!(offered(d, &query(&[], on_metadata, &[])).await, ["r0", "r1", "r2", "r3"]);
    }
}

async fn locked_private_and_other_types_are_not_offered(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing { locked: true, ..room("locked", 1) },
            RoomListing { private: true, ..room("private", 2) },
            RoomListing { name: "lobby".into(), ..room("lobby", 3) },
            RoomListing { unlisted: true, ..room("unlisted", 4) },
            room("open", 5),
        ],
    )
    .await;
    assert_eq!(offered(d, &query(&[], true, &[])).await, ["unlisted", "open"]);
    assert_eq!(d.find_by_id("locked").await.unwrap().map(|l| l.locked), Some(true));
    assert_eq!(d.find_by_id("private").await.unwrap().map(|l| l.private), Some(true));

    d.update("locked", "p1", lock(false)).await.unwrap();
    d.update("private", "p1", ListingUpdate { private: Some(false), ..ListingUpdate::default() })
        .await
        .unwrap();
    assert_eq!(offered(d, &query(&[], true, &[])).await, ["locked", "private", "unlisted", "open"]);
}

async fn sort_by_listing_fields(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing { clients: 1, max_clients: Some(8), ..room("one", 1) },
            RoomListing { clients: 5, max_clients: None, ..room("five-old", 2) },
            RoomListing { clients: 3, max_clients: Some(2), ..room("three", 3) },
            RoomListing { clients: 5, max_clients: Some(8), ..room("five-new", 4) },
        ],
    )
    .await;
    let by = |sort: &[(&str, i8)]| query(&[], true, sort);
    assert_eq!(offered(d, &by(&[("clients", -1)])).await, ["five-old", "five-new", "three", "one"]);
    assert_eq!(offered(d, &by(&[("clients", 1)])).await, ["one", "three", "five-old", "five-new"]);
    // No limit (null) sorts after every number, and first when descending.
    assert_eq!(offered(d, &by(&[("maxClients", 1)])).await, ["three", "one", "five-new", "five-old"]);
    assert_eq!(offered(d, &by(&[("maxClients", -1)])).await, ["five-old", "one", "five-new", "three"]);
    assert_eq!(
        offered(d, &by(&[("maxClients", 1), ("clients", -1)])).await,
        ["three", "five-new", "one", "five-old"]
    );
    assert_eq!(offered(d, &by(&[("createdAt", -1)])).await, ["five-new", "three", "five-old", "one"]);

    d.update("three", "p1", ListingUpdate { clients: Some(9), ..ListingUpdate::default() }).await.unwrap();
    assert_eq!(
        d.find_one(&by(&[("clients", -1)])).await.unwrap().unwrap().room_id,
        "three",
        "sorts on the update"
    );
}

async fn sort_by_metadata_keys_ranks_types(d: &dyn Driver) {
    let tiers = [
        ("ten", json!(10)),
        ("half", json!(2.5)),
        ("b", json!("b")),
        ("null", json!(null)),
        ("a", json!("a")),
        ("true", json!(true)),
        ("false", json!(false)),
        ("array", json!([1])),
        ("object", json!({ "x": 1 })),
        ("minus", json!(-3)),
    ];
    let mut rooms: Vec<RoomListing> = tiers
        .iter()
        .enumerate()
        .map(|(i, (id, v))| RoomListing { metadata: object(json!({ "tier": v })), ..room(id, i as u64) })
        .collect();
    rooms.push(room("missing", 20));
    insert_all(d, rooms).await;

    let asc = ["minus", "half", "ten", "a", "b", "false", "true", "array", "object", "null", "missing"];
    assert_eq!(offered(d, &query(&[], true, &[("tier", 1)])).await, asc);
    let desc = ["null", "missing", "array", "object", "true", "false", "b", "a", "ten", "half", "minus"];
    assert_eq!(offered(d, &query(&[], true, &[("tier", -1)])).await, desc, "ties stay oldest first");
    assert_eq!(offered(d, &query(&[("tier", json!("a"))], true, &[("tier", -1)])).await, ["a"]);
}

async fn ties_go_to_the_oldest(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing { clients: 2, ..room("third", 3) },
            RoomListing { clients: 2, ..room("first", 1) },
            RoomListing { clients: 2, metadata: object(json!({ "tier": 1 })), ..room("second", 2) },
            RoomListing { clients: 2, ..room("second-b", 2) },
        ],
    )
    .await;
    let order = ["first", "second", "second-b", "third"];
    assert_eq!(offered(d, &query(&[], true, &[])).await, order, "oldest first, then by room id");
    assert_eq!(offered(d, &query(&[], true, &[("clients", -1)])).await, order);
    assert_eq!(offered(d, &query(&[], true, &[("clients", 1), ("absent", 1)])).await, order);
    assert_eq!(offered(d, &query(&[], true, &[("tier", 1)])).await, ["second", "first", "second-b", "third"]);
}

async fn excluded_rooms_are_not_offered(d: &dyn Driver) {
    insert_all(d, [room("first", 1), room("second", 2), room("third", 3)]).await;
    let mut q = query(&[], true, &[]);
    q.exclude = vec!["first".into(), "third".into()];
    assert_eq!(offered(d, &q).await, ["second"]);
    q.exclude.push("second".into());
    assert!(d.find_one(&q).await.unwrap().is_none());
}

async fn query_lists_a_room_type_oldest_first(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing { locked: true, ..room("a-locked", 3) },
            RoomListing { name: "lobby".into(), ..room("lobby", 2) },
            RoomListing { private: true, unlisted: true, ..room("a-private", 1) },
            room("a-open", 4),
        ],
    )
    .await;
    let ids = |all: Vec<RoomListing>| all.into_iter().map(|l| l.room_id).collect::<Vec<_>>();
    assert_eq!(ids(d.query(Some("arena")).await.unwrap()), ["a-private", "a-locked", "a-open"]);
    assert_eq!(ids(d.query(Some("lobby")).await.unwrap()), ["lobby"]);
    assert_eq!(ids(d.query(None).await.unwrap()), ["a-private", "lobby", "a-locked", "a-open"]);
    assert!(d.query(Some("nothing")).await.unwrap().is_empty());
}

async fn cleanup_removes_the_rooms_of_one_process(d: &dyn Driver) {
    insert_all(
        d,
        [
            RoomListing { process_id: "dead".into(), ..room("d1", 1) },
            RoomListing { process_id: "alive".into(), ..room("a1", 2) },
            RoomListing { process_id: "dead".into(), locked: true, ..room("d2", 3) },
        ],
    )
    .await;
    assert_eq!(d.cleanup("dead").await.unwrap(), 2);
    assert_eq!(d.cleanup("dead").await.unwrap(), 0);
    assert_eq!(d.cleanup("unknown").await.unwrap(), 0);
    let left: Vec<_> = d.query(None).await.unwrap().into_iter().map(|l| l.room_id).collect();
    assert_eq!(left, ["a1"]);
    assert_eq!(offered(d, &query(&[], true, &[])).await, ["a1"]);
}

// ---------------------------------------------------------------------------------------------
// What only the MongoDB driver has.

mod mongo_only {
    use super::*;

    #[tokio::test]
    async fn documents_have_the_colyseus_shape_and_indexes() {
        let server = Secantus::start().await;
        let driver = MongoDriver::connect(&format!("{}/game", server.uri())).await.unwrap();
        let listing = RoomListing {
            clients: 3,
            metadata: object(json!({ "mode": "ctf" })),
            create_filters: object(json!({ "mode": "ctf" })),
            ..room("r1", 1)
        };
        driver.insert(listing.clone()).await.unwrap();

        let raw = server.client().await.database("game").collection::<Document>("roomcaches");
        let doc = raw.find_one(doc! { "roomId": "r1" }).await.unwrap().expect("the listing's document");
        for (key, want) in [
            ("name", Bson::from("arena")),
            ("processId", "p1".into()),
            ("clients", 3.into()),
            ("maxClients", 8.into()),
            ("locked", false.into()),
            ("private", false.into()),
            ("unlisted", false.into()),
            ("metadata", doc! { "mode": "ctf" }.into()),
            ("filters", doc! { "mode": "ctf" }.into()),
            ("createdAt", Bson::DateTime(mongodb::bson::DateTime::from_millis(EPOCH_MS as i64 + 1000))),
            ("pluginVersion", 1_i64.into()),
        ] {
            assert_eq!(doc.get(key), Some(&want), "{key} in {doc}");
        }
        assert!(!doc.contains_key("publicAddress"));

        let mut indexes = raw.list_index_names().await.unwrap();
        indexes.sort();
        assert_eq!(indexes, ["_id_", "name_1_locked_1_private_1", "processId_1", "roomId_1"]);
        let duplicate = raw.insert_one(doc! { "roomId": "r1" }).await.unwrap_err();
        assert!(duplicate.to_string().contains("E11000"), "roomId is unique: {duplicate}");

        // Updates $set the changed fields and leave the rest of the document alone.
        raw.update_one(doc! { "roomId": "r1" }, doc! { "$set": { "annotated": "by ops" } }).await.unwrap();
        driver
            .update("r1", "p1", ListingUpdate { clients: Some(4), ..ListingUpdate::default() })
            .await
            .unwrap();
        let doc = raw.find_one(doc! { "roomId": "r1" }).await.unwrap().unwrap();
        assert_eq!(doc.get_str("annotated").unwrap(), "by ops");
        assert_eq!(doc.get_i32("clients").unwrap(), 4);

        // Without a database in the URI, listings go to `odeon`.
        let default = MongoDriver::connect(&server.uri()).await.unwrap();
        default.insert(room("r2", 2)).await.unwrap();
        let odeon = server.client().await.database("odeon").collection::<Document>("roomcaches");
        assert_eq!(odeon.count_documents(doc! { "roomId": "r2" }).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn calls_fail_fast_while_the_server_is_down_and_recover_when_it_is_back() {
        let mut server = Secantus::start().await;
        let driver = server.driver().await;
        driver.insert(room("before", 1)).await.unwrap();
        assert!(driver.find_by_id("before").await.unwrap().is_some());

        server.kill();
        let started = Instant::now();
        let q = query(&[("mode", json!("ctf"))], true, &[("clients", -1)]);
        let (insert, update, remove, by_id, one, all, cleanup) = tokio::join!(
            driver.insert(room("during", 2)),
            driver.update("before", "p1", lock(true)),
            driver.remove("before"),
            driver.find_by_id("before"),
            driver.find_one(&q),
            driver.query(None),
            driver.cleanup("p1"),
        );
        let took = started.elapsed();
        let errors =
            [insert.err(), update.err(), remove.err(), by_id.err(), one.err(), all.err(), cleanup.err()];
        for e in &errors {
            let e = e.as_ref().expect("every call fails while the server is down");
            assert!(matches!(e, DriverError::Unavailable(_)), "{e:?}");
            let message = e.to_string();
            assert!(message.starts_with("room listing store unavailable: "), "{message}");
            assert_eq!(message, message.to_lowercase(), "lowercase: {message}");
            assert!(!message.ends_with('.'), "{message}");
        }
        assert!(took < Duration::from_secs(5), "calls failed after {took:?}");
        for e in errors.iter().flatten() {
            eprintln!("while down, after {took:?}: {e}");
        }

        server.restart().await;
        let started = Instant::now();
        assert!(driver.find_by_id("before").await.unwrap().is_some(), "the listing survived the restart");
        eprintln!("first call after the restart took {:?}", started.elapsed());
        driver.insert(room("after", 3)).await.unwrap();
        driver
            .update("after", "p1", ListingUpdate { clients: Some(2), ..ListingUpdate::default() })
            .await
            .unwrap();
        assert_eq!(
            driver.find_one(&query(&[], true, &[("clients", -1)])).await.unwrap().unwrap().room_id,
            "after"
        );
        assert_eq!(driver.cleanup("p1").await.unwrap(), 2);
    }

    #[tokio::test]
    async fn connect_fails_fast_without_a_server_or_with_a_bad_uri() {
        let started = Instant::now();
        let err = MongoDriver::connect(&format!("mongodb://127.0.0.1:{}", free_port())).await.unwrap_err();
        assert!(matches!(err, DriverError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "connect failed after {:?}", started.elapsed());

        let err = MongoDriver::connect("http://127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, DriverError::InvalidUri(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("invalid room listing store uri: "), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}
