//! The gpu lane's trace: `nvidia-smi --query-gpu=... -lms 100` runs as an owned child while
//! each build and its check run; its CSV becomes a summary (max and mean of utilisation,
//! memory used, power and SM clock) and the series, column by column. A sampler that
//! cannot run is recorded with its reason; the build goes on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::exec::observe::{BuildObserver, Observation, Watch};
use crate::exec::process::{CommandSpec, Executor, OwnedChild, ProcessOutcome, ServerProbe};
use crate::results::{GpuSeries, GpuTrace, GpuTraceSummary, MaxMean};

/// The sampling period asked of nvidia-smi.
pub const PERIOD_MS: u64 = 100;
/// What is queried, in this order (the recorded H100 trace used the same query).
pub const QUERY: [&str; 9] = [
    "timestamp",
    "index",
    "utilization.gpu",
    "utilization.memory",
    "memory.used",
    "memory.total",
    "power.draw",
    "clocks.sm",
    "temperature.gpu",
];
/// How long nvidia-smi gets to exit after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The arguments of the sampler.
pub fn query_args() -> Vec<OsString> {
    vec![
        format!("--query-gpu={}", QUERY.join(",")).into(),
        "--format=csv,noheader,nounits".into(),
        "-lms".into(),
        PERIOD_MS.to_string().into(),
    ]
}

/// One reading of every GPU: the time it was taken, then the busiest GPU's utilisation,
/// the memory and power of all, the highest SM clock.
#[derive(Debug, Clone, PartialEq)]
struct Tick {
    at_ms: i64,
    utilization_pct: Option<f64>,
    memory_used_mib: Option<f64>,
    power_w: Option<f64>,
    sm_clock_mhz: Option<f64>,
}

/// Parses nvidia-smi's CSV for the `QUERY` fields: with or without the header line and
/// units (`0 %`, `214.56 W`); `[N/A]` and similar become missing values; an incomplete or
/// garbled line (the sampler stopped mid-line) is skipped. Rows of one reading (GPU 0, 1,
/// ...) are merged.
pub fn parse_trace(csv: &str) -> GpuSeries {
    let column = |name: &str| QUERY.iter().position(|q| *q == name).expect("queried");
    let (time, index) = (column("timestamp"), column("index"));
    let mut ticks: Vec<Tick> = Vec::new();
    let mut last_index: Option<u32> = None;
    for line in csv.lines() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != QUERY.len() {
            continue;
        }
        let (Some(at_ms), Ok(gpu)) = (timestamp_ms(fields[time]), fields[index].parse::<u32>())
        else {
            continue; // the header, or a garbled line
        };
        let value = |name: &str| number(fields[column(name)]);
        let row = Tick {
            at_ms,
            utilization_pct: value("utilization.gpu"),
            memory_used_mib: value("memory.used"),
            power_w: value("power.draw"),
            sm_clock_mhz: value("clocks.sm"),
        };
        match ticks.last_mut() {
            Some(tick) if last_index.is_some_and(|i| gpu > i) => {
                tick.utilization_pct = merge(tick.utilization_pct, row.utilization_pct, f64::max);
                tick.memory_used_mib =
                    merge(tick.memory_used_mib, row.memory_used_mib, |a, b| a + b);
                tick.power_w = merge(tick.power_w, row.power_w, |a, b| a + b);
                tick.sm_clock_mhz = merge(tick.sm_clock_mhz, row.sm_clock_mhz, f64::max);
            }
            _ => ticks.push(row),
        }
        last_index = Some(gpu);
    }
    let start = ticks.first().map_or(0, |t| t.at_ms);
    let mut series = GpuSeries::default();
    for t in ticks {
        series
            .t_ms
            .push(u64::try_from(t.at_ms - start).unwrap_or(0));
        series.utilization_pct.push(t.utilization_pct);
        series.memory_used_mib.push(t.memory_used_mib);
        series.power_w.push(t.power_w);
        series.sm_clock_mhz.push(t.sm_clock_mhz);
    }
    series
}

/// Max and mean of each column.
pub fn summarize(series: &GpuSeries) -> GpuTraceSummary {
    let stat = |column: &[Option<f64>]| {
        let values: Vec<f64> = column.iter().flatten().copied().collect();
        (!values.is_empty()).then(|| MaxMean {
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean: values.iter().sum::<f64>() / values.len() as f64,
        })
    };
    GpuTraceSummary {
        samples: series.t_ms.len(),
        utilization_pct: stat(&series.utilization_pct),
        memory_used_mib: stat(&series.memory_used_mib),
        power_w: stat(&series.power_w),
        sm_clock_mhz: stat(&series.sm_clock_mhz),
    }
}

/// A trace of what the sampler printed.
pub fn trace_of(csv: &str) -> GpuTrace {
    let series = parse_trace(csv);
    GpuTrace {
        unavailable: None,
        period_ms: PERIOD_MS,
        summary: summarize(&series),
        series,
    }
}

fn unavailable(reason: String) -> GpuTrace {
    GpuTrace {
        unavailable: Some(reason),
        period_ms: PERIOD_MS,
        ..GpuTrace::default()
    }
}

fn merge(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// `214.56`, `214.56 W` or `0 %`: the number; `[N/A]`, `[Not Supported]`: none.
fn number(field: &str) -> Option<f64> {
    field
        .split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// `2026/11/23 02:41:52.236` as milliseconds since the epoch (the clock's zone does not
/// matter: only differences are kept).
fn timestamp_ms(field: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(field, "%Y/%m/%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// Starts nvidia-smi around each build of the lane.
pub struct GpuSampler {
    smi: PathBuf,
    /// Where each watch's CSV goes (the lane's private folder).
    dir: PathBuf,
    started: AtomicUsize,
}

impl GpuSampler {
    pub fn new(smi: PathBuf, dir: &Path) -> GpuSampler {
        GpuSampler {
            smi,
            dir: dir.to_path_buf(),
            started: AtomicUsize::new(0),
        }
    }

    fn spawn(&self, csv: &Path) -> std::result::Result<OwnedChild, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let out = std::fs::File::create(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
        let err = std::fs::File::create(csv.with_extension("err"))
            .map_err(|e| format!("{}: {e}", csv.display()))?;
        let mut cmd = Command::new(&self.smi);
        cmd.args(query_args()).stdout(out).stderr(err);
        OwnedChild::spawn(cmd, "nvidia-smi (GPU trace)").map_err(|e| e.to_string())
    }
}

impl BuildObserver for GpuSampler {
    fn start(&self) -> Box<dyn Watch + '_> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let csv = self.dir.join(format!("trace-{n}.csv"));
        match self.spawn(&csv) {
            Ok(child) => Box::new(Sampling { child, csv }),
            Err(why) => Box::new(NoSampler(format!("nvidia-smi could not start: {why}"))),
        }
    }
}

/// A running sampler; dropping it kills it (an `OwnedChild`).
struct Sampling {
    child: OwnedChild,
    csv: PathBuf,
}

impl Watch for Sampling {
    fn stop(mut self: Box<Self>) -> Observation {
        let died = self.child.exited();
        if died.is_none() {
            // nvidia-smi's loop ends on Ctrl-C; SIGKILL (the drop) is the guarantee.
            // SAFETY: a plain syscall on our own child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let until = Instant::now() + STOP_GRACE;
            while self.child.exited().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let Sampling { child, csv } = *self;
        drop(child);
        let text = std::fs::read_to_string(&csv).unwrap_or_default();
        let trace = trace_of(&text);
        let errors = std::fs::read_to_string(csv.with_extension("err")).unwrap_or_default();
        let _ = std::fs::remove_file(csv.with_extension("err"));
        let _ = std::fs::remove_file(&csv);
        let trace = match died {
            // It stopped by itself before the build was over, having sampled nothing.
            Some(status) if trace.summary.samples == 0 => {
                unavailable(format!("nvidia-smi exited ({status}): {}", errors.trim()))
            }
            _ => trace,
        };
        Observation {
            gpu_trace: Some(trace),
        }
    }
}

/// A watch whose sampler could not start: says why.
struct NoSampler(String);

impl Watch for NoSampler {
    fn stop(self: Box<Self>) -> Observation {
        Observation {
            gpu_trace: Some(unavailable(self.0)),
        }
    }
}

/// The gpu lane's executor: runs commands through `inner` and traces its builds.
pub struct Traced<'a> {
    pub inner: Box<dyn Executor + 'a>,
    pub sampler: GpuSampler,
}

impl Executor for Traced<'_> {
    fn run(&self, spec: &CommandSpec) -> Result<ProcessOutcome> {
        self.inner.run(spec)
    }

    fn run_with_servers(
        &self,
        spec: &CommandSpec,
        servers: &ServerProbe,
    ) -> Result<ProcessOutcome> {
        self.inner.run_with_servers(spec, servers)
    }

    fn observer(&self) -> Option<&dyn BuildObserver> {
        Some(&self.sampler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(name: &str) -> String {
        crate::tools::fixture(&format!("gpu-lane-h100/{name}"))
    }

    #[test]
    fn parses_the_recorded_h100_trace() {
        // 19 readings 100-130 ms apart: idle (0 %, 73 W, 345 MHz), then 100 % at 591 MiB.
        let trace = trace_of(&recorded("trace-lms100.csv"));
        let s = &trace.series;
        assert_eq!(s.t_ms.len(), 19);
        assert_eq!(&s.t_ms[..4], &[0, 106, 206, 307]);
        assert_eq!(*s.t_ms.last().unwrap(), 1863);
        assert_eq!(s.utilization_pct[0], Some(0.0));
        assert_eq!(s.utilization_pct[12], Some(100.0));
        assert_eq!(s.memory_used_mib[8], Some(591.0));
        assert_eq!(s.power_w[0], Some(72.88));
        assert_eq!(s.sm_clock_mhz[0], Some(345.0));
        let sum = &trace.summary;
        assert_eq!(sum.samples, 19);
        let util = sum.utilization_pct.unwrap();
        assert_eq!(util.max, 100.0);
        assert!(
            (util.mean - (2.0 + 2.0 + 64.0 + 64.0 + 100.0 + 100.0 + 44.0 + 44.0) / 19.0).abs()
                < 1e-9
        );
        assert_eq!(sum.memory_used_mib.unwrap().max, 591.0);
        assert_eq!(sum.power_w.unwrap().max, 222.33);
        assert_eq!(sum.sm_clock_mhz.unwrap().max, 1980.0);
        assert_eq!(trace.unavailable, None);
        assert_eq!(trace.period_ms, 100);
    }

    #[test]
    fn parses_the_recorded_header_and_units() {
        let trace = trace_of(&recorded("trace-header.csv"));
        assert_eq!(trace.series.t_ms, vec![0]);
        assert_eq!(trace.series.power_w, vec![Some(214.56)]);
        assert_eq!(trace.series.sm_clock_mhz, vec![Some(1980.0)]);
        assert_eq!(trace.series.memory_used_mib, vec![Some(0.0)]);
    }

    #[test]
    fn merges_gpus_and_skips_what_it_cannot_read() {
        let csv = "\
2026/11/23 23:59:59.950, 0, 10, 0, 100, 81559, [N/A], 1980, 40
2026/11/23 23:59:59.951, 1, 90, 0, 200, 81559, 100.5, 1500, 40
2026/11/24 00:00:00.050, 0, 5, 0, 100, 81559, 70.0, 345, 40
2026/11/24 00:00:00.051, 1, 0, 0, [Not Supported], 81559, 71.0, 345, 40
2026/11/24 00:00:00.1";
        let s = parse_trace(csv);
        assert_eq!(
            s.t_ms,
            vec![0, 100],
            "across midnight, the cut line dropped"
        );
        assert_eq!(s.utilization_pct, vec![Some(90.0), Some(5.0)]);
        assert_eq!(s.memory_used_mib, vec![Some(300.0), Some(100.0)]);
        assert_eq!(s.power_w, vec![Some(100.5), Some(141.0)]);
        assert_eq!(s.sm_clock_mhz, vec![Some(1980.0), Some(345.0)]);
        let empty = trace_of("garbage\n\n");
        assert_eq!(empty.summary.samples, 0);
        assert_eq!(empty.summary.power_w, None);
    }

    #[test]
    fn the_query_matches_the_recording() {
        let args: Vec<String> = query_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args.join(" "),
            "--query-gpu=timestamp,index,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,clocks.sm,temperature.gpu --format=csv,noheader,nounits -lms 100"
        );
    }

    #[test]
    fn a_sampler_that_cannot_run_is_recorded_with_its_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = GpuSampler::new("/nonexistent/nvidia-smi".into(), tmp.path());
        let trace = missing.start().stop().gpu_trace.unwrap();
        assert!(
            trace
                .unavailable
                .as_deref()
                .unwrap()
                .starts_with("nvidia-smi could not start"),
            "{trace:?}"
        );
        // One that exits at once with an error (as nvidia-smi does without a driver).
        let script = tmp.path().join("smi");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let failing = GpuSampler::new(script, &tmp.path().join("traces"));
        let watch = failing.start();
        std::thread::sleep(Duration::from_millis(300));
        let trace = watch.stop().gpu_trace.unwrap();
        assert_eq!(
            trace.unavailable.as_deref(),
            Some("nvidia-smi exited (exit status: 9): NVIDIA-SMI has failed")
        );
    }

    #[test]
    fn a_running_sampler_is_stopped_and_read() {
        // A stand-in that prints recorded lines every 100 ms until interrupted.
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("smi");
        let lines = recorded("trace-lms100.csv");
        let mut body = String::from("#!/bin/sh\n");
        for line in lines.lines() {
            body.push_str(&format!("echo '{line}'; sleep 0.1\n"));
        }
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let sampler = GpuSampler::new(script, tmp.path());
        let began = Instant::now();
        let watch = sampler.start();
        std::thread::sleep(Duration::from_millis(450));
        let started = Instant::now();
        let trace = watch.stop().gpu_trace.unwrap();
        assert!(started.elapsed() < STOP_GRACE, "stopped by SIGINT");
        assert_eq!(trace.unavailable, None);
        // One line per 100 ms while it ran (longer than 450 ms on a loaded machine).
        let most = began.elapsed().as_millis() / 100 + 2;
        assert!(
            (2..=most as usize).contains(&trace.summary.samples),
            "{} samples, at most {most} expected",
            trace.summary.samples
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "CSV removed"
        );
    }
}
