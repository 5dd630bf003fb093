//! Export for the common "github-action-benchmark" action (tool `customSmallerIsBetter`),
//! so its history charts track every case's median. Pure.

use serde::Serialize;

use crate::results::{Outcome, Results};

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
                name: c.label(),
                unit: "s",
                value: s.median_s,
                range: format!("± {:.4}", s.mad_s),
                extra: format!(
                    "{} samples, min {:.4} s, max {:.4} s; host {}",
                    s.n, s.min_s, s.max_s, results.environment.hostname
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
        assert!(json[0]["range"].as_str().unwrap().starts_with("± "));
    }
}
