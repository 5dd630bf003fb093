//! The Nix adapter: every build in a private chroot store (`--store DIR`), with a private
//! configuration, so nothing on the host (`/nix`, `~/.config/nix`, `~/.cache/nix`) is read
//! or written and every sample starts from exactly the state its scenario asks for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{CaseFailure, Error, IoContext, Result, StepResult};
use crate::exec::http::Client;
use crate::exec::process::stderr_times_path;
use crate::exec::process::{run_captured, CommandSpec, Executor, ProcessOutcome};
use crate::exec::scratch::{remove_tree, tree_bytes, write_private, Owner};
use crate::plan::cache::{Fill, FreshCache, NixCache, ATTIC_LOGIN};
use crate::plan::config::NixSetup;
use crate::plan::manifest::NixTargets;
use crate::plan::{Compression, ParamValue, System};
use crate::results::explain::MissExplanations;
use crate::results::{CacheFill, CacheUse, ConfigFile, FillMethod, SourceCount, ToolUse};
use crate::tools::build_graph::BuildGraph;
use crate::tools::explain::{explain_nix_misses, narinfo_answer, nix_built_derivations};
use crate::tools::narinfo::NarinfoSource;
use crate::tools::nix_derivations::{build_graph, parse_derivations, show_command};
use crate::tools::nix_log::{
    build_log_tail, count_log, parse_build_derivations, parse_build_outputs, parse_lines,
    parse_path_info, Line, NixVersion,
};
use crate::tools::nix_phases::{parse_arrival_times, split_nix_time};
use crate::tools::nix_push::{closure_details, fill_attic, fill_fresh_attic, PrimedStore};
use crate::tools::nix_sandbox::sandbox_entries;
use crate::tools::Transfer;
use crate::tools::{
    failed_tail, first_distinct, BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation,
    CaseContext, Counters, Outputs, PreparedBuild, LOG_TAIL_LINES,
};

/// Host folders the build sandbox may see, so derivations can use host tools (no nixpkgs).
const SANDBOX_PATHS: &[&str] = &["/bin", "/usr", "/lib", "/lib64"];

/// Chroot-store builds must be sandboxed: without the sandbox Nix would write outputs to the
/// real `/nix/store`. `sandbox-fallback = false` makes a machine that cannot sandbox fail the
/// build instead of silently building unsandboxed (the run's sandbox probe says why first).
const NIX_CONF: &str = "\
build-users-group =
sandbox = true
sandbox-fallback = false
experimental-features = nix-command flakes
substituters =
";

/// Settings that bound the cost of a hanging or slow cache (`fallback:*+tuned`).
const TUNED: &[(&str, &str)] = &[
    ("connect-timeout", "2"),
    ("stalled-download-timeout", "3"),
    ("download-attempts", "1"),
];
const PATH_INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Nix's default `http-connections`: how many downloads it keeps in flight.
const HTTP_CONNECTIONS: u32 = 25;

/// A derivation that records the uid map it builds under: `0 0 4294967295` (the host's)
/// means no user namespace, so no sandbox.
const SANDBOX_PROBE: &str = r#"derivation {
  name = "flywheel-bench-sandbox-probe";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "read -r map < /proc/self/uid_map; echo $map > $out" ];
}
"#;

pub struct NixDriver {
    nix: PathBuf,
    dir: PathBuf,
    conf_file: PathBuf,
    cache: Option<NixCache>,
    /// The embedded cache's root for each compression (none for another cache): where a
    /// compression sweep's points read and fill.
    roots: Vec<NixCache>,
    /// A private netrc with the cache's token, for the builds that read it.
    netrc: Option<PathBuf>,
    /// A private HOME whose attic config holds the token, for `attic push`.
    attic_home: Option<PathBuf>,
    /// The harness's own client for narinfos (miss explanations), made when first needed.
    client: std::sync::OnceLock<std::result::Result<Client, String>>,
    setup: NixSetup,
    /// Stores built once per repo and parameters without any cache: the clean reference,
    /// the source of the cache's contents and the ready-made state of `noop` builds.
    primed: BTreeMap<String, Primed>,
    /// Numbers primed stores, so a retried priming never reuses a failed one's folder.
    primes_started: usize,
    /// Numbers `fill` samples' fresh caches.
    fills_started: usize,
}

struct Primed {
    store: PathBuf,
    outputs: Vec<String>,
    digests: Outputs,
    /// The caches (by URL) its outputs were uploaded to.
    pushed: Vec<url::Url>,
}

impl NixDriver {
    /// `dir` is a private folder the driver may fill (config, the cache's credentials,
    /// primed stores).
    pub fn new(nix: PathBuf, dir: &Path, cache: Option<NixCache>, setup: NixSetup) -> Result<Self> {
        let conf_file = write_private_conf(&dir.join("nix-conf"))?;
        let netrc = match cache.as_ref().and_then(|c| Some((c, c.login.as_ref()?))) {
            Some((cache, login)) => {
                let netrc = dir.join("netrc");
                // Both were checked to hold no whitespace, which would split a netrc line.
                let entry = format!(
                    "machine {}\nlogin {}\npassword {}\n",
                    cache.url.host_str().unwrap_or_default(),
                    login.user,
                    login.password.expose()
                );
                write_private(&netrc, entry.as_bytes())?;
                Some(netrc)
            }
            None => None,
        };
        let attic_home = match &cache {
            Some(cache) if cache.fill == Fill::AtticCli => Some(write_attic_home(cache, dir)?),
            _ => None,
        };
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let roots = cache
            .iter()
            .flat_map(|c| Compression::ALL.map(|k| c.with_compression(k)))
            .flatten()
            .collect();
        Ok(NixDriver {
            nix,
            dir: dir.to_path_buf(),
            conf_file,
            cache,
            roots,
            netrc,
            attic_home,
            client: std::sync::OnceLock::new(),
            setup,
            primed: BTreeMap::new(),
            primes_started: 0,
            fills_started: 0,
        })
    }

    /// Proves that chroot-store builds are sandboxed here: a probe derivation must build in
    /// a private store and see a user namespace (its uid map is not the identity). Where
    /// Nix cannot sandbox (a plain chroot, a container without user namespaces), building
    /// would write the real `/nix`, so the run must not start.
    pub fn probe_sandbox(&self, exec: &dyn Executor) -> std::result::Result<(), String> {
        let dir = self.dir.join("sandbox-probe");
        let probe = dir.join("probe.nix");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&probe, SANDBOX_PROBE))
            .map_err(|e| format!("cannot write the probe in {}: {e}", dir.display()))?;
        let store = dir.join("store");
        let mut args: Vec<OsString> = vec!["build".into(), "--store".into(), (&store).into()];
        push_option(&mut args, "sandbox-paths", &sandbox_paths(&[]).join(" "));
        args.extend(["--no-link", "--json", "-f"].map(OsString::from));
        args.push(probe.into());
        let spec = CommandSpec::new(&self.nix, args, PROBE_TIMEOUT).env(self.env(&dir.join("xdg")));
        let out = run_captured(exec, spec).map_err(|e| e.to_string())?;
        let result = if out.outcome.success() {
            let map = parse_build_outputs(&out.stdout)
                .ok()
                .and_then(|paths| paths.into_iter().next())
                .and_then(|path| {
                    let on_disk = store.join(path.trim_start_matches('/'));
                    std::fs::read_to_string(on_disk).ok()
                })
                .unwrap_or_default();
            let fields: Vec<&str> = map.split_whitespace().collect();
            if fields.len() == 3 && fields != ["0", "0", "4294967295"] {
                Ok(())
            } else {
                Err(format!(
                    "the probe build ran without a user namespace (uid map {:?})",
                    map.trim()
                ))
            }
        } else {
            let log = out.stderr.lines().rev().find(|l| !l.trim().is_empty());
            Err(format!(
                "the probe build failed ({}): {}",
                out.outcome.describe(),
                log.unwrap_or("no error printed").trim()
            ))
        };
        let _ = crate::exec::scratch::remove_tree(&dir);
        result
    }

    /// Whether a substituter URL, as Nix logs it, is one of the upstream layer's.
    fn is_upstream(&self, url: &str) -> bool {
        self.setup
            .upstream
            .iter()
            .any(|u| same_url(u.url.as_str(), url))
    }

    /// `probe_sandbox`, as the error that stops a run before anything is built.
    pub fn require_sandbox(&self, exec: &dyn Executor) -> Result<()> {
        self.probe_sandbox(exec).map_err(|why| {
            Error::Environment(format!(
                "Nix cannot sandbox builds into a private store on this machine: {why}\n  why it matters: without its sandbox Nix writes build outputs into the real /nix\n  fix: run where processes may create user namespaces (a host, or a container that allows them: `sysctl user.max_user_namespaces` above 0); enter a root with `unshare` and `pivot_root`, not `chroot`"
            ))
        })
    }

    /// The private environment of every Nix command: system and user config replaced,
    /// a narinfo cache of its own (a stale one breaks runs), and a temporary folder in the
    /// driver's, where Nix makes its build folders (else in the system's, outside the run).
    pub(crate) fn env(&self, xdg_cache: &Path) -> Vec<(String, OsString)> {
        let mut env = private_env(&self.conf_file, xdg_cache);
        env.push(("TMPDIR".into(), self.dir.join("tmp").into()));
        env
    }

    fn cache(&self) -> Result<&NixCache> {
        self.cache.as_ref().ok_or_else(|| {
            Error::Environment("a Nix case that reads a cache ran without one".into())
        })
    }

    /// The team cache `case` reads and fills: its compression sweep point's root of the
    /// embedded cache, else the run's cache.
    fn team(&self, case: &CaseContext) -> Result<&NixCache> {
        let cache = self.cache()?;
        let Some(compression) = case.repo.compression() else {
            return Ok(cache);
        };
        self.roots
            .iter()
            .find(|root| root.compression() == Some(compression))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "bench repo `{}` is a point of a compression sweep ({}), but the Nix cache {} is not the embedded one, so the harness does not choose how it compresses NARs\n  fix: sweep compression against the embedded cache (the default profile)",
                    case.repo.name,
                    compression.name(),
                    cache.url
                ))
            })
    }

    /// What a reviewer needs besides the command: the nix.conf, and where the credentials
    /// are (never their content).
    fn config_files(&self, reads_cache: bool) -> Vec<ConfigFile> {
        let mut files = vec![ConfigFile {
            path: self.conf_file.display().to_string(),
            text: NIX_CONF.into(),
        }];
        if let Some(netrc) = &self.netrc {
            if reads_cache {
                files.push(ConfigFile {
                    path: netrc.display().to_string(),
                    text: "<redacted: the cache's credentials>".into(),
                });
            }
        }
        files
    }

    fn build_spec(
        &self,
        case: &CaseContext,
        store: &Path,
        dir: &Path,
        mode: BuildMode,
    ) -> Result<CommandSpec> {
        let targets = case
            .repo
            .nix
            .as_ref()
            .ok_or_else(|| case.repo.no_targets(System::Nix))?;
        let sandbox_paths = sandbox_paths(&case.repo.nix_sandbox_paths);
        let mut args: Vec<OsString> = vec!["build".into(), "--store".into(), store.into()];
        push_option(&mut args, "sandbox-paths", &sandbox_paths.join(" "));
        // The team cache only where the mode reads it, first; the upstream layer always.
        let team = match mode {
            BuildMode::FromCache { .. } => Some(self.team(case)?),
            _ => None,
        };
        let mut substituters: Vec<String> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        if let Some(cache) = team {
            substituters.push(cache.read_url(case.cache_via).to_string());
            keys.push(&cache.public_key);
        }
        for upstream in &self.setup.upstream {
            substituters.push(upstream.url.to_string());
            keys.push(&upstream.public_key);
        }
        if !substituters.is_empty() {
            push_option(&mut args, "substituters", &substituters.join(" "));
            push_option(&mut args, "trusted-public-keys", &keys.join(" "));
            push_option(&mut args, "narinfo-cache-negative-ttl", "0");
        }
        if let (Some(_), BuildMode::FromCache { tool_fallback }) = (team, mode) {
            if let Some(netrc) = &self.netrc {
                push_option(&mut args, "netrc-file", &netrc.display().to_string());
            }
            if case.tuned() {
                for (name, value) in TUNED {
                    push_option(&mut args, name, value);
                }
            }
            if tool_fallback {
                args.push("--fallback".into());
            }
        }
        args.extend(
            ["--no-link", "--json", "--log-format", "internal-json", "-v"].map(OsString::from),
        );
        args.extend(target_args(
            targets,
            case.source,
            &case.repo.tool_parameters(),
        ));
        Ok(CommandSpec {
            program: self.nix.clone(),
            args,
            env: self.env(&dir.join("xdg-cache")),
            cwd: Some(dir.to_path_buf()),
            stdin: None,
            stdout: dir.join("stdout.json"),
            stderr: dir.join("stderr.log"),
            // Nix's internal-json log has no timestamps: its phases come from when lines arrive.
            stderr_times: case.explain,
            timeout: case.timeout,
        })
    }

    /// `nix copy` of a primed store's outputs (with their closure) to a binary cache.
    /// `nix copy --to` the cache at `url` (the team cache, or a fill sample's fresh one)
    /// of `outputs` from `store`.
    fn nix_copy_spec(
        &self,
        cache: &NixCache,
        url: &url::Url,
        store: &Path,
        outputs: &[String],
        timeout: std::time::Duration,
    ) -> CommandSpec {
        let (secret_key_file, compression) = match &cache.fill {
            Fill::NixCopy {
                secret_key_file,
                compression,
            } => (secret_key_file.as_deref(), *compression),
            _ => (None, None),
        };
        let to = NixCache {
            url: url.clone(),
            ..cache.clone()
        };
        let mut args: Vec<OsString> = vec![
            "copy".into(),
            "--store".into(),
            store.into(),
            "--to".into(),
            to.copy_destination(secret_key_file, compression).into(),
        ];
        // The credentials of an http cache whose URL carried them.
        if let Some(netrc) = &self.netrc {
            push_option(&mut args, "netrc-file", &netrc.display().to_string());
        }
        args.push("--".into());
        args.extend(outputs.iter().map(OsString::from));
        CommandSpec::new(&self.nix, args, timeout).env(self.push_env())
    }

    /// `attic push SERVER:CACHE OUTPUTS`, reading the primed store through `NIX_REMOTE`.
    fn attic_cli_spec(
        &self,
        program: &Path,
        home: &Path,
        cache: &str,
        primed: &Primed,
        case: &CaseContext,
    ) -> CommandSpec {
        let target = format!("{ATTIC_LOGIN}:{cache}");
        let mut args: Vec<OsString> = vec!["push".into(), target.into()];
        args.extend(primed.outputs.iter().map(OsString::from));
        // attic reads the paths from the store NIX_REMOTE names: the primed chroot store.
        let store = format!("local?root={}", primed.store.display());
        let mut env = self.push_env();
        env.extend([
            ("HOME".to_string(), home.as_os_str().to_owned()),
            (
                "XDG_CONFIG_HOME".to_string(),
                home.join(".config").into_os_string(),
            ),
            ("NIX_REMOTE".to_string(), store.into()),
        ]);
        CommandSpec::new(program, args, case.timeout).env(env)
    }

    /// Each derivation built instead of substituted, from the log and from what the cache
    /// answers for its narinfos now (asked directly, not through a fault proxy).
    fn explain_misses(&self, log: &[Line]) -> Option<MissExplanations> {
        let cache = self.cache.as_ref()?;
        let built = nix_built_derivations(log);
        let mut keys: Vec<&str> = vec![&cache.public_key];
        keys.extend(self.setup.upstream.iter().map(|u| u.public_key.as_str()));
        let client = self
            .client
            .get_or_init(|| Client::new(&self.setup.proxies))
            .as_ref()
            .ok()?;
        let mut answers = std::collections::HashMap::new();
        // A cache that does not answer is asked nothing more (each request could wait
        // out its timeout); the log's own evidence still explains those misses.
        let mut unreachable: Vec<&str> = Vec::new();
        for b in &built {
            for (path, substituter) in &b.queried {
                // The team cache's narinfos are asked of the cache itself (the log may
                // name the fault proxy); the upstream layer's of the cache the log names.
                let asked = self
                    .setup
                    .upstream
                    .iter()
                    .find(|u| same_url(u.url.as_str(), substituter))
                    .or_else(|| self.root_of(substituter))
                    .unwrap_or(cache);
                if unreachable.contains(&asked.url.as_str()) {
                    continue;
                }
                let Ok(source) = NarinfoSource::of(asked) else {
                    continue;
                };
                match source.narinfo(client, path) {
                    Ok(answer) => {
                        answers.insert(
                            path.clone(),
                            narinfo_answer(answer.status, &answer.body, &keys),
                        );
                    }
                    Err(_) => unreachable.push(asked.url.as_str()),
                }
            }
        }
        Some(explain_nix_misses(&built, &answers))
    }

    /// The embedded cache's root a substituter URL names (through the fault proxy or not:
    /// the path tells the roots apart).
    fn root_of(&self, substituter: &str) -> Option<&NixCache> {
        let path = url::Url::parse(substituter).ok()?;
        let path = path.path().trim_end_matches('/');
        self.roots
            .iter()
            .find(|root| root.url.path().trim_end_matches('/') == path)
    }

    fn push_env(&self) -> Vec<(String, OsString)> {
        self.env(&self.dir.join("xdg-cache-push"))
    }
}

impl NixDriver {
    /// `nix path-info --json ARGS` in `store`: path -> NAR hash; `what` names the paths.
    fn nar_hashes(
        &self,
        store: &Path,
        paths: Vec<OsString>,
        exec: &dyn Executor,
        what: &str,
    ) -> StepResult<Outputs> {
        let mut args: Vec<OsString> = vec!["path-info".into(), "--json".into()];
        args.extend(["--store".into(), store.into()]);
        args.extend(paths);
        let stdout = self.query(args, exec, &format!("`nix path-info` of {what}"))?;
        Ok(parse_path_info(&stdout).map_err(CaseFailure::new)?)
    }

    /// A query of a build's store after the build: its stdout, or an error naming `what`.
    fn query(&self, args: Vec<OsString>, exec: &dyn Executor, what: &str) -> StepResult<String> {
        let env = self.env(&self.dir.join("xdg-cache-path-info"));
        let out = run_captured(
            exec,
            CommandSpec::new(&self.nix, args, PATH_INFO_TIMEOUT).env(env),
        )?;
        if !out.outcome.success() {
            return Err(CaseFailure::new(format!(
                "{what} failed ({}): {}",
                out.outcome.describe(),
                out.stderr.trim()
            ))
            .into());
        }
        Ok(out.stdout)
    }

    fn mark_pushed(&mut self, case: &CaseContext, cache: &url::Url) {
        if let Some(primed) = self.primed.get_mut(&case.state_key()) {
            primed.pushed.push(cache.clone());
        }
    }
}

impl BuildDriver for NixDriver {
    fn primed(&self, case: &CaseContext) -> Option<&Outputs> {
        self.primed.get(&case.state_key()).map(|p| &p.digests)
    }

    fn keep_primed(&mut self, case: &CaseContext, build: PreparedBuild, outputs: Outputs) {
        let paths = built_paths(&build)
            .map(|(_, paths)| paths)
            .unwrap_or_default();
        let BuildState::Nix { store } = build.state else {
            return;
        };
        self.primed.insert(
            case.state_key(),
            Primed {
                store,
                outputs: paths,
                digests: outputs,
                pushed: Vec::new(),
            },
        );
    }

    fn fill_cache(
        &mut self,
        case: &CaseContext,
        exec: &dyn Executor,
    ) -> StepResult<Option<CacheFill>> {
        let cache = self.team(case)?.clone();
        let primed = match (&cache.fill, self.primed.get(&case.state_key())) {
            (Fill::ReadOnly, _) => return Ok(Some(CacheFill::read_only())),
            (_, None) => {
                return Err(CaseFailure::new("the cache was to be filled before priming").into())
            }
            (_, Some(primed)) if primed.pushed.contains(&cache.url) => return Ok(None),
            (_, Some(primed)) => primed,
        };
        let started = Instant::now();
        let (method, spec) = match &cache.fill {
            Fill::AtticApi => {
                let store = PrimedStore {
                    nix: &self.nix,
                    store: &primed.store,
                    env: self.push_env(),
                    scratch: self.dir.join("attic-push"),
                };
                let fill = fill_attic(
                    &cache,
                    &self.setup.proxies,
                    &store,
                    &primed.outputs,
                    exec,
                    case.timeout,
                )?;
                self.mark_pushed(case, &cache.url);
                return Ok(Some(fill));
            }
            Fill::NixCopy { .. } => (
                FillMethod::NixCopy,
                self.nix_copy_spec(
                    &cache,
                    &cache.url,
                    &primed.store,
                    &primed.outputs,
                    case.timeout,
                ),
            ),
            Fill::AtticCli => {
                let (Some(program), Some(home)) = (&self.setup.attic, &self.attic_home) else {
                    return Err(Error::Environment(
                        "the Attic cache is filled with the `attic` CLI, and none was found".into(),
                    )
                    .into());
                };
                let (_, name) = cache.attic_server()?;
                (
                    FillMethod::AtticCli,
                    self.attic_cli_spec(program, home, &name, primed, case),
                )
            }
            // Answered above: it uploads nothing.
            Fill::ReadOnly => return Ok(None),
        };
        let out = run_captured(exec, spec)?;
        if !out.outcome.success() {
            // The push URL may name the secret key's file; report the public URL only.
            return Err(CaseFailure::new(format!(
                "uploading to the cache {} failed ({}): {}",
                cache.url,
                out.outcome.describe(),
                out.stderr.trim()
            ))
            .into());
        }
        self.mark_pushed(case, &cache.url);
        Ok(Some(CacheFill::timed(
            method,
            started.elapsed().as_secs_f64(),
        )))
    }

    fn fill_unavailable(&self, case: &CaseContext) -> Option<String> {
        let cache = match self.team(case) {
            Ok(cache) => cache,
            Err(e) => return Some(e.to_string()),
        };
        match (&cache.fill, &cache.fill_root) {
            (Fill::NixCopy { .. }, Some(_)) | (Fill::AtticApi, _) => None,
            _ => Some(FreshCache::unavailable("Nix", cache.backend)),
        }
    }

    /// `nix copy` of the build's closure to a fresh cache under the case's root of the
    /// embedded cache, with that root's compression and the run's key; its closure's NAR bytes, what the server stored. Attic: a
    /// fresh cache on the server, filled through its API and destroyed.
    fn fill_fresh(
        &mut self,
        case: &CaseContext,
        build: &PreparedBuild,
        exec: &dyn Executor,
    ) -> StepResult<CacheFill> {
        let cache = self.team(case)?.clone();
        self.fills_started += 1;
        if cache.fill == Fill::AtticApi {
            let (_, name) = cache.attic_server()?;
            let fresh = format!("{name}-fill-{}-{}", std::process::id(), self.fills_started);
            let (store, outputs) = built_paths(build)?;
            let primed = PrimedStore {
                nix: &self.nix,
                store,
                env: self.push_env(),
                scratch: self.dir.join("attic-fill"),
            };
            return fill_fresh_attic(
                &cache,
                &fresh,
                &self.setup.proxies,
                &primed,
                &outputs,
                exec,
                build.spec.timeout,
            );
        }
        let fresh = FreshCache::beside(&cache.url, cache.fill_root.as_deref(), self.fills_started)
            .ok_or_else(|| CaseFailure::new(FreshCache::unavailable("Nix", cache.backend)))?;
        let (store, outputs) = built_paths(build)?;
        let started = Instant::now();
        let spec = self.nix_copy_spec(&cache, &fresh.url, store, &outputs, build.spec.timeout);
        let out = run_captured(exec, spec)?;
        let wall_s = started.elapsed().as_secs_f64();
        if !out.outcome.success() {
            let _ = remove_tree(&fresh.folder);
            return Err(CaseFailure::new(format!(
                "filling a fresh cache at {} failed ({}): {}",
                fresh.url,
                out.outcome.describe(),
                out.stderr.trim()
            ))
            .into());
        }
        let (_, stored) = tree_bytes(&fresh.folder)?;
        remove_tree(&fresh.folder).context(|| format!("removing {}", fresh.folder.display()))?;
        let primed = PrimedStore {
            nix: &self.nix,
            store,
            env: self.push_env(),
            scratch: self.dir.join("fill-scratch"),
        };
        let closure = closure_details(&primed, &outputs, exec)?;
        let paths = closure.len() as u64;
        Ok(CacheFill {
            closure_paths: Some(paths),
            already_present: Some(0),
            uploaded_paths: Some(paths),
            uploaded_bytes: Some(closure.iter().filter_map(|p| p.nar_size).sum()),
            stored_bytes: Some(stored),
            ..CacheFill::timed(FillMethod::NixCopy, wall_s)
        })
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> StepResult<PreparedBuild> {
        let store = match mode {
            BuildMode::Noop => self
                .primed
                .get(&case.state_key())
                .map(|p| p.store.clone())
                .ok_or_else(|| CaseFailure::new("the noop store was not primed"))?,
            // Kept for the run, so outside the build's own folder.
            BuildMode::Prime => {
                self.primes_started += 1;
                self.dir
                    .join(format!("prime-{}/store", self.primes_started))
            }
            BuildMode::Fresh | BuildMode::FromCache { .. } | BuildMode::Fill => dir.join("store"),
        };
        Ok(PreparedBuild {
            spec: self.build_spec(case, &store, dir, mode)?,
            state: BuildState::Nix { store },
            files: self.config_files(matches!(mode, BuildMode::FromCache { .. })),
        })
    }

    /// Everything from one parse of the build's internal-json log; its misses explained
    /// when asked and something was built.
    fn inspect(
        &self,
        build: &PreparedBuild,
        outcome: &ProcessOutcome,
        explain_misses: bool,
    ) -> BuildReport {
        let stderr = std::fs::read_to_string(&build.spec.stderr).unwrap_or_default();
        let lines = parse_lines(&stderr);
        let log = count_log(&lines);
        BuildReport {
            counters: Counters {
                built: Some(log.built),
                substituted: Some(log.substituted),
                downloaded_bytes: Some(log.downloaded_bytes),
                from_team_cache: Some(
                    log.by_source
                        .iter()
                        .filter(|(url, _)| !url.is_empty() && !self.is_upstream(url))
                        .map(|(_, c)| c.substitutions)
                        .sum(),
                ),
                by_source: log
                    .by_source
                    .iter()
                    .filter(|(url, _)| !url.is_empty())
                    .map(|(url, c)| {
                        let count = SourceCount {
                            substituted: c.substitutions,
                            downloaded_bytes: c.downloaded_bytes,
                        };
                        (url.clone(), count)
                    })
                    .collect(),
                ..Counters::default()
            },
            error: (!outcome.success()).then(|| {
                log.failure_summary()
                    .unwrap_or_else(|| format!("nix {} and printed no error", outcome.describe()))
            }),
            messages: first_distinct(log.errors.iter().chain(&log.warnings).map(String::as_str)),
            log_tail: failed_tail(outcome, || build_log_tail(&lines, LOG_TAIL_LINES)),
            time_split: std::fs::read_to_string(stderr_times_path(&build.spec.stderr))
                .ok()
                .and_then(|t| parse_arrival_times(&t).ok())
                .map(|times| split_nix_time(&lines, &times, outcome.wall.as_secs_f64())),
            transfer: Some(Transfer {
                // A file:// cache transfers nothing over HTTP: its NARs' announced size.
                bytes: log.downloaded_bytes.max(log.expected_download_bytes),
                requests: log.file_transfers,
                parallelism: HTTP_CONNECTIONS,
            }),
            explanations: (explain_misses && log.built > 0)
                .then(|| self.explain_misses(&lines))
                .flatten(),
            outputs: None,
        }
    }

    /// NAR hashes of the built paths, from `nix path-info --json` in the build's store.
    fn outputs(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<Outputs> {
        let (store, paths) = built_paths(build)?;
        let paths: Vec<OsString> = paths.iter().map(OsString::from).collect();
        self.nar_hashes(store, paths, exec, "the outputs")
    }

    /// Every derivation of the targets' closure (`nix show-derivation -r`, evaluated into
    /// the build's store, where the build left its .drv files), with the NAR hashes of
    /// whatever of it the store holds (`nix path-info --json --all`).
    fn graph(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<BuildGraph> {
        let (store, _) = built_paths(build)?;
        let valid = self.nar_hashes(store, vec!["--all".into()], exec, "the store's paths")?;
        let stdout = std::fs::read_to_string(&build.spec.stdout).unwrap_or_default();
        let drvs = parse_build_derivations(&stdout).map_err(CaseFailure::new)?;
        if drvs.is_empty() {
            // Nothing names a derivation (a store path built as such): the outputs alone.
            return Ok(BuildGraph::from_outputs(self.outputs(build, exec)?));
        }
        let version = NixVersion::parse(&self.setup.version);
        let mut args: Vec<OsString> = show_command(version).iter().map(OsString::from).collect();
        args.extend(["-r".into(), "--store".into(), store.as_os_str().to_owned()]);
        args.push("--".into());
        args.extend(drvs.iter().map(OsString::from));
        let what = format!(
            "`nix {} -r` of the built derivations",
            show_command(version).join(" ")
        );
        let derivations =
            parse_derivations(&self.query(args, exec, &what)?).map_err(CaseFailure::new)?;
        Ok(build_graph(&derivations, &valid))
    }

    /// The outputs `nix build --json` named, inside the build's chroot store (the store
    /// path `/nix/store/X` is the file `STORE/nix/store/X`).
    fn output_paths(
        &self,
        build: &PreparedBuild,
        _exec: &dyn Executor,
    ) -> StepResult<Vec<PathBuf>> {
        let (store, paths) = built_paths(build)?;
        Ok(paths
            .iter()
            .map(|p| store.join(p.trim_start_matches('/')))
            .collect())
    }

    /// A sandboxed builder is not in the build's process group (Nix forks it into its own
    /// namespaces): whatever still works in a fresh store stops before it is removed.
    fn finish(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> Result<()> {
        if let BuildState::Nix { store } = &build.state {
            if !self.primed.values().any(|p| &p.store == store) {
                crate::exec::scratch::stop_processes_in(store, Owner::current().start_ticks);
            }
        }
        Ok(())
    }

    fn tool_use(&self, _case: &CaseContext) -> StepResult<ToolUse> {
        Ok(ToolUse {
            version: self.setup.version.clone(),
            upstream: self
                .setup
                .upstream
                .iter()
                .map(|u| u.url.to_string())
                .collect(),
            ..ToolUse::default()
        })
    }

    fn cache_use(&self, case: &CaseContext) -> Option<CacheUse> {
        self.team(case).ok().map(NixCache::use_record)
    }

    fn cache_location(&self, case: &CaseContext) -> Option<CacheLocation<'_>> {
        self.team(case).ok().map(|c| CacheLocation::Url(&c.url))
    }

    fn tool_fallback_flag(&self) -> Option<&'static str> {
        Some("--fallback")
    }

    fn signing_key_file(&self) -> Option<&Path> {
        match &self.cache.as_ref()?.fill {
            Fill::NixCopy {
                secret_key_file, ..
            } => secret_key_file.as_deref(),
            _ => None,
        }
    }

    fn tuned_settings(&self) -> Vec<String> {
        TUNED.iter().map(|(k, v)| format!("{k} = {v}")).collect()
    }
}

/// The host folders the sandbox shows, and the repo's own, as Nix sandbox entries (links
/// mounted where they resolve).
/// A Nix build's chroot store and the outputs its `nix build --json` named.
fn built_paths(build: &PreparedBuild) -> Result<(&Path, Vec<String>), CaseFailure> {
    let BuildState::Nix { store } = &build.state else {
        return Err(CaseFailure::new(
            "a Nix driver was handed another tool's build",
        ));
    };
    let stdout = std::fs::read_to_string(&build.spec.stdout).unwrap_or_default();
    let paths = parse_build_outputs(&stdout).map_err(CaseFailure::new)?;
    Ok((store, paths))
}

fn sandbox_paths(extra: &[PathBuf]) -> Vec<String> {
    let host_paths: Vec<PathBuf> = SANDBOX_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(extra.iter().cloned())
        .collect();
    sandbox_entries(&host_paths)
}

/// Whether two cache URLs name the same cache, as Nix logs them (trailing slashes aside).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A private HOME for `attic push`, whose config names the Attic server and holds the token.
fn write_attic_home(cache: &NixCache, dir: &Path) -> Result<PathBuf> {
    let (endpoint, _) = cache.attic_server()?;
    let home = dir.join("attic-home");
    let config_dir = home.join(".config/attic");
    std::fs::create_dir_all(&config_dir)
        .context(|| format!("creating {}", config_dir.display()))?;
    let toml = format!(
        "default-server = \"{ATTIC_LOGIN}\"\n\n[servers.{ATTIC_LOGIN}]\nendpoint = \"{endpoint}\"\ntoken = \"{}\"\n",
        cache.token()?
    );
    write_private(&config_dir.join("config.toml"), toml.as_bytes())?;
    Ok(home)
}

/// Writes the harness's private nix.conf into `conf_dir`; returns the file.
pub fn write_private_conf(conf_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(conf_dir).context(|| format!("creating {}", conf_dir.display()))?;
    let conf_file = conf_dir.join("nix.conf");
    std::fs::write(&conf_file, NIX_CONF).context(|| format!("writing {}", conf_file.display()))?;
    Ok(conf_file)
}

/// The environment of a Nix command that reads only `conf_file` (system and user
/// configuration replaced) and keeps its narinfo cache in `xdg_cache`.
pub fn private_env(conf_file: &Path, xdg_cache: &Path) -> Vec<(String, OsString)> {
    let conf_dir = conf_file.parent().unwrap_or(Path::new("/"));
    vec![
        ("NIX_CONF_DIR".into(), conf_dir.into()),
        ("NIX_USER_CONF_FILES".into(), conf_file.into()),
        ("XDG_CACHE_HOME".into(), xdg_cache.into()),
    ]
}

fn push_option(args: &mut Vec<OsString>, name: &str, value: &str) {
    args.extend(["--option", name, value].map(OsString::from));
}

/// What to build: a Nix file with parameters as function arguments, or flake installables.
/// The manifest's attributes and installables come last, after `--` (Nix 2.8 and 2.26
/// both take it), so none can be read as an option whatever slipped through.
pub fn target_args(
    targets: &NixTargets,
    source: &Path,
    parameters: &BTreeMap<String, ParamValue>,
) -> Vec<OsString> {
    match targets {
        NixTargets::File { file, attrs } => {
            let mut args: Vec<OsString> = vec!["-f".into(), source.join(file).into()];
            for (name, value) in parameters {
                let flag = match value {
                    ParamValue::Int(_) => "--arg",
                    ParamValue::Str(_) => "--argstr",
                };
                args.extend([flag.into(), name.into(), value.to_string().into()]);
            }
            args.push("--".into());
            args.extend(attrs.iter().map(OsString::from));
            args
        }
        NixTargets::Flake { installables } => std::iter::once("--".into())
            .chain(installables.iter().map(|i| match i.strip_prefix('.') {
                // `.#attr` means the bench repo's own flake, wherever its source lives.
                Some(rest) => format!("path:{}{rest}", source.display()).into(),
                None => i.into(),
            }))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_a_cache_url_go_to_a_private_netrc() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::plan::cache::NixCache {
            login: Some(crate::plan::config::Login {
                user: "bot".into(),
                password: crate::plan::config::Secret::new("s3cr3t"),
            }),
            ..crate::plan::cache::NixCache::store(
                crate::results::CacheBackend::Http,
                url::Url::parse("http://127.0.0.1:9/nix").unwrap(),
                "k:1".into(),
                None,
                true,
            )
        };
        let driver =
            NixDriver::new("nix".into(), dir.path(), Some(cache), NixSetup::default()).unwrap();
        let netrc = driver.netrc.clone().unwrap();
        assert_eq!(
            std::fs::read_to_string(&netrc).unwrap(),
            "machine 127.0.0.1\nlogin bot\npassword s3cr3t\n"
        );
        let mode = std::fs::metadata(&netrc).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let cache = driver.cache.as_ref().unwrap();
        assert_eq!(cache.use_record().url, "http://127.0.0.1:9/nix");
        assert!(!serde_json::to_string(cache).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn file_targets_pass_parameters_by_type() {
        let params = BTreeMap::from([
            ("size".to_string(), ParamValue::Int(5)),
            ("flavour".to_string(), ParamValue::Str("plain".into())),
        ]);
        let targets = NixTargets::File {
            file: "default.nix".into(),
            attrs: vec!["app".into()],
        };
        let args = target_args(&targets, Path::new("/src"), &params);
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-f",
                "/src/default.nix",
                "--argstr",
                "flavour",
                "plain",
                "--arg",
                "size",
                "5",
                "--",
                "app"
            ]
        );
    }

    #[test]
    fn flake_targets_resolve_against_the_source() {
        let targets = NixTargets::Flake {
            installables: vec![".#default".into(), "nixpkgs#hello".into()],
        };
        let args = target_args(&targets, Path::new("/src"), &BTreeMap::new());
        assert_eq!(
            args,
            vec![
                OsString::from("--"),
                "path:/src#default".into(),
                "nixpkgs#hello".into()
            ]
        );
    }

    /// A compression sweep's point reads and fills its own root of the embedded cache; a
    /// vm guest's copy of the embedded cache has no folder, so its fill says so.
    #[test]
    fn each_compression_point_has_its_root_and_a_guest_cannot_fill_a_fresh_cache() {
        use crate::plan::cache::NixCache;
        use crate::plan::{manifest, Compression, Scenario};
        use crate::results::CacheBackend;
        let tmp = tempfile::tempdir().unwrap();
        let text = "name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n";
        let plain = manifest::parse(text, &tmp.path().join("repo.toml")).unwrap();
        let mut xz = plain.clone();
        xz.parameters
            .insert(Compression::PARAMETER.into(), ParamValue::Str("xz".into()));
        let case = |repo| CaseContext {
            repo,
            source: tmp.path(),
            scenario: Scenario::Fill,
            timeout: std::time::Duration::from_secs(60),
            cache_via: None,
            explain: false,
        };
        let mut embedded = NixCache::store(
            CacheBackend::EmbeddedNginx,
            url::Url::parse("http://127.0.0.1:8080/nix/zstd").unwrap(),
            "k:1".into(),
            Some(tmp.path().join("key.sec")),
            true,
        );
        embedded.fill = Fill::NixCopy {
            secret_key_file: Some(tmp.path().join("key.sec")),
            compression: Some(Compression::Zstd),
        };
        embedded.fill_root = Some(tmp.path().join("root/nix/zstd"));
        let driver = |name: &str, cache: NixCache| {
            NixDriver::new(
                "nix".into(),
                &tmp.path().join(name),
                Some(cache),
                NixSetup::default(),
            )
            .unwrap()
        };
        let host = driver("host", embedded.clone());
        let used = host.cache_use(&case(&xz)).unwrap();
        assert_eq!(
            (used.url.as_str(), used.compression),
            ("http://127.0.0.1:8080/nix/xz", Some(Compression::Xz))
        );
        assert_eq!(
            host.cache_use(&case(&plain)).unwrap().compression,
            Some(Compression::Zstd)
        );
        assert_eq!(host.fill_unavailable(&case(&xz)), None);
        assert_eq!(
            host.team(&case(&xz)).unwrap().fill_root,
            Some(tmp.path().join("root/nix/xz"))
        );
        assert_eq!(
            host.root_of("http://127.0.0.1:4242/nix/xz")
                .map(|r| r.url.as_str()),
            Some("http://127.0.0.1:8080/nix/xz"),
            "a miss is explained by the root the build read, through the proxy or not"
        );
        // What the vm lane's guest gets: the job file drops the host's folder.
        let guest: NixCache =
            serde_json::from_str(&serde_json::to_string(&embedded).unwrap()).unwrap();
        let guest = driver("guest", guest);
        let reason = guest.fill_unavailable(&case(&plain)).unwrap();
        assert!(
            reason.contains("the vm lane's guest") && reason.contains("--lane host"),
            "{reason}"
        );
        // Another cache has no roots: a point of a compression sweep cannot run against it.
        let http = driver(
            "http",
            NixCache {
                backend: CacheBackend::Http,
                ..embedded
            },
        );
        let err = http.fill_unavailable(&case(&xz)).unwrap();
        assert!(
            err.contains("not the embedded one") && err.contains("fix:"),
            "{err}"
        );
        assert_eq!(http.cache_use(&case(&xz)), None);
    }

    /// Every build mode's `nix build` argv, snapshotted (the host's sandbox paths redacted:
    /// they depend on how this machine links /bin and /lib).
    #[test]
    fn build_argv_of_every_mode() {
        use crate::plan::cache::NixCache;
        use crate::plan::{manifest, Fault, Scenario};
        use crate::results::CacheBackend;
        let tmp = tempfile::tempdir().unwrap();
        let text = "name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[parameters]\nsize = 3\nflavour = \"plain\"\n[nix]\nfile = \"default.nix\"\nattrs = [\"app\"]\n";
        std::fs::create_dir(tmp.path().join("src")).unwrap();
        let repo = manifest::parse(text, &tmp.path().join("src/repo.toml")).unwrap();
        let url = |u: &str| url::Url::parse(u).unwrap();
        let team = NixCache::store(
            CacheBackend::Http,
            url("http://127.0.0.1:8080/nix"),
            "team-1:AAAA".into(),
            None,
            true,
        );
        let attic = NixCache {
            backend: CacheBackend::Attic,
            login: Some(crate::plan::config::Login {
                user: ATTIC_LOGIN.into(),
                password: crate::plan::config::Secret::new("s3cr3t"),
            }),
            fill: Fill::ReadOnly,
            ..NixCache::store(
                CacheBackend::Attic,
                url("https://attic.example.com/main"),
                "main:BBBB".into(),
                None,
                false,
            )
        };
        let setup = NixSetup {
            upstream: vec![NixCache::upstream(
                url("https://cache.nixos.org"),
                "cache.nixos.org-1:CCCC".into(),
            )],
            ..NixSetup::default()
        };
        let driver = |name: &str, cache: NixCache, setup: NixSetup| {
            NixDriver::new("nix".into(), &tmp.path().join(name), Some(cache), setup).unwrap()
        };
        let mut plain = driver("plain", team.clone(), NixSetup::default());
        let mut layered = driver("layered", team, setup);
        let mut read_only = driver("attic", attic, NixSetup::default());
        let source = tmp.path().join("src");
        let case = |scenario| CaseContext {
            repo: &repo,
            source: &source,
            scenario,
            timeout: std::time::Duration::from_secs(1800),
            cache_via: None,
            explain: true,
        };
        let fallback = Scenario::Fallback {
            fault: Fault::Blackhole,
            tuned: true,
        };
        let warm = BuildMode::FromCache {
            tool_fallback: false,
        };
        let snap = |name: &str, driver: &mut NixDriver, case: CaseContext, mode| {
            let build = driver
                .prepare(&case, mode, &tmp.path().join("build"))
                .unwrap();
            let mut text = crate::tools::argv_snapshot(&build, tmp.path());
            if let Some(at) = text.find("  sandbox-paths\n  ") {
                let start = at + "  sandbox-paths\n  ".len();
                let end = start + text[start..].find('\n').unwrap();
                text.replace_range(start..end, "[host sandbox paths]");
            }
            insta::assert_snapshot!(format!("nix_argv_{name}"), text);
            build
        };
        let prime = snap("prime", &mut plain, case(Scenario::Cold), BuildMode::Prime);
        plain.keep_primed(&case(Scenario::Noop), prime, Outputs::new());
        snap("cold", &mut plain, case(Scenario::Cold), BuildMode::Fresh);
        snap("warm", &mut plain, case(Scenario::Warm), warm);
        snap("noop", &mut plain, case(Scenario::Noop), BuildMode::Noop);
        let proxied = CaseContext {
            cache_via: Some("127.0.0.1:4242".parse().unwrap()),
            ..case(fallback)
        };
        snap(
            "fallback_through_the_proxy_tuned",
            &mut plain,
            proxied,
            warm,
        );
        let tool_fallback = BuildMode::FromCache {
            tool_fallback: true,
        };
        snap("fallback_tool_fallback", &mut plain, proxied, tool_fallback);
        snap(
            "verify_from_the_cache",
            &mut plain,
            case(Scenario::Verify),
            warm,
        );
        snap(
            "verify_clean_rebuild",
            &mut plain,
            case(Scenario::Verify),
            BuildMode::Fresh,
        );
        let unexplained = CaseContext {
            explain: false,
            ..case(Scenario::Warm)
        };
        snap("warm_explain_off", &mut plain, unexplained, warm);
        snap(
            "cold_with_upstream",
            &mut layered,
            case(Scenario::Cold),
            BuildMode::Fresh,
        );
        snap(
            "warm_with_upstream",
            &mut layered,
            case(Scenario::Warm),
            warm,
        );
        snap(
            "warm_read_only_attic",
            &mut read_only,
            case(Scenario::Warm),
            warm,
        );
    }
}
