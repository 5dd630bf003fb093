//! The upstream layer: a cache present in every build, cold ones included (as
//! cache.nixos.org is for a real flake), apart from the team cache that warm builds read.
//! Offline: a second nginx serves a "toolchain" layer of fixture-c-dag's derivations.

mod common;

use common::*;

#[test]
fn cold_substitutes_only_from_upstream_and_warm_takes_the_repo_from_the_team_cache() {
    require_tools(&["nix", "nginx", "gcc"]);
    let nix_before = host_nix_snapshot();
    let tmp = tempfile::tempdir().unwrap();
    let upstream = nginx(&tmp.path().join("nginx"));
    std::fs::create_dir_all(upstream.root().join("up")).unwrap();
    std::fs::write(
        upstream.root().join("up/nix-cache-info"),
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n",
    )
    .unwrap();
    let up_url = upstream.url("up");
    let (secret, public) = signing_key(tmp.path(), "upstream-test");

    // The toolchain (two layers), built privately and pushed to the upstream cache.
    let fixture = repo_root().join("bench-repos/fixture-c-dag/default.nix");
    let built = tmp.path().join("prebuilt");
    let params = [
        "--arg",
        "size",
        "2",
        "--arg",
        "work",
        "5",
        "--arg",
        "toolchain",
        "2",
    ];
    let json = private_nix(
        &built,
        &[
            &["build", "-f", fixture.to_str().unwrap()][..],
            &params,
            &["toolchain", "--no-link", "--json"],
        ]
        .concat(),
    );
    let toolchain: serde_json::Value = serde_json::from_str(&json).unwrap();
    let toolchain = toolchain[0]["outputs"]["out"].as_str().unwrap().to_string();
    let to = format!("{up_url}?secret-key={}", secret.display());
    private_nix(&built, &["copy", "--to", &to, &toolchain]);
    remove_private_nix(&built);

    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[profiles.up.nix]\nupstream = [{{ url = \"{up_url}\", public_key = \"{public}\" }}]\n"
        ),
    )
    .unwrap();
    let output = tmp.path().join("results.json");
    run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--repo", "fixture-c-dag", "--system", "nix"])
            .args([
                "--param",
                "size=2",
                "--param",
                "work=5",
                "--param",
                "toolchain=2",
            ])
            .args([
                "--scenario",
                "cold",
                "--scenario",
                "warm",
                "--verdicts",
                "warn",
            ])
            .args([
                "--samples",
                "1",
                "--warmups",
                "0",
                "--profile",
                "up",
                "--config",
            ])
            .arg(&config)
            .arg("--output")
            .arg(&output),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let up_key = up_url.as_str();
    let cold = &case(&results, "cold")["samples"][0];
    assert_eq!(case(&results, "cold")["outcome"], "ok", "{results}");
    assert_eq!(cold["built"], 3, "two compile steps and a link: {cold}");
    assert_eq!(cold["substituted"], 2, "the two toolchain layers: {cold}");
    assert_eq!(cold["by_source"][up_key]["substituted"], 2, "{cold}");
    assert!(
        cold["by_source"][up_key]["downloaded_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(cold["from_team_cache"], 0, "{cold}");

    let warm = &case(&results, "warm")["samples"][0];
    assert_eq!(warm["built"], 0, "{warm}");
    assert!(warm["from_team_cache"].as_u64().unwrap() > 0, "{warm}");
    let team = case(&results, "warm")["cache"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        warm["by_source"][team.as_str()]["substituted"]
            .as_u64()
            .unwrap()
            > 0,
        "{warm}"
    );
    assert!(
        warm["by_source"]
            .get(up_key)
            .is_none_or(|s| s["substituted"] == 0),
        "the repo's paths come from the team cache: {warm}"
    );
    assert_eq!(case(&results, "cold")["tool"]["upstream"][0], up_key);
    assert_eq!(host_nix_snapshot(), nix_before, "the host's /nix changed");
}
