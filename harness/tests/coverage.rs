//! `flywheel-bench coverage` against real caches: the harness's own nginx as a binary cache
//! filled by a real run (`nix copy`), then narinfos deleted; the in-test Attic server for
//! the pull credentials; a real Bazel 4.2.3 execution log, which has no action digests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::attic_server::{AtticServer, Grant};
use common::*;

/// fixture-c-dag as `tiny_nix_run` builds it.
const TINY: [&str; 4] = ["--param", "size=2", "--param", "work=5"];

/// A binary cache on the test's nginx, with a signing key: (URL, public key, secret file).
fn nginx_cache(
    server: &flywheel_bench::cache::nginx::Nginx,
    dir: &Path,
) -> (String, String, PathBuf) {
    std::fs::create_dir_all(server.root().join("nix")).unwrap();
    std::fs::write(
        server.root().join("nix/nix-cache-info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
    )
    .unwrap();
    let (secret, public) = signing_key(dir, "cov");
    (server.url("nix").to_string(), public, secret)
}

/// `coverage` of `repo` against `url`.
fn coverage(repo: &str, url: &str, key: &str, output: &Path) -> Command {
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args(["coverage", "--repo", repo])
        .args(["--nix-cache", url, "--nix-cache-public-key", key])
        .arg("--output")
        .arg(output);
    cmd
}

fn names(nix: &serde_json::Value) -> Vec<String> {
    nix["missing_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn assert_valid_coverage(doc: &serde_json::Value) {
    let schema = read_json(&repo_root().join("results/coverage.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn full_after_a_fill_and_the_exact_missing_paths_after_narinfos_are_deleted() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = nginx(&tmp.path().join("www"));
    let (url, key, secret) = nginx_cache(&server, tmp.path());
    // Fill the cache the way a run does: a priming build, then `nix copy` of its outputs.
    run_ok(
        tiny_nix_run(&["--scenario", "warm", "--samples", "1"])
            .args(["--nix-cache", &url, "--nix-cache-public-key", &key])
            .arg("--nix-cache-secret-key")
            .arg(&secret)
            .arg("--output")
            .arg(tmp.path().join("fill.json")),
    );
    let full = tmp.path().join("full.json");
    let out = run_ok(coverage("fixture-c-dag", &url, &key, &full).args(TINY));
    let doc = read_json(&full);
    assert_valid_coverage(&doc);
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["nix_cache"], url.as_str());
    let nix = &doc["repos"][0]["nix"];
    assert_eq!(doc["repos"][0]["repo"], "fixture-c-dag");
    assert_eq!(
        (nix["needed"].as_u64(), nix["present"].as_u64()),
        (Some(1), Some(1)),
        "{nix}"
    );
    assert_eq!(nix["percent"], 100.0);
    assert_eq!(nix["missing"], 0);
    // The shape: the one needed path, its NAR size from the narinfo, from the team cache.
    let shape = &nix["shape"];
    assert_eq!(shape["roots"].as_array().unwrap().len(), 1, "{shape}");
    assert_eq!(shape["paths"].as_array().unwrap().len(), 1, "{shape}");
    assert_eq!(shape["paths"][0]["name"], "c-dag-2");
    assert_eq!(shape["paths"][0]["source"], "team");
    assert!(
        shape["paths"][0]["nar_size"].as_u64().unwrap() > 0,
        "{shape}"
    );
    // Only the top output went up: the units are intermediate build products.
    assert_eq!(
        (
            nix["closure_outputs"].as_u64(),
            nix["closure_present"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(
        markdown.contains("| fixture-c-dag | 1 | 1 | 0 | 0 | 0 | 100% | 1 of 3 |"),
        "{markdown}"
    );

    // Without the top's narinfo a warm build builds it, and so needs (and builds) both units.
    for narinfo in std::fs::read_dir(server.root().join("nix"))
        .unwrap()
        .flatten()
    {
        if narinfo.path().extension().is_some_and(|e| e == "narinfo") {
            std::fs::remove_file(narinfo.path()).unwrap();
        }
    }
    let gone = tmp.path().join("gone.json");
    run_ok(coverage("fixture-c-dag", &url, &key, &gone).args(TINY));
    let nix = &read_json(&gone)["repos"][0]["nix"];
    assert_eq!(
        (nix["needed"].as_u64(), nix["missing"].as_u64()),
        (Some(3), Some(3)),
        "{nix}"
    );
    assert_eq!(nix["percent"], 0.0);
    assert_eq!(names(nix), ["c-dag-2", "unit0", "unit1"]);
    let paths = nix["shape"]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 3);
    assert!(
        paths
            .iter()
            .all(|p| p["source"] == "missing" && p.get("nar_size").is_none()),
        "{paths:?}"
    );
    for m in nix["missing_paths"].as_array().unwrap() {
        let (path, drv) = (
            m["path"].as_str().unwrap(),
            m["derivation"].as_str().unwrap(),
        );
        assert!(
            path.starts_with("/nix/store/") && drv.ends_with(".drv"),
            "{m}"
        );
    }
}

#[test]
fn a_partly_deleted_closure_names_exactly_what_a_warm_build_would_build() {
    require_tools(&["nix", "nginx"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = nginx(&tmp.path().join("www"));
    let (url, key, secret) = nginx_cache(&server, tmp.path());
    let expr = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nix/closure/refs.nix"),
    )
    .unwrap();
    let repo = temp_repo("closure", &expr);
    let repo_arg = repo.path().to_str().unwrap();
    run_ok(
        bin()
            .current_dir(repo_root())
            .args([
                "run",
                "--repo",
                repo_arg,
                "--system",
                "nix",
                "--scenario",
                "warm",
            ])
            .args(["--samples", "1", "--warmups", "0"])
            .args(["--nix-cache", &url, "--nix-cache-public-key", &key])
            .arg("--nix-cache-secret-key")
            .arg(&secret)
            .arg("--output")
            .arg(tmp.path().join("fill.json")),
    );
    // refs-lib's narinfo gone: refs-app is still fetched, refs-lib built (from refs-data,
    // which the cache has).
    let lib = std::fs::read_dir(server.root().join("nix"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "narinfo")
                && std::fs::read_to_string(p).unwrap().contains("-refs-lib\n")
        })
        .expect("refs-lib was uploaded");
    std::fs::remove_file(lib).unwrap();
    let output = tmp.path().join("cov.json");
    run_ok(&mut coverage(repo_arg, &url, &key, &output));
    let nix = &read_json(&output)["repos"][0]["nix"];
    assert_eq!(
        (
            nix["needed"].as_u64(),
            nix["present"].as_u64(),
            nix["missing"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{nix}"
    );
    assert_eq!(names(nix), ["refs-lib"]);
}

#[test]
fn asks_attic_with_the_pull_token_and_refuses_a_bad_one() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let server = AtticServer::start(&tmp.path().join("attic"));
    let token = server.token(&[(
        "main",
        Grant {
            pull: true,
            push: false,
        },
    )]);
    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.attic.nix]\nbackend = \"attic\"\nendpoint = \"{}\"\ncache = \"main\"\npublic_key = \"{}\"\ntoken_env = \"COVERAGE_TOKEN\"\n",
            server.endpoint(),
            server.public_key("main")
        ),
    )
    .unwrap();
    let run = |token: &str| {
        bin()
            .current_dir(repo_root())
            .args([
                "coverage",
                "--repo",
                "fixture-c-dag",
                "--param",
                "size=2",
                "--profile",
                "attic",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(tmp.path().join("cov.json"))
            .env("COVERAGE_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = run(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nix = &read_json(&tmp.path().join("cov.json"))["repos"][0]["nix"];
    assert_eq!(
        (nix["needed"].as_u64(), nix["missing"].as_u64()),
        (Some(3), Some(3)),
        "an empty cache: {nix}"
    );
    assert!(
        server.counts(|c| c
            .log
            .iter()
            .filter(|l| l.contains(".narinfo -> 404"))
            .count())
            >= 3,
        "the narinfos were asked with the token"
    );
    let out = run("not-a-token");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be read") && err.contains("401") && err.contains("may not pull"),
        "{err}"
    );
    assert!(!err.contains(&token) && !String::from_utf8_lossy(&out.stdout).contains(&token));
}

#[test]
fn a_bazel_4_log_has_no_action_digests_and_the_report_says_so() {
    require_tools(&["nix"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bazel/warm.exec.json");
    let output = tmp.path().join("cov.json");
    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args(["coverage", "--repo", "fixture-cc", "--bazel-exec-log"])
            .arg(&log)
            .arg("--output")
            .arg(&output),
    );
    let bazel = &read_json(&output)["repos"][0]["bazel"];
    assert_eq!(bazel["measured"], false);
    assert!(
        bazel["reason"]
            .as_str()
            .unwrap()
            .contains("no action digests"),
        "{bazel}"
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("fixture-cc: not measured: the execution log"));
}
