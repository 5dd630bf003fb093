//! Typed events the scheduler emits; the progress display and the results recorder are
//! independent consumers of them. A vm lane's guest writes the same events to a file, one
//! JSON line each (`WireEvent`), and the host replays them to its own consumers.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::plan::Plan;
use crate::results::{CaseResult, LaneIdentity, Sample};

#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    RunStarted {
        plan: &'a Plan,
    },
    /// Who the lane of the cases that follow is.
    LaneIdentified {
        identity: &'a LaneIdentity,
    },
    /// Case `index` of the plan the run started with.
    CaseStarted {
        index: usize,
    },
    /// Untimed work for a case, e.g. priming a store and filling the cache.
    Preparing {
        index: usize,
        what: &'a str,
    },
    BuildFinished {
        index: usize,
        warmup: bool,
        sample: &'a Sample,
    },
    CaseFinished {
        index: usize,
        result: &'a CaseResult,
    },
}

pub trait EventSink {
    fn event(&mut self, event: &Event) -> Result<()>;
}

/// Sends one event to every sink, in order.
pub fn emit(sinks: &mut [&mut dyn EventSink], event: Event) -> Result<()> {
    sinks.iter_mut().try_for_each(|s| s.event(&event))
}

/// An event as a guest writes it: owned, with cases named by their index in the plan both
/// sides share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum WireEvent {
    Lane {
        identity: Box<LaneIdentity>,
    },
    CaseStarted {
        index: usize,
    },
    Preparing {
        index: usize,
        what: String,
    },
    BuildFinished {
        index: usize,
        warmup: bool,
        sample: Box<Sample>,
    },
    CaseFinished {
        index: usize,
        result: Box<CaseResult>,
    },
}

impl WireEvent {
    /// One line of a guest's event log.
    pub fn parse(line: &str) -> Result<WireEvent> {
        serde_json::from_str(line).map_err(|e| {
            crate::error::Error::Environment(format!(
                "the vm lane's guest wrote an event this harness cannot read ({e}): {line}"
            ))
        })
    }

    /// The wire form of an event; `RunStarted` stays with the side that has the plan.
    pub fn of(event: &Event) -> Option<WireEvent> {
        Some(match *event {
            Event::RunStarted { .. } => return None,
            Event::LaneIdentified { identity } => WireEvent::Lane {
                identity: Box::new(identity.clone()),
            },
            Event::CaseStarted { index } => WireEvent::CaseStarted { index },
            Event::Preparing { index, what } => WireEvent::Preparing {
                index,
                what: what.to_string(),
            },
            Event::BuildFinished {
                index,
                warmup,
                sample,
            } => WireEvent::BuildFinished {
                index,
                warmup,
                sample: Box::new(sample.clone()),
            },
            Event::CaseFinished { index, result } => WireEvent::CaseFinished {
                index,
                result: Box::new(result.clone()),
            },
        })
    }

    /// Replays the event to `sinks`, its case looked up in `plan`. An index the plan does
    /// not have is an error (the guest ran another plan).
    pub fn replay(&self, plan: &Plan, sinks: &mut [&mut dyn EventSink]) -> Result<()> {
        let case = |index: usize| {
            plan.cases.get(index).ok_or_else(|| {
                crate::error::Error::Environment(format!(
                    "the vm lane's guest reported case {index}, which its plan does not have"
                ))
            })
        };
        let event = match self {
            WireEvent::Lane { identity } => Event::LaneIdentified { identity },
            WireEvent::CaseStarted { index } => {
                case(*index)?;
                Event::CaseStarted { index: *index }
            }
            WireEvent::Preparing { index, what } => Event::Preparing {
                index: *index,
                what,
            },
            WireEvent::BuildFinished {
                index,
                warmup,
                sample,
            } => Event::BuildFinished {
                index: *index,
                warmup: *warmup,
                sample,
            },
            WireEvent::CaseFinished { index, result } => {
                case(*index)?;
                Event::CaseFinished {
                    index: *index,
                    result,
                }
            }
        };
        emit(sinks, event)
    }
}

/// Writes every event as a JSON line, flushed at once so the host sees it as it happens.
pub struct EventLog {
    file: std::fs::File,
}

impl EventLog {
    pub fn create(path: &Path) -> Result<EventLog> {
        let file =
            std::fs::File::create(path).context(|| format!("creating {}", path.display()))?;
        Ok(EventLog { file })
    }
}

impl EventSink for EventLog {
    fn event(&mut self, event: &Event) -> Result<()> {
        let Some(wire) = WireEvent::of(event) else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(&wire).expect("events always serialise");
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .context(|| "writing the event log".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_line_is_an_event_or_an_error_that_shows_it() {
        assert_eq!(
            WireEvent::parse("{\"event\":\"case-started\",\"index\":1}").unwrap(),
            WireEvent::CaseStarted { index: 1 }
        );
        let err = WireEvent::parse("{not json").unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains("{not json"),
            "{err}"
        );
    }
}
