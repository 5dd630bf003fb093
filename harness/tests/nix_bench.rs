//! End to end with real Nix and a real nginx: the numbers a user would see.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn cold_warm_and_noop_against_the_embedded_cache() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let nix_before = host_nix_snapshot();

    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--repo", "fixture-c-dag", "--system", "nix"])
            // Two samples give no interval, so the speedup verdict fails: read, not gated.
            .args(["--samples", "2", "--warmups", "1", "--verdicts", "warn"])
            .args(["--param", "size=4", "--param", "work=20"])
            .arg("--output")
            .arg(&output)
            .arg("--work-dir")
            .arg(&work),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("speedup [95% CI]") && stdout.contains("fixture-c-dag"),
        "{stdout}"
    );

    let results = read_json(&output);
    assert_valid_results(&results);
    assert_eq!(results["schema_version"], 1);
    assert!(results["finished_at"].is_string());
    let case = |scenario: &str| case(&results, scenario).clone();
    // size 4: four compile steps and one link step.
    let derivations = 5;
    for scenario in ["cold", "warm", "noop"] {
        let c = case(scenario);
        assert_eq!(c["outcome"], "ok", "{c}");
        assert_eq!(c["samples"].as_array().unwrap().len(), 2);
        assert_eq!(c["warmups"].as_array().unwrap().len(), 1);
        assert!(c["stats"]["median_s"].as_f64().unwrap() > 0.0);
    }
    for scenario in ["cold", "warm", "noop"] {
        for s in case(scenario)["samples"].as_array().unwrap() {
            assert_time_split_sums(s);
        }
    }
    for s in case("warm")["samples"].as_array().unwrap() {
        let floor = &s["transfer_floor"];
        assert!(floor["floor_s"].as_f64().unwrap() > 0.0, "{s}");
        assert!(floor["link"]["throughput_bytes_per_s"].as_f64().unwrap() > 0.0);
    }
    for s in case("cold")["samples"].as_array().unwrap() {
        assert_eq!(s["built"], derivations, "{s}");
        assert_eq!(s["substituted"], 0, "{s}");
        assert_eq!(s["exit_code"], 0);
    }
    for s in case("warm")["samples"].as_array().unwrap() {
        assert_eq!(s["built"], 0, "{s}");
        assert!(s["substituted"].as_u64().unwrap() > 0, "{s}");
        assert!(s["downloaded_bytes"].as_u64().unwrap() > 0, "{s}");
    }
    for s in case("noop")["samples"].as_array().unwrap() {
        assert_eq!(
            (s["built"].as_u64(), s["substituted"].as_u64()),
            (Some(0), Some(0)),
            "{s}"
        );
    }
    assert_eq!(case("warm")["cache"]["backend"], "embedded-nginx");

    let cmp = &results["comparisons"][0];
    assert_eq!(cmp["repo"], "fixture-c-dag");
    assert!(cmp["speedup"]["ratio"].as_f64().unwrap() > 1.0, "{cmp}");
    // Two samples a side give no interval ("n/a"), so the speedup verdict cannot pass.
    assert!(cmp["speedup"]["ci_low"].is_null(), "{cmp}");
    assert_eq!(results["verdicts"][0]["speedup"]["pass"], false);
    assert_eq!(cmp["hit_ratio"], 1.0);

    // Nothing left behind: no nginx or nix process, no temporary state, host /nix untouched.
    assert_left_nothing(&work, &nix_before);
}

/// fixture-c-dag with run-time references and data, from a profile's `[params.REPO]`:
/// a warm build fetches every unit with its bytes, and the embedded cache stores them as
/// `--compression` says (the profile's choice under the flag's).
#[test]
fn a_closure_with_run_time_references_is_fetched_whole_and_compressed_as_chosen() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        "[profiles.shaped]\nrepos = [\"fixture-c-dag\"]\ncompression = \"xz\"\n[profiles.shaped.params.fixture-c-dag]\nsize = 6\nwork = 4\nrefs = 1\nincompressible_mb = 3\ncompressible_mb = 3\n",
    )
    .unwrap();
    let nix_before = host_nix_snapshot();
    let warm = |compression: &str| {
        let output = tmp.path().join(format!("{compression}.json"));
        run_ok(
            bin()
                .current_dir(repo_root())
                .args(["run", "--profile", "shaped", "--scenario", "warm"])
                .arg("--config")
                .arg(&config)
                .args([
                    "--samples",
                    "1",
                    "--warmups",
                    "0",
                    "--compression",
                    compression,
                ])
                .arg("--output")
                .arg(&output)
                .arg("--work-dir")
                .arg(tmp.path().join("work")),
        );
        let results = read_json(&output);
        assert_valid_results(&results);
        assert_eq!(results["settings"]["compression"], compression);
        let case = case(&results, "warm").clone();
        assert_eq!(case["parameters"]["refs"], 1, "{case}");
        let sample = case["samples"][0].clone();
        // Six units and the top output: the top refers to every unit at run time.
        assert_eq!(
            (sample["built"].as_u64(), sample["substituted"].as_u64()),
            (Some(0), Some(7)),
            "{sample}"
        );
        assert_eq!(
            sample["transfer_floor"]["bytes"],
            sample["downloaded_bytes"]
        );
        sample["downloaded_bytes"].as_u64().unwrap()
    };
    let (none, zstd) = (warm("none"), warm("zstd"));
    const MIB: u64 = 1 << 20;
    assert!(none >= 6 * MIB, "6 MiB of data, uncompressed: {none}");
    // The random half stays its size; the text half shrinks about 3x.
    assert!(
        zstd >= 3 * MIB && zstd + 3 * MIB / 2 < none,
        "zstd {zstd} against none {none}"
    );
    assert_eq!(host_nix_snapshot(), nix_before);
}

/// `fill`: each sample is a cold build that then `nix copy`s its closure to a fresh, empty
/// cache beside the embedded one (zstd, signed), removed after the sample; the penalty is
/// (cold + fill) / cold against the cold case, paired, with an interval.
#[test]
fn fill_samples_pay_the_whole_fill_of_a_fresh_embedded_cache() {
    require_tools(&["nix", "nginx", "gcc"]);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bench.toml");
    std::fs::write(
        &config,
        "[profiles.filled]\nrepos = [\"fixture-c-dag\"]\n[profiles.filled.params.fixture-c-dag]\nsize = 3\nwork = 4\nrefs = 1\nincompressible_mb = 1\ncompressible_mb = 1\n",
    )
    .unwrap();
    let nix_before = host_nix_snapshot();
    let output = tmp.path().join("fill.json");
    let work = tmp.path().join("work");
    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--profile", "filled", "--system", "nix"])
            .args(["--scenario", "cold", "--scenario", "fill"])
            .args(["--samples", "3", "--warmups", "0", "--verdicts", "warn"])
            .arg("--config")
            .arg(&config)
            .arg("--output")
            .arg(&output)
            .arg("--work-dir")
            .arg(&work),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fill penalty [95% CI]"), "{stdout}");
    let results = read_json(&output);
    assert_valid_results(&results);
    let fill = case(&results, "fill").clone();
    assert_eq!(fill["outcome"], "ok", "{fill}");
    assert_eq!(fill["cache"]["backend"], "embedded-nginx");
    let cold_built = case(&results, "cold")["samples"][0]["built"].clone();
    assert!(cold_built.as_u64().unwrap() >= 4, "{cold_built}");
    const MIB: u64 = 1 << 20;
    for s in fill["samples"].as_array().unwrap() {
        // Everything built, as cold: a fill sample reads no cache.
        assert_eq!(s["built"], cold_built, "{s}");
        assert_eq!(s["substituted"], 0, "{s}");
        let sent = &s["fill"];
        assert_eq!(sent["method"], "nix-copy", "{s}");
        // A fresh cache each time: the whole run-time closure (three units and the top
        // output that refers to them) goes every sample.
        assert_eq!(sent["closure_paths"], 4, "{s}");
        assert_eq!(sent["uploaded_paths"], 4, "{s}");
        let (bytes, stored) = (
            sent["uploaded_bytes"].as_u64().unwrap(),
            sent["stored_bytes"].as_u64().unwrap(),
        );
        assert!(bytes >= 2 * MIB, "{s}");
        // zstd leaves the random MiB and shrinks the text one.
        assert!(stored > MIB && stored < bytes, "{s}");
        assert!(sent["wall_s"].as_f64().unwrap() > 0.0, "{s}");
    }
    // The case's median is of build + fill.
    let median = fill["stats"]["median_s"].as_f64().unwrap();
    let builds: Vec<f64> = fill["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wall_s"].as_f64().unwrap())
        .collect();
    assert!(
        median > builds.iter().cloned().fold(f64::MAX, f64::min),
        "{fill}"
    );
    let row = &results["fills"][0];
    assert_eq!(row["method"], "nix-copy");
    assert_eq!(row["pairs"], 3, "interleaved with cold: {row}");
    let penalty = row["penalty"]["ratio"].as_f64().unwrap();
    assert!(penalty > 1.0, "filling costs something: {row}");
    assert!(
        row["penalty"]["ci_low"].as_f64().unwrap() <= penalty,
        "{row}"
    );
    assert!(
        row["penalty"]["ci_high"].as_f64().unwrap() >= penalty,
        "{row}"
    );
    assert!(row["stored_ratio"].as_f64().unwrap() < 1.0, "{row}");
    assert_eq!(host_nix_snapshot(), nix_before);
}

#[test]
fn a_failing_build_is_recorded_with_nix_s_error_and_the_run_goes_on() {
    require_tools(&["nix"]);
    let broken = temp_repo(
        "broken",
        &derivation(
            "broken",
            "echo compiling; echo 'unit.c:3: error: boom' >&2; exit 1",
        ),
    );
    let fine = temp_repo("fine", &derivation("fine", "echo ok > $out"));
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let out = run_exits(&mut cold_run(&[broken.path(), fine.path()], 1, &output), 1);
    let results = read_json(&output);
    assert_valid_results(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases[0]["outcome"], "failed");
    let reason = cases[0]["reason"].as_str().unwrap();
    assert!(reason.contains("failed with exit code 1"), "{reason}");
    assert_eq!(cases[0]["samples"][0]["exit_code"], 1);
    // The builder's own words are kept, not only Nix's "builder failed".
    let tail = cases[0]["samples"][0]["log_tail"].as_array().unwrap();
    assert!(
        tail.iter()
            .any(|l| l.as_str().unwrap().ends_with("unit.c:3: error: boom")),
        "{tail:?}"
    );
    assert_eq!(cases[1]["outcome"], "ok");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("FAILED")
            && l.contains("broken")
            && l.contains("sample 1 failed")),
        "{stdout}"
    );
    let printed = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        printed.contains("| broken> unit.c:3: error: boom"),
        "{printed}"
    );
}

#[test]
fn ctrl_c_keeps_finished_cases_and_leaves_nothing_running() {
    require_tools(&["nix", "nginx"]);
    let quick = temp_repo("quick", &derivation("quick", "echo ok > $out"));
    let slow = temp_repo("slow", &derivation("slow", "sleep 300; echo ok > $out"));
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let mut child = cold_run(&[quick.path(), slow.path()], 1, &output)
        .arg("--work-dir")
        .arg(&work)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the quick case is on disk and the slow build is running.
    let deadline = Instant::now() + Duration::from_secs(120);
    let work_dir = work.to_string_lossy().to_string();
    loop {
        let written = std::fs::read_to_string(&output).unwrap_or_default();
        if written.contains("\"quick\"")
            && !processes_mentioning(&format!("{work_dir}/flywheel-bench-")).is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the quick case never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let interrupted_at = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        interrupted_at.elapsed() < Duration::from_secs(30),
        "took too long to stop"
    );
    assert_eq!(status.code(), Some(130));

    let results = read_json(&output);
    assert_valid_results(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases[0]["repo"], "quick");
    assert_eq!(cases[0]["outcome"], "ok");
    assert_eq!(cases[1]["outcome"], "failed");
    assert!(cases[1]["reason"].as_str().unwrap().contains("interrupted"));
    assert!(results.get("finished_at").is_none());
    assert_eq!(processes_mentioning(&work_dir), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
}

#[test]
fn a_machine_that_cannot_sandbox_stops_before_building_and_writes_no_nix() {
    require_tools(&["nix", "unshare", "chroot"]);
    let nix_before = host_nix_snapshot();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let output = tmp.path().join("results.json");
    // A plain chroot (here of the host's own tree): the kernel refuses user namespaces to a
    // chrooted process, so Nix cannot sandbox; unsandboxed it would write the real /nix.
    let script = format!(
        "mount --rbind / {root} && exec chroot {root} {bin} run --repo {repo} --system nix --scenario cold --samples 1 --warmups 0 --param size=2 --param work=5 --output {out}",
        root = root.display(),
        bin = env!("CARGO_BIN_EXE_flywheel-bench"),
        repo = repo_root().join("bench-repos/fixture-c-dag").display(),
        out = output.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot sandbox")
            && stderr.contains("user namespaces")
            && stderr.contains("fix:"),
        "{stderr}"
    );
    assert!(!output.exists(), "nothing ran, so nothing was recorded");
    assert_eq!(host_nix_snapshot(), nix_before, "the host's /nix changed");
    std::fs::remove_dir(&root).unwrap();
}

#[test]
fn a_failing_verdict_exits_5_with_its_results_written_and_warn_exits_0() {
    require_tools(&["nix", "nginx"]);
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    // A speedup no cache can give: the verdict fails, every case succeeds.
    let args = |policy: &str| {
        let mut cmd = bin();
        cmd.current_dir(repo_root())
            .args([
                "run",
                "--repo",
                "fixture-c-dag",
                "--system",
                "nix",
                "--warmups",
                "0",
            ])
            .args(["--param", "size=2", "--param", "work=5"]);
        cmd.args([
            "--scenario",
            "cold",
            "--scenario",
            "warm",
            "--samples",
            "3",
            "--min-speedup",
            "1000000",
            "--verdicts",
            policy,
        ]);
        cmd.arg("--output").arg(&output);
        cmd
    };
    let out = run_exits(&mut args("fail"), 5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 verdict failed: exit 5"), "{stderr}");
    let results = read_json(&output);
    assert_valid_results(&results);
    assert!(results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["outcome"] == "ok"));
    assert_eq!(results["verdicts"][0]["speedup"]["pass"], false);
    // Interleaved by default: the samples alternated and the speedup is from their pairs.
    assert_eq!(results["settings"]["order"], "interleaved");
    for scenario in ["cold", "warm"] {
        let case = case(&results, scenario);
        assert_eq!(case["sampling"]["order"], "interleaved");
        assert_eq!(
            case["sampling"]["group"],
            serde_json::json!(["cold", "warm"])
        );
    }
    let positions: Vec<u64> = case(&results, "warm")["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 5]);
    assert_eq!(results["comparisons"][0]["pairs"], 3);
    run_exits(&mut args("warn"), 0);
}
