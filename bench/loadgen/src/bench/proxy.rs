//! The proxy workload: one Odeon host with N active arena clients, reached directly, through
//! `odeon-proxy` and through nginx, in one run, so the proxy's own cost (CPU per relayed frame,
//! memory per client) and the latency it adds are measured against a baseline on the same
//! machine state.
//!
//! The variants run in `--proxy-rounds` rounds, each round in the order of the one before
//! rotated by one ([`proxy_rounds::round_order`]); the report gives the medians over rounds.
//!
//! Every run gets a fresh redis-server (the hosts' registry), a fresh host with
//! `--redis-url … --behind-proxy` (the same host configuration in all three) and, for the two
//! proxies, a fresh proxy. With two cores and pinning, the proxy under test runs alone on the
//! first CPU, and the host, redis-server and the loadgen share the second, in every variant: the
//! direct row differs from the others only by the missing hop, and the proxy's CPU figures are
//! its own, undisturbed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use super::server::{self, Launch, Running};
use super::{Args, Plan, nginx, proxy_rounds};
use crate::proc::{self, Pid};
use crate::summary::Summary;

/// How the clients reach the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// Straight to the host.
    Direct,
    /// Through `odeon-proxy` (discovering the host in Redis).
    OdeonProxy,
    /// Through nginx, a plain WebSocket reverse proxy to the host.
    Nginx,
}

impl Variant {
    /// Display name, also the `--proxy-variants` value.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::OdeonProxy => "odeon-proxy",
            Variant::Nginx => "nginx",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Variant> {
        match s {
            "direct" => Ok(Variant::Direct),
            "odeon-proxy" => Ok(Variant::OdeonProxy),
            "nginx" => Ok(Variant::Nginx),
            other => bail!("unknown proxy variant {other:?} (direct, odeon-proxy, nginx)"),
        }
    }
}

/// What the proxy workload runs.
#[derive(Debug, Clone)]
pub struct ProxyPlan {
    /// Active clients (no idle ones).
    pub clients: u32,
    /// Colyseus PINGs per client per second (the round-trip probe).
    pub ping_hz: f64,
    /// Variants in round 1's order.
    pub variants: Vec<Variant>,
    /// Rounds of every variant (`--proxy-rounds`).
    pub rounds: u32,
    /// Variants skipped, with why.
    pub skipped: Vec<(Variant, String)>,
    /// The host, as the server comparison runs it (without Redis and the proxy flags).
    pub host: server::Spec,
    /// redis-server.
    pub redis: PathBuf,
    /// odeon-proxy, if that variant runs.
    pub proxy_bin: Option<PathBuf>,
    /// nginx, if that variant runs.
    pub nginx_bin: Option<PathBuf>,
}

/// The odeon-proxy binary the bench uses by default: the release build, or with `--quick` the
/// debug build when there is no release build.
pub(super) fn default_proxy_bin(target: &Path, quick: bool) -> PathBuf {
    let release = target.join("release/odeon-proxy");
    let debug = target.join("debug/odeon-proxy");
    if !release.exists() && quick && debug.exists() {
        eprintln!("odeon-bench: no release odeon-proxy; --quick uses the debug build {}", debug.display());
        debug
    } else {
        release
    }
}

/// redis-server: `--redis-server`, or `$ODEON_REDIS_SERVER`, or `redis-server` on PATH.
pub fn find_redis(args: &Args) -> Option<PathBuf> {
    let redis = args
        .redis_server
        .clone()
        .or_else(|| std::env::var_os("ODEON_REDIS_SERVER").map(PathBuf::from))
        .or_else(|| super::which("redis-server"));
    redis.filter(|r| r.is_file())
}

/// The proxy workload's plan, or why it cannot run at all (no redis-server). A variant whose
/// program is missing is skipped with a message, as Colyseus is.
pub fn plan(args: &Args, target: &Path, host: server::Spec) -> anyhow::Result<Result<ProxyPlan, String>> {
    let mut variants = Vec::new();
    for name in &args.proxy_variants {
        let v = Variant::parse(name)?;
        if !variants.contains(&v) {
            variants.push(v);
        }
    }
    let Some(redis) = find_redis(args) else {
        return Ok(Err("no redis-server (bench/setup.sh, or apt-get install redis-server)".to_owned()));
    };
    let mut skipped = Vec::new();
    let proxy_bin = args.proxy_bin.clone().unwrap_or_else(|| default_proxy_bin(target, args.quick));
    let proxy_bin = if proxy_bin.is_file() {
        Some(proxy_bin)
    } else {
        if variants.contains(&Variant::OdeonProxy) {
            let why =
                format!("no odeon-proxy at {} (cargo build --release -p odeon-proxy)", proxy_bin.display());
            skipped.push((Variant::OdeonProxy, why));
        }
        None
    };
    let nginx_bin = args.nginx_bin.clone().or_else(nginx::find).filter(|n| n.is_file());
    if nginx_bin.is_none() && variants.contains(&Variant::Nginx) {
        skipped.push((
            Variant::Nginx,
            "nginx is not installed (bench/setup.sh installs nginx-light)".to_owned(),
        ));
    }
    for (v, why) in &skipped {
        eprintln!("odeon-bench: skipping the {} variant of the proxy workload: {why}", v.name());
    }
    variants.retain(|v| !skipped.iter().any(|(s, _)| s == v));
    if variants.is_empty() {
        return Ok(Err("every variant was skipped".to_owned()));
    }
    let rounds = args.proxy_rounds.unwrap_or(if args.quick { 1 } else { 3 });
    anyhow::ensure!(rounds > 0, "--proxy-rounds must be positive");
    let clients = args.proxy_clients.unwrap_or(if args.quick { 100 } else { 500 });
    anyhow::ensure!(clients > 0, "--proxy-clients must be positive");
    if !clients.is_multiple_of(50) {
        eprintln!("odeon-bench: warning: {clients} proxy-workload clients leave the last room not full");
    }
    Ok(Ok(ProxyPlan {
        clients,
        ping_hz: args.proxy_ping_hz,
        variants,
        rounds,
        skipped,
        host,
        redis,
        proxy_bin,
        nginx_bin,
    }))
}

/// One variant's run in one round.
#[derive(Debug, Clone)]
pub struct ProxyRecord {
    /// Which path.
    pub variant: Variant,
    /// Which round, from 1.
    pub round: u32,
    /// The loadgen's summary, if it produced one.
    pub summary: Option<Summary>,
    /// The proxy's VmRSS before any client, KiB (nginx: its worker's).
    pub proxy_empty_rss_kib: Option<u64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Why the first attempt failed, if this is a retry.
    pub retried_after: Option<String>,
    /// Command lines: redis-server, host, proxy (if any), loadgen.
    pub commands: Vec<String>,
}

/// What a run's files in the results directory are called: `proxy-<clients>-<variant>`, with
/// the round (`proxy-<clients>-r<round>-<variant>`) when there is more than one.
fn run_name(pp: &ProxyPlan, round: u32, variant: Variant) -> String {
    if pp.rounds > 1 {
        format!("proxy-{}-r{round}-{}", pp.clients, variant.name())
    } else {
        format!("proxy-{}-{}", pp.clients, variant.name())
    }
}

/// Runs every round, each its variants in [`proxy_rounds::round_order`], each run retried once
/// on failure.
pub fn run_all(plan: &Plan, pp: &ProxyPlan) -> Vec<ProxyRecord> {
    let mut records = Vec::new();
    for round in 1..=pp.rounds {
        for variant in proxy_rounds::round_order(&pp.variants, round) {
            let name = run_name(pp, round, variant);
            eprintln!("odeon-bench: {name} (round {round} of {}) …", pp.rounds);
            let mut record = run_one(plan, pp, round, variant);
            if let Some(e) = record.error.take() {
                eprintln!("odeon-bench: {name} failed, retrying once: {e}");
                record = run_one(plan, pp, round, variant);
                record.retried_after = Some(e);
            }
            if let Some(e) = &record.error {
                eprintln!("odeon-bench: {name} failed: {e}");
            }
            records.push(record);
        }
    }
    records
}

fn run_one(plan: &Plan, pp: &ProxyPlan, round: u32, variant: Variant) -> ProxyRecord {
    let mut record = ProxyRecord {
        variant,
        round,
        summary: None,
        proxy_empty_rss_kib: None,
        error: None,
        retried_after: None,
        commands: Vec::new(),
    };
    if let Err(e) = run_one_inner(plan, pp, &mut record) {
        record.error = Some(format!("{e:#}"));
    }
    record
}

fn taskset_prefix(cpu: Option<&str>) -> String {
    cpu.map(|c| format!("taskset -c {c} ")).unwrap_or_default()
}

fn command_line(cpu: Option<&str>, program: &Path, args: &[OsString]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{}{} {}", taskset_prefix(cpu), program.display(), args.join(" "))
}

/// Starts `program` with `args` under the bench's usual guard (own group, clean environment,
/// pinned, log in the results directory).
pub(super) fn launch(
    program: &Path,
    args: Vec<OsString>,
    cwd: &Path,
    cpu: Option<&str>,
    log: &Path,
    port: u16,
) -> anyhow::Result<Running> {
    let line = command_line(cpu, program, &args);
    let l = Launch { program, args, cwd, env: Vec::new(), cpu, log, watch_stdout: false };
    Ok(l.spawn(port, line)?.0)
}

/// Starts a fresh redis-server without persistence on a free port, and waits until it accepts
/// connections; returns its guard (whose command line is quoted as a shell needs) and its URL.
pub(super) fn start_redis(
    redis: &Path,
    cwd: &Path,
    cpu: Option<&str>,
    log: &Path,
) -> anyhow::Result<(Running, String)> {
    let port = server::free_port()?;
    let args: Vec<OsString> =
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(OsString::from)
            .collect();
    let mut guard = launch(redis, args, cwd, cpu, log, port)?;
    guard.command_line = guard.command_line.replace(" --save  ", " --save '' ");
    guard.wait_until("redis-server", Duration::from_secs(10), || server::port_accepts(port))?;
    Ok((guard, format!("redis://127.0.0.1:{port}")))
}

/// The processes a proxy variant runs in front of the host: the guard, the pid whose CPU and
/// memory are the proxy's (nginx: its worker, not the master), and nginx's prefix, removed once
/// it has stopped.
struct Front {
    guard: Running,
    pid: u32,
    prefix: Option<PathBuf>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.guard.stop();
        if let Some(prefix) = &self.prefix {
            let _ = std::fs::remove_dir_all(prefix);
        }
    }
}

fn run_one_inner(plan: &Plan, pp: &ProxyPlan, record: &mut ProxyRecord) -> anyhow::Result<()> {
    let variant = record.variant;
    let (proxy_cpu, host_cpu) = match &plan.pin {
        Some((p, h)) => (Some(p.as_str()), Some(h.as_str())),
        None => (None, None),
    };
    let name = run_name(pp, record.round, variant);
    let dir = &plan.results_dir;
    let cwd = &pp.host.cwd;

    let (mut redis, redis_url) =
        start_redis(&pp.redis, cwd, host_cpu, &dir.join(format!("{name}.redis.log")))?;
    record.commands.push(redis.command_line.clone());

    let host_port = server::free_port()?;
    let mut host_args = pp.host.args.clone();
    host_args.extend(["--port".into(), host_port.to_string().into()]);
    host_args.extend(["--redis-url".into(), redis_url.clone().into(), "--behind-proxy".into()]);
    let host_log = dir.join(format!("{name}.server.log"));
    let mut host = launch(&pp.host.program, host_args, cwd, host_cpu, &host_log, host_port)?;
    record.commands.push(host.command_line.clone());
    host.wait_until("Odeon", Duration::from_secs(90), || server::http_ok(host_port, "/odeon/health"))?;

    let (front_port, mut front) = match variant {
        Variant::Direct => (host_port, None),
        Variant::OdeonProxy => {
            let bin = pp.proxy_bin.as_deref().context("no odeon-proxy binary")?;
            let port = server::free_port()?;
            let args: Vec<OsString> =
                ["--bind", "127.0.0.1", "--port", &port.to_string(), "--redis-url", &redis_url]
                    .iter()
                    .map(OsString::from)
                    .collect();
            let log = dir.join(format!("{name}.proxy.log"));
            let guard = launch(bin, args, cwd, proxy_cpu, &log, port)?;
            record.commands.push(guard.command_line.clone());
            // Ready once it routes to the host: its health lists the host's process.
            guard.wait_until("odeon-proxy", Duration::from_secs(30), || {
                server::http_get(port, "/health")
                    .is_some_and(|(status, body)| status == 200 && lists_processes(&body))
            })?;
            let pid = guard.pid;
            (port, Some(Front { guard, pid, prefix: None }))
        }
        Variant::Nginx => {
            let bin = pp.nginx_bin.as_deref().context("no nginx binary")?;
            let port = server::free_port()?;
            let prefix =
                std::env::temp_dir().join(format!("odeon-bench-nginx-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
            let error_log = dir.join(format!("{name}.nginx-error.log"));
            let conf_path = dir.join(format!("{name}.nginx.conf"));
            let conf = nginx::conf(&nginx::Conf {
                port,
                upstream_port: host_port,
                clients: pp.clients,
                prefix: &prefix,
                error_log: &error_log,
            });
            std::fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
            let args: Vec<OsString> = vec![
                "-p".into(),
                prefix.clone().into(),
                "-e".into(),
                error_log.clone().into(),
                "-c".into(),
                conf_path.into(),
                "-g".into(),
                "daemon off;".into(),
            ];
            let log = dir.join(format!("{name}.proxy.log"));
            let guard = match launch(bin, args, cwd, proxy_cpu, &log, port) {
                Ok(g) => g,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&prefix);
                    return Err(e);
                }
            };
            record.commands.push(guard.command_line.replace("daemon off;", "'daemon off;'"));
            let master = guard.pid;
            let mut front = Front { guard, pid: 0, prefix: Some(prefix) };
            // Ready once the host answers through it and its worker is up.
            front.guard.wait_until("nginx", Duration::from_secs(30), || {
                server::http_ok(port, "/odeon/health") && nginx::worker_pid(master).is_some()
            })?;
            front.pid = nginx::worker_pid(master).context("nginx has no worker process")?;
            (port, Some(front))
        }
    };

    // Let start-up allocation settle before taking the empty footprint.
    std::thread::sleep(Duration::from_secs(1));
    let proxy_pid = front.as_ref().map(|f| f.pid);
    record.proxy_empty_rss_kib = proxy_pid.and_then(|pid| proc::rss_kib(Pid::Id(pid)));

    let json = dir.join(format!("{name}.json"));
    let mut args: Vec<String> = vec![
        "--endpoint".into(),
        format!("http://127.0.0.1:{front_port}"),
        "--room".into(),
        "arena".into(),
        "--clients".into(),
        pp.clients.to_string(),
        "--idle".into(),
        "0".into(),
        "--rate-hz".into(),
        plan.rate_hz.to_string(),
        "--ping-hz".into(),
        pp.ping_hz.to_string(),
        "--warmup-secs".into(),
        plan.warmup_secs.to_string(),
        "--measure-secs".into(),
        plan.measure_secs.to_string(),
        "--server-pid".into(),
        host.pid.to_string(),
    ];
    if let Some(pid) = proxy_pid {
        args.extend(["--proxy-pid".into(), pid.to_string()]);
    }
    args.extend(["--join-concurrency".into(), "50".into(), "--json".into(), json.display().to_string()]);
    record.commands.push(super::loadgen_command_line(plan, host_cpu, &args));
    let status = super::run_loadgen(plan, host_cpu, &args, &json)?;
    let died: Vec<&str> = [
        ("redis-server", redis.exited()),
        ("the host", host.exited()),
        (variant.name(), proxy_pid.is_some_and(server::gone)),
    ]
    .iter()
    .filter(|(_, d)| *d)
    .map(|(n, _)| *n)
    .collect();
    front.take();
    host.stop();
    redis.stop();
    record.summary = super::read_summary(&json)?;
    if !died.is_empty() {
        bail!("{} exited during the run; logs in {}", died.join(" and "), dir.display());
    }
    if !status.success() {
        bail!("loadgen exited with {status}");
    }
    Ok(())
}

/// Whether odeon-proxy's health body names at least one process (`"processes":["…"]`).
pub(super) fn lists_processes(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("processes")?.as_array().map(|p| !p.is_empty()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_lists_processes_only_when_there_are_some() {
        assert!(lists_processes(r#"{"status":"ok","processes":["abc"],"connections":0}"#));
        assert!(!lists_processes(r#"{"status":"ok","processes":[],"connections":0}"#));
        assert!(!lists_processes("not json"));
    }

    #[test]
    fn variants_parse_by_name() {
        for v in [Variant::Direct, Variant::OdeonProxy, Variant::Nginx] {
            assert_eq!(Variant::parse(v.name()).unwrap(), v);
        }
        assert!(Variant::parse("haproxy").is_err());
    }
}
