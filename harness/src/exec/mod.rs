//! Effects every layer above runs on: owned child processes (spec, executor, groups,
//! accounting, signals), private scratch folders and the janitor that cleans up after runs
//! that died, checks that need the file system, and the harness's own HTTP client.

pub(crate) mod cgroup;
pub(crate) mod checks;
pub mod http;
pub(crate) mod janitor;
pub(crate) mod observe;
pub mod process;
mod procfs;
pub mod scratch;
mod spawn;
