//! flywheel-bench: measures cold vs warm Nix and Bazel builds against their caches, proves
//! fallback when a cache misbehaves, with honest statistics, as versioned results JSON.
//!
//! The layers, from the bottom up; a module uses only those below it (README "Layout"):
//! `stats`, `error` and `boundary` (ground; `boundary`: bounded reads of the files users
//! name, regular-file outputs, credentials removed from URLs), `results` (the document and its words), `plan` (resolved
//! configuration and the case matrix; pure), `exec` (child processes, scratch folders, the
//! HTTP client), `tools` (one adapter per external tool), `cache` (provisioning, the
//! embedded server, the fault proxy), `lanes` (host, vm, gpu), `report` (results in, bytes
//! out), `run` (session, scheduler, case steps, sinks), and the commands: `cli`, `doctor`
//! and the developers' `fake_tools`. The library exports what the binary, the integration
//! tests and the benchmarks use.

mod boundary;
pub mod cache;
mod cli;
mod doctor;
mod error;
pub mod exec;
mod fake_tools;
pub mod lanes;
pub mod plan;
mod report;
pub mod results;
pub mod run;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod tools;

pub use cli::main;
