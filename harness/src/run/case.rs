//! One case, step by step: prime (a clean build that fills the cache), put the fault
//! proxy in front of the cache, take the reference outputs, time the samples (retrying
//! a build a faulty cache broke; a `fill` sample's build then fills a fresh cache), try
//! the tool's own fallback, record the verification.

use std::path::PathBuf;

use crate::cache::proxy::{FaultProxy, Mode, NarinfoSigner};
use crate::cache::CacheRoute;
use crate::error::{CaseFailure, IoContext, StepResult};
use crate::exec::process::{self, Executor};
use crate::exec::scratch::remove_tree;
use crate::plan::{Fault, Link, Scenario, Settings};
use crate::results::explain::{CacheLink, TransferFloor};
use crate::results::{
    hit_ratio, CaseResult, FallbackInfo, FillMethod, Mismatch, Outcome, Sample, ToolFallback,
    Verification, VerifyScope,
};
use crate::run::build::{run_build, Want};
use crate::run::events::{emit, Event, EventSink};
use crate::run::fallback::{plan_fault, plan_link, proxy_counts};
use crate::run::verify::{classify, compared_outputs, Builds};
use crate::stats::stopping::{StopReason, StoppingRule};
use crate::tools::build_graph::BuildGraph;
use crate::tools::{BuildDriver, BuildMode, CaseContext, Outputs};

/// What every step of one case works with.
pub struct CaseRun<'r, 's> {
    pub index: usize,
    pub scenario: Scenario,
    pub ctx: CaseContext<'r>,
    pub driver: &'r mut dyn BuildDriver,
    pub exec: &'r dyn Executor,
    pub settings: &'r Settings,
    /// A warm case's cold counterpart (same repo, system, lane and parameters): its
    /// samples' wall times, so sampling can go on until the speedup is as precise as asked.
    pub cold_walls: Option<Vec<f64>>,
    /// The cache link measured for the run, for warm samples' transfer floors.
    pub cache_link: Option<CacheLink>,
    /// The case's private folder; removed when the case is done.
    pub dir: PathBuf,
    pub sinks: &'r mut [&'s mut dyn EventSink],
}

/// Records a case as skipped, with the reason.
pub fn skip(result: &mut CaseResult, reason: String) {
    result.outcome = Outcome::Skipped;
    result.reason = Some(reason);
}

/// What a case's outputs are checked against.
enum Reference {
    None,
    /// Each sample read the cache: compared with the clean priming build (fallback).
    Clean(Outputs),
    /// Each sample is a clean rebuild: the build from the cache is compared with it (verify):
    /// its outputs within `--verify-depth`, its graph, how many outputs its closure has.
    FromCache {
        outputs: Outputs,
        graph: BuildGraph,
        closure: usize,
    },
}

impl Reference {
    fn describe(&self) -> Option<&'static str> {
        match self {
            Reference::None => None,
            Reference::Clean(_) => Some("the priming build, a clean build without any cache"),
            Reference::FromCache { .. } => Some("a clean rebuild without any cache (each sample)"),
        }
    }

    /// What a build is asked for to be checked against this reference.
    fn want(&self) -> Want {
        match self {
            Reference::None => Want::Nothing,
            Reference::Clean(_) | Reference::FromCache { .. } => Want::Graph,
        }
    }
}

/// A build's outputs and graph, as checked.
struct Built {
    outputs: Outputs,
    graph: Option<BuildGraph>,
}

/// The outputs compared so far and every mismatch, once per path.
#[derive(Default)]
struct Checked {
    compared: usize,
    mismatches: Vec<Mismatch>,
    /// The graph of the build the mismatches' other side came from: verify's first clean
    /// rebuild, a fallback's first build (from the cache) that differed.
    graph: Option<BuildGraph>,
}

impl Checked {
    fn add(&mut self, reference: &Reference, built: Built) {
        let found = match reference {
            Reference::None => return,
            Reference::Clean(clean) => {
                self.compared = self.compared.max(clean.len());
                compare_outputs(clean, &built.outputs)
            }
            Reference::FromCache { outputs, .. } => {
                // The closure the build from the cache has: what the clean build built
                // besides (Nix's build-time inputs) was never served by the cache.
                let clean: Outputs = built
                    .outputs
                    .into_iter()
                    .filter(|(path, _)| outputs.contains_key(path))
                    .collect();
                self.compared = self.compared.max(outputs.len());
                compare_outputs(&clean, outputs)
            }
        };
        let keep = matches!(reference, Reference::FromCache { .. }) || !found.is_empty();
        if keep && self.graph.is_none() {
            self.graph = built.graph;
        }
        for m in found {
            if !self.mismatches.iter().any(|x| x.path == m.path) {
                self.mismatches.push(m);
            }
        }
    }
}

/// Why a case's samples measured the wrong thing, if they did: a cold sample (or verify's
/// clean rebuild, or a fill sample's build) that took items from the team cache was not
/// cold, whatever it cost.
pub fn cold_guard(scenario: Scenario, samples: &[Sample]) -> Option<String> {
    if !matches!(scenario, Scenario::Cold | Scenario::Verify | Scenario::Fill) {
        return None;
    }
    let (n, hits) = samples
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.from_team_cache.filter(|&h| h > 0).map(|h| (i + 1, h)))?;
    Some(format!(
        "cold is not cold: sample {n} (samples[{}] in the JSON) took {} from a cache it must not read (a disk or remote cache set outside the harness, e.g. in the workspace's .bazelrc); no speedup is derived from it",
        n - 1,
        crate::stats::numbers::count(hits, "item")
    ))
}

/// Every output whose digest differs, or that only one side has.
pub fn compare_outputs(clean: &Outputs, from_cache: &Outputs) -> Vec<Mismatch> {
    const ABSENT: &str = "absent";
    let mut paths: Vec<&String> = clean.keys().chain(from_cache.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (a, b) = (clean.get(path), from_cache.get(path));
            (a != b).then(|| Mismatch {
                path: path.clone(),
                from_cache: b.map_or(ABSENT.into(), Clone::clone),
                clean: a.map_or(ABSENT.into(), Clone::clone),
                ..Mismatch::default()
            })
        })
        .collect()
}

/// What a case carries from its set-up to its end: the fault proxy (fallback), the
/// reference outputs and what was checked against them.
pub struct Begun {
    proxy: Option<FaultProxy>,
    /// The shaped link's proxy, kept for as long as the case's builds read through it.
    _link: Option<FaultProxy>,
    reference: Reference,
    checked: Checked,
}

impl CaseRun<'_, '_> {
    /// Runs every step of the case into `result`.
    pub fn execute(mut self, result: &mut CaseResult) -> StepResult<()> {
        let Some(mut begun) = self.begin(result)? else {
            return Ok(());
        };
        self.samples(&mut begun, result)?;
        self.end(begun, result)
    }

    /// Everything before the samples: the tool, priming, filling the cache, the fault
    /// proxy and the reference outputs. `None` when the case is skipped.
    pub fn begin(&mut self, result: &mut CaseResult) -> StepResult<Option<Begun>> {
        result.tool = Some(self.driver.tool_use(&self.ctx)?);
        if self.scenario.uses_cache() {
            result.cache = self.driver.cache_use(&self.ctx);
        }
        if self.scenario == Scenario::Fill {
            if let Some(reason) = self.driver.fill_unavailable(&self.ctx) {
                skip(result, reason);
                return Ok(None);
            }
        }
        let route = match self.scenario.fault() {
            None => None,
            Some(fault) => match plan_fault(fault, self.driver.cache_location(&self.ctx)) {
                Ok(route) => Some((fault, route)),
                Err(reason) => {
                    skip(result, reason);
                    return Ok(None);
                }
            },
        };
        let link = match self.scenario {
            Scenario::Warm => self.ctx.repo.link(self.settings.link),
            _ => None,
        };
        let link = match link.map(|link| (link, plan_link(self.driver.cache_location(&self.ctx)))) {
            None => None,
            Some((link, Ok(route))) => Some((link, route)),
            Some((_, Err(reason))) => {
                skip(result, format!("--link: {reason}"));
                return Ok(None);
            }
        };
        // Primed (and the cache filled) directly, before any fault proxy is in the way.
        let needs_prime = match self.scenario {
            // Each fill sample is a cold build that fills a fresh cache of its own.
            Scenario::Cold | Scenario::Fill => false,
            // Their state (noop) or their reference (fallback) is the primed build.
            Scenario::Noop | Scenario::Fallback { .. } => true,
            // Only to fill the cache, which a read-only run (`--no-fill`) never does.
            Scenario::Warm | Scenario::Verify => self.settings.fill,
        };
        if needs_prime {
            self.prime()?;
        }
        if self.scenario.uses_cache() && self.scenario != Scenario::Fill {
            result.cache_fill = self.driver.fill_cache(&self.ctx, self.exec)?;
        }
        let proxy = match route {
            Some((fault, route)) => Some(self.start_proxy(fault, &route, result)?),
            None => None,
        };
        let link = match link {
            Some((link, route)) => Some(self.start_link(link, &route, result)?),
            None => None,
        };
        let reference = self.reference()?;
        Ok(Some(Begun {
            proxy,
            _link: link,
            reference,
            checked: Checked::default(),
        }))
    }

    /// Everything after the samples: the cold guard, a read-only cache's hit ratio, the
    /// tool's own fallback, the verification; the case's folder removed.
    pub fn end(&mut self, begun: Begun, result: &mut CaseResult) -> StepResult<()> {
        if let Some(reason) = cold_guard(self.scenario, &result.samples) {
            result.outcome = Outcome::Invalid;
            result.reason = Some(reason);
        }
        // A read-only case's evidence: how much of what it needed the cache held as it was.
        if let Some(fill) = result
            .cache_fill
            .as_mut()
            .filter(|f| f.method == FillMethod::ReadOnly)
        {
            fill.hit_ratio = hit_ratio(&result.samples);
        }
        if let Some(proxy) = &begun.proxy {
            self.tool_fallback(proxy, result)?;
        }
        if let Some(clean) = begun.reference.describe() {
            result.verification =
                Some(self.verification(clean, &begun.reference, begun.checked)?);
        }
        Ok(remove_tree(&self.dir).context(|| format!("removing {}", self.dir.display()))?)
    }

    /// The verification, each mismatch classified by a second clean build when there are
    /// any: a step whose clean builds differ is not reproducible, one whose clean builds
    /// agree was served wrong by the cache.
    fn verification(
        &mut self,
        clean: &str,
        reference: &Reference,
        checked: Checked,
    ) -> StepResult<Verification> {
        let mut verification = Verification {
            clean: clean.into(),
            compared: checked.compared,
            mismatches: checked.mismatches,
            roots: Vec::new(),
            scope: None,
        };
        let classified_by = if verification.mismatches.is_empty() {
            None
        } else {
            let n = verification.mismatches.len();
            self.preparing(&format!(
                "classifying {}: clean builds in fresh state without any cache",
                crate::stats::numbers::count_of(n, "mismatch")
            ))?;
            // A fallback's reference (the primed build) kept no graph: one more clean build.
            let (cached, clean) = match reference {
                Reference::FromCache { graph, .. } => (Some(graph.clone()), checked.graph),
                _ => (checked.graph, self.clean_graph("classify-clean")?.ok()),
            };
            let second = self.clean_graph("classify-second")?;
            match (cached, clean) {
                (Some(cached), Some(clean)) => {
                    let builds = Builds {
                        cached: &cached,
                        clean: &clean,
                        second: second.as_ref().ok(),
                    };
                    let (mismatches, roots) = classify(&verification.mismatches, &builds);
                    verification.mismatches = mismatches;
                    verification.roots = roots;
                    Some(match second {
                        Ok(_) => "a second clean build in fresh state without any cache".into(),
                        Err(why) => format!("unclassified: the second clean build {why}"),
                    })
                }
                _ => Some("unclassified: no build graph of the builds compared".into()),
            }
        };
        verification.scope = match reference {
            Reference::FromCache {
                outputs, closure, ..
            } => Some(VerifyScope {
                closure: *closure,
                depth: self.settings.verify_depth,
                paths: outputs.keys().cloned().collect(),
                classified_by,
            }),
            Reference::Clean(clean) => classified_by.map(|by| VerifyScope {
                closure: clean.len(),
                depth: None,
                paths: clean.keys().cloned().collect(),
                classified_by: Some(by),
            }),
            Reference::None => None,
        };
        Ok(verification)
    }

    /// The graph of one more clean build (fresh state, no cache), untimed; or why not.
    fn clean_graph(&mut self, name: &str) -> StepResult<Result<BuildGraph, String>> {
        let build = run_build(
            self.driver,
            self.exec,
            &self.ctx,
            BuildMode::Fresh,
            &self.dir.join(name),
            Want::Graph,
        )?;
        Ok(match (build.report.error, build.graph) {
            (Some(error), _) => Err(format!("failed: {error}")),
            (None, Some(graph)) => Ok(graph),
            (None, None) => Err(format!("ended {}", build.outcome.describe())),
        })
    }

    fn preparing(&mut self, what: &str) -> StepResult<()> {
        Ok(emit(
            self.sinks,
            Event::Preparing {
                index: self.index,
                what,
            },
        )?)
    }

    /// A clean build without any cache, once per repo and parameters, kept as the
    /// reference, the no-op state and what fills the cache.
    fn prime(&mut self) -> StepResult<()> {
        if self.driver.primed(&self.ctx).is_none() {
            self.preparing("priming (a clean build without any cache)")?;
            let dir = self.dir.join("prime");
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
            let build = self.driver.prepare(&self.ctx, BuildMode::Prime, &dir)?;
            let servers = self.driver.servers(&build);
            let outcome = self.exec.run_with_servers(&build.spec, &servers)?;
            if !outcome.success() {
                let report = self.driver.inspect(&build, &outcome, false);
                return Err(CaseFailure::new(format!(
                    "priming build failed ({}): {}",
                    outcome.describe(),
                    report.error.unwrap_or_default()
                ))
                .into());
            }
            let outputs = self.driver.outputs(&build, self.exec)?;
            self.driver.keep_primed(&self.ctx, build, outputs);
            remove_tree(&dir).context(|| format!("removing {}", dir.display()))?;
        }
        Ok(())
    }

    /// From here on the case reads its cache through the proxy.
    fn start_proxy(
        &mut self,
        fault: Fault,
        route: &CacheRoute,
        result: &mut CaseResult,
    ) -> StepResult<FaultProxy> {
        // A poisoned Nix entry signed with the cache's own key looks valid to Nix.
        let signer = match (fault, self.driver.signing_key_file()) {
            (Fault::Poison, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .context(|| format!("reading the cache's signing key {}", file.display()))?;
                Some(NarinfoSigner::parse(&text).map_err(|e| {
                    CaseFailure::new(format!("the cache's signing key {}: {e}", file.display()))
                })?)
            }
            _ => None,
        };
        let proxy = FaultProxy::start_signing(
            route.upstream,
            Mode::Fault(fault),
            self.settings.slow,
            &self.settings.poison_suffix,
            signer,
        )?;
        self.ctx.cache_via = Some(proxy.addr());
        let tuned = self.ctx.tuned();
        result.fallback = Some(FallbackInfo {
            fault,
            tuned,
            settings: if tuned {
                self.driver.tuned_settings()
            } else {
                Vec::new()
            },
            timeout_s: self.settings.fallback_timeout.as_secs_f64(),
            proxy: Default::default(),
            tool_fallback: None,
        });
        Ok(proxy)
    }

    /// From here on the warm case reads its cache through the shaped link, and its
    /// transfer floors are the shaped link's.
    fn start_link(
        &mut self,
        link: Link,
        route: &CacheRoute,
        result: &mut CaseResult,
    ) -> StepResult<FaultProxy> {
        let proxy = FaultProxy::start(
            route.upstream,
            Mode::Link(link),
            self.settings.slow,
            &self.settings.poison_suffix,
        )?;
        self.ctx.cache_via = Some(proxy.addr());
        self.cache_link = self.cache_link.map(|measured| measured.through(&link));
        result.link = Some(link);
        Ok(proxy)
    }

    fn reference(&mut self) -> StepResult<Reference> {
        match self.scenario {
            Scenario::Verify => {
                self.preparing("building from the cache")?;
                let from_cache = run_build(
                    self.driver,
                    self.exec,
                    &self.ctx,
                    BuildMode::FromCache {
                        tool_fallback: false,
                    },
                    &self.dir.join("from-cache"),
                    Want::Graph,
                )?;
                if let Some(error) = from_cache.report.error {
                    return Err(CaseFailure::new(format!(
                        "the build from the cache failed: {error}"
                    ))
                    .into());
                }
                let graph = from_cache.graph.unwrap_or_default();
                Ok(Reference::FromCache {
                    outputs: compared_outputs(&graph, self.settings.verify_depth),
                    closure: graph.outputs().len(),
                    graph,
                })
            }
            Scenario::Fallback { .. } => Ok(self
                .driver
                .primed(&self.ctx)
                .cloned()
                .map_or(Reference::None, Reference::Clean)),
            Scenario::Cold | Scenario::Warm | Scenario::Noop | Scenario::Fill => {
                Ok(Reference::None)
            }
        }
    }

    fn mode(&self) -> BuildMode {
        match self.scenario {
            Scenario::Cold | Scenario::Verify => BuildMode::Fresh,
            Scenario::Warm | Scenario::Fallback { .. } => BuildMode::FromCache {
                tool_fallback: false,
            },
            Scenario::Noop => BuildMode::Noop,
            Scenario::Fill => BuildMode::Fill,
        }
    }

    /// The warm-ups, then samples until the stopping rule says enough.
    fn samples(&mut self, begun: &mut Begun, result: &mut CaseResult) -> StepResult<()> {
        let (warmups, _) = self.settings.builds(self.scenario);
        let rule = self.settings.stopping_rule(self.scenario);
        for n in 0.. {
            if n >= warmups {
                if let Some(reason) = self.stop(&rule, &result.samples) {
                    result.stopped = Some(reason);
                    break;
                }
            }
            self.build(n, begun, result, None)?;
        }
        Ok(())
    }

    /// Build `n` of the case (warm-ups first), recorded as a warm-up or a sample; a
    /// sample of an interleaved group records its `position` in the group's order.
    pub fn build(
        &mut self,
        n: usize,
        begun: &mut Begun,
        result: &mut CaseResult,
        position: Option<usize>,
    ) -> StepResult<()> {
        let (warmups, _) = self.settings.builds(self.scenario);
        let warmup = n < warmups;
        process::check_interrupted()?;
        let (mut sample, built, error) =
            self.one_sample(n, self.mode(), &begun.reference, result)?;
        sample.position = position.filter(|_| !warmup);
        if let Some(error) = error {
            self.push_sample(result, warmup, sample)?;
            let which = if warmup { "warm-up" } else { "sample" };
            return Err(CaseFailure::new(format!("{which} {} {error}", n + 1)).into());
        }
        if let Some(built) = built {
            begun.checked.add(&begun.reference, built);
        }
        self.push_sample(result, warmup, sample)
    }

    /// Whether the case would stop sampling now (interleaved groups ask every case).
    pub fn would_stop(&self, samples: &[Sample]) -> Option<StopReason> {
        self.stop(&self.settings.stopping_rule(self.scenario), samples)
    }

    /// Whether the case has samples enough: its median's interval (and a warm case's
    /// speedup's, against its cold case) as narrow as asked, or the maximum reached.
    fn stop(&self, rule: &StoppingRule, samples: &[Sample]) -> Option<StopReason> {
        let walls: Vec<f64> = samples.iter().map(Sample::with_fill_s).collect();
        let own = rule.check_median(&walls).stop?;
        match (&self.cold_walls, own) {
            (Some(cold), StopReason::PrecisionReached) => {
                // Only this side can still be sampled: the cold case is done.
                let ratio = StoppingRule {
                    min_samples: rule.min_samples.min(cold.len()),
                    ..*rule
                };
                match ratio.check_ratio(cold, &walls).stop {
                    Some(StopReason::PrecisionReached) => Some(StopReason::PrecisionReached),
                    _ if walls.len() >= rule.max_samples_taken() => Some(StopReason::MaxSamples),
                    _ => None,
                }
            }
            (_, reason) => Some(reason),
        }
    }

    /// Build `n`: through the faulty cache (with its own timeout) when there is one, and
    /// again without the cache when the fault broke it, as a CI job's fallback would.
    /// Returns the sample, the outputs to check and why the build failed, if it did.
    fn one_sample(
        &mut self,
        n: usize,
        mode: BuildMode,
        reference: &Reference,
        result: &mut CaseResult,
    ) -> StepResult<(Sample, Option<Built>, Option<String>)> {
        let want = reference.want();
        // A fault's proxy, not a shaped link's: only a fault may break the build.
        let proxied = self.ctx.cache_via.is_some() && self.scenario.fault().is_some();
        let mut ctx = self.ctx;
        if proxied {
            ctx.timeout = self.settings.fallback_timeout;
        }
        let (warmups, _) = self.settings.builds(self.scenario);
        ctx.explain = self.settings.explain.instruments(n.checked_sub(warmups));
        let first = run_build(
            self.driver,
            self.exec,
            &ctx,
            mode,
            &self.dir.join(format!("build-{n}")),
            want,
        )?;
        result
            .command
            .get_or_insert_with(|| first.reproduce.command.clone());
        result
            .reproduce
            .get_or_insert_with(|| first.reproduce.clone());
        let mut sample = first.to_sample();
        sample.explain_off = !ctx.explain;
        if self.scenario == Scenario::Warm && ctx.explain {
            sample.transfer_floor =
                self.cache_link
                    .zip(first.report.transfer)
                    .and_then(|(link, t)| {
                        TransferFloor::compute(
                            t.bytes,
                            t.requests,
                            t.parallelism,
                            link,
                            sample.wall_s,
                        )
                        .ok()
                    });
        }
        if !proxied || first.outcome.success() {
            let error = first.report.error.map(|e| format!("failed: {e}"));
            let built = first.outputs.map(|outputs| Built {
                outputs,
                graph: first.graph,
            });
            return Ok((sample, built, error));
        }
        let retry = run_build(
            self.driver,
            self.exec,
            &CaseContext {
                explain: ctx.explain,
                ..self.ctx
            },
            BuildMode::Fresh,
            &self.dir.join(format!("retry-{n}")),
            want,
        )?;
        sample.overhead_s += retry.overhead_s;
        sample.retry = Some(retry.to_attempt());
        let error = retry
            .report
            .error
            .map(|e| format!("failed through the faulty cache and again without it: {e}"));
        let built = retry.outputs.map(|outputs| Built {
            outputs,
            graph: retry.graph,
        });
        Ok((sample, built, error))
    }

    fn push_sample(
        &mut self,
        result: &mut CaseResult,
        warmup: bool,
        sample: Sample,
    ) -> StepResult<()> {
        let list = if warmup {
            &mut result.warmups
        } else {
            &mut result.samples
        };
        list.push(sample);
        let sample = list.last().expect("just pushed");
        Ok(emit(
            self.sinks,
            Event::BuildFinished {
                index: self.index,
                warmup,
                sample,
            },
        )?)
    }

    /// Evidence of what the tool does by itself when its cache misbehaves, and what the
    /// proxy did.
    fn tool_fallback(&mut self, proxy: &FaultProxy, result: &mut CaseResult) -> StepResult<()> {
        if let Some(flag) = self.driver.tool_fallback_flag() {
            self.preparing("trying the tool's own fallback")?;
            let mut ctx = self.ctx;
            ctx.timeout = self.settings.fallback_timeout;
            let probe = run_build(
                self.driver,
                self.exec,
                &ctx,
                BuildMode::FromCache {
                    tool_fallback: true,
                },
                &self.dir.join("tool-fallback"),
                Want::Nothing,
            )?;
            if let Some(info) = result.fallback.as_mut() {
                info.tool_fallback = Some(ToolFallback {
                    flag: flag.into(),
                    attempt: probe.to_attempt(),
                });
            }
        }
        if let Some(info) = result.fallback.as_mut() {
            info.proxy = proxy_counts(proxy.counters());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> Outputs {
        pairs
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect()
    }

    #[test]
    fn a_cold_sample_with_cache_hits_is_invalid() {
        let hit = Sample {
            from_team_cache: Some(25),
            ..Sample::default()
        };
        let clean = Sample {
            from_team_cache: Some(0),
            ..Sample::default()
        };
        let why = cold_guard(Scenario::Cold, &[clean.clone(), hit.clone()]).unwrap();
        assert!(
            why.contains("sample 2 (samples[1] in the JSON) took 25 items"),
            "{why}"
        );
        assert_eq!(
            cold_guard(Scenario::Cold, std::slice::from_ref(&clean)),
            None
        );
        assert!(
            cold_guard(Scenario::Fill, std::slice::from_ref(&hit)).is_some(),
            "a fill sample's build reads no cache either"
        );
        assert_eq!(
            cold_guard(Scenario::Warm, &[hit]),
            None,
            "warm reads the cache"
        );
    }

    #[test]
    fn compares_outputs_both_ways() {
        let clean = outputs(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let cached = outputs(&[("a", "1"), ("b", "9"), ("d", "4")]);
        let m = compare_outputs(&clean, &cached);
        let described: Vec<(&str, &str, &str)> = m
            .iter()
            .map(|m| (m.path.as_str(), m.from_cache.as_str(), m.clean.as_str()))
            .collect();
        assert_eq!(
            described,
            vec![("b", "9", "2"), ("c", "absent", "3"), ("d", "4", "absent")]
        );
        assert!(compare_outputs(&clean, &clean).is_empty());
    }

    #[test]
    fn verify_compares_the_cached_build_against_each_clean_rebuild() {
        let reference = Reference::FromCache {
            outputs: outputs(&[("out", "poisoned")]),
            graph: BuildGraph::default(),
            closure: 1,
        };
        // The clean build also built what the build from the cache never needed.
        let rebuilt = || Built {
            outputs: outputs(&[("out", "good"), ("build-time-input", "x")]),
            graph: None,
        };
        let mut checked = Checked::default();
        checked.add(&reference, rebuilt());
        checked.add(&reference, rebuilt());
        assert_eq!(checked.compared, 1);
        assert_eq!(checked.mismatches.len(), 1, "once per path");
        assert_eq!(checked.mismatches[0].from_cache, "poisoned");
        assert_eq!(checked.mismatches[0].clean, "good");
    }
}
