//! The repository's own non-Rust files: the CI workflow lints clean (actionlint, with
//! shellcheck on its scripts), runs one job per lane that lanes.toml and the harness know,
//! names those jobs as `lifecycle` reads them, keeps hours-long scenarios off the nightly
//! run; the shell scripts pass shellcheck; the history script keeps its branch with real git.
//! (The flake and its lock: tests/flake.rs.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const WORKFLOW: &str = ".github/workflows/bench.yml";

#[test]
fn the_benchmark_workflow_lints_clean() {
    require_tools(&["shellcheck"]); // actionlint checks the run: scripts with it
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share"));
    let actionlint = data.join("flywheel-bench/tools/bin/actionlint");
    assert!(
        actionlint.is_file(),
        "{} is missing: run scripts/setup",
        actionlint.display()
    );
    let out = Command::new(actionlint)
        .arg(WORKFLOW)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shell_scripts_pass_shellcheck() {
    require_tools(&["shellcheck"]);
    let out = Command::new("shellcheck")
        .args([
            "scripts/setup",
            "scripts/in-debian13-root",
            "scripts/pack-runner",
            "scripts/check-pinned-rust",
            "scripts/bench-history",
            ".ci/run",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The lane matrix of the workflow: `(runner, lane)` from its `- { runner: R, lane: L }`
/// lines under `include:`.
fn workflow_lanes(workflow: &str) -> Result<Vec<(String, String)>, String> {
    let mut lines = workflow
        .lines()
        .skip_while(|l| l.trim() != "include:")
        .skip(1);
    let mut lanes = Vec::new();
    for line in lines.by_ref() {
        let Some(entry) = line.trim().strip_prefix("- {") else {
            break;
        };
        let fields: Vec<(&str, &str)> = entry
            .trim_end_matches('}')
            .split(',')
            .filter_map(|f| f.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| format!("{WORKFLOW}: matrix entry `{}` has no {name}", line.trim()))
        };
        lanes.push((field("runner")?, field("lane")?));
    }
    if lanes.is_empty() {
        return Err(format!(
            "{WORKFLOW}: no `include:` list of `- {{ runner: R, lane: L }}` entries"
        ));
    }
    Ok(lanes)
}

/// Disagreements between the workflow's lanes, the lanes lanes.toml declares and the lanes
/// the harness can run (`--lane`): every lane the harness runs has exactly one runner, and
/// every workflow lane is declared in lanes.toml (so `matrix` judges it).
fn lane_problems(
    workflow: &[(String, String)],
    declared: &[String],
    harness: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (runner, lane) in workflow {
        if !declared.contains(lane) {
            problems.push(format!(
                "{WORKFLOW} runs lane `{lane}` on {runner}, which lanes.toml does not declare"
            ));
        }
        if !harness.contains(lane) {
            problems.push(format!(
                "{WORKFLOW} runs lane `{lane}` on {runner}, which flywheel-bench has no --lane for"
            ));
        }
        if workflow.iter().filter(|(r, _)| r == runner).count() > 1 {
            problems.push(format!("{WORKFLOW} lists runner {runner} more than once"));
        }
    }
    for lane in harness {
        match workflow.iter().filter(|(_, l)| l == lane).count() {
            0 => problems.push(format!("lane `{lane}` has no runner in {WORKFLOW}")),
            1 => {}
            n => problems.push(format!("lane `{lane}` has {n} runners in {WORKFLOW}")),
        }
    }
    problems
}

fn declared_lanes(lanes_toml: &str) -> Vec<String> {
    let doc: toml::Value = toml::from_str(lanes_toml).expect("lanes.toml parses");
    doc["lane"]
        .as_array()
        .expect("lanes.toml has [[lane]] entries")
        .iter()
        .map(|l| {
            l["name"]
                .as_str()
                .expect("every lane has a name")
                .to_string()
        })
        .collect()
}

/// The `--lane` values the harness accepts, from its own usage error.
fn harness_lanes() -> Vec<String> {
    let out = bin()
        .args(["run", "--lane", "flywheel-no-such-lane"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let values = stderr
        .split_once("[possible values: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .unwrap_or_else(|| panic!("no list of possible --lane values in:\n{stderr}"))
        .0;
    values.split(", ").map(str::to_string).collect()
}

#[test]
fn the_workflow_runs_every_lane_of_lanes_toml_and_the_harness() {
    let workflow = std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap();
    let lanes = workflow_lanes(&workflow).unwrap();
    let pairs: Vec<(&str, &str)> = lanes
        .iter()
        .map(|(r, l)| (r.as_str(), l.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("tinyland-nix", "host"),
            ("tinyland-nix-kvm", "vm"),
            ("tinyland-nix-gpu", "gpu")
        ]
    );
    let declared =
        declared_lanes(&std::fs::read_to_string(repo_root().join("lanes.toml")).unwrap());
    let harness = harness_lanes();
    assert_eq!(harness, ["host", "vm", "gpu"]);
    let problems = lane_problems(&lanes, &declared, &harness);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn lane_jobs_are_named_as_lifecycle_reads_them() {
    // `flywheel-bench lifecycle` finds each lane's job in the jobs API by this name
    // (results::lifecycle::lane_of_job); renaming it loses the lanes' queue waits.
    let workflow = std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap();
    assert!(
        workflow.contains("name: bench ${{ matrix.lane }} (${{ matrix.runner }})"),
        "{WORKFLOW}: the lane job is no longer named `bench LANE (RUNNER)`"
    );
}

/// Runs git in `dir` with an identity (commits need one), asserting success.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_history_branch_is_started_then_kept_and_pruned() {
    require_tools(&["git"]);
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin.git");
    git(
        tmp.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            "origin.git",
        ],
    );
    let seed = tmp.path().join("seed");
    git(
        tmp.path(),
        &["clone", "--quiet", origin.to_str().unwrap(), "seed"],
    );
    std::fs::write(seed.join("seed.txt"), "main\n").unwrap();
    git(&seed, &["add", "seed.txt"]);
    git(&seed, &["commit", "--quiet", "-m", "seed"]);
    git(
        &seed,
        &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
    );
    let script = repo_root().join("scripts/bench-history");
    let url = format!("file://{}", origin.display());
    for night in 1..=3 {
        // A fresh shallow checkout each night, as actions/checkout makes one.
        let checkout = format!("checkout-{night}");
        git(
            tmp.path(),
            &["clone", "--quiet", "--depth", "1", &url, &checkout],
        );
        let checkout = tmp.path().join(checkout);
        let history = |args: &[&str]| {
            let out = Command::new(&script)
                .current_dir(&checkout)
                .args(args)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{args:?}: {said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            said
        };
        let opened = history(&["open", "history"]);
        if night == 1 {
            assert!(opened.contains("starting it"), "{opened}");
        } else {
            assert!(
                opened.contains(&format!("{} run(s)", (night - 1).min(2))),
                "{opened}"
            );
        }
        std::fs::write(
            checkout.join("host.json"),
            format!("{{\"night\": {night}}}\n"),
        )
        .unwrap();
        let name = format!("2026-12-0{night}T03-17-00Z-run{night}-1");
        history(&["add", "history", &name, "host.json"]);
        history(&["save", "history", "2", &format!("night {night}")]);
    }
    let kept = git(&origin, &["ls-tree", "-r", "--name-only", "bench-history"]);
    assert_eq!(
        kept.lines().collect::<Vec<_>>(),
        [
            "README.md",
            "runs/2026-12-02T03-17-00Z-run2-1/host.json",
            "runs/2026-12-03T03-17-00Z-run3-1/host.json"
        ]
    );
    assert_eq!(
        git(
            &origin,
            &[
                "show",
                "bench-history:runs/2026-12-03T03-17-00Z-run3-1/host.json"
            ]
        ),
        "{\"night\": 3}\n"
    );
    assert_eq!(
        git(&origin, &["ls-tree", "--name-only", "main"]),
        "seed.txt\n",
        "main untouched"
    );
}

#[test]
fn lanes_that_disagree_are_named() {
    let workflow = "    matrix:\n      include:\n        - { runner: tinyland-nix, lane: host }\n        - { runner: tinyland-nix-kvm, lane: kvm }\n        - { runner: tinyland-nix, lane: gpu }\n    steps:\n";
    let lanes = workflow_lanes(workflow).unwrap();
    // lanes.toml without gpu, as if the lane had been dropped there.
    let declared = declared_lanes(
        "[[lane]]\nname = \"host\"\ntitle = \"h\"\ncanary = \"c\"\n[[lane]]\nname = \"vm\"\ntitle = \"v\"\ncanary = \"c\"\n",
    );
    let harness = ["host", "vm", "gpu"].map(String::from);
    let problems = lane_problems(&lanes, &declared, &harness);
    assert_eq!(
        problems,
        [
            format!("{WORKFLOW} lists runner tinyland-nix more than once"),
            format!("{WORKFLOW} runs lane `kvm` on tinyland-nix-kvm, which lanes.toml does not declare"),
            format!("{WORKFLOW} runs lane `kvm` on tinyland-nix-kvm, which flywheel-bench has no --lane for"),
            format!("{WORKFLOW} runs lane `gpu` on tinyland-nix, which lanes.toml does not declare"),
            format!("{WORKFLOW} lists runner tinyland-nix more than once"),
            format!("lane `vm` has no runner in {WORKFLOW}"),
        ]
    );
    assert!(workflow_lanes("jobs:\n  x:\n    runs-on: a\n")
        .unwrap_err()
        .contains("no `include:` list"));
}

#[test]
fn nightly_runs_no_scenario_that_takes_hours() {
    let workflow = std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap();
    let line = workflow
        .lines()
        .find(|l| l.trim_start().starts_with("SCENARIOS:"))
        .expect("the workflow sets SCENARIOS");
    let nightly = line
        .split_once("|| '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .unwrap_or_else(|| panic!("no nightly default in `{line}`"))
        .0;
    let scenarios: Vec<&str> = nightly.split_whitespace().collect();
    // `fallback` and `all` include blackhole at default settings, which waits out every
    // timeout of the tools (hours).
    for slow in ["fallback:blackhole", "fallback", "all"] {
        assert!(!scenarios.contains(&slow), "nightly runs {slow}: {nightly}");
    }
    assert!(scenarios.contains(&"fallback:blackhole+tuned"), "{nightly}");
    assert!(
        workflow.contains(&format!("default: \"{nightly}\"")),
        "the manual dispatch default differs from the nightly list"
    );
}

#[test]
fn lane_jobs_fail_on_a_verdict_after_publishing_the_evidence() {
    let workflow = std::fs::read_to_string(repo_root().join(WORKFLOW)).unwrap();
    let lane_job = workflow
        .split_once("\n  lane:\n")
        .and_then(|(_, rest)| rest.split_once("\n  coverage:\n"))
        .expect("the workflow has a lane job before the coverage job")
        .0;
    let run = lane_job
        .lines()
        .find(|l| l.contains("nix run .#bench -- run "))
        .expect("the lane job runs the bench");
    assert!(run.contains("--verdicts fail"), "{run}");
    // The run step lets 1 and 5 through; the gate comes after the upload.
    let at = |what: &str| {
        lane_job
            .find(what)
            .unwrap_or_else(|| panic!("the lane job has no `{what}`"))
    };
    assert!(lane_job.contains(r#"[ "$status" -eq 5 ]"#));
    assert!(at("Upload the lane's results") < at("Gate on the run's cases and verdicts"));
    assert!(lane_job.contains("5) echo"), "the gate names exit 5");
}
