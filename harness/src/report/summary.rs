//! The terminal summary printed at the end of a run: cold vs warm per repo and system,
//! then every case that did not succeed.

use std::fmt::Write;

use crate::results::{Outcome, Results};

/// Seconds with a precision that suits the magnitude (builds run from ms to hours).
pub fn seconds(s: f64) -> String {
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.1}x")
    }
}

pub fn render(results: &Results) -> String {
    let mut rows = vec![[
        "repo",
        "system",
        "lane",
        "cold",
        "warm",
        "noop",
        "speedup [95% CI]",
        "hit ratio",
    ]
    .map(String::from)];
    for c in &results.comparisons {
        rows.push([
            c.repo.clone(),
            c.system.name().into(),
            c.lane.name().into(),
            seconds(c.cold_median_s),
            seconds(c.warm_median_s),
            c.noop_median_s.map_or("-".into(), seconds),
            format!(
                "{} [{}, {}]",
                ratio(c.speedup.ratio),
                ratio(c.speedup.ci_low),
                ratio(c.speedup.ci_high)
            ),
            c.hit_ratio
                .map_or("-".into(), |h| format!("{:.0}%", h * 100.0)),
        ]);
    }
    let mut out = String::new();
    if results.comparisons.is_empty() {
        out.push_str(
            "No cold/warm comparison: a comparison needs a successful cold and warm case.\n",
        );
    } else {
        out.push_str("Medians of wall time; speedup = median(cold) / median(warm).\n");
        out.push_str(&table(&rows));
    }
    if !results.fallbacks.is_empty() {
        out.push_str(
            "\nFallback: the cache behind the fault proxy; penalty = time / median(cold).\n",
        );
        let mut rows = vec![[
            "repo",
            "system",
            "scenario",
            "outcome",
            "time",
            "penalty",
            "tool noticed",
            "from cache",
            "verified",
        ]
        .map(String::from)];
        for f in &results.fallbacks {
            let outcome = serde_json::to_value(f.outcome).expect("serialises");
            rows.push([
                f.repo.clone(),
                f.system.name().into(),
                f.scenario.to_string(),
                outcome.as_str().unwrap_or("?").into(),
                f.time_s.map_or("-".into(), seconds),
                f.penalty.map_or("-".into(), ratio),
                if f.detected_by_tool { "yes" } else { "no" }.into(),
                f.from_cache.map_or("-".into(), |n| n.to_string()),
                f.verified
                    .map_or("-".into(), |v| if v { "yes" } else { "NO" }.into()),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !results.verdicts.is_empty() {
        out.push_str("\nVerdicts:\n");
        for v in &results.verdicts {
            let checks = [
                ("cache_use", &v.cache_use),
                ("speedup", &v.speedup),
                ("fallback", &v.fallback),
                ("verified", &v.verified),
            ];
            for (name, check) in checks {
                if let Some(c) = check {
                    let _ = writeln!(
                        out,
                        "  {} {} {:<9} {}  {}",
                        v.repo,
                        v.system.name(),
                        name,
                        if c.pass { "pass" } else { "FAIL" },
                        c.detail
                    );
                }
            }
        }
    }
    let problems: Vec<_> = results
        .cases
        .iter()
        .filter(|c| c.outcome != Outcome::Ok)
        .collect();
    if !problems.is_empty() {
        out.push('\n');
        for c in problems {
            let _ = writeln!(
                out,
                "{} {} {} {} {}: {}",
                if c.outcome == Outcome::Failed {
                    "FAILED "
                } else {
                    "skipped"
                },
                c.repo,
                c.system.name(),
                c.lane.name(),
                c.scenario,
                c.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
    }
    out
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_scale_with_magnitude() {
        assert_eq!(seconds(0.0712), "71 ms");
        assert_eq!(seconds(1.234), "1.23 s");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(754.2), "754 s");
    }

    #[test]
    fn renders_a_real_results_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/results/nix-fixture.json");
        let results: Results =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let text = render(&results);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("repo") && lines[1].contains("speedup [95% CI]"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("fixture-c-dag") && lines[2].contains("nix"),
            "{text}"
        );
        assert!(lines[2].contains("100%"), "{text}");
    }
}
