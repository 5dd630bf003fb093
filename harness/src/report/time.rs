//! Where the time went and why items missed, per case: a line per case for Markdown, the
//! top miss reasons, and stacked phase bars (cold / warm / noop) for the HTML. Pure.

use std::fmt::Write;

use crate::report::escape_html as esc;
use crate::results::explain::{MissExplanations, Phase, TimeSplit, TransferFloor};
use crate::results::{CaseResult, Outcome, Results, Sample};
use crate::stats::numbers::seconds;

/// The sample whose wall time is the case's median (the lower one for an even count):
/// its split stands for the case.
fn median_sample(case: &CaseResult) -> Option<&Sample> {
    let mut samples: Vec<&Sample> = case.samples.iter().collect();
    samples.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
    samples.get(samples.len().saturating_sub(1) / 2).copied()
}

/// Every miss explanation of a case's samples, counted together.
fn all_misses(case: &CaseResult) -> MissExplanations {
    MissExplanations::merge(case.samples.iter().filter_map(|s| s.explanations.as_ref()))
}

/// One line per case with a time split: "warm 4.28 s, of which ...; floor ..." and, for
/// cases with misses, their top reasons.
pub fn lines(results: &Results) -> Vec<String> {
    let mut out = Vec::new();
    for case in results.cases.iter().filter(|c| c.outcome == Outcome::Ok) {
        let Some(sample) = median_sample(case) else {
            continue;
        };
        let Some(split) = &sample.time_split else {
            continue;
        };
        let label = format!(
            "{} {}",
            results.case_title(case.key(), &case.parameters),
            case.scenario
        );
        let mut line = time_line(&label, split, sample.transfer_floor.as_ref());
        let misses = all_misses(case);
        if misses.misses > 0 {
            let _ = write!(line, " Misses: {}.", misses.top_reasons(3));
        }
        out.push(line);
    }
    out
}

/// One line for a report: `warm 4.28 s: largest phase execution 1.20 s; 2.90 s Bazel
/// start-up and analysis; 300 ms transfer; transfer floor 50.0 ms.`
pub fn time_line(label: &str, split: &TimeSplit, floor: Option<&TransferFloor>) -> String {
    let (setup_s, setup) = split.setup();
    let mut parts = Vec::new();
    if let Some((name, s)) = split.largest() {
        parts.push(format!("largest phase {name} {}", seconds(s)));
    }
    // Nix's setup is a phase of its own: said once, as the largest, when it is.
    if split.largest().is_none_or(|(_, s)| s != setup_s) {
        parts.push(format!("{} {setup}", seconds(setup_s)));
    }
    parts.push(format!("{} transfer", seconds(split.transfer_s())));
    if let Some(floor) = floor {
        parts.push(format!("transfer floor {}", seconds(floor.floor_s)));
    }
    format!("{label} {}: {}.", seconds(split.wall_s), parts.join("; "))
}

/// The colour of a phase in the stacked bars: one per phase, so a legend that lists Bazel's
/// and Nix's phases together names each colour once.
fn colour(phase: Phase) -> &'static str {
    match phase {
        Phase::Startup => "#8c959f",
        Phase::LoadingAnalysis => "#bf8700",
        Phase::Execution => "#0969da",
        Phase::Finish => "#1b7c83",
        Phase::Evaluation => "#bf3989",
        Phase::NarinfoQueries => "#8250df",
        Phase::Downloads => "#2da44e",
        Phase::Builds => "#953800",
    }
}

const BAR_W: f64 = 420.0;
const LABEL_W: f64 = 60.0;
const ROW_H: f64 = 26.0;

/// One stacked bar per scenario of a repo, system and lane: each phase a segment, "other"
/// hatched grey, all scaled to the slowest scenario.
fn stacked(rows: &[(String, &TimeSplit)]) -> String {
    let longest = rows
        .iter()
        .map(|(_, s)| s.wall_s)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let scale = (BAR_W - LABEL_W - 70.0) / longest;
    let mut svg = format!(
        "<svg width=\"{BAR_W}\" height=\"{:.0}\" role=\"img\">",
        ROW_H * rows.len() as f64 + 4.0
    );
    for (i, (label, split)) in rows.iter().enumerate() {
        let y = 4.0 + ROW_H * i as f64;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{:.1}\">{}</text>",
            y + 13.0,
            esc(label)
        );
        let mut x = LABEL_W;
        let segments = split
            .phases
            .iter()
            .map(|p| (p.phase.describe(), colour(p.phase), p.seconds))
            .chain(std::iter::once(("other", "#d0d7de", split.other_s)));
        for (name, fill, s) in segments.filter(|(_, _, s)| *s > 0.0) {
            let w = s * scale;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{fill}\"><title>{name}: {}</title></rect>",
                seconds(s)
            );
            x += w;
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 4.0,
            y + 13.0,
            seconds(split.wall_s)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The legend of the stacked bars, for the phases that occur.
fn legend(results: &Results) -> String {
    let mut phases: Vec<Phase> = Vec::new();
    for s in results.cases.iter().flat_map(|c| &c.samples) {
        for p in s.time_split.iter().flat_map(|t| &t.phases) {
            if !phases.contains(&p.phase) {
                phases.push(p.phase);
            }
        }
    }
    let mut out = String::from("<p class=\"note\">");
    for phase in phases {
        let _ = write!(
            out,
            "<span class=\"key\"><span style=\"color:{}\">&#9632;</span> {}</span> ",
            colour(phase),
            esc(phase.describe())
        );
    }
    out.push_str(
        "<span class=\"key\"><span style=\"color:#d0d7de\">&#9632;</span> other (in no phase the tool's log names)</span></p>",
    );
    out
}

/// The HTML section: a stacked bar chart per repo, system and lane, then the lines.
pub fn html(results: &Results) -> String {
    let mut groups: Vec<(String, Vec<(String, &TimeSplit)>)> = Vec::new();
    for case in results.cases.iter().filter(|c| c.outcome == Outcome::Ok) {
        let Some(split) = median_sample(case).and_then(|s| s.time_split.as_ref()) else {
            continue;
        };
        let key = results.case_title(case.key(), &case.parameters);
        let row = (case.scenario.to_string(), split);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h3>Where the time went</h3><p class=\"note\">Each bar is a case's median sample split into the phases the tool's own log shows (Bazel's JSON trace profile; Nix's log, timed as its lines arrived); the grey rest is in no phase.</p>");
    out.push_str(&legend(results));
    out.push_str("<div class=\"plots\">\n");
    for (key, rows) in &groups {
        let _ = writeln!(
            out,
            "<figure><figcaption>{}</figcaption>{}</figure>",
            esc(key),
            stacked(rows)
        );
    }
    out.push_str("</div>\n<ul>\n");
    for line in lines(results) {
        let _ = writeln!(out, "<li>{}</li>", esc(&line));
    }
    out.push_str("</ul>\n");
    out
}

/// The Markdown section: the lines, as a list.
pub fn markdown(results: &Results) -> String {
    let lines = lines(results);
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n### Where the time went\n\n");
    for line in lines {
        let _ = writeln!(out, "- {}", super::markdown::escape(&line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::explain::{CacheLink, MissExplanation, MissReason, PhaseTime};

    fn split(wall: f64, phases: &[(Phase, f64)]) -> TimeSplit {
        TimeSplit::from_phases(
            wall,
            phases
                .iter()
                .map(|&(phase, seconds)| PhaseTime { phase, seconds })
                .collect(),
        )
    }

    #[test]
    fn the_median_sample_speaks_for_the_case_with_its_misses() {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let warm = results
            .cases
            .iter_mut()
            .find(|c| c.scenario == crate::plan::Scenario::Warm)
            .unwrap();
        for (i, s) in warm.samples.iter_mut().enumerate() {
            s.wall_s = 1.0 + i as f64;
            s.time_split = Some(split(
                s.wall_s,
                &[(Phase::Evaluation, 0.5), (Phase::Downloads, 0.25)],
            ));
        }
        warm.samples[0].explanations = Some(MissExplanations::collect([MissExplanation {
            item: "/nix/store/x-unit0.drv".into(),
            mnemonic: None,
            reason: MissReason::NoNarinfo,
            differences: None,
            queried: vec![],
        }]));
        let lines = lines(&results);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let median = (warm_count(&results) - 1) / 2;
        assert!(
            lines[0].starts_with(&format!(
                "fixture-c-dag nix host warm {}",
                seconds(1.0 + median as f64)
            )),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("Misses: ") && lines[0].contains("no narinfo"),
            "{lines:?}"
        );
        let page = html(&results);
        assert!(
            page.contains("<svg") && page.contains("downloads"),
            "{page}"
        );
    }

    #[test]
    fn every_phase_has_its_own_colour() {
        let phases = [
            Phase::Startup,
            Phase::LoadingAnalysis,
            Phase::Execution,
            Phase::Finish,
            Phase::Evaluation,
            Phase::NarinfoQueries,
            Phase::Downloads,
            Phase::Builds,
        ];
        let mut colours: Vec<&str> = phases.iter().map(|p| colour(*p)).collect();
        colours.push("#d0d7de"); // other
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), phases.len() + 1);
    }

    fn warm_count(results: &Results) -> usize {
        results
            .cases
            .iter()
            .find(|c| c.scenario == crate::plan::Scenario::Warm)
            .unwrap()
            .samples
            .len()
    }

    #[test]
    fn the_report_line_names_setup_transfer_and_floor() {
        let mut split = TimeSplit::from_phases(
            4.28,
            vec![
                PhaseTime {
                    phase: Phase::Startup,
                    seconds: 1.9,
                },
                PhaseTime {
                    phase: Phase::LoadingAnalysis,
                    seconds: 1.0,
                },
                PhaseTime {
                    phase: Phase::Execution,
                    seconds: 1.2,
                },
            ],
        );
        split.remote_cache_s = Some(0.3);
        assert!((split.other_s - 0.18).abs() < 1e-9);
        assert!((split.accounted_s() - 4.28).abs() < 1e-9);
        let link = CacheLink {
            throughput_bytes_per_s: 1e9,
            latency_s: 0.001,
            probe_bytes: 1 << 20,
        };
        let floor = TransferFloor::compute(0, 50, 1, link, 4.28).unwrap();
        assert_eq!(
            time_line("warm", &split, Some(&floor)),
            "warm 4.28 s: largest phase client and server start-up 1.90 s; 2.90 s Bazel start-up and analysis; 300 ms transfer; transfer floor 50.0 ms."
        );
        let nix = TimeSplit::from_phases(
            0.1,
            vec![
                PhaseTime {
                    phase: Phase::Evaluation,
                    seconds: 0.06,
                },
                PhaseTime {
                    phase: Phase::NarinfoQueries,
                    seconds: 0.01,
                },
                PhaseTime {
                    phase: Phase::Downloads,
                    seconds: 0.02,
                },
            ],
        );
        assert_eq!(
            time_line("warm", &nix, None),
            "warm 100 ms: largest phase start-up and evaluation 60.0 ms; 30.0 ms transfer."
        );
    }
}
