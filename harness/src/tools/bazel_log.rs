//! Pure parsers for what Bazel reports about a build.
//!
//! `--execution_log_json_file` holds one pretty-printed JSON object per spawn, written
//! back to back (neither an array nor JSON Lines), and nothing at all for a no-op build.
//! It is read as a stream ([`ExecLogReader`]): memory holds one spawn at a time plus what
//! the caller keeps, never the file. Internal actions (symlinks, manifests) are not in it;
//! the console's summary line `INFO: 150 processes: 106 remote cache hit, 44 internal.`
//! counts them too, and is used to cross-check the hits.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::results::MnemonicCount;
use crate::tools::build_graph::{BuildGraph, Step};

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
    /// Output files of remote cache hits: what a warm build fetched from the cache's CAS.
    pub hit_outputs: u64,
    /// Their bytes.
    pub hit_output_bytes: u64,
    /// The whole records of the spawns that were not remote cache hits, when asked for
    /// ([`scan_exec_log`]): what miss explanations compare with the priming build.
    pub misses: Vec<SpawnRecord>,
}

/// The fields counters need, borrowed from the spawn's text where it has no escapes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpawnCounts<'a> {
    #[serde(default, borrow)]
    mnemonic: Cow<'a, str>,
    #[serde(default)]
    remote_cache_hit: bool,
    #[serde(default)]
    remote_cacheable: bool,
    #[serde(default, borrow)]
    actual_outputs: Vec<OutputRef<'a>>,
}

#[derive(Deserialize)]
struct OutputRef<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(default, borrow)]
    digest: Option<DigestRef<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DigestRef<'a> {
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(default, deserialize_with = "int64")]
    size_bytes: u64,
}

/// Bazel writes int64 fields as strings (`"858"`), and leaves out zeros.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Int64;
    impl serde::de::Visitor<'_> for Int64 {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an int64 as a number or a decimal string")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
            s.parse().map_err(E::custom)
        }
    }
    d.deserialize_any(Int64)
}

/// One spawn as the log records it: what its action key is made of (command, environment,
/// platform, inputs, outputs) and how it ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpawnRecord {
    #[serde(default)]
    pub command_args: Vec<String>,
    #[serde(default)]
    pub environment_variables: Vec<NameValue>,
    #[serde(default)]
    pub platform: Platform,
    #[serde(default)]
    pub inputs: Vec<FileDigest>,
    #[serde(default)]
    pub listed_outputs: Vec<String>,
    #[serde(default)]
    pub mnemonic: String,
    #[serde(default)]
    pub actual_outputs: Vec<FileDigest>,
    /// `linux-sandbox`, `remote cache hit`, `local`, ...
    #[serde(default)]
    pub runner: String,
    #[serde(default)]
    pub remote_cache_hit: bool,
    /// Whether the remote cache could be used for it at all (lookups and uploads).
    #[serde(default)]
    pub remote_cacheable: bool,
    #[serde(default)]
    pub exit_code: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NameValue {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub properties: Vec<NameValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FileDigest {
    pub path: String,
    #[serde(default)]
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Digest {
    pub hash: String,
    #[serde(default, deserialize_with = "int64")]
    pub size_bytes: u64,
}

impl Digest {
    /// `hash/size`, as results record output digests.
    pub fn text(&self) -> String {
        format!("{}/{}", self.hash, self.size_bytes)
    }
}

/// Only the listed outputs: enough to decide whether a spawn is worth reading whole.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpawnOutputs<'a> {
    #[serde(default, borrow)]
    pub listed_outputs: Vec<Cow<'a, str>>,
}

/// Reads an execution log one spawn at a time.
pub struct ExecLogReader<R> {
    json: JsonReader<R>,
    entries: usize,
    /// Names the log in errors.
    name: String,
}

impl<R: BufRead> ExecLogReader<R> {
    /// `name` says which log errors are about (e.g. its path).
    pub fn new(reader: R, name: &str) -> Self {
        ExecLogReader {
            json: JsonReader::new(reader),
            entries: 0,
            name: name.to_string(),
        }
    }

    /// Reads the next spawn; `false` after the last.
    fn advance(&mut self) -> Result<bool, String> {
        let at = self.entries + 1;
        match self.json.peek() {
            Ok(None) => return Ok(false),
            Ok(Some(b'{')) => {}
            Ok(Some(byte)) => {
                return Err(format!(
                    "{}: entry {at} starts with `{}` at byte {}, not an object: not a Bazel execution log (--execution_log_json_file)",
                    self.name,
                    char::from(byte).escape_default(),
                    self.json.offset
                ))
            }
            Err(e) => return Err(format!("{}: reading entry {at}: {e}", self.name)),
        }
        self.entries = at;
        self.json
            .read_value()
            .map(|_| true)
            .map_err(|e| format!("{}: entry {at}: {e}", self.name))
    }

    /// The next spawn's JSON text, or `None` after the last.
    pub fn next_raw(&mut self) -> Result<Option<&[u8]>, String> {
        Ok(self.advance()?.then_some(self.json.value.as_slice()))
    }

    /// The next spawn as `T` (a borrowed view such as [`SpawnOutputs`], or a
    /// [`SpawnRecord`]), or `None` after the last.
    pub fn next_as<'s, T: Deserialize<'s>>(&'s mut self) -> Result<Option<T>, String> {
        if !self.advance()? {
            return Ok(None);
        }
        self.reparse().map(Some)
    }

    /// The spawn read last, parsed (again) as `T`: a cheap view first, the whole record
    /// only when the view says it is needed.
    pub fn reparse<'s, T: Deserialize<'s>>(&'s self) -> Result<T, String> {
        serde_json::from_slice(&self.json.value)
            .map_err(|e| format!("{}: entry {}: {e}", self.name, self.entries))
    }
}

/// Counts and output digests of a whole log, read as a stream.
pub fn read_exec_log(reader: impl BufRead, name: &str) -> Result<ExecLog, String> {
    scan_exec_log(reader, name, false)
}

/// The same, and with `keep_misses` the whole record of every spawn that was not a remote
/// cache hit: one pass over the log serves the counters, the outputs and the explanations.
pub fn scan_exec_log(
    reader: impl BufRead,
    name: &str,
    keep_misses: bool,
) -> Result<ExecLog, String> {
    let mut log = ExecLog::default();
    let mut spawns = ExecLogReader::new(reader, name);
    while spawns.next_raw()?.is_some() {
        let spawn: SpawnCounts = spawns.reparse()?;
        if keep_misses && !spawn.remote_cache_hit {
            log.misses.push(spawns.reparse()?);
        }
        log.actions += 1;
        let count = match log.by_mnemonic.get_mut(spawn.mnemonic.as_ref()) {
            Some(count) => count,
            None => log
                .by_mnemonic
                .entry(spawn.mnemonic.into_owned())
                .or_default(),
        };
        count.actions += 1;
        if spawn.remote_cache_hit {
            log.remote_cache_hits += 1;
            count.remote_cache_hits += 1;
        }
        if spawn.remote_cacheable {
            log.remote_cacheable += 1;
        }
        for output in spawn.actual_outputs {
            let Some(d) = output.digest else { continue };
            if spawn.remote_cache_hit {
                log.hit_outputs += 1;
                log.hit_output_bytes += d.size_bytes;
            }
            log.outputs.insert(
                output.path.into_owned(),
                format!("{}/{}", d.hash, d.size_bytes),
            );
        }
    }
    Ok(log)
}

/// Only what a step of the build graph needs of a spawn.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpawnStep {
    #[serde(default)]
    inputs: Vec<FileDigest>,
    #[serde(default)]
    listed_outputs: Vec<String>,
    #[serde(default)]
    actual_outputs: Vec<FileDigest>,
    #[serde(default)]
    mnemonic: String,
    /// `Executing genrule //:stamp`, `Compiling lib0.cc`: names the action.
    #[serde(default)]
    progress_message: String,
}

/// The build's actions as steps (keyed by their listed outputs, named by their progress
/// message), read as a stream.
pub fn read_build_graph(reader: impl BufRead, name: &str) -> Result<BuildGraph, String> {
    let digests = |files: Vec<FileDigest>| {
        files
            .into_iter()
            .map(|f| (f.path, f.digest.map(|d| d.text())))
            .collect()
    };
    let mut steps = Vec::new();
    let mut spawns = ExecLogReader::new(reader, name);
    while let Some(spawn) = spawns.next_as::<SpawnStep>()? {
        let name = match spawn.progress_message.strip_prefix("Executing ") {
            Some(rest) => rest.to_string(),
            None if !spawn.progress_message.is_empty() => spawn.progress_message,
            None => format!(
                "{} {}",
                spawn.mnemonic,
                spawn.listed_outputs.first().map_or("", String::as_str)
            ),
        };
        steps.push(Step {
            key: spawn.listed_outputs.join(" "),
            name,
            inputs: digests(spawn.inputs),
            outputs: digests(spawn.actual_outputs),
        });
    }
    Ok(BuildGraph { steps })
}

/// The same for a log already in memory.
pub fn parse_exec_log(text: &str) -> Result<ExecLog, String> {
    read_exec_log(text.as_bytes(), "execution log")
}

/// Reads JSON values one at a time from a stream, holding only the current one: the
/// execution log's back-to-back objects, or the elements of a profile's event array.
pub(crate) struct JsonReader<R> {
    reader: R,
    /// The last value read.
    pub(crate) value: Vec<u8>,
    /// Bytes consumed so far, for error positions.
    pub(crate) offset: u64,
}

impl<R: BufRead> JsonReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        JsonReader {
            reader,
            value: Vec::new(),
            offset: 0,
        }
    }

    /// The next byte that is not whitespace, left unconsumed; `None` at the end.
    pub(crate) fn peek(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let skip = buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(buf.len());
            let next = buf.get(skip).copied();
            self.reader.consume(skip);
            self.offset += skip as u64;
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Consumes one byte (the one `peek` returned).
    pub(crate) fn consume_byte(&mut self) {
        self.reader.consume(1);
        self.offset += 1;
    }

    /// Reads one whole value (object, array, string or scalar) starting at the next byte
    /// that is not whitespace.
    pub(crate) fn read_value(&mut self) -> Result<&[u8], String> {
        self.value.clear();
        let start = self.offset;
        let mut scan = Scan::default();
        loop {
            let buf = self.reader.fill_buf().map_err(|e| e.to_string())?;
            if buf.is_empty() {
                if scan.scalar && !self.value.is_empty() {
                    return Ok(&self.value);
                }
                return Err(format!(
                    "the file ends inside the value that starts at byte {start} (truncated?)"
                ));
            }
            let (used, done) = scan.feed(buf);
            self.value.extend_from_slice(&buf[..used]);
            self.reader.consume(used);
            self.offset += used as u64;
            if done {
                return Ok(&self.value);
            }
        }
    }
}

/// Where a value's scan stands: nesting depth and string state, kept across buffers.
#[derive(Default)]
struct Scan {
    started: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// A number or literal, which ends at the first delimiter.
    scalar: bool,
}

impl Scan {
    /// Scans `buf`; returns how many bytes belong to the value and whether it ended.
    fn feed(&mut self, buf: &[u8]) -> (usize, bool) {
        let mut i = 0;
        if !self.started {
            // The caller positioned us on the value's first byte.
            self.started = true;
            match buf[0] {
                b'{' | b'[' => self.depth = 1,
                b'"' => self.in_string = true,
                _ => self.scalar = true,
            }
            i = 1;
        }
        if self.scalar {
            return match buf[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
            {
                Some(end) => (i + end, true),
                None => (buf.len(), false),
            };
        }
        while i < buf.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                // Most of a log is inside strings (paths, hashes, arguments): jump to the
                // next quote or backslash.
                match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                    None => return (buf.len(), false),
                    Some(at) => {
                        i += at;
                        if buf[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                            if self.depth == 0 {
                                return (i + 1, true);
                            }
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match buf[i] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return (i + 1, true);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        (buf.len(), false)
    }
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

/// The last `max_lines` lines of a failed build's console output, without Bazel's progress
/// and summary chatter: its errors and the failing action's own output. The caller redacts
/// secrets (`.iter().map(redact)`) before the lines go anywhere.
pub fn failure_tail(stderr: &str, max_lines: usize) -> Vec<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !is_progress(l))
        .collect();
    lines[lines.len().saturating_sub(max_lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Console lines that only report progress, whatever the build's outcome.
fn is_progress(line: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Loading:",
        "Analyzing:",
        "Starting local Bazel server",
        "INFO: Invocation ID:",
        "INFO: Analyzed ",
        "INFO: Found ",
        "INFO: Elapsed time:",
        "INFO: Build completed",
        "INFO: Streaming build results to:",
    ];
    PREFIXES.iter().any(|p| line.starts_with(p))
        || parse_process_summary(line).is_some()
        // `[12 / 30] Compiling ...`
        || line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once(']'))
            .is_some_and(|(counts, _)| counts.contains(" / "))
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
        assert_eq!((log.hit_outputs, log.hit_output_bytes), (0, 0));
    }

    #[test]
    fn the_build_graph_of_a_real_log_links_every_action_to_what_it_reads() {
        let text = fixture("cold.exec.json");
        let graph = read_build_graph(text.as_bytes(), "cold").unwrap();
        assert_eq!(graph.steps.len(), 106);
        assert_eq!(graph.outputs(), parse_exec_log(&text).unwrap().outputs);
        let digest = graph
            .steps
            .iter()
            .find(|s| s.name == "genrule //:digest")
            .expect("the last genrule, named by its progress message");
        assert_eq!(
            digest.key,
            "bazel-out/k8-fastbuild/bin/app_output_digest.txt"
        );
        // In dependency order the genrule chain comes after the binary it runs.
        let order: Vec<&str> = graph
            .order()
            .into_iter()
            .map(|i| graph.steps[i].name.as_str())
            .collect();
        let at = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(at("genrule //:run_app") < at("genrule //:upper"));
        assert!(at("genrule //:upper") < at("genrule //:digest"));
        assert!(
            order
                .iter()
                .position(|n| n.starts_with("Linking app"))
                .unwrap()
                < at("genrule //:run_app")
        );
        assert_eq!(
            graph.depths()["bazel-out/k8-fastbuild/bin/app_output_digest.txt"],
            0
        );
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
        // The README's access log: 127 CAS downloads; the sizes are the outputs' sizes.
        assert_eq!(warm.hit_outputs, 127);
        let bytes: u64 = warm
            .outputs
            .values()
            .map(|d| d.rsplit('/').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(warm.hit_output_bytes, bytes);
    }

    #[test]
    fn streaming_in_tiny_reads_gives_the_same_result() {
        // A reader that hands out 7 bytes at a time splits every value across buffers.
        let text = fixture("warm.exec.json");
        let whole = parse_exec_log(&text).unwrap();
        let trickle = std::io::BufReader::with_capacity(7, text.as_bytes());
        assert_eq!(read_exec_log(trickle, "warm").unwrap(), whole);
    }

    #[test]
    fn strings_with_braces_quotes_and_escapes_do_not_end_a_spawn() {
        let text = r#"{"mnemonic":"A}\"{","actualOutputs":[{"path":"x]","digest":{"hash":"h","sizeBytes":"3"}}]}
{"mnemonic":"B\\","remoteCacheHit":true}"#;
        let log = parse_exec_log(text).unwrap();
        assert_eq!(log.actions, 2);
        assert_eq!(log.outputs["x]"], "h/3");
        assert!(log.by_mnemonic.contains_key("A}\"{") && log.by_mnemonic.contains_key("B\\"));
    }

    #[test]
    fn empty_log_is_a_no_op_and_bad_logs_say_where() {
        assert_eq!(parse_exec_log("").unwrap(), ExecLog::default());
        assert_eq!(parse_exec_log(" \n").unwrap(), ExecLog::default());
        assert!(parse_exec_log("{\"mnemonic\": 3}")
            .unwrap_err()
            .contains("entry 1"));
        let truncated = parse_exec_log("{\"mnemonic\": \"A\"}\n{\"mnemonic\": \"B\"").unwrap_err();
        assert!(
            truncated.contains("entry 2") && truncated.contains("truncated"),
            "{truncated}"
        );
        let not_a_log = read_exec_log("[1, 2]".as_bytes(), "/x/exec.json").unwrap_err();
        assert!(
            not_a_log.contains("/x/exec.json") && not_a_log.contains("--execution_log_json_file"),
            "{not_a_log}"
        );
    }

    #[test]
    fn reads_full_records_of_the_planted_fixture() {
        let text = fixture("explain/warm.exec.json");
        let mut spawns = ExecLogReader::new(text.as_bytes(), "warm");
        let mut records = Vec::new();
        while let Some(spawn) = spawns.next_as::<SpawnRecord>().unwrap() {
            records.push(spawn);
        }
        assert_eq!(records.len(), 8);
        let env = records
            .iter()
            .find(|r| r.listed_outputs == ["bazel-out/k8-fastbuild/bin/env.txt"])
            .unwrap();
        assert_eq!(env.mnemonic, "Genrule");
        assert!(env
            .environment_variables
            .iter()
            .any(|v| v.name == "PLANTED" && v.value == "2"));
        let input = records
            .iter()
            .find(|r| r.listed_outputs == ["bazel-out/k8-fastbuild/bin/from_input.txt"])
            .unwrap();
        let digest = input.inputs[0].digest.as_ref().unwrap();
        assert_eq!(input.inputs[0].path, "input.txt");
        assert_eq!(digest.size_bytes, 10);
        assert_eq!(
            records.iter().filter(|r| r.remote_cache_hit).count(),
            2,
            "stable and chained hit"
        );
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

    #[test]
    fn failure_tail_keeps_the_actions_own_output_without_progress() {
        // Recorded: a genrule whose tool is missing (fixtures/bazel/failed/BUILD).
        let tail = failure_tail(&fixture("failed/stderr.txt"), 40);
        assert!(
            tail.iter()
                .any(|l| l == "/bin/bash: line 1: nvcc: command not found"),
            "{tail:#?}"
        );
        assert!(tail[0].starts_with("ERROR: ") && tail[0].contains("(Exit 127)"));
        assert!(!tail
            .iter()
            .any(|l| l.starts_with("Loading") || l.starts_with("[0 / 1]")));
        assert_eq!(
            tail.last().unwrap(),
            "FAILED: Build did NOT complete successfully"
        );
        let short = failure_tail(&fixture("failed/stderr.txt"), 2);
        assert_eq!(short.len(), 2);
        assert_eq!(short[1], tail[tail.len() - 1]);
        assert!(failure_tail("", 40).is_empty());
    }
}
