//! End to end: a cold Bazel build's CPU time counts its server (where the work happens),
//! through a cgroup or through the server's /proc counters, and every build has a peak
//! memory. The numbers are printed (`--nocapture`) as evidence.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flywheel_bench::exec::process::{
    BuildExecutor, CpuScope, Executor, ProcessExecutor, ProcessOutcome, ServerProbe,
};
use flywheel_bench::exec::scratch::ScratchDir;
use flywheel_bench::plan::config::BazelSetup;
use flywheel_bench::plan::{manifest, ParamValue, Scenario};
use flywheel_bench::tools::bazel::BazelDriver;
use flywheel_bench::tools::{BuildDriver, BuildMode, CaseContext};

/// One cold build of fixture-cc (size 2) through `exec`, its server probed when `probe`.
fn cold_build(exec: &dyn Executor, scratch: &Path, probe: bool) -> ProcessOutcome {
    let mut repo = manifest::load(&repo_root().join("bench-repos/fixture-cc/repo.toml")).unwrap();
    manifest::apply_overrides(
        std::slice::from_mut(&mut repo),
        &[("size".into(), ParamValue::Int(2))],
    )
    .unwrap();
    let source = repo.source.local_path().unwrap().to_path_buf();
    let bazel = which::which("bazel").unwrap();
    let setup = BazelSetup {
        version: "bazel 4.2.3".into(),
        ..BazelSetup::default()
    };
    let mut driver = BazelDriver::new(bazel, &scratch.join("bazel"), None, &setup).unwrap();
    let case = CaseContext {
        repo: &repo,
        source: &source,
        scenario: Scenario::Cold,
        timeout: Duration::from_secs(600),
        cache_via: None,
        explain: true,
    };
    let dir = scratch.join("build");
    std::fs::create_dir_all(&dir).unwrap();
    let build = driver.prepare(&case, BuildMode::Fresh, &dir).unwrap();
    let servers = if probe {
        driver.servers(&build)
    } else {
        ServerProbe::default()
    };
    let outcome = exec.run_with_servers(&build.spec, &servers).unwrap();
    driver.finish(&build, exec).unwrap();
    assert!(
        outcome.success(),
        "{}",
        std::fs::read_to_string(&build.spec.stderr).unwrap()
    );
    eprintln!(
        "{:<22} wall {:>6.2} s  user {:>6.2} s  sys {:>5.2} s  max_rss {:>6.1} MiB  server_max_rss {:>6.1} MiB",
        outcome.cpu_scope.name(),
        outcome.wall.as_secs_f64(),
        outcome.user.as_secs_f64(),
        outcome.sys.as_secs_f64(),
        outcome.max_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
        outcome.server_max_rss_bytes.unwrap_or(0) as f64 / 1048576.0,
    );
    outcome
}

fn cpu(o: &ProcessOutcome) -> f64 {
    (o.user + o.sys).as_secs_f64()
}

#[test]
fn a_cold_bazel_build_counts_its_server() {
    require_tools(&["bazel"]);
    let parent = tempfile::tempdir().unwrap();
    let scratch = ScratchDir::new_in(parent.path(), "flywheel-bench-").unwrap();

    let client_only = cold_build(&ProcessExecutor, &scratch.path().join("a"), false);
    assert_eq!(client_only.cpu_scope, CpuScope::Children);

    let probed = cold_build(&ProcessExecutor, &scratch.path().join("b"), true);
    assert_eq!(probed.cpu_scope, CpuScope::ChildrenAndServers);
    assert!(probed.server_max_rss_bytes.is_some());

    let exec = BuildExecutor::for_run(&scratch, None);
    let counted = cold_build(&exec, &scratch.path().join("c"), false);
    if let Some(note) = exec.accounting_note() {
        eprintln!("no cgroup here: {note}");
    } else {
        assert!(matches!(
            counted.cpu_scope,
            CpuScope::CgroupV1 | CpuScope::CgroupV2
        ));
        assert!(counted.server_max_rss_bytes.is_some());
    }

    for whole in [&probed, &counted] {
        // The server does the work: its CPU time is of the order of the wall time (2 cores),
        // not the client's few milliseconds.
        assert!(
            cpu(whole) > 0.3 * whole.wall.as_secs_f64() && cpu(whole) > 10.0 * cpu(&client_only),
            "whole build {:.2} s CPU in {:.2} s; client alone {:.3} s",
            cpu(whole),
            whole.wall.as_secs_f64(),
            cpu(&client_only)
        );
    }
    for outcome in [&client_only, &probed, &counted] {
        assert!(outcome.max_rss_bytes.is_some_and(|b| b > 1024 * 1024));
    }
}
