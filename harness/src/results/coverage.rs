//! The coverage document (`flywheel-bench coverage`): how much of each bench repo's Nix
//! closure a cache holds now, and which of a Bazel execution log's actions its action
//! cache holds. Versioned on its own (`COVERAGE_SCHEMA_VERSION`, additive fields), its JSON
//! Schema generated from these types (`results/coverage.schema.json`). Classifying a
//! closure is pure: derivations and the caches' answers in, counts and missing paths out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::results::ParamValue;

pub const COVERAGE_SCHEMA_VERSION: u32 = 1;
/// At most this many missing paths (or actions) are listed per repo; the counts cover all.
pub const MAX_LISTED: usize = 200;
const MAX_ERRORS: usize = 5;

/// One derivation of the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The `.drv` store path.
    pub drv: String,
    /// Its `name` (`env.name`, else from the path).
    pub name: String,
    /// Output name -> store path; absent for floating content-addressed outputs, whose
    /// path is known only once built.
    pub outputs: BTreeMap<String, Option<String>>,
    /// The derivations it builds from, each with the outputs it uses.
    pub input_drvs: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Coverage {
    pub schema_version: u32,
    pub harness_version: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub command: Vec<String>,
    pub profile: String,
    /// The Nix cache asked (its substituter URL, never credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nix_cache: Option<String>,
    /// Caches a warm build also substitutes from (`--upstream`), such as cache.nixos.org.
    /// A path the team cache lacks and one of these serves is counted as `upstream`, not as
    /// the team cache's miss.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// The Bazel cache asked (URL or folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bazel_cache: Option<String>,
    pub repos: Vec<RepoCoverage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RepoCoverage {
    pub repo: String,
    /// The parameters the targets were instantiated with.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nix: Option<NixCoverage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bazel: Option<BazelCoverage>,
    /// Why a part could not be measured (no source, instantiation failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The team cache against what a warm `nix build` of the targets needs, by Nix's own rule:
/// each target output the cache has is fetched with everything it references; one it lacks
/// is built, which needs the outputs its derivation builds from, and so on down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NixCoverage {
    /// Output paths a warm build needs.
    pub needed: u64,
    /// Of those, in the team cache.
    pub present: u64,
    /// Not in the team cache but served by an upstream cache.
    pub upstream: u64,
    /// In no cache: a warm build would build them.
    pub missing: u64,
    /// Whose narinfo could not be read (see `errors`), or whose path is not known before
    /// building (floating content-addressed outputs).
    pub unknown: u64,
    /// `present / (present + missing)`, in percent: what the team cache holds of what is
    /// its to hold (100 when that is nothing).
    pub percent: f64,
    /// Every output path of every derivation in the closure (intermediate ones included,
    /// which a warm build needs only below a missing path).
    pub closure_outputs: u64,
    /// Of those, in the team cache.
    pub closure_present: u64,
    /// The needed paths in no cache, sorted by name (at most `MAX_LISTED`).
    pub missing_paths: Vec<MissingPath>,
    /// The first few narinfo requests that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The shape of what a warm build needs: every needed path with its NAR size and
    /// references, as `flywheel-bench model` takes it. Absent in files written before
    /// shapes were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ClosureShape>,
}

/// A closure's shape: its store paths, their NAR sizes and the references between them.
/// `coverage` records one per repo; `flywheel-bench model` turns one (from a coverage file
/// or a shape file of this form) into an offline bench repo with the same graph and sizes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClosureShape {
    /// Where the shape came from (a shape file's provenance; coverage leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// The store paths the targets build (the outputs of the requested derivations).
    pub roots: Vec<String>,
    /// Every path of the closure, sorted by store path.
    pub paths: Vec<ClosurePath>,
}

/// One store path of a closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClosurePath {
    /// The store path's name, after the hash (`openssl-3.0.13`).
    pub name: String,
    pub path: String,
    /// The NAR's size in bytes, from the narinfo; absent for a path no cache holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nar_size: Option<u64>,
    /// The other paths of the closure it references at run time (full store paths; itself
    /// and paths outside the closure left out).
    #[serde(default)]
    pub references: Vec<String>,
    /// Which cache a warm build would take it from (a hand-written shape may leave it out:
    /// the team cache).
    #[serde(default)]
    pub source: PathSource,
}

/// Where a warm build gets a path of the closure.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PathSource {
    /// The team cache.
    #[default]
    Team,
    /// An upstream cache (the team cache lacks it).
    Upstream,
    /// No cache: a warm build would build it.
    Missing,
    /// Its narinfo could not be read.
    Unknown,
}

/// The name part of a store path (`/nix/store/<hash>-<name>`), or the base name when it
/// has no hash.
pub fn store_path_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base.split_once('-') {
        Some((hash, name)) if hash.len() == 32 => name,
        _ => base,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MissingPath {
    /// The derivation's name, e.g. `unit3`.
    pub name: String,
    pub path: String,
    /// The derivation that builds it.
    pub derivation: String,
}

/// The action cache against the actions of one Bazel execution log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BazelCoverage {
    /// Whether the action cache was asked; `reason` says why not.
    pub measured: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Remote-cacheable actions of the log that carry an action digest.
    pub actions: u64,
    pub present: u64,
    pub missing: u64,
    /// Whose entry could not be read.
    pub unknown: u64,
    /// `present / (present + missing)`, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    pub missing_actions: Vec<MissingAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl BazelCoverage {
    /// Not asked, and why.
    pub fn not_measured(reason: impl Into<String>) -> BazelCoverage {
        BazelCoverage {
            measured: false,
            reason: Some(reason.into()),
            actions: 0,
            present: 0,
            missing: 0,
            unknown: 0,
            percent: None,
            missing_actions: Vec::new(),
            errors: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MissingAction {
    /// `hash/size` of the action.
    pub digest: String,
    pub mnemonic: String,
    /// The action's first listed output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// What a cache answered about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Held; for a store path, the full paths its narinfo says it references and its
    /// `NarSize`.
    Present {
        references: Vec<String>,
        nar_size: Option<u64>,
    },
    /// Not held by the team cache, held by an upstream cache.
    Upstream {
        references: Vec<String>,
        nar_size: Option<u64>,
    },
    Missing,
    /// The request failed: why.
    Failed(String),
}

impl Answer {
    /// Held, with nothing more known (an action-cache entry, a narinfo without references
    /// or size).
    pub fn held() -> Answer {
        Answer::Present {
            references: Vec::new(),
            nar_size: None,
        }
    }
}

/// `percent` of `present` over `present + missing`; 100 when there is nothing to hold.
fn percent(present: u64, missing: u64) -> f64 {
    match present + missing {
        0 => 100.0,
        all => present as f64 * 100.0 / all as f64,
    }
}

/// Classifies the closure of `derivations` (every derivation `nix derivation show -r`
/// printed) for a warm build of the outputs of `roots`, from the caches' `answers` per
/// output path. Pure.
pub fn classify_closure(
    derivations: &[Derivation],
    roots: &[String],
    answers: &BTreeMap<String, Answer>,
) -> NixCoverage {
    let by_drv: HashMap<&str, &Derivation> =
        derivations.iter().map(|d| (d.drv.as_str(), d)).collect();
    let producer: HashMap<&str, &Derivation> = derivations
        .iter()
        .flat_map(|d| d.outputs.values().flatten().map(move |p| (p.as_str(), d)))
        .collect();
    let mut floating = 0u64;
    let mut stack: Vec<&str> = Vec::new();
    for root in roots {
        if let Some(d) = by_drv.get(root.as_str()) {
            floating += push_outputs(d, None, &mut stack);
        }
    }
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    while let Some(path) = stack.pop() {
        if !needed.insert(path) {
            continue;
        }
        match answers.get(path) {
            Some(Answer::Present { references, .. } | Answer::Upstream { references, .. }) => {
                // Fetched, with its runtime closure; references that no derivation builds
                // are sources, which instantiating already put into the store.
                stack.extend(
                    references
                        .iter()
                        .filter(|r| r.as_str() != path)
                        .filter_map(|r| producer.get_key_value(r.as_str()).map(|(k, _)| *k)),
                );
            }
            _ => {
                // Built: its derivation needs the outputs it builds from.
                let Some(d) = producer.get(path) else {
                    continue;
                };
                for (input, names) in &d.input_drvs {
                    if let Some(input) = by_drv.get(input.as_str()) {
                        floating += push_outputs(input, Some(names), &mut stack);
                    }
                }
            }
        }
    }
    let mut coverage = NixCoverage {
        needed: needed.len() as u64 + floating,
        present: 0,
        upstream: 0,
        missing: 0,
        unknown: floating,
        percent: 0.0,
        closure_outputs: producer.len() as u64,
        closure_present: answers
            .iter()
            .filter(|(p, a)| {
                producer.contains_key(p.as_str()) && matches!(a, Answer::Present { .. })
            })
            .count() as u64,
        missing_paths: Vec::new(),
        errors: Vec::new(),
        shape: Some(shape_of(roots, &by_drv, &needed, answers)),
    };
    let mut missing: Vec<MissingPath> = Vec::new();
    for path in needed {
        match answers.get(path) {
            Some(Answer::Present { .. }) => coverage.present += 1,
            Some(Answer::Upstream { .. }) => coverage.upstream += 1,
            Some(Answer::Missing) => {
                coverage.missing += 1;
                if let Some(d) = producer.get(path) {
                    missing.push(MissingPath {
                        name: d.name.clone(),
                        path: path.to_string(),
                        derivation: d.drv.clone(),
                    });
                }
            }
            Some(Answer::Failed(why)) => {
                coverage.unknown += 1;
                if coverage.errors.len() < MAX_ERRORS && !coverage.errors.contains(why) {
                    coverage.errors.push(why.clone());
                }
            }
            None => coverage.unknown += 1,
        }
    }
    missing.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    missing.truncate(MAX_LISTED);
    coverage.missing_paths = missing;
    coverage.percent = percent(coverage.present, coverage.missing);
    coverage
}

/// The shape of the `needed` paths: each with its NAR size, its references among them and
/// where a warm build gets it.
fn shape_of(
    roots: &[String],
    by_drv: &HashMap<&str, &Derivation>,
    needed: &BTreeSet<&str>,
    answers: &BTreeMap<String, Answer>,
) -> ClosureShape {
    let roots = roots
        .iter()
        .filter_map(|r| by_drv.get(r.as_str()))
        .flat_map(|d| d.outputs.values().flatten().cloned())
        .collect();
    let paths = needed
        .iter()
        .map(|&path| {
            let (references, nar_size, source) = match answers.get(path) {
                Some(Answer::Present {
                    references,
                    nar_size,
                }) => (references.as_slice(), *nar_size, PathSource::Team),
                Some(Answer::Upstream {
                    references,
                    nar_size,
                }) => (references.as_slice(), *nar_size, PathSource::Upstream),
                Some(Answer::Missing) => (&[][..], None, PathSource::Missing),
                Some(Answer::Failed(_)) | None => (&[][..], None, PathSource::Unknown),
            };
            let mut references: Vec<String> = references
                .iter()
                .filter(|r| r.as_str() != path && needed.contains(r.as_str()))
                .cloned()
                .collect();
            references.sort();
            references.dedup();
            ClosurePath {
                name: store_path_name(path).to_string(),
                path: path.to_string(),
                nar_size,
                references,
                source,
            }
        })
        .collect();
    ClosureShape {
        provenance: None,
        roots,
        paths,
    }
}

/// Pushes the outputs of `d` named in `names` (all when `None`); returns how many of them
/// have no path yet (floating content-addressed outputs).
fn push_outputs<'a>(d: &'a Derivation, names: Option<&[String]>, stack: &mut Vec<&'a str>) -> u64 {
    let mut floating = 0;
    for (name, path) in &d.outputs {
        if names.is_some_and(|n| !n.contains(name)) {
            continue;
        }
        match path {
            Some(path) => stack.push(path),
            None => floating += 1,
        }
    }
    floating
}

/// Sums the action cache's answers about the actions of a log. Pure.
pub fn classify_actions(actions: &[(MissingAction, Answer)]) -> BazelCoverage {
    let mut coverage = BazelCoverage {
        measured: true,
        reason: None,
        actions: actions.len() as u64,
        ..BazelCoverage::not_measured("")
    };
    for (action, answer) in actions {
        match answer {
            Answer::Present { .. } | Answer::Upstream { .. } => coverage.present += 1,
            Answer::Missing => {
                coverage.missing += 1;
                if coverage.missing_actions.len() < MAX_LISTED {
                    coverage.missing_actions.push(action.clone());
                }
            }
            Answer::Failed(why) => {
                coverage.unknown += 1;
                if coverage.errors.len() < MAX_ERRORS && !coverage.errors.contains(why) {
                    coverage.errors.push(why.clone());
                }
            }
        }
    }
    coverage.percent = Some(percent(coverage.present, coverage.missing));
    coverage
}

/// The JSON Schema of coverage documents (`results/coverage.schema.json`).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Coverage);
    serde_json::to_string_pretty(&schema).expect("a schema always serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::nix_derivations::parse_derivations;

    const APP: &str = "/nix/store/azc43fg06314dxn6ia2l9aanzl32bb6v-refs-app";
    const LIB: &str = "/nix/store/127s998hz07z025zwaqjlkqxxbvwwyyc-refs-lib";
    const DATA: &str = "/nix/store/n701i59m5v2vqjl7x1m77v78z05nj00m-refs-data";
    const NOTE: &str = "/nix/store/qpjq9fvxh21s9dg6w3rk3gkr20f729ka-refs-note";
    const APP_DRV: &str = "/nix/store/gxpy704209cr5i2s1f457v09b4sp2i76-refs-app.drv";

    /// The recorded closure (app -> lib -> data, lib -> note).
    fn closure() -> Vec<Derivation> {
        parse_derivations(&crate::tools::fixture("nix/closure/show-derivation-r.json")).unwrap()
    }

    fn present(refs: &[&str]) -> Answer {
        Answer::Present {
            references: refs.iter().map(|r| r.to_string()).collect(),
            nar_size: Some(1000 + refs.len() as u64),
        }
    }

    fn answers(pairs: &[(&str, Answer)]) -> BTreeMap<String, Answer> {
        pairs
            .iter()
            .map(|(p, a)| (p.to_string(), a.clone()))
            .collect()
    }

    #[test]
    fn a_filled_cache_covers_the_runtime_closure() {
        let all = answers(&[
            (APP, present(&[LIB])),
            (LIB, present(&[DATA, NOTE])),
            (DATA, present(&[])),
        ]);
        let c = classify_closure(&closure(), &[APP_DRV.into()], &all);
        assert_eq!((c.needed, c.present, c.missing, c.unknown), (3, 3, 0, 0));
        assert_eq!(c.percent, 100.0);
        assert_eq!((c.closure_outputs, c.closure_present), (3, 3));
        assert!(c.missing_paths.is_empty());
    }

    #[test]
    fn a_missing_path_is_built_and_its_inputs_become_needed() {
        // Only the top is gone: a warm build builds it, which needs lib, which the cache
        // has (with data).
        let top_gone = answers(&[
            (APP, Answer::Missing),
            (LIB, present(&[DATA, NOTE])),
            (DATA, present(&[])),
        ]);
        let c = classify_closure(&closure(), &[APP_DRV.into()], &top_gone);
        assert_eq!((c.needed, c.present, c.missing), (3, 2, 1));
        assert_eq!(
            c.missing_paths,
            [MissingPath {
                name: "refs-app".into(),
                path: APP.into(),
                derivation: APP_DRV.into()
            }]
        );
        assert!((c.percent - 200.0 / 3.0).abs() < 1e-9);
        // An empty cache: everything is built.
        let none = answers(&[
            (APP, Answer::Missing),
            (LIB, Answer::Missing),
            (DATA, Answer::Missing),
        ]);
        let c = classify_closure(&closure(), &[APP_DRV.into()], &none);
        assert_eq!((c.needed, c.missing, c.percent), (3, 3, 0.0));
        let names: Vec<&str> = c.missing_paths.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["refs-app", "refs-data", "refs-lib"]);
    }

    #[test]
    fn upstream_paths_and_failures_are_not_the_team_caches_misses() {
        let mixed = answers(&[
            (APP, present(&[LIB])),
            (
                LIB,
                Answer::Upstream {
                    references: vec![DATA.into()],
                    nar_size: Some(4096),
                },
            ),
            (
                DATA,
                Answer::Failed("GET http://c/x.narinfo: no answer within 30 s".into()),
            ),
        ]);
        let c = classify_closure(&closure(), &[APP_DRV.into()], &mixed);
        assert_eq!((c.present, c.upstream, c.missing, c.unknown), (1, 1, 0, 1));
        assert_eq!(c.percent, 100.0);
        assert_eq!(c.errors.len(), 1);
        let sources: Vec<(&str, PathSource, Option<u64>)> = c
            .shape
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| (p.name.as_str(), p.source, p.nar_size))
            .collect();
        assert_eq!(
            sources,
            [
                ("refs-lib", PathSource::Upstream, Some(4096)),
                ("refs-app", PathSource::Team, Some(1001)),
                ("refs-data", PathSource::Unknown, None),
            ]
        );
    }

    #[test]
    fn the_shape_is_the_needed_paths_with_their_sizes_and_references_among_them() {
        let all = answers(&[
            // A self-reference and one to a path outside the closure are left out.
            (APP, present(&[LIB, APP, "/nix/store/0000-source"])),
            (LIB, present(&[DATA, NOTE])),
            (DATA, present(&[])),
        ]);
        let c = classify_closure(&closure(), &[APP_DRV.into()], &all);
        let shape = c.shape.unwrap();
        assert_eq!(shape.roots, [APP]);
        assert_eq!(shape.paths.len() as u64, c.needed);
        let app = shape.paths.iter().find(|p| p.path == APP).unwrap();
        assert_eq!(
            (app.name.as_str(), app.nar_size, app.source),
            ("refs-app", Some(1003), PathSource::Team)
        );
        assert_eq!(app.references, [LIB]);
        let lib = shape.paths.iter().find(|p| p.path == LIB).unwrap();
        // refs-note is no derivation's output: a source, not part of the shape.
        assert_eq!(lib.references, [DATA]);
        assert_eq!(store_path_name(APP), "refs-app");
        assert_eq!(store_path_name("/nix/store/short-x"), "short-x");
    }

    #[test]
    fn actions_are_counted_by_answer() {
        let action = |d: &str| MissingAction {
            digest: d.into(),
            mnemonic: "CppCompile".into(),
            output: None,
        };
        let c = classify_actions(&[
            (action("a/1"), present(&[])),
            (action("b/2"), Answer::Missing),
            (action("c/3"), Answer::Failed("503".into())),
        ]);
        assert!(c.measured);
        assert_eq!((c.actions, c.present, c.missing, c.unknown), (3, 1, 1, 1));
        assert_eq!(c.percent, Some(50.0));
        assert_eq!(c.missing_actions[0].digest, "b/2");
        let none = BazelCoverage::not_measured("no digests");
        assert!(!none.measured && none.percent.is_none());
    }

    #[test]
    fn the_committed_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/coverage.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "{} is stale: run `cargo run -- coverage --schema > results/coverage.schema.json`",
            path.display()
        );
    }
}
