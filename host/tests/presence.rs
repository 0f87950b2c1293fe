//! Presence conformance: one suite run against [`LocalPresence`] and against [`RedisPresence`] on
//! a real `redis-server`, plus what only Redis has (restarts, outages, several processes).
//!
//! Each Redis test starts its own `redis-server` on a free loopback port, without persistence,
//! and kills it by PID when the test ends, also when it fails. The binary is `redis-server` from
//! `PATH`, or `$ODEON_REDIS_SERVER`; without one these tests fail rather than skip.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

mod support;

use support::redis::RedisServer;

use odeon_host::presence::{LocalPresence, Presence, PresenceError, RedisPresence, Subscription};

/// One test function per behaviour, each run against both implementations.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::LocalPresence::default()).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = super::RedisServer::start();
                    let presence = super::connect(&server).await;
                    super::$name(&presence).await;
                }
            )*
        }
    };
}

conformance!(
    strings_are_set_read_and_deleted,
    keys_expire,
    operations_on_the_wrong_kind_of_value_fail,
    integers_overflow_with_an_error,
    sets,
    hashes,
    hincrbyex_counts_and_expires_the_whole_hash,
    owned_keys_are_set_once_renewed_and_removed_only_by_their_owner,
    mget_reads_many_strings_at_once,
    counters,
    lists,
    pubsub_fans_out_to_every_subscriber,
    dropping_a_receiver_unsubscribes,
    channels_match_a_pattern,
);

// ---------------------------------------------------------------------------------------------
// The conformance suite.

async fn strings_are_set_read_and_deleted(p: &dyn Presence) {
    assert_eq!(p.get("k").await.unwrap(), None);
    assert!(!p.exists("k").await.unwrap());
    p.set("k", "v").await.unwrap();
    assert_eq!(p.get("k").await.unwrap().as_deref(), Some("v"));
    assert!(p.exists("k").await.unwrap());
    p.set("k", "w").await.unwrap();
    assert_eq!(p.get("k").await.unwrap().as_deref(), Some("w"));
    p.set("ключ", "値 🎲, with spaces\r\nand lines").await.unwrap();
    assert_eq!(p.get("ключ").await.unwrap().as_deref(), Some("値 🎲, with spaces\r\nand lines"));
    p.set("empty", "").await.unwrap();
    assert_eq!(p.get("empty").await.unwrap().as_deref(), Some(""));
    p.del("k").await.unwrap();
    assert_eq!(p.get("k").await.unwrap(), None);
    assert!(!p.exists("k").await.unwrap());
    p.del("never-set").await.unwrap();
    // DEL removes a key of any kind.
    p.sadd("s", "a").await.unwrap();
    p.hset("h", "f", "v").await.unwrap();
    p.rpush("l", "a").await.unwrap();
    for key in ["s", "h", "l"] {
        p.del(key).await.unwrap();
        assert!(!p.exists(key).await.unwrap(), "{key} survived DEL");
    }
}

async fn keys_expire(p: &dyn Presence) {
    let ttl = Duration::from_millis(150);
    p.setex("short", "v", ttl).await.unwrap();
    assert_eq!(p.get("short").await.unwrap().as_deref(), Some("v"));
    p.setex("long", "v", Duration::from_secs(60)).await.unwrap();
    p.set("plain", "v").await.unwrap();
    assert!(p.expire("plain", ttl).await.unwrap());
    assert!(!p.expire("missing", ttl).await.unwrap());
    p.sadd("set", "a").await.unwrap();
    assert!(p.expire("set", ttl).await.unwrap());
    // SET clears the time to live; INCRBY keeps it.
    p.setex("reset", "v", ttl).await.unwrap();
    p.set("reset", "v2").await.unwrap();
    p.setex("counter", "1", ttl).await.unwrap();
    assert_eq!(p.incrby("counter", 1).await.unwrap(), 2);

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(p.get("short").await.unwrap(), None);
    assert!(!p.exists("short").await.unwrap());
    assert!(!p.exists("plain").await.unwrap());
    assert!(!p.exists("set").await.unwrap());
    assert_eq!(p.smembers("set").await.unwrap(), Vec::<String>::new());
    assert_eq!(p.get("counter").await.unwrap(), None);
    assert_eq!(p.get("reset").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(p.get("long").await.unwrap().as_deref(), Some("v"));
    // An expired key can be written again, as any kind.
    assert!(p.sadd("short", "a").await.unwrap());
}

async fn operations_on_the_wrong_kind_of_value_fail(p: &dyn Presence) {
    p.set("str", "x").await.unwrap();
    p.sadd("set", "a").await.unwrap();
    p.hset("hash", "f", "v").await.unwrap();
    p.rpush("list", "a").await.unwrap();
    let ttl = Duration::from_secs(60);

    let results: Vec<(&str, Result<(), PresenceError>)> = vec![
        ("get set", p.get("set").await.map(drop)),
        ("sadd hash", p.sadd("hash", "a").await.map(drop)),
        ("smembers list", p.smembers("list").await.map(drop)),
        ("sismember str", p.sismember("str", "a").await.map(drop)),
        ("srem list", p.srem("list", "a").await.map(drop)),
        ("scard hash", p.scard("hash").await.map(drop)),
        ("sinter set str", p.sinter(&["set", "str"]).await.map(drop)),
        ("hset list", p.hset("list", "f", "v").await.map(drop)),
        ("hincrby set", p.hincrby("set", "f", 1).await.map(drop)),
        ("hincrbyex str", p.hincrbyex("str", "f", 1, ttl).await.map(drop)),
        ("hget str", p.hget("str", "f").await.map(drop)),
        ("hdel set", p.hdel("set", "f").await.map(drop)),
        ("hlen list", p.hlen("list").await.map(drop)),
        ("hgetall str", p.hgetall("str").await.map(drop)),
        ("incrby set", p.incrby("set", 1).await.map(drop)),
        ("rpush hash", p.rpush("hash", "a").await.map(drop)),
        ("lpush str", p.lpush("str", "a").await.map(drop)),
        ("rpop set", p.rpop("set").await.map(drop)),
        ("lpop hash", p.lpop("hash").await.map(drop)),
        ("llen str", p.llen("str").await.map(drop)),
        // Integer operations on values that are not integers.
        ("incrby on text", p.incrby("str", 1).await.map(drop)),
        ("hincrby on text", p.hincrby("hash", "f", 1).await.map(drop)),
    ];
    for (what, result) in results {
        assert!(matches!(result, Err(PresenceError::WrongType(_))), "{what}: {result:?}");
    }
    let err = p.get("hash").await.unwrap_err();
    assert_eq!(err.to_string(), "wrong kind of value at key \"hash\"");

    // Nothing was changed by the failed operations.
    assert_eq!(p.get("str").await.unwrap().as_deref(), Some("x"));
    assert_eq!(p.smembers("set").await.unwrap(), ["a"]);
    assert_eq!(p.hgetall("hash").await.unwrap(), map(&[("f", "v")]));
    assert_eq!(p.llen("list").await.unwrap(), 1);
    // Once deleted, the name takes any kind.
    p.del("set").await.unwrap();
    p.set("set", "now a string").await.unwrap();
    assert_eq!(p.get("set").await.unwrap().as_deref(), Some("now a string"));
}

async fn integers_overflow_with_an_error(p: &dyn Presence) {
    p.set("big", &i64::MAX.to_string()).await.unwrap();
    let err = p.incrby("big", 1).await.unwrap_err();
    assert!(matches!(err, PresenceError::Overflow(ref k) if k == "big"), "{err:?}");
    assert_eq!(err.to_string(), "integer overflow at key \"big\"");
    assert_eq!(p.get("big").await.unwrap(), Some(i64::MAX.to_string()));
    p.hset("h", "n", &i64::MIN.to_string()).await.unwrap();
    let err = p.hincrby("h", "n", -1).await.unwrap_err();
    assert!(matches!(err, PresenceError::Overflow(_)), "{err:?}");
    assert_eq!(p.incrby("big", -1).await.unwrap(), i64::MAX - 1);
}

async fn sets(p: &dyn Presence) {
    assert!(p.sadd("a", "x").await.unwrap());
    assert!(!p.sadd("a", "x").await.unwrap());
    assert!(p.sadd("a", "y").await.unwrap());
    p.sadd("b", "y").await.unwrap();
    p.sadd("b", "z").await.unwrap();
    assert_eq!(sorted(p.smembers("a").await.unwrap()), ["x", "y"]);
    assert_eq!(p.smembers("missing").await.unwrap(), Vec::<String>::new());
    assert!(p.sismember("a", "x").await.unwrap());
    assert!(!p.sismember("a", "z").await.unwrap());
    assert!(!p.sismember("missing", "x").await.unwrap());
    assert_eq!(p.scard("a").await.unwrap(), 2);
    assert_eq!(p.scard("missing").await.unwrap(), 0);

    assert_eq!(sorted(p.sinter(&["a", "b"]).await.unwrap()), ["y"]);
    assert_eq!(sorted(p.sinter(&["a"]).await.unwrap()), ["x", "y"]);
    assert_eq!(p.sinter(&["a", "missing"]).await.unwrap(), Vec::<String>::new());
    assert_eq!(p.sinter(&[]).await.unwrap(), Vec::<String>::new());

    assert!(p.srem("a", "x").await.unwrap());
    assert!(!p.srem("a", "x").await.unwrap());
    assert!(!p.srem("missing", "x").await.unwrap());
    // A set left empty is no key at all.
    assert!(p.srem("a", "y").await.unwrap());
    assert!(!p.exists("a").await.unwrap());
}

async fn hashes(p: &dyn Presence) {
    assert!(p.hset("h", "f", "1").await.unwrap());
    assert!(!p.hset("h", "f", "2").await.unwrap());
    assert_eq!(p.hget("h", "f").await.unwrap().as_deref(), Some("2"));
    assert_eq!(p.hget("h", "other").await.unwrap(), None);
    assert_eq!(p.hget("missing", "f").await.unwrap(), None);

    assert_eq!(p.hincrby("h", "n", 5).await.unwrap(), 5);
    assert_eq!(p.hincrby("h", "n", -7).await.unwrap(), -2);
    assert_eq!(p.hincrby("fresh", "n", 1).await.unwrap(), 1);
    assert_eq!(p.hincrby("h", "f", 3).await.unwrap(), 5, "a numeric string field counts");

    assert_eq!(p.hlen("h").await.unwrap(), 2);
    assert_eq!(p.hlen("missing").await.unwrap(), 0);
    assert_eq!(p.hgetall("h").await.unwrap(), map(&[("f", "5"), ("n", "-2")]));
    assert_eq!(p.hgetall("missing").await.unwrap(), HashMap::new());

    assert!(p.hdel("h", "f").await.unwrap());
    assert!(!p.hdel("h", "f").await.unwrap());
    assert!(!p.hdel("missing", "f").await.unwrap());
    // A hash left empty is no key at all.
    assert!(p.hdel("h", "n").await.unwrap());
    assert!(!p.exists("h").await.unwrap());
}

async fn hincrbyex_counts_and_expires_the_whole_hash(p: &dyn Presence) {
    let ttl = Duration::from_millis(300);
    // The joinOrCreate creation lock: the first caller gets 1 and creates, the others wait.
    assert_eq!(p.hincrbyex("ch:battle", "mode:duel", 1, ttl).await.unwrap(), 1);
    assert_eq!(p.hincrbyex("ch:battle", "mode:duel", 1, ttl).await.unwrap(), 2);
    assert_eq!(p.hincrbyex("ch:battle", "mode:ffa", 1, ttl).await.unwrap(), 1);
    assert_eq!(p.hget("ch:battle", "mode:duel").await.unwrap().as_deref(), Some("2"));
    // Each call renews the time to live of the whole hash.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.hincrbyex("ch:battle", "mode:duel", -1, ttl).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.hlen("ch:battle").await.unwrap(), 2, "the second call renewed the lock");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!p.exists("ch:battle").await.unwrap(), "the lock expired with its holder gone");
    assert_eq!(p.hincrbyex("ch:battle", "mode:duel", 1, ttl).await.unwrap(), 1);
}

async fn owned_keys_are_set_once_renewed_and_removed_only_by_their_owner(p: &dyn Presence) {
    let ttl = Duration::from_millis(400);
    assert!(p.set_nx("lock", "owner-a", ttl).await.unwrap());
    assert!(!p.set_nx("lock", "owner-b", ttl).await.unwrap(), "a second owner is refused");
    assert_eq!(p.get("lock").await.unwrap().as_deref(), Some("owner-a"));
    // Contenders do not extend it; only its owner does.
    assert!(!p.expire_if_equal("lock", "owner-b", Duration::from_secs(60)).await.unwrap());
    assert!(!p.del_if_equal("lock", "owner-b").await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(p.expire_if_equal("lock", "owner-a", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(p.exists("lock").await.unwrap(), "renewed by its owner");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!p.exists("lock").await.unwrap(), "expired once its owner stopped renewing");
    assert!(p.set_nx("lock", "owner-b", ttl).await.unwrap());
    assert!(!p.del_if_equal("lock", "owner-a").await.unwrap(), "the old owner cannot remove it");
    assert!(p.del_if_equal("lock", "owner-b").await.unwrap());
    assert!(!p.exists("lock").await.unwrap());
    // A key of another kind is neither taken nor removed.
    p.sadd("set", "x").await.unwrap();
    assert!(!p.set_nx("set", "owner", ttl).await.unwrap());
    assert!(!p.del_if_equal("set", "x").await.unwrap());
    assert!(p.exists("set").await.unwrap());
}

async fn mget_reads_many_strings_at_once(p: &dyn Presence) {
    assert_eq!(p.mget(&[]).await.unwrap(), Vec::<Option<String>>::new());
    p.set("a", "1").await.unwrap();
    p.setex("b", "2", Duration::from_secs(60)).await.unwrap();
    p.sadd("s", "x").await.unwrap();
    let got = p.mget(&["a", "missing", "b", "s"]).await.unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into()), None]);
}

async fn counters(p: &dyn Presence) {
    assert_eq!(p.incrby("c", 3).await.unwrap(), 3);
    assert_eq!(p.incrby("c", -5).await.unwrap(), -2);
    assert_eq!(p.incrby("c", 0).await.unwrap(), -2);
    assert_eq!(p.get("c").await.unwrap().as_deref(), Some("-2"));
    p.set("n", "10").await.unwrap();
    assert_eq!(p.incrby("n", 5).await.unwrap(), 15);
}

async fn lists(p: &dyn Presence) {
    assert_eq!(p.rpush("l", "a").await.unwrap(), 1);
    assert_eq!(p.rpush("l", "b").await.unwrap(), 2);
    assert_eq!(p.lpush("l", "z").await.unwrap(), 3);
    assert_eq!(p.llen("l").await.unwrap(), 3);
    assert_eq!(p.lpop("l").await.unwrap().as_deref(), Some("z"));
    assert_eq!(p.rpop("l").await.unwrap().as_deref(), Some("b"));
    assert_eq!(p.llen("l").await.unwrap(), 1);
    assert_eq!(p.lpop("l").await.unwrap().as_deref(), Some("a"));
    assert_eq!(p.lpop("l").await.unwrap(), None);
    assert_eq!(p.rpop("l").await.unwrap(), None);
    assert_eq!(p.llen("l").await.unwrap(), 0);
    assert!(!p.exists("l").await.unwrap(), "a list left empty is no key at all");
    assert_eq!(p.rpop("missing").await.unwrap(), None);
    assert_eq!(p.llen("missing").await.unwrap(), 0);
}

async fn pubsub_fans_out_to_every_subscriber(p: &dyn Presence) {
    let mut a = p.subscribe("$room1").await.unwrap();
    let mut b = p.subscribe("$room1").await.unwrap();
    let mut other = p.subscribe("$room2").await.unwrap();
    assert!(p.publish("$room1", "hello").await.unwrap() >= 1);
    assert!(p.publish("$room1", "[\"_reserveSeat\",\"id\",[]]").await.unwrap() >= 1);
    assert!(p.publish("$room2", "elsewhere").await.unwrap() >= 1);
    for rx in [&mut a, &mut b] {
        assert_eq!(recv(rx).await, "hello");
        assert_eq!(recv(rx).await, "[\"_reserveSeat\",\"id\",[]]");
    }
    assert_eq!(recv(&mut other).await, "elsewhere");
    assert_silent(&mut a).await;
    assert_eq!(p.publish("$nobody", "x").await.unwrap(), 0);
}

async fn dropping_a_receiver_unsubscribes(p: &dyn Presence) {
    let a = p.subscribe("topic").await.unwrap();
    let mut b = p.subscribe("topic").await.unwrap();
    drop(a);
    assert!(p.publish("topic", "still here").await.unwrap() >= 1);
    assert_eq!(recv(&mut b).await, "still here");
    assert_eq!(p.channels("topic").await.unwrap(), ["topic"]);
    drop(b);
    eventually("the topic is unsubscribed", move || async move {
        p.channels("*").await.unwrap().is_empty() && p.publish("topic", "gone").await.unwrap() == 0
    })
    .await;
    // The topic can be subscribed to again.
    let mut c = p.subscribe("topic").await.unwrap();
    assert!(p.publish("topic", "back").await.unwrap() >= 1);
    assert_eq!(recv(&mut c).await, "back");
}

async fn channels_match_a_pattern(p: &dyn Presence) {
    assert_eq!(p.channels("*").await.unwrap(), Vec::<String>::new());
    let _subs: Vec<Subscription> = subscribe_all(p, &["$lobby", "$room1", "p:proc1", "ipc:1"]).await;
    assert_eq!(p.channels("*").await.unwrap(), ["$lobby", "$room1", "ipc:1", "p:proc1"]);
    assert_eq!(p.channels("$*").await.unwrap(), ["$lobby", "$room1"]);
    assert_eq!(p.channels("p:*").await.unwrap(), ["p:proc1"]);
    assert_eq!(p.channels("*1").await.unwrap(), ["$room1", "ipc:1", "p:proc1"]);
    assert_eq!(p.channels("$lobby").await.unwrap(), ["$lobby"]);
    assert_eq!(p.channels("$lob").await.unwrap(), Vec::<String>::new());
    assert_eq!(p.channels("nope*").await.unwrap(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Redis only.

/// Redis restarts under a live `RedisPresence`: commands work again and a subscription made before
/// the restart receives what is published after it, without anything being recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_subscriptions_and_commands_recover() {
    let mut server = RedisServer::start();
    let p = connect(&server).await;
    let mut sub = p.subscribe("$lobby").await.unwrap();
    p.set("k", "before").await.unwrap();

    server.restart();
    let restarted = Instant::now();
    // The data is gone (no persistence), but the connection is back.
    let value = retry_while_unavailable(|| p.get("k")).await;
    assert_eq!(value, None, "the restarted server kept data it should not have");
    assert_eq!(p.incrby("n", 1).await.unwrap(), 1);
    p.set("k", "after").await.unwrap();
    assert_eq!(p.get("k").await.unwrap().as_deref(), Some("after"));

    // The subscription is renewed by itself.
    assert_renewed(&p, "$lobby", &mut sub).await;
    assert!(restarted.elapsed() < Duration::from_secs(8), "recovery took {:?}", restarted.elapsed());

    // Another process publishing reaches it too.
    let q = connect(&server).await;
    assert_eq!(q.publish("$lobby", "from another process").await.unwrap(), 1);
    assert_eq!(recv(&mut sub).await, "from another process");
    // And new subscriptions work on the renewed connection.
    let mut late = p.subscribe("$late").await.unwrap();
    assert_eq!(q.publish("$late", "hi").await.unwrap(), 1);
    assert_eq!(recv(&mut late).await, "hi");
}

/// While Redis is down every operation fails with `Unavailable` within a few seconds; receivers
/// stay open and get messages again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_then_recovers() {
    let mut server = RedisServer::start();
    let p = connect(&server).await;
    let mut sub = p.subscribe("$room").await.unwrap();

    server.kill();
    every_operation_fails_fast(&p).await;
    let err = p.exists("k").await.unwrap_err();
    assert!(err.to_string().starts_with("presence unavailable: "), "{err}");
    assert!(
        matches!(sub.try_recv(), Err(tokio::sync::mpsc::error::TryRecvError::Empty)),
        "a subscription stays open while redis is down"
    );

    server.revive();
    retry_while_unavailable(|| p.set("k", "v")).await;
    assert_renewed(&p, "$room", &mut sub).await;
    assert_eq!(p.channels("*").await.unwrap(), ["$room"], "the failed subscription left nothing behind");
}

/// A Redis that stops answering without closing its connections (SIGSTOP: a hung server, or a
/// network that drops packets) makes operations time out with `Unavailable`; once it answers
/// again, everything recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_stops_answering_times_out_then_recovers() {
    let server = RedisServer::start();
    let p = connect(&server).await;
    let mut sub = p.subscribe("$room").await.unwrap();

    server.signal("STOP");
    every_operation_fails_fast(&p).await;
    server.signal("CONT");

    assert_eq!(retry_while_unavailable(|| p.get("missing")).await, None);
    // A write that timed out may still have run once Redis woke up: its outcome is unknown.
    let n = p.get("n").await.unwrap();
    assert!(matches!(n.as_deref(), None | Some("1")), "{n:?}");
    assert_eq!(p.incrby("fresh", 1).await.unwrap(), 1);
    assert_renewed(&p, "$room", &mut sub).await;
}
/// Two `RedisPresence`s on one server are two host processes: they share keys, locks and topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_presences_share_state_like_processes() {
    let server = RedisServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    a.hset("roomcount", "proc-a", "1,4").await.unwrap();
    b.hset("roomcount", "proc-b", "2,9").await.unwrap();
    assert_eq!(a.hgetall("roomcount").await.unwrap(), map(&[("proc-a", "1,4"), ("proc-b", "2,9")]));

    let ttl = Duration::from_secs(1);
    assert_eq!(a.hincrbyex("ch:battle", "k:v", 1, ttl).await.unwrap(), 1, "a wins the creation lock");
    assert_eq!(b.hincrbyex("ch:battle", "k:v", 1, ttl).await.unwrap(), 2, "b waits");

    let mut on_b = b.subscribe("concurrent:battle:k:v").await.unwrap();
    let mut also_on_b = b.subscribe("concurrent:battle:k:v").await.unwrap();
    assert_eq!(a.publish("concurrent:battle:k:v", "roomId1").await.unwrap(), 1, "one process listens");
    assert_eq!(recv(&mut on_b).await, "roomId1");
    assert_eq!(recv(&mut also_on_b).await, "roomId1");
    let mut on_a = a.subscribe("concurrent:battle:k:v").await.unwrap();
    assert_eq!(b.publish("concurrent:battle:k:v", "roomId2").await.unwrap(), 2, "two processes listen");
    assert_eq!(recv(&mut on_a).await, "roomId2");
    assert_eq!(recv(&mut on_b).await, "roomId2");
    assert_eq!(a.channels("concurrent:*").await.unwrap(), ["concurrent:battle:k:v"]);
}

/// Subscriptions share one subscriber connection: a presence holds two connections however many
/// topics it listens to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriptions_share_one_connection() {
    let server = RedisServer::start();
    let p = connect(&server).await;
    let mut subs = Vec::new();
    for i in 0..50 {
        subs.push(p.subscribe(&format!("$room{i}")).await.unwrap());
        subs.push(p.subscribe(&format!("$room{i}")).await.unwrap());
    }
    assert_eq!(p.channels("$room*").await.unwrap().len(), 50);
    // The harness's own connection is the third.
    assert_eq!(server.info_field("clients", "connected_clients").as_deref(), Some("3"));
    assert_eq!(p.publish("$room7", "x").await.unwrap(), 1);
    drop(subs);
    eventually("every topic is unsubscribed", || async { p.channels("*").await.unwrap().is_empty() }).await;
}

/// Dropping the presence ends its subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dropping_the_presence_ends_its_subscriptions() {
    let server = RedisServer::start();
    let p = connect(&server).await;
    let mut sub = p.subscribe("t").await.unwrap();
    drop(p);
    let end = tokio::time::timeout(Duration::from_secs(3), sub.recv()).await;
    assert_eq!(end, Ok(None));
    let q = connect(&server).await;
    eventually("the dropped presence's subscriber is gone", || async {
        q.publish("t", "x").await.unwrap() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_connect_fails_promptly_without_a_server_or_with_a_bad_url() {
    let port = support::free_port();
    let started = Instant::now();
    let err = RedisPresence::connect(&format!("redis://127.0.0.1:{port}/")).await.unwrap_err();
    assert!(matches!(err, PresenceError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    let err = RedisPresence::connect("http://nowhere").await.unwrap_err();
    assert!(matches!(err, PresenceError::Config(_)), "{err:?}");
    assert!(err.to_string().starts_with("presence misconfigured: invalid redis url"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Runs one operation of each kind, each of which must fail with `Unavailable` within 4 s.
async fn every_operation_fails_fast(p: &RedisPresence) {
    async fn fails_fast<T: std::fmt::Debug>(what: &str, op: impl Future<Output = Result<T, PresenceError>>) {
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), op)
            .await
            .unwrap_or_else(|_| panic!("{what} hung while redis was away"));
        let took = started.elapsed();
        assert!(matches!(result, Err(PresenceError::Unavailable(_))), "{what}: {result:?}");
        assert!(took < Duration::from_secs(4), "{what} took {took:?} to fail");
    }
    fails_fast("get", p.get("k")).await;
    fails_fast("set", p.set("k", "v")).await;
    fails_fast("incrby", p.incrby("n", 1)).await;
    fails_fast("hincrbyex", p.hincrbyex("ch:x", "f", 1, Duration::from_secs(1))).await;
    fails_fast("sinter", p.sinter(&["a", "b"])).await;
    fails_fast("publish", p.publish("$room", "lost")).await;
    fails_fast("channels", p.channels("*")).await;
    fails_fast("subscribe", p.subscribe("$other")).await;
    fails_fast("get again", p.get("k")).await;
}

/// Publishes to `topic` until a subscriber gets it, which must then be `sub`: the subscription
/// made before Redis went away was renewed by itself.
async fn assert_renewed(p: &RedisPresence, topic: &str, sub: &mut Subscription) {
    let mut n = 0;
    eventually("the subscription is renewed", || {
        n += 1;
        let message = format!("back {n}");
        async move { p.publish(topic, &message).await.unwrap_or(0) >= 1 }
    })
    .await;
    assert_eq!(recv(sub).await, format!("back {n}"));
}

async fn connect(server: &RedisServer) -> RedisPresence {
    RedisPresence::connect(&server.url()).await.expect("connecting to the test redis-server")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn subscribe_all(p: &dyn Presence, topics: &[&str]) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for topic in topics {
        subs.push(p.subscribe(topic).await.unwrap());
    }
    subs
}

/// The next message, which must come within a few seconds.
async fn recv(rx: &mut Subscription) -> String {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("no message within 3s")
        .expect("the subscription ended")
}

async fn assert_silent(rx: &mut Subscription) {
    let got = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await;
    assert!(got.is_err(), "unexpected message: {got:?}");
}

/// Polls `check` until it holds, for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `op` until it stops failing with `Unavailable`, for at most 10 s.
async fn retry_while_unavailable<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PresenceError>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(PresenceError::Unavailable(e)) if Instant::now() < deadline => {
                eprintln!("still unavailable: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("presence did not recover: {e}"),
        }
    }
}
