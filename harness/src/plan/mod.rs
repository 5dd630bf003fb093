//! The plan: selected bench repos and settings -> an ordered matrix of cases. Pure.

pub(crate) mod args;
pub mod cache;
pub mod config;
pub mod manifest;
pub mod model;
pub mod profile;
pub mod proxies;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::results::CaseKey;
use crate::stats::stopping::StoppingRule;

// A plan is made of the results document's words: systems, lanes, scenarios, parameters.
pub use crate::results::scenario::{Fault, Link, Scenario, SlowSettings};
pub use crate::results::{
    Compression, Explain, Lane, ParamValue, SampleOrder, System, VerifyPolicy,
};
pub use manifest::{RepoManifest, Source};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Samples per case; the minimum when `target_precision` is set.
    pub samples: usize,
    /// With `target_precision`: never more samples than this per case.
    pub max_samples: usize,
    /// Keep sampling a case until the 95% interval of its median (and of a warm case's
    /// speedup) is narrower than this fraction of it, or `max_samples` is reached.
    pub target_precision: Option<f64>,
    pub warmups: usize,
    /// Hard limit for one build; the process group is killed past it.
    pub timeout: Duration,
    /// Samples of each fallback case (each can cost up to `fallback_timeout`).
    pub fallback_samples: usize,
    /// Hard limit for one build through a faulty cache; past it the build counts as hung.
    pub fallback_timeout: Duration,
    pub slow: SlowSettings,
    /// Bazel outputs a poisoned action-cache entry redirects, by path suffix.
    pub poison_suffix: String,
    /// Whether warm cases fill the caches from a priming build. `false` (`--no-fill`):
    /// they measure what the caches hold now, and nothing is written to them.
    pub fill: bool,
    pub explain: Explain,
    /// Compression of the NARs written to the embedded cache.
    pub compression: Compression,
    /// `--link`: warm cases read the team cache through the proxy, shaped so.
    pub link: Option<Link>,
    /// How the samples of a repo's cold, warm and no-op cases are taken (`--order`).
    #[serde(default)]
    pub order: SampleOrder,
    /// Which verify mismatches fail the `verified` verdict (`--verify`).
    pub verify: VerifyPolicy,
    /// `--verify-depth`: compare only outputs this many steps or fewer from the final
    /// ones; `None`: the whole closure the build from the cache has.
    pub verify_depth: Option<usize>,
}

/// What a failing verdict does to `run`'s exit code (`--verdicts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum VerdictPolicy {
    /// The run exits 5 when it finished and a verdict failed: a CI job fails on the
    /// platform's own criteria without parsing the results.
    #[default]
    Fail,
    /// Failing verdicts are printed; the exit code says only whether cases ran.
    Warn,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            samples: 5,
            max_samples: 30,
            target_precision: None,
            warmups: 1,
            timeout: Duration::from_secs(1800),
            fallback_samples: 1,
            fallback_timeout: Duration::from_secs(120),
            slow: SlowSettings::default(),
            poison_suffix: ".txt".into(),
            fill: true,
            explain: Explain::On,
            compression: Compression::default(),
            link: None,
            order: SampleOrder::Interleaved,
            verify: VerifyPolicy::Cache,
            verify_depth: None,
        }
    }
}

impl Settings {
    /// (warm-ups, samples) of a case: fallback cases are expensive evidence, not timings
    /// to tune, so they get their own count and no warm-up. With a target precision the
    /// samples are the minimum.
    pub fn builds(&self, scenario: Scenario) -> (usize, usize) {
        match scenario {
            Scenario::Fallback { .. } => (0, self.fallback_samples),
            _ => (self.warmups, self.samples),
        }
    }

    /// When a case stops sampling (fallback cases: at their fixed count).
    pub fn stopping_rule(&self, scenario: Scenario) -> StoppingRule {
        let (_, samples) = self.builds(scenario);
        let adaptive = !matches!(scenario, Scenario::Fallback { .. });
        StoppingRule {
            min_samples: samples,
            max_samples: if adaptive {
                self.max_samples.max(samples)
            } else {
                samples
            },
            target_precision: self.target_precision.filter(|_| adaptive),
        }
    }

    /// The most builds a case may take (for progress).
    pub fn max_builds(&self, scenario: Scenario) -> usize {
        let (warmups, _) = self.builds(scenario);
        warmups + self.stopping_rule(scenario).max_samples_taken()
    }
}

/// An empty selection is a usage error, wherever repos are selected.
pub fn require_repos(repos: &[RepoManifest]) -> Result<()> {
    if repos.is_empty() {
        return Err(Error::Usage(
            "no bench repos selected\n  fix: pass --repo NAME or add folders with a repo.toml to bench-repos/".into(),
        ));
    }
    Ok(())
}

/// One cell of the matrix: a repo built by one system in one scenario on one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseSpec {
    /// Index into `Plan::repos`.
    pub repo: usize,
    pub system: System,
    pub scenario: Scenario,
    pub lane: Lane,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub repos: Vec<RepoManifest>,
    pub cases: Vec<CaseSpec>,
    pub settings: Settings,
}

impl Plan {
    /// Cases in a stable order: repo, system, then cold -> warm -> noop.
    /// `systems: None` means every system the repo has targets for; an explicit system that a
    /// repo lacks is an error, so `--system` never silently does nothing.
    pub fn build(
        repos: Vec<RepoManifest>,
        systems: Option<&[System]>,
        scenarios: &[Scenario],
        lane: Lane,
        settings: Settings,
    ) -> Result<Plan> {
        if settings.samples == 0 {
            return Err(Error::Usage(
                "--samples 0: at least one sample is needed\n  fix: pass --samples 1 or more (5 is the default)".into(),
            ));
        }
        require_repos(&repos)?;
        let mut scenarios = scenarios.to_vec();
        scenarios.sort();
        scenarios.dedup();
        let mut cases = Vec::new();
        for (index, repo) in repos.iter().enumerate() {
            // A repo declared for other lanes (a GPU canary, say) is not a case here.
            if repo
                .lanes
                .as_ref()
                .is_some_and(|lanes| !lanes.contains(&lane))
            {
                continue;
            }
            let wanted: Vec<System> = match systems {
                Some(list) => {
                    for &system in list {
                        if !has_targets(repo, system) {
                            return Err(Error::Usage(format!(
                                "--system {}: bench repo `{}` has no {} targets ({})\n  fix: drop --system or add a [{}] table to its repo.toml",
                                system.name(), repo.name, system.name(), repo.manifest_path.display(), system.name()
                            )));
                        }
                    }
                    list.to_vec()
                }
                None => System::ALL
                    .into_iter()
                    .filter(|s| has_targets(repo, *s))
                    .collect(),
            };
            // A compression sweep's later points run only what reads or fills a cache,
            // and only with Nix: the rest would repeat the first point's builds.
            let later_compression_point = repo.compression().is_some()
                && repos[..index]
                    .iter()
                    .any(|r| r.name == repo.name && r.compression().is_some());
            for system in wanted {
                if later_compression_point && system != System::Nix {
                    continue;
                }
                for &scenario in &scenarios {
                    if repo.is_link_point() && scenario != Scenario::Warm {
                        continue;
                    }
                    if later_compression_point && !scenario.uses_cache() {
                        continue;
                    }
                    cases.push(CaseSpec {
                        repo: index,
                        system,
                        scenario,
                        lane,
                    });
                }
            }
        }
        if cases.is_empty() {
            return Err(Error::Usage(format!(
                "none of the selected bench repos runs on the {} lane (see their `lanes` key)\n  fix: pass --lane with a lane they declare, or other repos",
                lane.name()
            )));
        }
        Ok(Plan {
            repos,
            cases,
            settings,
        })
    }

    pub fn repo(&self, case: &CaseSpec) -> &RepoManifest {
        &self.repos[case.repo]
    }

    /// The case's repo, system and lane.
    pub fn key(&self, case: &CaseSpec) -> CaseKey<'_> {
        CaseKey {
            repo: &self.repo(case).name,
            system: case.system,
            lane: case.lane,
        }
    }

    /// The lane all cases of this plan run on.
    pub fn lane(&self) -> Lane {
        self.cases.first().map_or(Lane::Host, |c| c.lane)
    }

    /// Whether any warm case of `system` is planned (it needs a cache).
    pub fn needs_cache(&self, system: System) -> bool {
        self.cases
            .iter()
            .any(|c| c.system == system && c.scenario.uses_cache())
    }

    pub fn uses(&self, system: System) -> bool {
        self.cases.iter().any(|c| c.system == system)
    }

    /// Timed builds in the whole plan (for progress).
    /// The most timed builds the plan can take (for progress).
    pub fn total_builds(&self) -> usize {
        self.cases
            .iter()
            .map(|c| self.settings.max_builds(c.scenario))
            .sum()
    }
}

/// Why a case of a compression sweep's point does not run: Bazel's cache has no NAR
/// compression, so its builds would be the same at every point.
pub fn compression_skip(repo: &RepoManifest, system: System) -> Option<String> {
    let compression = repo.compression()?;
    (system != System::Nix).then(|| {
        format!(
            "a compression sweep (here compression={}) chooses how the embedded cache stores Nix's NARs; {}'s cache stores blobs as they are, so its builds would be the same at every point\n  fix: sweep compression with --system nix, and run {} without the sweep",
            compression.name(),
            system.name(),
            system.name()
        )
    })
}

fn has_targets(repo: &RepoManifest, system: System) -> bool {
    match system {
        System::Nix => repo.nix.is_some(),
        System::Bazel => repo.bazel.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo(name: &str) -> RepoManifest {
        let text = format!(
            "name = \"{name}\"\ndescription = \"d\"\n[source]\npath = \".\"\n[nix]\nfile = \"default.nix\"\n"
        );
        manifest::parse(&text, Path::new("/tmp/repo.toml")).unwrap()
    }

    #[test]
    fn orders_cases_by_repo_system_and_scenario() {
        let plan = Plan::build(
            vec![repo("a"), repo("b")],
            None,
            &[
                Scenario::Noop,
                Scenario::Cold,
                Scenario::Warm,
                Scenario::Cold,
            ],
            Lane::Host,
            Settings::default(),
        )
        .unwrap();
        let order: Vec<(usize, Scenario)> =
            plan.cases.iter().map(|c| (c.repo, c.scenario)).collect();
        assert_eq!(
            order,
            vec![
                (0, Scenario::Cold),
                (0, Scenario::Warm),
                (0, Scenario::Noop),
                (1, Scenario::Cold),
                (1, Scenario::Warm),
                (1, Scenario::Noop)
            ]
        );
        assert!(plan.needs_cache(System::Nix) && !plan.needs_cache(System::Bazel));
        assert!(plan.uses(System::Nix) && !plan.uses(System::Bazel));
        assert_eq!(plan.total_builds(), 6 * 6);
    }

    #[test]
    fn cold_only_needs_no_cache() {
        let plan = Plan::build(
            vec![repo("a")],
            Some(&[System::Nix]),
            &[Scenario::Cold],
            Lane::Host,
            Settings::default(),
        )
        .unwrap();
        assert!(!plan.needs_cache(System::Nix));
    }

    #[test]
    fn repos_run_only_on_their_lanes() {
        let mut gpu_only = repo("canary");
        gpu_only.lanes = Some(vec![Lane::Gpu]);
        let plan = Plan::build(
            vec![repo("a"), gpu_only.clone()],
            None,
            &[Scenario::Cold],
            Lane::Host,
            Settings::default(),
        )
        .unwrap();
        assert_eq!(plan.cases.len(), 1);
        let err = Plan::build(
            vec![gpu_only.clone()],
            None,
            &[Scenario::Cold],
            Lane::Host,
            Settings::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("host lane"), "{err}");
        assert_eq!(
            Plan::build(
                vec![gpu_only],
                None,
                &[Scenario::Cold],
                Lane::Gpu,
                Settings::default()
            )
            .unwrap()
            .cases
            .len(),
            1
        );
    }

    #[test]
    fn explicit_system_without_targets_is_an_error() {
        let err = Plan::build(
            vec![repo("a")],
            Some(&[System::Bazel]),
            &Scenario::DEFAULT,
            Lane::Host,
            Settings::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no bazel targets"), "{err}");
    }

    #[test]
    fn rejects_zero_samples_and_empty_selection() {
        let settings = Settings {
            samples: 0,
            ..Settings::default()
        };
        let err = Plan::build(
            vec![repo("a")],
            None,
            &Scenario::DEFAULT,
            Lane::Host,
            settings,
        )
        .unwrap_err();
        assert!(err.to_string().contains("--samples"));
        let err = Plan::build(
            vec![],
            None,
            &Scenario::DEFAULT,
            Lane::Host,
            Settings::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no bench repos"));
    }
}
