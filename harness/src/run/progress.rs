//! The progress display: a bar over all timed builds on a terminal, one line per finished
//! case everywhere (CI logs included).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;
use crate::report::tables::seconds;
use crate::results::{CaseResult, Outcome};
use crate::run::events::{Event, EventSink};

pub struct Progress {
    bar: ProgressBar,
    builds_per_case: Vec<u64>,
    done_in_case: u64,
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
            done_in_case: 0,
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

fn case_line(label: &str, result: &CaseResult) -> String {
    match result.outcome {
        Outcome::Ok => {
            let stats = result.stats.as_ref();
            format!(
                "ok      {label}: median {} over {} samples",
                stats.map_or("-".into(), |s| seconds(s.median_s)),
                result.samples.len()
            )
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
                    .map(|c| {
                        let (warmups, samples) = plan.settings.builds(c.scenario);
                        (warmups + samples) as u64
                    })
                    .collect();
                self.labels = plan
                    .cases
                    .iter()
                    .map(|c| format!("{} {}", plan.key(c), c.scenario))
                    .collect();
                self.bar.set_length(plan.total_builds() as u64);
                self.bar.enable_steady_tick(Duration::from_millis(200));
            }
            Event::LaneIdentified { .. } => {}
            Event::CaseStarted { index, .. } => {
                self.done_in_case = 0;
                self.bar.set_message(self.labels[index].clone());
            }
            Event::Preparing { index, what } => {
                self.bar
                    .set_message(format!("{}: {what}", self.labels[index]));
            }
            Event::BuildFinished { index, warmup, .. } => {
                self.done_in_case += 1;
                self.bar.inc(1);
                let kind = if warmup { "warm-up" } else { "sample" };
                self.bar.set_message(format!(
                    "{} ({kind} {} done)",
                    self.labels[index], self.done_in_case
                ));
            }
            Event::CaseFinished { index, result } => {
                // A failed or skipped case gives back the builds it did not run.
                self.bar
                    .inc(self.builds_per_case[index].saturating_sub(self.done_in_case));
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
