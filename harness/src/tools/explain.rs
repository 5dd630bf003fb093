//! Why items of a warm (or fallback) sample missed the cache, from the tools' own logs.
//!
//! - Bazel: each spawn of the sample's execution log that was not a remote cache hit (kept
//!   whole by the one pass over that log, `bazel_log::scan_exec_log`) is compared with the
//!   priming build's spawn that lists the same outputs. The priming log is streamed; memory
//!   holds the sample's misses and their priming counterparts only.
//! - Nix: each derivation the sample built is matched with the narinfo queries,
//!   substitutions and warnings of its internal-json log, and with what the cache answers
//!   for those narinfos now (fetched by the caller).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;

use crate::results::explain::{
    ActionDiff, ArgumentDiff, InputDiff, MissExplanation, MissExplanations, MissReason,
    MAX_INPUT_DIFFS,
};
use crate::tools::bazel_log::{ExecLogReader, NameValue, SpawnOutputs, SpawnRecord};
use crate::tools::narinfo::narinfo_name;
use crate::tools::nix_log::{
    classify_error, store_name, strip_ansi, Action, Line, NixFailure, ACT_BUILD,
    ACT_QUERY_PATH_INFO, ACT_SUBSTITUTE,
};

/// Explains every spawn of a sample that was not a remote cache hit (`misses`, from its
/// execution log), against `priming` (the execution log of the build that filled the
/// cache).
pub fn explain_bazel_misses<P: BufRead>(
    misses: Vec<SpawnRecord>,
    mut priming: ExecLogReader<P>,
) -> Result<MissExplanations, String> {
    // Which miss each output belongs to.
    let mut by_output: HashMap<String, usize> = HashMap::new();
    for (index, miss) in misses.iter().enumerate() {
        for output in &miss.listed_outputs {
            by_output.entry(output.clone()).or_insert(index);
        }
    }
    // Only the priming spawns that produced one of those outputs.
    let mut counterparts: Vec<Option<SpawnRecord>> = vec![None; misses.len()];
    while priming.next_raw()?.is_some() {
        let view: SpawnOutputs = priming.reparse()?;
        let Some(&index) = view
            .listed_outputs
            .iter()
            .find_map(|o| by_output.get(o.as_ref()))
        else {
            continue;
        };
        if counterparts[index].is_none() {
            counterparts[index] = Some(priming.reparse()?);
        }
    }
    Ok(MissExplanations::collect(
        misses
            .iter()
            .zip(&counterparts)
            .map(|(miss, primed)| explain_action(miss, primed.as_ref())),
    ))
}

/// Why one action missed, given its priming counterpart (if the priming build had one).
pub fn explain_action(sample: &SpawnRecord, priming: Option<&SpawnRecord>) -> MissExplanation {
    let item = sample
        .listed_outputs
        .first()
        .or_else(|| sample.actual_outputs.first().map(|o| &o.path))
        .cloned()
        .unwrap_or_else(|| sample.mnemonic.clone());
    let explain = |reason, differences| MissExplanation {
        item: item.clone(),
        mnemonic: Some(sample.mnemonic.clone()).filter(|m| !m.is_empty()),
        reason,
        differences,
        queried: Vec::new(),
    };
    if !sample.remote_cacheable {
        return explain(MissReason::NotCacheable, None);
    }
    let Some(priming) = priming else {
        return explain(MissReason::NotInPrimingLog, None);
    };
    let diff = compare_actions(priming, sample);
    if let Some(reason) = diff.reason() {
        return explain(reason, Some(diff));
    }
    // Same key both times. A priming action that may not use the cache, or failed, was
    // never uploaded; otherwise the cache was asked for what the priming build put there
    // and still gave no usable entry (it was missing, evicted, or a blob it names was).
    if !priming.remote_cacheable || priming.exit_code != 0 {
        explain(MissReason::NotUploadedByPriming, None)
    } else {
        explain(MissReason::EntryUnusable, None)
    }
}

/// Everything in the action key that differs between two executions of an action.
pub fn compare_actions(priming: &SpawnRecord, sample: &SpawnRecord) -> ActionDiff {
    let inputs = differing(
        &priming
            .inputs
            .iter()
            .map(|i| (i.path.as_str(), i.digest.as_ref().map(|d| d.text())))
            .collect(),
        &sample
            .inputs
            .iter()
            .map(|i| (i.path.as_str(), i.digest.as_ref().map(|d| d.text())))
            .collect(),
    );
    let arguments =
        first_difference(&priming.command_args, &sample.command_args).map(|at| ArgumentDiff {
            first_difference: at,
            priming_count: priming.command_args.len(),
            sample_count: sample.command_args.len(),
        });
    let outputs: BTreeSet<&String> = priming.listed_outputs.iter().collect();
    ActionDiff {
        environment: differing_names(
            &priming.environment_variables,
            &sample.environment_variables,
        ),
        arguments,
        inputs_differing: inputs.len(),
        inputs: inputs
            .into_iter()
            .take(MAX_INPUT_DIFFS)
            .map(|(path, (priming, sample))| InputDiff {
                path: path.to_string(),
                priming: priming.flatten(),
                sample: sample.flatten(),
            })
            .collect(),
        platform: differing_names(&priming.platform.properties, &sample.platform.properties),
        outputs: outputs != sample.listed_outputs.iter().collect(),
    }
}

type Sides<V> = (Option<V>, Option<V>);

/// Keys whose values differ, or that one side lacks, with both sides' values.
fn differing<'a, V: PartialEq + Clone>(
    a: &BTreeMap<&'a str, V>,
    b: &BTreeMap<&'a str, V>,
) -> BTreeMap<&'a str, Sides<V>> {
    let keys: BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| (k, (x.cloned(), y.cloned())))
        })
        .collect()
}

fn differing_names(a: &[NameValue], b: &[NameValue]) -> Vec<String> {
    differing(&by_name(a), &by_name(b))
        .into_keys()
        .map(str::to_string)
        .collect()
}

fn by_name(list: &[NameValue]) -> BTreeMap<&str, &str> {
    list.iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect()
}

fn first_difference(a: &[String], b: &[String]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// What a cache answers now for a narinfo (fetched by the caller after the build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NarinfoAnswer {
    /// 404 (or 410, or a missing file in a `file://` cache).
    NotFound,
    /// Served, with no `Sig:` line.
    Unsigned,
    /// Served, signed only by keys the build does not trust.
    UntrustedKey,
    /// Served and signed by a trusted key name.
    Ok,
    /// Any other answer: the cache fails now too.
    Failed,
}

/// Classifies a narinfo response. Signatures are checked by key name only (Nix checks
/// the bytes: a forged signature under a trusted name shows as the log's refusal).
/// `trusted_keys` are `name:base64` public keys as in `trusted-public-keys`.
pub fn narinfo_answer(status: u16, body: &str, trusted_keys: &[&str]) -> NarinfoAnswer {
    match status {
        200 => {}
        404 | 410 => return NarinfoAnswer::NotFound,
        _ => return NarinfoAnswer::Failed,
    }
    let signers: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("Sig:"))
        .filter_map(|sig| sig.trim().split_once(':').map(|(name, _)| name))
        .collect();
    let trusted = |name: &&str| {
        trusted_keys
            .iter()
            .any(|k| k.split_once(':').is_some_and(|(n, _)| n == *name))
    };
    if signers.is_empty() {
        NarinfoAnswer::Unsigned
    } else if signers.iter().any(trusted) {
        NarinfoAnswer::Ok
    } else {
        NarinfoAnswer::UntrustedKey
    }
}

/// Where a store path's narinfo lives on a substituter: `<substituter>/<hash>.narinfo`.
pub fn narinfo_url(substituter: &str, store_path: &str) -> Option<String> {
    Some(format!(
        "{}/{}",
        substituter.trim_end_matches('/'),
        narinfo_name(store_path)?
    ))
}

/// What a Nix log says about one derivation it built instead of substituting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuiltDerivation {
    /// The derivation's store path.
    pub drv: String,
    /// Store paths of this derivation that the build asked a cache about, with the
    /// substituter asked. Matched by name: an output's name is the derivation's name, or
    /// `name-<output>`; a same-named path of another derivation can only add to this list,
    /// so a derivation whose outputs were queried is never taken as not requested.
    pub queried: Vec<(String, String)>,
    /// A substitution of one of those paths started (the narinfo was accepted) and yet
    /// the derivation was built: the NAR could not be fetched or unpacked.
    pub substitution_failed: bool,
    /// Nix warned that a substitute for one of those paths is not signed by a trusted key.
    pub refused: bool,
    /// Fetching one of those narinfos failed (HTTP error, connection refused, ...).
    pub query_failed: bool,
}

fn belongs_to(path: &str, drv_name: &str) -> bool {
    let name = store_name(path);
    name == drv_name
        || name
            .strip_prefix(drv_name)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// The derivations a sample built, with what its internal-json log (its stderr's parsed
/// lines) says about each.
pub fn nix_built_derivations(log: &[Line]) -> Vec<BuiltDerivation> {
    let mut built: Vec<String> = Vec::new();
    // (path, substituter) of every narinfo query and substitution, in order.
    let mut queried: Vec<(String, String)> = Vec::new();
    let mut substituting: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut failed_urls: Vec<String> = Vec::new();
    for line in log {
        let Line::Event(event) = line else {
            continue;
        };
        match (event.action, event.kind) {
            (Action::Start, ACT_BUILD) => built.extend(event.field_str(0).map(str::to_string)),
            (Action::Start, ACT_QUERY_PATH_INFO | ACT_SUBSTITUTE) => {
                if let (Some(path), Some(source)) = (event.field_str(0), event.field_str(1)) {
                    let entry = (path.to_string(), source.to_string());
                    if event.kind == ACT_SUBSTITUTE {
                        substituting.push(entry.0.clone());
                    }
                    if !queried.contains(&entry) {
                        queried.push(entry);
                    }
                }
            }
            (Action::Msg, _) => match event
                .msg
                .as_deref()
                .map(strip_ansi)
                .as_deref()
                .and_then(classify_error)
            {
                Some(NixFailure::SubstituteNotTrusted { path }) => refused.push(path),
                Some(NixFailure::DownloadFailed { url }) => failed_urls.push(url),
                _ => {}
            },
            _ => {}
        }
    }
    built
        .into_iter()
        .map(|drv| {
            let name = store_name(&drv);
            let mine: Vec<(String, String)> = queried
                .iter()
                .filter(|(path, _)| belongs_to(path, name))
                .cloned()
                .collect();
            let any = |list: &[String]| mine.iter().any(|(path, _)| list.contains(path));
            let query_failed = mine.iter().any(|(path, source)| {
                narinfo_url(source, path).is_some_and(|url| failed_urls.contains(&url))
            });
            BuiltDerivation {
                substitution_failed: any(&substituting),
                refused: any(&refused),
                query_failed,
                queried: mine,
                drv,
            }
        })
        .collect()
}

/// Why each built derivation missed. `answers` maps store paths (from
/// [`BuiltDerivation::queried`]) to what the cache answers for their narinfos;
/// the log's own evidence wins over the answers.
pub fn explain_nix_misses(
    built: &[BuiltDerivation],
    answers: &HashMap<String, NarinfoAnswer>,
) -> MissExplanations {
    MissExplanations::collect(built.iter().map(|b| {
        let answered: Vec<NarinfoAnswer> = b
            .queried
            .iter()
            .filter_map(|(path, _)| answers.get(path).copied())
            .collect();
        let has = |a: NarinfoAnswer| answered.contains(&a);
        let reason = if b.queried.is_empty() {
            MissReason::NotRequested
        } else if b.substitution_failed {
            MissReason::NarDownloadFailed
        } else if b.refused {
            MissReason::NarinfoRefused
        } else if b.query_failed {
            MissReason::NarinfoQueryFailed
        } else if has(NarinfoAnswer::NotFound) {
            MissReason::NoNarinfo
        } else if has(NarinfoAnswer::Unsigned) || has(NarinfoAnswer::UntrustedKey) {
            MissReason::NarinfoRefused
        } else {
            MissReason::Unexplained
        };
        MissExplanation {
            item: b.drv.clone(),
            mnemonic: None,
            reason,
            differences: None,
            queried: b.queried.iter().map(|(path, _)| path.clone()).collect(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bazel_log::scan_exec_log;
    use crate::tools::nix_log::parse_lines;

    fn bazel(name: &str) -> String {
        crate::tools::fixture(&format!("bazel/explain/{name}.exec.json"))
    }

    /// The misses of a sample's log, as the one pass over it keeps them.
    fn misses(log: &str) -> Vec<SpawnRecord> {
        scan_exec_log(log.as_bytes(), "sample", true)
            .unwrap()
            .misses
    }

    fn explain_bazel(sample: &str, priming: &str) -> MissExplanations {
        let (sample, priming) = (bazel(sample), bazel(priming));
        explain_bazel_misses(
            misses(&sample),
            ExecLogReader::new(priming.as_bytes(), "priming"),
        )
        .unwrap()
    }

    fn by_output<'a>(explained: &'a MissExplanations, file: &str) -> &'a MissExplanation {
        let path = format!("bazel-out/k8-fastbuild/bin/{file}");
        explained
            .items
            .iter()
            .find(|e| e.item == path)
            .unwrap_or_else(|| panic!("no explanation for {file}: {explained:#?}"))
    }

    #[test]
    fn every_planted_bazel_difference_is_named() {
        // Recorded: fixtures/bazel/explain (README there). Priming with --action_env
        // PLANTED=1 and --define GREETING=hello; warm with PLANTED=2, GREETING=bye, a
        // changed input.txt, a new target, and one output blob deleted from the cache.
        let explained = explain_bazel("warm", "priming");
        assert_eq!(
            explained.misses, 6,
            "stable and chained hit: {explained:#?}"
        );
        let env = by_output(&explained, "env.txt");
        assert_eq!(env.reason, MissReason::EnvironmentDiffers);
        assert_eq!(env.mnemonic.as_deref(), Some("Genrule"));
        assert_eq!(env.differences.as_ref().unwrap().environment, ["PLANTED"]);
        let define = by_output(&explained, "define.txt");
        assert_eq!(define.reason, MissReason::ArgumentsDiffer);
        let args = define.differences.as_ref().unwrap().arguments.unwrap();
        assert_eq!(args.priming_count, args.sample_count);
        assert!(args.first_difference < args.sample_count);
        let input = by_output(&explained, "from_input.txt");
        assert_eq!(input.reason, MissReason::InputsDiffer);
        let diff = input.differences.as_ref().unwrap();
        assert_eq!(diff.inputs_differing, 1);
        assert_eq!(diff.inputs[0].path, "input.txt");
        assert!(diff.inputs[0].priming.as_ref().unwrap().ends_with("/10"));
        assert_ne!(diff.inputs[0].priming, diff.inputs[0].sample);
        assert_eq!(
            by_output(&explained, "new.txt").reason,
            MissReason::NotInPrimingLog
        );
        assert_eq!(
            by_output(&explained, "no_cache.txt").reason,
            MissReason::NotCacheable
        );
        assert_eq!(
            by_output(&explained, "evicted.txt").reason,
            MissReason::EntryUnusable
        );
        assert_eq!(explained.by_reason.iter().map(|r| r.count).sum::<u64>(), 6);
    }

    #[test]
    fn a_different_platform_misses_everything_cacheable() {
        // Recorded: the priming workspace rebuilt with --remote_default_exec_properties=planted=yes.
        let explained = explain_bazel("platform", "priming");
        assert_eq!(explained.misses, 7);
        for e in &explained.items {
            if e.item.ends_with("no_cache.txt") {
                assert_eq!(e.reason, MissReason::NotCacheable);
            } else {
                assert_eq!(e.reason, MissReason::PlatformDiffers, "{e:#?}");
                assert_eq!(e.differences.as_ref().unwrap().platform, ["planted"]);
            }
        }
    }

    #[test]
    fn a_full_hit_has_nothing_to_explain_and_a_cold_log_has_no_counterparts() {
        let warm = crate::tools::fixture("bazel/warm.exec.json");
        let cold = crate::tools::fixture("bazel/cold.exec.json");
        let none = explain_bazel_misses(misses(&warm), ExecLogReader::new(cold.as_bytes(), "cold"))
            .unwrap();
        assert_eq!(none, MissExplanations::default());
        // The cold build against an empty priming log: nothing to compare with.
        let all =
            explain_bazel_misses(misses(&cold), ExecLogReader::new(&b""[..], "empty")).unwrap();
        assert_eq!(all.misses, 106);
        assert_eq!(all.items.len(), crate::results::explain::MAX_EXPLANATIONS);
        assert_eq!(all.by_reason[0].reason, MissReason::NotInPrimingLog);
    }

    #[test]
    fn same_key_but_not_uploaded_by_a_failed_priming_action() {
        let mut sample = SpawnRecord {
            listed_outputs: vec!["out/a".into()],
            remote_cacheable: true,
            ..SpawnRecord::default()
        };
        let mut priming = sample.clone();
        priming.exit_code = 1;
        assert_eq!(
            explain_action(&sample, Some(&priming)).reason,
            MissReason::NotUploadedByPriming
        );
        sample.command_args = vec!["a".into()];
        assert_eq!(
            explain_action(&sample, Some(&priming))
                .differences
                .unwrap()
                .arguments,
            Some(ArgumentDiff {
                first_difference: 0,
                priming_count: 0,
                sample_count: 1
            })
        );
    }

    fn nix(name: &str) -> String {
        crate::tools::fixture(&format!("nix/miss/{name}.stderr.log"))
    }

    /// What the recorded cache answered: the narinfos the test deleted are 404, the
    /// unsigned one is the recorded unsigned body, the rest the recorded signed body.
    fn answers(
        built: &[BuiltDerivation],
        deleted: &[&str],
        unsigned: &[&str],
    ) -> HashMap<String, NarinfoAnswer> {
        let key = crate::tools::fixture("nix/miss/narinfo/public-key");
        let signed = crate::tools::fixture("nix/miss/narinfo/signed.narinfo");
        let bare = crate::tools::fixture("nix/miss/narinfo/unsigned.narinfo");
        built
            .iter()
            .flat_map(|b| b.queried.clone())
            .map(|(path, _)| {
                let name = store_name(&path);
                let answer = if deleted.contains(&name) {
                    narinfo_answer(404, "", &[key.trim()])
                } else if unsigned.contains(&name) {
                    narinfo_answer(200, &bare, &[key.trim()])
                } else {
                    narinfo_answer(200, &signed, &[key.trim()])
                };
                (path, answer)
            })
            .collect()
    }

    fn reasons(explained: &MissExplanations) -> Vec<(&str, MissReason)> {
        explained
            .items
            .iter()
            .map(|e| (store_name(&e.item), e.reason))
            .collect()
    }

    #[test]
    fn one_deleted_narinfo_is_no_narinfo_for_exactly_that_derivation() {
        // Recorded: fixture-c-dag size 6 from an HTTP cache whose top-level narinfo was
        // deleted: Nix built c-dag-6 and substituted the 6 units it needs.
        let built = nix_built_derivations(&parse_lines(&nix("top-404")));
        assert_eq!(built.len(), 1);
        assert_eq!(
            built[0].queried,
            [(
                "/nix/store/hjy6kwc6yblc7wk9qx831fbh9fn59fcr-c-dag-6".to_string(),
                "http://127.0.0.1:41055/nix".to_string()
            )]
        );
        let (path, substituter) = &built[0].queried[0];
        assert_eq!(
            narinfo_url(substituter, path).as_deref(),
            Some("http://127.0.0.1:41055/nix/hjy6kwc6yblc7wk9qx831fbh9fn59fcr.narinfo")
        );
        let explained = explain_nix_misses(&built, &answers(&built, &["c-dag-6"], &[]));
        assert_eq!(reasons(&explained), [("c-dag-6", MissReason::NoNarinfo)]);
        let two = nix_built_derivations(&parse_lines(&nix("two-404")));
        let explained = explain_nix_misses(&two, &answers(&two, &["c-dag-6", "unit3"], &[]));
        assert_eq!(
            reasons(&explained),
            [
                ("unit3", MissReason::NoNarinfo),
                ("c-dag-6", MissReason::NoNarinfo)
            ]
        );
    }

    #[test]
    fn refused_and_failed_substitutions_come_from_the_log() {
        // Recorded: unit2's narinfo served without its signature.
        let unsigned = nix_built_derivations(&parse_lines(&nix("unsigned")));
        let explained =
            explain_nix_misses(&unsigned, &answers(&unsigned, &["c-dag-6"], &["unit2"]));
        assert_eq!(
            reasons(&explained),
            [
                ("unit2", MissReason::NarinfoRefused),
                ("c-dag-6", MissReason::NoNarinfo)
            ]
        );
        // The log's warning alone says it, whatever the cache answers now.
        let explained = explain_nix_misses(&unsigned, &HashMap::new());
        assert_eq!(explained.items[0].reason, MissReason::NarinfoRefused);
        assert_eq!(explained.items[1].reason, MissReason::Unexplained);
        // Recorded: unit1's NAR deleted (without and with --fallback).
        for log in ["nar-missing", "nar-missing-fallback"] {
            let built = nix_built_derivations(&parse_lines(&nix(log)));
            let explained = explain_nix_misses(&built, &answers(&built, &["c-dag-6"], &[]));
            assert_eq!(
                reasons(&explained),
                [
                    ("unit1", MissReason::NarDownloadFailed),
                    ("c-dag-6", MissReason::NoNarinfo)
                ],
                "{log}"
            );
        }
    }

    #[test]
    fn not_requested_only_when_never_queried() {
        // Recorded: `local-only` has allowSubstitutes = false, so Nix never asks the cache
        // for it; `top` (its narinfo deleted) was asked for and built.
        let built = nix_built_derivations(&parse_lines(&nix("not-requested")));
        let explained = explain_nix_misses(&built, &answers(&built, &["top"], &[]));
        assert_eq!(
            reasons(&explained),
            [
                ("local-only", MissReason::NotRequested),
                ("top", MissReason::NoNarinfo)
            ]
        );
        // Across every recorded log, nothing the log shows a query for is "not requested".
        for log in [
            "top-404",
            "two-404",
            "unsigned",
            "nar-missing",
            "nar-missing-fallback",
            "not-requested",
        ] {
            let text = nix(log);
            for b in nix_built_derivations(&parse_lines(&text)) {
                let name = store_name(&b.drv).to_string();
                let asked = text
                    .lines()
                    .any(|l| l.contains("\"type\":109") && l.contains(&format!("-{name}\"")));
                let explained = explain_nix_misses(std::slice::from_ref(&b), &HashMap::new());
                assert_eq!(
                    explained.items[0].reason == MissReason::NotRequested,
                    !asked,
                    "{log}: {name}"
                );
            }
        }
    }

    #[test]
    fn narinfo_answers_by_status_and_signer() {
        let key = "h3-test-1:GaqbMluCRbkKBls1X60FiiHePoQ4U5Nd84ZCtV6OmR4=";
        let signed = crate::tools::fixture("nix/miss/narinfo/signed.narinfo");
        assert_eq!(narinfo_answer(200, &signed, &[key]), NarinfoAnswer::Ok);
        assert_eq!(
            narinfo_answer(200, &signed, &["cache.nixos.org-1:abc="]),
            NarinfoAnswer::UntrustedKey
        );
        let bare = crate::tools::fixture("nix/miss/narinfo/unsigned.narinfo");
        assert_eq!(narinfo_answer(200, &bare, &[key]), NarinfoAnswer::Unsigned);
        assert_eq!(narinfo_answer(404, "", &[key]), NarinfoAnswer::NotFound);
        assert_eq!(narinfo_answer(500, "", &[key]), NarinfoAnswer::Failed);
        assert_eq!(
            narinfo_url("file:///tmp/bc/", "/nix/store/abc-x"),
            Some("file:///tmp/bc/abc.narinfo".into())
        );
        assert_eq!(narinfo_url("http://c", "nonsense"), None);
    }

    #[test]
    fn outputs_of_a_derivation_are_matched_by_name() {
        assert!(belongs_to("/nix/store/abc-unit1", "unit1"));
        assert!(belongs_to("/nix/store/abc-openssl-3.0-dev", "openssl-3.0"));
        assert!(!belongs_to("/nix/store/abc-unit10", "unit1"));
    }
}
