//! `odeon-bench`: every workload against both servers, alternating, then the report.
//!
//! For each workload and each server (Odeon then Colyseus, so both see the same machine state)
//! it starts a fresh server pinned to CPU 0, measures its empty RSS, runs `odeon-loadgen` pinned
//! to CPU 1 against it, and stops it. Results go to a Markdown section (stdout and `--out`) and
//! an SVG plot (`--svg`); raw JSON summaries and server logs stay in the results directory.
//!
//! Then the proxy workload ([`proxy`]): one Odeon host reached directly, through `odeon-proxy`
//! and through nginx, in rounds ([`proxy_rounds`]), reported in a section of its own
//! ([`proxy_report`]).
//!
//! Then the deploy workload ([`deploy`]): uploads and live migrations on three hosts sharing
//! Redis, with arena clients playing on the first, reported in a section of its own
//! ([`deploy_report`]); and the drain workload ([`drain`], [`drain_report`]): a host's rooms
//! moved to another while their clients play through `odeon-proxy`.

pub mod compare;
pub mod deploy;
pub mod deploy_answer;
pub mod deploy_report;
pub mod drain;
pub mod drain_report;
pub mod loadgen_run;
pub mod nginx;
pub mod proxy;
pub mod proxy_report;
pub mod proxy_rounds;
pub mod report;
pub mod server;
pub mod svg;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use clap::Parser;

use crate::summary::Summary;
use crate::sys;
pub use loadgen_run::{loadgen_command_line, read_summary, run_loadgen};
use server::Kind;

/// Runs the whole benchmark: Odeon against Colyseus 0.18 at several sizes.
#[derive(Debug, Clone, Parser)]
#[command(name = "odeon-bench", version)]
pub struct Args {
    /// Smoke run: 100 clients, 1 s warm-up, 3 s window (the pipeline in under a minute per server).
    #[arg(long)]
    pub quick: bool,
    /// Workload groups to run, in this order: `active`, `idle`, `mixed` (Odeon against
    /// Colyseus), `proxy` (odeon-proxy against nginx in front of one host), `deploy`
    /// (deploys and live migrations across three hosts) and `drain` (a host's rooms moved to
    /// another, clients through odeon-proxy).
    #[arg(long, value_delimiter = ',', default_value = "active,idle,mixed,proxy,deploy,drain")]
    pub workloads: Vec<String>,
    /// Also write the Markdown section to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the SVG plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Active-client sizes (no idle clients) [default: 500,1000,2000; quick: 100].
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u32>>,
    /// Idle-client counts, each run alone and with --mixed-active active clients
    /// [default: 5000,10000,17000; quick: 100].
    #[arg(long, value_delimiter = ',')]
    pub idle: Option<Vec<u32>>,
    /// Active clients next to the idle ones [default: 2000; quick: 100].
    #[arg(long)]
    pub mixed_active: Option<u32>,
    /// Warm-up seconds [default: 5; quick: 1].
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// Measure-window seconds [default: 20; quick: 3].
    #[arg(long)]
    pub measure_secs: Option<f64>,
    /// Moves per second per active client.
    #[arg(long, default_value_t = 10.0)]
    pub rate_hz: f64,
    /// Servers to run, in this order per workload.
    #[arg(long, value_delimiter = ',', default_value = "odeon,colyseus")]
    pub servers: Vec<String>,
    /// The Odeon host [default: $CARGO_TARGET_DIR/release/odeon-host; with --quick the debug
    /// build if there is no release build].
    #[arg(long)]
    pub host_bin: Option<PathBuf>,
    /// Plugins directory [default: `arena.wasm` alone, copied from $CARGO_TARGET_DIR/plugins
    /// (built by `just plugins`) to $CARGO_TARGET_DIR/bench-plugins].
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// The loadgen binary [default: `odeon-loadgen` next to this binary].
    #[arg(long)]
    pub loadgen: Option<PathBuf>,
    /// Repository root [default: the one this crate was built from].
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Where raw JSON summaries and server logs go [default: $CARGO_TARGET_DIR/bench-results/<time>].
    #[arg(long)]
    pub results_dir: Option<PathBuf>,
    /// Active clients of the proxy workload [default: 500; quick: 100].
    #[arg(long)]
    pub proxy_clients: Option<u32>,
    /// Rounds of the proxy workload: each runs every variant, in the previous round's order
    /// rotated by one; the report gives the medians over rounds [default: 3; quick: 1].
    #[arg(long)]
    pub proxy_rounds: Option<u32>,
    /// Variants of the proxy workload, in this order (in round 1).
    #[arg(long, value_delimiter = ',', default_value = "direct,odeon-proxy,nginx")]
    pub proxy_variants: Vec<String>,
    /// Colyseus PINGs per client per second in the proxy workload: the round trip without the
    /// patch interval.
    #[arg(long, default_value_t = 1.0)]
    pub proxy_ping_hz: f64,
    /// The odeon-proxy binary of the proxy and drain workloads [default:
    /// $CARGO_TARGET_DIR/release/odeon-proxy; with --quick the debug build if there is no release
    /// build].
    #[arg(long)]
    pub proxy_bin: Option<PathBuf>,
    /// nginx [default: `nginx` on PATH, or /usr/sbin/nginx; without it that variant is skipped].
    #[arg(long)]
    pub nginx_bin: Option<PathBuf>,
    /// redis-server for the proxy, deploy and drain workloads [default: $ODEON_REDIS_SERVER, or
    /// `redis-server` on PATH].
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// Timed uploads of the deploy workload (echo, v2 and v1 in turn) [default: 20; quick: 5].
    #[arg(long)]
    pub deploy_uploads: Option<u32>,
    /// Live migrations of the deploy workload (arena, v2 and v1 in turn) [default: 10; quick: 3].
    #[arg(long)]
    pub deploy_migrations: Option<u32>,
    /// Active arena clients on the first host during the migrations [default: 500; quick: 100].
    #[arg(long)]
    pub deploy_clients: Option<u32>,
    /// Active arena clients (through odeon-proxy) on the drained host [default: 2000; quick: 200].
    #[arg(long)]
    pub drain_clients: Option<u32>,
}

/// What one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// N active clients, no idle ones.
    Active(u32),
    /// K idle clients only.
    Idle(u32),
    /// K idle clients, then N active ones.
    Mixed {
        /// Idle clients.
        idle: u32,
        /// Active clients.
        active: u32,
    },
}

impl Workload {
    /// `(active, idle)` clients.
    pub fn clients(self) -> (u32, u32) {
        match self {
            Workload::Active(n) => (n, 0),
            Workload::Idle(k) => (0, k),
            Workload::Mixed { idle, active } => (active, idle),
        }
    }

    /// A file-name-friendly label.
    pub fn label(self) -> String {
        match self {
            Workload::Active(n) => format!("active-{n}"),
            Workload::Idle(k) => format!("idle-{k}"),
            Workload::Mixed { idle, active } => format!("idle-{idle}+active-{active}"),
        }
    }
}

/// One server on one workload.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// What ran.
    pub workload: Workload,
    /// Against which server.
    pub server: Kind,
    /// The loadgen's summary, if it produced one.
    pub summary: Option<Summary>,
    /// Server VmRSS before any client, KiB.
    pub empty_rss_kib: Option<u64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Why the first attempt failed, if this is a retry.
    pub retried_after: Option<String>,
    /// Server command line.
    pub server_cmd: String,
    /// Loadgen command line.
    pub loadgen_cmd: String,
}

/// Settings shared by every run, and what the report prints about the machine.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Workloads in order.
    pub workloads: Vec<Workload>,
    /// Servers in order.
    pub servers: Vec<server::Spec>,
    /// Servers skipped, with why.
    pub skipped: Vec<(Kind, String)>,
    /// Warm-up seconds.
    pub warmup_secs: f64,
    /// Window seconds.
    pub measure_secs: f64,
    /// Moves per second per active client.
    pub rate_hz: f64,
    /// CPU lists for the server and the loadgen, if pinning.
    pub pin: Option<(String, String)>,
    /// The loadgen binary.
    pub loadgen: PathBuf,
    /// Raw results and logs.
    pub results_dir: PathBuf,
    /// Whether this is a --quick smoke run.
    pub quick: bool,
    /// The proxy workload, if selected (`Err`: why it cannot run).
    pub proxy: Option<Result<proxy::ProxyPlan, String>>,
    /// The deploy workload, if selected (`Err`: why it cannot run).
    pub deploy: Option<Result<deploy::DeployPlan, String>>,
    /// The drain workload, if selected (`Err`: why it cannot run).
    pub drain: Option<Result<drain::DrainPlan, String>>,
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(ok) if ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("odeon-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo.join("target"))
}

/// A plugins directory with only `arena`, the one room type the Colyseus peer defines, so both
/// servers load the same application (each further plugin adds its compiled code, about 1 MiB,
/// to every RSS figure of Odeon's).
fn arena_only(target: &Path) -> anyhow::Result<PathBuf> {
    let built = target.join("plugins/arena.wasm");
    if !built.exists() {
        bail!("no arena plugin at {} (just plugins)", built.display());
    }
    let dir = target.join("bench-plugins");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::copy(&built, dir.join("arena.wasm")).with_context(|| format!("copying {}", built.display()))?;
    Ok(dir)
}

fn plan(args: &Args) -> anyhow::Result<Plan> {
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let repo = repo.canonicalize().with_context(|| format!("repository root {}", repo.display()))?;
    let target = target_dir(&repo);
    let q = args.quick;
    let mut groups = Vec::new();
    for g in &args.workloads {
        match g.as_str() {
            "active" | "idle" | "mixed" | "proxy" | "deploy" | "drain" => {
                if !groups.contains(&g.as_str()) {
                    groups.push(g.as_str());
                }
            }
            other => bail!("unknown workload group {other:?} (active, idle, mixed, proxy, deploy, drain)"),
        }
    }
    let sizes = args.sizes.clone().unwrap_or(if q { vec![100] } else { vec![500, 1000, 2000] });
    let idle = args.idle.clone().unwrap_or(if q { vec![100] } else { vec![5000, 10000, 17000] });
    let mixed_active = args.mixed_active.unwrap_or(if q { 100 } else { 2000 });
    let mut workloads: Vec<Workload> = Vec::new();
    if groups.contains(&"active") {
        workloads.extend(sizes.iter().map(|&n| Workload::Active(n)));
    }
    if groups.contains(&"idle") {
        workloads.extend(idle.iter().map(|&k| Workload::Idle(k)));
    }
    if groups.contains(&"mixed") {
        workloads.extend(idle.iter().map(|&k| Workload::Mixed { idle: k, active: mixed_active }));
    }
    let idle_selected = groups.contains(&"idle") || groups.contains(&"mixed");
    if let Some(k) = idle.iter().find(|k| *k % 50 != 0).filter(|_| idle_selected) {
        eprintln!(
            "odeon-bench: warning: {k} idle clients is not a multiple of 50; some idle clients will share rooms with active ones"
        );
    }

    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    // The server comparison's servers; none when only the proxy or deploy workload runs.
    let server_names = if workloads.is_empty() { &[][..] } else { &args.servers[..] };
    for name in server_names {
        match name.as_str() {
            "odeon" => servers.push(odeon_spec(args, &target, &repo)?),
            "colyseus" => {
                let peer = repo.join("bench/colyseus-peer");
                if !peer.join("node_modules").is_dir() {
                    let why = format!(
                        "{} is missing (cd bench/colyseus-peer && npm ci)",
                        peer.join("node_modules").display()
                    );
                    eprintln!("odeon-bench: skipping Colyseus: {why}");
                    skipped.push((Kind::Colyseus, why));
                    continue;
                }
                servers.push(server::Spec {
                    kind: Kind::Colyseus,
                    program: which("node").context("node is not on PATH")?,
                    args: vec!["bench/colyseus-peer/server.mjs".into()],
                    cwd: repo.clone(),
                });
            }
            other => bail!("unknown server {other:?} (odeon, colyseus)"),
        }
    }
    if !workloads.is_empty() && servers.is_empty() {
        bail!("no server to run");
    }
    let proxy = if groups.contains(&"proxy") {
        let host = match servers.iter().find(|s| s.kind == Kind::Odeon) {
            Some(spec) => spec.clone(),
            None => odeon_spec(args, &target, &repo)?,
        };
        let p = proxy::plan(args, &target, host)?;
        if let Err(why) = &p {
            eprintln!("odeon-bench: skipping the proxy workload: {why}");
        }
        Some(p)
    } else {
        None
    };
    let deploy = if groups.contains(&"deploy") {
        let host = match servers.iter().find(|s| s.kind == Kind::Odeon) {
            Some(spec) => spec.clone(),
            None => odeon_spec(args, &target, &repo)?,
        };
        let d = deploy::plan(args, &target, host)?;
        if let Err(why) = &d {
            eprintln!("odeon-bench: skipping the deploy workload: {why}");
        }
        Some(d)
    } else {
        None
    };
    let drain = match groups.contains(&"drain") {
        true => {
            let d = drain::plan(args, &target, odeon_spec(args, &target, &repo)?)?;
            if let Err(why) = &d {
                eprintln!("odeon-bench: skipping the drain workload: {why}");
            }
            Some(d)
        }
        false => None,
    };
    let runs = |ok: Option<bool>| ok == Some(true);
    if workloads.is_empty()
        && !runs(proxy.as_ref().map(|p| p.is_ok()))
        && !runs(deploy.as_ref().map(|d| d.is_ok()))
        && !runs(drain.as_ref().map(|d| d.is_ok()))
    {
        bail!("nothing to run");
    }

    let loadgen = match &args.loadgen {
        Some(l) => l.clone(),
        None => std::env::current_exe()?.with_file_name("odeon-loadgen"),
    };
    if !loadgen.exists() {
        bail!("no loadgen at {} (cargo build --release -p odeon-loadgen)", loadgen.display());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = if cores >= 2 && which("taskset").is_some() {
        Some(("0".to_owned(), "1".to_owned()))
    } else {
        eprintln!(
            "odeon-bench: warning: not pinning (needs 2 cores and taskset); server and loadgen share the machine"
        );
        None
    };
    let stamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let results_dir =
        args.results_dir.clone().unwrap_or_else(|| target.join(format!("bench-results/{stamp}")));
    std::fs::create_dir_all(&results_dir).with_context(|| format!("creating {}", results_dir.display()))?;
    Ok(Plan {
        workloads,
        servers,
        skipped,
        warmup_secs: args.warmup_secs.unwrap_or(if q { 1.0 } else { 5.0 }),
        measure_secs: args.measure_secs.unwrap_or(if q { 3.0 } else { 20.0 }),
        rate_hz: args.rate_hz,
        pin,
        loadgen,
        results_dir,
        quick: q,
        proxy,
        deploy,
        drain,
    })
}

/// How the bench runs the Odeon host (without its port).
fn odeon_spec(args: &Args, target: &Path, repo: &Path) -> anyhow::Result<server::Spec> {
    let host = match &args.host_bin {
        Some(h) => h.clone(),
        None => {
            let release = target.join("release/odeon-host");
            let debug = target.join("debug/odeon-host");
            if !release.exists() && args.quick && debug.exists() {
                eprintln!("odeon-bench: no release host; --quick uses the debug build {}", debug.display());
                debug
            } else {
                release
            }
        }
    };
    if !host.exists() {
        bail!("no Odeon host at {} (cargo build --release -p odeon-host)", host.display());
    }
    let plugins = match &args.plugins {
        Some(dir) => dir.clone(),
        None => arena_only(target)?,
    };
    if !plugins.join("arena.wasm").exists() {
        bail!("no arena plugin in {} (just plugins)", plugins.display());
    }
    Ok(server::Spec {
        kind: Kind::Odeon,
        program: host,
        // Every simulated client comes from 127.0.0.1: no per-address limits.
        args: vec![
            "--plugins".into(),
            plugins.into(),
            "--no-watch".into(),
            "--matchmake-rate".into(),
            "0".into(),
            "--room-creates-per-min".into(),
            "0".into(),
        ],
        cwd: repo.to_owned(),
    })
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn run(args: &Args) -> anyhow::Result<bool> {
    // Children inherit the raised limit: the servers hold as many sockets as the loadgen.
    if let Err(e) = sys::raise_nofile_limit() {
        eprintln!("odeon-bench: warning: cannot raise RLIMIT_NOFILE: {e}");
    }
    let plan = plan(args)?;
    let started = Instant::now();
    let mut records = Vec::new();
    for &workload in &plan.workloads {
        for spec in &plan.servers {
            eprintln!("odeon-bench: {} / {} …", workload.label(), spec.kind.name());
            let mut record = compare::run_one(&plan, spec, workload);
            if let Some(e) = record.error.take() {
                // One retry: on a shared machine a server can be killed from outside.
                eprintln!(
                    "odeon-bench: {} / {} failed, retrying once: {e}",
                    workload.label(),
                    spec.kind.name()
                );
                record = compare::run_one(&plan, spec, workload);
                record.retried_after = Some(e);
            }
            if let Some(e) = &record.error {
                eprintln!("odeon-bench: {} / {} failed: {e}", workload.label(), spec.kind.name());
            }
            records.push(record);
        }
    }
    let proxy_records = match &plan.proxy {
        Some(Ok(pp)) => proxy::run_all(&plan, pp),
        _ => Vec::new(),
    };
    let deploy_record = match &plan.deploy {
        Some(Ok(dp)) => Some(deploy::run(&plan, dp)),
        _ => None,
    };
    let drain_record = match &plan.drain {
        Some(Ok(dp)) => Some(drain::run(&plan, dp)),
        _ => None,
    };
    let meta =
        report::Meta::collect(&plan, std::env::args().collect::<Vec<_>>().join(" "), started.elapsed());
    let mut markdown = String::new();
    if !plan.workloads.is_empty() {
        markdown.push_str(&report::markdown(&plan, &meta, &records));
    }
    if let Some(pp) = &plan.proxy {
        if !markdown.is_empty() {
            markdown.push('\n');
        }
        markdown.push_str(&proxy_report::markdown(&plan, &meta, pp.as_ref(), &proxy_records));
    }
    if let Some(dp) = &plan.deploy {
        if !markdown.is_empty() {
            markdown.push('\n');
        }
        markdown.push_str(&deploy_report::markdown(&plan, &meta, dp.as_ref(), deploy_record.as_ref()));
    }
    if let Some(dp) = &plan.drain {
        if !markdown.is_empty() {
            markdown.push('\n');
        }
        markdown.push_str(&drain_report::markdown(&plan, &meta, dp.as_ref(), drain_record.as_ref()));
    }
    print!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out, &markdown).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("odeon-bench: wrote {}", out.display());
    }
    match &args.svg {
        // A proxy-, deploy- or drain-only run has nothing to plot; an earlier plot is left as it is.
        Some(path) if records.is_empty() => {
            eprintln!("odeon-bench: no server workload ran; {} not written", path.display())
        }
        Some(path) => {
            std::fs::write(path, svg::plot(&records))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("odeon-bench: wrote {}", path.display());
        }
        None => {}
    }
    eprintln!("odeon-bench: raw results and logs in {}", plan.results_dir.display());
    Ok(records.iter().all(|r| r.error.is_none())
        && proxy_records.iter().all(|r| r.error.is_none())
        && deploy_record.is_none_or(|r| r.error.is_none())
        && drain_record.is_none_or(|r| r.error.is_none()))
}
