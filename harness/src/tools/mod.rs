//! Adapters for the external tools: how to find them, how to invoke them with isolated
//! state, and pure parsers of what they print.

pub mod bazel;
pub mod bazel_log;
pub mod bazel_profile;
pub mod explain;
pub mod git;
pub mod nix;
pub mod nix_log;
pub mod nix_phases;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::plan::{RepoManifest, Scenario};
use crate::results::{CacheUse, ToolVersion};
use crate::run::process::{run_captured, CommandSpec, Executor, ProcessOutcome};

/// External tools the harness knows, with the arguments that make them print a version.
pub const KNOWN_TOOLS: &[(&str, &[&str])] = &[
    ("nix", &["--version"]),
    ("nginx", &["-v"]),
    ("bazel", &["--version"]),
    ("gcc", &["--version"]),
    ("git", &["--version"]),
];

const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// `which` for one tool.
pub fn find(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

/// Like `find`, but a missing tool is an error that says what needs it and how to get it.
pub fn require(name: &'static str, needed_for: &str) -> Result<PathBuf> {
    find(name).ok_or_else(|| Error::MissingTool {
        tool: name,
        needed_for: needed_for.to_string(),
        fix: install_hint(name),
    })
}

pub fn install_hint(name: &str) -> &'static str {
    match name {
        "nix" => "install Nix (Debian/Ubuntu: `sudo apt-get install nix-bin`) or run `nix run .#bench`",
        "nginx" => "install nginx (Debian/Ubuntu: `sudo apt-get install nginx`); it serves the embedded cache",
        "gcc" => "install a C compiler (Debian/Ubuntu: `sudo apt-get install gcc`); the fixtures compile C",
        "git" => "install git (Debian/Ubuntu: `sudo apt-get install git`)",
        "bazel" => "install Bazel (Debian/Ubuntu: `sudo apt-get install bazel-bootstrap bazel-rules-cc bazel-rules-java`) or bazelisk",
        _ => "install it and make sure it is on PATH",
    }
}

/// Path and version of every known tool found on PATH.
pub fn probe_all(exec: &dyn Executor) -> BTreeMap<String, ToolVersion> {
    KNOWN_TOOLS
        .iter()
        .filter_map(|(name, args)| {
            let path = find(name)?;
            let version = version_of(exec, &path, args).unwrap_or_else(|| "unknown".into());
            Some((
                name.to_string(),
                ToolVersion {
                    path: path.display().to_string(),
                    version,
                },
            ))
        })
        .collect()
}

fn version_of(exec: &dyn Executor, path: &Path, args: &[&str]) -> Option<String> {
    let output_of = |program: &Path, args: &[&str]| {
        let args = args.iter().map(OsString::from).collect();
        let out = run_captured(exec, CommandSpec::new(program, args, VERSION_TIMEOUT)).ok()?;
        // nginx prints its version on stderr; most tools on stdout.
        first_line(&out.stdout).or_else(|| first_line(&out.stderr))
    };
    let version = output_of(path, args)?;
    if !version.contains("no_version") {
        return Some(version);
    }
    // Debian's Bazel is built without a version stamp; its package knows the version.
    let package = output_of(
        Path::new("dpkg-query"),
        &["-W", "-f=${Version}", "bazel-bootstrap"],
    );
    Some(match package {
        Some(p) => format!("{version} (Debian bazel-bootstrap {p})"),
        None => version,
    })
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Why a build failed, for a human: the tool's own error lines, else its last lines.
pub fn failure_text<'a>(errors: &[&'a str], all_lines: &[&'a str]) -> Option<String> {
    const TAIL: usize = 10;
    let lines = if errors.is_empty() {
        let meaningful: Vec<&str> = all_lines
            .iter()
            .copied()
            .filter(|l| !l.trim().is_empty())
            .collect();
        meaningful[meaningful.len().saturating_sub(TAIL)..].to_vec()
    } else {
        errors.to_vec()
    };
    let text = lines.join("\n").trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A recorded real output under `tests/fixtures/` (for parser tests).
#[cfg(test)]
pub(crate) fn fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What one build did, as counted from its own logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub built: Option<u64>,
    pub substituted: Option<u64>,
    pub downloaded_bytes: Option<u64>,
    pub actions: Option<u64>,
    pub remote_cache_hits: Option<u64>,
    pub processes: Option<u64>,
    pub by_mnemonic: BTreeMap<String, bazel_log::MnemonicCount>,
    /// Disagreements between the tool's own counts, worth a reviewer's look.
    pub notes: Vec<String>,
}

/// Output files of a build: path (store path, or Bazel output path) -> content digest.
pub type Outputs = BTreeMap<String, String>;

/// The report of one finished build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildReport {
    pub counters: Counters,
    /// The tool's own error lines when the build failed.
    pub error: Option<String>,
    /// The tool's warnings and errors (deduplicated, first few): did it notice a bad cache?
    pub messages: Vec<String>,
}

/// At most this many distinct tool messages are kept per build.
pub const MAX_MESSAGES: usize = 5;

/// Keeps the first `MAX_MESSAGES` distinct lines.
pub fn first_distinct<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let line = line.trim();
        if !line.is_empty() && !out.iter().any(|l| l == line) {
            out.push(line.to_string());
            if out.len() == MAX_MESSAGES {
                break;
            }
        }
    }
    out
}

/// How one build uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// Fresh local state, no cache: cold builds, clean rebuilds, retries without the cache.
    Fresh,
    /// Fresh local state, reading the cache (through `CaseContext::cache_via` when set).
    /// `tool_fallback`: with the tool's own fallback switch (Nix `--fallback`).
    FromCache { tool_fallback: bool },
    /// The primed state, where everything is already local.
    Noop,
}

/// What a driver needs to know about the case it builds for.
#[derive(Debug, Clone, Copy)]
pub struct CaseContext<'a> {
    pub repo: &'a RepoManifest,
    pub source: &'a Path,
    pub scenario: Scenario,
    pub timeout: Duration,
    /// Route cache traffic through this address (the fault proxy).
    pub cache_via: Option<SocketAddr>,
}

impl CaseContext<'_> {
    /// Cases of the same repo and parameters share primed state (stores, caches).
    pub fn state_key(&self) -> String {
        format!(
            "{}|{:?}",
            self.repo.manifest_path.display(),
            self.repo.parameters
        )
    }

    /// Whether to use the settings that bound a slow or hanging cache's penalty.
    pub fn tuned(&self) -> bool {
        matches!(self.scenario, Scenario::Fallback { tuned: true, .. })
    }
}

/// A cache as a driver reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheRoute {
    /// Where the cache listens (the fault proxy forwards there).
    pub upstream: SocketAddr,
    /// Plain HTTP (so HTTP-level faults apply), rather than gRPC or TLS.
    pub plain_http: bool,
}

/// `scheme://host:port/path` -> the address and whether it is plain HTTP.
pub fn cache_route(url: &str) -> Option<CacheRoute> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .ok()?
        .next()?;
    Some(CacheRoute {
        upstream,
        plain_http: scheme == "http",
    })
}

/// The same URL with its host and port replaced by `via`.
pub fn reroute(url: &str, via: SocketAddr) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let path = rest.find('/').map_or("", |i| &rest[i..]);
            format!("{scheme}://{via}{path}")
        }
        None => url.to_string(),
    }
}

/// Runs an untimed build a case depends on (priming a store, filling a cache); its
/// failure fails the case with the tool's own error.
pub fn run_priming_build(
    driver: &dyn BuildDriver,
    spec: &CommandSpec,
    exec: &dyn Executor,
) -> Result<()> {
    let outcome = exec.run(spec)?;
    if outcome.success() {
        return Ok(());
    }
    let report = driver.inspect(spec, &outcome);
    Err(Error::Build(format!(
        "priming build failed ({}): {}",
        outcome.describe(),
        report.error.unwrap_or_default()
    )))
}

/// One build system, driven in isolation. The scheduler owns timing, sampling, retries
/// and verification; a driver owns the tool's state (stores, output roots) and reads its logs.
pub trait BuildDriver {
    /// Untimed: builds the repo once, without any cache, into state kept for the run (the
    /// clean reference and the `noop` state); with `fill_cache`, uploads the result too.
    /// `Error::Build` fails the case; other errors stop the run.
    fn prime(&mut self, case: &CaseContext, exec: &dyn Executor, fill_cache: bool) -> Result<()>;

    /// The outputs of the primed (clean) build.
    fn clean_outputs(&self, case: &CaseContext) -> Option<&Outputs>;

    /// The command for one build in `mode`, with its fresh state under `dir`.
    fn command(&mut self, case: &CaseContext, mode: BuildMode, dir: &Path) -> Result<CommandSpec>;

    /// Reads what the build did from its logs.
    fn inspect(&self, spec: &CommandSpec, outcome: &ProcessOutcome) -> BuildReport;

    /// Digests of a finished build's outputs (before its state is removed).
    fn outputs(&mut self, spec: &CommandSpec, exec: &dyn Executor) -> Result<Outputs>;

    /// Untimed work after each build (e.g. stopping a build server); runs before the
    /// build's folder is removed.
    fn finish(&mut self, _spec: &CommandSpec, _exec: &dyn Executor) -> Result<()> {
        Ok(())
    }

    /// The cache warm builds read from, as recorded in results.
    fn cache_use(&self) -> Option<CacheUse>;

    /// The flag that turns on the tool's own fallback when substitution fails, if any.
    fn tool_fallback_flag(&self) -> Option<&'static str> {
        None
    }

    /// The settings `CaseContext::tuned` adds, as recorded in results.
    fn tuned_settings(&self) -> Vec<String>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::process::ProcessExecutor;

    #[test]
    fn routes_and_reroutes_cache_urls() {
        let route = cache_route("http://127.0.0.1:8080/nix").unwrap();
        assert_eq!(route.upstream, "127.0.0.1:8080".parse().unwrap());
        assert!(route.plain_http);
        assert!(!cache_route("grpc://127.0.0.1:9092").unwrap().plain_http);
        assert_eq!(cache_route("not a url"), None);
        let via: SocketAddr = "127.0.0.1:1234".parse().unwrap();
        assert_eq!(
            reroute("http://127.0.0.1:8080/nix", via),
            "http://127.0.0.1:1234/nix"
        );
        assert_eq!(reroute("grpc://cache:9092", via), "grpc://127.0.0.1:1234");
    }

    #[test]
    fn keeps_the_first_distinct_messages() {
        let lines = ["a", "b", "a", " ", "c", "d", "e", "f", "g"];
        assert_eq!(first_distinct(lines), vec!["a", "b", "c", "d", "e"]);
    }
    #[test]
    fn probes_a_tool_that_is_always_there() {
        let tools = probe_all(&ProcessExecutor);
        // gcc is needed to build the Rust harness's C dependencies, so it is present here.
        let gcc = tools.get("gcc").expect("gcc found");
        assert!(gcc.version.contains("gcc"), "{gcc:?}");
    }

    #[test]
    fn missing_tools_are_named_with_a_fix() {
        let err = require("flywheel-bench-no-such-tool", "for this test").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::ENVIRONMENT);
        let text = err.to_string();
        assert!(
            text.contains("flywheel-bench-no-such-tool") && text.contains("fix:"),
            "{text}"
        );
        assert!(install_hint("nginx").contains("apt-get install nginx"));
    }
}
