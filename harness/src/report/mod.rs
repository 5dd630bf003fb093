//! Reports: results in, text out. Pure.

pub mod compare;
mod compression;
pub mod coverage;
pub mod export;
pub mod growth;
pub mod history;
pub mod html;
pub mod markdown;
pub mod matrix;
pub mod summary;
pub mod tables;
pub mod time;

/// Text made safe inside HTML (and GitHub Markdown, which renders HTML tags).
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Text for HTML, with the inline code that Markdown writes in backticks as `<code>`: the
/// same words serve both reports, and neither shows the other's markup.
pub fn inline_html(text: &str) -> String {
    let mut out = String::new();
    let mut parts = text.split('`').peekable();
    let mut code = false;
    while let Some(part) = parts.next() {
        // An unpaired last backtick stays a backtick.
        if code && parts.peek().is_none() && !text.ends_with('`') {
            out.push('`');
            out.push_str(&escape_html(part));
            break;
        }
        if code {
            out.push_str(&format!("<code>{}</code>", escape_html(part)));
        } else {
            out.push_str(&escape_html(part));
        }
        code = !code;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn inline_code_becomes_html_code() {
        assert_eq!(
            super::inline_html("add warm-ups (`--warmups N`) <now>"),
            "add warm-ups (<code>--warmups N</code>) &lt;now&gt;"
        );
        assert_eq!(super::inline_html("a `b"), "a `b");
        assert_eq!(super::inline_html("plain"), "plain");
    }
}

#[cfg(test)]
mod snapshots {
    //! Snapshot tests of every renderer on a committed results file. The input is fixed,
    //! so every number is checked as it renders; only store hashes and temporary folder
    //! names are redacted, so a re-recorded fixture does not churn them. Review changes
    //! with `cargo insta review` (or `INSTA_UPDATE=always` and `git diff`).

    use crate::results::Results;

    fn fixture() -> Vec<(String, Results)> {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/fallback-host.json")).unwrap();
        crate::results::derive(&mut results);
        vec![("fallback-host.json".into(), results)]
    }

    /// A committed evidence file, loaded as `report` loads it.
    fn evidence(name: &str) -> (String, Results) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/evidence")
            .join(name);
        (
            format!("results/evidence/{name}"),
            crate::results::load(&path).unwrap(),
        )
    }

    macro_rules! snapshot {
        ($name:literal, $rendered:expr) => {
            insta::with_settings!({filters => vec![
                (r"/nix/store/[0-9a-z]{32}-", "/nix/store/[hash]-"),
                (r"/tmp/[^/ ]+", "/tmp/[tmp]"),
            ]}, {
                insta::assert_snapshot!($name, $rendered);
            })
        };
    }

    #[test]
    fn markdown_report() {
        snapshot!(
            "report.md",
            super::markdown::render(&fixture(), super::markdown::Detail::Full)
        );
    }

    #[test]
    fn html_report() {
        snapshot!("report.html", super::html::render(&fixture()));
    }

    #[test]
    fn terminal_summary() {
        snapshot!("summary.txt", super::summary::render(&fixture()[0].1));
    }

    // The default bench as each renderer writes it: every number through the one formatter
    // (`stats::numbers`), so the same quantity reads the same in all of them.

    #[test]
    fn default_bench_console_summary() {
        let (_, results) = evidence("default-bench-host.json");
        snapshot!("default_bench.txt", super::summary::render(&results));
    }

    #[test]
    fn default_bench_markdown_summary() {
        let files = [evidence("default-bench-host.json")];
        snapshot!(
            "default_bench_summary.md",
            super::markdown::render(&files, super::markdown::Detail::Summary)
        );
    }

    #[test]
    fn default_bench_html_fragments() {
        let (_, results) = evidence("default-bench-host.json");
        let fragments = [
            super::html::comparison_plots(&results),
            super::time::html(&results),
            super::html::distribution_plots(&results),
        ]
        .join("\n");
        snapshot!("default_bench_fragments.html", fragments);
    }

    #[test]
    fn compare_of_two_evidence_files() {
        let (_, baseline) = evidence("nix-fixture-c-dag-host.json");
        let (_, new) = evidence("default-bench-host.json");
        // What the manifest's defaults fill in for parameters the older file predates.
        let defaults = super::compare::Defaults::from([(
            "fixture-c-dag".to_string(),
            [
                "toolchain",
                "refs",
                "incompressible_mb",
                "compressible_mb",
                "timestamp",
            ]
            .into_iter()
            .map(|key| (key.to_string(), crate::plan::ParamValue::Int(0)))
            .collect(),
        )]);
        let c = super::compare::compare(&baseline, &new, 0.10, &defaults).unwrap();
        snapshot!("compare.md", super::compare::render_markdown(&c));
    }

    /// The cold-vs-warm table of a run that also filled the cache: a `fill` case beside the
    /// cold and warm ones (each sample a cold build plus half as long again to fill).
    #[test]
    fn cold_vs_warm_with_the_fill_penalty() {
        use crate::results::{CacheFill, FillMethod, Scenario};
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let mut fill = results
            .cases
            .iter()
            .find(|c| c.scenario == Scenario::Cold)
            .unwrap()
            .clone();
        fill.scenario = Scenario::Fill;
        for s in &mut fill.samples {
            s.fill = Some(CacheFill {
                closure_paths: Some(22),
                uploaded_paths: Some(22),
                uploaded_bytes: Some(300 << 20),
                stored_bytes: Some(120 << 20),
                ..CacheFill::timed(FillMethod::NixCopy, s.wall_s / 2.0)
            });
        }
        results.cases.push(fill);
        crate::results::derive(&mut results);
        assert_eq!(results.fills.len(), 1);
        let table = super::tables::comparisons(&results);
        snapshot!(
            "cold_vs_warm_fill.md",
            format!(
                "{}\n{}",
                super::markdown::pipe_table(&table),
                super::html::html_table(&table)
            )
        );
    }

    /// A compression sweep of the fixture: one cold case (at the first point), warm at
    /// none, xz and zstd, each with its bytes, transfer floor and fill, and a fill case at
    /// xz; the points are names, so no growth line is fitted through them.
    #[test]
    fn a_compression_sweep_is_a_table_per_compression_not_a_growth_fit() {
        use crate::results::explain::{CacheLink, TransferFloor};
        use crate::results::{CacheFill, Compression, FillMethod, ParamValue, Scenario};
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/nix-fixture.json")).unwrap();
        let at = |case: &crate::results::CaseResult, compression: Compression| {
            let mut case = case.clone();
            case.parameters.insert(
                Compression::PARAMETER.into(),
                ParamValue::Str(compression.name().into()),
            );
            case
        };
        let pick = |scenario| {
            results
                .cases
                .iter()
                .find(|c| c.scenario == scenario)
                .unwrap()
                .clone()
        };
        let (cold, warm) = (pick(Scenario::Cold), pick(Scenario::Warm));
        let link = CacheLink {
            throughput_bytes_per_s: 1e9,
            latency_s: 100e-6,
            probe_bytes: 8 << 20,
        };
        let mut cases = vec![at(&cold, Compression::None)];
        for (compression, wall, bytes, fill) in [
            (Compression::None, 3.0, 300u64 << 20, 1.5),
            (Compression::Xz, 7.0, 240 << 20, 103.0),
            (Compression::Zstd, 2.5, 246 << 20, 2.5),
        ] {
            let mut case = at(&warm, compression);
            for (i, s) in case.samples.iter_mut().enumerate() {
                s.wall_s = wall + 0.1 * i as f64;
                s.downloaded_bytes = Some(bytes);
                s.transfer_floor = TransferFloor::compute(bytes, 600, 25, link, s.wall_s).ok();
            }
            if let Some(cache) = case.cache.as_mut() {
                cache.compression = Some(compression);
            }
            case.cache_fill = Some(CacheFill::timed(FillMethod::NixCopy, fill));
            cases.push(case);
        }
        let mut fill = at(&cold, Compression::Xz);
        fill.scenario = Scenario::Fill;
        for s in &mut fill.samples {
            s.fill = Some(CacheFill::timed(FillMethod::NixCopy, s.wall_s * 4.0));
        }
        cases.push(fill);
        results.cases = cases;
        crate::results::derive(&mut results);
        assert!(
            results.growth.is_empty(),
            "no line through none, xz and zstd"
        );
        assert_eq!(
            results.fills.len(),
            1,
            "xz's fill against the one cold case"
        );
        let table = super::compression::table(&results).unwrap();
        assert_eq!(table.rows.len(), 3);
        let markdown = super::markdown::render(
            &[("compression.json".into(), results.clone())],
            super::markdown::Detail::Full,
        );
        assert!(markdown.contains("Compression of the cache"), "{markdown}");
        snapshot!(
            "compression_sweep.md",
            format!(
                "{}\n{}",
                super::markdown::pipe_table(&table),
                super::html::html_table(&table)
            )
        );
    }

    #[test]
    fn numbers_across_magnitudes() {
        use crate::stats::numbers::*;
        let mut out = String::new();
        for s in [
            0.0, 17.5e-6, 75e-6, 0.0051, 0.0645, 0.207, 1.0, 4.4, 12.94, 754.2, 1800.0,
        ] {
            out.push_str(&format!("seconds({s}) = {}\n", seconds(s)));
        }
        for r in [0.953, 1.0, 1.98, 73.3, 199.28, 1234.0] {
            out.push_str(&format!("ratio({r}) = {}\n", ratio(r)));
        }
        for f in [0.0, 0.5, 2.0 / 3.0, 0.9, 1.0] {
            out.push_str(&format!("percent({f}) = {}\n", percent(f)));
        }
        for r in [0.9, 0.996, 1.0, 1.0004, 1.093, 2.5] {
            out.push_str(&format!("change({r}) = {}\n", change(r)));
        }
        for b in [0, 512, 10 << 20, 25_232_932_864] {
            out.push_str(&format!("bytes({b}) = {}\n", bytes(b)));
        }
        for n in [0, 1, 5] {
            out.push_str(&format!(
                "count({n}) = {}, {}\n",
                count_of(n, "sample"),
                count_of(n, "warm-up")
            ));
        }
        snapshot!("numbers.txt", out);
    }
}
