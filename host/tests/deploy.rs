//! Deploys between hosts that share presence, under the real engine: a version deployed through
//! one host is fetched, checked and activated by the others, which answer; a host that cannot
//! run it refuses with the reason and keeps its previous version; a host that starts later
//! activates what was deployed. Two "hosts" here are two `Plugins` registries and deployers
//! sharing one presence (the e2e suite does the same across processes on Redis).

mod support;

use std::sync::Arc;

use odeon_host::deploy::store::{self, ArtifactStore, sha256_hex};
use odeon_host::deploy::{DeployError, DeployOptions, Deployer};
use odeon_host::plugins::{GuestLimits, Plugins};
use odeon_host::presence::{LocalPresence, Presence};
use support::rooms::{limits, plugin_bytes, variant_bytes};
use support::secantus::Secantus;

async fn host(id: &str, presence: &Arc<dyn Presence>, limits: GuestLimits) -> (Arc<Plugins>, Arc<Deployer>) {
    host_on(id, presence, limits, ArtifactStore::Shared(presence.clone())).await
}

async fn host_on(
    id: &str,
    presence: &Arc<dyn Presence>,
    limits: GuestLimits,
    store: ArtifactStore,
) -> (Arc<Plugins>, Arc<Deployer>) {
    let plugins = Plugins::new(limits).unwrap();
    let _ = plugins.load("echo.wasm", plugin_bytes("echo")).await;
    let deployer = Arc::new(Deployer::new(id.into(), plugins.clone(), presence.clone(), store));
    deployer.activate_current().await;
    deployer.follow().await.unwrap();
    (plugins, deployer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_reaches_every_host_and_a_later_one_runs_it() {
    let presence: Arc<dyn Presence> = Arc::new(LocalPresence::default());
    let (a_plugins, a) = host("a", &presence, limits()).await;
    let (b_plugins, _b) = host("b", &presence, limits()).await;
    // A host whose rooms get 1 MiB cannot instantiate echo: it refuses, and keeps what it has.
    let small = GuestLimits { memory_bytes: 1 << 20, ..limits() };
    let (c_plugins, _c) = host("c", &presence, small).await;
    assert!(c_plugins.get("echo").is_none());

    let v2 = variant_bytes("echo-v2.wasm");
    let live = vec!["a".to_string(), "b".to_string(), "c".to_string(), "gone".to_string()];
    let report = a.deploy(v2.clone(), "test", "127.0.0.1", live, DeployOptions::default()).await.unwrap();
    assert_eq!((report.name.as_str(), report.hash.as_str()), ("echo", sha256_hex(&v2).as_str()));
    let status: Vec<(&str, &str)> =
        report.hosts.iter().map(|h| (h.process_id.as_str(), h.status.as_str())).collect();
    assert_eq!(status, [("a", "active"), ("b", "active"), ("c", "refused"), ("gone", "timeout")]);
    assert!(report.hosts[2].reason.as_deref().is_some_and(|r| !r.is_empty()));
    for plugins in [&a_plugins, &b_plugins] {
        assert_eq!(plugins.get("echo").unwrap().hash, sha256_hex(&v2), "the new version serves new rooms");
    }
    assert!(c_plugins.get("echo").is_none(), "a refusing host keeps what it had");

    // A host that starts now activates the deployed version before it takes rooms.
    let (late, _) = host("late", &presence, limits()).await;
    assert_eq!(late.get("echo").unwrap().hash, sha256_hex(&v2));
    assert_eq!(late.get("echo").unwrap().source, format!("deploy:{}", sha256_hex(&v2)));

    // Roll forward to v1 (uploaded, so stored), then back to v2 by its hash alone.
    let v1 = plugin_bytes("echo");
    let live: Vec<String> = ["a", "b", "c", "late"].map(String::from).to_vec();
    a.deploy(v1.clone(), "test", "127.0.0.1", live.clone(), DeployOptions::default()).await.unwrap();
    assert_eq!(b_plugins.get("echo").unwrap().hash, sha256_hex(&v1));
    let back =
        a.activate_stored("echo", &sha256_hex(&v2), live.clone(), DeployOptions::default()).await.unwrap();
    // Every live host answers, the refusing one included.
    let status: Vec<(&str, &str)> =
        back.hosts.iter().map(|h| (h.process_id.as_str(), h.status.as_str())).collect();
    assert_eq!(
        status,
        [("a", "active"), ("b", "active"), ("c", "refused"), ("late", "active")],
        "{:?}",
        back.hosts
    );
    for plugins in [&a_plugins, &b_plugins] {
        assert_eq!(plugins.get("echo").unwrap().hash, sha256_hex(&v2), "rolled back by hash");
    }
    let unknown =
        a.activate_stored("echo", &"0".repeat(64), live, DeployOptions::default()).await.unwrap_err();
    assert!(matches!(unknown, DeployError::Unknown(_)), "{unknown}");

    // A module the receiving host refuses is not stored or announced.
    let err =
        a.deploy(b"junk".to_vec(), "test", "127.0.0.1", vec![], DeployOptions::default()).await.unwrap_err();
    assert!(matches!(err, DeployError::Refused(_)), "{err}");
    assert_eq!(b_plugins.get("echo").unwrap().hash, sha256_hex(&v2));
}

/// With MongoDB, artifacts live in GridFS: a version deployed through one host is fetched from
/// there by another and by one that starts later, and the stored versions are listed from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mongodb_artifacts_live_in_gridfs() {
    let server = Secantus::start().await;
    let bucket = || async { ArtifactStore::Mongo(store::mongo_bucket(&server.uri()).await.unwrap()) };
    let presence: Arc<dyn Presence> = Arc::new(LocalPresence::default());
    let (_, a) = host_on("a", &presence, limits(), bucket().await).await;
    let (b_plugins, _b) = host_on("b", &presence, limits(), bucket().await).await;
    let v2 = variant_bytes("echo-v2.wasm");
    let report = a
        .deploy(v2.clone(), "test", "10.0.0.7", vec!["a".into(), "b".into()], DeployOptions::default())
        .await
        .unwrap();
    assert!(report.hosts.iter().all(|h| h.status == "active"), "{:?}", report.hosts);
    assert_eq!(b_plugins.get("echo").unwrap().hash, sha256_hex(&v2));
    // Uploading the same bytes again stores nothing new.
    a.deploy(v2.clone(), "again", "10.0.0.7", vec!["a".into(), "b".into()], DeployOptions::default())
        .await
        .unwrap();
    let listed = bucket().await.versions("echo").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].hash.as_str(), listed[0].size, listed[0].uploader.as_str()),
        (sha256_hex(&v2).as_str(), v2.len(), "10.0.0.7")
    );
    assert_eq!(bucket().await.get(&sha256_hex(&v2)).await.unwrap(), Some(v2.clone()));
    let (late, _) = host_on("late", &presence, limits(), bucket().await).await;
    assert_eq!(late.get("echo").unwrap().hash, sha256_hex(&v2));
}
