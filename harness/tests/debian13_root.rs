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
