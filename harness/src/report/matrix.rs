//! `matrix`: the runner-lane proof matrix. Lanes come from `lanes.toml`; evidence from
//! results files; each lane is judged against the graduation criteria. Pure apart from
//! reading lanes.toml.

use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::results::{CaseResult, CheckResult, Outcome, Results, Sample};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaneDecl {
    /// The lane's name in results (`host`, `vm`, `gpu`, ...).
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LanesFile {
    lane: Vec<LaneDecl>,
}

pub fn load_lanes(path: &Path) -> Result<Vec<LaneDecl>> {
    let invalid = |message: String| {
        Error::Manifest {
        path: path.to_path_buf(),
        message,
        fix: "each [[lane]] needs name, title and canary; owner and docs are optional (see the README)".into(),
    }
    };
    let text = crate::boundary::read_text(path, crate::boundary::TEXT_LIMIT).map_err(invalid)?;
    let file: LanesFile =
        toml::from_str(&text).map_err(|e| invalid(e.to_string().trim_end().into()))?;
    // A second declaration of a lane would be judged on the same evidence, twice.
    for (i, lane) in file.lane.iter().enumerate() {
        if let Some(first) = file.lane[..i].iter().position(|l| l.name == lane.name) {
            return Err(Error::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "lane[{i}]: the lane `{}` is declared again (first as lane[{first}])",
                    lane.name
                ),
                fix: "declare each lane once: merge the two [[lane]] tables".into(),
            });
        }
    }
    Ok(file.lane)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Proved,
    Experimental,
    Backlog,
}

#[derive(Debug, Clone)]
pub struct LaneProof {
    pub lane: LaneDecl,
    pub state: State,
    /// Criterion -> met, in the order of the graduation criteria.
    pub criteria: Vec<(&'static str, bool)>,
    pub evidence: Vec<String>,
}

/// Judges each lane: proved when every criterion holds, experimental with some evidence,
/// backlog with none.
pub fn judge(lanes: &[LaneDecl], files: &[(String, Results)]) -> Vec<LaneProof> {
    lanes
        .iter()
        .map(|lane| {
            let on_lane: Vec<&(String, Results)> = files
                .iter()
                .filter(|(_, r)| r.cases.iter().any(|c| c.lane.name() == lane.name))
                .collect();
            let from_main: Vec<&(String, Results)> = on_lane
                .iter()
                .copied()
                .filter(|(_, r)| r.git.as_ref().is_some_and(|g| g.is_main() && !g.dirty))
                .collect();
            // Cache, bootstrap and cleanup behaviour: the run recorded which cache it used,
            // the lane's identity and tools, and finished (so its cleanup ran).
            let behaviour = from_main.iter().any(|(_, r)| {
                r.finished_at.is_some()
                    && !r.environment.tools.is_empty()
                    && r.cases
                        .iter()
                        .any(|c| c.lane.name() == lane.name && c.cache.is_some())
            });
            let canary = from_main.iter().any(|(_, r)| canary_passed(lane, r));
            let criteria = vec![
                (
                    "named lane with an owner",
                    lane.owner.as_deref().is_some_and(|o| !o.is_empty()),
                ),
                ("runtime proof on main", !from_main.is_empty()),
                ("cache, bootstrap and cleanup recorded", behaviour),
                ("canary workload passed", canary),
                (
                    "docs link",
                    lane.docs.as_deref().is_some_and(|d| !d.is_empty()),
                ),
            ];
            let state = if criteria.iter().all(|(_, ok)| *ok) {
                State::Proved
            } else if on_lane.is_empty() {
                State::Backlog
            } else {
                State::Experimental
            };
            LaneProof {
                lane: lane.clone(),
                state,
                criteria,
                evidence: on_lane.iter().map(|(label, _)| label.clone()).collect(),
            }
        })
        .collect()
}

/// Whether `results` show the lane's canary passing: a case of it succeeded, and no build
/// of it failed its check (nor, where the lane asks for checks, went without one).
fn canary_passed(lane: &LaneDecl, results: &Results) -> bool {
    let cases: Vec<&CaseResult> = results
        .cases
        .iter()
        .filter(|c| c.lane.name() == lane.name && c.repo == lane.canary)
        .collect();
    let checks_passed = cases
        .iter()
        .flat_map(|c| c.warmups.iter().chain(&c.samples))
        .all(|build| match build_check(build) {
            Some(check) => check.passed,
            None => !lane.canary_checked,
        });
    checks_passed && cases.iter().any(|c| c.outcome == Outcome::Ok)
}

/// The check of the build that gave a sample its result (the retry's, when there was one).
fn build_check(sample: &Sample) -> Option<&CheckResult> {
    sample
        .retry
        .as_ref()
        .and_then(|r| r.check.as_ref())
        .or(sample.check.as_ref())
}

pub fn render_markdown(proofs: &[LaneProof]) -> String {
    let mut out = String::from("# Runner-lane proof matrix\n\n_A lane is proved when every criterion holds, experimental when results exist for it but some criterion does not, backlog without results._\n\n| lane | state | owner |");
    let names: Vec<&str> = proofs
        .first()
        .map(|p| p.criteria.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default();
    for n in &names {
        let _ = write!(out, " {n} |");
    }
    out.push_str(" evidence |\n|");
    out.push_str(&" --- |".repeat(names.len() + 4));
    out.push('\n');
    for p in proofs {
        let state = match p.state {
            State::Proved => "proved",
            State::Experimental => "experimental",
            State::Backlog => "backlog",
        };
        let _ = write!(
            out,
            "| {} | {state} | {} |",
            p.lane.title,
            p.lane.owner.as_deref().unwrap_or("-")
        );
        for (_, ok) in &p.criteria {
            out.push_str(if *ok { " yes |" } else { " no |" });
        }
        let _ = writeln!(
            out,
            " {} |",
            if p.evidence.is_empty() {
                "-".into()
            } else {
                p.evidence.join(", ")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::GitInfo;

    fn lanes() -> Vec<LaneDecl> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lanes.toml");
        std::fs::write(
            &path,
            "[[lane]]\nname = \"host\"\ntitle = \"Host\"\nowner = \"platform\"\ncanary = \"fixture-c-dag\"\ndocs = \"README.md\"\n\n[[lane]]\nname = \"gpu\"\ntitle = \"GPU\"\ncanary = \"fixture-cuda\"\n",
        )
        .unwrap();
        load_lanes(&path).unwrap()
    }

    fn results(git_ref: Option<&str>) -> Results {
        let mut r: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        r.git = git_ref.map(|g| GitInfo {
            commit: "0".repeat(40),
            git_ref: Some(g.into()),
            dirty: false,
        });
        r
    }

    #[test]
    fn host_is_proved_only_with_results_from_main() {
        let proved = judge(
            &lanes(),
            &[("run.json".into(), results(Some("refs/heads/main")))],
        );
        assert_eq!(proved[0].state, State::Proved, "{:?}", proved[0].criteria);
        assert_eq!(proved[1].state, State::Backlog);
        let branch = judge(
            &lanes(),
            &[("run.json".into(), results(Some("refs/heads/topic")))],
        );
        assert_eq!(branch[0].state, State::Experimental);
        assert!(!branch[0].criteria[1].1);
        let text = render_markdown(&proved);
        assert!(
            text.contains("| Host | proved | platform | yes | yes | yes | yes | yes | run.json |"),
            "{text}"
        );
        assert!(text.contains("| GPU | backlog | - | no |"), "{text}");
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

    fn gpu_lane() -> LaneDecl {
        let lanes = lanes();
        LaneDecl {
            owner: Some("platform".into()),
            docs: Some("README.md#the-gpu-lane".into()),
            canary_checked: true,
            ..lanes[1].clone()
        }
    }

    fn canary(files: &[(&str, Results)]) -> bool {
        let files: Vec<(String, Results)> = files
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect();
        let proof = &judge(&[gpu_lane()], &files)[0];
        assert_eq!(proof.criteria[3].0, "canary workload passed");
        proof.criteria[3].1
    }

    #[test]
    fn the_gpu_canary_passes_only_with_a_passing_check_on_every_build() {
        // Recorded on the H100 runner: every case failed (exit 127, nvcc not found).
        let default = recorded_gpu("results-default-manifest.json");
        assert!(!canary(&[("default.json", default)]));
        // With the toolkit's real path the builds worked, but warm and noop came from the
        // cache or were already there: nothing ran on the GPU, and no check says otherwise.
        let mut resolved = recorded_gpu("results-resolved-cuda-path.json");
        for case in &mut resolved.cases {
            case.repo = "fixture-cuda".into();
        }
        assert!(!canary(&[("resolved.json", resolved)]));
        // Synthetic: those results with a passing check after every build.
        let checked = recorded_gpu("results-checked-synthetic.json");
        assert!(canary(&[("checked.json", checked.clone())]));
        let proof = &judge(&[gpu_lane()], &[("checked.json".into(), checked.clone())])[0];
        assert_eq!(proof.state, State::Proved, "{:?}", proof.criteria);
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
        assert!(!canary(&[("one-failed.json", one_failed)]));
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
