//! `compare BASELINE NEW`: per case, the change of the median with its 95% interval, and
//! every verdict that changed. Pure: two results in, a judgement out.
//!
//! A timing counts as a regression only when the whole interval of new/baseline lies above
//! 1 + threshold, so noise cannot fail a build; a verdict that went from pass to fail, or a
//! case that stopped succeeding, always counts.

use std::fmt::Write;

use crate::report::tables::{ratio, seconds};
use crate::results::{CaseResult, Outcome, Results};
use crate::stats::{ratio_of_medians, RatioInterval};

/// Allowed slowdown before a change can count as a regression (`--threshold`).
pub const DEFAULT_THRESHOLD: f64 = 0.10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Regression,
    Improvement,
    NoChange,
}

#[derive(Debug, Clone)]
pub struct CaseChange {
    pub label: String,
    pub baseline_median_s: f64,
    pub new_median_s: f64,
    /// new / baseline.
    pub ratio: RatioInterval,
    pub change: Change,
}

#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub threshold: f64,
    pub cases: Vec<CaseChange>,
    /// Verdicts and outcomes that got worse (each one is a regression).
    pub worse: Vec<String>,
    /// Cases only one file has.
    pub unmatched: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        !self.worse.is_empty() || self.cases.iter().any(|c| c.change == Change::Regression)
    }
}

fn same_case(a: &CaseResult, b: &CaseResult) -> bool {
    a.repo == b.repo && a.system == b.system && a.lane == b.lane && a.scenario == b.scenario
}

/// `Err` says why the two files cannot be compared.
pub fn compare(baseline: &Results, new: &Results, threshold: f64) -> Result<Comparison, String> {
    if baseline.schema_version != new.schema_version {
        return Err(format!(
            "schema versions differ (baseline {}, new {}): re-run the baseline with this harness",
            baseline.schema_version, new.schema_version
        ));
    }
    let mut out = Comparison {
        threshold,
        ..Comparison::default()
    };
    for base in &baseline.cases {
        let Some(now) = new.cases.iter().find(|c| same_case(c, base)) else {
            out.unmatched
                .push(format!("{} (only in the baseline)", base.label()));
            continue;
        };
        if base.parameters != now.parameters {
            return Err(format!(
                "{} ran with different parameters (baseline {:?}, new {:?}): timings of different workloads do not compare",
                base.label(), base.parameters, now.parameters
            ));
        }
        if base.outcome == Outcome::Ok && now.outcome != Outcome::Ok {
            out.worse.push(format!(
                "{}: was ok, now {}",
                base.label(),
                now.reason.as_deref().unwrap_or("not ok")
            ));
            continue;
        }
        let walls = |c: &CaseResult| c.samples.iter().map(|s| s.wall_s).collect::<Vec<_>>();
        let (Some(b), Some(n)) = (&base.stats, &now.stats) else {
            continue;
        };
        let Some(r) = ratio_of_medians(&walls(now), &walls(base)) else {
            continue;
        };
        let change = if r.ci_low > 1.0 + threshold {
            Change::Regression
        } else if r.ci_high < 1.0 - threshold {
            Change::Improvement
        } else {
            Change::NoChange
        };
        out.cases.push(CaseChange {
            label: base.label(),
            baseline_median_s: b.median_s,
            new_median_s: n.median_s,
            ratio: r,
            change,
        });
    }
    out.unmatched.extend(
        new.cases
            .iter()
            .filter(|c| !baseline.cases.iter().any(|b| same_case(b, c)))
            .map(|c| format!("{} (only in the new file)", c.label())),
    );
    if out.cases.is_empty() && out.worse.is_empty() {
        return Err(
            "the files have no case in common (same repo, system, lane and scenario)".into(),
        );
    }
    for base in &baseline.verdicts {
        let Some(now) = new
            .verdicts
            .iter()
            .find(|v| v.repo == base.repo && v.system == base.system && v.lane == base.lane)
        else {
            continue;
        };
        let pairs = [
            ("cache_use", &base.cache_use, &now.cache_use),
            ("speedup", &base.speedup, &now.speedup),
            ("fallback", &base.fallback, &now.fallback),
            ("verified", &base.verified, &now.verified),
        ];
        for (name, was, is) in pairs {
            if let (Some(was), Some(is)) = (was, is) {
                if was.pass && !is.pass {
                    out.worse.push(format!(
                        "{} {} {}: verdict {name} passed, now fails: {}",
                        base.repo,
                        base.system.name(),
                        base.lane.name(),
                        is.detail
                    ));
                }
            }
        }
    }
    Ok(out)
}

pub fn render_markdown(c: &Comparison) -> String {
    let mut out = format!(
        "# flywheel-bench compare\n\n{}\n\n_A timing regresses only when the 95% interval of new/baseline lies above {:.2}; verdicts that go from pass to fail always count._\n\n",
        if c.regressed() { "**Regression.**" } else { "No regression." },
        1.0 + c.threshold
    );
    out.push_str("| case | baseline | new | new / baseline [95% CI] | change |\n| --- | --- | --- | --- | --- |\n");
    for case in &c.cases {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} [{}, {}] | {} |",
            case.label,
            seconds(case.baseline_median_s),
            seconds(case.new_median_s),
            ratio(case.ratio.ratio),
            ratio(case.ratio.ci_low),
            ratio(case.ratio.ci_high),
            match case.change {
                Change::Regression => "**slower**",
                Change::Improvement => "faster",
                Change::NoChange => "no change",
            }
        );
    }
    if !c.worse.is_empty() {
        out.push_str("\nGot worse:\n\n");
        for w in &c.worse {
            let _ = writeln!(out, "- {w}");
        }
    }
    if !c.unmatched.is_empty() {
        out.push_str("\nNot compared:\n\n");
        for u in &c.unmatched {
            let _ = writeln!(out, "- {u}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ParamValue;

    fn load() -> Results {
        serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap()
    }

    fn scaled(mut r: Results, factor: f64) -> Results {
        for case in &mut r.cases {
            for s in &mut case.samples {
                s.wall_s *= factor;
            }
            let walls: Vec<f64> = case.samples.iter().map(|s| s.wall_s).collect();
            case.stats = crate::stats::Summary::of(&walls);
        }
        crate::results::derive(&mut r);
        r
    }

    #[test]
    fn the_same_file_does_not_regress() {
        let c = compare(&load(), &load(), DEFAULT_THRESHOLD).unwrap();
        assert!(!c.regressed());
        assert_eq!(c.cases.len(), 3);
        assert!(c.cases.iter().all(|k| k.change == Change::NoChange));
        assert!(render_markdown(&c).contains("No regression."));
    }

    #[test]
    fn a_uniform_slowdown_past_the_threshold_regresses() {
        let c = compare(&load(), &scaled(load(), 1.5), DEFAULT_THRESHOLD).unwrap();
        assert!(c.regressed());
        assert!(c.cases.iter().all(|k| k.change == Change::Regression));
        assert!(render_markdown(&c).contains("**slower**"));
        // A speed-up is not a regression.
        let faster = compare(&load(), &scaled(load(), 0.5), DEFAULT_THRESHOLD).unwrap();
        assert!(!faster.regressed());
        assert!(faster.cases.iter().all(|k| k.change == Change::Improvement));
    }

    #[test]
    fn failures_and_verdict_changes_always_count() {
        let mut new = load();
        new.cases[1].outcome = Outcome::Failed;
        new.cases[1].reason = Some("warm-up 1 failed".into());
        let c = compare(&load(), &new, DEFAULT_THRESHOLD).unwrap();
        assert!(c.regressed());
        assert!(
            c.worse[0].contains("was ok, now warm-up 1 failed"),
            "{:?}",
            c.worse
        );

        let mut base = load();
        crate::results::derive(&mut base);
        let mut worse = base.clone();
        worse.settings.thresholds.min_hit_ratio = 1.1; // the same data, a verdict that now fails
        crate::results::derive(&mut worse);
        let c = compare(&base, &worse, DEFAULT_THRESHOLD).unwrap();
        assert!(
            c.worse
                .iter()
                .any(|w| w.contains("verdict cache_use passed, now fails")),
            "{:?}",
            c.worse
        );
    }

    #[test]
    fn refuses_incomparable_files() {
        let mut other = load();
        other.cases[0]
            .parameters
            .insert("size".into(), ParamValue::Int(99));
        let err = compare(&load(), &other, DEFAULT_THRESHOLD).unwrap_err();
        assert!(err.contains("different parameters"), "{err}");
        let mut newer = load();
        newer.schema_version = 2;
        assert!(compare(&load(), &newer, DEFAULT_THRESHOLD)
            .unwrap_err()
            .contains("schema versions"));
        let mut empty = load();
        empty.cases.clear();
        assert!(compare(&load(), &empty, DEFAULT_THRESHOLD)
            .unwrap_err()
            .contains("no case in common"));
    }
}
