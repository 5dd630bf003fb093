//! Adapters for the external tools: how to find them, how to invoke them with isolated
//! state, and pure parsers of what they print.

pub(crate) mod attic_api;
pub mod bazel;
mod bazel_flags;
pub mod bazel_log;
pub mod bazel_profile;
pub(crate) mod build_graph;
mod explain;
pub(crate) mod git;
pub mod narinfo;
pub mod nix;
pub(crate) mod nix_derivations;
pub mod nix_log;
pub mod nix_phases;
mod nix_push;
pub(crate) mod nix_sandbox;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result, StepResult};
use crate::exec::process::{run_captured, CommandSpec, Executor, ProcessOutcome, ServerProbe};
use crate::plan::{RepoManifest, Scenario};
use crate::results::explain::MissExplanations;
use crate::results::{CacheFill, CacheUse, ConfigFile, Reproduce, ToolUse, ToolVersion};
use crate::tools::build_graph::BuildGraph;

/// External tools the harness knows, with the arguments that make them print a version.
pub const KNOWN_TOOLS: &[(&str, &[&str])] = &[
    ("nix", &["--version"]),
    ("nginx", &["-v"]),
    ("bazel", &["--version"]),
    ("gcc", &["--version"]),
    ("git", &["--version"]),
];

const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// A program on `search_path` (the `$PATH` the run started with, from `Env`).
pub fn find(name: &str, search_path: &OsStr) -> Option<PathBuf> {
    which::which_in(name, Some(search_path), "/").ok()
}

/// Like `find`, but a missing tool is an error that says what needs it and how to get it.
pub fn require(name: &'static str, needed_for: &str, search_path: &OsStr) -> Result<PathBuf> {
    find(name, search_path).ok_or_else(|| Error::MissingTool {
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
        "qemu-system-x86_64" => "install QEMU (Debian/Ubuntu: `sudo apt-get install qemu-system-x86`); the vm lane boots it",
        "attic" => "install the Attic client (e.g. `nix profile install nixpkgs#attic-client`), or use push = \"api\" (the default), which needs no CLI",
        "bazel" => "install Bazel (Debian/Ubuntu: `sudo apt-get install bazel-bootstrap bazel-rules-cc bazel-rules-java`) or bazelisk",
        _ => "install it and make sure it is on PATH",
    }
}

/// Path and version of every known tool found on `search_path`.
pub fn probe_all(exec: &dyn Executor, search_path: &OsStr) -> BTreeMap<String, ToolVersion> {
    KNOWN_TOOLS
        .iter()
        .filter_map(|(name, args)| {
            let path = find(name, search_path)?;
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

/// A prepared build as its argv snapshot shows it: program, one argument a line, the
/// environment it adds, where it runs and logs; `tmp` (the test's folder) as `[tmp]`.
#[cfg(test)]
pub(crate) fn argv_snapshot(build: &PreparedBuild, tmp: &Path) -> String {
    let spec = &build.spec;
    let shown = |p: &std::ffi::OsStr| {
        p.to_string_lossy()
            .replace(&tmp.display().to_string(), "[tmp]")
    };
    let mut out = format!("{}\n", shown(spec.program.as_os_str()));
    for arg in &spec.args {
        out.push_str(&format!("  {}\n", shown(arg)));
    }
    for (name, value) in &spec.env {
        out.push_str(&format!("env {name}={}\n", shown(value)));
    }
    if let Some(cwd) = &spec.cwd {
        out.push_str(&format!("cwd {}\n", shown(cwd.as_os_str())));
    }
    out.push_str(&format!(
        "stdout {}\nstderr {}{}\ntimeout {} s\n",
        shown(spec.stdout.as_os_str()),
        shown(spec.stderr.as_os_str()),
        if spec.stderr_times {
            " (line times)"
        } else {
            ""
        },
        spec.timeout.as_secs()
    ));
    out
}

/// Lower-case hex of a digest, as narinfos, Attic and REAPI write them.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// Items from the team cache (not the upstream layer): see `Sample::from_team_cache`.
    pub from_team_cache: Option<u64>,
    pub by_source: BTreeMap<String, crate::results::SourceCount>,
    pub by_mnemonic: BTreeMap<String, crate::results::MnemonicCount>,
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
    /// A failed build's last lines of its own output (the builder's, the failing
    /// action's), secrets redacted: why it failed, in the tool's words.
    pub log_tail: Vec<String>,
    /// Where the build's wall time went, phase by phase.
    pub time_split: Option<crate::results::explain::TimeSplit>,
    /// What the build fetched from caches, for the transfer floor: bytes and requests.
    pub transfer: Option<Transfer>,
    /// Why items of a build that read the cache still missed it, when asked for and the
    /// tool's logs can tell.
    pub explanations: Option<MissExplanations>,
    /// The outputs' digests, when the build's own log names them (Bazel's execution log);
    /// otherwise the driver takes them after the build ([`BuildDriver::outputs`]).
    pub outputs: Option<Outputs>,
}

/// What a build fetched from caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    pub bytes: u64,
    pub requests: u64,
    /// How many requests the tool keeps in flight at once.
    pub parallelism: u32,
}

/// A failed build's tail, redacted; nothing for a build that succeeded.
pub fn failed_tail(outcome: &ProcessOutcome, tail: impl FnOnce() -> Vec<String>) -> Vec<String> {
    if outcome.success() {
        return Vec::new();
    }
    tail().iter().map(|l| redact_secrets(l)).collect()
}

/// Lines of build output kept when a build fails.
pub const LOG_TAIL_LINES: usize = 40;

/// A line of tool output with credential values masked: cache headers (`--remote_header=`,
/// `Authorization:`), bearer tokens and netrc passwords. The harness never hands a tool a
/// secret on its command line, but a tool may echo its configuration.
pub fn redact_secrets(line: &str) -> String {
    const KEYS: &[&str] = &[
        "remote_header=",
        "authorization:",
        "authorization=",
        "bearer ",
        "password ",
    ];
    let lower = line.to_ascii_lowercase();
    match KEYS
        .iter()
        .filter_map(|k| lower.find(k).map(|i| i + k.len()))
        .min()
    {
        Some(start) => format!("{}<redacted>", &line[..start]),
        None => line.to_string(),
    }
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
    /// Fresh state kept for the run, no cache to read (it may upload to one): the clean
    /// reference that also fills the cache and serves `noop` builds.
    Prime,
    /// Fresh local state, no cache: cold builds, clean rebuilds, retries without the cache.
    Fresh,
    /// Fresh local state, reading the cache (through `CaseContext::cache_via` when set).
    /// `tool_fallback`: with the tool's own fallback switch (Nix `--fallback`).
    FromCache { tool_fallback: bool },
    /// The primed state, where everything is already local.
    Noop,
    /// Fresh local state, no cache to read; what the build makes goes to a fresh, empty
    /// cache of the team cache's kind (as it builds, or in [`BuildDriver::fill_fresh`]).
    Fill,
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
    /// Whether to record what explains the build (`--explain`): Bazel's trace profile,
    /// Nix's log arrival times, miss explanations.
    pub explain: bool,
}

impl CaseContext<'_> {
    /// Cases of the same repo and parameters share primed state (stores, caches); the
    /// points of a link sweep build the same thing, so they share it too.
    pub fn state_key(&self) -> String {
        format!(
            "{}|{:?}",
            self.repo.manifest_path.display(),
            self.repo.tool_parameters()
        )
    }

    /// Whether to use the settings that bound a slow or hanging cache's penalty.
    pub fn tuned(&self) -> bool {
        matches!(self.scenario, Scenario::Fallback { tuned: true, .. })
    }
}

/// One build, ready to run: the command and the state it builds in, so nothing needs to
/// be read back from its argv.
#[derive(Debug, Clone)]
pub struct PreparedBuild {
    pub spec: CommandSpec,
    pub state: BuildState,
    /// The configuration files the build reads that the harness wrote, secrets redacted.
    pub files: Vec<ConfigFile>,
}

/// Where a build keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildState {
    /// A chroot store (`--store DIR`).
    Nix { store: PathBuf },
    Bazel {
        workspace: PathBuf,
        output_root: PathBuf,
        exec_log: PathBuf,
        /// The JSON trace profile: where the time went.
        profile: PathBuf,
        /// The execution log of the build that filled the cache, for builds that read it
        /// (what their misses are compared with).
        priming_log: Option<PathBuf>,
        /// The primed workspace and server, kept for the run (no-op builds).
        primed: bool,
    },
}

impl PreparedBuild {
    /// How a reviewer runs this build again by hand.
    pub fn reproduce(&self) -> Reproduce {
        Reproduce {
            command: self.spec.display(),
            cwd: self.spec.cwd.as_ref().map(|d| d.display().to_string()),
            env: self
                .spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string_lossy().into_owned()))
                .collect(),
            files: self.files.clone(),
        }
    }
}

/// Where a driver's cache is.
#[derive(Debug, Clone, Copy)]
pub enum CacheLocation<'a> {
    Url(&'a url::Url),
    Folder(&'a Path),
}

/// One build system, driven in isolation. The scheduler owns timing, sampling, priming,
/// retries and verification; a driver owns the tool's state (stores, output roots) and
/// reads its logs.
pub trait BuildDriver {
    /// The outputs of the case's primed build (a clean build without any cache, kept for
    /// the run as the reference and the `noop` state), once there is one.
    fn primed(&self, case: &CaseContext) -> Option<&Outputs>;

    /// Keeps a finished `BuildMode::Prime` build and its outputs as the case's primed state.
    fn keep_primed(&mut self, case: &CaseContext, build: PreparedBuild, outputs: Outputs);

    /// Uploads the primed outputs to the cache, once per primed state: what the fill did,
    /// or `None` when an earlier case filled it. A read-only cache (`--no-fill`) is never
    /// written, needs no primed state and says so.
    fn fill_cache(
        &mut self,
        case: &CaseContext,
        exec: &dyn Executor,
    ) -> StepResult<Option<CacheFill>>;

    /// Why `fill` samples cannot run against this driver's cache, if they cannot: each
    /// needs a fresh, empty cache of its own.
    fn fill_unavailable(&self, case: &CaseContext) -> Option<String>;

    /// After a `BuildMode::Fill` build that succeeded, before its state is removed: fills
    /// its fresh cache with what the build made (unless the tool did as it built), says
    /// what was sent, stored and how long it took after the build, and removes the cache.
    fn fill_fresh(
        &mut self,
        case: &CaseContext,
        build: &PreparedBuild,
        exec: &dyn Executor,
    ) -> StepResult<CacheFill>;

    /// One build in `mode`, with its logs (and fresh state, unless primed) under `dir`.
    fn prepare(
        &mut self,
        case: &CaseContext,
        mode: BuildMode,
        dir: &Path,
    ) -> StepResult<PreparedBuild>;

    /// Reads what the build did from its logs, each read once; with `explain_misses`
    /// (a build that read the cache, explained), also why items missed the cache.
    fn inspect(
        &self,
        build: &PreparedBuild,
        outcome: &ProcessOutcome,
        explain_misses: bool,
    ) -> BuildReport;

    /// Digests of a finished build's outputs (before its state is removed).
    fn outputs(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<Outputs>;

    /// The build's steps with the digests of what each read and wrote (before its state
    /// is removed): what verify walks to find the step first at fault.
    fn graph(&mut self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<BuildGraph>;

    /// Where a finished build's outputs are on disk (before its state is removed), for the
    /// repo's `[check]`.
    fn output_paths(&self, build: &PreparedBuild, exec: &dyn Executor) -> StepResult<Vec<PathBuf>>;

    /// Untimed work after each build (e.g. stopping a build server); runs before the
    /// build's folder is removed.
    fn finish(&mut self, _build: &PreparedBuild, _exec: &dyn Executor) -> Result<()> {
        Ok(())
    }

    /// The tool as it builds this case: its version and the choices that shape the numbers.
    /// A Bazel that cannot build this repo at all fails the case.
    fn tool_use(&self, case: &CaseContext) -> StepResult<ToolUse>;

    /// Long-lived servers the build works through, so their CPU and memory count too.
    fn servers(&self, _build: &PreparedBuild) -> ServerProbe {
        ServerProbe::default()
    }

    /// The cache the case's builds read from, as recorded in results.
    fn cache_use(&self, case: &CaseContext) -> Option<CacheUse>;

    /// Where that cache is, for the fault proxy.
    fn cache_location(&self, case: &CaseContext) -> Option<CacheLocation<'_>>;

    /// The secret key the cache's entries are signed with, where the harness holds it
    /// (the embedded cache): the `poison` fault signs its wrong entries with it.
    fn signing_key_file(&self) -> Option<&Path> {
        None
    }

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
    use crate::exec::process::ProcessExecutor;

    #[test]
    fn secrets_in_tool_output_are_masked() {
        assert_eq!(
            redact_secrets("INFO: --remote_header=Authorization=Bearer abc"),
            "INFO: --remote_header=<redacted>"
        );
        assert_eq!(
            redact_secrets("Authorization: Basic xyz"),
            "Authorization:<redacted>"
        );
        assert_eq!(
            redact_secrets("machine h password t0k"),
            "machine h password <redacted>"
        );
        assert_eq!(
            redact_secrets("sh: 4: nvcc: not found"),
            "sh: 4: nvcc: not found"
        );
    }

    #[test]
    fn keeps_the_first_distinct_messages() {
        let lines = ["a", "b", "a", " ", "c", "d", "e", "f", "g"];
        assert_eq!(first_distinct(lines), vec!["a", "b", "c", "d", "e"]);
    }
    #[test]
    fn probes_a_tool_that_is_always_there() {
        let tools = probe_all(
            &ProcessExecutor,
            &std::env::var_os("PATH").unwrap_or_default(),
        );
        // gcc is needed to build the Rust harness's C dependencies, so it is present here.
        let gcc = tools.get("gcc").expect("gcc found");
        assert!(gcc.version.contains("gcc"), "{gcc:?}");
    }

    #[test]
    fn missing_tools_are_named_with_a_fix() {
        let err = require(
            "flywheel-bench-no-such-tool",
            "for this test",
            OsStr::new("/bin"),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit_code::ENVIRONMENT);
        let text = err.to_string();
        assert!(
            text.contains("flywheel-bench-no-such-tool") && text.contains("fix:"),
            "{text}"
        );
        assert!(install_hint("nginx").contains("apt-get install nginx"));
        assert!(install_hint("qemu-system-x86_64").contains("apt-get install qemu-system-x86"));
    }
}
