//! Running a plan: the session that owns a run's state and gets its tools from a toolbox,
//! the scheduler and its steps, typed events and their consumers (progress display, results
//! recorder), and the coverage command.

mod build;
mod case;
mod check;
pub mod coverage;
pub(crate) mod events;
mod fallback;
pub(crate) mod model;
pub(crate) mod progress;
pub(crate) mod recorder;
pub(crate) mod scheduler;
pub(crate) mod session;
mod sources;
mod verify;
