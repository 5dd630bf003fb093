//! A build as steps (Bazel actions, Nix derivations), each with the digests of what it
//! read and wrote: what verify walks to find the first step at fault. Tool-neutral and
//! pure; each driver fills it from its own logs and store.

use std::collections::{BTreeMap, BTreeSet};

use crate::tools::Outputs;

/// One step of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Names the same step in another build of the same sources: Bazel its listed
    /// outputs, Nix its `.drv` path.
    pub key: String,
    /// How a reader knows it: `genrule //:stamp`, `stamp (/nix/store/...-stamp.drv)`.
    pub name: String,
    /// What it read: path -> digest (`None`: not in this build, e.g. a Nix input the
    /// store from the cache never needed).
    pub inputs: BTreeMap<String, Option<String>>,
    /// What it wrote, likewise.
    pub outputs: BTreeMap<String, Option<String>>,
}

/// The steps of one build, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildGraph {
    pub steps: Vec<Step>,
}

impl BuildGraph {
    /// Outputs alone, each its own step that reads nothing: where nothing says more.
    pub fn from_outputs(outputs: Outputs) -> BuildGraph {
        BuildGraph {
            steps: outputs
                .into_iter()
                .map(|(path, digest)| Step {
                    key: path.clone(),
                    name: path.clone(),
                    inputs: BTreeMap::new(),
                    outputs: [(path, Some(digest))].into(),
                })
                .collect(),
        }
    }

    /// Every output the build has, with its digest.
    pub fn outputs(&self) -> Outputs {
        self.steps
            .iter()
            .flat_map(|s| &s.outputs)
            .filter_map(|(p, d)| Some((p.clone(), d.clone()?)))
            .collect()
    }

    /// The step that wrote each output path.
    pub fn producers(&self) -> BTreeMap<&str, usize> {
        self.steps
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.outputs.keys().map(move |p| (p.as_str(), i)))
            .collect()
    }

    /// For each step, the steps whose outputs it reads: by path, else (an input reached
    /// through a link no logged step made, as Bazel's internal symlink actions) by digest.
    fn dependencies(&self) -> Vec<BTreeSet<usize>> {
        let producers = self.producers();
        let mut by_digest: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            for d in s.outputs.values().flatten() {
                by_digest.entry(d.as_str()).or_insert(i);
            }
        }
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.inputs
                    .iter()
                    .filter_map(|(p, d)| {
                        producers
                            .get(p.as_str())
                            .or_else(|| by_digest.get(d.as_deref()?))
                            .copied()
                    })
                    .filter(|&d| d != i)
                    .collect()
            })
            .collect()
    }

    /// Step indices, every step after the steps it reads from (a cycle, which no build
    /// has, is broken at the first step met again).
    pub fn order(&self) -> Vec<usize> {
        let deps = self.dependencies();
        let mut state = vec![0u8; self.steps.len()]; // 0 new, 1 open, 2 done
        let mut order = Vec::with_capacity(self.steps.len());
        for start in 0..self.steps.len() {
            // An explicit stack: a deep chain must not overflow the thread's.
            let mut stack = vec![(start, false)];
            while let Some((i, expanded)) = stack.pop() {
                if expanded {
                    state[i] = 2;
                    order.push(i);
                    continue;
                }
                if state[i] != 0 {
                    continue;
                }
                state[i] = 1;
                stack.push((i, true));
                stack.extend(
                    deps[i]
                        .iter()
                        .filter(|&&d| state[d] == 0)
                        .map(|&d| (d, false)),
                );
            }
        }
        order
    }

    /// Each output's distance from the final outputs (those no step reads): 0 for them,
    /// 1 for what a final step reads, and so on (the shortest way).
    pub fn depths(&self) -> BTreeMap<String, usize> {
        let deps = self.dependencies();
        let mut consumed = vec![false; self.steps.len()];
        for d in deps.iter().flatten() {
            consumed[*d] = true;
        }
        let mut depth: Vec<Option<usize>> = consumed.iter().map(|&c| (!c).then_some(0)).collect();
        let mut frontier: Vec<usize> = (0..self.steps.len()).filter(|&i| !consumed[i]).collect();
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for i in frontier {
                let d = depth[i].unwrap_or(0) + 1;
                for &dep in &deps[i] {
                    if depth[dep].is_none() {
                        depth[dep] = Some(d);
                        next.push(dep);
                    }
                }
            }
            frontier = next;
        }
        self.steps
            .iter()
            .zip(depth)
            .flat_map(|(s, d)| {
                let d = d.unwrap_or(0);
                s.outputs.keys().map(move |p| (p.clone(), d))
            })
            .collect()
    }
}

/// Why a step's outputs differ between two builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Its inputs are equal in both builds and its outputs are not: first at fault.
    Root,
    /// It reads a differing output of another step: the steps' keys from the root to
    /// this one, both included.
    Consumes(Vec<String>),
}

/// Every step whose outputs differ between builds `a` and `b` (matched by key), with why,
/// found in dependency order: a step that reads a differing output of an earlier step
/// differs because of it; one whose inputs all agree is a root. Digests one build lacks
/// are not compared.
pub fn differing_steps(a: &BuildGraph, b: &BuildGraph) -> BTreeMap<String, Cause> {
    let by_key: BTreeMap<&str, &Step> = b.steps.iter().map(|s| (s.key.as_str(), s)).collect();
    let producers = a.producers();
    let differs = |x: &BTreeMap<String, Option<String>>, y: &BTreeMap<String, Option<String>>| {
        x.iter()
            .filter_map(|(p, d)| Some((p, d.as_ref()?, y.get(p)?.as_ref()?)))
            .filter(|(_, d, e)| d != e)
            .map(|(p, _, _)| p.clone())
            .collect::<Vec<String>>()
    };
    let mut causes: BTreeMap<String, Cause> = BTreeMap::new();
    // Outputs of differing steps by digest (in `a`): inputs reached through a link or
    // copy that no logged step wrote (Bazel's internal symlink actions) still find them.
    let mut differing_digests: BTreeMap<String, String> = BTreeMap::new();
    for i in a.order() {
        let step = &a.steps[i];
        let Some(other) = by_key.get(step.key.as_str()) else {
            continue;
        };
        if differs(&step.outputs, &other.outputs).is_empty() {
            continue;
        }
        let upstream = differs(&step.inputs, &other.inputs)
            .into_iter()
            .find_map(|input| {
                let by_path = producers
                    .get(input.as_str())
                    .map(|&p| a.steps[p].key.clone())
                    .filter(|k| causes.contains_key(k));
                by_path.or_else(|| {
                    let digest = step.inputs.get(&input)?.as_ref()?;
                    differing_digests.get(digest).cloned()
                })
            });
        let cause = match upstream {
            None => Cause::Root,
            Some(key) => {
                let mut chain = match &causes[&key] {
                    Cause::Root => vec![key],
                    Cause::Consumes(chain) => chain.clone(),
                };
                chain.push(step.key.clone());
                Cause::Consumes(chain)
            }
        };
        for digest in step.outputs.values().flatten() {
            differing_digests
                .entry(digest.clone())
                .or_insert_with(|| step.key.clone());
        }
        causes.insert(step.key.clone(), cause);
    }
    causes
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A step named as a genrule; an empty digest is one the build lacks.
    pub(crate) fn step(key: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> Step {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(p, d)| (p.to_string(), (!d.is_empty()).then(|| d.to_string())))
                .collect()
        };
        Step {
            key: key.into(),
            name: format!("genrule //:{key}"),
            inputs: map(inputs),
            outputs: map(outputs),
        }
    }

    /// The workspace: stamp -> uses_stamp -> all <- plain.
    fn build(stamp: &str) -> BuildGraph {
        let uses = format!("u{stamp}");
        let all = format!("a{stamp}");
        BuildGraph {
            steps: vec![
                step(
                    "all",
                    &[("uses.txt", &uses), ("plain.txt", "p")],
                    &[("all.txt", &all)],
                ),
                step("uses", &[("stamp.txt", stamp)], &[("uses.txt", &uses)]),
                step("plain", &[("src", "s")], &[("plain.txt", "p")]),
                step("stamp", &[], &[("stamp.txt", stamp)]),
            ],
        }
    }

    #[test]
    fn the_first_step_at_fault_is_the_root_and_its_consumers_say_why() {
        let causes = differing_steps(&build("1"), &build("2"));
        assert_eq!(
            causes,
            BTreeMap::from([
                ("stamp".to_string(), Cause::Root),
                (
                    "uses".into(),
                    Cause::Consumes(vec!["stamp".into(), "uses".into()])
                ),
                (
                    "all".into(),
                    Cause::Consumes(vec!["stamp".into(), "uses".into(), "all".into()])
                ),
            ])
        );
        assert!(differing_steps(&build("1"), &build("1")).is_empty());
    }

    #[test]
    fn an_input_reached_through_an_unlogged_link_is_found_by_digest() {
        let graph = |d: &str| BuildGraph {
            steps: vec![
                step(
                    "link",
                    &[("_solib/liba.so", d)],
                    &[("app", &format!("x{d}"))],
                ),
                step("lib", &[], &[("liba.so", d)]),
            ],
        };
        let causes = differing_steps(&graph("1"), &graph("2"));
        assert_eq!(causes["lib"], Cause::Root);
        assert_eq!(
            causes["link"],
            Cause::Consumes(vec!["lib".into(), "link".into()])
        );
    }

    #[test]
    fn digests_one_build_lacks_are_not_compared() {
        // A store from the cache has the top output only, not what it was built from.
        let partial = BuildGraph {
            steps: vec![step("top", &[("unit", "")], &[("top", "t2")])],
        };
        let full = BuildGraph {
            steps: vec![
                step("top", &[("unit", "u")], &[("top", "t1")]),
                step("unit", &[], &[("unit", "u")]),
            ],
        };
        assert_eq!(
            differing_steps(&partial, &full),
            BTreeMap::from([("top".to_string(), Cause::Root)])
        );
    }

    #[test]
    fn order_and_depths_follow_the_dependencies() {
        let g = build("1");
        let order: Vec<&str> = g.order().iter().map(|&i| g.steps[i].key.as_str()).collect();
        let at = |k: &str| order.iter().position(|x| *x == k).unwrap();
        assert!(at("stamp") < at("uses") && at("uses") < at("all") && at("plain") < at("all"));
        let depths = g.depths();
        assert_eq!(depths["all.txt"], 0);
        assert_eq!(depths["uses.txt"], 1);
        assert_eq!(depths["plain.txt"], 1);
        assert_eq!(depths["stamp.txt"], 2);
        assert_eq!(g.outputs().len(), 4);
    }

    #[test]
    fn a_deep_chain_needs_no_deep_stack() {
        let n = 100_000;
        let steps = (0..n)
            .map(|i| {
                let input = format!("o{}", i.max(1) - 1);
                let inputs: &[(&str, &str)] = if i == 0 { &[] } else { &[(&input, "d")] };
                step(&i.to_string(), inputs, &[(&format!("o{i}"), "d")])
            })
            .collect();
        let g = BuildGraph { steps };
        assert_eq!(g.order().len(), n);
        assert_eq!(g.depths()["o0"], n - 1);
    }
}
