//! Why outputs differ from a clean build's, from the build graphs: a step whose two clean
//! builds differ is not reproducible; one whose clean builds agree but whose output from
//! the cache does not was served wrong by the cache. Each is traced to the step first at
//! fault, and what differs only because it consumes that step's output says so. Pure.

use std::collections::BTreeMap;

use crate::results::{Consumer, FaultRoot, Mismatch, MismatchClass};
use crate::tools::build_graph::{differing_steps, BuildGraph, Cause};
use crate::tools::Outputs;

const ABSENT: &str = "absent";

/// The outputs of the build from the cache that verify compares: all it has, or those
/// at most `depth` steps from the final outputs.
pub fn compared_outputs(cached: &BuildGraph, depth: Option<usize>) -> Outputs {
    let mut outputs = cached.outputs();
    if let Some(limit) = depth {
        let depths = cached.depths();
        outputs.retain(|path, _| depths.get(path).is_some_and(|&d| d <= limit));
    }
    outputs
}

/// The builds a classification compares.
pub struct Builds<'a> {
    /// The build from the cache.
    pub cached: &'a BuildGraph,
    /// A clean build, without any cache: what `Mismatch::clean` was taken from.
    pub clean: &'a BuildGraph,
    /// A second clean build in fresh state; `None` when it could not be had.
    pub second: Option<&'a BuildGraph>,
}

/// Every mismatch with its class, the step that wrote it and, when it differs because it
/// consumes another step's output, the steps from that one; and the roots with their
/// consumers, wrong outputs from the cache first.
pub fn classify(mismatches: &[Mismatch], builds: &Builds) -> (Vec<Mismatch>, Vec<FaultRoot>) {
    let not_reproducible = builds
        .second
        .map(|second| differing_steps(builds.clean, second))
        .unwrap_or_default();
    let from_cache = differing_steps(builds.cached, builds.clean);
    let second_outputs = builds.second.map(BuildGraph::outputs);
    let key_of = producer_keys(&[builds.clean, builds.cached]);
    let names: BTreeMap<&str, &str> = [builds.cached, builds.clean]
        .iter()
        .flat_map(|g| &g.steps)
        .map(|s| (s.key.as_str(), s.name.as_str()))
        .collect();
    let name = |key: &str| names.get(key).map_or(key.to_string(), |n| n.to_string());

    let mut classified = Vec::with_capacity(mismatches.len());
    // Root key -> (class, consumer chains).
    let mut roots: BTreeMap<(MismatchClass, String), Vec<Vec<String>>> = BTreeMap::new();
    for m in mismatches {
        let key = key_of.get(m.path.as_str()).copied();
        let second = second_outputs
            .as_ref()
            .map(|s| s.get(&m.path).map_or(ABSENT.to_string(), Clone::clone));
        let (class, cause) = match (&second, key) {
            (None, _) => (MismatchClass::Unclassified, None),
            (Some(second), key) if *second != m.clean => (
                MismatchClass::NotReproducible,
                key.map(|k| not_reproducible.get(k).cloned().unwrap_or(Cause::Root)),
            ),
            (Some(_), key) => {
                let cause = key.map(|k| from_cache.get(k).cloned().unwrap_or(Cause::Root));
                // What was built from a non-reproducible step's output is that step's doing.
                let class = match &cause {
                    Some(Cause::Consumes(chain)) if not_reproducible.contains_key(&chain[0]) => {
                        MismatchClass::NotReproducible
                    }
                    _ => MismatchClass::WrongFromCache,
                };
                (class, cause)
            }
        };
        let chain = match &cause {
            Some(Cause::Consumes(chain)) => chain.clone(),
            _ => Vec::new(),
        };
        if let Some(key) = key {
            let root = chain.first().map_or(key, String::as_str);
            let consumers = roots.entry((class, root.to_string())).or_default();
            if !chain.is_empty() && !consumers.contains(&chain) {
                consumers.push(chain.clone());
            }
        }
        classified.push(Mismatch {
            second_clean: second,
            class: Some(class),
            step: key.map(name),
            because_of: chain.iter().map(|k| name(k)).collect(),
            ..m.clone()
        });
    }
    let roots = roots
        .into_iter()
        .map(|((class, key), chains)| {
            let (a, b) = match class {
                MismatchClass::NotReproducible => (Some(builds.clean), builds.second),
                _ => (Some(builds.cached), Some(builds.clean)),
            };
            FaultRoot {
                step: name(&key),
                class,
                outputs: a
                    .zip(b)
                    .map(|(a, b)| differing_outputs(a, b, &key))
                    .unwrap_or_default(),
                consumers: chains
                    .iter()
                    .map(|chain| Consumer {
                        step: name(chain.last().expect("a chain has its consumer")),
                        via: chain.iter().map(|k| name(k)).collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    (classified, roots)
}

/// Output path -> the key of the step that wrote it, from the first graph that has it.
fn producer_keys<'a>(graphs: &[&'a BuildGraph]) -> BTreeMap<&'a str, &'a str> {
    let mut keys = BTreeMap::new();
    for graph in graphs.iter().rev() {
        for step in &graph.steps {
            for path in step.outputs.keys() {
                keys.insert(path.as_str(), step.key.as_str());
            }
        }
    }
    keys
}

/// The outputs of step `key` whose digests differ between `a` and `b`.
fn differing_outputs(a: &BuildGraph, b: &BuildGraph, key: &str) -> Vec<String> {
    let find = |g: &BuildGraph| {
        g.steps
            .iter()
            .find(|s| s.key == key)
            .map(|s| s.outputs.clone())
    };
    let (Some(x), Some(y)) = (find(a), find(b)) else {
        return Vec::new();
    };
    x.iter()
        .filter(|(path, d)| y.get(*path).is_some_and(|e| e != *d))
        .map(|(path, _)| path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::build_graph::tests::step;

    /// stamp -> uses -> all <- plain; `stamp` and `plain` are the two outputs' values.
    fn build(stamp: &str, plain: &str) -> BuildGraph {
        let uses = format!("u{stamp}");
        BuildGraph {
            steps: vec![
                step("stamp", &[], &[("stamp.txt", stamp)]),
                step("uses", &[("stamp.txt", stamp)], &[("uses.txt", &uses)]),
                step("plain", &[("src", "s")], &[("plain.txt", plain)]),
                step(
                    "all",
                    &[("uses.txt", &uses), ("plain.txt", plain)],
                    &[("all.txt", &format!("a{stamp}{plain}"))],
                ),
            ],
        }
    }

    fn mismatches(cached: &BuildGraph, clean: &BuildGraph) -> Vec<Mismatch> {
        crate::run::case::compare_outputs(&clean.outputs(), &cached.outputs())
    }

    #[test]
    fn a_time_stamp_is_not_reproducible_and_its_consumers_are_attributed_to_it() {
        let (cached, clean, second) = (build("0", "p"), build("1", "p"), build("2", "p"));
        let builds = Builds {
            cached: &cached,
            clean: &clean,
            second: Some(&second),
        };
        let (m, roots) = classify(&mismatches(&cached, &clean), &builds);
        assert_eq!(m.len(), 3);
        assert!(m
            .iter()
            .all(|m| m.class == Some(MismatchClass::NotReproducible)));
        let all = m.iter().find(|m| m.path == "all.txt").unwrap();
        assert_eq!(all.step.as_deref(), Some("genrule //:all"));
        assert_eq!(
            all.because_of,
            ["genrule //:stamp", "genrule //:uses", "genrule //:all"]
        );
        assert_eq!(all.second_clean.as_deref(), Some("a2p"));
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].step, "genrule //:stamp");
        assert_eq!(roots[0].outputs, ["stamp.txt"]);
        let consumers: Vec<&str> = roots[0].consumers.iter().map(|c| c.step.as_str()).collect();
        assert_eq!(consumers, ["genrule //:all", "genrule //:uses"]);
    }

    #[test]
    fn a_wrong_output_from_the_cache_is_the_caches_fault_and_spreads() {
        let (cached, clean) = (build("1", "poisoned"), build("1", "p"));
        let builds = Builds {
            cached: &cached,
            clean: &clean,
            second: Some(&clean),
        };
        let (m, roots) = classify(&mismatches(&cached, &clean), &builds);
        let described: Vec<(&str, MismatchClass, usize)> = m
            .iter()
            .map(|m| (m.path.as_str(), m.class.unwrap(), m.because_of.len()))
            .collect();
        assert_eq!(
            described,
            [
                ("all.txt", MismatchClass::WrongFromCache, 2),
                ("plain.txt", MismatchClass::WrongFromCache, 0)
            ]
        );
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].step, "genrule //:plain");
        assert_eq!(roots[0].class, MismatchClass::WrongFromCache);
        assert_eq!(
            roots[0].consumers[0].via,
            ["genrule //:plain", "genrule //:all"]
        );
    }

    #[test]
    fn without_a_second_clean_build_nothing_is_classified() {
        let (cached, clean) = (build("0", "p"), build("1", "p"));
        let builds = Builds {
            cached: &cached,
            clean: &clean,
            second: None,
        };
        let (m, _) = classify(&mismatches(&cached, &clean), &builds);
        assert!(m
            .iter()
            .all(|m| m.class == Some(MismatchClass::Unclassified)));
        assert!(m.iter().all(|m| m.second_clean.is_none()));
    }

    #[test]
    fn a_root_that_is_not_compared_is_still_named() {
        // Nix: the store from the cache holds the top output only.
        let top = |d: &str| step("top", &[("stamp", "")], &[("top", d)]);
        let full = |s: &str| BuildGraph {
            steps: vec![
                step("top", &[("stamp", s)], &[("top", &format!("t{s}"))]),
                step("stamp", &[], &[("stamp", s)]),
            ],
        };
        let cached = BuildGraph {
            steps: vec![top("t0")],
        };
        let (clean, second) = (full("1"), full("2"));
        let builds = Builds {
            cached: &cached,
            clean: &clean,
            second: Some(&second),
        };
        let compared = compared_outputs(&cached, None);
        assert_eq!(compared.len(), 1);
        let m = crate::run::case::compare_outputs(
            &clean
                .outputs()
                .into_iter()
                .filter(|(p, _)| compared.contains_key(p))
                .collect(),
            &compared,
        );
        let (m, roots) = classify(&m, &builds);
        assert_eq!(m[0].class, Some(MismatchClass::NotReproducible));
        assert_eq!(m[0].because_of, ["genrule //:stamp", "genrule //:top"]);
        assert_eq!(roots[0].step, "genrule //:stamp");
        assert_eq!(roots[0].outputs, ["stamp"]);
    }

    #[test]
    fn depth_bounds_what_is_compared() {
        let g = build("1", "p");
        let keys = |d| compared_outputs(&g, d).into_keys().collect::<Vec<_>>();
        assert_eq!(keys(Some(0)), ["all.txt"]);
        assert_eq!(keys(Some(1)), ["all.txt", "plain.txt", "uses.txt"]);
        assert_eq!(keys(None).len(), 4);
    }
}
