//! Checks of what the user asks for that need the file system, made before anything runs:
//! a results path that cannot be written must not lose a whole run at its end.

use std::path::Path;

use crate::error::{Error, Result};

/// `--output` must be a file that can be written: not a folder, in a folder that exists (or
/// can be made, as the writer makes missing ones) and that this user may write in. Checked
/// by creating and removing a file next to it, so a late failure cannot lose a whole run.
pub fn check_output_path(path: &Path) -> Result<()> {
    let bad = |why: String, fix: &str| {
        Error::Usage(format!("--output {}: {why}\n  fix: {fix}", path.display()))
    };
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(bad(
            "is not a file path".into(),
            "name a file, e.g. --output results/run.json",
        ));
    }
    if path.is_dir() {
        return Err(bad(
            "is a folder".into(),
            "name a file in it, e.g. --output DIR/results.json",
        ));
    }
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
            "put the results file in a folder",
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn output_must_be_a_writable_file_path() {
        let dir = tempfile::tempdir().unwrap();
        check_output_path(&dir.path().join("r.json")).unwrap();
        check_output_path(&dir.path().join("new/sub/r.json")).unwrap();
        let err = check_output_path(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("--output") && err.contains("is a folder"),
            "{err}"
        );
        assert!(check_output_path(Path::new("/")).is_err());
        assert!(check_output_path(Path::new("")).is_err());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_output_path(&file.join("r.json"))
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
            let err = check_output_path(&ro.join("r.json"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("cannot write"), "{err}");
        }
        let err = check_output_path(Path::new("/proc/r.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot write in /proc"), "{err}");
    }
}
