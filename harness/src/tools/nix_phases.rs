//! Splits a Nix build's wall time into evaluation, narinfo queries, downloads, builds and
//! other, from its internal-json stderr and the time each line arrived (the executor's
//! `<stderr>.t` sidecar: one line per stderr line, microseconds since spawn).
//!
//! The rules, read off recorded 2.8 and 2.26 logs:
//! - Evaluation runs from spawn until realisation starts: the first activity of the
//!   realisation (`querying info about missing paths`, the realise/builds/substitutions
//!   aggregates, a build, a substitution or a path-info query). Fetches during evaluation
//!   (flake inputs) count as evaluation.
//! - Afterwards each moment goes to the busiest thing under way, in this order: a build
//!   (type 105); a download (substitution 108, path copy 100, or a file transfer that is
//!   not a narinfo); a narinfo query (path-info query 109, narinfo and nix-cache-info
//!   transfers, `querying info about missing paths`). Activities overlap (Nix substitutes
//!   while it builds), so the priority keeps the phases disjoint.
//! - Other is the rest: gaps between activities (locks, store registration) and the time
//!   from the last line to exit.

use crate::results::explain::{Phase, PhaseTime, TimeSplit};
use crate::tools::nix_log::{
    Action, Line, ACT_BUILD, ACT_BUILDS, ACT_COPY_PATH, ACT_COPY_PATHS, ACT_FILE_TRANSFER,
    ACT_QUERY_PATH_INFO, ACT_REALISE, ACT_SUBSTITUTE, ACT_UNKNOWN, QUERY_MISSING_TEXT,
};

/// Reads a `.t` sidecar: one integer per line, microseconds since spawn.
pub fn parse_arrival_times(text: &str) -> Result<Vec<u64>, String> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            line.trim().parse().map_err(|e| {
                format!(
                    "arrival times, line {}: `{line}` is not a whole number of microseconds ({e})",
                    i + 1
                )
            })
        })
        .collect()
}

/// Phases in priority order: a moment with several under way counts for the first.
const PRIORITY: [Phase; 3] = [Phase::Builds, Phase::Downloads, Phase::NarinfoQueries];

fn class_of(kind: u64, text: Option<&str>, url: Option<&str>) -> Option<Phase> {
    match kind {
        ACT_BUILD => Some(Phase::Builds),
        ACT_SUBSTITUTE | ACT_COPY_PATH => Some(Phase::Downloads),
        ACT_FILE_TRANSFER => {
            let url = url.unwrap_or_default();
            if url.ends_with(".narinfo") || url.ends_with("/nix-cache-info") {
                Some(Phase::NarinfoQueries)
            } else {
                Some(Phase::Downloads)
            }
        }
        ACT_QUERY_PATH_INFO => Some(Phase::NarinfoQueries),
        ACT_UNKNOWN if text == Some(QUERY_MISSING_TEXT) => Some(Phase::NarinfoQueries),
        _ => None,
    }
}

/// Whether an activity of this kind means evaluation is over.
fn starts_realisation(kind: u64, text: Option<&str>) -> bool {
    matches!(
        kind,
        ACT_REALISE
            | ACT_COPY_PATHS
            | ACT_BUILDS
            | ACT_BUILD
            | ACT_SUBSTITUTE
            | ACT_QUERY_PATH_INFO
            | ACT_COPY_PATH
    ) || (kind == ACT_UNKNOWN && text == Some(QUERY_MISSING_TEXT))
}

/// Splits `wall_s` (exec to exit, as the harness measured it) from a stderr's parsed
/// lines. `arrivals_us[i]` is when stderr line `i` arrived; times past `wall_s` (lines read after exit) count as at exit,
/// and lines without a time as at the last known one.
pub fn split_nix_time(log: &[Line], arrivals_us: &[u64], wall_s: f64) -> TimeSplit {
    let wall_us = (wall_s.max(0.0) * 1e6) as u64;
    let mut now = 0;
    let mut evaluation_end: Option<u64> = None;
    // Open activities: id -> (phase, start); finished ones as (phase, start, end).
    let mut open: std::collections::HashMap<u64, (Phase, u64)> = Default::default();
    let mut spans: Vec<(Phase, u64, u64)> = Vec::new();
    for (index, line) in log.iter().enumerate() {
        now = arrivals_us.get(index).copied().unwrap_or(now).min(wall_us);
        let Line::Event(event) = line else {
            continue;
        };
        match event.action {
            Action::Start => {
                let text = event.text.as_deref();
                if evaluation_end.is_none() && starts_realisation(event.kind, text) {
                    evaluation_end = Some(now);
                }
                if let Some(phase) = class_of(event.kind, text, event.field_str(0)) {
                    open.insert(event.id, (phase, now));
                }
            }
            Action::Stop => {
                if let Some((phase, start)) = open.remove(&event.id) {
                    spans.push((phase, start, now));
                }
            }
            _ => {}
        }
    }
    spans.extend(open.into_values().map(|(phase, start)| (phase, start, now)));
    let evaluation_end = evaluation_end.unwrap_or(now);

    // Sweep over span boundaries, giving each stretch to the first phase under way.
    let mut boundaries: Vec<(u64, usize, i64)> = Vec::with_capacity(spans.len() * 2);
    for (phase, start, end) in spans {
        let rank = PRIORITY.iter().position(|p| *p == phase).unwrap_or(0);
        let (start, end) = (start.max(evaluation_end), end.max(evaluation_end));
        if end > start {
            boundaries.push((start, rank, 1));
            boundaries.push((end, rank, -1));
        }
    }
    boundaries.sort_unstable();
    let mut active = [0i64; PRIORITY.len()];
    let mut totals = [0u64; PRIORITY.len()];
    let mut previous = evaluation_end;
    for (at, rank, delta) in boundaries {
        if let Some(busiest) = active.iter().position(|n| *n > 0) {
            totals[busiest] += at - previous;
        }
        active[rank] += delta;
        previous = at;
    }

    let mut phases = vec![PhaseTime {
        phase: Phase::Evaluation,
        seconds: evaluation_end as f64 / 1e6,
    }];
    // In the order they happen: queries, then downloads, then builds.
    for rank in (0..PRIORITY.len()).rev() {
        phases.push(PhaseTime {
            phase: PRIORITY[rank],
            seconds: totals[rank] as f64 / 1e6,
        });
    }
    TimeSplit::from_phases(wall_s, phases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::nix_log::parse_lines;

    /// A recorded log, its arrival times and the harness-measured wall time.
    fn recorded(dir: &str, name: &str) -> (String, Vec<u64>, f64) {
        let log = crate::tools::fixture(&format!("nix/{dir}/{name}.stderr.log"));
        let times = crate::tools::fixture(&format!("nix/{dir}/{name}.stderr.log.t"));
        let wall = crate::tools::fixture(&format!("nix/{dir}/wall_s.txt"))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
            .unwrap();
        (log, parse_arrival_times(&times).unwrap(), wall)
    }

    fn split(dir: &str, name: &str) -> TimeSplit {
        let (log, times, wall) = recorded(dir, name);
        assert_eq!(times.len(), log.lines().count());
        let split = split_nix_time(&parse_lines(&log), &times, wall);
        let off = (split.accounted_s() - split.wall_s).abs() / split.wall_s;
        assert!(off <= 0.05, "{split:#?}");
        split
    }

    #[test]
    fn cold_time_goes_to_builds() {
        // Recorded: fixture-c-dag size 6, work 100, empty store: 7 builds, 2.42 s.
        let split = split("timed", "cold");
        assert!(
            split.seconds(Phase::Builds) > 0.8 * split.wall_s,
            "{split:#?}"
        );
        assert_eq!(split.seconds(Phase::Downloads), 0.0);
        // First line at 59 ms: evaluation is Nix's start-up plus reading the file.
        assert!((split.seconds(Phase::Evaluation) - 0.059_309).abs() < 1e-9);
        // Only the empty `querying info about missing paths` (no substituters): 7 ms.
        assert!(split.seconds(Phase::NarinfoQueries) < 0.01);
    }

    #[test]
    fn warm_time_goes_to_queries_and_downloads() {
        // Recorded: the same, into a fresh store from the embedded-style HTTP cache.
        let split = split("timed", "warm");
        assert_eq!(split.seconds(Phase::Builds), 0.0);
        assert!(split.seconds(Phase::NarinfoQueries) > 0.0, "{split:#?}");
        assert!(split.seconds(Phase::Downloads) > 0.0, "{split:#?}");
        assert!(split.transfer_s() > 0.0);
    }

    #[test]
    fn noop_time_is_evaluation_and_exit() {
        let split = split("timed", "noop");
        assert_eq!(split.seconds(Phase::Builds), 0.0);
        assert_eq!(split.seconds(Phase::Downloads), 0.0);
        assert!(
            split.seconds(Phase::Evaluation) > 0.5 * split.wall_s,
            "{split:#?}"
        );
    }

    #[test]
    fn partial_hits_split_downloads_and_builds() {
        // Two narinfos gone: 5 paths downloaded while 2 derivations built.
        let split = split("miss", "two-404");
        assert!(split.seconds(Phase::Builds) > 0.0 && split.seconds(Phase::Downloads) > 0.0);
        for name in [
            "top-404",
            "unsigned",
            "nar-missing",
            "nar-missing-fallback",
            "not-requested",
        ] {
            let split = super::tests::split("miss", name);
            assert!(split.seconds(Phase::Builds) > 0.0, "{name}: {split:#?}");
        }
    }

    #[test]
    fn missing_or_late_times_are_clamped() {
        let (log, times, wall) = recorded("timed", "warm");
        // No times at all: everything at 0, so the wall time is other.
        let none = split_nix_time(&parse_lines(&log), &[], wall);
        assert_eq!(none.other_s, wall);
        // Every line read after exit: nothing past the wall time.
        let late: Vec<u64> = times.iter().map(|t| t + 10_000_000).collect();
        let clamped = split_nix_time(&parse_lines(&log), &late, wall);
        assert!((clamped.accounted_s() - wall).abs() < 1e-9, "{clamped:#?}");
    }

    #[test]
    fn arrival_times_must_be_numbers() {
        assert_eq!(parse_arrival_times("1\n20\n").unwrap(), [1, 20]);
        let err = parse_arrival_times("1\nx\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("`x`"), "{err}");
    }
}
