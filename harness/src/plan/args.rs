//! What a user may ask of `run` on the command line, as clap parses it; numbers are checked
//! here, where they are parsed, so a bad value names its flag. `RunConfig::resolve` layers
//! these over the profile and the defaults.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::plan::{Lane, ParamValue, Scenario, System};

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Bench repo: a name from bench-repos/ or a path to a folder with a repo.toml
    /// (repeatable; default: every embedded bench repo, i.e. those with a local source).
    #[arg(long = "repo", value_name = "NAME|PATH")]
    pub repos: Vec<String>,
    /// Build system (repeatable; default: every system the repo has targets for).
    #[arg(long = "system", value_enum)]
    pub systems: Vec<System>,
    /// Scenario (repeatable; default: cold, warm and noop): cold, warm, noop, verify,
    /// fallback:FAULT or fallback:FAULT+tuned (FAULT: refuse, blackhole, http-500, slow,
    /// corrupt, poison; +tuned for blackhole and slow), `fallback` for every fault, `all`.
    #[arg(long = "scenario", value_name = "SCENARIO", value_parser = Scenario::parse_selection)]
    pub scenarios: Vec<Vec<Scenario>>,
    /// Timed samples per case, at least 1 (hyperfine's -r/--runs) [default: the
    /// profile's, else 5].
    #[arg(long, short = 'r', visible_alias = "runs", value_parser = parse_count)]
    pub samples: Option<usize>,
    /// Keep sampling a case until the 95% interval of its median (and of a warm case's
    /// speedup) is narrower than this fraction of it, e.g. 0.05; --samples is then the
    /// minimum and --max-samples the maximum.
    #[arg(long, value_name = "FRACTION", value_parser = parse_positive)]
    pub target_precision: Option<f64>,
    /// With --target-precision: never more samples than this per case [default: 30].
    #[arg(long, value_parser = parse_count)]
    pub max_samples: Option<usize>,
    /// What explains each build (Bazel's trace profile, Nix log timestamps, miss
    /// explanations, transfer floors): on, off, or interleave (samples alternate, and each
    /// case records what explaining cost) [default: on].
    #[arg(long, value_enum)]
    pub explain: Option<crate::plan::Explain>,
    /// How the embedded cache stores NARs: none, xz (`nix copy`'s default) or zstd (as
    /// Attic) [default: the profile's, else zstd].
    #[arg(long, value_enum)]
    pub compression: Option<crate::plan::Compression>,
    /// Warm cases read the team cache through the proxy in pass-through with this round
    /// trip and bandwidth, e.g. `rtt_ms=40,bandwidth=100mbit` (`rtt_ms=0`: unshaped, to
    /// measure the proxy itself) [default: the profile's `link`, else direct].
    #[arg(long, value_name = "rtt_ms=MS,bandwidth=BW", value_parser = crate::plan::Link::parse)]
    pub link: Option<crate::plan::Link>,
    /// How a repo's cold, warm and no-op samples are taken: interleaved (one of each per
    /// round, the speedup from paired ratios) or sequential (all cold, then all warm)
    /// [default: interleaved].
    #[arg(long, value_enum)]
    pub order: Option<crate::plan::SampleOrder>,
    /// What a failing verdict (cache use, speedup, fallback, verified) does to the exit
    /// code: fail (exit 5 once the run finished) or warn (printed, exit 0) [default: fail].
    #[arg(long, value_enum)]
    pub verdicts: Option<crate::plan::VerdictPolicy>,
    /// Untimed builds before the samples of each case (hyperfine's -w/--warmup)
    /// [default: the profile's, else 1].
    #[arg(long, short = 'w', visible_alias = "warmup")]
    pub warmups: Option<usize>,
    /// Profiles file [default: ./bench.toml when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The profile (cache backends, lanes, samples, thresholds) to run with.
    #[arg(long, default_value = crate::plan::profile::DEFAULT_PROFILE)]
    pub profile: String,
    /// Hard limit for one build, in seconds; the build's process group is killed past it
    /// [default: 1800].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<u64>,
    /// Timed samples per fallback case, at least 1 (each may take up to --fallback-timeout)
    /// [default: 1].
    #[arg(long, value_parser = parse_count)]
    pub fallback_samples: Option<usize>,
    /// Hard limit for one build through a faulty cache, in seconds; past it the build is
    /// killed and recorded as hung [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub fallback_timeout: Option<u64>,
    /// The `slow` fault's added latency per request, in milliseconds [default: 200].
    #[arg(long, value_name = "MS")]
    pub slow_latency_ms: Option<u64>,
    /// The `slow` fault's bandwidth cap, in bytes per second, at least 1 [default: 1048576].
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes_per_s)]
    pub slow_bytes_per_s: Option<u64>,
    /// The `poison` fault redirects Bazel outputs whose path ends with this [default: .txt].
    #[arg(long, value_name = "SUFFIX")]
    pub poison_suffix: Option<String>,
    /// Which verify mismatches fail the verified verdict: `cache` (only outputs the cache
    /// served wrong) or `strict` (non-reproducible steps too) [default: cache].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub verify: Option<crate::plan::VerifyPolicy>,
    /// Verify compares only outputs at most this many steps from the final ones (0: the
    /// final outputs alone) [default: the whole closure the build from the cache has].
    #[arg(long, value_name = "STEPS")]
    pub verify_depth: Option<usize>,
    /// Verdict cache_use passes at a warm hit ratio of at least this (0 to 1) [default: 0.9].
    #[arg(long, value_parser = parse_fraction)]
    pub min_hit_ratio: Option<f64>,
    /// Verdict speedup passes when its 95% interval lies above this [default: 1.0].
    #[arg(long, value_parser = parse_non_negative)]
    pub min_speedup: Option<f64>,
    /// Verdict fallback passes when every fault's build took at most this times the cold
    /// median [default: 3.0].
    #[arg(long, value_parser = parse_positive)]
    pub max_fallback_penalty: Option<f64>,
    /// Run the selected scenarios at each value of a repo parameter, e.g.
    /// `--sweep size=10,50,200`: results then fit how each scenario's median grows.
    #[arg(long, value_name = "KEY=V1,V2,...", value_parser = parse_sweep)]
    pub sweep: Option<(String, Vec<ParamValue>)>,
    /// Measure the caches as they are: warm cases read them, nothing is uploaded, so a
    /// pull-only token is enough, and warm and verify cases need no priming build
    /// [default: the profile's `fill`, else fill the caches first].
    #[arg(long)]
    pub no_fill: bool,
    /// Override a bench repo parameter, e.g. `--param size=50` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, ParamValue)>,
    /// Results file (default: results/<UTC timestamp>.json).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Folder of bench repos (default: $FLYWHEEL_BENCH_REPOS, else ./bench-repos, else the
    /// ones installed beside the binary).
    #[arg(long, value_name = "DIR")]
    pub bench_repos: Option<PathBuf>,
    /// An external Bazel remote cache for warm cases instead of the embedded one:
    /// http(s)://HOST:PORT or grpc(s)://HOST:PORT (bazel-remote serves both). Headers, such as
    /// credentials, come from $FLYWHEEL_BAZEL_REMOTE_HEADERS (`Name=Value` per line).
    #[arg(long, value_name = "URL")]
    pub bazel_remote_cache: Option<String>,
    /// Bazel `--override_repository NAME=PATH` for this machine (repeatable); Debian's
    /// rules_cc/rules_java under /usr/share/bazel/rules are used by default when present.
    #[arg(long = "bazel-override", value_name = "NAME=PATH", value_parser = parse_override)]
    pub bazel_overrides: Vec<(String, PathBuf)>,
    /// Lanes to run on (repeatable; default: the profile's, else host): host, vm (a QEMU VM
    /// this harness boots; KVM if a test VM proves it works, else TCG), gpu (needs an NVIDIA
    /// GPU; skipped with the reason otherwise).
    #[arg(long = "lane", value_enum)]
    pub lanes: Vec<Lane>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// An external Nix binary cache for warm cases instead of the embedded one.
    #[arg(long, value_name = "URL")]
    pub nix_cache: Option<String>,
    /// The public key (`name:base64`) that signed the cache's paths.
    #[arg(long, value_name = "KEY")]
    pub nix_cache_public_key: Option<String>,
    /// A secret key file to sign uploads with (without it uploads are unsigned).
    #[arg(long, value_name = "FILE")]
    pub nix_cache_secret_key: Option<PathBuf>,
    /// Where git-sourced bench repos are checked out, one folder per repository and commit,
    /// reused by later runs (default: ~/.cache/flywheel-bench/checkouts).
    #[arg(long, value_name = "DIR")]
    pub checkout_cache: Option<PathBuf>,
    /// Where temporary stores and logs live during the run (default: the system temp folder).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// A step the lane's job timed before the run, recorded in each lane's bootstrap, e.g.
    /// `--bootstrap-time "nix run .#bench=41.8"` (repeatable).
    #[arg(long = "bootstrap-time", value_name = "NAME=SECONDS", value_parser = parse_bootstrap_time)]
    pub bootstrap_times: Vec<(String, f64)>,
}

/// What a user may ask of `coverage`: which repos, which caches, where the report goes.
#[derive(Args, Debug, Clone, Default)]
pub struct CoverageArgs {
    /// Bench repo: a name from bench-repos/ or a path to a folder with a repo.toml
    /// (repeatable; default: every embedded bench repo).
    #[arg(long = "repo", value_name = "NAME|PATH")]
    pub repos: Vec<String>,
    /// Override a bench repo parameter, e.g. `--param size=50` (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, ParamValue)>,
    /// Folder of bench repos (default: $FLYWHEEL_BENCH_REPOS, else ./bench-repos, else the
    /// ones installed beside the binary).
    #[arg(long, value_name = "DIR")]
    pub bench_repos: Option<PathBuf>,
    /// Profiles file [default: ./bench.toml when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The profile whose caches are asked (an Attic token as for pulls).
    #[arg(long, default_value = crate::plan::profile::DEFAULT_PROFILE)]
    pub profile: String,
    /// A Nix binary cache to ask instead of the profile's.
    #[arg(long, value_name = "URL")]
    pub nix_cache: Option<String>,
    /// Its public key (`name:base64`), as `run` takes it.
    #[arg(long, value_name = "KEY")]
    pub nix_cache_public_key: Option<String>,
    /// A cache warm builds also substitute from, e.g. https://cache.nixos.org (repeatable):
    /// paths only it serves count as upstream, not as the team cache's misses.
    #[arg(long = "upstream", value_name = "URL")]
    pub upstream: Vec<String>,
    /// A Bazel execution log (`--execution_log_json_file`) of one repo's build: its actions'
    /// digests are looked up in the profile's Bazel cache (needs exactly one repo with Bazel
    /// targets).
    #[arg(long, value_name = "FILE")]
    pub bazel_exec_log: Option<PathBuf>,
    /// Requests in flight at once, at least 1; the default is Nix's own http-connections.
    #[arg(long, value_parser = parse_count, default_value_t = 25)]
    pub concurrency: usize,
    /// The coverage JSON (default: results/coverage-<UTC timestamp>.json).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Also write the Markdown here (it is always printed).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Where git-sourced bench repos are checked out (as `run`).
    #[arg(long, value_name = "DIR")]
    pub checkout_cache: Option<PathBuf>,
    /// Where the private stores live while the targets are instantiated.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Print the JSON Schema of coverage documents and exit.
    #[arg(long)]
    pub schema: bool,
}

impl CoverageArgs {
    /// The same choices as `run` flags, so repos, caches and the work folder resolve
    /// exactly as they do for a run.
    pub fn run_args(&self) -> RunArgs {
        RunArgs {
            repos: self.repos.clone(),
            params: self.params.clone(),
            bench_repos: self.bench_repos.clone(),
            config: self.config.clone(),
            profile: self.profile.clone(),
            nix_cache: self.nix_cache.clone(),
            nix_cache_public_key: self.nix_cache_public_key.clone(),
            checkout_cache: self.checkout_cache.clone(),
            work_dir: self.work_dir.clone(),
            ..RunArgs::default()
        }
    }
}

#[derive(Args, Clone, Debug, Default)]
pub struct VmArgs {
    /// Memory of the vm lane's machine, at least 256 [default: 3072].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(256..))]
    pub vm_memory_mb: Option<u32>,
    /// Virtual CPUs of the vm lane's machine, 1 to 64 [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub vm_cpus: Option<u32>,
    /// Hard limit for the whole vm lane, in seconds [default: 3600].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub vm_timeout: Option<u64>,
}

pub fn parse_param(text: &str) -> Result<(String, ParamValue), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE, e.g. size=50"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key, e.g. size=50"));
    }
    Ok((key.to_string(), ParamValue::parse(value)))
}

/// `size=10,50,200`: a parameter and at least two distinct values.
pub fn parse_sweep(text: &str) -> Result<(String, Vec<ParamValue>), String> {
    let (key, values) = parse_param(text)?;
    let values: Vec<ParamValue> = values
        .to_string()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(ParamValue::parse)
        .collect();
    let mut distinct = values.clone();
    distinct.dedup();
    if distinct.len() < 2 || distinct.len() != values.len() {
        return Err(format!(
            "`{text}` needs at least two distinct values, e.g. {key}=10,50,200"
        ));
    }
    Ok((key, values))
}

/// `NAME=SECONDS`: the name may hold `=`, the seconds follow the last one.
fn parse_bootstrap_time(text: &str) -> Result<(String, f64), String> {
    let example = "e.g. \"nix run .#bench=41.8\"";
    let (name, seconds) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=SECONDS, {example}"))?;
    if name.trim().is_empty() {
        return Err(format!("`{text}` has no name, {example}"));
    }
    let seconds = parse_non_negative(seconds.trim())
        .map_err(|e| format!("`{text}`: the seconds after the last `=`: {e}"))?;
    Ok((name.trim().to_string(), seconds))
}

fn parse_override(text: &str) -> Result<(String, PathBuf), String> {
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

/// A count of builds: a whole number of at least 1.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A time limit: whole seconds, more than 0 and at most a week.
pub fn parse_seconds(text: &str) -> Result<u64, String> {
    const WEEK: u64 = 7 * 24 * 3600;
    match text.parse::<u64>() {
        Ok(0) => Err("must be more than 0 seconds".into()),
        Ok(s) if s > WEEK => Err(format!("{s} s is more than a week ({WEEK} s)")),
        Ok(s) => Ok(s),
        Err(_) => Err(format!("`{text}` is not a whole number of seconds")),
    }
}

fn parse_bytes_per_s(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1 byte per second".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number of bytes")),
    }
}

fn parse_finite(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{text}` is not a finite number"))
}

/// A share: a number from 0 to 1.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    check_fraction(parse_finite(text)?)
}

/// A number of 0 or more (a threshold).
pub fn parse_non_negative(text: &str) -> Result<f64, String> {
    check_non_negative(parse_finite(text)?)
}

fn parse_positive(text: &str) -> Result<f64, String> {
    check_positive(parse_finite(text)?)
}

/// The range checks, shared with the profile's keys.
pub fn check_fraction(v: f64) -> Result<f64, String> {
    (v.is_finite() && (0.0..=1.0).contains(&v))
        .then_some(v)
        .ok_or_else(|| format!("{v} is not between 0 and 1"))
}

pub fn check_non_negative(v: f64) -> Result<f64, String> {
    (v.is_finite() && v >= 0.0)
        .then_some(v)
        .ok_or_else(|| format!("{v} is not a finite number of 0 or more"))
}

pub fn check_positive(v: f64) -> Result<f64, String> {
    (v.is_finite() && v > 0.0)
        .then_some(v)
        .ok_or_else(|| format!("{v} is not a finite number above 0"))
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
    fn bootstrap_times_are_name_and_seconds() {
        assert_eq!(
            parse_bootstrap_time("nix run .#bench=41.8").unwrap(),
            ("nix run .#bench".into(), 41.8)
        );
        assert_eq!(parse_bootstrap_time("a=b=2").unwrap(), ("a=b".into(), 2.0));
        assert!(parse_bootstrap_time("nix")
            .unwrap_err()
            .contains("NAME=SECONDS"));
        assert!(parse_bootstrap_time("=3").unwrap_err().contains("no name"));
        assert!(parse_bootstrap_time("x=-1")
            .unwrap_err()
            .contains("0 or more"));
        assert!(parse_bootstrap_time("x=soon").is_err());
    }

    #[test]
    fn sweeps_need_two_distinct_values() {
        assert_eq!(
            parse_sweep("size=2,4,8").unwrap(),
            (
                "size".into(),
                vec![ParamValue::Int(2), ParamValue::Int(4), ParamValue::Int(8)]
            )
        );
        assert!(parse_sweep("size=2").unwrap_err().contains("two distinct"));
        assert!(parse_sweep("size=2,2").is_err());
        assert!(parse_sweep("size").is_err());
    }

    #[test]
    fn numbers_are_checked_where_they_are_parsed() {
        assert_eq!(parse_count("3"), Ok(3));
        assert!(parse_count("0").unwrap_err().contains("at least 1"));
        assert!(parse_count("-1").is_err());
        assert!(parse_seconds("0").unwrap_err().contains("more than 0"));
        assert!(parse_seconds("99999999999").is_err());
        assert_eq!(parse_seconds("120"), Ok(120));
        assert!(parse_fraction("NaN").is_err());
        assert!(parse_fraction("1.5").is_err());
        assert_eq!(parse_fraction("0.9"), Ok(0.9));
        assert!(parse_non_negative("inf").is_err());
        assert!(parse_positive("0").is_err());
        assert!(parse_bytes_per_s("0").is_err());
    }
}
