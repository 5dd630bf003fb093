//! `flywheel-bench doctor`: which tools are here, their versions, and which parts of a run
//! can work on this machine.

use crate::error::{exit_code, Result};
use crate::run::process::Executor;
use crate::tools;

/// What the harness needs for which part of a run.
const NEEDS: &[(&str, &[&str])] = &[
    ("nix cold and noop cases", &["nix"]),
    ("nix warm cases (embedded cache)", &["nix", "nginx"]),
    ("bazel cold and noop cases", &["bazel"]),
    ("bazel warm cases (embedded cache)", &["bazel", "nginx"]),
    ("the embedded fixture repos", &["gcc"]),
];

/// Prints what was found and what can run; exit 3 when something is missing.
pub fn run(exec: &dyn Executor) -> Result<i32> {
    let tools = tools::probe_all(exec);
    println!("tools:");
    for (name, _) in tools::KNOWN_TOOLS {
        match tools.get(*name) {
            Some(t) => println!("  {name:<8} {:<28} {}", t.path, t.version),
            None => println!("  {name:<8} not found: {}", tools::install_hint(name)),
        }
    }
    println!("can run:");
    let mut all = true;
    for (what, needed) in NEEDS {
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|t| !tools.contains_key(*t))
            .collect();
        if missing.is_empty() {
            println!("  yes  {what}");
        } else {
            all = false;
            println!("  no   {what} (missing: {})", missing.join(", "));
        }
    }
    Ok(if all {
        exit_code::OK
    } else {
        exit_code::ENVIRONMENT
    })
}
