//! The Nix adapter: every build in a private chroot store (`--store DIR`), with a private
//! configuration, so nothing on the host (`/nix`, `~/.config/nix`, `~/.cache/nix`) is read
//! or written and every sample starts from exactly the state its scenario asks for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::{reroute, signed_destination, NixCache, Push};
use crate::error::{Error, IoContext, Result};
use crate::plan::manifest::NixTargets;
use crate::plan::ParamValue;
use crate::results::{CacheFill, CacheUse, ConfigFile, FillMethod};
use crate::run::process::{run_captured, CommandSpec, Executor, ProcessOutcome};
use crate::scratch::Owner;
use crate::tools::nix_log::{parse_build_outputs, parse_internal_json, parse_path_info};
use crate::tools::nix_push::{fill_attic, PrimedStore};
use crate::tools::{
    first_distinct, BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation, CaseContext,
    Counters, Outputs, PreparedBuild,
};

/// Host folders the build sandbox may see, so derivations can use host tools (no nixpkgs).
const SANDBOX_PATHS: &[&str] = &["/bin", "/usr", "/lib", "/lib64"];

const NIX_CONF: &str = "\
build-users-group =
sandbox = false
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

pub struct NixDriver {
    nix: PathBuf,
    dir: PathBuf,
    conf_file: PathBuf,
    cache: Option<NixCache>,
    /// Stores built once per repo and parameters without any cache: the clean reference,
    /// the source of the cache's contents and the ready-made state of `noop` builds.
    primed: BTreeMap<String, Primed>,
    /// Numbers primed stores, so a retried priming never reuses a failed one's folder.
    primes_started: usize,
}

struct Primed {
    store: PathBuf,
    outputs: Vec<String>,
    digests: Outputs,
    pushed: bool,
}

impl NixDriver {
    /// `dir` is a private folder the driver may fill (config, primed stores).
    pub fn new(nix: PathBuf, dir: &Path, cache: Option<NixCache>) -> Result<Self> {
        let conf_dir = dir.join("nix-conf");
        std::fs::create_dir_all(&conf_dir)
            .context(|| format!("creating {}", conf_dir.display()))?;
        let conf_file = conf_dir.join("nix.conf");
        std::fs::write(&conf_file, NIX_CONF)
            .context(|| format!("writing {}", conf_file.display()))?;
        Ok(NixDriver {
            nix,
            dir: dir.to_path_buf(),
            conf_file,
            cache,
            primed: BTreeMap::new(),
            primes_started: 0,
        })
    }

    /// The private environment of every Nix command: system and user config replaced,
    /// and a narinfo cache of its own (a stale one breaks runs).
    pub(crate) fn env(&self, xdg_cache: &Path) -> Vec<(String, OsString)> {
        let conf_dir = self.conf_file.parent().expect("conf file has a folder");
        vec![
            ("NIX_CONF_DIR".into(), conf_dir.into()),
            ("NIX_USER_CONF_FILES".into(), self.conf_file.clone().into()),
            ("XDG_CACHE_HOME".into(), xdg_cache.into()),
        ]
    }

    fn cache(&self) -> Result<&NixCache> {
        self.cache.as_ref().ok_or_else(|| {
            Error::Environment("a Nix case that reads a cache ran without one".into())
        })
    }

    /// What a reviewer needs besides the command: the nix.conf, and where the credentials
    /// are (never their content).
    fn config_files(&self, reads_cache: bool) -> Vec<ConfigFile> {
        let mut files = vec![ConfigFile {
            path: self.conf_file.display().to_string(),
            text: NIX_CONF.into(),
        }];
        if let Some(netrc) = self.cache.as_ref().and_then(|c| c.netrc_file.as_ref()) {
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
        let targets = case.repo.nix.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "bench repo `{}` has no [nix] targets",
                case.repo.name
            ))
        })?;
        let sandbox_paths: Vec<String> = SANDBOX_PATHS
            .iter()
            .map(PathBuf::from)
            .chain(case.repo.nix_sandbox_paths.iter().cloned())
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let mut args: Vec<OsString> = vec!["build".into(), "--store".into(), store.into()];
        push_option(&mut args, "sandbox-paths", &sandbox_paths.join(" "));
        if let BuildMode::FromCache { tool_fallback } = mode {
            let cache = self.cache()?;
            let substituter = match case.cache_via {
                Some(via) => reroute(&cache.substituter, via),
                None => cache.substituter.clone(),
            };
            push_option(&mut args, "substituters", substituter.as_str());
            push_option(&mut args, "trusted-public-keys", &cache.public_key);
            push_option(&mut args, "narinfo-cache-negative-ttl", "0");
            if let Some(netrc) = &cache.netrc_file {
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
        args.extend(target_args(targets, case.source, &case.repo.parameters));
        Ok(CommandSpec {
            program: self.nix.clone(),
            args,
            env: self.env(&dir.join("xdg-cache")),
            cwd: Some(dir.to_path_buf()),
            stdin: None,
            stdout: dir.join("stdout.json"),
            stderr: dir.join("stderr.log"),
            timeout: case.timeout,
        })
    }

    /// `nix copy` of a primed store's outputs (with their closure) to a binary cache.
    fn nix_copy_spec(
        &self,
        to: &url::Url,
        secret_key_file: Option<&Path>,
        primed: &Primed,
        case: &CaseContext,
    ) -> CommandSpec {
        let mut args: Vec<OsString> = vec![
            "copy".into(),
            "--store".into(),
            primed.store.clone().into(),
            "--to".into(),
            signed_destination(to, secret_key_file).into(),
        ];
        args.extend(primed.outputs.iter().map(OsString::from));
        CommandSpec::new(&self.nix, args, case.timeout).env(self.push_env())
    }

    /// `attic push TARGET OUTPUTS`, reading the primed store through `NIX_REMOTE`.
    fn attic_cli_spec(
        &self,
        program: &Path,
        home: &Path,
        target: &str,
        primed: &Primed,
        case: &CaseContext,
    ) -> CommandSpec {
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

    fn push_env(&self) -> Vec<(String, OsString)> {
        self.env(&self.dir.join("xdg-cache-push"))
    }
}

impl NixDriver {
    fn mark_pushed(&mut self, case: &CaseContext) {
        if let Some(primed) = self.primed.get_mut(&case.state_key()) {
            primed.pushed = true;
        }
    }
}

impl BuildDriver for NixDriver {
    fn primed(&self, case: &CaseContext) -> Option<&Outputs> {
        self.primed.get(&case.state_key()).map(|p| &p.digests)
    }

    fn keep_primed(&mut self, case: &CaseContext, build: PreparedBuild, outputs: Outputs) {
        let BuildState::Nix { store } = build.state else {
            return;
        };
        let paths = std::fs::read_to_string(&build.spec.stdout)
            .ok()
            .and_then(|text| parse_build_outputs(&text).ok())
            .unwrap_or_default();
        self.primed.insert(
            case.state_key(),
            Primed {
                store,
                outputs: paths,
                digests: outputs,
                pushed: false,
            },
        );
    }

    fn fill_cache(&mut self, case: &CaseContext, exec: &dyn Executor) -> Result<Option<CacheFill>> {
        let cache = self.cache()?;
        let push = cache.push.clone();
        let substituter = cache.substituter.clone();
        let primed = match (&push, self.primed.get(&case.state_key())) {
            (Push::ReadOnly, _) => return Ok(Some(CacheFill::read_only())),
            (_, None) => {
                return Err(Error::Build(
                    "the cache was to be filled before priming".into(),
                ))
            }
            (_, Some(primed)) if primed.pushed => return Ok(None),
            (_, Some(primed)) => primed,
        };
        let started = Instant::now();
        let (method, spec) = match &push {
            Push::AtticApi(target) => {
                let store = PrimedStore {
                    nix: &self.nix,
                    store: &primed.store,
                    env: self.push_env(),
                    scratch: self.dir.join("attic-push"),
                };
                let fill = fill_attic(target, &store, &primed.outputs, exec, case.timeout)?;
                self.mark_pushed(case);
                return Ok(Some(fill));
            }
            Push::NixCopy {
                to,
                secret_key_file,
            } => (
                FillMethod::NixCopy,
                self.nix_copy_spec(to, secret_key_file.as_deref(), primed, case),
            ),
            Push::AtticCli {
                program,
                home,
                target,
            } => (
                FillMethod::AtticCli,
                self.attic_cli_spec(program, home, target, primed, case),
            ),
            // Answered above: it uploads nothing.
            Push::ReadOnly => return Ok(None),
        };
        let out = run_captured(exec, spec)?;
        if !out.outcome.success() {
            // The push URL may name the secret key's file; report the public URL only.
            return Err(Error::Build(format!(
                "uploading to the cache {substituter} failed ({}): {}",
                out.outcome.describe(),
                out.stderr.trim()
            )));
        }
        self.mark_pushed(case);
        Ok(Some(CacheFill::timed(
            method,
            started.elapsed().as_secs_f64(),
        )))
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> Result<PreparedBuild> {
        let store = match mode {
            BuildMode::Noop => self
                .primed
                .get(&case.state_key())
                .map(|p| p.store.clone())
                .ok_or_else(|| Error::Build("the noop store was not primed".into()))?,
            // Kept for the run, so outside the build's own folder.
            BuildMode::Prime => {
                self.primes_started += 1;
                self.dir
                    .join(format!("prime-{}/store", self.primes_started))
            }
            BuildMode::Fresh | BuildMode::FromCache { .. } => dir.join("store"),
        };
        Ok(PreparedBuild {
            spec: self.build_spec(case, &store, dir, mode)?,
            state: BuildState::Nix { store },
            files: self.config_files(matches!(mode, BuildMode::FromCache { .. })),
        })
    }

    fn inspect(&self, build: &PreparedBuild, outcome: &ProcessOutcome) -> BuildReport {
        let stderr = std::fs::read_to_string(&build.spec.stderr).unwrap_or_default();
        let log = parse_internal_json(&stderr);
        BuildReport {
            counters: Counters {
                built: Some(log.built),
                substituted: Some(log.substituted),
                downloaded_bytes: Some(log.downloaded_bytes),
                ..Counters::default()
            },
            error: (!outcome.success()).then(|| {
                log.failure_summary()
                    .unwrap_or_else(|| format!("nix {} and printed no error", outcome.describe()))
            }),
            messages: first_distinct(log.errors.iter().chain(&log.warnings).map(String::as_str)),
        }
    }

    /// NAR hashes of the built paths, from `nix path-info --json` in the build's store.
    fn outputs(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> Result<Outputs> {
        let BuildState::Nix { store } = &build.state else {
            return Err(Error::Build(
                "a Nix driver was handed another tool's build".into(),
            ));
        };
        let stdout = std::fs::read_to_string(&build.spec.stdout).unwrap_or_default();
        let paths = parse_build_outputs(&stdout).map_err(Error::Build)?;
        let mut args: Vec<OsString> = vec![
            "path-info".into(),
            "--json".into(),
            "--store".into(),
            store.into(),
        ];
        args.extend(paths.iter().map(OsString::from));
        let env = self.env(&self.dir.join("xdg-cache-path-info"));
        let out = run_captured(
            exec,
            CommandSpec::new(&self.nix, args, PATH_INFO_TIMEOUT).env(env),
        )?;
        if !out.outcome.success() {
            return Err(Error::Build(format!(
                "`nix path-info` of the outputs failed ({}): {}",
                out.outcome.describe(),
                out.stderr.trim()
            )));
        }
        parse_path_info(&out.stdout).map_err(Error::Build)
    }

    /// A sandboxed builder is not in the build's process group (Nix forks it into its own
    /// namespaces): whatever still works in a fresh store stops before it is removed.
    fn finish(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> Result<()> {
        if let BuildState::Nix { store } = &build.state {
            if !self.primed.values().any(|p| &p.store == store) {
                crate::scratch::stop_processes_in(store, Owner::current().start_ticks);
            }
        }
        Ok(())
    }

    fn cache_use(&self) -> Option<CacheUse> {
        self.cache.as_ref().map(NixCache::use_record)
    }

    fn cache_location(&self) -> Option<CacheLocation<'_>> {
        self.cache
            .as_ref()
            .map(|c| CacheLocation::Url(&c.substituter))
    }

    fn tool_fallback_flag(&self) -> Option<&'static str> {
        Some("--fallback")
    }

    fn tuned_settings(&self) -> Vec<String> {
        TUNED.iter().map(|(k, v)| format!("{k} = {v}")).collect()
    }
}

fn push_option(args: &mut Vec<OsString>, name: &str, value: &str) {
    args.extend(["--option", name, value].map(OsString::from));
}

/// What to build: a Nix file with parameters as function arguments, or flake installables.
pub fn target_args(
    targets: &NixTargets,
    source: &Path,
    parameters: &BTreeMap<String, ParamValue>,
) -> Vec<OsString> {
    match targets {
        NixTargets::File { file, attrs } => {
            let mut args: Vec<OsString> = vec!["-f".into(), source.join(file).into()];
            args.extend(attrs.iter().map(OsString::from));
            for (name, value) in parameters {
                let flag = match value {
                    ParamValue::Int(_) => "--arg",
                    ParamValue::Str(_) => "--argstr",
                };
                args.extend([flag.into(), name.into(), value.to_string().into()]);
            }
            args
        }
        NixTargets::Flake { installables } => installables
            .iter()
            .map(|i| match i.strip_prefix('.') {
                // `.#attr` means the bench repo's own flake, wherever its source lives.
                Some(rest) => format!("path:{}{rest}", source.display()).into(),
                None => i.into(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "app",
                "--argstr",
                "flavour",
                "plain",
                "--arg",
                "size",
                "5"
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
            vec![OsString::from("path:/src#default"), "nixpkgs#hello".into()]
        );
    }
}
