//! Helpers for the scheduler's unit tests: a plan, a scheduler run with the fake driver
//! and executor (`crate::fake_tools`, scripted by the test), the events it reported. The
//! end-to-end tests use the real tools instead.

use std::path::Path;

use crate::error::Result;
use crate::exec::process::Executor;
pub use crate::fake_tools::{FakeDriver, FakeExecutor, FAKE_TOOL};
use crate::plan::{manifest, Lane, Plan, Scenario, Settings};
use crate::run::events::{Event, EventSink};

/// A plan of one repo (with Nix targets) in `scenarios`, with `settings`.
pub fn plan(scenarios: &[Scenario], settings: Settings) -> Plan {
    let text = "name = \"r\"\ndescription = \"d\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n";
    let repo = manifest::parse(text, Path::new("/tmp/repo.toml")).unwrap();
    Plan::build(vec![repo], None, scenarios, Lane::Host, settings).unwrap()
}

/// Runs `plan` through a scheduler with `driver` for Nix; returns the results and the
/// events' names.
pub fn schedule(
    plan: &Plan,
    exec: &dyn Executor,
    driver: FakeDriver,
    skip_reason: Option<&str>,
) -> (Vec<crate::results::CaseResult>, Vec<String>) {
    let work = tempfile::tempdir().unwrap();
    let mut drivers = crate::run::scheduler::Drivers::new();
    drivers.insert(crate::plan::System::Nix, Box::new(driver));
    let mut events = EventNames::default();
    let results = crate::run::scheduler::Scheduler {
        plan,
        exec,
        drivers: &mut drivers,
        work_dir: work.path(),
        skip_reason,
        cache_link: None,
        ci_ref: None,
    }
    .run(&mut [&mut events])
    .unwrap();
    (results, events.0)
}

/// Remembers the events' names, for tests that check what a scheduler reported.
#[derive(Default)]
pub struct EventNames(pub Vec<String>);

impl EventSink for EventNames {
    fn event(&mut self, event: &Event) -> Result<()> {
        let name = match event {
            Event::RunStarted { .. } => "run-started".to_string(),
            Event::LaneIdentified { .. } => "lane".to_string(),
            Event::CaseStarted { index, .. } => format!("case-started {index}"),
            Event::Preparing { what, .. } => format!("preparing {what}"),
            Event::BuildFinished { warmup, .. } => {
                format!("{} finished", if *warmup { "warm-up" } else { "sample" })
            }
            Event::CaseFinished { index, .. } => format!("case-finished {index}"),
        };
        self.0.push(name);
        Ok(())
    }
}
