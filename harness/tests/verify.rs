//! Verify that tells why, end to end with real nix, bazel and nginx: a non-reproducible
//! step (the fixtures' `timestamp` parameter) is classified as such and named as the step
//! first at fault, with its consumers; a poisoned cache stays the cache's fault.

mod common;

use common::*;

fn run_verify(system: &str, repo: &str, params: &[&str], extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--fallback-timeout", "60"];
    args.extend(extra);
    run_one_sample_each(system, repo, params, &args)
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bazel_a_time_stamp_genrule_is_the_root_and_a_poisoned_cache_stays_the_caches_fault() {
    require_tools(&["bazel", "nginx"]);
    let results = run_verify(
        "bazel",
        "fixture-cc",
        &["size=2", "timestamp=1"],
        &["--scenario", "verify", "--scenario", "fallback:poison"],
    );

    let verify = &case(&results, "verify")["verification"];
    let mismatches = verify["mismatches"].as_array().unwrap();
    let paths: Vec<&str> = mismatches
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "bazel-out/k8-fastbuild/bin/stamp.txt",
            "bazel-out/k8-fastbuild/bin/stamped_all.txt",
            "bazel-out/k8-fastbuild/bin/uses_stamp.txt"
        ],
        "{verify}"
    );
    for m in mismatches {
        assert_eq!(m["class"], "not-reproducible", "{m}");
        assert_ne!(m["second_clean"], m["clean"], "{m}");
    }
    let all = &mismatches[1];
    assert_eq!(all["step"], "genrule //:stamped_all");
    assert_eq!(
        strings(&all["because_of"]),
        [
            "genrule //:stamp",
            "genrule //:uses_stamp",
            "genrule //:stamped_all"
        ]
    );
    let roots = verify["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{verify}");
    assert_eq!(roots[0]["step"], "genrule //:stamp");
    assert_eq!(roots[0]["class"], "not-reproducible");
    let consumers: Vec<&str> = roots[0]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        consumers,
        ["genrule //:stamped_all", "genrule //:uses_stamp"]
    );
    // Every output the build from the cache downloaded was compared, and recorded.
    let scope = &verify["scope"];
    assert_eq!(scope["closure"], verify["compared"]);
    assert_eq!(
        scope["paths"].as_array().unwrap().len() as u64,
        verify["compared"].as_u64().unwrap()
    );
    assert!(verify["compared"].as_u64().unwrap() > 10, "{scope}");

    // The poisoned entry: both clean builds agree, so the cache served a wrong output.
    let poison = &case(&results, "fallback:poison")["verification"];
    let root = poison["roots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == "wrong-from-cache")
        .unwrap_or_else(|| panic!("no wrong output from the cache: {poison}"));
    assert_eq!(root["step"], "genrule //:run_app", "{root}");
    assert_eq!(
        strings(&root["outputs"]),
        ["bazel-out/k8-fastbuild/bin/app_output.txt"]
    );
    let upper = poison["mismatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "bazel-out/k8-fastbuild/bin/app_output_upper.txt")
        .unwrap();
    assert_eq!(upper["class"], "wrong-from-cache");
    assert_eq!(
        strings(&upper["because_of"]),
        ["genrule //:run_app", "genrule //:upper"]
    );

    // Verdict: the wrong output from the cache fails it; the time stamp alone would not.
    let verdict = &results["verdicts"][0]["verified"];
    assert_eq!(verdict["pass"], false, "{verdict}");
    let detail = verdict["detail"].as_str().unwrap();
    assert!(
        detail.contains("the cache served a wrong output") && detail.contains("genrule //:run_app"),
        "{detail}"
    );
    assert!(detail.contains("genrule //:stamp"), "{detail}");
}

#[test]
fn nix_a_time_stamp_derivation_is_named_though_not_the_requested_output() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = run_verify(
        "nix",
        "fixture-c-dag",
        &["size=2", "work=5", "timestamp=1"],
        &["--scenario", "verify"],
    );
    let verify = &case(&results, "verify")["verification"];
    // Only the top output came from the cache (nothing refers to the rest at run time).
    let scope = &verify["scope"];
    assert_eq!(scope["closure"], 1, "{scope}");
    let top = strings(&scope["paths"]).remove(0);
    assert!(top.ends_with("-c-dag-2"), "{top}");
    let m = &verify["mismatches"][0];
    assert_eq!(m["path"], top.as_str());
    assert_eq!(m["class"], "not-reproducible", "{m}");
    let chain = strings(&m["because_of"]);
    assert_eq!(chain.len(), 3, "{m}");
    assert!(chain[0].ends_with("-stamp.drv"), "{chain:?}");
    assert!(chain[1].ends_with("-uses-stamp.drv"), "{chain:?}");
    assert!(chain[2].ends_with("-c-dag-2.drv"), "{chain:?}");
    let root = &verify["roots"][0];
    assert!(
        root["step"].as_str().unwrap().ends_with("-stamp.drv"),
        "{root}"
    );
    assert_eq!(root["class"], "not-reproducible");
    assert!(
        strings(&root["outputs"])[0].ends_with("-stamp"),
        "the root's own output, though never requested: {root}"
    );
    assert_eq!(root["consumers"][0]["step"], chain[2].as_str());

    // Not the cache's fault: the verdict passes, and says why, unless strict.
    let verdict = &results["verdicts"][0]["verified"];
    assert_eq!(verdict["pass"], true, "{verdict}");
    let detail = verdict["detail"].as_str().unwrap();
    assert!(
        detail.contains("not reproducible") && detail.contains("-stamp.drv"),
        "{detail}"
    );
}
