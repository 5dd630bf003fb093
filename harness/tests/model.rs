//! The scale model, round-tripped through real Nix: a shape becomes a bench repo
//! (`flywheel-bench model`), a real run builds it and fills the test's nginx cache, and
//! `coverage` of the model against that cache records the same shape: the same paths by
//! name, the same references, the same NAR sizes (to the NAR's 8-byte padding).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// A small closure: app -> {lib, data}, lib -> {libc, data}, tool -> libc (tool is no
/// root and nothing references it), libc from upstream, a self-reference on lib.
fn shape() -> serde_json::Value {
    let p = |name: &str| format!("/nix/store/{:0>32}-{name}", name.len());
    let node = |name: &str, size: u64, refs: &[&str], source: &str| {
        serde_json::json!({
            "name": name, "path": p(name), "nar_size": size,
            "references": refs.iter().map(|r| p(r)).collect::<Vec<_>>(), "source": source,
        })
    };
    serde_json::json!({
        "provenance": "the round-trip test's hand-written closure",
        "roots": [p("app")],
        "paths": [
            node("app", 40_960, &["lib", "data"], "team"),
            node("lib", 90_112, &["lib", "libc-2.40", "data"], "team"),
            node("data", 1_048_576, &[], "team"),
            node("libc-2.40", 300_032, &[], "upstream"),
            node("tool", 8_192, &["libc-2.40"], "team"),
        ]
    })
}

/// name -> (NAR size, sorted reference names), self-references left out.
fn by_name(shape: &serde_json::Value) -> BTreeMap<String, (u64, Vec<String>)> {
    let paths = shape["paths"].as_array().unwrap();
    let name_of: BTreeMap<&str, &str> = paths
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    paths
        .iter()
        .map(|p| {
            let me = p["path"].as_str().unwrap();
            let mut refs: Vec<String> = p["references"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .filter(|r| *r != me)
                .map(|r| name_of[r].to_string())
                .collect();
            refs.sort();
            (
                p["name"].as_str().unwrap().to_string(),
                (p["nar_size"].as_u64().unwrap(), refs),
            )
        })
        .collect()
}

#[test]
fn a_models_coverage_gives_back_the_shape_it_was_made_from() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("shape.json");
    std::fs::write(&input, shape().to_string()).unwrap();
    let model = tmp.path().join("model");
    let out = run_ok(
        bin()
            .arg("model")
            .arg(&input)
            .arg("-o")
            .arg(&model)
            .args(["--compressible", "0.3"]),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("5 paths, 5 references"), "{said}");

    // Fill a cache the way a run does: the priming build, then `nix copy` of its closure.
    let server = nginx(&tmp.path().join("www"));
    std::fs::create_dir_all(server.root().join("nix")).unwrap();
    std::fs::write(
        server.root().join("nix/nix-cache-info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n",
    )
    .unwrap();
    let (secret, key) = signing_key(tmp.path(), "model");
    let url = server.url("nix").to_string();
    let cache = ["--nix-cache", &url, "--nix-cache-public-key", &key];
    let results = tmp.path().join("warm.json");
    run_ok(
        bin()
            .current_dir(repo_root())
            .arg("run")
            .arg("--repo")
            .arg(&model)
            .args(["--system", "nix", "--scenario", "warm"])
            .args(["--samples", "1", "--warmups", "0", "--verdicts", "warn"])
            .args(cache)
            .arg("--nix-cache-secret-key")
            .arg(&secret)
            .arg("--output")
            .arg(&results),
    );
    // A warm build of the model substitutes the whole closure, as the original's would.
    let results = read_json(&results);
    let warm = &case(&results, "warm")["samples"][0];
    assert_eq!(
        (warm["built"].as_u64(), warm["substituted"].as_u64()),
        (Some(0), Some(5)),
        "{warm}"
    );

    let coverage = tmp.path().join("coverage.json");
    run_ok(
        bin()
            .current_dir(repo_root())
            .arg("coverage")
            .arg("--repo")
            .arg(&model)
            .args(cache)
            .arg("--output")
            .arg(&coverage),
    );
    let doc = read_json(&coverage);
    let recorded = &doc["repos"][0]["nix"]["shape"];
    assert!(
        recorded["paths"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["source"] == "team"),
        "{recorded}"
    );
    assert_eq!(
        recorded["roots"].as_array().unwrap().len(),
        2,
        "app and tool"
    );
    let (want, got) = (by_name(&shape()), by_name(recorded));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, (size, refs)) in &want {
        let (got_size, got_refs) = &got[name];
        assert_eq!(refs, got_refs, "{name}'s references");
        assert!(
            got_size.abs_diff(*size) <= 8,
            "{name}: NAR size {got_size}, the shape's {size}"
        );
    }

    // The recorded coverage makes a model of its own: the same files but the shape's
    // provenance, with the same nodes.
    let again = tmp.path().join("again");
    run_ok(bin().arg("model").arg(&coverage).arg("-o").arg(&again));
    let nodes = |dir: &Path| read_json(&dir.join("nodes.json"))["nodes"].clone();
    let strip = |n: serde_json::Value| -> Vec<(String, u64)> {
        n.as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_string(),
                    n["refs"].as_array().unwrap().len() as u64,
                )
            })
            .collect()
    };
    let mut a = strip(nodes(&model));
    let mut b = strip(nodes(&again));
    a.sort();
    b.sort();
    assert_eq!(a, b);
}
