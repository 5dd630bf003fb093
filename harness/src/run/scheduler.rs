//! The scheduler: walks a plan's cases in order, runs each through its steps (see
//! `case`) and emits typed events. A failing case is recorded and the run goes on.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::plan::{CaseSpec, Plan, Source, System};
use crate::results::{CaseResult, Outcome};
use crate::run::case::{skip, CaseRun};
use crate::run::events::{emit, Event, EventSink};
use crate::run::process::{self, Executor};
use crate::stats::{median, Summary};
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
}

impl Scheduler<'_> {
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
        if let Some(reason) = self.skip_reason {
            skip(result, reason.to_string());
            return Ok(());
        }
        let source = match &repo.source {
            Source::Path(path) | Source::Fetched { checkout: path, .. } => path,
            Source::Git { url, rev } => {
                skip(result, format!("git source {url}@{rev} was not fetched"));
                return Ok(());
            }
            Source::Unavailable { url, rev, reason } => {
                skip(result, format!("could not fetch {url}@{rev}: {reason}"));
                return Ok(());
            }
        };
        let Some(driver) = self.drivers.get_mut(&case.system) else {
            let system = case.system.name();
            skip(
                result,
                format!("no {system} driver is configured for this run"),
            );
            return Ok(());
        };
        let settings = &self.plan.settings;
        CaseRun {
            index,
            scenario: case.scenario,
            ctx: CaseContext {
                repo,
                source,
                scenario: case.scenario,
                timeout: settings.timeout,
                cache_via: None,
            },
            driver: driver.as_mut(),
            exec: self.exec,
            settings,
            dir: self.work_dir.join(format!("case-{index}")),
            sinks,
        }
        .execute(result)
    }
}

/// A case's result before anything ran.
pub fn blank_result(plan: &Plan, case: &CaseSpec) -> CaseResult {
    CaseResult::new(
        plan.key(case),
        case.scenario,
        plan.repo(case).parameters.clone(),
    )
}

fn finish_stats(result: &mut CaseResult) {
    let walls: Vec<f64> = result.samples.iter().map(|s| s.wall_s).collect();
    result.stats = Summary::of(&walls);
    let overheads: Vec<f64> = result.samples.iter().map(|s| s.overhead_s).collect();
    result.overhead_median_s = (!overheads.is_empty()).then(|| median(&overheads));
}
