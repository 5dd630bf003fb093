//! Checks of what the user asks for that need the file system, made before anything runs:
//! a results path that cannot be written must not lose a whole run at its end, and no
//! output may replace a folder, FIFO, socket or device.

use std::path::Path;

use crate::error::{Error, Result};

/// An output file (`flag` names where it came from, e.g. `--output`) must be one that can be
/// written: absent or a regular file (never a folder, FIFO, socket or device, which the
/// atomic rename would replace), in a folder that exists (or can be made, as the writer
/// makes missing ones) and that this user may write in. Checked by creating and removing a
/// file next to it, so a late failure cannot lose a whole run.
pub fn check_output_path(flag: &str, path: &Path) -> Result<()> {
    let bad = |why: String, fix: &str| {
        Error::Usage(format!("{flag} {}: {why}\n  fix: {fix}", path.display()))
    };
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(bad(
            "is not a file path".into(),
            &format!("name a file, e.g. {flag} results/run.json"),
        ));
    }
    if path.is_dir() {
        return Err(bad(
            "is a folder".into(),
            &format!("name a file in it, e.g. {flag} DIR/results.json"),
        ));
    }
    crate::boundary::check_replaceable(path)
        .map_err(|why| bad(why, "name a regular file, or a path where nothing is yet"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The nearest folder that exists: the writer creates the missing ones below it.
    let existing = parent
        .ancestors()
        .find(|a| a.as_os_str().is_empty() || a.exists())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(bad(
            format!("{} is not a folder", existing.display()),
            "put the file in a folder",
        ));
    }
    tempfile::Builder::new()
        .prefix(".flywheel-bench-check-")
        .tempfile_in(existing)
        .map(drop)
        .map_err(|e| {
            bad(
                format!("cannot write in {}: {e}", existing.display()),
                "choose a folder you can write to, or fix its permissions",
            )
        })
}

/// Each output file a command was given, checked before it does anything.
pub fn check_output_paths<'a>(
    outputs: impl IntoIterator<Item = (&'a str, Option<&'a Path>)>,
) -> Result<()> {
    outputs
        .into_iter()
        .filter_map(|(flag, path)| path.map(|p| (flag, p)))
        .try_for_each(|(flag, path)| check_output_path(flag, path))
}

/// `--work-dir` must be a folder, or a path where one can be made.
pub fn check_work_dir(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => Err(Error::Usage(format!(
            "--work-dir {}: is {}, not a folder\n  fix: name a folder (it is made when missing), e.g. --work-dir /tmp",
            path.display(),
            crate::boundary::kind_of(&meta)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn output_must_be_a_writable_file_path() {
        let dir = tempfile::tempdir().unwrap();
        check_output_path("--output", &dir.path().join("r.json")).unwrap();
        check_output_path("--output", &dir.path().join("new/sub/r.json")).unwrap();
        let err = check_output_path("--output", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--output") && err.contains("is a folder"),
            "{err}"
        );
        assert!(check_output_path("--output", Path::new("/")).is_err());
        assert!(check_output_path("--output", Path::new("")).is_err());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_output_path("--output", &file.join("r.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a folder"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the probe file is gone"
        );
    }

    #[test]
    fn output_in_a_read_only_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root may write anywhere; only then is the refusal not observable.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            let err = check_output_path("--output", &ro.join("r.json"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("cannot write"), "{err}");
        }
        let err = check_output_path("--output", Path::new("/proc/r.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot write in /proc"), "{err}");
    }

    #[test]
    fn outputs_never_replace_devices_fifos_sockets_or_folders() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let socket = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, kind) in [
            (Path::new("/dev/full"), "a character device"),
            (Path::new("/dev/null"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (socket.as_path(), "a socket"),
        ] {
            let err = check_output_path("--markdown", path)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("--markdown {}: is {kind}", path.display())),
                "{err}"
            );
            assert!(err.contains("fix:"), "{err}");
        }
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        check_output_paths([
            ("--html", None),
            ("-o", Some(dir.path().join("ok.json").as_path())),
        ])
        .unwrap();
        assert!(check_output_paths([("-o", Some(fifo.as_path()))]).is_err());
    }

    #[test]
    fn the_work_folder_must_be_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        check_work_dir(dir.path()).unwrap();
        check_work_dir(&dir.path().join("new")).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_work_dir(&file).unwrap_err().to_string();
        assert!(
            err.contains("--work-dir") && err.contains("is a regular file, not a folder"),
            "{err}"
        );
        assert!(!err.contains("File exists"), "{err}");
    }
}
