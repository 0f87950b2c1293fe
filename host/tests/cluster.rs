//! The process registry and the cross-process creation lock over a real `redis-server`: what
//! several host processes rely on to agree on who is alive and who creates a room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use odeon_host::cluster::{Cluster, LOCK_TTL, PROCESS_TTL};
use odeon_host::driver::{Driver, LocalDriver};
use odeon_host::presence::{Presence, RedisPresence};

mod support;

use support::redis::RedisServer;

async fn presence(server: &RedisServer) -> Arc<dyn Presence> {
    Arc::new(RedisPresence::connect(&server.url()).await.expect("connecting to the test redis-server"))
}

fn cluster(presence: &Arc<dyn Presence>, driver: &Arc<dyn Driver>, id: &str) -> Arc<Cluster> {
    Cluster::new(presence.clone(), driver.clone(), id.into(), Some(format!("{id}.example:2567")), None)
}

/// A holder that died leaves its lock behind; contenders asking for it every 20 ms must not keep
/// it alive: it is free within its time to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_expires_although_contenders_keep_asking() {
    let server = RedisServer::start();
    let (p, driver): (_, Arc<dyn Driver>) = (presence(&server).await, Arc::new(LocalDriver::default()));
    let contender = cluster(&p, &driver, "alive");
    // What a process that crashed while creating leaves: the lock key with its token.
    let dead = presence(&server).await;
    assert!(dead.set_nx("odeon:creating:arena:{}", "dead:token", LOCK_TTL).await.unwrap());
    let t0 = Instant::now();
    let lock = loop {
        if let Some(lock) = contender.try_lock("arena", "{}").await.unwrap() {
            break lock;
        }
        assert!(t0.elapsed() < LOCK_TTL + Duration::from_secs(1), "the dead holder's lock never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = t0.elapsed();
    assert!(waited >= LOCK_TTL - Duration::from_millis(300), "taken after {waited:?}, before it expired");
    lock.release().await;
}

/// A live holder keeps its lock for as long as it creates, past the time to live, and the next
/// caller gets it as soon as it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_keeps_its_lock_until_it_releases_it() {
    let server = RedisServer::start();
    let (p, driver): (_, Arc<dyn Driver>) = (presence(&server).await, Arc::new(LocalDriver::default()));
    let (a, b) = (cluster(&p, &driver, "a"), cluster(&presence(&server).await, &driver, "b"));
    let held = a.try_lock("arena", "{\"mode\":\"duel\"}").await.unwrap().expect("a free lock");
    assert!(
        b.try_lock("arena", "{\"mode\":\"ffa\"}").await.unwrap().is_some(),
        "another filter is another lock"
    );
    let until = Instant::now() + LOCK_TTL * 2;
    while Instant::now() < until {
        assert!(
            b.try_lock("arena", "{\"mode\":\"duel\"}").await.unwrap().is_none(),
            "taken while its holder lives"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held.release().await;
    assert!(b.try_lock("arena", "{\"mode\":\"duel\"}").await.unwrap().is_some(), "free once released");
}

/// A process whose entry expired is swept by the others, with its listings; if it was alive after
/// all (its heartbeat came late), its next heartbeat says so, so it can publish them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_process_is_swept_and_learns_it_at_its_next_heartbeat() {
    let server = RedisServer::start();
    let driver: Arc<dyn Driver> = Arc::new(LocalDriver::default());
    let (pa, pb) = (presence(&server).await, presence(&server).await);
    let (a, b) = (cluster(&pa, &driver, "proc-a"), cluster(&pb, &driver, "proc-b"));
    assert!(a.heartbeat(1, 0).await, "first registration");
    assert!(!a.heartbeat(1, 0).await, "a renewal");
    b.heartbeat(0, 0).await;
    let listing = odeon_host::rooms::new_listing(
        "echo",
        "room-a".into(),
        "proc-a",
        Default::default(),
        Default::default(),
    );
    driver.insert(listing).await.unwrap();
    let mut ids: Vec<_> = b.processes().await.into_iter().map(|p| p.process_id).collect();
    ids.sort();
    assert_eq!(ids, ["proc-a", "proc-b"]);
    assert_eq!(b.sweep_dead().await, 0, "nobody is dead");

    // proc-a misses its renewals: its entry expires and proc-b sweeps it with its listings.
    tokio::time::sleep(PROCESS_TTL + Duration::from_millis(200)).await;
    b.heartbeat(0, 0).await;
    assert_eq!(b.sweep_dead().await, 1);
    assert!(driver.find_by_id("room-a").await.unwrap().is_none(), "its listings went with it");
    assert_eq!(b.processes().await.len(), 1);

    // proc-a was only late: its next heartbeat registers it again and reports the sweep.
    assert!(a.heartbeat(1, 0).await, "the heartbeat after a sweep says so");
    assert_eq!(b.processes().await.len(), 2);
    assert!(!a.heartbeat(1, 0).await);
}
