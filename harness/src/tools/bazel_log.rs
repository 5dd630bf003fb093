//! Pure parsers for what Bazel reports about a build.
//!
//! `--execution_log_json_file` holds one pretty-printed JSON object per spawn, written
//! back to back (neither an array nor JSON Lines), and nothing at all for a no-op build.
//! Internal actions (symlinks, manifests) are not in it; the console's summary line
//! `INFO: 150 processes: 106 remote cache hit, 44 internal.` counts them too, and is used
//! to cross-check the hits.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecLog {
    /// Spawns in the log (every action Bazel could cache or execute).
    pub actions: u64,
    pub remote_cache_hits: u64,
    /// Spawns Bazel was allowed to look up in the remote cache.
    pub remote_cacheable: u64,
    pub by_mnemonic: BTreeMap<String, MnemonicCount>,
    /// Every output file of every spawn: path -> digest (`hash/size`).
    pub outputs: BTreeMap<String, String>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct MnemonicCount {
    pub actions: u64,
    pub remote_cache_hits: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spawn {
    #[serde(default)]
    mnemonic: String,
    #[serde(default)]
    remote_cache_hit: bool,
    #[serde(default)]
    remote_cacheable: bool,
    #[serde(default)]
    actual_outputs: Vec<Output>,
}

#[derive(Deserialize)]
struct Output {
    path: String,
    #[serde(default)]
    digest: Option<Digest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Digest {
    hash: String,
    /// Bazel writes int64 fields as strings in this log.
    #[serde(default)]
    size_bytes: serde_json::Value,
}

pub fn parse_exec_log(text: &str) -> Result<ExecLog, String> {
    let mut log = ExecLog::default();
    for (index, spawn) in serde_json::Deserializer::from_str(text)
        .into_iter::<Spawn>()
        .enumerate()
    {
        let spawn = spawn.map_err(|e| format!("execution log entry {}: {e}", index + 1))?;
        log.actions += 1;
        let count = log.by_mnemonic.entry(spawn.mnemonic).or_default();
        count.actions += 1;
        if spawn.remote_cache_hit {
            log.remote_cache_hits += 1;
            count.remote_cache_hits += 1;
        }
        if spawn.remote_cacheable {
            log.remote_cacheable += 1;
        }
        for output in spawn.actual_outputs {
            if let Some(d) = output.digest {
                let size = match &d.size_bytes {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                log.outputs
                    .insert(output.path, format!("{}/{size}", d.hash));
            }
        }
    }
    Ok(log)
}

/// The console summary: `INFO: N processes: A kind, B kind.`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSummary {
    pub total: u64,
    /// By kind: `remote cache hit`, `internal`, `linux-sandbox`, `local`, ...
    pub by_kind: BTreeMap<String, u64>,
}

impl ProcessSummary {
    pub fn remote_cache_hits(&self) -> u64 {
        self.by_kind.get("remote cache hit").copied().unwrap_or(0)
    }
}

/// The last summary line of a build's console output, if any.
pub fn parse_process_summary(stderr: &str) -> Option<ProcessSummary> {
    stderr.lines().rev().find_map(|line| {
        let rest = line.strip_prefix("INFO: ")?;
        let (total, kinds) = rest.split_once(": ")?;
        let total = total
            .strip_suffix(" processes")
            .or_else(|| total.strip_suffix(" process"))?
            .parse()
            .ok()?;
        let mut by_kind = BTreeMap::new();
        for part in kinds.trim_end_matches('.').split(", ") {
            let (n, kind) = part.split_once(' ')?;
            by_kind.insert(kind.to_string(), n.parse().ok()?);
        }
        Some(ProcessSummary { total, by_kind })
    })
}

/// Lines that say why a build failed: Bazel's `ERROR:` lines, else the last lines.
pub fn failure_summary(stderr: &str) -> Option<String> {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ERROR:") || l.starts_with("FATAL:"))
        .collect();
    let all: Vec<&str> = stderr.lines().collect();
    super::failure_text(&errors, &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::tools::fixture(&format!("bazel/{name}"))
    }

    #[test]
    fn cold_exec_log_executes_every_action() {
        // Recorded: fixture-cc, SIZE 20, fresh output root, no remote cache.
        let log = parse_exec_log(&fixture("cold.exec.json")).unwrap();
        assert_eq!(log.actions, 106);
        assert_eq!(log.remote_cache_hits, 0);
        // 20 libraries plus the binary's main.
        assert_eq!(log.by_mnemonic["CppCompile"].actions, 21);
        assert!(log.by_mnemonic.contains_key("Genrule") && log.by_mnemonic.contains_key("CppLink"));
        assert!(log.outputs.len() > 100);
        assert!(log.outputs.values().all(|d| d.contains('/')));
    }

    #[test]
    fn warm_exec_log_hits_the_cache_for_every_action_with_the_same_outputs() {
        let cold = parse_exec_log(&fixture("cold.exec.json")).unwrap();
        let warm = parse_exec_log(&fixture("warm.exec.json")).unwrap();
        assert_eq!(warm.actions, 106);
        assert_eq!(warm.remote_cache_hits, 106);
        assert_eq!(warm.remote_cacheable, 106);
        assert_eq!(warm.by_mnemonic["CppCompile"].remote_cache_hits, 21);
        assert_eq!(warm.outputs, cold.outputs);
    }

    #[test]
    fn empty_log_is_a_no_op() {
        assert_eq!(parse_exec_log("").unwrap(), ExecLog::default());
        assert!(parse_exec_log("{\"mnemonic\": 3}")
            .unwrap_err()
            .contains("entry 1"));
    }

    #[test]
    fn summary_lines_in_any_order_and_number() {
        let cold = parse_process_summary(&fixture("cold.stderr.txt")).unwrap();
        assert_eq!(cold.total, 150);
        assert_eq!(cold.by_kind["linux-sandbox"], 106);
        assert_eq!(cold.remote_cache_hits(), 0);
        let warm = parse_process_summary(&fixture("warm.stderr.txt")).unwrap();
        assert_eq!((warm.total, warm.remote_cache_hits()), (150, 106));
        let noop = parse_process_summary(&fixture("noop.stderr.txt")).unwrap();
        assert_eq!((noop.total, noop.by_kind["internal"]), (1, 1));
        assert_eq!(parse_process_summary("INFO: Elapsed time: 1s"), None);
    }

    #[test]
    fn failure_summary_prefers_error_lines() {
        let text = "Loading: \nERROR: /ws/BUILD:3:1: no such target\nINFO: Elapsed time: 0.1s\nFAILED: Build did NOT complete successfully\n";
        assert_eq!(
            failure_summary(text).unwrap(),
            "ERROR: /ws/BUILD:3:1: no such target"
        );
        assert_eq!(failure_summary("a\nb\n").unwrap(), "a\nb");
        assert_eq!(failure_summary(""), None);
    }
}
