//! The run's configuration, resolved once into types: command-line flags over the profile
//! over the defaults. Pure: the environment comes in as a value (`Env`), captured once by
//! the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::plan::args::RunArgs;
use crate::plan::cache::{
    attic_url, nix_backend_of, BazelCache, BazelEndpoint, Fill, NixCache, ATTIC_LOGIN,
};
use crate::plan::profile::{AtticPush, BazelBackend, NixBackend, Profile, TokenSource};
use crate::plan::proxies::Proxies;
use crate::plan::{Lane, ParamValue, Scenario, Settings, SlowSettings, System};
use crate::results::{CacheBackend, RunSettings, Thresholds};

/// The process environment as the configuration sees it: variables, the current folder,
/// the temp folder and the clock, captured once.
#[derive(Debug, Clone)]
pub struct Env {
    vars: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub temp_dir: PathBuf,
    pub now: chrono::DateTime<chrono::Utc>,
    /// `./bench-repos` exists.
    local_bench_repos: bool,
    /// The bench repos installed beside the harness's binary, when there are any.
    shipped_bench_repos: Option<PathBuf>,
}

/// Where bench repos are installed relative to the folder of the binary: the flake's
/// package (`$out/bin`, `$out/share/flywheel-bench/bench-repos`) and the runner pack of
/// `scripts/pack-runner` (`bin/`, `bench-repos/`).
const SHIPPED_BENCH_REPOS: [&str; 2] = ["../share/flywheel-bench/bench-repos", "../bench-repos"];

impl Env {
    /// The one place that reads the process's environment for the configuration.
    pub fn capture() -> Env {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf));
        Env {
            vars: std::env::vars().collect(),
            local_bench_repos: cwd.join("bench-repos").is_dir(),
            shipped_bench_repos: exe_dir.and_then(|dir| {
                SHIPPED_BENCH_REPOS
                    .iter()
                    .map(|rel| dir.join(rel))
                    .find(|p| p.is_dir())
                    .map(|p| p.canonicalize().unwrap_or(p))
            }),
            cwd,
            temp_dir: std::env::temp_dir(),
            now: chrono::Utc::now(),
        }
    }

    /// The bench repos folder for `--bench-repos` (`flag`) and where the choice came from:
    /// the flag, else `$FLYWHEEL_BENCH_REPOS`, else `./bench-repos` when it exists, else the
    /// folder installed beside the binary, else `./bench-repos` (which errors then name).
    /// `run`, `coverage`, `compare` and `doctor` all find them here.
    pub fn bench_repos(&self, flag: Option<&Path>) -> (PathBuf, &'static str) {
        if let Some(dir) = flag {
            return (dir.to_path_buf(), "--bench-repos");
        }
        if let Some(dir) = self.var(BENCH_REPOS_ENV) {
            return (PathBuf::from(dir), "$FLYWHEEL_BENCH_REPOS");
        }
        let local = self.cwd.join("bench-repos");
        match &self.shipped_bench_repos {
            Some(shipped) if !self.local_bench_repos => {
                (shipped.clone(), "installed beside the binary")
            }
            _ => (local, "./bench-repos"),
        }
    }

    /// An environment with just these variables (tests, and the vm lane's guest).
    pub fn with_vars(vars: &[(&str, &str)], cwd: &Path) -> Env {
        Env {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cwd: cwd.to_path_buf(),
            temp_dir: PathBuf::from("/tmp"),
            now: chrono::DateTime::UNIX_EPOCH,
            local_bench_repos: false,
            shipped_bench_repos: None,
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

/// The environment variable that names the bench repos folder (`--bench-repos` wins).
pub const BENCH_REPOS_ENV: &str = "FLYWHEEL_BENCH_REPOS";
/// Bazel remote cache headers (e.g. credentials), one `Name=Value` per line.
pub const BAZEL_HEADERS_ENV: &str = "FLYWHEEL_BAZEL_REMOTE_HEADERS";

/// A credential: shown as `<redacted>` by `Debug`, never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one private file it is written to.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a run uses Nix, besides the team cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NixSetup {
    /// `nix --version` as recorded.
    pub version: String,
    /// Caches present in every build, cold ones included: the public layer (e.g.
    /// https://cache.nixos.org) under the team cache that is measured.
    pub upstream: Vec<NixCache>,
    /// Proxies for the harness's own requests to Nix caches (Attic's API, narinfos).
    pub proxies: Proxies,
    /// The `attic` CLI, when the team cache is filled with it (found with the other tools).
    pub attic: Option<PathBuf>,
}

/// HTTP Basic credentials that came in a URL, percent-decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub user: String,
    pub password: Secret,
}

/// `url` without its user information, and that information, checked so a netrc file or an
/// HTTP header can carry it. `source` names where the URL came from; the error never
/// shows the credentials.
pub fn take_login(url: &Url, source: &str) -> Result<(Url, Option<Login>)> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok((url.clone(), None));
    }
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|t| t.into_owned())
            .ok()
            .filter(|t| !t.chars().any(|c| c.is_whitespace() || c.is_control()))
    };
    let (Some(user), Some(password)) =
        (decode(url.username()), decode(url.password().unwrap_or("")))
    else {
        return Err(Error::Usage(format!(
            "{source} {}: the user or password in the URL holds a space, line break or control character\n  fix: percent-encode them, or give the cache credentials another way",
            crate::boundary::public_url(url)
        )));
    };
    let mut public = url.clone();
    let _ = public.set_username("");
    let _ = public.set_password(None);
    Ok((
        public,
        Some(Login {
            user,
            password: Secret::new(password),
        }),
    ))
}

/// How a run uses Bazel, besides its cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BazelSetup {
    /// `bazel --version` as recorded.
    pub version: String,
    /// `--bazel-override NAME=PATH`.
    pub overrides: Vec<(String, PathBuf)>,
    /// Share one repository cache between all builds of the run.
    pub shared_repository_cache: bool,
}

/// The Nix cache warm cases read from.
// Resolved once per run and never copied in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Default)]
pub enum NixCacheConfig {
    /// The harness's own nginx, with a signing key generated for the run: its URL and key
    /// exist once provisioning starts it.
    #[default]
    Embedded,
    External(NixCache),
}

/// The Bazel cache warm cases read from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum BazelCacheConfig {
    /// The harness's own nginx, speaking Bazel's HTTP cache protocol.
    #[default]
    Embedded,
    External(BazelCache),
}

/// The vm lane's machine (`--vm-memory-mb`, `--vm-cpus`, `--vm-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VmSettings {
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            memory_mb: 3072,
            cpus: 2,
            timeout: Duration::from_secs(3600),
        }
    }
}

/// Which bench repos to load: names or paths (none: every embedded one), where to look
/// them up, and parameter overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSelection {
    pub names: Vec<String>,
    /// As [`Env::bench_repos`] finds it.
    pub bench_repos: PathBuf,
    pub params: Vec<(String, ParamValue)>,
    /// The profile's `[params.REPO]` values, applied before `params`.
    pub profile_params: BTreeMap<String, Vec<(String, ParamValue)>>,
    /// `--sweep`: every repo declaring the parameter runs at each of these values.
    pub sweep: Option<(String, Vec<ParamValue>)>,
}

/// Everything a run needs to know, resolved once.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub profile: String,
    pub repos: RepoSelection,
    /// `None`: every system each repo has targets for.
    pub systems: Option<Vec<System>>,
    pub scenarios: Vec<Scenario>,
    /// Sorted, without duplicates.
    pub lanes: Vec<Lane>,
    pub settings: Settings,
    pub thresholds: Thresholds,
    /// What a failing verdict does to the exit code.
    pub verdicts: crate::plan::VerdictPolicy,
    pub nix_cache: NixCacheConfig,
    pub bazel_cache: BazelCacheConfig,
    /// Proxies for the harness's own HTTP requests (Attic API, preflights), from the
    /// environment; Nix and Bazel read the same variables themselves.
    pub proxies: Proxies,
    /// How Nix and Bazel are used besides the team cache (versions are filled in once the
    /// tools are found).
    pub nix: NixSetup,
    pub bazel: BazelSetup,
    pub vm: VmSettings,
    pub output: PathBuf,
    /// Where the run's scratch folder is made.
    pub work_dir: PathBuf,
    pub checkout_cache: PathBuf,
    /// The folder the run started in: the flake whose dev shells the gpu lane may use.
    pub flake_dir: PathBuf,
    /// `$PATH` as the run started: where every tool is looked up (nix, bazel, nginx,
    /// QEMU, the gpu lane's nvidia-smi, nvcc and ldconfig), and the vm lane guest's `PATH`.
    pub search_path: std::ffi::OsString,
    /// `$GITHUB_REF`: the ref a CI checked out, which results record for detached checkouts.
    pub ci_ref: Option<String>,
    /// What the lane's job timed before the run (`--bootstrap-time`).
    pub bootstrap: Vec<crate::results::lifecycle::TimedStep>,
}

impl RunConfig {
    /// Layers `args` over `profile` over the defaults. Values that name an environment
    /// variable (headers, tokens) are read from `env`.
    pub fn resolve(args: &RunArgs, profile: &Profile, env: &Env) -> Result<RunConfig> {
        let defaults = Settings::default();
        let settings = Settings {
            samples: args.samples.or(profile.samples).unwrap_or(defaults.samples),
            max_samples: args.max_samples.unwrap_or(defaults.max_samples),
            target_precision: args.target_precision,
            warmups: args.warmups.or(profile.warmups).unwrap_or(defaults.warmups),
            timeout: args.timeout.map_or(defaults.timeout, Duration::from_secs),
            fallback_samples: args.fallback_samples.unwrap_or(defaults.fallback_samples),
            fallback_timeout: args
                .fallback_timeout
                .map_or(defaults.fallback_timeout, Duration::from_secs),
            slow: SlowSettings {
                latency: args
                    .slow_latency_ms
                    .map_or(defaults.slow.latency, Duration::from_millis),
                bytes_per_sec: args.slow_bytes_per_s.unwrap_or(defaults.slow.bytes_per_sec),
            },
            poison_suffix: args.poison_suffix.clone().unwrap_or(defaults.poison_suffix),
            fill: !args.no_fill && profile.fill.unwrap_or(defaults.fill),
            explain: args.explain.unwrap_or(defaults.explain),
            compression: args
                .compression
                .or(profile.compression)
                .unwrap_or(defaults.compression),
            link: args.link.or(profile.link),
            order: args.order.unwrap_or(defaults.order),
            verify: args.verify.unwrap_or(defaults.verify),
            verify_depth: args.verify_depth.or(defaults.verify_depth),
        };
        let fill = settings.fill;
        let proxies = Proxies::from_env(env).map_err(Error::Environment)?;
        let t = Thresholds::default();
        let thresholds = Thresholds {
            min_hit_ratio: args
                .min_hit_ratio
                .or(profile.min_hit_ratio)
                .unwrap_or(t.min_hit_ratio),
            min_speedup: args
                .min_speedup
                .or(profile.min_speedup)
                .unwrap_or(t.min_speedup),
            max_fallback_penalty: args
                .max_fallback_penalty
                .or(profile.max_fallback_penalty)
                .unwrap_or(t.max_fallback_penalty),
        };
        let mut lanes = if !args.lanes.is_empty() {
            args.lanes.clone()
        } else {
            profile.lanes.clone().unwrap_or_else(|| vec![Lane::Host])
        };
        lanes.sort();
        lanes.dedup();
        let vm_defaults = VmSettings::default();
        let vm = VmSettings {
            memory_mb: args.vm.vm_memory_mb.unwrap_or(vm_defaults.memory_mb),
            cpus: args.vm.vm_cpus.unwrap_or(vm_defaults.cpus),
            timeout: args
                .vm
                .vm_timeout
                .map_or(vm_defaults.timeout, Duration::from_secs),
        };
        if let Some((key, _)) = &args.sweep {
            if args.params.iter().any(|(k, _)| k == key) {
                return Err(Error::Usage(format!(
                    "--sweep {key}=... and --param {key}=... both set `{key}`\n  fix: drop the --param: the sweep runs each of its values"
                )));
            }
        }
        if (args.max_samples.is_some() || settings.target_precision.is_some())
            && settings.max_samples < settings.samples
        {
            return Err(Error::Usage(format!(
                "--max-samples {} is below --samples {} (the minimum number of samples)\n  fix: raise --max-samples to at least {}, or lower --samples",
                settings.max_samples, settings.samples, settings.samples
            )));
        }
        let nix_cache = nix_cache(args, &profile.nix, env, fill)?;
        if let Some((key, _)) = args
            .sweep
            .as_ref()
            .filter(|(key, _)| key == crate::plan::Compression::PARAMETER)
        {
            if args.compression.is_some() {
                return Err(Error::Usage(format!(
                    "--sweep {key}=... and --compression both choose the embedded cache's compression\n  fix: drop --compression: the sweep runs each of its values"
                )));
            }
            if let NixCacheConfig::External(cache) = &nix_cache {
                return Err(Error::Usage(format!(
                    "--sweep {key}=...: the Nix cache is {}, which compresses NARs its own way; only the embedded cache stores them as the harness chooses\n  fix: sweep compression with the embedded cache (a profile without a nix cache, e.g. the default)",
                    cache.url
                )));
            }
        }
        let (bench_repos, _) = env.bench_repos(args.bench_repos.as_deref());
        Ok(RunConfig {
            profile: profile.name.clone(),
            repos: RepoSelection {
                names: if args.repos.is_empty() {
                    profile.repos.clone().unwrap_or_default()
                } else {
                    args.repos.clone()
                },
                bench_repos,
                params: args.params.clone(),
                profile_params: profile.params.clone(),
                sweep: args.sweep.clone(),
            },
            systems: (!args.systems.is_empty()).then(|| args.systems.clone()),
            scenarios: if args.scenarios.is_empty() {
                Scenario::DEFAULT.to_vec()
            } else {
                args.scenarios.concat()
            },
            lanes,
            settings,
            thresholds,
            verdicts: args.verdicts.unwrap_or_default(),
            nix_cache,
            bazel_cache: bazel_cache(args, &profile.bazel, env, fill)?,
            nix: NixSetup {
                version: String::new(),
                upstream: profile.nix_upstream.clone(),
                proxies: proxies.clone(),
                attic: None,
            },
            proxies,
            bazel: BazelSetup {
                version: String::new(),
                overrides: args.bazel_overrides.clone(),
                shared_repository_cache: profile.bazel_shared_repository_cache.unwrap_or(true),
            },
            vm,
            output: args.output.clone().unwrap_or_else(|| {
                let stamp = env.now.format("%Y-%m-%dT%H-%M-%SZ");
                env.cwd.join("results").join(format!("{stamp}.json"))
            }),
            work_dir: args
                .work_dir
                .clone()
                .unwrap_or_else(|| env.temp_dir.clone()),
            checkout_cache: args
                .checkout_cache
                .clone()
                .unwrap_or_else(|| default_checkout_cache(env)),
            flake_dir: env.cwd.clone(),
            search_path: env.var("PATH").unwrap_or_default().into(),
            ci_ref: env.var("GITHUB_REF").map(str::to_string),
            bootstrap: args
                .bootstrap_times
                .iter()
                .map(|(name, s)| crate::results::lifecycle::TimedStep::new(name, *s))
                .collect(),
        })
    }
}

impl RunConfig {
    /// The settings as results record them.
    pub fn run_settings(&self) -> RunSettings {
        let s = &self.settings;
        RunSettings {
            samples: s.samples,
            warmups: s.warmups,
            timeout_s: s.timeout.as_secs_f64(),
            fallback_timeout_s: s.fallback_timeout.as_secs_f64(),
            slow_latency_ms: s.slow.latency.as_millis() as u64,
            slow_bytes_per_s: s.slow.bytes_per_sec,
            thresholds: self.thresholds,
            fill: s.fill,
            target_precision: s.target_precision,
            max_samples: s.target_precision.map(|_| s.max_samples),
            explain: s.explain,
            compression: Some(s.compression),
            order: Some(s.order),
            verify: s.verify,
            verify_depth: s.verify_depth,
        }
    }
}

/// `$XDG_CACHE_HOME` (or `~/.cache`)/flywheel-bench/checkouts.
fn default_checkout_cache(env: &Env) -> PathBuf {
    env.var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(h).join(".cache")))
        .unwrap_or_else(|| env.temp_dir.clone())
        .join("flywheel-bench/checkouts")
}

/// Parses a cache URL, naming where it came from in the error (without credentials).
pub fn parse_url(text: &str, source: &str, example: &str) -> Result<Url> {
    Url::parse(text).map_err(|e| {
        Error::Usage(format!(
            "{source} {}: not a URL ({e})\n  fix: write it in full, e.g. {example}",
            crate::boundary::redact_urls(text)
        ))
    })
}

fn nix_cache(
    args: &RunArgs,
    profile: &NixBackend,
    env: &Env,
    fill: bool,
) -> Result<NixCacheConfig> {
    match (&args.nix_cache, &args.nix_cache_public_key) {
        (Some(url), Some(key)) => {
            let url = parse_url(url, "--nix-cache", "http://cache:8080/nix")?;
            if !matches!(url.scheme(), "http" | "https" | "file" | "s3") {
                return Err(Error::Usage(format!(
                    "--nix-cache {}: Nix binary caches are http(s)://, file:// or s3://, not {}://\n  fix: e.g. https://cache.example.com or file:///var/cache/nix",
                    crate::boundary::public_url(&url),
                    url.scheme()
                )));
            }
            let backend = nix_backend_of(&url);
            return store_cache(
                backend,
                &url,
                key,
                args.nix_cache_secret_key.clone(),
                fill,
                "--nix-cache",
            );
        }
        (None, None) if args.nix_cache_secret_key.is_some() => {
            return Err(Error::Usage(
                "--nix-cache-secret-key signs uploads to the cache --nix-cache names, and there is no --nix-cache\n  fix: pass --nix-cache URL --nix-cache-public-key KEY with it, or drop --nix-cache-secret-key (the profile's nix.secret_key_file signs a profile's cache)".into(),
            ))
        }
        (None, None) => {}
        _ => {
            return Err(Error::Usage(
                "--nix-cache needs --nix-cache-public-key (and the other way round)\n  fix: pass both, e.g. --nix-cache http://cache/nix --nix-cache-public-key name:base64".into(),
            ))
        }
    }
    Ok(match profile {
        NixBackend::Embedded => NixCacheConfig::Embedded,
        NixBackend::Attic {
            endpoint,
            cache,
            public_key,
            token,
            push,
        } => NixCacheConfig::External(NixCache {
            fill_root: None,
            backend: CacheBackend::Attic,
            url: attic_url(endpoint, cache)?,
            public_key: public_key.clone(),
            login: Some(Login {
                user: ATTIC_LOGIN.into(),
                password: match token {
                    TokenSource::Env(var) => token_from_env(var, env)?,
                    TokenSource::File(path) => token_from_file(path)?,
                },
            }),
            fill: match (fill, push) {
                (false, _) => Fill::ReadOnly,
                (true, AtticPush::Api) => Fill::AtticApi,
                (true, AtticPush::Cli) => Fill::AtticCli,
            },
        }),
        NixBackend::Store {
            backend,
            url,
            public_key,
            secret_key_file,
        } => store_cache(
            *backend,
            url,
            public_key,
            secret_key_file.clone(),
            fill,
            "the profile's nix.url",
        )?,
    })
}

/// A cache that `nix copy` fills; a user and password in an http(s) URL move out of it,
/// into the cache's login.
fn store_cache(
    backend: CacheBackend,
    url: &Url,
    public_key: &str,
    secret_key_file: Option<PathBuf>,
    fill: bool,
    source: &str,
) -> Result<NixCacheConfig> {
    let (url, login) = take_login(url, source)?;
    if login.is_some() && !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Usage(format!(
            "{source} {url}: only http(s) caches take a user and password in the URL\n  fix: remove them from the URL"
        )));
    }
    let mut cache = NixCache::store(backend, url, public_key.into(), secret_key_file, fill);
    cache.login = login;
    Ok(NixCacheConfig::External(cache))
}

fn token_from_env(var: &str, env: &Env) -> Result<Secret> {
    let Some(value) = env.var(var) else {
        return Err(Error::Environment(format!(
            "the Attic token variable ${var} is not set\n  fix: export {var}=<token> before the run (it is never printed or recorded)"
        )));
    };
    checked_token(value.trim(), &format!("the Attic token variable ${var}"))
}

/// The token in `path`, trimmed. Errors name the file, never what is in it.
pub fn token_from_file(path: &Path) -> Result<Secret> {
    let text = crate::boundary::read_text(path, crate::boundary::SECRET_LIMIT).map_err(|why| {
        Error::Environment(format!(
            "the Attic token file {}: {why}\n  fix: point token_file at a readable regular file holding the token",
            path.display(),
        ))
    })?;
    checked_token(
        text.trim(),
        &format!("the Attic token file {}", path.display()),
    )
}

/// A token that an HTTP header and a netrc line can carry: not empty, no space, line break
/// or control character (which would split it). `source` names where it came from; the
/// error never shows it.
fn checked_token(token: &str, source: &str) -> Result<Secret> {
    if token.is_empty() {
        return Err(Error::Environment(format!(
            "{source} is empty\n  fix: set it to the token"
        )));
    }
    if let Some(at) = token.find(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(Error::Environment(format!(
            "{source} holds a space, line break or control character (at byte {at}), so no HTTP header can carry it\n  fix: write the token alone, on one line (`atticadm make-token` prints one)"
        )));
    }
    Ok(Secret::new(token))
}

/// `Name=Value` lines from a variable; blank lines are skipped. A line that is not a
/// header (no `=`, a name that is not an HTTP token, a control character in the value) is
/// refused, naming the variable and the line, never the value.
fn headers_from_env(var: &str, env: &Env) -> Result<Vec<Secret>> {
    let lines = env.var(var).unwrap_or_default().lines().map(str::trim);
    lines
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let name = line.split_once('=').map(|(name, _)| name.trim());
            let token = |n: &str| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
            };
            match name {
                Some(name) if token(name) && !line.chars().any(char::is_control) => {
                    Ok(Secret::new(line))
                }
                _ => Err(Error::Usage(format!(
                    "${var}: header {} is not `Name=Value` with an HTTP header name and a value without control characters\n  fix: write one header a line, e.g. Authorization=Bearer TOKEN",
                    i + 1
                ))),
            }
        })
        .collect()
}

fn bazel_cache(
    args: &RunArgs,
    profile: &BazelBackend,
    env: &Env,
    fill: bool,
) -> Result<BazelCacheConfig> {
    let remote = |url: &str, source: &str, headers_env: &str| -> Result<BazelCacheConfig> {
        let parsed = parse_url(url, source, "grpc://bazel-remote:9092")?;
        let mut headers = headers_from_env(headers_env, env)?;
        // A user and password in the URL go as an HTTP Basic header, never on Bazel's
        // command line, so the URL itself can be shown.
        let (parsed, login) = take_login(&parsed, source)?;
        if let Some(login) = login {
            use base64::Engine;
            let pair = format!("{}:{}", login.user, login.password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push(Secret::new(format!("Authorization=Basic {encoded}")));
        }
        let backend = match parsed.scheme() {
            "http" | "https" => CacheBackend::Http,
            "grpc" | "grpcs" => CacheBackend::Grpc,
            _ => return Err(Error::Usage(format!(
                "{source} {}: not an http(s):// or grpc(s):// URL\n  fix: e.g. http://cache:8080 or grpc://cache:9092 (bazel-remote serves both)",
                crate::boundary::public_url(&parsed)
            ))),
        };
        Ok(BazelCacheConfig::External(BazelCache {
            fill_root: None,
            backend,
            endpoint: BazelEndpoint::Remote(parsed),
            headers,
            read_only: !fill,
        }))
    };
    match (&args.bazel_remote_cache, profile) {
        (Some(url), _) => remote(url, "--bazel-remote-cache", BAZEL_HEADERS_ENV),
        (None, BazelBackend::Remote { url, headers_env }) => remote(
            url.as_str(),
            "the profile's bazel.url",
            headers_env.as_deref().unwrap_or(BAZEL_HEADERS_ENV),
        ),
        (None, BazelBackend::Disk { path }) => Ok(BazelCacheConfig::External(BazelCache {
            fill_root: None,
            backend: CacheBackend::Disk,
            endpoint: BazelEndpoint::Disk(path.clone()),
            headers: Vec::new(),
            read_only: !fill,
        })),
        (None, BazelBackend::Embedded) => Ok(BazelCacheConfig::Embedded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Explain;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(flags: &[&str]) -> RunArgs {
        Cli::try_parse_from(std::iter::once("run").chain(flags.iter().copied()))
            .unwrap()
            .run
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::with_vars(vars, Path::new("/checkout"))
    }

    fn profile(text: &str) -> Profile {
        crate::plan::profile::parse(text, Path::new("bench.toml"), "p").unwrap()
    }

    #[test]
    fn defaults_without_flags_or_profile() {
        let config = RunConfig::resolve(
            &args(&[]),
            &Profile::default(),
            &env(&[("HOME", "/home/u")]),
        )
        .unwrap();
        assert_eq!(config.settings, Settings::default());
        assert_eq!(config.thresholds, Thresholds::default());
        assert_eq!(config.lanes, vec![Lane::Host]);
        assert_eq!(config.scenarios, Scenario::DEFAULT.to_vec());
        assert_eq!(config.systems, None);
        assert_eq!(config.nix_cache, NixCacheConfig::Embedded);
        assert_eq!(config.bazel_cache, BazelCacheConfig::Embedded);
        assert_eq!(config.repos.bench_repos, Path::new("/checkout/bench-repos"));
        assert_eq!(
            config.checkout_cache,
            Path::new("/home/u/.cache/flywheel-bench/checkouts")
        );
        assert_eq!(
            config.output,
            Path::new("/checkout/results/1970-01-01T00-00-00Z.json")
        );
        assert_eq!(config.vm, VmSettings::default());
    }

    #[test]
    fn flags_win_over_the_profile_which_wins_over_defaults() {
        let p = profile(
            "[profiles.p]\nsamples = 7\nwarmups = 2\nlanes = [\"vm\", \"host\"]\n[profiles.p.thresholds]\nmin_hit_ratio = 0.5\nmin_speedup = 2.0\n",
        );
        let config = RunConfig::resolve(
            &args(&["--samples", "3", "--min-speedup", "1.5", "--timeout", "60"]),
            &p,
            &env(&[]),
        )
        .unwrap();
        assert_eq!(config.settings.samples, 3, "the flag wins");
        assert_eq!(config.settings.warmups, 2, "the profile fills the gap");
        assert_eq!(config.settings.timeout, Duration::from_secs(60));
        assert_eq!(config.thresholds.min_speedup, 1.5);
        assert_eq!(config.thresholds.min_hit_ratio, 0.5);
        assert_eq!(
            config.thresholds.max_fallback_penalty,
            Thresholds::default().max_fallback_penalty
        );
        assert_eq!(config.lanes, vec![Lane::Host, Lane::Vm], "sorted");
        let config = RunConfig::resolve(&args(&["--lane", "gpu"]), &p, &env(&[])).unwrap();
        assert_eq!(
            config.lanes,
            vec![Lane::Gpu],
            "--lane replaces the profile's lanes"
        );
    }

    #[test]
    fn compression_repos_and_params_come_from_the_profile_under_the_flags() {
        use crate::plan::Compression;
        let p = profile(
            "[profiles.p]\ncompression = \"xz\"\nrepos = [\"fixture-c-dag\"]\n[profiles.p.params.fixture-c-dag]\nsize = 300\nflavour = \"big\"\n",
        );
        let config = RunConfig::resolve(&args(&[]), &p, &env(&[])).unwrap();
        assert_eq!(config.settings.compression, Compression::Xz);
        assert_eq!(config.repos.names, ["fixture-c-dag"]);
        assert_eq!(
            config.repos.profile_params["fixture-c-dag"],
            [
                ("flavour".to_string(), ParamValue::Str("big".into())),
                ("size".to_string(), ParamValue::Int(300)),
            ]
        );
        let config = RunConfig::resolve(
            &args(&["--compression", "none", "--repo", "fixture-cc"]),
            &p,
            &env(&[]),
        )
        .unwrap();
        assert_eq!(config.settings.compression, Compression::None);
        assert_eq!(config.repos.names, ["fixture-cc"], "--repo replaces them");
        let plain = RunConfig::resolve(&args(&[]), &Profile::default(), &env(&[])).unwrap();
        assert_eq!(
            plain.settings.compression,
            Compression::Zstd,
            "as Attic by default"
        );
        let bad = crate::plan::profile::parse(
            "[profiles.p.params.r]\nsize = 1.5\n",
            Path::new("bench.toml"),
            "p",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.contains("profiles.p.params.r.size") && bad.contains("not float"),
            "{bad}"
        );
    }

    #[test]
    fn cache_backends_are_typed_with_parsed_urls() {
        let p = profile(
            "[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"https://attic.example.com\"\ncache = \"main\"\npublic_key = \"main:K\"\ntoken_env = \"ATTIC_TOKEN\"\n[profiles.p.bazel]\nbackend = \"grpc\"\nurl = \"grpcs://cache.example.com\"\nheaders_env = \"HDRS\"\n",
        );
        let config = RunConfig::resolve(
            &args(&[]),
            &p,
            &env(&[
                ("ATTIC_TOKEN", " s3cr3t\n"),
                ("HDRS", "Authorization=Bearer x\n\n"),
            ]),
        )
        .unwrap();
        let NixCacheConfig::External(attic) = &config.nix_cache else {
            panic!("{:?}", config.nix_cache)
        };
        assert_eq!(
            attic.backend,
            CacheBackend::Attic,
            "the profile's kind is kept"
        );
        assert_eq!(attic.url.as_str(), "https://attic.example.com/main");
        assert_eq!(attic.token().unwrap(), "s3cr3t");
        assert_eq!(attic.login.as_ref().unwrap().user, ATTIC_LOGIN);
        assert_eq!(attic.fill, Fill::AtticApi);
        assert!(!format!("{config:?}").contains("s3cr3t"), "Debug redacts");
        let BazelCacheConfig::External(bazel) = &config.bazel_cache else {
            panic!("{:?}", config.bazel_cache)
        };
        assert_eq!(bazel.backend, CacheBackend::Grpc);
        let BazelEndpoint::Remote(url) = &bazel.endpoint else {
            panic!("{bazel:?}")
        };
        assert_eq!(url.port_or_known_default(), None);
        assert_eq!(bazel.headers, vec![Secret::new("Authorization=Bearer x")]);

        // The command line wins, and picks the kind by scheme.
        let config = RunConfig::resolve(
            &args(&[
                "--bazel-remote-cache",
                "http://127.0.0.1:9090",
                "--nix-cache",
                "file:///srv/cache",
                "--nix-cache-public-key",
                "k:1",
            ]),
            &p,
            &env(&[("ATTIC_TOKEN", "t")]),
        )
        .unwrap();
        let NixCacheConfig::External(nix) = &config.nix_cache else {
            panic!("{:?}", config.nix_cache)
        };
        assert_eq!(nix.backend, CacheBackend::File);
        let BazelCacheConfig::External(bazel) = &config.bazel_cache else {
            panic!("{:?}", config.bazel_cache)
        };
        assert_eq!(bazel.backend, CacheBackend::Http);
        // --no-fill: nothing is written to either.
        let config = RunConfig::resolve(
            &args(&["--no-fill"]),
            &p,
            &env(&[("ATTIC_TOKEN", "t"), ("HDRS", "")]),
        )
        .unwrap();
        let (NixCacheConfig::External(nix), BazelCacheConfig::External(bazel)) =
            (&config.nix_cache, &config.bazel_cache)
        else {
            panic!("{config:?}")
        };
        assert_eq!(nix.fill, Fill::ReadOnly);
        assert!(bazel.read_only);
    }

    #[test]
    fn a_store_backend_keeps_the_kind_its_profile_names() {
        let p = profile(
            "[profiles.p.nix]\nbackend = \"s3\"\nurl = \"s3://bucket?region=eu-west-1\"\npublic_key = \"k:1\"\nsecret_key_file = \"/run/k\"\n",
        );
        let config = RunConfig::resolve(&args(&[]), &p, &env(&[])).unwrap();
        assert_eq!(
            config.nix_cache,
            NixCacheConfig::External(NixCache {
                fill_root: None,
                backend: CacheBackend::S3,
                url: Url::parse("s3://bucket?region=eu-west-1").unwrap(),
                public_key: "k:1".into(),
                login: None,
                fill: Fill::NixCopy {
                    secret_key_file: Some("/run/k".into()),
                    compression: None,
                },
            })
        );
        let e = crate::plan::profile::parse(
            "[profiles.p.nix]\nbackend = \"http\"\nurl = \"s3://bucket\"\npublic_key = \"k:1\"\n",
            Path::new("bench.toml"),
            "p",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a URL of the http backend"), "{e}");
    }

    #[test]
    fn attic_tokens_are_trimmed_and_errors_never_contain_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cr3t-token\n").unwrap();
        assert_eq!(token_from_file(&file).unwrap(), Secret::new("s3cr3t-token"));
        std::fs::write(&file, " \n").unwrap();
        let err = token_from_file(&file).unwrap_err().to_string();
        assert!(err.contains("empty") && !err.contains("s3cr3t"), "{err}");
        let err = token_from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_file"), "{err}");
        let e = RunConfig::resolve(&args(&[]), &Profile::default(), &env(&[("T", " \n")]));
        assert!(e.is_ok(), "an unused variable is never read");
        let err = token_from_env("T", &env(&[("T", " \n")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("$T is empty"), "{err}");
    }

    #[test]
    fn tokens_that_no_header_can_carry_or_that_never_end_are_refused() {
        let err = token_from_env("T", &env(&[("T", "abc\ndef-s3cr3t")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line break") && err.contains("fix:") && !err.contains("s3cr3t"),
            "{err}"
        );
        let err = token_from_file(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero: is a character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "t".repeat(1 << 20)).unwrap();
        let err = token_from_file(&big).unwrap_err().to_string();
        assert!(err.contains("larger than 16 KiB"), "{err}");
    }

    #[test]
    fn no_fill_comes_from_the_flag_or_the_profile() {
        let resolve = |flags: &[&str], text: &str| {
            RunConfig::resolve(&args(flags), &profile(text), &env(&[]))
                .unwrap()
                .settings
                .fill
        };
        assert!(resolve(&[], "[profiles.p]\n"), "filling is the default");
        assert!(!resolve(&["--no-fill"], "[profiles.p]\n"));
        assert!(!resolve(&[], "[profiles.p]\nfill = false\n"));
        assert!(
            !resolve(&["--no-fill"], "[profiles.p]\nfill = true\n"),
            "the flag wins"
        );
    }

    #[test]
    fn explaining_is_on_unless_the_flag_says_otherwise() {
        let resolve = |flags: &[&str]| {
            RunConfig::resolve(&args(flags), &Profile::default(), &env(&[]))
                .unwrap()
                .settings
                .explain
        };
        assert_eq!(resolve(&[]), Explain::On);
        assert_eq!(resolve(&["--explain", "off"]), Explain::Off);
        assert_eq!(resolve(&["--explain", "interleave"]), Explain::Interleave);
    }

    #[test]
    fn proxies_are_read_once_with_the_configuration() {
        let config = RunConfig::resolve(
            &args(&[]),
            &Profile::default(),
            &env(&[("https_proxy", "http://proxy:3128")]),
        )
        .unwrap();
        let attic = Url::parse("https://attic.example.com/").unwrap();
        assert_eq!(
            config.proxies.for_url(&attic).map(Url::as_str),
            Some("http://proxy:3128/")
        );
        let err = RunConfig::resolve(
            &args(&[]),
            &Profile::default(),
            &env(&[("HTTPS_PROXY", "http://u:pw@")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("$HTTPS_PROXY") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn a_disk_backend_stays_a_folder() {
        let p = profile("[profiles.p.bazel]\nbackend = \"disk\"\npath = \"/srv/bazel\"\n");
        let config = RunConfig::resolve(&args(&[]), &p, &env(&[])).unwrap();
        assert_eq!(
            config.bazel_cache,
            BazelCacheConfig::External(BazelCache {
                fill_root: None,
                backend: CacheBackend::Disk,
                endpoint: BazelEndpoint::Disk("/srv/bazel".into()),
                headers: Vec::new(),
                read_only: false,
            })
        );
    }

    #[test]
    fn bad_cache_settings_name_their_source_and_the_fix() {
        let err = |flags: &[&str], vars: &[(&str, &str)]| {
            RunConfig::resolve(&args(flags), &Profile::default(), &env(vars))
                .unwrap_err()
                .to_string()
        };
        let e = err(&["--bazel-remote-cache", "ftp://x"], &[]);
        assert!(
            e.contains("--bazel-remote-cache") && e.contains("fix:"),
            "{e}"
        );
        let e = err(&["--bazel-remote-cache", "not a url"], &[]);
        assert!(e.contains("not a URL"), "{e}");
        let e = err(&["--nix-cache", "http://c"], &[]);
        assert!(e.contains("--nix-cache-public-key"), "{e}");
        let e = err(
            &["--nix-cache", "gopher://c", "--nix-cache-public-key", "k:1"],
            &[],
        );
        assert!(e.contains("s3://"), "{e}");
        let p = profile(
            "[profiles.p.nix]\nbackend = \"attic\"\nendpoint = \"https://a\"\ncache = \"c\"\npublic_key = \"k\"\ntoken_env = \"UNSET_TOKEN\"\n",
        );
        let e = RunConfig::resolve(&args(&[]), &p, &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("$UNSET_TOKEN"), "{e}");
        let e = err(&["--nix-cache-secret-key", "/run/key.sec"], &[]);
        assert!(
            e.contains("--nix-cache-secret-key")
                && e.contains("--nix-cache ")
                && e.contains("fix:"),
            "{e}"
        );
        assert!(e.starts_with("--nix-cache-secret-key"), "{e}");
    }

    #[test]
    fn bench_repos_come_from_the_flag_then_the_environment() {
        let config = RunConfig::resolve(
            &args(&[]),
            &Profile::default(),
            &env(&[(BENCH_REPOS_ENV, "/r")]),
        )
        .unwrap();
        assert_eq!(config.repos.bench_repos, Path::new("/r"));
        let config = RunConfig::resolve(
            &args(&["--bench-repos", "/flag"]),
            &Profile::default(),
            &env(&[(BENCH_REPOS_ENV, "/r")]),
        )
        .unwrap();
        assert_eq!(config.repos.bench_repos, Path::new("/flag"));
    }

    #[test]
    fn bench_repos_installed_beside_the_binary_serve_outside_a_checkout() {
        let shipped = Env {
            shipped_bench_repos: Some(
                "/nix/store/x-flywheel-bench/share/flywheel-bench/bench-repos".into(),
            ),
            ..env(&[])
        };
        assert_eq!(
            shipped.bench_repos(None),
            (
                PathBuf::from("/nix/store/x-flywheel-bench/share/flywheel-bench/bench-repos"),
                "installed beside the binary"
            )
        );
        // A checkout's own bench-repos/ wins, and the flag and variable win over both.
        let in_checkout = Env {
            local_bench_repos: true,
            ..shipped.clone()
        };
        assert_eq!(in_checkout.bench_repos(None).1, "./bench-repos");
        assert_eq!(
            in_checkout.bench_repos(Some(Path::new("/f"))).1,
            "--bench-repos"
        );
    }

    #[test]
    fn conflicting_sampling_flags_are_refused_with_the_fix() {
        let err = |flags: &[&str]| {
            RunConfig::resolve(&args(flags), &Profile::default(), &env(&[]))
                .unwrap_err()
                .to_string()
        };
        let e = err(&["--sweep", "size=2,4", "--param", "size=8"]);
        assert!(
            e.contains("--sweep size=... and --param size=...") && e.contains("fix:"),
            "{e}"
        );
        let e = err(&["--samples", "10", "--max-samples", "5"]);
        assert!(e.contains("--max-samples 5 is below --samples 10"), "{e}");
        let e = err(&["--samples", "40", "--target-precision", "0.05"]);
        assert!(e.contains("--max-samples 30 is below --samples 40"), "{e}");
        RunConfig::resolve(&args(&["--samples", "40"]), &Profile::default(), &env(&[])).unwrap();
        let e = err(&["--sweep", "compression=xz,zstd", "--compression", "none"]);
        assert!(e.contains("fix: drop --compression"), "{e}");
        let e = err(&[
            "--sweep",
            "compression=xz,zstd",
            "--nix-cache",
            "http://cache:8080/nix",
            "--nix-cache-public-key",
            "k:1",
        ]);
        assert!(
            e.contains("the Nix cache is http://cache:8080/nix")
                && e.contains("fix: sweep compression with the embedded cache"),
            "{e}"
        );
        // A profile's compression is what the sweep's points stand in for.
        let profile = Profile {
            compression: Some(crate::plan::Compression::Xz),
            ..Profile::default()
        };
        RunConfig::resolve(
            &args(&["--sweep", "compression=none,zstd"]),
            &profile,
            &env(&[]),
        )
        .unwrap();
    }

    #[test]
    fn credentials_in_cache_urls_leave_the_url_for_a_netrc_or_a_header() {
        let config = RunConfig::resolve(
            &args(&[
                "--nix-cache",
                "http://bot:pw%20x@127.0.0.1:8080/nix",
                "--nix-cache-public-key",
                "k:1",
            ]),
            &Profile::default(),
            &env(&[]),
        );
        let e = config.unwrap_err().to_string();
        assert!(e.contains("holds a space") && !e.contains("pw"), "{e}");
        let config = RunConfig::resolve(
            &args(&[
                "--nix-cache",
                "http://bot:s3cr%3At@127.0.0.1:8080/nix",
                "--nix-cache-public-key",
                "k:1",
                "--bazel-remote-cache",
                "https://u:p4ss@cache.example.com",
            ]),
            &Profile::default(),
            &env(&[(BAZEL_HEADERS_ENV, "X-A=1")]),
        )
        .unwrap();
        let NixCacheConfig::External(store) = &config.nix_cache else {
            panic!("{:?}", config.nix_cache)
        };
        assert_eq!(store.url.as_str(), "http://127.0.0.1:8080/nix");
        let login = store.login.as_ref().unwrap();
        assert_eq!(
            (login.user.as_str(), login.password.expose()),
            ("bot", "s3cr:t")
        );
        let BazelCacheConfig::External(BazelCache {
            endpoint: BazelEndpoint::Remote(url),
            headers,
            ..
        }) = &config.bazel_cache
        else {
            panic!("{:?}", config.bazel_cache)
        };
        assert_eq!(url.as_str(), "https://cache.example.com/");
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("u:p4ss");
        assert_eq!(
            headers,
            &vec![
                Secret::new("X-A=1"),
                Secret::new(format!("Authorization=Basic {basic}"))
            ]
        );
        assert!(!format!("{config:?}").contains("s3cr"), "Debug redacts");
        for (flags, secret) in [
            (
                &[
                    "--nix-cache",
                    "gopher://u:s3cr3t@c",
                    "--nix-cache-public-key",
                    "k:1",
                ][..],
                "s3cr3t",
            ),
            (
                &[
                    "--nix-cache",
                    "file://u:s3cr3t@/srv",
                    "--nix-cache-public-key",
                    "k:1",
                ][..],
                "s3cr3t",
            ),
            (&["--bazel-remote-cache", "ftp://u:s3cr3t@c"][..], "s3cr3t"),
            (
                &["--bazel-remote-cache", "http://u:s3cr3t@[::1"][..],
                "s3cr3t",
            ),
        ] {
            let e = RunConfig::resolve(&args(flags), &Profile::default(), &env(&[]))
                .unwrap_err()
                .to_string();
            assert!(!e.contains(secret) && e.contains("fix:"), "{e}");
        }
    }

    #[test]
    fn header_lines_that_are_not_headers_are_refused_without_their_value() {
        let e = RunConfig::resolve(
            &args(&["--bazel-remote-cache", "http://c:8080"]),
            &Profile::default(),
            &env(&[(BAZEL_HEADERS_ENV, "Authorization=Bearer ok\nBearer s3cr3t")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("$FLYWHEEL_BAZEL_REMOTE_HEADERS: header 2") && !e.contains("s3cr3t"),
            "{e}"
        );
    }
}
