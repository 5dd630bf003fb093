//! Private temporary folders that are removed on every exit path, even when they hold
//! read-only Nix store trees (which `remove_dir_all` alone cannot delete). Each carries a
//! lock naming the process that owns it and a record of what its run started outside it,
//! so a later run can clean up after one that died (`exec::janitor`).

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::exec::procfs;

/// The lock file in every scratch folder: held (flock) by its owner while it runs and
/// naming it. Only folders with this file are ever cleaned by the janitor.
pub const LOCK_FILE: &str = "flywheel-bench.lock";
/// What the run started outside its folder, one `KIND PATH` line each.
const RECORD_FILE: &str = "flywheel-bench.owned";

/// A folder owned by the harness; removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Open for as long as the folder lives: holds the flock that says "in use".
    _lock: fs::File,
}

impl ScratchDir {
    /// Creates `<parent>/<prefix>XXXXXX`, readable by the owner only (it may hold keys),
    /// with its owner lock.
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let lock = create_lock(dir.path())?;
        Ok(ScratchDir {
            path: dir.keep(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a cgroup the run made, to be emptied and removed if the run dies.
    pub fn record_cgroup(&self, dir: &Path) -> Result<()> {
        self.record("cgroup", dir)
    }

    fn record(&self, kind: &str, path: &Path) -> Result<()> {
        let file = self.path.join(RECORD_FILE);
        // The janitor that reads it may run from another folder.
        let path =
            &std::path::absolute(path).context(|| format!("resolving {}", path.display()))?;
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&b'\n') {
            return Err(crate::error::Error::Environment(format!(
                "cannot record {}: it contains a newline",
                path.display()
            )));
        }
        let line = [kind.as_bytes(), b" ", bytes, b"\n"].concat();
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| f.write_all(&line))
            .context(|| format!("recording {} in {}", path.display(), file.display()))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Builders a killed build tool orphaned (Nix's sandboxed ones outlive `nix build`).
        stop_processes_in(&self.path, Owner::current().start_ticks);
        if let Err(e) = remove_tree(&self.path) {
            eprintln!(
                "warning: could not remove temporary folder {}: {e}",
                self.path.display()
            );
        }
    }
}

/// SIGKILLs the processes that still work in `dir` (a scratch folder or a folder in one):
/// those started after `since` (the owner's start, in clock ticks) whose command line or
/// mounts name it: Bazel servers, Nix's sandboxed builders (which outlive a killed `nix
/// build`). Returns their pids.
pub fn stop_processes_in(dir: &Path, since: u64) -> Vec<i32> {
    procfs::kill_processes(works_in(dir, since))
}

/// The processes [`stop_processes_in`] would stop, left running.
pub fn processes_in(dir: &Path, since: u64) -> Vec<i32> {
    procfs::find_processes(works_in(dir, since))
}

fn works_in(dir: &Path, since: u64) -> impl Fn(i32) -> bool {
    let needle = unique_part(dir);
    move |pid| {
        procfs::Stat::of(pid).is_some_and(|s| s.start_ticks >= since)
            && procfs::mentions(pid, &needle)
    }
}

/// `dir` from its scratch folder's (unique) name on, e.g. `flywheel-bench-Ab12Cd/nix/root3`:
/// a sandbox's mounts show paths relative to their file system, which may be a tmpfs
/// mounted anywhere. The whole path when it is in no scratch folder.
fn unique_part(dir: &Path) -> String {
    let components: Vec<_> = dir.components().collect();
    let scratch = components.iter().rposition(|c| {
        c.as_os_str()
            .to_string_lossy()
            .starts_with(crate::exec::janitor::SCRATCH_PREFIX)
    });
    match scratch {
        Some(at) => components[at..]
            .iter()
            .collect::<PathBuf>()
            .to_string_lossy()
            .into_owned(),
        None => dir.to_string_lossy().into_owned(),
    }
}

/// The lock is complete (locked, owner written) before it appears under its name, so a
/// janitor never sees a half-made one.
fn create_lock(dir: &Path) -> io::Result<fs::File> {
    let new = dir.join(format!("{LOCK_FILE}.new"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)?;
    if !try_lock(&file)? {
        return Err(io::Error::other(format!("{} is locked", new.display())));
    }
    file.write_all(Owner::current().render().as_bytes())?;
    fs::rename(&new, dir.join(LOCK_FILE))?;
    Ok(file)
}

/// Takes the exclusive flock of `file` without waiting; `false` when another holds it.
/// Closing the file (or the process dying) releases it.
pub fn try_lock(file: &fs::File) -> io::Result<bool> {
    // SAFETY: plain syscall on an open descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// The process that owns a scratch folder. A pid alone could be reused; with its start
/// time and the boot it names one process for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    pub start_ticks: u64,
    pub boot_id: String,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            start_ticks: procfs::Stat::of(pid).map_or(0, |s| s.start_ticks),
            boot_id: procfs::boot_id(),
        }
    }

    pub fn render(&self) -> String {
        format!(
            "pid {}\nstart_ticks {}\nboot_id {}\n",
            self.pid, self.start_ticks, self.boot_id
        )
    }

    /// `None` for anything [`Self::render`] did not write.
    pub fn parse(text: &str) -> Option<Owner> {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .map(str::trim)
        };
        Some(Owner {
            pid: value("pid")?.parse().ok().filter(|&p: &i32| p > 0)?,
            start_ticks: value("start_ticks")?.parse().ok()?,
            boot_id: value("boot_id")?.to_string(),
        })
    }

    /// Whether this very process still runs (not a zombie, not a new one with its pid).
    pub fn is_running(&self) -> bool {
        self.boot_id == procfs::boot_id()
            && procfs::Stat::of(self.pid)
                .is_some_and(|s| s.alive() && s.start_ticks == self.start_ticks)
    }
}

/// What a run recorded in its scratch folder.
#[derive(Debug, Default, PartialEq)]
pub struct Record {
    pub cgroups: Vec<PathBuf>,
}

/// The record of the scratch folder `dir` (empty when it has none).
pub fn read_record(dir: &Path) -> Record {
    let bytes = fs::read(dir.join(RECORD_FILE)).unwrap_or_default();
    let mut record = Record::default();
    for line in bytes.split(|&b| b == b'\n') {
        let Some(space) = line.iter().position(|&b| b == b' ') else {
            continue;
        };
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(&line[space + 1..]));
        if &line[..space] == b"cgroup" {
            record.cgroups.push(path);
        }
    }
    record
}

/// Removes a tree whose folders may be read-only (Nix makes store paths 0555).
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    make_dirs_writable(path)?;
    fs::remove_dir_all(path)
}

fn make_dirs_writable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs::read_dir(path)? {
        make_dirs_writable(&entry?.path())?;
    }
    Ok(())
}

/// The regular files under `dir` and their bytes (what a cache folder stores); links are
/// not followed.
pub fn tree_bytes(dir: &Path) -> crate::error::Result<(u64, u64)> {
    use crate::error::IoContext;
    let (mut files, mut bytes) = (0, 0);
    for entry in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            let (f, b) = tree_bytes(&entry.path())?;
            (files, bytes) = (files + f, bytes + b);
        } else if kind.is_file() {
            let len = entry
                .metadata()
                .context(|| format!("reading {}", entry.path().display()))?
                .len();
            (files, bytes) = (files + 1, bytes + len);
        }
    }
    Ok((files, bytes))
}

/// Writes a new file only its owner can read (keys, credentials).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .context(|| format!("writing {}", path.display()))
}

/// Copies a secret file, or a folder of them, so only its owner can read the copy.
pub fn copy_private(from: &Path, to: &Path) -> crate::error::Result<()> {
    use crate::error::IoContext;
    if from.is_dir() {
        fs::create_dir(to).context(|| format!("creating {}", to.display()))?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o700))
            .context(|| format!("restricting {}", to.display()))?;
        for entry in fs::read_dir(from).context(|| format!("listing {}", from.display()))? {
            let entry = entry.context(|| format!("listing {}", from.display()))?;
            copy_private(&entry.path(), &to.join(entry.file_name()))?;
        }
        return Ok(());
    }
    let bytes =
        crate::boundary::read_regular(from, crate::boundary::SECRET_LIMIT).map_err(|why| {
            crate::error::Error::Environment(format!("the secret file {}: {why}", from.display()))
        })?;
    write_private(to, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_read_only_trees() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::new_in(parent.path(), "t-").unwrap();
        let store = scratch.path().join("nix/store/abc-x");
        fs::create_dir_all(&store).unwrap();
        fs::write(store.join("f"), "x").unwrap();
        fs::set_permissions(&store, fs::Permissions::from_mode(0o555)).unwrap();
        let path = scratch.path().to_path_buf();
        drop(scratch);
        assert!(!path.exists());
    }

    #[test]
    fn private_copies_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir_all(home.join(".config")).unwrap();
        fs::write(home.join(".config/token"), "t").unwrap();
        let copy = dir.path().join("copy");
        copy_private(&home, &copy).unwrap();
        let meta = fs::metadata(copy.join(".config/token")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(copy.join(".config/token")).unwrap(), "t");
    }

    #[test]
    fn carries_a_held_lock_naming_this_process_and_a_record() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::new_in(parent.path(), "t-").unwrap();
        let lock = scratch.path().join(LOCK_FILE);
        let owner = Owner::parse(&fs::read_to_string(&lock).unwrap()).unwrap();
        assert_eq!(owner, Owner::current());
        assert!(owner.is_running());
        assert!(
            !try_lock(&fs::File::open(&lock).unwrap()).unwrap(),
            "held while alive"
        );
        scratch
            .record_cgroup(Path::new("/sys/fs/cgroup/flywheel-bench-a"))
            .unwrap();
        scratch
            .record_cgroup(Path::new("/sys/fs/cgroup/x y/flywheel-bench-b"))
            .unwrap();
        assert_eq!(
            read_record(scratch.path()),
            Record {
                cgroups: vec![
                    "/sys/fs/cgroup/flywheel-bench-a".into(),
                    "/sys/fs/cgroup/x y/flywheel-bench-b".into()
                ],
            }
        );
        assert!(scratch.record_cgroup(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn a_reused_pid_or_another_boot_is_not_the_owner() {
        let me = Owner::current();
        let reused = Owner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!reused.is_running());
        let rebooted = Owner {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert!(!rebooted.is_running());
        assert_eq!(Owner::parse(&me.render()), Some(me));
        assert_eq!(Owner::parse("pid -1\nstart_ticks 1\nboot_id x\n"), None);
        assert_eq!(Owner::parse(""), None);
    }

    #[test]
    fn names_a_folder_from_its_scratch_folder_on() {
        assert_eq!(
            unique_part(Path::new("/tmp/flywheel-bench-Ab12Cd/nix/root3")),
            "flywheel-bench-Ab12Cd/nix/root3"
        );
        assert_eq!(unique_part(Path::new("/srv/other")), "/srv/other");
    }

    #[test]
    fn removing_a_missing_tree_is_fine() {
        remove_tree(Path::new("/nonexistent/flywheel-bench-test")).unwrap();
    }
}
