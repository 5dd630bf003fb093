//! Export for the common "github-action-benchmark" action (tool `customSmallerIsBetter`),
//! so its history charts track every case's median. Pure.
//!
//! One entry per successful case and sweep point, named as the reports name it
//! (`repo system lane [point] scenario`), so the action keeps one series per case:
//! - `value`: the median wall time of the samples, in seconds (`unit`);
//! - `range`: `± MAD s`, the samples' median absolute deviation (unscaled) in seconds, the
//!   spread around that median (the action shows it beside the value, it does not parse it);
//! - `extra`: how many samples, their minimum and maximum, and the host.

use serde::Serialize;

use crate::results::{Outcome, Results};
use crate::stats::numbers::{count_of, seconds};

#[derive(Debug, Serialize, PartialEq)]
pub struct BenchmarkEntry {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    pub range: String,
    pub extra: String,
}

/// One entry per successful case with samples: the median wall time in seconds, ± MAD.
pub fn github_action_benchmark(results: &Results) -> Vec<BenchmarkEntry> {
    results
        .cases
        .iter()
        .filter(|c| c.outcome == Outcome::Ok)
        .filter_map(|c| {
            let s = c.stats.as_ref()?;
            Some(BenchmarkEntry {
                name: format!(
                    "{} {}",
                    results.case_title(c.key(), &c.parameters),
                    c.scenario
                ),
                unit: "s",
                value: s.median_s,
                range: format!("± {:.4} s MAD", s.mad_s),
                extra: format!(
                    "{}, min {}, max {}; host {}",
                    count_of(s.n, "sample"),
                    seconds(s.min_s),
                    seconds(s.max_s),
                    results.environment.hostname
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_successful_case() {
        let results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let entries = github_action_benchmark(&results);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].name, "fixture-c-dag nix host cold");
        assert_eq!(entries[0].unit, "s");
        assert!(entries[0].value > entries[1].value);
        let json = serde_json::to_value(&entries).unwrap();
        let range = json[0]["range"].as_str().unwrap();
        assert!(
            range.starts_with("± ") && range.ends_with(" s MAD"),
            "{range}"
        );
    }

    #[test]
    fn a_sweep_keeps_one_series_per_point() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/evidence/sweep-nix-host.json");
        let results = crate::results::load(&path).unwrap();
        let entries = github_action_benchmark(&results);
        let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert!(
            names.contains(&"fixture-c-dag nix host size=2 cold")
                && names.contains(&"fixture-c-dag nix host size=16 warm"),
            "{names:?}"
        );
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8, "every point its own series: {names:?}");
    }
}
