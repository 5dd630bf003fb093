//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) with the report's tables and plots. Pure: results in, text out.

use std::fmt::Write;

use crate::report::tables::{self, seconds, Table, Tone};
use crate::results::{CaseResult, Results};
use crate::stats::median_interval;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.good{color:#1a7f37;font-weight:600}td.bad{color:#cf222e;font-weight:600}
.note{color:#57606a;font-style:italic;margin:.2rem 0}.plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:.5rem}figcaption{font-weight:600;margin-bottom:.3rem}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}";

pub fn render(files: &[(String, Results)]) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flywheel-bench report</title><style>{STYLE}</style></head><body>\n<h1>flywheel-bench report</h1>\n"
    );
    for (label, results) in files {
        let _ = writeln!(out, "<section><h2>{}</h2>", esc(label));
        let _ = writeln!(
            out,
            "<p class=\"note\">{} on {} ({}, {} cores); started {}.</p>",
            esc(&format!("flywheel-bench {}", results.harness_version)),
            esc(&results.environment.hostname),
            esc(&results.environment.cpu_model),
            results.environment.cores,
            esc(&results.started_at)
        );
        out.push_str(&comparison_plots(results));
        let growth = crate::results::growth::growth(&results.cases);
        out.push_str(&super::growth::plots(&growth));
        for table in tables::all(results)
            .into_iter()
            .chain(super::growth::table(&growth))
        {
            out.push_str(&html_table(&table));
        }
        out.push_str(&super::time::html(results));
        out.push_str(&distribution_plots(results));
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn html_table(table: &Table) -> String {
    let mut out = format!(
        "<h3>{}</h3><p class=\"note\">{}</p><table><tr>",
        esc(table.title),
        esc(table.note)
    );
    for h in &table.headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            // Good and bad news stand out.
            let class = match cell.tone {
                Tone::Plain => "",
                Tone::Good => " class=\"good\"",
                Tone::Bad => " class=\"bad\"",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(&cell.text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// One bar chart per comparison: cold, warm and noop medians on a log axis, each with the
/// 95% bootstrap interval of its median as a whisker.
fn comparison_plots(r: &Results) -> String {
    if r.comparisons.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Medians and their intervals</h3><p class=\"note\">Median wall time per scenario (log scale) with the 95% bootstrap interval of the median as a whisker.</p><div class=\"plots\">\n");
    for c in &r.comparisons {
        let bars: Vec<(&str, Vec<f64>)> = ["cold", "warm", "noop"]
            .into_iter()
            .filter_map(|scenario| {
                let case = r
                    .cases
                    .iter()
                    .find(|k| k.key() == c.key() && k.scenario.to_string() == scenario)?;
                Some((scenario, walls(case)))
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "<figure><figcaption>{} · {} · {}: {:.1}x faster warm</figcaption>{}</figure>",
            esc(&c.repo),
            c.system.name(),
            c.lane.name(),
            c.speedup.ratio,
            bar_chart(&bars)
        );
    }
    out.push_str("</div>\n");
    out
}

fn walls(case: &CaseResult) -> Vec<f64> {
    case.samples.iter().map(|s| s.wall_s).collect()
}

const CHART_W: f64 = 460.0;
const LABEL_W: f64 = 60.0;
const ROW_H: f64 = 30.0;

fn bar_chart(bars: &[(&str, Vec<f64>)]) -> String {
    let values: Vec<f64> = bars
        .iter()
        .flat_map(|(_, w)| w.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor();
    let hi = values
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x = |v: f64| LABEL_W + (v.max(1e-9).log10() - lo) / (hi - lo) * (CHART_W - LABEL_W - 10.0);
    let height = ROW_H * bars.len() as f64 + 30.0;
    // Room on the right for the last tick's label.
    let mut svg = format!(
        "<svg width=\"{}\" height=\"{height}\" role=\"img\">",
        CHART_W + 30.0
    );
    for (i, (name, w)) in bars.iter().enumerate() {
        let y = 8.0 + ROW_H * i as f64;
        let med = crate::stats::median(w);
        let (ci_lo, ci_hi) = median_interval(w).unwrap_or((med, med));
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{name}</text><rect x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"18\" fill=\"{}\"><title>{name}: median {}</title></rect>\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1b1f24\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            y + 13.0,
            (x(med) - LABEL_W).max(1.0),
            if *name == "cold" { "#8c959f" } else { "#2da44e" },
            seconds(med),
            x(ci_lo),
            x(ci_hi),
            y + 9.0,
            y + 9.0,
            (x(ci_hi) + 4.0).min(CHART_W - 50.0),
            y + 13.0,
            seconds(med)
        );
    }
    let axis_y = 8.0 + ROW_H * bars.len() as f64;
    let mut decade = lo;
    while decade <= hi {
        let v = 10f64.powf(decade);
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"4\" y2=\"{axis_y:.1}\" stroke=\"#d0d7de\"/><text x=\"{0:.1}\" y=\"{1:.1}\" text-anchor=\"middle\">{2}</text>",
            x(v),
            axis_y + 14.0,
            seconds(v)
        );
        decade += 1.0;
    }
    svg.push_str("</svg>");
    svg
}

/// One strip plot per case: every sample as a dot, the median as a line, on the case's
/// own linear axis (outliers marked red).
fn distribution_plots(r: &Results) -> String {
    let cases: Vec<&CaseResult> = r.cases.iter().filter(|c| !c.samples.is_empty()).collect();
    if cases.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Sample distributions</h3><p class=\"note\">Each dot is one sample's wall time; the line is the median; red dots are outliers (modified z-score &gt; 3.5).</p><div class=\"plots\">\n");
    for c in cases {
        let w = walls(c);
        let (min, max) = (
            w.iter().copied().fold(f64::INFINITY, f64::min),
            w.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        let span = (max - min).max(max * 0.01).max(1e-6);
        let (lo, hi) = (min - span * 0.1, max + span * 0.1);
        let x = |v: f64| 10.0 + (v - lo) / (hi - lo) * 320.0;
        let outliers = c
            .stats
            .as_ref()
            .map(|s| s.outliers.clone())
            .unwrap_or_default();
        let mut svg = String::from("<svg width=\"340\" height=\"56\" role=\"img\"><line x1=\"10\" x2=\"330\" y1=\"20\" y2=\"20\" stroke=\"#d0d7de\"/>");
        for (i, v) in w.iter().enumerate() {
            let fill = if outliers.contains(&i) {
                "#cf222e"
            } else {
                "#0969da"
            };
            let _ = write!(svg, "<circle cx=\"{:.1}\" cy=\"20\" r=\"4\" fill=\"{fill}\" fill-opacity=\"0.7\"><title>sample {}: {}</title></circle>", x(*v), i + 1, seconds(*v));
        }
        let med = crate::stats::median(&w);
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"8\" y2=\"32\" stroke=\"#1b1f24\" stroke-width=\"2\"/><text x=\"10\" y=\"50\">{1}</text><text x=\"330\" y=\"50\" text-anchor=\"end\">{2}</text></svg>",
            x(med),
            seconds(min),
            seconds(max)
        );
        let _ = writeln!(
            out,
            "<figure><figcaption>{} · {} · {}: median {}</figcaption>{svg}</figure>",
            esc(&c.repo),
            c.system.name(),
            c.scenario,
            seconds(med)
        );
    }
    out.push_str("</div>\n");
    out
}

use super::escape_html as esc;
