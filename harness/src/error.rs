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

#[cfg(test)]
mod tests {
    use super::*;

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
