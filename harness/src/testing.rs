//! Test doubles for the scheduler: an executor that runs nothing and a driver that needs
//! no tool, both scripted by the test. The end-to-end tests use the real tools instead.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use url::Url;

use crate::error::Result;
use crate::plan::{manifest, Lane, Plan, Scenario, Settings};
use crate::results::{CacheUse, ToolUse};
use crate::run::events::{Event, EventSink};
use crate::run::process::{CommandSpec, CpuScope, Executor, Exit, ProcessOutcome};
use crate::tools::build_graph::BuildGraph;
use crate::tools::{
    BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation, CaseContext, Counters, Outputs,
    PreparedBuild,
};

/// The program the fake driver's commands name.
pub const FAKE_TOOL: &str = "fake-build";

/// How a fake build ends, from its arguments.
type Answer = Box<dyn Fn(&[String]) -> Exit + Sync>;

/// Runs nothing: answers each command with what `answer` says, and remembers the
/// command lines it was given (helper commands, such as git, get exit code 1).
pub struct FakeExecutor {
    answer: Answer,
    /// Wall time of the n-th fake build (10 ms unless set).
    walls: Option<Box<dyn Fn(usize) -> Duration + Sync>>,
    pub ran: Mutex<Vec<Vec<String>>>,
}

impl FakeExecutor {
    /// `answer` gets the fake build's arguments (its mode first) and says how it ends.
    pub fn new(answer: impl Fn(&[String]) -> Exit + Sync + 'static) -> Self {
        FakeExecutor {
            answer: Box::new(answer),
            walls: None,
            ran: Mutex::new(Vec::new()),
        }
    }

    /// Gives the n-th fake build (0-based, all modes) the wall time `wall(n)`.
    pub fn with_walls(mut self, wall: impl Fn(usize) -> Duration + Sync + 'static) -> Self {
        self.walls = Some(Box::new(wall));
        self
    }

    /// The fake builds it ran, by their arguments.
    pub fn builds(&self) -> Vec<Vec<String>> {
        self.ran.lock().unwrap().clone()
    }
}

impl Executor for FakeExecutor {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (exit, n) = if spec.program == Path::new(FAKE_TOOL) {
            let mut ran = self.ran.lock().unwrap();
            ran.push(args.clone());
            ((self.answer)(&args), ran.len() - 1)
        } else {
            (Exit::Code(1), 0)
        };
        let wall = match (&self.walls, exit) {
            (_, Exit::TimedOut) => Duration::from_millis(500),
            (Some(wall), _) => wall(n),
            (None, _) => Duration::from_millis(10),
        };
        Ok(ProcessOutcome {
            exit,
            wall,
            user: Duration::from_millis(5),
            sys: Duration::from_millis(1),
            cpu_scope: CpuScope::Children,
            max_rss_bytes: Some(1 << 20),
            server_max_rss_bytes: None,
        })
    }
}

/// A driver for no tool: its builds are fake commands whose first argument is the mode
/// (`prime`, `fresh`, `from-cache`, `noop`), and whose outputs the test chooses per mode.
pub struct FakeDriver {
    pub cache: Option<Url>,
    /// Outputs of builds in each mode; `fresh` when a mode has none of its own.
    pub outputs: BTreeMap<&'static str, Outputs>,
    primed: BTreeMap<String, Outputs>,
}

impl FakeDriver {
    pub fn new(cache: Option<&str>) -> Self {
        let clean: Outputs = [("out".to_string(), "good".to_string())].into();
        FakeDriver {
            cache: cache.map(|u| Url::parse(u).unwrap()),
            outputs: [("fresh", clean)].into(),
            primed: BTreeMap::new(),
        }
    }
}

fn mode_name(mode: BuildMode) -> &'static str {
    match mode {
        BuildMode::Prime => "prime",
        BuildMode::Fresh => "fresh",
        BuildMode::FromCache { .. } => "from-cache",
        BuildMode::Noop => "noop",
    }
}

impl BuildDriver for FakeDriver {
    fn primed(&self, case: &CaseContext) -> Option<&Outputs> {
        self.primed.get(&case.state_key())
    }

    fn keep_primed(&mut self, case: &CaseContext, _build: PreparedBuild, outputs: Outputs) {
        self.primed.insert(case.state_key(), outputs);
    }

    fn fill_cache(
        &mut self,
        _case: &CaseContext,
        _exec: &dyn Executor,
    ) -> Result<Option<crate::results::CacheFill>> {
        Ok(None)
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> Result<PreparedBuild> {
        let mut args: Vec<OsString> = vec![mode_name(mode).into()];
        // Like the real drivers, only a build that reads the cache goes through the proxy.
        if let (BuildMode::FromCache { .. }, Some(via)) = (mode, case.cache_via) {
            args.push(format!("via={via}").into());
        }
        if case.explain {
            args.push("explain".into());
        }
        let mut spec = CommandSpec::new(FAKE_TOOL, args, case.timeout);
        spec.stdout = dir.join("stdout");
        spec.stderr = dir.join("stderr");
        Ok(PreparedBuild {
            spec,
            state: BuildState::Nix {
                store: dir.join(mode_name(mode)),
            },
            files: Vec::new(),
        })
    }

    fn inspect(&self, build: &PreparedBuild, outcome: &ProcessOutcome) -> BuildReport {
        BuildReport {
            counters: Counters {
                built: Some(1),
                substituted: Some(0),
                ..Counters::default()
            },
            error: (!outcome.success()).then(|| {
                format!(
                    "{} build {}",
                    build.spec.args[0].to_string_lossy(),
                    outcome.describe()
                )
            }),
            messages: Vec::new(),
            time_split: None,
            transfer: None,
            log_tail: if outcome.success() {
                Vec::new()
            } else {
                vec!["fake-build: the last line it printed".into()]
            },
        }
    }

    fn outputs(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> Result<Outputs> {
        let mode = build.spec.args[0].to_string_lossy().into_owned();
        Ok(self
            .outputs
            .get(mode.as_str())
            .or_else(|| self.outputs.get("fresh"))
            .cloned()
            .unwrap_or_default())
    }

    /// One step per output, reading nothing.
    fn graph(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> Result<BuildGraph> {
        Ok(BuildGraph::from_outputs(self.outputs(build, exec)?))
    }

    fn tool_use(&self, _case: &CaseContext) -> Result<ToolUse> {
        Ok(ToolUse {
            version: "fake 1.0".into(),
            ..ToolUse::default()
        })
    }

    fn output_paths(&self, build: &PreparedBuild, _exec: &dyn Executor) -> Result<Vec<PathBuf>> {
        let BuildState::Nix { store } = &build.state else {
            return Ok(Vec::new());
        };
        Ok(vec![store.clone()])
    }

    fn cache_use(&self) -> Option<CacheUse> {
        self.cache.as_ref().map(|url| CacheUse {
            backend: crate::results::CacheBackend::Http,
            url: url.to_string(),
        })
    }

    fn cache_location(&self) -> Option<CacheLocation<'_>> {
        self.cache.as_ref().map(CacheLocation::Url)
    }

    fn tool_fallback_flag(&self) -> Option<&'static str> {
        Some("--fallback")
    }

    fn tuned_settings(&self) -> Vec<String> {
        Vec::new()
    }
}

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
    let mut drivers = crate::run::Drivers::new();
    drivers.insert(crate::plan::System::Nix, Box::new(driver));
    let mut events = EventNames::default();
    let results = crate::run::Scheduler {
        plan,
        exec,
        drivers: &mut drivers,
        work_dir: work.path(),
        skip_reason,
        cache_link: None,
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
