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

const FETCH_TIMEOUT: Duration = Duration::from_secs(900);

/// Gets `url` at commit `rev` into `cache` (a checkout per repository and commit, reused by
/// later runs). `Err` says why it could not (no network, say).
pub fn fetch(
    exec: &dyn Executor,
    url: &str,
    rev: &str,
    cache: &Path,
) -> Result<std::path::PathBuf, String> {
    let name: String = url
        .trim_end_matches(".git")
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let checkout = cache.join(format!("{name}-{}", &rev[..rev.len().min(12)]));
    if git(exec, &checkout, &["rev-parse", "HEAD"]).as_deref() == Some(rev) {
        return Ok(checkout);
    }
    let _ = crate::scratch::remove_tree(&checkout);
    std::fs::create_dir_all(&checkout)
        .map_err(|e| format!("cannot create {}: {e}", checkout.display()))?;
    let step = |args: &[&str]| -> Result<(), String> {
        let argv = args.iter().map(Into::into).collect();
        let out = run_captured(
            exec,
            CommandSpec::new("git", argv, FETCH_TIMEOUT).cwd(&checkout),
        )
        .map_err(|e| e.to_string())?;
        if out.outcome.success() {
            Ok(())
        } else {
            let detail = out
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            Err(format!(
                "`git {}` {}: {detail}",
                args[0],
                out.outcome.describe()
            ))
        }
    };
    let fetched = step(&["init", "--quiet"])
        .and_then(|_| step(&["fetch", "--quiet", "--depth", "1", url, rev]))
        .and_then(|_| step(&["checkout", "--quiet", "--detach", "FETCH_HEAD"]));
    if let Err(e) = fetched {
        let _ = crate::scratch::remove_tree(&checkout);
        return Err(e);
    }
    Ok(checkout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::process::ProcessExecutor;

    #[test]
    fn fetches_a_pinned_commit_into_the_cache_and_reuses_it() {
        // A local repository stands in for a remote one: the same git commands run.
        let origin = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "uploadpack.allowAnySHA1InWant=true",
                ])
                .args(args)
                .current_dir(origin.path())
                .output()
                .unwrap();
            String::from_utf8(ok.stdout).unwrap()
        };
        run(&["init", "--quiet"]);
        run(&["config", "uploadpack.allowAnySHA1InWant", "true"]);
        std::fs::write(origin.path().join("repo.toml"), "x").unwrap();
        run(&["add", "."]);
        run(&["commit", "--quiet", "-m", "one"]);
        let rev = run(&["rev-parse", "HEAD"]).trim().to_string();
        let cache = tempfile::tempdir().unwrap();
        let url = format!("file://{}", origin.path().display());
        let checkout = fetch(&ProcessExecutor, &url, &rev, cache.path()).unwrap();
        assert!(checkout.join("repo.toml").is_file());
        assert_eq!(describe(&ProcessExecutor, &checkout).unwrap().commit, rev);
        // Second time: from the cache (the origin is gone).
        drop(origin);
        assert_eq!(
            fetch(&ProcessExecutor, &url, &rev, cache.path()).unwrap(),
            checkout
        );
    }

    #[test]
    fn an_unreachable_source_is_an_error_with_the_reason() {
        let cache = tempfile::tempdir().unwrap();
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let err = fetch(
            &ProcessExecutor,
            "file:///nonexistent/flywheel-repo",
            rev,
            cache.path(),
        )
        .unwrap_err();
        assert!(err.contains("git fetch"), "{err}");
        assert_eq!(
            std::fs::read_dir(cache.path()).unwrap().count(),
            0,
            "no half checkout is left"
        );
    }

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
