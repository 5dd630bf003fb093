//! End to end for the GPU lane's issues, without a GPU: a tool behind an alternatives link
//! (the H100 runner's CUDA layout) builds in the Nix sandbox; a repo's check runs after
//! every build on the host lane (Nix and Bazel) and fails the case when it fails; the dev
//! shell is decided from the flake's outputs; and the gpu lane runs fixture-cuda end to end
//! with stand-ins for nvidia-smi and nvcc that replay what the H100 runner printed.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use flywheel_bench::exec::process::ProcessExecutor;
use flywheel_bench::lanes::gpu::{choose_shell, Shell};

/// Paths a test made outside its temporary folder, removed when dropped (a failing test
/// included), last made first.
struct MadePaths(Vec<PathBuf>);

impl Drop for MadePaths {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
                Ok(_) => std::fs::remove_file(path),
                Err(_) => Ok(()),
            };
        }
    }
}

/// A name no other run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `common::temp_repo` with `nix_extra` added to its `[nix]` table (the manifest's last)
/// and `tail` after it.
fn repo(name: &str, nix_expr: &str, nix_extra: &str, tail: &str) -> tempfile::TempDir {
    let dir = temp_repo(name, nix_expr);
    let manifest = dir.path().join("repo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}{nix_extra}\n{tail}")).unwrap();
    dir
}

#[test]
fn a_tool_behind_an_alternatives_link_builds_in_the_sandbox() {
    require_tools(&["nix"]);
    let name = unique("flywheel-test-tool");
    let real = PathBuf::from(format!("/usr/local/{name}-1.0"));
    let alternative = PathBuf::from(format!("/etc/alternatives/{name}"));
    let link = PathBuf::from(format!("/usr/local/{name}"));
    let made = MadePaths(vec![real.clone(), alternative.clone(), link.clone()]);
    std::fs::create_dir_all(real.join("bin")).expect("root may write /usr/local");
    executable(
        &real.join(format!("bin/{name}")),
        "#!/bin/sh\necho tool ran\n",
    );
    symlink(&real, &alternative).expect("root may write /etc/alternatives");
    symlink(&alternative, &link).unwrap();
    let expr = format!(
        "derivation {{ name = \"t\"; system = builtins.currentSystem; builder = \"/bin/sh\"; PATH = \"{}/bin:/usr/bin:/bin\"; args = [ \"-c\" \"{name} > $out\" ]; }}\n",
        link.display()
    );
    let bench = repo(
        "alternatives",
        &expr,
        &format!("sandbox_paths = [\"{}\"]", link.display()),
        "",
    );
    let tmp = tempfile::tempdir().unwrap();
    let nix_before = host_nix_snapshot();

    // Before: the link named as it is (how c529e71 passed it) dangles in the sandbox.
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("nix.conf"),
        "build-users-group =\nsandbox = false\nexperimental-features = nix-command flakes\nsubstituters =\n",
    )
    .unwrap();
    let before = Command::new("nix")
        .env("NIX_CONF_DIR", &conf)
        .env("NIX_USER_CONF_FILES", conf.join("nix.conf"))
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .arg("build")
        .arg("--store")
        .arg(tmp.path().join("store"))
        .args(["--option", "sandbox-paths"])
        .arg(format!("/bin /usr /lib /lib64 {}", link.display()))
        .args(["--no-link", "-L", "-f"])
        .arg(bench.path().join("default.nix"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&before.stderr);
    assert!(!before.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{name}: not found")) && stderr.contains("exit code 127"),
        "{stderr}"
    );

    // After: the harness mounts the real folder at each link of the chain.
    let output = tmp.path().join("results.json");
    let work = tmp.path().join("work");
    run_ok(
        cold_run(&[bench.path()], 1, &output)
            .arg("--work-dir")
            .arg(&work),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let cold = case(&results, "cold");
    assert_eq!(cold["outcome"], "ok", "{cold}");
    let command = cold["command"].as_str().unwrap();
    for entry in [
        format!("{}={}", link.display(), real.display()),
        format!("{}={}", alternative.display(), real.display()),
    ] {
        assert!(command.contains(&entry), "{entry} in {command}");
    }
    drop(made);
    for path in [&real, &alternative, &link] {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{} left",
            path.display()
        );
    }
    assert_eq!(host_nix_snapshot(), nix_before, "the host's /nix changed");
}

/// A derivation that installs `bin/app`, a shell script with `body`.
fn app_derivation(name: &str, body: &str) -> String {
    derivation(
        name,
        &format!("mkdir -p $out/bin; printf '#!/bin/sh\\n{body}\\n' > $out/bin/app; chmod +x $out/bin/app"),
    )
}

#[test]
fn a_failing_check_fails_the_case_and_says_what_it_printed() {
    require_tools(&["nix"]);
    let bench = repo(
        "failing-check",
        &app_derivation("failing", "echo self-test failed: 42 >&2; exit 3"),
        "",
        "[check]\ncommand = [\"sh\", \"-c\", \"\\\"$FLYWHEEL_OUTPUT/bin/app\\\"\"]\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    run_exits(
        cold_run(&[bench.path()], 1, &output)
            .arg("--work-dir")
            .arg(tmp.path()),
        1,
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let cold = case(&results, "cold");
    assert_eq!(cold["outcome"], "failed");
    let reason = cold["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("sample 1 failed: the check `sh -c")
            && reason.ends_with("failed (exit code 3): self-test failed: 42"),
        "{reason}"
    );
    let sample = &cold["samples"][0];
    assert_eq!(sample["exit_code"], 0, "the build itself worked: {sample}");
    assert_eq!(sample["check"]["passed"], false);
    assert_eq!(sample["check"]["exit_code"], 3);
}

#[test]
fn checks_run_on_every_build_s_output_and_are_timed_apart() {
    require_tools(&["nix", "nginx"]);
    let nix_before = host_nix_snapshot();
    // The check runs the app from the output on disk and sleeps, so its time shows.
    let bench = repo(
        "checked",
        &app_derivation("checked", "echo app ran"),
        "",
        "[check]\ncommand = [\"sh\", \"-c\", \"\\\"$FLYWHEEL_OUTPUT/bin/app\\\" && echo \\\"$FLYWHEEL_OUTPUT\\\" && sleep 0.2\"]\ntimeout_s = 60\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let work = tmp.path().join("work");
    run_ok(
        bin()
            .args(["run", "--repo"])
            .arg(bench.path())
            .args([
                "--samples",
                "2",
                "--warmups",
                "1",
                "--verdicts",
                "warn",
                "--output",
            ])
            .arg(&output)
            .arg("--work-dir")
            .arg(&work),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    for scenario in ["cold", "warm", "noop"] {
        let c = case(&results, scenario);
        assert_eq!(c["outcome"], "ok", "{c}");
        for sample in c["warmups"]
            .as_array()
            .unwrap()
            .iter()
            .chain(c["samples"].as_array().unwrap())
        {
            let check = &sample["check"];
            assert_eq!(check["passed"], true, "{sample}");
            assert!(check["wall_s"].as_f64().unwrap() >= 0.2, "{check}");
            let tail = check["output_tail"].as_str().unwrap();
            // The output as a file of the build's chroot store.
            assert!(
                tail.starts_with("app ran\n")
                    && tail.contains("/store/nix/store/")
                    && tail.ends_with("-checked"),
                "{tail}"
            );
        }
    }
    let warm = case(&results, "warm");
    assert_eq!(warm["samples"][0]["built"], 0, "{warm}");
    assert_eq!(
        warm["samples"][0]["substituted"], 1,
        "from the cache, and still checked"
    );
    assert_left_nothing(&work, &nix_before);
}

#[test]
fn a_bazel_repo_s_check_finds_its_outputs_in_bazel_bin() {
    require_tools(&["bazel"]);
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("cc");
    std::fs::create_dir(&bench).unwrap();
    for file in ["BUILD", "WORKSPACE", "defs.bzl", "size.bzl", "repo.toml"] {
        std::fs::copy(
            repo_root().join("bench-repos/fixture-cc").join(file),
            bench.join(file),
        )
        .unwrap();
    }
    let manifest = std::fs::read_to_string(bench.join("repo.toml")).unwrap();
    std::fs::write(
        bench.join("repo.toml"),
        format!("{manifest}\n[check]\ncommand = [\"sh\", \"-c\", \"\\\"$FLYWHEEL_OUTPUT/app\\\" | head -n 1\"]\n"),
    )
    .unwrap();
    let output = tmp.path().join("results.json");
    run_ok(
        cold_run(&[&bench], 1, &output)
            .args(["--param", "size=2", "--work-dir"])
            .arg(tmp.path()),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let check = &case(&results, "cold")["samples"][0]["check"];
    assert_eq!(check["passed"], true, "{check}");
    assert!(
        check["output_tail"]
            .as_str()
            .unwrap()
            .starts_with("line 0 value "),
        "{check}"
    );
}

/// A flake with no inputs (so it evaluates offline) whose devShells are `shells`.
fn flake(shells: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let system = flywheel_bench::lanes::gpu::nix_system();
    let shells: String = shells
        .iter()
        .map(|s| format!("{s} = derivation {{ name = \"{s}\"; system = \"{system}\"; builder = \"/bin/sh\"; }}; "))
        .collect();
    std::fs::write(
        dir.path().join("flake.nix"),
        format!("{{ outputs = {{ self }}: {{ devShells.{system} = {{ {shells}}}; }}; }}\n"),
    )
    .unwrap();
    dir
}

#[test]
fn the_dev_shell_is_decided_from_the_flake_s_outputs() {
    require_tools(&["nix"]);
    let nix = which::which("nix").unwrap();
    let nix_before = host_nix_snapshot();
    let scratch = tempfile::tempdir().unwrap();
    let with_gpu = flake(&["default", "gpu"]);
    match choose_shell(
        &ProcessExecutor,
        Some(&nix),
        with_gpu.path(),
        scratch.path(),
    ) {
        Shell::Flake { name, prefix } => {
            assert_eq!(
                name,
                format!("nix develop {}#gpu", with_gpu.path().display())
            );
            assert_eq!(prefix.last().unwrap(), "--command");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !with_gpu.path().join("flake.lock").exists(),
        "no lock file written"
    );
    // "gpu" in flake.nix is not enough: the output must be there.
    let without = flake(&["default", "notgpu"]);
    let Shell::Ambient { reason } =
        choose_shell(&ProcessExecutor, Some(&nix), without.path(), scratch.path())
    else {
        panic!("a flake without devShells.SYSTEM.gpu chose it");
    };
    assert!(
        reason.ends_with("gpu (it has: default, notgpu)"),
        "{reason}"
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        choose_shell(&ProcessExecutor, Some(&nix), empty.path(), scratch.path()),
        Shell::Ambient {
            reason: format!("no flake.nix in {}", empty.path().display())
        }
    );
    assert_eq!(
        choose_shell(&ProcessExecutor, None, with_gpu.path(), scratch.path()),
        Shell::Ambient {
            reason: "nix is not on PATH".into()
        }
    );
    assert_eq!(host_nix_snapshot(), nix_before, "the host's /nix changed");
}

/// Stand-ins for a GPU runner's tools, replaying what the H100 runner printed: nvidia-smi
/// (the identity query, the banner, and a 100 ms trace loop at 100 % utilisation) and an
/// nvcc that "compiles" saxpy into a program printing what the real one prints. The
/// toolkit sits behind an alternatives link, as on the runner.
struct FakeRunner {
    dir: tempfile::TempDir,
}

impl FakeRunner {
    fn new() -> FakeRunner {
        let dir = tempfile::tempdir().unwrap();
        let recorded = repo_root().join("harness/tests/fixtures/gpu-lane-h100");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        executable(
            &bin.join("nvidia-smi"),
            &format!(
                "#!/bin/sh\ncase \"$*\" in\n  *-lms*) while :; do printf '%s, 0, 100, 1, 591, 81559, 222.33, 1980, 44\\n' \"$(date '+%Y/%m/%d %H:%M:%S.%3N')\"; sleep 0.1; done ;;\n  --query-gpu=name*) cat {0}/query-gpu.csv ;;\n  '') cat {0}/nvidia-smi-banner.txt ;;\n  *) echo \"unexpected: $*\" >&2; exit 2 ;;\nesac\n",
                recorded.display()
            ),
        );
        let real = dir.path().join("cuda-13.0");
        std::fs::create_dir_all(real.join("bin")).unwrap();
        executable(
            &real.join("bin/nvcc"),
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -o) out=\"$2\"; shift;; esac; shift; done\nprintf '#!/bin/sh\\necho ok 1048576\\n' > \"$out\"\nchmod +x \"$out\"\n",
        );
        std::fs::create_dir(dir.path().join("alternatives")).unwrap();
        symlink(&real, dir.path().join("alternatives/cuda")).unwrap();
        symlink(
            dir.path().join("alternatives/cuda"),
            dir.path().join("cuda"),
        )
        .unwrap();
        FakeRunner { dir }
    }

    /// PATH with the stand-ins first, nvcc reached through the links.
    fn path(&self) -> std::ffi::OsString {
        let host = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![
            self.dir.path().join("bin"),
            self.dir.path().join("cuda/bin"),
        ];
        paths.extend(std::env::split_paths(&host));
        std::env::join_paths(paths).unwrap()
    }
}

#[test]
fn the_gpu_lane_checks_and_traces_every_sample_with_stand_ins_for_the_gpu() {
    require_tools(&["nix", "nginx"]);
    let runner = FakeRunner::new();
    let real_home = runner.dir.path().join("cuda-13.0").canonicalize().unwrap();
    let nix_before = host_nix_snapshot();
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let work = tmp.path().join("work");
    // From a folder without a flake: the lane must not enter this checkout's CUDA shell
    // (on a machine with a network it would download the toolkit into the host's /nix).
    run_ok(
        bin()
            .current_dir(tmp.path())
            .env("PATH", runner.path())
            .args([
                "run",
                "--lane",
                "gpu",
                "--repo",
                "fixture-cuda",
                "--bench-repos",
            ])
            .arg(repo_root().join("bench-repos"))
            .args([
                "--samples",
                "2",
                "--warmups",
                "1",
                "--verdicts",
                "warn",
                "--output",
            ])
            .arg(&output)
            .arg("--work-dir")
            .arg(&work),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let lane = &results["lanes"][0];
    let gpu = &lane["gpu"];
    assert_eq!(gpu["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(gpu["cuda_home"], real_home.display().to_string(), "{lane}");
    assert!(
        gpu["cuda_home_from"]
            .as_str()
            .unwrap()
            .starts_with("nvcc on PATH"),
        "{lane}"
    );
    assert!(gpu["sandbox_paths"]
        .as_array()
        .unwrap()
        .contains(&real_home.display().to_string().into()));
    assert_eq!(lane["shell"], "ambient");
    assert_eq!(
        lane["shell_reason"],
        format!("no flake.nix in {}", tmp.path().display()),
        "{lane}"
    );
    for scenario in ["cold", "warm", "noop"] {
        let c = case(&results, scenario);
        assert_eq!(c["outcome"], "ok", "{c}");
        assert_eq!(
            c["parameters"]["cuda_home"],
            real_home.display().to_string()
        );
        for sample in c["warmups"]
            .as_array()
            .unwrap()
            .iter()
            .chain(c["samples"].as_array().unwrap())
        {
            assert_eq!(sample["check"]["passed"], true, "{sample}");
            assert_eq!(sample["check"]["output_tail"], "ok 1048576");
            let trace = &sample["gpu_trace"];
            assert!(trace.get("unavailable").is_none(), "{trace}");
            assert!(
                trace["summary"]["samples"].as_u64().unwrap() >= 1,
                "{trace}"
            );
            assert_eq!(trace["summary"]["utilization_pct"]["max"], 100.0);
            assert_eq!(trace["series"]["t_ms"][0], 0);
        }
    }
    assert_eq!(case(&results, "warm")["samples"][0]["built"], 0);
    let html = tmp.path().join("report.html");
    run_ok(bin().arg("report").arg(&output).arg("--html").arg(&html));
    let html = std::fs::read_to_string(html).unwrap();
    assert!(
        html.contains("<h3>GPU traces</h3>") && html.contains("<polyline"),
        "traces plotted"
    );
    let smi = runner
        .dir
        .path()
        .join("bin/nvidia-smi")
        .display()
        .to_string();
    assert_eq!(
        processes_mentioning(&smi),
        Vec::<String>::new(),
        "a sampler survived"
    );
    assert_left_nothing(&work, &nix_before);
}

#[test]
fn the_recorded_gpu_results_and_the_synthetic_one_match_the_schema() {
    let dir = repo_root().join("harness/tests/fixtures/gpu-lane-h100");
    for file in [
        "results-default-manifest.json",
        "results-resolved-cuda-path.json",
        "results-checked-synthetic.json",
    ] {
        let path = dir.join(file);
        assert_valid_results(&read_json(&path));
        let results = flywheel_bench::results::load(&path).unwrap();
        assert_eq!(
            results.lanes[0].gpu.as_ref().unwrap().cuda.as_deref(),
            Some("13.0")
        );
    }
}

#[test]
fn doctor_checks_each_need_of_a_gpu_runner() {
    require_tools(&["nix"]);
    let runner = FakeRunner::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(elsewhere.path())
        .env("PATH", runner.path())
        .args(["doctor", "--lane", "gpu"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |what: &str| {
        stdout
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` in\n{stdout}"))
            .trim()
            .to_string()
    };
    // The stand-in nvidia-smi answers; the toolkit is found through its links.
    assert!(
        line("an NVIDIA GPU").starts_with(
            "yes  an NVIDIA GPU (nvidia-smi): NVIDIA H100 80GB HBM3 (driver 580.159.04, CUDA 13.0)"
        ),
        "{stdout}"
    );
    let real_home = runner.dir.path().join("cuda-13.0").canonicalize().unwrap();
    assert!(
        line("a CUDA toolkit").contains(&format!("{} (from nvcc on PATH", real_home.display())),
        "{stdout}"
    );
    assert!(line("Nix (builds)").starts_with("yes"), "{stdout}");
    // This machine has no GPU device files and no driver library: each is named, with a fix.
    if !Path::new("/dev/nvidiactl").exists() {
        assert!(
            line("nvidiactl").starts_with("no   nvidiactl: /dev/nvidiactl is missing: "),
            "{stdout}"
        );
        assert_eq!(out.status.code(), Some(3), "{stdout}");
    }
    assert_eq!(
        line("the flake's gpu dev shell"),
        format!(
            "note the flake's gpu dev shell: cases run in the ambient environment: no flake.nix in {}",
            elsewhere.path().display()
        )
    );
}
