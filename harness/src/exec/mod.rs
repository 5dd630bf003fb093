//! Effects every layer above runs on: owned child processes (spec, executor, groups,
//! accounting, signals), private scratch folders and the janitor that cleans up after runs
//! that died, checks that need the file system, and the harness's own HTTP client.

pub mod cgroup;
pub mod checks;
pub mod http;
pub mod janitor;
pub mod observe;
pub mod process;
pub mod procfs;
pub mod scratch;
