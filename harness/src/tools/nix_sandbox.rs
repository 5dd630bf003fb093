//! Host paths for the Nix build sandbox, symlinks resolved. A link that points outside the
//! sandbox dangles in it (`/usr/local/cuda -> /etc/alternatives/cuda -> /usr/local/cuda-13.0`
//! with /usr shared but not /etc), and naming the link alone does not help when it lies in a
//! folder the sandbox already shares: Nix mounts onto the link, which the kernel follows on
//! the host. So every link of the chain gets the real folder mounted at its place
//! (`LINK=TARGET`, Nix's `target=source` form), and the real folder its own place.

use std::io;
use std::path::{Component, Path, PathBuf};

/// How many links a chain may have (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// A path's symlinks followed one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChain {
    /// The links met, the path itself first when it is one, as the links name each other.
    pub links: Vec<PathBuf>,
    /// The real path at the end (every symlink resolved).
    pub target: PathBuf,
}

/// Follows `path` link by link (where its last component is one). Fails when it does not
/// exist (a dangling link included).
pub fn link_chain(path: &Path) -> io::Result<LinkChain> {
    let mut links = Vec::new();
    let mut current = normalize(&std::path::absolute(path)?);
    for _ in 0..MAX_LINKS {
        if !std::fs::symlink_metadata(&current)?
            .file_type()
            .is_symlink()
        {
            let target = current.canonicalize()?;
            return Ok(LinkChain { links, target });
        }
        let to = std::fs::read_link(&current)?;
        let next = match current.parent() {
            Some(parent) if to.is_relative() => parent.join(to),
            _ => to,
        };
        links.push(current);
        current = normalize(&next);
    }
    Err(io::Error::other(format!(
        "{}: more than {MAX_LINKS} symlinks",
        path.display()
    )))
}

/// `sandbox-paths` entries for `paths`, in order, without repeats: a path that does not
/// exist here is left out, a real one stays as it is, a symlinked one becomes `LINK=TARGET`
/// for each link of its chain (or of its linked parent folder's) followed by its real path.
pub fn sandbox_entries(paths: &[PathBuf]) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for path in paths {
        let Ok(new) = entries_of(path) else {
            continue;
        };
        for entry in new {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    entries
}

fn entries_of(path: &Path) -> io::Result<Vec<String>> {
    let chain = link_chain(path)?;
    let mut mounts = Vec::new();
    if !chain.links.is_empty() {
        mounts = chain
            .links
            .iter()
            .map(|l| (l.clone(), chain.target.clone()))
            .collect();
    } else if let Some(ancestor) = linked_ancestor(path) {
        // Reached through a linked folder: that folder's chain must resolve in the sandbox.
        let up = link_chain(&ancestor)?;
        mounts = up
            .links
            .iter()
            .map(|l| (l.clone(), up.target.clone()))
            .collect();
    }
    Ok(mounts
        .iter()
        .map(|(at, target)| format!("{}={}", at.display(), target.display()))
        .chain(std::iter::once(chain.target.display().to_string()))
        .collect())
}

/// The nearest folder above `path` that is a symlink.
fn linked_ancestor(path: &Path) -> Option<PathBuf> {
    let path = normalize(&std::path::absolute(path).ok()?);
    path.ancestors()
        .skip(1)
        .find(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
}

/// `path` without `.` and with each `..` taking away the component before it, as a link's
/// text reads (the sandbox resolves it the same way, inside its own tree).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `usr/local/T -> etc/alternatives/T -> usr/local/T-1.0` (absolute links), as on a
    /// CUDA runner.
    fn alternatives_layout() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("usr/local/T-1.0");
        std::fs::create_dir_all(real.join("bin")).unwrap();
        std::fs::create_dir_all(root.path().join("etc/alternatives")).unwrap();
        let alternative = root.path().join("etc/alternatives/T");
        symlink(&real, &alternative).unwrap();
        let link = root.path().join("usr/local/T");
        symlink(&alternative, &link).unwrap();
        (root, link, alternative, real)
    }

    #[test]
    fn follows_a_chain_through_alternatives() {
        let (_root, link, alternative, real) = alternatives_layout();
        let chain = link_chain(&link).unwrap();
        assert_eq!(chain.links, vec![link.clone(), alternative.clone()]);
        assert_eq!(chain.target, real.canonicalize().unwrap());
        let target = chain.target.display().to_string();
        assert_eq!(
            sandbox_entries(&[link.clone(), real.clone()]),
            vec![
                format!("{}={target}", link.display()),
                format!("{}={target}", alternative.display()),
                target.clone(),
            ],
            "every link mounted onto the real folder, which is not repeated"
        );
    }

    #[test]
    fn relative_links_and_real_paths() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("cuda-13.0");
        std::fs::create_dir(&real).unwrap();
        symlink("./sub/../cuda-13.0", root.path().join("cuda")).unwrap();
        let chain = link_chain(&root.path().join("cuda")).unwrap();
        assert_eq!(chain.target, real.canonicalize().unwrap());
        assert_eq!(chain.links, vec![root.path().join("cuda")]);
        // A real folder is left as it is; a missing path or a dangling link is left out.
        symlink(root.path().join("gone"), root.path().join("dangling")).unwrap();
        let real_entry = real.canonicalize().unwrap().display().to_string();
        assert_eq!(
            sandbox_entries(&[
                real.canonicalize().unwrap(),
                root.path().join("missing"),
                root.path().join("dangling"),
            ]),
            vec![real_entry]
        );
    }

    #[test]
    fn a_folder_under_a_linked_parent_mounts_the_parent_s_chain() {
        let (_root, link, alternative, real) = alternatives_layout();
        let real = real.canonicalize().unwrap();
        let entries = sandbox_entries(&[link.join("bin")]);
        assert_eq!(
            entries,
            vec![
                format!("{}={}", link.display(), real.display()),
                format!("{}={}", alternative.display(), real.display()),
                real.join("bin").display().to_string(),
            ]
        );
    }

    #[test]
    fn a_loop_is_an_error_not_a_hang() {
        let root = tempfile::tempdir().unwrap();
        symlink(root.path().join("b"), root.path().join("a")).unwrap();
        symlink(root.path().join("a"), root.path().join("b")).unwrap();
        assert!(link_chain(&root.path().join("a")).is_err());
        assert!(sandbox_entries(&[root.path().join("a")]).is_empty());
    }
}
