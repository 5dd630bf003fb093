//! The command line: parse, run, print the error once, map it to a documented exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cache::EmbeddedCache;
use crate::error::{exit_code, Error, Result};
use crate::lanes::vm;
use crate::plan::profile::NixBackend;
use crate::plan::{manifest, Lane, ParamValue, Plan, Scenario, Settings, SlowSettings, System};
use crate::results::{self, LaneIdentity, Results, RunSettings, Thresholds, SCHEMA_VERSION};
use crate::run::process::{self, ProcessExecutor};
use crate::run::progress::Progress;
use crate::run::recorder::Recorder;
use crate::run::{Drivers, Scheduler};
use crate::scratch::ScratchDir;
use crate::tools::bazel::{BazelCache, BazelDriver};
use crate::tools::nix::{NixCache, NixDriver};
use crate::tools::{self, BuildDriver};

#[derive(Parser)]
#[command(
    name = "flywheel-bench",
    version,
    about = "Measures cold vs warm builds against build caches, with honest statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build bench repos cold, warm and no-op, several samples each, and write results JSON.
    Run(Box<RunArgs>),
    /// Show which tools were found, their versions and what can run here.
    Doctor,
    /// Print the JSON Schema of the results file.
    Schema,
    /// Markdown (stdout or --markdown) and self-contained HTML (--html) reports of results files.
    Report(ReportArgs),
    /// Compare two results files; exits 1 on a regression, 2 if they cannot be compared.
    Compare(CompareArgs),
    /// The results as "github-action-benchmark" input (customSmallerIsBetter).
    Export(ExportArgs),
    /// The runner-lane proof matrix (Markdown) from lanes.toml and results files.
    Matrix(MatrixArgs),
    /// Remove what runs that died left in the work folder (scratch folders, their processes
    /// such as Bazel servers, their cgroups), and say what was removed.
    Clean {
        /// The folder runs were given with --work-dir (default: the system temp folder).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ReportArgs {
    /// Results files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the Markdown here instead of standard output.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    baseline: PathBuf,
    new: PathBuf,
    /// Allowed slowdown: a regression needs the whole 95% interval of new/baseline above 1 + this.
    #[arg(long, default_value_t = crate::report::compare::DEFAULT_THRESHOLD)]
    threshold: f64,
    /// Also write the Markdown here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    file: PathBuf,
    /// Where to write the JSON (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct MatrixArgs {
    /// Results files that are the lanes' evidence.
    files: Vec<PathBuf>,
    /// Lane declarations.
    #[arg(long, value_name = "FILE", default_value = "lanes.toml")]
    lanes: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// Bench repo: a name from bench-repos/ or a path to a folder with a repo.toml
    /// (repeatable; default: every embedded bench repo, i.e. those with a local source).
    #[arg(long = "repo", value_name = "NAME|PATH")]
    repos: Vec<String>,
    /// Build system (repeatable; default: every system the repo has targets for).
    #[arg(long = "system", value_enum)]
    systems: Vec<System>,
    /// Scenario (repeatable; default: cold, warm and noop): cold, warm, noop, verify,
    /// fallback:FAULT or fallback:FAULT+tuned (FAULT: refuse, blackhole, http-500, slow,
    /// corrupt, poison; +tuned for blackhole and slow), `fallback` for every fault, `all`.
    #[arg(long = "scenario", value_name = "SCENARIO", value_parser = Scenario::parse_selection)]
    scenarios: Vec<Vec<Scenario>>,
    /// Timed samples per case [default: the profile's, else 5].
    #[arg(long)]
    samples: Option<usize>,
    /// Untimed builds before the samples of each case [default: the profile's, else 1].
    #[arg(long)]
    warmups: Option<usize>,
    /// Profiles file [default: ./bench.toml when present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The profile (cache backends, lanes, samples, thresholds) to run with.
    #[arg(long, default_value = crate::plan::profile::DEFAULT_PROFILE)]
    profile: String,
    /// Hard limit for one build, in seconds; the build's process group is killed past it.
    #[arg(long, value_name = "SECONDS", default_value_t = Settings::default().timeout.as_secs())]
    timeout: u64,
    /// Timed samples per fallback case (each may take up to --fallback-timeout).
    #[arg(long, default_value_t = Settings::default().fallback_samples)]
    fallback_samples: usize,
    /// Hard limit for one build through a faulty cache, in seconds; past it the build is
    /// killed and recorded as hung.
    #[arg(long, value_name = "SECONDS", default_value_t = Settings::default().fallback_timeout.as_secs())]
    fallback_timeout: u64,
    /// The `slow` fault's added latency per request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = Settings::default().slow.latency.as_millis() as u64)]
    slow_latency_ms: u64,
    /// The `slow` fault's bandwidth cap, in bytes per second.
    #[arg(long, value_name = "BYTES", default_value_t = Settings::default().slow.bytes_per_sec)]
    slow_bytes_per_s: u64,
    /// The `poison` fault redirects Bazel outputs whose path ends with this.
    #[arg(long, value_name = "SUFFIX", default_value_t = Settings::default().poison_suffix)]
    poison_suffix: String,
    /// Verdict cache_use passes at a warm hit ratio of at least this (0 to 1) [default: 0.9].
    #[arg(long)]
    min_hit_ratio: Option<f64>,
    /// Verdict speedup passes when its 95% interval lies above this [default: 1.0].
    #[arg(long)]
    min_speedup: Option<f64>,
    /// Verdict fallback passes when every fault's build took at most this times the cold
    /// median [default: 3.0].
    #[arg(long)]
    max_fallback_penalty: Option<f64>,
    /// Override a bench repo parameter, e.g. `--param size=50` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, ParamValue)>,
    /// Results file (default: results/<UTC timestamp>.json).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Folder of bench repos (default: ./bench-repos, or $FLYWHEEL_BENCH_REPOS).
    #[arg(long, env = "FLYWHEEL_BENCH_REPOS", value_name = "DIR")]
    bench_repos: Option<PathBuf>,
    /// An external Bazel remote cache for warm cases instead of the embedded one:
    /// http(s)://HOST:PORT or grpc(s)://HOST:PORT (bazel-remote serves both). Headers, such as
    /// credentials, come from $FLYWHEEL_BAZEL_REMOTE_HEADERS (`Name=Value` per line).
    #[arg(long, value_name = "URL")]
    bazel_remote_cache: Option<String>,
    /// Bazel `--override_repository NAME=PATH` for this machine (repeatable); Debian's
    /// rules_cc/rules_java under /usr/share/bazel/rules are used by default when present.
    #[arg(long = "bazel-override", value_name = "NAME=PATH", value_parser = parse_override)]
    bazel_overrides: Vec<(String, PathBuf)>,
    /// Lanes to run on (repeatable; default: host): host, vm (a QEMU VM this harness boots;
    /// KVM if a test VM proves it works, else TCG), gpu (needs an NVIDIA GPU; skipped with
    /// the reason otherwise).
    #[arg(long = "lane", value_enum)]
    lanes: Vec<Lane>,
    #[command(flatten)]
    vm: VmArgs,
    /// Inside the vm lane's guest: the lane its cases belong to (set by the harness).
    #[arg(long, value_enum, hide = true)]
    as_lane: Option<Lane>,
    /// Inside the vm lane's guest: the acceleration the host proved (set by the harness).
    #[arg(long, hide = true)]
    lane_accel: Option<String>,
    #[arg(long, hide = true)]
    lane_accel_note: Option<String>,
    /// An external Nix binary cache for warm cases instead of the embedded one.
    #[arg(long, value_name = "URL")]
    nix_cache: Option<String>,
    /// The public key (`name:base64`) that signed the cache's paths.
    #[arg(long, value_name = "KEY")]
    nix_cache_public_key: Option<String>,
    /// A secret key file to sign uploads with (without it uploads are unsigned).
    #[arg(long, value_name = "FILE")]
    nix_cache_secret_key: Option<PathBuf>,
    /// Where git-sourced bench repos are checked out, one folder per repository and commit,
    /// reused by later runs (default: ~/.cache/flywheel-bench/checkouts).
    #[arg(long, value_name = "DIR")]
    checkout_cache: Option<PathBuf>,
    /// Where temporary stores and logs live during the run (default: the system temp folder).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct VmArgs {
    /// Memory of the vm lane's machine.
    #[arg(long, value_name = "MIB", default_value_t = 3072)]
    pub vm_memory_mb: u32,
    /// Virtual CPUs of the vm lane's machine.
    #[arg(long, default_value_t = 2)]
    pub vm_cpus: u32,
    /// Hard limit for the whole vm lane, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub vm_timeout: u64,
}

fn parse_param(text: &str) -> std::result::Result<(String, ParamValue), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE, e.g. size=50"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key, e.g. size=50"));
    }
    Ok((key.to_string(), ParamValue::parse(value)))
}

fn parse_override(text: &str) -> std::result::Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && Path::new(path).is_dir() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        Some((_, path)) if !path.is_empty() => Err(format!("{path} is not a folder")),
        _ => Err(format!(
            "`{text}` is not NAME=PATH, e.g. rules_cc=/opt/rules_cc"
        )),
    }
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Doctor => doctor(),
        Command::Schema => {
            print!("{}", results::json_schema());
            Ok(exit_code::OK)
        }
        Command::Report(args) => report(&args),
        Command::Compare(args) => compare(&args),
        Command::Export(args) => export(&args),
        Command::Matrix(args) => matrix(&args),
        Command::Clean { work_dir } => {
            crate::run::janitor::clean(&work_dir.unwrap_or_else(std::env::temp_dir))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        e.exit_code()
    })
}

fn bench_repos_dir(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let local = PathBuf::from("bench-repos");
        local.is_dir().then_some(local)
    })
}

fn select_repos(args: &RunArgs) -> Result<Vec<manifest::RepoManifest>> {
    let dir = bench_repos_dir(args.bench_repos.clone());
    let mut repos = if args.repos.is_empty() {
        let dir = dir.ok_or_else(|| {
            Error::Usage(
                "no bench-repos folder here\n  fix: run from the flywheel-bench checkout, pass --bench-repos DIR, or --repo PATH".into(),
            )
        })?;
        // The default bench is the embedded fixtures (offline, quick); git-sourced repos such
        // as the tranche-1 ones run when named with --repo.
        manifest::discover(&dir)?
            .into_iter()
            .filter(|r| matches!(r.source, manifest::Source::Path(_)))
            .collect()
    } else {
        args.repos
            .iter()
            .map(|r| manifest::resolve(r, dir.as_deref()))
            .collect::<Result<Vec<_>>>()?
    };
    manifest::apply_overrides(&mut repos, &args.params)?;
    Ok(repos)
}

fn run(args: RunArgs) -> Result<i32> {
    let config = args.config.clone().or_else(|| {
        let local = PathBuf::from(crate::plan::profile::CONFIG_FILE);
        local.is_file().then_some(local)
    });
    let profile = crate::plan::profile::load(config.as_deref(), &args.profile)?;
    let defaults = Settings::default();
    let settings = Settings {
        samples: args.samples.or(profile.samples).unwrap_or(defaults.samples),
        warmups: args.warmups.or(profile.warmups).unwrap_or(defaults.warmups),
        timeout: Duration::from_secs(args.timeout),
        fallback_samples: args.fallback_samples,
        fallback_timeout: Duration::from_secs(args.fallback_timeout),
        slow: SlowSettings {
            latency: Duration::from_millis(args.slow_latency_ms),
            bytes_per_sec: args.slow_bytes_per_s,
        },
        poison_suffix: args.poison_suffix.clone(),
    };
    let default_thresholds = Thresholds::default();
    let thresholds = Thresholds {
        min_hit_ratio: args
            .min_hit_ratio
            .or(profile.min_hit_ratio)
            .unwrap_or(default_thresholds.min_hit_ratio),
        min_speedup: args
            .min_speedup
            .or(profile.min_speedup)
            .unwrap_or(default_thresholds.min_speedup),
        max_fallback_penalty: args
            .max_fallback_penalty
            .or(profile.max_fallback_penalty)
            .unwrap_or(default_thresholds.max_fallback_penalty),
    };
    let scenarios: Vec<Scenario> = if args.scenarios.is_empty() {
        Scenario::DEFAULT.to_vec()
    } else {
        args.scenarios.concat()
    };
    let systems = (!args.systems.is_empty()).then_some(args.systems.as_slice());
    // Inside a VM the harness runs that lane's cases itself.
    let mut lanes: Vec<Lane> = match (args.as_lane, &profile.lanes) {
        (Some(lane), _) => vec![lane],
        (None, _) if !args.lanes.is_empty() => args.lanes.clone(),
        (None, Some(lanes)) => lanes.clone(),
        (None, None) => vec![Lane::Host],
    };
    lanes.sort();
    lanes.dedup();
    let repos = select_repos(&args)?;
    let mut plans: Vec<Plan> = lanes
        .iter()
        .map(|&lane| Plan::build(repos.clone(), systems, &scenarios, lane, settings.clone()))
        .collect::<Result<_>>()?;
    process::install_interrupt_handler()?;
    let exec = ProcessExecutor;
    let checkouts = crate::run::sources::checkout_cache(args.checkout_cache.clone());
    crate::run::sources::fetch_sources(&mut plans, &exec, &checkouts)?;
    let uses = |system| plans.iter().any(|p| p.uses(system));
    let needs_cache = |system| plans.iter().any(|p| p.needs_cache(system));

    // Preflight: every tool and setting the plan needs, before anything is built.
    let require_for = |system: System, tool: &'static str| {
        uses(system)
            .then(|| tools::require(tool, &format!("for {} cases", system.name())))
            .transpose()
    };
    let nix = require_for(System::Nix, "nix")?;
    let bazel = require_for(System::Bazel, "bazel")?;
    let external_nix_cache = match (&args.nix_cache, &args.nix_cache_public_key) {
        (Some(url), Some(key)) => Some(NixCache::external(url, key, args.nix_cache_secret_key.clone())),
        (None, None) => None::<NixCache>,
        _ => {
            return Err(Error::Usage(
                "--nix-cache needs --nix-cache-public-key (and the other way round)\n  fix: pass both, e.g. --nix-cache http://cache/nix --nix-cache-public-key name:base64".into(),
            ))
        }
    };
    let external_bazel_cache =
        BazelCache::chosen(args.bazel_remote_cache.as_deref(), &profile.bazel)?;
    let nix_embedded = external_nix_cache.is_none() && matches!(profile.nix, NixBackend::Embedded);
    let nginx = ((needs_cache(System::Nix) && nix_embedded)
        || (needs_cache(System::Bazel) && external_bazel_cache.is_none()))
    .then(|| tools::require("nginx", "for the embedded cache of warm cases"))
    .transpose()?;
    let qemu = (lanes.contains(&Lane::Vm) && args.as_lane.is_none())
        .then(|| tools::require("qemu-system-x86_64", "for the vm lane"))
        .transpose()?;

    // Declared in this order so they drop in reverse: drivers (and their build servers),
    // then the cache server, then the scratch folder that holds them all.
    let work_parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    crate::run::janitor::sweep(&work_parent)
        .iter()
        .for_each(|s| eprintln!("flywheel-bench: {s}"));
    let scratch = ScratchDir::new_in(&work_parent, "flywheel-bench-").map_err(|e| {
        Error::io(
            format!("creating a work folder in {}", work_parent.display()),
            e,
        )
    })?;
    let embedded = match &nginx {
        Some(nginx) => Some(EmbeddedCache::start(nginx, &scratch.path().join("cache"))?),
        None => None,
    };
    let nix_cache = match (external_nix_cache, &profile.nix, &embedded, &nix) {
        (Some(external), _, _, _) => Some(external),
        (
            None,
            NixBackend::Attic {
                endpoint,
                cache,
                public_key,
                token,
            },
            _,
            _,
        ) if needs_cache(System::Nix) => {
            let config = crate::cache::attic::AtticConfig {
                endpoint,
                cache,
                public_key,
                token,
            };
            Some(crate::cache::attic::connect(
                config,
                &scratch.path().join("attic"),
                &exec,
            )?)
        }
        (
            None,
            NixBackend::Store {
                backend,
                url,
                public_key,
                secret_key_file,
            },
            _,
            _,
        ) => {
            let mut cache = NixCache::external(url, public_key, secret_key_file.clone());
            cache.backend = backend.to_string();
            Some(cache)
        }
        (None, _, Some(cache), Some(nix)) if needs_cache(System::Nix) => {
            Some(cache.nix_cache(nix, &exec)?)
        }
        _ => None,
    };
    let bazel_cache = external_bazel_cache.or_else(|| {
        embedded
            .as_ref()
            .filter(|_| needs_cache(System::Bazel))
            .map(EmbeddedCache::bazel_cache)
    });
    let mut nix_driver = nix
        .map(|nix| NixDriver::new(nix, &scratch.path().join("nix"), nix_cache.as_ref()))
        .transpose()?;
    let mut bazel_driver = bazel
        .map(|bazel| {
            BazelDriver::new(
                bazel,
                &scratch.path().join("bazel"),
                bazel_cache.as_ref(),
                &args.bazel_overrides,
            )
        })
        .transpose()?;

    let output = args.output.clone().unwrap_or_else(default_output);
    let mut results = new_results(&settings, thresholds, &exec);
    results.profile = profile.name.clone();
    let mut recorder = Recorder::new(output, results);
    let environment = recorder.results().environment.clone();
    eprintln!(
        "flywheel-bench: {} cases, {} timed builds; results go to {}",
        plans.iter().map(|p| p.cases.len()).sum::<usize>(),
        plans.iter().map(Plan::total_builds).sum::<usize>(),
        recorder.path().display()
    );
    let builds_dir = scratch.path().join("builds");
    for plan in &plans {
        let lane = plan.cases.first().map_or(Lane::Host, |c| c.lane);
        let mut identity = LaneIdentity::of(lane, &environment);
        let mut skip_reason = None;
        let gpu_shell;
        let mut lane_exec: &dyn process::Executor = &exec;
        match (lane, args.as_lane) {
            (Lane::Vm, None) => {
                let qemu = qemu.as_deref().expect("required for the vm lane");
                let caches = vm::GuestCaches {
                    nix: nix_cache.as_ref(),
                    bazel: bazel_cache.as_ref(),
                };
                let settings = vm::VmSettings {
                    memory_mb: args.vm.vm_memory_mb,
                    cpus: args.vm.vm_cpus,
                    timeout: Duration::from_secs(args.vm.vm_timeout),
                };
                let cases = vm::run_lane(
                    &exec,
                    qemu,
                    plan,
                    &vm::guest_args(),
                    caches,
                    &scratch.path().join("vm"),
                    settings,
                )?;
                recorder.add_lane(cases.identity)?;
                recorder.add_cases(cases.cases)?;
                continue;
            }
            (_, Some(_)) => {
                identity.virtualization = Some("qemu".into());
                identity.acceleration = args.lane_accel.clone();
                identity.acceleration_note = args.lane_accel_note.clone();
            }
            (Lane::Gpu, None) => match crate::lanes::gpu::preflight(&exec) {
                Err(reason) => skip_reason = Some(reason),
                Ok(gpu) => {
                    identity.gpu = Some(gpu);
                    if let Some(prefix) = crate::lanes::gpu::dev_shell_prefix(
                        &std::env::current_dir().unwrap_or_default(),
                    ) {
                        identity.shell = Some("nix develop .#gpu".into());
                        gpu_shell = process::InShell {
                            inner: &exec,
                            prefix,
                        };
                        lane_exec = &gpu_shell;
                    }
                }
            },
            (Lane::Host, None) => {}
        }
        recorder.add_lane(identity)?;
        let mut drivers = Drivers::new();
        if let Some(d) = nix_driver.as_mut() {
            drivers.insert(System::Nix, d as &mut dyn BuildDriver);
        }
        if let Some(d) = bazel_driver.as_mut() {
            drivers.insert(System::Bazel, d as &mut dyn BuildDriver);
        }
        let mut scheduler = Scheduler {
            plan,
            exec: lane_exec,
            drivers,
            work_dir: &builds_dir,
            skip_reason,
        };
        let mut progress = Progress::new();
        let outcome = scheduler.run(&mut [&mut progress, &mut recorder]);
        drop(progress);
        if let Err(e) = outcome {
            eprintln!("partial results: {}", recorder.path().display());
            return Err(e);
        }
    }
    recorder.finish()?;
    print!("{}", crate::report::summary::render(recorder.results()));
    println!("results: {}", recorder.path().display());
    let failed = recorder
        .results()
        .cases
        .iter()
        .any(|c| c.outcome == results::Outcome::Failed);
    Ok(if failed {
        exit_code::CASE_FAILED
    } else {
        exit_code::OK
    })
}

fn new_results(settings: &Settings, thresholds: Thresholds, exec: &ProcessExecutor) -> Results {
    Results {
        schema_version: SCHEMA_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: results::now_rfc3339(),
        finished_at: None,
        command: std::env::args().collect(),
        profile: crate::plan::profile::DEFAULT_PROFILE.into(),
        git: std::env::current_dir()
            .ok()
            .and_then(|dir| crate::tools::git::describe(exec, &dir)),
        settings: RunSettings {
            samples: settings.samples,
            warmups: settings.warmups,
            timeout_s: settings.timeout.as_secs_f64(),
            fallback_timeout_s: settings.fallback_timeout.as_secs_f64(),
            slow_latency_ms: settings.slow.latency.as_millis() as u64,
            slow_bytes_per_s: settings.slow.bytes_per_sec,
            thresholds,
        },
        environment: crate::lanes::host::identity(exec),
        lanes: Vec::new(),
        cases: Vec::new(),
        comparisons: Vec::new(),
        fallbacks: Vec::new(),
        verdicts: Vec::new(),
    }
}

fn load_all(files: &[PathBuf]) -> Result<Vec<(String, Results)>> {
    files
        .iter()
        .map(|f| Ok((f.display().to_string(), results::load(f)?)))
        .collect()
}

/// Writes a report file atomically, or prints it.
fn emit_text(text: &str, to: Option<&Path>) -> Result<()> {
    match to {
        Some(path) => results::writer::write_atomic(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn report(args: &ReportArgs) -> Result<i32> {
    let files = load_all(&args.files)?;
    emit_text(
        &crate::report::markdown::render(&files),
        args.markdown.as_deref(),
    )?;
    if let Some(html) = &args.html {
        results::writer::write_atomic(html, crate::report::html::render(&files).as_bytes())?;
    }
    Ok(exit_code::OK)
}

fn compare(args: &CompareArgs) -> Result<i32> {
    let baseline = results::load(&args.baseline)?;
    let new = results::load(&args.new)?;
    let comparison =
        crate::report::compare::compare(&baseline, &new, args.threshold).map_err(|why| {
            Error::Usage(format!(
                "cannot compare {} with {}: {why}",
                args.baseline.display(),
                args.new.display()
            ))
        })?;
    let text = crate::report::compare::render_markdown(&comparison);
    print!("{text}");
    if let Some(path) = &args.markdown {
        results::writer::write_atomic(path, text.as_bytes())?;
    }
    Ok(if comparison.regressed() {
        exit_code::CASE_FAILED
    } else {
        exit_code::OK
    })
}

fn export(args: &ExportArgs) -> Result<i32> {
    let results = results::load(&args.file)?;
    let entries = crate::report::export::github_action_benchmark(&results);
    let json = serde_json::to_string_pretty(&entries).expect("entries serialise") + "\n";
    emit_text(&json, args.output.as_deref())?;
    Ok(exit_code::OK)
}

fn matrix(args: &MatrixArgs) -> Result<i32> {
    let lanes = crate::report::matrix::load_lanes(&args.lanes)?;
    let files = load_all(&args.files)?;
    print!(
        "{}",
        crate::report::matrix::render_markdown(&crate::report::matrix::judge(&lanes, &files))
    );
    Ok(exit_code::OK)
}

fn default_output() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y-%m-%dT%H-%M-%SZ");
    Path::new("results").join(format!("{stamp}.json"))
}

/// What the harness needs for which part of a run.
const NEEDS: &[(&str, &[&str])] = &[
    ("nix cold and noop cases", &["nix"]),
    ("nix warm cases (embedded cache)", &["nix", "nginx"]),
    ("bazel cold and noop cases", &["bazel"]),
    ("bazel warm cases (embedded cache)", &["bazel", "nginx"]),
    ("the embedded fixture repos", &["gcc"]),
];

fn doctor() -> Result<i32> {
    let tools = tools::probe_all(&ProcessExecutor);
    println!("tools:");
    for (name, _) in tools::KNOWN_TOOLS {
        match tools.get(*name) {
            Some(t) => println!("  {name:<8} {:<28} {}", t.path, t.version),
            None => println!("  {name:<8} not found: {}", tools::install_hint(name)),
        }
    }
    println!("can run:");
    let mut all = true;
    for (what, needed) in NEEDS {
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|t| !tools.contains_key(*t))
            .collect();
        if missing.is_empty() {
            println!("  yes  {what}");
        } else {
            all = false;
            println!("  no   {what} (missing: {})", missing.join(", "));
        }
    }
    Ok(if all {
        exit_code::OK
    } else {
        exit_code::ENVIRONMENT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_key_value() {
        assert_eq!(
            parse_param("size=5").unwrap(),
            ("size".into(), ParamValue::Int(5))
        );
        assert_eq!(
            parse_param("mode=fast").unwrap().1,
            ParamValue::Str("fast".into())
        );
        assert!(parse_param("size").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_param("=5").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
