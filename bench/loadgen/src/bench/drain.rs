//! The drain workload: two Odeon hosts sharing one redis-server behind one `odeon-proxy`, N
//! arena clients playing on host 1 through the proxy, and `POST /odeon/admin/drain` to host 1,
//! which moves every room to host 2 and answers once all the moves are done.
//!
//! 1. redis-server, host 1 and the proxy start; the loadgen joins its clients through the proxy
//!    (rooms of 50). Only then does host 2 start: a joinOrCreate puts a new room on the
//!    least-loaded host, and the drain must find every room on host 1.
//! 2. Once host 1 and the proxy both list host 2, and the loadgen's warm-up is over, the bench
//!    lets the clients play for `before_secs`, then sends the drain to host 1 and times its
//!    answer (`moved` with each room's freeze, `stayed`).
//! 3. It waits up to [`EXIT_WITHIN`] for host 1 to exit by itself (it does once it holds no room
//!    and relays no socket), lets the clients play on host 2 for `after_secs`, and ends the
//!    loadgen's window (`--end-on-stdin-close`).
//!
//! The clients stay connected: the proxy holds each client across its room's move and resumes
//! it on host 2 (`odeon_protocol::handover`). They run with `--reconnect-on-4010` all the same,
//! so a client the proxy could not carry over (closed with 4010) comes back as the SDKs would.
//!
//! With two cores and pinning, the hosts run on the first CPU and the proxy, redis-server and
//! the loadgen on the second. Until the drain host 2 is idle, so host 1 has the first CPU to
//! itself, and after it host 1 has gone and host 2 has it. (At 2000 clients the proxy and the
//! loadgen alone keep the second CPU nearly busy: host 2 there would wait behind them for its
//! side of every move.)

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use serde::Deserialize;

use super::deploy::{PluginDirs, health, poll, sleep_until};
use super::loadgen_run::Background;
use super::proxy::{default_proxy_bin, find_redis, launch, lists_processes, start_redis};
use super::server::{self, Running};
use super::{Args, Plan};
use crate::proc::{self, Pid};
use crate::summary::Summary;

/// The hosts' `--admin-token`.
pub const TOKEN: &str = "b3nch-dr4in-t0ken-9c1e55a2";
/// How long the bench waits for host 1 to exit after the drain's answer.
pub const EXIT_WITHIN: Duration = Duration::from_secs(30);
/// How long the drain may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// What the drain workload runs.
#[derive(Debug, Clone)]
pub struct DrainPlan {
    /// Active arena clients, through the proxy, on host 1.
    pub clients: u32,
    /// The host, as the server comparison runs it (its program and working directory are used).
    pub host: server::Spec,
    /// redis-server.
    pub redis: PathBuf,
    /// The directory with `arena.wasm`.
    pub plugins: PathBuf,
    /// odeon-proxy.
    pub proxy_bin: PathBuf,
    /// Seconds of play in the window before the drain.
    pub before_secs: f64,
    /// Seconds of play after host 1 has exited (or the wait for it ended).
    pub after_secs: f64,
}

impl DrainPlan {
    /// Rooms the clients fill (50 each).
    pub fn rooms(&self) -> u32 {
        self.clients.div_ceil(50)
    }
}

/// The drain workload's plan, or why it cannot run (no redis-server, plugin or proxy).
pub fn plan(args: &Args, target: &Path, host: server::Spec) -> anyhow::Result<Result<DrainPlan, String>> {
    let Some(redis) = find_redis(args) else {
        return Ok(Err("no redis-server (bench/setup.sh, or apt-get install redis-server)".to_owned()));
    };
    let plugins = target.join("plugins");
    if !plugins.join("arena.wasm").is_file() {
        return Ok(Err(format!("no {} (just plugins)", plugins.join("arena.wasm").display())));
    }
    let proxy_bin = args.proxy_bin.clone().unwrap_or_else(|| default_proxy_bin(target, args.quick));
    if !proxy_bin.is_file() {
        return Ok(Err(format!(
            "no odeon-proxy at {} (cargo build --release -p odeon-proxy)",
            proxy_bin.display()
        )));
    }
    let q = args.quick;
    let clients = args.drain_clients.unwrap_or(if q { 200 } else { 2000 });
    anyhow::ensure!(clients > 0, "--drain-clients must be positive");
    if !clients.is_multiple_of(50) {
        eprintln!("odeon-bench: warning: {clients} drain-workload clients leave the last room not full");
    }
    let (before_secs, after_secs) = if q { (2.0, 2.0) } else { (5.0, 5.0) };
    Ok(Ok(DrainPlan { clients, host, redis, plugins, proxy_bin, before_secs, after_secs }))
}

/// A room the drain moved, as host 1 answers it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    /// The room.
    pub room_id: String,
    /// The process that runs it now.
    pub to: String,
    /// Its freeze: from freezing it here to the other host running it, ms.
    pub took_ms: f64,
    /// How long it ran on, its clients held by the proxy, before it froze, ms.
    #[serde(default)]
    pub held_ms: f64,
}

/// A room the drain could not move, and why.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stayed {
    /// The room.
    pub room_id: String,
    /// Why it stayed.
    pub reason: String,
}

/// The drain's answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainAnswer {
    /// The drained host.
    pub process_id: String,
    /// Always true.
    pub draining: bool,
    /// The rooms moved.
    pub moved: Vec<Moved>,
    /// The rooms that stayed.
    #[serde(default)]
    pub stayed: Vec<Stayed>,
    /// Rooms the host still counted when it answered.
    #[serde(default)]
    pub rooms: u64,
}

/// One process's CPU before and after the drain, % of one core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuRow {
    /// What it is.
    pub name: String,
    /// Where it was pinned.
    pub cpu: String,
    /// From the end of the warm-up to the drain request.
    pub before_pct: Option<f64>,
    /// From the drain's answer to the end of the window.
    pub after_pct: Option<f64>,
}

/// The workload's one run.
#[derive(Debug, Clone, Default)]
pub struct DrainRecord {
    /// Host 1's rooms just before the drain (from its health).
    pub rooms_before: Option<u64>,
    /// The answer, when it was a 200 with the expected body.
    pub answer: Option<DrainAnswer>,
    /// Request start to the whole answer, ms.
    pub answer_ms: Option<f64>,
    /// What went wrong with the request, if anything.
    pub answer_error: Option<String>,
    /// When the drain was requested, Unix ms (to place the clients' closes and returns).
    pub drain_unix_ms: Option<u64>,
    /// Host 1's exit after the answer, ms, if it exited within [`EXIT_WITHIN`].
    pub exit_after_ms: Option<f64>,
    /// Its exit status (`0`, or how it ended).
    pub exit_status: Option<String>,
    /// Host 2's rooms at the end of the window.
    pub host2_rooms: Option<u64>,
    /// Per-process CPU, and the rest of the machine as `other`.
    pub cpu: Vec<CpuRow>,
    /// Connections dropped on a full accept queue, and SYNs sent again (each after 1 s), on the
    /// whole machine from the drain request to the end of the window (`TcpExt` in
    /// /proc/net/netstat: `ListenOverflows`, `TCPSynRetrans`).
    pub listen_overflows: Option<(u64, u64)>,
    /// Whether the proxy binary knows moved rooms (`odeon:moved:` in it).
    pub proxy_knows_moves: Option<bool>,
    /// The proxy's cutovers, from its log: per client followed to host 2, ms from the old host's
    /// `moved` marker to the client spliced onto host 2 (the part of the client's gap the
    /// freeze does not cover).
    pub cutovers: Cutovers,
    /// The loadgen's summary, if it produced one.
    pub summary: Option<Summary>,
    /// Things worth a note that did not stop the run.
    pub notes: Vec<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Why the first attempt failed, if this is a retry.
    pub retried_after: Option<String>,
    /// Command lines: redis-server, the hosts, the proxy, the loadgen.
    pub commands: Vec<String>,
}

/// The process id of host `i` (from 1).
pub fn process_id(i: usize) -> String {
    format!("drain-host-{i}")
}

/// Runs the workload, retried once if it fails.
pub fn run(plan: &Plan, dp: &DrainPlan) -> DrainRecord {
    eprintln!("odeon-bench: drain (2 hosts behind odeon-proxy, {} clients) …", dp.clients);
    let mut record = run_once(plan, dp);
    if let Some(e) = record.error.take() {
        eprintln!("odeon-bench: drain failed, retrying once: {e}");
        record = run_once(plan, dp);
        record.retried_after = Some(e);
    }
    if let Some(e) = &record.error {
        eprintln!("odeon-bench: drain failed: {e}");
    }
    record
}

fn run_once(plan: &Plan, dp: &DrainPlan) -> DrainRecord {
    let mut record = DrainRecord::default();
    if let Err(e) = run_inner(plan, dp, &mut record) {
        record.error = Some(format!("{e:#}"));
    }
    record
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Processes' CPU times and the machine's at one instant.
struct Snap {
    at: Instant,
    cpu: Vec<Option<Duration>>,
    machine: Option<Duration>,
}

impl Snap {
    fn take(pids: &[Pid]) -> Snap {
        Snap {
            at: Instant::now(),
            cpu: pids.iter().map(|&p| proc::cpu_time(p)).collect(),
            machine: proc::machine_busy(),
        }
    }

    /// Each process's CPU % from `self` to `later`, and what the rest of the machine used.
    fn until(&self, later: &Snap) -> (Vec<Option<f64>>, Option<f64>) {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let pct = |d: Duration| (d.as_secs_f64() / secs * 1000.0).round() / 10.0;
        let each: Vec<Option<f64>> = self
            .cpu
            .iter()
            .zip(&later.cpu)
            .map(|(a, b)| Some(pct(b.as_ref()?.checked_sub(*a.as_ref()?)?)))
            .collect();
        let machine = later.machine.zip(self.machine).and_then(|(b, a)| b.checked_sub(a)).map(pct);
        let other =
            machine.map(|m| ((m - each.iter().flatten().sum::<f64>()).max(0.0) * 10.0).round() / 10.0);
        (each, other)
    }
}

/// `ListenOverflows` and `TCPSynRetrans` from /proc/net/netstat.
fn listen_overflows() -> Option<(u64, u64)> {
    parse_tcp_ext(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// The two counters from netstat's `TcpExt:` header and value lines.
fn parse_tcp_ext(netstat: &str) -> Option<(u64, u64)> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let get = |name: &str| -> Option<u64> {
        let i = names.split_whitespace().position(|n| n == name)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    Some((get("ListenOverflows")?, get("TCPSynRetrans")?))
}

/// The proxy's cutovers (its `client followed room` log lines).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cutovers {
    /// Each client's cutover, ms.
    pub ms: Vec<f64>,
    /// How many of them had their resume opened during the hold (`preopened=true`).
    pub preopened: usize,
}

/// The cutovers in a proxy's log (ANSI colours and all).
fn parse_cutovers(log: &str) -> Cutovers {
    let mut cutovers = Cutovers::default();
    for line in log.lines().filter(|l| l.contains("client followed room")) {
        let line = without_colours(line);
        let field = |name: &str| {
            let at = line.find(&format!(" {name}="))? + name.len() + 2;
            line[at..].split_whitespace().next()
        };
        if let Some(ms) = field("cutover_ms").and_then(|v| v.parse().ok()) {
            cutovers.ms.push(ms);
            cutovers.preopened += usize::from(field("preopened") == Some("true"));
        }
    }
    cutovers
}

/// `line` without its ANSI escape sequences (`ESC [ … letter`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the proxy binary has the moved-room lookup (it names the Redis key's prefix).
fn knows_moves(proxy: &Path) -> Option<bool> {
    let bytes = std::fs::read(proxy).ok()?;
    Some(bytes.windows(12).any(|w| w == b"odeon:moved:"))
}

/// The proxy's live processes, from its health.
fn proxy_processes(port: u16) -> usize {
    let listed = |body: &str| -> Option<usize> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(v.get("processes")?.as_array()?.len())
    };
    match server::http_get(port, "/health") {
        Some((200, body)) if lists_processes(&body) => listed(&body).unwrap_or(0),
        _ => 0,
    }
}

/// Sends the drain to host 1 and keeps its answer and round trip in `record` (and the answer's
/// body in `saved`).
fn drain(port: u16, record: &mut DrainRecord, saved: &Path) {
    let auth = format!("Bearer {TOKEN}");
    record.drain_unix_ms = Some(unix_ms());
    let started = Instant::now();
    let result =
        server::http_post(port, "/odeon/admin/drain", &[("Authorization", &auth)], b"", ANSWER_TIMEOUT);
    match result {
        Ok((status, body)) => {
            record.answer_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            let _ = std::fs::write(saved, &body);
            if status != 200 {
                record.answer_error = Some(format!("HTTP {status}: {}", body.trim()));
            } else {
                match serde_json::from_str::<DrainAnswer>(&body) {
                    Ok(a) => record.answer = Some(a),
                    Err(e) => record.answer_error = Some(format!("unexpected answer ({e}): {}", body.trim())),
                }
            }
        }
        Err(e) => record.answer_error = Some(format!("{e:#}")),
    }
}

fn run_inner(plan: &Plan, dp: &DrainPlan, record: &mut DrainRecord) -> anyhow::Result<()> {
    let (first_cpu, rest_cpu) = match &plan.pin {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    let dir = &plan.results_dir;
    let cwd = &dp.host.cwd;
    record.proxy_knows_moves = knows_moves(&dp.proxy_bin);
    let plugin_dirs = PluginDirs::new(&dp.plugins, 2, &["arena.wasm"], "drain")?;
    let (mut redis, redis_url) = start_redis(&dp.redis, cwd, rest_cpu, &dir.join("drain.redis.log"))?;
    record.commands.push(redis.command_line.clone());

    let start_host = |i: usize, record: &mut DrainRecord| -> anyhow::Result<Running> {
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
            "--behind-proxy".into(),
            "--admin-token".into(),
            TOKEN.into(),
            "--process-id".into(),
            process_id(i).into(),
        ];
        let log = dir.join(format!("drain-host-{i}.server.log"));
        let guard = launch(&dp.host.program, args, cwd, first_cpu, &log, port)?;
        record.commands.push(guard.command_line.clone());
        guard.wait_until(&format!("host {i}"), Duration::from_secs(90), || {
            server::http_ok(port, "/odeon/health")
        })?;
        Ok(guard)
    };
    let mut host1 = start_host(1, record)?;
    let port1 = host1.port;

    let proxy_port = server::free_port()?;
    let args: Vec<OsString> =
        ["--bind", "127.0.0.1", "--port", &proxy_port.to_string(), "--redis-url", &redis_url]
            .iter()
            .map(OsString::from)
            .collect();
    let mut proxy = launch(&dp.proxy_bin, args, cwd, rest_cpu, &dir.join("drain.proxy.log"), proxy_port)?;
    record.commands.push(proxy.command_line.clone());
    proxy.wait_until("odeon-proxy", Duration::from_secs(30), || proxy_processes(proxy_port) >= 1)?;

    // Rooms only on host 1: host 2 starts once the clients have joined.
    let warmup = plan.warmup_secs;
    // A cap: the bench ends the window once host 1 is gone and the clients have played on.
    let measure = dp.before_secs + (ANSWER_TIMEOUT + EXIT_WITHIN).as_secs_f64() + dp.after_secs + 30.0;
    let json = dir.join(format!("drain-{}.json", dp.clients));
    let args: Vec<String> = vec![
        "--endpoint".into(),
        format!("http://127.0.0.1:{proxy_port}"),
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
        "--proxy-pid".into(),
        proxy.pid.to_string(),
        "--join-concurrency".into(),
        "50".into(),
        "--json".into(),
        json.display().to_string(),
        "--end-on-stdin-close".into(),
        "--reconnect-on-4010".into(),
    ];
    record.commands.push(super::loadgen_command_line(plan, rest_cpu, &args));
    let mut loadgen = Background::spawn(plan, rest_cpu, &args, &json, warmup + measure)?;
    if !poll(Duration::from_secs(300), || loadgen.joined() || loadgen.exited()) || !loadgen.joined() {
        bail!("the loadgen ended or stalled before its clients joined");
    }
    // The loadgen starts its clients 100 ms after the join phase, then warms up.
    let window_start = Instant::now() + Duration::from_millis(100) + Duration::from_secs_f64(warmup);
    let mut host2 = start_host(2, record)?;
    if !poll(Duration::from_secs(30), || health(port1).is_some_and(|(p, _)| p == 2)) {
        bail!("host 1 did not list 2 live hosts within 30 s");
    }
    if !poll(Duration::from_secs(30), || proxy_processes(proxy_port) == 2) {
        bail!("odeon-proxy did not list 2 live hosts within 30 s");
    }

    let pids: Vec<Pid> =
        [host1.pid, host2.pid, proxy.pid, redis.pid, loadgen.pid()].into_iter().map(Pid::Id).collect();
    sleep_until(window_start);
    let a = Snap::take(&pids);
    std::thread::sleep(Duration::from_secs_f64(dp.before_secs));
    record.rooms_before = health(port1).map(|(_, rooms)| rooms);
    let b = Snap::take(&pids);
    if loadgen.exited() {
        bail!("the loadgen ended before the drain");
    }
    eprintln!("odeon-bench: draining host 1 ({} rooms) …", record.rooms_before.unwrap_or_default());
    let overflows = listen_overflows();
    drain(port1, record, &dir.join("drain-answer.json"));
    let c = Snap::take(&pids);
    let answered = Instant::now();
    match (&record.answer, &record.answer_error) {
        (Some(a), _) => eprintln!(
            "odeon-bench: drain answered in {:.0} ms: {} moved, {} stayed",
            record.answer_ms.unwrap_or_default(),
            a.moved.len(),
            a.stayed.len()
        ),
        (None, e) => eprintln!("odeon-bench: drain failed: {}", e.as_deref().unwrap_or("?")),
    }
    // Polled every 10 ms: its exit comes within a few of the answer.
    let mut status = None;
    while status.is_none() && answered.elapsed() < EXIT_WITHIN {
        std::thread::sleep(Duration::from_millis(10));
        status = host1.try_status();
    }
    if let Some(s) = status {
        record.exit_after_ms = Some(answered.elapsed().as_secs_f64() * 1000.0);
        record.exit_status = Some(s.code().map_or_else(|| s.to_string(), |c| c.to_string()));
    }
    std::thread::sleep(Duration::from_secs_f64(dp.after_secs));
    record.host2_rooms = health(host2.port).map(|(_, rooms)| rooms);
    let d = Snap::take(&pids);
    record.listen_overflows = overflows
        .zip(listen_overflows())
        .map(|((o, r), (o2, r2))| (o2.saturating_sub(o), r2.saturating_sub(r)));
    loadgen.end_window();
    let loadgen_status = loadgen.wait()?;
    record.summary = super::read_summary(&json)?;
    record.cutovers =
        parse_cutovers(&std::fs::read_to_string(dir.join("drain.proxy.log")).unwrap_or_default());

    let (before, other_before) = a.until(&b);
    let (after, other_after) = c.until(&d);
    let names = ["host 1", "host 2", "odeon-proxy", "redis-server", "loadgen"];
    for (k, name) in names.iter().enumerate() {
        let pinned = if k < 2 { first_cpu } else { rest_cpu };
        record.cpu.push(CpuRow {
            name: (*name).to_owned(),
            cpu: pinned.unwrap_or("—").to_owned(),
            before_pct: before[k],
            after_pct: after[k],
        });
    }
    record.cpu.push(CpuRow {
        name: "other".to_owned(),
        cpu: "—".to_owned(),
        before_pct: other_before,
        after_pct: other_after,
    });

    let died: Vec<&str> =
        [("redis-server", redis.exited()), ("host 2", host2.exited()), ("odeon-proxy", proxy.exited())]
            .iter()
            .filter(|(_, d)| *d)
            .map(|(n, _)| *n)
            .collect();
    for r in [&mut host1, &mut host2, &mut proxy, &mut redis] {
        r.stop();
    }
    drop(plugin_dirs);
    if !died.is_empty() {
        bail!("{} exited during the run; logs in {}", died.join(" and "), dir.display());
    }
    if !loadgen_status.success() {
        bail!("loadgen exited with {loadgen_status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        let body = r#"{"processId":"drain-host-1","draining":true,
            "moved":[{"roomId":"a","to":"drain-host-2","tookMs":4.5}],
            "stayed":[{"roomId":"b","reason":"no other live host"}],"rooms":1}"#;
        let a: DrainAnswer = serde_json::from_str(body).unwrap();
        assert_eq!(a.moved[0].took_ms, 4.5);
        assert_eq!(a.stayed[0].reason, "no other live host");
        assert_eq!(a.rooms, 1);
    }

    #[test]
    fn cutovers_come_from_the_proxys_log_lines() {
        let log = "\x1b[2m2026-12-08T00:51:01Z\x1b[0m \x1b[32m INFO\x1b[0m odeon_proxy::handover: client followed room r1 \
                   to drain-host-2 (cutover 12.2ms) \x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0mdrain-host-1 \
                   \x1b[3mcutover_ms\x1b[0m\x1b[2m=\x1b[0m12.169 \x1b[3mconnect_ms\x1b[0m\x1b[2m=\x1b[0m2.2 \
                   \x1b[3mpreopened\x1b[0m\x1b[2m=\x1b[0mtrue held=35\n\
                   INFO odeon_proxy::handover: client followed room r2 to p (cutover 0.1ms) cutover_ms=0.05 connect_ms=1 preopened=false held=0\n\
                   INFO odeon_proxy::discovery: a process joined\n";
        assert_eq!(parse_cutovers(log), Cutovers { ms: vec![12.169, 0.05], preopened: 1 });
    }

    #[test]
    fn tcp_ext_counters_parse() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                       TcpExt: 3 99 99 104\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_tcp_ext(netstat), Some((99, 104)));
        assert_eq!(parse_tcp_ext("IpExt: a\nIpExt: 1\n"), None);
    }

    #[test]
    fn snapshots_give_percentages_and_the_rest() {
        let at = Instant::now();
        let a =
            Snap { at, cpu: vec![Some(Duration::ZERO), Some(Duration::ZERO)], machine: Some(Duration::ZERO) };
        let b = Snap {
            at: at + Duration::from_secs(2),
            cpu: vec![Some(Duration::from_millis(500)), None],
            machine: Some(Duration::from_millis(1000)),
        };
        let (each, other) = a.until(&b);
        assert_eq!(each, vec![Some(25.0), None]);
        assert_eq!(other, Some(25.0));
    }
}
