//! Pure parsers for what `nix build --log-format internal-json -v --json` prints.
//!
//! stderr carries one `@nix {json}` line per logger event. Activities start with
//! `"action":"start"` and a numeric `type`: 105 = a derivation build, 108 = a substitution,
//! 101 = a file transfer. A transfer's progress arrives as results of type 105 whose first
//! field is the bytes done so far; the last one is the transfer's size.

use std::collections::HashMap;

use serde::Deserialize;

const ACT_FILE_TRANSFER: u64 = 101;
const ACT_BUILD: u64 = 105;
const ACT_SUBSTITUTE: u64 = 108;
const RES_PROGRESS: u64 = 105;
const LEVEL_ERROR: u64 = 0;
const LEVEL_WARN: u64 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixLog {
    pub built: u64,
    pub substituted: u64,
    pub downloaded_bytes: u64,
    /// Error messages (level 0), ANSI colours removed, in order.
    pub errors: Vec<String>,
    /// Warnings (level 1), the same way.
    pub warnings: Vec<String>,
    /// Lines that were not `@nix` events (Nix prints some early errors plainly).
    pub plain: Vec<String>,
}

#[derive(Deserialize)]
struct Event {
    action: String,
    #[serde(default)]
    id: u64,
    #[serde(rename = "type", default)]
    kind: u64,
    #[serde(default)]
    level: Option<u64>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    fields: Vec<serde_json::Value>,
}

pub fn parse_internal_json(stderr: &str) -> NixLog {
    let mut log = NixLog::default();
    let mut transfers: HashMap<u64, u64> = HashMap::new();
    for line in stderr.lines() {
        let Some(json) = line.strip_prefix("@nix ") else {
            if !line.trim().is_empty() {
                log.plain.push(strip_ansi(line));
            }
            continue;
        };
        let Ok(event) = serde_json::from_str::<Event>(json) else {
            log.plain.push(strip_ansi(line));
            continue;
        };
        match event.action.as_str() {
            "start" => match event.kind {
                ACT_BUILD => log.built += 1,
                ACT_SUBSTITUTE => log.substituted += 1,
                ACT_FILE_TRANSFER => {
                    transfers.insert(event.id, 0);
                }
                _ => {}
            },
            "result" if event.kind == RES_PROGRESS => {
                if let (Some(done), Some(slot)) = (
                    event.fields.first().and_then(|v| v.as_u64()),
                    transfers.get_mut(&event.id),
                ) {
                    *slot = done;
                }
            }
            "msg" => match (event.level, event.msg) {
                (Some(LEVEL_ERROR), Some(msg)) => log.errors.push(strip_ansi(&msg)),
                (Some(LEVEL_WARN), Some(msg)) => log.warnings.push(strip_ansi(&msg)),
                _ => {}
            },
            _ => {}
        }
    }
    log.downloaded_bytes = transfers.values().sum();
    log
}

impl NixLog {
    /// A short, human-readable reason for a failed build: Nix's own error messages, else
    /// the last plain lines it printed.
    pub fn failure_summary(&self) -> Option<String> {
        let errors: Vec<&str> = self.errors.iter().map(String::as_str).collect();
        let plain: Vec<&str> = self.plain.iter().map(String::as_str).collect();
        super::failure_text(&errors, &plain)
    }
}

#[derive(Deserialize)]
struct BuiltPath {
    outputs: std::collections::BTreeMap<String, String>,
}

/// Output store paths from `nix build --json` (Nix 2.8 has no `--print-out-paths`).
pub fn parse_build_outputs(stdout: &str) -> Result<Vec<String>, String> {
    let built: Vec<BuiltPath> = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "unexpected `nix build --json` output ({e}): {:.200}",
            stdout.trim()
        )
    })?;
    Ok(built
        .into_iter()
        .flat_map(|b| b.outputs.into_values())
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathInfo {
    path: String,
    nar_hash: String,
}

/// Store path -> NAR hash, from `nix path-info --json`.
pub fn parse_path_info(stdout: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let infos: Vec<PathInfo> = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "unexpected `nix path-info --json` output ({e}): {:.200}",
            stdout.trim()
        )
    })?;
    Ok(infos.into_iter().map(|i| (i.path, i.nar_hash)).collect())
}

/// Removes ANSI CSI sequences (`ESC [ ... letter`), which Nix puts around error words.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::tools::fixture(&format!("nix/{name}"))
    }

    #[test]
    fn cold_build_of_the_fixture_builds_every_derivation() {
        // Recorded: fixture-c-dag, size 20 -> 20 compile steps + 1 link step, empty store.
        let log = parse_internal_json(&fixture("cold.stderr.log"));
        assert_eq!(log.built, 21);
        assert_eq!(log.substituted, 0);
        assert_eq!(log.downloaded_bytes, 0);
        assert!(log.errors.is_empty() && log.plain.is_empty());
        assert_eq!(log.failure_summary(), None);
    }

    #[test]
    fn warm_build_substitutes_and_counts_bytes() {
        // Recorded: the same build against the embedded cache: nix-cache-info (51 bytes),
        // one narinfo and one 7816-byte NAR.
        let log = parse_internal_json(&fixture("warm.stderr.log"));
        assert_eq!(log.built, 0);
        assert_eq!(log.substituted, 1);
        assert!(
            log.downloaded_bytes >= 51 + 7816,
            "{}",
            log.downloaded_bytes
        );
    }

    #[test]
    fn noop_build_does_nothing() {
        let log = parse_internal_json(&fixture("noop.stderr.log"));
        assert_eq!(
            (log.built, log.substituted, log.downloaded_bytes),
            (0, 0, 0)
        );
    }

    #[test]
    fn failed_build_yields_its_error_without_colours() {
        let log = parse_internal_json(&fixture("failed.stderr.log"));
        let summary = log.failure_summary().unwrap();
        assert!(summary.contains("error:"), "{summary}");
        assert!(!summary.contains('\u{1b}'), "{summary}");
    }

    #[test]
    fn plain_lines_are_kept_for_early_errors() {
        let log = parse_internal_json(
            "error: unrecognised flag '--bogus'\nTry 'nix --help' for more information.\n",
        );
        assert_eq!(log.failure_summary().unwrap().lines().count(), 2);
    }

    #[test]
    fn outputs_from_build_json() {
        let outs = parse_build_outputs(&fixture("cold.stdout.json")).unwrap();
        assert_eq!(outs.len(), 1);
        assert!(outs[0].starts_with("/nix/store/") && outs[0].ends_with("-c-dag-20"));
        assert!(parse_build_outputs("not json")
            .unwrap_err()
            .contains("not json"));
    }

    #[test]
    fn strips_ansi() {
        assert_eq!(strip_ansi("\u{1b}[31;1merror:\u{1b}[0m x"), "error: x");
    }
}
