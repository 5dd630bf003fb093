//! Fallback and verify-later end to end: real nix, real bazel, real nginx behind the
//! harness's own fault proxy. Small workloads and a short fallback timeout keep it quick.

mod common;

use common::*;

const FALLBACK_TIMEOUT_S: f64 = 20.0;

fn row<'a>(results: &'a serde_json::Value, scenario: &str) -> &'a serde_json::Value {
    results["fallbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no fallback row for {scenario}"))
}

fn run_fallbacks(
    system: &str,
    repo: &str,
    params: &[&str],
    scenarios: &[&str],
) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args([
            "run",
            "--repo",
            repo,
            "--system",
            system,
            "--samples",
            "1",
            "--warmups",
            "0",
        ])
        .args([
            "--fallback-timeout",
            &(FALLBACK_TIMEOUT_S as u64).to_string(),
        ])
        .args(params.iter().flat_map(|p| ["--param", p]))
        .args(scenarios.iter().flat_map(|s| ["--scenario", s]))
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work);
    run_ok(&mut cmd);
    let results = read_json(&output);
    assert_valid_results(&results);
    let work_dir = work.to_string_lossy().to_string();
    assert_eq!(
        processes_mentioning(&work_dir),
        Vec::<String>::new(),
        "a build, server or proxy survived"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary state left in {work_dir}"
    );
    results
}

#[test]
fn nix_survives_every_fault_within_the_timeout_with_the_same_outputs() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = run_fallbacks(
        "nix",
        "fixture-c-dag",
        &["size=3", "work=10"],
        &["cold", "fallback", "verify"],
    );

    for scenario in [
        "fallback:refuse",
        "fallback:blackhole+tuned",
        "fallback:http-500",
        "fallback:slow",
        "fallback:slow+tuned",
        "fallback:poison",
    ] {
        let r = row(&results, scenario);
        assert_eq!(r["outcome"], "survived", "{r}");
        assert_eq!(r["verified"], true, "{r}");
    }
    // A cache that accepts and never answers outlasts Nix's default timeouts: killed, recorded.
    let hung = row(&results, "fallback:blackhole");
    assert_eq!(hung["outcome"], "hung", "{hung}");
    let blackhole = case(&results, "fallback:blackhole");
    let sample = &blackhole["samples"][0];
    assert_eq!(sample["timed_out"], true);
    assert!(
        sample["wall_s"].as_f64().unwrap() < FALLBACK_TIMEOUT_S + 10.0,
        "{sample}"
    );
    // The harness's retry without the cache still produced the right outputs.
    assert_eq!(sample["retry"]["exit_code"], 0, "{sample}");
    assert_eq!(hung["verified"], true);

    // Corrupt NARs are rejected by Nix: the build fails or falls back, never with wrong outputs.
    let corrupt = row(&results, "fallback:corrupt");
    assert!(
        matches!(corrupt["outcome"].as_str(), Some("survived" | "recovered")),
        "{corrupt}"
    );
    assert_eq!(corrupt["detected_by_tool"], true);
    assert_eq!(corrupt["verified"], true);
    assert!(
        case(&results, "fallback:corrupt")["fallback"]["proxy"]["corrupted"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Unsigned narinfos are refused and built locally, with a warning.
    let poison = row(&results, "fallback:poison");
    assert_eq!(poison["detected_by_tool"], true, "{poison}");
    assert_eq!(poison["from_cache"], 0);
    let poison_case = case(&results, "fallback:poison");
    assert!(
        poison_case["samples"][0]["messages"][0]
            .as_str()
            .unwrap()
            .contains("not signed"),
        "{poison_case}"
    );

    // The tool's own --fallback is recorded as evidence for every fault.
    for r in results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["fallback"].is_object())
    {
        assert_eq!(r["fallback"]["tool_fallback"]["flag"], "--fallback", "{r}");
    }
    let tuned = case(&results, "fallback:blackhole+tuned");
    assert!(tuned["fallback"]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("stalled-download-timeout")));

    let verify = case(&results, "verify");
    assert_eq!(verify["outcome"], "ok");
    assert_eq!(
        verify["verification"]["mismatches"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert!(verify["verification"]["compared"].as_u64().unwrap() > 0);
    let verdicts = &results["verdicts"][0];
    assert_eq!(verdicts["verified"]["pass"], true);
    assert_eq!(
        verdicts["fallback"]["pass"], false,
        "a hung build must fail the fallback verdict"
    );
}

#[test]
fn bazel_survives_bad_caches_and_verify_catches_a_poisoned_action_cache() {
    require_tools(&["bazel", "nginx"]);
    let results = run_fallbacks(
        "bazel",
        "fixture-cc",
        &["size=2"],
        &[
            "cold",
            "fallback:refuse",
            "fallback:http-500",
            "fallback:corrupt",
            "fallback:poison",
            "verify",
        ],
    );
    for scenario in ["fallback:refuse", "fallback:http-500", "fallback:corrupt"] {
        let r = row(&results, scenario);
        assert_eq!(r["outcome"], "survived", "{r}");
        assert_eq!(r["verified"], true, "{r}");
    }
    // Bazel takes a poisoned entry without a word; only comparing with a clean build shows it.
    let poison = row(&results, "fallback:poison");
    assert_eq!(poison["outcome"], "survived", "{poison}");
    assert_eq!(poison["detected_by_tool"], false, "{poison}");
    assert_eq!(poison["verified"], false, "{poison}");
    let mismatches = case(&results, "fallback:poison")["verification"]["mismatches"].clone();
    assert!(
        mismatches
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["path"].as_str().unwrap().ends_with("app_output.txt")),
        "{mismatches}"
    );
    assert!(
        case(&results, "fallback:poison")["fallback"]["proxy"]["poisoned"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Bazel has no --fallback switch of its own.
    assert!(case(&results, "fallback:refuse")["fallback"]
        .get("tool_fallback")
        .is_none());

    // With an honest cache the outputs match a clean rebuild.
    let verify = case(&results, "verify");
    assert_eq!(
        verify["verification"]["mismatches"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{verify}"
    );
    let verdict = &results["verdicts"][0]["verified"];
    assert_eq!(verdict["pass"], false);
    assert!(
        verdict["detail"]
            .as_str()
            .unwrap()
            .contains("fallback:poison"),
        "{verdict}"
    );
}
