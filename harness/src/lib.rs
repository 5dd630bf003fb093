//! flywheel-bench: measures cold vs warm Nix and Bazel builds against their caches, proves
//! fallback when a cache misbehaves, with honest statistics, as versioned results JSON.
//!
//! Layout: `plan` (manifests, profiles and flags resolved into a run's configuration and
//! its cases; pure), `tools` (one adapter per external tool, pure parsers of their output),
//! `cache` (the embedded cache server, external caches, the fault proxy), `lanes` (where
//! builds run: host, vm, gpu), `run` (the session, the scheduler and its steps, owned
//! processes, events and their consumers), `stats` (pure), `results` (schema types, the
//! atomic writer), `report` (pure renderers), `doctor`, `checks`, and `cli` (parses, then
//! hands a resolved configuration to a session and maps the outcome to an exit code).

pub mod cache;
pub mod cli;
pub mod doctor;
pub mod error;
pub mod exec;
pub mod lanes;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod tools;
