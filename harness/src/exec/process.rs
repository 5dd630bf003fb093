//! Owned child processes. Every child runs in its own process group, which is killed on
//! timeout, on SIGINT/SIGTERM/SIGHUP and when its owner is dropped, and dies with the
//! harness (PR_SET_PDEATHSIG); a run's builds are measured whole (cgroups where possible).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::cgroup::{self, BuildCgroup, RunCgroups};
use super::observe::BuildObserver;
use super::procfs;
use super::spawn::{self, cloexec_pipe, monotonic_now, write_clock};
use crate::error::{Error, IoContext, Result};
use crate::exec::scratch::ScratchDir;

/// One command to time: what to run, in which environment, where its output goes.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to (or overriding) the harness's own environment.
    pub env: Vec<(String, OsString)>,
    pub cwd: Option<PathBuf>,
    /// A file to read standard input from (otherwise none).
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Also note when each stderr line arrived: `<stderr>.t`, one line per stderr line,
    /// microseconds since the build's clock started (for a tool whose log has no
    /// timestamps of its own).
    pub stderr_times: bool,
    pub timeout: Duration,
}

/// Where `CommandSpec::stderr_times` writes the arrival times.
pub fn stderr_times_path(stderr: &Path) -> PathBuf {
    let mut name = stderr.as_os_str().to_owned();
    name.push(".t");
    PathBuf::from(name)
}

impl CommandSpec {
    /// A command with no extra environment, no stdin, run in the harness's folder; its
    /// output paths are set by whoever runs it.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>, timeout: Duration) -> Self {
        CommandSpec {
            program: program.into(),
            args,
            env: Vec::new(),
            cwd: None,
            stdin: None,
            stdout: PathBuf::new(),
            stderr: PathBuf::new(),
            stderr_times: false,
            timeout,
        }
    }

    pub fn env(mut self, env: Vec<(String, OsString)>) -> Self {
        self.env = env;
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    pub fn stdin(mut self, file: impl Into<PathBuf>) -> Self {
        self.stdin = Some(file.into());
        self
    }

    /// The command line as a user could paste it (for error messages and logs).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(|a| a.as_os_str()))
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,#".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Killed by the harness after the timeout.
    TimedOut,
}

/// What a build's CPU time counts (results record it as `cpu_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuScope {
    /// Every process the build started, in its own cgroup v2, daemons it forked included,
    /// plus what the run's servers (in their own cgroup) did meanwhile.
    CgroupV2,
    /// The same through the cgroup v1 `cpuacct` controller.
    CgroupV1,
    /// The child and the descendants it waited for (rusage), plus the /proc counters of the
    /// servers a [`ServerProbe`] named, read before and after the build.
    ChildrenAndServers,
    /// The child and the descendants it waited for (rusage) only.
    Children,
}

impl CpuScope {
    /// The name results record.
    pub fn name(self) -> &'static str {
        match self {
            CpuScope::CgroupV2 => "cgroup-v2",
            CpuScope::CgroupV1 => "cgroup-v1",
            CpuScope::ChildrenAndServers => "children+server-proc",
            CpuScope::Children => "children",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessOutcome {
    pub exit: Exit,
    /// From just before the child's exec to its reaping: the build tool's life, not the
    /// harness's fork or pre-exec hooks (see `ExecClock`).
    pub wall: Duration,
    /// User CPU time of everything the build ran, as far as `cpu_scope` reaches.
    pub user: Duration,
    /// System CPU time, likewise.
    pub sys: Duration,
    pub cpu_scope: CpuScope,
    /// Peak resident memory of the largest process the build ran (its servers included).
    pub max_rss_bytes: Option<u64>,
    /// Peak resident memory of the largest long-lived server the build used (Bazel's).
    pub server_max_rss_bytes: Option<u64>,
}

impl ProcessOutcome {
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// "exit code 1", "killed by signal 9", "timed out after 30 s".
    pub fn describe(&self) -> String {
        match self.exit {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
            Exit::TimedOut => format!("timed out after {:.0} s", self.wall.as_secs_f64()),
        }
    }
}

/// Long-lived servers a build talks to (Bazel's), named by where their pid files are or
/// will be. Where no cgroup counts them, their /proc counters (their own CPU time and that
/// of the workers they reaped) are read before and after the build; a server born during
/// the build counts whole. Either way their peak memory is read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerProbe {
    pid_files: Vec<PathBuf>,
    bazel_roots: Vec<PathBuf>,
}

impl ServerProbe {
    /// A server whose pid is written in `path`.
    pub fn pid_file(path: impl Into<PathBuf>) -> Self {
        ServerProbe {
            pid_files: vec![path.into()],
            ..Self::default()
        }
    }

    /// Bazel's server for `--output_user_root=ROOT` (`ROOT/<hash>/server/server.pid.txt`).
    pub fn bazel(output_user_root: impl Into<PathBuf>) -> Self {
        ServerProbe {
            bazel_roots: vec![output_user_root.into()],
            ..Self::default()
        }
    }

    fn pids(&self) -> BTreeSet<i32> {
        let found = self
            .bazel_roots
            .iter()
            .flat_map(|root| bazel_server_pid_files(root, 1));
        self.pid_files
            .iter()
            .cloned()
            .chain(found)
            .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
            .collect()
    }
}

/// Bazel server pid files (`.../server/server.pid.txt`) in `dir` and the folders at most
/// `depth` levels below it.
pub fn bazel_server_pid_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for remaining in (0..=depth).rev() {
        let mut next = Vec::new();
        for folder in level {
            let pid_file = folder.join("server/server.pid.txt");
            if pid_file.is_file() {
                found.push(pid_file);
            }
            if remaining == 0 {
                continue;
            }
            for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
                // Symlinks are not followed: a build tree may point anywhere.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    found
}

/// Runs commands. Behind a trait so the scheduler can be tested with a fake executor;
/// `Sync` so a lane can wait on one command (a VM) while it reads what the command reports.
pub trait Executor: Sync {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome>;

    /// Runs `spec` and also counts the servers `servers` names; executors that count
    /// nothing beyond their child just run it.
    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        let _ = servers;
        self.run(spec)
    }

    /// What watches the builds run through this executor (a lane's hook, such as the gpu
    /// lane's GPU trace), if anything.
    fn observer(&self) -> Option<&dyn BuildObserver> {
        None
    }
}

impl<E: Executor + ?Sized> Executor for &E {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        (**self).run(spec)
    }

    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        (**self).run_with_servers(spec, servers)
    }

    fn observer(&self) -> Option<&dyn BuildObserver> {
        (**self).observer()
    }
}

/// The plain executor: spawns, times (wall + rusage), enforces the timeout. For helper
/// commands; a run's builds go through a [`BuildExecutor`].
#[derive(Debug, Default)]
pub struct ProcessExecutor;

impl Executor for ProcessExecutor {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        run_accounted(spec, None, &ServerProbe::default())
    }

    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        run_accounted(spec, None, servers)
    }
}

/// The executor of one run: like [`ProcessExecutor`], and each child runs in a cgroup of
/// its own when one can be created, so its CPU time counts every process the build started,
/// servers it forked off included. Dropping it kills what is left in its cgroups.
#[derive(Debug)]
pub struct BuildExecutor {
    cgroups: Option<RunCgroups>,
    /// Why no cgroup counts the builds.
    note: Option<String>,
}

impl BuildExecutor {
    /// The executor of the run that owns `scratch`: its cgroup is named after that folder
    /// and recorded in it, so the janitor can remove it if the run dies. `version` forces
    /// one hierarchy; `None` tries v2, then v1.
    pub fn for_run(scratch: &ScratchDir, version: Option<cgroup::Version>) -> BuildExecutor {
        let name = scratch
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = if name.starts_with(cgroup::NAME_PREFIX) {
            name
        } else {
            format!("{}{name}", cgroup::NAME_PREFIX)
        };
        let created = RunCgroups::create(version, &name).and_then(|run| {
            scratch
                .record_cgroup(run.dir())
                .map(|()| run)
                .map_err(|e| e.to_string())
        });
        match created {
            Ok(run) => BuildExecutor {
                cgroups: Some(run),
                note: None,
            },
            Err(why) => BuildExecutor {
                cgroups: None,
                note: Some(format!(
                    "no cgroup for the builds ({why}): CPU time counts the build tool's own child processes and the servers named to it"
                )),
            },
        }
    }

    /// Why CPU time counts less than every process a build started (`None` when a cgroup
    /// counts it all): worth a note in the results.
    pub fn accounting_note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The scope builds are counted with when nothing goes wrong for one of them.
    pub fn cpu_scope(&self) -> CpuScope {
        match self.cgroups.as_ref().map(RunCgroups::version) {
            Some(cgroup::Version::V2) => CpuScope::CgroupV2,
            Some(cgroup::Version::V1) => CpuScope::CgroupV1,
            None => CpuScope::ChildrenAndServers,
        }
    }
}

impl Executor for BuildExecutor {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        run_accounted(spec, self.cgroups.as_ref(), &ServerProbe::default())
    }

    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        run_accounted(spec, self.cgroups.as_ref(), servers)
    }
}

/// How long a process group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Spawns `spec` from the calling thread (PR_SET_PDEATHSIG follows that thread: callers
/// are the run's own long-lived thread), waits for it within its timeout, and measures it.
fn run_accounted(
    spec: &CommandSpec,
    cgroups: Option<&RunCgroups>,
    probe: &ServerProbe,
) -> Result<ProcessOutcome> {
    check_interrupted()?;
    let (io, stderr_pipe) = child_io(spec)?;
    // A cgroup that cannot be made only narrows what is counted (cpu_scope says so).
    let build_cgroup = cgroups.and_then(|c| c.new_build().ok());
    let clock = ExecClock::new()?;
    let before = ServersBefore::read(cgroups, probe);
    let spawning = monotonic_now();
    let (pid, born) = spawn_build(spec, io, build_cgroup.as_ref(), &clock)?;
    let start = clock.started().unwrap_or(spawning);
    let stderr = stderr_pipe.map(|(pipe, log)| StderrCopy::new(pipe, log, start));
    // A child that joined may have failed to (it goes on without); one born there is in it.
    // Reading /proc here is beside the build, so a born child is not asked.
    let build_cgroup = build_cgroup.filter(|g| born || g.contains(pid));
    let waited = supervise(pid, spec.timeout, stderr);
    unregister(pid);
    let (status, timed_out) =
        waited.context(|| format!("waiting for `{}`", spec.program.display()))?;
    let wall = status.reaped.saturating_sub(start);
    let usage = match (&build_cgroup, cgroups) {
        (Some(group), Some(run)) => {
            measure_cgroup(&status, pid, group, run, &before, probe, !timed_out)
        }
        _ => None,
    }
    .unwrap_or_else(|| measure_children(&status, &before, probe));
    check_interrupted()?;
    Ok(ProcessOutcome {
        exit: if timed_out {
            Exit::TimedOut
        } else {
            status.exit
        },
        wall,
        user: usage.user,
        sys: usage.sys,
        cpu_scope: usage.scope,
        max_rss_bytes: usage.max_rss_bytes,
        server_max_rss_bytes: usage.server_max_rss_bytes,
    })
}

/// Where a build's timed span starts: in the child, after the fork and every other pre-exec
/// hook, just before exec (hyperfine's starts just before its posix_spawn). Writing a pid
/// into `cgroup.procs` waits for an RCU grace period (6-14 ms per build here, strace'd in
/// the child) and a fork costs what the harness's size costs: neither is the build's. The
/// exec still drops the child's copy of the harness's address space (about 0.1 ms at the
/// harness's 8 MB resident); the run's clock floor includes it.
struct ExecClock {
    read: File,
    write: OwnedFd,
}

impl ExecClock {
    fn new() -> Result<ExecClock> {
        let (read, write) =
            cloexec_pipe().map_err(|e| Error::io("creating the pipe of a build's clock", e))?;
        Ok(ExecClock { read, write })
    }

    /// A `pre_exec` hook that writes the clock's reading into the pipe (closed by the
    /// exec that follows).
    fn hook(&self) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        let fd = self.write.as_raw_fd();
        move || {
            write_clock(fd);
            Ok(())
        }
    }

    /// The pipe's write end, for the child.
    fn write_fd(&self) -> i32 {
        self.write.as_raw_fd()
    }

    /// When the spawned child was about to exec; `None` if it never said.
    fn started(self) -> Option<Duration> {
        use std::io::Read;
        let ExecClock { mut read, write } = self;
        // The child's copy closed at its exec; with ours gone, a silent child reads as EOF.
        drop(write);
        let mut now = [0u8; 8];
        read.read_exact(&mut now).ok()?;
        Some(Duration::from_nanos(u64::from_ne_bytes(now)))
    }
}

/// The log files of a build's stderr and of its lines' arrival times, made before the fork
/// so that nothing but the build runs in its timed span.
struct StderrLog {
    log: File,
    times: File,
}

impl StderrLog {
    fn create(stderr: &Path) -> Result<StderrLog> {
        Ok(StderrLog {
            log: create_log(stderr)?,
            times: create_log(&stderr_times_path(stderr))?,
        })
    }
}

/// A build's stderr, copied from its pipe into its log as it arrives, each line's arrival
/// noted in microseconds since the build's clock started.
struct StderrCopy {
    pipe: File,
    log: StderrLog,
    start: Duration,
    stamps: String,
    buf: Vec<u8>,
    open: bool,
}

impl StderrCopy {
    /// `start` is the build's clock start, on [`monotonic_now`]'s clock.
    fn new(pipe: File, log: StderrLog, start: Duration) -> StderrCopy {
        StderrCopy {
            pipe,
            log,
            start,
            stamps: String::new(),
            buf: vec![0u8; 64 * 1024],
            open: true,
        }
    }

    /// The pipe, while it may still give data.
    fn fd(&self) -> Option<i32> {
        self.open.then(|| self.pipe.as_raw_fd())
    }

    /// Copies what one read gives (call when the pipe is readable); at its end, or when the
    /// log cannot be written, the pipe is left alone from then on.
    fn copy(&mut self) {
        use std::io::{Read, Write};
        match self.pipe.read(&mut self.buf) {
            Ok(0) | Err(_) => self.open = false,
            Ok(n) => {
                // Lines read together arrived together, as far as anyone can tell.
                let micros = monotonic_now().saturating_sub(self.start).as_micros();
                for _ in self.buf[..n].iter().filter(|&&b| b == b'\n') {
                    self.stamps.push_str(&format!("{micros}\n"));
                }
                if self.log.log.write_all(&self.buf[..n]).is_err() {
                    self.open = false;
                }
            }
        }
    }

    /// Copies the rest, until the pipe closes (when the build's processes are gone) or
    /// `grace` has passed (a grandchild holding it is not waited for), and writes the times.
    fn finish(mut self, grace: Duration) {
        use std::io::Write;
        let until = Instant::now() + grace;
        while let Some(fd) = self.fd() {
            match poll_readable(&[fd], until.saturating_duration_since(Instant::now())) {
                Ok(Some(_)) => self.copy(),
                Ok(None) if Instant::now() < until => {}
                _ => break,
            }
        }
        let _ = self.log.times.write_all(self.stamps.as_bytes());
    }
}

/// How long a build's stderr is still copied after the build's exit.
const STDERR_GRACE: Duration = Duration::from_secs(5);

/// Waits for `pid` in the calling thread, copying its piped stderr meanwhile, and kills its
/// group (SIGTERM, then SIGKILL) past `timeout`; whether it timed out. No thread is started
/// while the build runs (where the kernel has pidfds), so the harness's own work beside a
/// build is a read per stderr chunk. Whatever is left in the group dies with its leader.
fn supervise(
    pid: i32,
    timeout: Duration,
    mut stderr: Option<StderrCopy>,
) -> std::io::Result<(WaitStatus, bool)> {
    let waited = wait_copying(pid, timeout, &mut stderr);
    // Grandchildren left in the group (build hooks) die here, which closes their stderr.
    kill_group(pid, libc::SIGKILL);
    if let Some(stderr) = stderr {
        stderr.finish(STDERR_GRACE);
    }
    waited
}

fn wait_copying(
    pid: i32,
    timeout: Duration,
    stderr: &mut Option<StderrCopy>,
) -> std::io::Result<(WaitStatus, bool)> {
    let exit = ExitWatch::new(pid)?;
    let mut deadline = Some(Instant::now() + timeout);
    let mut timed_out = false;
    loop {
        let mut fds = vec![exit.fd()];
        fds.extend(stderr.as_ref().and_then(StderrCopy::fd));
        let wait = deadline.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match poll_readable(&fds, wait)? {
            Some(0) => return Ok((exit.reap()?, timed_out)),
            Some(_) => stderr.iter_mut().for_each(StderrCopy::copy),
            None if deadline.is_some_and(|d| Instant::now() < d) => {}
            None if !timed_out => {
                kill_group(pid, libc::SIGTERM);
                timed_out = true;
                deadline = Some(Instant::now() + TERM_GRACE);
            }
            None => {
                kill_group(pid, libc::SIGKILL);
                deadline = None;
            }
        }
    }
}

/// Which of `fds` is readable (or closed) first, within `wait`: its index, or `None` when
/// the time passed or a signal came first.
fn poll_readable(fds: &[i32], wait: Duration) -> std::io::Result<Option<usize>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = i32::try_from(wait.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
    // SAFETY: `polled` is a live array of `polled.len()` pollfds.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, millis) };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        return match err.kind() {
            std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(err),
        };
    }
    Ok(polled.iter().position(|p| p.revents != 0))
}

/// What tells that a child exited: its pidfd (Linux 5.3+), or else a reaper thread that
/// closes a pipe once wait4 returned.
enum ExitWatch {
    Pidfd {
        pid: i32,
        fd: OwnedFd,
    },
    Reaper {
        closed: File,
        status: mpsc::Receiver<std::io::Result<WaitStatus>>,
    },
}

impl ExitWatch {
    fn new(pid: i32) -> std::io::Result<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the descriptor is new and owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            return Ok(ExitWatch::Pidfd { pid, fd });
        }
        ExitWatch::reaper(pid)
    }

    /// For kernels without pidfds (before 5.3, or a seccomp filter that refuses them).
    fn reaper(pid: i32) -> std::io::Result<ExitWatch> {
        let (closed, write) = cloexec_pipe()?;
        let (tx, status) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait4(pid));
            drop(write);
        });
        Ok(ExitWatch::Reaper { closed, status })
    }

    fn fd(&self) -> i32 {
        match self {
            ExitWatch::Pidfd { fd, .. } => fd.as_raw_fd(),
            ExitWatch::Reaper { closed, .. } => closed.as_raw_fd(),
        }
    }

    /// The exit, once [`fd`](Self::fd) is readable.
    fn reap(&self) -> std::io::Result<WaitStatus> {
        match self {
            ExitWatch::Pidfd { pid, .. } => wait4(*pid),
            ExitWatch::Reaper { status, .. } => status.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the reaper thread ended without a status",
                ))
            }),
        }
    }
}

/// A child's standard streams, opened before the fork.
struct ChildIo {
    stdin: File,
    stdout: File,
    /// The log file, or the write end of the pipe the harness copies from.
    stderr: OwnedFd,
}

/// Where `spec`'s streams go and, when its stderr is piped to be timed, the pipe's read
/// end with that stderr's log files.
fn child_io(spec: &CommandSpec) -> Result<(ChildIo, Option<(File, StderrLog)>)> {
    let stdin = spec.stdin.as_deref().unwrap_or(Path::new("/dev/null"));
    let stdin = File::open(stdin).context(|| format!("opening {}", stdin.display()))?;
    let stdout = create_log(&spec.stdout)?;
    let (stderr, pipe) = match spec.stderr_times {
        true => {
            let log = StderrLog::create(&spec.stderr)?;
            let (read, write) = cloexec_pipe()
                .map_err(|e| Error::io("creating the pipe of a build's stderr", e))?;
            (write, Some((read, log)))
        }
        false => (create_log(&spec.stderr)?.into(), None),
    };
    Ok((
        ChildIo {
            stdin,
            stdout,
            stderr,
        },
        pipe,
    ))
}

/// Starts `spec` with its clock: born in its cgroup where the kernel can (see
/// [`spawn`]), else through `Command`, joining the cgroup before exec. Its pid, and
/// whether it was born in the cgroup.
fn spawn_build(
    spec: &CommandSpec,
    io: ChildIo,
    cgroup: Option<&BuildCgroup>,
    clock: &ExecClock,
) -> Result<(i32, bool)> {
    if let Some((exec, dir)) = cgroup.and_then(|g| Some((spawn::Exec::of(spec)?, g.v2_dir()?))) {
        let stdio = [
            io.stdin.as_raw_fd(),
            io.stdout.as_raw_fd(),
            io.stderr.as_raw_fd(),
        ];
        let spawn = || spawn::spawn_into_cgroup(&exec, stdio, dir.as_fd(), clock.write_fd());
        if let Some(pid) = spawn_registered(&spec.program, spawn, |pid| *pid)? {
            return Ok((pid, true));
        }
    }
    Ok((spawn_joining(spec, io, cgroup, clock)?, false))
}

/// Starts `spec` through `Command`, the child joining `cgroup` between fork and exec.
fn spawn_joining(
    spec: &CommandSpec,
    io: ChildIo,
    cgroup: Option<&BuildCgroup>,
    clock: &ExecClock,
) -> Result<i32> {
    let mut cmd = command_of(spec, io);
    if let Some(group) = cgroup {
        // SAFETY: the hook makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(group.join_hook()) };
    }
    // The last hook: what runs before it (the fork, the cgroup join) is not the build's.
    // SAFETY: the hook makes only async-signal-safe calls.
    unsafe { cmd.pre_exec(clock.hook()) };
    let child = spawn_registered(&spec.program, || cmd.spawn(), |c| Some(c.id() as i32))?;
    Ok(child.id() as i32)
}

/// The child process of `spec` through `Command`: its own process group, its streams,
/// dying with the harness.
fn command_of(spec: &CommandSpec, io: ChildIo) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(io.stdin)
        .stdout(io.stdout)
        .stderr(io.stderr)
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    die_with_parent(&mut cmd);
    cmd
}

/// Servers' counters before a build: the run's servers cgroup and each known server.
struct ServersBefore {
    cgroup_cpu: Option<(Duration, Duration)>,
    stats: BTreeMap<i32, procfs::Stat>,
}

impl ServersBefore {
    fn read(cgroups: Option<&RunCgroups>, probe: &ServerProbe) -> ServersBefore {
        let pids = cgroups
            .map(RunCgroups::server_pids)
            .unwrap_or_default()
            .into_iter()
            .chain(probe.pids());
        ServersBefore {
            cgroup_cpu: cgroups.and_then(RunCgroups::servers_cpu),
            stats: pids
                .filter_map(|pid| Some((pid, procfs::Stat::of(pid)?)))
                .collect(),
        }
    }

    /// `pid`'s CPU ticks (user, sys) since this snapshot; whole when it is a new process.
    fn ticks_since(&self, pid: i32, now: &procfs::Stat) -> (u64, u64) {
        match self.stats.get(&pid) {
            Some(then) if then.start_ticks == now.start_ticks => (
                now.user_ticks.saturating_sub(then.user_ticks),
                now.sys_ticks.saturating_sub(then.sys_ticks),
            ),
            _ => (now.user_ticks, now.sys_ticks),
        }
    }
}

struct Usage {
    user: Duration,
    sys: Duration,
    scope: CpuScope,
    max_rss_bytes: Option<u64>,
    server_max_rss_bytes: Option<u64>,
}

/// Everything in the build's cgroup, plus what the run's servers did meanwhile. Processes
/// that outlive a build (servers) move to the run's servers cgroup when `keep_servers`;
/// otherwise (a build killed at its timeout) they die with the build's cgroup: Nix's
/// sandboxed builders outlive a killed `nix build`.
fn measure_cgroup(
    status: &WaitStatus,
    pid: i32,
    group: &BuildCgroup,
    run: &RunCgroups,
    before: &ServersBefore,
    probe: &ServerProbe,
    keep_servers: bool,
) -> Option<Usage> {
    let (mut user, mut sys) = group.cpu()?;
    // What is left of the build's own process group is dying (killed above).
    let survivors: Vec<i32> = group
        .pids()
        .into_iter()
        .filter(|&p| procfs::Stat::of(p).is_some_and(|s| s.alive() && s.process_group != pid))
        .collect();
    if keep_servers {
        run.adopt_servers(&survivors);
    }
    if let (Some(then), Some(now)) = (before.cgroup_cpu, run.servers_cpu()) {
        user += now.0.saturating_sub(then.0);
        sys += now.1.saturating_sub(then.1);
    }
    // Servers that worked for this build: new ones, and earlier ones whose time grew.
    let worked = before.stats.iter().filter(|(&p, then)| {
        procfs::Stat::of(p).is_some_and(|now| {
            now.start_ticks == then.start_ticks && now.cpu_ticks() > then.cpu_ticks()
        })
    });
    let servers: BTreeSet<i32> = survivors
        .into_iter()
        .chain(worked.map(|(&p, _)| p))
        .chain(probe.pids())
        .collect();
    let server_max_rss_bytes = servers
        .iter()
        .filter_map(|&p| procfs::peak_rss_bytes(p))
        .max();
    Some(Usage {
        user,
        sys,
        scope: match group.version() {
            cgroup::Version::V2 => CpuScope::CgroupV2,
            cgroup::Version::V1 => CpuScope::CgroupV1,
        },
        max_rss_bytes: status.max_rss_bytes.max(server_max_rss_bytes),
        server_max_rss_bytes,
    })
}

/// The child's rusage, plus the /proc counters of the servers `probe` names.
fn measure_children(status: &WaitStatus, before: &ServersBefore, probe: &ServerProbe) -> Usage {
    let (mut user, mut sys) = (status.user, status.sys);
    let mut server_max_rss_bytes = None;
    let mut counted_any = false;
    for pid in probe.pids() {
        let Some(now) = procfs::Stat::of(pid) else {
            continue;
        };
        let (u, s) = before.ticks_since(pid, &now);
        user += procfs::ticks(u);
        sys += procfs::ticks(s);
        counted_any = true;
        server_max_rss_bytes = server_max_rss_bytes.max(procfs::peak_rss_bytes(pid));
    }
    Usage {
        user,
        sys,
        scope: if counted_any {
            CpuScope::ChildrenAndServers
        } else {
            CpuScope::Children
        },
        max_rss_bytes: status.max_rss_bytes.max(server_max_rss_bytes),
        server_max_rss_bytes,
    }
}

fn create_log(path: &Path) -> Result<File> {
    File::create(path).context(|| format!("creating log file {}", path.display()))
}

/// The child gets SIGKILL when the thread that spawned it exits: PR_SET_PDEATHSIG follows
/// the parent *thread*, so spawn only from a thread that lives as long as the run (the
/// caller's), never from a short-lived helper thread. A crashed or SIGKILLed harness then
/// leaves no build tool behind (daemons the tool forks, like Bazel's server, are the
/// janitor's: the flag is not inherited across fork).
fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: the hook makes only async-signal-safe calls.
    unsafe { cmd.pre_exec(move || spawn::die_with_parent(parent)) };
}

/// Runs `spawn`, registering the process group it started (`pid` of what it gave) under
/// the registry's lock, so that a signal cannot slip between spawn and register.
fn spawn_registered<T>(
    program: &Path,
    spawn: impl FnOnce() -> std::io::Result<T>,
    pid: impl FnOnce(&T) -> Option<i32>,
) -> Result<T> {
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let spawned = spawn().map_err(|e| {
        Error::io(
            format!(
                "starting `{}` (is it installed and executable?)",
                program.display()
            ),
            e,
        )
    })?;
    groups.extend(pid(&spawned));
    Ok(spawned)
}

struct WaitStatus {
    exit: Exit,
    /// When wait4 returned, on [`monotonic_now`]'s clock: where the timed span ends.
    reaped: Duration,
    user: Duration,
    sys: Duration,
    /// The largest of the child and the descendants it waited for.
    max_rss_bytes: Option<u64>,
}

fn wait4(pid: i32) -> std::io::Result<WaitStatus> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child; status and usage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let reaped = monotonic_now();
    let exit = if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    };
    Ok(WaitStatus {
        exit,
        reaped,
        user: timeval(usage.ru_utime),
        sys: timeval(usage.ru_stime),
        // Linux counts ru_maxrss in KiB.
        max_rss_bytes: u64::try_from(usage.ru_maxrss)
            .ok()
            .filter(|&kib| kib > 0)
            .map(|kib| kib * 1024),
    })
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
}

/// Runs every command inside a shell (e.g. `nix develop .#gpu --command`): the prefix,
/// then the command.
pub struct InShell<'a> {
    pub inner: &'a dyn Executor,
    pub prefix: Vec<OsString>,
}

impl InShell<'_> {
    fn wrap(&self, spec: &CommandSpec) -> CommandSpec {
        let mut wrapped = spec.clone();
        if let Some((program, rest)) = self.prefix.split_first() {
            wrapped.program = PathBuf::from(program);
            wrapped.args = rest
                .iter()
                .cloned()
                .chain(std::iter::once(spec.program.clone().into_os_string()))
                .chain(spec.args.iter().cloned())
                .collect();
        }
        wrapped
    }
}

impl Executor for InShell<'_> {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        self.inner.run(&self.wrap(spec))
    }

    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        self.inner.run_with_servers(&self.wrap(spec), servers)
    }

    fn observer(&self) -> Option<&dyn BuildObserver> {
        self.inner.observer()
    }
}

/// Output of a short command run through an executor.
#[derive(Debug)]
pub struct Captured {
    pub outcome: ProcessOutcome,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short helper command (a version query, a key generation, a cache upload) as an
/// owned, time-limited child and returns what it printed. `spec`'s output paths are replaced.
pub fn run_captured(exec: &dyn Executor, mut spec: CommandSpec) -> Result<Captured> {
    let logs = tempfile::tempdir().context(|| "creating a temporary folder for logs".into())?;
    spec.stdout = logs.path().join("stdout");
    spec.stderr = logs.path().join("stderr");
    let outcome = exec.run(&spec)?;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Ok(Captured {
        outcome,
        stdout: read(&spec.stdout),
        stderr: read(&spec.stderr),
    })
}

/// A long-lived child (a cache server): its own process group, dies with the harness,
/// and is killed with its group when dropped.
#[derive(Debug)]
pub struct OwnedChild {
    child: Child,
    name: String,
}

impl OwnedChild {
    pub fn spawn(mut cmd: Command, name: &str) -> Result<Self> {
        cmd.stdin(Stdio::null()).process_group(0);
        die_with_parent(&mut cmd);
        let program = PathBuf::from(cmd.get_program());
        let child = spawn_registered(&program, || cmd.spawn(), |c| Some(c.id() as i32))?;
        Ok(OwnedChild {
            child,
            name: name.to_string(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `Some(description)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state ({e})")),
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        kill_group(pid, libc::SIGKILL);
        if let Err(e) = self.child.wait() {
            eprintln!("warning: could not reap {} (pid {pid}): {e}", self.name);
        }
        unregister(pid);
    }
}

/// Process groups the harness owns right now; killed on SIGINT, SIGTERM and SIGHUP.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// The first interrupting signal that arrived (0: none).
static INTERRUPT_SIGNAL: AtomicI32 = AtomicI32::new(0);

fn unregister(pid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
}

fn kill_group(pid: i32, signal: i32) {
    // SAFETY: plain syscall; ESRCH (group already gone) is expected and harmless.
    unsafe {
        libc::killpg(pid, signal);
    }
}

/// The signals that stop a run: Ctrl-C, a cancelled CI job, a closed terminal.
pub const INTERRUPTING_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs the SIGINT / SIGTERM / SIGHUP handler (once per process): the first signal
/// kills every owned process group and everything in the run's cgroups (Bazel servers),
/// and makes the run stop at its next check and unwind, so temporary state is removed
/// and finished cases are kept; a second signal exits at once.
pub fn install_interrupt_handler() -> Result<()> {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    // A signal the harness was started ignoring (`nohup`, a background job) stays ignored.
    let wanted = INTERRUPTING_SIGNALS.into_iter().filter(|&s| !ignored(s));
    let mut signals = signal_hook::iterator::Signals::new(wanted).map_err(|e| {
        Error::Environment(format!(
            "cannot install the handler of SIGINT, SIGTERM and SIGHUP: {e}"
        ))
    })?;
    // A plain thread, not a signal handler: it may lock, kill and exit freely.
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let first = INTERRUPT_SIGNAL
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                kill_owned();
                if !first {
                    std::process::exit(crate::error::exit_code::interrupted_by(signal));
                }
            }
        })
        .context(|| "starting the signal handler thread".into())?;
    *installed = true;
    Ok(())
}

/// Whether `signal`'s disposition is SIG_IGN.
fn ignored(signal: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into a local.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

fn kill_owned() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for pid in groups {
        kill_group(pid, libc::SIGKILL);
    }
    cgroup::kill_registered();
}

/// The signal that interrupted the run, if one did.
pub fn interrupting_signal() -> Option<i32> {
    match INTERRUPT_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

pub fn check_interrupted() -> Result<()> {
    match interrupting_signal() {
        Some(signal) => Err(Error::Interrupted { signal }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, script: &str, timeout: Duration) -> CommandSpec {
        CommandSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("FLYWHEEL_TEST".into(), "yes".into())],
            cwd: Some(dir.to_path_buf()),
            stdin: None,
            stdout: dir.join("out"),
            stderr: dir.join("err"),
            stderr_times: false,
            timeout,
        }
    }

    /// `spec` with its stderr piped and its lines' arrival times noted.
    fn spec_timing_stderr(dir: &Path, script: &str, timeout: Duration) -> CommandSpec {
        CommandSpec {
            stderr_times: true,
            ..spec(dir, script, timeout)
        }
    }

    /// The pid a test script wrote into `file`.
    fn pid_in(file: &Path) -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// A killed process may linger as a zombie until its new parent reaps it; that is dead.
    fn running(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
            })
            .unwrap_or(false)
    }

    /// Signals are delivered asynchronously: give the kernel a moment to finish the kill.
    fn dies_soon(pid: i32) -> bool {
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !running(pid)
        })
    }

    #[test]
    fn captures_output_exit_code_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = ProcessExecutor
            .run(&spec(
                dir.path(),
                "echo $FLYWHEEL_TEST; echo e >&2; exit 3",
                Duration::from_secs(30),
            ))
            .unwrap();
        assert_eq!(outcome.exit, Exit::Code(3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "yes\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("err")).unwrap(),
            "e\n"
        );
    }

    #[test]
    fn displays_a_pasteable_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), "echo it's /bin /usr", Duration::from_secs(1));
        assert_eq!(s.display(), r"/bin/sh -c 'echo it'\''s /bin /usr'");
        assert_eq!(shell_quote("--arg"), "--arg");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn in_shell_runs_the_command_after_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let shell = InShell {
            inner: &ProcessExecutor,
            prefix: vec!["/usr/bin/env".into(), "WRAPPED=yes".into()],
        };
        let s = spec(dir.path(), "echo $WRAPPED", Duration::from_secs(30));
        assert!(shell.run(&s).unwrap().success());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "yes\n"
        );
    }

    #[test]
    fn feeds_stdin_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in"), "secret\n").unwrap();
        let mut s = spec(dir.path(), "read x; echo got-$x", Duration::from_secs(30));
        s.stdin = Some(dir.path().join("in"));
        assert!(ProcessExecutor.run(&s).unwrap().success());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "got-secret\n"
        );
    }

    #[test]
    fn measures_cpu_time_of_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = ProcessExecutor
            .run(&spec(
                dir.path(),
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
                Duration::from_secs(60),
            ))
            .unwrap();
        assert!(outcome.success());
        assert!(outcome.user + outcome.sys > Duration::ZERO);
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        // The grandchild writes its pid, then both would sleep far past the timeout.
        let script = "sh -c 'echo $$ > grandchild; exec sleep 300' & sleep 300";
        let outcome = ProcessExecutor
            .run(&spec(dir.path(), script, Duration::from_millis(500)))
            .unwrap();
        assert_eq!(outcome.exit, Exit::TimedOut);
        assert!(outcome.wall < Duration::from_secs(30));
        let grandchild = pid_in(&dir.path().join("grandchild"));
        assert!(
            dies_soon(grandchild),
            "grandchild {grandchild} survived the timeout"
        );
    }

    #[test]
    fn stderr_lines_get_their_arrival_times() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec_timing_stderr(
            dir.path(),
            "echo one >&2; sleep 0.3; echo two >&2; echo three >&2",
            Duration::from_secs(30),
        );
        assert!(ProcessExecutor.run(&s).unwrap().success());
        assert_eq!(
            std::fs::read_to_string(&s.stderr).unwrap(),
            "one\ntwo\nthree\n"
        );
        let times: Vec<u64> = std::fs::read_to_string(stderr_times_path(&s.stderr))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(times.len(), 3, "one time per line");
        assert!(times[1] >= times[0] + 250_000, "{times:?}");
        assert!(times[2] >= times[1]);
    }

    #[test]
    fn a_grandchild_holding_stderr_dies_with_its_leader_and_its_lines_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        // The background sleep keeps the pipe open long after its leader exits.
        let script = "sh -c 'echo $$ > grandchild; echo late >&2; exec sleep 300' & \
                      while [ ! -s grandchild ]; do sleep 0.01; done; echo first >&2";
        let s = spec_timing_stderr(dir.path(), script, Duration::from_secs(60));
        let began = Instant::now();
        assert!(ProcessExecutor.run(&s).unwrap().success());
        assert!(
            began.elapsed() < Duration::from_secs(300),
            "waited for the grandchild"
        );
        let grandchild = pid_in(&dir.path().join("grandchild"));
        assert!(
            dies_soon(grandchild),
            "grandchild {grandchild} outlived its build"
        );
        let log = std::fs::read_to_string(&s.stderr).unwrap();
        assert!(log.contains("late\n") && log.contains("first\n"), "{log:?}");
        let times = std::fs::read_to_string(stderr_times_path(&s.stderr)).unwrap();
        assert_eq!(times.lines().count(), 2, "{times:?}");
    }

    #[test]
    fn a_timed_out_build_with_piped_stderr_is_killed_and_its_log_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec_timing_stderr(
            dir.path(),
            "echo started >&2; exec sleep 300",
            Duration::from_millis(300),
        );
        let outcome = ProcessExecutor.run(&s).unwrap();
        assert_eq!(outcome.exit, Exit::TimedOut);
        assert_eq!(std::fs::read_to_string(&s.stderr).unwrap(), "started\n");
    }

    #[test]
    fn without_pidfds_a_reaper_thread_tells_the_exit() {
        // Reaped by the watch's wait4, which std's `Child` does not know of.
        #[allow(clippy::zombie_processes)]
        let child = Command::new("/bin/sh")
            .args(["-c", "sleep 0.2; exit 3"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let watch = ExitWatch::reaper(pid).unwrap();
        assert_eq!(
            poll_readable(&[watch.fd()], Duration::from_millis(10)).unwrap(),
            None
        );
        let ready = poll_readable(&[watch.fd()], Duration::from_secs(60)).unwrap();
        assert_eq!(ready, Some(0));
        assert_eq!(watch.reap().unwrap().exit, Exit::Code(3));
    }

    #[test]
    fn the_clock_starts_after_the_other_pre_exec_hooks() {
        // A slow hook stands for a cgroup join, which waits for an RCU grace period.
        let mut cmd = Command::new("true");
        // SAFETY: nanosleep is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            })
        };
        let clock = ExecClock::new().unwrap();
        // SAFETY: the hook makes only async-signal-safe calls.
        unsafe { cmd.pre_exec(clock.hook()) };
        let spawning = monotonic_now();
        let mut child = cmd.spawn().unwrap();
        let started = clock.started().expect("the child says when it execs");
        let spawned = monotonic_now();
        child.wait().unwrap();
        assert!(
            started >= spawning + Duration::from_millis(200),
            "{started:?} vs {spawning:?}"
        );
        assert!(started <= spawned, "{started:?} vs {spawned:?}");
    }

    #[test]
    fn the_wall_time_is_the_commands_life() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = ProcessExecutor
            .run(&spec(dir.path(), "sleep 0.3", Duration::from_secs(30)))
            .unwrap();
        assert!(outcome.success());
        assert!(outcome.wall >= Duration::from_millis(300), "{outcome:?}");
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "", Duration::from_secs(1));
        s.program = "/nonexistent/tool".into();
        let err = ProcessExecutor.run(&s).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/tool"), "{err}");
    }

    /// Burns about a second of CPU in sh arithmetic.
    const BURN: &str = "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done";

    fn cpu(outcome: &ProcessOutcome) -> Duration {
        outcome.user + outcome.sys
    }

    /// A run's executor forced onto one cgroup version; `None` when this machine lacks it.
    fn cgroup_executor(version: cgroup::Version) -> Option<(ScratchDir, BuildExecutor)> {
        let parent = std::env::temp_dir();
        let scratch = ScratchDir::new_in(&parent, "flywheel-bench-test-").unwrap();
        let exec = BuildExecutor::for_run(&scratch, Some(version));
        match exec.accounting_note() {
            Some(note) => {
                eprintln!("skipped: {version:?} cannot be used here: {note}");
                None
            }
            None => Some((scratch, exec)),
        }
    }

    fn counts_a_daemonised_cpu_burner(version: cgroup::Version, scope: CpuScope) {
        let Some((scratch, exec)) = cgroup_executor(version) else {
            return;
        };
        // The burner leaves the build's session and process group and is never reaped by
        // it, as Bazel's server is not: rusage cannot see it, the cgroup can.
        let script = format!(
            "setsid -f sh -c '{BURN}; touch burnt' </dev/null >/dev/null 2>&1; while [ ! -f burnt ]; do sleep 0.05; done"
        );
        let dir = scratch.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        let counted = exec
            .run(&spec(&dir, &script, Duration::from_secs(120)))
            .unwrap();
        assert!(counted.success());
        assert_eq!(counted.cpu_scope, scope);
        assert!(counted.max_rss_bytes.is_some());
        let dir = scratch.path().join("b");
        std::fs::create_dir(&dir).unwrap();
        let plain = ProcessExecutor
            .run(&spec(&dir, &script, Duration::from_secs(120)))
            .unwrap();
        assert_eq!(plain.cpu_scope, CpuScope::Children);
        assert!(
            cpu(&counted) > Duration::from_millis(400) && cpu(&counted) > cpu(&plain) * 3,
            "cgroup: {:?} of {:?} wall; rusage alone: {:?}",
            cpu(&counted),
            counted.wall,
            cpu(&plain)
        );
    }

    #[test]
    fn cgroup_v2_counts_a_daemonised_cpu_burner() {
        counts_a_daemonised_cpu_burner(cgroup::Version::V2, CpuScope::CgroupV2);
    }

    #[test]
    fn cgroup_v1_counts_a_daemonised_cpu_burner() {
        counts_a_daemonised_cpu_burner(cgroup::Version::V1, CpuScope::CgroupV1);
    }

    /// A server started by one build and used by the next, like Bazel's for no-op builds:
    /// it works when a `work` file appears and says so with a `done` file.
    const SERVER: &str = "setsid -f sh -c 'echo $$ > server.pid; while :; do if [ -f work ]; then rm work; BURN; touch done; fi; sleep 0.05; done' </dev/null >/dev/null 2>&1; while [ ! -s server.pid ]; do sleep 0.05; done";
    const USE_SERVER: &str = "touch work; while [ ! -f done ]; do sleep 0.05; done; rm done";

    fn server_is_counted_later_and_dies_with_the_run(version: cgroup::Version) {
        let Some((scratch, exec)) = cgroup_executor(version) else {
            return;
        };
        let dir = scratch.path();
        let start = exec
            .run(&spec(
                dir,
                &SERVER.replace("BURN", BURN),
                Duration::from_secs(60),
            ))
            .unwrap();
        assert!(start.success());
        let server: i32 = std::fs::read_to_string(dir.join("server.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(running(server), "the server outlives its build");
        assert!(start.server_max_rss_bytes.is_some());

        let used = exec
            .run(&spec(dir, USE_SERVER, Duration::from_secs(60)))
            .unwrap();
        assert!(
            cpu(&used) > Duration::from_millis(400),
            "the server's work counts: {used:?}"
        );
        assert!(used.server_max_rss_bytes.is_some());

        // Without a cgroup, a probe reads the server's /proc counters around the build.
        let probe = ServerProbe::pid_file(dir.join("server.pid"));
        let probed = ProcessExecutor
            .run_with_servers(&spec(dir, USE_SERVER, Duration::from_secs(60)), &probe)
            .unwrap();
        assert_eq!(probed.cpu_scope, CpuScope::ChildrenAndServers);
        assert!(cpu(&probed) > Duration::from_millis(400), "{probed:?}");
        assert!(probed.server_max_rss_bytes.is_some());

        let run_dir = exec.cgroups.as_ref().unwrap().dir().to_path_buf();
        assert_eq!(
            crate::exec::scratch::read_record(dir).cgroups,
            vec![run_dir.clone()]
        );
        drop(exec);
        assert!(dies_soon(server), "the run's end kills its servers");
        assert!(!run_dir.exists(), "the run's cgroup is removed");
    }

    #[test]
    fn cgroup_v2_counts_a_server_later_and_kills_it_with_the_run() {
        server_is_counted_later_and_dies_with_the_run(cgroup::Version::V2);
    }

    #[test]
    fn cgroup_v1_counts_a_server_later_and_kills_it_with_the_run() {
        server_is_counted_later_and_dies_with_the_run(cgroup::Version::V1);
    }

    /// How a test starts a build.
    enum Start<'a> {
        Born(&'a BuildCgroup),
        Joining(Option<&'a BuildCgroup>),
    }

    /// Runs `spec` to its end, started as `start` says, and gives its stdout.
    fn started_by(spec: &CommandSpec, start: Start) -> String {
        let (io, _) = child_io(spec).unwrap();
        let clock = ExecClock::new().unwrap();
        let pid = match start {
            Start::Born(group) => {
                let exec = spawn::Exec::of(spec).unwrap();
                let stdio = [
                    io.stdin.as_raw_fd(),
                    io.stdout.as_raw_fd(),
                    io.stderr.as_raw_fd(),
                ];
                let dir = group.v2_dir().unwrap();
                spawn::spawn_into_cgroup(&exec, stdio, dir.as_fd(), clock.write_fd())
                    .unwrap()
                    .expect("this kernel (5.7+) takes clone3 into a cgroup")
            }
            Start::Joining(group) => spawn_joining(spec, io, group, &clock).unwrap(),
        };
        assert!(clock.started().is_some(), "the clock started before exec");
        let exit = wait4(pid).unwrap().exit;
        unregister(pid);
        assert_eq!(exit, Exit::Code(0));
        std::fs::read_to_string(&spec.stdout).unwrap()
    }

    #[test]
    fn a_build_born_in_its_cgroup_starts_as_command_would_start_it() {
        let Some((scratch, exec)) = cgroup_executor(cgroup::Version::V2) else {
            return;
        };
        let group = exec.cgroups.as_ref().unwrap().new_build().unwrap();
        let dir = scratch.path();
        let status = [
            "-hE",
            "^(SigBlk|SigIgn|NStgid|NSpgid):|^0::",
            "/proc/self/status",
        ];
        let probes: [(&str, &[&str]); 3] = [
            ("/bin/grep", &[&status[..], &["/proc/self/cgroup"]].concat()),
            ("/usr/bin/env", &[]),
            ("/bin/pwd", &[]),
        ];
        for (program, args) in probes {
            let spec = |name: &str| CommandSpec {
                program: program.into(),
                args: args.iter().map(OsString::from).collect(),
                stdout: dir.join(format!("{name}.out")),
                stderr: dir.join(format!("{name}.err")),
                ..spec(dir, "", Duration::from_secs(30))
            };
            let born = started_by(&spec("born"), Start::Born(&group));
            let commanded = started_by(&spec("commanded"), Start::Joining(None));
            let lines = |text: &str, cgroup: bool| -> Vec<String> {
                let mut lines: Vec<String> = text
                    .lines()
                    .filter(|l| l.starts_with("0::") == cgroup)
                    .map(str::to_string)
                    .collect();
                lines.sort();
                lines
            };
            // Signal mask and ignored signals (SIGPIPE, which this test binary ignores,
            // is reset), environment and folder: the same on both paths.
            let differs = |l: &String| l.starts_with("NS");
            let same = |text: &str| -> Vec<String> {
                lines(text, false)
                    .into_iter()
                    .filter(|l| !differs(l))
                    .collect()
            };
            assert_eq!(same(&born), same(&commanded), "{program}");
            if program == "/bin/grep" {
                for text in [&born, &commanded] {
                    let field = |name: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(|v| v.trim().to_string())
                    };
                    assert_eq!(
                        field("NStgid:"),
                        field("NSpgid:"),
                        "leads its own group:\n{text}"
                    );
                    let ignored = field("SigIgn:").and_then(|m| u64::from_str_radix(&m, 16).ok());
                    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
                    assert_eq!(
                        ignored.map(|m| m & sigpipe),
                        Some(0),
                        "SIGPIPE is reset:\n{text}"
                    );
                }
                let run = exec.cgroups.as_ref().unwrap().dir().file_name().unwrap();
                let born_in = lines(&born, true);
                assert!(
                    born_in.len() == 1
                        && born_in[0].ends_with(&format!("/{}/build-0", run.to_string_lossy())),
                    "born in the build's cgroup: {born_in:?}"
                );
            }
        }
    }

    #[test]
    fn where_clone3_is_refused_the_build_joins_its_cgroup_before_exec() {
        let Some((scratch, exec)) = cgroup_executor(cgroup::Version::V2) else {
            return;
        };
        let group = exec.cgroups.as_ref().unwrap().new_build().unwrap();
        let spec = CommandSpec {
            program: "/bin/cat".into(),
            args: vec!["/proc/self/cgroup".into()],
            ..spec(scratch.path(), "", Duration::from_secs(30))
        };
        let run = exec.cgroups.as_ref().unwrap().dir().file_name().unwrap();
        let joined = started_by(&spec, Start::Joining(Some(&group)));
        let suffix = format!("/{}/build-0", run.to_string_lossy());
        assert!(
            joined
                .lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&suffix)),
            "{joined}"
        );
    }

    #[test]
    fn a_program_that_cannot_be_exec_d_into_a_cgroup_says_why() {
        let Some((scratch, exec)) = cgroup_executor(cgroup::Version::V2) else {
            return;
        };
        let group = exec.cgroups.as_ref().unwrap().new_build().unwrap();
        let spec = CommandSpec {
            program: scratch.path().join("missing"),
            ..spec(scratch.path(), "", Duration::from_secs(30))
        };
        let (io, _) = child_io(&spec).unwrap();
        let err = spawn_build(&spec, io, Some(&group), &ExecClock::new().unwrap()).unwrap_err();
        assert!(err.to_string().contains("is it installed"), "{err}");
        assert!(group.pids().is_empty(), "nothing is left in the cgroup");
    }

    #[test]
    fn only_an_exec_of_a_path_is_spawned_without_command() {
        let dir = Path::new("/tmp");
        assert!(spawn::Exec::of(&spec(dir, "", Duration::from_secs(1))).is_some());
        let bare = CommandSpec {
            program: "sh".into(),
            ..spec(dir, "", Duration::from_secs(1))
        };
        assert!(
            spawn::Exec::of(&bare).is_none(),
            "PATH is searched by Command"
        );
        let nul = CommandSpec {
            args: vec!["a\0b".into()],
            ..spec(dir, "", Duration::from_secs(1))
        };
        assert!(
            spawn::Exec::of(&nul).is_none(),
            "Command names the NUL byte"
        );
    }

    #[test]
    fn a_timed_out_build_leaves_no_daemon_in_cgroup_mode() {
        for version in [cgroup::Version::V2, cgroup::Version::V1] {
            let Some((scratch, exec)) = cgroup_executor(version) else {
                continue;
            };
            let script = "setsid -f sh -c 'echo $$ > daemon.pid; exec sleep 300' </dev/null >/dev/null 2>&1; sleep 300";
            let outcome = exec
                .run(&spec(scratch.path(), script, Duration::from_millis(500)))
                .unwrap();
            assert_eq!(outcome.exit, Exit::TimedOut);
            let daemon: i32 = std::fs::read_to_string(scratch.path().join("daemon.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(dies_soon(daemon), "{version:?}: daemon {daemon} survived");
        }
    }

    #[test]
    fn tells_an_ignored_signal() {
        // SIGUSR2 is no one's in this test binary.
        // SAFETY: plain syscall, setting a disposition no test relies on.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        assert!(ignored(libc::SIGUSR2));
        assert!(!ignored(libc::SIGTERM));
    }

    #[test]
    fn finds_bazel_server_pid_files_within_the_depth() {
        let root = tempfile::tempdir().unwrap();
        let server = root.path().join("0123abcd/server");
        std::fs::create_dir_all(&server).unwrap();
        std::fs::write(server.join("server.pid.txt"), "1\n").unwrap();
        assert_eq!(
            bazel_server_pid_files(root.path(), 1),
            vec![server.join("server.pid.txt")]
        );
        assert!(bazel_server_pid_files(root.path(), 0).is_empty());
        assert_eq!(ServerProbe::bazel(root.path()).pids(), BTreeSet::from([1]));
    }

    #[test]
    fn owned_child_dies_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("300");
        let child = OwnedChild::spawn(cmd, "sleeper").unwrap();
        let pid = child.id() as i32;
        drop(child);
        assert!(dies_soon(pid));
    }
}
