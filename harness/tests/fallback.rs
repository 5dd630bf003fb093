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
    let timeout = (FALLBACK_TIMEOUT_S as u64).to_string();
    let mut args = vec!["--fallback-timeout", &timeout];
    args.extend(scenarios.iter().flat_map(|s| ["--scenario", s]));
    run_one_sample_each(system, repo, params, &args)
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

    // A wrong entry signed with the cache's own key is taken without a word; only
    // comparing with clean builds shows it, and both clean builds agree: the cache's fault.
    let poison = row(&results, "fallback:poison");
    assert_eq!(poison["outcome"], "survived", "{poison}");
    assert_eq!(poison["detected_by_tool"], false, "{poison}");
    assert_eq!(poison["from_cache"], 1);
    assert_eq!(poison["verified"], false, "{poison}");
    let poisoned = &case(&results, "fallback:poison")["verification"];
    assert_eq!(
        poisoned["mismatches"][0]["class"], "wrong-from-cache",
        "{poisoned}"
    );
    assert_eq!(
        poisoned["roots"][0]["class"], "wrong-from-cache",
        "{poisoned}"
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
    // All reproducible: nothing to classify, no second clean build; what was compared
    // is recorded (the top output: the only path the build from the cache has).
    assert!(verify["verification"].get("roots").is_none(), "{verify}");
    let scope = &verify["verification"]["scope"];
    assert_eq!(scope["closure"], 1, "{scope}");
    assert_eq!(scope["paths"].as_array().unwrap().len(), 1, "{scope}");
    assert!(scope.get("classified_by").is_none(), "{scope}");
    let verdicts = &results["verdicts"][0];
    assert_eq!(
        verdicts["verified"]["pass"], false,
        "the poisoned entry fails it"
    );
    assert!(
        verdicts["verified"]["detail"].as_str().unwrap().contains(
            "fallback:poison: 1 output differs from a clean build (the cache served a wrong output"
        ),
        "{verdicts}"
    );
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
    // Every output the build from the cache downloaded was compared.
    let scope = &verify["verification"]["scope"];
    assert_eq!(
        scope["closure"], verify["verification"]["compared"],
        "{scope}"
    );
    assert!(scope.get("classified_by").is_none(), "{scope}");
    // The poisoned entry is the cache's fault: both clean builds agree.
    let poison = &case(&results, "fallback:poison")["verification"];
    assert!(
        poison["mismatches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["class"] == "wrong-from-cache"),
        "{poison}"
    );
    assert_eq!(poison["roots"][0]["step"], "genrule //:run_app", "{poison}");
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
