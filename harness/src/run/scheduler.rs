//! The scheduler: walks a plan's cases in order, runs each through its steps (see
//! `case`) and emits typed events. A failing case is recorded and the run goes on.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result, StepError, StepResult};
use crate::exec::process::{self, Executor};
use crate::lanes::vm::GuestLane;
use crate::plan::{CaseSpec, Plan, Scenario, Source, System};
use crate::results::derive::cold_case;
use crate::results::explain::CacheLink;
use crate::results::{CaseResult, Outcome, Sample, SampleOrder, Sampling};
use crate::run::case::{skip, Begun, CaseRun};
use crate::run::events::{emit, Event, EventSink, WireEvent};
use crate::stats::{median, ratio_of_medians, Summary};
use crate::tools::{BuildDriver, CaseContext};

/// The drivers of a run, one per build system.
pub type Drivers = BTreeMap<System, Box<dyn BuildDriver>>;

pub struct Scheduler<'a> {
    pub plan: &'a Plan,
    pub exec: &'a dyn Executor,
    pub drivers: &'a mut Drivers,
    /// Private folder for per-case state; each case's folder is removed after it.
    pub work_dir: &'a Path,
    /// When set, every case is recorded as skipped with this reason (e.g. no GPU).
    pub skip_reason: Option<&'a str>,
    /// The cache link measured for the run, for warm samples' transfer floors.
    pub cache_link: Option<CacheLink>,
    /// `$GITHUB_REF`, for sources in a detached checkout.
    pub ci_ref: Option<&'a str>,
}

/// A case of an interleaved group as it goes: its result, and what its set-up left for
/// the samples (`None` once the case is done: skipped, failed or ended).
struct Slot {
    result: CaseResult,
    begun: Option<Begun>,
}

impl Scheduler<'_> {
    /// Runs every case. A failing case is recorded and the run goes on; an interruption
    /// records the cases in progress as failed and stops.
    pub fn run(&mut self, sinks: &mut [&mut dyn EventSink]) -> Result<Vec<CaseResult>> {
        emit(sinks, Event::RunStarted { plan: self.plan })?;
        let mut results = Vec::with_capacity(self.plan.cases.len());
        let mut index = 0;
        while index < self.plan.cases.len() {
            process::check_interrupted()?;
            let len = self.group_len(index);
            if let Some(interruption) = self.run_group(index, len, &mut results, sinks)? {
                return Err(interruption);
            }
            index += len;
        }
        Ok(results)
    }

    /// How many cases from `index` on sample together: with `--order interleaved`, the
    /// cold, warm, no-op and fill cases of one repo (at one set of parameters) and system.
    fn group_len(&self, index: usize) -> usize {
        let cases = &self.plan.cases;
        let alternates = |c: &CaseSpec| {
            matches!(
                c.scenario,
                Scenario::Cold | Scenario::Warm | Scenario::Noop | Scenario::Fill
            )
        };
        if self.plan.settings.order == SampleOrder::Sequential || !alternates(&cases[index]) {
            return 1;
        }
        let first = cases[index];
        1 + cases[index + 1..]
            .iter()
            .take_while(|c| {
                alternates(c)
                    && (c.repo, c.system, c.lane) == (first.repo, first.system, first.lane)
            })
            .count()
    }

    /// Runs the `len` cases from `start` on: one after the other when alone, else round
    /// by round. Returns the interruption, if the run was interrupted.
    fn run_group(
        &mut self,
        start: usize,
        len: usize,
        results: &mut Vec<CaseResult>,
        sinks: &mut [&mut dyn EventSink],
    ) -> Result<Option<Error>> {
        let specs = &self.plan.cases[start..start + len];
        let sampling = Sampling {
            order: if len > 1 {
                SampleOrder::Interleaved
            } else {
                SampleOrder::Sequential
            },
            group: if len > 1 {
                specs.iter().map(|c| c.scenario).collect()
            } else {
                Vec::new()
            },
        };
        let mut slots = Vec::with_capacity(len);
        for (k, case) in specs.iter().enumerate() {
            emit(sinks, Event::CaseStarted { index: start + k })?;
            let mut result = self.new_result(case);
            result.sampling = Some(sampling.clone());
            slots.push(Slot {
                result,
                begun: None,
            });
        }
        let interrupted = if len == 1 {
            let done = results.as_slice();
            let outcome =
                self.with_case(start, &mut slots[0].result, done, None, sinks, |run, r| {
                    run.execute(r)
                });
            failed(&mut slots[0].result, outcome)?
        } else {
            self.interleave(start, &mut slots, sinks)?
        };
        for (k, mut slot) in slots.into_iter().enumerate() {
            if let Some(e) = interrupted
                .as_ref()
                .filter(|_| slot.result.outcome == Outcome::Ok)
            {
                fail(&mut slot.result, e.to_string());
            }
            finish_case(start + k, &mut slot.result, sinks)?;
            results.push(slot.result);
        }
        Ok(interrupted)
    }

    /// The cases of a group round by round: every set-up and warm-up first, then one
    /// sample of each case per round, the direction reversed every other round, until
    /// every case's stopping rule says enough. Returns the interruption, if any.
    fn interleave(
        &mut self,
        start: usize,
        slots: &mut [Slot],
        sinks: &mut [&mut dyn EventSink],
    ) -> Result<Option<Error>> {
        for (k, slot) in slots.iter_mut().enumerate() {
            let outcome = self.with_case(
                start + k,
                &mut slot.result,
                &[],
                None,
                sinks,
                |mut run, r| run.begin(r),
            );
            match outcome {
                Ok(begun) => slot.begun = begun.flatten(),
                Err(e) => {
                    if let Some(interruption) = failed::<()>(&mut slot.result, Err(e))? {
                        return Ok(Some(interruption));
                    }
                }
            }
        }
        let warmups = self.plan.settings.warmups;
        let mut position = 0;
        for n in 0.. {
            let live: Vec<usize> = (0..slots.len())
                .filter(|&k| slots[k].begun.is_some())
                .collect();
            if live.is_empty() {
                break;
            }
            if n >= warmups {
                let mut reasons = Vec::new();
                for &k in &live {
                    let cold = self.cold_walls_in(slots, k);
                    let reason = self.with_case(
                        start + k,
                        &mut slots[k].result,
                        &[],
                        cold,
                        sinks,
                        |run, r| Ok(run.would_stop(&r.samples)),
                    );
                    match reason {
                        Ok(reason) => reasons.push(reason.flatten()),
                        Err(e) => return failed::<()>(&mut slots[k].result, Err(e)),
                    }
                }
                if reasons.iter().all(Option::is_some) {
                    for (&k, reason) in live.iter().zip(reasons) {
                        slots[k].result.stopped = reason;
                    }
                    break;
                }
            }
            let order: Vec<usize> = if (n.saturating_sub(warmups)) % 2 == 0 {
                live
            } else {
                live.into_iter().rev().collect()
            };
            for k in order {
                let timed = (n >= warmups).then_some(position);
                position += usize::from(n >= warmups);
                let Some(mut begun) = slots[k].begun.take() else {
                    continue;
                };
                let outcome = self.with_case(
                    start + k,
                    &mut slots[k].result,
                    &[],
                    None,
                    sinks,
                    |mut run, r| run.build(n, &mut begun, r, timed),
                );
                match outcome {
                    Ok(_) => slots[k].begun = Some(begun),
                    Err(e) => {
                        if let Some(interruption) = failed::<()>(&mut slots[k].result, Err(e))? {
                            return Ok(Some(interruption));
                        }
                    }
                }
            }
        }
        for (k, slot) in slots.iter_mut().enumerate() {
            let Some(begun) = slot.begun.take() else {
                continue;
            };
            let outcome = self.with_case(
                start + k,
                &mut slot.result,
                &[],
                None,
                sinks,
                |mut run, r| run.end(begun, r),
            );
            if let Some(interruption) = failed(&mut slot.result, outcome)? {
                return Ok(Some(interruption));
            }
        }
        Ok(None)
    }

    /// A warm case's cold counterpart's walls so far, in the same group.
    fn cold_walls_in(&self, slots: &[Slot], k: usize) -> Option<Vec<f64>> {
        (slots[k].result.scenario == Scenario::Warm)
            .then(|| {
                slots.iter().find(|s| {
                    s.result.scenario == Scenario::Cold && s.result.outcome == Outcome::Ok
                })
            })
            .flatten()
            .map(|s| s.result.walls())
    }

    fn new_result(&self, case: &CaseSpec) -> CaseResult {
        let mut result = blank_result(self.plan, case);
        if let Some(path) = self.plan.repo(case).source.local_path() {
            result.source_git = crate::tools::git::describe(self.exec, path, self.ci_ref);
        }
        result
    }

    /// Runs `step` with case `index`'s runner; `Ok(None)` when the case is skipped (the
    /// reason recorded in `result`). `done`: the cases finished before, where a warm
    /// case run alone finds its cold counterpart; `cold_walls` overrides it.
    fn with_case<T>(
        &mut self,
        index: usize,
        result: &mut CaseResult,
        done: &[CaseResult],
        cold_walls: Option<Vec<f64>>,
        sinks: &mut [&mut dyn EventSink],
        step: impl FnOnce(CaseRun<'_, '_>, &mut CaseResult) -> StepResult<T>,
    ) -> StepResult<Option<T>> {
        let case = &self.plan.cases[index];
        let repo = self.plan.repo(case);
        if let Some(reason) = self.skip_reason {
            skip(result, reason.to_string());
            return Ok(None);
        }
        let source = match &repo.source {
            Source::Path(path) | Source::Fetched { checkout: path, .. } => path,
            Source::Git { url, rev } => {
                let url = crate::boundary::redact_urls(url);
                skip(result, format!("git source {url}@{rev} was not fetched"));
                return Ok(None);
            }
            Source::Unavailable { url, rev, reason } => {
                let url = crate::boundary::redact_urls(url);
                skip(result, format!("could not fetch {url}@{rev}: {reason}"));
                return Ok(None);
            }
        };
        if let Some(reason) = crate::plan::compression_skip(repo, case.system) {
            skip(result, reason);
            return Ok(None);
        }
        let Some(driver) = self.drivers.get_mut(&case.system) else {
            let system = case.system.name();
            skip(
                result,
                format!("no {system} driver is configured for this run"),
            );
            return Ok(None);
        };
        let settings = &self.plan.settings;
        let cold_walls = cold_walls.or_else(|| {
            (case.scenario == Scenario::Warm)
                .then(|| cold_case(done, result))
                .flatten()
                .map(CaseResult::walls)
        });
        let run = CaseRun {
            index,
            scenario: case.scenario,
            ctx: CaseContext {
                repo,
                source,
                scenario: case.scenario,
                timeout: settings.timeout,
                cache_via: None,
                explain: settings.explain.instruments(None),
            },
            driver: driver.as_mut(),
            exec: self.exec,
            settings,
            cold_walls,
            cache_link: self.cache_link,
            dir: self.work_dir.join(format!("case-{index}")),
            sinks,
        };
        step(run, result).map(Some)
    }
}

/// Records a step's case failure or interruption in `result`; returns the interruption,
/// if the run was interrupted. Any other error stops the run.
fn failed<T>(result: &mut CaseResult, outcome: StepResult<T>) -> Result<Option<Error>> {
    match outcome {
        Ok(_) => Ok(None),
        Err(StepError::Case(failure)) => {
            fail(result, failure.to_string());
            Ok(None)
        }
        Err(StepError::Run(e @ Error::Interrupted { .. })) => {
            fail(result, e.to_string());
            Ok(Some(e))
        }
        Err(StepError::Run(fatal)) => Err(fatal),
    }
}

/// Runs a plan in a vm lane's guest: the guest's events replayed as they arrive, then
/// every case it did not finish recorded as failed, with how the guest ended and the end
/// of its log.
pub fn run_in_guest(plan: &Plan, guest: GuestLane, sinks: &mut [&mut dyn EventSink]) -> Result<()> {
    emit(sinks, Event::RunStarted { plan })?;
    let (mut started, mut finished) = (Vec::new(), Vec::new());
    let end = guest.run(plan, &mut |line| {
        let event = WireEvent::parse(line)?;
        match event {
            WireEvent::CaseStarted { index } => started.push(index),
            WireEvent::CaseFinished { index, .. } => finished.push(index),
            _ => {}
        }
        event.replay(plan, sinks)
    })?;
    for (index, case) in plan.cases.iter().enumerate() {
        if finished.contains(&index) {
            continue;
        }
        if !started.contains(&index) {
            emit(sinks, Event::CaseStarted { index })?;
        }
        let mut result = blank_result(plan, case);
        fail(
            &mut result,
            format!(
                "the vm lane did not finish this case ({}); its log ends: {}",
                end.how, end.log_tail
            ),
        );
        finish_case(index, &mut result, sinks)?;
    }
    Ok(())
}

/// Records a case as failed, with the reason.
fn fail(result: &mut CaseResult, reason: String) {
    result.outcome = Outcome::Failed;
    result.reason = Some(reason);
}

/// A finished case's statistics, and its event.
fn finish_case(
    index: usize,
    result: &mut CaseResult,
    sinks: &mut [&mut dyn EventSink],
) -> Result<()> {
    finish_stats(result);
    emit(sinks, Event::CaseFinished { index, result })
}

/// A case's result before anything ran.
pub fn blank_result(plan: &Plan, case: &CaseSpec) -> CaseResult {
    let repo = plan.repo(case);
    CaseResult {
        claims: repo
            .claims
            .iter()
            .filter(|c| c.system == case.system && c.scenario == case.scenario)
            .cloned()
            .collect(),
        ..CaseResult::new(plan.key(case), case.scenario, repo.parameters.clone())
    }
}

fn finish_stats(result: &mut CaseResult) {
    result.stats = Summary::of(&result.walls());
    let (plain, explained): (Vec<&Sample>, Vec<&Sample>) =
        result.samples.iter().partition(|s| s.explain_off);
    let walls_of = |samples: Vec<&Sample>| samples.iter().map(|s| s.wall_s).collect::<Vec<_>>();
    result.explain_overhead = ratio_of_medians(&walls_of(explained), &walls_of(plain));
    let overheads: Vec<f64> = result.samples.iter().map(|s| s.overhead_s).collect();
    result.overhead_median_s = (!overheads.is_empty()).then(|| median(&overheads));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::Exit;
    use crate::plan::{Explain, Fault, Scenario, Settings};
    use crate::results::derive::{fallbacks, FallbackOutcome};
    use crate::stats::stopping::StopReason;
    use crate::testing::{plan, schedule, FakeDriver, FakeExecutor};
    use std::time::Duration;

    fn settings(warmups: usize, samples: usize) -> Settings {
        Settings {
            warmups,
            samples,
            ..Settings::default()
        }
    }

    #[test]
    fn a_failing_warm_up_stops_the_case() {
        let exec = FakeExecutor::new(|_| Exit::Code(1));
        let plan = plan(&[Scenario::Cold], settings(1, 3));
        let (results, events) = schedule(&plan, &exec, FakeDriver::new(None), None);
        let case = &results[0];
        assert_eq!(case.outcome, Outcome::Failed);
        assert!(
            case.reason
                .as_deref()
                .unwrap()
                .starts_with("warm-up 1 failed"),
            "{case:?}"
        );
        assert_eq!((case.warmups.len(), case.samples.len()), (1, 0));
        assert_eq!(exec.builds().len(), 1, "nothing ran after the failure");
        assert_eq!(
            events,
            [
                "run-started",
                "case-started 0",
                "warm-up finished",
                "case-finished 0"
            ]
        );
    }

    #[test]
    fn a_timeout_is_recorded_as_timed_out() {
        let exec = FakeExecutor::new(|_| Exit::TimedOut);
        let plan = plan(&[Scenario::Cold], settings(0, 2));
        let (results, _) = schedule(&plan, &exec, FakeDriver::new(None), None);
        let sample = &results[0].samples[0];
        assert!(sample.timed_out && sample.exit_code.is_none(), "{sample:?}");
        assert!(results[0].reason.as_deref().unwrap().contains("timed out"));
    }

    #[test]
    fn a_build_the_faulty_cache_broke_is_retried_without_the_cache() {
        // Reading the cache (through the proxy) fails; a fresh build succeeds.
        let exec = FakeExecutor::new(|args| match args[0].as_str() {
            "from-cache" => Exit::Code(1),
            _ => Exit::Code(0),
        });
        let fallback = Scenario::Fallback {
            fault: Fault::Http500,
            tuned: false,
        };
        let plan = plan(&[fallback], settings(1, 5));
        let driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        let (results, events) = schedule(&plan, &exec, driver, None);
        let case = &results[0];
        assert_eq!(case.outcome, Outcome::Ok, "{case:?}");
        assert_eq!(case.samples.len(), 1, "fallback cases take their own count");
        let sample = &case.samples[0];
        assert_eq!(sample.exit_code, Some(1));
        assert_eq!(sample.retry.as_ref().unwrap().exit_code, Some(0));
        let builds = exec.builds();
        assert!(builds[1][0] == "from-cache" && builds[1][1].starts_with("via=127.0.0.1:"));
        assert_eq!(
            builds[2],
            ["fresh", "explain"],
            "the retry does not read the cache"
        );
        let info = case.fallback.as_ref().unwrap();
        assert_eq!(info.fault, Fault::Http500);
        assert!(
            info.tool_fallback.is_some(),
            "the tool's own fallback was tried"
        );
        assert!(events.contains(&"preparing trying the tool's own fallback".to_string()));
        assert_eq!(fallbacks(&results)[0].outcome, FallbackOutcome::Recovered);
        assert_eq!(case.verification.as_ref().unwrap().mismatches, vec![]);
    }

    #[test]
    fn a_verify_mismatch_names_the_output() {
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let mut driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        driver.outputs.insert(
            "from-cache",
            [("out".to_string(), "poisoned".to_string())].into(),
        );
        let plan = plan(&[Scenario::Verify], settings(0, 2));
        let (results, _) = schedule(&plan, &exec, driver, None);
        let verification = results[0].verification.as_ref().unwrap();
        assert_eq!(verification.compared, 1);
        assert_eq!(verification.mismatches.len(), 1);
        let m = &verification.mismatches[0];
        assert_eq!(
            (m.path.as_str(), m.from_cache.as_str(), m.clean.as_str()),
            ("out", "poisoned", "good")
        );
        // One more clean build classified it: both clean builds agree, so the cache lied.
        assert_eq!(m.second_clean.as_deref(), Some("good"));
        assert_eq!(m.class, Some(crate::results::MismatchClass::WrongFromCache));
        assert_eq!(verification.roots.len(), 1);
        assert_eq!(verification.roots[0].step, "out");
        let scope = verification.scope.as_ref().unwrap();
        assert_eq!(scope.paths, ["out"]);
        assert!(scope
            .classified_by
            .as_ref()
            .unwrap()
            .contains("second clean build"));
        let modes: Vec<String> = exec.builds().iter().map(|b| b[0].clone()).collect();
        assert_eq!(modes, ["prime", "from-cache", "fresh", "fresh", "fresh"]);
    }

    #[test]
    fn a_verify_without_mismatches_builds_nothing_more() {
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let plan = plan(&[Scenario::Verify], settings(0, 1));
        let (results, _) = schedule(
            &plan,
            &exec,
            FakeDriver::new(Some("http://127.0.0.1:9/nix")),
            None,
        );
        let verification = results[0].verification.as_ref().unwrap();
        assert!(verification.mismatches.is_empty() && verification.roots.is_empty());
        assert_eq!(verification.scope.as_ref().unwrap().classified_by, None);
        assert_eq!(
            exec.builds().len(),
            3,
            "priming, the build from the cache and one clean rebuild"
        );
    }

    #[test]
    fn adaptive_sampling_stops_when_precise_or_at_the_maximum() {
        let adaptive = Settings {
            warmups: 0,
            samples: 3,
            max_samples: 12,
            target_precision: Some(0.05),
            ..Settings::default()
        };
        // Every build takes 10 ms: the interval is as narrow as it gets at the minimum.
        let tight = FakeExecutor::new(|_| Exit::Code(0));
        let (results, _) = schedule(
            &plan(&[Scenario::Cold], adaptive.clone()),
            &tight,
            FakeDriver::new(None),
            None,
        );
        assert_eq!(results[0].samples.len(), 3);
        assert_eq!(results[0].stopped, Some(StopReason::PrecisionReached));
        // Builds alternate between 10 ms and 40 ms: the median's interval never narrows.
        let noisy = FakeExecutor::new(|_| Exit::Code(0))
            .with_walls(|n| Duration::from_millis(if n % 2 == 0 { 10 } else { 40 }));
        let (results, _) = schedule(
            &plan(&[Scenario::Cold], adaptive.clone()),
            &noisy,
            FakeDriver::new(None),
            None,
        );
        assert_eq!(results[0].samples.len(), 12);
        assert_eq!(results[0].stopped, Some(StopReason::MaxSamples));
        // Without a target precision the count is fixed.
        let (results, _) = schedule(
            &plan(&[Scenario::Cold], settings(0, 4)),
            &noisy,
            FakeDriver::new(None),
            None,
        );
        assert_eq!(results[0].samples.len(), 4);
        assert_eq!(results[0].stopped, Some(StopReason::SampleCount));
    }

    #[test]
    fn interleaved_explaining_alternates_samples_and_measures_its_cost() {
        let interleave = Settings {
            explain: Explain::Interleave,
            ..settings(1, 6)
        };
        // Build 0 is the warm-up, then samples alternate explained and plain: explained
        // builds take 110 ms, the others 100 ms.
        let exec = FakeExecutor::new(|_| Exit::Code(0))
            .with_walls(|n| Duration::from_millis(if n % 2 == 1 || n == 0 { 110 } else { 100 }));
        let (results, _) = schedule(
            &plan(&[Scenario::Cold], interleave),
            &exec,
            FakeDriver::new(None),
            None,
        );
        let case = &results[0];
        assert!(!case.warmups[0].explain_off, "warm-ups are explained");
        let off: Vec<bool> = case.samples.iter().map(|s| s.explain_off).collect();
        assert_eq!(off, [false, true, false, true, false, true]);
        let explained: Vec<bool> = exec
            .builds()
            .iter()
            .map(|args| args.iter().any(|a| a == "explain"))
            .collect();
        assert_eq!(explained, [true, true, false, true, false, true, false]);
        let cost = case.explain_overhead.as_ref().expect("both kinds sampled");
        assert!((cost.ratio - 1.1).abs() < 1e-9, "{cost:?}");
        assert!(cost.interval().is_some());
        // Explaining on (the default) or off: one kind of sample, no cost to measure.
        for explain in [Explain::On, Explain::Off] {
            let settings = Settings {
                explain,
                ..settings(0, 3)
            };
            let (results, _) = schedule(
                &plan(&[Scenario::Cold], settings),
                &exec,
                FakeDriver::new(None),
                None,
            );
            assert!(results[0]
                .samples
                .iter()
                .all(|s| s.explain_off == (explain == Explain::Off)));
            assert!(results[0].explain_overhead.is_none());
        }
    }

    #[test]
    fn a_warm_case_samples_on_until_its_speedup_is_precise() {
        let adaptive = Settings {
            warmups: 0,
            samples: 3,
            max_samples: 10,
            target_precision: Some(0.05),
            ..Settings::default()
        };
        // The cold builds (the first ten) are noisy, the warm ones steady: the warm median
        // is precise at the minimum, but the speedup is not, so warm samples on to the max.
        let exec = FakeExecutor::new(|_| Exit::Code(0)).with_walls(|n| {
            Duration::from_millis(match n {
                0..10 if n % 2 == 0 => 100,
                0..10 => 200,
                _ => 10,
            })
        });
        let sequential = Settings {
            order: SampleOrder::Sequential,
            ..adaptive
        };
        let plan = plan(&[Scenario::Cold, Scenario::Warm], sequential);
        let driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        let (results, _) = schedule(&plan, &exec, driver, None);
        assert_eq!(
            results[0].samples.len(),
            10,
            "the noisy cold case goes to the max"
        );
        let warm = &results[1];
        assert_eq!(warm.samples.len(), 10, "{warm:?}");
        assert_eq!(warm.stopped, Some(StopReason::MaxSamples));
    }

    #[test]
    fn a_skip_reason_skips_every_case() {
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let plan = plan(&[Scenario::Cold, Scenario::Warm], settings(1, 1));
        let (results, _) = schedule(&plan, &exec, FakeDriver::new(None), Some("no GPU here"));
        assert_eq!(results.len(), 2);
        for case in &results {
            assert_eq!(case.outcome, Outcome::Skipped);
            assert_eq!(case.reason.as_deref(), Some("no GPU here"));
        }
        assert!(exec.builds().is_empty());
    }

    #[test]
    fn a_fault_case_on_a_tls_cache_is_skipped_for_tls() {
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let fallback = Scenario::Fallback {
            fault: Fault::Refuse,
            tuned: false,
        };
        let plan = plan(&[fallback], settings(0, 1));
        let driver = FakeDriver::new(Some("https://cache.example.com"));
        let (results, _) = schedule(&plan, &exec, driver, None);
        assert_eq!(results[0].outcome, Outcome::Skipped);
        assert!(results[0].reason.as_deref().unwrap().contains("TLS"));
        assert!(
            exec.builds().is_empty(),
            "nothing is primed for a skipped case"
        );
    }

    /// True walls: cold 1 s, warm 0.25 s (a 4x speedup); a neighbour's load slows every
    /// build by 3% per second of the run.
    fn load_ramp(args: &[String], start_s: f64) -> Duration {
        let base = match args[0].as_str() {
            "from-cache" => 0.25,
            "noop" => 0.05,
            _ => 1.0,
        };
        Duration::from_secs_f64(base * (1.0 + 0.03 * start_s))
    }

    fn speedup_under_load(order: SampleOrder) -> crate::results::Comparison {
        let exec = FakeExecutor::new(|_| Exit::Code(0)).with_load(load_ramp);
        let settings = Settings {
            order,
            ..settings(1, 5)
        };
        let plan = plan(&[Scenario::Cold, Scenario::Warm, Scenario::Noop], settings);
        let driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        let (results, _) = schedule(&plan, &exec, driver, None);
        assert!(
            results.iter().all(|c| c.outcome == Outcome::Ok),
            "{results:?}"
        );
        crate::results::derive::comparisons(&results).remove(0)
    }

    #[test]
    fn a_load_ramp_biases_sequential_speedups_and_not_interleaved_ones() {
        let truth = 4.0;
        let sequential = speedup_under_load(SampleOrder::Sequential);
        let interleaved = speedup_under_load(SampleOrder::Interleaved);
        let error = |c: &crate::results::Comparison| c.speedup.ratio / truth - 1.0;
        println!(
            "true speedup {truth}x; sequential {:.3}x ({:+.1}%), interleaved {:.3}x ({:+.1}%, {} pairs)",
            sequential.speedup.ratio,
            100.0 * error(&sequential),
            interleaved.speedup.ratio,
            100.0 * error(&interleaved),
            interleaved.pairs.unwrap_or(0),
        );
        assert!(
            error(&sequential) < -0.10,
            "sequential is biased: {sequential:?}"
        );
        assert!(error(&interleaved).abs() < 0.05, "{interleaved:?}");
        assert_eq!((sequential.pairs, interleaved.pairs), (None, Some(5)));
        let (low, high) = interleaved.speedup.interval().unwrap();
        assert!(
            low <= truth && truth <= high * 1.05,
            "{:?}",
            interleaved.speedup
        );
    }

    #[test]
    fn interleaved_cases_alternate_round_by_round_and_record_it() {
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let plan = plan(
            &[Scenario::Cold, Scenario::Warm, Scenario::Noop],
            settings(1, 3),
        );
        let driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        let (results, events) = schedule(&plan, &exec, driver, None);
        let modes: Vec<String> = exec.builds().iter().map(|a| a[0].clone()).collect();
        // The set-ups (one priming build serves warm and noop), the warm-ups, then the
        // rounds: cold warm noop, noop warm cold, cold warm noop.
        assert_eq!(
            modes,
            [
                "prime",
                "fresh",
                "from-cache",
                "noop",
                "fresh",
                "from-cache",
                "noop",
                "noop",
                "from-cache",
                "fresh",
                "fresh",
                "from-cache",
                "noop"
            ]
        );
        let group = vec![Scenario::Cold, Scenario::Warm, Scenario::Noop];
        for case in &results {
            let sampling = case.sampling.as_ref().unwrap();
            assert_eq!(
                (sampling.order, &sampling.group),
                (SampleOrder::Interleaved, &group)
            );
            assert_eq!(case.stopped, Some(StopReason::SampleCount));
            assert!(case.warmups.iter().all(|s| s.position.is_none()));
        }
        let positions = |k: usize| -> Vec<usize> {
            results[k]
                .samples
                .iter()
                .map(|s| s.position.unwrap())
                .collect()
        };
        assert_eq!(positions(0), [0, 5, 6]);
        assert_eq!(positions(1), [1, 4, 7]);
        assert_eq!(positions(2), [2, 3, 8]);
        // Each case is reported finished once, in plan order, after the group.
        let finished: Vec<&String> = events.iter().filter(|e| e.starts_with("case-")).collect();
        assert_eq!(
            finished,
            [
                "case-started 0",
                "case-started 1",
                "case-started 2",
                "case-finished 0",
                "case-finished 1",
                "case-finished 2"
            ]
        );
        // Sequential: each case alone, recorded as such.
        let sequential = Settings {
            order: SampleOrder::Sequential,
            ..settings(0, 2)
        };
        let exec = FakeExecutor::new(|_| Exit::Code(0));
        let (results, _) = schedule(
            &crate::testing::plan(&[Scenario::Cold, Scenario::Warm], sequential),
            &exec,
            FakeDriver::new(Some("http://127.0.0.1:9/nix")),
            None,
        );
        let modes: Vec<String> = exec.builds().iter().map(|a| a[0].clone()).collect();
        assert_eq!(
            modes,
            ["fresh", "fresh", "prime", "from-cache", "from-cache"]
        );
        assert!(results
            .iter()
            .all(|c| c.sampling.as_ref().unwrap().order == SampleOrder::Sequential));
    }

    #[test]
    fn a_failing_case_of_a_group_leaves_the_others_sampling() {
        // Every cold build fails: the warm case samples on alone.
        let exec = FakeExecutor::new(|args| match args[0].as_str() {
            "fresh" => Exit::Code(1),
            _ => Exit::Code(0),
        });
        let plan = plan(&[Scenario::Cold, Scenario::Warm], settings(0, 3));
        let driver = FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        let (results, _) = schedule(&plan, &exec, driver, None);
        assert_eq!(results[0].outcome, Outcome::Failed);
        assert!(results[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("sample 1 failed"));
        assert_eq!(
            (results[1].outcome, results[1].samples.len()),
            (Outcome::Ok, 3)
        );
    }
}
