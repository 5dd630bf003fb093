//! The coverage document as Markdown, for a job summary: per repo what share of what a
//! warm build needs the team cache holds, and the paths (or actions) it lacks. Pure.

use std::fmt::Write;

use crate::report::escape_html;
use crate::results::coverage::{ClosureShape, Coverage, PathSource, MAX_LISTED};
use crate::stats::numbers;

/// Missing paths shown per repo; the JSON lists up to `MAX_LISTED`.
const SHOWN: usize = 30;

pub fn render(doc: &Coverage) -> String {
    let mut out = String::from("## Cache coverage\n\n");
    if let Some(cache) = &doc.nix_cache {
        let _ = writeln!(out, "Nix cache: `{cache}`.");
        if doc.upstream.is_empty() {
            out.push_str(
                "No upstream cache was given: every path the team cache lacks counts as missing.\n",
            );
        } else {
            let list: Vec<String> = doc.upstream.iter().map(|u| format!("`{u}`")).collect();
            let _ = writeln!(
                out,
                "Upstream: {}. Paths only they serve are counted as upstream, not as the team cache's misses.",
                list.join(", ")
            );
        }
        out.push_str(
            "\n\"Needed\" is what a warm `nix build` of the targets needs by Nix's own rule: a target the cache holds is fetched with everything it references; one it lacks is built, which needs its inputs, and so on down. \"Closure\" counts every output of every derivation, intermediate ones included.\n\n",
        );
        out.push_str("| repo | needed | in the cache | upstream | missing | unknown | coverage | closure outputs in the cache |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for repo in &doc.repos {
            if let Some(n) = &repo.nix {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} of {} |",
                    escape_html(&repo.repo),
                    n.needed,
                    n.present,
                    n.upstream,
                    n.missing,
                    n.unknown,
                    numbers::percent(n.percent / 100.0),
                    n.closure_present,
                    n.closure_outputs
                );
            }
        }
        for repo in &doc.repos {
            if let Some(shape) = repo.nix.as_ref().and_then(|n| n.shape.as_ref()) {
                let _ = writeln!(out, "\n{}", shape_line(&repo.repo, shape));
            }
        }
        for repo in &doc.repos {
            let Some(n) = &repo.nix else { continue };
            if n.missing_paths.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n### {}: {} missing {} (a warm build would build them)\n",
                escape_html(&repo.repo),
                n.missing,
                numbers::plural(n.missing, "path")
            );
            out.push_str("| derivation | store path |\n| --- | --- |\n");
            for m in n.missing_paths.iter().take(SHOWN) {
                let _ = writeln!(out, "| {} | `{}` |", escape_html(&m.name), m.path);
            }
            let more = n.missing as usize - n.missing_paths.len().min(SHOWN);
            if more > 0 {
                let _ = writeln!(
                    out,
                    "\n…and {more} more (the JSON lists up to {MAX_LISTED})."
                );
            }
        }
        for repo in &doc.repos {
            for error in repo.nix.iter().flat_map(|n| &n.errors) {
                let _ = writeln!(
                    out,
                    "\n{}: a narinfo request failed: {}",
                    escape_html(&repo.repo),
                    escape_html(error)
                );
            }
        }
    }
    let bazel: Vec<_> = doc
        .repos
        .iter()
        .filter_map(|r| r.bazel.as_ref().map(|b| (r, b)))
        .collect();
    if !bazel.is_empty() {
        out.push_str("\n### Bazel action cache\n\n");
        if let Some(cache) = &doc.bazel_cache {
            let _ = writeln!(out, "Bazel cache: `{cache}`.\n");
        }
        for (repo, b) in bazel {
            let name = escape_html(&repo.repo);
            match (&b.reason, b.percent) {
                (Some(reason), _) => {
                    let _ = writeln!(out, "- {name}: not measured: {}", escape_html(reason));
                }
                (None, Some(percent)) => {
                    let _ = writeln!(
                        out,
                        "- {name}: {} of {} in the cache ({}), {} missing, {} unknown",
                        b.present,
                        numbers::count(b.actions, "action"),
                        numbers::percent(percent / 100.0),
                        b.missing,
                        b.unknown
                    );
                    for a in b.missing_actions.iter().take(SHOWN) {
                        let _ = writeln!(
                            out,
                            "  - missing: {} `{}` ({})",
                            escape_html(&a.mnemonic),
                            a.output.as_deref().unwrap_or("?"),
                            a.digest
                        );
                    }
                }
                (None, None) => {}
            }
        }
    }
    for repo in &doc.repos {
        for error in &repo.errors {
            let _ = writeln!(
                out,
                "\n{}: not measured: {}",
                escape_html(&repo.repo),
                escape_html(error)
            );
        }
    }
    out
}

/// One sentence on a closure's shape: paths, NAR bytes by source, references.
fn shape_line(repo: &str, shape: &ClosureShape) -> String {
    let bytes_of = |source: PathSource| -> u64 {
        shape
            .paths
            .iter()
            .filter(|p| p.source == source)
            .filter_map(|p| p.nar_size)
            .sum()
    };
    let count_of = |source: PathSource| shape.paths.iter().filter(|p| p.source == source).count();
    let references: usize = shape.paths.iter().map(|p| p.references.len()).sum();
    format!(
        "{}: the closure a warm build needs is {} ({} of NARs) with {}: team cache {} ({}), upstream {} ({}), missing {}, unknown {}. `flywheel-bench model` makes a bench repo of this shape.",
        escape_html(repo),
        numbers::count_of(shape.paths.len(), "path"),
        numbers::bytes(bytes_of(PathSource::Team) + bytes_of(PathSource::Upstream)),
        numbers::count_of(references, "reference"),
        count_of(PathSource::Team),
        numbers::bytes(bytes_of(PathSource::Team)),
        count_of(PathSource::Upstream),
        numbers::bytes(bytes_of(PathSource::Upstream)),
        count_of(PathSource::Missing),
        count_of(PathSource::Unknown),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::coverage::{
        BazelCoverage, ClosurePath, MissingPath, NixCoverage, RepoCoverage, COVERAGE_SCHEMA_VERSION,
    };

    #[test]
    fn shows_the_share_the_missing_paths_and_why_bazel_was_not_measured() {
        let doc = Coverage {
            schema_version: COVERAGE_SCHEMA_VERSION,
            harness_version: "0".into(),
            generated_at: "2026-11-23T00:00:00Z".into(),
            command: vec![],
            profile: "p".into(),
            nix_cache: Some("https://attic.example.com/main".into()),
            upstream: vec![],
            bazel_cache: None,
            repos: vec![RepoCoverage {
                repo: "fixture-c-dag".into(),
                parameters: Default::default(),
                nix: Some(NixCoverage {
                    needed: 3,
                    present: 2,
                    upstream: 0,
                    missing: 1,
                    unknown: 0,
                    percent: 200.0 / 3.0,
                    closure_outputs: 21,
                    closure_present: 2,
                    missing_paths: vec![MissingPath {
                        name: "c-dag-20".into(),
                        path: "/nix/store/abc-c-dag-20".into(),
                        derivation: "/nix/store/def-c-dag-20.drv".into(),
                    }],
                    errors: vec![],
                    shape: Some(ClosureShape {
                        provenance: None,
                        roots: vec!["/nix/store/abc-c-dag-20".into()],
                        paths: vec![
                            ClosurePath {
                                name: "c-dag-20".into(),
                                path: "/nix/store/abc-c-dag-20".into(),
                                nar_size: None,
                                references: vec!["/nix/store/u0-unit0".into()],
                                source: PathSource::Missing,
                            },
                            ClosurePath {
                                name: "unit0".into(),
                                path: "/nix/store/u0-unit0".into(),
                                nar_size: Some(2 << 20),
                                references: vec![],
                                source: PathSource::Team,
                            },
                        ],
                    }),
                }),
                bazel: Some(BazelCoverage::not_measured(
                    "the execution log has no action digests",
                )),
                errors: vec![],
            }],
        };
        let text = render(&doc);
        assert!(
            text.contains("| fixture-c-dag | 3 | 2 | 0 | 1 | 0 | 66.7% | 2 of 21 |"),
            "{text}"
        );
        assert!(
            text.contains("### fixture-c-dag: 1 missing path (a warm build would build them)"),
            "{text}"
        );
        assert!(
            text.contains("| c-dag-20 | `/nix/store/abc-c-dag-20` |"),
            "{text}"
        );
        assert!(
            text.contains("fixture-c-dag: the closure a warm build needs is 2 paths (2.00 MiB of NARs) with 1 reference: team cache 1 (2.00 MiB), upstream 0 (0 B), missing 1, unknown 0."),
            "{text}"
        );
        assert!(
            text.contains("every path the team cache lacks counts as missing"),
            "{text}"
        );
        assert!(
            text.contains("- fixture-c-dag: not measured: the execution log has no action digests"),
            "{text}"
        );
    }
}
