//! Which commit and ref a checkout is at, so results say exactly what was measured.

use std::path::Path;
use std::time::Duration;

use crate::results::GitInfo;
use crate::run::process::{run_captured, CommandSpec, Executor};

const GIT_TIMEOUT: Duration = Duration::from_secs(20);

fn git(exec: &dyn Executor, dir: &Path, args: &[&str]) -> Option<String> {
    let args = args.iter().map(Into::into).collect();
    let out = run_captured(exec, CommandSpec::new("git", args, GIT_TIMEOUT).cwd(dir)).ok()?;
    out.outcome.success().then(|| out.stdout.trim().to_string())
}

/// `None` when `dir` is not in a git checkout (or git is missing).
pub fn describe(exec: &dyn Executor, dir: &Path) -> Option<GitInfo> {
    let commit = git(exec, dir, &["rev-parse", "HEAD"])?;
    // CI checkouts are usually detached; the CI names the ref it checked out.
    let git_ref = git(exec, dir, &["symbolic-ref", "-q", "HEAD"])
        .filter(|r| !r.is_empty())
        .or_else(|| std::env::var("GITHUB_REF").ok().filter(|r| !r.is_empty()));
    let dirty = git(
        exec,
        dir,
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .is_some_and(|s| !s.is_empty());
    Some(GitInfo {
        commit,
        git_ref,
        dirty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::process::ProcessExecutor;

    #[test]
    fn describes_this_checkout_and_nothing_outside_one() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        if let Some(info) = describe(&ProcessExecutor, here) {
            assert_eq!(info.commit.len(), 40, "{info:?}");
        }
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(describe(&ProcessExecutor, outside.path()), None);
    }
}
