//! Which commit and ref a checkout is at, so results say exactly what was measured.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::exec::process::{run_captured, CommandSpec, Executor};
use crate::plan::manifest::{validate_git_url, ALLOWED_PROTOCOLS, GIT_URL_FIX};
use crate::results::GitInfo;

const GIT_TIMEOUT: Duration = Duration::from_secs(20);

fn git(exec: &dyn Executor, dir: &Path, args: &[&str]) -> Option<String> {
    // Reading must not write: `git status` would otherwise refresh the checkout's index.
    let args = std::iter::once("--no-optional-locks")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let out = run_captured(exec, CommandSpec::new("git", args, GIT_TIMEOUT).cwd(dir)).ok()?;
    out.outcome.success().then(|| out.stdout.trim().to_string())
}

/// `None` when `dir` is not in a git checkout (or git is missing). CI checkouts are usually
/// detached: `ci_ref` (`$GITHUB_REF`) names the ref the CI checked out.
pub fn describe(exec: &dyn Executor, dir: &Path, ci_ref: Option<&str>) -> Option<GitInfo> {
    let commit = git(exec, dir, &["rev-parse", "HEAD"])?;
    let git_ref = git(exec, dir, &["symbolic-ref", "-q", "HEAD"])
        .filter(|r| !r.is_empty())
        .or_else(|| ci_ref.filter(|r| !r.is_empty()).map(str::to_string));
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

/// Why git failed, in its words: its `fatal:` and `error:` lines (else its last lines), at
/// most a few, on one line, without credentials. Git often ends with advice ("...and the
/// repository exists.") that says nothing alone.
fn failure_detail(stderr: &str) -> String {
    const MAX_LINES: usize = 6;
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .take(MAX_LINES)
        .collect();
    let kept = if errors.is_empty() {
        lines[lines.len().saturating_sub(MAX_LINES)..].to_vec()
    } else {
        errors
    };
    match kept.join("; ") {
        text if text.is_empty() => "git printed nothing".into(),
        text => crate::boundary::redact_urls(&text),
    }
}

/// `git` with only [`ALLOWED_PROTOCOLS`] enabled, then `args`.
fn restricted_git_args(args: &[&str]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["-c".into(), "protocol.allow=never".into()];
    for protocol in ALLOWED_PROTOCOLS {
        argv.push("-c".into());
        argv.push(format!("protocol.{protocol}.allow=always").into());
    }
    argv.extend(args.iter().map(Into::into));
    argv
}

/// Gets `url` at commit `rev` into `cache` (a checkout per repository and commit, reused by
/// later runs). `Err` says why it could not (no network, a refused URL, say).
pub fn fetch(
    exec: &dyn Executor,
    url: &str,
    rev: &str,
    cache: &Path,
) -> Result<std::path::PathBuf, String> {
    validate_git_url(url).map_err(|why| format!("{why}\n  fix: {GIT_URL_FIX}"))?;
    if rev.is_empty() || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "key `source.rev`: {rev:?} is not a commit hash\n  fix: pin the source by a 40-character commit hash"
        ));
    }
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
    let _ = crate::exec::scratch::remove_tree(&checkout);
    std::fs::create_dir_all(&checkout)
        .map_err(|e| format!("cannot create {}: {e}", checkout.display()))?;
    let step = |args: &[&str]| -> Result<(), String> {
        let out = run_captured(
            exec,
            CommandSpec::new("git", restricted_git_args(args), FETCH_TIMEOUT).cwd(&checkout),
        )
        .map_err(|e| e.to_string())?;
        if out.outcome.success() {
            Ok(())
        } else {
            Err(format!(
                "`git {}` {}: {}",
                args[0],
                out.outcome.describe(),
                failure_detail(&out.stderr)
            ))
        }
    };
    // `--` ends the options: the URL is never read as one, whatever slipped through.
    let fetched = step(&["init", "--quiet"])
        .and_then(|_| step(&["fetch", "--quiet", "--depth", "1", "--", url, rev]))
        .and_then(|_| step(&["checkout", "--quiet", "--detach", "FETCH_HEAD"]));
    if let Err(e) = fetched {
        let _ = crate::exec::scratch::remove_tree(&checkout);
        return Err(e);
    }
    Ok(checkout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::ProcessExecutor;

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
        assert_eq!(
            describe(&ProcessExecutor, &checkout, None).unwrap().commit,
            rev
        );
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
    fn git_errors_keep_their_reason_not_only_the_advice() {
        let stderr = "fatal: '/etc' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        assert_eq!(
            failure_detail(stderr),
            "fatal: '/etc' does not appear to be a git repository; fatal: Could not read from remote repository."
        );
        assert_eq!(
            failure_detail(
                "fatal: unable to access 'https://bot:s3cret@git.example.com/r/': 403\n"
            ),
            "fatal: unable to access 'https://git.example.com/r/': 403"
        );
        assert_eq!(failure_detail("one\ntwo\n"), "one; two");
        assert_eq!(failure_detail(""), "git printed nothing");
        // The same, through the real git: a folder that is not a repository.
        let cache = tempfile::tempdir().unwrap();
        let err = fetch(
            &ProcessExecutor,
            "file:///etc",
            &"a".repeat(40),
            cache.path(),
        )
        .unwrap_err();
        assert!(
            err.contains("does not appear to be a git repository"),
            "{err}"
        );
    }

    #[test]
    fn urls_with_credentials_are_never_quoted_whole() {
        let err = validate_git_url("ftp://bot:s3cret@example.com/r").unwrap_err();
        assert!(
            err.contains("ftp://example.com/r") && !err.contains("s3cret"),
            "{err}"
        );
        let err = fetch(
            &ProcessExecutor,
            "https://bot:s3cret@127.0.0.1:9/r",
            &"a".repeat(40),
            &tempfile::tempdir().unwrap().path().join("c"),
        )
        .unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn refuses_every_hostile_url_form() {
        let hostile = [
            "--upload-pack=touch /tmp/x",
            "--upload-pack=touch%20/tmp/x",
            "-oProxyCommand=touch /tmp/x",
            "-u",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "fd::17",
            "fd::0,1/repo",
            "https::https://example.com/repo",
            "ssh://-oProxyCommand=touch%20x/repo",
            "ssh://user@-oProxyCommand=x/repo",
            "ssh://-user@host/repo",
            "git@-oProxyCommand=x:repo",
            "-git@host:repo",
            "git@host:-repo",
            "git@host:--upload-pack=x",
            "git@ho st:repo",
            "host:repo",
            "@host:repo",
            "git@:repo",
            "http://example.com/repo",
            "ftp://example.com/repo",
            "HTTPS://example.com/repo",
            "https://",
            "https:///repo",
            "https://example.com",
            "https://example.com/repo\n--upload-pack=x",
            "https://example.com/re po",
            "https://example.com/repo\0",
            "/srv/repo",
            "./repo",
            "../repo",
            "repo",
            "",
        ];
        for url in hostile {
            let err = validate_git_url(url).expect_err(url);
            assert!(err.starts_with("key `source.git`: "), "{url}: {err}");
            let fetched = fetch(
                &ProcessExecutor,
                url,
                &"a".repeat(40),
                Path::new("/nonexistent"),
            );
            assert!(fetched.unwrap_err().contains(GIT_URL_FIX), "{url}");
        }
    }

    #[test]
    fn a_manifest_with_a_hostile_url_is_refused_when_read() {
        let text = format!(
            "name = \"x\"\ndescription = \"x\"\n[source]\ngit = \"--upload-pack=touch /tmp/x\"\nrev = \"{}\"\n[nix]\nfile = \"default.nix\"\n",
            "a".repeat(40)
        );
        let err = crate::plan::manifest::parse(&text, Path::new("/r/repo.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/r/repo.toml: key `source.git`"), "{err}");
        assert!(err.contains(GIT_URL_FIX), "{err}");
    }

    #[test]
    fn allows_the_usual_url_forms() {
        for url in [
            "https://github.com/owner/repo",
            "https://github.com/owner/repo.git",
            "https://user@example.com:8443/a/b",
            "https://[::1]:8080/repo",
            "ssh://git@github.com/owner/repo.git",
            "ssh://git@github.com:22/owner/repo",
            "git://example.com/repo",
            "file:///srv/repo",
            "git@github.com:owner/repo.git",
            "deploy.bot@git.example.com:group/sub/repo",
        ] {
            assert_eq!(validate_git_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn git_only_speaks_the_allowed_protocols() {
        let argv = restricted_git_args(&["fetch"]);
        let text: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(&text[..2], ["-c", "protocol.allow=never"]);
        for p in ALLOWED_PROTOCOLS {
            assert!(
                text.contains(&format!("protocol.{p}.allow=always")),
                "{text:?}"
            );
        }
        assert_eq!(text.last().unwrap(), "fetch");
    }

    #[test]
    fn a_bad_rev_is_an_error_not_a_panic() {
        let err = fetch(
            &ProcessExecutor,
            "https://example.com/r",
            "é",
            Path::new("/nonexistent"),
        )
        .unwrap_err();
        assert!(err.contains("source.rev"), "{err}");
    }

    #[test]
    fn describes_this_checkout_and_nothing_outside_one() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        if let Some(info) = describe(&ProcessExecutor, here, None) {
            assert_eq!(info.commit.len(), 40, "{info:?}");
        }
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(describe(&ProcessExecutor, outside.path(), None), None);
    }

    #[test]
    fn a_detached_checkout_takes_the_ref_the_ci_names() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
                .arg(repo.path())
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        let on_branch = describe(&ProcessExecutor, repo.path(), Some("refs/pull/7/merge")).unwrap();
        assert_eq!(
            on_branch.git_ref.as_deref(),
            Some("refs/heads/main"),
            "the branch wins"
        );
        git(&["checkout", "-q", "--detach"]);
        let detached = describe(&ProcessExecutor, repo.path(), Some("refs/pull/7/merge")).unwrap();
        assert_eq!(detached.git_ref.as_deref(), Some("refs/pull/7/merge"));
        assert_eq!(
            describe(&ProcessExecutor, repo.path(), None)
                .unwrap()
                .git_ref,
            None
        );
    }
}
