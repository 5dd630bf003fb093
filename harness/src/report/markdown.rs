//! The Markdown report: fits a GitHub job summary and a PR comment. Pure: results in, text out.

use std::fmt::Write;

use crate::report::tables::{self, cells, Table};
use crate::results::{Outcome, Results};
use crate::stats::numbers::{self, seconds};

/// What a PR comment or a job summary may hold: GitHub refuses 65,536 characters, and the
/// summary keeps a margin for what a workflow adds around it.
pub const SUMMARY_LIMIT: usize = 60_000;

/// How much the Markdown says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything, every sample of every case included.
    Full,
    /// The tables and the time lines, without the per-case sample tables, and never more
    /// than [`SUMMARY_LIMIT`] characters: what does not fit is named and left to the HTML.
    Summary,
}

/// One report for several results files (each under its own heading), its first line the
/// overall result.
pub fn render(files: &[(String, Results)], detail: Detail) -> String {
    let mut out = format!(
        "# flywheel-bench report: {}\n",
        tables::headline(files.iter().map(|(_, r)| r))
    );
    let mut left_out = Vec::new();
    for (label, results) in files {
        let mut section = format!(
            "\n## {}\n\n`{}`: {}.\n\n",
            escape(tables::file_title(label)),
            label.replace('`', "'"),
            tables::headline([results])
        );
        section.push_str(&run_facts(results));
        for table in tables::all(results) {
            let _ = write!(
                section,
                "\n### {}\n\n_{}_\n\n{}",
                table.title,
                table.note,
                pipe_table(&table)
            );
        }
        section.push_str(&super::time::markdown(results));
        match detail {
            Detail::Full => section.push_str(&case_details(results)),
            Detail::Summary => section.push_str(
                "\nEvery case's samples, commands and plots are in the HTML report (`report --html FILE`).\n",
            ),
        }
        // Room is kept for the closing note, so the summary never passes the limit.
        if detail == Detail::Summary && out.len() + section.len() + 1_000 > SUMMARY_LIMIT {
            left_out.push(tables::file_title(label).to_string());
            continue;
        }
        out.push_str(&section);
    }
    if !left_out.is_empty() {
        const NAMED: usize = 10;
        let mut names = escape(&left_out[..left_out.len().min(NAMED)].join(", "));
        if left_out.len() > NAMED {
            let _ = write!(names, " and {} more", left_out.len() - NAMED);
        }
        let _ = write!(
            out,
            "\n**Left out to stay under {SUMMARY_LIMIT} characters:** {} ({names}); see the HTML report or the full Markdown.\n",
            numbers::count_of(left_out.len(), "file"),
        );
    }
    out
}

fn run_facts(r: &Results) -> String {
    let env = &r.environment;
    let tools: Vec<String> = env
        .tools
        .iter()
        .map(|(name, t)| format!("{name}: {}", t.version))
        .collect();
    let git = r
        .git
        .as_ref()
        .map_or("not a git checkout".to_string(), |g| g.describe());
    let mut rows = vec![
        vec![
            "started".to_string(),
            format!(
                "{} (finished {})",
                r.started_at,
                r.finished_at
                    .as_deref()
                    .unwrap_or("no: interrupted or still running")
            ),
        ],
        vec!["harness".into(), format!("{} at {git}", r.harness_version)],
        vec![
            "host".into(),
            format!(
                "{}: {} ({}), {}, {}, kernel {}",
                env.hostname,
                env.cpu_model,
                numbers::count_of(env.cores, "core"),
                numbers::bytes(env.memory_bytes),
                env.os,
                env.kernel
            ),
        ],
        vec!["tools".into(), tools.join("; ")],
        vec!["machine".into(), machine(r)],
        vec![
            "settings".into(),
            format!(
                "{} after {}, {}; build timeout {}, fallback timeout {}",
                numbers::count_of(r.settings.samples, "sample"),
                numbers::count_of(r.settings.warmups, "warm-up"),
                r.settings
                    .order
                    .map_or("sequential (not recorded)", |o| o.name()),
                seconds(r.settings.timeout_s),
                seconds(r.settings.fallback_timeout_s)
            ),
        ],
    ];
    // What a reviewer should know: how the run measured, and what loading the file changed.
    rows.extend(r.notes.iter().map(|n| vec!["note".to_string(), n.clone()]));
    pipe_table(&Table {
        title: "",
        note: "",
        headers: vec!["run", ""],
        rows: rows.into_iter().map(cells).collect(),
    })
}

/// The CPU's fingerprint and the speed probe, in one line.
fn machine(r: &Results) -> String {
    let cpu = r.environment.fingerprint.as_ref().map_or_else(
        || "no CPU fingerprint recorded".to_string(),
        |f| {
            let rows: Vec<String> = f
                .rows()
                .into_iter()
                .map(|(what, value)| format!("{what} {value}"))
                .collect();
            rows.join(", ")
        },
    );
    let probe = r.speed_probe.as_ref().map_or_else(
        || "no speed probe".to_string(),
        |p| format!("speed probe {}", p.describe()),
    );
    format!("{cpu}; {probe}")
}

fn case_details(r: &Results) -> String {
    let mut out = String::from("\n### Cases\n");
    for c in &r.cases {
        let headline = match (c.outcome, &c.stats) {
            (Outcome::Ok, Some(s)) => {
                format!(
                    "median {} over {}",
                    seconds(s.median_s),
                    numbers::count_of(s.n, "sample")
                )
            }
            (Outcome::Ok, None) => "no samples".into(),
            (other, _) => other.name().into(),
        };
        let _ = writeln!(
            out,
            "\n<details><summary>{} {}: {headline}</summary>\n",
            escape(&r.case_title(c.key(), &c.parameters)),
            c.scenario
        );
        if let Some(reason) = &c.reason {
            let _ = writeln!(out, "Reason: {}\n", escape(reason));
        }
        if let Some(command) = &c.command {
            let _ = writeln!(out, "Command: `{}`\n", command.replace('`', "'"));
        }
        if let Some(sampling) = c.sampling.as_ref().filter(|_| !c.samples.is_empty()) {
            let _ = writeln!(out, "Sampling: {}\n", sampling.describe());
        }
        let rows = c
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let count = |v: Option<u64>| v.map_or("-".into(), |n| n.to_string());
                cells([
                    (i + 1).to_string(),
                    seconds(s.wall_s),
                    seconds(s.user_s),
                    seconds(s.sys_s),
                    s.exit_code.map_or(
                        if s.timed_out {
                            "timed out".into()
                        } else {
                            "signal".into()
                        },
                        |e| e.to_string(),
                    ),
                    count(s.built.or(s.actions)),
                    count(s.from_cache()),
                    s.retry.as_ref().map_or("-".into(), |r| {
                        format!(
                            "{} ({})",
                            seconds(r.wall_s),
                            r.exit_code
                                .map_or("no exit code".into(), |e| format!("exit {e}"))
                        )
                    }),
                ])
            })
            .collect();
        out.push_str(
            "Samples are numbered from 1 (sample N is `samples[N-1]` in the JSON); wall is the build tool from exec to exit; user and sys as its `cpu_scope` counts.\n\n",
        );
        out.push_str(&pipe_table(&Table {
            title: "",
            note: "",
            headers: vec![
                "sample",
                "wall",
                "user",
                "sys",
                "exit",
                "built / actions",
                "from cache",
                "retry without cache",
            ],
            rows,
        }));
        out.push_str("\n</details>\n");
    }
    out
}

pub(super) fn pipe_table(table: &Table) -> String {
    let mut out = format!("| {} |\n", table.headers.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(table.headers.len()));
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| escape(&c.text)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Table cells cannot hold pipes or line breaks; HTML tags would render.
pub(crate) fn escape(text: &str) -> String {
    super::escape_html(text)
        .replace('|', "\\|")
        .replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence() -> Vec<(String, Results)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/evidence");
        // Evidence beside the results files (a benchmark's output, a compare's) is text.
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| (f.display().to_string(), crate::results::load(f).unwrap()))
            .collect()
    }

    #[test]
    fn the_summary_of_the_evidence_fits_a_pr_comment_and_names_what_it_leaves_out() {
        let files = evidence();
        let full = render(&files, Detail::Full);
        let summary = render(&files, Detail::Summary);
        assert!(
            full.len() > SUMMARY_LIMIT,
            "the full report needs the summary"
        );
        assert!(summary.chars().count() < SUMMARY_LIMIT, "{}", summary.len());
        assert!(summary.starts_with("# flywheel-bench report: "));
        assert!(!summary.contains("<details>"));
        // As the evidence grows, the last files may not fit: each is shown or named.
        let left_out = summary
            .lines()
            .find(|l| l.starts_with("**Left out to stay under"))
            .unwrap_or_default();
        for (label, _) in &files {
            let name = tables::file_title(label);
            assert!(
                summary.contains(&format!("\n## {}\n", escape(name))) || left_out.contains(name),
                "{name} is neither in the summary nor named as left out"
            );
        }
        // Far more than fits: the files left out are named, and the limit holds.
        let many: Vec<(String, Results)> = (0..4)
            .flat_map(|i| {
                files
                    .iter()
                    .map(move |(l, r)| (format!("{i}/{l}"), r.clone()))
            })
            .collect();
        let cut = render(&many, Detail::Summary);
        assert!(cut.chars().count() < SUMMARY_LIMIT, "{}", cut.len());
        assert!(
            cut.contains("**Left out to stay under 60000 characters:**"),
            "{cut}"
        );
    }

    #[test]
    fn cells_are_escaped() {
        assert_eq!(escape("a|b\n<c>"), "a\\|b<br>&lt;c&gt;");
        assert_eq!(escape("say \"hi\""), "say &quot;hi&quot;");
    }
}
