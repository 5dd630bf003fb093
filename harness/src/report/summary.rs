//! The terminal summary printed at the end of a run: the report's tables, aligned.

use crate::report::tables::{self, Table};
use crate::results::Results;

/// The overall result on the first line, then every table.
pub fn render(results: &Results) -> String {
    let headline = format!("{}\n", tables::headline([results]));
    let tables = tables::all(results);
    if tables.is_empty() {
        return headline + "No cold/warm comparison, fallback row or verdict to show (each case's median is in the lines above and in the results file).\n";
    }
    headline + "\n" + &tables.iter().map(aligned).collect::<Vec<_>>().join("\n")
}

fn aligned(table: &Table) -> String {
    let header: Vec<String> = table.headers.iter().map(|h| h.to_string()).collect();
    let body = table
        .rows
        .iter()
        .map(|row| row.iter().map(|c| c.text.clone()).collect());
    let rows: Vec<Vec<String>> = std::iter::once(header.clone()).chain(body).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{}: {}\n", table.title, table.note);
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_real_results_file() {
        let results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let text = render(&results);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "3 of 3 cases ok, 0 verdicts failed", "{text}");
        assert!(lines[2].starts_with("Cold vs warm: Medians"), "{text}");
        assert!(
            lines[3].starts_with("repo") && lines[3].contains("speedup [95% CI]"),
            "{text}"
        );
        assert!(
            lines[4].starts_with("fixture-c-dag") && lines[4].contains("100%"),
            "{text}"
        );
    }
}
