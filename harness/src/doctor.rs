//! `flywheel-bench doctor`: which tools are here, their versions, and which parts of a run
//! can work on this machine; `--lane gpu` adds what a GPU runner needs.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::error::{exit_code, Error, IoContext, Result};
use crate::exec::process::Executor;
use crate::lanes::gpu;
use crate::plan::config::{Env, NixSetup};
use crate::plan::Lane;
use crate::tools;
use crate::tools::nix::NixDriver;

/// What the harness needs for which part of a run.
const NEEDS: &[(&str, &[&str])] = &[
    ("nix cold and noop cases", &["nix"]),
    ("nix warm cases (embedded cache)", &["nix", "nginx"]),
    ("bazel cold and noop cases", &["bazel"]),
    ("bazel warm cases (embedded cache)", &["bazel", "nginx"]),
    ("the embedded fixture repos", &["gcc"]),
];

/// Prints what was found and what can run (and, for `lane`, what that lane needs here);
/// exit 3 when something is missing.
pub fn run(exec: &dyn Executor, lane: Option<Lane>, env: &Env) -> Result<i32> {
    let search_path = OsString::from(env.var("PATH").unwrap_or_default());
    let tools = tools::probe_all(exec, &search_path);
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
    if let Some(nix) = tools.get("nix") {
        let what = "nix builds sandboxed in a private store (the host's /nix stays untouched)";
        match sandbox_probe(exec, Path::new(&nix.path)) {
            Ok(()) => println!("  yes  {what}"),
            Err(why) => {
                all = false;
                println!("  no   {what}: {why}");
            }
        }
    }
    if lane == Some(Lane::Gpu) {
        all &= gpu_lane(exec, env, &search_path)?;
    }
    Ok(if all {
        exit_code::OK
    } else {
        exit_code::ENVIRONMENT
    })
}

/// The run's sandbox probe, in a temporary folder.
fn sandbox_probe(exec: &dyn Executor, nix: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir()
        .context(|| "creating a folder for the sandbox probe".into())
        .map_err(|e: Error| e.to_string())?;
    let driver = NixDriver::new(nix.to_path_buf(), dir.path(), None, NixSetup::default())
        .map_err(|e| e.to_string())?;
    let probed = driver.probe_sandbox(exec);
    let _ = crate::exec::scratch::remove_tree(dir.path());
    probed
}

/// Prints each need of the gpu lane; whether every required one is met.
fn gpu_lane(exec: &dyn Executor, env: &Env, search_path: &OsStr) -> Result<bool> {
    let scratch = tempfile::tempdir().context(|| "creating a temporary folder".into())?;
    println!("gpu lane:");
    let mut all = true;
    for need in gpu::needs(exec, search_path, &env.cwd, scratch.path()) {
        let (mark, text) = match (&need.found, need.required) {
            (Ok(found), _) => ("yes ", found),
            (Err(fix), true) => ("no  ", fix),
            (Err(note), false) => ("note", note),
        };
        all &= need.found.is_ok() || !need.required;
        println!("  {mark} {}: {text}", need.what);
    }
    Ok(all)
}
