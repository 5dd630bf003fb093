//! The Bazel flags whose names or defaults differ between Bazel versions, chosen from the
//! version the harness records for `bazel --version` (pure).
//!
//! Every flag the Bazel driver passes, with the versions that accept it. "4.2.3" was run
//! here (Debian's bazel-bootstrap, `bazel help build --long` and real builds); 7.x, 8.x and
//! 9.x are from Bazel's command-line reference (bazel.build/versions/<v>/reference/
//! command-line-reference) and release notes, since no newer Bazel installs on this machine.
//!
//! | flag | 4.2.3 | 7.x | 8.x | 9.x | passed |
//! | --- | --- | --- | --- | --- | --- |
//! | startup `--output_user_root=DIR` | yes | yes | yes | yes | always |
//! | startup `--nohome_rc` | yes | yes | yes | yes | always |
//! | startup `--max_idle_secs=300` | yes | yes | yes | yes | always |
//! | startup `--bazelrc=FILE` | yes | yes | yes | yes | with cache headers |
//! | `--color=no`, `--curses=no` | yes | yes | yes | yes | always |
//! | `--sandbox_debug=false` | yes | yes | yes | yes | always |
//! | `--symlink_prefix=/` | yes | yes | yes | yes | always |
//! | `--incompatible_strict_action_env` | yes (default off) | yes (off) | yes (off) | yes (default on since 9.0) | below 9 |
//! | `--execution_log_json_file=FILE` | yes | yes | yes | yes | always |
//! | `--execution_log_compact_file=FILE` | no | 7.4+ (`--experimental_` prefix from 7.1) | yes | yes | never |
//! | `--enable_workspace` | no | 7.1+ (default on) | yes (default off) | no (WORKSPACE removed) | 8.x, WORKSPACE-only repos |
//! | `--enable_bzlmod` | no (`--experimental_enable_bzlmod` from 5.0) | yes (default on) | yes (on) | always on | never |
//! | `--override_repository=NAME=PATH` | yes | yes | yes | yes | Debian's rules below 7; `--bazel-override` always |
//! | `--remote_cache=URL` | yes | yes | yes | yes | warm, priming |
//! | `--disk_cache=DIR` | yes | yes | yes | yes | disk backend |
//! | `--remote_cache=` and `--disk_cache=` (empty: none) | yes (run here) | yes | yes | yes | cold builds (issue 11) |
//! | `--noremote_accept_cached` | yes | yes | yes | yes | priming (upload only) |
//! | `--remote_timeout=2` | yes (seconds) | yes (a duration; bare number = seconds) | yes | yes | `+tuned` |
//! | `--remote_retries=0` | yes | yes | yes | yes | `+tuned` |
//! | `--jobs=32` | yes | yes | yes | yes | `+tuned` |
//! | `--remote_header=NAME=VALUE` (rc file) | yes | yes | yes | yes | with cache headers |
//! | `--repository_cache=DIR` | yes (run here) | yes | yes | yes | all samples (issue 11) |
//! | `--profile=FILE` | yes: writes the JSON trace profile (run here) | yes | yes | yes | issue 15 |
//! | `--experimental_generate_json_trace_profile` | yes, and on by default: without `--profile` 4.2.3 writes `command.profile.gz` in the output base (run here) | renamed `--generate_json_trace_profile` | same | same | never (`--explain off` leaves Bazel's default profile alone) |
//!
//! The execution log stays JSON on every version: 4.2.3 has only the JSON and binary logs,
//! 7.x and 8.x still accept `--execution_log_json_file`, and the harness parses JSON (the
//! compact log is zstd-compressed `ExecLogEntry` protos whose schema changed in 7.4 and 8).
//! Since 7.0 Bazel refuses two execution logs at once, so a workspace `.bazelrc` that asks
//! for the compact or binary log makes the build fail; that error names the flags.

use crate::results::{BazelFlavor, ExternalDeps, FlagSet};

/// A Bazel release, as far as `bazel --version` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BazelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl BazelVersion {
    /// Reads the version from what the harness records for `bazel --version`: `bazel 7.4.0`
    /// (bazelisk, release builds), `bazel 7.4.1- (@non-git)` (nixpkgs), `bazel 8.1.1rc2`, and
    /// Debian's unstamped `bazel no_version (Debian bazel-bootstrap 4.2.3+ds-9)`. `None` when
    /// no version is in it (a bare `bazel no_version`).
    pub fn parse(recorded: &str) -> Option<BazelVersion> {
        let version = match recorded.split_once("bazel-bootstrap ") {
            Some((_, debian)) => debian,
            None => recorded.trim().strip_prefix("bazel ")?,
        };
        let numeric: String = version
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().and_then(Result::ok).unwrap_or(0);
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(BazelVersion {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for BazelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl BazelFlavor {
    pub fn of(version: Option<BazelVersion>) -> BazelFlavor {
        match version.map(|v| v.major) {
            None => BazelFlavor::Unknown,
            Some(0..=6) => BazelFlavor::Workspace,
            Some(7) => BazelFlavor::Bazel7,
            Some(8) => BazelFlavor::Bazel8,
            Some(_) => BazelFlavor::Bazel9,
        }
    }

    /// The name results record, e.g. `bazel8`.
    pub fn name(self) -> &'static str {
        match self {
            BazelFlavor::Workspace => "workspace",
            BazelFlavor::Bazel7 => "bazel7",
            BazelFlavor::Bazel8 => "bazel8",
            BazelFlavor::Bazel9 => "bazel9",
            BazelFlavor::Unknown => "unknown",
        }
    }
}

impl ExternalDeps {
    /// From whether the workspace root has `MODULE.bazel` and `WORKSPACE`/`WORKSPACE.bazel`.
    pub fn from_markers(has_module_bazel: bool, has_workspace_file: bool) -> ExternalDeps {
        if has_workspace_file && !has_module_bazel {
            ExternalDeps::WorkspaceOnly
        } else {
            ExternalDeps::Module
        }
    }
}

impl FlagSet {
    /// Chooses the flags for the Bazel whose recorded `--version` is `recorded_version`,
    /// building a workspace with `deps`. Errs when that Bazel cannot build it at all.
    pub fn choose(recorded_version: &str, deps: ExternalDeps) -> Result<FlagSet, String> {
        let version = BazelVersion::parse(recorded_version);
        let flavor = BazelFlavor::of(version);
        if flavor == BazelFlavor::Bazel9 && deps == ExternalDeps::WorkspaceOnly {
            return Err(format!(
                "Bazel {} has no WORKSPACE support, and this repo declares its dependencies only in WORKSPACE\n  fix: pin Bazel 8 in the repo's .bazelversion (bazelisk honours it), or add a MODULE.bazel",
                version.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
        let mut build_flags = Vec::new();
        // Keeps the caller's PATH out of action keys, or caches never hit across machines;
        // Bazel 9 does this by default.
        if flavor != BazelFlavor::Bazel9 {
            build_flags.push("--incompatible_strict_action_env".to_string());
        }
        if flavor == BazelFlavor::Bazel8 && deps == ExternalDeps::WorkspaceOnly {
            build_flags.push("--enable_workspace".to_string());
        }
        Ok(FlagSet {
            flavor,
            version: version.map(|v| v.to_string()),
            external_deps: deps,
            build_flags,
            debian_rule_overrides: matches!(flavor, BazelFlavor::Workspace | BazelFlavor::Unknown),
        })
    }

    /// The execution log the harness parses: JSON on every version (see the module notes).
    pub fn execution_log_flag(&self, path: &std::path::Path) -> String {
        format!("--execution_log_json_file={}", path.display())
    }

    /// The JSON trace profile (issue 15): `--profile` alone writes it on 4.2.3 through 9.x;
    /// a name ending in `.gz` would make 7+ compress it.
    pub fn profile_flag(&self, path: &std::path::Path) -> String {
        format!("--profile={}", path.display())
    }

    /// The disk and remote cache, always both, over whatever the workspace's rc files set,
    /// so a cold build reads no cache (issue 11): an empty value means none on every version.
    pub fn cache_flags(&self, disk: &str, remote: &str) -> [String; 2] {
        [
            format!("--disk_cache={disk}"),
            format!("--remote_cache={remote}"),
        ]
    }

    /// One repository cache shared by all samples of a run (issue 11).
    pub fn repository_cache_flag(&self, dir: &std::path::Path) -> String {
        format!("--repository_cache={}", dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const DEBIAN: &str = "bazel no_version (Debian bazel-bootstrap 4.2.3+ds-9)";

    #[test]
    fn reads_the_versions_each_bazel_prints() {
        let v = |s| BazelVersion::parse(s).map(|v| v.to_string());
        assert_eq!(v(DEBIAN).as_deref(), Some("4.2.3"));
        assert_eq!(v("bazel 4.2.3").as_deref(), Some("4.2.3"));
        assert_eq!(v("bazel 7.4.0").as_deref(), Some("7.4.0"));
        assert_eq!(v("bazel 7.4.1- (@non-git)").as_deref(), Some("7.4.1"));
        assert_eq!(v("bazel 8.1.1").as_deref(), Some("8.1.1"));
        assert_eq!(v("bazel 8.1.1rc2").as_deref(), Some("8.1.1"));
        assert_eq!(v("bazel 9.0.0-pre.20250101.1").as_deref(), Some("9.0.0"));
        assert_eq!(v("bazel no_version"), None);
        assert_eq!(v("unknown"), None);
        assert_eq!(v(""), None);
    }

    #[test]
    fn bazel_4_2_3_keeps_the_workspace_flags_and_debians_rules() {
        let set = FlagSet::choose(DEBIAN, ExternalDeps::WorkspaceOnly).unwrap();
        assert_eq!(set.flavor, BazelFlavor::Workspace);
        assert_eq!(set.version.as_deref(), Some("4.2.3"));
        assert_eq!(set.build_flags, ["--incompatible_strict_action_env"]);
        assert!(set.debian_rule_overrides);
    }

    #[test]
    fn bazel_7_4_0_needs_nothing_for_workspace_or_bzlmod() {
        for deps in [ExternalDeps::WorkspaceOnly, ExternalDeps::Module] {
            let set = FlagSet::choose("bazel 7.4.0", deps).unwrap();
            assert_eq!(set.flavor, BazelFlavor::Bazel7);
            assert_eq!(set.build_flags, ["--incompatible_strict_action_env"]);
            assert!(!set.debian_rule_overrides);
        }
    }

    #[test]
    fn bazel_8_1_1_turns_workspace_back_on_only_for_workspace_repos() {
        let fixture_cc = FlagSet::choose("bazel 8.1.1", ExternalDeps::WorkspaceOnly).unwrap();
        assert_eq!(fixture_cc.flavor, BazelFlavor::Bazel8);
        assert_eq!(
            fixture_cc.build_flags,
            ["--incompatible_strict_action_env", "--enable_workspace"]
        );
        let bzlmod = FlagSet::choose("bazel 8.1.1", ExternalDeps::Module).unwrap();
        assert_eq!(bzlmod.build_flags, ["--incompatible_strict_action_env"]);
        assert!(!bzlmod.debian_rule_overrides);
    }

    #[test]
    fn bazel_9_has_strict_env_by_default_and_no_workspace() {
        let set = FlagSet::choose("bazel 9.2.0", ExternalDeps::Module).unwrap();
        assert_eq!(set.flavor, BazelFlavor::Bazel9);
        assert!(set.build_flags.is_empty());
        let err = FlagSet::choose("bazel 9.2.0", ExternalDeps::WorkspaceOnly).unwrap_err();
        assert!(
            err.contains("9.2.0") && err.contains("WORKSPACE") && err.contains("fix:"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_version_keeps_flags_every_version_accepts() {
        let set = FlagSet::choose("bazel no_version", ExternalDeps::WorkspaceOnly).unwrap();
        assert_eq!(set.flavor, BazelFlavor::Unknown);
        assert_eq!(set.version, None);
        assert_eq!(set.build_flags, ["--incompatible_strict_action_env"]);
    }

    #[test]
    fn the_path_flags_are_the_same_on_every_version() {
        for version in [DEBIAN, "bazel 7.4.0", "bazel 8.1.1"] {
            let set = FlagSet::choose(version, ExternalDeps::Module).unwrap();
            assert_eq!(
                set.execution_log_flag(Path::new("/l/exec.json")),
                "--execution_log_json_file=/l/exec.json"
            );
            assert_eq!(
                set.profile_flag(Path::new("/l/profile.json")),
                "--profile=/l/profile.json"
            );
            assert_eq!(
                set.cache_flags("", ""),
                ["--disk_cache=", "--remote_cache="]
            );
            assert_eq!(
                set.repository_cache_flag(Path::new("/run/repos")),
                "--repository_cache=/run/repos"
            );
        }
    }

    #[test]
    fn markers_decide_the_external_dependency_system() {
        assert_eq!(
            ExternalDeps::from_markers(false, true),
            ExternalDeps::WorkspaceOnly
        );
        assert_eq!(ExternalDeps::from_markers(true, true), ExternalDeps::Module);
        assert_eq!(
            ExternalDeps::from_markers(true, false),
            ExternalDeps::Module
        );
        assert_eq!(
            ExternalDeps::from_markers(false, false),
            ExternalDeps::Module
        );
    }

    #[test]
    fn the_recorded_set_names_its_flavor() {
        let set = FlagSet::choose("bazel 8.1.1", ExternalDeps::WorkspaceOnly).unwrap();
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["flavor"], "bazel8");
        assert_eq!(json["flavor"], set.flavor.name());
        assert_eq!(json["external_deps"], "workspace-only");
        assert_eq!(json["version"], "8.1.1");
        let back: FlagSet = serde_json::from_value(json).unwrap();
        assert_eq!(back, set);
        for flavor in [
            BazelFlavor::Workspace,
            BazelFlavor::Bazel7,
            BazelFlavor::Bazel8,
            BazelFlavor::Bazel9,
            BazelFlavor::Unknown,
        ] {
            assert_eq!(serde_json::to_value(flavor).unwrap(), flavor.name());
        }
    }
}
