//! The results document: versioned, serialisable types that reviewers and `compare` read.
//! New fields are additive with defaults; `schema_version` changes only on breaking changes.
//! `results/results.schema.json` is generated from these types (`flywheel-bench schema`).

pub mod writer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{Lane, ParamValue, Scenario, System};
use crate::stats::{RatioInterval, Summary};
pub use crate::tools::bazel_log::MnemonicCount;

pub const SCHEMA_VERSION: u32 = 1;

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
    pub settings: RunSettings,
    pub environment: Environment,
    pub cases: Vec<CaseResult>,
    pub comparisons: Vec<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunSettings {
    pub samples: usize,
    pub warmups: usize,
    pub timeout_s: f64,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolVersion {
    pub path: String,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseResult {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub scenario: Scenario,
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
    /// Builds run before the samples; not in the statistics.
    pub warmups: Vec<Sample>,
    pub samples: Vec<Sample>,
    /// Statistics of the samples' wall times; absent without samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Summary>,
    /// Median time per sample that the harness spent around the build (preparing fresh
    /// state, parsing logs, removing the store), beyond the build's own wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_median_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CacheUse {
    /// e.g. `embedded-nginx`.
    pub backend: String,
    /// Where the build tool read from (never carries credentials).
    pub url: String,
}

/// One timed build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sample {
    pub wall_s: f64,
    pub user_s: f64,
    pub sys_s: f64,
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
    /// Harness time around this build, beyond `wall_s`.
    pub overhead_s: f64,
}

impl Sample {
    /// (items from the cache, items needed) for the hit ratio: store paths for Nix,
    /// actions for Bazel.
    fn cache_hits(&self) -> Option<(u64, u64)> {
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

/// Cold vs warm for one repo, system and lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub cold_median_s: f64,
    pub warm_median_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop_median_s: Option<f64>,
    /// median(cold) / median(warm) with a 95% bootstrap interval.
    pub speedup: RatioInterval,
    /// Share of the warm builds' work served from the cache (0..1), over all warm samples.
    pub hit_ratio: Option<f64>,
}

impl CaseResult {
    fn wall_times(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.wall_s).collect()
    }
}

/// Derives the comparisons from the successful cases. Pure, so it can be recomputed after
/// every case and from any results file.
pub fn comparisons(cases: &[CaseResult]) -> Vec<Comparison> {
    let find = |repo: &str, system, lane, scenario| {
        cases.iter().find(|c| {
            c.repo == repo
                && c.system == system
                && c.lane == lane
                && c.scenario == scenario
                && c.outcome == Outcome::Ok
        })
    };
    let mut out = Vec::new();
    for cold in cases
        .iter()
        .filter(|c| c.scenario == Scenario::Cold && c.outcome == Outcome::Ok)
    {
        let Some(warm) = find(&cold.repo, cold.system, cold.lane, Scenario::Warm) else {
            continue;
        };
        let (Some(cold_stats), Some(warm_stats)) = (&cold.stats, &warm.stats) else {
            continue;
        };
        let Some(speedup) = crate::stats::ratio_of_medians(&cold.wall_times(), &warm.wall_times())
        else {
            continue;
        };
        let (hits, needed) = warm
            .samples
            .iter()
            .filter_map(Sample::cache_hits)
            .fold((0, 0), |(h, n), (sh, sn)| (h + sh, n + sn));
        out.push(Comparison {
            repo: cold.repo.clone(),
            system: cold.system,
            lane: cold.lane,
            cold_median_s: cold_stats.median_s,
            warm_median_s: warm_stats.median_s,
            noop_median_s: find(&cold.repo, cold.system, cold.lane, Scenario::Noop)
                .and_then(|c| c.stats.as_ref())
                .map(|s| s.median_s),
            speedup,
            hit_ratio: (needed > 0).then(|| hits as f64 / needed as f64),
        });
    }
    out
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

    pub(crate) fn sample(wall: f64, built: u64, substituted: u64) -> Sample {
        Sample {
            wall_s: wall,
            user_s: 0.0,
            sys_s: 0.0,
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            built: Some(built),
            substituted: Some(substituted),
            downloaded_bytes: None,
            actions: None,
            remote_cache_hits: None,
            processes: None,
            by_mnemonic: BTreeMap::new(),
            notes: Vec::new(),
            overhead_s: 0.01,
        }
    }

    fn case(scenario: Scenario, samples: Vec<Sample>, outcome: Outcome) -> CaseResult {
        let walls: Vec<f64> = samples.iter().map(|s| s.wall_s).collect();
        CaseResult {
            repo: "r".into(),
            system: System::Nix,
            lane: Lane::Host,
            scenario,
            parameters: BTreeMap::new(),
            outcome,
            reason: None,
            cache: None,
            command: None,
            warmups: vec![],
            stats: Summary::of(&walls),
            samples,
            overhead_median_s: None,
        }
    }

    #[test]
    fn comparison_of_cold_warm_and_noop() {
        let cases = vec![
            case(
                Scenario::Cold,
                vec![sample(10.0, 21, 0), sample(12.0, 21, 0)],
                Outcome::Ok,
            ),
            case(
                Scenario::Warm,
                vec![sample(0.5, 0, 1), sample(0.5, 1, 3)],
                Outcome::Ok,
            ),
            case(Scenario::Noop, vec![sample(0.1, 0, 0)], Outcome::Ok),
        ];
        let cmp = comparisons(&cases);
        assert_eq!(cmp.len(), 1);
        assert_eq!(cmp[0].speedup.ratio, 22.0);
        assert_eq!(cmp[0].hit_ratio, Some(0.8));
        assert_eq!(cmp[0].noop_median_s, Some(0.1));
    }

    #[test]
    fn bazel_hit_ratio_counts_actions() {
        let bazel = |wall, actions, hits| Sample {
            built: None,
            substituted: None,
            actions: Some(actions),
            remote_cache_hits: Some(hits),
            ..sample(wall, 0, 0)
        };
        let cases = vec![
            case(Scenario::Cold, vec![bazel(8.0, 106, 0)], Outcome::Ok),
            case(
                Scenario::Warm,
                vec![bazel(4.0, 106, 106), bazel(4.0, 106, 53)],
                Outcome::Ok,
            ),
        ];
        let cmp = comparisons(&cases);
        assert_eq!(cmp[0].hit_ratio, Some(0.75));
        assert_eq!(cmp[0].speedup.ratio, 2.0);
    }

    #[test]
    fn no_comparison_without_a_successful_warm_case() {
        let cases = vec![
            case(Scenario::Cold, vec![sample(10.0, 21, 0)], Outcome::Ok),
            case(Scenario::Warm, vec![sample(0.5, 0, 1)], Outcome::Failed),
        ];
        assert!(comparisons(&cases).is_empty());
    }

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
}
