//! `flywheel-bench doctor`: which tools are here, their versions, where the bench repos
//! are, and which parts of a run can work on this machine; `--lane vm` and `--lane gpu`
//! add what those lanes need.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::error::{exit_code, Error, IoContext, Result};
use crate::exec::process::Executor;
use crate::lanes::{gpu, vm, Need};
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

/// What `doctor` is asked to check.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub lane: Option<Lane>,
    /// The vm lane: boot a test VM under KVM to prove it (up to 30 s).
    pub kvm_probe: bool,
    /// `--bench-repos`, found as `run` finds it.
    pub bench_repos: Option<std::path::PathBuf>,
}

/// Prints what was found and what can run (and, for a lane, what that lane needs here);
/// exit 3 when something is missing.
pub fn run(exec: &dyn Executor, request: &Request, env: &Env) -> Result<i32> {
    let search_path = OsString::from(env.var("PATH").unwrap_or_default());
    let tools = tools::probe_all(exec, &search_path);
    println!("tools:");
    for (name, _) in tools::KNOWN_TOOLS {
        match tools.get(*name) {
            Some(t) => println!("  {name:<8} {:<28} {}", t.path, t.version),
            None => println!("  {name:<8} not found: {}", tools::install_hint(name)),
        }
    }
    let mut all = bench_repos(request, env);
    println!("can run:");
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
    print_needs("cpu accounting", &[cpu_accounting()]);
    match request.lane {
        Some(Lane::Gpu) => all &= gpu_lane(exec, env, &search_path)?,
        Some(Lane::Vm) => {
            let scratch = tempfile::tempdir().context(|| "creating a temporary folder".into())?;
            let qemu = tools::find("qemu-system-x86_64", &search_path);
            let needs = vm::needs(
                exec,
                (qemu.as_deref(), &search_path),
                scratch.path(),
                request.kvm_probe,
            );
            all &= print_needs("vm lane", &needs);
        }
        Some(Lane::Host) | None => {}
    }
    Ok(if all {
        exit_code::OK
    } else {
        exit_code::ENVIRONMENT
    })
}

/// Where `run` will find the bench repos, and which are there; whether any are.
fn bench_repos(request: &Request, env: &Env) -> bool {
    let (dir, from) = env.bench_repos(request.bench_repos.as_deref());
    match crate::plan::manifest::discover(&dir) {
        Ok(repos) if !repos.is_empty() => {
            let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
            println!(
                "bench repos: {} ({from}): {}",
                dir.display(),
                names.join(", ")
            );
            true
        }
        Ok(_) => {
            println!(
                "bench repos: none in {} ({from})\n  fix: pass --bench-repos DIR or set $FLYWHEEL_BENCH_REPOS",
                dir.display()
            );
            false
        }
        Err(e) => {
            println!(
                "bench repos: {e} ({from})\n  fix: run from the flywheel-bench checkout, pass --bench-repos DIR or set $FLYWHEEL_BENCH_REPOS"
            );
            false
        }
    }
}

/// Whether a build's CPU time can count every process it starts (a cgroup of its own).
fn cpu_accounting() -> Need {
    let name = format!(
        "{}doctor-{}",
        crate::exec::cgroup::NAME_PREFIX,
        std::process::id()
    );
    // The cgroup is removed again when dropped.
    let found = crate::exec::cgroup::RunCgroups::create(None, &name).map(|run| {
        let version = match run.version() {
            crate::exec::cgroup::Version::V2 => "cgroup v2",
            crate::exec::cgroup::Version::V1 => "cgroup v1 (cpuacct)",
        };
        format!("{version}: a build's CPU time counts every process it starts, servers included")
    });
    Need {
        what: "a cgroup per build",
        found: found.map_err(|why| {
            format!("{why}: CPU times will count the tool's own processes and the servers named to it (each sample records its cpu_scope)")
        }),
        required: false,
    }
}

/// Prints each need under `title`; whether every required one is met.
fn print_needs(title: &str, needs: &[Need]) -> bool {
    println!("{title}:");
    let mut all = true;
    for need in needs {
        let (mark, text) = match (&need.found, need.required) {
            (Ok(found), _) => ("yes ", found),
            (Err(fix), true) => ("no  ", fix),
            (Err(note), false) => ("note", note),
        };
        all &= need.found.is_ok() || !need.required;
        println!("  {mark} {}: {text}", need.what);
    }
    all
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
    let needs = gpu::needs(exec, search_path, &env.cwd, scratch.path());
    Ok(print_needs("gpu lane", &needs))
}
