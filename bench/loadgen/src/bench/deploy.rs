//! The deploy workload: three Odeon hosts sharing one redis-server, deploys uploaded to the
//! first (`POST /odeon/admin/plugins`), which answers once every live host has activated the
//! new version, and live migrations (`?migrate=1`) of the arena rooms that N clients play in on
//! the first host.
//!
//! 1. **Live migration.** redis-server and host 1 start, and the loadgen joins its clients to
//!    host 1 (rooms of 50). Only then do hosts 2 and 3 start: a joinOrCreate puts a new room on
//!    the least-loaded host, and the figures are host 1's migration of its own rooms, so every
//!    room must be on host 1. Once host 1 lists all three hosts, and the loadgen's warm-up is
//!    over, the bench uploads `arena-v2.wasm` and `arena.wasm` in turn with `?migrate=1`, one a
//!    second (or at once after the previous answer, if that took longer), and keeps host 1's
//!    migration figures from each answer. A second after the last answer it ends the loadgen's
//!    window (`--end-on-stdin-close`).
//! 2. **Deploy latency.** After the loadgen has ended and host 1's rooms are gone, the bench
//!    uploads `echo-v2.wasm` and `echo.wasm` in turn to host 1, each timed from the request's
//!    start to its answer. With pinning this runs twice: hosts 2 and 3 sharing a core (as in the
//!    migrations), then with host 3 moved to host 1's core, so that each compiling host has one
//!    (host 1 compiles before it announces, hosts 2 and 3 after).
//!
//! Each host has a copy of `arena.wasm` and `echo.wasm` in a plugins directory of its own (an
//! upload is saved there), removed afterwards. With two cores and pinning, host 1 runs alone on
//! the first CPU; hosts 2 and 3, redis-server and the loadgen share the second.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub use super::deploy_answer::{Answer, HostAnswer, Kept, Migration, Upload, upload};
use super::loadgen_run::Background;
use super::proxy::{find_redis, launch, start_redis};
use super::server::{self, Running};
use super::{Args, Plan};
use crate::proc::{self, Pid};

/// Hosts in the cluster.
pub const HOSTS: usize = 3;
/// The hosts' `--admin-token`.
pub const TOKEN: &str = "b3nch-d3pl0y-t0ken-7f4e2a19";
/// Time between the starts of two migrations.
pub const SPACING: Duration = Duration::from_secs(1);

/// What the deploy workload runs.
#[derive(Debug, Clone)]
pub struct DeployPlan {
    /// Timed uploads (echo, v2 and v1 in turn).
    pub uploads: u32,
    /// Migrations (arena, v2 and v1 in turn).
    pub migrations: u32,
    /// Active arena clients on host 1 during the migrations.
    pub clients: u32,
    /// The host, as the server comparison runs it (its program and working directory are used).
    pub host: server::Spec,
    /// redis-server.
    pub redis: PathBuf,
    /// `arena.wasm` and `echo.wasm`.
    pub plugins: PathBuf,
    /// `arena-v2.wasm` and `echo-v2.wasm`.
    pub variants: PathBuf,
}

impl DeployPlan {
    /// Rooms the clients fill (50 each).
    pub fn rooms(&self) -> u32 {
        self.clients.div_ceil(50)
    }

    /// The module uploaded `k`-th (from 0): v2 first, then v1, in turn.
    fn module(&self, room: &str, k: u32) -> PathBuf {
        if k.is_multiple_of(2) {
            self.variants.join(format!("{room}-v2.wasm"))
        } else {
            self.plugins.join(format!("{room}.wasm"))
        }
    }
}

/// The deploy workload's plan, or why it cannot run (no redis-server, no plugin builds).
pub fn plan(args: &Args, target: &Path, host: server::Spec) -> anyhow::Result<Result<DeployPlan, String>> {
    let Some(redis) = find_redis(args) else {
        return Ok(Err("no redis-server (bench/setup.sh, or apt-get install redis-server)".to_owned()));
    };
    let plugins = target.join("plugins");
    let variants = target.join("plugin-variants");
    for file in [plugins.join("arena.wasm"), plugins.join("echo.wasm")]
        .into_iter()
        .chain([variants.join("arena-v2.wasm"), variants.join("echo-v2.wasm")])
    {
        if !file.is_file() {
            return Ok(Err(format!("no {} (just plugins)", file.display())));
        }
    }
    let q = args.quick;
    let uploads = args.deploy_uploads.unwrap_or(if q { 5 } else { 20 });
    let migrations = args.deploy_migrations.unwrap_or(if q { 3 } else { 10 });
    let clients = args.deploy_clients.unwrap_or(if q { 100 } else { 500 });
    anyhow::ensure!(uploads > 0 || migrations > 0, "--deploy-uploads and --deploy-migrations are both 0");
    if migrations > 0 && !clients.is_multiple_of(50) {
        eprintln!("odeon-bench: warning: {clients} deploy-workload clients leave the last room not full");
    }
    Ok(Ok(DeployPlan { uploads, migrations, clients, host, redis, plugins, variants }))
}

/// The deploy-latency uploads under one pinning of the hosts.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// A short name for the pinning.
    pub label: &'static str,
    /// How the hosts were pinned.
    pub pinning: String,
    /// The uploads, in order.
    pub uploads: Vec<Upload>,
    /// CPU the machine spent on anything but the hosts, redis-server and the bench while the
    /// uploads ran, % of one core: other work sharing the machine, which makes the times noisy.
    pub other_cpu_pct: Option<f64>,
}

/// The workload's one run.
#[derive(Debug, Clone, Default)]
pub struct DeployRecord {
    /// The deploy-latency uploads, one series per pinning of the hosts.
    pub latency: Vec<Series>,
    /// The migrations, in order.
    pub migrations: Vec<Upload>,
    /// The loadgen's summary, if it produced one.
    pub summary: Option<crate::summary::Summary>,
    /// Host 1's rooms when the migrations began (from its health).
    pub rooms_at_start: Option<u64>,
    /// CPU the machine spent on anything but the hosts, redis-server, the loadgen and the bench
    /// during the migrations, % of one core.
    pub migration_other_cpu_pct: Option<f64>,
    /// Things worth a note that did not stop the run.
    pub notes: Vec<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Why the first attempt failed, if this is a retry.
    pub retried_after: Option<String>,
    /// Command lines: redis-server, the hosts, the loadgen.
    pub commands: Vec<String>,
}

/// The process id of host `i` (from 1).
pub fn process_id(i: usize) -> String {
    format!("deploy-host-{i}")
}

/// Runs the workload, retried once if it fails.
pub fn run(plan: &Plan, dp: &DeployPlan) -> DeployRecord {
    eprintln!("odeon-bench: deploy ({HOSTS} hosts, {} clients) …", dp.clients);
    let mut record = run_once(plan, dp);
    if let Some(e) = record.error.take() {
        eprintln!("odeon-bench: deploy failed, retrying once: {e}");
        record = run_once(plan, dp);
        record.retried_after = Some(e);
    }
    if let Some(e) = &record.error {
        eprintln!("odeon-bench: deploy failed: {e}");
    }
    record
}

fn run_once(plan: &Plan, dp: &DeployPlan) -> DeployRecord {
    let mut record = DeployRecord::default();
    if let Err(e) = run_inner(plan, dp, &mut record) {
        record.error = Some(format!("{e:#}"));
    }
    record
}

/// Each host's plugins directory, removed on drop.
pub(super) struct PluginDirs(pub(super) Vec<PathBuf>);

impl PluginDirs {
    /// `hosts` directories named after `workload`, each with a copy of `files` from `plugins`.
    pub(super) fn new(
        plugins: &Path,
        hosts: usize,
        files: &[&str],
        workload: &str,
    ) -> anyhow::Result<PluginDirs> {
        let mut dirs = PluginDirs(Vec::new());
        for i in 1..=hosts {
            let dir = std::env::temp_dir().join(format!("odeon-bench-{workload}-{}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dirs.0.push(dir.clone());
            for file in files {
                std::fs::copy(plugins.join(file), dir.join(file))
                    .with_context(|| format!("copying {file} to {}", dir.display()))?;
            }
        }
        Ok(dirs)
    }
}

impl Drop for PluginDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A host's health: the live processes it sees and its rooms.
pub(super) fn health(port: u16) -> Option<(usize, u64)> {
    let (status, body) = server::http_get(port, "/odeon/health")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
    Some((v.get("processes")?.as_array()?.len(), v.get("rooms")?.as_u64()?))
}

/// Polls `f` every 100 ms until it holds or `within` passes; whether it held.
pub(super) fn poll(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// CPU the machine spends on anything but `ours`, from when it was started.
pub(super) struct Other<'a> {
    ours: &'a [Pid],
    at: Instant,
    busy: Option<Duration>,
}

impl<'a> Other<'a> {
    fn busy(ours: &[Pid]) -> Option<Duration> {
        let ours = ours.iter().map(|&p| proc::cpu_time(p)).sum::<Option<Duration>>()?;
        proc::machine_busy()?.checked_sub(ours)
    }

    pub(super) fn start(ours: &'a [Pid]) -> Self {
        Other { ours, at: Instant::now(), busy: Other::busy(ours) }
    }

    /// Since the start, % of one core (one decimal).
    pub(super) fn pct(&self) -> Option<f64> {
        let spent = Other::busy(self.ours)?.saturating_sub(self.busy?);
        Some((spent.as_secs_f64() / self.at.elapsed().as_secs_f64() * 1000.0).round() / 10.0)
    }
}

/// Moves every thread of `pid` to `cpu`.
fn repin(pid: u32, cpu: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset -a -p -c {cpu} {pid} exited with {status}");
    Ok(())
}

/// `dp.uploads` uploads of echo to host 1, one after the other: v2 and v1 in turn, counting
/// from `first` (an even count starts with v2).
fn latency_series(
    port: u16,
    dp: &DeployPlan,
    ours: &[Pid],
    first: u32,
    label: &'static str,
    pinning: String,
) -> Series {
    eprintln!("odeon-bench: deploy latency, {pinning}");
    let mut series = Series { label, pinning, uploads: Vec::new(), other_cpu_pct: None };
    let other = Other::start(ours);
    for k in 0..dp.uploads {
        let up = upload(port, &dp.module("echo", first + k), false);
        eprintln!(
            "odeon-bench: upload {} of {} ({}): {}",
            k + 1,
            dp.uploads,
            up.file,
            match (up.ms, up.failure(HOSTS)) {
                (_, Some(e)) => e,
                (Some(ms), None) => format!("{ms:.1} ms"),
                (None, None) => "no answer".to_owned(),
            }
        );
        series.uploads.push(up);
        std::thread::sleep(Duration::from_millis(200));
    }
    series.other_cpu_pct = other.pct();
    series
}

fn run_inner(plan: &Plan, dp: &DeployPlan, record: &mut DeployRecord) -> anyhow::Result<()> {
    let (first_cpu, rest_cpu) = match &plan.pin {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    let dir = &plan.results_dir;
    let cwd = &dp.host.cwd;
    let plugin_dirs = PluginDirs::new(&dp.plugins, HOSTS, &["arena.wasm", "echo.wasm"], "deploy")?;
    let (mut redis, redis_url) = start_redis(&dp.redis, cwd, rest_cpu, &dir.join("deploy.redis.log"))?;
    record.commands.push(redis.command_line.clone());

    let start_host = |i: usize, record: &mut DeployRecord| -> anyhow::Result<Running> {
        let port = server::free_port()?;
        let args: Vec<OsString> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string().into(),
            "--plugins".into(),
            plugin_dirs.0[i - 1].clone().into(),
            "--no-watch".into(),
            "--matchmake-rate".into(),
            "0".into(),
            "--room-creates-per-min".into(),
            "0".into(),
            "--redis-url".into(),
            redis_url.clone().into(),
            "--admin-token".into(),
            TOKEN.into(),
            "--process-id".into(),
            process_id(i).into(),
        ];
        let cpu = if i == 1 { first_cpu } else { rest_cpu };
        let log = dir.join(format!("deploy-host-{i}.server.log"));
        let guard = launch(&dp.host.program, args, cwd, cpu, &log, port)?;
        record.commands.push(guard.command_line.clone());
        Ok(guard)
    };
    let ready = |h: &Running, i: usize| {
        h.wait_until(&format!("host {i}"), Duration::from_secs(90), || {
            server::http_ok(h.port, "/odeon/health")
        })
    };
    let mut hosts = vec![start_host(1, record)?];
    ready(&hosts[0], 1)?;
    let port = hosts[0].port;

    let mut loadgen_status = None;
    if dp.migrations > 0 {
        // Rooms only on host 1: hosts 2 and 3 start once the clients have joined.
        let warmup = plan.warmup_secs;
        // A cap: the bench ends the window once the last migration has answered.
        let per_migration = SPACING.as_secs_f64() + 12.0;
        let measure = plan.measure_secs.max(dp.migrations as f64 * per_migration + 10.0);
        let json = dir.join(format!("deploy-{}.json", dp.clients));
        let args: Vec<String> = vec![
            "--endpoint".into(),
            format!("http://127.0.0.1:{port}"),
            "--room".into(),
            "arena".into(),
            "--clients".into(),
            dp.clients.to_string(),
            "--idle".into(),
            "0".into(),
            "--rate-hz".into(),
            plan.rate_hz.to_string(),
            "--warmup-secs".into(),
            warmup.to_string(),
            "--measure-secs".into(),
            measure.to_string(),
            "--server-pid".into(),
            hosts[0].pid.to_string(),
            "--join-concurrency".into(),
            "50".into(),
            "--json".into(),
            json.display().to_string(),
            "--end-on-stdin-close".into(),
        ];
        record.commands.push(super::loadgen_command_line(plan, rest_cpu, &args));
        let mut loadgen = Background::spawn(plan, rest_cpu, &args, &json, warmup + measure)?;
        if !poll(Duration::from_secs(300), || loadgen.joined() || loadgen.exited()) || !loadgen.joined() {
            bail!("the loadgen ended or stalled before its clients joined");
        }
        // The loadgen starts its clients 100 ms after the join phase, then warms up.
        let window_start = Instant::now() + Duration::from_millis(100) + Duration::from_secs_f64(warmup);
        let window_end = window_start + Duration::from_secs_f64(measure);
        for i in 2..=HOSTS {
            hosts.push(start_host(i, record)?);
        }
        for (i, h) in hosts.iter().enumerate().skip(1) {
            ready(h, i + 1)?;
        }
        if !poll(Duration::from_secs(30), || health(port).is_some_and(|(p, _)| p == HOSTS)) {
            bail!("host 1 did not list {HOSTS} live hosts within 30 s");
        }
        record.rooms_at_start = health(port).map(|(_, rooms)| rooms);
        let ours: Vec<Pid> = hosts
            .iter()
            .chain([&redis])
            .map(|r| Pid::Id(r.pid))
            .chain([Pid::Id(loadgen.pid()), Pid::SelfProcess])
            .collect();
        let other = Other::start(&ours);
        let t0 = Instant::now().max(window_start + Duration::from_millis(500));
        for k in 0..dp.migrations {
            sleep_until(t0 + SPACING * k);
            if loadgen.exited() {
                record
                    .notes
                    .push(format!("the loadgen ended before migration {}; the rest were not run", k + 1));
                break;
            }
            let mut up = upload(port, &dp.module("arena", k), true);
            up.in_window = Instant::now() <= window_end;
            eprintln!(
                "odeon-bench: migration {} to {}: {}",
                k + 1,
                up.file,
                match (&up.error, up.migration_of(&process_id(1))) {
                    (Some(e), _) => e.clone(),
                    (None, Some(m)) => format!("{} migrated, max pause {} µs", m.migrated, m.pause_max_us),
                    (None, None) => "no migration from host 1".to_owned(),
                }
            );
            record.migrations.push(up);
        }
        // A second of play on the last version, then the window ends.
        std::thread::sleep(Duration::from_secs(1));
        record.migration_other_cpu_pct = other.pct();
        loadgen.end_window();
        loadgen_status = Some(loadgen.wait()?);
        record.summary = super::read_summary(&json)?;
        // Its sockets are reset; the emptied rooms go away before the uploads are timed.
        if !poll(Duration::from_secs(20), || health(port).is_some_and(|(_, rooms)| rooms == 0)) {
            record.notes.push("host 1 still had rooms 20 s after the loadgen ended".to_owned());
        }
    } else {
        for i in 2..=HOSTS {
            hosts.push(start_host(i, record)?);
        }
        for (i, h) in hosts.iter().enumerate().skip(1) {
            ready(h, i + 1)?;
        }
        if !poll(Duration::from_secs(30), || health(port).is_some_and(|(p, _)| p == HOSTS)) {
            bail!("host 1 did not list {HOSTS} live hosts within 30 s");
        }
    }

    if dp.uploads > 0 {
        let ours: Vec<Pid> =
            hosts.iter().chain([&redis]).map(|r| Pid::Id(r.pid)).chain([Pid::SelfProcess]).collect();
        match (first_cpu, rest_cpu) {
            (Some(a), Some(b)) => {
                let pinning =
                    format!("host 1 on CPU {a}, hosts 2 and 3 sharing CPU {b} (as in the migrations)");
                record.latency.push(latency_series(
                    port,
                    dp,
                    &ours,
                    0,
                    "hosts 2 and 3 share a core",
                    pinning,
                ));
                // Host 1 compiles before it announces, hosts 2 and 3 after it, together: with host
                // 3 next to host 1, each compiling host has a core of its own, as on three machines.
                repin(hosts[2].pid, a)?;
                let pinning =
                    format!("hosts 1 and 3 on CPU {a}, host 2 on CPU {b} (a core per compiling host)");
                // Counting on from the first series: the first upload is not the version that is active.
                let series =
                    latency_series(port, dp, &ours, dp.uploads, "a core per compiling host", pinning);
                record.latency.push(series);
            }
            _ => {
                record.latency.push(latency_series(port, dp, &ours, 0, "not pinned", "not pinned".to_owned()))
            }
        }
    }

    let mut died: Vec<String> = Vec::new();
    if redis.exited() {
        died.push("redis-server".to_owned());
    }
    for (i, h) in hosts.iter().enumerate() {
        if h.exited() {
            died.push(format!("host {}", i + 1));
        }
    }
    for h in &mut hosts {
        h.stop();
    }
    redis.stop();
    drop(plugin_dirs);
    if !died.is_empty() {
        bail!("{} exited during the run; logs in {}", died.join(" and "), dir.display());
    }
    if let Some(status) = loadgen_status
        && !status.success()
    {
        bail!("loadgen exited with {status}");
    }
    Ok(())
}
