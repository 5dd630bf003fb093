//! Why a sample took what it took: which items missed the cache and why, its wall time split
//! into phases, and how close it came to the transfer floor. Serialisable types plus the pure
//! arithmetic and wording around them; `tools::explain`, `tools::nix_phases` and
//! `tools::bazel_profile` fill them from the tools' logs.

use serde::{Deserialize, Serialize};

/// At most this many explanations are kept per sample; the counts cover every miss.
pub const MAX_EXPLANATIONS: usize = 50;

/// At most this many differing inputs are listed per action.
pub const MAX_INPUT_DIFFS: usize = 10;

/// Why one item (a Bazel action, a Nix derivation) was not taken from the cache.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MissReason {
    /// Bazel: no action of the priming build listed any of its outputs.
    NotInPrimingLog,
    /// Bazel: an environment variable differs from the priming build's action.
    EnvironmentDiffers,
    /// Bazel: the command line differs.
    ArgumentsDiffer,
    /// Bazel: the execution platform's properties differ.
    PlatformDiffers,
    /// Bazel: an input file differs (content or presence).
    InputsDiffer,
    /// Bazel: the listed outputs differ.
    OutputsDiffer,
    /// Bazel: the action may not use the remote cache (e.g. `no-remote-cache`).
    NotCacheable,
    /// Bazel: the priming build's action was not uploaded (not cacheable, or it failed).
    NotUploadedByPriming,
    /// Bazel: the same action as the priming build's, cacheable both times, and still no
    /// hit: the cache answered, but its entry (or a blob it names) was missing or unusable.
    EntryUnusable,
    /// Nix: the cache has no narinfo for the derivation's output (404).
    NoNarinfo,
    /// Nix: the narinfo was refused: unsigned, or signed by an untrusted key.
    NarinfoRefused,
    /// Nix: the narinfo was accepted, but fetching or unpacking its NAR failed.
    NarDownloadFailed,
    /// Nix: the cache serves a valid narinfo, but the build's query for it failed.
    NarinfoQueryFailed,
    /// Nix: the build never asked the cache for the derivation's outputs (e.g.
    /// `allowSubstitutes = false`).
    NotRequested,
    /// Nix: neither the log nor the cache's answers say why.
    Unexplained,
}

impl MissReason {
    /// The words reports use.
    pub fn describe(self) -> &'static str {
        match self {
            MissReason::NotInPrimingLog => "not in the priming log",
            MissReason::EnvironmentDiffers => "environment differs",
            MissReason::ArgumentsDiffer => "command arguments differ",
            MissReason::PlatformDiffers => "platform differs",
            MissReason::InputsDiffer => "inputs differ",
            MissReason::OutputsDiffer => "outputs differ",
            MissReason::NotCacheable => "not cacheable remotely",
            MissReason::NotUploadedByPriming => "the priming build did not upload it",
            MissReason::EntryUnusable => "cache answered but the entry was unusable",
            MissReason::NoNarinfo => "no narinfo (404)",
            MissReason::NarinfoRefused => "narinfo refused (unsigned, or untrusted key)",
            MissReason::NarDownloadFailed => "NAR download failed",
            MissReason::NarinfoQueryFailed => "narinfo query failed during the build",
            MissReason::NotRequested => "not requested",
            MissReason::Unexplained => "no evidence why",
        }
    }
}

/// One item that missed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MissExplanation {
    /// Bazel: the action's first listed output; Nix: the derivation's store path.
    pub item: String,
    /// Bazel: the action's mnemonic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnemonic: Option<String>,
    pub reason: MissReason,
    /// Bazel: everything that differs from the priming build's action with the same
    /// outputs (the reason names the first that matters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differences: Option<ActionDiff>,
    /// Nix: the store paths of this derivation that the build asked the cache about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queried: Vec<String>,
}

/// What differs between two executions of the same action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ActionDiff {
    /// Names of the environment variables that differ or exist on one side only (never
    /// their values: they may be secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<ArgumentDiff>,
    /// Differing inputs, at most `MAX_INPUT_DIFFS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputDiff>,
    /// How many inputs differ in all.
    #[serde(default)]
    pub inputs_differing: usize,
    /// Names of the platform properties that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform: Vec<String>,
    #[serde(default)]
    pub outputs: bool,
}

impl ActionDiff {
    /// The difference that names the miss: the action's own settings before its inputs,
    /// whose changes are often only the consequence of an upstream action's.
    pub fn reason(&self) -> Option<MissReason> {
        if !self.environment.is_empty() {
            Some(MissReason::EnvironmentDiffers)
        } else if self.arguments.is_some() {
            Some(MissReason::ArgumentsDiffer)
        } else if !self.platform.is_empty() {
            Some(MissReason::PlatformDiffers)
        } else if self.inputs_differing > 0 {
            Some(MissReason::InputsDiffer)
        } else if self.outputs {
            Some(MissReason::OutputsDiffer)
        } else {
            None
        }
    }
}

/// Where two command lines part (values are not recorded: they may carry secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArgumentDiff {
    /// Index of the first argument that differs.
    pub first_difference: usize,
    pub priming_count: usize,
    pub sample_count: usize,
}

/// One input file whose digest differs; `None` where the file is absent on that side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InputDiff {
    pub path: String,
    /// `hash/size` in the priming build.
    pub priming: Option<String>,
    /// `hash/size` in this sample.
    pub sample: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasonCount {
    pub reason: MissReason,
    pub count: u64,
}

/// The misses of one sample: every one counted by reason, the first ones explained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MissExplanations {
    /// Items that missed.
    pub misses: u64,
    /// Per reason, most frequent first; sums to `misses`.
    pub by_reason: Vec<ReasonCount>,
    /// The first `MAX_EXPLANATIONS` misses, in log order.
    pub items: Vec<MissExplanation>,
}

impl MissExplanations {
    /// Counts every explanation and keeps the first `MAX_EXPLANATIONS`.
    pub fn collect(all: impl IntoIterator<Item = MissExplanation>) -> MissExplanations {
        let mut counts = std::collections::BTreeMap::<MissReason, u64>::new();
        let mut items = Vec::new();
        let mut misses = 0;
        for explanation in all {
            misses += 1;
            *counts.entry(explanation.reason).or_default() += 1;
            if items.len() < MAX_EXPLANATIONS {
                items.push(explanation);
            }
        }
        Self::counted(misses, counts, items)
    }

    /// Several samples' explanations as one: their counts summed (not recounted from the
    /// items each kept, which stop at `MAX_EXPLANATIONS`), the first items kept.
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a MissExplanations>) -> MissExplanations {
        let mut counts = std::collections::BTreeMap::<MissReason, u64>::new();
        let mut items = Vec::new();
        let mut misses = 0;
        for explained in all {
            misses += explained.misses;
            for r in &explained.by_reason {
                *counts.entry(r.reason).or_default() += r.count;
            }
            let room = MAX_EXPLANATIONS - items.len();
            items.extend(explained.items.iter().take(room).cloned());
        }
        Self::counted(misses, counts, items)
    }

    fn counted(
        misses: u64,
        counts: std::collections::BTreeMap<MissReason, u64>,
        items: Vec<MissExplanation>,
    ) -> MissExplanations {
        let mut by_reason: Vec<ReasonCount> = counts
            .into_iter()
            .map(|(reason, count)| ReasonCount { reason, count })
            .collect();
        by_reason.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        MissExplanations {
            misses,
            by_reason,
            items,
        }
    }

    /// `3 inputs differ, 1 environment differs` for the `n` most frequent reasons.
    pub fn top_reasons(&self, n: usize) -> String {
        self.by_reason
            .iter()
            .take(n)
            .map(|r| format!("{} {}", r.count, r.reason.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A part of a build's wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Bazel: client start, server start and command initialisation.
    Startup,
    /// Bazel: target patterns, loading and analysis (repository rules included).
    LoadingAnalysis,
    /// Bazel: executing (or fetching) actions.
    Execution,
    /// Bazel: after the last action until the command finished.
    Finish,
    /// Nix: process start-up (opening the store included) and evaluation, until
    /// realisation starts.
    Evaluation,
    /// Nix: asking caches for narinfos, with no download or build under way.
    NarinfoQueries,
    /// Nix: fetching and unpacking NARs, with no build under way.
    Downloads,
    /// Nix: at least one derivation building.
    Builds,
}

impl Phase {
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Startup => "client and server start-up",
            Phase::LoadingAnalysis => "loading and analysis",
            Phase::Execution => "execution",
            Phase::Finish => "finish",
            Phase::Evaluation => "start-up and evaluation",
            Phase::NarinfoQueries => "narinfo queries",
            Phase::Downloads => "downloads",
            Phase::Builds => "builds",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseTime {
    pub phase: Phase,
    pub seconds: f64,
}

/// A sample's wall time split into phases that do not overlap; with `other_s` they sum
/// to `wall_s` (the harness's own measurement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimeSplit {
    pub wall_s: f64,
    /// In time order.
    pub phases: Vec<PhaseTime>,
    /// What no phase accounts for: process start before the tool's first timestamp, exit
    /// after its last, gaps between phases.
    pub other_s: f64,
    /// Bazel: wall time with at least one remote cache lookup or download in flight
    /// (inside execution, not an extra phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cache_s: Option<f64>,
    /// Bazel: the part of that time spent by actions on the critical path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_cache_critical_path_s: Option<f64>,
}

impl TimeSplit {
    /// `other_s` is what the phases leave of `wall_s` (never negative: when the tool's
    /// clock overshoots the harness's, the excess shows in `accounted_s`).
    pub fn from_phases(wall_s: f64, phases: Vec<PhaseTime>) -> TimeSplit {
        let known = total(phases.iter().map(|p| p.seconds));
        TimeSplit {
            wall_s,
            phases,
            other_s: (wall_s - known).max(0.0),
            remote_cache_s: None,
            remote_cache_critical_path_s: None,
        }
    }

    /// Phases plus other: equals `wall_s` unless the tool's timestamps overshoot it.
    pub fn accounted_s(&self) -> f64 {
        total(self.phases.iter().map(|p| p.seconds)) + self.other_s
    }

    pub fn seconds(&self, phase: Phase) -> f64 {
        total(
            self.phases
                .iter()
                .filter(|p| p.phase == phase)
                .map(|p| p.seconds),
        )
    }

    /// Time before the tool could fetch anything, and the words for it.
    pub fn setup(&self) -> (f64, &'static str) {
        if self.phases.iter().any(|p| p.phase == Phase::Startup) {
            (
                self.seconds(Phase::Startup) + self.seconds(Phase::LoadingAnalysis),
                "Bazel start-up and analysis",
            )
        } else {
            (
                self.seconds(Phase::Evaluation),
                "Nix start-up and evaluation",
            )
        }
    }

    /// The phase (or the rest, "other") that took the most time, summed over its parts.
    pub fn largest(&self) -> Option<(&'static str, f64)> {
        let mut kinds: Vec<Phase> = self.phases.iter().map(|p| p.phase).collect();
        kinds.dedup();
        kinds
            .into_iter()
            .map(|phase| (phase.describe(), self.seconds(phase)))
            .chain(std::iter::once(("other", self.other_s)))
            .filter(|(_, s)| *s > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Time spent talking to the cache.
    pub fn transfer_s(&self) -> f64 {
        self.remote_cache_s
            .unwrap_or_else(|| self.seconds(Phase::NarinfoQueries) + self.seconds(Phase::Downloads))
    }
}

/// A sum that is +0 when empty (`Iterator::sum` of floats gives -0, which prints as `-0`).
pub(crate) fn total(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |sum, v| sum + v)
}

/// The cache link as measured once per run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CacheLink {
    /// From downloading a blob of known size through the same path the builds use.
    pub throughput_bytes_per_s: f64,
    /// Round trip of one small request.
    pub latency_s: f64,
    /// Size of the blob the throughput was measured with.
    pub probe_bytes: u64,
}

impl CacheLink {
    /// The link as a shaped one (`--link`) leaves it: its round trip added to the latency,
    /// its bandwidth capping the throughput.
    pub fn through(self, link: &crate::results::scenario::Link) -> CacheLink {
        CacheLink {
            throughput_bytes_per_s: link
                .bandwidth_bytes_per_s
                .map_or(self.throughput_bytes_per_s, |cap| {
                    self.throughput_bytes_per_s.min(cap as f64)
                }),
            latency_s: self.latency_s + link.rtt().as_secs_f64(),
            ..self
        }
    }
}

/// The least time a warm sample's cache traffic could take, with its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TransferFloor {
    /// Bytes the sample fetched from the cache.
    pub bytes: u64,
    /// Requests it made to the cache.
    pub requests: u64,
    /// Requests the tool had in flight at once.
    pub parallelism: u32,
    pub link: CacheLink,
    /// bytes / throughput + requests x latency / parallelism.
    pub floor_s: f64,
    pub wall_s: f64,
    /// floor / wall: 1 means the sample took no longer than its cache traffic must.
    pub efficiency: f64,
}

impl TransferFloor {
    pub fn compute(
        bytes: u64,
        requests: u64,
        parallelism: u32,
        link: CacheLink,
        wall_s: f64,
    ) -> Result<TransferFloor, String> {
        if !(link.throughput_bytes_per_s.is_finite() && link.throughput_bytes_per_s > 0.0) {
            return Err(format!(
                "cache link throughput {} B/s: must be a positive number (measure it with a blob of known size)",
                link.throughput_bytes_per_s
            ));
        }
        if !(link.latency_s.is_finite() && link.latency_s >= 0.0) {
            return Err(format!(
                "cache link latency {} s: must be zero or more",
                link.latency_s
            ));
        }
        if parallelism == 0 {
            return Err("transfer parallelism 0: at least one request is in flight".into());
        }
        if !(wall_s.is_finite() && wall_s > 0.0) {
            return Err(format!("wall time {wall_s} s: must be a positive number"));
        }
        let floor_s = bytes as f64 / link.throughput_bytes_per_s
            + requests as f64 * link.latency_s / f64::from(parallelism);
        Ok(TransferFloor {
            bytes,
            requests,
            parallelism,
            link,
            floor_s,
            wall_s,
            efficiency: floor_s / wall_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explanation(item: &str, reason: MissReason) -> MissExplanation {
        MissExplanation {
            item: item.into(),
            mnemonic: None,
            reason,
            differences: None,
            queried: Vec::new(),
        }
    }

    #[test]
    fn counts_every_miss_and_keeps_the_first_fifty() {
        let all = (0..70).map(|i| {
            let reason = if i % 7 == 0 {
                MissReason::EnvironmentDiffers
            } else {
                MissReason::InputsDiffer
            };
            explanation(&format!("out/{i}"), reason)
        });
        let explained = MissExplanations::collect(all);
        let twice = MissExplanations::merge([&explained, &explained]);
        assert_eq!(
            twice.misses, 140,
            "counted, not recounted from the kept items"
        );
        assert_eq!(twice.by_reason[0].count, 2 * explained.by_reason[0].count);
        assert_eq!(twice.items.len(), MAX_EXPLANATIONS);
        assert_eq!(explained.misses, 70);
        assert_eq!(explained.items.len(), MAX_EXPLANATIONS);
        assert_eq!(explained.items[0].item, "out/0");
        assert_eq!(
            explained.by_reason,
            vec![
                ReasonCount {
                    reason: MissReason::InputsDiffer,
                    count: 60
                },
                ReasonCount {
                    reason: MissReason::EnvironmentDiffers,
                    count: 10
                }
            ]
        );
        assert_eq!(explained.top_reasons(1), "60 inputs differ".to_string());
    }

    #[test]
    fn reasons_serialise_as_words() {
        let json = serde_json::to_string(&MissReason::NoNarinfo).unwrap();
        assert_eq!(json, "\"no-narinfo\"");
        assert_eq!(MissReason::NoNarinfo.describe(), "no narinfo (404)");
    }

    #[test]
    fn the_floor_adds_bandwidth_and_latency_time() {
        let link = CacheLink {
            throughput_bytes_per_s: 100e6,
            latency_s: 0.002,
            probe_bytes: 64 << 20,
        };
        let floor = TransferFloor::compute(10_000_000, 250, 25, link, 4.0).unwrap();
        assert!((floor.floor_s - (0.1 + 0.02)).abs() < 1e-12, "{floor:?}");
        assert!((floor.efficiency - 0.03).abs() < 1e-12);
        let bad = CacheLink {
            throughput_bytes_per_s: f64::NAN,
            ..link
        };
        assert!(TransferFloor::compute(1, 1, 1, bad, 1.0)
            .unwrap_err()
            .contains("throughput"));
        assert!(TransferFloor::compute(1, 1, 0, link, 1.0).is_err());
        assert!(TransferFloor::compute(1, 1, 1, link, 0.0).is_err());
    }
}
