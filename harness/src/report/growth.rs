//! How cost grows over a sweep, for the reports: a table of the fits and an SVG plot per
//! repo, system and lane (a line through the medians per scenario, every sample a dot).
//! Pure: growth series in, text out.

use std::fmt::Write;

use super::escape_html as esc;
use crate::report::tables::{cells, Table};
use crate::results::growth::Growth;
use crate::stats::numbers::{change_interval, interval_text, number, per_unit, r_squared, seconds};

/// The fits, one row per series; `None` without a sweep.
pub fn table(growth: &[Growth]) -> Option<Table> {
    if growth.is_empty() {
        return None;
    }
    let rows = growth
        .iter()
        .map(|g| {
            let list = |f: &dyn Fn(&crate::results::growth::GrowthPoint) -> String| {
                g.points.iter().map(f).collect::<Vec<_>>().join(", ")
            };
            let slope = g.linear.map_or("-".into(), |fit| {
                interval_text(fit.slope, g.slope_ci_low.zip(g.slope_ci_high), per_unit)
            });
            cells([
                g.repo.clone(),
                g.system.name().into(),
                g.lane.name().into(),
                g.scenario.to_string(),
                format!("{} = {}", g.parameter, list(&|p| number(p.value))),
                list(&|p| seconds(p.median_s)),
                slope,
                g.linear.map_or("-".into(), |f| seconds(f.intercept)),
                g.linear.map_or("-".into(), |f| r_squared(f.r_squared)),
                g.log_log.map_or("-".into(), |f| number(f.slope)),
            ])
        })
        .collect();
    Some(Table {
        title: "Growth",
        note: "Median wall time against the swept parameter: least-squares slope (95% bootstrap interval over the samples at each point; n/a below 3 samples a point), intercept and R²; exponent from the log-log fit (1 linear, 2 quadratic).",
        headers: vec![
            "repo",
            "system",
            "lane",
            "scenario",
            "values",
            "medians",
            "slope [95% CI]",
            "intercept",
            "R²",
            "exponent",
        ],
        rows,
    })
}

/// A link sweep's answers, one row per warm series: where the cache stops paying and
/// what the proxy costs; `None` without a link sweep.
pub fn link_table(growth: &[Growth]) -> Option<Table> {
    let rows: Vec<_> = growth
        .iter()
        .filter(|g| g.break_even.is_some() || g.proxy_cost.is_some())
        .map(|g| {
            let unit = match g.parameter.as_str() {
                "link.rtt_ms" => "ms RTT",
                "link.bandwidth" => "B/s",
                other => other,
            };
            let show = |v: f64| format!("{} {unit}", number((v * 10.0).round() / 10.0));
            cells([
                g.repo.clone(),
                g.system.name().into(),
                g.lane.name().into(),
                g.break_even.map_or("-".into(), |b| seconds(b.level)),
                g.break_even.map_or("-".into(), |b| match b.at {
                    Some(at) => interval_text(at, b.ci_low.zip(b.ci_high), show),
                    None => "never (warm does not grow)".into(),
                }),
                g.proxy_cost.as_ref().map_or("-".into(), change_interval),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Link to the cache",
        note: "A link sweep: warm read through the proxy shaped at each value, cold and warm read directly. Break-even: where the line through warm's medians meets the cold median, i.e. the cache stops paying there (95% bootstrap interval). Proxy cost: warm through the unshaped proxy (value 0) against warm read directly.",
        headers: vec![
            "repo",
            "system",
            "lane",
            "cold median",
            "break-even [95% CI]",
            "proxy cost [95% CI]",
        ],
        rows,
    })
}

const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 6] = [
    "#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a",
];

/// One plot per repo, system, lane and parameter, with a line per scenario; empty without
/// a sweep.
pub fn plots(growth: &[Growth]) -> String {
    let mut groups: Vec<Vec<&Growth>> = Vec::new();
    for g in growth {
        let same = |other: &&Growth| other.key() == g.key() && other.parameter == g.parameter;
        match groups.iter_mut().find(|group| same(&group[0])) {
            Some(group) => group.push(g),
            None => groups.push(vec![g]),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Growth</h3><p class=\"note\">Median wall time against the swept parameter: a line through the medians per scenario, every sample a dot; an axis is logarithmic when its values span ten times or more.</p><div class=\"plots\">\n");
    for group in groups {
        let first = group[0];
        let _ = writeln!(
            out,
            "<figure><figcaption>{} · {} · {}: over {}</figcaption>{}</figure>",
            esc(&first.repo),
            first.system.name(),
            first.lane.name(),
            esc(&first.parameter),
            plot(&group)
        );
    }
    out.push_str("</div>\n");
    out
}

/// A linear or logarithmic mapping of values onto a span of pixels.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Axis {
    /// Logarithmic when every value is positive and they span a factor of 10 or more.
    fn fit(values: impl Iterator<Item = f64> + Clone, from: f64, to: f64) -> Axis {
        let min = values.clone().fold(f64::INFINITY, f64::min);
        let max = values.fold(f64::NEG_INFINITY, f64::max);
        let log = min > 0.0 && max / min >= 10.0;
        let (lo, hi) = if log {
            (min.log10().floor(), max.log10().ceil())
        } else {
            let pad = ((max - min) * 0.1).max(max.abs() * 0.05).max(1e-9);
            ((min - pad).max(0.0_f64.min(min)), max + pad)
        };
        Axis {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
            log,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let v = if self.log { v.max(1e-12).log10() } else { v };
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Decades on a log axis, five even steps on a linear one.
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            (self.lo as i32..=self.hi as i32)
                .map(|d| 10f64.powi(d))
                .collect()
        } else {
            (0..=4)
                .map(|i| self.lo + (self.hi - self.lo) * f64::from(i) / 4.0)
                .collect()
        }
    }
}

fn plot(group: &[&Growth]) -> String {
    let points = group.iter().flat_map(|g| &g.points);
    let crossings = group.iter().filter_map(|g| g.break_even);
    let x = Axis::fit(
        points.clone().map(|p| p.value).chain(
            crossings
                .clone()
                .filter_map(|b| b.at)
                .filter(|at| *at >= 0.0),
        ),
        LEFT,
        WIDTH - RIGHT,
    );
    let y = Axis::fit(
        points
            .flat_map(|p| p.samples.iter().copied())
            .chain(crossings.map(|b| b.level)),
        HEIGHT - BOTTOM,
        TOP,
    );
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\">");
    for t in y.ticks() {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\" stroke=\"#d0d7de\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            WIDTH - RIGHT,
            y.at(t),
            LEFT - 6.0,
            y.at(t) + 4.0,
            seconds(t)
        );
    }
    // The swept values themselves make the best ticks, unless there are many.
    let mut values: Vec<f64> = group
        .iter()
        .flat_map(|g| g.points.iter().map(|p| p.value))
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let x_ticks = if values.len() <= 8 { values } else { x.ticks() };
    for t in x_ticks {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#d0d7de\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x.at(t),
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0,
            number((t * 100.0).round() / 100.0)
        );
    }
    let log = |axis: &Axis| if axis.log { " (log)" } else { "" };
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}{}</text><text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">wall time{}</text>",
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 8.0,
        esc(&group[0].parameter),
        log(&x),
        (TOP + HEIGHT - BOTTOM) / 2.0,
        log(&y)
    );
    for (i, g) in group.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let line: Vec<String> = g
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x.at(p.value), y.at(p.median_s)))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"><title>{}: medians</title></polyline>",
            line.join(" "),
            g.scenario
        );
        for p in &g.points {
            for s in &p.samples {
                let _ = write!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\" fill-opacity=\"0.5\"><title>{} at {}: {}</title></circle>",
                    x.at(p.value),
                    y.at(*s),
                    g.scenario,
                    number(p.value),
                    seconds(*s)
                );
            }
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:{color}\">{}</text>",
            LEFT + 8.0,
            TOP + 14.0 * (i as f64 + 1.0),
            g.scenario
        );
    }
    for b in group.iter().filter_map(|g| g.break_even) {
        break_even(&mut svg, &x, &y, b, &group[0].parameter);
    }
    svg.push_str("</svg>");
    svg
}

/// Cold as a dashed line across the plot, and where warm's line meets it.
fn break_even(
    svg: &mut String,
    x: &Axis,
    y: &Axis,
    b: crate::stats::fit::Crossing,
    parameter: &str,
) {
    let level = y.at(b.level);
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{level:.1}\" y2=\"{level:.1}\" stroke=\"#57606a\" stroke-dasharray=\"6 4\"><title>cold (read directly): {}</title></line><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">cold</text>",
        WIDTH - RIGHT,
        seconds(b.level),
        WIDTH - RIGHT - 4.0,
        level - 4.0
    );
    let Some(at) = b.at.filter(|at| *at >= 0.0) else {
        return;
    };
    let text = interval_text(at, b.ci_low.zip(b.ci_high), |v| {
        number((v * 10.0).round() / 10.0)
    });
    let _ = write!(
        svg,
        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{TOP}\" y2=\"{1:.1}\" stroke=\"#cf222e\" stroke-dasharray=\"2 3\"><title>break-even {2} = {3}</title></line><circle cx=\"{0:.1}\" cy=\"{4:.1}\" r=\"5\" fill=\"none\" stroke=\"#cf222e\"/><text x=\"{5:.1}\" y=\"{6:.1}\" style=\"fill:#cf222e\">break-even {3}</text>",
        x.at(at),
        HEIGHT - BOTTOM,
        esc(parameter),
        esc(&text),
        level,
        x.at(at) + 6.0,
        level + 16.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::growth::{growth, tests::swept};

    #[test]
    fn a_sweep_renders_a_table_and_a_plot() {
        let g = growth(&swept());
        let t = table(&g).unwrap();
        assert_eq!(t.rows.len(), 2);
        let cold = &t.rows[0];
        assert_eq!(cold[4].text, "size = 2, 4, 8");
        assert!(cold[6].text.starts_with("500 ms/unit ["), "{cold:?}");
        assert_eq!(cold[8].text, "1.000");
        let svg = plots(&g);
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Three samples at each of three points, for each of two scenarios.
        assert_eq!(svg.matches("<circle").count(), 18);
        assert!(svg.contains("over size"));
        assert!(table(&[]).is_none() && plots(&[]).is_empty());
    }

    #[test]
    fn axes_turn_logarithmic_over_a_wide_range() {
        let narrow = Axis::fit([2.0, 8.0].into_iter(), 0.0, 100.0);
        assert!(!narrow.log);
        let wide = Axis::fit([1.0, 1000.0].into_iter(), 0.0, 300.0);
        assert!(wide.log);
        assert_eq!(wide.ticks(), vec![1.0, 10.0, 100.0, 1000.0]);
        assert!((wide.at(10.0) - 100.0).abs() < 1e-9);
        // Zero cannot sit on a log axis.
        assert!(!Axis::fit([0.0, 1000.0].into_iter(), 0.0, 1.0).log);
    }
}
