//! Size sweeps end to end: how cold and warm grow with each fixture's size, fitted.

mod common;

use common::*;

fn sweep(repo: &str, system: &str, samples: &str, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args([
                "run",
                "--repo",
                repo,
                "--system",
                system,
                "--sweep",
                "size=2,4,8",
            ])
            .args(["--scenario", "cold", "--scenario", "warm", "--warmups", "0"])
            // The tests read the growth fits; a one-sample speedup verdict would fail.
            .args(["--verdicts", "warn"])
            .args(["--samples", samples])
            .args(extra)
            .arg("--output")
            .arg(&output),
    );
    let printed = String::from_utf8_lossy(&out.stderr);
    assert!(
        printed.contains("[size=4"),
        "sweep points are named: {printed}"
    );
    let html = tmp.path().join("report.html");
    run_ok(bin().arg("report").arg(&output).arg("--html").arg(&html));
    assert!(std::fs::read_to_string(&html).unwrap().contains("Growth"));
    let results = read_json(&output);
    assert_valid_results(&results);
    results
}

fn growth<'a>(results: &'a serde_json::Value, scenario: &str) -> &'a serde_json::Value {
    results["growth"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no {scenario} growth in {}", results["growth"]))
}

#[test]
fn nix_cold_grows_linearly_with_the_dag() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = sweep("fixture-c-dag", "nix", "3", &["--param", "work=60"]);
    let cold = growth(&results, "cold");
    assert_eq!(cold["parameter"], "size");
    let values: Vec<f64> = cold["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [2.0, 4.0, 8.0]);
    for point in cold["points"].as_array().unwrap() {
        assert!(point["median_s"].as_f64().unwrap() > 0.0, "{point}");
    }
    let r2 = cold["linear"]["r_squared"].as_f64().unwrap();
    assert!(
        r2 > 0.9,
        "cold should grow with the number of compile steps: {cold}"
    );
    assert!(cold["linear"]["slope"].as_f64().unwrap() > 0.0);
    assert!(cold["log_log"]["slope"].as_f64().is_some());
    // One comparison per point, each at its own parameters.
    assert_eq!(results["comparisons"].as_array().unwrap().len(), 3);
}

#[test]
fn bazel_sweeps_too() {
    require_tools(&["bazel", "nginx"]);
    let results = sweep("fixture-cc", "bazel", "1", &[]);
    let cold = growth(&results, "cold");
    assert_eq!(cold["points"].as_array().unwrap().len(), 3);
    assert!(cold["linear"]["slope"].as_f64().is_some(), "{cold}");
    assert_eq!(
        growth(&results, "warm")["points"].as_array().unwrap().len(),
        3
    );
}

/// A link sweep: cold and warm read directly once, warm through the proxy at each RTT.
fn link_sweep(repo: &str, system: &str, rtts: &str, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--repo", repo, "--system", system])
            .args(["--sweep", &format!("link.rtt_ms={rtts}")])
            .args(["--scenario", "cold", "--scenario", "warm", "--warmups", "0"])
            // The tests read the growth fits; a one-sample speedup verdict would fail.
            .args(["--verdicts", "warn"])
            .args(extra)
            .arg("--output")
            .arg(&output),
    );
    let html = tmp.path().join("report.html");
    run_ok(bin().arg("report").arg(&output).arg("--html").arg(&html));
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(
        html.contains("Link to the cache") && html.contains("cold (read directly)"),
        "the report shows the break-even and draws cold as a line"
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let scenarios: Vec<(&str, Option<u64>)> = results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["outcome"], "ok", "{c}");
            (
                c["scenario"].as_str().unwrap(),
                c["link"]["rtt_ms"].as_u64(),
            )
        })
        .collect();
    let points = rtts.split(',').count();
    assert_eq!(scenarios.iter().filter(|(s, _)| *s == "cold").count(), 1);
    assert_eq!(
        scenarios.iter().filter(|(_, l)| l.is_some()).count(),
        points,
        "{scenarios:?}"
    );
    assert!(
        scenarios.contains(&("warm", None)),
        "warm read directly too"
    );
    results
}

#[test]
fn nix_link_sweep_finds_where_the_cache_stops_paying() {
    require_tools(&["nix", "nginx", "gcc"]);
    let results = link_sweep(
        "fixture-c-dag",
        "nix",
        "0,40,120",
        &["--samples", "3", "--param", "size=4", "--param", "work=20"],
    );
    let warm = growth(&results, "warm");
    assert_eq!(warm["parameter"], "link.rtt_ms");
    let medians: Vec<f64> = warm["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["median_s"].as_f64().unwrap())
        .collect();
    // At least a handshake and a request, each one round trip of 120 ms.
    assert!(medians[2] > medians[0] + 0.2, "{medians:?}");
    let even = &warm["break_even"];
    assert!(even["level"].as_f64().unwrap() > 0.0, "{even}");
    assert!(even["at"].as_f64().unwrap() > 0.0, "{even}");
    assert!(
        even["ci_low"].as_f64().is_some(),
        "3 samples a point: {even}"
    );
    assert!(
        warm["proxy_cost"]["ratio"].as_f64().unwrap() > 0.0,
        "{warm}"
    );
}

#[test]
fn bazel_link_sweeps_too() {
    require_tools(&["bazel", "nginx"]);
    let results = link_sweep(
        "fixture-cc",
        "bazel",
        "0,100",
        &["--samples", "1", "--param", "size=4"],
    );
    let warm = growth(&results, "warm");
    assert_eq!(warm["points"].as_array().unwrap().len(), 2);
    assert!(warm["break_even"]["level"].as_f64().is_some(), "{warm}");
    for case in results["cases"].as_array().unwrap() {
        if case["scenario"] == "warm" {
            let hits: u64 = case["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["from_team_cache"].as_u64().unwrap())
                .sum();
            assert!(hits > 0, "warm read the cache through the link: {case}");
        }
    }
}

/// The NARs of the embedded cache's compression roots (`…/nix/COMPRESSION/nar/*`) under
/// `work`, by root: what the run's fills wrote, seen while the run is alive (the session
/// removes its scratch folder when it ends).
fn nars_by_root(
    work: &std::path::Path,
    seen: &mut std::collections::BTreeMap<String, (String, Vec<u8>)>,
) {
    let Ok(walk) = walk(work) else { return };
    for path in walk {
        let Some(nar_dir) = path.parent().filter(|d| d.ends_with("nar")) else {
            continue;
        };
        let Some(root) = nar_dir.parent().and_then(|r| r.file_name()) else {
            continue;
        };
        let root = root.to_string_lossy().into_owned();
        // Each root holds NARs of one compression: the first one seen stands for it.
        if seen.contains_key(&root) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        seen.insert(root, (name, bytes.into_iter().take(24).collect()));
    }
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            out.extend(walk(&path).unwrap_or_default());
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

#[test]
fn nix_compression_sweep_fills_a_root_per_compression_and_records_it() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let (output, work) = (tmp.path().join("results.json"), tmp.path().join("work"));
    let nix_before = host_nix_snapshot();
    let mut child = bin()
        .current_dir(repo_root())
        .args(["run", "--repo", "fixture-c-dag", "--system", "nix"])
        .args(["--sweep", "compression=none,xz,zstd"])
        .args([
            "--param", "size=3", "--param", "work=4", "--param", "refs=1",
        ])
        .args([
            "--param",
            "incompressible_mb=1",
            "--param",
            "compressible_mb=2",
        ])
        .args(["--scenario", "cold", "--scenario", "warm"])
        .args(["--samples", "1", "--warmups", "0", "--verdicts", "warn"])
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let printed = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let mut nars = std::collections::BTreeMap::new();
    let status = loop {
        nars_by_root(&work, &mut nars);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let printed = printed.join().unwrap();
    assert!(status.success(), "{printed}");
    assert!(
        printed.contains("[compression=xz]"),
        "points are named: {printed}"
    );

    // Each root holds NARs of its own compression: by name and by their first bytes.
    let magic = |root: &str| {
        nars.get(root)
            .unwrap_or_else(|| panic!("no NAR in {root}: {nars:?}"))
    };
    let (name, head) = magic("none");
    assert!(
        name.ends_with(".nar") && head.starts_with(b"\x0d\0\0\0\0\0\0\0nix-archive-1"),
        "{name} {head:?}"
    );
    let (name, head) = magic("xz");
    assert!(
        name.ends_with(".nar.xz") && head.starts_with(b"\xfd7zXZ\0"),
        "{name} {head:?}"
    );
    let (name, head) = magic("zstd");
    assert!(
        name.ends_with(".nar.zst") && head.starts_with(b"\x28\xb5\x2f\xfd"),
        "{name} {head:?}"
    );

    let results = read_json(&output);
    assert_valid_results(&results);
    let cases = results["cases"].as_array().unwrap();
    let scenarios: Vec<(&str, &str)> = cases
        .iter()
        .map(|c| {
            assert_eq!(c["outcome"], "ok", "{c}");
            (
                c["scenario"].as_str().unwrap(),
                c["parameters"]["compression"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scenarios,
        [
            ("cold", "none"),
            ("warm", "none"),
            ("warm", "xz"),
            ("warm", "zstd")
        ],
        "cold once, at the first point; warm at each"
    );
    let mut downloaded = std::collections::BTreeMap::new();
    for warm in cases.iter().filter(|c| c["scenario"] == "warm") {
        let compression = warm["parameters"]["compression"].as_str().unwrap();
        assert_eq!(
            warm["cache"]["compression"], compression,
            "{}",
            warm["cache"]
        );
        let url = warm["cache"]["url"].as_str().unwrap();
        assert!(url.ends_with(&format!("/nix/{compression}")), "{url}");
        assert!(
            warm["cache_fill"]["wall_s"].as_f64().unwrap() > 0.0,
            "each root filled: {warm}"
        );
        let sample = &warm["samples"][0];
        assert_eq!(
            (sample["built"].as_u64(), sample["substituted"].as_u64()),
            (Some(0), Some(4)),
            "{sample}"
        );
        downloaded.insert(compression, sample["downloaded_bytes"].as_u64().unwrap());
    }
    const MIB: u64 = 1 << 20;
    assert!(downloaded["none"] >= 3 * MIB, "{downloaded:?}");
    for compressed in ["xz", "zstd"] {
        assert!(
            downloaded[compressed] + MIB < downloaded["none"],
            "the text shrinks: {downloaded:?}"
        );
    }
    assert_eq!(
        results["growth"].as_array().map_or(0, Vec::len),
        0,
        "no fit through names"
    );
    let report = tmp.path().join("report.md");
    run_ok(
        bin()
            .arg("report")
            .arg(&output)
            .arg("--markdown")
            .arg(&report),
    );
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.contains("Compression of the cache"), "{report}");
    assert_left_nothing(&work, &nix_before);

    // Bazel's cache has no NAR compression: a sweep of only Bazel repos is refused.
    let out = run_exits(
        bin()
            .current_dir(repo_root())
            .args([
                "run",
                "--repo",
                "fixture-cc",
                "--sweep",
                "compression=xz,zstd",
            ])
            .arg("--output")
            .arg(tmp.path().join("never.json")),
        2,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("builds with Nix") && err.contains("fix:"),
        "{err}"
    );
}
