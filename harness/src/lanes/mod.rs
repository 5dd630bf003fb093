//! Lanes: where a plan's builds run (host, vm, gpu), behind one interface. Each gives its
//! identity (what reviewers use to tell one runner class from another), a reason to skip
//! when it cannot run here, and how its cases run: through a local executor, or inside a
//! VM guest that reports them back as events.

pub mod gpu;
pub(crate) mod gpu_trace;
pub(crate) mod host;
mod initramfs;
pub(crate) mod vm;

use std::ffi::OsStr;
use std::path::Path;

use crate::error::Result;
use crate::exec::process::{Executor, InShell};
use crate::plan::cache::{BazelCache, NixCache};
use crate::plan::config::{BazelSetup, NixSetup, VmSettings};
use crate::plan::{Lane, Plan};
use crate::results::lifecycle::{Bootstrap, TimedStep};
use crate::results::{Environment, LaneIdentity};

/// The shell a lane names when its cases run in the harness's own environment.
pub const AMBIENT: &str = "ambient";

/// What preparing a lane may use.
pub struct LaneContext<'a> {
    pub exec: &'a dyn Executor,
    /// The cases the lane is to run.
    pub plan: &'a Plan,
    /// `$PATH` as the run started (the gpu lane looks for nvidia-smi, nvcc, ldconfig there).
    pub search_path: &'a OsStr,
    /// The host, as results describe it.
    pub environment: &'a Environment,
    /// Where the gpu lane looks for the flake's dev shell.
    pub flake_dir: &'a Path,
    /// The vm lane's emulator and machine.
    pub qemu: Option<&'a Path>,
    pub vm: VmSettings,
    /// The caches the run's cases read (a guest reads the same ones).
    pub nix_cache: Option<&'a NixCache>,
    pub bazel_cache: Option<&'a BazelCache>,
    pub nix: &'a NixSetup,
    pub bazel: &'a BazelSetup,
    /// A private folder for the lane's own files (VM image, guest job).
    pub dir: &'a Path,
    /// Set inside a vm lane's guest: its cases run right here.
    pub guest: Option<&'a GuestRole>,
    /// The run's bootstrap so far (the job's steps, the session's checks); each lane adds
    /// its own checks and records the whole in its identity.
    pub bootstrap: &'a Bootstrap,
}

/// One thing a runner needs for a lane (what `doctor --lane` checks), and whether it has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub what: &'static str,
    /// What was found, or what is missing and how to fix it.
    pub found: Result<String, String>,
    /// The lane cannot run without it (else it only changes how it runs).
    pub required: bool,
}

/// The vm lane seen from inside its guest: how the host booted it.
#[derive(Debug, Clone)]
pub struct GuestRole {
    pub acceleration: String,
    pub acceleration_note: String,
    /// The host's bootstrap of the lane: its job's steps, its checks, the VM's.
    pub bootstrap: Bootstrap,
}

/// A lane ready to run a plan.
pub struct PreparedLane<'a> {
    pub identity: LaneIdentity,
    /// When set, every case of the lane is skipped with this reason.
    pub skip_reason: Option<String>,
    pub runner: LaneRunner<'a>,
    /// The plan as the lane runs it, when it differs (the gpu lane resolves CUDA paths).
    pub plan: Option<Plan>,
}

pub enum LaneRunner<'a> {
    /// The scheduler runs the cases here, through this executor (the host's own, or one
    /// that wraps each command in a dev shell).
    Local(Box<dyn Executor + 'a>),
    /// The cases run inside a VM that runs this harness and reports back.
    Guest(Box<vm::GuestLane<'a>>),
}

/// Prepares `lane`: proves what it can (a GPU, KVM), says who it is and how it runs.
pub fn prepare<'a>(lane: Lane, ctx: &LaneContext<'a>) -> Result<PreparedLane<'a>> {
    let mut identity = LaneIdentity::of(lane, ctx.environment);
    identity.bootstrap = Some(ctx.bootstrap.clone());
    match (lane, ctx.guest) {
        (Lane::Host, _) => Ok(PreparedLane {
            identity,
            skip_reason: None,
            runner: LaneRunner::Local(Box::new(ctx.exec)),
            plan: None,
        }),
        (Lane::Gpu, _) => gpu_lane(identity, ctx),
        (Lane::Vm, Some(role)) => {
            identity.virtualization = Some("qemu".into());
            identity.acceleration = Some(role.acceleration.clone());
            identity.acceleration_note = Some(role.acceleration_note.clone());
            identity.bootstrap = Some(role.bootstrap.clone().then(ctx.bootstrap));
            Ok(PreparedLane {
                identity,
                skip_reason: None,
                runner: LaneRunner::Local(Box::new(ctx.exec)),
                plan: None,
            })
        }
        (Lane::Vm, None) => {
            let guest = vm::GuestLane::prepare(ctx)?;
            Ok(PreparedLane {
                identity: guest.provisional_identity(ctx.environment),
                skip_reason: None,
                runner: LaneRunner::Guest(Box::new(guest)),
                plan: None,
            })
        }
    }
}

/// The gpu lane: its GPU (or why none), the CUDA paths resolved into the plan, the shell
/// chosen from the flake's outputs (its start-up timed), and the GPU traced around builds.
fn gpu_lane<'a>(mut identity: LaneIdentity, ctx: &LaneContext<'a>) -> Result<PreparedLane<'a>> {
    let skipped = |identity, reason| PreparedLane {
        identity,
        skip_reason: Some(reason),
        runner: LaneRunner::Local(Box::new(ctx.exec)),
        plan: None,
    };
    let mut checks = Bootstrap::default();
    let (found, step) = TimedStep::time("gpu preflight", || {
        gpu::preflight(ctx.exec, ctx.search_path)
    });
    checks.checks.push(step);
    let with_checks = |mut identity: LaneIdentity, checks: &Bootstrap| {
        identity.bootstrap = Some(ctx.bootstrap.clone().then(checks));
        identity
    };
    let (mut info, smi) = match found {
        Ok(found) => found,
        Err(reason) => return Ok(skipped(with_checks(identity, &checks), reason)),
    };
    let mut plan = ctx.plan.clone();
    let no_toolkit =
        gpu::CudaLayout::discover(ctx.exec, ctx.search_path).apply(&mut plan.repos, &mut info);
    identity.gpu = Some(info);
    if let Some(reason) = no_toolkit {
        return Ok(skipped(with_checks(identity, &checks), reason));
    }
    let nix = crate::tools::find("nix", ctx.search_path);
    let (shell, step) = TimedStep::time("dev shell (evaluated and realised)", || {
        gpu::choose_shell(ctx.exec, nix.as_deref(), ctx.flake_dir, ctx.dir)
    });
    checks.checks.push(step);
    let inner: Box<dyn Executor + 'a> = match shell {
        gpu::Shell::Flake { name, prefix } => match gpu::shell_startup(ctx.exec, &prefix) {
            Ok(seconds) => {
                identity.shell = Some(name);
                identity.shell_reason =
                    Some(format!("the flake has devShells.{}.gpu", gpu::nix_system()));
                identity.shell_startup_s = Some(seconds);
                Box::new(InShell {
                    inner: ctx.exec,
                    prefix,
                })
            }
            Err(why) => {
                identity.shell = Some(AMBIENT.into());
                identity.shell_reason = Some(format!("`{name}` did not start: {why}"));
                Box::new(ctx.exec)
            }
        },
        gpu::Shell::Ambient { reason } => {
            identity.shell = Some(AMBIENT.into());
            identity.shell_reason = Some(reason);
            Box::new(ctx.exec)
        }
    };
    if let Some(seconds) = identity.shell_startup_s {
        checks
            .checks
            .push(TimedStep::new("dev shell start-up", seconds));
    }
    let identity = with_checks(identity, &checks);
    Ok(PreparedLane {
        identity,
        skip_reason: None,
        runner: LaneRunner::Local(Box::new(gpu_trace::Traced {
            inner,
            sampler: gpu_trace::GpuSampler::new(smi, &ctx.dir.join("gpu-trace")),
        })),
        plan: Some(plan),
    })
}
