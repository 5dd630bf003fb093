//! What crosses the harness's boundary with the machine: files a user names are read only
//! when they are regular files, up to a size limit (a FIFO would block, a device would
//! never end); outputs are renamed only onto regular files or absent paths; and
//! credentials in URLs are removed before a URL or a text holding one is shown anywhere.
//! Ground layer: nothing of the crate but its error type.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// A token or a key: a few KiB at most (an Attic JWT is under 1 KiB).
pub const SECRET_LIMIT: u64 = 16 << 10;
/// A manifest, profile, lane list or guest job.
pub const TEXT_LIMIT: u64 = 16 << 20;
/// A results file (every sample of a long run, with its explanations).
pub const RESULTS_LIMIT: u64 = 1 << 30;

/// What kind of file system object `meta` is, in words.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// The bytes of `path`, which must be a regular file (symbolic links followed) of at most
/// `limit` bytes. Never blocks: a FIFO, device, socket or folder is refused before it is
/// opened. `Err` says what is wrong, for the caller to put after the file's name.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let refuse = |meta: &std::fs::Metadata| {
        Err(format!(
            "is {}, not a regular file; only regular files are read",
            kind_of(meta)
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return refuse(&meta);
    }
    // Non-blocking, in case it was replaced by a FIFO since: opening one then returns at once.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return refuse(&meta);
    }
    let too_big = || {
        format!(
            "is larger than {}, more than this harness reads from such a file",
            human_bytes(limit)
        )
    };
    if meta.len() > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|e| format!("is not UTF-8 text ({e})"))
}

/// Whether an atomic rename may put a file at `path`: nothing is there (a dangling link
/// included), or a regular file (also through a link: the rename replaces the link). A
/// folder, FIFO, socket or device is refused, so that writing never replaces one.
pub fn check_replaceable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(format!(
            "is {}; results and reports are written only as regular files",
            kind_of(&meta)
        )),
        // Nothing there (or a file where a folder of the path should be, which making
        // the folder will name).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(()),
        Err(e) => Err(format!("cannot be checked: {e}")),
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// `url` without its user and password: the one form in which a URL is shown or recorded.
pub fn public_url(url: &url::Url) -> String {
    let mut public = url.clone();
    let _ = public.set_username("");
    let _ = public.set_password(None);
    public.to_string()
}

/// `text` with the user information of every `scheme://user:password@host` in it removed,
/// as [`public_url`] removes it: for texts that may quote a URL (a tool's error, a
/// command line), where the URL is not parsed.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends where the path, query or fragment begins, or the URL itself ends.
        let end = after
            .find(|c: char| "/?#".contains(c) || c.is_whitespace() || "'\"<>`()[]{}".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(user_end) => out.push_str(&authority[user_end + 1..]),
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn reads_regular_files_within_their_limit_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_text(&file, 5).unwrap(), "12345");
        let err = read_text(&file, 4).unwrap_err();
        assert!(err.contains("larger than 4 bytes"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_text(&link, 5).unwrap(), "12345", "links are followed");
        assert!(read_text(dir.path(), 5).unwrap_err().contains("a folder"));
        assert!(read_text(&dir.path().join("missing"), 5)
            .unwrap_err()
            .contains("cannot read it"));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_text(&file, 5).unwrap_err().contains("UTF-8"));
        assert_eq!(human_bytes(RESULTS_LIMIT), "1 GiB");
        assert_eq!(human_bytes(SECRET_LIMIT), "16 KiB");
    }

    #[test]
    fn fifos_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        // A blocking open of a FIFO with no writer would wait here for ever.
        let err = read_regular(&fifo, SECRET_LIMIT).unwrap_err();
        assert!(err.contains("a FIFO (named pipe)"), "{err}");
        let err = read_regular(Path::new("/dev/zero"), RESULTS_LIMIT).unwrap_err();
        assert!(err.contains("a character device"), "{err}");
        let socket = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(read_regular(&socket, 1).unwrap_err().contains("a socket"));
    }

    #[test]
    fn only_regular_files_and_absent_paths_may_be_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        check_replaceable(&file).unwrap();
        std::fs::write(&file, "x").unwrap();
        check_replaceable(&file).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        check_replaceable(&dangling).unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        assert!(check_replaceable(&fifo).unwrap_err().contains("FIFO"));
        let to_device = dir.path().join("full");
        std::os::unix::fs::symlink("/dev/full", &to_device).unwrap();
        assert!(check_replaceable(&to_device)
            .unwrap_err()
            .contains("character device"));
        assert!(check_replaceable(dir.path())
            .unwrap_err()
            .contains("a folder"));
    }

    #[test]
    fn credentials_are_removed_from_urls_and_texts() {
        let url = url::Url::parse("https://u:secret@cache.example.com/a?b=1").unwrap();
        assert_eq!(public_url(&url), "https://cache.example.com/a?b=1");
        assert_eq!(
            redact_urls("fatal: unable to access 'https://user:pass@host/x/': 403"),
            "fatal: unable to access 'https://host/x/': 403"
        );
        assert_eq!(
            redact_urls("--nix-cache http://u:pw@127.0.0.1:8080 and grpcs://tok@c:443"),
            "--nix-cache http://127.0.0.1:8080 and grpcs://c:443"
        );
        assert_eq!(
            redact_urls("git@github.com:o/r and https://h/p@q"),
            "git@github.com:o/r and https://h/p@q",
            "no user information, nothing removed"
        );
        assert_eq!(redact_urls("ends with https://a:b@"), "ends with https://");
        assert_eq!(redact_urls(""), "");
    }
}
