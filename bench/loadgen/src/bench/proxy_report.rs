//! The proxy workload's Markdown section: the three paths side by side, the latency each proxy
//! adds over the direct path of the same run, the targets, notes and the exact commands.

use std::fmt::Write as _;

use super::Plan;
use super::proxy::{ProxyPlan, ProxyRecord, Variant};
use super::report::Meta;
use crate::summary::Summary;

/// Added p99 latency allowed at the workload's size, ms.
pub const TARGET_ADDED_P99_MS: f64 = 1.0;

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:+.2}"))
}

fn s(r: &ProxyRecord) -> Option<&Summary> {
    r.summary.as_ref()
}

/// Proxy RSS growth per client over the proxy before any client, KiB.
pub fn kib_per_client(r: &ProxyRecord) -> Option<f64> {
    let s = s(r)?;
    let clients = s.joined_active;
    let grown = s.proxy_rss_kib? as f64 - r.proxy_empty_rss_kib? as f64;
    (clients > 0).then(|| grown / clients as f64)
}

fn echo_p50(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.echo_ms?.p50)
}

fn echo_p99(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.echo_ms?.p99)
}

fn rtt_p50(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.ping_rtt_ms?.p50)
}

fn rtt_p99(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.ping_rtt_ms?.p99)
}

fn loadgen_cell(r: &ProxyRecord) -> String {
    match s(r) {
        Some(s) if s.loadgen_limited => format!("{} ⚠", cell(s.loadgen_cpu_pct, 0)),
        Some(s) => cell(s.loadgen_cpu_pct, 0),
        None => "—".to_owned(),
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

/// `value` against `target` (lower is better): the value and ✓ or ✗.
fn check(value: Option<f64>, target: Option<f64>, unit: &str) -> String {
    match (value, target) {
        (Some(v), Some(t)) if v <= t => format!("{v:.2} {unit} ✓"),
        (Some(v), Some(_)) => format!("{v:.2} {unit} ✗"),
        (Some(v), None) => format!("{v:.2} {unit} (no baseline)"),
        (None, _) => "not measured".to_owned(),
    }
}

/// The section. `pp` is the plan, or why the workload could not run.
pub fn markdown(
    plan: &Plan,
    meta: &Meta,
    pp: Result<&ProxyPlan, &String>,
    records: &[ProxyRecord],
) -> String {
    let mut out = String::new();
    let quick = if plan.quick { " (quick smoke run, not a measurement)" } else { "" };
    let clients = pp.map_or(0, |p| p.clients);
    let _ = writeln!(out, "## Proxy: odeon-proxy against nginx, arena, {clients} clients{quick}\n");
    let pp = match pp {
        Ok(pp) => pp,
        Err(why) => {
            let _ = writeln!(out, "**Not run:** {why}\n");
            return out;
        }
    };
    let pin = match &plan.pin {
        Some((p, h)) => format!(
            "the proxy under test alone on CPU {p}; the host, its redis-server and the loadgen on CPU {h}, in every \
             row (so the direct row differs only by the missing hop)"
        ),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        out,
        "Run on {} on {} cores ({}). One Odeon host (`--redis-url … --behind-proxy`, the same configuration in \
         every row) with {clients} active clients (`move` at {} Hz, rooms of 50, and {} Colyseus PING per client \
         per second), reached directly, through odeon-proxy and through nginx (Debian's package, `worker_processes \
         1`, a plain WebSocket reverse proxy). Each row is a fresh redis-server, host and proxy; {} s warm-up, then \
         a {} s window. Pinning: {pin}.\n",
        meta.date, meta.nproc, meta.cpu_model, plan.rate_hz, pp.ping_hz, plan.warmup_secs, plan.measure_secs,
    );
    for (v, why) in &pp.skipped {
        let _ = writeln!(out, "**{} skipped:** {why}\n", v.name());
    }
    out.push_str(
        "Proxy CPU is utime + stime of the proxy process (nginx: its worker) over the window; per frame, over every \
         WebSocket frame it relayed both ways (moves and PINGs in, patches and PING answers out, WebSocket pings \
         and pongs), and its kernel part (stime). KiB/client is (proxy RSS at the end of the window − its RSS \
         before any client) / clients. Echo is a move sent to the first patch showing it (patches go out every \
         50 ms, so it carries up to 50 ms of waiting for the next patch); RTT is a Colyseus PING to its answer, \
         which the host's connection sends at once: the path's own round trip.\n\n",
    );

    out.push_str(
        "| path | frames/s | proxy CPU % | proxy µs/frame | of it kernel µs/frame | proxy RSS MiB (empty) | \
         proxy KiB/client | echo p50 ms | echo p99 ms | RTT p50 ms | RTT p99 ms | host CPU % | loadgen CPU % |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let sm = s(r);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
            r.variant.name(),
            cell(sm.map(|s| s.ws_frames_per_sec), 0),
            cell(sm.and_then(|s| s.proxy_cpu_pct), 1),
            cell(sm.and_then(|s| s.proxy_cpu_us_per_frame), 2),
            cell(sm.and_then(|s| s.proxy_sys_us_per_frame), 2),
            cell(mib(sm.and_then(|s| s.proxy_rss_kib)), 1),
            cell(mib(r.proxy_empty_rss_kib), 1),
            cell(kib_per_client(r), 2),
            cell(echo_p50(r), 2),
            cell(echo_p99(r), 2),
            cell(rtt_p50(r), 3),
            cell(rtt_p99(r), 3),
            cell(sm.and_then(|s| s.server_cpu_pct), 1),
            loadgen_cell(r),
        );
    }
    out.push('\n');

    let find = |v: Variant| records.iter().find(|r| r.variant == v && r.summary.is_some());
    let (direct, odeon, nginx) = (find(Variant::Direct), find(Variant::OdeonProxy), find(Variant::Nginx));
    let added =
        |r: Option<&ProxyRecord>, get: fn(&ProxyRecord) -> Option<f64>| Some(get(r?)? - get(direct?)?);
    let proxies: Vec<&ProxyRecord> = [odeon, nginx].into_iter().flatten().collect();
    if direct.is_some() && !proxies.is_empty() {
        out.push_str(
            "Latency added over the direct path of this run, ms:\n\n\
             | path | echo p50 | echo p99 | RTT p50 | RTT p99 |\n|---|---:|---:|---:|---:|\n",
        );
        for r in &proxies {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.variant.name(),
                signed(added(Some(r), echo_p50)),
                signed(added(Some(r), echo_p99)),
                signed(added(Some(r), rtt_p50)),
                signed(added(Some(r), rtt_p99)),
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "Targets (odeon-proxy, {clients} clients):\n");
    let per_frame = |r: Option<&ProxyRecord>| r.and_then(|r| s(r)?.proxy_cpu_us_per_frame);
    let _ = writeln!(
        out,
        "- CPU per relayed frame ≤ nginx ({} µs): {}",
        cell(per_frame(nginx), 2),
        check(per_frame(odeon), per_frame(nginx), "µs")
    );
    let _ = writeln!(
        out,
        "- memory per proxied client ≤ nginx ({} KiB): {}",
        cell(nginx.and_then(kib_per_client), 2),
        check(odeon.and_then(kib_per_client), nginx.and_then(kib_per_client), "KiB")
    );
    let _ = writeln!(
        out,
        "- added p99 ≤ {TARGET_ADDED_P99_MS} ms: echo {}; RTT {} (nginx: echo {}, RTT {} ms)\n",
        check(added(odeon, echo_p99), Some(TARGET_ADDED_P99_MS), "ms"),
        check(added(odeon, rtt_p99), Some(TARGET_ADDED_P99_MS), "ms"),
        signed(added(nginx, echo_p99)),
        signed(added(nginx, rtt_p99)),
    );

    let mut notes = notes(records);
    if clients < 500 {
        notes.push(format!(
            "at {clients} clients, memory per client is mostly fixed costs spread thin: the allocator's high-water \
             mark of 50 joins in flight and the loadgen's matchmaking keep-alive pool; compare it at 500 clients"
        ));
    }
    if !notes.is_empty() {
        out.push_str("Notes:\n\n");
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out.push_str("<details><summary>Commands</summary>\n\n```sh\n");
    let _ = writeln!(out, "{}", meta.command);
    for r in records {
        let _ = writeln!(out, "# {}", r.variant.name());
        for c in &r.commands {
            let _ = writeln!(out, "{c}");
        }
    }
    out.push_str("```\n\n</details>\n");
    out
}

fn notes(records: &[ProxyRecord]) -> Vec<String> {
    let mut notes = Vec::new();
    for r in records {
        let who = r.variant.name();
        if let Some(e) = &r.error {
            notes.push(format!("{who}: **failed**: {}", e.lines().next().unwrap_or_default()));
        }
        if let Some(e) = &r.retried_after {
            notes.push(format!(
                "{who}: first attempt failed and was retried: {}",
                e.lines().next().unwrap_or_default()
            ));
        }
        let Some(s) = s(r) else { continue };
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
        // The loadgen shares its core with the host here, so some wait is expected; much of it
        // delays reads and sends alike in every row.
        if s.loadgen_wait_pct.is_some_and(|w| w > 10.0) || s.other_cpu_pct.is_some_and(|o| o > 20.0) {
            let proxy = s.proxy_wait_pct.map(|w| format!(", the proxy {w:.0} %")).unwrap_or_default();
            notes.push(format!(
                "{who}: noisy: other processes used {} % of a core; the loadgen waited {} %, the host {} %{proxy} \
                 of the window for a CPU",
                cell(s.other_cpu_pct, 0),
                cell(s.loadgen_wait_pct, 0),
                cell(s.server_wait_pct, 0),
            ));
        }
        if let Some(late) = s.send_late_ms.filter(|q| q.p99 > 25.0) {
            notes.push(format!(
                "{who}: sends ran late (p99 {:.1} ms, {} slots skipped)",
                late.p99, s.skipped_sends
            ));
        }
        if s.pings_skipped > 0 {
            notes.push(format!("{who}: {} PINGs unanswered a period later (skipped)", s.pings_skipped));
        }
        if s.decode_errors > 0 || s.disconnects > 0 {
            notes.push(format!("{who}: {} decode errors, {} disconnects", s.decode_errors, s.disconnects));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_signs() {
        assert_eq!(check(Some(1.0), Some(2.0), "µs"), "1.00 µs ✓");
        assert_eq!(check(Some(3.0), Some(2.0), "µs"), "3.00 µs ✗");
        assert_eq!(check(None, Some(2.0), "µs"), "not measured");
        assert_eq!(check(Some(0.5), None, "KiB"), "0.50 KiB (no baseline)");
        assert_eq!(signed(Some(0.123)), "+0.12");
        assert_eq!(signed(Some(-0.5)), "-0.50");
        assert_eq!(signed(None), "—");
    }
}
