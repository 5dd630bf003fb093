//! End to end with real Bazel and a real cache server: the embedded nginx over HTTP, and a
//! real REAPI server (BuildGrid) over gRPC.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs fixture-cc cold and warm (and noop) and checks the counters and the cleanup.
/// Returns the results and everything the harness printed.
fn bench_fixture_cc(
    scenarios: &[&str],
    configure: impl FnOnce(&mut Command),
) -> (serde_json::Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let source = repo_root().join("bench-repos/fixture-cc");
    let source_before = listing(&source);
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args(["run", "--repo", "fixture-cc", "--system", "bazel"])
        // A warm-up before each sample: were the workspace's own .bazelrc disk cache not
        // overridden, the warm-up would fill it and the cold sample would read it.
        .args(["--samples", "1", "--warmups", "1", "--param", "size=3"])
        // One sample gives a speedup no interval, so its verdict cannot pass: these tests
        // are about the builds, not verdicts (exit 5 is tested in nix_bench).
        .args(["--verdicts", "warn"])
        .args(scenarios.iter().flat_map(|s| ["--scenario", s]))
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work);
    configure(&mut cmd);
    let out = run_ok(&mut cmd);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results = read_json(&output);
    assert_valid_results(&results);

    let case = |scenario: &str| case(&results, scenario).clone();
    let cold = &case("cold")["samples"][0];
    let actions = cold["actions"].as_u64().unwrap();
    assert!(actions > 0, "{cold}");
    assert_eq!(cold["remote_cache_hits"], 0, "cold is cold: {cold}");
    assert_eq!(case("cold")["outcome"], "ok");
    assert!(
        !Path::new("/tmp/flywheel-fixture-cc-disk-cache").exists(),
        "the workspace's own disk cache was used"
    );
    // size 3: three compiled libraries plus the binary's main.
    assert_eq!(cold["by_mnemonic"]["CppCompile"]["actions"], 4, "{cold}");
    let warm = &case("warm")["samples"][0];
    assert_eq!(warm["actions"], actions, "{warm}");
    assert_eq!(
        warm["remote_cache_hits"], actions,
        "every cacheable action is a hit: {warm}"
    );
    assert!(warm["processes"].as_u64().unwrap() >= actions);
    assert!(
        warm.get("notes").is_none(),
        "console and execution log disagree: {warm}"
    );
    assert_eq!(results["comparisons"][0]["hit_ratio"], 1.0);
    for scenario in scenarios {
        assert_time_split_sums(&case(scenario)["samples"][0]);
    }
    assert!(
        warm["time_split"]["remote_cache_s"].as_f64().is_some(),
        "{warm}"
    );
    // The server does the work: its CPU time counts, of the order of the wall time on
    // 2 cores, not the client's few milliseconds; and every build has a peak memory.
    let cpu = cold["user_s"].as_f64().unwrap() + cold["sys_s"].as_f64().unwrap();
    let wall = cold["wall_s"].as_f64().unwrap();
    assert!(
        cpu > 0.3 * wall,
        "cold CPU {cpu:.2} s in {wall:.2} s: {cold}"
    );
    for case in results["cases"].as_array().unwrap() {
        for s in case["samples"].as_array().unwrap() {
            assert!(s["max_rss_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
            assert!(s["cpu_scope"].is_string(), "{s}");
        }
    }

    let work_dir = work.to_string_lossy().to_string();
    assert_eq!(
        processes_mentioning(&work_dir),
        Vec::<String>::new(),
        "a Bazel server or nginx survived"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary state left in {work_dir}"
    );
    assert_eq!(
        listing(&source),
        source_before,
        "the bench repo's source was written to"
    );
    (results, printed)
}

#[test]
fn cold_warm_noop_and_fill_against_the_embedded_http_cache() {
    require_tools(&["bazel", "nginx"]);
    let (results, _) = bench_fixture_cc(&["cold", "warm", "noop", "fill"], |_| {});
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases[1]["cache"]["backend"], "embedded-nginx");
    let noop = &cases[2]["samples"][0];
    assert_eq!(noop["remote_cache_hits"], 0, "{noop}");
    assert_eq!(noop["actions"], 0, "a no-op build runs nothing: {noop}");

    // Fill: a cold build that uploads everything it made to a fresh, empty cache.
    let fill = case(&results, "fill");
    assert_eq!(fill["outcome"], "ok", "{fill}");
    let cold = &case(&results, "cold")["samples"][0];
    let sample = &fill["samples"][0];
    assert_eq!(sample["actions"], cold["actions"], "{sample}");
    assert_eq!(sample["remote_cache_hits"], 0, "it read no cache: {sample}");
    let sent = &sample["fill"];
    assert_eq!(sent["method"], "bazel-upload", "{sample}");
    assert_eq!(sent["in_build"], true);
    assert_eq!(sent["wall_s"], 0.0, "Bazel uploads inside its own span");
    // Each compile and link result is an action-cache entry and CAS blobs.
    assert!(sent["uploaded_paths"].as_u64().unwrap() > 5, "{sent}");
    assert!(sent["stored_bytes"].as_u64().unwrap() > 1000, "{sent}");
    let row = &results["fills"][0];
    assert_eq!(row["repo"], "fixture-cc");
    assert_eq!(row["system"], "bazel");
    assert!(row["penalty"]["ratio"].as_f64().unwrap() > 0.0, "{row}");
    assert_eq!(row["fill_only_median_s"], 0.0);
}

/// A real REAPI cache server (BuildGrid, installed by scripts/setup), stopped when dropped.
struct BuildGrid {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl BuildGrid {
    fn bgd() -> PathBuf {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share")
            });
        let bgd = data.join("flywheel-bench/buildgrid/bin/bgd");
        assert!(
            bgd.is_file(),
            "{} is missing: run scripts/setup (it installs BuildGrid)",
            bgd.display()
        );
        bgd
    }

    fn start() -> BuildGrid {
        let bgd = Self::bgd();
        let template = std::fs::read_to_string(
            repo_root().join("harness/tests/fixtures/buildgrid/server.yml.template"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("server.yml");
            std::fs::write(&config, template.replace("{PORT}", &port.to_string())).unwrap();
            let pid_file = dir.path().join("bgd.pid");
            let mut child = Command::new(&bgd)
                .args(["server", "start", "--pid-file"])
                .arg(&pid_file)
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.path().join("bgd.log")).unwrap())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("bgd.err")).unwrap(),
                ))
                .spawn()
                .unwrap();
            // BuildGrid writes its pid file once the gRPC server is bound.
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty()) {
                    return BuildGrid {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // The port was taken (so_reuseport is off): try another.
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("bgd.err")).unwrap_or_default();
        panic!("BuildGrid did not start:\n{log}");
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cold_and_warm_against_a_real_grpc_cache_without_leaking_its_headers() {
    require_tools(&["bazel"]);
    let server = BuildGrid::start();
    let url = format!("grpc://127.0.0.1:{}", server.port);
    let secret = "flywheel-test-secret-7d1c";
    let (results, printed) = bench_fixture_cc(&["cold", "warm"], |cmd| {
        cmd.args(["--bazel-remote-cache", &url]).env(
            "FLYWHEEL_BAZEL_REMOTE_HEADERS",
            format!("x-flywheel-token={secret}"),
        );
    });
    let warm = &results["cases"][1];
    assert_eq!(warm["cache"]["backend"], "grpc");
    assert_eq!(warm["cache"]["url"], url.as_str());
    let file = serde_json::to_string(&results).unwrap();
    assert!(
        !file.contains(secret),
        "the header value reached the results file"
    );
    assert!(!printed.contains(secret), "the header value was printed");
}
