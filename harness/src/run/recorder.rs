//! The results writer: keeps the results document and writes it atomically after every
//! case, so an interrupted run keeps everything it measured.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::results::{derive, writer::write_atomic, Results};
use crate::run::events::{Event, EventSink};

pub struct Recorder {
    path: PathBuf,
    results: Results,
}

impl Recorder {
    pub fn new(path: PathBuf, results: Results) -> Self {
        Recorder { path, results }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn results(&self) -> &Results {
        &self.results
    }

    /// Records what the run cleaned and left (written with the next write).
    pub fn record_cleanup(&mut self, cleanup: crate::results::lifecycle::Cleanup) {
        self.results.cleanup = Some(cleanup);
    }

    /// Records the speed probe's reading after the last case (written with the next write).
    pub fn record_speed_after(&mut self, reading: crate::results::machine::ProbeReading) {
        if let Some(probe) = self.results.speed_probe.as_mut() {
            probe.after = Some(reading);
        }
    }

    /// Marks the run finished and writes the final document.
    pub fn finish(&mut self) -> Result<()> {
        self.results.finished_at = Some(crate::results::now_rfc3339());
        self.write()
    }

    pub fn write(&self) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(&self.results).expect("results always serialise");
        json.push(b'\n');
        write_atomic(&self.path, &json)
    }
}

impl EventSink for Recorder {
    fn event(&mut self, event: &Event) -> Result<()> {
        match event {
            Event::RunStarted { .. } => self.write(),
            // The latest word on a lane wins (a vm guest describes itself from inside).
            Event::LaneIdentified { identity } => {
                self.results.lanes.retain(|l| l.lane != identity.lane);
                self.results.lanes.push((*identity).clone());
                self.write()
            }
            Event::CaseFinished { result, .. } => {
                self.results.cases.push((*result).clone());
                derive(&mut self.results);
                self.write()
            }
            _ => Ok(()),
        }
    }
}
