//! Miss explanations from real builds: one Bazel action and one Nix derivation made to
//! miss on purpose, through the real drivers, tools and cache server.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use flywheel_bench::cache::EmbeddedCache;
use flywheel_bench::exec::process::{Executor, ProcessExecutor};
use flywheel_bench::plan::cache::{BazelCache, BazelEndpoint, Fill};
use flywheel_bench::plan::config::{BazelSetup, NixSetup};
use flywheel_bench::plan::{manifest, RepoManifest, Scenario};
use flywheel_bench::results::explain::{MissExplanations, MissReason};
use flywheel_bench::results::CacheBackend;
use flywheel_bench::tools::bazel::BazelDriver;
use flywheel_bench::tools::nix::NixDriver;
use flywheel_bench::tools::{
    BuildDriver, BuildMode, BuildReport, BuildState, CaseContext, Outputs, PreparedBuild,
};

fn case(repo: &RepoManifest, scenario: Scenario) -> CaseContext<'_> {
    CaseContext {
        repo,
        source: repo.source.local_path().unwrap(),
        scenario,
        timeout: Duration::from_secs(600),
        cache_via: None,
        explain: true,
    }
}

/// Runs one build through `driver`, with `env` added, and returns what its logs say and
/// its explanations.
fn build(
    driver: &mut dyn BuildDriver,
    case: &CaseContext,
    mode: BuildMode,
    dir: &Path,
    env: &[(&str, &str)],
) -> (PreparedBuild, BuildReport, Option<MissExplanations>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut build = driver.prepare(case, mode, dir).unwrap();
    build
        .spec
        .env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.into())));
    let outcome = ProcessExecutor.run(&build.spec).unwrap();
    assert!(
        outcome.success(),
        "{}",
        std::fs::read_to_string(&build.spec.stderr).unwrap_or_default()
    );
    let explain_misses = matches!(mode, BuildMode::FromCache { .. });
    let report = driver.inspect(&build, &outcome, explain_misses);
    let explained = report.explanations.clone();
    (build, report, explained)
}

/// The case's priming build, kept by the driver as its primed state; returns a copy of it
/// and its outputs.
fn prime(
    driver: &mut dyn BuildDriver,
    case: &CaseContext,
    dir: &Path,
    env: &[(&str, &str)],
) -> (PreparedBuild, Outputs) {
    let (primed, _, _) = build(driver, case, BuildMode::Prime, dir, env);
    let outputs = driver.outputs(&primed, &ProcessExecutor).unwrap();
    driver.keep_primed(case, primed.clone(), outputs.clone());
    (primed, outputs)
}

#[test]
fn a_bazel_action_whose_environment_changed_is_explained_by_the_variable() {
    require_tools(&["bazel", "nginx"]);
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("WORKSPACE"), "").unwrap();
    // The client's PLANTED reaches the action (--action_env applies to every action, so
    // the workspace has just the one).
    std::fs::write(ws.join(".bazelrc"), "build --action_env=PLANTED\n").unwrap();
    std::fs::write(
        ws.join("BUILD"),
        "genrule(name = \"planted\", outs = [\"planted.txt\"], cmd = \"echo $$PLANTED > $@\")\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("repo.toml"),
        "name = \"planted\"\ndescription = \"d\"\n[source]\npath = \".\"\n[bazel]\ntargets = [\"//...\"]\n",
    )
    .unwrap();
    let repo = manifest::load(&ws.join("repo.toml")).unwrap();
    let server = nginx(&tmp.path().join("nginx"));
    std::fs::create_dir_all(server.root().join("bazel")).unwrap();
    let cache = BazelCache {
        fill_root: None,
        backend: CacheBackend::EmbeddedNginx,
        endpoint: BazelEndpoint::Remote(server.url("bazel")),
        headers: Vec::new(),
        read_only: false,
    };
    let bazel = which::which("bazel").unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let version = flywheel_bench::tools::probe_all(&ProcessExecutor, &path)["bazel"]
        .version
        .clone();
    let setup = BazelSetup {
        version,
        ..BazelSetup::default()
    };
    let mut driver =
        BazelDriver::new(bazel, &tmp.path().join("driver"), Some(cache), &setup).unwrap();

    let warm = case(&repo, Scenario::Warm);
    prime(
        &mut driver,
        &warm,
        &tmp.path().join("p"),
        &[("PLANTED", "1")],
    );
    let mode = BuildMode::FromCache {
        tool_fallback: false,
    };
    let (sample, report, explained) = build(
        &mut driver,
        &warm,
        mode,
        &tmp.path().join("w"),
        &[("PLANTED", "2")],
    );
    assert!(report.time_split.is_some(), "read from --profile");
    driver.finish(&sample, &ProcessExecutor).unwrap();
    // `--explain off`: the harness asks for no trace profile (Bazel keeps its default).
    let plain = CaseContext {
        explain: false,
        ..warm
    };
    let (unexplained, report, _) = build(
        &mut driver,
        &plain,
        mode,
        &tmp.path().join("plain"),
        &[("PLANTED", "1")],
    );
    assert!(report.time_split.is_none());
    assert!(!unexplained
        .spec
        .args
        .iter()
        .any(|a| a.to_string_lossy().starts_with("--profile")));
    driver.finish(&unexplained, &ProcessExecutor).unwrap();
    drop(driver);

    let explained = explained.expect("one action missed");
    assert_eq!(explained.misses, 1, "{explained:?}");
    let miss = &explained.items[0];
    assert!(miss.item.ends_with("planted.txt"), "{miss:?}");
    assert_eq!(miss.reason, MissReason::EnvironmentDiffers);
    let diff = miss.differences.as_ref().unwrap();
    assert_eq!(diff.environment, vec!["PLANTED".to_string()]);
    drop(server);
    let left = || processes_mentioning(&tmp.path().to_string_lossy());
    for _ in 0..50 {
        if left().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        left(),
        Vec::<String>::new(),
        "a Bazel server or nginx survived"
    );
}

#[test]
fn a_nix_derivation_whose_narinfo_is_gone_is_the_one_explained_as_404() {
    require_tools(&["nix", "nginx", "gcc"]);
    let nix_before = host_nix_snapshot();
    let tmp = tempfile::tempdir().unwrap();
    let nix = which::which("nix").unwrap();
    let embedded =
        EmbeddedCache::start(&which::which("nginx").unwrap(), &tmp.path().join("cache")).unwrap();
    let cache = embedded
        .nix_cache(
            &nix,
            &ProcessExecutor,
            flywheel_bench::plan::Compression::default(),
        )
        .unwrap();
    let Fill::NixCopy {
        secret_key_file,
        compression,
    } = cache.fill.clone()
    else {
        unreachable!("the embedded cache is filled with nix copy")
    };
    let destination = cache.copy_destination(secret_key_file.as_deref(), compression);
    let root = cache
        .fill_root
        .clone()
        .expect("the embedded cache's folder");
    let mut repo =
        manifest::load(&repo_root().join("bench-repos/fixture-c-dag/repo.toml")).unwrap();
    manifest::apply_overrides(
        std::slice::from_mut(&mut repo),
        &[
            ("size".into(), flywheel_bench::plan::ParamValue::Int(3)),
            ("work".into(), flywheel_bench::plan::ParamValue::Int(5)),
        ],
    )
    .unwrap();
    let mut driver = NixDriver::new(
        nix,
        &tmp.path().join("driver"),
        Some(cache),
        NixSetup::default(),
    )
    .unwrap();
    let warm = case(&repo, Scenario::Warm);
    let (primed, outputs) = prime(&mut driver, &warm, &tmp.path().join("p"), &[]);
    let top = outputs
        .keys()
        .find(|p| p.ends_with("-c-dag-3"))
        .unwrap()
        .clone();
    let BuildState::Nix { store } = primed.state else {
        unreachable!()
    };
    driver.fill_cache(&warm, &ProcessExecutor).unwrap();
    // The harness fills the cache with the outputs' runtime closure; this test puts every
    // unit in too, so that one deleted narinfo makes exactly one derivation miss.
    let copied = std::process::Command::new("nix")
        .args(["copy", "--all", "--store"])
        .arg(&store)
        .args(["--to", &destination])
        .envs(primed.spec.env)
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    // The top-level output's narinfo is deleted: Nix must build it, and substitutes
    // the units it needs for that.
    let hash = top
        .trim_start_matches("/nix/store/")
        .split('-')
        .next()
        .unwrap();
    let narinfo = root.join(format!("{hash}.narinfo"));
    std::fs::remove_file(&narinfo).unwrap();
    let mode = BuildMode::FromCache {
        tool_fallback: false,
    };
    let (_, report, explained) = build(&mut driver, &warm, mode, &tmp.path().join("w"), &[]);
    assert!(
        report.time_split.is_some(),
        "from the log lines' arrival times"
    );
    let explained = explained.expect("one derivation was built");
    assert_eq!(explained.misses, 1, "{explained:?}");
    let miss = &explained.items[0];
    assert!(miss.item.ends_with("-c-dag-3.drv"), "{miss:?}");
    assert_eq!(miss.reason, MissReason::NoNarinfo, "{miss:?}");
    assert!(miss.queried.contains(&top), "{miss:?}");
    for item in &explained.items {
        assert!(
            item.reason != MissReason::NotRequested || item.queried.is_empty(),
            "a queried derivation called not requested: {item:?}"
        );
    }
    // `--explain off`: the log's arrival times are not recorded.
    let plain = CaseContext {
        explain: false,
        ..warm
    };
    let (unexplained, report, _) = build(&mut driver, &plain, mode, &tmp.path().join("plain"), &[]);
    assert!(!unexplained.spec.stderr_times && report.time_split.is_none());
    drop(driver);
    drop(embedded);
    assert_eq!(host_nix_snapshot(), nix_before);
}
