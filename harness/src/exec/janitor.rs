//! Cleans up after runs that died (SIGKILL, a crash, a power cut): their scratch folders,
//! the processes still working in them, the Bazel servers and cgroups they recorded. Every
//! run sweeps its work folder first; `flywheel-bench clean` sweeps on demand.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{cgroup, procfs};
use crate::error::{exit_code, Result};
use crate::exec::process::bazel_server_pid_files;
use crate::exec::scratch::{self, Owner, LOCK_FILE};
use crate::results::lifecycle::{Leftover, LeftoverKind, SweptRun};

/// The name every scratch folder of a run starts with.
pub const SCRATCH_PREFIX: &str = "flywheel-bench-";

/// One stale scratch folder and what cleaning it took.
#[derive(Debug)]
pub struct Swept {
    pub folder: PathBuf,
    /// The run that left it.
    pub owner: Owner,
    /// Processes that were still running for it (Bazel servers, orphaned builds).
    pub processes_killed: Vec<i32>,
    pub cgroups_removed: Vec<PathBuf>,
    /// What could not be cleaned, and why.
    pub problems: Vec<String>,
}

impl Swept {
    /// As the results record it.
    pub fn record(&self) -> SweptRun {
        SweptRun {
            folder: self.folder.display().to_string(),
            owner_pid: self.owner.pid,
            processes_killed: self.processes_killed.clone(),
            cgroups_removed: self
                .cgroups_removed
                .iter()
                .map(|c| c.display().to_string())
                .collect(),
            problems: self.problems.clone(),
        }
    }
}

impl fmt::Display for Swept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let removed = if self.folder.exists() {
            "could not remove"
        } else {
            "removed"
        };
        write!(
            f,
            "{removed} {} (left by pid {}, which is gone)",
            self.folder.display(),
            self.owner.pid
        )?;
        if !self.processes_killed.is_empty() {
            let pids: Vec<String> = self.processes_killed.iter().map(i32::to_string).collect();
            write!(f, "; stopped its processes {}", pids.join(", "))?;
        }
        for cgroup in &self.cgroups_removed {
            write!(f, "; removed cgroup {}", cgroup.display())?;
        }
        for problem in &self.problems {
            write!(f, "; {problem}")?;
        }
        Ok(())
    }
}

/// Cleans every stale scratch folder in `work_dir`: one named `flywheel-bench-*`, owned by
/// this user, carrying a lock file whose owner is gone. Folders of live runs, and anything
/// without the lock (other tools use the same prefix), are never touched. Never fails:
/// what it could not clean is in each [`Swept`]'s `problems`.
pub fn sweep(work_dir: &Path) -> Vec<Swept> {
    let work_dir = std::path::absolute(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(&work_dir) else {
        return Vec::new();
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let folder = entry.path();
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
            && std::fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours {
            continue;
        }
        // Held open while cleaning, so two sweeps never clean the same folder.
        let Ok(lock) = std::fs::File::open(folder.join(LOCK_FILE)) else {
            continue;
        };
        let owner = std::fs::read_to_string(folder.join(LOCK_FILE))
            .ok()
            .and_then(|text| Owner::parse(&text));
        let (Some(owner), Ok(true)) = (owner, scratch::try_lock(&lock)) else {
            continue;
        };
        if owner.is_running() {
            continue;
        }
        swept.push(clean_folder(folder, owner));
    }
    swept
}

/// `flywheel-bench clean`: sweeps `work_dir` and says what it removed. Exits 4 when
/// something could not be removed.
pub fn clean(work_dir: &Path) -> Result<i32> {
    let swept = sweep(work_dir);
    if swept.is_empty() {
        println!(
            "nothing to clean in {}: no scratch folder of a run that died",
            work_dir.display()
        );
    }
    for s in &swept {
        println!("{s}");
    }
    Ok(if swept.iter().all(|s| s.problems.is_empty()) {
        exit_code::OK
    } else {
        exit_code::INTERNAL
    })
}

fn clean_folder(folder: PathBuf, owner: Owner) -> Swept {
    let record = scratch::read_record(&folder);
    let mut swept = Swept {
        folder,
        owner,
        processes_killed: Vec::new(),
        cgroups_removed: Vec::new(),
        problems: Vec::new(),
    };
    // Servers first, by name, so the report says which ones; every Bazel output root of
    // a run lies in its folder, two folders down (`bazel/root-N/<workspace hash>/server`).
    swept
        .processes_killed
        .extend(stop_bazel_servers(&swept.folder, 3));
    for dir in &record.cgroups {
        if !cgroup::is_run_cgroup(dir) {
            continue; // Already gone, or not one of ours: never touched.
        }
        match cgroup::remove_tree(dir) {
            Ok(_) => swept.cgroups_removed.push(dir.clone()),
            Err(e) => swept
                .problems
                .push(format!("could not remove cgroup {}: {e}", dir.display())),
        }
    }
    // Whatever still works in the folder: servers, builders a crash orphaned.
    let since = swept.owner.start_ticks;
    swept
        .processes_killed
        .extend(scratch::stop_processes_in(&swept.folder, since));
    if let Err(e) = scratch::remove_tree(&swept.folder) {
        swept.problems.push(format!("{e}"));
    }
    swept
}

/// What a run left after it stopped everything it started: its scratch folder, the
/// processes still working in it (started after `since`, in clock ticks; those among
/// `servers`, the ones that served the run until its end, count as servers), and its
/// cgroups. Empty when the cleanup worked.
pub fn leftovers(
    scratch: &Path,
    cgroups: &[PathBuf],
    servers: &[i32],
    since: u64,
) -> Vec<Leftover> {
    let mut left = Vec::new();
    if scratch.exists() {
        left.push(Leftover {
            kind: LeftoverKind::Scratch,
            what: scratch.display().to_string(),
        });
    }
    for pid in scratch::processes_in(scratch, since) {
        let kind = if servers.contains(&pid) {
            LeftoverKind::Server
        } else {
            LeftoverKind::Process
        };
        let what = format!("pid {pid}: {}", procfs::cmdline(pid).trim());
        left.push(Leftover { kind, what });
    }
    left.extend(cgroups.iter().filter(|c| c.exists()).map(|c| Leftover {
        kind: LeftoverKind::Cgroup,
        what: c.display().to_string(),
    }));
    left
}

/// Stops the Bazel servers whose pid files lie in `root` or at most `depth` folders below
/// it, after checking that each pid's command line still names `root` (a pid file may be
/// stale, its pid reused). Returns the pids it stopped.
pub fn stop_bazel_servers(root: &Path, depth: usize) -> Vec<i32> {
    let root_text = root.to_string_lossy().into_owned();
    let pids: Vec<i32> = bazel_server_pid_files(root, depth)
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse().ok())
        .collect();
    procfs::kill_processes(|pid| pids.contains(&pid) && procfs::cmdline(pid).contains(&root_text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A scratch folder as a dead run leaves it: its lock names a process that is gone.
    fn stale_folder(parent: &Path, name: &str) -> PathBuf {
        let folder = parent.join(name);
        std::fs::create_dir(&folder).unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let dead = Owner {
            pid: child.id() as i32,
            ..Owner::current()
        };
        child.wait().unwrap();
        std::fs::write(folder.join(LOCK_FILE), dead.render()).unwrap();
        folder
    }

    #[test]
    fn removes_stale_folders_and_their_processes_and_nothing_else() {
        let work = tempfile::tempdir().unwrap();
        let stale = stale_folder(work.path(), "flywheel-bench-dead");
        std::fs::create_dir_all(stale.join("store/ro")).unwrap();
        std::fs::set_permissions(
            stale.join("store/ro"),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        // A leftover naming the folder, in its own session like a daemon.
        std::fs::write(stale.join("log"), "").unwrap();
        let mut orphan = Command::new("setsid")
            .arg("tail")
            .arg("-f")
            .arg(stale.join("log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Another tool's folder with the same prefix, and a live run's.
        let foreign = work.path().join("flywheel-bench-other-tool");
        std::fs::create_dir(&foreign).unwrap();
        let live = scratch::ScratchDir::new_in(work.path(), SCRATCH_PREFIX).unwrap();
        // setsid execs tail in the same process when it can; wait until it has.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !procfs::cmdline(orphan.id() as i32).starts_with("tail") && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }

        let swept = sweep(work.path());
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert_eq!(swept[0].folder, stale);
        assert!(swept[0].processes_killed.contains(&(orphan.id() as i32)));
        assert!(swept[0].problems.is_empty(), "{swept:?}");
        let said = swept[0].to_string();
        assert!(said.starts_with("removed "), "{said}");
        assert!(said.contains("stopped its processes"), "{said}");
        assert!(!stale.exists());
        assert!(foreign.exists() && live.path().exists());
        orphan.wait().unwrap();
        assert!(sweep(work.path()).is_empty(), "nothing left to sweep");
    }

    #[test]
    fn leftovers_name_the_folder_its_processes_and_its_cgroups() {
        let work = tempfile::tempdir().unwrap();
        let scratch = work.path().join("flywheel-bench-ended");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::write(scratch.join("log"), "").unwrap();
        let since = Owner::current().start_ticks;
        let mut server = Command::new("tail")
            .arg("-f")
            .arg(scratch.join("log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = server.id() as i32;
        let gone_cgroup = work.path().join("no-such-cgroup");
        let kept_cgroup = work.path().join("a-cgroup-left");
        std::fs::create_dir(&kept_cgroup).unwrap();
        let cgroups = [gone_cgroup, kept_cgroup.clone()];
        let left = leftovers(&scratch, &cgroups, &[pid], since);
        let kinds: Vec<LeftoverKind> = left.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                LeftoverKind::Scratch,
                LeftoverKind::Server,
                LeftoverKind::Cgroup
            ],
            "{left:?}"
        );
        assert!(
            left[1].what.starts_with(&format!("pid {pid}: tail -f")),
            "{left:?}"
        );
        assert_eq!(left[2].what, kept_cgroup.display().to_string());
        // Not a server it knew of: a process.
        let left = leftovers(&scratch, &[], &[], since);
        assert_eq!(left[1].kind, LeftoverKind::Process);
        server.kill().unwrap();
        server.wait().unwrap();
        std::fs::remove_dir_all(&scratch).unwrap();
        std::fs::remove_dir(&kept_cgroup).unwrap();
        assert_eq!(leftovers(&scratch, &cgroups, &[pid], since), []);
    }

    #[test]
    fn a_missing_work_dir_has_nothing_to_sweep() {
        assert!(sweep(Path::new("/nonexistent/flywheel-bench-work")).is_empty());
    }
}
