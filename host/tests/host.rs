//! Host integration tests: the compiled example plugins under the real engine, without a network.
//!
//! They need the built plugins in `$ODEON_PLUGINS_DIR` (default `target/plugins`); `just test`
//! builds them first (`just plugins`).

mod support;

use std::time::Duration;

use odeon_host::driver::Driver;
use odeon_host::net::wire::WireLimits;
use odeon_host::plugins::{PluginError, Plugins, content_hash};
use odeon_host::rooms::ClientInput;
use odeon_protocol::profile::{ErrorCode, Profile};
use serde_json::{Map, Value, json};
use support::rooms::{Harness, limits, plugin_bytes, variant_bytes};
use tokio_tungstenite::tungstenite::Message;

/// A minimal module with every required export; `abi` is what `odeon_abi_version` returns and
/// `extra` is spliced into the module (imports, say).
fn module(abi: i32, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module {extra}
            (memory (export "memory") 1)
            (func (export "odeon_abi_version") (result i32) i32.const {abi})
            (func (export "odeon_alloc") (param i32) (result i32) i32.const 0)
            (func (export "odeon_manifest") (result i64) i64.const 0)
            (func (export "odeon_auth") (param i32 i32) (result i64) i64.const 0)
            (func (export "odeon_events") (param i32 i32) (result i64) i64.const 0))"#
    ))
    .unwrap()
}

#[tokio::test]
async fn refuses_bad_plugins_with_a_reason() {
    let plugins = Plugins::new(limits()).unwrap();
    let err = plugins.load("junk", b"not wasm at all".to_vec()).await.unwrap_err();
    assert!(matches!(err, PluginError::Invalid(_)), "{err}");

    let err =
        plugins.load("v2", module(1, r#"(import "odeon_room_v2" "log" (func (param i32 i32 i32)))"#)).await;
    let err = err.unwrap_err().to_string();
    assert!(err.contains("built for ABI odeon_room_v2") && err.contains("odeon_room_v1"), "{err}");

    let fs = r#"(import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#;
    let err = plugins.load("fs", module(1, fs)).await.unwrap_err().to_string();
    assert!(err.contains("path_open") && err.contains("no filesystem"), "{err}");

    let err = plugins.load("env", module(1, r#"(import "env" "x" (func))"#)).await.unwrap_err().to_string();
    assert!(err.contains("unknown import module"), "{err}");

    let err = plugins.load("old", module(7, "")).await.unwrap_err();
    assert!(matches!(err, PluginError::AbiVersion { found: 7, expected: 1 }), "{err}");

    let missing = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let err = plugins.load("empty", missing).await.unwrap_err().to_string();
    assert!(err.contains("odeon_abi_version") && err.contains("missing"), "{err}");

    let looping = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "odeon_abi_version") (result i32) (loop br 0) i32.const 1)
            (func (export "odeon_alloc") (param i32) (result i32) i32.const 0)
            (func (export "odeon_manifest") (result i64) i64.const 0)
            (func (export "odeon_auth") (param i32 i32) (result i64) i64.const 0)
            (func (export "odeon_events") (param i32 i32) (result i64) i64.const 0))"#,
    )
    .unwrap();
    let err = plugins.load("loop", looping).await.unwrap_err().to_string();
    assert!(err.contains("canary") && err.contains("deadline"), "{err}");
    assert!(plugins.names().is_empty(), "nothing refused may be registered");
}

#[tokio::test]
async fn a_bad_new_version_leaves_the_old_one_serving() {
    let plugins = Plugins::new(limits()).unwrap();
    let v1 = plugins.load("echo.wasm", plugin_bytes("echo")).await.unwrap();
    assert_eq!(v1.manifest.name, "echo");
    assert_eq!(v1.manifest.filter_by, ["mode"]);
    assert!(v1.manifest.has_auth);
    assert!(plugins.load("echo.wasm", plugin_bytes("echo")[..1000].to_vec()).await.is_err());
    assert_eq!(plugins.get("echo").unwrap().version, v1.version);
    let v2 = plugins.load("echo.wasm", plugin_bytes("echo")).await.unwrap();
    assert!(v2.version > v1.version);
    assert_eq!(plugins.get("echo").unwrap().version, v2.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_room_answers_through_the_actor() {
    let h = Harness::new().await;
    let seat = h.seat("joinOrCreate", "echo", json!({ "mode": "duel" })).await;
    assert_eq!(seat.listing.metadata, Map::from_iter([("mode".into(), json!("duel"))]));
    let mut a = h.connect(&seat).await;
    let welcome = a.expect_message("welcome").await;
    assert_eq!(welcome["clients"], 1);
    assert_eq!(welcome["sessionId"], json!(seat.session_id));
    a.send("echo", json!({ "x": 1, "nested": [1, "two"] }));
    assert_eq!(a.expect_message("echo").await, json!({ "x": 1, "nested": [1, "two"] }));
    // The listing is written by the room's publisher, off the room's loop: poll briefly.
    let mut listing = h.driver.find_by_id(&seat.listing.room_id).await.unwrap().unwrap();
    for _ in 0..100 {
        if listing.clients == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        listing = h.driver.find_by_id(&seat.listing.room_id).await.unwrap().unwrap();
    }
    assert_eq!((listing.clients, listing.max_clients, listing.locked), (1, Some(4), false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_kills_only_its_own_room() {
    let h = Harness::new().await;
    let echo_seat = h.seat("joinOrCreate", "echo", json!({})).await;
    let mut echo = h.connect(&echo_seat).await;
    echo.expect_message("welcome").await;

    for fault in ["panic", "loop", "oom"] {
        let seat = h.seat("create", "faults", json!({})).await;
        let mut victim = h.connect(&seat).await;
        victim.send("echo", json!(fault));
        assert_eq!(victim.expect_message("echo").await, json!(fault), "faults room alive before {fault}");
        victim.send(fault, Value::Null);
        assert_eq!(victim.expect_close().await, Some(4002), "{fault} closes its clients with 4002");
        for _ in 0..50 {
            if h.driver.find_by_id(&seat.listing.room_id).await.unwrap().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            h.driver.find_by_id(&seat.listing.room_id).await.unwrap().is_none(),
            "{fault}: listing removed"
        );
        assert!(h.mm.room(&seat.listing.room_id).is_none(), "{fault}: room gone");

        echo.send("echo", json!({ "after": fault }));
        assert_eq!(
            echo.expect_message("echo").await,
            json!({ "after": fault }),
            "echo room survives {fault}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_reaches_the_guest_in_batches() {
    let h = Harness::new().await;
    let seat = h.seat("joinOrCreate", "echo", json!({})).await;
    let mut a = h.connect(&seat).await;
    a.expect_message("welcome").await;
    let before = a.room.stats().guest_calls.load(std::sync::atomic::Ordering::Relaxed);
    const BURST: u64 = 500;
    for i in 0..BURST {
        a.send("echo", json!(i));
    }
    for i in 0..BURST {
        assert_eq!(a.expect_message("echo").await, json!(i), "echoes arrive in order");
    }
    let calls = a.room.stats().guest_calls.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(calls < BURST / 4, "{BURST} messages took {calls} guest calls: not batched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_the_room_carries_on() {
    let h = Harness::new().await;
    let seat = h.seat("joinOrCreate", "echo", json!({ "maxClients": 10 })).await;
    let mut reader = h.connect(&seat).await;
    reader.expect_message("welcome").await;
    let seat2 = h.seat("joinById", &seat.listing.room_id, json!({})).await;
    let limits = WireLimits { queue_bytes: 256 << 10, ..WireLimits::default() };
    let stalled = h.connect_with(&seat2, limits).await;
    reader.expect_message("joined").await;
    // The stalled client never reads; 16 MB of broadcasts fill the kernel's buffers, then its
    // bounded queue.
    let big = "x".repeat(60_000);
    for i in 0..270 {
        reader.send("broadcast", json!([i, big]));
    }
    for _ in 0..250 {
        if !stalled.wire.is_open() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stalled.wire.is_open(), "slow client aborted");
    // The guest saw a non-consented drop: echo keeps the seat for a reconnection, so the client
    // is gone from the room's clients but no "left" is sent yet.
    reader.send("count", Value::Null);
    assert_eq!(reader.expect_message("count").await, json!({ "clients": 1 }));
    // The listing is written after the batch whose replies were just read: poll briefly.
    let mut clients = 0;
    for _ in 0..50 {
        clients = h.driver.find_by_id(&seat.listing.room_id).await.unwrap().unwrap().clients;
        if clients == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(clients, 2, "the reconnection seat still counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_room_without_a_tick_hook_makes_no_guest_calls() {
    let h = Harness::new().await;
    // The arena sets a 50 ms simulation interval but has no tick hook of its own.
    let seat = h.seat("joinOrCreate", "arena", json!({})).await;
    let mut a = h.connect(&seat).await;
    // ROOM_STATE after the ack: the room is up and has been called.
    loop {
        if let Message::Binary(f) = a.next().await
            && f[0] == 14
        {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let calls = || a.room.stats().guest_calls.load(std::sync::atomic::Ordering::Relaxed);
    let before = calls();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = calls() - before;
    assert_eq!(idle, 0, "20 ticks a second would be 20 guest calls; got {idle}");
    // A move still patches on the 50 ms grid.
    a.send("move", json!({ "x": 3.0, "y": 4.0 }));
    loop {
        if let Message::Binary(f) = a.next().await
            && f[0] == 15
        {
            break;
        }
    }
}

/// A listing of this process that names no room (its room ended without removing it) is left
/// out of the request and removed, instead of being retried until the join deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_listing_is_skipped_and_removed_not_retried() {
    let h = Harness::new().await;
    let mode: Map<String, Value> = [("mode".to_string(), json!("stale"))].into_iter().collect();
    let stale =
        odeon_host::rooms::new_listing("echo", "staleRoom".into(), "proc", mode.clone(), mode.clone());
    h.driver.insert(stale).await.unwrap();
    let t0 = std::time::Instant::now();
    let seat = h.seat("joinOrCreate", "echo", json!({ "mode": "stale" })).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "joinOrCreate took {:?}", t0.elapsed());
    assert_ne!(seat.listing.room_id, "staleRoom", "a new room, not the stale listing");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while h.driver.find_by_id("staleRoom").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the stale listing was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plugin file removed from the directory retires its room type: new rooms are refused as for a
/// type never loaded, a running room plays on and takes joins by id, and the type is unregistered
/// when that room ends. The file written again registers the type again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_plugin_file_retires_its_type_when_its_rooms_end() {
    let dir = std::env::temp_dir().join(format!("odeon-retire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("echo.wasm");
    std::fs::write(&file, plugin_bytes("echo")).unwrap();
    let h = Harness::with(Profile::V0_17, &[]).await;
    let plugins = h.mm.plugins().clone();
    assert!(plugins.load_file(&file).await.0);
    let seat = h.seat("joinOrCreate", "echo", json!({})).await;
    let mut first = h.connect(&seat).await;
    first.expect_message("welcome").await;

    std::fs::remove_file(&file).unwrap();
    h.mm.plugin_file_removed(&file).await;
    for method in ["joinOrCreate", "create", "join"] {
        let refused = h.mm.matchmake(method, "echo", Map::new(), None, "127.0.0.1".into()).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::NoHandler, "{method}: {refused}");
        assert_eq!(refused.message, r#"provided room name "echo" not defined"#);
    }
    assert!(plugins.names().is_empty(), "no new rooms of a retired type");
    assert_eq!(plugins.retired_names(), ["echo"], "listed while its room runs");

    first.send("echo", json!("still playing"));
    assert_eq!(first.expect_message("echo").await, json!("still playing"));
    let second_seat = h.seat("joinById", &seat.listing.room_id, json!({})).await;
    let mut second = h.connect(&second_seat).await;
    second.expect_message("welcome").await;
    assert!(plugins.retired_names().contains(&"echo".to_string()), "one of two players left");
    first.input(ClientInput::Leave);
    second.input(ClientInput::Leave);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !plugins.retired_names().is_empty() {
        assert!(std::time::Instant::now() < deadline, "echo still retired after its room ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.mm.room(&seat.listing.room_id).is_none(), "the room ended");
    assert!(plugins.get_or_retired("echo").is_none(), "unregistered");

    std::fs::write(&file, plugin_bytes("echo")).unwrap();
    assert!(plugins.load_file(&file).await.0);
    h.seat("create", "echo", json!({})).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A plugin file rebuilt with another room `NAME` (`just dev` after a rename): the new type
/// serves, and the old one is retired like a removed file's: its running room plays on, and the
/// type is unregistered when that room ends; with no room running, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_file_that_declares_another_type_now_retires_the_old_one() {
    let dir = std::env::temp_dir().join(format!("odeon-rename-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("room.wasm");
    std::fs::write(&file, plugin_bytes("echo")).unwrap();
    let h = Harness::with(Profile::V0_17, &[]).await;
    let plugins = h.mm.plugins().clone();
    h.mm.plugin_file_changed(&file).await;
    let seat = h.seat("joinOrCreate", "echo", json!({})).await;
    let mut client = h.connect(&seat).await;
    client.expect_message("welcome").await;

    std::fs::write(&file, plugin_bytes("lobby")).unwrap();
    h.mm.plugin_file_changed(&file).await;
    assert_eq!(plugins.names(), ["lobby"], "the file's new type serves, the old one takes no new rooms");
    assert_eq!(plugins.retired_names(), ["echo"], "listed while its room runs");
    let refused = h.mm.matchmake("create", "echo", Map::new(), None, "127.0.0.1".into()).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::NoHandler, "{refused}");
    client.send("echo", json!("still playing"));
    assert_eq!(client.expect_message("echo").await, json!("still playing"));
    client.input(ClientInput::Leave);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !plugins.retired_names().is_empty() {
        assert!(std::time::Instant::now() < deadline, "echo still retired after its room ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back to echo, with no lobby room running: lobby goes at once.
    std::fs::write(&file, plugin_bytes("echo")).unwrap();
    h.mm.plugin_file_changed(&file).await;
    assert_eq!(plugins.names(), ["echo"]);
    assert!(plugins.retired_names().is_empty(), "no lobby room ran: unregistered at once");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two files that declare one room type: removing the one that serves makes the other serve,
/// and the type is never retired.
#[tokio::test]
async fn a_type_another_file_declares_is_not_retired_with_one_of_its_files() {
    let dir = std::env::temp_dir().join(format!("odeon-retire-two-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (v1, v2) = (dir.join("echo.wasm"), dir.join("echo2.wasm"));
    std::fs::write(&v1, plugin_bytes("echo")).unwrap();
    std::fs::write(&v2, variant_bytes("echo-v2.wasm")).unwrap();
    let plugins = Plugins::new(limits()).unwrap();
    assert_eq!(plugins.load_dir(&dir).await.unwrap(), 2);
    assert_eq!(plugins.get("echo").unwrap().hash, content_hash(&variant_bytes("echo-v2.wasm")));

    std::fs::remove_file(&v2).unwrap();
    assert_eq!(plugins.file_removed(&v2).await, None, "echo.wasm still declares echo");
    assert_eq!(
        plugins.get("echo").unwrap().hash,
        content_hash(&plugin_bytes("echo")),
        "the remaining file serves"
    );
    assert!(plugins.retired_names().is_empty());

    std::fs::remove_file(&v1).unwrap();
    assert_eq!(plugins.file_removed(&v1).await.as_deref(), Some("echo"), "its last file gone, echo retires");
    assert!(plugins.get("echo").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
