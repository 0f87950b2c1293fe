//! The drain workload's Markdown section: the drain's answer and each room's freeze, the
//! clients' view of it through the proxy, host 1's exit, per-process CPU, the targets, notes and
//! the exact commands.

use std::fmt::Write as _;

use super::Plan;
use super::deploy_report::{cell, check, nearest_rank};
use super::drain::{self, DrainPlan, DrainRecord, EXIT_WITHIN};
use super::report::{Meta, footer};

/// The whole drain, request to answer, ms.
pub const TARGET_DRAIN_MS: f64 = 5000.0;
/// A room's pause (freeze) at p99, ms.
pub const TARGET_FREEZE_P99_MS: f64 = 50.0;

/// The moved rooms' freezes, ms.
fn freezes(record: &DrainRecord) -> Vec<f64> {
    record.answer.as_ref().map_or_else(Vec::new, |a| a.moved.iter().map(|m| m.took_ms).collect())
}

/// `t` (Unix ms) as ms after the drain request.
fn since_drain(record: &DrainRecord, t: Option<u64>) -> Option<f64> {
    Some(t? as f64 - record.drain_unix_ms? as f64)
}

/// How host 1 ended, for the table and the targets.
fn exit_text(record: &DrainRecord) -> String {
    match (&record.exit_status, record.exit_after_ms) {
        (Some(status), Some(ms)) => format!("status {status}, {ms:.0} ms after the answer"),
        _ => format!("still running {} s after the answer", EXIT_WITHIN.as_secs()),
    }
}

/// The section. `dp` is the plan, or why the workload could not run.
pub fn markdown(
    plan: &Plan,
    meta: &Meta,
    dp: Result<&DrainPlan, &String>,
    record: Option<&DrainRecord>,
) -> String {
    let mut out = String::new();
    let quick = if plan.quick { " (quick smoke run, not a measurement)" } else { "" };
    let _ = writeln!(out, "## Drain: moving a host's rooms to another host{quick}\n");
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
    let rooms = dp.rooms();
    let pin = match &plan.pin {
        Some((a, b)) => format!(
            "both hosts on CPU {a} (host 2 is idle until the drain, host 1 gone after it, so each has the core \
             to itself but for the moves), odeon-proxy, redis-server and the loadgen on CPU {b}; the bench \
             itself (the drain request) unpinned"
        ),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        out,
        "Run on {} on {} cores ({}). A fresh redis-server, two `odeon-host` processes with `--redis-url`, \
         `--admin-token`, `--behind-proxy` and a plugins directory each (arena), and one `odeon-proxy` (`{}`) in \
         front. The loadgen joins {} active clients through the proxy (`move` at {} Hz, rooms of 50) while only \
         host 1 runs; host 2 starts after the joins, so all {rooms} rooms are on host 1. {} s after the \
         loadgen's {} s warm-up the bench sends `POST /odeon/admin/drain` to host 1 and times the answer, waits \
         up to {} s for host 1 to exit, and ends the loadgen's window {} s later. Behind the proxy a moved \
         room's clients stay connected: the proxy holds each one's frames while the room moves and resumes it \
         on host 2. A client closed with 4010 all the same would reconnect as the SDKs do \
         (`--reconnect-on-4010`: the same URL with `reconnectionToken` and `skipHandshake`), but at once, and \
         again after 100, 200 and 300 ms. Pinning: {pin}.\n",
        meta.date,
        meta.nproc,
        meta.cpu_model,
        dp.proxy_bin.display(),
        dp.clients,
        plan.rate_hz,
        dp.before_secs,
        plan.warmup_secs,
        EXIT_WITHIN.as_secs(),
        dp.after_secs,
    );

    let took = freezes(record);
    out.push_str(
        "| answer ms | rooms on host 1 | moved | stayed | freeze p50 ms | freeze p99 ms | freeze max ms | hold p50 ms | hold p99 ms | host 1 |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let held: Vec<f64> =
        record.answer.as_ref().map_or_else(Vec::new, |a| a.moved.iter().map(|m| m.held_ms).collect());
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        cell(record.answer_ms, 1),
        record.rooms_before.map_or_else(|| "—".to_owned(), |r| r.to_string()),
        record.answer.as_ref().map_or_else(|| "—".to_owned(), |a| a.moved.len().to_string()),
        record.answer.as_ref().map_or_else(|| "—".to_owned(), |a| a.stayed.len().to_string()),
        cell(nearest_rank(&took, 0.5), 2),
        cell(nearest_rank(&took, 0.99), 2),
        cell(took.iter().copied().reduce(f64::max), 2),
        cell(nearest_rank(&held, 0.5), 1),
        cell(nearest_rank(&held, 0.99), 1),
        exit_text(record),
    );
    out.push_str(
        "*answer* is the drain request's round trip (every room moved by then); a room's *freeze* is host 1's \
         `tookMs`, from freezing the room to host 2 running it (the room's pause); its *hold* (`heldMs`) comes \
         before: the room runs on while the proxy holds its clients' frames (their moves wait at the proxy, \
         the room's patches keep coming); percentiles are nearest-rank over the moved rooms.\n\n",
    );
    clients(&mut out, record);
    cutovers(&mut out, record);
    cpu(&mut out, record);
    targets(&mut out, dp, record);

    let mut notes = record.notes.clone();
    if let Some(e) = &record.error {
        notes.push(format!("**failed**: {}", e.lines().next().unwrap_or_default()));
    }
    if let Some(e) = &record.retried_after {
        notes.push(format!("first attempt failed and was retried: {}", e.lines().next().unwrap_or_default()));
    }
    if let Some(e) = &record.answer_error {
        notes.push(format!("the drain request: {e}"));
    }
    if record.rooms_before.is_some_and(|r| r != u64::from(rooms)) {
        notes.push(format!(
            "host 1 had {} rooms before the drain, not {rooms}",
            record.rooms_before.unwrap_or(0)
        ));
    }
    if let Some(a) = &record.answer {
        for s in &a.stayed {
            notes.push(format!("room {} stayed on host 1: {}", s.room_id, s.reason));
        }
        let elsewhere = a.moved.iter().filter(|m| m.to != drain::process_id(2)).count();
        if elsewhere > 0 {
            notes.push(format!("{elsewhere} rooms moved to another process than host 2"));
        }
        if record.host2_rooms.is_some_and(|r| r != a.moved.len() as u64) {
            notes.push(format!(
                "host 2 had {} rooms at the end of the window, not the {} moved",
                record.host2_rooms.unwrap_or(0),
                a.moved.len()
            ));
        }
    }
    if record.proxy_knows_moves == Some(false) {
        notes.push(format!(
            "{} has no moved-room lookup (no `odeon:moved:` in the binary): it is older than the drain \
             (5a1e076). A client coming back by host 1's path is routed to host 1 while it runs, and gets 404 \
             once it has gone; rebuild it (`cargo build --release -p odeon-proxy`) and run again",
            dp.proxy_bin.display()
        ));
    }
    if let Some(s) = &record.summary {
        if s.failed_joins > 0 {
            let first = s.first_join_error.as_deref().unwrap_or("?");
            notes.push(format!("{} failed joins (first: {first})", s.failed_joins));
        }
        if let Some(e) = s.first_retry_reason.as_ref().filter(|_| s.reconnections > 0) {
            notes.push(format!(
                "{} reconnection attempts were tried again; the first failed with: {e}",
                s.reconnect_retries
            ));
        }
        if let Some(e) = &s.first_reconnect_error {
            notes.push(format!("{} reconnections failed; the first: {e}", s.reconnect_failures));
        }
        if s.loadgen_limited {
            notes.push(format!("loadgen-limited ({} % CPU)", cell(s.loadgen_cpu_pct, 0)));
        }
        if s.loadgen_wait_pct.is_some_and(|w| w > 10.0) {
            notes.push(format!(
                "the loadgen waited {} % of the window for a CPU: its core was busy (see the CPU table)",
                cell(s.loadgen_wait_pct, 0)
            ));
        }
        if s.decode_errors > 0 {
            notes.push(format!("{} frames the clients could not decode", s.decode_errors));
        }
    }
    let shared_core = |f: fn(&drain::CpuRow) -> Option<f64>| -> f64 {
        let rest = plan.pin.as_ref().map(|(_, b)| b.as_str());
        record.cpu.iter().filter(|r| Some(r.cpu.as_str()) == rest).filter_map(f).sum()
    };
    let (busy_before, busy_after) = (shared_core(|r| r.before_pct), shared_core(|r| r.after_pct));
    if plan.pin.is_some() && busy_before.max(busy_after) > 90.0 {
        notes.push(format!(
            "CPU {} (proxy, redis-server, loadgen) was nearly or fully busy ({busy_before:.0} % before the \
             drain, {busy_after:.0} % after, summed over its processes): the clients' figures (echo, \
             reconnection times) include waiting for it; the hosts' (answer, freezes) do not",
            plan.pin.as_ref().map_or("", |(_, b)| b.as_str())
        ));
    }
    if record.cpu.iter().any(|r| {
        r.name.starts_with("other") && [r.before_pct, r.after_pct].into_iter().flatten().any(|v| v > 30.0)
    }) {
        notes.push("possibly noisy: *other* was above 30 % of a core (see the CPU table)".to_owned());
    }
    footer(&mut out, &notes, std::iter::once(meta.command.clone()).chain(record.commands.iter().cloned()));
    out
}

fn clients(out: &mut String, record: &DrainRecord) {
    let Some(s) = &record.summary else {
        out.push_str("The loadgen wrote no summary.\n\n");
        return;
    };
    let q = |v: Option<crate::metrics::Quantiles>| {
        v.map_or_else(|| "—".to_owned(), |q| format!("{:.1} / {:.1} / {:.1}", q.p50, q.p99, q.max))
    };
    let _ = writeln!(
        out,
        "The clients ({:.0} s window, through the proxy): {} of {} joined. **{} sockets closed** ({} of them \
         with 4010); **{} reconnections**, {} failed, {} retried attempts; close → ROOM_STATE p50 / p99 / max {} ms. The first 4010 \
         close came {} ms after the drain request, the last client was back {} ms after it. Echo over the \
         window p50 / p99 / max {} ms; {} of {} moves sent in the window never shown by a patch or state (lost, \
         or overwritten by the next before a patch), of them **{} lost in the move** (sent on the closed socket \
         after the last move the room's state showed on the new one); {} send slots skipped (a client falls \
         behind while it reconnects). odeon-proxy CPU {} %, loadgen CPU {} \
         %{} (over the window).\n",
        s.measure_secs,
        s.joined_active,
        s.clients,
        s.socket_closes,
        s.closed_4010,
        s.reconnections,
        s.reconnect_failures,
        s.reconnect_retries,
        q(s.reconnect_ms),
        cell(since_drain(record, s.first_4010_unix_ms), 0),
        cell(since_drain(record, s.last_reconnect_unix_ms), 0),
        q(s.echo_ms),
        s.echo_missed,
        s.window_moves,
        s.moves_lost_on_4010,
        s.skipped_sends,
        cell(s.proxy_cpu_pct, 1),
        cell(s.loadgen_cpu_pct, 0),
        if s.loadgen_limited { " ⚠" } else { "" },
    );
}

fn cutovers(out: &mut String, record: &DrainRecord) {
    let c = &record.cutovers;
    if c.ms.is_empty() {
        out.push_str("The proxy logged no cutover.\n\n");
        return;
    }
    let mut ms = c.ms.clone();
    ms.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "The proxy's cutovers ({} clients followed their rooms, {} with the resume opened during the hold): \
         from the old host's `moved` to the client spliced onto host 2, p50 / p90 / p99 / max {} / {} / {} / {} \
         ms. A client's gap in patches is its room's freeze plus its cutover; compare the echo over the window, \
         the latency every frame pays on this machine (with CPU 1's wait when it is busy).\n",
        ms.len(),
        c.preopened,
        cell(nearest_rank(&ms, 0.5), 1),
        cell(nearest_rank(&ms, 0.9), 1),
        cell(nearest_rank(&ms, 0.99), 1),
        cell(ms.last().copied(), 1),
    );
}

fn cpu(out: &mut String, record: &DrainRecord) {
    if let Some((overflows, retrans)) = record.listen_overflows {
        let _ = writeln!(
            out,
            "From the drain request to the end of the window the machine dropped {overflows} connection attempts \
             on a full accept queue (`ListenOverflows`) and sent {retrans} SYNs again (`TCPSynRetrans`): a \
             reconnection whose SYN was dropped waits 1 s for its retransmission. Machine-wide counters.\n"
        );
    }
    if record.cpu.is_empty() {
        return;
    }
    out.push_str(
        "CPU, % of one core (utime + stime from /proc): *before* runs from the end of the warm-up to the drain \
         request, *after* from the drain's answer to the end of the window. *other* is the machine's busy time \
         (/proc/stat) less these processes: network work the kernel charges to no process (two TCP hops per \
         frame through the proxy), the bench, anything else running, and after the drain host 1's time until \
         its exit.\n\n\
         | process | pinned to CPU | before the drain % | after % |\n|---|---|---:|---:|\n",
    );
    for r in &record.cpu {
        let after = match (r.after_pct, r.name.as_str()) {
            (None, "host 1") => "exited".to_owned(),
            (v, _) => cell(v, 1),
        };
        let _ = writeln!(out, "| {} | {} | {} | {} |", r.name, r.cpu, cell(r.before_pct, 1), after);
    }
    out.push('\n');
}

fn targets(out: &mut String, dp: &DrainPlan, record: &DrainRecord) {
    out.push_str("Targets:\n\n");
    let rooms = dp.rooms();
    let moved = record.answer.as_ref().map_or(0, |a| a.moved.len());
    let mut drain = check(record.answer_ms.map(|ms| ms / 1000.0), TARGET_DRAIN_MS / 1000.0, 2, "s");
    if moved != rooms as usize {
        drain = drain.replace(" ✓", " ✗");
    }
    let _ = writeln!(
        out,
        "- drain of {rooms} arena rooms of 50 clients in ≤ 5 s: {drain} ({moved} of {rooms} moved)"
    );
    let p99 = nearest_rank(&freezes(record), 0.99);
    let _ = writeln!(
        out,
        "- each room's pause ≤ {:.0} ms p99: {} (freeze, `tookMs`)",
        TARGET_FREEZE_P99_MS,
        check(p99, TARGET_FREEZE_P99_MS, 2, "ms")
    );
    let closes = record.summary.as_ref().map(|s| s.socket_closes as f64);
    let _ = writeln!(
        out,
        "- 0 client-visible disconnects through the proxy: {}",
        check(closes, 0.0, 0, "sockets closed")
    );
    let lost = record.summary.as_ref().filter(|s| s.reconnections > 0);
    let scope = match lost {
        Some(s) if s.reconnect_failures > 0 => {
            format!(
                "; over the {} reconnected clients, not the {} that failed",
                s.reconnections, s.reconnect_failures
            )
        }
        Some(_) => String::new(),
        None => "; no client reconnected: no move was sent on a closed socket. Each message's delivery \
                 across a drain, exactly once and in order, is checked in tests/e2e/handover.test.mjs"
            .to_owned(),
    };
    let _ = writeln!(
        out,
        "- 0 messages lost: {} (client to room: moves sent on the closed socket after the last one the moved \
         room's state shows to the reconnected client; a room applies a client's moves in order, so these are \
         lost{scope}; room to client: not measured)",
        check(lost.map(|s| s.moves_lost_on_4010 as f64), 0.0, 0, "moves lost"),
    );
    let exited = record.exit_status.as_deref() == Some("0");
    let _ = writeln!(
        out,
        "- host 1 exits by itself with status 0 within {} s: {} {}\n",
        EXIT_WITHIN.as_secs(),
        exit_text(record),
        if exited { "✓" } else { "✗" }
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::bench::drain::{CpuRow, DrainAnswer};
    use crate::bench::server::{Kind, Spec};

    fn plan() -> Plan {
        Plan {
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
        }
    }

    #[test]
    fn the_section_reports_the_drain_the_clients_and_the_targets() {
        let meta = Meta {
            date: "2026-12-07".to_owned(),
            nproc: 2,
            cpu_model: "test CPU".to_owned(),
            command: "odeon-bench --workloads drain".to_owned(),
            elapsed: Duration::from_secs(1),
        };
        let host =
            Spec { kind: Kind::Odeon, program: "odeon-host".into(), args: Vec::new(), cwd: ".".into() };
        let dp = DrainPlan {
            clients: 100,
            host,
            redis: "redis-server".into(),
            plugins: "plugins".into(),
            proxy_bin: "odeon-proxy".into(),
            before_secs: 5.0,
            after_secs: 5.0,
        };
        let answer: DrainAnswer = serde_json::from_str(
            r#"{"processId":"drain-host-1","draining":true,"moved":[
                {"roomId":"a","to":"drain-host-2","tookMs":12.5,"heldMs":150.0},{"roomId":"b","to":"drain-host-2","tookMs":60.0,"heldMs":90.0}],
                "stayed":[],"rooms":0}"#,
        )
        .unwrap();
        let mut summary: crate::summary::Summary =
            serde_json::from_str(include_str!("testdata/drain-summary.json")).unwrap();
        summary.moves_lost_on_4010 = 3;
        let record = DrainRecord {
            rooms_before: Some(2),
            answer: Some(answer),
            answer_ms: Some(80.0),
            drain_unix_ms: Some(1_000_000),
            exit_after_ms: Some(40.0),
            exit_status: Some("0".to_owned()),
            host2_rooms: Some(2),
            cpu: vec![CpuRow {
                name: "host 1".into(),
                cpu: "0".into(),
                before_pct: Some(20.0),
                after_pct: None,
            }],
            listen_overflows: Some((7, 9)),
            proxy_knows_moves: Some(false),
            cutovers: drain::Cutovers { ms: vec![3.0, 1.0, 2.0, 40.0], preopened: 3 },
            summary: Some(summary),
            ..DrainRecord::default()
        };
        let md = markdown(&plan(), &meta, Ok(&dp), Some(&record));
        assert!(
            md.contains("| 80.0 | 2 | 2 | 0 | 12.50 | 60.00 | 60.00 | 90.0 | 150.0 | status 0, 40 ms after the answer |"),
            "{md}"
        );
        assert!(md.contains("| host 1 | 0 | 20.0 | exited |"), "{md}");
        assert!(
            md.contains("(4 clients followed their rooms, 3 with the resume opened during the hold)"),
            "{md}"
        );
        assert!(md.contains("p50 / p90 / p99 / max 2.0 / 40.0 / 40.0 / 40.0 ms"), "{md}");
        assert!(md.contains("**100 sockets closed** (100 of them with 4010); **100 reconnections**"), "{md}");
        assert!(
            md.contains(
                "first 4010 close came 20 ms after the drain request, the last client was back 310 ms"
            ),
            "{md}"
        );
        assert!(
            md.contains("drain of 2 arena rooms of 50 clients in ≤ 5 s: 0.08 s ✓ (2 of 2 moved)"),
            "{md}"
        );
        assert!(md.contains("each room's pause ≤ 50 ms p99: 60.00 ms ✗"), "{md}");
        assert!(md.contains("0 client-visible disconnects through the proxy: 100 sockets closed ✗"), "{md}");
        assert!(md.contains("0 messages lost: 3 moves lost ✗"), "{md}");
        assert!(md.contains("status 0, 40 ms after the answer ✓"), "{md}");
        assert!(md.contains("dropped 7 connection attempts"), "{md}");
        assert!(md.contains("has no moved-room lookup"), "{md}");
        let skipped = markdown(&plan(), &meta, Err(&"no redis-server".to_owned()), None);
        assert!(skipped.contains("**Not run:** no redis-server"), "{skipped}");
    }
}
