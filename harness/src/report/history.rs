//! The scheduled job's history: one folder per workflow run holding the lanes' results
//! files and the run's lifecycle file, as the workflow keeps them on its `bench-history`
//! branch (`runs/<UTC time>-run<ID>-<attempt>/`, so names sort by time). The proof matrix
//! reads it to tell whether a lane's proof repeats; `baseline` pools a lane's last runs on
//! main into one baseline file for `compare`. Pure apart from reading the folder.

use std::path::Path;

use crate::error::{Error, Result};
use crate::results::lifecycle::{Lifecycle, LIFECYCLE_SCHEMA_VERSION};
use crate::results::{self, Outcome, Results};

/// A run's lifecycle file.
pub const LIFECYCLE_FILE: &str = "lifecycle.json";
/// A run's list of lanes (one per line) whose baseline starts again with it.
pub const RESET_FILE: &str = "baseline-reset";

/// One workflow run of the history.
#[derive(Debug, Clone, Default)]
pub struct HistoryRun {
    /// Its folder's name (or `command line` for files given as arguments).
    pub name: String,
    /// Its results files, by the path they were read from.
    pub results: Vec<(String, Results)>,
    pub lifecycle: Option<(String, Lifecycle)>,
    /// Lanes whose baseline starts again with this run (its `baseline-reset` file).
    pub baseline_resets: Vec<String>,
    /// Files of the run that could not be read, and why.
    pub problems: Vec<String>,
}

/// Whether results came from a clean checkout of main.
pub fn from_main(results: &Results) -> bool {
    results
        .git
        .as_ref()
        .is_some_and(|g| g.is_main() && !g.dirty)
}

impl HistoryRun {
    /// A run on main: one of its results files says so, or, when it has none (every lane
    /// failed to produce one), its lifecycle's jobs ran on main.
    pub fn on_main(&self) -> bool {
        if !self.results.is_empty() {
            return self.results.iter().any(|(_, r)| from_main(r));
        }
        self.lifecycle.as_ref().is_some_and(|(_, l)| {
            l.jobs
                .iter()
                .any(|j| j.head_branch.as_deref() == Some("main"))
        })
    }

    /// Its results files with cases on `lane`.
    pub fn lane_files<'a>(&'a self, lane: &'a str) -> impl Iterator<Item = (&'a str, &'a Results)> {
        self.results
            .iter()
            .filter(move |(_, r)| r.cases.iter().any(|c| c.lane.name() == lane))
            .map(|(label, r)| (label.as_str(), r))
    }

    /// Its results file on `lane` from a clean checkout of main.
    pub fn main_file<'a>(&'a self, lane: &'a str) -> Option<(&'a str, &'a Results)> {
        self.lane_files(lane).find(|(_, r)| from_main(r))
    }
}

/// Past runs, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Where it was read from.
    pub source: String,
    pub runs: Vec<HistoryRun>,
}

impl History {
    pub fn on_main(&self) -> impl DoubleEndedIterator<Item = &HistoryRun> {
        self.runs.iter().filter(|r| r.on_main())
    }
}

/// Reads a history folder: every sub-folder is a run, in the order of their names. A file
/// that cannot be read is a problem of its run, not an error (one bad night must not hide
/// the others); a folder that cannot be listed is an error.
pub fn load(dir: &Path) -> Result<History> {
    let listing = |path: &Path| {
        std::fs::read_dir(path).map_err(|e| {
            Error::Usage(format!(
                "{}: cannot read the history folder ({e})\n  fix: pass --history the folder of past runs (the bench-history branch's runs/, see docs/scheduled-job.md)",
                path.display()
            ))
        })
    };
    let mut folders: Vec<std::path::PathBuf> = listing(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut runs = Vec::new();
    for folder in folders {
        let mut files: Vec<std::path::PathBuf> =
            listing(&folder)?.flatten().map(|e| e.path()).collect();
        files.sort();
        let mut run = HistoryRun {
            name: folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..HistoryRun::default()
        };
        for file in files {
            let label = file.display().to_string();
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == LIFECYCLE_FILE {
                match read_lifecycle(&file) {
                    Ok(life) => run.lifecycle = Some((label, life)),
                    Err(why) => run.problems.push(format!("{label}: {why}")),
                }
            } else if name == RESET_FILE {
                let text = crate::boundary::read_text(&file, crate::boundary::TEXT_LIMIT)
                    .unwrap_or_default();
                run.baseline_resets = text.split_whitespace().map(str::to_string).collect();
            } else if name.ends_with(".json") && !name.ends_with(".benchmark.json") {
                match results::load(&file) {
                    Ok(r) => run.results.push((label, r)),
                    Err(e) => run.problems.push(e.to_string()),
                }
            }
        }
        let empty = run.results.is_empty() && run.lifecycle.is_none() && run.problems.is_empty();
        if !empty {
            runs.push(run);
        }
    }
    Ok(History {
        source: dir.display().to_string(),
        runs,
    })
}

fn read_lifecycle(path: &Path) -> std::result::Result<Lifecycle, String> {
    let text = crate::boundary::read_text(path, crate::boundary::TEXT_LIMIT)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let life: Lifecycle = serde_json::from_str(&text)
        .map_err(|e| format!("not a flywheel-bench lifecycle file ({e})"))?;
    if life.schema_version != LIFECYCLE_SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is not {LIFECYCLE_SCHEMA_VERSION}",
            life.schema_version
        ));
    }
    Ok(life)
}

/// A lane's baseline pooled from its history, as `compare` takes a baseline file.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub results: Results,
    /// The runs whose samples it pools, newest first.
    pub runs: Vec<String>,
    /// Runs left out, and why (another machine).
    pub skipped: Vec<String>,
}

/// The baseline of `lane`: its results from the newest run on main, with the samples of
/// each successful case pooled with the same case's from up to `runs - 1` earlier runs on
/// main (stopping at a run that reset the lane's baseline). Runs on another machine (CPU
/// model, cores, tool versions, virtualisation: what `compare` would not gate across) are
/// left out. `Err` says why there is none yet.
pub fn baseline(
    history: &History,
    lane: &str,
    runs: usize,
) -> std::result::Result<Baseline, String> {
    let mut picked: Vec<(&HistoryRun, &str, &Results)> = Vec::new();
    for run in history.on_main().rev() {
        if picked.len() >= runs {
            break;
        }
        let Some((label, results)) = run.main_file(lane) else {
            continue;
        };
        picked.push((run, label, results));
        if run.baseline_resets.iter().any(|l| l == lane) {
            break;
        }
    }
    let Some(&(newest_run, _, newest)) = picked.first() else {
        return Err(format!(
            "no baseline yet: no run on main in {} has results from the {lane} lane",
            history.source
        ));
    };
    let mut pooled = newest.clone();
    pooled.cases.retain(|c| c.lane.name() == lane);
    pooled.lanes.retain(|l| l.lane.name() == lane);
    let mut used = vec![newest_run.name.clone()];
    let mut skipped = Vec::new();
    // Only the lane's own tools and identity decide whether an older run's machine differs.
    let compared = crate::report::compare::Compared {
        systems: pooled.cases.iter().map(|c| c.system).collect(),
        lanes: pooled.cases.iter().map(|c| c.lane).collect(),
    };
    for &(run, label, older) in &picked[1..] {
        let differences = crate::report::compare::environment_differences(older, newest, &compared);
        if let Some(d) = differences.iter().find(|d| d.machine) {
            skipped.push(format!(
                "{} ({label}): its {} was {}, the newest run's {}",
                run.name, d.what, d.baseline, d.new
            ));
            continue;
        }
        for case in pooled.cases.iter_mut().filter(|c| c.outcome == Outcome::Ok) {
            let same = older.cases.iter().find(|o| {
                o.same_scenario(case) && o.parameters == case.parameters && o.outcome == Outcome::Ok
            });
            if let Some(old) = same {
                case.samples.extend(old.samples.iter().cloned());
            }
        }
        used.push(run.name.clone());
    }
    for case in &mut pooled.cases {
        case.stats = crate::stats::Summary::of(&case.walls());
    }
    results::derive(&mut pooled);
    pooled.notes.push(format!(
        "baseline of the {lane} lane: each case's samples pooled from {} run(s) on main of {} ({})",
        used.len(),
        history.source,
        used.join(", ")
    ));
    Ok(Baseline {
        results: pooled,
        runs: used,
        skipped,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::compare::{compare, Change};
    use crate::results::GitInfo;

    /// The committed host results of fixture-c-dag, on main, with every sample of `case`
    /// scaled by `factor` and nudged by `jitter` (a fraction, alternating in sign).
    pub(crate) fn night(scale: f64, jitter: f64) -> Results {
        let mut r: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        r.git = Some(GitInfo {
            commit: "0".repeat(40),
            git_ref: Some("refs/heads/main".into()),
            dirty: false,
        });
        for case in &mut r.cases {
            for (i, s) in case.samples.iter_mut().enumerate() {
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                s.wall_s *= scale * (1.0 + sign * jitter * (1 + i % 3) as f64 / 3.0);
            }
            case.stats = crate::stats::Summary::of(&case.walls());
        }
        results::derive(&mut r);
        // Every night on the same runner.
        crate::results::machine::tests::on_machine(r, 85, 1.0)
    }

    /// Nights as runs `run-01`, `run-02`, ... of a history, each with its `host.json`.
    pub(crate) fn history(nights: Vec<Results>) -> History {
        History {
            source: "history".into(),
            runs: nights
                .into_iter()
                .enumerate()
                .map(|(i, r)| HistoryRun {
                    name: format!("run-{:02}", i + 1),
                    results: vec![(format!("history/run-{:02}/host.json", i + 1), r)],
                    ..HistoryRun::default()
                })
                .collect(),
        }
    }

    fn cold_change(pool: &Baseline, new: &Results) -> Change {
        let c = compare(&pool.results, new, 0.10, &Default::default()).unwrap();
        c.cases
            .iter()
            .find(|c| c.label.ends_with(" cold"))
            .unwrap_or_else(|| panic!("{:?}", c.cases))
            .change
    }

    #[test]
    fn a_lane_30_percent_slower_than_its_last_5_runs_regresses_and_noise_does_not() {
        // Five nights within 2% of each other.
        let nights: Vec<Results> = [0.99, 1.01, 1.0, 0.98, 1.02]
            .iter()
            .map(|&s| night(s, 0.02))
            .collect();
        let history = history(nights);
        let pool = baseline(&history, "host", 5).unwrap();
        assert_eq!(
            pool.runs,
            ["run-05", "run-04", "run-03", "run-02", "run-01"]
        );
        let cold = pool
            .results
            .cases
            .iter()
            .find(|c| c.label().ends_with(" cold"))
            .unwrap();
        let one_night = night(1.0, 0.0)
            .cases
            .iter()
            .find(|c| c.label().ends_with(" cold"))
            .unwrap()
            .samples
            .len();
        assert_eq!(
            cold.samples.len(),
            5 * one_night,
            "samples pooled from 5 runs"
        );
        assert!(
            pool.results.notes[0].contains("pooled from 5 run(s)"),
            "{:?}",
            pool.results.notes
        );

        let slower = night(1.3, 0.02);
        assert_eq!(cold_change(&pool, &slower), Change::Regression);
        assert!(compare(&pool.results, &slower, 0.10, &Default::default())
            .unwrap()
            .regressed());
        let within_noise = night(1.015, 0.02);
        assert_eq!(cold_change(&pool, &within_noise), Change::Unchanged);
    }

    #[test]
    fn the_first_night_has_no_baseline_and_a_reset_starts_it_again() {
        let none = baseline(&history(Vec::new()), "host", 5).unwrap_err();
        assert!(none.starts_with("no baseline yet"), "{none}");
        // Results from another branch are no baseline either.
        let mut topic = night(1.0, 0.0);
        topic.git.as_mut().unwrap().git_ref = Some("refs/heads/topic".into());
        assert!(baseline(&history(vec![topic]), "host", 5).is_err());
        assert!(baseline(&history(vec![night(1.0, 0.0)]), "vm", 5)
            .unwrap_err()
            .contains("vm lane"));

        let mut h = history(vec![night(1.0, 0.0), night(2.0, 0.0), night(2.0, 0.0)]);
        h.runs[1].baseline_resets = vec!["host".into()];
        let pool = baseline(&h, "host", 5).unwrap();
        assert_eq!(pool.runs, ["run-03", "run-02"], "nothing before the reset");
    }

    #[test]
    fn runs_on_another_machine_are_left_out_of_the_pool() {
        let mut other = night(1.0, 0.0);
        other.environment.cpu_model = "Another CPU".into();
        let h = history(vec![other, night(1.0, 0.0)]);
        let pool = baseline(&h, "host", 5).unwrap();
        assert_eq!(pool.runs, ["run-02"]);
        assert!(
            pool.skipped[0].contains("cpu_model was Another CPU"),
            "{:?}",
            pool.skipped
        );
    }

    #[test]
    fn history_folders_are_read_in_name_order_and_bad_files_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = crate::tools::fixture("results/nix-fixture.json");
        for name in ["2026-12-07T03-17-02Z-run2-1", "2026-12-06T03-17-05Z-run1-1"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("host.json"), &fixture).unwrap();
        }
        let second = dir.path().join("2026-12-07T03-17-02Z-run2-1");
        std::fs::write(second.join("vm.json"), "{").unwrap();
        std::fs::write(second.join("host.benchmark.json"), "[]").unwrap();
        std::fs::write(second.join(RESET_FILE), "host\nvm\n").unwrap();
        let life = crate::results::lifecycle::from_github_jobs(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/github-api/jobs-nightly.json"),
            )
            .unwrap(),
            "jobs-nightly.json",
        )
        .unwrap();
        std::fs::write(
            second.join(LIFECYCLE_FILE),
            serde_json::to_string(&life).unwrap(),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let h = load(dir.path()).unwrap();
        let names: Vec<&str> = h.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["2026-12-06T03-17-05Z-run1-1", "2026-12-07T03-17-02Z-run2-1"]
        );
        let run = &h.runs[1];
        assert_eq!(
            run.results.len(),
            1,
            "the benchmark export is not a results file"
        );
        assert!(run.problems[0].contains("vm.json"), "{:?}", run.problems);
        assert_eq!(run.baseline_resets, ["host", "vm"]);
        assert_eq!(run.lifecycle.as_ref().unwrap().1, life);
        let err = load(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("--history"), "{err}");
    }
}
