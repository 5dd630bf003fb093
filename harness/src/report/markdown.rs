//! The Markdown report: fits a GitHub job summary and a PR comment. Pure: results in, text out.

use std::fmt::Write;

use crate::report::tables::{self, cells, seconds, Table};
use crate::results::{Outcome, Results};

/// One report for several results files (each under its own heading).
pub fn render(files: &[(String, Results)]) -> String {
    let mut out = String::from("# flywheel-bench report\n");
    for (label, results) in files {
        let _ = writeln!(out, "\n## {}\n", escape(label));
        out.push_str(&run_facts(results));
        for table in tables::all(results) {
            let _ = write!(
                out,
                "\n### {}\n\n_{}_\n\n{}",
                table.title,
                table.note,
                pipe_table(&table)
            );
        }
        out.push_str(&super::time::markdown(results));
        out.push_str(&case_details(results));
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
                "{}: {} ({} cores), {:.1} GiB, {}, kernel {}",
                env.hostname,
                env.cpu_model,
                env.cores,
                env.memory_bytes as f64 / f64::from(1u32 << 30),
                env.os,
                env.kernel
            ),
        ],
        vec!["tools".into(), tools.join("; ")],
        vec![
            "settings".into(),
            format!(
                "{} samples after {} warm-ups; build timeout {:.0} s, fallback timeout {:.0} s",
                r.settings.samples,
                r.settings.warmups,
                r.settings.timeout_s,
                r.settings.fallback_timeout_s
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

fn case_details(r: &Results) -> String {
    let mut out = String::from("\n### Cases\n");
    for c in &r.cases {
        let headline = match (c.outcome, &c.stats) {
            (Outcome::Ok, Some(s)) => {
                format!("median {} over {} samples", seconds(s.median_s), s.n)
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

fn pipe_table(table: &Table) -> String {
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

    #[test]
    fn cells_are_escaped() {
        assert_eq!(escape("a|b\n<c>"), "a\\|b<br>&lt;c&gt;");
        assert_eq!(escape("say \"hi\""), "say &quot;hi&quot;");
    }
}
