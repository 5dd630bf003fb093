//! One run session: loads the plan, finds the tools, owns the scratch folder, the caches
//! and the drivers, and runs each lane's plan, handing every event to the sinks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{CacheNeeds, Caches};
use crate::error::{Error, Result};
use crate::lanes::vm::GuestJob;
use crate::lanes::{self, GuestRole, LaneContext, LaneRunner};
use crate::plan::config::{BazelCacheConfig, NixCacheConfig, RunConfig, VmSettings};
use crate::plan::{manifest, Explain, Lane, Plan, System};
use crate::results::explain::CacheLink;
use crate::results::lifecycle::{Bootstrap, Cleanup, SweptRun, TimedStep};
use crate::results::machine::{ProbeReading, SpeedProbe};
use crate::results::{ClockFloor, Environment, Results};
use crate::run::events::{emit, Event, EventLog, EventSink};
use crate::run::janitor;
use crate::run::process::{BuildExecutor, CommandSpec, Executor};
use crate::run::scheduler::{Drivers, Scheduler};
use crate::scratch::ScratchDir;
use crate::tools::bazel::{BazelDriver, BazelSetup};
use crate::tools::nix::{NixDriver, NixSetup};

/// The external tools a run needs, found before anything is built.
#[derive(Debug, Default)]
struct Tools {
    nix: Option<PathBuf>,
    bazel: Option<PathBuf>,
    nginx: Option<PathBuf>,
    qemu: Option<PathBuf>,
}

impl Tools {
    /// Every tool the plans need, or the first that is missing with how to get it.
    fn require(plans: &[Plan], embedded_cache: bool, vm_lane: bool) -> Result<Tools> {
        let uses = |system: System| plans.iter().any(|p| p.uses(system));
        let need = |wanted: bool, tool: &'static str, what: &str| {
            wanted
                .then(|| crate::tools::require(tool, what))
                .transpose()
        };
        Ok(Tools {
            nix: need(uses(System::Nix), "nix", "for nix cases")?,
            bazel: need(uses(System::Bazel), "bazel", "for bazel cases")?,
            nginx: need(
                embedded_cache,
                "nginx",
                "for the embedded cache of warm cases",
            )?,
            qemu: need(vm_lane, "qemu-system-x86_64", "for the vm lane")?,
        })
    }
}

/// Settings of the lanes the session prepares.
struct LaneSettings {
    vm: VmSettings,
    flake_dir: PathBuf,
    nix: NixSetup,
    bazel: BazelSetup,
    /// `$PATH` as the run started (the gpu lane's tools).
    search_path: std::ffi::OsString,
    /// Set inside a vm lane's guest: the lane as the host booted it.
    guest: Option<GuestRole>,
}

pub struct Session {
    // Field order is drop order: the drivers stop their build servers first, then what is
    // left in the builds' cgroups is killed, then the cache servers stop, then the scratch
    // folder that held them all is removed.
    drivers: Drivers,
    builds: BuildExecutor,
    caches: Caches,
    /// The link to the embedded cache, measured once.
    cache_link: Option<CacheLink>,
    /// What the builds' clock reads for `true`, measured once.
    clock_floor: Option<ClockFloor>,
    /// The speed probe before the first case (none inside a vm guest).
    speed_before: Option<ProbeReading>,
    scratch: ScratchDir,
    plans: Vec<Plan>,
    tools: Tools,
    lanes: LaneSettings,
    environment: Environment,
    /// The lane job's own steps and this session's start-up checks, timed.
    bootstrap: Bootstrap,
    /// What the janitor removed before the scratch folder was made.
    swept: Vec<SweptRun>,
}

impl Session {
    /// Loads the repos, fetches git sources, finds the tools, then makes the scratch
    /// folder, starts or connects the caches and sets up the drivers.
    pub fn open(config: &RunConfig, exec: &dyn Executor) -> Result<Session> {
        let repos = manifest::select(&config.repos)?;
        let mut plans = config
            .lanes
            .iter()
            .map(|&lane| {
                Plan::build(
                    repos.clone(),
                    config.systems.as_deref(),
                    &config.scenarios,
                    lane,
                    config.settings.clone(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        crate::run::sources::fetch_sources(
            plans.iter_mut().flat_map(|p| p.repos.iter_mut()),
            exec,
            &config.checkout_cache,
        )?;
        let warm = |system: System| plans.iter().any(|p| p.needs_cache(system));
        let embedded = (warm(System::Nix) && config.nix_cache == NixCacheConfig::Embedded)
            || (warm(System::Bazel) && config.bazel_cache == BazelCacheConfig::Embedded);
        let tools = Tools::require(&plans, embedded, config.lanes.contains(&Lane::Vm))?;
        let (scratch, swept) = open_scratch(&config.work_dir)?;
        let (caches, preflight) = TimedStep::time("cache preflight", || {
            Caches::provision(
                &config.nix_cache,
                &config.bazel_cache,
                CacheNeeds {
                    nix: tools.nix.as_deref().filter(|_| warm(System::Nix)),
                    bazel: warm(System::Bazel),
                    nginx: tools.nginx.as_deref(),
                    fill: config.settings.fill,
                    proxies: &config.proxies,
                },
                &scratch.path().join("cache"),
                exec,
            )
        });
        let caches = caches?;
        let mut bootstrap = Bootstrap {
            job: config.bootstrap.clone(),
            checks: Vec::new(),
        };
        if warm(System::Nix) || warm(System::Bazel) {
            bootstrap.checks.push(preflight);
        }
        let lanes = LaneSettings {
            vm: config.vm,
            flake_dir: config.flake_dir.clone(),
            nix: config.nix.clone(),
            bazel: config.bazel.clone(),
            search_path: config.search_path.clone(),
            guest: None,
        };
        Session::assemble(
            plans,
            tools,
            caches,
            (scratch, swept),
            lanes,
            bootstrap,
            exec,
        )
    }

    /// Inside a vm lane's guest: runs the job the host wrote, its events written for the
    /// host as they happen.
    pub fn serve_guest_job(job_file: &Path, exec: &dyn Executor) -> Result<()> {
        let text = crate::boundary::read_text(job_file, crate::boundary::TEXT_LIMIT)
            .map_err(|why| Error::Usage(format!("the guest job {}: {why}", job_file.display())))?;
        let job: GuestJob = serde_json::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "{}: not a guest job of this harness ({e})",
                job_file.display()
            ))
        })?;
        let mut events = EventLog::create(&job.events)?;
        Session::guest(job, exec)?.run(&mut [&mut events])
    }

    /// Inside a vm lane's guest: the host's plan against the host's caches.
    fn guest(job: GuestJob, exec: &dyn Executor) -> Result<Session> {
        let plans = vec![job.plan];
        let tools = Tools::require(&plans, false, false)?;
        let scratch = open_scratch(&job.work_dir)?;
        let caches = Caches::given(job.nix_cache, job.bazel_cache);
        let lanes = LaneSettings {
            vm: VmSettings::default(),
            flake_dir: job.work_dir,
            nix: job.nix,
            bazel: job.bazel,
            // A guest runs vm-lane cases only, which look for no tool on PATH.
            search_path: Default::default(),
            guest: Some(GuestRole {
                acceleration: job.acceleration,
                acceleration_note: job.acceleration_note,
                bootstrap: job.bootstrap,
            }),
        };
        Session::assemble(
            plans,
            tools,
            caches,
            scratch,
            lanes,
            Bootstrap::default(),
            exec,
        )
    }

    fn assemble(
        plans: Vec<Plan>,
        tools: Tools,
        caches: Caches,
        (scratch, swept): (ScratchDir, Vec<SweptRun>),
        lanes: LaneSettings,
        mut bootstrap: Bootstrap,
        exec: &dyn Executor,
    ) -> Result<Session> {
        let builds = BuildExecutor::for_run(&scratch, None);
        let clock_floor = measure_clock_floor(&builds, &scratch.path().join("clock-floor"))?;
        let environment = crate::lanes::host::identity(exec);
        // Before the first case, after the tools are found: nothing of the run is busy.
        // A vm guest's own run needs none: the host's results carry the host's.
        let speed_before = lanes.guest.is_none().then(crate::lanes::host::speed_probe);
        let version = |tool: &str| {
            environment
                .tools
                .get(tool)
                .map_or_else(String::new, |t| t.version.clone())
        };
        let mut drivers = Drivers::new();
        if let Some(nix) = &tools.nix {
            let dir = scratch.path().join("nix");
            let setup = NixSetup {
                version: version("nix"),
                ..lanes.nix.clone()
            };
            let driver = NixDriver::new(nix.clone(), &dir, caches.nix.clone(), setup)?;
            let probe = match lanes.guest {
                Some(_) => "user-namespace probe (in the guest)",
                None => "user-namespace probe",
            };
            let (sandboxed, step) = TimedStep::time(probe, || driver.require_sandbox(exec));
            sandboxed?;
            bootstrap.checks.push(step);
            drivers.insert(System::Nix, Box::new(driver));
        }
        if let Some(bazel) = &tools.bazel {
            let dir = scratch.path().join("bazel");
            let cache = caches.bazel.clone();
            let setup = BazelSetup {
                version: version("bazel"),
                ..lanes.bazel.clone()
            };
            let driver = BazelDriver::new(bazel.clone(), &dir, cache, &setup)?;
            drivers.insert(System::Bazel, Box::new(driver));
        }
        // Only explained warm samples use it (their transfer floors).
        let explains = plans.iter().any(|p| p.settings.explain != Explain::Off);
        let cache_link = if explains {
            let (link, step) = TimedStep::time("cache link probe", || caches.measure_link());
            let link = link?;
            bootstrap.checks.extend(link.map(|_| step));
            link
        } else {
            None
        };
        Ok(Session {
            drivers,
            builds,
            caches,
            cache_link,
            clock_floor,
            speed_before,
            scratch,
            plans,
            tools,
            lanes,
            environment,
            bootstrap,
            swept,
        })
    }

    /// The results document of this session's run, before any case: its settings, this
    /// machine, the harness checkout it ran from and how it measures.
    pub fn start_results(
        &self,
        config: &RunConfig,
        command: Vec<String>,
        exec: &dyn Executor,
    ) -> Results {
        let mut results = Results::start(
            config,
            command,
            self.environment.clone(),
            crate::tools::git::describe(exec, &config.flake_dir),
        );
        results.notes = self.notes();
        results.cache_link = self.cache_link;
        // What the end left is added when the session closes.
        results.cleanup = Some(Cleanup {
            swept: self.swept.clone(),
            left: None,
        });
        results.clock_floor = self.clock_floor.clone();
        results.speed_probe = self.speed_before.clone().map(|before| SpeedProbe {
            workload: crate::lanes::host::PROBE_WORKLOAD.into(),
            before,
            after: None,
        });
        results
    }

    /// The speed probe again, after the last case (its drift is the run's).
    pub fn probe_speed_after(&self) -> ProbeReading {
        crate::lanes::host::speed_probe()
    }

    /// `N cases, M timed builds`.
    pub fn describe_work(&self) -> String {
        let cases: usize = self.plans.iter().map(|p| p.cases.len()).sum();
        let builds: usize = self.plans.iter().map(Plan::total_builds).sum();
        format!("{cases} cases, {builds} timed builds")
    }

    /// What reviewers should know about how this session measures.
    pub fn notes(&self) -> Vec<String> {
        self.builds
            .accounting_note()
            .map(str::to_string)
            .into_iter()
            .collect()
    }

    /// Stops everything the session started (in its fields' drop order), then says what
    /// the janitor removed at its start and what is left now: nothing, when it worked.
    pub fn close(self) -> Cleanup {
        let scratch = self.scratch.path().to_path_buf();
        let cgroups = crate::scratch::read_record(&scratch).cgroups;
        let since = crate::scratch::Owner::current().start_ticks;
        // No build runs now: what still works in the folder serves the run (its cache
        // server, Bazel's servers).
        let servers = crate::scratch::processes_in(&scratch, since);
        let swept = self.swept.clone();
        drop(self);
        Cleanup {
            swept,
            left: Some(janitor::leftovers(&scratch, &cgroups, &servers, since)),
        }
    }

    /// Runs every lane's plan in turn. A failed case is recorded and the run goes on;
    /// an error that stops the run (or an interruption) is returned after the events of
    /// everything that finished.
    pub fn run(&mut self, sinks: &mut [&mut dyn EventSink]) -> Result<()> {
        let Session {
            drivers,
            builds,
            caches,
            cache_link,
            scratch,
            plans,
            tools,
            lanes,
            environment,
            bootstrap,
            ..
        } = self;
        let work_dir = scratch.path().join("builds");
        for plan in plans.iter() {
            let ctx = LaneContext {
                exec: &*builds,
                plan,
                search_path: &lanes.search_path,
                environment,
                flake_dir: &lanes.flake_dir,
                qemu: tools.qemu.as_deref(),
                vm: lanes.vm,
                nix_cache: caches.nix.as_ref(),
                bazel_cache: caches.bazel.as_ref(),
                nix: &lanes.nix,
                bazel: &lanes.bazel,
                dir: &scratch.path().join(format!("lane-{}", plan.lane().name())),
                guest: lanes.guest.as_ref(),
                bootstrap,
            };
            let lane = lanes::prepare(plan.lane(), &ctx)?;
            let plan = lane.plan.as_ref().unwrap_or(plan);
            emit(
                sinks,
                Event::LaneIdentified {
                    identity: &lane.identity,
                },
            )?;
            match lane.runner {
                LaneRunner::Local(lane_exec) => {
                    Scheduler {
                        plan,
                        exec: &*lane_exec,
                        drivers,
                        work_dir: &work_dir,
                        skip_reason: lane.skip_reason.as_deref(),
                        cache_link: *cache_link,
                    }
                    .run(sinks)?;
                }
                LaneRunner::Guest(guest) => {
                    emit(sinks, Event::RunStarted { plan })?;
                    guest.run(plan, sinks)?;
                }
            }
        }
        Ok(())
    }
}

/// Timed runs of `true` the clock floor is the median of, after one untimed run.
const CLOCK_FLOOR_SAMPLES: usize = 11;

/// `true` timed by the run's executor as its builds are; `None` where no `true` is on PATH
/// or it fails.
fn measure_clock_floor(builds: &BuildExecutor, dir: &Path) -> Result<Option<ClockFloor>> {
    let Some(program) = crate::tools::find("true") else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut spec = CommandSpec::new(&program, Vec::new(), Duration::from_secs(30));
    spec.stdout = dir.join("stdout");
    spec.stderr = dir.join("stderr");
    let mut walls = Vec::with_capacity(CLOCK_FLOOR_SAMPLES);
    for run in 0..=CLOCK_FLOOR_SAMPLES {
        let outcome = builds.run(&spec)?;
        if !outcome.success() {
            return Ok(None);
        }
        if run > 0 {
            walls.push(outcome.wall.as_secs_f64());
        }
    }
    Ok(Some(ClockFloor {
        command: program.display().to_string(),
        median_s: crate::stats::median(&walls),
        samples: walls.len(),
    }))
}

/// A fresh scratch folder, after removing what runs that died left in `parent`.
pub(crate) fn new_scratch(parent: &Path) -> Result<ScratchDir> {
    open_scratch(parent).map(|(scratch, _)| scratch)
}

/// [`new_scratch`], with what the janitor removed.
fn open_scratch(parent: &Path) -> Result<(ScratchDir, Vec<SweptRun>)> {
    let swept: Vec<SweptRun> = janitor::sweep(parent)
        .iter()
        .map(|swept| {
            eprintln!("flywheel-bench: {swept}");
            swept.record()
        })
        .collect();
    let scratch = ScratchDir::new_in(parent, janitor::SCRATCH_PREFIX)
        .map_err(|e| Error::io(format!("creating a work folder in {}", parent.display()), e))?;
    Ok((scratch, swept))
}
