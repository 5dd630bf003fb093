//! The progress display: a bar over all timed builds on a terminal, one line per finished
//! case everywhere (CI logs included).

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::report::tables::explain_cost;
use crate::results::sweep_point;
use crate::results::{CaseResult, Outcome, Sample};
use crate::run::events::{Event, EventSink};
use crate::stats::numbers::{count_of, median_interval, seconds};
use crate::stats::stopping::StopReason;

pub struct Progress {
    bar: ProgressBar,
    builds_per_case: Vec<u64>,
    /// Builds done per case in progress (interleaved cases are in progress together).
    done_in_case: BTreeMap<usize, u64>,
    /// Each case's sample wall times so far: its interval narrows as they come.
    walls: BTreeMap<usize, Vec<f64>>,
    labels: Vec<String>,
}

impl Progress {
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} builds  {msg}",
            )
            .expect("a valid template"),
        );
        Progress {
            bar,
            builds_per_case: Vec::new(),
            done_in_case: BTreeMap::new(),
            walls: BTreeMap::new(),
            labels: Vec::new(),
        }
    }

    fn line(&self, text: String) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// `median 1.20 s [1.10 s, 1.31 s]` once there are samples enough for an interval.
fn median_so_far(walls: &[f64]) -> String {
    format!("median {}", median_interval(walls))
}

/// `sample 2, median ...` after a timed build, whose walls include it; a fill sample names
/// its build and its fill, whose sum the case's statistics are of.
fn sample_status(sample: &Sample, walls: &[f64]) -> String {
    let n = walls.len();
    match &sample.fill {
        Some(fill) => format!(
            "sample {n}: build {} + fill {}, {}",
            seconds(sample.wall_s),
            seconds(fill.wall_s),
            median_so_far(walls)
        ),
        None => format!("sample {n}, {}", median_so_far(walls)),
    }
}

fn case_line(label: &str, result: &CaseResult) -> String {
    match result.outcome {
        Outcome::Ok => {
            let walls = result.walls();
            let mut line = format!(
                "ok      {label}: {} over {}",
                if walls.is_empty() {
                    "-".into()
                } else {
                    median_so_far(&walls)
                },
                count_of(walls.len(), "sample")
            );
            if let Some(stopped) = result.stopped.filter(|s| *s != StopReason::SampleCount) {
                line.push_str(&format!(" ({})", stopped.describe()));
            }
            if let Some(cost) = &result.explain_overhead {
                line.push_str(&format!("\n        {}", explain_cost(cost)));
            }
            // As hyperfine does: say when the samples themselves look suspicious.
            for warning in crate::stats::warnings(&walls) {
                line.push_str(&format!("\n        warning: {warning}"));
            }
            line
        }
        other => {
            let mut line = format!(
                "{:<7} {label}: {}",
                other.name(),
                result.reason.as_deref().unwrap_or("no reason recorded")
            );
            // The failing build's own last words (its retry's, when it had one).
            let last = result.warmups.iter().chain(&result.samples).last();
            let tail = last.map(|s| s.retry.as_ref().map_or(&s.log_tail, |r| &r.log_tail));
            for l in tail.into_iter().flatten() {
                line.push_str("\n        | ");
                line.push_str(l);
            }
            line
        }
    }
}

impl EventSink for Progress {
    fn event(&mut self, event: &Event) -> Result<()> {
        match *event {
            Event::RunStarted { plan } => {
                self.builds_per_case = plan
                    .cases
                    .iter()
                    .map(|c| plan.settings.max_builds(c.scenario) as u64)
                    .collect();
                self.labels = plan
                    .cases
                    .iter()
                    .map(|c| {
                        let label = format!("{} {}", plan.key(c), c.scenario);
                        // A sweep runs the same case at several parameters: name its point
                        // as the reports do.
                        let repo = plan.repo(c);
                        let siblings: Vec<_> = plan
                            .repos
                            .iter()
                            .filter(|r| r.name == repo.name)
                            .map(|r| &r.parameters)
                            .collect();
                        match sweep_point(&repo.parameters, &siblings) {
                            Some(point) => format!("{label} [{point}]"),
                            None => label,
                        }
                    })
                    .collect();
                self.bar.set_length(plan.total_builds() as u64);
                self.bar.enable_steady_tick(Duration::from_millis(200));
            }
            Event::LaneIdentified { .. } => {}
            Event::CaseStarted { index, .. } => {
                self.done_in_case.insert(index, 0);
                self.walls.insert(index, Vec::new());
                self.bar.set_message(self.labels[index].clone());
            }
            Event::Preparing { index, what } => {
                self.bar
                    .set_message(format!("{}: {what}", self.labels[index]));
            }
            Event::BuildFinished {
                index,
                warmup,
                sample,
            } => {
                let done = self.done_in_case.entry(index).or_default();
                *done += 1;
                self.bar.inc(1);
                let status = if warmup {
                    format!("warm-up {done} done")
                } else {
                    let walls = self.walls.entry(index).or_default();
                    walls.push(sample.with_fill_s());
                    sample_status(sample, walls)
                };
                self.bar
                    .set_message(format!("{} ({status})", self.labels[index]));
            }
            Event::CaseFinished { index, result } => {
                // A failed or skipped case gives back the builds it did not run.
                self.bar.inc(
                    self.builds_per_case[index]
                        .saturating_sub(self.done_in_case.remove(&index).unwrap_or(0)),
                );
                self.walls.remove(&index);
                self.line(case_line(&self.labels[index], result));
            }
        }
        Ok(())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CacheFill, FillMethod};

    #[test]
    fn a_fill_sample_shows_its_build_and_its_fill_and_the_median_of_their_sum() {
        let mut sample = Sample {
            wall_s: 2.0,
            ..Sample::default()
        };
        assert_eq!(
            sample_status(&sample, &[2.0]),
            "sample 1, median 2.00 s [n/a]"
        );
        sample.fill = Some(CacheFill::timed(FillMethod::NixCopy, 0.5));
        assert_eq!(
            sample_status(&sample, &[2.5, sample.with_fill_s()]),
            "sample 2: build 2.00 s + fill 500 ms, median 2.50 s [n/a]"
        );
    }
}
