//! flywheel-bench: measures cold vs warm Nix builds against binary caches, with honest
//! statistics, and writes versioned results JSON.
//!
//! Layout: `plan` (manifests -> cases, pure), `tools` (one adapter per external tool),
//! `cache` (embedded cache server), `lanes` (where builds run), `run` (scheduler, events,
//! progress, results recorder), `stats` (pure), `results` (schema types, atomic writer),
//! `report` (pure renderers), `cli` (the thin command-line layer).

pub mod cache;
pub mod checks;
pub mod cli;
pub mod error;
pub mod lanes;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod scratch;
pub mod stats;
pub mod tools;
