//! The preparation step for git-sourced bench repos: fetch each pinned commit into a
//! checkout cache before anything is built.

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::exec::process::{self, Executor};
use crate::plan::{RepoManifest, Source};

/// The preparation step: every git source is checked out (or found in the cache) before
/// anything is built; one that cannot be fetched makes its cases skipped, never failed.
pub fn fetch_sources<'a>(
    repos: impl IntoIterator<Item = &'a mut RepoManifest>,
    exec: &dyn Executor,
    cache: &Path,
) -> Result<()> {
    let mut fetched: std::collections::BTreeMap<(String, String), Source> = Default::default();
    for repo in repos {
        let Source::Git { url, rev } = &repo.source else {
            continue;
        };
        let key = (url.clone(), rev.clone());
        // What is shown of the URL: never its user or password.
        let shown = crate::boundary::redact_urls(url);
        if !fetched.contains_key(&key) {
            let spinner = indicatif::ProgressBar::new_spinner();
            spinner.set_message(format!("fetching {shown} at {}", &rev[..12.min(rev.len())]));
            spinner.enable_steady_tick(Duration::from_millis(120));
            let source = match crate::tools::git::fetch(exec, url, rev, cache) {
                Ok(checkout) => Source::Fetched {
                    checkout,
                    url: url.clone(),
                    rev: rev.clone(),
                },
                Err(reason) => Source::Unavailable {
                    url: url.clone(),
                    rev: rev.clone(),
                    reason,
                },
            };
            spinner.finish_and_clear();
            match &source {
                Source::Unavailable { reason, .. } => {
                    eprintln!("skipping {}: could not fetch {shown}: {reason}", repo.name)
                }
                _ => eprintln!("fetched {} ({shown} at {rev})", repo.name),
            }
            process::check_interrupted()?;
            fetched.insert(key.clone(), source);
        }
        repo.source = fetched[&key].clone();
        // The checkout's own paths (its files, links) are checked as a local source's are.
        if let Source::Fetched { checkout, .. } = &repo.source {
            repo.check_paths(checkout)?;
        }
    }
    Ok(())
}
