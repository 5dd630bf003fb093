//! Owned child processes. Every child runs in its own process group, which is killed on
//! timeout, on Ctrl-C and when its owner is dropped; long-lived servers also die with the
//! harness (PR_SET_PDEATHSIG), so no server outlives it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

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
    pub timeout: Duration,
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessOutcome {
    pub exit: Exit,
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
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

/// Runs commands. Behind a trait so the scheduler can be tested with a fake executor;
/// `Sync` so a lane can wait on one command (a VM) while it reads what the command reports.
pub trait Executor: Sync {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome>;
}

impl<E: Executor + ?Sized> Executor for &E {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        (**self).run(spec)
    }
}

/// The real executor: spawns, times (wall + rusage), enforces the timeout.
#[derive(Debug, Default)]
pub struct ProcessExecutor;

/// How long a process group gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

impl Executor for ProcessExecutor {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        check_interrupted()?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(match &spec.stdin {
                Some(path) => {
                    Stdio::from(File::open(path).context(|| format!("opening {}", path.display()))?)
                }
                None => Stdio::null(),
            })
            .stdout(create_log(&spec.stdout)?)
            .stderr(create_log(&spec.stderr)?)
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let start = Instant::now();
        let child = spawn_registered(&mut cmd, &spec.program)?;
        let pid = child.id() as i32;
        // `Child::wait` gives no rusage, so a helper thread reaps with wait4 and reports back.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait4(pid));
        });
        let waited = match rx.recv_timeout(spec.timeout) {
            Ok(status) => status.map(|s| (s, false)),
            Err(_) => {
                kill_group(pid, libc::SIGTERM);
                let status = match rx.recv_timeout(TERM_GRACE) {
                    Ok(s) => s,
                    Err(_) => {
                        kill_group(pid, libc::SIGKILL);
                        rx.recv().expect("the reaper thread always sends")
                    }
                };
                status.map(|s| (s, true))
            }
        };
        let wall = start.elapsed();
        // Grandchildren left in the group (build hooks, daemons) die with their leader.
        kill_group(pid, libc::SIGKILL);
        unregister(pid);
        let (status, timed_out) =
            waited.context(|| format!("waiting for `{}`", spec.program.display()))?;
        check_interrupted()?;
        Ok(ProcessOutcome {
            exit: if timed_out {
                Exit::TimedOut
            } else {
                status.exit
            },
            wall,
            user: status.user,
            sys: status.sys,
        })
    }
}

fn create_log(path: &Path) -> Result<File> {
    File::create(path).context(|| format!("creating log file {}", path.display()))
}

fn spawn_registered(cmd: &mut Command, program: &Path) -> Result<Child> {
    // Hold the registry lock across spawn so a Ctrl-C cannot slip between spawn and register.
    let mut groups = GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn().map_err(|e| {
        Error::io(
            format!(
                "starting `{}` (is it installed and executable?)",
                program.display()
            ),
            e,
        )
    })?;
    groups.insert(child.id() as i32);
    Ok(child)
}

struct WaitStatus {
    exit: Exit,
    user: Duration,
    sys: Duration,
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
    let exit = if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    };
    Ok(WaitStatus {
        exit,
        user: timeval(usage.ru_utime),
        sys: timeval(usage.ru_stime),
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

impl Executor for InShell<'_> {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        let Some((program, rest)) = self.prefix.split_first() else {
            return self.inner.run(spec);
        };
        let mut wrapped = spec.clone();
        wrapped.program = PathBuf::from(program);
        wrapped.args = rest
            .iter()
            .cloned()
            .chain(std::iter::once(spec.program.clone().into_os_string()))
            .chain(spec.args.iter().cloned())
            .collect();
        self.inner.run(&wrapped)
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
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = PathBuf::from(cmd.get_program());
        let child = spawn_registered(&mut cmd, &program)?;
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

/// Process groups the harness owns right now; killed on Ctrl-C.
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

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

/// Installs the Ctrl-C / SIGTERM handler: the first signal kills every owned process group
/// and makes the run stop at the next check; a second one exits at once.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        let again = INTERRUPTED.swap(true, Ordering::SeqCst);
        let groups: Vec<i32> = GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        for pid in groups {
            kill_group(pid, libc::SIGKILL);
        }
        if again {
            std::process::exit(crate::error::exit_code::INTERRUPTED);
        }
    })
    .map_err(|e| Error::Environment(format!("cannot install the Ctrl-C handler: {e}")))
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Error::Interrupted)
    } else {
        Ok(())
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
            timeout,
        }
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
        let grandchild: i32 = std::fs::read_to_string(dir.path().join("grandchild"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            dies_soon(grandchild),
            "grandchild {grandchild} survived the timeout"
        );
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path(), "", Duration::from_secs(1));
        s.program = "/nonexistent/tool".into();
        let err = ProcessExecutor.run(&s).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/tool"), "{err}");
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
