//! `odeon-loadgen`: joins the clients, runs warm-up and the measure window, and sums up.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::client::{self, JoinReport, Phase, Role, Shared};
use crate::matchmake::{Endpoint, Matchmaker};
use crate::metrics::{Counters, round2, summarize};
use crate::proc::{self, Pid, Sample};
use crate::summary::Summary;
use crate::{metrics, sys};

/// Drives one workload against one server and prints a JSON summary.
#[derive(Debug, Clone, Parser)]
#[command(name = "odeon-loadgen", version)]
pub struct Options {
    /// The server, `http://127.0.0.1:PORT` (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:2567")]
    pub endpoint: String,
    /// Room name to joinOrCreate.
    #[arg(long, default_value = "arena")]
    pub room: String,
    /// Active clients: send `move` at --rate-hz.
    #[arg(long, default_value_t = 100)]
    pub clients: u32,
    /// Idle clients, joined first so they fill rooms of their own (keep it a multiple of 50).
    #[arg(long, default_value_t = 0)]
    pub idle: u32,
    /// Moves per second per active client.
    #[arg(long, default_value_t = 10.0)]
    pub rate_hz: f64,
    /// Seconds of load before the measure window.
    #[arg(long, default_value_t = 5.0)]
    pub warmup_secs: f64,
    /// Length of the measure window.
    #[arg(long, default_value_t = 20.0)]
    pub measure_secs: f64,
    /// The server's pid, for its CPU and RSS from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A proxy's pid (a process between the clients and the server), for its CPU and RSS
    /// over the same window; its CPU per frame counts every WebSocket frame it relayed.
    #[arg(long)]
    pub proxy_pid: Option<u32>,
    /// Colyseus PINGs per second per active client, each answered by the server's connection
    /// at once: the round trip of the path without the patch interval (0: no probe).
    #[arg(long, default_value_t = 0.0)]
    pub ping_hz: f64,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 50)]
    pub join_concurrency: usize,
    /// Budget for one join (HTTP, WebSocket, JOIN_ROOM, first ROOM_STATE), seconds.
    #[arg(long, default_value_t = 30.0)]
    pub join_timeout_secs: f64,
    /// No new joins start after this many seconds of joining.
    #[arg(long, default_value_t = 240.0)]
    pub join_phase_secs: f64,
    /// Bind client sockets to 127.0.0.2 … 127.0.0.(N+1), round-robin; 0: let the kernel choose.
    #[arg(long, default_value_t = 8)]
    pub source_addrs: u8,
    /// Hard cap on the whole run, seconds (default: join phase + warm-up + window + 60).
    #[arg(long)]
    pub max_secs: Option<f64>,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// End the measure window early when stdin closes (a driver that knows when what it
    /// measures is over, such as `odeon-bench`'s deploy workload); --measure-secs is then a cap.
    #[arg(long)]
    pub end_on_stdin_close: bool,
    /// Reconnect, as the SDKs do, when the server closes a socket with 4010 (its room moved to
    /// another host): the same URL with `reconnectionToken` and `skipHandshake`; the summary
    /// counts the reconnections and times each from the close to the new ROOM_STATE.
    #[arg(long)]
    pub reconnect_on_4010: bool,
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let opts = Options::parse();
    match sys::raise_nofile_limit() {
        Ok((soft, _)) if u64::from(opts.clients + opts.idle) + 256 > soft => {
            eprintln!(
                "odeon-loadgen: warning: open-file limit {soft} is below {} clients",
                opts.clients + opts.idle
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("odeon-loadgen: warning: cannot raise RLIMIT_NOFILE: {e}"),
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("odeon-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cap = Duration::from_secs_f64(opts.max_secs.unwrap_or(
        opts.join_phase_secs + opts.join_timeout_secs + opts.warmup_secs + opts.measure_secs + 60.0,
    ));
    let result = rt.block_on(async { tokio::time::timeout(cap, run(&opts, workers as u32)).await });
    // Whatever is still running (a stuck socket) is dropped here, with a bound.
    rt.shutdown_timeout(Duration::from_secs(2));
    let summary = match result {
        Err(_) => {
            eprintln!("odeon-loadgen: hard cap of {cap:?} reached, giving up");
            return ExitCode::from(3);
        }
        Ok(Err(e)) => {
            eprintln!("odeon-loadgen: {e:#}");
            return ExitCode::FAILURE;
        }
        Ok(Ok(s)) => s,
    };
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    println!("{json}");
    if let Some(path) = &opts.json
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        eprintln!("odeon-loadgen: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let wanted = opts.clients + opts.idle;
    let joined = summary.joined_active + summary.joined_idle;
    if wanted > 0 && joined * 2 < wanted {
        eprintln!(
            "odeon-loadgen: most joins failed ({joined} of {wanted} joined); first error: {}",
            summary.first_join_error.as_deref().unwrap_or("none recorded")
        );
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// Join outcomes of one phase.
#[derive(Default)]
struct Joins {
    latencies_ms: Vec<f64>,
    failed: u32,
    first_error: Option<String>,
}

impl Joins {
    fn fail(&mut self, n: u32, why: impl FnOnce() -> String) {
        self.failed += n;
        if n > 0 && self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }
}

struct Coordinator {
    shared: Arc<Shared>,
    semaphore: Arc<Semaphore>,
    phase_tx: watch::Sender<Phase>,
    tasks: JoinSet<()>,
    next_index: u32,
}

impl Coordinator {
    /// Joins `count` clients of `role`, at most `join_concurrency` at a time, and waits for
    /// every started join to report.
    async fn join_phase(
        &mut self,
        role_of: impl Fn(u32) -> Role,
        count: u32,
        deadline: Instant,
        label: &str,
    ) -> Joins {
        let (tx, mut rx) = mpsc::unbounded_channel::<JoinReport>();
        let mut joins = Joins::default();
        let started = Instant::now();
        let mut spawned = 0;
        while spawned < count {
            let permit = match tokio::time::timeout_at(deadline, self.semaphore.clone().acquire_owned()).await
            {
                Ok(Ok(p)) => p,
                _ => break,
            };
            let index = self.next_index;
            self.next_index += 1;
            let role = role_of(spawned);
            self.tasks.spawn(client::run(
                self.shared.clone(),
                index,
                role,
                permit,
                tx.clone(),
                self.phase_tx.subscribe(),
            ));
            spawned += 1;
        }
        drop(tx);
        joins.fail(count - spawned, || {
            format!("join phase deadline reached before {} {label} joins started", count - spawned)
        });
        let mut received = 0;
        let mut next_progress = Instant::now() + Duration::from_secs(5);
        let wait = self.shared.join_timeout + Duration::from_secs(5);
        while received < spawned {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(report)) => {
                    received += 1;
                    match report.result {
                        Ok(d) => joins.latencies_ms.push(d.as_secs_f64() * 1000.0),
                        Err(e) => joins.fail(1, || e),
                    }
                }
                _ => {
                    joins.fail(spawned - received, || "a client never reported its join".to_owned());
                    break;
                }
            }
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(5);
                eprintln!("odeon-loadgen: {label}: {received}/{count} joins done");
            }
        }
        eprintln!(
            "odeon-loadgen: {label}: {} of {count} joined in {:.1} s{}",
            joins.latencies_ms.len(),
            started.elapsed().as_secs_f64(),
            joins.first_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
        );
        joins
    }
}

/// Resolves once stdin reaches its end (or fails); a thread reads it, since the runtime has no
/// stdin of its own here.
fn stdin_closed() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    rx
}

fn ws_config() -> WebSocketConfig {
    // 4 KiB read buffers: 19 000 sockets × the default 128 KiB would be 2.4 GiB. Frames from the
    // arena are at most ~1.2 KiB. Writes go out eagerly (write buffer 0).
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

async fn run(opts: &Options, workers: u32) -> anyhow::Result<Summary> {
    anyhow::ensure!(opts.rate_hz > 0.0 && opts.rate_hz <= 1000.0, "--rate-hz must be in (0, 1000]");
    anyhow::ensure!(opts.measure_secs > 0.0, "--measure-secs must be positive");
    anyhow::ensure!((0.0..=100.0).contains(&opts.ping_hz), "--ping-hz must be in [0, 100]");
    anyhow::ensure!(opts.join_concurrency > 0, "--join-concurrency must be positive");
    anyhow::ensure!(opts.source_addrs <= 253, "--source-addrs must be at most 253 (127.0.0.2 … 127.0.0.254)");
    let endpoint = Endpoint::parse(&opts.endpoint)?;
    let matchmaker = Matchmaker::new(&endpoint, &opts.room, opts.join_concurrency)?;
    let sources = (0..opts.source_addrs).map(|i| Ipv4Addr::new(127, 0, 0, 2 + i)).collect();
    let shared = Arc::new(Shared {
        endpoint,
        matchmaker,
        sources,
        ws_config: ws_config(),
        join_timeout: Duration::from_secs_f64(opts.join_timeout_secs),
        rate_hz: opts.rate_hz,
        counters: Counters::default(),
        echo: metrics::Histogram::default(),
        send_lateness: metrics::Histogram::default(),
        ping_hz: opts.ping_hz,
        ping_rtt: metrics::Histogram::default(),
        measuring: Default::default(),
        reconnects: crate::reconnect::Reconnects::new(opts.reconnect_on_4010),
    });
    let stdin_closed = opts.end_on_stdin_close.then(stdin_closed);
    let (phase_tx, _) = watch::channel(Phase::Joining);
    let mut co = Coordinator {
        shared: shared.clone(),
        semaphore: Arc::new(Semaphore::new(opts.join_concurrency)),
        phase_tx,
        tasks: JoinSet::new(),
        next_index: 0,
    };

    let join_start = Instant::now();
    let deadline = join_start + Duration::from_secs_f64(opts.join_phase_secs);
    let mut idle = co.join_phase(|_| Role::Idle, opts.idle, deadline, "idle").await;
    let mut active = co.join_phase(|slot| Role::Active { slot }, opts.clients, deadline, "active").await;
    let join_phase_secs = join_start.elapsed().as_secs_f64();

    // Everyone starts together; the schedules spread sends over one period.
    let go = Instant::now() + Duration::from_millis(100);
    co.phase_tx.send_replace(Phase::Go(go));
    tokio::time::sleep_until(go + Duration::from_secs_f64(opts.warmup_secs)).await;

    let server = opts.server_pid.map(Pid::Id);
    let proxy = opts.proxy_pid.map(Pid::Id);
    let start_server = server.map(Sample::take);
    let start_proxy = proxy.map(Sample::take);
    let start_self = Sample::take(Pid::SelfProcess);
    let start_machine = proc::machine_busy();
    let start_counts = shared.counters.snapshot();
    shared.measuring.store(true, Relaxed);
    let window_start = Instant::now();
    let window_end = window_start + Duration::from_secs_f64(opts.measure_secs);
    let ended_by_driver = async {
        match stdin_closed {
            Some(rx) => drop(rx.await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::time::sleep_until(window_end) => {}
        _ = ended_by_driver => {}
    }
    shared.measuring.store(false, Relaxed);
    let measure_secs = window_start.elapsed().as_secs_f64();
    let end_counts = shared.counters.snapshot();
    let end_self = Sample::take(Pid::SelfProcess);
    let end_machine = proc::machine_busy();
    let end_server = server.map(Sample::take);
    let end_proxy = proxy.map(Sample::take);
    let server_rss_kib = server.and_then(proc::rss_kib);
    let proxy_rss_kib = proxy.and_then(proc::rss_kib);
    let loadgen_rss_kib = proc::rss_kib(Pid::SelfProcess);
    // Echoes of the window's last moves arrive within a patch interval or two.
    tokio::time::sleep(Duration::from_millis(500)).await;

    co.phase_tx.send_replace(Phase::Stop);
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(_)) = tokio::time::timeout_at(stop_deadline, co.tasks.join_next()).await {}
    co.tasks.abort_all();

    let d = end_counts.since(&start_counts);
    let totals = shared.counters.snapshot();
    let per_sec = |n: u64| round2(n as f64 / measure_secs);
    let joined_active = active.latencies_ms.len() as u32;
    let joined_idle = idle.latencies_ms.len() as u32;
    let per_client =
        |n: u64, clients: u32| (clients > 0).then(|| round2(n as f64 / clients as f64 / measure_secs));
    let server_cpu = match (&start_server, &end_server) {
        (Some(a), Some(b)) => a.cpu_until(b),
        _ => None,
    };
    let server_sys = match (&start_server, &end_server) {
        (Some(a), Some(b)) => a.sys_until(b),
        _ => None,
    };
    let frames = d.frames_in() + d.frames_received;
    let ws_frames = d.ws_frames();
    let proxy_cpu = match (&start_proxy, &end_proxy) {
        (Some(a), Some(b)) => a.cpu_until(b),
        _ => None,
    };
    let proxy_sys = match (&start_proxy, &end_proxy) {
        (Some(a), Some(b)) => a.sys_until(b),
        _ => None,
    };
    let per_ws_frame = |cpu: Option<Duration>| {
        cpu.filter(|_| ws_frames > 0).map(|cpu| round2(cpu.as_secs_f64() * 1e6 / ws_frames as f64))
    };
    let loadgen_cpu_pct = start_self.cpu_pct_until(&end_self).map(round2);
    let loadgen_limited = loadgen_cpu_pct.is_some_and(|p| p > 90.0 * workers as f64);
    if loadgen_limited {
        eprintln!(
            "odeon-loadgen: WARNING: the loadgen used {:.0} % of its {workers} core(s): these figures measure the loadgen, not the server",
            loadgen_cpu_pct.unwrap_or_default()
        );
    }
    let pct = |cpu: Duration| cpu.as_secs_f64() / measure_secs * 100.0;
    let machine_cpu_pct = match (start_machine, end_machine) {
        (Some(a), Some(b)) => b.checked_sub(a).map(pct),
        _ => None,
    };
    let self_cpu = start_self.cpu_until(&end_self);
    let other_cpu_pct = machine_cpu_pct.map(|m| {
        let ours = self_cpu.map_or(0.0, pct) + server_cpu.map_or(0.0, pct) + proxy_cpu.map_or(0.0, pct);
        round2((m - ours).max(0.0))
    });
    if other_cpu_pct.is_some_and(|o| o > 20.0) {
        eprintln!(
            "odeon-loadgen: warning: other processes used {:.0} % of a core during the window; the figures are noisy",
            other_cpu_pct.unwrap_or_default()
        );
    }
    let loadgen_wait = start_self.wait_pct_until(&end_self);
    if loadgen_wait.is_some_and(|w| w > 10.0) {
        eprintln!(
            "odeon-loadgen: warning: the loadgen waited {:.0} % of the window for a CPU (another process on its core?)",
            loadgen_wait.unwrap_or_default()
        );
    }
    let send_late_ms = shared.send_lateness.quantiles_ms();
    if send_late_ms.is_some_and(|q| q.p99 > 1000.0 / opts.rate_hz / 4.0) {
        eprintln!(
            "odeon-loadgen: warning: sends ran late (p99 {:.1} ms): the loadgen fell behind its schedule",
            send_late_ms.map_or(0.0, |q| q.p99)
        );
    }
    let echo_ms = shared.echo.quantiles_ms();
    let echo_count = echo_ms.map_or(0, |q| q.count);
    let window_moves = shared.counters.window_moves.load(Relaxed);
    let summary = Summary {
        endpoint: opts.endpoint.clone(),
        room: opts.room.clone(),
        clients: opts.clients,
        idle: opts.idle,
        rate_hz: opts.rate_hz,
        warmup_secs: opts.warmup_secs,
        measure_secs: round2(measure_secs),
        joined_active,
        joined_idle,
        failed_joins: active.failed + idle.failed,
        first_join_error: idle.first_error.take().or(active.first_error.take()),
        join_phase_secs: round2(join_phase_secs),
        join_ms: summarize(&mut active.latencies_ms),
        idle_join_ms: summarize(&mut idle.latencies_ms),
        echo_ms,
        window_moves,
        echo_missed: window_moves.saturating_sub(echo_count),
        patches_per_active_client_per_sec: per_client(d.patches_active, joined_active),
        patches_per_idle_client_per_sec: per_client(d.patches_idle, joined_idle),
        frames_in_per_sec: per_sec(d.frames_in()),
        frames_out_per_sec: per_sec(d.frames_received),
        bytes_out_per_sec: per_sec(d.bytes_received),
        ws_frames_per_sec: per_sec(ws_frames),
        ping_hz: opts.ping_hz,
        ping_rtt_ms: shared.ping_rtt.quantiles_ms(),
        pings_skipped: d.pings_skipped,
        server_pid: opts.server_pid,
        server_cpu_pct: match (&start_server, &end_server) {
            (Some(a), Some(b)) => a.cpu_pct_until(b).map(round2),
            _ => None,
        },
        server_rss_kib,
        server_cpu_us_per_frame: server_cpu
            .filter(|_| frames > 0)
            .map(|cpu| round2(cpu.as_secs_f64() * 1e6 / frames as f64)),
        server_sys_us_per_frame: server_sys
            .filter(|_| frames > 0)
            .map(|cpu| round2(cpu.as_secs_f64() * 1e6 / frames as f64)),
        proxy_pid: opts.proxy_pid,
        proxy_cpu_pct: match (&start_proxy, &end_proxy) {
            (Some(a), Some(b)) => a.cpu_pct_until(b).map(round2),
            _ => None,
        },
        proxy_rss_kib,
        proxy_cpu_us_per_frame: per_ws_frame(proxy_cpu),
        proxy_sys_us_per_frame: per_ws_frame(proxy_sys),
        proxy_wait_pct: match (&start_proxy, &end_proxy) {
            (Some(a), Some(b)) => a.wait_pct_until(b).map(round2),
            _ => None,
        },
        loadgen_cpu_pct,
        loadgen_rss_kib,
        send_late_ms,
        server_wait_pct: match (&start_server, &end_server) {
            (Some(a), Some(b)) => a.wait_pct_until(b).map(round2),
            _ => None,
        },
        loadgen_wait_pct: loadgen_wait.map(round2),
        machine_cpu_pct: machine_cpu_pct.map(round2),
        other_cpu_pct,
        loadgen_workers: workers,
        loadgen_limited,
        decode_errors: totals.decode_errors,
        disconnects: totals.disconnects,
        socket_closes: shared.counters.socket_closes.load(Relaxed),
        closed_4010: shared.counters.closed_4010.load(Relaxed),
        reconnect_on_4010: opts.reconnect_on_4010,
        reconnections: shared.counters.reconnections.load(Relaxed),
        reconnect_failures: shared.counters.reconnect_failures.load(Relaxed),
        reconnect_retries: shared.counters.reconnect_retries.load(Relaxed),
        first_retry_reason: shared.reconnects.first_retry_reason(),
        first_reconnect_error: shared.reconnects.first_error(),
        reconnect_ms: shared.reconnects.took.quantiles_ms(),
        moves_lost_on_4010: shared.counters.moves_lost.load(Relaxed),
        first_4010_unix_ms: shared.reconnects.first_close_unix_ms(),
        last_reconnect_unix_ms: shared.reconnects.last_back_unix_ms(),
        skipped_sends: d.skipped_sends,
        slow_sends: shared.counters.slow_sends.load(Relaxed),
    };
    if let Some(pid) = opts.server_pid
        && summary.server_cpu_pct.is_none()
    {
        eprintln!("odeon-loadgen: warning: could not read /proc/{pid} (did the server exit?)");
    }
    if let Some(pid) = opts.proxy_pid
        && summary.proxy_cpu_pct.is_none()
    {
        eprintln!("odeon-loadgen: warning: could not read /proc/{pid} (did the proxy exit?)");
    }
    Ok(summary)
}
