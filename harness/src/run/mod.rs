//! The scheduler: walks the plan, prepares each case, times its warm-ups and samples,
//! and emits typed events. It knows nothing about terminals or files.

pub mod events;
pub mod process;
pub mod progress;
pub mod recorder;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::error::{Error, IoContext, Result};
use crate::plan::{CaseSpec, Plan, Source, System};
use crate::results::{CaseResult, Outcome, Sample};
use crate::scratch::remove_tree;
use crate::stats::{median, Summary};
use crate::tools::{BuildDriver, BuildReport, CaseContext};
use events::{emit, Event, EventSink};
use process::{Executor, Exit, ProcessOutcome};

pub type Drivers<'d> = BTreeMap<System, &'d mut dyn BuildDriver>;

pub struct Scheduler<'a, 'd> {
    pub plan: &'a Plan,
    pub exec: &'a dyn Executor,
    pub drivers: Drivers<'d>,
    /// Private folder for per-build state; each build's folder is removed after it.
    pub work_dir: &'a Path,
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
        let repo = self.plan.repo(case);
        CaseResult {
            repo: repo.name.clone(),
            system: case.system,
            lane: case.lane,
            scenario: case.scenario,
            parameters: repo.parameters.clone(),
            outcome: Outcome::Ok,
            reason: None,
            cache: None,
            command: None,
            warmups: Vec::new(),
            samples: Vec::new(),
            stats: None,
            overhead_median_s: None,
        }
    }

    fn run_case(
        &mut self,
        index: usize,
        case: &CaseSpec,
        result: &mut CaseResult,
        sinks: &mut [&mut dyn EventSink],
    ) -> Result<()> {
        let repo = self.plan.repo(case);
        let source = match &repo.source {
            Source::Path(path) => path,
            Source::Git { url, rev } => {
                result.outcome = Outcome::Skipped;
                result.reason = Some(format!(
                    "git source {url}@{rev} needs the fetch step, which this harness version does not have yet"
                ));
                return Ok(());
            }
        };
        let Some(driver) = self.drivers.get_mut(&case.system) else {
            result.outcome = Outcome::Skipped;
            result.reason = Some(format!(
                "no {} driver is configured for this run",
                case.system.name()
            ));
            return Ok(());
        };
        let ctx = CaseContext {
            repo,
            source,
            scenario: case.scenario,
            timeout: self.plan.settings.timeout,
        };
        result.cache = driver.cache_use(case.scenario);
        emit(
            sinks,
            Event::Preparing {
                index,
                what: "preparing",
            },
        )?;
        driver.prepare(&ctx, self.exec)?;

        let settings = &self.plan.settings;
        let case_dir = self.work_dir.join(format!("case-{index}"));
        for build in 0..settings.warmups + settings.samples {
            process::check_interrupted()?;
            let warmup = build < settings.warmups;
            let dir = case_dir.join(format!("build-{build}"));
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
            let started = Instant::now();
            let spec = driver.command(&ctx, &dir)?;
            result.command.get_or_insert_with(|| spec.display());
            let outcome = self.exec.run(&spec)?;
            let report = driver.inspect(&spec, &outcome);
            driver.finish(&ctx, &spec, self.exec)?;
            remove_tree(&dir).context(|| format!("removing {}", dir.display()))?;
            let sample = to_sample(&outcome, &report, started.elapsed().as_secs_f64());
            let list = if warmup {
                &mut result.warmups
            } else {
                &mut result.samples
            };
            list.push(sample);
            emit(
                sinks,
                Event::BuildFinished {
                    index,
                    warmup,
                    sample: list.last().expect("just pushed"),
                },
            )?;
            if let Some(error) = report.error {
                return Err(Error::Build(format!(
                    "{} {} failed: {error}",
                    if warmup { "warm-up" } else { "sample" },
                    build + 1
                )));
            }
        }
        remove_tree(&case_dir).context(|| format!("removing {}", case_dir.display()))
    }
}

fn to_sample(outcome: &ProcessOutcome, report: &BuildReport, elapsed_s: f64) -> Sample {
    let wall_s = outcome.wall.as_secs_f64();
    Sample {
        wall_s,
        user_s: outcome.user.as_secs_f64(),
        sys_s: outcome.sys.as_secs_f64(),
        exit_code: match outcome.exit {
            Exit::Code(c) => Some(c),
            _ => None,
        },
        signal: match outcome.exit {
            Exit::Signal(s) => Some(s),
            _ => None,
        },
        timed_out: outcome.exit == Exit::TimedOut,
        built: report.counters.built,
        substituted: report.counters.substituted,
        downloaded_bytes: report.counters.downloaded_bytes,
        actions: report.counters.actions,
        remote_cache_hits: report.counters.remote_cache_hits,
        processes: report.counters.processes,
        by_mnemonic: report.counters.by_mnemonic.clone(),
        notes: report.counters.notes.clone(),
        overhead_s: (elapsed_s - wall_s).max(0.0),
    }
}

fn finish_stats(result: &mut CaseResult) {
    let walls: Vec<f64> = result.samples.iter().map(|s| s.wall_s).collect();
    result.stats = Summary::of(&walls);
    let overheads: Vec<f64> = result.samples.iter().map(|s| s.overhead_s).collect();
    result.overhead_median_s = (!overheads.is_empty()).then(|| median(&overheads));
}
