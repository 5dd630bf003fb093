//! Size sweeps end to end: how cold and warm grow with each fixture's size, fitted.

mod common;

use common::*;

fn sweep(repo: &str, system: &str, samples: &str, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args([
                "run",
                "--repo",
                repo,
                "--system",
                system,
                "--sweep",
                "size=2,4,8",
            ])
            .args(["--scenario", "cold", "--scenario", "warm", "--warmups", "0"])
            .args(["--samples", samples])
            .args(extra)
            .arg("--output")
            .arg(&output),
    );
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(
        printed.contains("[size=4"),
        "sweep points are named: {printed}"
    );
    let html = tmp.path().join("report.html");
    run_ok(bin().arg("report").arg(&output).arg("--html").arg(&html));
    assert!(std::fs::read_to_string(&html).unwrap().contains("Growth"));
    let results = read_json(&output);
    assert_valid_results(&results);
    results
}

fn growth<'a>(results: &'a serde_json::Value, scenario: &str) -> &'a serde_json::Value {
    results["growth"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no {scenario} growth in {}", results["growth"]))
}

#[test]
fn nix_cold_grows_linearly_with_the_dag() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = sweep("fixture-c-dag", "nix", "3", &["--param", "work=60"]);
    let cold = growth(&results, "cold");
    assert_eq!(cold["parameter"], "size");
    let values: Vec<f64> = cold["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [2.0, 4.0, 8.0]);
    for point in cold["points"].as_array().unwrap() {
        assert!(point["median_s"].as_f64().unwrap() > 0.0, "{point}");
    }
    let r2 = cold["linear"]["r_squared"].as_f64().unwrap();
    assert!(
        r2 > 0.9,
        "cold should grow with the number of compile steps: {cold}"
    );
    assert!(cold["linear"]["slope"].as_f64().unwrap() > 0.0);
    assert!(cold["log_log"]["slope"].as_f64().is_some());
    // One comparison per point, each at its own parameters.
    assert_eq!(results["comparisons"].as_array().unwrap().len(), 3);
}

#[test]
fn bazel_sweeps_too() {
    require_tools(&["bazel", "nginx"]);
    let results = sweep("fixture-cc", "bazel", "1", &[]);
    let cold = growth(&results, "cold");
    assert_eq!(cold["points"].as_array().unwrap().len(), 3);
    assert!(cold["linear"]["slope"].as_f64().is_some(), "{cold}");
    assert_eq!(
        growth(&results, "warm")["points"].as_array().unwrap().len(),
        3
    );
}
