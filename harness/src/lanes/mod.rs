//! Lanes: where a plan's builds run (host, vm, gpu), behind one interface. Each gives its
//! identity (what reviewers use to tell one runner class from another), a reason to skip
//! when it cannot run here, and how its cases run: through a local executor, or inside a
//! VM guest that reports them back as events.

pub mod gpu;
pub mod host;
pub mod initramfs;
pub mod vm;

use std::path::Path;

use crate::cache::{BazelCache, NixCache};
use crate::error::Result;
use crate::plan::config::VmSettings;
use crate::plan::Lane;
use crate::results::{Environment, LaneIdentity};
use crate::run::process::{Executor, InShell};

/// What preparing a lane may use.
pub struct LaneContext<'a> {
    pub exec: &'a dyn Executor,
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
    pub nix: &'a crate::tools::nix::NixSetup,
    pub bazel: &'a crate::tools::bazel::BazelSetup,
    /// A private folder for the lane's own files (VM image, guest job).
    pub dir: &'a Path,
    /// Set inside a vm lane's guest: its cases run right here.
    pub guest: Option<&'a GuestRole>,
}

/// The vm lane seen from inside its guest: how the host booted it.
#[derive(Debug, Clone)]
pub struct GuestRole {
    pub acceleration: String,
    pub acceleration_note: String,
}

/// A lane ready to run a plan.
pub struct PreparedLane<'a> {
    pub identity: LaneIdentity,
    /// When set, every case of the lane is skipped with this reason.
    pub skip_reason: Option<String>,
    pub runner: LaneRunner<'a>,
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
    match (lane, ctx.guest) {
        (Lane::Host, _) => Ok(PreparedLane {
            identity,
            skip_reason: None,
            runner: LaneRunner::Local(Box::new(ctx.exec)),
        }),
        (Lane::Gpu, _) => {
            let gpu = match gpu::preflight(ctx.exec) {
                Ok(gpu) => gpu,
                Err(reason) => {
                    return Ok(PreparedLane {
                        identity,
                        skip_reason: Some(reason),
                        runner: LaneRunner::Local(Box::new(ctx.exec)),
                    })
                }
            };
            identity.gpu = Some(gpu);
            let runner: Box<dyn Executor + 'a> = match gpu::dev_shell_prefix(ctx.flake_dir) {
                Some(prefix) => {
                    identity.shell = Some("nix develop .#gpu".into());
                    Box::new(InShell {
                        inner: ctx.exec,
                        prefix,
                    })
                }
                None => Box::new(ctx.exec),
            };
            Ok(PreparedLane {
                identity,
                skip_reason: None,
                runner: LaneRunner::Local(runner),
            })
        }
        (Lane::Vm, Some(role)) => {
            identity.virtualization = Some("qemu".into());
            identity.acceleration = Some(role.acceleration.clone());
            identity.acceleration_note = Some(role.acceleration_note.clone());
            Ok(PreparedLane {
                identity,
                skip_reason: None,
                runner: LaneRunner::Local(Box::new(ctx.exec)),
            })
        }
        (Lane::Vm, None) => {
            let guest = vm::GuestLane::prepare(ctx)?;
            Ok(PreparedLane {
                identity: guest.provisional_identity(ctx.environment),
                skip_reason: None,
                runner: LaneRunner::Guest(Box::new(guest)),
            })
        }
    }
}
