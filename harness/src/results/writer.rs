//! The one place results files are written: atomically (temp file, fsync, rename), so a
//! reader or an interrupted run never sees a half-written file; and only onto a regular
//! file or an absent path, so a device, FIFO, socket or folder is never replaced.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let refuse = |why: String| {
        Error::Usage(format!(
            "{} {why}\n  fix: name a regular file, or a path where nothing is yet",
            path.display()
        ))
    };
    crate::boundary::check_replaceable(path).map_err(refuse)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).context(|| format!("creating folder {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".flywheel-bench-")
        .tempfile_in(dir)
        .context(|| format!("creating a temporary file in {}", dir.display()))?;
    // Temporary files are private; a results file is for reviewers to read.
    tmp.write_all(bytes)
        .and_then(|_| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .and_then(|_| tmp.as_file().sync_all())
        .context(|| format!("writing {}", tmp.path().display()))?;
    // Checked again at the last moment: the path may have changed while the run went on.
    crate::boundary::check_replaceable(path).map_err(refuse)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .context(|| format!("renaming the results into {}", path.display()))?;
    // The rename is durable only once the folder itself is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing folder {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn replaces_the_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/results.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "results are readable by reviewers");
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn never_replaces_a_device_or_fifo() {
        let err = write_atomic(Path::new("/dev/null"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/null is a character device"), "{err}");
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(write_atomic(&fifo, b"x").is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }
}
