//! Streaming parser of Bazel's JSON trace profile, and the split of a build's wall time it
//! gives: start-up, loading and analysis, execution, finish, and the time remote cache
//! transfers took (in all and on the critical path).
//!
//! Bazel 4.2.3 writes the profile with `--profile=FILE --experimental_generate_json_trace_profile`
//! (plain JSON unless FILE ends in `.gz`; newer Bazel versions write it by default). The
//! file is `{"otherData": {...}, "traceEvents": [event, ...]}` with times in microseconds
//! since the server started the command; `Launch Blaze` (negative `ts`) covers the client's
//! start and the server's. Phase boundaries are instant events of category
//! `build phase marker`: `Initialize command`, `Evaluate target patterns`, `Load and analyze
//! dependencies`, `Prepare for build`, `Build artifacts`, `Complete build`; the command
//! ends at the `Finishing` instant. Remote cache traffic shows as `remote action cache check`
//! and `remote output download` events on the thread of the action they serve; the critical
//! path as `critical path component` events named `action '<progress message>'`, matching
//! the `action processing` events of those actions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::results::explain::{total, Phase, PhaseTime, TimeSplit};
use crate::tools::bazel_log::JsonReader;

/// What a profile says about where a build's time went (microseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BazelProfile {
    /// Client launch until the server started the command (`Launch Blaze`).
    pub launch_us: Option<f64>,
    /// Phase markers: name and start, in time order.
    pub markers: Vec<(String, f64)>,
    /// When the command finished (`Finishing`, else the end of the last event).
    pub end_us: f64,
    /// Remote action cache lookups (one request each).
    pub remote_cache_checks: u64,
    /// Remote output downloads (each one or more blob requests).
    pub remote_downloads: u64,
    /// Wall time with at least one remote cache lookup or download in flight.
    pub remote_cache_us: f64,
    /// Of that, the time of actions on the critical path.
    pub remote_cache_critical_path_us: f64,
}

#[derive(Deserialize)]
struct TraceEvent<'a> {
    #[serde(default, borrow)]
    cat: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ph: Option<Cow<'a, str>>,
    #[serde(default)]
    ts: Option<f64>,
    #[serde(default)]
    dur: Option<f64>,
    #[serde(default)]
    tid: Option<i64>,
}

/// A span of one thread.
#[derive(Debug, Clone, Copy)]
struct Span {
    tid: i64,
    start: f64,
    end: f64,
}

/// What the events leave to compute at the end: kept per action, never per event.
#[derive(Default)]
struct Collected {
    profile: BazelProfile,
    finishing: Option<f64>,
    transfers: Vec<Span>,
    /// `action processing` spans by the action's progress message.
    actions: HashMap<String, Vec<Span>>,
    critical: Vec<(String, f64, f64)>,
}

impl Collected {
    fn add(&mut self, event: TraceEvent) {
        let (Some(ts), cat, name) = (event.ts, event.cat.as_deref(), event.name.as_deref()) else {
            return;
        };
        let dur = event.dur.unwrap_or(0.0);
        let complete = event.ph.as_deref() == Some("X");
        let span = Span {
            tid: event.tid.unwrap_or(0),
            start: ts,
            end: ts + dur,
        };
        self.profile.end_us = self.profile.end_us.max(span.end);
        match (cat, name) {
            (Some("build phase marker"), Some("Launch Blaze")) => {
                self.profile.launch_us = Some(dur);
            }
            (Some("build phase marker"), Some(name)) => {
                self.profile.markers.push((name.to_string(), ts));
            }
            (Some("general information"), Some("Finishing")) => self.finishing = Some(ts),
            (Some("critical path component"), Some(name)) if complete => {
                self.critical.push((name.to_string(), span.start, span.end));
            }
            (Some("action processing"), Some(name)) if complete => {
                self.actions.entry(name.to_string()).or_default().push(span);
            }
            (Some(cat), _) if complete && cat.starts_with("remote ") => {
                if cat.contains("cache check") {
                    self.profile.remote_cache_checks += 1;
                } else if cat.contains("download") {
                    self.profile.remote_downloads += 1;
                } else {
                    return;
                }
                self.transfers.push(span);
            }
            _ => {}
        }
    }

    fn finish(self) -> BazelProfile {
        let mut profile = self.profile;
        if let Some(at) = self.finishing {
            profile.end_us = at;
        }
        profile
            .markers
            .sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        profile.remote_cache_us = union_length(self.transfers.iter().map(|s| (s.start, s.end)));
        let mut threads: HashMap<i64, ThreadTransfers> = HashMap::new();
        for span in &self.transfers {
            let thread = threads.entry(span.tid).or_default();
            thread.spans.push((span.start, span.end));
            thread.longest = thread.longest.max(span.end - span.start);
        }
        for thread in threads.values_mut() {
            thread
                .spans
                .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        }
        profile.remote_cache_critical_path_us =
            total(self.critical.iter().map(|(name, start, end)| {
                let Some(action) = name
                    .strip_prefix("action '")
                    .and_then(|n| n.strip_suffix('\''))
                else {
                    return 0.0;
                };
                total(
                    self.actions
                        .get(action)
                        .into_iter()
                        .flatten()
                        .filter(|a| a.end > *start && a.start < *end)
                        .filter_map(|a| {
                            let thread = threads.get(&a.tid)?;
                            Some(thread.covered(start.max(a.start), end.min(a.end)))
                        }),
                )
            }));
        profile
    }
}

/// One thread's transfers, sorted by start, for finding those inside a window quickly.
#[derive(Default)]
struct ThreadTransfers {
    spans: Vec<(f64, f64)>,
    longest: f64,
}

impl ThreadTransfers {
    /// Time within `from..to` covered by this thread's transfers.
    fn covered(&self, from: f64, to: f64) -> f64 {
        // No transfer starting before `from - longest` can reach `from`.
        let first = self.spans.partition_point(|s| s.0 < from - self.longest);
        union_length(
            self.spans[first..]
                .iter()
                .take_while(|s| s.0 < to)
                .map(|s| (s.0.max(from), s.1.min(to))),
        )
    }
}

/// Total length covered by intervals (empty or inverted ones count nothing).
fn union_length(spans: impl Iterator<Item = (f64, f64)>) -> f64 {
    let mut spans: Vec<(f64, f64)> = spans.filter(|(s, e)| e > s).collect();
    spans.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

/// Reads a profile as a stream: memory holds one event at a time plus a few numbers per
/// action. `name` says which file errors are about.
pub fn read_profile(reader: impl BufRead, name: &str) -> Result<BazelProfile, String> {
    let fail = |what: String| format!("{name}: {what}");
    let mut json = JsonReader::new(reader);
    let mut collected = Collected::default();
    match json.peek().map_err(|e| fail(e.to_string()))? {
        Some(b'{') => {
            json.consume_byte();
            loop {
                match json.peek().map_err(|e| fail(e.to_string()))? {
                    Some(b'}') => break,
                    Some(b',') => json.consume_byte(),
                    Some(b'"') => {
                        let key: String =
                            serde_json::from_slice(json.read_value().map_err(fail)?)
                                .map_err(|e| fail(e.to_string()))?;
                        if json.peek().map_err(|e| fail(e.to_string()))? != Some(b':') {
                            return Err(fail(format!("no `:` after the key `{key}`")));
                        }
                        json.consume_byte();
                        if key == "traceEvents" {
                            read_events(&mut json, &mut collected).map_err(fail)?;
                        } else {
                            json.read_value().map_err(fail)?;
                        }
                    }
                    other => return Err(fail(unexpected(other, json.offset))),
                }
            }
        }
        // The trace format's other form: the event array alone.
        Some(b'[') => read_events(&mut json, &mut collected).map_err(fail)?,
        Some(0x1f) => {
            return Err(fail(
                "a gzip-compressed profile: name the --profile file without `.gz` (or pass --json_trace_compression=no)".into(),
            ))
        }
        other => {
            return Err(fail(format!(
                "{}: not a JSON trace profile (--profile=FILE --experimental_generate_json_trace_profile)",
                unexpected(other, json.offset)
            )))
        }
    }
    Ok(collected.finish())
}

fn read_events<R: BufRead>(
    json: &mut JsonReader<R>,
    collected: &mut Collected,
) -> Result<(), String> {
    if json.peek().map_err(|e| e.to_string())? != Some(b'[') {
        return Err("`traceEvents` is not an array".into());
    }
    json.consume_byte();
    let mut index = 0;
    loop {
        match json.peek().map_err(|e| e.to_string())? {
            Some(b']') => {
                json.consume_byte();
                return Ok(());
            }
            Some(b',') => json.consume_byte(),
            Some(b'{') => {
                index += 1;
                let raw = json.read_value()?;
                let event: TraceEvent =
                    serde_json::from_slice(raw).map_err(|e| format!("trace event {index}: {e}"))?;
                collected.add(event);
            }
            other => return Err(unexpected(other, json.offset)),
        }
    }
}

fn unexpected(byte: Option<u8>, offset: u64) -> String {
    match byte {
        Some(b) => format!(
            "unexpected `{}` at byte {offset}",
            char::from(b).escape_default()
        ),
        None => format!("the file ends at byte {offset} (truncated?)"),
    }
}

/// The phase a marker starts; unknown markers start time that counts as other.
fn marker_phase(name: &str) -> Option<Phase> {
    match name {
        "Initialize command" => Some(Phase::Startup),
        "Evaluate target patterns" | "Load and analyze dependencies" | "Analyze licenses" => {
            Some(Phase::LoadingAnalysis)
        }
        "Prepare for build" | "Build artifacts" => Some(Phase::Execution),
        "Complete build" => Some(Phase::Finish),
        _ => None,
    }
}

impl BazelProfile {
    /// Splits `wall_s` (the harness's measurement of the whole `bazel build`, client start
    /// to exit) into the profile's phases; what the profile does not cover (the launcher
    /// before the client's clock starts, the exit after `Finishing`) is `other_s`.
    pub fn split(&self, wall_s: f64) -> TimeSplit {
        let mut phases: Vec<PhaseTime> = Vec::new();
        let mut add = |phase: Phase, us: f64| {
            if us <= 0.0 {
                return;
            }
            match phases.last_mut() {
                Some(last) if last.phase == phase => last.seconds += us / 1e6,
                _ => phases.push(PhaseTime {
                    phase,
                    seconds: us / 1e6,
                }),
            }
        };
        if let Some(launch) = self.launch_us {
            add(Phase::Startup, launch);
        }
        for (i, (name, start)) in self.markers.iter().enumerate() {
            let end = self
                .markers
                .get(i + 1)
                .map_or(self.end_us, |(_, next)| *next)
                .min(self.end_us);
            if let Some(phase) = marker_phase(name) {
                add(phase, end - start);
            }
        }
        let mut split = TimeSplit::from_phases(wall_s, phases);
        split.remote_cache_s = Some(self.remote_cache_us / 1e6);
        split.remote_cache_critical_path_s = Some(self.remote_cache_critical_path_us / 1e6);
        split
    }

    /// Requests the cache served: one lookup per cacheable action, one download per hit.
    pub fn remote_cache_requests(&self) -> u64 {
        self.remote_cache_checks + self.remote_downloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> BazelProfile {
        let text = crate::tools::fixture(&format!("bazel/profile/{name}.profile.json"));
        read_profile(text.as_bytes(), name).unwrap()
    }

    /// The harness-measured wall time of each recorded build (`profile/wall_s.txt`).
    fn wall_s(name: &str) -> f64 {
        crate::tools::fixture("bazel/profile/wall_s.txt")
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
            .unwrap()
    }

    fn assert_sums_to_wall(split: &TimeSplit) {
        let off = (split.accounted_s() - split.wall_s).abs() / split.wall_s;
        assert!(off <= 0.05, "{split:#?}");
    }

    #[test]
    fn warm_build_time_is_mostly_start_up_and_analysis() {
        // Recorded: fixture-cc SIZE 20, fresh output root, every action from the HTTP cache.
        let p = profile("warm");
        assert_eq!(p.launch_us, Some(1_907_000.0));
        assert_eq!(p.markers.len(), 6);
        assert_eq!(p.end_us, 8_173_975.0);
        assert_eq!((p.remote_cache_checks, p.remote_downloads), (106, 106));
        assert_eq!(p.remote_cache_requests(), 212);
        let split = p.split(wall_s("warm"));
        assert_sums_to_wall(&split);
        let phases: Vec<Phase> = split.phases.iter().map(|p| p.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::Startup,
                Phase::LoadingAnalysis,
                Phase::Execution,
                Phase::Finish
            ]
        );
        // Launch 1.907 s + initialise 1.135 s; loading and analysis 1.135 s .. 6.441 s.
        assert!((split.seconds(Phase::Startup) - 3.042_467).abs() < 1e-6);
        assert!((split.seconds(Phase::LoadingAnalysis) - 5.305_798).abs() < 1e-6);
        let (setup, _) = split.setup();
        assert!(setup > 0.7 * split.wall_s, "{split:#?}");
        let transfer = split.remote_cache_s.unwrap();
        assert!(transfer > 0.0 && transfer < split.seconds(Phase::Execution));
        let critical = split.remote_cache_critical_path_s.unwrap();
        assert!(critical > 0.0 && critical <= transfer, "{split:#?}");
        assert!(split.other_s > 0.0 && split.other_s < 0.05 * split.wall_s);
    }

    #[test]
    fn cold_build_has_no_cache_traffic_and_its_time_in_execution() {
        let split = profile("cold").split(wall_s("cold"));
        assert_sums_to_wall(&split);
        assert_eq!(split.remote_cache_s, Some(0.0));
        assert_eq!(split.remote_cache_critical_path_s, Some(0.0));
        assert!(
            split.seconds(Phase::Execution) > 0.5 * split.wall_s,
            "{split:#?}"
        );
    }

    #[test]
    fn noop_build_on_a_running_server_is_short_everywhere() {
        // The server was up, so launching is the client alone (28 ms).
        let p = profile("noop");
        assert_eq!(p.launch_us, Some(28_000.0));
        let split = p.split(wall_s("noop"));
        assert_sums_to_wall(&split);
        assert!(split.seconds(Phase::Startup) < 0.2);
        // A no-op is so short that the launcher and exit are a large share: shown, not hidden.
        assert!(split.other_s > 0.0);
        // No transfers: zero, not the -0 an empty float sum gives (it would print as "-0").
        let critical = split.remote_cache_critical_path_s.unwrap();
        assert!(critical == 0.0 && critical.is_sign_positive());
    }

    #[test]
    fn streaming_in_tiny_reads_gives_the_same_profile() {
        let text = crate::tools::fixture("bazel/profile/warm.profile.json");
        let trickle = std::io::BufReader::with_capacity(5, text.as_bytes());
        assert_eq!(read_profile(trickle, "warm").unwrap(), profile("warm"));
    }

    #[test]
    fn the_bare_array_form_and_bad_files() {
        let bare = r#"[{"cat":"build phase marker","name":"Launch Blaze","ph":"X","ts":-5e6,"dur":5e6},
            {"cat":"build phase marker","name":"Initialize command","ph":"i","ts":0},
            {"cat":"build phase marker","name":"Build artifacts","ph":"i","ts":2e6},
            {"cat":"general information","name":"Finishing","ph":"i","ts":10e6}]"#;
        let p = read_profile(bare.as_bytes(), "bare").unwrap();
        let split = p.split(20.0);
        assert_eq!(split.seconds(Phase::Startup), 7.0);
        assert_eq!(split.seconds(Phase::Execution), 8.0);
        assert_eq!(split.other_s, 5.0);
        let gz = read_profile(&[0x1f, 0x8b, 8][..], "p.gz").unwrap_err();
        assert!(gz.contains("p.gz") && gz.contains("gzip"), "{gz}");
        assert!(read_profile("".as_bytes(), "x")
            .unwrap_err()
            .contains("ends"));
        let cut = read_profile(r#"{"traceEvents":[{"ts":1}"#.as_bytes(), "cut").unwrap_err();
        assert!(cut.contains("truncated"), "{cut}");
        let bad = read_profile(r#"{"traceEvents":[{"ts":"x"}]}"#.as_bytes(), "bad").unwrap_err();
        assert!(bad.contains("trace event 1"), "{bad}");
    }

    #[test]
    fn union_merges_overlaps() {
        let spans = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (4.0, 4.0)];
        assert_eq!(union_length(spans.into_iter()), 4.0);
    }
}
