//! Private temporary folders that are removed on every exit path, even when they hold
//! read-only Nix store trees (which `remove_dir_all` alone cannot delete).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A folder owned by the harness; removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/<prefix>XXXXXX`, readable by the owner only (it may hold keys).
    pub fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        Ok(ScratchDir { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            eprintln!(
                "warning: could not remove temporary folder {}: {e}",
                self.path.display()
            );
        }
    }
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

/// Writes a new file only its owner can read (keys, credentials).
pub fn write_private(path: &Path, bytes: &[u8]) -> crate::error::Result<()> {
    use crate::error::IoContext;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
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
    let bytes = fs::read(from).context(|| format!("reading {}", from.display()))?;
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
    fn removing_a_missing_tree_is_fine() {
        remove_tree(Path::new("/nonexistent/flywheel-bench-test")).unwrap();
    }
}
