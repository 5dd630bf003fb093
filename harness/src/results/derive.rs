//! What a results file concludes, derived from its cases alone: cold/warm comparisons,
//! the fallback table, the fill penalties and the verdicts. Pure, so it is recomputed after every case and can
//! be recomputed from any results file.

use serde::{Deserialize, Serialize};

use super::{
    CacheFill, CaseKey, CaseResult, Comparison, FillMethod, Mismatch, MismatchClass, Outcome,
    ParamValue, Results, Sample, Thresholds,
};
use crate::results::{Lane, Scenario, System, VerifyPolicy};
use crate::stats::{median, numbers, RatioInterval};

/// Recomputes every derived part of `results` from its cases.
pub fn derive(results: &mut Results) {
    results.comparisons = comparisons(&results.cases);
    results.fallbacks = fallbacks(&results.cases);
    results.fills = fills(&results.cases);
    results.verdicts = verdicts(results);
    results.growth = super::growth::growth(&results.cases);
}

/// The successful case of `like`'s repo, system, lane and parameters in `scenario`.
pub fn ok_case<'a>(
    cases: &'a [CaseResult],
    like: &CaseResult,
    scenario: Scenario,
) -> Option<&'a CaseResult> {
    cases.iter().find(|c| {
        c.key() == like.key()
            && c.parameters == like.parameters
            && c.scenario == scenario
            && c.outcome == Outcome::Ok
    })
}

/// The successful cold case `like` is measured against: at its own parameters, else (a
/// later point of a compression sweep, which runs no cold case: cold reads no cache) at
/// the same parameters but the compression.
pub fn cold_case<'a>(cases: &'a [CaseResult], like: &CaseResult) -> Option<&'a CaseResult> {
    ok_case(cases, like, Scenario::Cold).or_else(|| {
        let key = super::Compression::PARAMETER;
        like.parameters.get(key)?;
        let others = |c: &CaseResult| {
            let mut parameters = c.parameters.clone();
            parameters.remove(key);
            parameters
        };
        cases.iter().find(|c| {
            c.key() == like.key()
                && c.scenario == Scenario::Cold
                && c.outcome == Outcome::Ok
                && c.parameters.contains_key(key)
                && others(c) == others(like)
        })
    })
}

/// Median CPU time of a case's samples.
pub fn cpu_median(case: &CaseResult) -> Option<f64> {
    let cpu: Vec<f64> = case.samples.iter().map(|s| s.user_s + s.sys_s).collect();
    (!cpu.is_empty()).then(|| median(&cpu))
}

/// Cold vs warm (and no-op) per repo, system and lane, from the successful cases: one per
/// warm case, so that every point of a compression sweep, whose one cold case ran at the
/// first point, is compared (and judged) too.
pub fn comparisons(cases: &[CaseResult]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for warm in cases
        .iter()
        .filter(|c| c.scenario == Scenario::Warm && c.outcome == Outcome::Ok)
    {
        let Some(cold) = cold_case(cases, warm) else {
            continue;
        };
        let (Some(cold_stats), Some(warm_stats)) = (&cold.stats, &warm.stats) else {
            continue;
        };
        let Some((speedup, pairs)) = speedup(cold, warm) else {
            continue;
        };
        out.push(Comparison {
            repo: warm.repo.clone(),
            system: warm.system,
            lane: warm.lane,
            parameters: warm.parameters.clone(),
            cold_median_s: cold_stats.median_s,
            warm_median_s: warm_stats.median_s,
            cold_cpu_median_s: cpu_median(cold),
            warm_cpu_median_s: cpu_median(warm),
            noop_median_s: ok_case(cases, cold, Scenario::Noop)
                .and_then(|c| c.stats.as_ref())
                .map(|s| s.median_s),
            speedup,
            pairs,
            hit_ratio: super::hit_ratio(&warm.samples),
        });
    }
    out
}

/// cold / warm: from the paired ratios when the samples alternated round by round (with
/// the number of pairs), else the ratio of the medians.
pub fn speedup(cold: &CaseResult, warm: &CaseResult) -> Option<(RatioInterval, Option<usize>)> {
    let (c, w) = (cold.walls(), warm.walls());
    if paired(cold, warm) {
        return crate::stats::paired_ratio(&c, &w).map(|r| (r, Some(c.len().min(w.len()))));
    }
    crate::stats::ratio_of_medians(&c, &w).map(|r| (r, None))
}

/// Whether two cases' samples were taken round by round (sample i of each in round i);
/// not when sequential, nor in files from before sampling was recorded.
pub fn paired(a: &CaseResult, b: &CaseResult) -> bool {
    a.sampling
        .as_ref()
        .zip(b.sampling.as_ref())
        .is_some_and(|(a, b)| a.pairs_with(b))
}

/// A `fill` case against its cold case (same repo, system, lane and parameters): what a
/// job that builds cold and then fills an empty team cache pays over one that only builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FillPenalty {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, ParamValue>,
    pub method: FillMethod,
    pub cold_median_s: f64,
    /// Median of the fill samples' build plus fill ([`Sample::with_fill_s`]).
    pub fill_median_s: f64,
    /// Median of the fill alone, after the build (0 where the tool uploads as it builds).
    pub fill_only_median_s: f64,
    /// (cold + fill) / cold. Interleaved: the median of the paired ratios, its 95% interval
    /// a bootstrap over the pairs; sequential: the ratio of the medians, both sides
    /// resampled independently (as speedups are).
    pub penalty: RatioInterval,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<usize>,
    /// Medians over the samples: store paths (Bazel: blobs and action results) and NAR
    /// bytes sent, bytes the server stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_paths: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Median of stored / sent: compression and deduplication together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_ratio: Option<f64>,
    /// Median share of the sent bytes the server said it already had (Attic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_fraction: Option<f64>,
}

/// Every successful `fill` case priced against its successful cold case.
pub fn fills(cases: &[CaseResult]) -> Vec<FillPenalty> {
    cases
        .iter()
        .filter(|c| c.scenario == Scenario::Fill && c.outcome == Outcome::Ok)
        .filter_map(|fill| {
            let cold = cold_case(cases, fill)?;
            let fills: Vec<&CacheFill> = fill
                .samples
                .iter()
                .filter_map(|s| s.fill.as_ref())
                .collect();
            let method = fills.first()?.method;
            let (penalty, pairs) = fill_penalty(cold, fill)?;
            let only: Vec<f64> = fills.iter().map(|f| f.wall_s).collect();
            let of = |field: fn(&CacheFill) -> Option<u64>| {
                let xs: Vec<f64> = fills
                    .iter()
                    .filter_map(|f| field(f))
                    .map(|x| x as f64)
                    .collect();
                (!xs.is_empty()).then(|| median(&xs).round() as u64)
            };
            let ratios = |field: fn(&CacheFill) -> Option<f64>| {
                let xs: Vec<f64> = fills.iter().filter_map(|f| field(f)).collect();
                (!xs.is_empty()).then(|| median(&xs))
            };
            Some(FillPenalty {
                repo: fill.repo.clone(),
                system: fill.system,
                lane: fill.lane,
                parameters: fill.parameters.clone(),
                method,
                cold_median_s: median(&cold.walls()),
                fill_median_s: median(&fill.walls()),
                fill_only_median_s: median(&only),
                penalty,
                pairs,
                uploaded_paths: of(|f| f.uploaded_paths),
                uploaded_bytes: of(|f| f.uploaded_bytes),
                stored_bytes: of(|f| f.stored_bytes),
                stored_ratio: ratios(|f| {
                    f.stored_bytes
                        .zip(f.uploaded_bytes.filter(|&b| b > 0))
                        .map(|(s, u)| s as f64 / u as f64)
                }),
                dedup_fraction: ratios(|f| f.dedup_fraction),
            })
        })
        .collect()
}

/// (cold + fill) / cold, paired when the samples alternated round by round (with the
/// number of pairs), else the ratio of the medians.
pub fn fill_penalty(
    cold: &CaseResult,
    fill: &CaseResult,
) -> Option<(RatioInterval, Option<usize>)> {
    let (c, f) = (cold.walls(), fill.walls());
    if paired(cold, fill) {
        return crate::stats::paired_ratio(&f, &c).map(|r| (r, Some(c.len().min(f.len()))));
    }
    crate::stats::ratio_of_medians(&f, &c).map(|r| (r, None))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FallbackOutcome {
    /// Every build through the faulty cache succeeded.
    Survived,
    /// A build through the faulty cache failed; the harness's retry without it succeeded.
    Recovered,
    /// A build through the faulty cache ran past the fallback timeout and was killed.
    Hung,
    /// Not even the retry without the cache succeeded.
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FallbackRow {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub scenario: Scenario,
    pub outcome: FallbackOutcome,
    /// Median time until a build had a result (with the retry, if any).
    pub time_s: Option<f64>,
    /// time_s / median(cold).
    pub penalty: Option<f64>,
    /// The tool warned or failed before the timeout: it noticed something was wrong with
    /// the cache (what it prints after being killed does not count).
    pub detected_by_tool: bool,
    /// Median number of items (store paths, actions) still taken from the cache.
    pub from_cache: Option<u64>,
    /// Outputs equal to a clean build's (absent when not compared).
    pub verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FallbackOutcome {
    /// The name results and reports use for it.
    pub fn name(self) -> &'static str {
        match self {
            FallbackOutcome::Survived => "survived",
            FallbackOutcome::Recovered => "recovered",
            FallbackOutcome::Hung => "hung",
            FallbackOutcome::Failed => "failed",
            FallbackOutcome::Skipped => "skipped",
        }
    }
}

fn fallback_outcome(case: &CaseResult) -> FallbackOutcome {
    match case.outcome {
        Outcome::Skipped => FallbackOutcome::Skipped,
        Outcome::Failed | Outcome::Invalid => FallbackOutcome::Failed,
        Outcome::Ok if case.samples.iter().any(|s| s.timed_out) => FallbackOutcome::Hung,
        Outcome::Ok if case.samples.iter().any(|s| s.retry.is_some()) => FallbackOutcome::Recovered,
        Outcome::Ok => FallbackOutcome::Survived,
    }
}

/// The fallback table: one row per fallback case.
pub fn fallbacks(cases: &[CaseResult]) -> Vec<FallbackRow> {
    cases
        .iter()
        .filter(|c| matches!(c.scenario, Scenario::Fallback { .. }))
        .map(|case| {
            let times: Vec<f64> = case.samples.iter().map(Sample::time_to_result_s).collect();
            let time_s = (!times.is_empty()).then(|| median(&times));
            let cold_median = ok_case(cases, case, Scenario::Cold)
                .and_then(|c| c.stats.as_ref())
                .map(|s| s.median_s);
            let from_cache: Vec<f64> = case
                .samples
                .iter()
                .filter_map(|s| s.from_cache().map(|n| n as f64))
                .collect();
            FallbackRow {
                repo: case.repo.clone(),
                system: case.system,
                lane: case.lane,
                scenario: case.scenario,
                outcome: fallback_outcome(case),
                time_s,
                penalty: time_s.zip(cold_median).map(|(t, c)| t / c),
                detected_by_tool: case
                    .samples
                    .iter()
                    .any(|s| !s.timed_out && (!s.messages.is_empty() || !s.succeeded())),
                from_cache: (!from_cache.is_empty()).then(|| median(&from_cache).round() as u64),
                verified: case.verification.as_ref().map(|v| v.mismatches.is_empty()),
                reason: case.reason.clone(),
            }
        })
        .collect()
}

/// One pass/fail judgement with what it was judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Check {
    pub pass: bool,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub detail: String,
}

/// The platform's success criteria for one repo, system and lane. A verdict is absent when
/// the run had no case that could judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verdicts {
    pub repo: String,
    pub system: System,
    pub lane: Lane,
    pub cache_use: Option<Check>,
    pub speedup: Option<Check>,
    pub fallback: Option<Check>,
    pub verified: Option<Check>,
}

impl Verdicts {
    /// The verdicts judged, by name, in reading order.
    pub fn checks(&self) -> impl Iterator<Item = (&'static str, &Check)> {
        [
            ("cache_use", &self.cache_use),
            ("speedup", &self.speedup),
            ("fallback", &self.fallback),
            ("verified", &self.verified),
        ]
        .into_iter()
        .filter_map(|(name, check)| Some((name, check.as_ref()?)))
    }

    /// How many verdicts failed.
    pub fn failed(&self) -> usize {
        self.checks().filter(|(_, c)| !c.pass).count()
    }
}

/// What a verdict requires, in words, with its threshold: `warm hit ratio at least 90.0%`.
pub fn requirement(verdict: &str, threshold: Option<f64>) -> String {
    let at = |show: fn(f64) -> String| threshold.map_or("the threshold".into(), show);
    match verdict {
        "cache_use" => format!("warm hit ratio at least {}", at(numbers::percent)),
        "speedup" => format!("95% interval's low end above {}", at(numbers::ratio)),
        "fallback" => format!(
            "every fault survived or recovered within {} the cold median",
            at(numbers::ratio)
        ),
        "verified" => {
            "no wrong output from the cache (with --verify strict, every step reproducible too)"
                .into()
        }
        other => other.to_string(),
    }
}

fn verdicts(results: &Results) -> Vec<Verdicts> {
    let t = &results.settings.thresholds;
    let mut keys: Vec<CaseKey> = results.cases.iter().map(CaseResult::key).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let comparisons: Vec<&Comparison> = results
                .comparisons
                .iter()
                .filter(|c| c.key() == key)
                .collect();
            // A sweep has a comparison per point: a verdict judges the weakest and names it.
            let weakest = |weight: fn(&Comparison) -> f64| {
                comparisons
                    .iter()
                    .copied()
                    .min_by(|a, b| weight(a).total_cmp(&weight(b)))
            };
            let at_point =
                |check: Check, c: &Comparison| match results.sweep_point(key, &c.parameters) {
                    Some(point) => Check {
                        detail: format!(
                            "at {point}, the weakest of {} points: {}",
                            comparisons.len(),
                            check.detail
                        ),
                        ..check
                    },
                    None => check,
                };
            let rows: Vec<&FallbackRow> = results
                .fallbacks
                .iter()
                .filter(|r| r.key() == key)
                .collect();
            let verified_cases: Vec<&CaseResult> = results
                .cases
                .iter()
                .filter(|c| c.key() == key && c.verification.is_some())
                .collect();
            Verdicts {
                repo: key.repo.to_string(),
                system: key.system,
                lane: key.lane,
                cache_use: weakest(|c| c.hit_ratio.unwrap_or(f64::INFINITY))
                    .and_then(|c| cache_use_check(c, t).map(|check| at_point(check, c))),
                speedup: match invalid_cold(&results.cases, key) {
                    Some(reason) => Some(Check {
                        pass: false,
                        value: None,
                        threshold: Some(t.min_speedup),
                        detail: format!("no speedup: the cold case is invalid ({reason})"),
                    }),
                    None => weakest(|c| c.speedup.ci_low.unwrap_or(f64::NEG_INFINITY))
                        .map(|c| at_point(speedup_check(c, t), c)),
                },
                fallback: (!rows.is_empty()).then(|| fallback_check(&rows, t)),
                verified: (!verified_cases.is_empty())
                    .then(|| verified_check(&verified_cases, results.settings.verify)),
            }
        })
        .collect()
}

/// Why the key's cold case measured the wrong thing, if it did.
fn invalid_cold<'a>(cases: &'a [CaseResult], key: CaseKey) -> Option<&'a str> {
    cases
        .iter()
        .find(|c| c.key() == key && c.scenario == Scenario::Cold && c.outcome == Outcome::Invalid)
        .map(|c| c.reason.as_deref().unwrap_or("no reason recorded"))
}

fn cache_use_check(c: &Comparison, t: &Thresholds) -> Option<Check> {
    let ratio = c.hit_ratio?;
    Some(Check {
        pass: ratio >= t.min_hit_ratio,
        value: Some(ratio),
        threshold: Some(t.min_hit_ratio),
        detail: format!(
            "{} of the warm builds' work came from the cache",
            numbers::percent(ratio)
        ),
    })
}

fn speedup_check(c: &Comparison, t: &Thresholds) -> Check {
    let s = &c.speedup;
    let detail = match s.interval() {
        Some((low, high)) => format!(
            "{}, 95% interval [{}, {}]",
            numbers::ratio(s.ratio),
            numbers::ratio(low),
            numbers::ratio(high)
        ),
        None => format!(
            "{}, no 95% interval (fewer than 3 samples on a side): it cannot pass without one; take more samples",
            numbers::ratio(s.ratio)
        ),
    };
    Check {
        pass: s.ci_low.is_some_and(|low| low > t.min_speedup),
        value: Some(s.ratio),
        threshold: Some(t.min_speedup),
        detail,
    }
}

fn fallback_check(rows: &[&FallbackRow], t: &Thresholds) -> Check {
    let mut problems = Vec::new();
    for r in rows {
        match r.outcome {
            FallbackOutcome::Survived | FallbackOutcome::Recovered => {
                if let Some(p) = r.penalty.filter(|p| *p > t.max_fallback_penalty) {
                    problems.push(format!(
                        "{}: {} the cold time",
                        r.scenario,
                        numbers::ratio(p)
                    ));
                }
            }
            other => problems.push(format!("{}: {}", r.scenario, other.name())),
        }
    }
    let worst = rows
        .iter()
        .filter_map(|r| r.penalty)
        .fold(None, |acc: Option<f64>, p| {
            Some(acc.map_or(p, |a| a.max(p)))
        });
    Check {
        pass: problems.is_empty(),
        value: worst,
        threshold: Some(t.max_fallback_penalty),
        detail: if problems.is_empty() {
            format!(
                "{} survived or recovered within the bound",
                if rows.len() == 1 {
                    "the fault".to_string()
                } else {
                    format!("all {} faults", rows.len())
                }
            )
        } else {
            problems.join("; ")
        },
    }
}

/// Fails on any output the cache served wrong (or that no second clean build could
/// classify); a non-reproducible step is named with its consumers, and fails only under
/// `--verify strict`.
fn verified_check(cases: &[&CaseResult], policy: VerifyPolicy) -> Check {
    let mut problems = Vec::new();
    let mut reported = Vec::new();
    let (mut compared, mut differing) = (0, 0);
    for case in cases {
        let v = case
            .verification
            .as_ref()
            .expect("filtered on verification");
        compared += v.compared;
        differing += v.mismatches.len();
        let not_reproducible = v.count(MismatchClass::NotReproducible);
        let wrong: Vec<&Mismatch> = v
            .mismatches
            .iter()
            .filter(|m| m.class != Some(MismatchClass::NotReproducible))
            .collect();
        if let Some(m) = wrong.first() {
            let classified = m.class.is_some_and(|c| c != MismatchClass::Unclassified);
            let root = m.because_of.first().or(m.step.as_ref());
            problems.push(format!(
                "{}: {} {} from a clean build{}, e.g. {}{}",
                case.scenario,
                numbers::count_of(wrong.len(), "output"),
                if wrong.len() == 1 {
                    "differs"
                } else {
                    "differ"
                },
                if classified {
                    " (the cache served a wrong output: both clean builds agree)"
                } else {
                    " (unclassified)"
                },
                m.path,
                root.map_or(String::new(), |r| format!(", first at fault: {r}")),
            ));
        }
        let roots: Vec<String> = v
            .roots
            .iter()
            .filter(|r| r.class == MismatchClass::NotReproducible)
            .map(|r| match r.consumers.len() {
                0 => r.step.clone(),
                n => format!("{} (consumed by {})", r.step, numbers::count_of(n, "step")),
            })
            .collect();
        if not_reproducible > 0 {
            let text = format!(
                "{}: {} not reproducible (two clean builds differ): {}; {} {} because of it",
                case.scenario,
                numbers::count_of(roots.len().max(1), "step"),
                if roots.is_empty() {
                    "unnamed".to_string()
                } else {
                    roots.join(", ")
                },
                numbers::count_of(not_reproducible, "output"),
                if not_reproducible == 1 {
                    "differs"
                } else {
                    "differ"
                },
            );
            match policy {
                VerifyPolicy::Strict => problems.push(text),
                VerifyPolicy::Cache => reported.push(text),
            }
        }
    }
    let pass = problems.is_empty();
    let mut detail = if pass {
        let equal = compared.saturating_sub(differing);
        format!(
            "{} equal to a clean build's in {}",
            if equal == compared {
                numbers::count_of(compared, "output")
            } else {
                format!("{equal} of {}", numbers::count_of(compared, "output"))
            },
            numbers::count_of(cases.len(), "case")
        )
    } else {
        problems.join("; ")
    };
    if !reported.is_empty() {
        detail.push_str(&format!(
            "; {} (not the cache's fault: fails only with --verify strict)",
            reported.join("; ")
        ));
    }
    Check {
        pass,
        value: None,
        threshold: None,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::super::CaseResult;
    use super::*;
    use crate::stats::Summary;
    use std::collections::BTreeMap;

    fn sample(wall: f64, built: u64, substituted: u64) -> Sample {
        Sample {
            wall_s: wall,
            exit_code: Some(0),
            built: Some(built),
            substituted: Some(substituted),
            overhead_s: 0.01,
            ..Sample::default()
        }
    }

    fn case(scenario: Scenario, samples: Vec<Sample>, outcome: Outcome) -> CaseResult {
        let key = CaseKey {
            repo: "r",
            system: System::Nix,
            lane: Lane::Host,
        };
        let walls: Vec<f64> = samples.iter().map(|s| s.wall_s).collect();
        CaseResult {
            outcome,
            stats: Summary::of(&walls),
            samples,
            ..CaseResult::new(key, scenario, BTreeMap::new())
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

    fn results(cases: Vec<CaseResult>) -> Results {
        let mut r: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        r.cases = cases;
        derive(&mut r);
        r
    }

    fn fallback(fault: crate::results::Fault, samples: Vec<Sample>) -> CaseResult {
        case(
            Scenario::Fallback {
                fault,
                tuned: false,
            },
            samples,
            Outcome::Ok,
        )
    }

    fn fill_sample(build: f64, fill: f64) -> Sample {
        Sample {
            fill: Some(CacheFill {
                closure_paths: Some(40),
                uploaded_paths: Some(40),
                uploaded_bytes: Some(1000),
                stored_bytes: Some(250),
                ..CacheFill::timed(FillMethod::NixCopy, fill)
            }),
            ..sample(build, 21, 0)
        }
    }

    #[test]
    fn the_fill_penalty_is_cold_plus_fill_over_cold_with_an_interval() {
        let cold = case(
            Scenario::Cold,
            [10.0, 11.0, 9.0, 10.0, 10.5]
                .map(|w| sample(w, 21, 0))
                .to_vec(),
            Outcome::Ok,
        );
        let fill = case(
            Scenario::Fill,
            [
                (10.0, 5.0),
                (11.0, 4.0),
                (9.0, 6.0),
                (10.0, 5.0),
                (10.5, 5.0),
            ]
            .map(|(b, f)| fill_sample(b, f))
            .to_vec(),
            Outcome::Ok,
        );
        // The case's own statistics are of build + fill.
        assert_eq!(fill.walls()[0], 15.0);
        let r = results(vec![cold.clone(), fill.clone()]);
        assert_eq!(r.fills.len(), 1);
        let row = &r.fills[0];
        assert_eq!(row.method, FillMethod::NixCopy);
        assert_eq!(row.cold_median_s, 10.0);
        assert_eq!(row.fill_median_s, 15.0);
        assert_eq!(row.fill_only_median_s, 5.0);
        assert!((row.penalty.ratio - 1.5).abs() < 1e-9, "{row:?}");
        let (low, high) = (row.penalty.ci_low.unwrap(), row.penalty.ci_high.unwrap());
        assert!(low <= 1.5 && 1.5 <= high && low > 1.0, "{low} {high}");
        assert_eq!(row.pairs, None, "sequential: the ratio of the medians");
        assert_eq!(
            (row.uploaded_paths, row.uploaded_bytes, row.stored_bytes),
            (Some(40), Some(1000), Some(250))
        );
        assert_eq!(row.stored_ratio, Some(0.25));
        assert_eq!(row.dedup_fraction, None);

        // Taken round by round, the penalty is the median of the paired ratios.
        let interleaved = crate::results::Sampling {
            order: crate::results::SampleOrder::Interleaved,
            group: vec![Scenario::Cold, Scenario::Fill],
        };
        let (mut cold, mut fill) = (cold, fill);
        cold.sampling = Some(interleaved.clone());
        fill.sampling = Some(interleaved);
        let (penalty, pairs) = fill_penalty(&cold, &fill).unwrap();
        assert_eq!(pairs, Some(5));
        assert!((penalty.ratio - 1.5).abs() < 1e-9, "{penalty:?}");

        // No cold case, or a failed fill case: nothing to price.
        assert!(results(vec![fill.clone()]).fills.is_empty());
        fill.outcome = Outcome::Failed;
        assert!(results(vec![cold, fill]).fills.is_empty());
    }

    #[test]
    fn fallback_rows_classify_and_price_each_fault() {
        use crate::results::Fault;
        let mut failed_first = sample(30.0, 21, 0);
        failed_first.exit_code = Some(1);
        failed_first.messages = vec!["error: hash mismatch".into()];
        failed_first.retry = Some(super::super::Attempt {
            wall_s: 10.0,
            exit_code: Some(0),
            ..Default::default()
        });
        let mut hung = sample(120.0, 0, 0);
        hung.timed_out = true;
        hung.exit_code = None;
        let r = results(vec![
            case(Scenario::Cold, vec![sample(10.0, 21, 0)], Outcome::Ok),
            fallback(Fault::Refuse, vec![sample(11.0, 21, 0)]),
            fallback(Fault::Corrupt, vec![failed_first]),
            fallback(Fault::Blackhole, vec![hung]),
        ]);
        let rows = &r.fallbacks;
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].outcome, FallbackOutcome::Survived);
        assert!(!rows[0].detected_by_tool);
        assert!((rows[0].penalty.unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(rows[1].outcome, FallbackOutcome::Recovered);
        assert_eq!(rows[1].time_s, Some(40.0));
        assert!(rows[1].detected_by_tool);
        assert_eq!(rows[2].outcome, FallbackOutcome::Hung);

        let verdict = r.verdicts[0].fallback.as_ref().unwrap();
        assert!(!verdict.pass);
        // Recovered at 4x the cold time is over the default bound of 3x; hung always fails.
        assert!(
            verdict.detail.contains("fallback:corrupt: 4.00x")
                && verdict.detail.contains("fallback:blackhole: hung"),
            "{}",
            verdict.detail
        );
        assert_eq!(verdict.value, Some(12.0));
    }

    #[test]
    fn verdicts_judge_cache_use_speedup_and_verification() {
        let mut verify = case(Scenario::Verify, vec![sample(10.0, 21, 0)], Outcome::Ok);
        verify.verification = Some(super::super::Verification {
            clean: "a clean rebuild".into(),
            compared: 3,
            mismatches: vec![super::super::Mismatch {
                path: "bazel-out/x.txt".into(),
                from_cache: "aa/1".into(),
                clean: "bb/1".into(),
                ..Default::default()
            }],
            roots: Vec::new(),
            scope: None,
        });
        let r = results(vec![
            case(
                Scenario::Cold,
                vec![sample(10.0, 21, 0), sample(10.5, 21, 0), sample(9.8, 21, 0)],
                Outcome::Ok,
            ),
            case(
                Scenario::Warm,
                vec![sample(0.5, 0, 1), sample(0.6, 0, 1), sample(0.55, 0, 1)],
                Outcome::Ok,
            ),
            verify,
        ]);
        let v = &r.verdicts[0];
        assert!(v.cache_use.as_ref().unwrap().pass);
        assert!(v.speedup.as_ref().unwrap().pass);
        assert!(v.fallback.is_none());
        let verified = v.verified.as_ref().unwrap();
        assert!(
            !verified.pass && verified.detail.contains("bazel-out/x.txt"),
            "{}",
            verified.detail
        );
    }

    #[test]
    fn a_non_reproducible_step_fails_the_verdict_only_when_strict() {
        use super::super::{FaultRoot, Mismatch, MismatchClass, Verification};
        let mismatch = |path: &str, class| Mismatch {
            path: path.into(),
            from_cache: "a".into(),
            clean: "b".into(),
            second_clean: Some("c".into()),
            class: Some(class),
            step: Some("genrule //:stamp".into()),
            because_of: Vec::new(),
        };
        let verified = |class, policy| {
            let mut verify = case(Scenario::Verify, vec![sample(10.0, 21, 0)], Outcome::Ok);
            verify.verification = Some(Verification {
                clean: "a clean rebuild".into(),
                compared: 5,
                mismatches: vec![mismatch("stamp.txt", class)],
                roots: vec![FaultRoot {
                    step: "genrule //:stamp".into(),
                    class,
                    outputs: vec!["stamp.txt".into()],
                    consumers: Vec::new(),
                }],
                scope: None,
            });
            let mut r = results(vec![verify]);
            r.settings.verify = policy;
            derive(&mut r);
            r.verdicts[0].verified.clone().unwrap()
        };
        let lenient = verified(MismatchClass::NotReproducible, VerifyPolicy::Cache);
        assert!(lenient.pass, "{}", lenient.detail);
        assert!(
            lenient.detail.starts_with("4 of 5 outputs equal")
                && lenient.detail.contains("1 step not reproducible")
                && lenient.detail.contains("genrule //:stamp")
                && lenient.detail.contains("--verify strict"),
            "{}",
            lenient.detail
        );
        let strict = verified(MismatchClass::NotReproducible, VerifyPolicy::Strict);
        assert!(
            !strict.pass && strict.detail.contains("genrule //:stamp"),
            "{}",
            strict.detail
        );
        for policy in [VerifyPolicy::Cache, VerifyPolicy::Strict] {
            let wrong = verified(MismatchClass::WrongFromCache, policy);
            assert!(!wrong.pass);
            assert!(
                wrong.detail.contains("the cache served a wrong output")
                    && wrong.detail.contains("first at fault: genrule //:stamp"),
                "{}",
                wrong.detail
            );
        }
    }

    #[test]
    fn an_invalid_cold_case_gives_no_speedup_and_a_failing_verdict() {
        let mut cold = case(
            Scenario::Cold,
            vec![sample(3.0, 0, 25), sample(2.7, 0, 25), sample(4.5, 0, 25)],
            Outcome::Invalid,
        );
        cold.reason = Some("cold is not cold: sample 1 took 25 item(s)".into());
        let r = results(vec![
            cold,
            case(
                Scenario::Warm,
                vec![sample(2.1, 0, 25), sample(2.0, 0, 25), sample(2.2, 0, 25)],
                Outcome::Ok,
            ),
        ]);
        assert!(
            r.comparisons.is_empty(),
            "no speedup from an invalid cold case"
        );
        let speedup = r.verdicts[0].speedup.as_ref().unwrap();
        assert!(
            !speedup.pass && speedup.detail.contains("cold is not cold"),
            "{speedup:?}"
        );
    }

    #[test]
    fn a_speedup_without_an_interval_cannot_pass() {
        // One cold and one warm sample: a ratio, but nothing to say how sure it is.
        let r = results(vec![
            case(Scenario::Cold, vec![sample(7.33, 21, 0)], Outcome::Ok),
            case(Scenario::Warm, vec![sample(0.1, 0, 21)], Outcome::Ok),
        ]);
        assert_eq!(r.comparisons[0].speedup.interval(), None);
        let speedup = r.verdicts[0].speedup.as_ref().unwrap();
        assert!(!speedup.pass);
        assert!(
            speedup.detail.contains("73.3x, no 95% interval"),
            "{}",
            speedup.detail
        );
    }

    #[test]
    fn a_sweep_is_judged_at_its_weakest_point_and_names_it() {
        use crate::results::ParamValue;
        let at = |size: i64, mut c: CaseResult| {
            c.parameters = BTreeMap::from([
                ("size".to_string(), ParamValue::Int(size)),
                ("work".to_string(), ParamValue::Int(200)),
            ]);
            c
        };
        let steady = |wall: f64, built, substituted| vec![sample(wall, built, substituted); 3];
        let r = results(vec![
            at(2, case(Scenario::Cold, steady(2.0, 3, 0), Outcome::Ok)),
            at(2, case(Scenario::Warm, steady(1.0, 1, 2), Outcome::Ok)),
            at(8, case(Scenario::Cold, steady(8.0, 9, 0), Outcome::Ok)),
            at(8, case(Scenario::Warm, steady(0.1, 0, 9), Outcome::Ok)),
        ]);
        assert_eq!(r.comparisons.len(), 2);
        let points: Vec<Option<String>> = r
            .comparisons
            .iter()
            .map(|c| r.sweep_point(c.key(), &c.parameters))
            .collect();
        assert_eq!(points, [Some("size=2".into()), Some("size=8".into())]);
        let v = &r.verdicts[0];
        let speedup = v.speedup.as_ref().unwrap();
        assert_eq!(speedup.value, Some(2.0), "size=2's 2x, not size=8's 80x");
        assert!(
            speedup
                .detail
                .starts_with("at size=2, the weakest of 2 points: 2.00x"),
            "{}",
            speedup.detail
        );
        let cache_use = v.cache_use.as_ref().unwrap();
        assert!(!cache_use.pass, "size=2 built a third of its work");
        assert!(
            cache_use.detail.starts_with("at size=2,"),
            "{}",
            cache_use.detail
        );
    }

    #[test]
    fn a_later_compression_point_is_priced_against_the_sweeps_one_cold_case() {
        let at = |mut c: CaseResult, compression: &str, size: i64| {
            c.parameters = BTreeMap::from([
                ("compression".into(), ParamValue::Str(compression.into())),
                ("size".into(), ParamValue::Int(size)),
            ]);
            c
        };
        let cold = at(
            case(Scenario::Cold, vec![sample(10.0, 3, 0); 3], Outcome::Ok),
            "none",
            4,
        );
        let fill = |compression| {
            let samples = vec![fill_sample(10.0, 5.0); 3];
            at(case(Scenario::Fill, samples, Outcome::Ok), compression, 4)
        };
        let other_size = at(
            case(Scenario::Cold, vec![sample(99.0, 3, 0); 3], Outcome::Ok),
            "none",
            8,
        );
        let cases = vec![other_size, cold.clone(), fill("none"), fill("xz")];
        assert_eq!(
            cold_case(&cases, &cases[3]),
            Some(&cold),
            "same size, another compression"
        );
        assert_eq!(cold_case(&cases, &cases[2]), Some(&cold));
        let r = results(cases);
        assert_eq!(r.fills.len(), 2, "{:?}", r.fills);
        assert!(r.fills.iter().all(|f| (f.penalty.ratio - 1.5).abs() < 1e-9));
        // Outside a compression sweep the parameters must match exactly.
        let plain = case(Scenario::Fill, vec![fill_sample(10.0, 5.0); 3], Outcome::Ok);
        assert_eq!(cold_case(&[at(plain.clone(), "xz", 4)], &plain), None);
    }

    #[test]
    fn every_compression_point_is_compared_and_the_weakest_judged() {
        let at = |mut c: CaseResult, compression: &str| {
            c.parameters =
                BTreeMap::from([("compression".into(), ParamValue::Str(compression.into()))]);
            c
        };
        let warm = |wall: f64, compression| {
            at(
                case(Scenario::Warm, vec![sample(wall, 0, 3); 3], Outcome::Ok),
                compression,
            )
        };
        let r = results(vec![
            at(
                case(Scenario::Cold, vec![sample(40.0, 3, 0); 3], Outcome::Ok),
                "none",
            ),
            warm(4.0, "none"),
            warm(10.0, "xz"),
            warm(5.0, "zstd"),
        ]);
        let speedups: Vec<f64> = r.comparisons.iter().map(|c| c.speedup.ratio).collect();
        assert_eq!(speedups.len(), 3, "one comparison per warm point");
        assert!((speedups[1] - 4.0).abs() < 1e-9, "{speedups:?}");
        assert!((r.comparisons[1].cold_median_s - 40.0).abs() < 1e-9);
        assert_eq!(
            r.comparisons[1].parameters.get("compression"),
            Some(&ParamValue::Str("xz".into()))
        );
    }

    #[test]
    fn a_run_without_a_sweep_has_no_sweep_point() {
        let r = results(vec![
            case(Scenario::Cold, vec![sample(2.0, 3, 0); 3], Outcome::Ok),
            case(Scenario::Warm, vec![sample(1.0, 0, 3); 3], Outcome::Ok),
        ]);
        let c = &r.comparisons[0];
        assert_eq!(r.sweep_point(c.key(), &c.parameters), None);
        let speedup = r.verdicts[0].speedup.as_ref().unwrap();
        assert!(speedup.detail.starts_with("2.00x"), "{}", speedup.detail);
    }
}
