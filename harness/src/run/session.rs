//! One run session: loads the plan, owns the scratch folder, takes the tools, caches,
//! drivers and build executor from its toolbox, and runs each lane's plan, handing every
//! event to the sinks.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{CacheNeeds, Caches};
use crate::error::{Error, Result};
use crate::exec::janitor;
use crate::exec::process::{BuildExecutor, CommandSpec, Executor};
use crate::exec::scratch::ScratchDir;
use crate::lanes::vm::GuestJob;
use crate::lanes::{self, GuestRole, LaneContext, LaneRunner};
use crate::plan::cache::{BazelCache, Fill, NixCache};
use crate::plan::config::{
    BazelCacheConfig, BazelSetup, Env, NixCacheConfig, NixSetup, RunConfig, VmSettings,
};
use crate::plan::proxies::Proxies;
use crate::plan::{manifest, Explain, Lane, Plan, System};
use crate::results::explain::CacheLink;
use crate::results::lifecycle::{Bootstrap, Cleanup, SweptRun, TimedStep};
use crate::results::machine::{ProbeReading, SpeedProbe};
use crate::results::{ClockFloor, Environment, Results};
use crate::run::events::{emit, Event, EventLog, EventSink};
use crate::run::scheduler::{run_in_guest, Drivers, Scheduler};
use crate::tools::bazel::BazelDriver;
use crate::tools::nix::NixDriver;

/// Where a session's tools come from: this machine's ([`MachineTools`]), or the fakes of
/// the hidden `run --fake-tools` flag, which run no tool at all.
pub trait Toolbox {
    /// Finds what `need` asks for (a missing tool is an error that names it) and sets up
    /// the caches, one driver per build system the plans use and the executor of builds.
    fn equip(&self, need: Need<'_>, exec: &dyn Executor) -> Result<Equipment>;
}

/// What a session asks of its toolbox.
pub struct Need<'a> {
    pub plans: &'a [Plan],
    pub caches: CacheSource<'a>,
    /// Whether a plan runs on the vm lane (it needs QEMU).
    pub vm_lane: bool,
    /// `$PATH` as the run started.
    pub search_path: &'a OsStr,
    /// The session's private folder: the drivers', the caches' and the cgroups' files.
    pub scratch: &'a ScratchDir,
    /// Set inside a vm lane's guest.
    pub guest: bool,
    /// The tools as the drivers use them, versions filled in.
    pub nix: NixSetup,
    pub bazel: BazelSetup,
}

/// Where the caches warm cases read come from.
pub enum CacheSource<'a> {
    /// Provisioned for this run from its configuration.
    Configured {
        nix: &'a NixCacheConfig,
        bazel: &'a BazelCacheConfig,
        fill: bool,
        proxies: &'a Proxies,
        /// How the embedded cache stores NARs.
        compression: crate::plan::Compression,
    },
    /// Provisioned by someone else (a vm lane's host, for its guest).
    Given {
        nix: Option<&'a NixCache>,
        bazel: Option<&'a BazelCache>,
    },
}

/// What a session's builds run with.
pub struct Equipment {
    pub drivers: Drivers,
    /// The executor every build of the run goes through.
    pub builds: Box<dyn Executor>,
    pub caches: Caches,
    /// QEMU, for the vm lane.
    pub qemu: Option<PathBuf>,
    /// What reviewers should know about how the builds are counted.
    pub notes: Vec<String>,
    /// The start-up checks it timed: the cache preflight, the user-namespace probe.
    pub checks: Vec<TimedStep>,
}

/// This machine's tools: Nix, Bazel, nginx for the embedded cache, QEMU, each found on
/// `$PATH`; builds run in the run's cgroups where they can be made.
pub struct MachineTools;

impl Toolbox for MachineTools {
    fn equip(&self, need: Need<'_>, exec: &dyn Executor) -> Result<Equipment> {
        let warm = |system: System| need.plans.iter().any(|p| p.needs_cache(system));
        let (embedded, attic_cli) = match &need.caches {
            CacheSource::Configured { nix, bazel, .. } => (
                (warm(System::Nix) && **nix == NixCacheConfig::Embedded)
                    || (warm(System::Bazel) && **bazel == BazelCacheConfig::Embedded),
                matches!(nix, NixCacheConfig::External(c) if c.fill == Fill::AtticCli),
            ),
            CacheSource::Given { nix, .. } => (
                false,
                nix.as_ref().is_some_and(|c| c.fill == Fill::AtticCli),
            ),
        };
        let tools = Tools::require(
            need.plans,
            embedded,
            need.vm_lane,
            attic_cli,
            need.search_path,
        )?;
        let mut checks = Vec::new();
        let caches = match need.caches {
            CacheSource::Configured {
                nix,
                bazel,
                fill,
                proxies,
                compression,
            } => {
                let (caches, preflight) = TimedStep::time("cache preflight", || {
                    Caches::provision(
                        nix,
                        bazel,
                        CacheNeeds {
                            nix: tools.nix.as_deref().filter(|_| warm(System::Nix)),
                            bazel: warm(System::Bazel),
                            nginx: tools.nginx.as_deref(),
                            fill,
                            proxies,
                            compression,
                        },
                        &need.scratch.path().join("cache"),
                        exec,
                    )
                });
                if warm(System::Nix) || warm(System::Bazel) {
                    checks.push(preflight);
                }
                caches?
            }
            CacheSource::Given { nix, bazel } => Caches::given(nix.cloned(), bazel.cloned()),
        };
        let builds = BuildExecutor::for_run(need.scratch, None);
        let notes = builds
            .accounting_note()
            .map(str::to_string)
            .into_iter()
            .collect();
        let mut drivers = Drivers::new();
        if let Some(nix) = &tools.nix {
            let dir = need.scratch.path().join("nix");
            let setup = NixSetup {
                attic: tools.attic.clone(),
                ..need.nix
            };
            let driver = NixDriver::new(nix.clone(), &dir, caches.nix.clone(), setup)?;
            let probe = match need.guest {
                true => "user-namespace probe (in the guest)",
                false => "user-namespace probe",
            };
            let (sandboxed, step) = TimedStep::time(probe, || driver.require_sandbox(exec));
            sandboxed?;
            checks.push(step);
            drivers.insert(System::Nix, Box::new(driver));
        }
        if let Some(bazel) = &tools.bazel {
            let dir = need.scratch.path().join("bazel");
            let driver = BazelDriver::new(bazel.clone(), &dir, caches.bazel.clone(), &need.bazel)?;
            drivers.insert(System::Bazel, Box::new(driver));
        }
        Ok(Equipment {
            drivers,
            builds: Box::new(builds),
            caches,
            qemu: tools.qemu,
            notes,
            checks,
        })
    }
}

/// The external tools a run needs, found before anything is built.
#[derive(Debug, Default)]
struct Tools {
    nix: Option<PathBuf>,
    bazel: Option<PathBuf>,
    nginx: Option<PathBuf>,
    qemu: Option<PathBuf>,
    attic: Option<PathBuf>,
}

impl Tools {
    /// Every tool the plans need, or the first that is missing with how to get it.
    /// `attic_cli`: the Nix cache warm cases read is filled with the `attic` CLI.
    fn require(
        plans: &[Plan],
        embedded_cache: bool,
        vm_lane: bool,
        attic_cli: bool,
        search_path: &OsStr,
    ) -> Result<Tools> {
        let uses = |system: System| plans.iter().any(|p| p.uses(system));
        let need = |wanted: bool, tool: &'static str, what: &str| {
            wanted
                .then(|| crate::tools::require(tool, what, search_path))
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
            attic: need(
                attic_cli && plans.iter().any(|p| p.needs_cache(System::Nix)),
                "attic",
                "to fill the Attic cache (the profile's nix.push = \"cli\" asks for the `attic` CLI)",
            )?,
        })
    }
}

/// Settings of the lanes the session prepares.
struct LaneSettings {
    vm: VmSettings,
    flake_dir: PathBuf,
    nix: NixSetup,
    bazel: BazelSetup,
    /// `$PATH` as the run started: where tools are found.
    search_path: OsString,
    /// `$GITHUB_REF`: the ref a CI checked out, for detached checkouts.
    ci_ref: Option<String>,
    /// Set inside a vm lane's guest: the lane as the host booted it.
    guest: Option<GuestRole>,
}

pub struct Session {
    // Field order is drop order: the drivers stop their build servers first, then what is
    // left in the builds' cgroups is killed, then the cache servers stop, then the scratch
    // folder that held them all is removed.
    drivers: Drivers,
    builds: Box<dyn Executor>,
    caches: Caches,
    /// The link to the embedded cache, measured once.
    cache_link: Option<CacheLink>,
    /// What the builds' clock reads for `true`, measured once.
    clock_floor: Option<ClockFloor>,
    /// The speed probe before the first case (none inside a vm guest).
    speed_before: Option<ProbeReading>,
    scratch: ScratchDir,
    plans: Vec<Plan>,
    qemu: Option<PathBuf>,
    lanes: LaneSettings,
    environment: Environment,
    notes: Vec<String>,
    /// The lane job's own steps and this session's start-up checks, timed.
    bootstrap: Bootstrap,
    /// What the janitor removed before the scratch folder was made.
    swept: Vec<SweptRun>,
}

impl Session {
    /// Loads the repos, fetches git sources, makes the scratch folder, then has `toolbox`
    /// find the tools, start or connect the caches and set up the drivers.
    pub fn open(config: &RunConfig, exec: &dyn Executor, toolbox: &dyn Toolbox) -> Result<Session> {
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
        let (scratch, swept) = open_scratch(&config.work_dir)?;
        let bootstrap = Bootstrap {
            job: config.bootstrap.clone(),
            checks: Vec::new(),
        };
        let lanes = LaneSettings {
            vm: config.vm,
            flake_dir: config.flake_dir.clone(),
            nix: config.nix.clone(),
            bazel: config.bazel.clone(),
            search_path: config.search_path.clone(),
            ci_ref: config.ci_ref.clone(),
            guest: None,
        };
        let caches = CacheSource::Configured {
            nix: &config.nix_cache,
            bazel: &config.bazel_cache,
            fill: config.settings.fill,
            proxies: &config.proxies,
            compression: config.settings.compression,
        };
        Session::assemble(
            plans,
            caches,
            (scratch, swept, bootstrap),
            lanes,
            toolbox,
            exec,
        )
    }

    /// Inside a vm lane's guest: runs the job the host wrote, its events written for the
    /// host as they happen. `env` is the guest's: its `$PATH` finds the tools.
    pub fn serve_guest_job(job_file: &Path, exec: &dyn Executor, env: &Env) -> Result<()> {
        let job = GuestJob::read(job_file)?;
        let mut events = EventLog::create(&job.events)?;
        Session::guest(job, exec, env)?.run(&mut [&mut events])
    }

    /// Inside a vm lane's guest: the host's plan against the host's caches.
    fn guest(job: GuestJob, exec: &dyn Executor, env: &Env) -> Result<Session> {
        let plans = vec![job.plan];
        let (scratch, swept) = open_scratch(&job.work_dir)?;
        let caches = CacheSource::Given {
            nix: job.nix_cache.as_ref(),
            bazel: job.bazel_cache.as_ref(),
        };
        let lanes = LaneSettings {
            vm: VmSettings::default(),
            flake_dir: job.work_dir,
            nix: job.nix,
            bazel: job.bazel,
            search_path: OsString::from(env.var("PATH").unwrap_or_default()),
            ci_ref: None,
            guest: Some(GuestRole {
                acceleration: job.acceleration,
                acceleration_note: job.acceleration_note,
                bootstrap: job.bootstrap,
            }),
        };
        Session::assemble(
            plans,
            caches,
            (scratch, swept, Bootstrap::default()),
            lanes,
            &MachineTools,
            exec,
        )
    }

    fn assemble(
        plans: Vec<Plan>,
        caches: CacheSource,
        (scratch, swept, mut bootstrap): (ScratchDir, Vec<SweptRun>, Bootstrap),
        lanes: LaneSettings,
        toolbox: &dyn Toolbox,
        exec: &dyn Executor,
    ) -> Result<Session> {
        let environment = crate::lanes::host::identity(exec, &lanes.search_path);
        // Before the first case, after the tools are found: nothing of the run is busy.
        // A vm guest's own run needs none: the host's results carry the host's.
        let speed_before = lanes.guest.is_none().then(crate::lanes::host::speed_probe);
        let version = |tool: &str| {
            environment
                .tools
                .get(tool)
                .map_or_else(String::new, |t| t.version.clone())
        };
        let need = Need {
            plans: &plans,
            caches,
            // A guest's plan is of the vm lane, and the guest boots no VM.
            vm_lane: lanes.guest.is_none() && plans.iter().any(|p| p.lane() == Lane::Vm),
            search_path: &lanes.search_path,
            scratch: &scratch,
            guest: lanes.guest.is_some(),
            nix: NixSetup {
                version: version("nix"),
                ..lanes.nix.clone()
            },
            bazel: BazelSetup {
                version: version("bazel"),
                ..lanes.bazel.clone()
            },
        };
        let equipment = toolbox.equip(need, exec)?;
        bootstrap.checks.extend(equipment.checks);
        let clock_floor = measure_clock_floor(
            &*equipment.builds,
            &lanes.search_path,
            &scratch.path().join("clock-floor"),
        )?;
        // Only explained warm samples use it (their transfer floors).
        let explains = plans.iter().any(|p| p.settings.explain != Explain::Off);
        let cache_link = if explains {
            let (link, step) =
                TimedStep::time("cache link probe", || equipment.caches.measure_link());
            let link = link?;
            bootstrap.checks.extend(link.map(|_| step));
            link
        } else {
            None
        };
        Ok(Session {
            drivers: equipment.drivers,
            builds: equipment.builds,
            caches: equipment.caches,
            cache_link,
            clock_floor,
            speed_before,
            scratch,
            plans,
            qemu: equipment.qemu,
            lanes,
            environment,
            notes: equipment.notes,
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
            &config.profile,
            config.run_settings(),
            command,
            self.environment.clone(),
            crate::tools::git::describe(exec, &config.flake_dir, config.ci_ref.as_deref()),
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
        self.notes.clone()
    }

    /// Stops everything the session started (in its fields' drop order), then says what
    /// the janitor removed at its start and what is left now: nothing, when it worked.
    pub fn close(self) -> Cleanup {
        let scratch = self.scratch.path().to_path_buf();
        let cgroups = crate::exec::scratch::read_record(&scratch).cgroups;
        let since = crate::exec::scratch::Owner::current().start_ticks;
        // No build runs now: what still works in the folder serves the run (its cache
        // server, Bazel's servers).
        let servers = crate::exec::scratch::processes_in(&scratch, since);
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
            qemu,
            lanes,
            environment,
            bootstrap,
            ..
        } = self;
        let work_dir = scratch.path().join("builds");
        for plan in plans.iter() {
            let ctx = LaneContext {
                exec: &**builds,
                plan,
                search_path: &lanes.search_path,
                environment,
                flake_dir: &lanes.flake_dir,
                qemu: qemu.as_deref(),
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
                        ci_ref: lanes.ci_ref.as_deref(),
                    }
                    .run(sinks)?;
                }
                LaneRunner::Guest(guest) => run_in_guest(plan, *guest, sinks)?,
            }
        }
        Ok(())
    }
}

/// Timed runs of `true` the clock floor is the median of, after one untimed run.
const CLOCK_FLOOR_SAMPLES: usize = 11;

/// `true` timed by the run's executor as its builds are; `None` where no `true` is on PATH
/// or it fails.
fn measure_clock_floor(
    builds: &dyn Executor,
    search_path: &OsStr,
    dir: &Path,
) -> Result<Option<ClockFloor>> {
    let Some(program) = crate::tools::find("true", search_path) else {
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
