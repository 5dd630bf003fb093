//! The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing
//! fetched) with the report's tables and plots. Pure: results in, text out.

use std::fmt::Write;

use crate::report::inline_html;
use crate::report::tables::{self, cells, Cell, Table, Tone};
use crate::results::{CaseResult, GpuSeries, Results};
use crate::stats::median_interval;
use crate::stats::numbers::{self, ratio, seconds};

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td:nth-child(-n+3){white-space:nowrap}td.good{color:#1a7f37;font-weight:600}td.bad{color:#cf222e;font-weight:600}
.note{color:#57606a;font-style:italic;margin:.2rem 0}.headline{font-size:1.1rem;font-weight:600}code{font-size:90%;background:#f6f8fa;padding:0 .2em;border-radius:3px;white-space:nowrap}.key{white-space:nowrap;margin-right:1em}.plots{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #d0d7de;border-radius:6px;padding:.5rem}figcaption{font-weight:600;margin-bottom:.3rem}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}";

pub fn render(files: &[(String, Results)]) -> String {
    let headline = esc(&tables::headline(files.iter().map(|(_, r)| r)));
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flywheel-bench report: {headline}</title><style>{STYLE}</style></head><body>\n<h1>flywheel-bench report</h1>\n<p class=\"headline\">{headline}</p>\n"
    );
    for (label, results) in files {
        let _ = writeln!(
            out,
            "<section><h2>{}</h2><p class=\"note\">{}: {}</p>",
            esc(tables::file_title(label)),
            esc(label),
            esc(&tables::headline([results]))
        );
        let _ = writeln!(
            out,
            "<p class=\"note\">{} on {} ({}, {}); started {}.</p>",
            esc(&format!("flywheel-bench {}", results.harness_version)),
            esc(&results.environment.hostname),
            esc(&results.environment.cpu_model),
            numbers::count_of(results.environment.cores, "core"),
            esc(&results.started_at)
        );
        for note in &results.notes {
            let _ = writeln!(out, "<p class=\"note\">Note: {}</p>", esc(note));
        }
        out.push_str(&comparison_plots(results));
        out.push_str(&super::growth::plots(&results.growth));
        for table in tables::all(results) {
            out.push_str(&html_table(&table));
        }
        out.push_str(&super::time::html(results));
        out.push_str(&distribution_plots(results));
        out.push_str(&checks_and_gpu(results));
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

pub(super) fn html_table(table: &Table) -> String {
    let mut out = format!(
        "<h3>{}</h3><p class=\"note\">{}</p><table><tr>",
        esc(table.title),
        inline_html(table.note)
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
            let _ = write!(out, "<td{class}>{}</td>", inline_html(&cell.text));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// One bar chart per comparison: cold, warm and noop medians on a log axis, each with the
/// 95% bootstrap interval of its median as a whisker.
pub(super) fn comparison_plots(r: &Results) -> String {
    if r.comparisons.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Medians and their intervals</h3><p class=\"note\">Median wall time per scenario (log scale) with the 95% bootstrap interval of the median as a whisker.</p><div class=\"plots\">\n");
    for c in &r.comparisons {
        let bars: Vec<(&str, Vec<f64>)> = ["cold", "warm", "noop"]
            .into_iter()
            .filter_map(|scenario| {
                let case = r.cases.iter().find(|k| {
                    k.key() == c.key()
                        && k.parameters == c.parameters
                        && k.scenario.to_string() == scenario
                })?;
                Some((scenario, case.walls()))
            })
            .filter(|(_, w)| !w.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "<figure><figcaption>{}: {} faster warm</figcaption>{}</figure>",
            esc(&r.case_title(c.key(), &c.parameters)),
            ratio(c.speedup.ratio),
            bar_chart(&bars)
        );
    }
    out.push_str("</div>\n");
    out
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
pub(super) fn distribution_plots(r: &Results) -> String {
    let cases: Vec<&CaseResult> = r.cases.iter().filter(|c| !c.samples.is_empty()).collect();
    if cases.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Sample distributions</h3><p class=\"note\">Each dot is one sample's wall time: the build tool from exec to exit (for a fallback case, the build through the faulty cache alone, without the retry that the Fallback table's time to a result adds); the line is the median; red dots are outliers (modified z-score &gt; 3.5). Samples are numbered from 1; sample N is samples[N-1] in the JSON.</p><div class=\"plots\">\n");
    for c in cases {
        let w = c.walls();
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
            let _ = write!(svg, "<circle cx=\"{:.1}\" cy=\"20\" r=\"4\" fill=\"{fill}\" fill-opacity=\"0.7\"><title>{}: {}</title></circle>", x(*v), numbers::sample_number(i), seconds(*v));
        }
        let med = crate::stats::median(&w);
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"8\" y2=\"32\" stroke=\"#1b1f24\" stroke-width=\"2\"/>",
            x(med),
        );
        // The axis's ends, told apart; one value (a single sample) is written once.
        let (low, high) = numbers::seconds_apart(min, max);
        if low == high {
            let _ = write!(
                svg,
                "<text x=\"170\" y=\"50\" text-anchor=\"middle\">{low} ({})</text></svg>",
                numbers::count_of(w.len(), "sample")
            );
        } else {
            let _ = write!(
                svg,
                "<text x=\"10\" y=\"50\">{low}</text><text x=\"330\" y=\"50\" text-anchor=\"end\">{high}</text></svg>"
            );
        }
        let retried = c.samples.iter().any(|s| s.retry.is_some());
        let _ = writeln!(
            out,
            "<figure><figcaption>{} {}: median {}{}</figcaption>{svg}</figure>",
            esc(&r.case_title(c.key(), &c.parameters)),
            c.scenario,
            seconds(med),
            if retried { " (retries excluded)" } else { "" }
        );
    }
    out.push_str("</div>\n");
    out
}

/// The repos' checks, the lanes' GPU and shell, and the GPU traces, where there are any.
fn checks_and_gpu(r: &Results) -> String {
    let mut out = String::new();
    for table in [checks_table(r), lanes_table(r)].into_iter().flatten() {
        out.push_str(&html_table(&table));
    }
    out.push_str(&trace_plots(r));
    out
}

fn checks_table(r: &Results) -> Option<Table> {
    let rows: Vec<Vec<Cell>> = r
        .cases
        .iter()
        .filter_map(|c| {
            let checks: Vec<_> = c
                .warmups
                .iter()
                .chain(&c.samples)
                .flat_map(|s| s.check.iter().chain(s.retry.iter().flat_map(|a| &a.check)))
                .collect();
            if checks.is_empty() {
                return None;
            }
            let passed = checks.iter().filter(|k| k.passed).count();
            let count = format!("{passed}/{}", checks.len());
            let times: Vec<f64> = checks.iter().map(|k| k.wall_s).collect();
            let last_failure = checks.iter().rev().find(|k| !k.passed);
            Some(vec![
                c.label().into(),
                Cell::verdict(passed == checks.len(), &count, &count),
                seconds(crate::stats::median(&times)).into(),
                last_failure
                    .map_or("-".into(), |k| k.output_tail.clone())
                    .into(),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Checks",
        note: "Each repo's [check], run on the output after every build (warm-ups included) and timed apart from it: how many passed, their median time, and what the last failing one printed.",
        headers: vec!["case", "passed", "median time", "last failure"],
        rows,
    })
}

fn lanes_table(r: &Results) -> Option<Table> {
    let rows: Vec<Vec<Cell>> = r
        .lanes
        .iter()
        .filter(|l| l.gpu.is_some() || l.shell.is_some())
        .map(|l| {
            let gpu = l.gpu.as_ref();
            let described = gpu.map_or("-".into(), |g| {
                format!(
                    "{} x{} (driver {}, CUDA {})",
                    g.name,
                    g.count,
                    g.driver,
                    g.cuda.as_deref().unwrap_or("?")
                )
            });
            let toolkit = gpu
                .and_then(|g| {
                    let home = g.cuda_home.as_deref()?;
                    Some(match &g.cuda_home_from {
                        Some(from) => format!("{home} (from {from})"),
                        None => home.to_string(),
                    })
                })
                .unwrap_or_else(|| "-".into());
            let shell = match (&l.shell, &l.shell_reason) {
                (Some(shell), Some(why)) => format!("{shell}: {why}"),
                (Some(shell), None) => shell.clone(),
                (None, _) => "-".into(),
            };
            cells([
                l.lane.name().to_string(),
                described,
                toolkit,
                gpu.and_then(|g| g.libcuda_dir.clone())
                    .unwrap_or_else(|| "-".into()),
                shell,
                l.shell_startup_s.map_or("-".into(), seconds),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Lanes",
        note: "Where the cases ran: the GPU, the CUDA toolkit and driver library the builds were given (symlinks resolved), and the shell; a shell's start-up is part of every build's and check's time.",
        headers: vec!["lane", "GPU", "CUDA toolkit", "libcuda.so.1", "shell", "shell start-up"],
        rows,
    })
}

/// A plotted trace column.
type Column = fn(&GpuSeries) -> &[Option<f64>];

/// The trace columns plotted, with their labels.
const TRACE_PANELS: [(&str, Column); 4] = [
    ("utilisation %", |s| &s.utilization_pct),
    ("memory MiB", |s| &s.memory_used_mib),
    ("power W", |s| &s.power_w),
    ("SM clock MHz", |s| &s.sm_clock_mhz),
];
const PANEL_H: f64 = 44.0;

/// One figure per case with GPU traces: each metric over the case's samples, one after
/// the other (a dashed line where a sample starts), on its own axis from 0 to its maximum.
fn trace_plots(r: &Results) -> String {
    let traced: Vec<&CaseResult> = r
        .cases
        .iter()
        .filter(|c| c.samples.iter().any(|s| s.gpu_trace.is_some()))
        .collect();
    if traced.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>GPU traces</h3><p class=\"note\">The GPU while each sample's build and check ran (nvidia-smi, about every 100 ms), the samples one after the other.</p><div class=\"plots\">\n");
    for c in traced {
        let traces: Vec<_> = c
            .samples
            .iter()
            .filter_map(|s| s.gpu_trace.as_ref())
            .collect();
        // Each sample starts one period after the previous one's last reading.
        let mut offsets = Vec::new();
        let mut span = 0.0;
        for t in &traces {
            offsets.push(span);
            span += t.series.t_ms.last().map_or(0.0, |&l| l as f64) + t.period_ms as f64;
        }
        let span = f64::max(span, 1.0);
        let x = |ms: f64| LABEL_W + 50.0 + ms / span * (CHART_W - LABEL_W - 60.0);
        let bottom = PANEL_H * TRACE_PANELS.len() as f64;
        let mut svg = format!(
            "<svg width=\"{CHART_W}\" height=\"{:.0}\" role=\"img\">",
            bottom + 18.0
        );
        for (row, (label, column)) in TRACE_PANELS.iter().enumerate() {
            let top = 4.0 + PANEL_H * row as f64;
            let max = traces
                .iter()
                .flat_map(|t| column(&t.series).iter().flatten())
                .copied()
                .fold(0.0, f64::max);
            let y = |v: f64| top + PANEL_H - 8.0 - v / max.max(1e-9) * (PANEL_H - 14.0);
            let _ = write!(
                svg,
                "<text x=\"0\" y=\"{label_y:.1}\">{label}</text><text x=\"0\" y=\"{max_y:.1}\">max {max}</text><line x1=\"{left:.1}\" x2=\"{right:.1}\" y1=\"{zero:.1}\" y2=\"{zero:.1}\" stroke=\"#d0d7de\"/>",
                label_y = top + 14.0,
                max_y = top + 28.0,
                max = numbers::number(max.round()),
                left = x(0.0),
                right = x(span),
                zero = y(0.0),
            );
            for (t, offset) in traces.iter().zip(&offsets) {
                // A missing value (nvidia-smi printed none) breaks the line.
                let mut runs: Vec<Vec<String>> = vec![Vec::new()];
                for (ms, v) in t.series.t_ms.iter().zip(column(&t.series)) {
                    match v {
                        Some(v) => runs.last_mut().expect("one run").push(format!(
                            "{:.1},{:.1}",
                            x(offset + *ms as f64),
                            y(*v)
                        )),
                        None => runs.push(Vec::new()),
                    }
                }
                for run in runs.iter().filter(|r| !r.is_empty()) {
                    let _ = write!(
                        svg,
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\"/>",
                        run.join(" ")
                    );
                }
            }
        }
        for (i, offset) in offsets.iter().enumerate() {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"4\" y2=\"{bottom:.1}\" stroke=\"#8c959f\" stroke-dasharray=\"2,2\"/><text x=\"{1:.1}\" y=\"{2:.1}\">{3}</text>",
                x(*offset),
                x(*offset) + 2.0,
                bottom + 14.0,
                i + 1
            );
        }
        svg.push_str("</svg>");
        let untraced: Vec<&str> = traces
            .iter()
            .filter_map(|t| t.unavailable.as_deref())
            .collect();
        let note = match untraced.first() {
            None => String::new(),
            Some(why) => format!(
                "<p class=\"note\">{} of {} untraced: {}</p>",
                untraced.len(),
                numbers::count_of(traces.len(), "sample"),
                esc(why)
            ),
        };
        let _ = writeln!(
            out,
            "<figure><figcaption>{}: {} of samples</figcaption>{svg}{note}</figure>",
            esc(&c.label()),
            seconds(span / 1000.0)
        );
    }
    out.push_str("</div>\n");
    out
}

use super::escape_html as esc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::gpu_trace::trace_of;
    use crate::results::GpuTrace;

    #[test]
    fn a_sweep_plots_each_point_from_its_own_cases() {
        use crate::plan::ParamValue;
        let mut r: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let smaller: Vec<CaseResult> = r
            .cases
            .iter()
            .filter(|c| c.scenario != crate::plan::Scenario::Noop)
            .map(|c| {
                let mut c = c.clone();
                c.parameters.insert("size".into(), ParamValue::Int(4));
                for s in &mut c.samples {
                    s.wall_s /= 4.0;
                }
                c.stats = crate::stats::Summary::of(&c.walls());
                c
            })
            .collect();
        r.cases.extend(smaller);
        crate::results::derive(&mut r);
        let plots = comparison_plots(&r);
        let figures: Vec<&str> = plots.split("<figure>").skip(1).collect();
        assert_eq!(figures.len(), 2, "{plots}");
        assert!(
            figures[0].contains("fixture-c-dag nix host size=20:"),
            "{}",
            figures[0]
        );
        assert!(
            figures[1].contains("fixture-c-dag nix host size=4:"),
            "{}",
            figures[1]
        );
        let cold_median = |i: usize| seconds(r.comparisons[i].cold_median_s);
        assert_ne!(cold_median(0), cold_median(1));
        for (figure, i) in figures.iter().zip([0, 1]) {
            assert!(figure.contains(&cold_median(i)), "{figure}");
        }
    }

    /// The synthetic checked results (see tests/fixtures/gpu-lane-h100/README.md) with the
    /// recorded H100 trace on every sample, one sampler that could not start, one failed
    /// check, and a gpu lane that ran in the flake's shell.
    fn gpu_results() -> Results {
        let mut r: Results = serde_json::from_str(&crate::tools::fixture(
            "gpu-lane-h100/results-checked-synthetic.json",
        ))
        .unwrap();
        let trace = trace_of(&crate::tools::fixture("gpu-lane-h100/trace-lms100.csv"));
        for case in &mut r.cases {
            for s in &mut case.samples {
                s.gpu_trace = Some(trace.clone());
            }
        }
        r.cases[1].samples[2].gpu_trace = Some(GpuTrace {
            unavailable: Some("nvidia-smi could not start: No such file or directory".into()),
            period_ms: 100,
            ..GpuTrace::default()
        });
        let check = r.cases[2].samples[1].check.as_mut().unwrap();
        check.passed = false;
        check.exit_code = Some(2);
        check.output_tail = "no CUDA device usable".into();
        let lane = &mut r.lanes[0];
        let gpu = lane.gpu.as_mut().unwrap();
        gpu.cuda_home = Some("/usr/local/cuda-13.0".into());
        gpu.cuda_home_from = Some("/usr/local/cuda".into());
        gpu.libcuda_dir = Some("/usr/local/nvidia/lib64".into());
        lane.shell = Some("nix develop /src#gpu".into());
        lane.shell_reason = Some("the flake has devShells.x86_64-linux.gpu".into());
        lane.shell_startup_s = Some(1.234);
        r
    }

    #[test]
    fn gpu_section() {
        insta::assert_snapshot!("gpu_section.html", checks_and_gpu(&gpu_results()));
    }

    #[test]
    fn nothing_without_checks_traces_or_gpu_lanes() {
        let r: Results =
            serde_json::from_str(&crate::tools::fixture("results/fallback-host.json")).unwrap();
        assert_eq!(checks_and_gpu(&r), "");
    }
}
