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

use crate::error::{CaseFailure, Error, IoContext, Result, StepResult};
use crate::exec::process::{run_captured, CommandSpec, Executor, ProcessOutcome, ServerProbe};
use crate::exec::scratch::{remove_tree, tree_bytes};
use crate::plan::cache::{reroute, BazelCache, BazelEndpoint, FreshCache};
use crate::plan::config::BazelSetup;
use crate::plan::{ParamValue, System};
use crate::results::explain::TimeSplit;
use crate::results::{CacheBackend, CacheFill, CacheUse, ConfigFile, FillMethod, ToolUse};
use crate::results::{ExternalDeps, FlagSet};
use crate::tools::bazel_flags::BazelVersion;
use crate::tools::bazel_log::{
    self, failure_summary, failure_tail, parse_process_summary, ExecLog, ExecLogReader,
};
use crate::tools::build_graph::BuildGraph;
use crate::tools::explain::explain_bazel_misses;
use crate::tools::{bazel_profile, Transfer};
use crate::tools::{
    failed_tail, first_distinct, BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation,
    CaseContext, Counters, Outputs, PreparedBuild, LOG_TAIL_LINES,
};

/// Debian's rule sets, used when present.
const DEBIAN_RULES_CC: &str = "/usr/share/bazel/rules/cc";
const DEBIAN_RULES_JAVA: &str = "/usr/share/bazel/rules/java";
/// Servers left behind by a crash exit on their own after this long.
const SERVER_MAX_IDLE: &str = "--max_idle_secs=300";
/// For `bazel shutdown` and `bazel info`, with the server up.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// Bazel keeps up to this many remote cache connections in flight
/// (`--remote_max_connections`, 100 by default from 4.x on).
const REMOTE_PARALLELISM: u32 = 100;

/// Settings that bound the cost of a hanging or slow cache (`fallback:*+tuned`): a short
/// timeout per remote call, no retries, and many lookups in flight at once (Bazel 4 has
/// no circuit breaker, so each action waits out its own timeout).
const TUNED: &[&str] = &["--remote_timeout=2", "--remote_retries=0", "--jobs=32"];

pub struct BazelDriver {
    bazel: PathBuf,
    dir: PathBuf,
    /// What `bazel --version` said, as recorded: the flags depend on it.
    version: String,
    /// `bazel` is bazelisk, which runs the version a workspace's `.bazelversion` pins.
    bazelisk: bool,
    /// Debian's rule sets, passed only to the Bazel they were packaged for.
    debian_overrides: BTreeMap<String, PathBuf>,
    /// `--bazel-override NAME=PATH`: always passed, and win over Debian's.
    extra_overrides: Vec<(String, PathBuf)>,
    /// One repository cache for every build of the run, so samples measure building, not
    /// fetching external repositories; `None` when the profile turns it off.
    repository_cache: Option<PathBuf>,
    cache: Option<BazelCache>,
    /// A private rc file with the cache's `build --remote_header=...` lines.
    headers_rc: Option<PathBuf>,
    /// Per repo and parameters: a workspace copy and output root built once without reading
    /// any cache (the clean reference and the `noop` state; its server stays up), which also
    /// fills the cache when one is configured.
    primed: BTreeMap<String, Primed>,
    next_root: usize,
    /// The fresh cache the `fill` build being run uploads to.
    fill_to: Option<FreshCache>,
    /// Special files left out of workspace copies, each told once.
    left_out: std::collections::BTreeSet<PathBuf>,
}

struct Primed {
    workspace: PathBuf,
    output_root: PathBuf,
    /// Its execution log, kept for the run: warm builds' misses are compared with it.
    exec_log: PathBuf,
    outputs: Outputs,
}

/// How one build reaches the cache.
#[derive(Clone, Copy, PartialEq)]
enum Remote {
    None,
    /// Upload only: the priming build must not read what it measures against.
    UploadOnly,
    /// Upload only, to the `fill` build's fresh cache.
    FillFresh,
    Read,
}

impl BazelDriver {
    /// `dir` is a private folder for workspace copies, output roots, the repository cache
    /// and rule overrides.
    pub fn new(
        bazel: PathBuf,
        dir: &Path,
        cache: Option<BazelCache>,
        setup: &BazelSetup,
    ) -> Result<Self> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let mut debian_overrides = BTreeMap::new();
        if Path::new(DEBIAN_RULES_CC).is_dir() {
            debian_overrides.insert(
                "rules_cc".to_string(),
                patched_rules_cc(Path::new(DEBIAN_RULES_CC), dir)?,
            );
        }
        if Path::new(DEBIAN_RULES_JAVA).is_dir() {
            debian_overrides.insert("rules_java".to_string(), DEBIAN_RULES_JAVA.into());
        }
        let bazelisk = std::fs::canonicalize(&bazel)
            .ok()
            .and_then(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().contains("bazelisk"))
            })
            .unwrap_or(false);
        let headers_rc = match cache.as_ref().and_then(BazelCache::headers_rc) {
            Some(text) => {
                let rc = dir.join("bazel-headers.rc");
                crate::exec::scratch::write_private(&rc, text.as_bytes())?;
                Some(rc)
            }
            None => None,
        };
        Ok(BazelDriver {
            bazel,
            dir: dir.to_path_buf(),
            headers_rc,
            version: setup.version.clone(),
            bazelisk,
            debian_overrides,
            extra_overrides: setup.overrides.clone(),
            repository_cache: setup
                .shared_repository_cache
                .then(|| dir.join("repository-cache")),
            cache,
            primed: BTreeMap::new(),
            next_root: 0,
            fill_to: None,
            left_out: Default::default(),
        })
    }

    fn headers_rc(&self) -> Option<&Path> {
        self.headers_rc.as_deref()
    }

    fn startup_args(&self, output_root: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("--output_user_root={}", output_root.display()).into(),
            // The user's ~/.bazelrc must not change what is measured.
            "--nohome_rc".into(),
            SERVER_MAX_IDLE.into(),
            // The server's temporary files (the execution log before it is converted)
            // stay in the run's folder, and the JVM writes no /tmp/hsperfdata_USER.
            format!("--host_jvm_args=-Djava.io.tmpdir={}", self.tmp().display()).into(),
            "--host_jvm_args=-XX:-UsePerfData".into(),
        ];
        if let Some(rc) = self.headers_rc() {
            args.push(format!("--bazelrc={}", rc.display()).into());
        }
        args
    }

    /// The temporary folder of the client, the server and the actions (`TMPDIR`).
    fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn cache(&self) -> Result<&BazelCache> {
        self.cache.as_ref().ok_or_else(|| {
            Error::Environment("a Bazel case that reads a cache ran without one".into())
        })
    }

    /// The command of a build in `state`, its console logs in `logs`.
    fn build_spec(
        &self,
        case: &CaseContext,
        state: &BuildState,
        logs: &Path,
        remote: Remote,
    ) -> StepResult<CommandSpec> {
        let BuildState::Bazel {
            workspace,
            output_root,
            exec_log,
            profile,
            ..
        } = state
        else {
            return Err(
                CaseFailure::new("a Bazel build was prepared with another tool's state").into(),
            );
        };
        let targets = case
            .repo
            .bazel
            .as_ref()
            .ok_or_else(|| case.repo.no_targets(System::Bazel))?;
        let flags = self.flag_set(case)?;
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
            ]
            .map(OsString::from),
        );
        args.extend(flags.build_flags.iter().map(OsString::from));
        args.push(flags.execution_log_flag(exec_log).into());
        if case.explain {
            args.push(flags.profile_flag(profile).into());
        }
        let overrides = self
            .debian_overrides
            .iter()
            .filter(|(name, _)| !self.extra_overrides.iter().any(|(n, _)| n == *name))
            .filter(|_| flags.debian_rule_overrides)
            .chain(self.extra_overrides.iter().map(|(n, p)| (n, p)));
        for (name, path) in overrides {
            args.push(format!("--override_repository={name}={}", path.display()).into());
        }
        if let Some(dir) = &self.repository_cache {
            args.push(flags.repository_cache_flag(dir).into());
        }
        args.extend(self.cache_flags(case, &flags, remote)?);
        if remote != Remote::None && case.tuned() {
            args.extend(TUNED.iter().map(OsString::from));
        }
        // After `--` (Bazel 4.2.3 to 9 take it), a target can never be read as an option.
        args.push("--".into());
        args.extend(targets.targets.iter().map(OsString::from));
        Ok(CommandSpec {
            program: self.bazel.clone(),
            args,
            // Actions' temporary files (a compiler's) go there too; TMPDIR is not part of
            // an action's key.
            env: vec![("TMPDIR".into(), self.tmp().into())],
            cwd: Some(workspace.to_path_buf()),
            stdin: None,
            stdout: logs.join("stdout.log"),
            stderr: logs.join("stderr.log"),
            stderr_times: false,
            timeout: case.timeout,
        })
    }

    /// The version-dependent flags for this case's workspace.
    fn flag_set(&self, case: &CaseContext) -> Result<FlagSet, CaseFailure> {
        let has = |name: &str| case.source.join(name).is_file();
        let deps = ExternalDeps::from_markers(
            has("MODULE.bazel"),
            has("WORKSPACE") || has("WORKSPACE.bazel"),
        );
        FlagSet::choose(&self.version_for(case)?, deps)
            .map_err(|why| CaseFailure::new(format!("bench repo `{}`: {why}", case.repo.name)))
    }

    /// The Bazel version that builds this case: the repo's pinned one under bazelisk; any
    /// other Bazel must match it (same major and minor), or the case fails saying so,
    /// rather than measuring a Bazel the repo does not build with.
    fn version_for(&self, case: &CaseContext) -> Result<String, CaseFailure> {
        let Some(pinned) = case.repo.bazel.as_ref().and_then(|b| b.version.as_deref()) else {
            return Ok(self.version.clone());
        };
        if self.bazelisk {
            return Ok(format!("bazel {pinned}"));
        }
        let wanted = BazelVersion::parse(&format!("bazel {pinned}"));
        let found = BazelVersion::parse(&self.version);
        match (wanted, found) {
            (Some(w), Some(f)) if (w.major, w.minor) == (f.major, f.minor) => {
                Ok(self.version.clone())
            }
            _ => Err(CaseFailure::new(format!(
                "bench repo `{}` pins Bazel {pinned} (its .bazelversion), but `bazel` here is {:?}\n  fix: put bazelisk on PATH as `bazel` (it runs the pinned version), or run where Bazel {pinned} is installed",
                case.repo.name, self.version
            ))),
        }
    }

    /// Both cache flags, always: whatever the workspace's own rc files set (a disk cache,
    /// a remote cache) is overridden, so a cold build reads no cache and a warm build reads
    /// only the one measured.
    fn cache_flags(
        &self,
        case: &CaseContext,
        flags: &FlagSet,
        remote: Remote,
    ) -> Result<Vec<OsString>> {
        let (mut disk, mut remote_url) = (String::new(), String::new());
        if remote == Remote::FillFresh {
            remote_url = self
                .fill_to
                .as_ref()
                .ok_or_else(|| Error::Environment("the fill build has no fresh cache".into()))?
                .url
                .to_string();
        } else if remote != Remote::None {
            match &self.cache()?.endpoint {
                BazelEndpoint::Disk(path) => disk = path.display().to_string(),
                BazelEndpoint::Remote(url) => {
                    remote_url = match case.cache_via {
                        Some(via) => reroute(url, via),
                        None => url.clone(),
                    }
                    .to_string()
                }
            }
        }
        let mut args: Vec<OsString> = flags
            .cache_flags(&disk, &remote_url)
            .map(OsString::from)
            .into();
        if matches!(remote, Remote::UploadOnly | Remote::FillFresh) {
            args.push("--noremote_accept_cached".into());
        }
        if remote == Remote::FillFresh {
            args.push("--remote_upload_local_results".into());
        }
        // Measuring a cache as it is: nothing this build made goes into it.
        if remote != Remote::None && self.cache()?.read_only {
            args.push("--noremote_upload_local_results".into());
        }
        Ok(args)
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
        crate::exec::janitor::stop_bazel_servers(output_root, 1);
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
            exec_log,
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
                exec_log,
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
    ) -> StepResult<Option<CacheFill>> {
        Ok(self
            .cache
            .as_ref()
            .filter(|c| c.read_only)
            .map(|_| CacheFill::read_only()))
    }

    fn fill_unavailable(&self, _case: &CaseContext) -> Option<String> {
        match self.cache.as_ref() {
            Some(BazelCache {
                endpoint: BazelEndpoint::Remote(_),
                fill_root: Some(_),
                ..
            }) => None,
            cache => Some(FreshCache::unavailable(
                "Bazel",
                cache.map_or(CacheBackend::Http, |c| c.backend),
            )),
        }
    }

    /// Bazel uploaded as it built (`--remote_upload_local_results`): what its fresh cache
    /// holds, CAS blobs and action results, as the server stored them.
    fn fill_fresh(
        &mut self,
        _case: &CaseContext,
        _build: &PreparedBuild,
        _exec: &dyn Executor,
    ) -> StepResult<CacheFill> {
        let fresh = self
            .fill_to
            .take()
            .ok_or_else(|| CaseFailure::new("the fill build had no fresh cache"))?;
        // A build that made nothing new uploads nothing, and the server made no folder.
        let (files, bytes) = if fresh.folder.exists() {
            tree_bytes(&fresh.folder)?
        } else {
            (0, 0)
        };
        remove_tree(&fresh.folder).context(|| format!("removing {}", fresh.folder.display()))?;
        Ok(CacheFill {
            uploaded_paths: Some(files),
            uploaded_bytes: Some(bytes),
            stored_bytes: Some(bytes),
            in_build: true,
            ..CacheFill::timed(FillMethod::BazelUpload, 0.0)
        })
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> StepResult<PreparedBuild> {
        let mut exec_log = dir.join("exec.json");
        let profile = dir.join("profile.json");
        let priming_log = self
            .primed
            .get(&case.state_key())
            .map(|p| p.exec_log.clone());
        let (workspace, output_root, remote, primed) = match mode {
            BuildMode::Noop => {
                let primed = self
                    .primed
                    .get(&case.state_key())
                    .ok_or_else(|| CaseFailure::new("the noop workspace was not primed"))?;
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
                exec_log = root.with_extension("exec.json");
                (root.with_extension("ws"), root, remote, true)
            }
            BuildMode::Fresh => (dir.join("ws"), self.new_output_root(), Remote::None, false),
            BuildMode::Fill => {
                let root = self.new_output_root();
                let cache = self.cache()?;
                let BazelEndpoint::Remote(url) = &cache.endpoint else {
                    return Err(
                        CaseFailure::new(FreshCache::unavailable("Bazel", cache.backend)).into(),
                    );
                };
                self.fill_to = FreshCache::beside(url, cache.fill_root.as_deref(), self.next_root);
                (dir.join("ws"), root, Remote::FillFresh, false)
            }
            BuildMode::FromCache { .. } => {
                (dir.join("ws"), self.new_output_root(), Remote::Read, false)
            }
        };
        if mode != BuildMode::Noop {
            for path in copy_workspace(case, &workspace)? {
                if self.left_out.insert(path.clone()) {
                    eprintln!(
                        "warning: bench repo `{}`: {} is not a regular file, folder or link; it was left out of the workspace copy",
                        case.repo.name,
                        path.display()
                    );
                }
            }
        }
        let state = BuildState::Bazel {
            workspace,
            output_root,
            exec_log,
            profile,
            priming_log: priming_log.filter(|_| remote == Remote::Read),
            primed,
        };
        Ok(PreparedBuild {
            spec: self.build_spec(case, &state, dir, remote)?,
            state,
            files: self.config_files(),
        })
    }

    /// One pass over the execution log gives the counters, the output digests and the
    /// misses to explain (each against the priming build's same action).
    fn inspect(
        &self,
        build: &PreparedBuild,
        outcome: &ProcessOutcome,
        explain_misses: bool,
    ) -> BuildReport {
        let stderr = std::fs::read_to_string(&build.spec.stderr).unwrap_or_default();
        let priming_log = match &build.state {
            BuildState::Bazel {
                priming_log: Some(priming),
                ..
            } if explain_misses => Some(priming),
            _ => None,
        };
        let mut exec_log = scan_exec_log_of(build, priming_log.is_some());
        let summary = parse_process_summary(&stderr);
        let split = time_split(build, outcome.wall.as_secs_f64());
        let mut counters = Counters::default();
        match &exec_log {
            Ok(log) => {
                counters.actions = Some(log.actions);
                counters.remote_cache_hits = Some(log.remote_cache_hits);
                // Disk cache hits are logged as remote ones: both are a cache's work.
                counters.from_team_cache = Some(log.remote_cache_hits);
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
            log_tail: failed_tail(outcome, || failure_tail(&stderr, LOG_TAIL_LINES)),
            time_split: split.as_ref().map(|(s, _)| s.clone()),
            transfer: exec_log.as_ref().ok().map(|log| Transfer {
                bytes: log.hit_output_bytes,
                requests: split.map_or(0, |(_, requests)| requests),
                parallelism: REMOTE_PARALLELISM,
            }),
            explanations: match (priming_log, &mut exec_log) {
                (Some(priming), Ok(log)) if !log.misses.is_empty() => {
                    let misses = std::mem::take(&mut log.misses);
                    open_log(priming)
                        .map(|r| ExecLogReader::new(r, &priming.display().to_string()))
                        .and_then(|reader| explain_bazel_misses(misses, reader))
                        .ok()
                }
                _ => None,
            },
            outputs: exec_log.ok().map(|log| log.outputs),
        }
    }

    /// Digests of every output file of every spawn, from the execution log (`inspect` has
    /// them from its pass over the log; this reads it for a build not inspected).
    fn outputs(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> StepResult<Outputs> {
        Ok(scan_exec_log_of(build, false)
            .map(|log| log.outputs)
            .map_err(CaseFailure::new)?)
    }

    /// Every action of the execution log with its inputs' and outputs' digests.
    fn graph(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> StepResult<BuildGraph> {
        let BuildState::Bazel { exec_log, .. } = &build.state else {
            return Err(CaseFailure::new("a Bazel driver was handed another tool's build").into());
        };
        let log = open_log(exec_log).map_err(CaseFailure::new)?;
        let graph = bazel_log::read_build_graph(log, &exec_log.display().to_string())
            .map_err(CaseFailure::new)?;
        Ok(graph)
    }

    /// bazel-bin, as `bazel info` names it for the build's output root (the build makes
    /// no convenience symlinks); the server is still up.
    fn output_paths(&self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<Vec<PathBuf>> {
        let BuildState::Bazel {
            workspace,
            output_root,
            ..
        } = &build.state
        else {
            return Err(CaseFailure::new("a Bazel driver was handed another tool's build").into());
        };
        let mut args = self.startup_args(output_root);
        args.extend(["info", "bazel-bin"].map(OsString::from));
        let out = run_captured(
            exec,
            CommandSpec::new(&self.bazel, args, SHUTDOWN_TIMEOUT).cwd(workspace),
        )?;
        let bin = out.stdout.trim();
        if !out.outcome.success() || bin.is_empty() {
            return Err(CaseFailure::new(format!(
                "`bazel info bazel-bin` {}: {}",
                out.outcome.describe(),
                out.stderr.trim()
            ))
            .into());
        }
        Ok(vec![PathBuf::from(bin)])
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
        // A failed fill build's fresh cache, which `fill_fresh` never took.
        if let Some(fresh) = self.fill_to.take() {
            remove_tree(&fresh.folder)
                .context(|| format!("removing {}", fresh.folder.display()))?;
        }
        self.shutdown(output_root, workspace, exec);
        crate::exec::scratch::remove_tree(output_root)
            .context(|| format!("removing {}", output_root.display()))
    }

    fn tool_use(&self, case: &CaseContext) -> StepResult<ToolUse> {
        Ok(ToolUse {
            version: self.version.clone(),
            bazel_flags: Some(self.flag_set(case)?),
            shared_repository_cache: Some(self.repository_cache.is_some()),
            ..ToolUse::default()
        })
    }

    /// The server of the build's output root does the work; the client only asks.
    fn servers(&self, build: &PreparedBuild) -> ServerProbe {
        match &build.state {
            BuildState::Bazel { output_root, .. } => ServerProbe::bazel(output_root),
            BuildState::Nix { .. } => ServerProbe::default(),
        }
    }

    fn cache_use(&self, _case: &CaseContext) -> Option<CacheUse> {
        self.cache.as_ref().map(BazelCache::use_record)
    }

    fn cache_location(&self, _case: &CaseContext) -> Option<CacheLocation<'_>> {
        self.cache.as_ref().map(|c| match &c.endpoint {
            BazelEndpoint::Remote(url) => CacheLocation::Url(url),
            BazelEndpoint::Disk(path) => CacheLocation::Folder(path),
        })
    }

    fn tuned_settings(&self) -> Vec<String> {
        TUNED.iter().map(|s| s.to_string()).collect()
    }
}

/// The build's execution log, parsed as it streams; with `keep_misses`, the spawns that
/// were not cache hits kept whole.
fn scan_exec_log_of(
    build: &PreparedBuild,
    keep_misses: bool,
) -> std::result::Result<ExecLog, String> {
    let BuildState::Bazel { exec_log, .. } = &build.state else {
        return Err("a Bazel driver was handed another tool's build".into());
    };
    let name = exec_log.display().to_string();
    bazel_log::scan_exec_log(open_log(exec_log)?, &name, keep_misses)
}

fn open_log(path: &Path) -> std::result::Result<std::io::BufReader<std::fs::File>, String> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("no log at {}: {e}", path.display()))
}

/// Where the build's time went, from its JSON trace profile, and the remote cache
/// requests it made.
fn time_split(build: &PreparedBuild, wall_s: f64) -> Option<(TimeSplit, u64)> {
    let BuildState::Bazel { profile, .. } = &build.state else {
        return None;
    };
    let name = profile.display().to_string();
    let read = bazel_profile::read_profile(open_log(profile).ok()?, &name);
    read.ok()
        .map(|p| (p.split(wall_s), p.remote_cache_requests()))
}

impl Drop for BazelDriver {
    /// Whatever happened (error, Ctrl-C), no Bazel server of this run outlives it.
    fn drop(&mut self) {
        crate::exec::janitor::stop_bazel_servers(&self.dir, 3);
    }
}

/// Copies the bench repo's workspace (its source is never written) and writes its
/// parameters file in the copy. Returns the special files of the source it left out.
fn copy_workspace(case: &CaseContext, to: &Path) -> Result<Vec<PathBuf>> {
    let mut left_out = Vec::new();
    copy_tree(case.source, to, &mut left_out).context(|| {
        format!(
            "copying the workspace {} to {}",
            case.source.display(),
            to.display()
        )
    })?;
    let targets = case.repo.bazel.as_ref();
    if let Some(file) = targets.and_then(|t| t.parameters_file.as_ref()) {
        write_parameters(to, file, &parameters_bzl(&case.repo.tool_parameters()))?;
    }
    Ok(left_out)
}

/// Writes `text` as a new regular file at `workspace.join(file)`, never through a link:
/// the manifest's path is relative and inside the source (checked when it was read), a
/// link on the way in the copy is refused, and what the copy holds there is replaced.
fn write_parameters(workspace: &Path, file: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = workspace.join(file);
    let folders = file.parent().unwrap_or(Path::new(""));
    if let Some(link) = crate::plan::manifest::first_link(workspace, folders) {
        return Err(Error::Usage(format!(
            "the parameters file's path {} passes through the symbolic link {}: the harness never writes through one",
            path.display(),
            link.display()
        )));
    }
    let writing = |what: &str| format!("{what} parameters file {}", path.display());
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(writing("replacing the"), e))
        }
        _ => {}
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context(|| writing("making the folder of the"))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .context(|| writing("writing the"))
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

/// Copies a tree, skipping Bazel's convenience symlinks (`bazel-*`) and `.git`. Folders,
/// links (as links) and regular files (as new files: never written through a link) are
/// copied; special files (FIFOs, sockets, devices), which could block a copy for ever, are
/// left out and pushed to `left_out`.
fn copy_tree(from: &Path, to: &Path, left_out: &mut Vec<PathBuf>) -> std::io::Result<()> {
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
            copy_tree(&entry.path(), &target, left_out)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if !kind.is_file() || !copy_file(&entry.path(), &target)? {
            left_out.push(entry.path());
        }
    }
    Ok(())
}

/// Copies a regular file into a new one with its permissions; `false` (nothing copied)
/// when `from` turned out not to be a regular file. Opening never blocks or follows a link.
fn copy_file(from: &Path, to: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(from)?;
    let meta = source.metadata()?;
    if !meta.is_file() {
        return Ok(false);
    }
    let mut copy = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.permissions().mode() & 0o7777)
        .open(to)?;
    std::io::copy(&mut source, &mut copy)?;
    Ok(true)
}

/// A copy of Debian's rules_cc that loads on Bazel 4.2.3 (see the module comment).
fn patched_rules_cc(debian: &Path, dir: &Path) -> Result<PathBuf> {
    let copy = dir.join("rules_cc");
    if !copy.exists() {
        copy_tree(debian, &copy, &mut Vec::new())
            .context(|| format!("copying {}", debian.display()))?;
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
    fn a_repo_pinning_another_bazel_is_refused_unless_bazelisk_runs_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("repo");
        std::fs::create_dir(&repo_dir).unwrap();
        std::fs::write(repo_dir.join("MODULE.bazel"), "").unwrap();
        let text = "name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[bazel]\ntargets = [\"//...\"]\nversion = \"7.4.0\"\n";
        let repo = crate::plan::manifest::parse(text, &repo_dir.join("repo.toml")).unwrap();
        let case = CaseContext {
            repo: &repo,
            source: &repo_dir,
            scenario: crate::plan::Scenario::Cold,
            timeout: Duration::from_secs(1),
            cache_via: None,
            explain: true,
        };
        let driver = |version: &str| {
            let setup = BazelSetup {
                version: version.into(),
                ..BazelSetup::default()
            };
            BazelDriver::new("bazel".into(), &dir.path().join("driver"), None, &setup).unwrap()
        };
        let debian = driver("bazel no_version (Debian bazel-bootstrap 4.2.3+ds-9)");
        let err = debian.tool_use(&case).unwrap_err().to_string();
        assert!(
            err.contains("pins Bazel 7.4.0") && err.contains("bazelisk"),
            "{err}"
        );
        let matching = driver("bazel 7.4.1").tool_use(&case).unwrap();
        let flags = matching.bazel_flags.unwrap();
        assert_eq!(flags.version.as_deref(), Some("7.4.1"));
        assert!(
            !flags.debian_rule_overrides,
            "Debian's rules are for the WORKSPACE era"
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

    /// Every build mode's `bazel build` argv, and the version-dependent part for each flag
    /// set, snapshotted. Debian's rule copies are fixed paths here: whether this machine
    /// has them must not change the snapshot.
    #[test]
    fn build_argv_of_every_mode_and_flag_set() {
        use crate::plan::cache::{BazelCache, BazelEndpoint};
        use crate::plan::config::Secret;
        use crate::plan::{Fault, Scenario};
        use crate::results::CacheBackend;
        let tmp = tempfile::tempdir().unwrap();
        let workspace = |name: &str, markers: &[&str]| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for marker in markers {
                std::fs::write(dir.join(marker), "").unwrap();
            }
            let text = "name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[bazel]\ntargets = [\"//:app\", \"//lib/...\"]\n";
            let repo = crate::plan::manifest::parse(text, &dir.join("repo.toml")).unwrap();
            (dir, repo)
        };
        let remote = |read_only: bool, headers: Vec<Secret>| BazelCache {
            fill_root: None,
            backend: CacheBackend::Http,
            endpoint: BazelEndpoint::Remote(url::Url::parse("http://127.0.0.1:9090").unwrap()),
            headers,
            read_only,
        };
        let disk = BazelCache {
            fill_root: None,
            backend: CacheBackend::Disk,
            endpoint: BazelEndpoint::Disk(tmp.path().join("disk-cache")),
            headers: Vec::new(),
            read_only: false,
        };
        let driver = |name: &str, version: &str, cache: BazelCache| {
            let setup = BazelSetup {
                version: version.into(),
                overrides: vec![("rules_x".into(), "/opt/rules_x".into())],
                shared_repository_cache: true,
            };
            let mut driver =
                BazelDriver::new("bazel".into(), &tmp.path().join(name), Some(cache), &setup)
                    .unwrap();
            driver.bazelisk = false;
            driver.debian_overrides = BTreeMap::from([
                ("rules_cc".to_string(), "/usr/share/bazel/rules/cc".into()),
                (
                    "rules_java".to_string(),
                    "/usr/share/bazel/rules/java".into(),
                ),
            ]);
            driver
        };
        const DEBIAN: &str = "bazel no_version (Debian bazel-bootstrap 4.2.3+ds-9)";
        let (ws_dir, ws_repo) = workspace("ws-only", &["WORKSPACE"]);
        let (module_dir, module_repo) = workspace("module", &["MODULE.bazel"]);
        let case = |repo, source, scenario| CaseContext {
            repo,
            source,
            scenario,
            timeout: Duration::from_secs(1800),
            cache_via: None,
            explain: true,
        };
        let warm = BuildMode::FromCache {
            tool_fallback: false,
        };
        // Each build gets a fresh folder, as in a run: the workspace copy never overwrites.
        let snap = |name: &str, driver: &mut BazelDriver, case: CaseContext, mode| {
            let build = driver
                .prepare(&case, mode, &tmp.path().join("builds").join(name))
                .unwrap();
            let text = crate::tools::argv_snapshot(&build, tmp.path());
            insta::assert_snapshot!(format!("bazel_argv_{name}"), text);
            build
        };
        let ws = |scenario| case(&ws_repo, &ws_dir, scenario);
        let mut debian = driver("debian", DEBIAN, remote(false, Vec::new()));
        let prime = snap(
            "prime_uploads_only",
            &mut debian,
            ws(Scenario::Cold),
            BuildMode::Prime,
        );
        debian.keep_primed(&ws(Scenario::Noop), prime, Outputs::new());
        snap("cold", &mut debian, ws(Scenario::Cold), BuildMode::Fresh);
        snap("warm", &mut debian, ws(Scenario::Warm), warm);
        snap("noop", &mut debian, ws(Scenario::Noop), BuildMode::Noop);
        let fallback = CaseContext {
            cache_via: Some("127.0.0.1:4242".parse().unwrap()),
            ..ws(Scenario::Fallback {
                fault: Fault::Blackhole,
                tuned: true,
            })
        };
        snap(
            "fallback_through_the_proxy_tuned",
            &mut debian,
            fallback,
            warm,
        );
        snap(
            "verify_from_the_cache",
            &mut debian,
            ws(Scenario::Verify),
            warm,
        );
        snap(
            "verify_clean_rebuild",
            &mut debian,
            ws(Scenario::Verify),
            BuildMode::Fresh,
        );
        let plain = CaseContext {
            explain: false,
            ..ws(Scenario::Warm)
        };
        snap("warm_explain_off", &mut debian, plain, warm);
        let headers = vec![Secret::new("Authorization=Bearer t")];
        let mut read_only = driver("read-only", DEBIAN, remote(true, headers));
        snap(
            "prime_read_only",
            &mut read_only,
            ws(Scenario::Cold),
            BuildMode::Prime,
        );
        snap(
            "warm_read_only_with_headers",
            &mut read_only,
            ws(Scenario::Warm),
            warm,
        );
        let mut on_disk = driver("disk", DEBIAN, disk);
        snap("warm_disk_cache", &mut on_disk, ws(Scenario::Warm), warm);
        // The flag sets: one warm build each, of a WORKSPACE-only and a bzlmod workspace.
        for (name, version) in [
            ("unknown", "bazel no_version"),
            ("bazel7", "bazel 7.4.0"),
            ("bazel8", "bazel 8.1.1"),
            ("bazel9", "bazel 9.0.0"),
        ] {
            let mut versioned = driver(name, version, remote(false, Vec::new()));
            let module = case(&module_repo, &module_dir, Scenario::Warm);
            snap(
                &format!("flags_{name}_module"),
                &mut versioned,
                module,
                warm,
            );
            if name != "bazel9" {
                let ws_only = format!("flags_{name}_workspace");
                snap(&ws_only, &mut versioned, ws(Scenario::Warm), warm);
            }
        }
        let mut bazel9 = driver("bazel9-ws", "bazel 9.0.0", remote(false, Vec::new()));
        let err = bazel9
            .prepare(&ws(Scenario::Warm), warm, &tmp.path().join("build"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no WORKSPACE support"), "{err}");
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    /// A Bazel repo in `dir/repo` with `targets` and `parameters_file = "size.bzl"`.
    fn bazel_repo(dir: &Path, targets: &str) -> crate::plan::RepoManifest {
        let repo_dir = dir.join("repo");
        std::fs::create_dir_all(&repo_dir).unwrap();
        std::fs::write(repo_dir.join("WORKSPACE"), "").unwrap();
        let text = format!("name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[parameters]\nsize = 3\n[bazel]\ntargets = {targets}\nparameters_file = \"size.bzl\"\n");
        crate::plan::manifest::parse(&text, &repo_dir.join("repo.toml")).unwrap()
    }

    fn cold_case<'a>(repo: &'a crate::plan::RepoManifest, source: &'a Path) -> CaseContext<'a> {
        CaseContext {
            repo,
            source,
            scenario: crate::plan::Scenario::Cold,
            timeout: Duration::from_secs(1),
            cache_via: None,
            explain: false,
        }
    }

    #[test]
    fn the_workspace_copy_leaves_special_files_out_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let repo = bazel_repo(dir.path(), "[\"//...\"]");
        let source = dir.path().join("repo");
        std::fs::create_dir(source.join("sub")).unwrap();
        mkfifo(&source.join("sub/pipe"));
        std::fs::write(source.join("sub/BUILD"), "# kept\n").unwrap();
        let case = cold_case(&repo, &source);
        let to = dir.path().join("copy");
        // Before, the copy opened the FIFO and waited for a writer for ever.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| done.send(copy_workspace(&case, &to)).unwrap());
            let left_out = finished
                .recv_timeout(Duration::from_secs(20))
                .expect("the copy finished")
                .unwrap();
            assert_eq!(left_out, vec![source.join("sub/pipe")]);
        });
        assert_eq!(
            std::fs::read_to_string(to.join("sub/BUILD")).unwrap(),
            "# kept\n"
        );
        assert!(!to.join("sub/pipe").exists());
        assert_eq!(
            std::fs::read_to_string(to.join("size.bzl")).unwrap(),
            parameters_bzl(&repo.parameters)
        );
    }

    #[test]
    fn the_parameters_file_is_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("victim.bzl");
        std::fs::write(&outside, "SIZE = 1\n").unwrap();
        let workspace = dir.path().join("ws");
        std::fs::create_dir(&workspace).unwrap();
        // A link in the copy (as the copy recreates links verbatim) is replaced, not followed.
        std::os::unix::fs::symlink(&outside, workspace.join("size.bzl")).unwrap();
        write_parameters(&workspace, Path::new("size.bzl"), "SIZE = 9\n").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "SIZE = 1\n");
        let meta = std::fs::symlink_metadata(workspace.join("size.bzl")).unwrap();
        assert!(meta.is_file());
        assert_eq!(
            std::fs::read_to_string(workspace.join("size.bzl")).unwrap(),
            "SIZE = 9\n"
        );
        // A linked folder on the way is refused.
        std::os::unix::fs::symlink(dir.path(), workspace.join("conf")).unwrap();
        let err = write_parameters(&workspace, Path::new("conf/victim.bzl"), "SIZE = 9\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("never writes through one"), "{err}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "SIZE = 1\n");
    }

    #[test]
    fn targets_come_after_a_double_dash() {
        let dir = tempfile::tempdir().unwrap();
        let repo = bazel_repo(dir.path(), "[\"//...\", \"//app:build\"]");
        let source = dir.path().join("repo");
        let case = cold_case(&repo, &source);
        let setup = BazelSetup {
            version: "bazel no_version (Debian bazel-bootstrap 4.2.3+ds-9)".into(),
            ..BazelSetup::default()
        };
        let mut driver =
            BazelDriver::new("bazel".into(), &dir.path().join("driver"), None, &setup).unwrap();
        let build_dir = dir.path().join("build");
        let build = driver.prepare(&case, BuildMode::Fresh, &build_dir).unwrap();
        let args: Vec<String> = build
            .spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            &args[args.len() - 3..],
            ["--", "//...", "//app:build"],
            "{args:?}"
        );
    }
}
