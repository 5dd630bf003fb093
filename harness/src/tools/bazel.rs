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

use crate::cache::{reroute, BazelCache, BazelEndpoint};
use crate::error::{Error, IoContext, Result};
use crate::plan::ParamValue;
use crate::results::{CacheFill, CacheUse, ConfigFile};
use crate::run::process::{run_captured, CommandSpec, Executor, ProcessOutcome, ServerProbe};
use crate::tools::bazel_log::{failure_summary, parse_exec_log, parse_process_summary};
use crate::tools::{
    first_distinct, BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation, CaseContext,
    Counters, Outputs, PreparedBuild,
};

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

pub struct BazelDriver {
    bazel: PathBuf,
    dir: PathBuf,
    overrides: BTreeMap<String, PathBuf>,
    cache: Option<BazelCache>,
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

/// How one build reaches the cache.
#[derive(Clone, Copy, PartialEq)]
enum Remote {
    None,
    /// Upload only: the priming build must not read what it measures against.
    UploadOnly,
    Read,
}

impl BazelDriver {
    /// `dir` is a private folder for workspace copies, output roots and rule overrides.
    /// `extra_overrides` (`--bazel-override NAME=PATH`) win over the Debian defaults.
    pub fn new(
        bazel: PathBuf,
        dir: &Path,
        cache: Option<BazelCache>,
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
        Ok(BazelDriver {
            bazel,
            dir: dir.to_path_buf(),
            overrides,
            cache,
            primed: BTreeMap::new(),
            next_root: 0,
        })
    }

    fn headers_rc(&self) -> Option<&Path> {
        self.cache.as_ref().and_then(|c| c.headers_rc.as_deref())
    }

    fn startup_args(&self, output_root: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("--output_user_root={}", output_root.display()).into(),
            // The user's ~/.bazelrc must not change what is measured.
            "--nohome_rc".into(),
            SERVER_MAX_IDLE.into(),
        ];
        if let Some(rc) = self.headers_rc() {
            args.push(format!("--bazelrc={}", rc.display()).into());
        }
        args
    }

    fn cache(&self) -> Result<&BazelCache> {
        self.cache.as_ref().ok_or_else(|| {
            Error::Environment("a Bazel case that reads a cache ran without one".into())
        })
    }

    fn build_spec(
        &self,
        case: &CaseContext,
        workspace: &Path,
        output_root: &Path,
        exec_log: &Path,
        logs: &Path,
        remote: Remote,
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
        args.push(format!("--execution_log_json_file={}", exec_log.display()).into());
        for (name, path) in &self.overrides {
            args.push(format!("--override_repository={name}={}", path.display()).into());
        }
        if remote != Remote::None {
            let cache = self.cache()?;
            match &cache.endpoint {
                BazelEndpoint::Disk(path) => {
                    args.push(format!("--disk_cache={}", path.display()).into())
                }
                BazelEndpoint::Remote(url) => {
                    let url = match case.cache_via {
                        Some(via) => reroute(url, via),
                        None => url.clone(),
                    };
                    args.push(format!("--remote_cache={url}").into());
                }
            }
            if remote == Remote::UploadOnly {
                args.push("--noremote_accept_cached".into());
            }
            if cache.read_only {
                args.push("--noremote_upload_local_results".into());
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

    /// The headers rc file, its values redacted.
    fn config_files(&self) -> Vec<ConfigFile> {
        self.headers_rc()
            .map(|rc| ConfigFile {
                path: rc.display().to_string(),
                text: "build --remote_header=<redacted>\n".into(),
            })
            .into_iter()
            .collect()
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
        crate::run::janitor::stop_bazel_servers(output_root, 1);
    }
}

impl BuildDriver for BazelDriver {
    fn primed(&self, case: &CaseContext) -> Option<&Outputs> {
        self.primed.get(&case.state_key()).map(|p| &p.outputs)
    }

    fn keep_primed(&mut self, case: &CaseContext, build: PreparedBuild, outputs: Outputs) {
        let BuildState::Bazel {
            workspace,
            output_root,
            ..
        } = build.state
        else {
            return;
        };
        self.primed.insert(
            case.state_key(),
            Primed {
                workspace,
                output_root,
                outputs,
            },
        );
    }

    /// The priming build uploads whenever a cache is configured (unless it is read-only),
    /// so later cases that need it find it full whatever ran first.
    fn fill_cache(
        &mut self,
        _case: &CaseContext,
        _exec: &dyn Executor,
    ) -> Result<Option<CacheFill>> {
        Ok(self
            .cache
            .as_ref()
            .filter(|c| c.read_only)
            .map(|_| CacheFill::read_only()))
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> Result<PreparedBuild> {
        let exec_log = dir.join("exec.json");
        let (workspace, output_root, remote, primed) = match mode {
            BuildMode::Noop => {
                let primed = self
                    .primed
                    .get(&case.state_key())
                    .ok_or_else(|| Error::Build("the noop workspace was not primed".into()))?;
                (
                    primed.workspace.clone(),
                    primed.output_root.clone(),
                    Remote::None,
                    true,
                )
            }
            BuildMode::Prime => {
                let root = self.new_output_root();
                let remote = if self.cache.as_ref().is_some_and(|c| !c.read_only) {
                    Remote::UploadOnly
                } else {
                    Remote::None
                };
                (root.with_extension("ws"), root, remote, true)
            }
            BuildMode::Fresh => (dir.join("ws"), self.new_output_root(), Remote::None, false),
            BuildMode::FromCache { .. } => {
                (dir.join("ws"), self.new_output_root(), Remote::Read, false)
            }
        };
        if mode != BuildMode::Noop {
            copy_workspace(case, &workspace)?;
        }
        Ok(PreparedBuild {
            spec: self.build_spec(case, &workspace, &output_root, &exec_log, dir, remote)?,
            state: BuildState::Bazel {
                workspace,
                output_root,
                exec_log,
                primed,
            },
            files: self.config_files(),
        })
    }

    fn inspect(&self, build: &PreparedBuild, outcome: &ProcessOutcome) -> BuildReport {
        let stderr = std::fs::read_to_string(&build.spec.stderr).unwrap_or_default();
        let exec_log = read_exec_log(build);
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
    fn outputs(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> Result<Outputs> {
        read_exec_log(build)
            .map(|log| log.outputs)
            .map_err(Error::Build)
    }

    fn finish(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> Result<()> {
        let BuildState::Bazel {
            workspace,
            output_root,
            primed: false,
            ..
        } = &build.state
        else {
            return Ok(()); // The primed server serves every no-op build.
        };
        self.shutdown(output_root, workspace, exec);
        crate::scratch::remove_tree(output_root)
            .context(|| format!("removing {}", output_root.display()))
    }

    /// The server of the build's output root does the work; the client only asks.
    fn servers(&self, build: &PreparedBuild) -> ServerProbe {
        match &build.state {
            BuildState::Bazel { output_root, .. } => ServerProbe::bazel(output_root),
            BuildState::Nix { .. } => ServerProbe::default(),
        }
    }

    fn cache_use(&self) -> Option<CacheUse> {
        self.cache.as_ref().map(BazelCache::use_record)
    }

    fn cache_location(&self) -> Option<CacheLocation<'_>> {
        self.cache.as_ref().map(|c| match &c.endpoint {
            BazelEndpoint::Remote(url) => CacheLocation::Url(url),
            BazelEndpoint::Disk(path) => CacheLocation::Folder(path),
        })
    }

    fn tuned_settings(&self) -> Vec<String> {
        TUNED.iter().map(|s| s.to_string()).collect()
    }
}

/// The build's execution log, parsed.
fn read_exec_log(
    build: &PreparedBuild,
) -> std::result::Result<crate::tools::bazel_log::ExecLog, String> {
    let BuildState::Bazel { exec_log, .. } = &build.state else {
        return Err("a Bazel driver was handed another tool's build".into());
    };
    std::fs::read_to_string(exec_log)
        .map_err(|e| format!("no execution log at {}: {e}", exec_log.display()))
        .and_then(|t| parse_exec_log(&t))
}

impl Drop for BazelDriver {
    /// Whatever happened (error, Ctrl-C), no Bazel server of this run outlives it.
    fn drop(&mut self) {
        crate::run::janitor::stop_bazel_servers(&self.dir, 3);
    }
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
}
