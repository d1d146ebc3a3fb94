//! SVG charts of a run, written by hand (no plotting dependency): the delivery latency CDF,
//! the per-hop histogram and the active-view degree histogram.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::sim::Outcome;

const W: f64 = 640.0;
const H: f64 = 400.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 55.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" step for about `n` ticks over `[0, max]`.
fn nice_step(max: f64, n: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn frame(title: &str, xlabel: &str, ylabel: &str, xmax: f64, ymax: f64, s: &mut String) {
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"#,
        W / 2.0,
        esc(title),
        L + (W - L - R) / 2.0,
        H - 12.0,
        esc(xlabel),
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0,
        esc(ylabel)
    );
    let (x0, y0, x1, y1) = (L, H - B, W - R, T);
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" stroke="black" fill="none"/>"#
    );
    let xs = nice_step(xmax, 8.0);
    let mut v = 0.0;
    while v <= xmax * 1.0001 {
        let x = x0 + v / xmax.max(1e-12) * (x1 - x0);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            fmt_tick(v)
        );
        v += xs;
    }
    let ys = nice_step(ymax, 5.0);
    let mut v = 0.0;
    while v <= ymax * 1.0001 {
        let y = y0 - v / ymax.max(1e-12) * (y0 - y1);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 5.0,
            x0 - 8.0,
            y + 4.0,
            fmt_tick(v)
        );
        v += ys;
    }
}

fn fmt_tick(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart of `points` (x ascending).
pub fn line_chart(title: &str, xlabel: &str, ylabel: &str, points: &[(f64, f64)]) -> String {
    let xmax = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let ymax = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let mut s = String::new();
    frame(title, xlabel, ylabel, xmax, ymax, &mut s);
    let mut d = String::new();
    for (k, (x, y)) in points.iter().enumerate() {
        let px = L + x / xmax * (W - L - R);
        let py = (H - B) - y / ymax * (H - B - T);
        let _ = write!(d, "{}{px:.1},{py:.1} ", if k == 0 { "M" } else { "L" });
    }
    let _ = writeln!(
        s,
        r##"<path d="{d}" stroke="#1f77b4" stroke-width="2" fill="none"/>"##
    );
    if points.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text>"#,
            W / 2.0,
            H / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A bar chart: bar `i` has height `values[i]`, labelled `i`.
pub fn bar_chart(title: &str, xlabel: &str, ylabel: &str, values: &[u64]) -> String {
    let n = values.len().max(1) as f64;
    let ymax = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut s = String::new();
    frame(title, xlabel, ylabel, n, ymax, &mut s);
    let bw = (W - L - R) / n;
    for (i, &v) in values.iter().enumerate() {
        let h = v as f64 / ymax * (H - B - T);
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#1f77b4"><title>{i}: {v}</title></rect>"##,
            L + i as f64 * bw + bw * 0.1,
            H - B - h,
            bw * 0.8
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `latency_cdf.svg`, `hops.svg` and `degrees.svg` into `dir` (created if needed);
/// returns the paths written.
pub fn write_plots(dir: &Path, out: &Outcome) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let r = &out.report;
    let tag = format!("{} · {} nodes · seed {}", r.scenario, r.nodes, r.seed);
    let mut cdf = vec![(0.0, 0.0)];
    cdf.extend_from_slice(&out.latency_cdf);
    let charts = [
        (
            "latency_cdf.svg",
            line_chart(
                &format!("Delivery latency CDF — {tag}"),
                "latency (ms)",
                "fraction of deliveries",
                &cdf,
            ),
        ),
        (
            "hops.svg",
            bar_chart(
                &format!("Deliveries per hop count — {tag}"),
                "hops",
                "deliveries",
                &r.hops_histogram,
            ),
        ),
        (
            "degrees.svg",
            bar_chart(
                &format!("Active-view size — {tag}"),
                "active view size",
                "nodes",
                &r.degree_histogram,
            ),
        ),
    ];
    let mut paths = Vec::new();
    for (name, svg) in charts {
        let p = dir.join(name);
        std::fs::write(&p, svg)?;
        paths.push(p);
    }
    Ok(paths)
}
