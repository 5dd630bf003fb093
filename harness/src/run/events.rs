//! Typed events the scheduler emits; the progress display and the results recorder are
//! independent consumers of them.

use crate::error::Result;
use crate::plan::{CaseSpec, Plan};
use crate::results::{CaseResult, Sample};

#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    RunStarted {
        plan: &'a Plan,
    },
    CaseStarted {
        index: usize,
        case: &'a CaseSpec,
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
