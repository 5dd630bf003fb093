//! End to end: a run stopped by SIGTERM or SIGHUP cleans up like Ctrl-C, and what a
//! SIGKILLed run leaves (scratch folders, a Bazel server) goes at the next run or `clean`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Waits until `ready` holds, failing the test after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// What is left in the work folder.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Whatever a failed test left in `work` is cleaned when the test ends.
struct SweepOnDrop(PathBuf);

impl Drop for SweepOnDrop {
    fn drop(&mut self) {
        let _ = bin()
            .arg("clean")
            .arg("--work-dir")
            .arg(&self.0)
            .stdout(Stdio::null())
            .output();
    }
}

/// A quick Nix case, then one whose builder sleeps (`sleep SECONDS`, a marker no other
/// process has), run cold in `work`; returns once the quick case is written and the slow
/// build runs.
fn start_nix_run(
    work: &Path,
    output: &Path,
    sleep_marker: &str,
) -> (Child, [tempfile::TempDir; 2]) {
    require_tools(&["nix"]);
    let quick = temp_repo("quick", &derivation("quick", "echo ok > $out"));
    let slow = temp_repo(
        "slow",
        &derivation("slow", &format!("{sleep_marker}; echo ok > $out")),
    );
    let child = cold_run(&[quick.path(), slow.path()], 1, output)
        .arg("--work-dir")
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the quick case and the slow build",
        Duration::from_secs(120),
        || {
            std::fs::read_to_string(output)
                .unwrap_or_default()
                .contains("\"quick\"")
                && !processes_mentioning(sleep_marker).is_empty()
        },
    );
    (child, [quick, slow])
}

fn stops_cleanly_on(signal_number: i32, exit_code: i32, sleep_marker: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let _sweep = SweepOnDrop(work.clone());
    let output = tmp.path().join("results.json");
    let (mut child, _repos) = start_nix_run(&work, &output, sleep_marker);
    signal(&child, signal_number);
    let signalled_at = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        signalled_at.elapsed() < Duration::from_secs(30),
        "took too long to stop"
    );
    assert_eq!(status.code(), Some(exit_code));

    let results = read_json(&output);
    assert_valid_results(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases[0]["outcome"], "ok", "the finished case is kept");
    assert_eq!(cases[1]["outcome"], "failed");
    assert!(cases[1]["reason"]
        .as_str()
        .unwrap()
        .contains("interrupted by SIG"));
    assert_eq!(
        processes_mentioning(&work.to_string_lossy()),
        Vec::<String>::new()
    );
    assert_eq!(processes_mentioning(sleep_marker), Vec::<String>::new());
    assert_eq!(entries(&work), Vec::<PathBuf>::new(), "no temp folder left");
}

#[test]
fn sigterm_mid_build_exits_143_and_leaves_nothing() {
    stops_cleanly_on(libc::SIGTERM, 143, "sleep 3017");
}

#[test]
fn sighup_mid_build_exits_129_and_leaves_nothing() {
    stops_cleanly_on(libc::SIGHUP, 129, "sleep 3019");
}

#[test]
fn after_sigkill_the_build_dies_and_the_next_run_removes_the_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let _sweep = SweepOnDrop(work.clone());
    let output = tmp.path().join("results.json");
    let marker = "sleep 3023";
    let (mut child, repos) = start_nix_run(&work, &output, marker);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    // `nix build` dies with the harness (PR_SET_PDEATHSIG)...
    wait_for("nix build to die", Duration::from_secs(10), || {
        processes_mentioning(&work.to_string_lossy()).is_empty()
    });
    // ...its sandboxed builder (reparented to init, as Nix makes it) and the scratch
    // folder are left for the next run, which removes them first.
    assert_eq!(entries(&work).len(), 1, "{:?}", entries(&work));
    let out = run_ok(
        cold_run(&[repos[0].path()], 1, &tmp.path().join("next.json"))
            .arg("--work-dir")
            .arg(&work),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("flywheel-bench: removed "), "{stderr}");
    assert_eq!(entries(&work), Vec::<PathBuf>::new());
    assert_eq!(processes_mentioning(marker), Vec::<String>::new());
    assert_eq!(
        processes_mentioning(&work.to_string_lossy()),
        Vec::<String>::new()
    );
}

/// Bazel server pid files anywhere under `dir`.
fn server_pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.ends_with("server/server.pid.txt") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn clean_stops_the_bazel_server_of_a_sigkilled_run() {
    require_tools(&["bazel"]);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let _sweep = SweepOnDrop(work.clone());
    let mut child = bin()
        .current_dir(repo_root())
        .args(["run", "--repo", "fixture-cc", "--system", "bazel"])
        .args(["--scenario", "cold", "--samples", "1", "--warmups", "0"])
        .args(["--param", "size=2", "--work-dir"])
        .arg(&work)
        .arg("--output")
        .arg(tmp.path().join("results.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a Bazel server", Duration::from_secs(120), || {
        !server_pid_files(&work).is_empty()
    });
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let work_text = work.to_string_lossy().into_owned();
    // The server is a daemon of Bazel's client: it outlives the harness.
    let server: i32 = std::fs::read_to_string(&server_pid_files(&work)[0])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        Path::new(&format!("/proc/{server}")).exists(),
        "the server outlived the harness"
    );

    let out = run_ok(bin().arg("clean").arg("--work-dir").arg(&work));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("removed "), "{said}");
    assert!(said.contains(&server.to_string()), "{said}");
    assert_eq!(processes_mentioning(&work_text), Vec::<String>::new());
    assert_eq!(entries(&work), Vec::<PathBuf>::new());
    let again = run_ok(bin().arg("clean").arg("--work-dir").arg(&work));
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("nothing to clean"));
}
