//! The proxy workload's rounds: the order each round runs the variants in, the figures read off
//! one run, and the statistics over rounds the report prints (medians, each round's difference
//! against the direct run of the same round, and in how many rounds a comparison held).
//!
//! A figure a run did not measure (no summary, no proxy, a failed run) is left out of its
//! median, so a variant with a failed round has its medians over the rounds it has.

use std::fmt;

use super::proxy::{ProxyRecord, Variant};
use crate::summary::Summary;

/// The variants in the order round `round` (1-based) runs them: the given order rotated left by
/// one more place each round. Over as many rounds as variants, each variant runs once in each
/// position, so none always runs first (right after the previous round's last run) or last.
pub fn round_order(variants: &[Variant], round: u32) -> Vec<Variant> {
    let mut order = variants.to_vec();
    if !order.is_empty() {
        order.rotate_left(round.saturating_sub(1) as usize % variants.len());
    }
    order
}

/// The median of the finite values (the mean of the middle two for an even count), if any.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn s(r: &ProxyRecord) -> Option<&Summary> {
    r.summary.as_ref()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Every WebSocket frame on the clients' sockets per second.
pub fn frames_per_sec(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.ws_frames_per_sec)
}

/// Proxy CPU, % of a core.
pub fn proxy_cpu_pct(r: &ProxyRecord) -> Option<f64> {
    s(r)?.proxy_cpu_pct
}

/// Proxy CPU per relayed frame, µs.
pub fn us_per_frame(r: &ProxyRecord) -> Option<f64> {
    s(r)?.proxy_cpu_us_per_frame
}

/// The kernel's part of [`us_per_frame`], µs.
pub fn sys_us_per_frame(r: &ProxyRecord) -> Option<f64> {
    s(r)?.proxy_sys_us_per_frame
}

/// Proxy RSS at the end of the window, MiB.
pub fn rss_mib(r: &ProxyRecord) -> Option<f64> {
    s(r)?.proxy_rss_kib.map(mib)
}

/// Proxy RSS before any client, MiB.
pub fn empty_rss_mib(r: &ProxyRecord) -> Option<f64> {
    r.proxy_empty_rss_kib.map(mib)
}

/// Proxy RSS growth per client over the proxy before any client, KiB.
pub fn kib_per_client(r: &ProxyRecord) -> Option<f64> {
    let s = s(r)?;
    let clients = s.joined_active;
    let grown = s.proxy_rss_kib? as f64 - r.proxy_empty_rss_kib? as f64;
    (clients > 0).then(|| grown / clients as f64)
}

/// Echo p50, ms.
pub fn echo_p50(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.echo_ms?.p50)
}

/// Echo p99, ms.
pub fn echo_p99(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.echo_ms?.p99)
}

/// PING round trip p50, ms.
pub fn rtt_p50(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.ping_rtt_ms?.p50)
}

/// PING round trip p99, ms.
pub fn rtt_p99(r: &ProxyRecord) -> Option<f64> {
    Some(s(r)?.ping_rtt_ms?.p99)
}

/// Host CPU, % of a core.
pub fn host_cpu_pct(r: &ProxyRecord) -> Option<f64> {
    s(r)?.server_cpu_pct
}

/// The loadgen's CPU, % of a core.
pub fn loadgen_cpu_pct(r: &ProxyRecord) -> Option<f64> {
    s(r)?.loadgen_cpu_pct
}

/// The rounds the records come from, in order.
pub fn rounds(records: &[ProxyRecord]) -> Vec<u32> {
    let mut rounds: Vec<u32> = records.iter().map(|r| r.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    rounds
}

/// The run of `variant` in `round`.
pub fn run_of(records: &[ProxyRecord], round: u32, variant: Variant) -> Option<&ProxyRecord> {
    records.iter().find(|r| r.round == round && r.variant == variant)
}

/// Rounds in which `variant` produced a summary.
pub fn measured_rounds(records: &[ProxyRecord], variant: Variant) -> usize {
    records.iter().filter(|r| r.variant == variant && r.summary.is_some()).count()
}

/// The median over rounds of `get` for `variant`.
pub fn median_of(
    records: &[ProxyRecord],
    variant: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
) -> Option<f64> {
    median(records.iter().filter(|r| r.variant == variant).filter_map(get))
}

/// `get` of `variant` minus `get` of the direct run of the same round, in `round`.
pub fn added_in(
    records: &[ProxyRecord],
    round: u32,
    variant: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
) -> Option<f64> {
    Some(get(run_of(records, round, variant)?)? - get(run_of(records, round, Variant::Direct)?)?)
}

/// Per round in which both were measured, `get` of `variant` minus `get` of that round's direct run.
pub fn added_per_round(
    records: &[ProxyRecord],
    variant: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
) -> Vec<(u32, f64)> {
    rounds(records)
        .into_iter()
        .filter_map(|round| Some((round, added_in(records, round, variant, &get)?)))
        .collect()
}

/// The median of [`added_per_round`] (not the difference of the two medians).
pub fn median_added(
    records: &[ProxyRecord],
    variant: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
) -> Option<f64> {
    median(added_per_round(records, variant, get).into_iter().map(|(_, d)| d))
}

/// In how many of the rounds compared a comparison held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Rounds in which it held.
    pub held: usize,
    /// Rounds in which both sides were measured.
    pub of: usize,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.of == 1 { "" } else { "s" };
        write!(f, "{} of {} round{s}", self.held, self.of)
    }
}

/// Rounds in which both `a` and `b` were measured, and how many of them had `get(a) ≤ get(b)`.
pub fn rounds_at_most(
    records: &[ProxyRecord],
    a: Variant,
    b: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
) -> Tally {
    let pairs: Vec<(f64, f64)> = rounds(records)
        .into_iter()
        .filter_map(|round| Some((get(run_of(records, round, a)?)?, get(run_of(records, round, b)?)?)))
        .collect();
    Tally { held: pairs.iter().filter(|(a, b)| a <= b).count(), of: pairs.len() }
}

/// Rounds in which `variant`'s added `get` was measured, and how many of them had it ≤ `target`.
pub fn rounds_added_within(
    records: &[ProxyRecord],
    variant: Variant,
    get: impl Fn(&ProxyRecord) -> Option<f64>,
    target: f64,
) -> Tally {
    let added = added_per_round(records, variant, get);
    Tally { held: added.iter().filter(|(_, d)| *d <= target).count(), of: added.len() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::Quantiles;

    /// A summary with nothing measured but the given proxy figures and percentiles.
    pub(crate) fn summary(
        per_frame: Option<f64>,
        rss_kib: Option<u64>,
        echo_p99: f64,
        rtt_p99: f64,
    ) -> Summary {
        let mut s: Summary = serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:1", "room": "arena", "clients": 100, "idle": 0,
            "rate_hz": 10.0, "warmup_secs": 1.0, "measure_secs": 3.0, "joined_active": 100,
            "joined_idle": 0, "failed_joins": 0, "join_phase_secs": 1.0, "window_moves": 3000,
            "echo_missed": 0, "frames_in_per_sec": 1100.0, "frames_out_per_sec": 2100.0,
            "bytes_out_per_sec": 1.0e5, "ws_frames_per_sec": 3200.0, "loadgen_workers": 1,
            "loadgen_limited": false, "decode_errors": 0, "disconnects": 0, "skipped_sends": 0,
            "slow_sends": 0
        }))
        .unwrap();
        s.proxy_cpu_us_per_frame = per_frame;
        s.proxy_rss_kib = rss_kib;
        let q = |p99: f64| Some(Quantiles { p50: p99 / 2.0, p99, max: p99 * 2.0, count: 100 });
        s.echo_ms = q(echo_p99);
        s.ping_rtt_ms = q(rtt_p99);
        s
    }

    /// A run in `round`; `per_frame` and `rss_kib` only for the proxies, as a real run.
    pub(crate) fn run(
        round: u32,
        variant: Variant,
        per_frame: f64,
        rss_kib: u64,
        rtt_p99: f64,
    ) -> ProxyRecord {
        let proxy = variant != Variant::Direct;
        ProxyRecord {
            variant,
            round,
            summary: Some(summary(
                proxy.then_some(per_frame),
                proxy.then_some(rss_kib),
                rtt_p99 + 40.0,
                rtt_p99,
            )),
            proxy_empty_rss_kib: proxy.then_some(1000),
            error: None,
            retried_after: None,
            commands: vec![format!("cmd {round} {}", variant.name())],
        }
    }

    fn failed(round: u32, variant: Variant) -> ProxyRecord {
        ProxyRecord { summary: None, error: Some("boom".to_owned()), ..run(round, variant, 0.0, 0, 0.0) }
    }

    /// Three rounds: odeon-proxy cheaper than nginx in rounds 1 and 3, not in 2.
    pub(crate) fn three_rounds() -> Vec<ProxyRecord> {
        use Variant::*;
        vec![
            run(1, Direct, 0.0, 0, 0.50),
            run(1, OdeonProxy, 13.0, 1500, 1.00),
            run(1, Nginx, 15.0, 3200, 1.20),
            run(2, OdeonProxy, 13.3, 1600, 2.50),
            run(2, Nginx, 11.7, 3100, 1.00),
            run(2, Direct, 0.0, 0, 0.60),
            run(3, Nginx, 14.0, 3300, 1.10),
            run(3, Direct, 0.0, 0, 0.55),
            run(3, OdeonProxy, 12.9, 1550, 0.90),
        ]
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.5]), Some(7.5));
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN, 1.0, f64::INFINITY]), Some(1.0));
    }

    #[test]
    fn rounds_rotate_so_each_variant_runs_first_once() {
        use Variant::*;
        let v = [Direct, OdeonProxy, Nginx];
        assert_eq!(round_order(&v, 1), vec![Direct, OdeonProxy, Nginx]);
        assert_eq!(round_order(&v, 2), vec![OdeonProxy, Nginx, Direct]);
        assert_eq!(round_order(&v, 3), vec![Nginx, Direct, OdeonProxy]);
        assert_eq!(round_order(&v, 4), round_order(&v, 1));
        assert_eq!(round_order(&[Nginx], 2), vec![Nginx]);
        assert!(round_order(&[], 2).is_empty());
    }

    #[test]
    fn medians_per_variant_over_rounds() {
        let r = three_rounds();
        assert_eq!(rounds(&r), vec![1, 2, 3]);
        assert_eq!(median_of(&r, Variant::OdeonProxy, us_per_frame), Some(13.0));
        assert_eq!(median_of(&r, Variant::Nginx, us_per_frame), Some(14.0));
        assert_eq!(median_of(&r, Variant::Direct, us_per_frame), None);
        // (1550 − 1000) / 100 clients.
        assert_eq!(median_of(&r, Variant::OdeonProxy, kib_per_client), Some(5.5));
        assert_eq!(median_of(&r, Variant::Direct, rtt_p99), Some(0.55));
    }

    #[test]
    fn added_latency_is_against_the_same_rounds_direct_run() {
        let r = three_rounds();
        let added: Vec<(u32, f64)> = added_per_round(&r, Variant::OdeonProxy, rtt_p99)
            .into_iter()
            .map(|(round, d)| (round, (d * 100.0).round() / 100.0))
            .collect();
        assert_eq!(added, vec![(1, 0.5), (2, 1.9), (3, 0.35)]);
        // The median of the differences, 0.5, not median(odeon) − median(direct) = 1.0 − 0.55.
        let m = median_added(&r, Variant::OdeonProxy, rtt_p99).unwrap();
        assert!((m - 0.5).abs() < 1e-9, "{m}");
        let within = rounds_added_within(&r, Variant::OdeonProxy, rtt_p99, 1.0);
        assert_eq!(within, Tally { held: 2, of: 3 });
        assert_eq!(median_added(&r, Variant::Direct, rtt_p99), Some(0.0));
    }

    #[test]
    fn tallies_count_rounds_where_both_ran() {
        let r = three_rounds();
        let t = rounds_at_most(&r, Variant::OdeonProxy, Variant::Nginx, us_per_frame);
        assert_eq!(t, Tally { held: 2, of: 3 });
        assert_eq!(t.to_string(), "2 of 3 rounds");
        assert_eq!(Tally { held: 1, of: 1 }.to_string(), "1 of 1 round");
        assert_eq!(rounds_at_most(&r, Variant::OdeonProxy, Variant::Nginx, kib_per_client).held, 3);
    }

    #[test]
    fn a_failed_run_drops_out_of_its_round() {
        let mut r = three_rounds();
        r[5] = failed(2, Variant::Direct);
        r[4] = failed(2, Variant::Nginx);
        assert_eq!(measured_rounds(&r, Variant::Direct), 2);
        assert_eq!(median_of(&r, Variant::Nginx, us_per_frame), Some(14.5));
        // Round 2 has no direct run: no added latency for it.
        let rounds: Vec<u32> =
            added_per_round(&r, Variant::OdeonProxy, rtt_p99).iter().map(|a| a.0).collect();
        assert_eq!(rounds, vec![1, 3]);
        let t = rounds_at_most(&r, Variant::OdeonProxy, Variant::Nginx, us_per_frame);
        assert_eq!(t, Tally { held: 2, of: 2 });
    }

    #[test]
    fn one_round_is_its_own_median() {
        let r: Vec<ProxyRecord> = three_rounds().into_iter().filter(|r| r.round == 2).collect();
        assert_eq!(median_of(&r, Variant::Nginx, us_per_frame), Some(11.7));
        let m = median_added(&r, Variant::OdeonProxy, rtt_p99).unwrap();
        assert!((m - 1.9).abs() < 1e-9);
        let t = rounds_at_most(&r, Variant::OdeonProxy, Variant::Nginx, us_per_frame);
        assert_eq!(t, Tally { held: 0, of: 1 });
    }
}
