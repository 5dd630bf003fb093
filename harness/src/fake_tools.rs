//! Fake tools, for developers: `flywheel-bench run --fake-tools FILE` (hidden, as
//! hyperfine's debug mode is) runs the whole command, from the arguments to the results
//! JSON and the exit code, with no Nix, Bazel, nginx or QEMU. Its builds are fake commands
//! that no process runs; FILE says how each ends (see [`FakeScript`]). The scheduler's unit
//! tests use the same executor and driver. Nothing below the command line knows of them:
//! they come in through `run::session::Toolbox` and the traits of the real ones.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use crate::cache::Caches;
use crate::error::{Error, Result, StepResult};
use crate::exec::process::{
    check_interrupted, interrupting_signal, CommandSpec, CpuScope, Executor, Exit, ProcessOutcome,
};
use crate::plan::cache::{BazelCache, BazelEndpoint, NixCache};
use crate::plan::config::{BazelCacheConfig, NixCacheConfig};
use crate::plan::System;
use crate::results::{CacheBackend, CacheFill, CacheUse, ToolUse};
use crate::run::scheduler::Drivers;
use crate::run::session::{CacheSource, Equipment, Need, Toolbox};
use crate::tools::build_graph::BuildGraph;
use crate::tools::{
    BuildDriver, BuildMode, BuildReport, BuildState, CacheLocation, CaseContext, Counters, Outputs,
    PreparedBuild,
};

/// The program the fake driver's commands name.
pub const FAKE_TOOL: &str = "fake-build";
/// Where the fake driver names its build's system and scenario for the executor.
const SYSTEM_VAR: &str = "FAKE_SYSTEM";
const SCENARIO_VAR: &str = "FAKE_SCENARIO";
/// The line of a fake build's log that says how many items came from the team cache.
const TEAM_CACHE_LINE: &str = "from_team_cache=";

/// How fake builds end, from the `--fake-tools` file (TOML):
///
/// ```toml
/// missing = ["bazel"]     # tools to report as not found (exit 3)
///
/// [[build]]               # the first rule that matches a build decides how it ends;
/// system = "nix"          # a build no rule matches exits 0 after 10 ms
/// scenario = "warm"       # cold, warm, noop, verify, fallback:FAULT[+tuned]
/// mode = "from-cache"     # prime, fresh, from-cache, noop
/// exit = 1
/// wall_ms = 10
/// from_team_cache = 3     # items its log says came from the team cache
/// signal = "SIGTERM"      # the harness gets this signal during the build (an interruption)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeScript {
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub build: Vec<FakeRule>,
}

/// Which builds a rule is for (every field it leaves out matches all) and how they end.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeRule {
    pub system: Option<System>,
    pub scenario: Option<String>,
    pub mode: Option<String>,
    pub exit: Option<i32>,
    pub wall_ms: Option<u64>,
    pub from_team_cache: Option<u64>,
    pub signal: Option<Signal>,
}

/// An interrupting signal a fake build sends the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Signal {
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGHUP")]
    Hup,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Int => libc::SIGINT,
            Signal::Term => libc::SIGTERM,
            Signal::Hup => libc::SIGHUP,
        }
    }
}

impl FakeScript {
    /// Reads the `--fake-tools` file.
    pub fn load(path: &Path) -> Result<FakeScript> {
        let bad = |message: String| Error::Manifest {
            path: path.to_path_buf(),
            message,
            fix: "see the README's Development section for what a fake tools file holds".into(),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        toml::from_str(&text).map_err(|e| bad(e.to_string().trim_end().to_string()))
    }

    /// How the build `call` ends.
    fn end(&self, call: &FakeCall) -> FakeEnd {
        let rule = self.build.iter().find(|r| {
            r.system.is_none_or(|s| s.name() == call.system)
                && r.scenario.as_deref().is_none_or(|s| s == call.scenario)
                && r.mode.as_deref().is_none_or(|m| m == call.args[0])
        });
        let Some(rule) = rule else {
            return FakeEnd::default();
        };
        FakeEnd {
            exit: Exit::Code(rule.exit.unwrap_or(0)),
            wall: rule.wall_ms.map(Duration::from_millis),
            from_team_cache: rule.from_team_cache,
            signal: rule.signal.map(Signal::number),
        }
    }
}

/// One fake build, as the executor sees it.
pub struct FakeCall<'a> {
    /// The mode first (`prime`, `fresh`, `from-cache`, `noop`), then `via=ADDR` when it
    /// reads the cache through the fault proxy, then `explain` when it is explained.
    pub args: &'a [String],
    pub system: &'a str,
    pub scenario: &'a str,
}

/// How a fake build ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeEnd {
    pub exit: Exit,
    /// Its wall time (10 ms unless set).
    pub wall: Option<Duration>,
    /// What its log says came from the team cache.
    pub from_team_cache: Option<u64>,
    /// A signal the harness receives while it runs.
    pub signal: Option<i32>,
}

impl Default for FakeEnd {
    fn default() -> Self {
        FakeEnd {
            exit: Exit::Code(0),
            wall: None,
            from_team_cache: None,
            signal: None,
        }
    }
}

type Answer = Box<dyn Fn(&FakeCall) -> FakeEnd + Sync>;

/// A fake build's wall time from its arguments and its start on the virtual clock.
type Load = Box<dyn Fn(&[String], f64) -> Duration + Sync>;

/// Runs nothing: answers each fake build with what its script says, writes the fake log
/// its driver reads, and remembers the builds it was given. Other commands (git, `--version`)
/// get exit code 1.
pub struct FakeExecutor {
    answer: Answer,
    /// Wall time of the n-th fake build, where the answer sets none.
    walls: Option<Box<dyn Fn(usize) -> Duration + Sync>>,
    /// Wall time of a fake build from its arguments and when it starts on a virtual clock
    /// (the fake builds' wall times so far): a load that changes during the run.
    loaded: Option<Load>,
    clock_s: Mutex<f64>,
    ran: Mutex<Vec<Vec<String>>>,
}

impl FakeExecutor {
    /// Builds end as `script` says.
    pub fn scripted(script: FakeScript) -> Self {
        FakeExecutor::answering(move |call| script.end(call))
    }

    fn answering(answer: impl Fn(&FakeCall) -> FakeEnd + Sync + 'static) -> Self {
        FakeExecutor {
            answer: Box::new(answer),
            walls: None,
            loaded: None,
            clock_s: Mutex::new(0.0),
            ran: Mutex::new(Vec::new()),
        }
    }
}

impl Executor for FakeExecutor {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        check_interrupted()?;
        let outcome = |exit, wall| ProcessOutcome {
            exit,
            wall,
            user: Duration::from_millis(5),
            sys: Duration::from_millis(1),
            cpu_scope: CpuScope::Children,
            max_rss_bytes: Some(1 << 20),
            server_max_rss_bytes: None,
        };
        if spec.program != Path::new(FAKE_TOOL) {
            return Ok(outcome(Exit::Code(1), Duration::ZERO));
        }
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let var = |name: &str| {
            spec.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let (system, scenario) = (var(SYSTEM_VAR), var(SCENARIO_VAR));
        let end = (self.answer)(&FakeCall {
            args: &args,
            system: &system,
            scenario: &scenario,
        });
        let n = {
            let mut ran = self.ran.lock().unwrap_or_else(|e| e.into_inner());
            ran.push(args.clone());
            ran.len() - 1
        };
        let log = end
            .from_team_cache
            .map(|n| format!("{TEAM_CACHE_LINE}{n}\n"))
            .unwrap_or_default();
        // The driver reads the log, as a real one reads its tool's.
        std::fs::write(&spec.stdout, log)
            .map_err(|e| Error::io(format!("writing {}", spec.stdout.display()), e))?;
        if let Some(signal) = end.signal {
            interrupt_self(signal);
        }
        let mut clock = self.clock_s.lock().unwrap_or_else(|e| e.into_inner());
        let wall = match (end.wall, &self.walls, &self.loaded, end.exit) {
            (_, _, _, Exit::TimedOut) => Duration::from_millis(500),
            (Some(wall), _, _, _) => wall,
            (None, _, Some(load), _) => load(&args, *clock),
            (None, Some(walls), None, _) => walls(n),
            (None, None, None, _) => Duration::from_millis(10),
        };
        *clock += wall.as_secs_f64();
        drop(clock);
        // As the real executor does: an interrupted build is an interruption of the run.
        check_interrupted()?;
        Ok(outcome(end.exit, wall))
    }
}

/// Sends this process `signal` and waits (at most 5 s) for its handler to see it.
fn interrupt_self(signal: i32) {
    // SAFETY: plain syscalls on this process.
    unsafe { libc::kill(libc::getpid(), signal) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while interrupting_signal().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A driver for no tool: its builds are fake commands whose first argument is the mode
/// (`prime`, `fresh`, `from-cache`, `noop`), and whose outputs are chosen per mode.
pub struct FakeDriver {
    pub system: System,
    pub cache: Option<CacheUse>,
    cache_url: Option<Url>,
    /// Outputs of builds in each mode; `fresh` when a mode has none of its own.
    pub outputs: BTreeMap<&'static str, Outputs>,
    primed: BTreeMap<String, Outputs>,
}

impl FakeDriver {
    /// A driver for `system` reading `cache`.
    pub fn of(system: System, cache: Option<CacheUse>) -> Self {
        let clean: Outputs = [("out".to_string(), "good".to_string())].into();
        FakeDriver {
            system,
            cache_url: cache.as_ref().and_then(|c| Url::parse(&c.url).ok()),
            cache,
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
        BuildMode::Fill => "fill",
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
    ) -> StepResult<Option<CacheFill>> {
        Ok(None)
    }

    fn fill_unavailable(&self, _case: &CaseContext) -> Option<String> {
        None
    }

    /// A fill that took no time after the build: the fake tool has nothing to upload.
    fn fill_fresh(
        &mut self,
        _case: &CaseContext,
        _build: &PreparedBuild,
        _exec: &dyn Executor,
    ) -> StepResult<CacheFill> {
        Ok(CacheFill::timed(crate::results::FillMethod::NixCopy, 0.0))
    }

    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> StepResult<PreparedBuild> {
        let mut args: Vec<OsString> = vec![mode_name(mode).into()];
        // Like the real drivers, only a build that reads the cache goes through the proxy.
        if let (BuildMode::FromCache { .. }, Some(via)) = (mode, case.cache_via) {
            args.push(format!("via={via}").into());
        }
        if case.explain {
            args.push("explain".into());
        }
        let env = vec![
            (SYSTEM_VAR.to_string(), self.system.name().into()),
            (SCENARIO_VAR.to_string(), case.scenario.to_string().into()),
        ];
        let mut spec = CommandSpec::new(FAKE_TOOL, args, case.timeout).env(env);
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

    fn inspect(
        &self,
        build: &PreparedBuild,
        outcome: &ProcessOutcome,
        _explain_misses: bool,
    ) -> BuildReport {
        let log = std::fs::read_to_string(&build.spec.stdout).unwrap_or_default();
        let from_team_cache = log
            .lines()
            .find_map(|l| l.strip_prefix(TEAM_CACHE_LINE)?.parse().ok());
        BuildReport {
            counters: Counters {
                built: Some(1),
                substituted: Some(0),
                from_team_cache,
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
            explanations: None,
            outputs: None,
        }
    }

    fn outputs(&mut self, build: &PreparedBuild, _exec: &dyn Executor) -> StepResult<Outputs> {
        let mode = build.spec.args[0].to_string_lossy().into_owned();
        Ok(self
            .outputs
            .get(mode.as_str())
            .or_else(|| self.outputs.get("fresh"))
            .cloned()
            .unwrap_or_default())
    }

    /// One step per output, reading nothing.
    fn graph(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<BuildGraph> {
        Ok(BuildGraph::from_outputs(self.outputs(build, exec)?))
    }

    fn tool_use(&self, _case: &CaseContext) -> StepResult<ToolUse> {
        Ok(ToolUse {
            version: "fake 1.0".into(),
            ..ToolUse::default()
        })
    }

    fn output_paths(
        &self,
        build: &PreparedBuild,
        _exec: &dyn Executor,
    ) -> StepResult<Vec<PathBuf>> {
        let BuildState::Nix { store } = &build.state else {
            return Ok(Vec::new());
        };
        Ok(vec![store.clone()])
    }

    fn cache_use(&self, _case: &CaseContext) -> Option<CacheUse> {
        self.cache.clone()
    }

    fn cache_location(&self, _case: &CaseContext) -> Option<CacheLocation<'_>> {
        self.cache_url.as_ref().map(CacheLocation::Url)
    }

    fn tool_fallback_flag(&self) -> Option<&'static str> {
        Some("--fallback")
    }

    fn tuned_settings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The toolbox of `--fake-tools`: the tools the script does not call missing are found,
/// the caches are the configured ones (the embedded one a fake address nothing listens
/// on), and every build goes through the fake executor.
pub struct FakeTools {
    script: FakeScript,
}

impl FakeTools {
    pub fn new(script: FakeScript) -> FakeTools {
        FakeTools { script }
    }

    /// What this run's other commands (git, `--version`) go through: nothing runs.
    pub fn helper_executor(&self) -> FakeExecutor {
        FakeExecutor::scripted(self.script.clone())
    }
}

/// Where the fake embedded cache is said to be: a port nothing serves (discard).
const FAKE_EMBEDDED: &str = "http://127.0.0.1:9";

impl Toolbox for FakeTools {
    fn equip(&self, need: Need<'_>, _exec: &dyn Executor) -> Result<Equipment> {
        let uses = |system: System| need.plans.iter().any(|p| p.uses(system));
        let wanted = [
            ("nix", uses(System::Nix)),
            ("bazel", uses(System::Bazel)),
            ("qemu-system-x86_64", need.vm_lane),
        ];
        if let Some((tool, _)) = wanted
            .iter()
            .find(|(tool, wanted)| *wanted && self.script.missing.iter().any(|m| m == tool))
        {
            return Err(Error::MissingTool {
                tool,
                needed_for: "by the fake tools file".into(),
                fix: "drop it from `missing` in the --fake-tools file",
            });
        }
        let url = |path: &str| Url::parse(&format!("{FAKE_EMBEDDED}/{path}")).expect("a URL");
        let (nix, bazel) = match need.caches {
            CacheSource::Configured { nix, bazel, .. } => (
                match nix {
                    NixCacheConfig::Embedded => NixCache::store(
                        CacheBackend::EmbeddedNginx,
                        url("nix"),
                        "fake-1:AAAA".into(),
                        None,
                        true,
                    ),
                    NixCacheConfig::External(cache) => cache.clone(),
                },
                match bazel {
                    BazelCacheConfig::Embedded => BazelCache {
                        backend: CacheBackend::EmbeddedNginx,
                        endpoint: BazelEndpoint::Remote(url("bazel")),
                        headers: Vec::new(),
                        read_only: false,
                        fill_root: None,
                    },
                    BazelCacheConfig::External(cache) => cache.clone(),
                },
            ),
            CacheSource::Given { .. } => {
                return Err(Error::Usage(
                    "--fake-tools runs the host's lanes only".into(),
                ))
            }
        };
        let mut drivers = Drivers::new();
        drivers.insert(
            System::Nix,
            Box::new(FakeDriver::of(System::Nix, Some(nix.use_record()))),
        );
        drivers.insert(
            System::Bazel,
            Box::new(FakeDriver::of(System::Bazel, Some(bazel.use_record()))),
        );
        Ok(Equipment {
            drivers,
            builds: Box::new(FakeExecutor::scripted(self.script.clone())),
            caches: Caches::given(Some(nix), Some(bazel)),
            qemu: None,
            notes: vec![
                "fake tools (--fake-tools): no build ran; every figure is the fake script's".into(),
            ],
            checks: Vec::new(),
        })
    }
}

/// The scheduler's unit tests script the fakes with closures.
#[cfg(test)]
impl FakeExecutor {
    /// `answer` gets the fake build's arguments (its mode first) and says how it ends.
    pub fn new(answer: impl Fn(&[String]) -> Exit + Sync + 'static) -> Self {
        FakeExecutor::answering(move |call| FakeEnd {
            exit: answer(call.args),
            ..FakeEnd::default()
        })
    }

    /// Gives the n-th fake build (0-based, all modes) the wall time `wall(n)`.
    pub fn with_walls(mut self, wall: impl Fn(usize) -> Duration + Sync + 'static) -> Self {
        self.walls = Some(Box::new(wall));
        self
    }

    /// Gives each fake build the wall time `wall(args, start)`, `start` its start on a
    /// virtual clock that each fake build advances by its own wall time.
    pub fn with_load(mut self, wall: impl Fn(&[String], f64) -> Duration + Sync + 'static) -> Self {
        self.loaded = Some(Box::new(wall));
        self
    }

    /// The fake builds it ran, by their arguments.
    pub fn builds(&self) -> Vec<Vec<String>> {
        self.ran.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
impl FakeDriver {
    /// A Nix driver whose cache (if any) is at `cache`, recorded as an http one.
    pub fn new(cache: Option<&str>) -> Self {
        let cache = cache.map(|u| CacheUse {
            backend: CacheBackend::Http,
            url: u.to_string(),
            compression: None,
        });
        FakeDriver::of(System::Nix, cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_decides_and_unknown_keys_are_refused() {
        let script: FakeScript = toml::from_str(
            "[[build]]\nscenario = \"warm\"\nexit = 1\n[[build]]\nsystem = \"bazel\"\nwall_ms = 7\nfrom_team_cache = 2\n",
        )
        .unwrap();
        let args = ["from-cache".to_string()];
        let call = |system, scenario| FakeCall {
            args: &args,
            system,
            scenario,
        };
        assert_eq!(script.end(&call("nix", "warm")).exit, Exit::Code(1));
        let bazel = script.end(&call("bazel", "cold"));
        assert_eq!(
            (bazel.exit, bazel.wall, bazel.from_team_cache),
            (Exit::Code(0), Some(Duration::from_millis(7)), Some(2))
        );
        assert_eq!(script.end(&call("nix", "cold")), FakeEnd::default());
        assert!(toml::from_str::<FakeScript>("[[build]]\nexits = 1\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let err = FakeScript::load(&dir.path().join("none.toml")).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::INVALID_INPUT);
    }
}
