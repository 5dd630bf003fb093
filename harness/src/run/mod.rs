//! Running a plan: the session that owns a run's state, the scheduler and its steps, owned
//! child processes, typed events and their consumers (progress display, results recorder).

pub mod build;
pub mod case;
pub mod cgroup;
pub mod check;
pub mod coverage;
pub mod events;
pub mod fallback;
pub mod janitor;
pub mod observe;
pub mod process;
pub mod procfs;
pub mod progress;
pub mod recorder;
pub mod scheduler;
pub mod session;
pub mod sources;
mod verify;

pub use scheduler::{blank_result, Drivers, Scheduler};
