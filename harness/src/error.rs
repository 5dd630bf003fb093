//! One error type for the whole harness, and the one place that maps it to an exit code.

use std::path::PathBuf;

/// Documented exit codes (README "Exit codes").
pub mod exit_code {
    /// Every case ran and succeeded.
    pub const OK: i32 = 0;
    /// The run finished and its results were written, but at least one case failed.
    pub const CASE_FAILED: i32 = 1;
    /// Bad input: command line, manifest or results file.
    pub const INVALID_INPUT: i32 = 2;
    /// The machine lacks something the run needs (a tool, a free port, a working cache).
    pub const ENVIRONMENT: i32 = 3;
    /// An I/O or internal error stopped the run.
    pub const INTERNAL: i32 = 4;
    /// The run finished, every case that ran succeeded, and a verdict failed (with
    /// `--verdicts fail`, the default).
    pub const VERDICT_FAILED: i32 = 5;
    /// Interrupted by SIGINT (Ctrl-C); results of finished cases were kept.
    pub const INTERRUPTED: i32 = 130;
    /// Interrupted by SIGHUP (a closed terminal).
    pub const HANGUP: i32 = 129;
    /// Interrupted by SIGTERM (a cancelled CI job).
    pub const TERMINATED: i32 = 143;

    /// 128 + the signal's number, as shells report a death by that signal.
    pub fn interrupted_by(signal: i32) -> i32 {
        128 + signal
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("{}: {message}\n  fix: {fix}", path.display())]
    Manifest {
        path: PathBuf,
        message: String,
        fix: String,
    },

    #[error("`{tool}` is needed {needed_for} but was not found on PATH\n  fix: {fix}")]
    MissingTool {
        tool: &'static str,
        needed_for: String,
        fix: &'static str,
    },

    #[error("{0}")]
    Environment(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The process's first interrupting signal (SIGINT, SIGTERM or SIGHUP) arrived.
    #[error(
        "interrupted{}; results of the cases that finished were kept",
        signal_name(*signal)
    )]
    Interrupted { signal: i32 },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Manifest { .. } => exit_code::INVALID_INPUT,
            Error::MissingTool { .. } | Error::Environment(_) => exit_code::ENVIRONMENT,
            Error::Io { .. } => exit_code::INTERNAL,
            Error::Interrupted { signal } => match *signal {
                libc::SIGINT => exit_code::INTERRUPTED,
                libc::SIGTERM => exit_code::TERMINATED,
                libc::SIGHUP => exit_code::HANGUP,
                other => exit_code::interrupted_by(other),
            },
        }
    }
}

/// " by SIGTERM" for the interrupting signals, nothing otherwise.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => " by SIGINT",
        libc::SIGTERM => " by SIGTERM",
        libc::SIGHUP => " by SIGHUP",
        _ => "",
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one case failed: the case is recorded as failed with this reason and the run goes
/// on. Only a step that decides its case cannot go on makes one; whatever else stops a
/// step is an [`Error`], which stops the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CaseFailure(String);

impl CaseFailure {
    pub fn new(why: impl Into<String>) -> CaseFailure {
        CaseFailure(why.into())
    }
}

/// What ends a case's step early. `?` on an [`Error`] makes it `Run`, so a step fails only
/// its case when it says so with a [`CaseFailure`]; the scheduler decides by the variant.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The case failed; the run goes on.
    #[error(transparent)]
    Case(#[from] CaseFailure),
    /// The run must stop.
    #[error(transparent)]
    Run(#[from] Error),
}

pub type StepResult<T> = std::result::Result<T, StepError>;

/// Adds "what we were doing" to I/O errors at the call site.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

/// The known name closest to a mistyped `word`, for "did you mean": within an edit
/// distance of a third of the word (at least 1), the closest first; `None` when nothing is
/// near or the word is known.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, _)| *d > 0 && *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `\n  did you mean `NAME`?` for an error message, or nothing.
pub fn suggestion<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, known).map_or(String::new(), |k| format!("\n  did you mean `{k}`?"))
}

/// Levenshtein distance over characters, transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![(0..=b.len()).collect::<Vec<usize>>()];
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (rows[i - 1][j] + 1)
                .min(row[j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(rows[i - 2][j - 2] + 1);
            }
        }
        rows.push(row);
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_name_is_suggested() {
        let known = ["size", "work", "toolchain"];
        assert_eq!(did_you_mean("siz", known), Some("size"));
        assert_eq!(did_you_mean("wrok", known), Some("work"));
        assert_eq!(did_you_mean("toolchian", known), Some("toolchain"));
        assert_eq!(
            did_you_mean("size", known),
            None,
            "a known word needs no suggestion"
        );
        assert_eq!(did_you_mean("colour", known), None);
        assert_eq!(suggestion("siz", known), "\n  did you mean `size`?");
        assert_eq!(suggestion("xyz", known), "");
    }

    #[test]
    fn each_interrupting_signal_has_its_documented_exit_code() {
        assert_eq!(
            exit_code::interrupted_by(libc::SIGINT),
            exit_code::INTERRUPTED
        );
        assert_eq!(
            exit_code::interrupted_by(libc::SIGTERM),
            exit_code::TERMINATED
        );
        assert_eq!(exit_code::interrupted_by(libc::SIGHUP), exit_code::HANGUP);
        let interrupted = Error::Interrupted {
            signal: libc::SIGTERM,
        };
        assert_eq!(interrupted.exit_code(), exit_code::TERMINATED);
        assert!(interrupted
            .to_string()
            .starts_with("interrupted by SIGTERM;"));
        assert_eq!(signal_name(libc::SIGUSR1), "");
    }
}
