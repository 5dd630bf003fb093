//! The tables every report shows, built once from a results file and rendered by the
//! terminal summary, the Markdown and the HTML report alike.

use crate::plan::Scenario;
use crate::results::derive::{requirement, FallbackOutcome};
use crate::results::VerifyPolicy;
use crate::results::{CaseResult, MismatchClass, Outcome, Results};
use crate::stats::numbers::{
    self, change_interval, median_interval, percent, ratio, ratio_interval, seconds,
};
use crate::stats::stopping::StopReason;
use crate::stats::RatioInterval;

pub struct Table {
    pub title: &'static str,
    /// One line under the title saying how to read the numbers.
    pub note: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// One cell: its text, and whether it is good or bad news (the HTML colours it).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Bad,
}

impl Cell {
    pub fn toned(text: impl Into<String>, tone: Tone) -> Cell {
        Cell {
            text: text.into(),
            tone,
        }
    }

    /// A verdict: `pass` is good news, `fail` bad.
    pub fn verdict(pass: bool, pass_text: &str, fail_text: &str) -> Cell {
        if pass {
            Cell::toned(pass_text, Tone::Good)
        } else {
            Cell::toned(fail_text, Tone::Bad)
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::toned(text, Tone::Plain)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::toned(text, Tone::Plain)
    }
}

/// A row of plain cells.
pub fn cells<T: Into<Cell>>(texts: impl IntoIterator<Item = T>) -> Vec<Cell> {
    texts.into_iter().map(Into::into).collect()
}

/// A repo, with its point when the run swept a parameter ("fixture-cc size=20").
fn repo_at_point(
    results: &Results,
    key: crate::results::CaseKey,
    parameters: &std::collections::BTreeMap<String, crate::plan::ParamValue>,
) -> String {
    match results.sweep_point(key, parameters) {
        Some(point) => format!("{} {point}", key.repo),
        None => key.repo.to_string(),
    }
}

/// What explaining the builds cost a case (`--explain interleave`).
pub fn explain_cost(r: &RatioInterval) -> String {
    format!(
        "explaining the builds cost {} of wall time (explained vs plain medians)",
        change_interval(r)
    )
}

const COMPARISONS_NOTE: &str = "Medians over the samples of the build tool's wall time, exec to exit, and of its CPU time (user + system of every process the build ran, as each sample's cpu_scope counts; \"client only\": the Bazel server's work was not counted); speedup = median(cold) / median(warm), or \"paired\": the median of cold_i / warm_i over samples taken round by round (interleaved); no interval (n/a) from fewer than 3 samples a side.";
const FILL_NOTE: &str = "Medians over the samples of the build tool's wall time, exec to exit, and of its CPU time (user + system of every process the build ran, as each sample's cpu_scope counts; \"client only\": the Bazel server's work was not counted); speedup = median(cold) / median(warm), or \"paired\": the median of cold_i / warm_i over samples taken round by round (interleaved); no interval (n/a) from fewer than 3 samples a side. Fill penalty = (cold + fill) / cold: each fill sample is a cold build that then fills a fresh, empty team cache, against the cold case, paired like the speedup; sent = the closure's NAR bytes (Bazel: its blobs), stored = what the cache kept, with stored/sent.";

pub fn comparisons(results: &Results) -> Table {
    // A CPU median from samples that did not count the build server's work says so.
    let cpu = |median: Option<f64>, case: Option<&CaseResult>| match median {
        None => "-".to_string(),
        Some(m) if case.is_some_and(CaseResult::cpu_is_partial) => {
            format!("{} (client only)", seconds(m))
        }
        Some(m) => seconds(m),
    };
    let with_fills = !results.fills.is_empty();
    let fill_of = |key: crate::results::CaseKey, parameters| {
        results
            .fills
            .iter()
            .find(|f| f.key() == key && &f.parameters == parameters)
    };
    let mut headers = vec![
        "repo",
        "system",
        "lane",
        "cold",
        "cold cpu",
        "warm",
        "warm cpu",
        "noop",
        "speedup [95% CI]",
        "hit ratio",
    ];
    if with_fills {
        headers.extend(["fill penalty [95% CI]", "fill sent / stored"]);
    }
    let mut rows: Vec<Vec<Cell>> = results
        .comparisons
        .iter()
        .map(|c| {
            let case = |scenario| {
                results.cases.iter().find(|k| {
                    k.key() == c.key() && k.parameters == c.parameters && k.scenario == scenario
                })
            };
            let mut row = cells([
                repo_at_point(results, c.key(), &c.parameters),
                c.system.name().into(),
                c.lane.name().into(),
                seconds(c.cold_median_s),
                cpu(c.cold_cpu_median_s, case(Scenario::Cold)),
                seconds(c.warm_median_s),
                cpu(c.warm_cpu_median_s, case(Scenario::Warm)),
                c.noop_median_s.map_or("-".into(), seconds),
                match c.pairs {
                    Some(n) => format!(
                        "{} (paired, {})",
                        ratio_interval(&c.speedup),
                        numbers::count_of(n, "pair")
                    ),
                    None => ratio_interval(&c.speedup),
                },
                c.hit_ratio.map_or("-".into(), percent),
            ]);
            if with_fills {
                row.extend(fill_cells(fill_of(c.key(), &c.parameters)));
            }
            row
        })
        .collect();
    // A fill case whose run had no warm case still gets its row.
    for f in results.fills.iter().filter(|f| {
        !results
            .comparisons
            .iter()
            .any(|c| c.key() == f.key() && c.parameters == f.parameters)
    }) {
        let cold = results.cases.iter().find(|k| {
            k.key() == f.key() && k.parameters == f.parameters && k.scenario == Scenario::Cold
        });
        let mut row = cells([
            repo_at_point(results, f.key(), &f.parameters),
            f.system.name().into(),
            f.lane.name().into(),
            seconds(f.cold_median_s),
            cpu(cold.and_then(crate::results::derive::cpu_median), cold),
        ]);
        row.extend(cells(["-"; 5]));
        row.extend(fill_cells(Some(f)));
        rows.push(row);
    }
    Table {
        title: "Cold vs warm",
        note: if with_fills {
            FILL_NOTE
        } else {
            COMPARISONS_NOTE
        },
        headers,
        rows,
    }
}

/// The fill penalty with its interval, and what the fill sent and stored.
fn fill_cells(fill: Option<&crate::results::derive::FillPenalty>) -> Vec<Cell> {
    let Some(f) = fill else {
        return cells(["-", "-"]);
    };
    let penalty = match f.pairs {
        Some(n) => format!(
            "{} (paired, {})",
            ratio_interval(&f.penalty),
            numbers::count_of(n, "pair")
        ),
        None => ratio_interval(&f.penalty),
    };
    let sent = match (f.uploaded_bytes, f.stored_bytes) {
        (Some(sent), Some(stored)) => {
            let mut text = format!("{} / {}", numbers::bytes(sent), numbers::bytes(stored));
            if let Some(r) = f.stored_ratio {
                text.push_str(&format!(" ({})", percent(r)));
            }
            if let Some(d) = f.dedup_fraction {
                text.push_str(&format!(", {} deduplicated", percent(d)));
            }
            text
        }
        // The server did not say what it stored.
        (Some(sent), None) => format!("{} / -", numbers::bytes(sent)),
        _ => "-".into(),
    };
    cells([penalty, sent])
}

pub fn fallbacks(results: &Results) -> Table {
    Table {
        title: "Fallback",
        note: "The cache behind the fault proxy. time to a result = median over the samples of the build through the faulty cache plus, when it failed, the harness's retry without the cache (the sample distributions show the builds through the fault alone); penalty = that / median(cold).",
        headers: vec![
            "repo",
            "system",
            "scenario",
            "outcome",
            "time to a result",
            "penalty",
            "tool noticed",
            "from cache",
            "verified",
        ],
        rows: results
            .fallbacks
            .iter()
            .map(|f| {
                let survived = matches!(
                    f.outcome,
                    FallbackOutcome::Survived | FallbackOutcome::Recovered
                );
                let outcome_tone = match f.outcome {
                    FallbackOutcome::Hung | FallbackOutcome::Failed => Tone::Bad,
                    _ if survived => Tone::Good,
                    _ => Tone::Plain,
                };
                vec![
                    f.repo.clone().into(),
                    f.system.name().into(),
                    f.scenario.to_string().into(),
                    Cell::toned(f.outcome.name(), outcome_tone),
                    f.time_s.map_or("-".into(), seconds).into(),
                    f.penalty.map_or("-".into(), ratio).into(),
                    if f.detected_by_tool { "yes" } else { "no" }.into(),
                    f.from_cache.map_or("-".into(), |n| n.to_string()).into(),
                    f.verified
                        .map_or("-".into(), |v| Cell::verdict(v, "yes", "NO")),
                ]
            })
            .collect(),
    }
}

/// The steps first at fault behind verify's (and fallback's) mismatches, with what
/// differs only because it consumes them.
pub fn faults(results: &Results) -> Table {
    let strict = results.settings.verify == VerifyPolicy::Strict;
    let mut rows = Vec::new();
    for case in &results.cases {
        let Some(v) = &case.verification else {
            continue;
        };
        for root in &v.roots {
            let tone = match root.class {
                MismatchClass::NotReproducible if !strict => Tone::Plain,
                _ => Tone::Bad,
            };
            let consumers: Vec<String> = root
                .consumers
                .iter()
                .map(|c| match c.via.len() {
                    0..=2 => c.step.clone(),
                    _ => format!("{} (via {})", c.step, c.via.join(" -> ")),
                })
                .collect();
            rows.push(vec![
                case.repo.clone().into(),
                case.system.name().into(),
                case.scenario.to_string().into(),
                root.step.clone().into(),
                Cell::toned(root.class.describe(), tone),
                if root.outputs.is_empty() {
                    "-".to_string()
                } else {
                    root.outputs.join(", ")
                }
                .into(),
                if consumers.is_empty() {
                    "-".to_string()
                } else {
                    consumers.join("; ")
                }
                .into(),
            ]);
        }
    }
    Table {
        title: "First at fault",
        note: "Each output that differs from a clean build's, traced to the step (action, derivation) first at fault: its inputs equal in the builds compared, its outputs not. not reproducible = two clean builds without any cache differ (fails the verified verdict only with --verify strict); the cache served a wrong output = both clean builds agree and the build from the cache does not. Consumers differ because they consume its outputs.",
        headers: vec![
            "repo",
            "system",
            "scenario",
            "first at fault",
            "why",
            "its outputs that differ",
            "consumers",
        ],
        rows,
    }
}

pub fn verdicts(results: &Results) -> Table {
    let mut rows = Vec::new();
    for v in &results.verdicts {
        for (name, c) in v.checks() {
            rows.push(vec![
                v.repo.clone().into(),
                v.system.name().into(),
                v.lane.name().into(),
                name.into(),
                Cell::verdict(c.pass, "pass", "FAIL"),
                requirement(name, c.threshold).into(),
                c.detail.clone().into(),
            ]);
        }
    }
    Table {
        title: "Verdicts",
        note: "Each judged against its threshold, as the results' settings recorded it (--min-hit-ratio, --min-speedup, --max-fallback-penalty).",
        headers: vec!["repo", "system", "lane", "verdict", "result", "passes when", "detail"],
        rows,
    }
}

pub fn problems(results: &Results) -> Table {
    Table {
        title: "Cases that did not run to the end, or measured the wrong thing",
        note: "Failed cases stop at their first failing build; skipped cases never start; invalid cases ran but their numbers must not be used.",
        headers: vec!["outcome", "repo", "system", "lane", "scenario", "reason"],
        rows: results
            .cases
            .iter()
            .filter(|c| c.outcome != Outcome::Ok)
            .map(|c| {
                vec![
                    if c.outcome == Outcome::Skipped {
                        c.outcome.name().into()
                    } else {
                        Cell::toned(c.outcome.name(), Tone::Bad)
                    },
                    c.repo.clone().into(),
                    c.system.name().into(),
                    c.lane.name().into(),
                    c.scenario.to_string().into(),
                    c.reason
                        .clone()
                        .unwrap_or_else(|| "no reason recorded".into())
                        .into(),
                ]
            })
            .collect(),
    }
}

/// The platform's claims beside what this run measured for the same repo, system and
/// scenario.
pub fn claims(results: &Results) -> Table {
    let mut rows = Vec::new();
    for case in &results.cases {
        for claim in &case.claims {
            let measured = match (claim.seconds, claim.hit_ratio) {
                (Some(_), _) => case
                    .stats
                    .as_ref()
                    .filter(|_| case.outcome == Outcome::Ok)
                    .map(|s| s.median_s),
                (None, Some(_)) => results
                    .comparisons
                    .iter()
                    .find(|c| c.key() == case.key())
                    .and_then(|c| c.hit_ratio),
                (None, None) => None,
            };
            let (claimed, measured, against) = match (claim.seconds, claim.hit_ratio) {
                (Some(s), _) => (
                    seconds(s),
                    measured.map_or("-".into(), seconds),
                    measured.map_or("-".into(), |m| ratio(m / s)),
                ),
                (None, Some(h)) => (percent(h), measured.map_or("-".into(), percent), "-".into()),
                (None, None) => continue,
            };
            rows.push(cells([
                case.repo.clone(),
                case.system.name().into(),
                case.lane.name().into(),
                case.scenario.to_string(),
                claimed,
                measured,
                against,
                claim.source.clone(),
            ]));
        }
    }
    Table {
        title: "Claimed vs measured",
        note: "What the platform says (from the bench repo's manifest) beside this run's median wall time or hit ratio; measured / claimed for times.",
        headers: vec![
            "repo", "system", "lane", "scenario", "claimed", "measured", "measured / claimed", "source",
        ],
        rows,
    }
}

/// Cases whose sampling needs a word: stopped by the target precision or the maximum,
/// samples that look suspicious (hyperfine's warnings), what explaining cost.
pub fn sampling(results: &Results) -> Table {
    let mut rows = Vec::new();
    for case in results.cases.iter().filter(|c| c.outcome == Outcome::Ok) {
        let walls = case.walls();
        let mut notes: Vec<String> = crate::stats::warnings(&walls)
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(cost) = &case.explain_overhead {
            notes.push(explain_cost(cost));
        }
        notes.extend(clock_floor_note(results, &walls));
        let stopped = case.stopped.filter(|s| *s != StopReason::SampleCount);
        if walls.is_empty() || (stopped.is_none() && notes.is_empty()) {
            continue;
        }
        rows.push(vec![
            repo_at_point(results, case.key(), &case.parameters).into(),
            case.system.name().into(),
            case.lane.name().into(),
            case.scenario.to_string().into(),
            walls.len().to_string().into(),
            match stopped {
                Some(StopReason::MaxSamples) => {
                    Cell::toned(StopReason::MaxSamples.describe(), Tone::Bad)
                }
                Some(reason) => Cell::toned(reason.describe(), Tone::Good),
                None => "fixed sample count".into(),
            },
            median_interval(&walls).into(),
            notes.join("; ").into(),
        ]);
    }
    Table {
        title: "Sampling",
        note: "Cases whose samples need a word, with the median of their wall time and its 95% interval (the clock's floor named where it is over 1% of the median); every other case took exactly --samples samples and looked steady.",
        headers: vec![
            "repo", "system", "lane", "scenario", "samples", "stopped", "median [95% CI]", "notes",
        ],
        rows,
    }
}

/// The overall result in one line: `12 of 12 cases ok, 0 verdicts failed`.
pub fn headline<'a>(files: impl IntoIterator<Item = &'a Results>) -> String {
    let (mut ok, mut cases, mut failed) = (0, 0, 0);
    for r in files {
        cases += r.cases.len();
        ok += r.cases.iter().filter(|c| c.outcome == Outcome::Ok).count();
        failed += r.verdicts.iter().map(|v| v.failed()).sum::<usize>();
    }
    format!(
        "{ok} of {} ok, {} failed",
        numbers::count_of(cases, "case"),
        numbers::count_of(failed, "verdict")
    )
}

/// A results file's name for a heading: the file name, not the path it was given by.
pub fn file_title(label: &str) -> &str {
    std::path::Path::new(label)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(label)
}

/// `clock floor 0.62 ms is 3.1% of the median`, where the run's clock floor (the timed
/// span's own cost) is more than 1% of the median of `walls`.
fn clock_floor_note(results: &Results, walls: &[f64]) -> Option<String> {
    let floor = results.clock_floor.as_ref()?.median_s;
    let median = (!walls.is_empty()).then(|| crate::stats::median(walls))?;
    let share = floor / median;
    (share > 0.01).then(|| {
        format!(
            "clock floor {} is {:.1}% of the median",
            seconds(floor),
            share * 100.0
        )
    })
}

/// Every table, in reading order, that has rows.
pub fn all(results: &Results) -> Vec<Table> {
    std::iter::once(comparisons(results))
        .chain(super::growth::table(&results.growth))
        .chain(super::growth::link_table(&results.growth))
        .chain(super::compression::table(results))
        .chain([
            claims(results),
            fallbacks(results),
            faults(results),
            verdicts(results),
            sampling(results),
            problems(results),
        ])
        .filter(|t| !t.rows.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_show_with_their_consumers_and_the_way_from_the_root() {
        use crate::results::{Consumer, FaultRoot, Verification};
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        assert!(faults(&results).rows.is_empty(), "nothing differed");
        let root = |class| FaultRoot {
            step: "genrule //:stamp".into(),
            class,
            outputs: vec!["bazel-out/k8-fastbuild/bin/stamp.txt".into()],
            consumers: vec![
                Consumer {
                    step: "genrule //:uses_stamp".into(),
                    via: vec!["genrule //:stamp".into(), "genrule //:uses_stamp".into()],
                },
                Consumer {
                    step: "genrule //:all".into(),
                    via: vec![
                        "genrule //:stamp".into(),
                        "genrule //:uses_stamp".into(),
                        "genrule //:all".into(),
                    ],
                },
            ],
        };
        results.cases[0].verification = Some(Verification {
            clean: "a clean rebuild".into(),
            compared: 3,
            mismatches: Vec::new(),
            roots: vec![root(MismatchClass::NotReproducible)],
            scope: None,
        });
        let table = faults(&results);
        let row: Vec<&str> = table.rows[0].iter().map(|c| c.text.as_str()).collect();
        assert_eq!(row[3], "genrule //:stamp");
        assert_eq!(row[4], "not reproducible");
        assert_eq!(row[5], "bazel-out/k8-fastbuild/bin/stamp.txt");
        assert_eq!(
            row[6],
            "genrule //:uses_stamp; genrule //:all (via genrule //:stamp -> genrule //:uses_stamp -> genrule //:all)"
        );
        assert_eq!(table.rows[0][4].tone, Tone::Plain, "passes by default");
        results.settings.verify = VerifyPolicy::Strict;
        assert_eq!(faults(&results).rows[0][4].tone, Tone::Bad);
        results.cases[0].verification.as_mut().unwrap().roots =
            vec![root(MismatchClass::WrongFromCache)];
        results.settings.verify = VerifyPolicy::Cache;
        let table = faults(&results);
        assert_eq!(table.rows[0][4].text, "the cache served a wrong output");
        assert_eq!(table.rows[0][4].tone, Tone::Bad);
        // Every renderer shows it: the terminal summary, Markdown and HTML.
        crate::results::derive(&mut results);
        let files = vec![("r.json".to_string(), results.clone())];
        for text in [
            crate::report::summary::render(&results),
            crate::report::markdown::render(&files, crate::report::markdown::Detail::Full),
            crate::report::html::render(&files),
        ] {
            assert!(
                text.contains("First at fault") && text.contains("genrule //:uses_stamp"),
                "{text}"
            );
        }
    }

    #[test]
    fn claims_stand_beside_the_measured_median() {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let cold = results
            .cases
            .iter_mut()
            .find(|c| c.scenario == crate::plan::Scenario::Cold)
            .unwrap();
        cold.claims.push(crate::results::Claim {
            system: cold.system,
            scenario: cold.scenario,
            seconds: Some(720.0),
            hit_ratio: None,
            source: "the platform's README".into(),
        });
        let median = cold.stats.as_ref().unwrap().median_s;
        crate::results::derive(&mut results);
        let table = claims(&results);
        let row: Vec<&str> = table.rows[0].iter().map(|c| c.text.as_str()).collect();
        assert_eq!(row[4], "720 s");
        assert_eq!(row[5], seconds(median));
        assert_eq!(row[6], ratio(median / 720.0));
        assert_eq!(row[7], "the platform's README");
    }

    #[test]
    fn sampling_names_the_clock_floor_where_it_is_over_one_percent_of_a_median() {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        // Medians: cold 10.8 s, warm 49 ms, noop 23 ms; a 0.4 ms floor is 0.8% and 1.7% of
        // the last two.
        results.clock_floor = Some(crate::results::ClockFloor {
            command: "/usr/bin/true".into(),
            median_s: 0.0004,
            samples: 11,
        });
        let table = sampling(&results);
        let notes = |scenario: &str| {
            table
                .rows
                .iter()
                .find(|r| r[3].text == scenario)
                .map(|r| r[7].text.clone())
        };
        assert_eq!(
            notes("noop").as_deref(),
            Some("clock floor 400 µs is 1.7% of the median")
        );
        assert!(!notes("warm").unwrap().contains("clock floor"));
        assert_eq!(notes("cold"), None);
    }

    #[test]
    fn sampling_lists_only_the_cases_that_need_a_word() {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        // Only the warm case has a word to say: its second sample is an outlier (by
        // hyperfine's rule); the others took their fixed count and look steady.
        let table = sampling(&results);
        assert_eq!(table.rows.len(), 1);
        assert_eq!(table.rows[0][3].text, "warm");
        assert!(table.rows[0][7]
            .text
            .starts_with("sample 2 is a statistical outlier"));
        let walls = [1.0, 1.1, 1.0, 1.1, 1.0, 1.1];
        let case = &mut results.cases[0];
        assert_eq!(case.scenario, crate::plan::Scenario::Cold);
        case.samples = (0..walls.len())
            .map(|i| crate::results::Sample {
                wall_s: walls[i],
                explain_off: i % 2 == 1,
                ..case.samples[0].clone()
            })
            .collect();
        case.stopped = Some(StopReason::MaxSamples);
        case.explain_overhead = crate::stats::ratio_of_medians(&[1.0; 3], &[1.1; 3]);
        let table = sampling(&results);
        assert_eq!(table.rows.len(), 2);
        let row = &table.rows[0];
        assert_eq!(row[4].text, "6");
        assert_eq!(
            row[5],
            Cell::toned("max samples reached, precision not", Tone::Bad)
        );
        assert!(row[6].text.starts_with("1.05 s ["), "{}", row[6].text);
        assert_eq!(
            row[7].text,
            "explaining the builds cost -9.1% [-9.1%, -9.1%] of wall time (explained vs plain medians)"
        );
    }
}
