//! Per-build cgroups, so a build's CPU time counts every process it started, daemons it
//! forked off (Bazel's server) included: cgroup v2 where it can be written, else the v1
//! `cpuacct` hierarchy. Each run gets one cgroup named after its scratch folder, under the
//! harness's own cgroup, holding a cgroup per build and one for the servers that outlive
//! their build.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::procfs;

/// Which hierarchy counts a run's CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy: `cpu.stat` is there whether or not the cpu controller is.
    V2,
    /// The v1 `cpuacct` controller's hierarchy.
    V1,
}

/// Every cgroup a run's cgroup names start with (the janitor removes only such ones).
pub const NAME_PREFIX: &str = "flywheel-bench-";

/// The run cgroup of each live executor, killed on the first SIGINT/SIGTERM/SIGHUP.
static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The folder of the harness's own cgroup in the hierarchy of `version`, and its path as
/// `/proc/PID/cgroup` writes it.
fn own_cgroup(version: Version) -> Result<(PathBuf, String), String> {
    let name = match version {
        Version::V2 => "cgroup v2",
        Version::V1 => "the cgroup v1 cpuacct controller",
    };
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own_path = cgroups
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .find(|(id, controllers, _)| match version {
            Version::V2 => *id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "cpuacct"),
        })
        .map(|(_, _, path)| path.to_string())
        .ok_or_else(|| format!("this process is in no {name} hierarchy"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (root, mount_point) = mountinfo
        .lines()
        .filter_map(parse_mount)
        .find(|m| match version {
            Version::V2 => m.fs_type == "cgroup2",
            Version::V1 => m.fs_type == "cgroup" && m.options.split(',').any(|o| o == "cpuacct"),
        })
        .map(|m| (m.root, m.mount_point))
        .ok_or_else(|| format!("{name} is not mounted"))?;
    // A container may see a subtree mounted: its root is a prefix of our path.
    let inside = own_path
        .strip_prefix(root.trim_end_matches('/'))
        .ok_or_else(|| format!("our {name} cgroup {own_path} is outside its mount ({root})"))?;
    Ok((
        PathBuf::from(mount_point).join(inside.trim_start_matches('/')),
        own_path,
    ))
}

struct Mount {
    root: String,
    mount_point: String,
    fs_type: String,
    options: String,
}

/// One line of `/proc/self/mountinfo`: `id parent dev root point opts [tags] - type source superopts`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        root: unescape(left.get(3)?),
        mount_point: unescape(left.get(4)?),
        fs_type: right.first()?.to_string(),
        options: right.get(2)?.to_string(),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup of one run, with a child cgroup per build. Dropping it kills whatever is
/// still in it (servers) and removes it.
#[derive(Debug)]
pub struct RunCgroups {
    version: Version,
    dir: PathBuf,
    /// `dir`'s path as `/proc/PID/cgroup` writes it.
    path: String,
    next_build: AtomicU64,
}

impl RunCgroups {
    /// Creates `name` (which must start with [`NAME_PREFIX`]) under the harness's own
    /// cgroup: in `version`, or in v2 and then v1 when `None`. `Err` says why neither works.
    pub fn create(version: Option<Version>, name: &str) -> Result<RunCgroups, String> {
        let versions = match version {
            Some(v) => vec![v],
            None => vec![Version::V2, Version::V1],
        };
        let mut reasons = Vec::new();
        for version in versions {
            match Self::create_in(version, name) {
                Ok(run) => return Ok(run),
                Err(why) => reasons.push(why),
            }
        }
        Err(reasons.join("; "))
    }

    fn create_in(version: Version, name: &str) -> Result<RunCgroups, String> {
        let (own_dir, own_path) = own_cgroup(version)?;
        let dir = own_dir.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let run = RunCgroups {
            version,
            path: format!("{}/{name}", own_path.trim_end_matches('/')),
            dir,
            next_build: AtomicU64::new(0),
        };
        // Dropped on failure, which removes the folder again.
        if cpu_of(version, &run.dir).is_none() {
            return Err(format!("{} counts no CPU time", run.dir.display()));
        }
        std::fs::create_dir(run.dir.join("servers"))
            .map_err(|e| format!("cannot create {}/servers: {e}", run.dir.display()))?;
        REGISTERED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(run.dir.clone());
        Ok(run)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The run's cgroup folder (to record for the janitor).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh, empty cgroup for the next build.
    pub fn new_build(&self) -> io::Result<BuildCgroup> {
        let name = format!("build-{}", self.next_build.fetch_add(1, Ordering::SeqCst));
        let dir = self.dir.join(&name);
        std::fs::create_dir(&dir)?;
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(BuildCgroup {
            version: self.version,
            path: format!("{}/{name}", self.path),
            dir,
            procs,
        })
    }

    /// The CPU time the run's servers (processes that outlived their build) used so far.
    pub fn servers_cpu(&self) -> Option<(Duration, Duration)> {
        cpu_of(self.version, &self.servers_dir())
    }

    pub fn server_pids(&self) -> Vec<i32> {
        procfs::read_pids(&self.servers_dir().join("cgroup.procs"))
    }

    /// Moves processes that outlived their build into the servers' cgroup, so the build's
    /// own cgroup can be removed and the servers' later work is still counted.
    pub fn adopt_servers(&self, pids: &[i32]) {
        let procs = self.servers_dir().join("cgroup.procs");
        for pid in pids {
            // A server that exited meanwhile cannot move; nothing is lost.
            let _ = std::fs::write(&procs, pid.to_string());
        }
    }

    fn servers_dir(&self) -> PathBuf {
        self.dir.join("servers")
    }
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        REGISTERED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != &self.dir);
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!(
                "warning: could not remove cgroup {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// The cgroup one build runs in.
#[derive(Debug)]
pub struct BuildCgroup {
    version: Version,
    dir: PathBuf,
    path: String,
    /// Its `cgroup.procs`, ready for the child to write itself into between fork and exec.
    procs: CString,
}

impl BuildCgroup {
    /// A hook for `Command::pre_exec`: the child writes itself into this cgroup between
    /// fork and exec, so everything it forks is counted. A failure is not fatal; the parent
    /// sees it ([`Self::contains`]) and counts the build without the cgroup.
    pub fn join_hook(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let procs = self.procs.clone();
        move || {
            // SAFETY: only async-signal-safe calls (open, getpid, write, close) on a path
            // made before fork, and no allocation.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    let mut digits = [0u8; 20];
                    let mut start = digits.len();
                    let mut pid = libc::getpid() as u32;
                    loop {
                        start -= 1;
                        digits[start] = b'0' + (pid % 10) as u8;
                        pid /= 10;
                        if pid == 0 {
                            break;
                        }
                    }
                    libc::write(fd, digits[start..].as_ptr().cast(), digits.len() - start);
                    libc::close(fd);
                }
            }
            Ok(())
        }
    }

    /// Its folder, open for `clone3(CLONE_INTO_CGROUP)`, which takes cgroup v2 folders only.
    pub fn v2_dir(&self) -> Option<OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.version != Version::V2 {
            return None;
        }
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .ok()?;
        Some(dir.into())
    }

    /// Whether `pid` (a child not yet reaped) is in this cgroup.
    pub fn contains(&self, pid: i32) -> bool {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        text.lines().any(|l| {
            let mut parts = l.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return false;
            };
            let hierarchy = match self.version {
                Version::V2 => id == "0" && controllers.is_empty(),
                Version::V1 => controllers.split(',').any(|c| c == "cpuacct"),
            };
            hierarchy && path == self.path
        })
    }

    /// User and system CPU time of every process that ran in it.
    pub fn cpu(&self) -> Option<(Duration, Duration)> {
        cpu_of(self.version, &self.dir)
    }

    /// Processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        procfs::read_pids(&self.dir.join("cgroup.procs"))
    }

    pub fn version(&self) -> Version {
        self.version
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        // Whatever is left was killed with the build's process group and is exiting; a
        // cgroup that cannot go yet goes with the run's.
        let _ = remove_tree(&self.dir);
    }
}

fn cpu_of(version: Version, dir: &Path) -> Option<(Duration, Duration)> {
    match version {
        Version::V2 => {
            let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
            let field = |name: &str| {
                stat.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                    .map(Duration::from_micros)
            };
            Some((field("user_usec ")?, field("system_usec ")?))
        }
        Version::V1 => {
            let ns = |file: &str| {
                std::fs::read_to_string(dir.join(file))
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_nanos)
            };
            Some((ns("cpuacct.usage_user")?, ns("cpuacct.usage_sys")?))
        }
    }
}

/// Kills every process in the cgroups of the live runs (first SIGINT/SIGTERM/SIGHUP).
pub fn kill_registered() {
    let dirs = REGISTERED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for dir in dirs {
        kill_all(&dir);
    }
}

/// The cgroup `dir` and every cgroup below it, deepest last.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(entries) = std::fs::read_dir(&all[i]) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    all.push(entry.path());
                }
            }
        }
        i += 1;
    }
    all
}

/// SIGKILLs every process in `dir` and below; returns how many it signalled.
fn kill_all(dir: &Path) -> usize {
    let mut killed = 0;
    for cgroup in tree(dir) {
        for pid in procfs::read_pids(&cgroup.join("cgroup.procs")) {
            // SAFETY: plain syscall; the pid was listed in one of our own cgroups.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

/// Kills everything in the cgroup `dir` (and below), waits for it to exit and removes the
/// cgroups. Returns how many processes it killed.
pub fn remove_tree(dir: &Path) -> io::Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut killed = 0;
    loop {
        let signalled = kill_all(dir);
        if signalled == 0 || Instant::now() > deadline {
            break;
        }
        killed += signalled;
        std::thread::sleep(Duration::from_millis(20));
    }
    for cgroup in tree(dir).iter().rev() {
        remove_empty(
            cgroup,
            deadline.max(Instant::now() + Duration::from_secs(2)),
        )?;
    }
    Ok(killed)
}

/// Removes one cgroup whose processes were killed. A killed process leaves
/// `cgroup.procs` before the kernel lets its cgroup go, so `EBUSY` is retried a while.
fn remove_empty(cgroup: &Path, deadline: Instant) -> io::Result<()> {
    loop {
        match std::fs::remove_dir(cgroup) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => return other,
        }
    }
}

/// Whether `dir` looks like a run cgroup this harness made: inside a mounted cgroup
/// hierarchy and named with [`NAME_PREFIX`] (the janitor checks before it kills).
pub fn is_run_cgroup(dir: &Path) -> bool {
    let named = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(NAME_PREFIX));
    let in_cgroupfs = dir.join("cgroup.procs").is_file()
        && std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
            info.lines().filter_map(parse_mount).any(|m| {
                (m.fs_type == "cgroup" || m.fs_type == "cgroup2") && dir.starts_with(&m.mount_point)
            })
        });
    named && in_cgroupfs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let v1 = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct";
        let m = parse_mount(v1).unwrap();
        assert_eq!(
            (m.root.as_str(), m.mount_point.as_str()),
            ("/", "/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m.fs_type, "cgroup");
        assert!(m.options.split(',').any(|o| o == "cpuacct"));
        let spaced = "40 25 0:27 /sub /mnt/with\\040space rw - cgroup2 cgroup2 rw";
        let m = parse_mount(spaced).unwrap();
        assert_eq!(m.mount_point, "/mnt/with space");
        assert_eq!(m.root, "/sub");
        assert!(parse_mount("no separator here").is_none());
    }

    #[test]
    fn refuses_names_and_folders_it_did_not_make() {
        assert!(!is_run_cgroup(Path::new("/tmp/flywheel-bench-x")));
        assert!(!is_run_cgroup(Path::new("/sys/fs/cgroup/other")));
    }
}
