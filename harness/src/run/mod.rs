//! The scheduler: walks the plan, prepares each case (priming, the fault proxy), times its
//! warm-ups and samples, retries builds that a faulty cache broke, compares outputs with a
//! clean build's, and emits typed events. It knows nothing about terminals or files.

pub mod cgroup;
pub mod events;
pub mod janitor;
pub mod process;
pub mod procfs;
pub mod progress;
pub mod recorder;
pub mod sources;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::cache::proxy::{FaultProxy, Mode};
use crate::error::{Error, IoContext, Result};
use crate::plan::{CaseSpec, Plan, Scenario, Source, System};
use crate::results::{
    Attempt, CaseResult, FallbackInfo, Mismatch, Outcome, ProxyCounts, Sample, ToolFallback,
    Verification,
};
use crate::scratch::remove_tree;
use crate::stats::{median, Summary};
use crate::tools::{cache_route, BuildDriver, BuildMode, BuildReport, CaseContext, Outputs};
use events::{emit, Event, EventSink};
use process::{Executor, Exit, ProcessOutcome};

pub type Drivers<'d> = BTreeMap<System, &'d mut dyn BuildDriver>;

pub struct Scheduler<'a, 'd> {
    pub plan: &'a Plan,
    pub exec: &'a dyn Executor,
    pub drivers: Drivers<'d>,
    /// Private folder for per-build state; each build's folder is removed after it.
    pub work_dir: &'a Path,
    /// When set, every case is recorded as skipped with this reason (e.g. no GPU).
    pub skip_reason: Option<String>,
}

/// One finished build, inspected and cleaned up.
struct Build {
    outcome: ProcessOutcome,
    report: BuildReport,
    outputs: Option<Outputs>,
    command: String,
    /// Harness time around the build, beyond its own wall time.
    overhead_s: f64,
}

impl Scheduler<'_, '_> {
    /// Runs every case. A failing case is recorded and the run goes on; an interruption
    /// records the case in progress as failed and stops.
    pub fn run(&mut self, sinks: &mut [&mut dyn EventSink]) -> Result<Vec<CaseResult>> {
        emit(sinks, Event::RunStarted { plan: self.plan })?;
        let mut results = Vec::with_capacity(self.plan.cases.len());
        for (index, case) in self.plan.cases.iter().enumerate() {
            process::check_interrupted()?;
            emit(sinks, Event::CaseStarted { index, case })?;
            let mut result = self.new_result(case);
            let interrupted = match self.run_case(index, case, &mut result, sinks) {
                Ok(()) => false,
                Err(e @ (Error::Build(_) | Error::Interrupted)) => {
                    result.outcome = Outcome::Failed;
                    result.reason = Some(e.to_string());
                    matches!(e, Error::Interrupted)
                }
                Err(fatal) => return Err(fatal),
            };
            finish_stats(&mut result);
            emit(
                sinks,
                Event::CaseFinished {
                    index,
                    result: &result,
                },
            )?;
            results.push(result);
            if interrupted {
                return Err(Error::Interrupted);
            }
        }
        Ok(results)
    }

    fn new_result(&self, case: &CaseSpec) -> CaseResult {
        let mut result = blank_result(self.plan, case);
        if let Some(path) = self.plan.repo(case).source.local_path() {
            result.source_git = crate::tools::git::describe(self.exec, path);
        }
        result
    }

    fn run_case(
        &mut self,
        index: usize,
        case: &CaseSpec,
        result: &mut CaseResult,
        sinks: &mut [&mut dyn EventSink],
    ) -> Result<()> {
        let repo = self.plan.repo(case);
        let settings = &self.plan.settings;
        let skip = |result: &mut CaseResult, reason: String| {
            result.outcome = Outcome::Skipped;
            result.reason = Some(reason);
            Ok(())
        };
        if let Some(reason) = &self.skip_reason {
            return skip(result, reason.clone());
        }
        let source = match &repo.source {
            Source::Path(path) | Source::Fetched { checkout: path, .. } => path,
            Source::Git { url, rev } => {
                return skip(result, format!("git source {url}@{rev} was not fetched"));
            }
            Source::Unavailable { url, rev, reason } => {
                return skip(result, format!("could not fetch {url}@{rev}: {reason}"));
            }
        };
        let exec = self.exec;
        let case_dir = self.work_dir.join(format!("case-{index}"));
        let Some(driver) = self.drivers.get_mut(&case.system) else {
            return skip(
                result,
                format!(
                    "no {} driver is configured for this run",
                    case.system.name()
                ),
            );
        };
        let mut ctx = CaseContext {
            repo,
            source,
            scenario: case.scenario,
            timeout: settings.timeout,
            cache_via: None,
        };
        if case.scenario.uses_cache() {
            result.cache = driver.cache_use();
        }

        // A fallback case needs a cache the fault proxy can stand in front of.
        let fault_route = match case.scenario.fault() {
            None => None,
            Some(fault) => {
                let Some(route) = result.cache.as_ref().and_then(|c| cache_route(&c.url)) else {
                    return skip(result, "no cache to put the fault proxy in front of".into());
                };
                if fault.needs_http() && !route.plain_http {
                    let url = result.cache.as_ref().map_or("", |c| c.url.as_str());
                    let reason = format!(
                        "the {} fault needs a plain http:// cache; this one is {url}",
                        fault.name()
                    );
                    return skip(result, reason);
                }
                Some((fault, route))
            }
        };
        // Primed (and the cache filled) directly, before any fault proxy is in the way.
        if case.scenario != Scenario::Cold {
            emit(
                sinks,
                Event::Preparing {
                    index,
                    what: "priming (a clean build, filling the cache)",
                },
            )?;
            driver.prime(&ctx, exec, case.scenario.uses_cache())?;
        }
        // From here on the case reads the cache through the proxy, with its own timeout.
        let mut proxy = None;
        if let Some((fault, route)) = fault_route {
            let started = FaultProxy::start(
                route.upstream,
                Mode::Fault(fault),
                settings.slow,
                &settings.poison_suffix,
            )?;
            ctx.cache_via = Some(started.addr());
            proxy = Some(started);
            result.fallback = Some(FallbackInfo {
                fault: fault.name().into(),
                tuned: ctx.tuned(),
                settings: if ctx.tuned() {
                    driver.tuned_settings()
                } else {
                    Vec::new()
                },
                timeout_s: settings.fallback_timeout.as_secs_f64(),
                proxy: ProxyCounts::default(),
                tool_fallback: None,
            });
        }

        // What this case's outputs are checked against, and which side came from the cache.
        let (mut reference, mut verification) = (None, None);
        if case.scenario == Scenario::Verify {
            emit(
                sinks,
                Event::Preparing {
                    index,
                    what: "building from the cache",
                },
            )?;
            let from_cache = build(
                *driver,
                exec,
                &ctx,
                BuildMode::FromCache {
                    tool_fallback: false,
                },
                &case_dir.join("from-cache"),
                true,
            )?;
            if let Some(error) = from_cache.report.error {
                return Err(Error::Build(format!(
                    "the build from the cache failed: {error}"
                )));
            }
            reference = from_cache.outputs;
            verification = Some(("a clean rebuild without any cache (each sample)", true));
        } else if matches!(case.scenario, Scenario::Fallback { .. }) {
            reference = driver.clean_outputs(&ctx).cloned();
            verification = Some(("the priming build, a clean build without any cache", false));
        }

        let mode = match case.scenario {
            Scenario::Cold | Scenario::Verify => BuildMode::Fresh,
            Scenario::Warm | Scenario::Fallback { .. } => BuildMode::FromCache {
                tool_fallback: false,
            },
            Scenario::Noop => BuildMode::Noop,
        };
        let (warmups, samples) = settings.builds(case.scenario);
        let mut mismatches: Vec<Mismatch> = Vec::new();
        let mut compared = 0;
        for n in 0..warmups + samples {
            process::check_interrupted()?;
            let warmup = n < warmups;
            let mut attempt_ctx = ctx;
            if ctx.cache_via.is_some() {
                attempt_ctx.timeout = settings.fallback_timeout;
            }
            let first = build(
                *driver,
                exec,
                &attempt_ctx,
                mode,
                &case_dir.join(format!("build-{n}")),
                reference.is_some(),
            )?;
            result.command.get_or_insert_with(|| first.command.clone());
            let mut sample = to_sample(&first);
            let mut checked = first.outputs.clone();
            // A build a faulty cache broke is retried without the cache: a CI job's fallback.
            if ctx.cache_via.is_some() && !first.outcome.success() {
                let retry = build(
                    *driver,
                    exec,
                    &ctx,
                    BuildMode::Fresh,
                    &case_dir.join(format!("retry-{n}")),
                    reference.is_some(),
                )?;
                sample.overhead_s += retry.overhead_s;
                checked = retry.outputs.clone();
                let failed = retry.report.error.clone();
                sample.retry = Some(to_attempt(&retry));
                if let Some(error) = failed {
                    push_sample(result, warmup, sample, index, sinks)?;
                    return Err(Error::Build(format!(
                        "build {} failed through the faulty cache and again without it: {error}",
                        n + 1
                    )));
                }
            } else if let Some(error) = &first.report.error {
                let error = format!(
                    "{} {} failed: {error}",
                    if warmup { "warm-up" } else { "sample" },
                    n + 1
                );
                push_sample(result, warmup, sample, index, sinks)?;
                return Err(Error::Build(error));
            }
            if let (Some(clean), Some(built)) = (&reference, &checked) {
                let (clean, from_cache) = match verification {
                    Some((_, true)) => (built, clean),
                    _ => (clean, built),
                };
                compared = compared.max(clean.len());
                for m in compare_outputs(clean, from_cache) {
                    if !mismatches.iter().any(|x| x.path == m.path) {
                        mismatches.push(m);
                    }
                }
            }
            push_sample(result, warmup, sample, index, sinks)?;
        }

        if let (Some(info), Some(proxy)) = (result.fallback.as_mut(), &proxy) {
            // Evidence of what the tool does by itself when its cache misbehaves.
            if let Some(flag) = driver.tool_fallback_flag() {
                emit(
                    sinks,
                    Event::Preparing {
                        index,
                        what: "trying the tool's own fallback",
                    },
                )?;
                let mut probe_ctx = ctx;
                probe_ctx.timeout = settings.fallback_timeout;
                let probe = build(
                    *driver,
                    exec,
                    &probe_ctx,
                    BuildMode::FromCache {
                        tool_fallback: true,
                    },
                    &case_dir.join("tool-fallback"),
                    false,
                )?;
                info.tool_fallback = Some(ToolFallback {
                    flag: flag.into(),
                    attempt: to_attempt(&probe),
                });
            }
            let c = proxy.counters();
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            info.proxy = ProxyCounts {
                connections: load(&c.connections),
                requests: load(&c.requests),
                corrupted: load(&c.corrupted),
                poisoned: load(&c.poisoned),
            };
        }
        if let Some((clean, _)) = verification {
            result.verification = Some(Verification {
                clean: clean.into(),
                compared,
                mismatches,
            });
        }
        remove_tree(&case_dir).context(|| format!("removing {}", case_dir.display()))
    }
}

/// A case's result before anything ran.
pub fn blank_result(plan: &Plan, case: &CaseSpec) -> CaseResult {
    let repo = plan.repo(case);
    CaseResult {
        repo: repo.name.clone(),
        system: case.system,
        lane: case.lane,
        scenario: case.scenario,
        source_git: None,
        parameters: repo.parameters.clone(),
        outcome: Outcome::Ok,
        reason: None,
        cache: None,
        command: None,
        warmups: Vec::new(),
        samples: Vec::new(),
        stats: None,
        fallback: None,
        verification: None,
        overhead_median_s: None,
    }
}

fn push_sample(
    result: &mut CaseResult,
    warmup: bool,
    sample: Sample,
    index: usize,
    sinks: &mut [&mut dyn EventSink],
) -> Result<()> {
    let list = if warmup {
        &mut result.warmups
    } else {
        &mut result.samples
    };
    list.push(sample);
    let sample = list.last().expect("just pushed");
    emit(
        sinks,
        Event::BuildFinished {
            index,
            warmup,
            sample,
        },
    )
}

/// Runs one build in `dir` and cleans up after it: inspects its logs, takes its output
/// digests when asked, lets the driver stop what it started, removes its state.
fn build(
    driver: &mut dyn BuildDriver,
    exec: &dyn Executor,
    ctx: &CaseContext,
    mode: BuildMode,
    dir: &Path,
    want_outputs: bool,
) -> Result<Build> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let spec = driver.command(ctx, mode, dir)?;
    let outcome = exec.run(&spec)?;
    let report = driver.inspect(&spec, &outcome);
    let outputs = if want_outputs && outcome.success() {
        Some(driver.outputs(&spec, exec)?)
    } else {
        None
    };
    driver.finish(&spec, exec)?;
    remove_tree(dir).context(|| format!("removing {}", dir.display()))?;
    let overhead_s = (started.elapsed().saturating_sub(outcome.wall)).as_secs_f64();
    Ok(Build {
        outcome,
        report,
        outputs,
        command: spec.display(),
        overhead_s,
    })
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
            })
        })
        .collect()
}

fn exit_parts(outcome: &ProcessOutcome) -> (Option<i32>, Option<i32>, bool) {
    match outcome.exit {
        Exit::Code(c) => (Some(c), None, false),
        Exit::Signal(s) => (None, Some(s), false),
        Exit::TimedOut => (None, None, true),
    }
}

fn to_sample(b: &Build) -> Sample {
    let (exit_code, signal, timed_out) = exit_parts(&b.outcome);
    let c = &b.report.counters;
    Sample {
        wall_s: b.outcome.wall.as_secs_f64(),
        user_s: b.outcome.user.as_secs_f64(),
        sys_s: b.outcome.sys.as_secs_f64(),
        exit_code,
        signal,
        timed_out,
        built: c.built,
        substituted: c.substituted,
        downloaded_bytes: c.downloaded_bytes,
        actions: c.actions,
        remote_cache_hits: c.remote_cache_hits,
        processes: c.processes,
        by_mnemonic: c.by_mnemonic.clone(),
        notes: c.notes.clone(),
        messages: b.report.messages.clone(),
        retry: None,
        overhead_s: b.overhead_s,
    }
}

fn to_attempt(b: &Build) -> Attempt {
    let (exit_code, signal, timed_out) = exit_parts(&b.outcome);
    Attempt {
        wall_s: b.outcome.wall.as_secs_f64(),
        exit_code,
        signal,
        timed_out,
        messages: b.report.messages.clone(),
        error: b.report.error.clone(),
    }
}

fn finish_stats(result: &mut CaseResult) {
    let walls: Vec<f64> = result.samples.iter().map(|s| s.wall_s).collect();
    result.stats = Summary::of(&walls);
    let overheads: Vec<f64> = result.samples.iter().map(|s| s.overhead_s).collect();
    result.overhead_median_s = (!overheads.is_empty()).then(|| median(&overheads));
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
}
