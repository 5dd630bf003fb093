//! Watching builds for a lane: a hook started right before each build and stopped after
//! its check, whose findings go on the build's sample (the gpu lane's GPU trace). The lane
//! hands it over with its executor; the scheduler knows only this interface.

use crate::results::GpuTrace;

/// Starts a watch around each build.
pub trait BuildObserver: Sync {
    fn start(&self) -> Box<dyn Watch + '_>;
}

/// One build's watch; dropping it without `stop` must leave nothing running.
pub trait Watch {
    fn stop(self: Box<Self>) -> Observation;
}

/// What a watch saw, for the build's sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub gpu_trace: Option<GpuTrace>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::error::Result;
    use crate::exec::process::{CommandSpec, Executor, Exit, ProcessOutcome};
    use crate::testing::{FakeDriver, FakeExecutor, FAKE_TOOL};

    /// A lane's executor whose observer notes when it starts and stops, between commands.
    struct Watched {
        inner: FakeExecutor,
        log: Mutex<Vec<String>>,
    }

    impl Executor for Watched {
        fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
            let first = spec.args.first().map(|a| a.to_string_lossy().into_owned());
            self.log
                .lock()
                .unwrap()
                .push(format!("run {}", first.unwrap_or_default()));
            self.inner.run(spec)
        }

        fn observer(&self) -> Option<&dyn BuildObserver> {
            Some(self)
        }
    }

    impl BuildObserver for Watched {
        fn start(&self) -> Box<dyn Watch + '_> {
            self.log.lock().unwrap().push("start".into());
            Box::new(Noting(&self.log))
        }
    }

    struct Noting<'a>(&'a Mutex<Vec<String>>);

    impl Watch for Noting<'_> {
        fn stop(self: Box<Self>) -> Observation {
            self.0.lock().unwrap().push("stop".into());
            Observation {
                gpu_trace: Some(GpuTrace {
                    period_ms: 100,
                    ..GpuTrace::default()
                }),
            }
        }
    }

    #[test]
    fn the_lane_s_watch_spans_each_build_and_its_check() {
        let exec = Watched {
            inner: FakeExecutor::new(|_| Exit::Code(0)),
            log: Mutex::new(Vec::new()),
        };
        let mut plan = crate::testing::plan(
            &[crate::plan::Scenario::Cold],
            crate::plan::Settings {
                warmups: 0,
                samples: 1,
                ..Default::default()
            },
        );
        plan.repos[0].check = Some(crate::plan::manifest::CheckSpec {
            command: vec![FAKE_TOOL.into(), "check".into()],
            timeout: std::time::Duration::from_secs(5),
        });
        let (results, _) = crate::testing::schedule(&plan, &exec, FakeDriver::new(None), None);
        let log = exec.log.lock().unwrap().clone();
        let watched: Vec<&str> = log
            .iter()
            .map(String::as_str)
            .skip_while(|l| *l != "start")
            .collect();
        assert_eq!(
            watched,
            ["start", "run fresh", "run check", "stop"],
            "{log:?}"
        );
        let sample = &results[0].samples[0];
        assert_eq!(sample.gpu_trace.as_ref().unwrap().period_ms, 100);
    }
}
