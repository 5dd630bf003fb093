//! One build, start to finish: prepared by its driver, run, inspected, its outputs taken
//! when asked, its state cleaned up; and how a build becomes a sample or an attempt.

use std::path::Path;
use std::time::Instant;

use crate::error::{IoContext, StepResult};
use crate::exec::observe::Observation;
use crate::exec::process::{Executor, Exit, ProcessOutcome};
use crate::exec::scratch::remove_tree;
use crate::results::{Attempt, CacheFill, CheckResult, Reproduce, Sample};
use crate::run::check;
use crate::tools::build_graph::BuildGraph;
use crate::tools::{BuildDriver, BuildMode, BuildReport, CaseContext, Outputs};

/// What a build's caller takes from it before its state is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Nothing,
    /// The outputs' digests and the build graph (every step's inputs and outputs).
    Graph,
}

/// One finished build, inspected and cleaned up.
pub struct Build {
    pub outcome: ProcessOutcome,
    pub report: BuildReport,
    pub outputs: Option<Outputs>,
    pub graph: Option<BuildGraph>,
    pub reproduce: Reproduce,
    /// Harness time around the build, beyond its own wall time and its check's.
    pub overhead_s: f64,
    /// The repo's `[check]` on the output (a failed one is also the report's error).
    pub check: Option<CheckResult>,
    /// What the lane's observer saw while the build and its check ran.
    pub observed: Observation,
    /// A `BuildMode::Fill` build that succeeded: what filling its fresh cache did.
    pub fill: Option<CacheFill>,
}

/// Runs one build in `dir` and cleans up after it: inspects its logs, runs the repo's check
/// on its output (under the lane's watch, if any), fills a `fill` build's fresh cache, takes
/// its output digests (and graph) when asked, lets the driver stop what it started, removes
/// its folder.
pub fn run_build(
    driver: &mut dyn BuildDriver,
    exec: &dyn Executor,
    ctx: &CaseContext,
    mode: BuildMode,
    dir: &Path,
    want: Want,
) -> StepResult<Build> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let build = driver.prepare(ctx, mode, dir)?;
    let watch = exec.observer().map(|o| o.start());
    let outcome = exec.run_with_servers(&build.spec, &driver.servers(&build))?;
    let explain_misses = matches!(mode, BuildMode::FromCache { .. }) && ctx.explain;
    let mut report = driver.inspect(&build, &outcome, explain_misses);
    let check = check::after_build(ctx, driver, &build, &outcome, exec, dir)?;
    if let (Some(check), Some(spec)) = (&check, &ctx.repo.check) {
        report.error = report.error.or_else(|| check::failure(check, spec));
    }
    let observed = watch.map(|w| w.stop()).unwrap_or_default();
    let fill = if mode == BuildMode::Fill && outcome.success() && report.error.is_none() {
        Some(driver.fill_fresh(ctx, &build, exec)?)
    } else {
        None
    };
    let succeeded = outcome.success() && want != Want::Nothing;
    let logged_outputs = report.outputs.take();
    let outputs = match logged_outputs {
        _ if !succeeded => None,
        Some(outputs) => Some(outputs),
        None => Some(driver.outputs(&build, exec)?),
    };
    let graph = if succeeded {
        Some(driver.graph(&build, exec)?)
    } else {
        None
    };
    driver.finish(&build, exec)?;
    remove_tree(dir).context(|| format!("removing {}", dir.display()))?;
    let check_s = check.as_ref().map_or(0.0, |c| c.wall_s);
    let fill_s = fill.as_ref().map_or(0.0, |f| f.wall_s);
    let overhead_s =
        (started.elapsed().saturating_sub(outcome.wall).as_secs_f64() - check_s - fill_s).max(0.0);
    Ok(Build {
        outcome,
        report,
        outputs,
        graph,
        reproduce: build.reproduce(),
        overhead_s,
        check,
        observed,
        fill,
    })
}

/// (exit code, signal, timed out), as results record how a process ended.
pub(crate) fn exit_parts(outcome: &ProcessOutcome) -> (Option<i32>, Option<i32>, bool) {
    match outcome.exit {
        Exit::Code(c) => (Some(c), None, false),
        Exit::Signal(s) => (None, Some(s), false),
        Exit::TimedOut => (None, None, true),
    }
}

impl Build {
    pub fn to_sample(&self) -> Sample {
        let (exit_code, signal, timed_out) = exit_parts(&self.outcome);
        let c = &self.report.counters;
        Sample {
            wall_s: self.outcome.wall.as_secs_f64(),
            user_s: self.outcome.user.as_secs_f64(),
            sys_s: self.outcome.sys.as_secs_f64(),
            cpu_scope: Some(self.outcome.cpu_scope.name().into()),
            max_rss_bytes: self.outcome.max_rss_bytes,
            server_max_rss_bytes: self.outcome.server_max_rss_bytes,
            exit_code,
            signal,
            timed_out,
            built: c.built,
            substituted: c.substituted,
            downloaded_bytes: c.downloaded_bytes,
            from_team_cache: c.from_team_cache,
            by_source: c.by_source.clone(),
            actions: c.actions,
            remote_cache_hits: c.remote_cache_hits,
            processes: c.processes,
            by_mnemonic: c.by_mnemonic.clone(),
            notes: c.notes.clone(),
            messages: self.report.messages.clone(),
            log_tail: self.report.log_tail.clone(),
            time_split: self.report.time_split.clone(),
            explanations: self.report.explanations.clone(),
            transfer_floor: None,
            explain_off: false,
            retry: None,
            check: self.check.clone(),
            gpu_trace: self.observed.gpu_trace.clone(),
            overhead_s: self.overhead_s,
            position: None,
            fill: self.fill.clone(),
        }
    }

    pub fn to_attempt(&self) -> Attempt {
        let (exit_code, signal, timed_out) = exit_parts(&self.outcome);
        Attempt {
            wall_s: self.outcome.wall.as_secs_f64(),
            exit_code,
            signal,
            timed_out,
            messages: self.report.messages.clone(),
            log_tail: self.report.log_tail.clone(),
            error: self.report.error.clone(),
            check: self.check.clone(),
        }
    }
}
