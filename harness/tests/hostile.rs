//! Hostile input, as a pull request's manifest or a repository variable could bring it:
//! nothing a manifest, profile, flag or path says escapes the run. Each test runs the real
//! binary; those that build use the real Nix, Bazel and nginx.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bench repo folder with `repo.toml` = `manifest` and `files` (name, text).
fn repo(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("repo.toml"), manifest).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const NIX_HEAD: &str = "name = \"hostile\"\ndescription = \"d\"\n[source]\npath = \".\"\n";

/// `run` of one cold sample of `repo`, its results and work folder in `tmp`.
fn cold(repo: &Path, tmp: &Path) -> std::process::Command {
    let mut cmd = cold_run(&[repo], 1, &tmp.join("results.json"));
    cmd.arg("--work-dir").arg(tmp.join("work"));
    cmd
}

#[test]
fn manifest_values_never_reach_a_tool_as_options_nor_paths_outside_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path();
    // 1: attrs that were an alternative store the cold guard did not see.
    let alt_store = x.join("altstore");
    let nix = repo(
        &format!(
            "{NIX_HEAD}[nix]\nfile = \"default.nix\"\nattrs = [\"--store\", \"{}\"]\n",
            alt_store.display()
        ),
        &[("default.nix", &derivation("x", "echo > $out"))],
    );
    let out = run_exits(&mut cold(nix.path(), x), 2);
    assert!(
        printed(&out).contains("key `nix.attrs[0]`: \"--store\" starts with `-`"),
        "{}",
        printed(&out)
    );
    // 1: targets that filled a disk cache outside the run.
    let disk_cache = x.join("dc");
    let bazel = repo(
        &format!(
            "{NIX_HEAD}[bazel]\ntargets = [\"--disk_cache={}\", \"//...\"]\n",
            disk_cache.display()
        ),
        &[("WORKSPACE", ""), ("BUILD", "")],
    );
    let out = run_exits(&mut cold(bazel.path(), x), 2);
    assert!(printed(&out).contains("key `bazel.targets[0]`"));
    // 3: a parameters file linked to a file outside, which was overwritten.
    let victim = x.join("victim.bzl");
    std::fs::write(&victim, "SIZE = 1\n").unwrap();
    let linked = repo(
        &format!("{NIX_HEAD}[parameters]\nsize = 7\n[bazel]\ntargets = [\"//...\"]\nparameters_file = \"size.bzl\"\n"),
        &[("WORKSPACE", ""), ("BUILD", "")],
    );
    std::os::unix::fs::symlink(&victim, linked.path().join("size.bzl")).unwrap();
    let out = run_exits(&mut cold(linked.path(), x), 2);
    assert!(
        printed(&out).contains("key `bazel.parameters_file`")
            && printed(&out).contains("leads out of"),
        "{}",
        printed(&out)
    );
    for file in ["/tmp/x/victim.bzl", "../victim.bzl"] {
        let absolute = repo(
            &format!("{NIX_HEAD}[bazel]\ntargets = [\"//...\"]\nparameters_file = \"{file}\"\n"),
            &[("WORKSPACE", "")],
        );
        let out = run_exits(&mut cold(absolute.path(), x), 2);
        assert!(printed(&out).contains("key `bazel.parameters_file`"));
    }
    // 4: a Nix file outside the source, whose lines reached the results.
    let passwd = repo(
        &format!("{NIX_HEAD}[nix]\nfile = \"../../../../etc/passwd\"\n"),
        &[],
    );
    let out = run_exits(&mut cold(passwd.path(), x), 2);
    assert!(printed(&out).contains("key `nix.file`"));
    assert!(!printed(&out).contains("root:x:0"), "{}", printed(&out));

    assert!(!alt_store.exists() && !disk_cache.exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "SIZE = 1\n");
    assert!(!x.join("results.json").exists(), "nothing ran");
}

#[test]
fn outputs_never_replace_a_fifo_socket_device_or_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo);
    let socket = tmp.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let results = repo_root().join("harness/tests/fixtures/results/nix-fixture.json");
    let started = Instant::now();
    let out = run_exits(
        tiny_nix_run(&["--scenario", "cold", "--samples", "1", "--output"]).arg(&fifo),
        2,
    );
    assert!(
        printed(&out).contains("is a FIFO (named pipe)") && printed(&out).contains("fix:"),
        "{}",
        printed(&out)
    );
    let (r, f, so) = (results.as_os_str(), fifo.as_os_str(), socket.as_os_str());
    let commands: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec!["export".as_ref(), r, "-o".as_ref(), f],
        vec!["report".as_ref(), r, "--markdown".as_ref(), so],
        vec![
            "report".as_ref(),
            r,
            "--html".as_ref(),
            "/dev/null".as_ref(),
        ],
        vec![
            "compare".as_ref(),
            r,
            r,
            "--markdown".as_ref(),
            "/dev/full".as_ref(),
        ],
        vec![
            "coverage".as_ref(),
            "--nix-cache".as_ref(),
            "http://127.0.0.1:9".as_ref(),
            "--nix-cache-public-key".as_ref(),
            "k:1".as_ref(),
            "--output".as_ref(),
            tmp.path().as_os_str(),
        ],
    ];
    for args in commands {
        let out = run_exits(bin().args(&args), 2);
        assert!(
            printed(&out).contains("fix:"),
            "{args:?}: {}",
            printed(&out)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(60), "nothing ran");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn results_from_fifos_devices_or_with_impossible_times_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo");
    mkfifo(&fifo);
    let started = Instant::now();
    for file in [Path::new("/dev/zero"), fifo.as_path()] {
        let out = run_exits(bin().arg("report").arg(file), 2);
        assert!(
            printed(&out).contains("not a regular file"),
            "{}",
            printed(&out)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "read without blocking"
    );
    let fixture = repo_root().join("harness/tests/fixtures/results/nix-fixture.json");
    let mut doc = read_json(&fixture);
    doc["cases"][1]["samples"][0]["wall_s"] = serde_json::json!(-3.5);
    let bad = tmp.path().join("negative.json");
    std::fs::write(&bad, doc.to_string()).unwrap();
    let out = run_exits(bin().arg("compare").arg(&fixture).arg(&bad), 2);
    assert!(
        printed(&out).contains("`cases[1].samples[0].wall_s` is -3.5"),
        "{}",
        printed(&out)
    );
    assert!(!printed(&out).contains("speedup"), "{}", printed(&out));
}

#[test]
fn bad_input_exits_2_and_says_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    // A parameter of the wrong type, before anything is built.
    let out = run_exits(&mut tiny_nix_run(&["--param", "size=abc"]), 2);
    assert!(
        printed(&out).contains("--param size=abc") && printed(&out).contains("whole number"),
        "{}",
        printed(&out)
    );
    // A work folder that is a file.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let out = run_exits(tiny_nix_run(&["--work-dir"]).arg(&file), 2);
    assert!(
        printed(&out).contains("--work-dir") && printed(&out).contains("not a folder"),
        "{}",
        printed(&out)
    );
    // An ftp:// Attic endpoint.
    let config = tmp.path().join("bench.toml");
    std::fs::write(&config, "[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"ftp://attic.example.com\"\ncache = \"c\"\npublic_key = \"c:K\"\ntoken_env = \"T\"\n").unwrap();
    let out = run_exits(
        tiny_nix_run(&["--profile", "p", "--config"]).arg(&config),
        2,
    );
    assert!(printed(&out).contains("nix.endpoint"), "{}", printed(&out));
}

#[test]
fn inputs_once_accepted_silently_are_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let twice = run_exits(
        &mut tiny_nix_run(&["--repo", "fixture-c-dag", "--scenario", "cold"]),
        2,
    );
    assert!(
        printed(&twice).contains("selected twice"),
        "{}",
        printed(&twice)
    );
    let both = run_exits(&mut tiny_nix_run(&["--sweep", "size=2,3"]), 2);
    assert!(
        printed(&both).contains("--sweep size=... and --param size=..."),
        "{}",
        printed(&both)
    );
    let max = run_exits(
        &mut tiny_nix_run(&["--samples", "5", "--max-samples", "2"]),
        2,
    );
    assert!(printed(&max).contains("--max-samples 2 is below --samples 5"));
    let dots = repo(
        "name = \"..\"\ndescription = \"d\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n",
        &[("default.nix", "")],
    );
    let out = run_exits(&mut cold(dots.path(), tmp.path()), 2);
    assert!(printed(&out).contains("key `name`"), "{}", printed(&out));
    let lanes = tmp.path().join("lanes.toml");
    let lane = "[[lane]]\nname = \"host\"\ntitle = \"Host\"\ncanary = \"fixture-c-dag\"\n";
    std::fs::write(&lanes, format!("{lane}{lane}")).unwrap();
    let out = run_exits(bin().arg("matrix").arg("--lanes").arg(&lanes), 2);
    assert!(
        printed(&out).contains("declared again"),
        "{}",
        printed(&out)
    );
}

/// fixture-cc copied into `dir`, so a test may add files to its source.
fn fixture_cc_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("fixture-cc");
    copy_dir(&repo_root().join("bench-repos/fixture-cc"), &copy);
    copy
}

#[test]
fn a_fifo_in_a_bazel_source_is_left_out_and_the_run_goes_on() {
    require_tools(&["bazel"]);
    let tmp = tempfile::tempdir().unwrap();
    let source = fixture_cc_copy(tmp.path());
    mkfifo(&source.join("pipe"));
    let started = Instant::now();
    let out = run_ok(
        cold(&source, tmp.path())
            .args(["--system", "bazel", "--param", "size=2"])
            .current_dir(repo_root()),
    );
    let text = printed(&out);
    assert!(
        text.contains(&format!(
            "{} is not a regular file",
            source.join("pipe").display()
        )) && text.contains("left out of the workspace copy"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(600));
    let results = read_json(&tmp.path().join("results.json"));
    assert_eq!(case(&results, "cold")["outcome"], "ok");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("work")).unwrap().count(),
        0
    );
}

#[test]
fn a_bearer_header_with_a_space_reaches_a_cache_that_checks_it_and_nowhere_else() {
    require_tools(&["bazel", "nginx"]);
    let token = "flywheel test-token-9f3e";
    let server = AuthNginx::start(&format!("Bearer {token}"));
    let tmp = tempfile::tempdir().unwrap();
    let output = tmp.path().join("results.json");
    let out = run_ok(
        bin()
            .current_dir(repo_root())
            .args(["run", "--repo", "fixture-cc", "--system", "bazel"])
            .args(["--samples", "1", "--warmups", "0", "--param", "size=2"])
            .args(["--verdicts", "warn"])
            .args(["--scenario", "cold", "--scenario", "warm"])
            .arg("--bazel-remote-cache")
            .arg(format!("http://127.0.0.1:{}", server.port))
            .env(
                "FLYWHEEL_BAZEL_REMOTE_HEADERS",
                format!("Authorization=Bearer {token}"),
            )
            .arg("--output")
            .arg(&output)
            .arg("--work-dir")
            .arg(tmp.path().join("work")),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let warm = &case(&results, "warm")["samples"][0];
    let actions = warm["actions"].as_u64().unwrap();
    assert!(actions > 0, "{warm}");
    assert_eq!(
        warm["remote_cache_hits"], actions,
        "every action from the cache: {warm}"
    );
    let statuses = server.statuses();
    assert!(
        !statuses.contains(&401),
        "a request came without the header: {statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| (200..300).contains(s)),
        "{statuses:?}"
    );
    for (what, text) in [
        ("the output", printed(&out)),
        ("the results", std::fs::read_to_string(&output).unwrap()),
    ] {
        assert!(
            !text.contains("test-token-9f3e"),
            "the header's value reached {what}"
        );
        assert!(
            !text.contains("Skipping"),
            "part of the header became a target: {text}"
        );
    }
}

#[test]
fn credentials_in_a_nix_cache_url_go_to_nix_in_a_netrc_and_are_shown_nowhere() {
    require_tools(&["nix", "nginx"]);
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("bot:s3cret-pw");
    let server = AuthNginx::start(&format!("Basic {basic}"));
    let tmp = tempfile::tempdir().unwrap();
    let (secret_key, public_key) = signing_key(tmp.path(), "hostile-test");
    let output = tmp.path().join("results.json");
    let url = format!("http://bot:s3cret-pw@127.0.0.1:{}/", server.port);
    let out = run_ok(
        tiny_nix_run(&["--scenario", "cold", "--scenario", "warm", "--samples", "1"])
            .args(["--nix-cache", &url, "--nix-cache-public-key", &public_key])
            .arg("--nix-cache-secret-key")
            .arg(&secret_key)
            .arg("--output")
            .arg(&output)
            .arg("--work-dir")
            .arg(tmp.path().join("work")),
    );
    let results = read_json(&output);
    assert_valid_results(&results);
    let warm = case(&results, "warm");
    assert_eq!(warm["outcome"], "ok", "{warm}");
    assert!(
        warm["samples"][0]["from_team_cache"].as_u64().unwrap() > 0,
        "{warm}"
    );
    assert_eq!(
        warm["cache"]["url"],
        format!("http://127.0.0.1:{}/", server.port)
    );
    assert!(!server.statuses().contains(&401), "{:?}", server.statuses());
    for (what, text) in [
        ("the output", printed(&out)),
        ("the results", std::fs::read_to_string(&output).unwrap()),
    ] {
        assert!(
            !text.contains("s3cret-pw"),
            "the password reached {what}: {text}"
        );
    }
}

/// The absolute paths that `strace -f` saw created, written, renamed or removed, from its
/// log: the second path of a link or rename, never a link's target.
fn written_paths(log: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in log.lines().filter(|l| !l.contains(" = -1 ")) {
        let Some((call, rest)) = line
            .split_once(' ')
            .map(|(_, r)| r)
            .and_then(|r| r.split_once('('))
        else {
            continue;
        };
        let quoted: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
        let picked: Vec<&str> = match call {
            "openat" | "open"
                if rest.contains("O_CREAT")
                    || rest.contains("O_WRONLY")
                    || rest.contains("O_RDWR") =>
            {
                quoted.into_iter().take(1).collect()
            }
            "mkdir" | "mkdirat" | "creat" | "unlink" | "unlinkat" | "rmdir" => {
                quoted.into_iter().take(1).collect()
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => quoted,
            "symlink" | "symlinkat" => quoted.into_iter().skip(1).collect(),
            _ => Vec::new(),
        };
        paths.extend(
            picked
                .into_iter()
                .filter(|p| p.starts_with('/'))
                .map(str::to_string),
        );
    }
    paths
}

#[test]
fn a_run_writes_only_under_its_work_folder_and_its_output() {
    require_tools(&["nix", "bazel", "nginx", "strace"]);
    let nix_before = host_nix_snapshot();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nix_source = root.join("fixture-c-dag");
    copy_dir(&repo_root().join("bench-repos/fixture-c-dag"), &nix_source);
    let bazel_source = fixture_cc_copy(root);
    let (home, cwd, temp, work) = (
        root.join("home"),
        root.join("cwd"),
        root.join("tmp"),
        root.join("work"),
    );
    let out_dir = root.join("out");
    for dir in [&home, &cwd, &temp, &work, &out_dir] {
        std::fs::create_dir(dir).unwrap();
    }
    let output = out_dir.join("results.json");
    let trace = root.join("strace.log");
    let before = tree_snapshot(root, &[&work, &temp, &out_dir]);
    run_ok(
        std::process::Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&trace)
            .args(["-e", "trace=open,openat,creat,mkdir,mkdirat,rmdir,unlink,unlinkat,rename,renameat,renameat2,link,linkat,symlink,symlinkat"])
            .arg(env!("CARGO_BIN_EXE_flywheel-bench"))
            .current_dir(&cwd)
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("TMPDIR", &temp)
            .args(["run", "--repo"])
            .arg(&nix_source)
            .arg("--repo")
            .arg(&bazel_source)
            .args(["--param", "size=2", "--param", "work=5"])
            .args(["--samples", "1", "--warmups", "0", "--verdicts", "warn"])
            .args(["--scenario", "cold", "--scenario", "warm", "--scenario", "noop"])
            .arg("--output")
            .arg(&output)
            .arg("--work-dir")
            .arg(&work),
    );
    // Every write the run and its tools made is in the work folder, the output's folder
    // or inside a Nix build sandbox (its /build and its view of the private store; the
    // host's /nix is compared below), or is one of the harness's own short-lived 0700
    // folders for the output of a quick command (`.tmpXXXXXX` in the temp folder).
    let sandboxed = ["/build/", "/nix/store/", "/dev/", "/proc/", "/sys/"];
    let log = std::fs::read_to_string(&trace).unwrap();
    let outside: Vec<String> = written_paths(&log)
        .into_iter()
        .filter(|p| {
            let path = Path::new(p);
            !(path.starts_with(&work)
                || path.starts_with(&out_dir)
                || path.starts_with(&trace)
                || sandboxed.iter().any(|s| p.starts_with(s))
                || path
                    .strip_prefix(&temp)
                    .is_ok_and(|rest| rest.to_string_lossy().starts_with(".tmp")))
        })
        .collect();
    assert_eq!(outside, Vec::<String>::new(), "written outside the run");
    // And, for writes by relative path: nothing else under the test's folder changed
    // (the sources, HOME, the folder the run started in); the temp folder is left empty.
    let after = tree_snapshot(root, &[&work, &temp, &out_dir, &trace]);
    assert_eq!(after, before);
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        0,
        "left in TMPDIR"
    );
    assert!(output.is_file());
    assert_left_nothing(&work, &nix_before);
}
