//! `--no-fill` with Bazel against a real cache server (the harness's nginx, as an external
//! HTTP remote cache): a read-only run takes its hits from what the cache holds and writes
//! nothing to it. (Nix read-only runs are tested against the in-test Attic server in
//! tests/attic.rs.)

mod common;

use std::path::Path;

use common::*;

/// Every file under `dir`, with when it was last written.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let written = entry.metadata().unwrap().modified().unwrap();
            out.push((path, written));
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_only_bazel_run_hits_what_the_cache_holds_and_uploads_nothing() {
    require_tools(&["bazel", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = nginx(&tmp.path().join("www"));
    std::fs::create_dir_all(server.root().join("bazel")).unwrap();
    let url = server.url("bazel").to_string();
    let warm = |extra: &[&str], output: &str| {
        let output = tmp.path().join(output);
        run_ok(
            bin()
                .current_dir(repo_root())
                .args([
                    "run",
                    "--repo",
                    "fixture-cc",
                    "--system",
                    "bazel",
                    "--scenario",
                    "warm",
                ])
                .args(["--samples", "1", "--warmups", "0", "--param", "size=2"])
                .args(["--bazel-remote-cache", &url])
                .args(extra)
                .arg("--output")
                .arg(&output),
        );
        read_json(&output)
    };
    // Filled by a run's priming build.
    warm(&[], "fill.json");
    let filled = files(&server.root().join("bazel"));
    assert!(!filled.is_empty());

    let results = warm(&["--no-fill"], "read-only.json");
    assert_valid_results(&results);
    assert_eq!(results["settings"]["fill"], false);
    let case = case(&results, "warm");
    let sample = &case["samples"][0];
    assert!(sample["actions"].as_u64().unwrap() > 0);
    assert_eq!(sample["remote_cache_hits"], sample["actions"], "{case}");
    assert_eq!(case["cache_fill"]["method"], "read-only");
    assert_eq!(case["cache_fill"]["hit_ratio"], 1.0);
    assert!(
        case["command"]
            .as_str()
            .unwrap()
            .contains("--noremote_upload_local_results"),
        "{case}"
    );
    assert_eq!(
        files(&server.root().join("bazel")),
        filled,
        "nothing was written"
    );
}
