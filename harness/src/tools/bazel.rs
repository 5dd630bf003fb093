//! The Bazel adapter: each cold or warm build in a fresh copy of the workspace with a
//! fresh `--output_user_root`, so nothing is reused but what the remote cache serves; the
//! server is shut down after every build and killed if it lingers.
//!
//! Debian's Bazel 4.2.3 cannot fetch rules_cc/rules_java offline; where Debian's copies
//! are installed (/usr/share/bazel/rules) they are passed with `--override_repository`.
//! Debian's rules_cc 0.0.4 loads `use_cpp_toolchain`, which Bazel 4.2.3 lacks, so the
//! driver uses a copy with that call replaced by the toolchain type it stands for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::plan::profile::BazelBackend;
use crate::plan::ParamValue;
use crate::results::CacheUse;
use crate::run::process::{run_captured, CommandSpec, Executor, ProcessOutcome};
use crate::tools::bazel_log::{failure_summary, parse_exec_log, parse_process_summary};
use crate::tools::{
    first_distinct, reroute, run_priming_build, BuildDriver, BuildMode, BuildReport, CaseContext,
    Counters, Outputs,
};

/// A Bazel remote cache: the embedded nginx, bazel-remote, or any REAPI server.
#[derive(Debug, Clone, PartialEq)]
pub struct BazelCache {
    /// `embedded-nginx`, `http`, `grpc`, ...
    pub backend: String,
    /// `--remote_cache` value (never carries credentials).
    pub url: String,
    /// `Name=Value` headers for the cache, e.g. authorisation; written only to a private
    /// rc file, never to a command line, log or results.
    pub headers: Vec<String>,
}

/// Remote cache headers (e.g. credentials) come from the environment only, one
/// `Name=Value` per line, so they never appear in a command line, log or results file.
pub const HEADERS_ENV: &str = "FLYWHEEL_BAZEL_REMOTE_HEADERS";

fn headers_from_env(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl BazelCache {
    /// The cache warm cases read: `--bazel-remote-cache` wins over the profile's backend;
    /// `None` means the embedded one.
    pub fn chosen(cli_url: Option<&str>, profile: &BazelBackend) -> Result<Option<BazelCache>> {
        Ok(match (cli_url, profile) {
            (Some(url), _) => Some(BazelCache::external(url, headers_from_env(HEADERS_ENV))?),
            (None, BazelBackend::Remote { url, headers_env }) => Some(BazelCache::external(
                url,
                headers_from_env(headers_env.as_deref().unwrap_or(HEADERS_ENV)),
            )?),
            (None, BazelBackend::Disk { path }) => Some(BazelCache {
                backend: "disk".into(),
                url: path.display().to_string(),
                headers: Vec::new(),
            }),
            (None, BazelBackend::Embedded) => None,
        })
    }

    /// An external cache from `--bazel-remote-cache URL`.
    pub fn external(url: &str, headers: Vec<String>) -> Result<BazelCache> {
        let backend = url
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .unwrap_or("");
        let backend = match backend {
            "http" | "https" => "http",
            "grpc" | "grpcs" => "grpc",
            _ => {
                return Err(Error::Usage(format!(
                    "--bazel-remote-cache {url}: not an http(s):// or grpc(s):// URL\n  fix: e.g. http://cache:8080 or grpc://cache:9092 (bazel-remote serves both)"
                )))
            }
        };
        Ok(BazelCache {
            backend: backend.into(),
            url: url.to_string(),
            headers,
        })
    }
}

/// Debian's rule sets, used when present.
const DEBIAN_RULES_CC: &str = "/usr/share/bazel/rules/cc";
const DEBIAN_RULES_JAVA: &str = "/usr/share/bazel/rules/java";
/// Servers left behind by a crash exit on their own after this long.
const SERVER_MAX_IDLE: &str = "--max_idle_secs=300";
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings that bound the cost of a hanging or slow cache (`fallback:*+tuned`): a short
/// timeout per remote call, no retries, and many lookups in flight at once (Bazel 4 has
/// no circuit breaker, so each action waits out its own timeout).
const TUNED: &[&str] = &["--remote_timeout=2", "--remote_retries=0", "--jobs=32"];

pub struct BazelDriver<'c> {
    bazel: PathBuf,
    dir: PathBuf,
    /// Private rc file with the cache headers, if any.
    rc_file: Option<PathBuf>,
    overrides: BTreeMap<String, PathBuf>,
    cache: Option<&'c BazelCache>,
    /// Per repo and parameters: a workspace copy and output root built once without reading
    /// any cache (the clean reference and the `noop` state; its server stays up), which also
    /// fills the cache when one is configured.
    primed: BTreeMap<String, Primed>,
    next_root: usize,
}

struct Primed {
    workspace: PathBuf,
    output_root: PathBuf,
    outputs: Outputs,
}

impl<'c> BazelDriver<'c> {
    /// `dir` is a private folder for workspace copies, output roots and rule overrides.
    /// `extra_overrides` (`--bazel-override NAME=PATH`) win over the Debian defaults.
    pub fn new(
        bazel: PathBuf,
        dir: &Path,
        cache: Option<&'c BazelCache>,
        extra_overrides: &[(String, PathBuf)],
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        let mut overrides = BTreeMap::new();
        if Path::new(DEBIAN_RULES_CC).is_dir() {
            overrides.insert(
                "rules_cc".to_string(),
                patched_rules_cc(Path::new(DEBIAN_RULES_CC), dir)?,
            );
        }
        if Path::new(DEBIAN_RULES_JAVA).is_dir() {
            overrides.insert("rules_java".to_string(), DEBIAN_RULES_JAVA.into());
        }
        overrides.extend(extra_overrides.iter().cloned());
        let rc_file = match cache {
            Some(c) if !c.headers.is_empty() => {
                let rc = dir.join("headers.bazelrc");
                let lines: String = c
                    .headers
                    .iter()
                    .map(|h| format!("build --remote_header={h}\n"))
                    .collect();
                crate::scratch::write_private(&rc, lines.as_bytes())?;
                Some(rc)
            }
            _ => None,
        };
        Ok(BazelDriver {
            bazel,
            dir: dir.to_path_buf(),
            rc_file,
            overrides,
            cache,
            primed: BTreeMap::new(),
            next_root: 0,
        })
    }

    fn startup_args(&self, output_root: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("--output_user_root={}", output_root.display()).into(),
            // The user's ~/.bazelrc must not change what is measured.
            "--nohome_rc".into(),
            SERVER_MAX_IDLE.into(),
        ];
        if let Some(rc) = &self.rc_file {
            args.push(format!("--bazelrc={}", rc.display()).into());
        }
        args
    }

    fn cache(&self) -> Result<&'c BazelCache> {
        self.cache.ok_or_else(|| {
            Error::Environment("a Bazel case that reads a cache ran without one".into())
        })
    }

    /// `remote`: `None` builds without a cache; `Some(upload_only)` uses it, only to
    /// upload when `upload_only` (the priming build must not read what it measures against).
    fn build_spec(
        &self,
        case: &CaseContext,
        workspace: &Path,
        output_root: &Path,
        logs: &Path,
        remote: Option<bool>,
    ) -> Result<CommandSpec> {
        let targets = case.repo.bazel.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "bench repo `{}` has no [bazel] targets",
                case.repo.name
            ))
        })?;
        let mut args = self.startup_args(output_root);
        args.extend(
            [
                "build",
                "--color=no",
                "--curses=no",
                // Debian's /etc/bazel/bazelrc turns sandbox debugging on; it keeps sandboxes.
                "--sandbox_debug=false",
                // No convenience symlinks in the workspace.
                "--symlink_prefix=/",
                // Keep the caller's PATH out of action keys, or caches never hit across machines.
                "--incompatible_strict_action_env",
            ]
            .map(OsString::from),
        );
        args.push(
            format!(
                "--execution_log_json_file={}",
                logs.join("exec.json").display()
            )
            .into(),
        );
        for (name, path) in &self.overrides {
            args.push(format!("--override_repository={name}={}", path.display()).into());
        }
        if let Some(upload_only) = remote {
            let cache = self.cache()?;
            let url = match case.cache_via {
                Some(via) => reroute(&cache.url, via),
                None => cache.url.clone(),
            };
            if cache.backend == "disk" {
                args.push(format!("--disk_cache={}", cache.url).into());
            } else {
                args.push(format!("--remote_cache={url}").into());
            }
            if upload_only {
                args.push("--noremote_accept_cached".into());
            }
            if case.tuned() {
                args.extend(TUNED.iter().map(OsString::from));
            }
        }
        args.extend(targets.targets.iter().map(OsString::from));
        Ok(CommandSpec {
            program: self.bazel.clone(),
            args,
            env: Vec::new(),
            cwd: Some(workspace.to_path_buf()),
            stdin: None,
            stdout: logs.join("stdout.log"),
            stderr: logs.join("stderr.log"),
            timeout: case.timeout,
        })
    }

    fn new_output_root(&mut self) -> PathBuf {
        self.next_root += 1;
        self.dir.join(format!("root-{}", self.next_root))
    }

    fn shutdown(&self, output_root: &Path, workspace: &Path, exec: &dyn Executor) {
        let mut args = self.startup_args(output_root);
        args.push("shutdown".into());
        // The server is found from the workspace, so shut down from there. A failed
        // shutdown is not fatal: the kill below is the guarantee.
        let _ = run_captured(
            exec,
            CommandSpec::new(&self.bazel, args, SHUTDOWN_TIMEOUT).cwd(workspace),
        );
        kill_servers(output_root);
    }
}

impl BuildDriver for BazelDriver<'_> {
    /// The priming build fills the cache whenever one is configured, so later cases that
    /// need it find it full whatever ran first.
    fn prime(&mut self, case: &CaseContext, exec: &dyn Executor, _fill_cache: bool) -> Result<()> {
        let key = case.state_key();
        if self.primed.contains_key(&key) {
            return Ok(());
        }
        let output_root = self.new_output_root();
        let workspace = output_root.with_extension("ws");
        copy_workspace(case, &workspace)?;
        let logs = output_root.with_extension("logs");
        std::fs::create_dir_all(&logs).context(|| format!("creating {}", logs.display()))?;
        let upload = self.cache.is_some().then_some(true);
        let spec = self.build_spec(case, &workspace, &output_root, &logs, upload)?;
        run_priming_build(self, &spec, exec)?;
        let outputs = self.outputs(&spec, exec)?;
        self.primed.insert(
            key,
            Primed {
                workspace,
                output_root,
                outputs,
            },
        );
        Ok(())
    }

    fn clean_outputs(&self, case: &CaseContext) -> Option<&Outputs> {
        self.primed.get(&case.state_key()).map(|p| &p.outputs)
    }

    fn command(&mut self, case: &CaseContext, mode: BuildMode, dir: &Path) -> Result<CommandSpec> {
        match mode {
            BuildMode::Noop => {
                let primed = self
                    .primed
                    .get(&case.state_key())
                    .ok_or_else(|| Error::Build("the noop workspace was not primed".into()))?;
                self.build_spec(case, &primed.workspace, &primed.output_root, dir, None)
            }
            BuildMode::Fresh | BuildMode::FromCache { .. } => {
                let workspace = dir.join("ws");
                copy_workspace(case, &workspace)?;
                let root = self.new_output_root();
                let remote = matches!(mode, BuildMode::FromCache { .. }).then_some(false);
                self.build_spec(case, &workspace, &root, dir, remote)
            }
        }
    }

    fn inspect(&self, spec: &CommandSpec, outcome: &ProcessOutcome) -> BuildReport {
        let stderr = std::fs::read_to_string(&spec.stderr).unwrap_or_default();
        let exec_log = std::fs::read_to_string(exec_log_of(spec))
            .map_err(|e| format!("no execution log at {}: {e}", exec_log_of(spec).display()))
            .and_then(|t| parse_exec_log(&t));
        let summary = parse_process_summary(&stderr);
        let mut counters = Counters::default();
        match &exec_log {
            Ok(log) => {
                counters.actions = Some(log.actions);
                counters.remote_cache_hits = Some(log.remote_cache_hits);
                counters.by_mnemonic = log.by_mnemonic.clone();
                if let Some(s) = &summary {
                    if s.remote_cache_hits() != log.remote_cache_hits {
                        counters.notes.push(format!(
                            "the console counted {} remote cache hits, the execution log {}",
                            s.remote_cache_hits(),
                            log.remote_cache_hits
                        ));
                    }
                }
            }
            Err(e) if outcome.success() => counters.notes.push(e.clone()),
            Err(_) => {}
        }
        counters.processes = summary.map(|s| s.total);
        BuildReport {
            counters,
            error: (!outcome.success()).then(|| {
                failure_summary(&stderr)
                    .unwrap_or_else(|| format!("bazel {} and printed nothing", outcome.describe()))
            }),
            messages: first_distinct(
                stderr
                    .lines()
                    .filter(|l| l.starts_with("WARNING:") || l.starts_with("ERROR:")),
            ),
        }
    }

    /// Digests of every output file of every spawn, from the execution log.
    fn outputs(&mut self, spec: &CommandSpec, _exec: &dyn Executor) -> Result<Outputs> {
        let path = exec_log_of(spec);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Build(format!("no execution log at {}: {e}", path.display())))?;
        parse_exec_log(&text)
            .map(|log| log.outputs)
            .map_err(Error::Build)
    }

    fn finish(&mut self, spec: &CommandSpec, exec: &dyn Executor) -> Result<()> {
        let root = output_root_of(spec).ok_or_else(|| {
            Error::Environment("a Bazel command without --output_user_root".into())
        })?;
        if self.primed.values().any(|p| p.output_root == root) {
            return Ok(()); // The primed server serves every no-op build.
        }
        let workspace = spec.cwd.clone().unwrap_or_default();
        self.shutdown(&root, &workspace, exec);
        crate::scratch::remove_tree(&root).context(|| format!("removing {}", root.display()))
    }

    fn cache_use(&self) -> Option<CacheUse> {
        self.cache.map(|cache| CacheUse {
            backend: cache.backend.clone(),
            url: cache.url.clone(),
        })
    }

    fn tuned_settings(&self) -> Vec<String> {
        TUNED.iter().map(|s| s.to_string()).collect()
    }
}

fn exec_log_of(spec: &CommandSpec) -> PathBuf {
    spec.args
        .iter()
        .find_map(|a| {
            a.to_str()?
                .strip_prefix("--execution_log_json_file=")
                .map(PathBuf::from)
        })
        .unwrap_or_default()
}

impl Drop for BazelDriver<'_> {
    /// Whatever happened (error, Ctrl-C), no Bazel server of this run outlives it.
    fn drop(&mut self) {
        kill_servers(&self.dir);
    }
}

fn output_root_of(spec: &CommandSpec) -> Option<PathBuf> {
    spec.args.iter().find_map(|a| {
        a.to_str()?
            .strip_prefix("--output_user_root=")
            .map(PathBuf::from)
    })
}

/// Kills every Bazel server whose pid file lies under `dir` (`.../server/server.pid.txt`),
/// after checking that the pid still belongs to a process started for `dir`.
fn kill_servers(dir: &Path) {
    for pid_file in find_files(dir, "server.pid.txt") {
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
            // SAFETY: plain syscall; the pid was checked to be this run's server.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if entry.file_name() == name {
                found.push(path);
            }
        }
    }
    found
}

/// Copies the bench repo's workspace (its source is never written) and writes its
/// parameters file in the copy.
fn copy_workspace(case: &CaseContext, to: &Path) -> Result<()> {
    copy_tree(case.source, to).context(|| {
        format!(
            "copying the workspace {} to {}",
            case.source.display(),
            to.display()
        )
    })?;
    let targets = case.repo.bazel.as_ref();
    if let Some(file) = targets.and_then(|t| t.parameters_file.as_ref()) {
        let path = to.join(file);
        std::fs::write(&path, parameters_bzl(&case.repo.parameters))
            .context(|| format!("writing parameters to {}", path.display()))?;
    }
    Ok(())
}

/// `NAME = value` lines for a `.bzl` file.
pub fn parameters_bzl(parameters: &BTreeMap<String, ParamValue>) -> String {
    let mut out = String::from("# Written by flywheel-bench from the bench repo's parameters.\n");
    for (name, value) in parameters {
        let value = match value {
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Str(s) => format!("{s:?}"),
        };
        out.push_str(&format!("{} = {value}\n", name.to_uppercase()));
    }
    out
}

/// Copies a tree, skipping Bazel's convenience symlinks (`bazel-*`) and `.git`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with("bazel-") || name_str == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A copy of Debian's rules_cc that loads on Bazel 4.2.3 (see the module comment).
fn patched_rules_cc(debian: &Path, dir: &Path) -> Result<PathBuf> {
    let copy = dir.join("rules_cc");
    if !copy.exists() {
        copy_tree(debian, &copy).context(|| format!("copying {}", debian.display()))?;
    }
    let impl_dir = copy.join("cc/private/rules_impl");
    for file in ["cc_flags_supplier.bzl", "compiler_flag.bzl"] {
        let path = impl_dir.join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let patched = patch_use_cpp_toolchain(&text);
        if patched != text {
            // Copies of 0444 files stay read-only; replace rather than write in place.
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, patched).context(|| format!("patching {}", path.display()))?;
        }
    }
    Ok(copy)
}

fn patch_use_cpp_toolchain(text: &str) -> String {
    text.replace(", \"use_cpp_toolchain\")", ")").replace(
        "use_cpp_toolchain()",
        "[\"@bazel_tools//tools/cpp:toolchain_type\"]",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_upper_case_bzl_constants() {
        let params = BTreeMap::from([
            ("size".to_string(), ParamValue::Int(7)),
            ("mode".to_string(), ParamValue::Str("fast".into())),
        ]);
        let text = parameters_bzl(&params);
        assert!(
            text.contains("MODE = \"fast\"\n") && text.contains("SIZE = 7\n"),
            "{text}"
        );
    }

    #[test]
    fn patches_the_missing_toolchain_helper() {
        let text = "load(\"@bazel_tools//tools/cpp:toolchain_utils.bzl\", \"find_cpp_toolchain\", \"use_cpp_toolchain\")\nx = rule(toolchains = use_cpp_toolchain())\n";
        let patched = patch_use_cpp_toolchain(text);
        assert!(!patched.contains("use_cpp_toolchain"), "{patched}");
        assert!(patched.contains("\"find_cpp_toolchain\")"));
        assert!(patched.contains("toolchains = [\"@bazel_tools//tools/cpp:toolchain_type\"]"));
    }

    #[test]
    fn the_command_line_wins_over_the_profile() {
        let profile = BazelBackend::Disk {
            path: "/srv/bazel".into(),
        };
        let chosen = BazelCache::chosen(Some("grpc://c:9092"), &profile)
            .unwrap()
            .unwrap();
        assert_eq!(
            (chosen.backend.as_str(), chosen.url.as_str()),
            ("grpc", "grpc://c:9092")
        );
        let disk = BazelCache::chosen(None, &profile).unwrap().unwrap();
        assert_eq!(
            (disk.backend.as_str(), disk.url.as_str()),
            ("disk", "/srv/bazel")
        );
        assert_eq!(
            BazelCache::chosen(None, &BazelBackend::Embedded).unwrap(),
            None
        );
    }

    #[test]
    fn external_caches_by_scheme() {
        assert_eq!(
            BazelCache::external("grpc://127.0.0.1:9092", vec![])
                .unwrap()
                .backend,
            "grpc"
        );
        assert_eq!(
            BazelCache::external("https://cache:8080", vec![])
                .unwrap()
                .backend,
            "http"
        );
        let err = BazelCache::external("ftp://x", vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--bazel-remote-cache") && err.contains("fix:"),
            "{err}"
        );
    }

    #[test]
    fn output_root_is_read_back_from_the_command() {
        let args = vec!["--output_user_root=/tmp/r1".into(), "build".into()];
        let spec = CommandSpec::new("bazel", args, Duration::from_secs(1));
        assert_eq!(output_root_of(&spec), Some(PathBuf::from("/tmp/r1")));
    }
}
