//! End to end with real Bazel and a real cache server: the embedded nginx over HTTP, and a
//! real REAPI server (BuildGrid) over gRPC.

mod common;

use std::path::Path;

use common::*;

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs fixture-cc cold and warm (and noop) and checks the counters and the cleanup.
fn bench_fixture_cc(extra_args: &[&str], scenarios: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let source = repo_root().join("bench-repos/fixture-cc");
    let source_before = listing(&source);
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args(["run", "--repo", "fixture-cc", "--system", "bazel"])
        .args(["--samples", "1", "--warmups", "0", "--param", "size=3"])
        .args(scenarios.iter().flat_map(|s| ["--scenario", s]))
        .args(extra_args)
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work);
    run_ok(&mut cmd);
    let results = read_json(&output);
    assert_valid_results(&results);

    let case = |scenario: &str| {
        results["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["scenario"] == scenario)
            .unwrap_or_else(|| panic!("no {scenario} case"))
            .clone()
    };
    let cold = &case("cold")["samples"][0];
    let actions = cold["actions"].as_u64().unwrap();
    assert!(actions > 0, "{cold}");
    assert_eq!(cold["remote_cache_hits"], 0, "{cold}");
    // size 3: three compiled libraries plus the binary's main.
    assert_eq!(cold["by_mnemonic"]["CppCompile"]["actions"], 4, "{cold}");
    let warm = &case("warm")["samples"][0];
    assert_eq!(warm["actions"], actions, "{warm}");
    assert_eq!(
        warm["remote_cache_hits"], actions,
        "every cacheable action is a hit: {warm}"
    );
    assert!(warm["processes"].as_u64().unwrap() >= actions);
    assert!(
        warm.get("notes").is_none(),
        "console and execution log disagree: {warm}"
    );
    assert_eq!(results["comparisons"][0]["hit_ratio"], 1.0);

    let work_dir = work.to_string_lossy().to_string();
    assert_eq!(
        processes_mentioning(&work_dir),
        Vec::<String>::new(),
        "a Bazel server or nginx survived"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary state left in {work_dir}"
    );
    assert_eq!(
        listing(&source),
        source_before,
        "the bench repo's source was written to"
    );
    results
}

#[test]
fn cold_warm_and_noop_against_the_embedded_http_cache() {
    require_tools(&["bazel", "nginx"]);
    let results = bench_fixture_cc(&[], &["cold", "warm", "noop"]);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases[1]["cache"]["backend"], "embedded-nginx");
    let noop = &cases[2]["samples"][0];
    assert_eq!(noop["remote_cache_hits"], 0, "{noop}");
    assert_eq!(noop["actions"], 0, "a no-op build runs nothing: {noop}");
}
