//! Helpers for the end-to-end tests: they run the real binary against real tools.

#![allow(dead_code)] // Each test binary uses its own subset.

pub mod attic_server;
pub mod debian13;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flywheel-bench"))
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails with a clear message when a real tool the test needs is missing.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        assert!(
            which(tool),
            "`{tool}` is not installed: these tests use the real tool (run .ci/run or see the README)"
        );
    }
}

fn which(tool: &str) -> bool {
    which_path(tool).is_some()
}

pub fn run_ok(cmd: &mut Command) -> Output {
    run_exits(cmd, 0)
}

/// Runs `cmd` and asserts that it exits with `code`, showing its output when not.
pub fn run_exits(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().expect("flywheel-bench starts");
    assert_eq!(
        out.status.code(),
        Some(code),
        "flywheel-bench exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Validates a results document against the committed JSON Schema.
pub fn assert_valid_results(results: &serde_json::Value) {
    let schema = read_json(&repo_root().join("results/results.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(results)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "results do not match the schema:\n{}",
        errors.join("\n")
    );
}

/// Pids of live processes whose command line mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// After a run: nothing left in its work folder, nothing running there, and the host's
/// `/nix` as it was (`nix_before`, from `host_nix_snapshot`).
pub fn assert_left_nothing(work: &Path, nix_before: &[(PathBuf, Option<std::time::SystemTime>)]) {
    assert_eq!(
        processes_mentioning(&work.display().to_string()),
        Vec::<String>::new(),
        "a process of the run survived"
    );
    assert_eq!(
        std::fs::read_dir(work).unwrap().count(),
        0,
        "{}",
        work.display()
    );
    assert_eq!(host_nix_snapshot(), nix_before, "the host's /nix changed");
}

/// Every path under `/nix` with its modification time: the harness must not change it.
pub fn host_nix_snapshot() -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    nix_snapshot(Path::new("/nix"))
}

/// Every path under `nix` (a `/nix` folder) with its modification time.
pub fn nix_snapshot(nix: &Path) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Option<std::time::SystemTime>)>) {
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return;
        };
        out.push((dir.to_path_buf(), meta.modified().ok()));
        if meta.is_dir() {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                walk(&entry.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(nix, &mut out);
    out.sort();
    out
}

/// Writes an executable script (a stand-in for a tool) at `path`.
pub fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A bench repo in a temporary folder whose Nix file is `nix_expr`.
pub fn temp_repo(name: &str, nix_expr: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("repo.toml"),
        format!("name = \"{name}\"\ndescription = \"test repo\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("default.nix"), nix_expr).unwrap();
    dir
}

/// A derivation built from host tools running `script`.
pub fn derivation(name: &str, script: &str) -> String {
    format!(
        "derivation {{ name = \"{name}\"; system = builtins.currentSystem; builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\"; args = [ \"-c\" ''{script}'' ]; }}\n"
    )
}

/// Checks a sample's time split: its phases and "other" sum to its wall time within 5%.
pub fn assert_time_split_sums(sample: &serde_json::Value) {
    let split = &sample["time_split"];
    let phases: f64 = split["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("no time split: {sample}"))
        .iter()
        .map(|p| p["seconds"].as_f64().unwrap())
        .sum();
    let wall = sample["wall_s"].as_f64().unwrap();
    let sum = phases + split["other_s"].as_f64().unwrap();
    assert!(
        (sum - wall).abs() <= 0.05 * wall,
        "phases {sum} s against wall {wall} s: {split}"
    );
}

/// The case of `scenario` in a results document.
pub fn case<'a>(results: &'a serde_json::Value, scenario: &str) -> &'a serde_json::Value {
    results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scenario"] == scenario)
        .unwrap_or_else(|| panic!("no {scenario} case in {results}"))
}

/// `run --repo REPO --system SYSTEM` with one sample and no warm-up, `--param` for each of
/// `params`, then `args`, in a private work folder; checks that it exits 0, writes valid
/// results and leaves no process or state behind. Returns the results.
pub fn run_one_sample_each(
    system: &str,
    repo: &str,
    params: &[&str],
    args: &[&str],
) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let output = tmp.path().join("results.json");
    let mut cmd = bin();
    cmd.current_dir(repo_root())
        .args(["run", "--repo", repo, "--system", system])
        // One sample has no interval, so its speedup verdict fails: the tests read verdicts.
        .args(["--samples", "1", "--warmups", "0", "--verdicts", "warn"])
        .args(params.iter().flat_map(|p| ["--param", p]))
        .args(args)
        .arg("--output")
        .arg(&output)
        .arg("--work-dir")
        .arg(&work);
    run_ok(&mut cmd);
    let results = read_json(&output);
    assert_valid_results(&results);
    let work_dir = work.to_string_lossy().to_string();
    assert_eq!(
        processes_mentioning(&work_dir),
        Vec::<String>::new(),
        "a build, server or proxy survived"
    );
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "temporary state left in {work_dir}"
    );
    results
}

/// `run` of `samples` cold samples, no warm-up, for each of `repos`, writing to `output`.
pub fn cold_run(repos: &[&Path], samples: usize, output: &Path) -> Command {
    let mut cmd = bin();
    cmd.args(["run", "--scenario", "cold", "--warmups", "0", "--samples"]);
    cmd.arg(samples.to_string());
    for repo in repos {
        cmd.arg("--repo").arg(repo);
    }
    cmd.arg("--output").arg(output);
    cmd
}

/// The harness's own nginx (WebDAV on a free loopback port) as a stand-in cache server,
/// serving `server.root()`; stopped when dropped.
pub fn nginx(dir: &Path) -> flywheel_bench::cache::nginx::Nginx {
    let nginx = which_path("nginx").expect("nginx is installed (scripts/setup)");
    flywheel_bench::cache::nginx::Nginx::start(&nginx, dir).expect("the test nginx starts")
}

pub fn which_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// `run` of a tiny fixture-c-dag (size 2, 5 functions per unit) with Nix, no warm-ups, from
/// the repository root; `extra` adds scenarios, samples, lanes, profiles, the output...
pub fn tiny_nix_run(extra: &[&str]) -> Command {
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
        .args(["--param", "size=2", "--param", "work=5"])
        // A speedup from fewer than 3 samples has no interval, so its verdict cannot pass:
        // these runs are about cases, not verdicts (exit 5 is tested in nix_bench).
        .args(["--verdicts", "warn"])
        .args(extra);
    cmd
}

/// A fresh Nix signing key pair named `name` in `dir`: the secret key's file and the
/// public key.
pub fn signing_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = |args: &[&str], stdin: Option<&Path>| {
        let mut cmd = Command::new("nix");
        cmd.args(["--extra-experimental-features", "nix-command", "key"])
            .args(args);
        if let Some(file) = stdin {
            cmd.stdin(std::fs::File::open(file).unwrap());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let secret = dir.join(format!("{name}.sec"));
    std::fs::write(&secret, key(&["generate-secret", "--key-name", name], None)).unwrap();
    let public = key(&["convert-secret-to-public"], Some(&secret));
    (secret, public)
}

/// `nix ARGS` with a private configuration, narinfo cache and chroot store under `dir`
/// (as the harness runs it), so the host's /nix is never read or written.
pub fn private_nix(dir: &Path, args: &[&str]) -> String {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("nix.conf"),
        "build-users-group =\nsandbox = true\nexperimental-features = nix-command flakes\nsubstituters =\n",
    )
    .unwrap();
    let out = Command::new("nix")
        .args(args)
        .arg("--store")
        .arg(dir.join("store"))
        .args(["--option", "sandbox-paths", "/bin /usr /lib /lib64"])
        .env("NIX_CONF_DIR", &conf)
        .env("NIX_USER_CONF_FILES", conf.join("nix.conf"))
        .env("XDG_CACHE_HOME", dir.join("xdg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Removes a private store made by `private_nix` (its folders are read-only).
pub fn remove_private_nix(dir: &Path) {
    flywheel_bench::exec::scratch::remove_tree(dir).unwrap();
}

/// A test-only nginx (WebDAV on a free loopback port, like the embedded cache) that answers
/// 401 to every request whose `Authorization` header is not exactly `authorization`, so a
/// test sees credentials arrive; stopped when dropped.
pub struct AuthNginx {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl AuthNginx {
    pub fn start(authorization: &str) -> AuthNginx {
        let nginx = which_path("nginx").expect("nginx is installed (scripts/setup)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("ready"), "ready").unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\nhttp {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp-body;\n  proxy_temp_path {d}/tmp-proxy;\n  fastcgi_temp_path {d}/tmp-fastcgi;\n  uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n  types {{ }}\n  default_type application/octet-stream;\n  server {{\n    listen 127.0.0.1:{port};\n    location = /ready {{ root {d}; }}\n    location / {{\n      root {d}/root;\n      if ($http_authorization != \"{authorization}\") {{ return 401; }}\n      dav_methods PUT;\n      create_full_put_path on;\n      dav_access user:rw;\n      client_max_body_size 0;\n    }}\n  }}\n}}\n"
            );
            let conf_file = dir.path().join("nginx.conf");
            std::fs::write(&conf_file, conf).unwrap();
            let mut child = Command::new(&nginx)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_file)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if answers_ready(addr) {
                    return AuthNginx {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // The port was taken: try another.
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "the test nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// Requests it answered, by status: how many were authorised (200/201/204) and refused (401).
    pub fn statuses(&self) -> Vec<u16> {
        std::fs::read_to_string(self._dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(2)?.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for AuthNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Copies a folder (files and subfolders) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every path under `root` with its kind, size and modification time, except `skip`.
pub fn tree_snapshot(root: &Path, skip: &[&Path]) -> Vec<String> {
    fn walk(dir: &Path, skip: &[&Path], out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if skip.contains(&path.as_path()) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            out.push(format!(
                "{} {:?} {} {:?}",
                path.display(),
                meta.file_type(),
                meta.len(),
                meta.modified().ok()
            ));
            if meta.is_dir() {
                walk(&path, skip, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, skip, &mut out);
    out.sort();
    out
}

/// Whether `GET /ready` at `addr` answers 200 with the body `ready`.
fn answers_ready(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(1);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request = "GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
        && answer.ends_with("\r\n\r\nready")
}
