//! The results document: versioned, serialisable types that reviewers and `compare` read,
//! with the words they are written in (systems, lanes, scenarios, parameters), which the
//! layers above share. Imports nothing above `stats`.
//! New fields are additive with defaults; `schema_version` changes only on breaking changes.
//! `results/results.schema.json` is generated from these types (`flywheel-bench schema`).

pub mod coverage;
pub(crate) mod derive;
pub mod explain;
pub(crate) mod growth;
pub(crate) mod lifecycle;
pub(crate) mod machine;
pub(crate) mod scenario;
pub(crate) mod writer;

pub use derive::derive;
pub use scenario::{Fault, Scenario};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{RatioInterval, Summary};

pub const SCHEMA_VERSION: u32 = 1;
/// The profile of a run that chose none: the embedded cache (also what files without a
/// `profile` field ran with).
pub const DEFAULT_PROFILE: &str = "embedded";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Results {
    pub schema_version: u32,
    pub harness_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Set when the run ends; absent in a file written mid-run or after an interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The harness's command line.
    pub command: Vec<String>,
    /// The profile the run used (`embedded` unless `--profile` chose another).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// The checkout the harness ran from (absent outside a git checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitInfo>,
    pub settings: RunSettings,
    pub environment: Environment,
    /// Who each lane of the run was: every case's `lane` names one of these.
    #[serde(default)]
    pub lanes: Vec<LaneIdentity>,
    pub cases: Vec<CaseResult>,
    pub comparisons: Vec<Comparison>,
    /// One row per fallback case: what a bad cache cost and whether it was noticed.
    #[serde(default)]
    pub fallbacks: Vec<derive::FallbackRow>,
    /// One row per `fill` case with its cold case: what filling an empty team cache costs
    /// the job that fills it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<derive::FillPenalty>,
    /// Pass/fail per repo, system and lane, with the thresholds used.
    #[serde(default)]
    pub verdicts: Vec<derive::Verdicts>,
    /// How each scenario's median grows with a swept parameter (`--sweep`), with fits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub growth: Vec<growth::Growth>,
    /// The link to the cache as measured once at the start of the run (the embedded cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_link: Option<explain::CacheLink>,
    /// What the harness's clock reads for a command that does nearly nothing, measured once
    /// per run: no sample can be shorter, and where it is more than 1% of a median the
    /// reports say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_floor: Option<ClockFloor>,
    /// A short fixed CPU-and-memory workload timed on the host before the first case and
    /// after the last: its speed index, and how it drifted during the run. `compare`
    /// gates absolute times only when two runs' probes agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_probe: Option<machine::SpeedProbe>,
    /// What a reviewer should know about how the run measured (e.g. no cgroup for CPU
    /// accounting, and why), and what loading the file changed (statistics that disagreed
    /// with their samples, recomputed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the janitor removed when the run started and what was left at its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<lifecycle::Cleanup>,
}

/// `true` timed by the run's executor as its builds are (exec to reap): the timed span's
/// own cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClockFloor {
    /// The trivial command, e.g. `/usr/bin/true`.
    pub command: String,
    /// The median of its wall times.
    pub median_s: f64,
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunSettings {
    pub samples: usize,
    pub warmups: usize,
    pub timeout_s: f64,
    /// Hard limit for one build through a faulty cache; past it the build counts as hung.
    #[serde(default)]
    pub fallback_timeout_s: f64,
    /// The `slow` fault: added latency per request and bandwidth cap.
    #[serde(default)]
    pub slow_latency_ms: u64,
    #[serde(default)]
    pub slow_bytes_per_s: u64,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Whether warm cases filled the caches first; `false` (`--no-fill`): they measured
    /// the caches as they were, and the run wrote nothing to them.
    #[serde(default = "filled")]
    pub fill: bool,
    /// `--target-precision`: samples went on until the median's interval was this narrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_precision: Option<f64>,
    /// The most samples a case could take (with `target_precision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<usize>,
    /// `--explain`: whether builds were explained (`interleave`: every other sample).
    #[serde(default)]
    pub explain: Explain,
    /// How the embedded cache stored NARs (absent in results from before it was chosen,
    /// which stored xz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// `--order`: how a repo's cold, warm and no-op samples were taken; absent in files
    /// from before it was recorded, which were sequential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SampleOrder>,
    /// `--verify`: which verify mismatches fail the verified verdict.
    #[serde(default)]
    pub verify: VerifyPolicy,
    /// `--verify-depth`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_depth: Option<usize>,
}

/// In what order a repo's cold, warm and no-op samples are taken (`--order`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SampleOrder {
    /// One sample of each case per round, the direction reversed every other round
    /// (ABC CBA ...): a load that drifts during the run hits every case alike, and sample
    /// i of each case is in round i, which pairs them.
    #[default]
    Interleaved,
    /// Every sample of a case, then the next case's (all cold, then all warm).
    Sequential,
}

impl SampleOrder {
    pub fn name(self) -> &'static str {
        match self {
            SampleOrder::Interleaved => "interleaved",
            SampleOrder::Sequential => "sequential",
        }
    }
}

/// Which mismatches fail the `verified` verdict. A wrong output from the cache always does.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum VerifyPolicy {
    /// Only outputs the cache served wrong: a non-reproducible step is reported, named
    /// with its consumers, and passes (the cache served what a build produced).
    #[default]
    Cache,
    /// Non-reproducible steps fail too: for repos that promise bit-for-bit rebuilds.
    Strict,
}

/// How the NARs a run writes to a `nix copy` cache (the embedded one) are compressed
/// (`--compression`): Attic stores zstd, `nix copy`'s own default is xz.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Xz,
    /// As Attic serves them.
    #[default]
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 3] = [Compression::None, Compression::Xz, Compression::Zstd];
    /// Its name as a repo parameter: `--sweep compression=none,xz,zstd`.
    pub const PARAMETER: &'static str = "compression";

    /// `none`, `xz` or `zstd`.
    pub fn parse(text: &str) -> std::result::Result<Compression, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| {
                format!("`{text}` is not a compression the embedded cache offers (none, xz, zstd)")
            })
    }

    /// The value of a binary cache URL's `compression` setting.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// Whether builds run with what explains them: Bazel's JSON trace profile, the arrival
/// times of Nix's log lines, miss explanations and transfer floors (`--explain`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Explain {
    #[default]
    On,
    Off,
    /// Samples alternate on and off, so that what explaining costs is measured: each
    /// case's `explain_overhead`.
    Interleave,
}

impl Explain {
    /// Whether a build is explained: `sample` is its index among the timed samples,
    /// `None` for warm-ups and the builds around the samples.
    pub fn instruments(self, sample: Option<usize>) -> bool {
        match self {
            Explain::On => true,
            Explain::Off => false,
            Explain::Interleave => sample.is_none_or(|n| n % 2 == 0),
        }
    }
}

fn filled() -> bool {
    true
}

fn default_profile() -> String {
    DEFAULT_PROFILE.into()
}

/// What the verdicts require (`--min-hit-ratio`, `--min-speedup`, `--max-fallback-penalty`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Thresholds {
    /// cache_use passes when the warm hit ratio is at least this.
    pub min_hit_ratio: f64,
    /// speedup passes when the lower end of its 95% interval is above this.
    pub min_speedup: f64,
    /// fallback passes when every fault's build succeeded (directly or by the harness's
    /// retry without the cache) in at most this many times the cold median.
    pub max_fallback_penalty: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_hit_ratio: 0.9,
            min_speedup: 1.0,
            max_fallback_penalty: 3.0,
        }
    }
}

/// Who ran the bench: the machine (lane identity) and the tools it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Environment {
    pub hostname: String,
    pub kernel: String,
    pub os: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_bytes: u64,
    /// By tool name; tools that were not found are absent.
    pub tools: BTreeMap<String, ToolVersion>,
    /// The CPU beyond its brand string; absent in files from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<machine::CpuFingerprint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitInfo {
    pub commit: String,
    /// e.g. `refs/heads/main`; absent for a detached checkout outside CI.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// Tracked files had uncommitted changes.
    pub dirty: bool,
}

impl GitInfo {
    /// `0123abc (refs/heads/main, dirty)`.
    pub fn describe(&self) -> String {
        let short = &self.commit[..self.commit.len().min(12)];
        let place = self.git_ref.as_deref().unwrap_or("detached");
        format!(
            "{short} ({place}{})",
            if self.dirty { ", dirty" } else { "" }
        )
    }

    /// On the authoritative branch.
    pub fn is_main(&self) -> bool {
        matches!(self.git_ref.as_deref(), Some("refs/heads/main" | "main"))
    }
}

/// What a lane is: the machine its builds saw, how it was virtualised and accelerated,
/// its GPU and its tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LaneIdentity {
    pub lane: Lane,
    pub kernel: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub os: String,
    /// e.g. `qemu`; absent on bare metal or when the harness did not start the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualization: Option<String>,
    /// `kvm` or `tcg` for the vm lane; TCG timings are correctness evidence, not KVM figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration: Option<String>,
    /// Why that acceleration (e.g. the KVM probe's result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceleration_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuInfo>,
    /// The shell the cases ran in: e.g. `nix develop /src#gpu`, or `ambient` (the harness's
    /// own environment) where the lane chooses one; absent where the lane has no choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Why that shell (e.g. why not the flake's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_reason: Option<String>,
    /// Seconds that entering the shell costs each command run in it (builds and checks
    /// included), measured once before the cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_startup_s: Option<f64>,
    pub tools: BTreeMap<String, ToolVersion>,
    /// How long getting the lane ready took: the job's own steps and the harness's
    /// start-up checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<lifecycle::Bootstrap>,
}

impl LaneIdentity {
    pub fn of(lane: Lane, env: &Environment) -> LaneIdentity {
        LaneIdentity {
            lane,
            kernel: env.kernel.clone(),
            cpu_model: env.cpu_model.clone(),
            cores: env.cores,
            memory_bytes: env.memory_bytes,
            os: env.os.clone(),
            virtualization: None,
            acceleration: None,
            acceleration_note: None,
            gpu: None,
            shell: None,
            shell_reason: None,
            shell_startup_s: None,
            tools: env.tools.clone(),
            bootstrap: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GpuInfo {
    pub name: String,
    pub driver: String,
    pub memory: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    pub count: usize,
    /// The CUDA toolkit the builds were given (the `cuda_home` parameter), symlinks resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_home: Option<String>,
    /// Where that came from: `parameter`, `nvcc on PATH` or `/usr/local/cuda`; or why none
    /// was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_home_from: Option<String>,
    /// The folder of the driver's `libcuda.so.1`, as `ldconfig -p` lists it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libcuda_dir: Option<String>,
    /// Host paths the lane added to the Nix build sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sandbox_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolVersion {
    pub path: String,
    pub version: String,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Nix,
    Bazel,
}

impl System {
    pub const ALL: [System; 2] = [System::Nix, System::Bazel];

    pub fn name(self) -> &'static str {
        match self {
            System::Nix => "nix",
            System::Bazel => "bazel",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// This machine.
    Host,
    /// A QEMU virtual machine the harness boots (KVM when it works, else TCG).
    Vm,
    /// A GPU dev shell (`nix develop .#gpu`) on a machine with an NVIDIA GPU.
    Gpu,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Host => "host",
            Lane::Vm => "vm",
            Lane::Gpu => "gpu",
        }
    }
}
/// A parameter value: integers go to Nix as `--arg`, strings as `--argstr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Int(i64),
    Str(String),
}

impl ParamValue {
    /// `--param size=50` gives an integer, anything else a string.
    pub fn parse(text: &str) -> ParamValue {
        text.parse()
            .map(ParamValue::Int)
            .unwrap_or_else(|_| ParamValue::Str(text.to_string()))
    }
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Str(s) => f.write_str(s),
        }
    }
}

/// Where `parameters` sit among `siblings` (the parameter sets of the same repo's sweep
/// points): the values that differ among them, as "size=4"; `None` outside a sweep.
pub fn sweep_point(
    parameters: &BTreeMap<String, ParamValue>,
    siblings: &[&BTreeMap<String, ParamValue>],
) -> Option<String> {
    let point: Vec<String> = parameters
        .iter()
        .filter(|(name, value)| siblings.iter().any(|s| s.get(name.as_str()) != Some(value)))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    (!point.is_empty()).then(|| point.join(" "))
}

/// Which repo, built by which system, on which lane: what comparisons, verdicts and
/// reports group cases by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseKey<'a> {
    pub repo: &'a str,
    pub system: System,
    pub lane: Lane,
}

impl std::fmt::Display for CaseKey<'_> {
    /// `repo system lane`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.repo,
            self.system.name(),
            self.lane.name()
        )
    }
}

/// Implements `key()` for result types that name a repo, system and lane.
macro_rules! keyed {
    ($($type:ty),*) => {$(
        impl $type {
            pub fn key(&self) -> CaseKey<'_> {
                CaseKey { repo: &self.repo, system: self.system, lane: self.lane }
            }
        }
    )*};
}
keyed!(
    CaseResult,
    Comparison,
    derive::FallbackRow,
    derive::FillPenalty,
    derive::Verdicts,
    growth::Growth
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
    /// The builds ran but measured the wrong thing (a cold sample took items from a cache
    /// it must not use): no speedup or passing verdict may come from it. `reason` says why.
    Invalid,
}

impl Outcome {
    /// The word reports use for it.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
            Outcome::Invalid => "INVALID",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseResult {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub scenario: Scenario,
    /// The commit of the bench repo's source (absent outside a git checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_git: Option<GitInfo>,
    /// The bench repo's parameters as used (manifest defaults after overrides).
    pub parameters: BTreeMap<String, ParamValue>,
    pub outcome: Outcome,
    /// Why the case failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The cache the case read from (warm cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    /// The timed command of the first sample, as a user could paste it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What the platform claims for this case's repo, system and scenario.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    /// The build tool as this case used it: its version and the choices that shape what
    /// was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolUse>,
    /// How to reproduce the first sample: the command, the environment the harness set and
    /// the configuration files it wrote, secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduce: Option<Reproduce>,
    /// Builds run before the samples; not in the statistics.
    pub warmups: Vec<Sample>,
    pub samples: Vec<Sample>,
    /// Statistics of the samples' wall times; absent without samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Summary>,
    /// Fallback cases: the fault, the settings and what the proxy and the tool did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackInfo>,
    /// Fallback and verify cases: outputs compared with a clean build's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Why the case took the samples it did (a fixed count, the target precision reached,
    /// or the maximum reached first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<crate::stats::stopping::StopReason>,
    /// `--explain interleave`: median wall time of the explained samples over that of the
    /// others, with its 95% interval; what explaining the builds costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain_overhead: Option<crate::stats::RatioInterval>,
    /// Median time per sample that the harness spent around the build (preparing fresh
    /// state, parsing logs, removing the store), beyond the build's own wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_median_s: Option<f64>,
    /// How this case filled its cache before the samples (the first case of a repo that
    /// reads the cache fills it), or that the run only read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_fill: Option<CacheFill>,
    /// A warm case that read the team cache through the shaped link (`--link`, a link
    /// sweep's point); absent: directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<scenario::Link>,
    /// How the samples were taken, and with which cases they alternated; absent in files
    /// from before it was recorded (sequential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
}

/// How a case's samples were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sampling {
    pub order: SampleOrder,
    /// Interleaved: the scenarios whose samples alternated with this case's (this one
    /// included), in the first round's order; odd rounds ran in reverse. Sample i of each
    /// was taken in round i: that pairs them. Empty when sequential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<Scenario>,
}

impl Sampling {
    /// How a report names it: `interleaved with cold, warm (sample N pairs with their sample N)`.
    pub fn describe(&self) -> String {
        match self.order {
            SampleOrder::Interleaved => {
                let group: Vec<String> = self.group.iter().map(ToString::to_string).collect();
                format!(
                    "interleaved, round by round, with {} (sample N pairs with sample N of each)",
                    group.join(", ")
                )
            }
            SampleOrder::Sequential => {
                "sequential (every sample of this case, then the next case's)".into()
            }
        }
    }

    /// Whether this case's samples pair with `other`'s, round by round.
    pub fn pairs_with(&self, other: &Sampling) -> bool {
        self.order == SampleOrder::Interleaved
            && other.order == SampleOrder::Interleaved
            && self.group == other.group
    }
}

/// How a cache was filled from the priming build, with what the server reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CacheFill {
    pub method: FillMethod,
    /// Store paths in the primed closure (the outputs and everything they reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closure_paths: Option<u64>,
    /// Paths the cache already held (Attic's get-missing-paths): nothing was sent for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already_present: Option<u64>,
    /// Paths uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_paths: Option<u64>,
    /// Of those, the ones whose NAR the server already had (Attic answered `Deduplicated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated_paths: Option<u64>,
    /// Uncompressed NAR bytes sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    /// Bytes the server stored for them (compressed), where it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// The share of the uploaded NAR bytes the server found it already had (its chunk
    /// deduplication), weighted by NAR size, where it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_fraction: Option<f64>,
    /// Wall time of the fill (a `fill` sample's: after its build ended).
    pub wall_s: f64,
    /// The tool uploaded as it built (Bazel's `--remote_upload_local_results`): the fill is
    /// inside the build's own span, so `wall_s` (after it) is 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_build: bool,
    /// Read-only cases: the share of what the samples needed that came from the cache as
    /// it was (why each item missed is in the samples' explanations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
}

impl CacheFill {
    /// A fill that only records how long it took (`nix copy`, the `attic` CLI).
    pub fn timed(method: FillMethod, wall_s: f64) -> CacheFill {
        CacheFill {
            method,
            closure_paths: None,
            already_present: None,
            uploaded_paths: None,
            deduplicated_paths: None,
            uploaded_bytes: None,
            stored_bytes: None,
            dedup_fraction: None,
            wall_s,
            in_build: false,
            hit_ratio: None,
        }
    }

    /// A read-only run: nothing was written.
    pub fn read_only() -> CacheFill {
        CacheFill::timed(FillMethod::ReadOnly, 0.0)
    }
}

/// How a cache was filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FillMethod {
    /// `nix copy --to` (the embedded cache, http, file, s3).
    NixCopy,
    /// The `attic` CLI.
    AtticCli,
    /// Attic's HTTP API, spoken by the harness.
    AtticApi,
    /// Bazel's upload of its local results to the remote cache, as it builds.
    BazelUpload,
    /// `--no-fill` / `fill = false`: the case measured the cache as it was.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CacheUse {
    pub backend: CacheBackend,
    /// Where the build tool read from: a URL (never with credentials) or a folder.
    pub url: String,
    /// How the NARs it served were compressed, where the harness chose it (the embedded
    /// Nix cache: the run's `--compression`, or the case's point of a compression sweep).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// The kind of cache a case read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CacheBackend {
    /// The harness's own nginx (Nix binary cache and Bazel HTTP cache).
    EmbeddedNginx,
    Attic,
    /// A Nix binary cache or Bazel remote cache over http(s).
    Http,
    /// A Nix binary cache in a local folder (`file://`).
    File,
    S3,
    /// A Bazel remote cache over gRPC (REAPI).
    Grpc,
    /// A Bazel `--disk_cache` folder.
    Disk,
}

/// A claim the platform makes about a repo's builds, from its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Claim {
    pub system: System,
    pub scenario: Scenario,
    /// The claimed wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The claimed share of work served from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
    /// Where it was claimed.
    pub source: String,
}

/// The build tool as a case used it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolUse {
    /// What `nix --version` or `bazel --version` said.
    pub version: String,
    /// Nix: the upstream caches present in every build, cold ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Bazel: the flags chosen for its version and the repo's dependency files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bazel_flags: Option<FlagSet>,
    /// Bazel: one repository cache shared by every build of the run (so samples measure
    /// building, not fetching external repositories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_repository_cache: Option<bool>,
}

/// The version-dependent part of the driver's flags, and which set it is (recorded in the
/// results so a reader knows what the numbers were measured with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FlagSet {
    pub flavor: BazelFlavor,
    /// The version read from `bazel --version`, e.g. `8.1.1`; absent when unreadable.
    pub version: Option<String>,
    pub external_deps: ExternalDeps,
    /// The `build` flags chosen from the version, in the order they are passed.
    pub build_flags: Vec<String>,
    /// Whether Debian's rules_cc/rules_java copies are passed with `--override_repository`:
    /// only for the WORKSPACE-era Bazel they were packaged for (under bzlmod they would
    /// replace modules the dependency graph resolved).
    pub debian_rule_overrides: bool,
}

/// The family of Bazel releases a flag set is for; its name is what results record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BazelFlavor {
    /// Bazel 6 and older (Debian's 4.2.3): WORKSPACE only, no `--enable_workspace`.
    Workspace,
    /// Bazel 7: bzlmod on by default, WORKSPACE still read.
    Bazel7,
    /// Bazel 8: WORKSPACE off by default (`--enable_workspace` turns it on).
    Bazel8,
    /// Bazel 9 and newer: no WORKSPACE at all, strict action env by default.
    Bazel9,
    /// No version could be read: the flags every version from 4.2.3 to 8.x accepts.
    Unknown,
}

/// How a workspace declares its external dependencies, from the marker files at its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExternalDeps {
    /// `WORKSPACE` or `WORKSPACE.bazel` and no `MODULE.bazel` (e.g. bench-repos/fixture-cc).
    WorkspaceOnly,
    /// A `MODULE.bazel` (bzlmod), with or without a WORKSPACE file; or neither marker.
    Module,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct MnemonicCount {
    pub actions: u64,
    pub remote_cache_hits: u64,
}

/// What a reviewer needs to run a build again by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reproduce {
    pub command: String,
    /// The working folder of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Variables the harness set on top of its own environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Configuration files the harness wrote for the build, with their text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ConfigFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigFile {
    pub path: String,
    /// The file's text with secrets replaced by `<redacted>`.
    pub text: String,
}

/// One timed build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sample {
    pub wall_s: f64,
    /// CPU time of everything the build ran, as far as `cpu_scope` says.
    pub user_s: f64,
    pub sys_s: f64,
    /// What the CPU times count: `cgroup-v2` or `cgroup-v1` (every process of the build,
    /// servers it started included), `children+server-proc` (the tool's processes plus the
    /// build servers' own counters), `children` (only the tool's own processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_scope: Option<String>,
    /// Peak resident memory of the largest process the tool ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_bytes: Option<u64>,
    /// Peak resident memory of the build server (Bazel's), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_max_rss_bytes: Option<u64>,
    /// Absent when the build was killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// Derivations built locally (Nix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<u64>,
    /// Store paths fetched from a cache (Nix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted: Option<u64>,
    /// Bytes downloaded from caches (Nix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded_bytes: Option<u64>,
    /// Items taken from the team cache, the one measured (Nix: substitutions from any
    /// cache but the upstream layer; Bazel: remote and disk cache hits). A cold sample
    /// must take none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_team_cache: Option<u64>,
    /// Nix: substitutions and downloaded bytes per substituter URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_source: BTreeMap<String, SourceCount>,
    /// Spawned actions in the execution log (Bazel; internal actions excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<u64>,
    /// Actions served by the remote cache (Bazel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cache_hits: Option<u64>,
    /// All processes of the console summary, internal ones included (Bazel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Actions and remote cache hits per mnemonic (Bazel).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_mnemonic: BTreeMap<String, MnemonicCount>,
    /// Disagreements between the tool's own counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The tool's own warnings and errors (first few, deduplicated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// A failed build's last lines of its own output (the builder's, the failing action's),
    /// secrets redacted: why it failed, in the tool's words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// Where the wall time went: start-up, analysis or evaluation, execution or builds,
    /// downloads, and the rest ("other"), summing to `wall_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_split: Option<explain::TimeSplit>,
    /// Why items of a build that read the cache were built anyway (warm and fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanations: Option<explain::MissExplanations>,
    /// The least time the sample's cache traffic could take on the measured link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_floor: Option<explain::TransferFloor>,
    /// The build ran without what explains it (`--explain off`, or every other sample of
    /// `interleave`): no trace profile, log timestamps, explanations or floor.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain_off: bool,
    /// When this build through a faulty cache failed: the harness's retry without the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Attempt>,
    /// The bench repo's `[check]`, run on this build's output after it (not in `wall_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckResult>,
    /// The GPU while this build and its check ran (gpu lane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_trace: Option<GpuTrace>,
    /// Harness time around this build, beyond `wall_s` (and the check's time).
    pub overhead_s: f64,
    /// Interleaved sampling: this sample's place (0-based) in the order its group's timed
    /// samples were taken, across the group's cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// A `fill` sample: what filling its fresh, empty team cache sent, stored and took
    /// after the build (`wall_s` is the cold build's own span; the sample's whole cost is
    /// [`Sample::with_fill_s`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<CacheFill>,
}

impl Sample {
    /// The build and the fill after it: what a job that fills the cache pays.
    pub fn with_fill_s(&self) -> f64 {
        self.wall_s + self.fill.as_ref().map_or(0.0, |f| f.wall_s)
    }
}

impl CaseResult {
    /// Whether its CPU times miss the build's main work: Bazel runs actions in its server,
    /// which only a cgroup or the server's own counters include; `children` (and a file
    /// from before `cpu_scope` was recorded) counted the client alone.
    pub fn cpu_is_partial(&self) -> bool {
        self.system == System::Bazel
            && self
                .samples
                .iter()
                .any(|s| matches!(s.cpu_scope.as_deref(), None | Some("children")))
    }

    /// The wall times of its samples, in order (a `fill` sample's: its build and its fill,
    /// what its statistics and penalty are of).
    pub fn walls(&self) -> Vec<f64> {
        self.samples.iter().map(Sample::with_fill_s).collect()
    }

    /// A case before anything ran: `ok` until a step says otherwise.
    pub fn new(
        key: CaseKey,
        scenario: Scenario,
        parameters: BTreeMap<String, ParamValue>,
    ) -> CaseResult {
        CaseResult {
            repo: key.repo.to_string(),
            system: key.system,
            lane: key.lane,
            scenario,
            source_git: None,
            parameters,
            outcome: Outcome::Ok,
            reason: None,
            cache: None,
            command: None,
            claims: Vec::new(),
            tool: None,
            reproduce: None,
            warmups: Vec::new(),
            samples: Vec::new(),
            stats: None,
            fallback: None,
            verification: None,
            stopped: None,
            explain_overhead: None,
            overhead_median_s: None,
            cache_fill: None,
            link: None,
            sampling: None,
        }
    }

    /// The same repo, system, lane and scenario (at any parameters: a sweep's points).
    pub fn same_scenario(&self, other: &CaseResult) -> bool {
        self.key() == other.key() && self.scenario == other.scenario
    }

    /// `repo system lane scenario`, how reports and exports name a case.
    pub fn label(&self) -> String {
        format!("{} {}", self.key(), self.scenario)
    }
}

impl Sample {
    /// Time until the build had a result: this build, plus the retry when there was one.
    pub fn time_to_result_s(&self) -> f64 {
        self.wall_s + self.retry.as_ref().map_or(0.0, |r| r.wall_s)
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Items the build took from the team cache (store paths or actions).
    pub fn from_cache(&self) -> Option<u64> {
        self.from_team_cache
            .or(self.substituted)
            .or(self.remote_cache_hits)
    }

    /// (items from the cache, items needed) for the hit ratio: store paths for Nix,
    /// actions for Bazel.
    pub(crate) fn cache_hits(&self) -> Option<(u64, u64)> {
        match (
            self.substituted,
            self.built,
            self.remote_cache_hits,
            self.actions,
        ) {
            (Some(substituted), Some(built), _, _) => Some((substituted, substituted + built)),
            (_, _, Some(hits), Some(actions)) => Some((hits, actions)),
            _ => None,
        }
    }
}

/// What one cache served a build.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct SourceCount {
    pub substituted: u64,
    pub downloaded_bytes: u64,
}

/// The share of the samples' items that came from the cache (store paths for Nix,
/// actions for Bazel), over every sample that counted them.
pub fn hit_ratio(samples: &[Sample]) -> Option<f64> {
    let (hits, needed) = samples
        .iter()
        .filter_map(Sample::cache_hits)
        .fold((0, 0), |(h, n), (sh, sn)| (h + sh, n + sn));
    (needed > 0).then(|| hits as f64 / needed as f64)
}

/// One extra build (not a sample), e.g. with the tool's own fallback switch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    pub wall_s: f64,
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// Its last lines of output when it failed, secrets redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// The tool's error when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The bench repo's `[check]` on this build's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckResult>,
}

/// A bench repo's `[check]` command, run on a build's output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    pub passed: bool,
    pub wall_s: f64,
    /// Absent when it was killed (signal, timeout) or could not start.
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// The last lines it printed (standard output, then standard error), or why it could
    /// not start.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
}

/// The GPU sampled about every `period_ms` while a build and its check ran (`nvidia-smi
/// --query-gpu ... -lms`). Over several GPUs: the busiest one's utilisation and SM clock,
/// the memory and power of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GpuTrace {
    /// Why nothing was sampled (the sampler could not run); the build itself is unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    pub period_ms: u64,
    pub summary: GpuTraceSummary,
    pub series: GpuSeries,
}

/// Max and mean of each metric over a trace (absent where no sample had a value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GpuTraceSummary {
    pub samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_pct: Option<MaxMean>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_mib: Option<MaxMean>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<MaxMean>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<MaxMean>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MaxMean {
    pub max: f64,
    pub mean: f64,
}

/// A trace column by column, one entry per sample; `null` where nvidia-smi had no value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GpuSeries {
    /// Milliseconds since the first sample.
    pub t_ms: Vec<u64>,
    pub utilization_pct: Vec<Option<f64>>,
    pub memory_used_mib: Vec<Option<f64>>,
    pub power_w: Vec<Option<f64>>,
    pub sm_clock_mhz: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FallbackInfo {
    pub fault: Fault,
    pub tuned: bool,
    /// The tool settings the tuned variant adds (empty otherwise).
    pub settings: Vec<String>,
    pub timeout_s: f64,
    pub proxy: ProxyCounts,
    /// The same build with the tool's own fallback switch (Nix `--fallback`), as evidence
    /// of what the tool does by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_fallback: Option<ToolFallback>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolFallback {
    pub flag: String,
    pub attempt: Attempt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProxyCounts {
    pub connections: u64,
    pub requests: u64,
    pub corrupted: u64,
    pub poisoned: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verification {
    /// What the outputs were compared against.
    pub clean: String,
    /// Outputs compared per build.
    pub compared: usize,
    /// Outputs whose content differs, each classified when a second clean build could
    /// tell a non-reproducible step from a wrong output of the cache.
    pub mismatches: Vec<Mismatch>,
    /// The steps first at fault (actions, derivations), each with the steps that differ
    /// only because they consume its outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<FaultRoot>,
    /// What was compared: the closure, the bound on it, the paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<VerifyScope>,
}

impl Verification {
    /// Mismatches of a class.
    pub fn count(&self, class: MismatchClass) -> usize {
        self.mismatches
            .iter()
            .filter(|m| m.class.unwrap_or(MismatchClass::Unclassified) == class)
            .count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mismatch {
    /// Store path or output file.
    pub path: String,
    /// Digest of what the build with the cache produced ("absent" if it had no such output).
    pub from_cache: String,
    /// Digest of the clean build's output ("absent" likewise).
    pub clean: String,
    /// Digest of the same output in a second clean build, in fresh state without any
    /// cache ("absent" likewise): equal to `clean` means the step is reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_clean: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<MismatchClass>,
    /// The action or derivation that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// When it differs only because it consumes another step's output: the steps from
    /// the one first at fault to this one's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub because_of: Vec<String>,
}

/// Why an output differs from a clean build's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MismatchClass {
    /// Both clean builds agree and the build from the cache differs: the cache served a
    /// wrong output (a poisoned entry).
    WrongFromCache,
    /// Two clean builds in fresh state without any cache differ: the step is not
    /// reproducible (a time stamp, a build id, an unordered archive), not the cache's fault.
    NotReproducible,
    /// No second clean build could tell (it failed, or lacks the output).
    Unclassified,
}

impl MismatchClass {
    pub fn describe(self) -> &'static str {
        match self {
            MismatchClass::NotReproducible => "not reproducible",
            MismatchClass::WrongFromCache => "the cache served a wrong output",
            MismatchClass::Unclassified => "unclassified",
        }
    }
}

/// A step first at fault: its inputs equal in both builds compared, its outputs not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultRoot {
    /// The action (`Executing genrule //:stamp`) or derivation (`stamp`, with its .drv).
    pub step: String,
    pub class: MismatchClass,
    /// Its outputs that differ.
    pub outputs: Vec<String>,
    /// Steps whose outputs differ only because they consume its outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Consumer {
    pub step: String,
    /// The steps from the root to this one, both included.
    pub via: Vec<String>,
}

/// What a verify compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerifyScope {
    /// Outputs of the build from the cache: every output of its closure that it has
    /// (Nix: store paths substituted or built; Bazel: every action's output files).
    pub closure: usize,
    /// `--verify-depth`: only outputs this many steps or fewer from the final ones
    /// were compared (0: the final outputs alone); absent: the whole closure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// The outputs compared.
    pub paths: Vec<String>,
    /// How mismatches were classified: the second clean build, or why there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classified_by: Option<String>,
}

/// Cold vs warm for one repo, system and lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    /// The parameters both cases ran with (a sweep has one comparison per point).
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamValue>,
    pub cold_median_s: f64,
    pub warm_median_s: f64,
    /// Median CPU time (user + system, as far as the samples' `cpu_scope` counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_cpu_median_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_cpu_median_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop_median_s: Option<f64>,
    /// Interleaved: the median of the paired ratios cold_i / warm_i, its 95% interval a
    /// bootstrap over the pairs; sequential: median(cold) / median(warm), both sides
    /// resampled independently.
    pub speedup: RatioInterval,
    /// The cold/warm pairs the speedup came from; absent when the samples were not paired
    /// (sequential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<usize>,
    /// Share of the warm builds' work served from the cache (0..1), over all warm samples.
    pub hit_ratio: Option<f64>,
}

impl Results {
    /// Where a case or comparison with these parameters sits in a sweep: its values of the
    /// parameters that differ among the cases of its repo, system and lane ("size=4");
    /// `None` outside a sweep.
    pub fn sweep_point(
        &self,
        key: CaseKey,
        parameters: &BTreeMap<String, ParamValue>,
    ) -> Option<String> {
        let siblings: Vec<&BTreeMap<String, ParamValue>> = self
            .cases
            .iter()
            .filter(|c| c.key() == key)
            .map(|c| &c.parameters)
            .collect();
        sweep_point(parameters, &siblings)
    }

    /// `repo system lane`, and the sweep point when there is one: names a case's figures.
    pub fn case_title(&self, key: CaseKey, parameters: &BTreeMap<String, ParamValue>) -> String {
        match self.sweep_point(key, parameters) {
            Some(point) => format!("{key} {point}"),
            None => key.to_string(),
        }
    }

    /// Whether any case failed (the run's exit code says so).
    pub fn any_failed(&self) -> bool {
        self.cases
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Failed | Outcome::Invalid))
    }

    /// The document of a run that starts now: its settings and where it runs; cases and
    /// lanes arrive as the run goes.
    pub fn start(
        profile: &str,
        settings: RunSettings,
        command: Vec<String>,
        environment: Environment,
        git: Option<GitInfo>,
    ) -> Results {
        Results {
            schema_version: SCHEMA_VERSION,
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now_rfc3339(),
            finished_at: None,
            command,
            profile: profile.to_string(),
            git,
            settings,
            environment,
            lanes: Vec::new(),
            cases: Vec::new(),
            comparisons: Vec::new(),
            fallbacks: Vec::new(),
            fills: Vec::new(),
            verdicts: Vec::new(),
            growth: Vec::new(),
            cache_link: None,
            clock_floor: None,
            speed_probe: None,
            notes: Vec::new(),
            cleanup: None,
        }
    }
}

/// Reads a results file, recomputing what is derived (so files from older versions of
/// the harness get the newer tables too). The file must be a regular file of at most
/// [`RESULTS_LIMIT`](crate::boundary::RESULTS_LIMIT); its times must be finite, not negative
/// and plausible (an error names the field's JSON path); statistics that disagree with
/// their samples are recomputed, and a note in `notes` says which.
pub fn load(path: &std::path::Path) -> crate::error::Result<Results> {
    let bad =
        |message: String| crate::error::Error::Usage(format!("{}: {message}", path.display()));
    let text = crate::boundary::read_text(path, crate::boundary::RESULTS_LIMIT).map_err(|why| {
        bad(format!(
            "{why}\n  fix: pass a results file written by `flywheel-bench run`"
        ))
    })?;
    let value = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| bad(format!("not JSON ({e})")))?;
    match value.get("schema_version") {
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        found => {
            let found = found.map_or("is missing".into(), |v| {
                format!("{v} is not {SCHEMA_VERSION}")
            });
            return Err(bad(format!(
                "schema_version {found}, the version this harness reads\n  fix: use the flywheel-bench version that wrote it"
            )));
        }
    }
    let mut results: Results = serde_json::from_value(value)
        .map_err(|e| bad(format!("not a flywheel-bench results file ({e})")))?;
    let notes = validate(&mut results).map_err(|why| {
        bad(format!(
            "{why}\n  fix: pass the file as `flywheel-bench run` wrote it; times are seconds, finite and not negative"
        ))
    })?;
    results.notes.extend(notes);
    derive(&mut results);
    Ok(results)
}

/// Longer than any build or timeout could last (about three years): a time above it is
/// corrupt, and would overflow the statistics.
const MAX_SECONDS: f64 = 1e8;

/// Checks every recorded time of `results` and recomputes statistics that disagree with
/// their samples. `Ok` has a note per recomputed case; `Err` names the first bad field by
/// its JSON path, e.g. `cases[0].samples[1].wall_s`.
pub fn validate(results: &mut Results) -> Result<Vec<String>, String> {
    let time = |path: &dyn Fn() -> String, value: f64| {
        if value.is_finite() && (0.0..=MAX_SECONDS).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "`{}` is {value}: a time in seconds must be finite, 0 or more and at most {MAX_SECONDS:e}",
                path()
            ))
        }
    };
    let s = &results.settings;
    time(&|| "settings.timeout_s".into(), s.timeout_s)?;
    time(
        &|| "settings.fallback_timeout_s".into(),
        s.fallback_timeout_s,
    )?;
    let mut notes = Vec::new();
    for (i, case) in results.cases.iter_mut().enumerate() {
        for (kind, samples) in [("warmups", &case.warmups), ("samples", &case.samples)] {
            for (j, sample) in samples.iter().enumerate() {
                let at = |field: &str| format!("cases[{i}].{kind}[{j}].{field}");
                for (field, value) in [
                    ("wall_s", sample.wall_s),
                    ("user_s", sample.user_s),
                    ("sys_s", sample.sys_s),
                    ("overhead_s", sample.overhead_s),
                ] {
                    time(&|| at(field), value)?;
                }
                if let Some(retry) = &sample.retry {
                    time(&|| at("retry.wall_s"), retry.wall_s)?;
                }
                if let Some(check) = &sample.check {
                    time(&|| at("check.wall_s"), check.wall_s)?;
                }
                if let Some(split) = &sample.time_split {
                    time(&|| at("time_split.wall_s"), split.wall_s)?;
                    time(&|| at("time_split.other_s"), split.other_s)?;
                    for (k, phase) in split.phases.iter().enumerate() {
                        time(
                            &|| at(&format!("time_split.phases[{k}].seconds")),
                            phase.seconds,
                        )?;
                    }
                }
            }
        }
        let computed = crate::stats::Summary::of(&case.walls());
        if !stats_agree(case.stats.as_ref(), computed.as_ref()) {
            notes.push(format!(
                "cases[{i}] ({}): its stored statistics disagreed with its samples (median {} stored, {} from the samples); recomputed from the samples",
                case.label(),
                case.stats.as_ref().map_or("none".into(), |s| format!("{} s", s.median_s)),
                computed.as_ref().map_or("none".into(), |s| format!("{} s", s.median_s)),
            ));
            case.stats = computed;
        }
    }
    Ok(notes)
}

/// The same statistics, within the rounding of a decimal round trip.
fn stats_agree(
    stored: Option<&crate::stats::Summary>,
    computed: Option<&crate::stats::Summary>,
) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    match (stored, computed) {
        (None, None) => true,
        (Some(s), Some(c)) => {
            s.n == c.n
                && s.outliers == c.outliers
                && [
                    (s.median_s, c.median_s),
                    (s.mean_s, c.mean_s),
                    (s.stddev_s, c.stddev_s),
                    (s.min_s, c.min_s),
                    (s.max_s, c.max_s),
                    (s.mad_s, c.mad_s),
                ]
                .into_iter()
                .all(|(a, b)| close(a, b))
        }
        _ => false,
    }
}

/// The current time as results record it: RFC 3339, UTC, whole seconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The JSON Schema of the results document, generated from the types above.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Results);
    serde_json::to_string_pretty(&schema).expect("a schema always serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/results.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "{} is stale: run `cargo run -- schema > results/results.schema.json`",
            path.display()
        );
    }

    #[test]
    fn files_without_the_newer_fields_still_load() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/results/nix-fixture.json");
        let results: Results =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(results.fallbacks.is_empty() && results.verdicts.is_empty());
        assert_eq!(results.settings.thresholds, Thresholds::default());
    }

    fn load_text(text: &str) -> crate::error::Result<Results> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    fn fixture() -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/results/nix-fixture.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn impossible_times_are_refused_with_their_json_path() {
        for bad in [-5.0, 1e308] {
            let mut doc = fixture();
            doc["cases"][0]["samples"][1]["wall_s"] = serde_json::json!(bad);
            let err = load_text(&doc.to_string()).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::exit_code::INVALID_INPUT);
            let err = err.to_string();
            assert!(
                err.contains(&format!("`cases[0].samples[1].wall_s` is {bad}"))
                    && err.contains("fix:"),
                "{err}"
            );
        }
        let mut doc = fixture();
        doc["settings"]["timeout_s"] = serde_json::json!(-1);
        let err = load_text(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("`settings.timeout_s` is -1"), "{err}");
    }

    #[test]
    fn a_bad_schema_version_is_named_as_it_is() {
        let mut doc = fixture();
        doc["schema_version"] = serde_json::json!(-1);
        let err = load_text(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("schema_version -1 is not 1"), "{err}");
        doc["schema_version"] = serde_json::json!("one");
        let err = load_text(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("schema_version \"one\" is not 1"), "{err}");
        doc.as_object_mut().unwrap().remove("schema_version");
        let err = load_text(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("schema_version is missing"), "{err}");
    }

    #[test]
    fn stored_statistics_that_disagree_with_the_samples_are_recomputed_and_said_so() {
        let doc = fixture();
        let clean = load_text(&doc.to_string()).unwrap();
        assert!(clean.notes.is_empty(), "{:?}", clean.notes);
        let mut doc = doc;
        doc["cases"][0]["stats"]["median_s"] = serde_json::json!(1234.5);
        let results = load_text(&doc.to_string()).unwrap();
        assert_eq!(results.cases[0].stats, clean.cases[0].stats, "recomputed");
        assert_eq!(results.notes.len(), 1, "{:?}", results.notes);
        assert!(
            results.notes[0].starts_with("cases[0] (")
                && results.notes[0].contains("median 1234.5 s stored"),
            "{}",
            results.notes[0]
        );
        let markdown = crate::report::markdown::render(
            &[("r".into(), results)],
            crate::report::markdown::Detail::Full,
        );
        assert!(
            markdown.contains("| note | cases[0] ("),
            "the report says which"
        );
    }

    #[test]
    fn results_are_read_only_from_regular_files() {
        let err = load(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero: is a character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = load(&fifo).unwrap_err().to_string();
        assert!(err.contains("is a FIFO (named pipe)"), "{err}");
    }

    #[test]
    fn every_committed_results_file_loads_unchanged() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["results/evidence", "harness/tests/fixtures"] {
            let mut stack = vec![root.join(dir)];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "json")
                        && std::fs::read_to_string(&path)
                            // Coverage documents carry a harness_version too, and no cases.
                            .is_ok_and(|t| {
                                t.contains("\"harness_version\"") && t.contains("\"cases\"")
                            })
                    {
                        files.push(path);
                    }
                }
            }
        }
        assert!(files.len() >= 10, "{files:?}");
        for path in files {
            let raw: Results =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let results = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(results.notes, raw.notes, "{}: recomputed", path.display());
        }
    }
}
