//! The repository's own non-Rust files: the flake parses, the CI workflow lints clean.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

#[test]
fn the_flake_parses_without_touching_the_host_store() {
    require_tools(&["nix-instantiate"]);
    let before = host_nix_snapshot();
    for file in [
        "flake.nix",
        "bench-repos/fixture-c-dag/flake.nix",
        "nixos-tests/default.nix",
    ] {
        // The dummy store keeps nix-instantiate away from /nix.
        let out = Command::new("nix-instantiate")
            .args(["--store", "dummy://", "--parse"])
            .arg(repo_root().join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lock = read_json(&repo_root().join("flake.lock"));
    assert_eq!(lock["version"], 7);
    let nixpkgs = &lock["nodes"]["nixpkgs"]["locked"];
    assert_eq!(
        nixpkgs["rev"].as_str().unwrap().len(),
        40,
        "nixpkgs is pinned by commit"
    );
    assert!(nixpkgs["narHash"].as_str().unwrap().starts_with("sha256-"));
    let vm_test = &lock["nodes"]["nix-vm-test"]["locked"];
    assert_eq!(
        vm_test["rev"].as_str().unwrap().len(),
        40,
        "nix-vm-test is pinned by commit"
    );
    assert_eq!(host_nix_snapshot(), before);
}

#[test]
fn the_benchmark_workflow_lints_clean() {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share"));
    let actionlint = data.join("flywheel-bench/tools/bin/actionlint");
    assert!(
        actionlint.is_file(),
        "{} is missing: run scripts/setup",
        actionlint.display()
    );
    let out = Command::new(actionlint)
        .arg(".github/workflows/bench.yml")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
