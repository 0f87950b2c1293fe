//! The proxy workload's Markdown section: the three paths side by side (the medians over
//! rounds), the latency each proxy adds over the direct path of the same round, the targets,
//! the rounds one by one, notes and the exact commands.

use std::fmt::Write as _;

use super::Plan;
use super::proxy::{ProxyPlan, ProxyRecord, Variant};
use super::proxy_rounds::{self as pr, Tally};
use super::report::{Meta, footer};

/// Added p99 latency allowed at the workload's size, ms.
pub const TARGET_ADDED_P99_MS: f64 = 1.0;

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.decimals$}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:+.2}"))
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

/// How a run is named in notes and commands: its variant, and its round when there are several.
fn who(r: &ProxyRecord, multi: bool) -> String {
    if multi { format!("round {} / {}", r.round, r.variant.name()) } else { r.variant.name().to_owned() }
}

/// The first rounds' orders, e.g. `round 1: direct → odeon-proxy → nginx; round 2: …`.
fn orders(pp: &ProxyPlan) -> String {
    let shown = (pp.rounds as usize).min(pp.variants.len()) as u32;
    let mut parts: Vec<String> = (1..=shown)
        .map(|round| {
            let order: Vec<&str> = pr::round_order(&pp.variants, round).iter().map(|v| v.name()).collect();
            format!("round {round}: {}", order.join(" → "))
        })
        .collect();
    if pp.rounds > shown {
        parts.push("and so on".to_owned());
    }
    parts.join("; ")
}

/// `; <what> in k of n rounds` with several rounds, nothing with one.
fn tally(multi: bool, what: &str, t: Tally) -> String {
    if multi { format!("; {what} in {t}") } else { String::new() }
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
    let rounds = pp.map_or(1, |p| p.rounds);
    let multi = rounds > 1;
    let over = if multi { format!(", median of {rounds} rounds") } else { String::new() };
    let _ = writeln!(out, "## Proxy: odeon-proxy against nginx, arena, {clients} clients{over}{quick}\n");
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
             run (so the direct row differs only by the missing hop)"
        ),
        None => "not pinned".to_owned(),
    };
    let _ = writeln!(
        out,
        "Run on {} on {} cores ({}). One Odeon host (`--redis-url … --behind-proxy`, the same configuration in \
         every row) with {clients} active clients (`move` at {} Hz, rooms of 50, and {} Colyseus PING per client \
         per second), reached directly, through odeon-proxy and through nginx (Debian's package, `worker_processes \
         1`, a plain WebSocket reverse proxy). Each run is a fresh redis-server, host and proxy; {} s warm-up, then \
         a {} s window. Pinning: {pin}.\n",
        meta.date, meta.nproc, meta.cpu_model, plan.rate_hz, pp.ping_hz, plan.warmup_secs, plan.measure_secs,
    );
    if multi {
        let _ = writeln!(
            out,
            "**{rounds} rounds.** Every variant ran once per round, each round in the order of the one before \
             rotated by one ({}), so no variant always runs first. Every figure in the first two tables is the \
             **median over the rounds** (of an even count, the mean of the middle two); a proxy's added latency \
             is the median of its per-round differences against the direct run of the same round. The rounds one \
             by one are under *Per round* below.\n",
            orders(pp)
        );
    }
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

    let (rounds_head, rounds_rule) = if multi { (" rounds |", "---:|") } else { ("", "") };
    let _ = writeln!(
        out,
        "| path |{rounds_head} frames/s | proxy CPU % | proxy µs/frame | of it kernel µs/frame | proxy RSS MiB \
         (empty) | proxy KiB/client | echo p50 ms | echo p99 ms | RTT p50 ms | RTT p99 ms | host CPU % | loadgen \
         CPU % |\n|---|{rounds_rule}---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ran: Vec<Variant> =
        pp.variants.iter().copied().filter(|&v| records.iter().any(|r| r.variant == v)).collect();
    for &v in &ran {
        let med =
            |get: fn(&ProxyRecord) -> Option<f64>, decimals| cell(pr::median_of(records, v, get), decimals);
        let measured = if multi { format!(" {} |", pr::measured_rounds(records, v)) } else { String::new() };
        let limited =
            records.iter().any(|r| r.variant == v && r.summary.as_ref().is_some_and(|s| s.loadgen_limited));
        let _ = writeln!(
            out,
            "| {} |{measured} {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {}{} |",
            v.name(),
            med(pr::frames_per_sec, 0),
            med(pr::proxy_cpu_pct, 1),
            med(pr::us_per_frame, 2),
            med(pr::sys_us_per_frame, 2),
            med(pr::rss_mib, 1),
            med(pr::empty_rss_mib, 1),
            med(pr::kib_per_client, 2),
            med(pr::echo_p50, 2),
            med(pr::echo_p99, 2),
            med(pr::rtt_p50, 3),
            med(pr::rtt_p99, 3),
            med(pr::host_cpu_pct, 1),
            med(pr::loadgen_cpu_pct, 0),
            if limited { " ⚠" } else { "" },
        );
    }
    out.push('\n');

    let (direct, odeon, nginx) = (Variant::Direct, Variant::OdeonProxy, Variant::Nginx);
    let has = |v: Variant| pr::measured_rounds(records, v) > 0;
    let added = |v: Variant, get: fn(&ProxyRecord) -> Option<f64>| pr::median_added(records, v, get);
    let proxies: Vec<Variant> = ran.iter().copied().filter(|&v| v != direct && has(v)).collect();
    if has(direct) && !proxies.is_empty() {
        let of = if multi { " (median over rounds)" } else { "" };
        let _ = writeln!(
            out,
            "Latency added over the direct path of the same {}, ms{of}:\n\n\
             | path | echo p50 | echo p99 | RTT p50 | RTT p99 |\n|---|---:|---:|---:|---:|",
            if multi { "round" } else { "run" }
        );
        for &v in &proxies {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                v.name(),
                signed(added(v, pr::echo_p50)),
                signed(added(v, pr::echo_p99)),
                signed(added(v, pr::rtt_p50)),
                signed(added(v, pr::rtt_p99)),
            );
        }
        out.push('\n');
    }

    let medians = if multi { format!(", medians of {rounds} rounds") } else { String::new() };
    let _ = writeln!(out, "Targets (odeon-proxy, {clients} clients{medians}):\n");
    let med = |v: Variant, get: fn(&ProxyRecord) -> Option<f64>| pr::median_of(records, v, get);
    let at_most = |get: fn(&ProxyRecord) -> Option<f64>| pr::rounds_at_most(records, odeon, nginx, get);
    let _ = writeln!(
        out,
        "- CPU per relayed frame ≤ nginx ({} µs): {}{}",
        cell(med(nginx, pr::us_per_frame), 2),
        check(med(odeon, pr::us_per_frame), med(nginx, pr::us_per_frame), "µs"),
        tally(multi, "odeon-proxy ≤ nginx", at_most(pr::us_per_frame)),
    );
    let _ = writeln!(
        out,
        "- memory per proxied client ≤ nginx ({} KiB): {}{}",
        cell(med(nginx, pr::kib_per_client), 2),
        check(med(odeon, pr::kib_per_client), med(nginx, pr::kib_per_client), "KiB"),
        tally(multi, "odeon-proxy ≤ nginx", at_most(pr::kib_per_client)),
    );
    let within = |get: fn(&ProxyRecord) -> Option<f64>| {
        let t = pr::rounds_added_within(records, odeon, get, TARGET_ADDED_P99_MS);
        if multi { format!(" (≤ {TARGET_ADDED_P99_MS} ms in {t})") } else { String::new() }
    };
    let _ = writeln!(
        out,
        "- added p99 ≤ {TARGET_ADDED_P99_MS} ms: echo {}{}; RTT {}{} (nginx: echo {}, RTT {} ms)\n",
        check(added(odeon, pr::echo_p99), Some(TARGET_ADDED_P99_MS), "ms"),
        within(pr::echo_p99),
        check(added(odeon, pr::rtt_p99), Some(TARGET_ADDED_P99_MS), "ms"),
        within(pr::rtt_p99),
        signed(added(nginx, pr::echo_p99)),
        signed(added(nginx, pr::rtt_p99)),
    );

    if multi {
        per_round(&mut out, records);
    }

    let mut notes = notes(records, multi);
    for &v in &ran {
        let n = pr::measured_rounds(records, v);
        if multi && n < rounds as usize {
            notes.push(format!(
                "{}: measured in {n} of {rounds} rounds; its medians are over those",
                v.name()
            ));
        }
    }
    if clients < 500 {
        notes.push(format!(
            "at {clients} clients, memory per client is mostly fixed costs spread thin: the allocator's high-water \
             mark of 50 joins in flight and the loadgen's matchmaking keep-alive pool; compare it at 500 clients"
        ));
    }
    let commands = records
        .iter()
        .flat_map(|r| std::iter::once(format!("# {}", who(r, multi))).chain(r.commands.iter().cloned()));
    footer(&mut out, &notes, std::iter::once(meta.command.clone()).chain(commands));
    out
}

/// Each round's key figures, in the order they ran, so the spread behind the medians shows.
fn per_round(out: &mut String, records: &[ProxyRecord]) {
    out.push_str(
        "<details><summary>Per round: the spread behind the medians</summary>\n\n\
         Rows in the order they ran; added is against the direct run of the same round.\n\n\
         | round | path | proxy µs/frame | proxy KiB/client | echo p99 ms | RTT p99 ms | added echo p99 ms | \
         added RTT p99 ms |\n|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in records {
        let added = |get: fn(&ProxyRecord) -> Option<f64>| match r.variant {
            Variant::Direct => "".to_owned(),
            v => signed(pr::added_in(records, r.round, v, get)),
        };
        let failed = if r.summary.is_none() { " (failed)" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {}{failed} | {} | {} | {} | {} | {} | {} |",
            r.round,
            r.variant.name(),
            cell(pr::us_per_frame(r), 2),
            cell(pr::kib_per_client(r), 2),
            cell(pr::echo_p99(r), 2),
            cell(pr::rtt_p99(r), 3),
            added(pr::echo_p99),
            added(pr::rtt_p99),
        );
    }
    out.push_str("\n</details>\n\n");
}

fn notes(records: &[ProxyRecord], multi: bool) -> Vec<String> {
    let mut notes = Vec::new();
    for r in records {
        let who = who(r, multi);
        if let Some(e) = &r.error {
            notes.push(format!("{who}: **failed**: {}", e.lines().next().unwrap_or_default()));
        }
        if let Some(e) = &r.retried_after {
            notes.push(format!(
                "{who}: first attempt failed and was retried: {}",
                e.lines().next().unwrap_or_default()
            ));
        }
        let Some(s) = &r.summary else { continue };
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
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::bench::proxy_rounds::tests::three_rounds;
    use crate::bench::server::{Kind, Spec};

    fn plan_and_meta(rounds: u32) -> (Plan, ProxyPlan, Meta) {
        let host =
            Spec { kind: Kind::Odeon, program: "odeon-host".into(), args: Vec::new(), cwd: ".".into() };
        let pp = ProxyPlan {
            clients: 100,
            ping_hz: 1.0,
            variants: vec![Variant::Direct, Variant::OdeonProxy, Variant::Nginx],
            rounds,
            skipped: Vec::new(),
            host,
            redis: "redis-server".into(),
            proxy_bin: None,
            nginx_bin: None,
        };
        let plan = Plan {
            workloads: Vec::new(),
            servers: Vec::new(),
            skipped: Vec::new(),
            warmup_secs: 1.0,
            measure_secs: 3.0,
            rate_hz: 10.0,
            pin: Some(("0".to_owned(), "1".to_owned())),
            loadgen: PathBuf::from("odeon-loadgen"),
            results_dir: PathBuf::from("results"),
            quick: true,
            proxy: None,
            deploy: None,
            drain: None,
        };
        let meta = Meta {
            date: "2025-01-01".to_owned(),
            nproc: 2,
            cpu_model: "test CPU".to_owned(),
            command: "odeon-bench --workloads proxy".to_owned(),
            elapsed: Duration::from_secs(1),
        };
        (plan, pp, meta)
    }

    /// The table row of `path` (the first cell), split into its cells.
    fn row<'a>(md: &'a str, path: &str) -> Vec<&'a str> {
        let line = md.lines().find(|l| l.starts_with(&format!("| {path} |"))).unwrap();
        line.trim_matches('|').split('|').map(str::trim).collect()
    }

    #[test]
    fn several_rounds_report_medians_tallies_and_each_round() {
        let (plan, pp, meta) = plan_and_meta(3);
        let md = markdown(&plan, &meta, Ok(&pp), &three_rounds());
        assert!(md.contains("arena, 100 clients, median of 3 rounds"), "{md}");
        assert!(md.contains("round 2: odeon-proxy → nginx → direct"), "{md}");
        // path, rounds, frames/s, CPU %, µs/frame, …
        let odeon = row(&md, "odeon-proxy");
        assert_eq!(&odeon[..2], ["odeon-proxy", "3"]);
        assert_eq!(odeon[4], "13.00");
        assert_eq!(row(&md, "nginx")[4], "14.00");
        assert!(
            md.contains(
                "- CPU per relayed frame ≤ nginx (14.00 µs): 13.00 µs ✓; odeon-proxy ≤ nginx in 2 of 3 rounds"
            ),
            "{md}"
        );
        // RTT p99 added per round: +0.50, +1.90, +0.35; the median is +0.50.
        assert!(md.contains("RTT 0.50 ms ✓ (≤ 1 ms in 2 of 3 rounds)"), "{md}");
        assert_eq!(row(&md, "odeon-proxy").len(), 14);
        assert!(md.contains("<details><summary>Per round"), "{md}");
        assert!(md.contains("| 2 | odeon-proxy | 13.30 | 6.00 | 42.50 | 2.500 | +1.90 | +1.90 |"), "{md}");
        assert!(md.contains("# round 3 / nginx\ncmd 3 nginx"), "{md}");
    }

    #[test]
    fn one_round_reads_as_a_single_run() {
        let (plan, pp, meta) = plan_and_meta(1);
        let records: Vec<ProxyRecord> = three_rounds().into_iter().filter(|r| r.round == 1).collect();
        let md = markdown(&plan, &meta, Ok(&pp), &records);
        assert!(!md.contains("median of"), "{md}");
        assert!(!md.contains("Per round"), "{md}");
        assert!(!md.contains(" rounds"), "{md}");
        assert_eq!(row(&md, "odeon-proxy")[3], "13.00");
        assert!(md.contains("- CPU per relayed frame ≤ nginx (15.00 µs): 13.00 µs ✓\n"), "{md}");
        assert!(md.contains("| odeon-proxy | +0.25 | +0.50 | +0.25 | +0.50 |"), "{md}");
        assert!(md.contains("# odeon-proxy\ncmd 1 odeon-proxy"), "{md}");
    }

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
