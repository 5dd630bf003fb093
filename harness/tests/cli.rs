//! `flywheel-bench run` from its arguments to its results JSON and exit code, with the fake
//! tools of the hidden `--fake-tools` flag: no Nix, Bazel or nginx, milliseconds a run.
//! What the real tools do is the other end-to-end tests' job.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_valid_results, bin, read_json, run_exits};

/// A bench repo with Nix and Bazel targets (the fakes never read them), a fake tools file
/// with `script`, and where the results go.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(script: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::fs::write(
            repo.join("repo.toml"),
            "name = \"fake\"\ndescription = \"built by fake tools\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n[bazel]\ntargets = [\"//...\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("fake-tools.toml"), script).unwrap();
        Fixture { dir }
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("results.json")
    }

    /// `run` of the repo with fake tools, two samples and no warm-up per case, in a
    /// folder of its own (no bench.toml, no git checkout).
    fn run(&self, extra: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(self.dir.path())
            .args(["run", "--samples", "2", "--warmups", "0", "--repo"])
            .arg(self.dir.path().join("repo"))
            // Two samples give a speedup no interval, so its verdict cannot pass: these
            // tests are about cases, not verdicts (exit 5 is tested in nix_bench).
            .args(["--verdicts", "warn"])
            .arg("--fake-tools")
            .arg(self.dir.path().join("fake-tools.toml"))
            .arg("--output")
            .arg(self.output())
            .arg("--work-dir")
            .arg(self.dir.path().join("work"))
            .args(extra);
        std::fs::create_dir_all(self.dir.path().join("work")).unwrap();
        cmd
    }

    fn results(&self) -> serde_json::Value {
        let results = read_json(&self.output());
        assert_valid_results(&results);
        results
    }
}

fn case<'a>(results: &'a serde_json::Value, system: &str, scenario: &str) -> &'a serde_json::Value {
    results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"] == system && c["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no {system} {scenario} case in {results}"))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn left_nothing(work: &Path) {
    let left: Vec<_> = std::fs::read_dir(work).unwrap().flatten().collect();
    assert!(left.is_empty(), "the scratch folder stayed: {left:?}");
}

#[test]
fn a_run_whose_builds_pass_exits_0_with_every_case_and_comparison() {
    let fx = Fixture::new("");
    run_exits(&mut fx.run(&[]), 0);
    let results = fx.results();
    assert_eq!(results["cases"].as_array().unwrap().len(), 6, "{results}");
    for system in ["nix", "bazel"] {
        for scenario in ["cold", "warm", "noop"] {
            let c = case(&results, system, scenario);
            assert_eq!(c["outcome"], "ok", "{c}");
            assert_eq!(c["samples"].as_array().unwrap().len(), 2);
        }
        let warm = case(&results, system, "warm");
        assert_eq!(warm["cache"]["backend"], "embedded-nginx");
    }
    assert_eq!(results["comparisons"].as_array().unwrap().len(), 2);
    assert!(results["finished_at"].is_string());
    assert!(results["notes"][0].as_str().unwrap().contains("fake tools"));
    left_nothing(&fx.dir.path().join("work"));
}

#[test]
fn a_failing_case_is_recorded_the_run_goes_on_and_exits_1() {
    let fx = Fixture::new(
        "[[build]]\nsystem = \"nix\"\nscenario = \"warm\"\nmode = \"from-cache\"\nexit = 2\n",
    );
    run_exits(&mut fx.run(&[]), 1);
    let results = fx.results();
    let warm = case(&results, "nix", "warm");
    assert_eq!(warm["outcome"], "failed");
    assert!(
        warm["reason"]
            .as_str()
            .unwrap()
            .starts_with("sample 1 failed: from-cache build exit code 2"),
        "{warm}"
    );
    assert_eq!(
        case(&results, "nix", "noop")["outcome"],
        "ok",
        "the run went on"
    );
    assert_eq!(case(&results, "bazel", "warm")["outcome"], "ok");
}

#[test]
fn a_cold_case_that_read_the_team_cache_is_invalid_and_exits_1() {
    let fx = Fixture::new(
        "[[build]]\nsystem = \"bazel\"\nscenario = \"cold\"\nmode = \"fresh\"\nfrom_team_cache = 25\n",
    );
    run_exits(&mut fx.run(&["--system", "bazel"]), 1);
    let results = fx.results();
    let cold = case(&results, "bazel", "cold");
    assert_eq!(cold["outcome"], "invalid", "{cold}");
    assert!(cold["reason"]
        .as_str()
        .unwrap()
        .starts_with("cold is not cold: sample 1 (samples[0] in the JSON) took 25 items"));
    assert_eq!(
        results["comparisons"].as_array().unwrap().len(),
        0,
        "no speedup from an invalid cold case"
    );
}

#[test]
fn bad_input_exits_2_and_names_the_flags() {
    let fx = Fixture::new("");
    let out = run_exits(&mut fx.run(&["--nix-cache-secret-key", "/run/key.sec"]), 2);
    let err = stderr(&out);
    assert!(
        err.contains("--nix-cache-secret-key")
            && err.contains("--nix-cache ")
            && err.contains("fix:"),
        "{err}"
    );
    assert!(!fx.output().exists(), "nothing ran");
    let bad_script = Fixture::new("[[build]]\nexits = 1\n");
    let out = run_exits(&mut bad_script.run(&[]), 2);
    assert!(stderr(&out).contains("fake-tools.toml"), "{}", stderr(&out));
}

#[test]
fn a_missing_tool_exits_3_and_says_how_to_get_it() {
    let fx = Fixture::new("missing = [\"bazel\"]\n");
    let out = run_exits(&mut fx.run(&[]), 3);
    assert!(
        stderr(&out).contains("`bazel` is needed"),
        "{}",
        stderr(&out)
    );
    left_nothing(&fx.dir.path().join("work"));
}

#[test]
fn an_interrupted_run_exits_143_and_keeps_what_finished() {
    let fx =
        Fixture::new("[[build]]\nsystem = \"nix\"\nscenario = \"warm\"\nmode = \"from-cache\"\nsignal = \"SIGTERM\"\n");
    // Sequential, so that cold has finished when warm is interrupted (interleaved, the
    // group's cases are all in progress, and all recorded failed).
    let out = run_exits(
        &mut fx.run(&["--system", "nix", "--order", "sequential"]),
        143,
    );
    assert!(
        stderr(&out).contains("interrupted by SIGTERM"),
        "{}",
        stderr(&out)
    );
    let results = fx.results();
    assert_eq!(case(&results, "nix", "cold")["outcome"], "ok");
    let warm = case(&results, "nix", "warm");
    assert_eq!(warm["outcome"], "failed");
    assert!(
        warm["reason"]
            .as_str()
            .unwrap()
            .starts_with("interrupted by SIGTERM"),
        "{warm}"
    );
    assert_eq!(
        results["cases"].as_array().unwrap().len(),
        2,
        "noop never started"
    );
    assert!(
        results.get("finished_at").is_none(),
        "a partial file says so"
    );
    left_nothing(&fx.dir.path().join("work"));
}
