//! `compare BASELINE NEW`: per case, the change of the median with its 95% interval, and
//! every verdict that changed. Pure: two results in, a judgement out.
//!
//! A change counts as a regression only when its whole interval lies beyond the threshold,
//! so noise cannot fail a build; without an interval (fewer than 3 samples) it is "n/a" and
//! never counts. A verdict that went from pass to fail, or a case that stopped succeeding,
//! always counts. Absolute times (medians, growth slopes) gate only when both runs had the
//! same CPU model, cores and tool versions; otherwise they are shown, and the gate judges
//! what each run measures against itself: the speedup and the fallback penalty. (A
//! calibration workload that would let absolute times be normalised across machines is
//! not part of a run yet.)

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::{Lane, Scenario};
use crate::report::tables::{ratio, ratio_interval, seconds};
use crate::results::derive::ok_case;
use crate::results::{CaseResult, Environment, LaneIdentity, Outcome, Results};
use crate::stats::fit::slope_ratio;
use crate::stats::{change_of_ratio, median_ratio, ratio_of_medians, RatioInterval};

/// Allowed change before it can count as a regression (`--threshold`).
pub const DEFAULT_THRESHOLD: f64 = 0.10;

/// `--threshold` as the library takes it: finite and at least 0 (NaN would make every
/// comparison false, so nothing could ever fail). The CLI parses it with the same check.
fn check_threshold(value: f64) -> Result<f64, String> {
    crate::plan::args::check_non_negative(value)
        .map_err(|e| format!("--threshold {e}: give e.g. 0.10 to allow 10% before a regression"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Regression,
    Improvement,
    Unchanged,
    /// No interval to judge by (fewer than 3 samples on a side).
    Undetermined,
}

/// What a compared number is, which says which way is worse and how to print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// A median wall time: higher is worse.
    Time,
    /// Seconds per unit of a swept parameter: higher (steeper) is worse.
    Slope,
    /// median(cold) / median(warm) within a run: lower is worse.
    Speedup,
    /// A fallback's time to a result over the cold median within a run: higher is worse.
    Penalty,
}

impl Measure {
    fn higher_is_worse(self) -> bool {
        self != Measure::Speedup
    }

    /// How a table says it got worse, and better.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Measure::Time => ("**slower**", "faster"),
            Measure::Slope => ("**steeper**", "flatter"),
            Measure::Speedup => ("**lower**", "higher"),
            Measure::Penalty => ("**higher**", "lower"),
        }
    }

    fn show(self, value: f64) -> String {
        match self {
            Measure::Time => seconds(value),
            Measure::Slope => crate::report::growth::per_unit(value),
            Measure::Speedup | Measure::Penalty => ratio(value),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaseChange {
    pub label: String,
    pub measure: Measure,
    pub baseline: f64,
    pub new: f64,
    /// new / baseline.
    pub ratio: RatioInterval,
    pub change: Change,
    /// Whether this row can fail the comparison (absolute numbers from different machines
    /// are shown, not gated).
    pub gated: bool,
}

/// One way the two runs' environments differ.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvDifference {
    /// e.g. `cpu_model`, `tool nix`, `lane vm kernel`.
    pub what: String,
    pub baseline: String,
    pub new: String,
    /// A difference that makes absolute times incomparable (CPU model, cores, tool versions).
    pub machine: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub threshold: f64,
    /// Every difference between the runs' environments, lanes and profiles.
    pub environment: Vec<EnvDifference>,
    /// Absolute times gate: the runs had the same CPU model, cores and tool versions.
    pub absolute_gated: bool,
    /// Median of each case (and growth slopes), new / baseline.
    pub cases: Vec<CaseChange>,
    /// What each run measured against itself: speedups and fallback penalties. Only
    /// compared when absolute times are not gated (otherwise the medians say it all).
    pub relative: Vec<CaseChange>,
    /// Verdicts and outcomes that got worse (each one is a regression).
    pub worse: Vec<String>,
    /// Cases only one file has.
    pub unmatched: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        !self.worse.is_empty()
            || self
                .cases
                .iter()
                .chain(&self.relative)
                .any(|c| c.gated && c.change == Change::Regression)
    }
}

fn same_case(a: &CaseResult, b: &CaseResult) -> bool {
    a.same_scenario(b) && a.parameters == b.parameters
}

/// The case's label, with its parameters when its file has the same case at other values
/// (a sweep).
fn label(case: &CaseResult, file: &Results) -> String {
    if file.cases.iter().filter(|c| c.same_scenario(case)).count() < 2 {
        return case.label();
    }
    let params: Vec<String> = case
        .parameters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} [{}]", case.label(), params.join(" "))
}

/// Regression, improvement or no change by the whole interval of new / baseline.
fn judge(r: &RatioInterval, threshold: f64, measure: Measure) -> Change {
    let Some((low, high)) = r.interval() else {
        return Change::Undetermined;
    };
    let (up, down) = (low > 1.0 + threshold, high < 1.0 - threshold);
    match (up, down, measure.higher_is_worse()) {
        (true, _, true) | (_, true, false) => Change::Regression,
        (true, _, false) | (_, true, true) => Change::Improvement,
        _ => Change::Unchanged,
    }
}

fn row(
    label: String,
    measure: Measure,
    (baseline, new): (f64, f64),
    ratio: RatioInterval,
    threshold: f64,
    gated: bool,
) -> CaseChange {
    CaseChange {
        label,
        measure,
        baseline,
        new,
        change: judge(&ratio, threshold, measure),
        ratio,
        gated,
    }
}

/// Both files as `results::load` gives them (derived: their growth series are read, not
/// recomputed). `Err` says why the two files cannot be compared.
pub fn compare(baseline: &Results, new: &Results, threshold: f64) -> Result<Comparison, String> {
    let threshold = check_threshold(threshold)?;
    if baseline.schema_version != new.schema_version {
        return Err(format!(
            "schema versions differ (baseline {}, new {}): re-run the baseline with this harness",
            baseline.schema_version, new.schema_version
        ));
    }
    let environment = environment_differences(baseline, new);
    let absolute_gated = !environment.iter().any(|d| d.machine);
    let mut out = Comparison {
        threshold,
        environment,
        absolute_gated,
        ..Comparison::default()
    };
    for base in &baseline.cases {
        let now = match new.cases.iter().find(|c| same_case(c, base)) {
            Some(now) => now,
            None => {
                let counterparts: Vec<&CaseResult> =
                    new.cases.iter().filter(|c| c.same_scenario(base)).collect();
                if let [other] = counterparts.as_slice() {
                    if label(base, baseline) == base.label() {
                        return Err(format!(
                            "{} ran with different parameters (baseline {:?}, new {:?}): timings of different workloads do not compare",
                            base.label(), base.parameters, other.parameters
                        ));
                    }
                }
                out.unmatched
                    .push(format!("{} (only in the baseline)", label(base, baseline)));
                continue;
            }
        };
        if base.outcome == Outcome::Ok && now.outcome != Outcome::Ok {
            out.worse.push(format!(
                "{}: was ok, now {}",
                label(base, baseline),
                now.reason.as_deref().unwrap_or("not ok")
            ));
            continue;
        }
        let (Some(b), Some(n)) = (&base.stats, &now.stats) else {
            continue;
        };
        let Some(r) = ratio_of_medians(&now.walls(), &base.walls()) else {
            continue;
        };
        out.cases.push(row(
            label(base, baseline),
            Measure::Time,
            (b.median_s, n.median_s),
            r,
            threshold,
            absolute_gated,
        ));
    }
    out.unmatched.extend(
        new.cases
            .iter()
            .filter(|c| !baseline.cases.iter().any(|b| same_case(b, c)))
            .map(|c| format!("{} (only in the new file)", label(c, new))),
    );
    if out.cases.is_empty() && out.worse.is_empty() {
        return Err(
            "the files have no case in common (same repo, system, lane, scenario and parameters)"
                .into(),
        );
    }
    out.cases
        .extend(slopes(baseline, new, threshold, absolute_gated));
    if !absolute_gated {
        out.relative = within_runs(baseline, new, threshold);
    }
    out.worse.extend(worse_verdicts(baseline, new));
    Ok(out)
}

/// Growth slopes of the series both runs swept.
fn slopes(baseline: &Results, new: &Results, threshold: f64, gated: bool) -> Vec<CaseChange> {
    // Both files were derived when loaded: their series and fits are there already.
    baseline
        .growth
        .iter()
        .filter_map(|base| {
            let now = new.growth.iter().find(|g| g.same_series(base))?;
            let r = slope_ratio(&base.series(), &now.series())?;
            Some(row(
                format!("{} slope over {}", base.label(), base.parameter),
                Measure::Slope,
                (base.linear?.slope, now.linear?.slope),
                r,
                threshold,
                gated,
            ))
        })
        .collect()
}

/// Speedups and fallback penalties: each run against itself, so a change of machine
/// cancels out.
fn within_runs(baseline: &Results, new: &Results, threshold: f64) -> Vec<CaseChange> {
    let mut out = Vec::new();
    let find = |file: &'_ Results, like: &CaseResult, scenario| {
        ok_case(&file.cases, like, scenario)
            .filter(|c| !c.samples.is_empty())
            .map(CaseResult::walls)
    };
    for base in &baseline.cases {
        let measure = match base.scenario {
            Scenario::Warm => Measure::Speedup,
            Scenario::Fallback { .. } => Measure::Penalty,
            _ => continue,
        };
        let (Some(base_cold), Some(now_cold)) = (
            find(baseline, base, Scenario::Cold),
            find(new, base, Scenario::Cold),
        ) else {
            continue;
        };
        let time_to_result = |file: &Results| -> Option<Vec<f64>> {
            let case = file.cases.iter().find(|c| same_case(c, base))?;
            (case.outcome == Outcome::Ok && !case.samples.is_empty())
                .then(|| case.samples.iter().map(|s| s.time_to_result_s()).collect())
        };
        let (Some(base_side), Some(now_side)) = (time_to_result(baseline), time_to_result(new))
        else {
            continue;
        };
        // Speedup: cold / warm; penalty: fallback / cold.
        let ((b0, b1), (n0, n1)) = if measure == Measure::Speedup {
            ((&base_cold, &base_side), (&now_cold, &now_side))
        } else {
            ((&base_side, &base_cold), (&now_side, &now_cold))
        };
        let (Some(before), Some(after), Some(r)) = (
            median_ratio(b0, b1),
            median_ratio(n0, n1),
            change_of_ratio((b0, b1), (n0, n1)),
        ) else {
            continue;
        };
        let what = if measure == Measure::Speedup {
            "speedup".to_string()
        } else {
            format!("{} penalty", base.scenario)
        };
        out.push(row(
            format!("{} {what}", base.key()),
            measure,
            (before, after),
            r,
            threshold,
            true,
        ));
    }
    out
}

fn worse_verdicts(baseline: &Results, new: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for base in &baseline.verdicts {
        let Some(now) = new.verdicts.iter().find(|v| v.key() == base.key()) else {
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
                    out.push(format!(
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
    out
}

/// Every difference between the two runs' machines, tools, lanes and profiles.
pub fn environment_differences(baseline: &Results, new: &Results) -> Vec<EnvDifference> {
    let mut out = Vec::new();
    let mut facts = |what: String, b: Option<String>, n: Option<String>, machine: bool| {
        if b != n {
            let shown = |v: Option<String>| v.unwrap_or_else(|| "absent".into());
            out.push(EnvDifference {
                what,
                baseline: shown(b),
                new: shown(n),
                machine,
            });
        }
    };
    facts(
        "profile".into(),
        Some(baseline.profile.clone()),
        Some(new.profile.clone()),
        false,
    );
    for (what, b, n, machine) in machine_facts(&baseline.environment, &new.environment) {
        facts(what, b, n, machine);
    }
    let lanes = |r: &Results| -> BTreeMap<String, LaneIdentity> {
        r.lanes
            .iter()
            .map(|l| (l.lane.name().to_string(), l.clone()))
            .collect()
    };
    let (base_lanes, new_lanes) = (lanes(baseline), lanes(new));
    let names: std::collections::BTreeSet<&String> =
        base_lanes.keys().chain(new_lanes.keys()).collect();
    for name in names {
        let (b, n) = (base_lanes.get(name), new_lanes.get(name));
        let (Some(b), Some(n)) = (b, n) else {
            facts(
                format!("lane {name}"),
                b.map(|_| "recorded".into()),
                n.map(|_| "recorded".into()),
                false,
            );
            continue;
        };
        for (what, bv, nv, machine) in lane_facts(b, n) {
            facts(format!("lane {name} {what}"), bv, nv, machine);
        }
    }
    out
}

type Fact = (String, Option<String>, Option<String>, bool);

/// (what, baseline, new, whether it changes the machine) for an environment: the host's
/// name, and what a lane identity records of the machine.
fn machine_facts(b: &Environment, n: &Environment) -> Vec<Fact> {
    let mut out = vec![fact("hostname", &b.hostname, &n.hostname, false)];
    out.extend(lane_facts(
        &LaneIdentity::of(Lane::Host, b),
        &LaneIdentity::of(Lane::Host, n),
    ));
    out
}

fn lane_facts(b: &LaneIdentity, n: &LaneIdentity) -> Vec<Fact> {
    let gpu = |l: &LaneIdentity| l.gpu.as_ref().map(|g| format!("{} ({})", g.name, g.driver));
    let mut out = vec![
        fact("cpu_model", &b.cpu_model, &n.cpu_model, true),
        fact("cores", &b.cores, &n.cores, true),
        fact("memory_bytes", &b.memory_bytes, &n.memory_bytes, false),
        fact("kernel", &b.kernel, &n.kernel, false),
        fact("os", &b.os, &n.os, false),
        (
            "virtualization".into(),
            b.virtualization.clone(),
            n.virtualization.clone(),
            true,
        ),
        (
            "acceleration".into(),
            b.acceleration.clone(),
            n.acceleration.clone(),
            true,
        ),
        ("gpu".into(), gpu(b), gpu(n), true),
        ("shell".into(), b.shell.clone(), n.shell.clone(), false),
    ];
    out.extend(tool_facts(&b.tools, &n.tools));
    out
}

fn fact(what: &str, b: &impl ToString, n: &impl ToString, machine: bool) -> Fact {
    (
        what.into(),
        Some(b.to_string()),
        Some(n.to_string()),
        machine,
    )
}

fn tool_facts(
    b: &BTreeMap<String, crate::results::ToolVersion>,
    n: &BTreeMap<String, crate::results::ToolVersion>,
) -> Vec<Fact> {
    let names: std::collections::BTreeSet<&String> = b.keys().chain(n.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let version = |m: &BTreeMap<String, crate::results::ToolVersion>| {
                m.get(name).map(|t| t.version.clone())
            };
            (format!("tool {name}"), version(b), version(n), true)
        })
        .collect()
}

pub fn render_markdown(c: &Comparison) -> String {
    let mut out = format!(
        "# flywheel-bench compare\n\n{}\n\n_A change counts only when its whole 95% interval of new/baseline lies beyond {:.2} (or {:.2} for what is better higher); n/a (fewer than 3 samples) never counts; verdicts that go from pass to fail always count._\n\n",
        if c.regressed() { "**Regression.**" } else { "No regression." },
        1.0 + c.threshold,
        1.0 - c.threshold
    );
    if !c.environment.is_empty() {
        out.push_str(
            "The runs' environments differ:\n\n| what | baseline | new |\n| --- | --- | --- |\n",
        );
        for d in &c.environment {
            let _ = writeln!(out, "| {} | {} | {} |", d.what, d.baseline, d.new);
        }
        out.push('\n');
    }
    out.push_str(if c.absolute_gated {
        "Absolute times gate: same CPU model, cores and tool versions.\n\n"
    } else {
        "**Absolute times are shown, not gated**: the CPU model, cores or tool versions differ. The gate judges what each run measured against itself (speedup, fallback penalty), with the verdicts.\n\n"
    });
    out.push_str(&change_table(&c.cases));
    if !c.relative.is_empty() {
        out.push_str("\nWithin each run:\n\n");
        out.push_str(&change_table(&c.relative));
    }
    for (title, lines) in [("Got worse", &c.worse), ("Not compared", &c.unmatched)] {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n{title}:\n");
            for line in lines {
                let _ = writeln!(out, "- {line}");
            }
        }
    }
    out
}

fn change_table(rows: &[CaseChange]) -> String {
    let mut out = String::from(
        "| case | baseline | new | new / baseline [95% CI] | change |\n| --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let change = match r.change {
            Change::Regression => r.measure.words().0,
            Change::Improvement => r.measure.words().1,
            Change::Unchanged => "no change",
            Change::Undetermined => "n/a (fewer than 3 samples)",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {change}{} |",
            r.label,
            r.measure.show(r.baseline),
            r.measure.show(r.new),
            ratio_interval(&r.ratio),
            if r.gated || r.change == Change::Unchanged {
                ""
            } else {
                " (not gated)"
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ParamValue, Scenario};

    fn load() -> Results {
        serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap()
    }

    fn scaled(r: Results, factor: f64) -> Results {
        scaled_where(r, factor, |_| true)
    }

    fn scaled_where(mut r: Results, factor: f64, which: impl Fn(&CaseResult) -> bool) -> Results {
        for case in &mut r.cases {
            if !which(case) {
                continue;
            }
            for s in &mut case.samples {
                s.wall_s *= factor;
            }
            let walls = case.walls();
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
        assert!(c.cases.iter().all(|k| k.change == Change::Unchanged));
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

    fn on_another_cpu(mut r: Results) -> Results {
        r.environment.cpu_model = "AMD EPYC 7B13".into();
        r
    }

    #[test]
    fn another_cpu_shows_absolute_changes_without_gating_them() {
        let base = load();
        let c = compare(
            &base,
            &on_another_cpu(scaled(load(), 1.5)),
            DEFAULT_THRESHOLD,
        )
        .unwrap();
        assert!(!c.absolute_gated);
        assert_eq!(
            c.environment,
            vec![EnvDifference {
                what: "cpu_model".into(),
                baseline: base.environment.cpu_model.clone(),
                new: "AMD EPYC 7B13".into(),
                machine: true,
            }]
        );
        assert!(c
            .cases
            .iter()
            .all(|k| k.change == Change::Regression && !k.gated));
        // Everything got slower alike: the speedup within each run held.
        assert_eq!(c.relative.len(), 1);
        assert_eq!(c.relative[0].change, Change::Unchanged);
        assert!(!c.regressed());
        let md = render_markdown(&c);
        assert!(
            md.contains("No regression.")
                && md.contains("| cpu_model |")
                && md.contains("**slower** (not gated)")
                && md.contains("shown, not gated"),
            "{md}"
        );
        // The same files on the same machine gate as before.
        let same = compare(&base, &scaled(load(), 1.5), DEFAULT_THRESHOLD).unwrap();
        assert!(same.absolute_gated && same.environment.is_empty() && same.regressed());
        assert!(same.relative.is_empty());
    }

    #[test]
    fn on_another_machine_a_fallen_speedup_still_regresses() {
        let warm_slower = scaled_where(load(), 3.0, |c| c.scenario == Scenario::Warm);
        let c = compare(&load(), &on_another_cpu(warm_slower), DEFAULT_THRESHOLD).unwrap();
        let speedup = &c.relative[0];
        assert_eq!(
            (speedup.measure, speedup.change),
            (Measure::Speedup, Change::Regression)
        );
        assert!(speedup.gated && c.regressed());
        assert!(
            render_markdown(&c).contains("speedup | "),
            "{}",
            render_markdown(&c)
        );
    }

    #[test]
    fn tool_versions_and_lanes_are_named_and_tools_gate() {
        let mut new = load();
        if let Some(tool) = new.environment.tools.values_mut().next() {
            tool.version = "9.9.9".into();
        }
        new.environment.kernel = "6.1.0-other".into();
        new.profile = "attic".into();
        let c = compare(&load(), &new, DEFAULT_THRESHOLD).unwrap();
        let named: Vec<&str> = c.environment.iter().map(|d| d.what.as_str()).collect();
        assert!(
            named.contains(&"kernel") && named.contains(&"profile"),
            "{named:?}"
        );
        assert!(named.iter().any(|w| w.starts_with("tool ")), "{named:?}");
        assert!(!c.absolute_gated);
        // A kernel alone does not stop the gate.
        let mut kernel_only = load();
        kernel_only.environment.kernel = "6.1.0-other".into();
        assert!(
            compare(&load(), &kernel_only, DEFAULT_THRESHOLD)
                .unwrap()
                .absolute_gated
        );
    }

    #[test]
    fn a_threshold_that_cannot_judge_is_refused() {
        for bad in [f64::NAN, f64::INFINITY, -0.1] {
            let err = compare(&load(), &load(), bad).unwrap_err();
            assert!(err.contains("--threshold"), "{err}");
        }
        let err = compare(&load(), &load(), f64::NAN).unwrap_err();
        assert!(err.contains("finite"), "{err}");
    }

    #[test]
    fn too_few_samples_are_not_judged() {
        let two = |mut r: Results| {
            for case in &mut r.cases {
                case.samples.truncate(2);
            }
            r
        };
        let c = compare(&two(load()), &two(scaled(load(), 1.5)), DEFAULT_THRESHOLD).unwrap();
        assert!(c.cases.iter().all(|k| k.change == Change::Undetermined));
        assert!(!c.regressed());
        assert!(render_markdown(&c).contains("[n/a] | n/a (fewer than 3 samples)"));
    }

    #[test]
    fn a_steeper_growth_slope_regresses() {
        let sweep = |cases| {
            let mut r = load();
            r.cases = cases;
            crate::results::derive(&mut r);
            r.verdicts.clear();
            r
        };
        let base = sweep(crate::results::growth::tests::swept());
        let mut steeper = crate::results::growth::tests::swept();
        for case in steeper.iter_mut().filter(|c| c.scenario == Scenario::Cold) {
            let size = match case.parameters["size"] {
                ParamValue::Int(i) => i as f64,
                ParamValue::Str(_) => unreachable!(),
            };
            for s in &mut case.samples {
                s.wall_s += 0.5 * size;
            }
        }
        let c = compare(&base, &sweep(steeper), DEFAULT_THRESHOLD).unwrap();
        let slope = c
            .cases
            .iter()
            .find(|k| k.measure == Measure::Slope && k.label.contains("cold"))
            .unwrap();
        assert_eq!((slope.change, slope.gated), (Change::Regression, true));
        assert!((slope.ratio.ratio - 2.0).abs() < 1e-6, "{:?}", slope.ratio);
        // Cases of a sweep are told apart by their parameters.
        assert!(
            c.cases.iter().any(|k| k.label.contains("cold [size=8 ")),
            "{:?}",
            c.cases.iter().map(|k| &k.label).collect::<Vec<_>>()
        );
        assert!(render_markdown(&c).contains("slope over size"));
    }
}
