//! Commands inside the Debian 13 root (Nix 2.26, gcc, nginx) that `scripts/setup` builds,
//! entered through `scripts/in-debian13-root` (mount and pid namespaces plus `pivot_root`,
//! so Nix can sandbox there; the host's `/nix` is never mounted or written).
//!
//! ```ignore
//! let out = Debian13::new().with_harness().output("flywheel-bench", &["--version"]);
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::repo_root;

/// Where the repository checkout appears inside the root (read-only).
pub const GUEST_REPO: &str = "/src";
/// Where `with_harness` puts the harness binary inside the root (read-only).
pub const GUEST_HARNESS: &str = "/opt/flywheel-bench/flywheel-bench";

/// A command line for the root: the binds and settings it runs with.
#[derive(Debug, Clone)]
pub struct Debian13 {
    /// `--bind HOST:GUEST` or `--ro-bind HOST:GUEST` options, in order.
    options: Vec<String>,
}

impl Default for Debian13 {
    fn default() -> Self {
        Self::new()
    }
}

impl Debian13 {
    /// The root with the checkout read-only at [`GUEST_REPO`]. Fails (never skips) when the
    /// root has not been built, naming `scripts/setup`.
    pub fn new() -> Debian13 {
        let check = Command::new(script())
            .arg("--check")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script().display()));
        assert!(
            check.status.success(),
            "these tests run Nix 2.26 in a Debian 13 root, which is missing: run scripts/setup (it builds the root once)\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        Debian13 {
            options: Vec::new(),
        }
        .ro_bind(&repo_root(), GUEST_REPO)
    }

    /// Where the root is on this machine.
    pub fn root_dir() -> PathBuf {
        let out = Command::new(script())
            .arg("--print-root")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script().display()));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Binds a host file or folder read-write at `guest`.
    pub fn bind(self, host: &Path, guest: &str) -> Debian13 {
        self.option("--bind", &format!("{}:{guest}", host.display()))
    }

    /// Binds a host file or folder read-only at `guest`.
    pub fn ro_bind(self, host: &Path, guest: &str) -> Debian13 {
        self.option("--ro-bind", &format!("{}:{guest}", host.display()))
    }

    /// The harness binary built for this test run, at [`GUEST_HARNESS`].
    pub fn with_harness(self) -> Debian13 {
        self.ro_bind(
            Path::new(env!("CARGO_BIN_EXE_flywheel-bench")),
            GUEST_HARNESS,
        )
    }

    /// Sets a variable for the command (its environment is otherwise a clean default).
    pub fn setenv(self, name: &str, value: &str) -> Debian13 {
        self.option("--setenv", &format!("{name}={value}"))
    }

    /// Runs the command in `guest_dir`.
    pub fn chdir(self, guest_dir: &str) -> Debian13 {
        self.option("--chdir", guest_dir)
    }

    fn option(mut self, name: &str, value: &str) -> Debian13 {
        self.options.push(name.to_string());
        self.options.push(value.to_string());
        self
    }

    /// `program args...` inside the root, not yet started.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(script());
        cmd.args(&self.options).arg("--").arg(program).args(args);
        cmd
    }

    /// Runs `program args...` inside the root and returns what it printed.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script().display()))
    }
}

fn script() -> PathBuf {
    repo_root().join("scripts/in-debian13-root")
}
