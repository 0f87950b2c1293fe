//! The deploy workload's Markdown section: the deploy latency across three hosts, each live
//! migration of host 1's arena rooms, the pauses and the clients' view of them, the targets,
//! notes and the exact commands.

use std::fmt::Write as _;

use super::Plan;
use super::deploy::{self, DeployPlan, DeployRecord, HOSTS, Migration, Series, Upload};
use super::report::{Meta, footer};

/// Deploy latency allowed at p99, across three hosts, ms.
pub const TARGET_DEPLOY_P99_MS: f64 = 2000.0;
/// Pause allowed at p99 for a 50-player arena room, µs.
pub const TARGET_PAUSE_P99_US: f64 = 5000.0;

pub(super) fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `value` against `target` (lower is better): the value and ✓ or ✗.
pub(super) fn check(value: Option<f64>, target: f64, decimals: usize, unit: &str) -> String {
    match value {
        Some(v) if v <= target => format!("{v:.decimals$} {unit} ✓"),
        Some(v) => format!("{v:.decimals$} {unit} ✗"),
        None => "not measured".to_owned(),
    }
}

/// The nearest-rank percentile `q` (0–1) of `v`.
pub fn nearest_rank(v: &[f64], q: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).max(1);
    v.get(rank - 1).copied()
}

/// The median (of an even count, the mean of the middle two).
pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Host 1's migrations, in order, with the upload each came from.
fn host1(record: &DeployRecord) -> Vec<(&Upload, &Migration)> {
    let id = deploy::process_id(1);
    record.migrations.iter().filter_map(|u| Some((u, u.migration_of(&id)?))).collect()
}

/// A migration's p99 pause, or its longest where the host did not report the p99.
fn p99_us(m: &Migration) -> u64 {
    m.pause_p99_us.unwrap_or(m.pause_max_us)
}

/// Rooms migrated per second of the host's migration.
fn rooms_per_sec(m: &Migration) -> Option<f64> {
    m.elapsed_us.filter(|&e| e > 0).map(|e| m.migrated as f64 / (e as f64 / 1e6))
}

/// The section. `dp` is the plan, or why the workload could not run.
pub fn markdown(
    plan: &Plan,
    meta: &Meta,
    dp: Result<&DeployPlan, &String>,
    record: Option<&DeployRecord>,
) -> String {
    let mut out = String::new();
    let quick = if plan.quick { " (quick smoke run, not a measurement)" } else { "" };
    let _ = writeln!(out, "## Deploy and live migration: {HOSTS} hosts sharing Redis{quick}\n");
    let (dp, record) = match (dp, record) {
        (Ok(dp), Some(r)) => (dp, r),
        (Err(why), _) => {
            let _ = writeln!(out, "**Not run:** {why}\n");
            return out;
        }
        (Ok(_), None) => {
            out.push_str("**Not run.**\n\n");
            return out;
        }
    };
    let pin = match &plan.pin {
        Some((a, b)) => format!(
            "host 1 (the one uploaded to, and the one with the clients) alone on CPU {a}; hosts 2 and 3, \
             redis-server and the loadgen on CPU {b}; the bench itself (the uploads) unpinned"
        ),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        out,
        "Run on {} on {} cores ({}). One fresh redis-server and {HOSTS} `odeon-host` processes, each with \
         `--redis-url`, `--admin-token` and a plugins directory of its own (arena and echo). Every upload is a \
         `POST /odeon/admin/plugins` to host 1, which answers once every live host has answered. Pinning: {pin}.\n",
        meta.date, meta.nproc, meta.cpu_model,
    );

    if dp.migrations > 0 {
        migrations(&mut out, plan, dp, record);
    }
    if dp.uploads > 0 {
        latency(&mut out, dp, record);
    }
    targets(&mut out, dp, record);

    let mut notes = record.notes.clone();
    if let Some(e) = &record.error {
        notes.push(format!("**failed**: {}", e.lines().next().unwrap_or_default()));
    }
    if let Some(e) = &record.retried_after {
        notes.push(format!("first attempt failed and was retried: {}", e.lines().next().unwrap_or_default()));
    }
    for series in &record.latency {
        if let Some(other) = series.other_cpu_pct.filter(|&o| o > 20.0) {
            notes.push(format!(
                "{}: noisy: other processes used {other:.0} % of a core while the uploads ran",
                series.label
            ));
        }
        for (k, u) in series.uploads.iter().enumerate() {
            if let Some(why) = u.failure(HOSTS) {
                notes.push(format!("{}, upload {} ({}): {why}", series.label, k + 1, u.file));
            }
        }
    }
    let expected = u64::from(dp.rooms());
    for (k, u) in record.migrations.iter().enumerate() {
        let who = format!("migration {} ({})", k + 1, u.file);
        if let Some(why) = u.failure(HOSTS) {
            notes.push(format!("{who}: {why}"));
        }
        match u.migration_of(&deploy::process_id(1)) {
            None if u.answer.is_some() => notes.push(format!("{who}: host 1 reported no migration")),
            None => {}
            Some(m) => {
                if m.migrated != expected {
                    notes.push(format!("{who}: {} rooms migrated, not {expected}", m.migrated));
                }
                for kept in &m.kept {
                    notes.push(format!("{who}: kept {}: {}", kept.room_id, kept.reason));
                }
                // Rooms swap one after another on a pinned host: a pause as long as most of the
                // whole migration is a room that stayed frozen while the others swapped.
                if let Some(elapsed) = m.elapsed_us.filter(|&e| m.migrated > 2 && m.pause_max_us * 2 > e) {
                    notes.push(format!(
                        "{who}: its slowest room's pause ({} µs) spans most of the migration ({elapsed} µs): that room \
                         stayed frozen while the others swapped (see the host log's per-room pauses)",
                        m.pause_max_us
                    ));
                }
                if m.pause_p99_us.is_none() {
                    notes.push(format!("{who}: the host reports no p99 pause; its longest pause stands in"));
                }
            }
        }
        if !u.in_window {
            notes.push(format!("{who}: ended after the loadgen's window (not in its CPU figures)"));
        }
    }
    if record.rooms_at_start.is_some_and(|r| r != expected) {
        notes.push(format!(
            "host 1 had {} rooms when the migrations began, not {expected}",
            record.rooms_at_start.unwrap_or_default()
        ));
    }
    if let Some(s) = &record.summary {
        if s.failed_joins > 0 {
            let first = s.first_join_error.as_deref().unwrap_or("?");
            notes.push(format!("{} failed joins (first: {first})", s.failed_joins));
        }
        if s.loadgen_limited {
            notes.push(format!("loadgen-limited ({} % CPU)", cell(s.loadgen_cpu_pct, 0)));
        }
        let other = record.migration_other_cpu_pct;
        if s.loadgen_wait_pct.is_some_and(|w| w > 10.0) || other.is_some_and(|o| o > 20.0) {
            notes.push(format!(
                "migrations: other processes used {} % of a core (besides hosts 2 and 3, which compile each \
                 version on the loadgen's core); the loadgen waited {} % and host 1 {} % of the window for a CPU \
                 (host 1's count includes its own threads waiting for each other)",
                cell(other, 0),
                cell(s.loadgen_wait_pct, 0),
                cell(s.server_wait_pct, 0),
            ));
        }
        if s.decode_errors > 0 {
            notes.push(format!("{} patches the clients could not decode", s.decode_errors));
        }
    }
    footer(&mut out, &notes, std::iter::once(meta.command.clone()).chain(record.commands.iter().cloned()));
    out
}

fn migrations(out: &mut String, plan: &Plan, dp: &DeployPlan, record: &DeployRecord) {
    let rooms = dp.rooms();
    let _ = writeln!(
        out,
        "### Live migration: {} migrations, {} clients in {rooms} arena rooms on host 1\n",
        dp.migrations, dp.clients
    );
    let _ = writeln!(
        out,
        "The loadgen joins {} active clients to host 1 (`move` at {} Hz, rooms of 50); only then do hosts 2 and \
         3 start, so that every room is on host 1 (a new room goes to the least-loaded host, and these are host \
         1's migrations of its own rooms). After its {} s warm-up the bench uploads `arena-v2.wasm` and \
         `arena.wasm` in turn with `?migrate=1`, one every {} s (or as soon as the previous one has answered, \
         when that takes longer), and reads host 1's migration from each answer. A room's *pause* runs from \
         freezing it to its first call on the new code; *elapsed* is the whole migration on host 1; *answer* is \
         the upload's round trip, every host's activation included. The loadgen's window runs from the end of \
         its warm-up to a second after the last migration's answer.\n",
        dp.clients,
        plan.rate_hz,
        plan.warmup_secs,
        deploy::SPACING.as_secs_f64()
    );
    out.push_str(
        "| # | to | answer ms | migrated | kept | pause p50 µs | pause p99 µs | pause max µs | elapsed ms | \
         rooms/s |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let id = deploy::process_id(1);
    for (k, u) in record.migrations.iter().enumerate() {
        match u.migration_of(&id) {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    k + 1,
                    u.file,
                    cell(u.ms, 1),
                    m.migrated,
                    m.kept.len(),
                    m.pause_p50_us,
                    m.pause_p99_us.map_or_else(|| "—".to_owned(), |p| p.to_string()),
                    m.pause_max_us,
                    cell(m.elapsed_us.map(|e| e as f64 / 1000.0), 2),
                    cell(rooms_per_sec(m), 0),
                );
            }
            None => {
                let why = u.error.as_deref().unwrap_or("no migration from host 1");
                let _ = writeln!(out, "| {} | {} | {} | {why} | | | | | | |", k + 1, u.file, cell(u.ms, 1));
            }
        }
    }
    out.push('\n');

    let h1 = host1(record);
    let p50s: Vec<f64> = h1.iter().map(|(_, m)| m.pause_p50_us as f64).collect();
    let p99 = h1.iter().map(|(_, m)| p99_us(m)).max();
    let max = h1.iter().map(|(_, m)| m.pause_max_us).max();
    let migrated: u64 = h1.iter().map(|(_, m)| m.migrated).sum();
    let timed: Vec<&Migration> = h1.iter().map(|(_, m)| *m).filter(|m| m.elapsed_us.is_some()).collect();
    let elapsed_s: f64 = timed.iter().filter_map(|m| m.elapsed_us).sum::<u64>() as f64 / 1e6;
    let rates: Vec<f64> = timed.iter().filter_map(|m| rooms_per_sec(m)).collect();
    let _ = writeln!(
        out,
        "Per-room pause over the {} migrations: p50 **{} µs** (the median of the per-migration p50s), p99 **{} \
         µs** (the largest per-migration p99; with {rooms} rooms a migration's nearest-rank p99 is its slowest \
         room), max {} µs. Rooms migrated per second on host 1: **{}** ({migrated} rooms over {:.1} ms of \
         migration; per migration {}–{}).\n",
        h1.len(),
        cell(median(&p50s), 0),
        p99.map_or_else(|| "—".to_owned(), |p| p.to_string()),
        max.map_or_else(|| "—".to_owned(), |p| p.to_string()),
        cell((elapsed_s > 0.0).then(|| timed.iter().map(|m| m.migrated).sum::<u64>() as f64 / elapsed_s), 0),
        elapsed_s * 1000.0,
        cell(rates.iter().copied().reduce(f64::min), 0),
        cell(rates.iter().copied().reduce(f64::max), 0),
    );
    match &record.summary {
        Some(s) => {
            let _ = writeln!(
                out,
                "The clients meanwhile ({:.0} s window): {} of {} joined, **{} sockets closed**, echo p50 {} ms, \
                 p99 {} ms, max {} ms; {:.1} patches per client per second. Host 1 CPU {} %, loadgen CPU {} %{}. \
                 Other CPU during the migrations (anything but the hosts, redis-server, the loadgen and the \
                 bench): {} % of a core.\n",
                s.measure_secs,
                s.joined_active,
                s.clients,
                s.disconnects,
                cell(s.echo_ms.map(|q| q.p50), 1),
                cell(s.echo_ms.map(|q| q.p99), 1),
                cell(s.echo_ms.map(|q| q.max), 1),
                s.patches_per_active_client_per_sec.unwrap_or_default(),
                cell(s.server_cpu_pct, 1),
                cell(s.loadgen_cpu_pct, 0),
                if s.loadgen_limited { " ⚠" } else { "" },
                cell(record.migration_other_cpu_pct, 0),
            );
        }
        None => out.push_str("The loadgen wrote no summary.\n\n"),
    }
}

/// The answered uploads' times, ms.
fn upload_times(series: &Series) -> Vec<f64> {
    series.uploads.iter().filter_map(|u| u.ms).collect()
}

fn failures(series: &Series) -> usize {
    series.uploads.iter().filter(|u| u.failure(HOSTS).is_some()).count()
}

fn latency(out: &mut String, dp: &DeployPlan, record: &DeployRecord) {
    let _ = writeln!(out, "### Deploy latency: {} uploads to host 1 per row, {HOSTS} hosts\n", dp.uploads);
    out.push_str(
        "After the loadgen has gone, and host 1's rooms with it, the bench uploads `echo-v2.wasm` and \
         `echo.wasm` in turn (no migration), each timed from the request's start to the whole answer. A deploy \
         counts when the answer lists all three hosts as `active`. The percentiles are nearest-rank over every \
         upload that was answered. Host 1 sends the module to hosts 2 and 3 before it validates it, so all three \
         compile it at the same time, and it announces the deploy once its own compile passed. So with two \
         cores the uploads run twice: first with \
         hosts 2 and 3 sharing a core (the pinning of the migrations), then with host 3 moved next to host 1 \
         (idle by then), which gives each compiling host a core of its own, as three machines would.\n\n",
    );
    out.push_str(
        "| hosts pinned | uploads | all 3 hosts active | p50 ms | p99 ms | max ms | other CPU % |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for series in &record.latency {
        let times = upload_times(series);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            series.pinning,
            series.uploads.len(),
            series.uploads.len() - failures(series),
            cell(nearest_rank(&times, 0.5), 1),
            cell(nearest_rank(&times, 0.99), 1),
            cell(times.iter().copied().reduce(f64::max), 1),
            cell(series.other_cpu_pct, 0),
        );
    }
    out.push_str(
        "\n*Other CPU* is what the machine spent on anything but the three hosts, redis-server and the bench \
         while the row's uploads ran, in % of one core; above ~20 % something else was sharing the machine.\n\n",
    );
}

fn targets(out: &mut String, dp: &DeployPlan, record: &DeployRecord) {
    out.push_str("Targets:\n\n");
    if dp.uploads > 0 {
        let rows: Vec<String> = record
            .latency
            .iter()
            .map(|series| {
                let p99 = nearest_rank(&upload_times(series), 0.99);
                let mut text = check(p99, TARGET_DEPLOY_P99_MS, 1, "ms");
                let failed = failures(series);
                if failed > 0 {
                    // A deploy that did not reach every host misses the target, however fast.
                    text = text.replace(" ✓", " ✗");
                    text.push_str(&format!(
                        " ({failed} of {} not active on all {HOSTS})",
                        series.uploads.len()
                    ));
                }
                format!("{}: {text}", series.label)
            })
            .collect();
        let _ = writeln!(
            out,
            "- deploy ≤ {:.0} s p99 across {HOSTS} hosts: {}",
            TARGET_DEPLOY_P99_MS / 1000.0,
            if rows.is_empty() { "not measured".to_owned() } else { rows.join("; ") },
        );
    }
    if dp.migrations > 0 {
        let p99 = host1(record).iter().map(|(_, m)| p99_us(m)).max().map(|p| p as f64 / 1000.0);
        let _ = writeln!(
            out,
            "- migration pause ≤ {:.0} ms p99 for a 50-player arena room: {} (the largest per-migration p99)",
            TARGET_PAUSE_P99_US / 1000.0,
            check(p99, TARGET_PAUSE_P99_US / 1000.0, 2, "ms"),
        );
        let closed = record.summary.as_ref().map(|s| s.disconnects as f64);
        let _ =
            writeln!(out, "- sockets closed during the migrations: 0: {}", check(closed, 0.0, 0, "closed"));
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_and_median() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(10.0));
        assert_eq!(nearest_rank(&v, 0.99), Some(20.0));
        assert_eq!(nearest_rank(&v[..5], 0.5), Some(3.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    fn answered(file: &str, ms: f64, body: &str) -> Upload {
        Upload {
            file: file.into(),
            ms: Some(ms),
            status: Some(200),
            answer: Some(serde_json::from_str(body).unwrap()),
            error: None,
            in_window: true,
        }
    }

    #[test]
    fn the_section_reports_pauses_latency_and_targets() {
        use std::path::PathBuf;
        use std::time::Duration;

        use crate::bench::server::{Kind, Spec};
        let plan = Plan {
            workloads: Vec::new(),
            servers: Vec::new(),
            skipped: Vec::new(),
            warmup_secs: 5.0,
            measure_secs: 20.0,
            rate_hz: 10.0,
            pin: Some(("0".to_owned(), "1".to_owned())),
            loadgen: PathBuf::from("odeon-loadgen"),
            results_dir: PathBuf::from("results"),
            quick: false,
            proxy: None,
            deploy: None,
            drain: None,
        };
        let meta = Meta {
            date: "2026-12-07".to_owned(),
            nproc: 2,
            cpu_model: "test CPU".to_owned(),
            command: "odeon-bench --workloads deploy".to_owned(),
            elapsed: Duration::from_secs(1),
        };
        let host =
            Spec { kind: Kind::Odeon, program: "odeon-host".into(), args: Vec::new(), cwd: ".".into() };
        let dp = DeployPlan {
            uploads: 2,
            migrations: 1,
            clients: 500,
            host,
            redis: "redis-server".into(),
            plugins: "plugins".into(),
            variants: "plugin-variants".into(),
        };
        let hosts = |first: &str| {
            format!(
                r#"{{"name":"x","hash":"h","hosts":[{first},{{"processId":"deploy-host-2","status":"active"}},
                {{"processId":"deploy-host-3","status":"active"}}]}}"#
            )
        };
        let migration = r#"{"processId":"deploy-host-1","status":"active","migration":{"hash":"h","migrated":10,
            "kept":[],"pauseMaxUs":6000,"pauseP50Us":700,"pauseP99Us":6000,"elapsedUs":7500}}"#;
        let record = DeployRecord {
            latency: vec![Series {
                label: "shared",
                pinning: "host 1 on CPU 0".into(),
                uploads: vec![
                    answered(
                        "echo-v2.wasm",
                        1500.0,
                        &hosts(r#"{"processId":"deploy-host-1","status":"active"}"#),
                    ),
                    answered(
                        "echo.wasm",
                        2500.0,
                        &hosts(r#"{"processId":"deploy-host-1","status":"timeout"}"#),
                    ),
                ],
                other_cpu_pct: Some(2.0),
            }],
            migrations: vec![answered("arena-v2.wasm", 3000.0, &hosts(migration))],
            rooms_at_start: Some(10),
            ..DeployRecord::default()
        };
        let md = markdown(&plan, &meta, Ok(&dp), Some(&record));
        assert!(
            md.contains("| 1 | arena-v2.wasm | 3000.0 | 10 | 0 | 700 | 6000 | 6000 | 7.50 | 1333 |"),
            "{md}"
        );
        assert!(md.contains("| host 1 on CPU 0 | 2 | 1 | 1500.0 | 2500.0 | 2500.0 | 2 |"), "{md}");
        assert!(
            md.contains(
                "- deploy ≤ 2 s p99 across 3 hosts: shared: 2500.0 ms ✗ (1 of 2 not active on all 3)"
            ),
            "{md}"
        );
        assert!(md.contains("migration pause ≤ 5 ms p99 for a 50-player arena room: 6.00 ms ✗"), "{md}");
        assert!(md.contains("shared, upload 2 (echo.wasm): deploy-host-1 timeout"), "{md}");
        assert!(md.contains("spans most of the migration (7500 µs)"), "{md}");
        let skipped = markdown(&plan, &meta, Err(&"no redis-server".to_owned()), None);
        assert!(skipped.contains("**Not run:** no redis-server"), "{skipped}");
    }

    #[test]
    fn checks() {
        assert_eq!(check(Some(1.5), 2.0, 1, "ms"), "1.5 ms ✓");
        assert_eq!(check(Some(0.0), 0.0, 0, "closed"), "0 closed ✓");
        assert_eq!(check(Some(3.0), 0.0, 0, "closed"), "3 closed ✗");
        assert_eq!(check(None, 0.0, 0, "closed"), "not measured");
    }
}
