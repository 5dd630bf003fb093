//! A compression sweep (`--sweep compression=none,xz,zstd`) for the reports: one row per
//! warm case and compression. The points are names, not numbers, so no line is fitted
//! through them (`growth` fits numeric sweeps only). Pure: results in, a table out.

use crate::report::tables::{cells, Table};
use crate::results::derive::cold_case;
use crate::results::{CaseResult, Compression, Outcome, Results, Scenario};
use crate::stats::median;
use crate::stats::numbers::{bytes, median_interval, percent, ratio_interval, seconds};

/// The median of what `field` says of each sample that says it.
fn sample_median(
    case: &CaseResult,
    field: impl Fn(&crate::results::Sample) -> Option<f64>,
) -> Option<f64> {
    let values: Vec<f64> = case.samples.iter().filter_map(field).collect();
    (!values.is_empty()).then(|| median(&values))
}

/// The rows of a compression sweep's warm cases; `None` without one.
pub fn table(results: &Results) -> Option<Table> {
    let rows: Vec<_> = results
        .cases
        .iter()
        .filter(|c| c.scenario == Scenario::Warm && c.outcome == Outcome::Ok)
        .filter(|c| c.parameters.contains_key(Compression::PARAMETER))
        .map(|warm| {
            let point = |c: &&CaseResult| c.key() == warm.key() && c.parameters == warm.parameters;
            let compression = warm.cache.as_ref().and_then(|u| u.compression).map_or_else(
                || warm.parameters[Compression::PARAMETER].to_string(),
                |c| c.name().to_string(),
            );
            let speedup = cold_case(&results.cases, warm)
                .and_then(|cold| crate::stats::ratio_of_medians(&cold.walls(), &warm.walls()));
            // The upload that filled this compression's root: by the first case of the
            // point that read it (a fallback case may have come first).
            let fill = results
                .cases
                .iter()
                .filter(point)
                .find_map(|c| c.cache_fill.as_ref().filter(|f| f.wall_s > 0.0));
            let penalty = results
                .fills
                .iter()
                .find(|f| f.key() == warm.key() && f.parameters == warm.parameters);
            let floor = |f: fn(&crate::results::explain::TransferFloor) -> f64| {
                sample_median(warm, |s| s.transfer_floor.as_ref().map(f))
            };
            cells([
                warm.repo.clone(),
                warm.system.name().into(),
                warm.lane.name().into(),
                compression,
                median_interval(&warm.walls()),
                speedup.as_ref().map_or("-".into(), ratio_interval),
                sample_median(warm, |s| s.downloaded_bytes.map(|b| b as f64))
                    .map_or("-".into(), |b| bytes(b.round() as u64)),
                floor(|f| f.floor_s).map_or("-".into(), seconds),
                floor(|f| f.efficiency).map_or("-".into(), percent),
                fill.map_or("-".into(), |f| seconds(f.wall_s)),
                penalty.map_or("-".into(), |p| ratio_interval(&p.penalty)),
            ])
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Compression of the cache",
        note: "A compression sweep: each compression's warm case read a root of the embedded cache of its own, filled with NARs so compressed and signed with the same key. Medians over the warm samples; speedup = median(cold) / median(warm) against the sweep's one cold case (cold reads no cache), both resampled; downloaded = bytes fetched from the cache; floor and efficiency as in the time split (floor / wall); fill = the upload that filled that root (nix copy); fill penalty = (cold + fill) / cold of the point's fill case.",
        headers: vec![
            "repo",
            "system",
            "lane",
            "compression",
            "warm [95% CI]",
            "speedup [95% CI]",
            "downloaded",
            "transfer floor",
            "efficiency",
            "fill",
            "fill penalty [95% CI]",
        ],
        rows,
    })
}
