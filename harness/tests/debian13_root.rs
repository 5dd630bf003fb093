//! The Debian 13 root that scripts/setup builds: the harness runs there against Nix 2.26,
//! the root is read-only and its /tmp private, and nothing stays mounted on the host.

mod common;

use common::debian13::{Debian13, GUEST_HARNESS, GUEST_REPO};
use common::*;

fn host_mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_harness_runs_in_the_root_against_its_nix_and_leaves_nothing_mounted() {
    let root_dir = Debian13::root_dir();
    // doctor exits 3 here (the root has no Bazel or git), after listing what it found.
    let out = Debian13::new()
        .with_harness()
        .output(GUEST_HARNESS, &["doctor"]);
    let doctor = String::from_utf8_lossy(&out.stdout);
    assert!(doctor.contains("nix (Nix) 2.26"), "{doctor}");
    assert!(doctor.contains("/usr/sbin/nginx"), "{doctor}");
    // Read-only root and checkout, private writable /tmp.
    let probe = format!(
        "touch /etc/flywheel-probe 2>/dev/null && echo root-writable; \
         touch {GUEST_REPO}/flywheel-probe 2>/dev/null && echo repo-writable; \
         touch /tmp/probe && echo tmp-ok"
    );
    let out = run_ok(&mut Debian13::new().command("sh", &["-c", &probe]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tmp-ok\n");
    assert!(!repo_root().join("flywheel-probe").exists());
    let left = host_mounts_under(&root_dir);
    assert!(left.is_empty(), "still mounted on the host: {left:?}");
}

#[test]
fn nix_2_26_runs_every_kind_of_case_with_the_same_counters_as_nix_2_8() {
    let root_dir = Debian13::root_dir();
    let nix_before = nix_snapshot(&root_dir.join("nix"));
    let out_dir = tempfile::tempdir().unwrap();
    let scenarios = [
        "cold",
        "warm",
        "noop",
        "verify",
        "fallback:poison",
        "fallback:corrupt",
    ];
    let mut args: Vec<&str> = vec![
        "run",
        "--repo",
        "fixture-c-dag",
        "--system",
        "nix",
        "--samples",
        "1",
        "--warmups",
        "0",
        "--param",
        "size=2",
        "--param",
        "work=5",
        // One sample: no speedup interval, a verdict that cannot pass (exit 5 is tested in
        // nix_bench); this test compares counters.
        "--verdicts",
        "warn",
        "--output",
        "/out/results.json",
    ];
    for s in &scenarios {
        args.extend(["--scenario", s]);
    }
    let out = Debian13::new()
        .with_harness()
        .bind(out_dir.path(), "/out")
        .chdir(GUEST_REPO)
        .output(GUEST_HARNESS, &args);
    assert!(
        out.status.success(),
        "the run under Nix 2.26 failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read_json(&out_dir.path().join("results.json"));
    assert_valid_results(&results);
    for scenario in scenarios {
        let c = case(&results, scenario);
        assert_eq!(c["outcome"], "ok", "{c}");
        assert!(
            c["tool"]["version"].as_str().unwrap().contains("2.26"),
            "each case records the Nix version: {c}"
        );
    }
    // size 2: two compile steps and a link, as under Nix 2.8.
    let sample = |scenario: &str| case(&results, scenario)["samples"][0].clone();
    assert_eq!(
        (
            sample("cold")["built"].as_u64(),
            sample("cold")["substituted"].as_u64()
        ),
        (Some(3), Some(0))
    );
    assert_eq!(sample("warm")["built"], 0);
    assert!(sample("warm")["substituted"].as_u64().unwrap() > 0);
    assert_eq!(
        (
            sample("noop")["built"].as_u64(),
            sample("noop")["substituted"].as_u64()
        ),
        (Some(0), Some(0))
    );
    for scenario in ["verify", "fallback:corrupt"] {
        let v = &case(&results, scenario)["verification"];
        assert_eq!(v["mismatches"], serde_json::json!([]), "{scenario}: {v}");
        assert!(v["compared"].as_u64().unwrap() > 0, "{scenario}: {v}");
    }
    // The poisoned entry, signed with the cache's key, is taken; the clean builds agree
    // (their graphs from `nix derivation show -r` and 2.26's path-info objects): the
    // cache served a wrong output, first at fault the top derivation.
    assert_eq!(sample("fallback:poison")["substituted"], 1);
    let poisoned = &case(&results, "fallback:poison")["verification"];
    assert_eq!(
        poisoned["mismatches"][0]["class"], "wrong-from-cache",
        "{poisoned}"
    );
    let root = poisoned["roots"][0]["step"].as_str().unwrap();
    assert!(root.ends_with("-c-dag-2.drv"), "{poisoned}");
    assert_eq!(
        nix_snapshot(&root_dir.join("nix")),
        nix_before,
        "the root's /nix changed"
    );
    assert!(host_mounts_under(&root_dir).is_empty());
}
