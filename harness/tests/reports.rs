//! report, compare, export and matrix on results files the harness really produced.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// Five cold samples of a repo named `planted` whose build sleeps `seconds`.
fn run_planted(dir: &Path, name: &str, seconds: f64) -> PathBuf {
    let repo = temp_repo(
        "planted",
        &derivation("planted", &format!("sleep {seconds}; echo ok > $out")),
    );
    let output = dir.join(name);
    run_ok(&mut cold_run(&[repo.path()], 5, &output));
    steady_probe(&output);
    output
}

/// Gives a results file the speed probe of a quiet machine, the same in every file: the
/// suite's other tests load the machine while these runs take, which would make compare
/// (rightly) refuse to gate absolute times. Whether probes are steady is unit-tested.
fn steady_probe(file: &Path) {
    let mut results = read_json(file);
    let reading = serde_json::json!({
        "cpu_s": vec![0.0075; 7],
        "memory_s": vec![0.15; 7],
    });
    results["speed_probe"]["before"] = reading.clone();
    results["speed_probe"]["after"] = reading;
    std::fs::write(file, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
}

fn harness(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = bin();
    cmd.current_dir(repo_root());
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

#[test]
fn compare_passes_the_same_configuration_and_catches_a_planted_regression() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let base = run_planted(tmp.path(), "base.json", 0.3);
    let again = run_planted(tmp.path(), "again.json", 0.3);
    let slower = run_planted(tmp.path(), "slower.json", 0.9);

    let same = harness(&[&"compare", &base, &again]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(text.contains("No regression."), "{text}");

    let md = tmp.path().join("compare.md");
    let planted = harness(&[&"compare", &base, &slower, &"--markdown", &md]);
    let text = String::from_utf8_lossy(&planted.stdout);
    assert_eq!(planted.status.code(), Some(1), "{text}");
    assert!(
        text.contains("**Regression.**") && text.contains("**slower**"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&md).unwrap(), text);

    // Different parameters are different workloads: refused, exit 2.
    let other = tmp.path().join("other.json");
    run_ok(tiny_nix_run(&["--scenario", "cold", "--samples", "1", "--output"]).arg(&other));
    let refused = harness(&[&"compare", &base, &other]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("no case in common") || err.contains("different parameters"),
        "{err}"
    );
}

#[test]
fn report_export_and_matrix_render_a_real_run() {
    require_tools(&["nix", "nginx"]);
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("run.json");
    run_ok(
        tiny_nix_run(&["--samples", "2", "--scenario", "cold", "--scenario", "warm"])
            .args(["--scenario", "fallback:refuse"])
            .args(["--bootstrap-time", "nix run .#bench=12.5", "--output"])
            .arg(&results),
    );
    let recorded = read_json(&results);
    assert_valid_results(&recorded);
    // The job's step as given, then the harness's own checks, each timed.
    let bootstrap = &recorded["lanes"][0]["bootstrap"];
    assert_eq!(
        bootstrap["job"],
        serde_json::json!([{"name": "nix run .#bench", "seconds": 12.5}])
    );
    let checks: Vec<&str> = bootstrap["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "cache preflight",
            "user-namespace probe",
            "cache link probe"
        ],
        "{bootstrap}"
    );
    assert!(
        bootstrap["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["seconds"].as_f64().unwrap() > 0.0),
        "{bootstrap}"
    );
    // Nothing left, and the record says so.
    assert_eq!(
        recorded["cleanup"]["left"],
        serde_json::json!([]),
        "{}",
        recorded["cleanup"]
    );
    let (md, html) = (tmp.path().join("report.md"), tmp.path().join("report.html"));
    let out = harness(&[&"report", &results, &"--markdown", &md, &"--html", &html]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(md).unwrap();
    for heading in [
        "# flywheel-bench report",
        "### Cold vs warm",
        "### Fallback",
        "### Verdicts",
        "### Cases",
    ] {
        assert!(md.contains(heading), "no {heading} in:\n{md}");
    }
    assert!(
        md.contains("| fixture-c-dag | nix | fallback:refuse | survived |"),
        "{md}"
    );
    let html = std::fs::read_to_string(html).unwrap();
    assert!(
        html.starts_with("<!doctype html>")
            && html.contains("<svg")
            && html.contains("Sample distributions")
    );
    assert!(
        !html.contains("<script") && !html.contains("http://") && !html.contains("https://"),
        "the page must be self-contained"
    );

    let export = harness(&[&"export", &results]);
    let entries: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 3);
    assert_eq!(entries[0]["name"], "fixture-c-dag nix host cold");
    assert_eq!(entries[0]["unit"], "s");

    let matrix = harness(&[&"matrix", &results]);
    let text = String::from_utf8_lossy(&matrix.stdout);
    assert!(
        matrix.status.success(),
        "{}",
        String::from_utf8_lossy(&matrix.stderr)
    );
    // One run is no repeated proof, whichever branch this checkout is on.
    assert!(text.contains("| `host` | experimental |"), "{text}");
    assert!(text.contains("| `vm` | backlog |"), "{text}");

    // A history of that run on main, with its lifecycle from recorded API responses.
    let history = tmp.path().join("history");
    let night = history.join("2026-12-06T03-17-05Z-run12873340115-1");
    std::fs::create_dir_all(&night).unwrap();
    let mut on_main = recorded.clone();
    on_main["git"] =
        serde_json::json!({"commit": "0".repeat(40), "ref": "refs/heads/main", "dirty": false});
    std::fs::write(night.join("host.json"), on_main.to_string()).unwrap();
    let jobs = repo_root().join("harness/tests/fixtures/github-api/jobs-nightly.json");
    let life = harness(&[
        &"lifecycle",
        &jobs,
        &"--output",
        &night.join("lifecycle.json"),
    ]);
    assert!(
        life.status.success(),
        "{}",
        String::from_utf8_lossy(&life.stderr)
    );
    let (md, page) = (tmp.path().join("matrix.md"), tmp.path().join("matrix.html"));
    let out = harness(&[
        &"matrix",
        &"--history",
        &history,
        &"--markdown",
        &md,
        &"--html",
        &page,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(md).unwrap();
    assert!(
        md.contains("| `host` | experimental | ✓ 1/1 | 4.00 s last; 4.00 s median, 4.00 s p95 over 1 run(s) |"),
        "{md}"
    );
    assert!(
        md.contains("- [x] queue wait measured: waited 4.00 s for tinyland-nix"),
        "{md}"
    );
    assert!(
        md.contains(
            "- [x] bootstrap measured: job: nix run .#bench 12.5 s; checks: cache preflight"
        ),
        "{md}"
    );
    assert!(
        md.contains("- [x] cleanup evidenced, nothing left: the janitor"),
        "{md}"
    );
    let page = std::fs::read_to_string(page).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("<span class=\"pass\""));
    assert!(
        !page.contains("<script") && !page.contains("src=") && !page.contains("<link"),
        "self-contained: nothing fetched"
    );

    // Its baseline is that run; compared with itself nothing regressed.
    let base = tmp.path().join("baseline.json");
    let out = harness(&[
        &"baseline",
        &"--history",
        &history,
        &"--lane",
        &"host",
        &"--output",
        &base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_valid_results(&read_json(&base));
    run_ok(
        bin()
            .current_dir(repo_root())
            .arg("compare")
            .arg(&base)
            .arg(&results),
    );
    let none = harness(&[
        &"baseline",
        &"--history",
        &history,
        &"--lane",
        &"vm",
        &"--output",
        &tmp.path().join("vm.json"),
    ]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stdout).starts_with("no baseline yet"));
    assert!(!tmp.path().join("vm.json").exists());

    let bad = harness(&[&"report", &tmp.path().join("missing.json")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.json"));
}

#[test]
fn compare_of_the_committed_evidence_names_the_filled_parameter_and_gates() {
    // nix-fixture-c-dag-host.json predates the `toolchain` parameter: its manifest's
    // default fills it, so the cases compare (exit 0 or 1), never "cannot compare" (2).
    let out = harness(&[
        &"compare",
        &"results/evidence/nix-fixture-c-dag-host.json",
        &"results/evidence/default-bench-host.json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "toolchain is absent in the baseline, taken as its manifest's default toolchain=0"
        ),
        "{text}"
    );
    assert!(text.contains("| fixture-c-dag nix host cold |"), "{text}");
    // The Bazel tool only the new file has is not what stops absolute gating: files without
    // a CPU fingerprint never gate absolute times, and the rule says so.
    let out = harness(&[
        &"compare",
        &"results/evidence/nix-fixture-c-dag-host.json",
        &"results/evidence/fallback-host.json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Rule: **absolute times are shown, not gated**")
            && text.contains("no CPU fingerprint"),
        "{text}"
    );
}

#[test]
fn export_keeps_every_sweep_point_as_its_own_series() {
    let out = harness(&[&"export", &"results/evidence/sweep-nix-host.json"]);
    assert!(out.status.success());
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8);
    assert!(
        names.contains(&"fixture-c-dag nix host size=8 warm"),
        "{names:?}"
    );
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8, "{names:?}");
}

#[test]
fn bench_repos_installed_beside_the_binary_are_found_outside_a_checkout() {
    // The flake's package layout: $out/bin/flywheel-bench, $out/share/flywheel-bench/bench-repos.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let shipped = out.join("share/flywheel-bench/bench-repos/fixture-c-dag");
    std::fs::create_dir_all(out.join("bin")).unwrap();
    std::fs::create_dir_all(&shipped).unwrap();
    let src = repo_root().join("bench-repos/fixture-c-dag");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, shipped.join(path.file_name().unwrap())).unwrap();
        }
    }
    let exe = out.join("bin/flywheel-bench");
    std::fs::copy(env!("CARGO_BIN_EXE_flywheel-bench"), &exe).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&exe)
            .args(args)
            .current_dir(&elsewhere)
            .env_remove("FLYWHEEL_BENCH_REPOS")
            .output()
            .unwrap()
    };
    // run looks there: a mistyped name is looked up among the shipped repos.
    let typo = run(&["run", "--repo", "fixture-c-dga"]);
    let err = String::from_utf8_lossy(&typo.stderr);
    assert_eq!(typo.status.code(), Some(2), "{err}");
    assert!(
        err.contains("share/flywheel-bench/bench-repos")
            && err.contains("did you mean `fixture-c-dag`?"),
        "{err}"
    );
    // doctor says the same.
    let doctor = run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains(
            "share/flywheel-bench/bench-repos (installed beside the binary): fixture-c-dag"
        ),
        "{text}"
    );
}
