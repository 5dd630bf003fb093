//! Reports: results in, text out. Pure.

pub mod compare;
pub mod export;
pub mod growth;
pub mod html;
pub mod markdown;
pub mod matrix;
pub mod summary;
pub mod tables;

/// Text made safe inside HTML (and GitHub Markdown, which renders HTML tags).
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod snapshots {
    //! Snapshot tests of the reports, rendered from a real results file with every number
    //! (timings, counts), hash and temporary path redacted, so they stay stable across runs.

    use crate::results::Results;
    use std::path::Path;

    fn redact(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
                {
                    chars.next();
                }
                out.push('N');
            } else if c.is_ascii_alphabetic() {
                // Words with digits in them are hashes, ports or temporary names.
                let mut word = String::from(c);
                while let Some(&d) = chars
                    .peek()
                    .filter(|d| d.is_ascii_alphanumeric() || **d == '_')
                {
                    word.push(d);
                    chars.next();
                }
                out.push_str(if word.chars().any(|d| d.is_ascii_digit()) {
                    "X"
                } else {
                    &word
                });
            } else {
                out.push(c);
            }
        }
        out
    }

    fn check(name: &str, rendered: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        let redacted = redact(rendered);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &redacted).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == redacted,
            "{} differs from the rendered report; if the change is intended, run UPDATE_SNAPSHOTS=1 cargo test and review the diff",
            path.display()
        );
    }

    fn fixture() -> Vec<(String, Results)> {
        let mut results: Results =
            serde_json::from_str(&crate::tools::fixture("results/fallback-host.json")).unwrap();
        crate::results::derive(&mut results);
        vec![("fallback-host.json".into(), results)]
    }

    #[test]
    fn markdown_report() {
        check("report.md", &super::markdown::render(&fixture()));
    }

    #[test]
    fn html_report() {
        check("report.html", &super::html::render(&fixture()));
    }

    #[test]
    fn redaction_keeps_words_and_hides_numbers_and_hashes() {
        assert_eq!(
            redact("median 10.4 s at /nix/store/5l8j9ml3-c-dag-20"),
            "median N s at /nix/store/N-c-dag-N"
        );
    }
}
