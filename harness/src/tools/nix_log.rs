//! Pure parsers for what Nix prints, in every shape from Nix 2.8 to current: the
//! `--log-format internal-json` stream, `nix build --json`, `nix path-info --json` (a list
//! before 2.19, an object keyed by store path since), `nix --version`, and the error texts
//! the harness acts on.
//!
//! The internal-json stream on stderr carries one `@nix {json}` line per logger event.
//! Activities start with `"action":"start"` and a numeric `type` (see `ACT_*`); results
//! (`RES_*`) report progress, build-log lines and expected sizes for an activity `id`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

// Activity types (Nix's `ActivityType`).
pub const ACT_UNKNOWN: u64 = 0;
pub const ACT_COPY_PATH: u64 = 100;
pub const ACT_FILE_TRANSFER: u64 = 101;
pub const ACT_REALISE: u64 = 102;
pub const ACT_COPY_PATHS: u64 = 103;
pub const ACT_BUILDS: u64 = 104;
pub const ACT_BUILD: u64 = 105;
pub const ACT_SUBSTITUTE: u64 = 108;
pub const ACT_QUERY_PATH_INFO: u64 = 109;
// Result types (Nix's `ResultType`).
pub const RES_BUILD_LOG_LINE: u64 = 101;
pub const RES_PROGRESS: u64 = 105;
pub const RES_SET_EXPECTED: u64 = 106;
pub const RES_POST_BUILD_LOG_LINE: u64 = 107;
const LEVEL_ERROR: u64 = 0;
const LEVEL_WARN: u64 = 1;

/// The text of the activity that wraps every narinfo lookup of a realisation.
pub const QUERY_MISSING_TEXT: &str = "querying info about missing paths";

/// One `@nix` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    pub action: Action,
    #[serde(default)]
    pub id: u64,
    #[serde(rename = "type", default)]
    pub kind: u64,
    #[serde(default)]
    pub level: Option<u64>,
    #[serde(default)]
    pub msg: Option<String>,
    /// A started activity's description.
    #[serde(default)]
    pub text: Option<String>,
    /// The activity this one runs under (absent before Nix 2.10 or so: 0).
    #[serde(default)]
    pub parent: u64,
    #[serde(default)]
    pub fields: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Start,
    Stop,
    Result,
    Msg,
    #[serde(other)]
    Other,
}

impl Event {
    pub fn field_str(&self, index: usize) -> Option<&str> {
        self.fields.get(index)?.as_str()
    }

    pub fn field_u64(&self, index: usize) -> Option<u64> {
        self.fields.get(index)?.as_u64()
    }
}

/// One line of a Nix command's stderr.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Event(Event),
    /// Not an `@nix` event: early errors, `-L` build output, the plain log format.
    Plain(&'a str),
}

pub fn parse_line(line: &str) -> Line<'_> {
    line.strip_prefix("@nix ")
        .and_then(|json| serde_json::from_str(json).ok())
        .map_or(Line::Plain(line), Line::Event)
}

/// Every line of a Nix command's stderr, each parsed once: what the counters, the failed
/// build's tail, the time split and the miss explanations all read.
pub fn parse_lines(stderr: &str) -> Vec<Line<'_>> {
    stderr.lines().map(parse_line).collect()
}

/// What one build did, counted from its internal-json log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixLog {
    /// Derivations whose build started (a failed build counts too: it was not substituted).
    pub built: u64,
    /// Store paths substituted from a cache (failed substitutions excluded).
    pub substituted: u64,
    /// Bytes of every file transfer (nix-cache-info, narinfos, NARs).
    pub downloaded_bytes: u64,
    /// File transfers started: the requests made to caches over HTTP.
    pub file_transfers: u64,
    /// Compressed NAR bytes the narinfos announced (also for `file://` caches, which
    /// need no file transfer).
    pub expected_download_bytes: u64,
    /// Per substituter URL: what came from it (transfers that belong to none, such as
    /// fetches during evaluation, are under `""`).
    pub by_source: BTreeMap<String, SourceCounts>,
    /// Error messages (level 0), ANSI colours removed, in order.
    pub errors: Vec<String>,
    /// Warnings (level 1), the same way.
    pub warnings: Vec<String>,
    /// Lines that were not `@nix` events (Nix prints some early errors plainly).
    pub plain: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Substitutions started from this cache.
    pub substitutions: u64,
    pub downloaded_bytes: u64,
}

/// What a build did, counted from its whole stderr.
pub fn parse_internal_json(stderr: &str) -> NixLog {
    count_log(&parse_lines(stderr))
}

/// What a build did, counted from its stderr's parsed lines.
pub fn count_log(lines: &[Line]) -> NixLog {
    let mut log = NixLog::default();
    // Transfer id -> (URL, bytes so far).
    let mut transfers: HashMap<u64, (String, u64)> = HashMap::new();
    let mut substitution_starts = 0;
    let mut substitutions_done: Option<u64> = None;
    let mut copy_paths_activity = None;
    for line in lines {
        let event = match line {
            Line::Event(event) => event,
            Line::Plain(text) => {
                if !text.trim().is_empty() {
                    log.plain.push(strip_ansi(text));
                }
                continue;
            }
        };
        match event.action {
            Action::Start => match event.kind {
                ACT_BUILD => log.built += 1,
                ACT_SUBSTITUTE => {
                    substitution_starts += 1;
                    let source = event.field_str(1).unwrap_or_default().to_string();
                    log.by_source.entry(source).or_default().substitutions += 1;
                }
                ACT_FILE_TRANSFER => {
                    log.file_transfers += 1;
                    let url = event.field_str(0).unwrap_or_default().to_string();
                    transfers.insert(event.id, (url, 0));
                }
                ACT_COPY_PATHS => copy_paths_activity = Some(event.id),
                ACT_QUERY_PATH_INFO => {
                    let source = event.field_str(1).unwrap_or_default().to_string();
                    log.by_source.entry(source).or_default();
                }
                _ => {}
            },
            Action::Result if event.kind == RES_PROGRESS => {
                let done = event.field_u64(0);
                if let (Some(done), Some((_, bytes))) = (done, transfers.get_mut(&event.id)) {
                    *bytes = done;
                }
                // The worker's substitution tally: [done, expected, running, failed].
                if copy_paths_activity == Some(event.id) {
                    substitutions_done = done.or(substitutions_done);
                }
            }
            Action::Result
                if event.kind == RES_SET_EXPECTED
                    && event.field_u64(0) == Some(ACT_FILE_TRANSFER) =>
            {
                log.expected_download_bytes = event.field_u64(1).unwrap_or(0);
            }
            Action::Msg => match (event.level, &event.msg) {
                (Some(LEVEL_ERROR), Some(msg)) => log.errors.push(strip_ansi(msg)),
                (Some(LEVEL_WARN), Some(msg)) => log.warnings.push(strip_ansi(msg)),
                _ => {}
            },
            _ => {}
        }
    }
    log.substituted = substitutions_done.unwrap_or(substitution_starts);
    let sources: Vec<String> = log
        .by_source
        .keys()
        .filter(|s| !s.is_empty())
        .cloned()
        .collect();
    for (url, bytes) in transfers.into_values() {
        log.downloaded_bytes += bytes;
        let source = sources
            .iter()
            .filter(|s| url.starts_with(s.as_str()))
            .max_by_key(|s| s.len())
            .cloned()
            .unwrap_or_default();
        log.by_source.entry(source).or_default().downloaded_bytes += bytes;
    }
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

/// The name part of a store path or derivation: `/nix/store/<hash>-unit3.drv` -> `unit3`.
pub fn store_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".drv").unwrap_or(base);
    base.split_once('-').map_or(base, |(_, name)| name)
}

/// The last `max_lines` lines the builders themselves printed, as `name> line` (the way
/// `nix build -L` shows them), from a stderr's parsed lines. Prefers the derivations Nix
/// says failed. Reads the internal-json form, `-L` output and the plain form's `last N log
/// lines` block. The caller redacts secrets (`.iter().map(redact)`) before the lines go
/// anywhere.
pub fn build_log_tail(log: &[Line], max_lines: usize) -> Vec<String> {
    // Build activity id -> derivation path; log lines as (activity, text).
    let mut builds: HashMap<u64, String> = HashMap::new();
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut plain_lines: Vec<String> = Vec::new();
    let mut block_lines: Vec<String> = Vec::new();
    for line in log {
        match line {
            Line::Event(event) => match event.action {
                Action::Start if event.kind == ACT_BUILD => {
                    if let Some(drv) = event.field_str(0) {
                        builds.insert(event.id, drv.to_string());
                    }
                }
                Action::Result
                    if matches!(event.kind, RES_BUILD_LOG_LINE | RES_POST_BUILD_LOG_LINE) =>
                {
                    if let Some(text) = event.field_str(0) {
                        lines.push((event.id, strip_ansi(text)));
                    }
                }
                Action::Msg if event.level == Some(LEVEL_ERROR) => {
                    let msg = strip_ansi(event.msg.as_deref().unwrap_or_default());
                    failed.extend(classify_error(&msg).and_then(|f| f.derivation()));
                }
                _ => {}
            },
            Line::Plain(text) => {
                let text = strip_ansi(text);
                if let Some(failure) = classify_error(&text) {
                    failed.extend(failure.derivation());
                }
                let trimmed = text.trim_start();
                if let Some(rest) = trimmed
                    .strip_prefix("> ")
                    .or((trimmed == ">").then_some(""))
                {
                    block_lines.push(rest.to_string());
                } else if is_prefixed_build_line(&text) {
                    plain_lines.push(text);
                }
            }
        }
    }
    let take_last = |all: Vec<String>| -> Vec<String> {
        let skip = all.len().saturating_sub(max_lines);
        all.into_iter().skip(skip).collect()
    };
    if !lines.is_empty() {
        let failed_ids: Vec<u64> = builds
            .iter()
            .filter(|(_, drv)| failed.contains(drv))
            .map(|(id, _)| *id)
            .collect();
        let chosen: Vec<String> = lines
            .iter()
            .filter(|(id, _)| failed_ids.is_empty() || failed_ids.contains(id))
            .map(|(id, text)| match builds.get(id) {
                Some(drv) => format!("{}> {text}", store_name(drv)),
                None => text.clone(),
            })
            .collect();
        return take_last(chosen);
    }
    if !plain_lines.is_empty() {
        return take_last(plain_lines);
    }
    take_last(block_lines)
}

/// `name> text`, as `nix build -L` prefixes builder output.
fn is_prefixed_build_line(line: &str) -> bool {
    line.split_once("> ")
        .or_else(|| line.strip_suffix('>').map(|name| (name, "")))
        .is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.contains(char::is_whitespace)
                && !name.contains(['\'', '"', ':'])
        })
}

/// An error or warning Nix prints that the harness acts on, in the wording of any
/// version from 2.8 on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NixFailure {
    /// `builder for '<drv>' failed with exit code N` (2.8) / `Cannot build '<drv>'.
    /// Reason: builder failed with exit code N.` (2.19+).
    BuilderFailed { drv: String, exit_code: Option<i32> },
    /// `builder for '<drv>' failed to produce output path ...`: also what a chroot store
    /// without a usable sandbox gives.
    OutputNotProduced { drv: String },
    /// `the substitute for '<path>' from '<cache>' is not signed by any of the keys in
    /// 'trusted-public-keys'` (a warning: Nix builds instead).
    SubstituteNotTrusted { path: String },
    /// `file 'nar/...' does not exist in binary cache '<cache>'`.
    NarMissing,
    /// `hash mismatch ...`: a corrupt download.
    HashMismatch,
    /// `unable to download '<url>': HTTP error 500 ...` and the like.
    DownloadFailed { url: String },
    /// `experimental Nix feature 'nix-command' is disabled`.
    FeatureDisabled { feature: String },
}

impl NixFailure {
    /// The derivation the failure is about, if it names one.
    pub fn derivation(&self) -> Option<String> {
        match self {
            NixFailure::BuilderFailed { drv, .. } | NixFailure::OutputNotProduced { drv } => {
                Some(drv.clone())
            }
            _ => None,
        }
    }
}

/// Which failure a Nix message (ANSI colours removed) reports, if any the harness knows.
pub fn classify_error(message: &str) -> Option<NixFailure> {
    let quoted_after = |marker: &str| -> Option<String> {
        let rest = &message[message.find(marker)? + marker.len()..];
        Some(rest.split('\'').next()?.to_string())
    };
    let exit_code = || -> Option<i32> {
        let rest = &message[message.find("failed with exit code ")? + 22..];
        rest.split(|c: char| !c.is_ascii_digit() && c != '-')
            .next()?
            .parse()
            .ok()
    };
    if message.contains("failed to produce output path") {
        return Some(NixFailure::OutputNotProduced {
            drv: quoted_after("builder for '")?,
        });
    }
    if let Some(drv) = quoted_after("Cannot build '") {
        if message.contains("failed with exit code") || message.contains("Reason: builder") {
            return Some(NixFailure::BuilderFailed {
                drv,
                exit_code: exit_code(),
            });
        }
    }
    if message.contains("builder for '") && message.contains("failed") {
        return Some(NixFailure::BuilderFailed {
            drv: quoted_after("builder for '")?,
            exit_code: exit_code(),
        });
    }
    if message.contains("is not signed by any of the keys") {
        return Some(NixFailure::SubstituteNotTrusted {
            path: quoted_after("substitute for '")
                .or_else(|| quoted_after("path '"))
                .unwrap_or_default(),
        });
    }
    if message.contains("does not exist in binary cache") {
        return Some(NixFailure::NarMissing);
    }
    if message.contains("hash mismatch") {
        return Some(NixFailure::HashMismatch);
    }
    if message.contains("unable to download '") {
        return Some(NixFailure::DownloadFailed {
            url: quoted_after("unable to download '")?,
        });
    }
    if message.contains("experimental Nix feature '") && message.contains("is disabled") {
        return Some(NixFailure::FeatureDisabled {
            feature: quoted_after("experimental Nix feature '")?,
        });
    }
    None
}

#[derive(Deserialize)]
struct BuiltPath {
    outputs: BTreeMap<String, String>,
    #[serde(default, rename = "drvPath")]
    drv_path: Option<String>,
}

/// The derivations `nix build --json` built (or substituted the outputs of).
pub fn parse_build_derivations(stdout: &str) -> Result<Vec<String>, String> {
    let built: Vec<BuiltPath> = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "unexpected `nix build --json` output ({e}): {:.200}",
            stdout.trim()
        )
    })?;
    Ok(built.into_iter().filter_map(|b| b.drv_path).collect())
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

/// One entry of `nix path-info --json`, as any version prints it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathInfo {
    /// In the list form only (the object form has the path as the key).
    #[serde(default)]
    path: Option<String>,
    /// The list form marks paths that are not in the store with `"valid": false`.
    #[serde(default)]
    valid: Option<bool>,
    #[serde(default)]
    nar_hash: Option<NarHash>,
    #[serde(default)]
    nar_size: Option<u64>,
    #[serde(default)]
    references: Vec<String>,
    /// `null` (2.19+) or absent (2.8) when unknown.
    #[serde(default)]
    deriver: Option<String>,
    /// Absent (2.8) or `[]` (2.19+) when unsigned.
    #[serde(default)]
    signatures: Vec<String>,
    /// Content-addressed paths only, e.g. `text:sha256:...`.
    #[serde(default)]
    ca: Option<String>,
}

/// An SRI string (`sha256-...`), or the structured form some Nix 2.32 pre-releases printed.
#[derive(Deserialize)]
#[serde(untagged)]
enum NarHash {
    Text(String),
    Structured { algorithm: String, hash: String },
}

impl NarHash {
    fn into_text(self) -> String {
        match self {
            NarHash::Text(text) => text,
            NarHash::Structured { algorithm, hash } => format!("{algorithm}-{hash}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PathInfos {
    /// Nix up to 2.18: `[{"path": ..., "narHash": ...}]`.
    List(Vec<PathInfo>),
    /// Nix 2.19 on: `{"<path>": {"narHash": ...}}`, `null` for a path not in the store.
    Map(BTreeMap<String, Option<PathInfo>>),
}

/// One valid store path as `nix path-info --json` describes it: what a binary cache's
/// narinfo (or Attic's upload) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDetails {
    pub path: String,
    /// As Nix printed it: SRI (`sha256-<base64>`) from 2.8 to current.
    pub nar_hash: String,
    pub nar_size: Option<u64>,
    /// Full store paths.
    pub references: Vec<String>,
    /// The derivation's full store path, when known.
    pub deriver: Option<String>,
    pub signatures: Vec<String>,
    pub ca: Option<String>,
}

/// Every path of `nix path-info --json [-r]` of any version, in the order printed. A path
/// that is not in the store is an error that names it.
pub fn parse_path_details(stdout: &str) -> Result<Vec<PathDetails>, String> {
    let infos: PathInfos = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "unexpected `nix path-info --json` output (neither the list of Nix <= 2.18 nor the object of Nix >= 2.19: {e}): {:.200}",
            stdout.trim()
        )
    })?;
    let entries: Vec<(String, Option<PathInfo>)> = match infos {
        PathInfos::List(list) => list
            .into_iter()
            .map(|info| (info.path.clone().unwrap_or_default(), Some(info)))
            .collect(),
        PathInfos::Map(map) => map.into_iter().collect(),
    };
    entries
        .into_iter()
        .map(|(path, info)| {
            let info = info.filter(|i| i.valid != Some(false));
            let Some((info, hash)) = info.and_then(|mut i| i.nar_hash.take().map(|h| (i, h)))
            else {
                return Err(format!(
                    "`nix path-info --json`: {path} is not valid in the store (no NAR hash)"
                ));
            };
            Ok(PathDetails {
                path,
                nar_hash: hash.into_text(),
                nar_size: info.nar_size,
                references: info.references,
                deriver: info.deriver,
                signatures: info.signatures,
                ca: info.ca,
            })
        })
        .collect()
}

/// Store path -> NAR hash, from `nix path-info --json` of any version. A path that is not
/// in the store is an error that names it.
pub fn parse_path_info(stdout: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(parse_path_details(stdout)?
        .into_iter()
        .map(|d| (d.path, d.nar_hash))
        .collect())
}

/// A Nix version, comparable: `NixVersion::parse("nix (Nix) 2.26.3") > NixVersion::new(2, 19, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NixVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NixVersion {
    /// `nix path-info --json` prints an object keyed by store path from this version on.
    pub const PATH_INFO_OBJECT: NixVersion = NixVersion::new(2, 19, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> NixVersion {
        NixVersion {
            major,
            minor,
            patch,
        }
    }

    /// From `nix --version`: `nix (Nix) 2.8.0`, `nix (Nix) 2.26.3`, `nix (Nix) 2.18.1pre-git`,
    /// `nix (Determinate Nix 3.6.2) 2.29.0`, `nix (Lix, like Nix) 2.91.1`: the last
    /// dotted number is the Nix (or Lix) version.
    pub fn parse(text: &str) -> Option<NixVersion> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        line.split_whitespace().rev().find_map(|word| {
            let mut parts = word.split('.');
            let number = |part: Option<&str>| -> Option<u32> {
                let digits: String = part?.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            };
            let major = number(parts.next())?;
            let minor = number(parts.next())?;
            let patch = number(parts.next()).unwrap_or(0);
            Some(NixVersion::new(major, minor, patch))
        })
    }
}

impl std::fmt::Display for NixVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Removes ANSI CSI sequences (`ESC [ ... letter`), which Nix puts around error words.
pub fn strip_ansi(text: &str) -> String {
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

    fn recorded_2_26(name: &str) -> String {
        crate::tools::fixture(&format!("nix-2.26.3/{name}"))
    }

    #[test]
    fn cold_build_of_the_fixture_builds_every_derivation() {
        // Recorded: fixture-c-dag, size 20 -> 20 compile steps + 1 link step, empty store.
        let log = parse_internal_json(&fixture("cold.stderr.log"));
        assert_eq!(log.built, 21);
        assert_eq!(log.substituted, 0);
        assert_eq!(log.downloaded_bytes, 0);
        assert_eq!((log.file_transfers, log.expected_download_bytes), (0, 0));
        assert!(log.by_source.is_empty());
        assert!(log.errors.is_empty() && log.plain.is_empty());
        assert_eq!(log.failure_summary(), None);
    }

    #[test]
    fn warm_build_substitutes_and_counts_bytes() {
        // Recorded: the same build against the embedded cache: nix-cache-info (51 bytes),
        // one narinfo (488) and one 7816-byte NAR.
        let log = parse_internal_json(&fixture("warm.stderr.log"));
        assert_eq!(log.built, 0);
        assert_eq!(log.substituted, 1);
        assert_eq!(log.downloaded_bytes, 51 + 488 + 7816);
        assert_eq!(log.file_transfers, 3);
        assert_eq!(log.expected_download_bytes, 7816);
        let cache = &log.by_source["http://127.0.0.1:18081/nix"];
        assert_eq!(
            (cache.substitutions, cache.downloaded_bytes),
            (1, 51 + 488 + 7816)
        );
    }

    #[test]
    fn nix_2_26_logs_count_the_same() {
        // Recorded with Nix 2.26.3: fixture-c-dag size 3, cold, then warm from a file://
        // cache (no HTTP transfers; the narinfo announced a 2340-byte NAR).
        let cold = parse_internal_json(&recorded_2_26("cold.internal-json.log"));
        assert_eq!((cold.built, cold.substituted), (4, 0));
        assert!(cold.errors.is_empty() && cold.plain.is_empty());
        let warm = parse_internal_json(&recorded_2_26("warm.internal-json.log"));
        assert_eq!((warm.built, warm.substituted), (0, 1));
        assert_eq!((warm.file_transfers, warm.downloaded_bytes), (0, 0));
        assert_eq!(warm.expected_download_bytes, 2340);
        assert_eq!(warm.by_source["file:///tmp/bc"].substitutions, 1);
    }

    #[test]
    fn a_failed_substitution_is_not_counted_as_one() {
        // Recorded: one NAR deleted from the cache; Nix started 6 substitutions, one
        // failed, and it built that derivation (and the top one, whose narinfo was gone).
        let log = parse_internal_json(&fixture("miss/nar-missing.stderr.log"));
        assert_eq!((log.substituted, log.built), (5, 2));
        assert!(log.errors[0].contains("does not exist in binary cache"));
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
    fn the_builders_own_lines_in_every_form() {
        // Recorded: a builder that prints five lines, then runs a missing `nvcc` (exit 127),
        // as internal-json, with -L and in the plain format.
        let expected = [
            "cuda-canary> configuring cuda-canary",
            "cuda-canary> cuda_home=/usr/local/cuda",
            "cuda-canary> checking for kernel source 1 of 3",
            "cuda-canary> checking for kernel source 2 of 3",
            "cuda-canary> checking for kernel source 3 of 3",
            "cuda-canary> compiling kernel.cu",
            "cuda-canary> sh: 6: nvcc: not found",
        ];
        let json = build_log_tail(
            &parse_lines(&fixture("failed-nvcc/internal-json.stderr.log")),
            40,
        );
        assert_eq!(json, expected);
        let with_l = build_log_tail(
            &parse_lines(&fixture("failed-nvcc/print-build-logs.stderr.log")),
            40,
        );
        assert_eq!(with_l, expected);
        let plain = build_log_tail(&parse_lines(&fixture("failed-nvcc/plain.stderr.log")), 40);
        let unprefixed: Vec<&str> = expected
            .iter()
            .map(|l| l.strip_prefix("cuda-canary> ").unwrap())
            .collect();
        assert_eq!(plain, unprefixed);
        assert_eq!(
            build_log_tail(
                &parse_lines(&fixture("failed-nvcc/internal-json.stderr.log")),
                2
            ),
            expected[5..]
        );
        // The older fixture: two lines, then `failed with exit code 1`.
        assert_eq!(
            build_log_tail(&parse_lines(&fixture("failed.stderr.log")), 40),
            ["fails> compiling", "fails> unit.c:1: error: expected ;"]
        );
        assert!(build_log_tail(&parse_lines(&fixture("cold.stderr.log")), 40).is_empty());
    }

    #[test]
    fn error_texts_of_2_8_and_2_26() {
        let log = parse_internal_json(&fixture("failed-nvcc/internal-json.stderr.log"));
        assert_eq!(
            classify_error(&log.errors[0]),
            Some(NixFailure::BuilderFailed {
                drv: "/nix/store/yyzfzwkbi4ibspg3xv2kh4aa84ir4pii-cuda-canary.drv".into(),
                exit_code: Some(127)
            })
        );
        // Nix 2.19+ words it differently (and prints it on several lines).
        let modern = "error: Cannot build '/nix/store/abc-fail.drv'.\n       Reason: builder failed with exit code 3.\n       Output paths:\n         /nix/store/def-fail";
        assert_eq!(
            classify_error(modern),
            Some(NixFailure::BuilderFailed {
                drv: "/nix/store/abc-fail.drv".into(),
                exit_code: Some(3)
            })
        );
        let unsigned = parse_internal_json(&fixture("miss/unsigned.stderr.log"));
        assert_eq!(
            classify_error(&unsigned.warnings[0]),
            Some(NixFailure::SubstituteNotTrusted {
                path: "/nix/store/rr51am3b07rrn5qhw8gx2f79iiqbb14p-unit2".into()
            })
        );
        let nar = parse_internal_json(&fixture("miss/nar-missing.stderr.log"));
        assert_eq!(classify_error(&nar.errors[0]), Some(NixFailure::NarMissing));
        assert_eq!(
            classify_error("error: builder for '/nix/store/x-a.drv' failed to produce output path for output 'out' at '/tmp/s/x'"),
            Some(NixFailure::OutputNotProduced { drv: "/nix/store/x-a.drv".into() })
        );
        assert_eq!(
            classify_error("error: experimental Nix feature 'nix-command' is disabled; use '--extra-experimental-features nix-command' to override"),
            Some(NixFailure::FeatureDisabled { feature: "nix-command".into() })
        );
        assert_eq!(
            classify_error("warning: unable to download 'http://c/x.narinfo': HTTP error 500"),
            Some(NixFailure::DownloadFailed {
                url: "http://c/x.narinfo".into()
            })
        );
        assert_eq!(
            classify_error("error: hash mismatch importing path"),
            Some(NixFailure::HashMismatch)
        );
        assert_eq!(classify_error("evaluating file"), None);
    }

    #[test]
    fn outputs_from_build_json_of_2_8_and_2_26() {
        let outs = parse_build_outputs(&fixture("cold.stdout.json")).unwrap();
        assert_eq!(outs.len(), 1);
        assert!(outs[0].starts_with("/nix/store/") && outs[0].ends_with("-c-dag-20"));
        // 2.26 adds start and stop times.
        assert_eq!(
            parse_build_outputs(&recorded_2_26("build.json")).unwrap(),
            ["/nix/store/x40wr2vlzxnr11wlp705r11dnbmcb13r-c-dag-3"]
        );
        assert!(parse_build_outputs("not json")
            .unwrap_err()
            .contains("not json"));
    }

    #[test]
    fn path_info_as_a_list_or_an_object() {
        let old = parse_path_info(&fixture("path-info.json")).unwrap();
        assert_eq!(
            old["/nix/store/hjy6kwc6yblc7wk9qx831fbh9fn59fcr-c-dag-6"],
            "sha256-0D1YOKS80BGPB3VEL+yV8594BMqPLmNeGm0zo/tcIVA="
        );
        for name in ["path-info.json", "path-info-r.json"] {
            let new = parse_path_info(&recorded_2_26(name)).unwrap();
            assert_eq!(
                new["/nix/store/x40wr2vlzxnr11wlp705r11dnbmcb13r-c-dag-3"],
                "sha256-fRqnG15OPRpSSe7FvMx8F700pykh+HHoPo+G8XvBEYE="
            );
        }
        // A path that is not in the store: `valid: false` (2.8), `null` (2.19+).
        let invalid = parse_path_info(&fixture("path-info-invalid.json")).unwrap_err();
        assert!(invalid.contains("-top is not valid"), "{invalid}");
        let null = parse_path_info(r#"{"/nix/store/abc-x":null}"#).unwrap_err();
        assert!(null.contains("/nix/store/abc-x"), "{null}");
        let structured = parse_path_info(
            r#"{"/nix/store/abc-x":{"narHash":{"algorithm":"sha256","format":"base64","hash":"AAA="}}}"#,
        )
        .unwrap();
        assert_eq!(structured["/nix/store/abc-x"], "sha256-AAA=");
        assert!(parse_path_info("3").unwrap_err().contains("Nix >= 2.19"));
    }

    #[test]
    fn path_details_of_a_closure_in_both_shapes() {
        // Recorded: `nix path-info --json -r` of the same closure (app -> lib -> data, and
        // lib -> note, a content-addressed text file; app signed) under 2.8 and 2.26.3.
        let old = parse_path_details(&fixture("closure/path-info-r.json")).unwrap();
        let new = parse_path_details(&recorded_2_26("path-info-closure-r.json")).unwrap();
        let by_path = |all: &[PathDetails]| -> BTreeMap<String, PathDetails> {
            all.iter().map(|d| (d.path.clone(), d.clone())).collect()
        };
        assert_eq!(by_path(&old), by_path(&new), "both shapes say the same");
        let all = by_path(&new);
        assert_eq!(all.len(), 4);
        let app = &all["/nix/store/azc43fg06314dxn6ia2l9aanzl32bb6v-refs-app"];
        assert_eq!(
            app.nar_hash,
            "sha256-Ot3KQcX1X0zVLJwNus6HRLImrys/oNp8O+U7SuxfpV4="
        );
        assert_eq!(app.nar_size, Some(336));
        assert_eq!(
            app.references,
            ["/nix/store/127s998hz07z025zwaqjlkqxxbvwwyyc-refs-lib"]
        );
        assert_eq!(
            app.deriver.as_deref(),
            Some("/nix/store/gxpy704209cr5i2s1f457v09b4sp2i76-refs-app.drv")
        );
        assert_eq!(app.signatures.len(), 1);
        assert!(app.signatures[0].starts_with("fixture-key:"));
        assert_eq!(app.ca, None);
        let lib = &all["/nix/store/127s998hz07z025zwaqjlkqxxbvwwyyc-refs-lib"];
        assert_eq!(lib.references.len(), 2);
        assert!(lib.signatures.is_empty());
        let note = &all["/nix/store/qpjq9fvxh21s9dg6w3rk3gkr20f729ka-refs-note"];
        assert_eq!(note.deriver, None);
        assert_eq!(
            note.ca.as_deref(),
            Some("text:sha256:13qmlqr6yl6q3wa0chh5li623zd0km0lspq06lvp5h7jggy9n2l0")
        );
        let invalid = parse_path_details(&fixture("path-info-invalid.json")).unwrap_err();
        assert!(invalid.contains("-top is not valid"), "{invalid}");
    }

    #[test]
    fn versions_compare() {
        let old = NixVersion::parse(&fixture("nix-version.txt")).unwrap();
        let new = NixVersion::parse(&recorded_2_26("nix-version.txt")).unwrap();
        assert_eq!(old, NixVersion::new(2, 8, 0));
        assert_eq!(new.to_string(), "2.26.3");
        assert!(old < NixVersion::PATH_INFO_OBJECT && new >= NixVersion::PATH_INFO_OBJECT);
        assert_eq!(
            NixVersion::parse("nix (Nix) 2.18.1pre20231012_dirty"),
            Some(NixVersion::new(2, 18, 1))
        );
        assert_eq!(
            NixVersion::parse("nix (Determinate Nix 3.6.2) 2.29.0"),
            Some(NixVersion::new(2, 29, 0))
        );
        assert_eq!(
            NixVersion::parse("nix (Lix, like Nix) 2.91.1"),
            Some(NixVersion::new(2, 91, 1))
        );
        assert_eq!(NixVersion::parse("nix"), None);
    }

    #[test]
    fn names_of_store_paths() {
        assert_eq!(store_name("/nix/store/h38r9zzm-unit3.drv"), "unit3");
        assert_eq!(store_name("/nix/store/jvxn9czi-unit3"), "unit3");
        assert_eq!(store_name("/nix/store/abc-c-dag-6"), "c-dag-6");
    }

    #[test]
    fn strips_ansi() {
        assert_eq!(strip_ansi("\u{1b}[31;1merror:\u{1b}[0m x"), "error: x");
    }
}
