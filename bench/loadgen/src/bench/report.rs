//! The Markdown section: one table per workload group, both servers side by side with the
//! Odeon/Colyseus ratio, the targets, the machine, and the exact commands.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::server::Kind;
use super::{Plan, RunRecord, Workload};
use crate::summary::Summary;

/// Per-1000-idle-client targets from the issue, and the echo target under full load.
pub const TARGET_KIB_PER_IDLE: f64 = 12.0;
/// See [`TARGET_KIB_PER_IDLE`].
pub const TARGET_CPU_PCT_PER_1000_IDLE: f64 = 0.3;
/// See [`TARGET_KIB_PER_IDLE`].
pub const TARGET_ECHO_P99_MS: f64 = 60.0;

/// When and where the run happened.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Cores available.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// The bench's own command line.
    pub command: String,
    /// How long the whole run took.
    pub elapsed: Duration,
}

impl Meta {
    /// Reads the machine and the clock.
    pub fn collect(_plan: &Plan, command: String, elapsed: Duration) -> Meta {
        let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Meta {
            date: civil_date(secs),
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            command,
            elapsed,
        }
    }
}

/// `YYYY-MM-DD` of a Unix time (UTC), Howard Hinnant's `civil_from_days`.
pub fn civil_date(unix_secs: u64) -> String {
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".to_owned(),
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

/// A metric column: header, how to read it, decimals, and whether a ratio makes sense.
struct Column {
    header: &'static str,
    get: fn(&RunRecord) -> Option<f64>,
    decimals: usize,
    ratio: bool,
}

fn s(r: &RunRecord) -> Option<&Summary> {
    r.summary.as_ref()
}

fn loadgen_cell(r: &RunRecord) -> String {
    match s(r) {
        Some(s) if s.loadgen_limited => format!("{} ⚠", cell(s.loadgen_cpu_pct, 0)),
        Some(s) => cell(s.loadgen_cpu_pct, 0),
        None => "—".to_owned(),
    }
}

/// RSS growth per idle client over the empty server, KiB.
pub fn kib_per_idle(r: &RunRecord) -> Option<f64> {
    let (_, idle) = r.workload.clients();
    let grown = s(r)?.server_rss_kib? as f64 - r.empty_rss_kib? as f64;
    (idle > 0).then(|| grown / idle as f64)
}

/// Server CPU % per 1000 idle clients.
pub fn cpu_per_1000_idle(r: &RunRecord) -> Option<f64> {
    let (_, idle) = r.workload.clients();
    let cpu = s(r)?.server_cpu_pct?;
    (idle > 0).then(|| cpu / (idle as f64 / 1000.0))
}

const CPU: Column = Column { header: "CPU %", get: |r| s(r)?.server_cpu_pct, decimals: 1, ratio: true };
const US_PER_FRAME: Column =
    Column { header: "CPU µs/frame", get: |r| s(r)?.server_cpu_us_per_frame, decimals: 2, ratio: true };
const SYS_PER_FRAME: Column = Column {
    header: "of it kernel µs/frame",
    get: |r| s(r)?.server_sys_us_per_frame,
    decimals: 2,
    ratio: true,
};
const RSS: Column =
    Column { header: "RSS MiB", get: |r| mib(s(r)?.server_rss_kib), decimals: 1, ratio: true };
const JOIN_P99: Column =
    Column { header: "join p99 ms", get: |r| Some(s(r)?.join_ms?.p99), decimals: 1, ratio: true };
const ECHO_P50: Column =
    Column { header: "echo p50 ms", get: |r| Some(s(r)?.echo_ms?.p50), decimals: 1, ratio: true };
const ECHO_P99: Column =
    Column { header: "echo p99 ms", get: |r| Some(s(r)?.echo_ms?.p99), decimals: 1, ratio: true };
const PATCHES: Column = Column {
    header: "patches/client/s",
    get: |r| s(r)?.patches_per_active_client_per_sec,
    decimals: 1,
    ratio: true,
};
const IDLE_PATCHES: Column = Column {
    header: "patches/idle client/s",
    get: |r| s(r)?.patches_per_idle_client_per_sec,
    decimals: 2,
    ratio: false,
};
const KIB_PER_IDLE: Column =
    Column { header: "KiB/idle client", get: kib_per_idle, decimals: 2, ratio: true };
const CPU_PER_1000: Column =
    Column { header: "CPU % per 1000 idle", get: cpu_per_1000_idle, decimals: 3, ratio: true };

fn table(out: &mut String, first: &str, rows: &Rows<'_>, columns: &[Column]) {
    let _ = write!(out, "| {first} | server |");
    for c in columns {
        let _ = write!(out, " {} |", c.header);
    }
    out.push_str(" loadgen CPU % |\n|---:|---|");
    for _ in columns {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for (label, runs) in rows {
        for r in runs {
            let _ = write!(out, "| {label} | {} |", r.server.name());
            for c in columns {
                let _ = write!(out, " {} |", cell((c.get)(r), c.decimals));
            }
            let _ = writeln!(out, " {} |", loadgen_cell(r));
        }
        let odeon = runs.iter().find(|r| r.server == Kind::Odeon);
        let colyseus = runs.iter().find(|r| r.server == Kind::Colyseus);
        if let (Some(o), Some(c)) = (odeon, colyseus) {
            let _ = write!(out, "| {label} | *Odeon/Colyseus* |");
            for col in columns {
                let v = if col.ratio { ratio((col.get)(o), (col.get)(c)) } else { String::new() };
                let _ = write!(out, " {v} |");
            }
            out.push_str(" |\n");
        }
    }
}

type Rows<'a> = Vec<(String, Vec<&'a RunRecord>)>;

fn rows_of(records: &[RunRecord], pick: impl Fn(Workload) -> Option<String>) -> Rows<'_> {
    let mut rows: Vec<(String, Vec<&RunRecord>)> = Vec::new();
    for r in records {
        let Some(label) = pick(r.workload) else { continue };
        match rows.iter_mut().find(|(l, _)| *l == label) {
            Some((_, runs)) => runs.push(r),
            None => rows.push((label, vec![r])),
        }
    }
    rows
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn check(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v <= target => format!("{v:.2} ✓"),
        Some(v) => format!("{v:.2} ✗"),
        None => "not measured".to_owned(),
    }
}

/// The whole Markdown section.
pub fn markdown(plan: &Plan, meta: &Meta, records: &[RunRecord]) -> String {
    let mut out = String::new();
    let title = if plan.quick { " (quick smoke run, not a measurement)" } else { "" };
    let _ = writeln!(out, "## Servers under load: Odeon vs Colyseus 0.18, arena room{title}\n");
    let pin = match &plan.pin {
        Some((s, l)) => format!("server pinned to CPU {s}, loadgen to CPU {l}"),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        out,
        "Run on {} on {} cores ({}); {pin}. Each row is a fresh server. Active clients send `move` at {} Hz; \
         {} s warm-up, then a {} s window. Whole run: {:.0} s.\n",
        meta.date,
        meta.nproc,
        meta.cpu_model,
        plan.rate_hz,
        plan.warmup_secs,
        plan.measure_secs,
        meta.elapsed.as_secs_f64()
    );
    for (kind, why) in &plan.skipped {
        let _ = writeln!(out, "**{} skipped:** {why}\n", kind.name());
    }
    out.push_str(
        "CPU % is of one core (utime + stime from /proc); CPU µs/frame is server CPU time over frames in (moves) \
         plus frames out (patches and other frames), and its kernel part is the stime share of it (the TCP path that \
         both servers pay for the same frames); RSS is VmRSS at the end of the window; join is HTTP request to \
         first ROOM_STATE; echo is a move sent to the first patch showing it. ⚠ marks runs where the loadgen used \
         over 90 % of its core (the figures then measure the loadgen).\n\n",
    );

    let active = rows_of(records, |w| matches!(w, Workload::Active(_)).then(|| w.clients().0.to_string()));
    if !active.is_empty() {
        out.push_str("### Active clients (no idle clients)\n\n");
        table(
            &mut out,
            "clients",
            &active,
            &[CPU, US_PER_FRAME, SYS_PER_FRAME, RSS, JOIN_P99, ECHO_P50, ECHO_P99, PATCHES],
        );
        out.push('\n');
    }
    let idle = rows_of(records, |w| matches!(w, Workload::Idle(_)).then(|| w.clients().1.to_string()));
    if !idle.is_empty() {
        out.push_str("### Idle clients only\n\n");
        table(&mut out, "idle", &idle, &[RSS, KIB_PER_IDLE, CPU, CPU_PER_1000, IDLE_PATCHES]);
        out.push('\n');
    }
    let mixed = rows_of(records, |w| match w {
        Workload::Mixed { idle, active } => Some(format!("{idle} + {active}")),
        _ => None,
    });
    if !mixed.is_empty() {
        out.push_str("### Idle + active clients\n\n");
        table(
            &mut out,
            "idle + active",
            &mixed,
            &[CPU, US_PER_FRAME, SYS_PER_FRAME, RSS, JOIN_P99, ECHO_P50, ECHO_P99, PATCHES, IDLE_PATCHES],
        );
        out.push('\n');
    }

    out.push_str("Empty server RSS (median over its runs): ");
    let empties: Vec<String> = plan
        .servers
        .iter()
        .map(|spec| {
            let v = records
                .iter()
                .filter(|r| r.server == spec.kind)
                .filter_map(|r| mib(r.empty_rss_kib))
                .collect();
            format!("{} {} MiB", spec.kind.name(), cell(median(v), 1))
        })
        .collect();
    let _ = writeln!(out, "{}.\n", empties.join(", "));

    // The issue's targets, for Odeon at the largest measured size.
    let odeon_idle =
        records.iter().filter(|r| r.server == Kind::Odeon && matches!(r.workload, Workload::Idle(_)));
    let largest_idle = odeon_idle.max_by_key(|r| r.workload.clients().1);
    let largest_mixed = records
        .iter()
        .filter(|r| r.server == Kind::Odeon && matches!(r.workload, Workload::Mixed { .. }))
        .max_by_key(|r| r.workload.clients());
    out.push_str("Targets (Odeon, largest size):\n\n");
    let idle_label = largest_idle.map_or("—".to_owned(), |r| r.workload.clients().1.to_string());
    let _ = writeln!(
        out,
        "- RSS per idle client ≤ {TARGET_KIB_PER_IDLE} KiB ({idle_label} idle): {}",
        check(largest_idle.and_then(kib_per_idle), TARGET_KIB_PER_IDLE)
    );
    let _ = writeln!(
        out,
        "- CPU per 1000 idle clients ≤ {TARGET_CPU_PCT_PER_1000_IDLE} % of a core ({idle_label} idle): {}",
        check(largest_idle.and_then(cpu_per_1000_idle), TARGET_CPU_PCT_PER_1000_IDLE)
    );
    let mixed_label = largest_mixed.map_or("—".to_owned(), |r| {
        let (a, i) = r.workload.clients();
        format!("{a} active + {i} idle")
    });
    let _ = writeln!(
        out,
        "- echo p99 ≤ {TARGET_ECHO_P99_MS} ms ({mixed_label} in one process): {}\n",
        check(largest_mixed.and_then(|r| Some(s(r)?.echo_ms?.p99)), TARGET_ECHO_P99_MS)
    );

    let mut notes = Vec::new();
    for r in records {
        let who = format!("{} / {}", r.workload.label(), r.server.name());
        if let Some(e) = &r.error {
            notes.push(format!("{who}: **failed**: {}", e.lines().next().unwrap_or_default()));
        }
        if let Some(e) = &r.retried_after {
            notes.push(format!(
                "{who}: first attempt failed and was retried: {}",
                e.lines().next().unwrap_or_default()
            ));
        }
        if let Some(s) = s(r) {
            if s.failed_joins > 0 {
                notes.push(format!(
                    "{who}: {} failed joins (first: {})",
                    s.failed_joins,
                    s.first_join_error.as_deref().unwrap_or("?")
                ));
            }
            if s.loadgen_limited {
                notes.push(format!("{who}: loadgen-limited ({} % CPU)", cell(s.loadgen_cpu_pct, 0)));
            }
            // A pinned server's own threads share its core, so its wait is not by itself a sign
            // of outside load; the loadgen's (one thread) and the machine's are.
            let starved = s.loadgen_wait_pct.is_some_and(|w| w > 10.0);
            if starved || s.other_cpu_pct.is_some_and(|o| o > 20.0) {
                notes.push(format!(
                    "{who}: noisy: other processes used {} % of a core; the server waited {} % and the loadgen {} % \
                     of the window for a CPU",
                    cell(s.other_cpu_pct, 0),
                    cell(s.server_wait_pct, 0),
                    cell(s.loadgen_wait_pct, 0)
                ));
            }
            if let Some(late) = s.send_late_ms.filter(|q| q.p99 > 25.0) {
                notes.push(format!(
                    "{who}: sends ran late (p99 {:.1} ms, {} slots skipped)",
                    late.p99, s.skipped_sends
                ));
            }
            if s.decode_errors > 0 || s.disconnects > 0 {
                notes
                    .push(format!("{who}: {} decode errors, {} disconnects", s.decode_errors, s.disconnects));
            }
        }
    }
    let commands = records.iter().map(|r| format!("{}\n{}", r.server_cmd, r.loadgen_cmd));
    footer(&mut out, &notes, std::iter::once(meta.command.clone()).chain(commands));
    out
}

/// The end of a report: its notes, when there are any, then the commands that made it, folded.
pub fn footer(out: &mut String, notes: &[String], commands: impl IntoIterator<Item = String>) {
    if !notes.is_empty() {
        out.push_str("Notes:\n\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out.push_str("<details><summary>Commands</summary>\n\n```sh\n");
    for c in commands {
        let _ = writeln!(out, "{c}");
    }
    out.push_str("```\n\n</details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_798_761_599), "2026-12-31");
    }

    #[test]
    fn ratios_and_cells() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25×");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
        assert_eq!(cell(None, 1), "—");
        assert_eq!(cell(Some(1.26), 1), "1.3");
        assert_eq!(check(Some(0.2), 0.3), "0.20 ✓");
    }
}
