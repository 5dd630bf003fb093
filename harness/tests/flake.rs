//! The flake as users run it, checked as far as a machine without nixpkgs allows: a lock
//! that Nix accepts as locked and that matches flake.nix, nixos-tests/ against what the
//! pinned nix-vm-test offers, and every .nix file parsed and evaluated under Nix 2.8 (the
//! host's) and Nix 2.26 (the Debian 13 root's), without writing either /nix.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::debian13::{Debian13, GUEST_REPO};
use common::*;
use serde_json::{json, Value};

const RECORDED_IMAGES: &str = "nix-vm-test-images.json";
const EVAL_STUB: &str = "harness/tests/fixtures/flake/nixos-tests-eval.nix";

/// What is wrong with `lock` (flake.lock) for a flake whose `inputs` are `flake_inputs`
/// (flake.nix's `inputs`, as JSON): every input needs a node; every github node a complete
/// lock (Nix treats one without narHash or lastModified as unlocked and rewrites or refuses
/// it); `follows` and the original references must agree with flake.nix.
fn lock_problems(lock: &Value, flake_inputs: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if lock["version"] != 7 {
        problems.push(format!("lock version {} (Nix writes 7)", lock["version"]));
    }
    let nodes = lock["nodes"].as_object().cloned().unwrap_or_default();
    let root_name = lock["root"].as_str().unwrap_or("root");
    let root_inputs = nodes
        .get(root_name)
        .and_then(|r| r["inputs"].as_object())
        .cloned()
        .unwrap_or_default();
    let inputs = flake_inputs.as_object().cloned().unwrap_or_default();
    for name in inputs.keys() {
        if !root_inputs.contains_key(name) {
            problems.push(format!(
                "flake.nix input `{name}` has no entry in the lock's root"
            ));
        }
    }
    for name in root_inputs.keys() {
        if !inputs.contains_key(name) {
            problems.push(format!(
                "the lock's root has `{name}`, which flake.nix does not declare"
            ));
        }
    }
    for (name, spec) in &inputs {
        let Some(node_name) = root_inputs.get(name).and_then(Value::as_str) else {
            continue;
        };
        let Some(node) = nodes.get(node_name) else {
            problems.push(format!(
                "input `{name}` points at a missing node `{node_name}`"
            ));
            continue;
        };
        if let Some(url) = spec["url"].as_str() {
            problems.extend(original_problems(name, url, &node["original"]));
        }
        let follows: BTreeMap<&str, &str> = spec["inputs"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v["follows"].as_str()?)))
            .collect();
        for (input, target) in &follows {
            if node["inputs"][*input] != json!([target]) {
                problems.push(format!(
                    "flake.nix makes `{name}/{input}` follow `{target}`, the lock has {}",
                    node["inputs"][*input]
                ));
            }
        }
        for (input, target) in node["inputs"].as_object().into_iter().flatten() {
            let followed = follows.contains_key(input.as_str());
            match target.as_str() {
                Some(target) if followed => problems.push(format!(
                    "flake.nix makes `{name}/{input}` follow another input, the lock pins it separately as `{target}`"
                )),
                Some(target) if !nodes.contains_key(target) => {
                    problems.push(format!("`{name}/{input}` points at a missing node `{target}`"))
                }
                Some(_) => {}
                // A list is a `follows` path; this flake's own inputs declare none.
                None if !followed => problems.push(format!(
                    "the lock makes `{name}/{input}` follow {target}, flake.nix does not"
                )),
                None => {}
            }
        }
    }
    for (node_name, node) in &nodes {
        if node_name != root_name && node["locked"]["type"] == "github" {
            problems.extend(github_lock_problems(node_name, &node["locked"]));
        }
    }
    problems
}

/// A github node needs owner, repo, a commit, its NAR hash and its commit time.
fn github_lock_problems(node_name: &str, locked: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for field in ["owner", "repo"] {
        if !locked[field].is_string() {
            problems.push(format!("{node_name}: no {field}"));
        }
    }
    match locked["rev"].as_str() {
        Some(rev) if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) => {}
        other => problems.push(format!(
            "{node_name}: rev {other:?} is not a full commit hash"
        )),
    }
    match locked["narHash"].as_str() {
        Some(hash) if is_sri_sha256(hash) => {}
        Some(hash) => problems.push(format!("{node_name}: narHash {hash} is not an SRI sha256")),
        None => problems.push(format!(
            "{node_name}: no narHash, so Nix treats the input as unlocked"
        )),
    }
    if locked["lastModified"].as_u64().is_none_or(|t| t == 0) {
        problems.push(format!(
            "{node_name}: no lastModified, so Nix treats the input as unlocked"
        ));
    }
    problems
}

/// `sha256-` and the base64 of 32 bytes.
fn is_sri_sha256(hash: &str) -> bool {
    hash.strip_prefix("sha256-").is_some_and(|b64| {
        b64.len() == 44
            && b64.ends_with('=')
            && !b64.ends_with("==")
            && b64[..43]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

/// `github:owner/repo[/ref]` against the lock node's `original`.
fn original_problems(name: &str, url: &str, original: &Value) -> Vec<String> {
    let Some(path) = url.strip_prefix("github:") else {
        return vec![format!(
            "input `{name}`: {url} is not a github: URL; check its lock entry by hand"
        )];
    };
    let mut parts = path.splitn(3, '/');
    let expected = json!({
        "type": "github",
        "owner": parts.next(),
        "repo": parts.next(),
        "ref": parts.next(),
    });
    ["type", "owner", "repo", "ref"]
        .into_iter()
        .filter(|f| original[*f] != expected[*f])
        .map(|f| {
            format!(
                "input `{name}`: flake.nix says {f} {}, the lock's original {}",
                expected[f], original[f]
            )
        })
        .collect()
}

/// Each `distro = version` that nixos-tests/ uses and the recorded nix-vm-test lacks.
fn image_problems(uses: &Value, recorded: &Value) -> Vec<String> {
    let rev = recorded["rev"].as_str().unwrap_or("?");
    uses.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(distro, version)| {
            let offered = recorded["images"][distro].as_array();
            let has = offered.is_some_and(|versions| versions.contains(version));
            (!has).then(|| {
                let offered = offered
                    .map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| "no such distro".into());
                format!(
                    "nixos-tests uses {distro} {}, which nix-vm-test {rev} does not have ({distro}: {offered})",
                    version.as_str().unwrap_or("?")
                )
            })
        })
        .collect()
}

/// Runs a command on the host (Nix 2.8) or in the Debian 13 root (Nix 2.26), with the
/// repository as the current folder.
enum NixHost {
    Host,
    Debian13(Debian13),
}

impl NixHost {
    fn run(&self, program: &str, args: &[&str]) -> Output {
        match self {
            NixHost::Host => Command::new(program)
                .args(args)
                .current_dir(repo_root())
                .output()
                .unwrap_or_else(|e| panic!("{program}: {e}")),
            NixHost::Debian13(root) => root.clone().chdir(GUEST_REPO).output(program, args),
        }
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({:?}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `nix-instantiate --eval --strict --json` on a dummy store, so /nix is never opened.
    fn eval_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--store", "dummy://", "--eval", "--strict", "--json"];
        all.extend_from_slice(args);
        let text = self.run_ok("nix-instantiate", &all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }
}

impl NixHost {
    /// nixos-tests/ evaluated against the recorded nix-vm-test (`attr`: one attribute of it).
    fn eval_nixos_tests(&self, attr: Option<&str>) -> Value {
        let recorded = format!("./{RECORDED_IMAGES}");
        let mut args = vec![EVAL_STUB, "--arg", "nixosTests", "./nixos-tests"];
        args.extend(["--arg", "recorded", &recorded]);
        if let Some(attr) = attr {
            args.extend(["-A", attr]);
        }
        self.eval_json(&args)
    }

    /// flake.lock against flake.nix's inputs as this Nix evaluates them.
    fn assert_lock_matches_flake(&self) {
        let inputs = self.eval_json(&["--expr", "(import ./flake.nix).inputs"]);
        let lock = read_json(&repo_root().join("flake.lock"));
        let problems = lock_problems(&lock, &inputs);
        assert!(problems.is_empty(), "flake.lock: {}", problems.join("\n"));
    }
}

/// Every .nix file of the repository (build outputs and git's folder aside).
fn nix_files() -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == ".git" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "nix") {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let root = repo_root().canonicalize().unwrap();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

/// The NixOS test driver runs test scripts as Python: a syntax error would fail on the runner.
fn assert_python_parses(name: &str, script: &str) {
    require_tools(&["python3"]);
    let mut child = Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name}'s test script is not valid Python:\n{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parses every .nix file, evaluates flake.nix's inputs against the lock and nixos-tests/
/// against the recorded nix-vm-test (its test scripts must be valid Python); returns the Nix
/// version that did it.
fn check_every_nix_file(nix: &NixHost) -> String {
    let files = nix_files();
    for expected in [
        "flake.nix",
        "nixos-tests/default.nix",
        "bench-repos/fixture-c-dag/flake.nix",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} not found in {files:?}"
        );
    }
    for file in &files {
        nix.run_ok("nix-instantiate", &["--store", "dummy://", "--parse", file]);
    }
    nix.assert_lock_matches_flake();
    let eval = nix.eval_nixos_tests(None);
    for output in ["drivers", "checks"] {
        let scripts = eval[output].as_object().unwrap();
        assert_eq!(scripts.len(), 3, "{output}: {scripts:?}");
        for (name, script) in scripts {
            assert_python_parses(name, script.as_str().unwrap());
        }
    }
    nix.run_ok("nix-instantiate", &["--version"])
        .trim()
        .to_string()
}

#[test]
fn the_lock_pins_every_input_completely_and_matches_flake_nix() {
    require_tools(&["nix-instantiate"]);
    NixHost::Host.assert_lock_matches_flake();
    let lock = read_json(&repo_root().join("flake.lock"));
    assert_eq!(
        lock["nodes"]["nix-vm-test"]["locked"]["rev"],
        read_json(&repo_root().join(RECORDED_IMAGES))["rev"],
        "{RECORDED_IMAGES} must describe the nix-vm-test commit the lock pins"
    );
}

#[test]
fn the_previous_lock_is_refused_for_its_unlocked_nix_vm_test() {
    let lock = read_json(&repo_root().join("harness/tests/fixtures/flake/flake.lock.c529e71"));
    // flake.nix's inputs at that commit.
    let inputs = json!({
        "nixpkgs": { "url": "github:nixos/nixpkgs/nixos-25.05" },
        "nix-vm-test": { "url": "github:numtide/nix-vm-test", "inputs": { "nixpkgs": { "follows": "nixpkgs" } } },
    });
    let problems = lock_problems(&lock, &inputs);
    assert_eq!(
        problems,
        [
            "nix-vm-test: no narHash, so Nix treats the input as unlocked",
            "nix-vm-test: no lastModified, so Nix treats the input as unlocked",
        ]
    );
    // And the current flake.nix no longer follows nixpkgs, which the old lock still says.
    let current = json!({
        "nixpkgs": { "url": "github:nixos/nixpkgs/nixos-25.05" },
        "nix-vm-test": { "url": "github:numtide/nix-vm-test" },
    });
    let problems = lock_problems(&lock, &current).join("\n");
    assert!(
        problems.contains(
            "the lock makes `nix-vm-test/nixpkgs` follow [\"nixpkgs\"], flake.nix does not"
        ),
        "{problems}"
    );
}

#[test]
fn lock_checks_name_what_is_wrong() {
    let mut lock = read_json(&repo_root().join("flake.lock"));
    lock["nodes"]["nixpkgs"]["locked"]["narHash"] = json!("sha256-short=");
    lock["nodes"]["nixpkgs"]["locked"]["rev"] = json!("1f08a4df");
    lock["nodes"]["nixpkgs"]["original"]["ref"] = json!("nixos-24.11");
    let inputs = json!({
        "nixpkgs": { "url": "github:nixos/nixpkgs/nixos-25.05" },
        "nix-vm-test": { "url": "github:numtide/nix-vm-test" },
        "extra": { "url": "github:a/b" },
    });
    let problems = lock_problems(&lock, &inputs).join("\n");
    for expected in [
        "input `extra` has no entry",
        "says ref \"nixos-25.05\", the lock's original \"nixos-24.11\"",
        "nixpkgs: rev Some(\"1f08a4df\") is not a full commit hash",
        "nixpkgs: narHash sha256-short= is not an SRI sha256",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

#[test]
fn nixos_tests_use_only_images_the_pinned_nix_vm_test_has() {
    require_tools(&["nix-instantiate"]);
    let uses = NixHost::Host.eval_nixos_tests(Some("images"));
    assert_eq!(
        uses,
        json!({ "debian": "12", "rocky": "10_1", "ubuntu": "24_04" })
    );
    let recorded = read_json(&repo_root().join(RECORDED_IMAGES));
    let problems = image_problems(&uses, &recorded);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The commit pinned before had neither Rocky nor Ubuntu 24.04.
    let previous = read_json(
        &repo_root().join("harness/tests/fixtures/flake/nix-vm-test-images-0dfdb457.json"),
    );
    assert_eq!(
        image_problems(&uses, &previous),
        [
            "nixos-tests uses rocky 10_1, which nix-vm-test 0dfdb457fd8c415da4cb9d3355246189413b9a3c does not have (rocky: no such distro)",
            "nixos-tests uses ubuntu 24_04, which nix-vm-test 0dfdb457fd8c415da4cb9d3355246189413b9a3c does not have (ubuntu: 20_04 22_04 22_10 23_04 23_10)",
        ]
    );
}

#[test]
fn every_nix_file_checks_under_nix_2_8_without_touching_the_host_store() {
    require_tools(&["nix-instantiate"]);
    let before = host_nix_snapshot();
    let version = check_every_nix_file(&NixHost::Host);
    assert!(version.contains("2.8"), "{version}");
    assert_eq!(host_nix_snapshot(), before, "the host's /nix changed");
}

#[test]
fn every_nix_file_checks_under_nix_2_26_in_the_debian_13_root() {
    let root = Debian13::new();
    let root_nix = Debian13::root_dir().join("nix");
    let before_host = host_nix_snapshot();
    let version = check_every_nix_file(&NixHost::Debian13(root.clone()));
    assert!(version.contains("2.26"), "{version}");
    // Nix 2.26 also confirms the lock matches flake.nix, offline, in a store on the root's
    // tmpfs: it refuses a flake that needs lock changes with --no-update-lock-file.
    let script = "set -e; mkdir -p /tmp/flake /tmp/conf; cp flake.nix flake.lock /tmp/flake/; \
        printf 'build-users-group =\\nexperimental-features = nix-command flakes\\nsubstituters =\\n' > /tmp/conf/nix.conf; \
        NIX_CONF_DIR=/tmp/conf XDG_CACHE_HOME=/tmp/cache nix flake lock --offline --no-update-lock-file --store /tmp/store path:/tmp/flake";
    NixHost::Debian13(root).run_ok("sh", &["-c", script]);
    assert!(!root_nix.exists(), "{} appeared", root_nix.display());
    assert_eq!(host_nix_snapshot(), before_host, "the host's /nix changed");
}

const TOOLCHAIN_RECORD: &str = "flake-toolchain.json";

/// What disagrees between flake.lock's nixpkgs, the record of the rustc that nixpkgs ships
/// (flake-toolchain.json) and the crate's `rust-version`, each with what to update.
fn toolchain_problems(lock: &Value, record: &Value, rust_version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let locked = lock["nodes"]["nixpkgs"]["locked"]["rev"]
        .as_str()
        .unwrap_or("?");
    let recorded = record["nixpkgs_rev"].as_str().unwrap_or("?");
    let rustc = record["rustc"].as_str().unwrap_or("?");
    if recorded != locked {
        problems.push(format!(
            "{TOOLCHAIN_RECORD} describes nixpkgs {recorded}, but flake.lock pins {locked}: \
             read the rustc that {locked} ships (pkgs/development/compilers/rust/, the release's \
             default rustPackages) into {TOOLCHAIN_RECORD} with the file and commit it came from"
        ));
    }
    if record["read_from"]["commit"] != record["nixpkgs_rev"] {
        problems.push(format!(
            "{TOOLCHAIN_RECORD}: read_from.commit {} is not the recorded nixpkgs {recorded}",
            record["read_from"]["commit"]
        ));
    }
    if rust_version != rustc {
        problems.push(format!(
            "harness/Cargo.toml has rust-version = \"{rust_version}\", but nixpkgs {recorded} ships \
             rustc {rustc}: set rust-version = \"{rustc}\" and make `scripts/check-pinned-rust` \
             pass (it builds and tests with cargo +{rustc})"
        ));
    }
    problems
}

fn crate_rust_version() -> String {
    let text = std::fs::read_to_string(repo_root().join("harness/Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&text).unwrap();
    manifest["package"]["rust-version"]
        .as_str()
        .expect("harness/Cargo.toml declares rust-version")
        .to_string()
}

#[test]
fn the_crate_declares_the_rustc_of_the_pinned_nixpkgs() {
    let lock = read_json(&repo_root().join("flake.lock"));
    let record = read_json(&repo_root().join(TOOLCHAIN_RECORD));
    let problems = toolchain_problems(&lock, &record, &crate_rust_version());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_toolchain_record_that_disagrees_names_what_to_update() {
    let lock = read_json(&repo_root().join("flake.lock"));
    let mut record = read_json(&repo_root().join(TOOLCHAIN_RECORD));
    record["nixpkgs_rev"] = json!("0000000000000000000000000000000000000000");
    record["rustc"] = json!("1.91.1");
    let problems = toolchain_problems(&lock, &record, &crate_rust_version());
    let rev = lock["nodes"]["nixpkgs"]["locked"]["rev"].as_str().unwrap();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains(&format!("but flake.lock pins {rev}")),
        "{}",
        problems[0]
    );
    assert!(problems[1].contains("read_from.commit"), "{}", problems[1]);
    assert!(
        problems[2].contains("ships rustc 1.91.1: set rust-version = \"1.91.1\""),
        "{}",
        problems[2]
    );
}
