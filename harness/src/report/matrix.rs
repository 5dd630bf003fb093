//! `matrix`: the runner-lane proof matrix. Lanes and how often a proof must repeat come
//! from `lanes.toml`; evidence from a history of runs (`report::history`): each run's
//! results files and lifecycle file. Each lane is judged against the graduation criteria,
//! each criterion with the runs and files it read. Pure apart from reading lanes.toml.

use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::report::escape_html;
use crate::report::history::{History, HistoryRun};
use crate::results::lifecycle::{Bootstrap, Cleanup, TimedStep};
use crate::results::{CaseResult, CheckResult, Outcome, Results, Sample};
use crate::stats::numbers::seconds;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaneDecl {
    /// The lane's name in results and on the command line (`host`, `vm`, `gpu`, ...).
    pub name: String,
    /// What reviewers call it, e.g. "KVM (nix-vm-test)".
    pub title: String,
    #[serde(default)]
    pub owner: Option<String>,
    /// The bench repo whose success on this lane is the canary.
    pub canary: String,
    #[serde(default)]
    pub docs: Option<String>,
    /// The canary must also have passed its `[check]` after every build: a GPU canary
    /// whose output came from a cache or was already there proves nothing about the GPU.
    #[serde(default)]
    pub canary_checked: bool,
    /// Every canary sample must carry a GPU trace (the gpu lane's trace extraction).
    #[serde(default)]
    pub trace_required: bool,
}

/// How often a proof must repeat (`[proof]` in lanes.toml).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofSettings {
    /// A lane is proved only when its canary passed in at least this many ...
    #[serde(default = "default_passes")]
    pub canary_passes: usize,
    /// ... of its last this many runs on main.
    #[serde(default = "default_runs")]
    pub canary_runs: usize,
    /// `baseline` pools a lane's last this many runs on main.
    #[serde(default = "default_baseline_runs")]
    pub baseline_runs: usize,
}

fn default_passes() -> usize {
    5
}
fn default_runs() -> usize {
    7
}
fn default_baseline_runs() -> usize {
    5
}

impl Default for ProofSettings {
    fn default() -> Self {
        ProofSettings {
            canary_passes: default_passes(),
            canary_runs: default_runs(),
            baseline_runs: default_baseline_runs(),
        }
    }
}

/// lanes.toml: the proof settings and the lanes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lanes {
    #[serde(default)]
    pub proof: ProofSettings,
    #[serde(rename = "lane")]
    pub lanes: Vec<LaneDecl>,
}

pub fn load_lanes(path: &Path) -> Result<Lanes> {
    let invalid = |message: String, fix: &str| Error::Manifest {
        path: path.to_path_buf(),
        message,
        fix: fix.into(),
    };
    let keys = "each [[lane]] needs name, title and canary (owner, docs, canary_checked and trace_required are optional); [proof] takes canary_passes <= canary_runs and baseline_runs, all at least 1 (see docs/lanes-and-gpu.md#the-proof-matrix)";
    let text = crate::boundary::read_text(path, crate::boundary::TEXT_LIMIT).map_err(|e| {
        invalid(
            format!("cannot read it: {e}"),
            "pass --lanes with the lanes file (the repository's lanes.toml), or run from the repository root",
        )
    })?;
    let lanes: Lanes =
        toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().into(), keys))?;
    let p = lanes.proof;
    if p.canary_passes == 0 || p.canary_runs < p.canary_passes || p.baseline_runs == 0 {
        return Err(invalid(
            format!(
                "[proof] canary_passes = {}, canary_runs = {}, baseline_runs = {}",
                p.canary_passes, p.canary_runs, p.baseline_runs
            ),
            keys,
        ));
    }
    // A second declaration of a lane would be judged on the same evidence, twice.
    for (i, lane) in lanes.lanes.iter().enumerate() {
        if let Some(first) = lanes.lanes[..i].iter().position(|l| l.name == lane.name) {
            return Err(invalid(
                format!(
                    "lane[{i}]: the lane `{}` is declared again (first as lane[{first}])",
                    lane.name
                ),
                "declare each lane once: merge the two [[lane]] tables",
            ));
        }
    }
    Ok(lanes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proved,
    Experimental,
    Backlog,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Proved => "proved",
            State::Experimental => "experimental",
            State::Backlog => "backlog",
        }
    }
}

/// One graduation criterion of a lane: met or not, and what it read.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub name: &'static str,
    pub met: bool,
    /// Which runs and files, and what they said.
    pub evidence: String,
}

/// The canary in one run on main.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Passed,
    /// It ran and failed, and why.
    Failed(String),
    /// The run has no results from the lane.
    Missing,
}

/// How long the lane's jobs waited for a runner, over the history's runs on main.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueWait {
    /// The newest run's wait, and the run.
    pub last: Option<(String, f64)>,
    pub median_s: Option<f64>,
    pub p95_s: Option<f64>,
    /// Runs with a measured wait.
    pub runs: usize,
}

#[derive(Debug, Clone)]
pub struct LaneProof {
    pub lane: LaneDecl,
    pub state: State,
    /// In the order of the graduation criteria.
    pub criteria: Vec<Criterion>,
    /// The canary in each of the last `canary_runs` runs on main, oldest first.
    pub strip: Vec<(String, Mark)>,
    pub queue: QueueWait,
    /// The bootstrap and cleanup of the newest run on main with results from the lane.
    pub bootstrap: Option<Bootstrap>,
    pub cleanup: Option<Cleanup>,
}

/// The graduation criteria, in order.
pub const CRITERIA: [&str; 9] = [
    "named lane with an owner",
    "runtime proof on main",
    "cache behaviour recorded",
    "bootstrap measured",
    "cleanup evidenced, nothing left",
    "queue wait measured",
    "canary passed, repeatedly",
    "trace on every canary sample",
    "docs link",
];

/// Judges each lane over `history`: proved when every criterion holds, experimental with
/// some results, backlog with none.
pub fn judge(lanes: &Lanes, history: &History) -> Vec<LaneProof> {
    lanes
        .lanes
        .iter()
        .map(|lane| judge_lane(lane, lanes.proof, history))
        .collect()
}

fn judge_lane(lane: &LaneDecl, proof: ProofSettings, history: &History) -> LaneProof {
    let name = lane.name.as_str();
    let files: Vec<String> = history
        .runs
        .iter()
        .flat_map(|r| r.lane_files(name).map(|(label, _)| label.to_string()))
        .collect();
    let main_runs: Vec<&HistoryRun> = history.on_main().collect();
    let window = &main_runs[main_runs.len().saturating_sub(proof.canary_runs)..];
    // The newest run on main with results from the lane: what the single-run criteria read.
    let latest = main_runs
        .iter()
        .rev()
        .find_map(|run| run.main_file(name).map(|(label, r)| (*run, label, r)));
    let strip: Vec<(String, Mark)> = window
        .iter()
        .map(|run| (run.name.clone(), canary_mark(lane, run)))
        .collect();
    let queue = queue_wait(name, &main_runs);
    let criteria = vec![
        Criterion {
            name: CRITERIA[0],
            met: lane.owner.as_deref().is_some_and(|o| !o.is_empty()),
            evidence: match lane.owner.as_deref().filter(|o| !o.is_empty()) {
                Some(owner) => format!("{owner} (lanes.toml)"),
                None => "lanes.toml names no owner".into(),
            },
        },
        runtime_proof(latest, &files),
        on_latest(latest, CRITERIA[2], |label, r| {
            cache_behaviour(name, label, r)
        }),
        on_latest(latest, CRITERIA[3], |label, r| {
            bootstrap_measured(name, label, r)
        }),
        on_latest(latest, CRITERIA[4], cleanup_evidenced),
        queue_measured(name, main_runs.last().copied()),
        canary_repeated(lane, proof, &strip, main_runs.len()),
        trace_on_every_sample(lane, window),
        Criterion {
            name: CRITERIA[8],
            met: lane.docs.as_deref().is_some_and(|d| !d.is_empty()),
            evidence: lane
                .docs
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "lanes.toml names no docs".into()),
        },
    ];
    let state = if criteria.iter().all(|c| c.met) {
        State::Proved
    } else if files.is_empty() {
        State::Backlog
    } else {
        State::Experimental
    };
    let identity = |r: &Results| {
        r.lanes
            .iter()
            .find(|l| l.lane.name() == name)
            .and_then(|l| l.bootstrap.clone())
    };
    LaneProof {
        lane: lane.clone(),
        state,
        criteria,
        strip,
        queue,
        bootstrap: latest.and_then(|(_, _, r)| identity(r)),
        cleanup: latest.and_then(|(_, _, r)| r.cleanup.clone()),
    }
}

type Latest<'a> = Option<(&'a HistoryRun, &'a str, &'a Results)>;

fn runtime_proof(latest: Latest, files: &[String]) -> Criterion {
    let evidence = match latest {
        Some((run, label, r)) => format!(
            "{label} (run {}, {})",
            run.name,
            r.git.as_ref().map_or_else(String::new, |g| g.describe())
        ),
        None if files.is_empty() => "no results from this lane".into(),
        None => format!(
            "no results from a clean checkout of main; from elsewhere: {}",
            files.join(", ")
        ),
    };
    Criterion {
        name: CRITERIA[1],
        met: latest.is_some(),
        evidence,
    }
}

/// A criterion read from the newest run on main with the lane's results.
fn on_latest(
    latest: Latest,
    name: &'static str,
    check: impl Fn(&str, &Results) -> (bool, String),
) -> Criterion {
    let (met, evidence) = match latest {
        Some((_, label, r)) => check(label, r),
        None => (false, "no results from this lane on main".into()),
    };
    Criterion {
        name,
        met,
        evidence,
    }
}

fn cache_behaviour(lane: &str, label: &str, r: &Results) -> (bool, String) {
    let mut read: Vec<String> = r
        .cases
        .iter()
        .filter(|c| c.lane.name() == lane)
        .filter_map(|c| {
            let cache = c.cache.as_ref()?;
            let backend = serde_json::to_value(cache.backend)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Some(format!("{backend} {}", cache.url))
        })
        .collect();
    read.dedup();
    if read.is_empty() {
        (
            false,
            format!("no case of the lane read a cache in {label}"),
        )
    } else {
        (true, format!("cases read {} ({label})", read.join(", ")))
    }
}

fn steps(steps: &[TimedStep]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {}", s.name, seconds(s.seconds)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bootstrap_measured(lane: &str, label: &str, r: &Results) -> (bool, String) {
    let bootstrap = r
        .lanes
        .iter()
        .find(|l| l.lane.name() == lane)
        .and_then(|l| l.bootstrap.as_ref());
    match bootstrap {
        None => (
            false,
            format!("{label} records no bootstrap (a harness before lifecycle evidence)"),
        ),
        Some(b) if b.job.is_empty() => (
            false,
            format!(
                "the harness's checks were timed ({}), not the job's steps: the lane job passes them with --bootstrap-time ({label})",
                steps(&b.checks)
            ),
        ),
        Some(b) => (
            true,
            format!(
                "job: {}; checks: {}; {} in all ({label})",
                steps(&b.job),
                if b.checks.is_empty() {
                    "none".into()
                } else {
                    steps(&b.checks)
                },
                seconds(b.total_s())
            ),
        ),
    }
}

fn cleanup_evidenced(label: &str, r: &Results) -> (bool, String) {
    let Some(cleanup) = &r.cleanup else {
        return (
            false,
            format!("{label} records no cleanup (a harness before lifecycle evidence)"),
        );
    };
    let swept = match cleanup.swept.len() {
        0 => "the janitor found nothing to remove at the start".to_string(),
        n => format!(
            "the janitor removed {n} stale run(s) at the start ({})",
            cleanup
                .swept
                .iter()
                .map(|s| s.folder.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    match &cleanup.left {
        None => (
            false,
            format!("{swept}; the end was never checked (the run was killed?) ({label})"),
        ),
        Some(left) if left.is_empty() => {
            (true, format!("{swept}; nothing left at the end ({label})"))
        }
        Some(left) => (
            false,
            format!(
                "{swept}; left at the end: {} ({label})",
                left.iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
    }
}

fn queue_wait(lane: &str, main_runs: &[&HistoryRun]) -> QueueWait {
    let waits: Vec<(String, f64)> = main_runs
        .iter()
        .filter_map(|run| {
            let (_, life) = run.lifecycle.as_ref()?;
            Some((run.name.clone(), life.lane_job(lane)?.queue_wait_s?))
        })
        .collect();
    let values: Vec<f64> = waits.iter().map(|(_, w)| *w).collect();
    QueueWait {
        last: waits.last().cloned(),
        median_s: crate::stats::quantile(&values, 0.5),
        p95_s: crate::stats::quantile(&values, 0.95),
        runs: values.len(),
    }
}

/// Read from the newest run on main: a job waits for a runner whether or not it then
/// produced results.
fn queue_measured(lane: &str, run: Option<&HistoryRun>) -> Criterion {
    let (met, evidence) = match run {
        None => (false, "no run on main".into()),
        Some(run) => match &run.lifecycle {
            None => (
                false,
                format!(
                    "run {} has no lifecycle file (the judge had no token for the jobs API?)",
                    run.name
                ),
            ),
            Some((label, life)) => match life.lane_job(lane) {
                None => (false, format!("{label} has no job `bench {lane} (...)`")),
                Some(job) => match job.queue_wait_s {
                    None => (
                        false,
                        format!(
                            "{label}: `{}` never started on a runner ({})",
                            job.name, job.status
                        ),
                    ),
                    Some(wait) => (
                        true,
                        format!(
                            "waited {} for {} (runner {}) ({label})",
                            seconds(wait),
                            job.labels.join(", "),
                            job.runner_name.as_deref().unwrap_or("unnamed")
                        ),
                    ),
                },
            },
        },
    };
    Criterion {
        name: CRITERIA[5],
        met,
        evidence,
    }
}

fn canary_repeated(
    lane: &LaneDecl,
    proof: ProofSettings,
    strip: &[(String, Mark)],
    main_runs: usize,
) -> Criterion {
    let passed = strip.iter().filter(|(_, m)| *m == Mark::Passed).count();
    let needs = format!(
        "needs {} of the last {}",
        proof.canary_passes, proof.canary_runs
    );
    let counted = if main_runs < proof.canary_runs {
        format!("{passed} of {} run(s) on main so far", strip.len())
    } else {
        format!("{passed} of the last {} runs on main", strip.len())
    };
    let runs = |wanted: fn(&Mark) -> bool| -> Vec<&str> {
        strip
            .iter()
            .filter(|(_, m)| wanted(m))
            .map(|(run, _)| run.as_str())
            .collect()
    };
    let mut evidence = format!("{} passed in {counted} ({needs})", lane.canary);
    let passes = runs(|m| *m == Mark::Passed);
    if !passes.is_empty() {
        let _ = write!(evidence, ": {}", passes.join(", "));
    }
    let failures: Vec<String> = strip
        .iter()
        .filter_map(|(run, mark)| match mark {
            Mark::Failed(why) => Some(format!("{run}: {why}")),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        let _ = write!(evidence, "; failed in {}", failures.join("; "));
    }
    let missing = runs(|m| *m == Mark::Missing);
    if !missing.is_empty() {
        let _ = write!(
            evidence,
            "; no results from the lane in {}",
            missing.join(", ")
        );
    }
    Criterion {
        name: CRITERIA[6],
        met: passed >= proof.canary_passes,
        evidence,
    }
}

/// The lane's canary in one run: passed when the run's results from main show it.
fn canary_mark(lane: &LaneDecl, run: &HistoryRun) -> Mark {
    match run.main_file(&lane.name) {
        None => Mark::Missing,
        Some((_, r)) => match canary_failure(lane, r) {
            None => Mark::Passed,
            Some(why) => Mark::Failed(why),
        },
    }
}

/// Why `results` do not show the lane's canary passing: a case of it must have succeeded,
/// none may have failed, and no build of it failed its check (nor, where the lane asks
/// for checks, went without one).
fn canary_failure(lane: &LaneDecl, results: &Results) -> Option<String> {
    let cases: Vec<&CaseResult> = canary_cases(lane, results).collect();
    if cases.is_empty() {
        return Some(format!("no case of {}", lane.canary));
    }
    if let Some(bad) = cases
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Failed | Outcome::Invalid))
    {
        return Some(format!(
            "{} {}{}",
            bad.scenario,
            bad.outcome.name(),
            bad.reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" ({})", first_line(r)))
        ));
    }
    for case in &cases {
        for build in case.warmups.iter().chain(&case.samples) {
            match build_check(build) {
                Some(check) if !check.passed => {
                    return Some(format!("{} check failed", case.scenario))
                }
                None if lane.canary_checked => {
                    return Some(format!("{} built without a check", case.scenario))
                }
                _ => {}
            }
        }
    }
    if !cases.iter().any(|c| c.outcome == Outcome::Ok) {
        return Some("every case was skipped".into());
    }
    None
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn canary_cases<'a>(lane: &'a LaneDecl, r: &'a Results) -> impl Iterator<Item = &'a CaseResult> {
    r.cases
        .iter()
        .filter(move |c| c.lane.name() == lane.name && c.repo == lane.canary)
}

/// The check of the build that gave a sample its result (the retry's, when there was one).
fn build_check(sample: &Sample) -> Option<&CheckResult> {
    sample
        .retry
        .as_ref()
        .and_then(|r| r.check.as_ref())
        .or(sample.check.as_ref())
}

fn trace_on_every_sample(lane: &LaneDecl, window: &[&HistoryRun]) -> Criterion {
    let criterion = |met, evidence| Criterion {
        name: CRITERIA[7],
        met,
        evidence,
    };
    if !lane.trace_required {
        return criterion(
            true,
            "not required (lanes.toml: trace_required is off)".into(),
        );
    }
    let (mut traced, mut missing) = (0, Vec::new());
    for run in window {
        let Some((label, r)) = run.main_file(&lane.name) else {
            continue;
        };
        for case in canary_cases(lane, r).filter(|c| c.outcome != Outcome::Skipped) {
            for (i, sample) in case.samples.iter().enumerate() {
                match &sample.gpu_trace {
                    Some(t) if t.unavailable.is_none() && t.summary.samples > 0 => traced += 1,
                    Some(t) => missing.push(format!(
                        "{label} {} sample {}: {}",
                        case.scenario,
                        i + 1,
                        t.unavailable.as_deref().unwrap_or("nothing sampled")
                    )),
                    None => missing.push(format!("{label} {} sample {}", case.scenario, i + 1)),
                }
            }
        }
    }
    match (traced, missing.is_empty()) {
        (0, true) => criterion(false, "no canary sample on main in the window".into()),
        (n, true) => criterion(
            true,
            format!(
                "{n} canary samples over the last {} runs on main, each with a GPU trace",
                window.len()
            ),
        ),
        (_, false) => criterion(false, format!("no GPU trace: {}", missing.join("; "))),
    }
}

fn strip_text(strip: &[(String, Mark)]) -> String {
    strip
        .iter()
        .map(|(_, m)| match m {
            Mark::Passed => '✓',
            Mark::Failed(_) => '✗',
            Mark::Missing => '·',
        })
        .collect()
}

fn queue_text(q: &QueueWait) -> String {
    match (&q.last, q.median_s, q.p95_s) {
        (Some((_, last)), Some(median), Some(p95)) => format!(
            "{} last; {} median, {} p95 over {} run(s)",
            seconds(*last),
            seconds(median),
            seconds(p95),
            q.runs
        ),
        _ => "not measured".into(),
    }
}

fn bootstrap_text(b: Option<&Bootstrap>) -> String {
    match b {
        Some(b) if !b.job.is_empty() || !b.checks.is_empty() => {
            let sum = |s: &[TimedStep]| s.iter().map(|s| s.seconds).sum::<f64>();
            format!(
                "{} (job {}, checks {})",
                seconds(b.total_s()),
                seconds(sum(&b.job)),
                seconds(sum(&b.checks))
            )
        }
        _ => "not recorded".into(),
    }
}

fn cleanup_text(c: Option<&Cleanup>) -> String {
    match c.and_then(|c| c.left.as_ref()) {
        None => "not recorded".into(),
        Some(left) if left.is_empty() => "nothing left".into(),
        Some(left) => format!("{} left", left.len()),
    }
}

/// What the page says first; `legend` names the canary strip's marks.
fn intro(history: &History, proof: ProofSettings, legend: &str) -> String {
    let on_main = history.on_main().count();
    format!(
        "A lane is **proved** when every criterion holds: its canary passed in at least {} of its last {} runs on main, the newest run on main with its results recorded its cache, bootstrap and cleanup (nothing left), and the newest run on main its job's queue wait; **experimental** when results exist for it but some criterion does not hold; **backlog** without results. Evidence: {} ({} run(s), {} on main). Canary strip, oldest first: {legend}.",
        proof.canary_passes,
        proof.canary_runs,
        if history.source.is_empty() { "the files given" } else { &history.source },
        history.runs.len(),
        on_main
    )
}

const TEXT_LEGEND: &str = "✓ passed, ✗ failed, · no results from the lane";
const HTML_LEGEND: &str =
    "green passed, red failed, grey no results from the lane (hover for the run and why)";

fn problems(history: &History) -> Vec<String> {
    history
        .runs
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| format!("run {}: {p}", r.name))
        })
        .collect()
}

/// A Markdown table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn render_markdown(proofs: &[LaneProof], history: &History, proof: ProofSettings) -> String {
    let mut out = format!(
        "# Runner-lane proof matrix\n\n_{}_\n\n| lane | state | canary, last {} on main | queue wait | bootstrap | cleanup | unmet |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        intro(history, proof, TEXT_LEGEND),
        proof.canary_runs
    );
    for p in proofs {
        let passed = p.strip.iter().filter(|(_, m)| *m == Mark::Passed).count();
        let unmet: Vec<&str> = p
            .criteria
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.name)
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            p.lane.name,
            p.state.name(),
            if p.strip.is_empty() {
                "no runs".into()
            } else {
                format!("{} {passed}/{}", strip_text(&p.strip), p.strip.len())
            },
            queue_text(&p.queue),
            bootstrap_text(p.bootstrap.as_ref()),
            cleanup_text(p.cleanup.as_ref()),
            if unmet.is_empty() {
                "-".into()
            } else {
                cell(&unmet.join(", "))
            }
        );
    }
    for p in proofs {
        let _ = writeln!(
            out,
            "\n## `{}`: {}\n\n{}; owner {}; canary {}.\n",
            p.lane.name,
            p.state.name(),
            p.lane.title,
            p.lane.owner.as_deref().unwrap_or("none"),
            p.lane.canary
        );
        for c in &p.criteria {
            let _ = writeln!(
                out,
                "- {} {}: {}",
                if c.met { "[x]" } else { "[ ]" },
                c.name,
                c.evidence
            );
        }
    }
    let problems = problems(history);
    if !problems.is_empty() {
        out.push_str("\nFiles of the history that could not be read:\n\n");
        for p in problems {
            let _ = writeln!(out, "- {p}");
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.proved{color:#1a7f37;font-weight:600}.experimental{color:#9a6700;font-weight:600}.backlog{color:#57606a;font-weight:600}
.strip span{display:inline-block;width:.9rem;height:.9rem;margin-right:2px;border-radius:2px}
.pass{background:#2da44e}.fail{background:#cf222e}.missing{background:#d0d7de}
li.met::marker{content:'\\2713  ';color:#1a7f37}li.unmet::marker{content:'\\2717  ';color:#cf222e}
.note{color:#57606a;font-style:italic}";

pub fn render_html(proofs: &[LaneProof], history: &History, proof: ProofSettings) -> String {
    let esc = escape_html;
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Runner-lane proof matrix</title><style>{STYLE}</style></head><body>\n<h1>Runner-lane proof matrix</h1>\n<p class=\"note\">{}</p>\n<table><tr><th>lane</th><th>state</th><th>canary, last {} on main</th><th>queue wait</th><th>bootstrap</th><th>cleanup</th></tr>\n",
        esc(&intro(history, proof, HTML_LEGEND).replace("**", "")),
        proof.canary_runs
    );
    for p in proofs {
        let mut strip = String::new();
        for (run, mark) in &p.strip {
            let (class, why) = match mark {
                Mark::Passed => ("pass", "passed".to_string()),
                Mark::Failed(why) => ("fail", why.clone()),
                Mark::Missing => ("missing", "no results from the lane".into()),
            };
            let _ = write!(
                strip,
                "<span class=\"{class}\" title=\"{}\"></span>",
                esc(&format!("{run}: {why}"))
            );
        }
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#lane-{name}\"><code>{name}</code></a></td><td class=\"{state}\">{state}</td><td class=\"strip\">{strip}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&queue_text(&p.queue)),
            esc(&bootstrap_text(p.bootstrap.as_ref())),
            esc(&cleanup_text(p.cleanup.as_ref())),
            name = esc(&p.lane.name),
            state = p.state.name(),
        );
    }
    out.push_str("</table>\n");
    for p in proofs {
        let _ = writeln!(
            out,
            "<section id=\"lane-{name}\"><h2><code>{name}</code>: <span class=\"{state}\">{state}</span></h2><p>{}; owner {}; canary {}.</p><ul>",
            esc(&p.lane.title),
            esc(p.lane.owner.as_deref().unwrap_or("none")),
            esc(&p.lane.canary),
            name = esc(&p.lane.name),
            state = p.state.name(),
        );
        for c in &p.criteria {
            let _ = writeln!(
                out,
                "<li class=\"{}\"><strong>{}</strong>: {}</li>",
                if c.met { "met" } else { "unmet" },
                esc(c.name),
                esc(&c.evidence)
            );
        }
        out.push_str("</ul></section>\n");
    }
    let problems = problems(history);
    if !problems.is_empty() {
        out.push_str("<h2>Files of the history that could not be read</h2><ul>");
        for p in problems {
            let _ = write!(out, "<li>{}</li>", esc(&p));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::history::tests::night;
    use crate::results::lifecycle::{Leftover, LeftoverKind};
    use crate::results::GitInfo;

    const LANES: &str = "[proof]\ncanary_passes = 5\ncanary_runs = 7\n\n[[lane]]\nname = \"host\"\ntitle = \"Host\"\nowner = \"platform\"\ncanary = \"fixture-c-dag\"\ndocs = \"README.md\"\n\n[[lane]]\nname = \"gpu\"\ntitle = \"GPU\"\ncanary = \"fixture-cuda\"\n";

    fn lanes() -> Lanes {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lanes.toml");
        std::fs::write(&path, LANES).unwrap();
        load_lanes(&path).unwrap()
    }

    fn lifecycle(wait_s: u32) -> crate::results::lifecycle::Lifecycle {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/github-api/jobs-nightly.json"),
        )
        .unwrap()
        .replace(
            "\"started_at\": \"2026-12-06T03:17:09Z\"",
            &format!(
                "\"started_at\": \"2026-12-06T03:{:02}:{:02}Z\"",
                17 + (5 + wait_s) / 60,
                (5 + wait_s) % 60
            ),
        );
        crate::results::lifecycle::from_github_jobs(&text, "jobs.json").unwrap()
    }

    /// A night on main as the harness now writes it: bootstrap and cleanup recorded.
    fn good_night() -> Results {
        let mut r = night(1.0, 0.0);
        let mut identity =
            crate::results::LaneIdentity::of(crate::plan::Lane::Host, &r.environment);
        identity.bootstrap = Some(Bootstrap {
            job: vec![TimedStep::new("nix run .#bench", 41.8)],
            checks: vec![
                TimedStep::new("cache preflight", 0.21),
                TimedStep::new("user-namespace probe", 0.43),
            ],
        });
        r.lanes = vec![identity];
        r.cleanup = Some(Cleanup {
            swept: Vec::new(),
            left: Some(Vec::new()),
        });
        r
    }

    fn failed_night() -> Results {
        let mut r = good_night();
        let cold = r
            .cases
            .iter_mut()
            .find(|c| c.scenario.to_string() == "cold")
            .unwrap();
        cold.outcome = Outcome::Failed;
        cold.reason = Some("nix build exited with 1\nmore".into());
        r
    }

    /// The nights as a history whose runs each have a lifecycle file, the lane jobs
    /// waiting 4 s, 5 s, ... for a runner.
    fn history(nights: Vec<Results>) -> History {
        let mut h = crate::report::history::tests::history(nights);
        for (i, run) in h.runs.iter_mut().enumerate() {
            let label = format!("history/{}/lifecycle.json", run.name);
            run.lifecycle = Some((label, lifecycle(4 + i as u32)));
        }
        h
    }

    fn criterion<'a>(p: &'a LaneProof, name: &str) -> &'a Criterion {
        p.criteria.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_lane_is_proved_when_its_canary_passed_5_of_its_last_7_runs() {
        let mut nights = vec![good_night(); 7];
        nights[1] = failed_night();
        nights[4] = failed_night();
        let h = history(nights);
        let proofs = judge(&lanes(), &h);
        let host = &proofs[0];
        assert_eq!(host.state, State::Proved, "{:#?}", host.criteria);
        assert_eq!(strip_text(&host.strip), "✓✗✓✓✗✓✓");
        assert_eq!(proofs[1].state, State::Backlog);
        let text = render_markdown(&proofs, &h, lanes().proof);
        assert!(text.contains("| `host` | proved | ✓✗✓✓✗✓✓ 5/7 |"), "{text}");
        assert!(text.contains("| `gpu` | backlog | ······· 0/7 |"), "{text}");
        // The lanes' names, not their titles, name the rows.
        assert!(!text.contains("| Host |"), "{text}");
    }

    #[test]
    fn a_canary_that_failed_3_of_7_runs_leaves_the_lane_experimental_and_says_why() {
        let mut nights = vec![good_night(); 7];
        for i in [1, 3, 5] {
            nights[i] = failed_night();
        }
        let h = history(nights);
        let proofs = judge(&lanes(), &h);
        let host = &proofs[0];
        assert_eq!(host.state, State::Experimental);
        let canary = criterion(host, "canary passed, repeatedly");
        assert!(!canary.met);
        assert_eq!(
            canary.evidence,
            "fixture-c-dag passed in 4 of the last 7 runs on main (needs 5 of the last 7): run-01, run-03, run-05, run-07; failed in run-02: cold FAILED (nix build exited with 1); run-04: cold FAILED (nix build exited with 1); run-06: cold FAILED (nix build exited with 1)"
        );
        // Every other criterion holds.
        let unmet: Vec<&str> = host
            .criteria
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.name)
            .collect();
        assert_eq!(unmet, ["canary passed, repeatedly"]);
        let text = render_markdown(&proofs, &h, lanes().proof);
        assert!(
            text.contains("| `host` | experimental | ✓✗✓✗✓✗✓ 4/7 |")
                && text.contains("| canary passed, repeatedly |"),
            "{text}"
        );
        assert!(
            text.contains(
                "- [ ] canary passed, repeatedly: fixture-c-dag passed in 4 of the last 7"
            ),
            "{text}"
        );
        let html = render_html(&proofs, &h, lanes().proof);
        assert!(
            html.contains(
                "<span class=\"fail\" title=\"run-02: cold FAILED (nix build exited with 1)\">"
            ),
            "{html}"
        );
    }

    /// The whole matrix of a history of 7 runs whose canary failed in 3, every number as
    /// it renders (review changes with `cargo insta review`).
    #[test]
    fn matrix_snapshots() {
        let mut nights = vec![good_night(); 7];
        for i in [1, 3, 5] {
            nights[i] = failed_night();
        }
        let h = history(nights);
        let proofs = judge(&lanes(), &h);
        insta::assert_snapshot!("matrix.md", render_markdown(&proofs, &h, lanes().proof));
        insta::assert_snapshot!("matrix.html", render_html(&proofs, &h, lanes().proof));
    }

    #[test]
    fn one_pass_is_not_a_proof_and_runs_elsewhere_are_not_on_main() {
        let h = history(vec![good_night()]);
        let host = &judge(&lanes(), &h)[0];
        assert_eq!(host.state, State::Experimental);
        assert_eq!(
            criterion(host, "canary passed, repeatedly").evidence,
            "fixture-c-dag passed in 1 of 1 run(s) on main so far (needs 5 of the last 7): run-01"
        );
        let mut topic = good_night();
        topic.git = Some(GitInfo {
            commit: "1".repeat(40),
            git_ref: Some("refs/heads/topic".into()),
            dirty: false,
        });
        let h = history(vec![topic]);
        let host = &judge(&lanes(), &h)[0];
        assert_eq!(host.state, State::Experimental);
        let runtime = criterion(host, "runtime proof on main");
        assert!(!runtime.met);
        assert!(
            runtime.evidence.contains("history/run-01/host.json"),
            "{}",
            runtime.evidence
        );
    }

    #[test]
    fn a_run_that_left_a_scratch_folder_has_not_proved_its_cleanup() {
        let mut nights = vec![good_night(); 7];
        nights[6].cleanup = Some(Cleanup {
            swept: Vec::new(),
            left: Some(vec![Leftover {
                kind: LeftoverKind::Scratch,
                what: "/tmp/flywheel-bench-Ab12Cd".into(),
            }]),
        });
        let h = history(nights);
        let host = &judge(&lanes(), &h)[0];
        assert_eq!(host.state, State::Experimental);
        let cleanup = criterion(host, "cleanup evidenced, nothing left");
        assert!(!cleanup.met);
        assert_eq!(
            cleanup.evidence,
            "the janitor found nothing to remove at the start; left at the end: scratch folder /tmp/flywheel-bench-Ab12Cd (history/run-07/host.json)"
        );
        assert_eq!(cleanup_text(host.cleanup.as_ref()), "1 left");
        // Without a record at all (an older harness), it does not hold either.
        let mut old = vec![good_night(); 7];
        old[6].cleanup = None;
        let host = &judge(&lanes(), &history(old))[0];
        assert!(criterion(host, "cleanup evidenced, nothing left")
            .evidence
            .contains("records no cleanup"));
    }

    #[test]
    fn queue_waits_are_reported_last_median_and_p95_from_the_lifecycle_files() {
        let h = history(vec![good_night(); 7]);
        let host = &judge(&lanes(), &h)[0];
        // Waits of 4..=10 s over the seven runs.
        assert_eq!(host.queue.last, Some(("run-07".into(), 10.0)));
        assert_eq!(host.queue.median_s, Some(7.0));
        assert!((host.queue.p95_s.unwrap() - 9.7).abs() < 1e-9);
        assert_eq!(
            queue_text(&host.queue),
            "10.0 s last; 7.00 s median, 9.70 s p95 over 7 run(s)"
        );
        let queue = criterion(host, "queue wait measured");
        assert_eq!(
            queue.evidence,
            "waited 10.0 s for tinyland-nix (runner nix-runner-1) (history/run-07/lifecycle.json)"
        );
        // Without a lifecycle file (no token), not measured.
        let mut h = h;
        h.runs[6].lifecycle = None;
        let host = &judge(&lanes(), &h)[0];
        let queue = criterion(host, "queue wait measured");
        assert!(
            !queue.met && queue.evidence.contains("no lifecycle file"),
            "{queue:?}"
        );
    }

    #[test]
    fn bootstrap_needs_the_jobs_steps() {
        let mut nights = vec![good_night(); 7];
        nights[6].lanes[0].bootstrap.as_mut().unwrap().job.clear();
        let host = &judge(&lanes(), &history(nights))[0];
        let bootstrap = criterion(host, "bootstrap measured");
        assert!(!bootstrap.met);
        assert!(
            bootstrap.evidence.contains("--bootstrap-time"),
            "{bootstrap:?}"
        );
        let good = &judge(&lanes(), &history(vec![good_night(); 7]))[0];
        assert_eq!(
            criterion(good, "bootstrap measured").evidence,
            "job: nix run .#bench 41.8 s; checks: cache preflight 210 ms, user-namespace probe 430 ms; 42.4 s in all (history/run-07/host.json)"
        );
        assert_eq!(
            bootstrap_text(good.bootstrap.as_ref()),
            "42.4 s (job 41.8 s, checks 640 ms)"
        );
    }

    fn recorded_gpu(name: &str) -> Results {
        let mut r: Results =
            serde_json::from_str(&crate::tools::fixture(&format!("gpu-lane-h100/{name}"))).unwrap();
        r.git = Some(GitInfo {
            commit: "0".repeat(40),
            git_ref: Some("refs/heads/main".into()),
            dirty: false,
        });
        r
    }

    fn gpu_lane(trace_required: bool) -> LaneDecl {
        LaneDecl {
            owner: Some("platform".into()),
            docs: Some("README.md#the-gpu-lane".into()),
            canary_checked: true,
            trace_required,
            ..lanes().lanes[1].clone()
        }
    }

    fn gpu_history(nights: Vec<Results>) -> History {
        History {
            source: String::new(),
            runs: nights
                .into_iter()
                .enumerate()
                .map(|(i, r)| HistoryRun {
                    name: format!("run-{}", i + 1),
                    results: vec![(format!("gpu-{}.json", i + 1), r)],
                    ..HistoryRun::default()
                })
                .collect(),
        }
    }

    fn canary(trace_required: bool, files: Vec<Results>) -> (bool, LaneProof) {
        let lanes = Lanes {
            proof: ProofSettings {
                canary_passes: 1,
                canary_runs: 1,
                baseline_runs: 1,
            },
            lanes: vec![gpu_lane(trace_required)],
        };
        let proof = judge(&lanes, &gpu_history(files)).remove(0);
        (criterion(&proof, "canary passed, repeatedly").met, proof)
    }

    #[test]
    fn the_gpu_canary_passes_only_with_a_passing_check_on_every_build() {
        // Recorded on the H100 runner: every case failed (exit 127, nvcc not found).
        let default = recorded_gpu("results-default-manifest.json");
        assert!(!canary(false, vec![default]).0);
        // With the toolkit's real path the builds worked, but warm and noop came from the
        // cache or were already there: nothing ran on the GPU, and no check says otherwise.
        let mut resolved = recorded_gpu("results-resolved-cuda-path.json");
        for case in &mut resolved.cases {
            case.repo = "fixture-cuda".into();
        }
        let (passed, proof) = canary(false, vec![resolved]);
        assert!(!passed);
        assert!(
            criterion(&proof, "canary passed, repeatedly")
                .evidence
                .contains("built without a check"),
            "{:?}",
            proof.criteria
        );
        // Synthetic: those results with a passing check after every build.
        let checked = recorded_gpu("results-checked-synthetic.json");
        assert!(canary(false, vec![checked.clone()]).0);
        // One failed check (here the noop case's last sample) and it does not pass.
        let mut one_failed = checked;
        let noop = one_failed
            .cases
            .iter_mut()
            .find(|c| c.scenario.to_string() == "noop")
            .unwrap();
        noop.samples
            .last_mut()
            .unwrap()
            .check
            .as_mut()
            .unwrap()
            .passed = false;
        assert!(!canary(false, vec![one_failed]).0);
    }

    #[test]
    fn a_trace_required_lane_needs_a_trace_on_every_canary_sample() {
        let mut checked = recorded_gpu("results-checked-synthetic.json");
        let (_, proof) = canary(true, vec![checked.clone()]);
        let trace = criterion(&proof, "trace on every canary sample");
        assert!(!trace.met);
        assert!(
            trace.evidence.contains("gpu-1.json cold sample 1"),
            "{trace:?}"
        );
        // The trace recorded on the H100 runner, on every sample.
        let recorded = crate::lanes::gpu_trace::trace_of(&crate::tools::fixture(
            "gpu-lane-h100/trace-lms100.csv",
        ));
        assert!(recorded.summary.samples > 0);
        for sample in checked.cases.iter_mut().flat_map(|c| &mut c.samples) {
            sample.gpu_trace = Some(recorded.clone());
        }
        let (_, proof) = canary(true, vec![checked.clone()]);
        let trace = criterion(&proof, "trace on every canary sample");
        assert!(trace.met, "{trace:?}");
        let mut untraced = checked;
        let warm = untraced
            .cases
            .iter_mut()
            .find(|c| c.scenario.to_string() == "warm")
            .unwrap();
        warm.samples[1].gpu_trace = None;
        let (_, proof) = canary(true, vec![untraced.clone()]);
        let trace = criterion(&proof, "trace on every canary sample");
        assert!(!trace.met);
        assert_eq!(trace.evidence, "no GPU trace: gpu-1.json warm sample 2");
        // A lane that does not ask for traces is not judged by them.
        let (_, proof) = canary(false, vec![untraced]);
        assert!(criterion(&proof, "trace on every canary sample").met);
    }

    #[test]
    fn bad_lanes_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lanes.toml");
        std::fs::write(&path, "[[lane]]\nname = \"x\"\n").unwrap();
        let err = load_lanes(&path).unwrap_err().to_string();
        assert!(
            err.contains("lanes.toml") && err.contains("title") && err.contains("fix:"),
            "{err}"
        );
        std::fs::write(
            &path,
            LANES.replace("canary_passes = 5", "canary_passes = 8"),
        )
        .unwrap();
        let err = load_lanes(&path).unwrap_err().to_string();
        assert!(err.contains("canary_passes = 8, canary_runs = 7"), "{err}");
        // Without the file, the fix names the flag, not the file's keys.
        let err = load_lanes(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--lanes") && !err.contains("[[lane]]"),
            "{err}"
        );
    }

    #[test]
    fn the_repositorys_lanes_file_loads() {
        let lanes =
            load_lanes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../lanes.toml")).unwrap();
        let gpu = lanes.lanes.iter().find(|l| l.name == "gpu").unwrap();
        assert!(gpu.trace_required && gpu.canary_checked);
        assert!(lanes.proof.canary_passes <= lanes.proof.canary_runs);
    }

    #[test]
    fn a_lane_declared_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lanes.toml");
        let lane = "[[lane]]\nname = \"host\"\ntitle = \"Host\"\ncanary = \"fixture-c-dag\"\n";
        std::fs::write(&path, format!("{lane}{lane}")).unwrap();
        let err = load_lanes(&path).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::INVALID_INPUT);
        let err = err.to_string();
        assert!(
            err.contains("lane[1]: the lane `host` is declared again (first as lane[0])")
                && err.contains("fix:"),
            "{err}"
        );
    }
}
