//! Spawning a build straight into its cgroup: `clone3(CLONE_INTO_CGROUP)` (Linux 5.7,
//! cgroup v2), which std's `Command` cannot do. A child that instead writes itself into
//! `cgroup.procs` between fork and exec is migrated, and measured here a no-op Nix build
//! that followed such a join ran 1.4% slower (paired) than the same build without a cgroup,
//! while one born in its cgroup ran as fast; the join's own wait (an RCU grace period)
//! was already outside the timed span. Where the kernel refuses clone3 (older kernels,
//! seccomp filters that answer ENOSYS), the caller falls back to `Command` and the join.
//!
//! Also the steps a child takes between fork and exec on either path, so that both
//! paths run the same ones: dying with the harness and starting the build's clock.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::process::CommandSpec;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Handlers the harness installed (its signal thread's) are reset in the child, so a
/// signal that reaches the child before its exec is not taken for the harness's own.
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Set once the kernel refused clone3: later builds go straight to the fallback.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// What the child execs, made before the clone: nothing is allocated in the child.
pub(super) struct Exec {
    program: CString,
    /// NUL-terminated lists of pointers into `_strings`.
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    _strings: Vec<CString>,
}

impl Exec {
    /// `spec`'s program with its arguments, the harness's environment with `spec`'s on
    /// top (as `Command` has it) and its folder; `None` where only `Command` can run it
    /// as asked: a bare program name (searched in PATH) or a NUL byte in a string.
    pub(super) fn of(spec: &CommandSpec) -> Option<Exec> {
        let bytes = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).ok();
        if !spec.program.as_os_str().as_bytes().contains(&b'/') {
            return None;
        }
        let program = bytes(spec.program.as_os_str())?;
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        env.extend(spec.env.iter().map(|(k, v)| (OsString::from(k), v.clone())));
        let mut strings = Vec::new();
        let mut argv = Vec::new();
        for arg in
            std::iter::once(spec.program.as_os_str()).chain(spec.args.iter().map(|a| a.as_os_str()))
        {
            let arg = bytes(arg)?;
            argv.push(arg.as_ptr());
            strings.push(arg);
        }
        argv.push(std::ptr::null());
        let mut envp = Vec::new();
        for (key, value) in &env {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            let pair = CString::new(pair).ok()?;
            envp.push(pair.as_ptr());
            strings.push(pair);
        }
        envp.push(std::ptr::null());
        let cwd = match &spec.cwd {
            Some(dir) => Some(bytes(dir.as_os_str())?),
            None => None,
        };
        Some(Exec {
            program,
            argv,
            envp,
            cwd,
            _strings: strings,
        })
    }
}

/// The child's standard input, output and error, in that order.
pub(super) type Stdio3 = [RawFd; 3];

/// Starts `exec` as a child born in the cgroup `cgroup` (a cgroup v2 folder), leading a
/// process group of its own, dying with the harness, its clock started last before exec
/// ([`write_clock`] into `clock`): its pid, `Ok(None)` where the kernel refused clone3
/// (nothing was started), or the error the exec gave (the child is reaped).
pub(super) fn spawn_into_cgroup(
    exec: &Exec,
    stdio: Stdio3,
    cgroup: BorrowedFd,
    clock: RawFd,
) -> io::Result<Option<i32>> {
    if REFUSED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let parent = std::process::id() as i32;
    let (mut failed, failed_write) = cloexec_pipe()?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP | CLONE_CLEAR_SIGHAND,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (a live, fully initialised struct of the size given);
    // without CLONE_VM the child gets a copy of this thread and its memory, as after fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: in the child; it only makes async-signal-safe calls and never returns.
        unsafe { child(exec, stdio, clock, parent, failed_write.as_raw_fd()) }
    }
    if pid < 0 {
        REFUSED.store(true, Ordering::Relaxed);
        return Ok(None);
    }
    let pid = pid as i32;
    drop(failed_write);
    // The pipe closes at the child's exec; an errno comes through it only if that failed.
    let mut errno = [0u8; 4];
    match io::Read::read(&mut failed, &mut errno) {
        Ok(0) => Ok(Some(pid)),
        got => {
            let mut status = 0;
            // SAFETY: the child is ours and exits right after writing; status is a local.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(match got {
                Ok(4) => io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
                Ok(_) => io::Error::other("a child failed before exec and said nothing whole"),
                Err(e) => e,
            })
        }
    }
}

/// The child's side: what `Command` does between fork and exec, in its order, then the
/// harness's own steps. Only async-signal-safe calls on memory made before the clone.
unsafe fn child(exec: &Exec, stdio: Stdio3, clock: RawFd, parent: i32, failed: RawFd) -> ! {
    let step = || -> io::Result<()> {
        for (target, fd) in stdio.into_iter().enumerate() {
            let target = target as RawFd;
            let done = if fd == target {
                // dup2 onto itself keeps close-on-exec; clear it instead.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if done < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(dir) = &exec.cwd {
            if libc::chdir(dir.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The harness ignores SIGPIPE (Rust's runtime does) and its threads may block
        // signals; a build starts with neither, as `Command` gives it.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        die_with_parent(parent)?;
        write_clock(clock);
        libc::execve(
            exec.program.as_ptr(),
            exec.argv.as_ptr(),
            exec.envp.as_ptr(),
        );
        Err(io::Error::last_os_error())
    };
    let errno = step()
        .err()
        .and_then(|e| e.raw_os_error())
        .unwrap_or(libc::EINVAL);
    let bytes = errno.to_ne_bytes();
    libc::write(failed, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(127)
}

/// Between fork and exec: the child gets SIGKILL when the thread that spawned it exits
/// (PR_SET_PDEATHSIG follows the parent *thread*), and gives up if its parent (`parent`)
/// is already gone, since then nothing would kill it.
pub(super) fn die_with_parent(parent: i32) -> io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and take no pointers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Between fork and exec, last: writes [`monotonic_now`]'s reading into the build's clock
/// pipe `fd`, where its timed span starts.
pub(super) fn write_clock(fd: RawFd) {
    let now = (monotonic_now().as_nanos() as u64).to_ne_bytes();
    // SAFETY: write is async-signal-safe; `now` is a live local.
    unsafe { libc::write(fd, now.as_ptr().cast(), now.len()) };
}

/// CLOCK_MONOTONIC (what `Instant` reads on Linux), readable in a child between fork and
/// exec, where `Instant`s cannot be sent back from.
pub(super) fn monotonic_now() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A pipe whose ends close on exec: (read end, write end).
pub(super) fn cloexec_pipe() -> io::Result<(std::fs::File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array, which this takes over.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    })
}
