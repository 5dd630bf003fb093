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
            // The tests read the growth fits; a one-sample speedup verdict would fail.
            .args(["--verdicts", "warn"])
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

/// A link sweep: cold and warm read directly once, warm through the proxy at each RTT.
fn link_sweep(repo: &str, system: &str, rtts: &str, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--repo", repo, "--system", system])
            .args(["--sweep", &format!("link.rtt_ms={rtts}")])
            .args(["--scenario", "cold", "--scenario", "warm", "--warmups", "0"])
            // The tests read the growth fits; a one-sample speedup verdict would fail.
            .args(["--verdicts", "warn"])
            .args(extra)
            .arg("--output")
            .arg(&output),
    );
    let html = tmp.path().join("report.html");
    run_ok(bin().arg("report").arg(&output).arg("--html").arg(&html));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains("Link to the cache") && html.contains("cold (read directly)"),
        "the report shows the break-even and draws cold as a line"
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let scenarios: Vec<(&str, Option<u64>)> = results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["outcome"], "ok", "{c}");
            (
                c["scenario"].as_str().unwrap(),
                c["link"]["rtt_ms"].as_u64(),
            )
        })
        .collect();
    let points = rtts.split(',').count();
    assert_eq!(scenarios.iter().filter(|(s, _)| *s == "cold").count(), 1);
    assert_eq!(
        scenarios.iter().filter(|(_, l)| l.is_some()).count(),
        points,
        "{scenarios:?}"
    );
    assert!(
        scenarios.contains(&("warm", None)),
        "warm read directly too"
    );
    results
}

#[test]
fn nix_link_sweep_finds_where_the_cache_stops_paying() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = link_sweep(
        "fixture-c-dag",
        "nix",
        "0,40,120",
        &["--samples", "3", "--param", "size=4", "--param", "work=20"],
    );
    let warm = growth(&results, "warm");
    assert_eq!(warm["parameter"], "link.rtt_ms");
    let medians: Vec<f64> = warm["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["median_s"].as_f64().unwrap())
        .collect();
    // At least a handshake and a request, each one round trip of 120 ms.
    assert!(medians[2] > medians[0] + 0.2, "{medians:?}");
    let even = &warm["break_even"];
    assert!(even["level"].as_f64().unwrap() > 0.0, "{even}");
    assert!(even["at"].as_f64().unwrap() > 0.0, "{even}");
    assert!(
        even["ci_low"].as_f64().is_some(),
        "3 samples a point: {even}"
    );
    assert!(
        warm["proxy_cost"]["ratio"].as_f64().unwrap() > 0.0,
        "{warm}"
    );
}

#[test]
fn bazel_link_sweeps_too() {
    require_tools(&["bazel", "nginx"]);
    let results = link_sweep(
        "fixture-cc",
        "bazel",
        "0,100",
        &["--samples", "1", "--param", "size=4"],
    );
    let warm = growth(&results, "warm");
    assert_eq!(warm["points"].as_array().unwrap().len(), 2);
    assert!(warm["break_even"]["level"].as_f64().is_some(), "{warm}");
    for case in results["cases"].as_array().unwrap() {
        if case["scenario"] == "warm" {
            let hits: u64 = case["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["from_team_cache"].as_u64().unwrap())
                .sum();
            assert!(hits > 0, "warm read the cache through the link: {case}");
        }
    }
}
