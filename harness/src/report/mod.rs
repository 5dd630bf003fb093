//! Reports: results in, text out. Pure.

pub mod compare;
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
        snapshot!("report.md", super::markdown::render(&fixture()));
    }

    #[test]
    fn html_report() {
        snapshot!("report.html", super::html::render(&fixture()));
    }

    #[test]
    fn terminal_summary() {
        snapshot!("summary.txt", super::summary::render(&fixture()[0].1));
    }
}
