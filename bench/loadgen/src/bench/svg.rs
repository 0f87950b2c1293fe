//! A hand-written SVG with two panels: server CPU % against active clients, and RSS MiB
//! against idle clients; one line per server, with a legend.

use std::fmt::Write as _;

use super::server::Kind;
use super::{RunRecord, Workload};

const PANEL_W: f64 = 440.0;
const PANEL_H: f64 = 300.0;
const MARGIN_L: f64 = 60.0;
const MARGIN_B: f64 = 45.0;
const MARGIN_T: f64 = 40.0;
const GAP: f64 = 40.0;

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Odeon => "#d95f02",
        Kind::Colyseus => "#1b9e77",
    }
}

/// A "nice" axis maximum (1, 2 or 5 × 10^k) at or above `v`.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&m| m >= v).unwrap_or(10.0 * mag)
}

struct Series {
    kind: Kind,
    points: Vec<(f64, f64)>,
}

fn series(records: &[RunRecord], point: impl Fn(&RunRecord) -> Option<(f64, f64)>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for r in records {
        let Some(p) = point(r) else { continue };
        match out.iter_mut().find(|s| s.kind == r.server) {
            Some(s) => s.points.push(p),
            None => out.push(Series { kind: r.server, points: vec![p] }),
        }
    }
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.sort_by_key(|s| s.kind);
    out
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn panel(out: &mut String, x0: f64, title: &str, x_label: &str, y_label: &str, data: &[Series]) {
    let plot_w = PANEL_W - MARGIN_L - 15.0;
    let plot_h = PANEL_H - MARGIN_T - MARGIN_B;
    let (left, top) = (x0 + MARGIN_L, MARGIN_T);
    let xs = data.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = data.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let x_max = nice_max(xs.fold(0.0, f64::max));
    let y_max = nice_max(ys.fold(0.0, f64::max) * 1.05);
    let px = |x: f64| left + x / x_max * plot_w;
    let py = |y: f64| top + plot_h - y / y_max * plot_h;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{title}</text>"#,
        left + plot_w / 2.0
    );
    let _ = writeln!(
        out,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (gx, gy) = (left + f * plot_w, top + plot_h - f * plot_h);
        let _ = writeln!(
            out,
            r##"<line x1="{left:.1}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            left + plot_w,
            left - 6.0,
            gy + 4.0,
            fmt_num(f * y_max)
        );
        let _ = writeln!(
            out,
            r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
            top + plot_h + 16.0,
            fmt_num(f * x_max)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">{x_label}</text>"#,
        left + plot_w / 2.0,
        top + plot_h + 36.0
    );
    let (lx, ly) = (x0 + 16.0, top + plot_h / 2.0);
    let _ = writeln!(
        out,
        r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="12" transform="rotate(-90 {lx:.1} {ly:.1})">{y_label}</text>"#
    );
    if data.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" fill="#888">no data</text>"##,
            left + plot_w / 2.0,
            top + plot_h / 2.0
        );
    }
    for s in data {
        let c = color(s.kind);
        let pts: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = writeln!(out, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"/>"#, px(x), py(y));
        }
    }
    for (i, s) in data.iter().enumerate() {
        let y = top + 14.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            left + 10.0,
            left + 34.0,
            color(s.kind),
            left + 40.0,
            y + 4.0,
            s.kind.name()
        );
    }
}

/// The plot for `records`.
pub fn plot(records: &[RunRecord]) -> String {
    let cpu = series(records, |r| match r.workload {
        Workload::Active(n) => Some((n as f64, r.summary.as_ref()?.server_cpu_pct?)),
        _ => None,
    });
    let rss = series(records, |r| match r.workload {
        Workload::Idle(k) => Some((k as f64, r.summary.as_ref()?.server_rss_kib? as f64 / 1024.0)),
        _ => None,
    });
    let width = 2.0 * PANEL_W + GAP;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{PANEL_H:.0}" viewBox="0 0 {width:.0} {PANEL_H:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    panel(&mut out, 0.0, "Server CPU vs active clients", "active clients", "CPU % of one core", &cpu);
    panel(&mut out, PANEL_W + GAP, "Server memory vs idle clients", "idle clients", "RSS MiB", &rss);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_maxima() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(17_000.0), 20_000.0);
        assert_eq!(nice_max(100.0), 100.0);
        assert_eq!(nice_max(101.0), 200.0);
    }

    #[test]
    fn an_empty_plot_is_still_valid_svg() {
        let svg = plot(&[]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("no data").count(), 2);
    }
}
