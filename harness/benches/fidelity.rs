//! Whether the harness's clock agrees with hyperfine: the same commands timed by the
//! harness's build executor (a run's: cgroup, pre-exec hooks and stderr timing included), by
//! the same executor without a cgroup, by a minimal posix_spawn timer of this bench and by
//! hyperfine (`-N`, one run per call), in rounds whose order rotates so that drift on a busy
//! machine hits all four alike. For a ~1 ms command (`true`), a no-op `nix build` of
//! fixture-c-dag (20-30 ms here) and `sleep 1` it prints the harness's median against each
//! other timer's: the ratio of medians with its 95 % interval, and the median of the
//! per-round ratios with its paired interval (narrower: a round's load hits both sides).
//! Last, the median of a whole `flywheel-bench run --scenario noop` of the same build
//! against hyperfine's on its replayed command, run just before and just after it.
//!
//! `cargo bench --bench fidelity` (about 4 minutes; run it with nothing else on the machine,
//! e.g. under `flock -x /tmp/fb-quiet.lock`). The Nix command and its environment come from
//! the reproduce record of the results file that the whole run writes, replayed in a private
//! store this bench primes. `FLYWHEEL_BENCH_BIN` names another harness binary for the whole
//! run (an older build, to compare). Needs nix and a writable cgroup (root); without
//! hyperfine its column stays empty.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flywheel_bench::exec::process::{BuildExecutor, CommandSpec, Executor, ProcessExecutor};
use flywheel_bench::exec::scratch::ScratchDir;
use flywheel_bench::plan::Scenario;
use flywheel_bench::stats::{median, paired_ratio, ratio_of_medians, RatioInterval};

/// One command to time, as the harness and hyperfine run it.
struct Timed {
    label: &'static str,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    /// Whether the harness notes stderr arrival times, as it does for explained Nix builds.
    stderr_times: bool,
    samples: usize,
}

fn main() {
    let work = tempfile::tempdir().expect("a temporary folder");
    let scratch = ScratchDir::new_in(work.path(), "flywheel-bench-fidelity-").expect("scratch");
    let exec = BuildExecutor::for_run(&scratch, None);
    if let Some(note) = exec.accounting_note() {
        println!("note: {note}");
    }
    let hyperfine = which::which("hyperfine").ok();
    if hyperfine.is_none() {
        println!("note: hyperfine is not installed; only the posix_spawn timer is compared");
    }
    let tool = |name: &str| {
        which::which(name)
            .unwrap_or_else(|_| panic!("{name} is needed"))
            .display()
            .to_string()
    };
    let nix = nix_noop(work.path());
    let commands = [
        Timed {
            label: "true",
            argv: vec![tool("true")],
            env: Vec::new(),
            cwd: work.path().to_path_buf(),
            stderr_times: false,
            samples: 300,
        },
        nix,
        Timed {
            label: "sleep 1",
            argv: vec![tool("sleep"), "1".into()],
            env: Vec::new(),
            cwd: work.path().to_path_buf(),
            stderr_times: false,
            samples: 10,
        },
    ];
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10}",
        "command", "harness", "no cgroup", "spawn", "hyperfine"
    );
    for timed in &commands {
        let logs = scratch.path().join(timed.label.replace(' ', "-"));
        std::fs::create_dir_all(&logs).expect("a log folder");
        let walls = interleaved(&exec, hyperfine.as_deref(), timed, &logs);
        let [harness, _, _, reference] = &walls;
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10}",
            timed.label,
            ms(harness),
            ms(&walls[1]),
            ms(&walls[2]),
            ms(reference)
        );
        for (other, label) in walls[1..].iter().zip(["no cgroup", "spawn", "hyperfine"]) {
            println!(
                "  harness/{label:<15} medians {:<24} paired {}",
                ratio(ratio_of_medians(harness, other)),
                ratio(paired_ratio(harness, other)),
            );
        }
        if let (true, Some(hyperfine)) = (timed.stderr_times, hyperfine.as_deref()) {
            whole_run_against_hyperfine(hyperfine, timed, work.path(), &logs);
        }
    }
}

/// A whole run cannot be interleaved with another timer, and this machine drifts by 10%
/// within minutes: the whole run goes between two hyperfine runs of its replayed command,
/// and is compared with both together.
fn whole_run_against_hyperfine(hyperfine: &Path, timed: &Timed, work: &Path, logs: &Path) {
    let before = hyperfine_times(hyperfine, timed, logs, 3, WHOLE_RUN_SAMPLES);
    let walls = whole_run(&work.join("runs-bracketed"), &work.join("bracketed.json")).walls();
    let after = hyperfine_times(hyperfine, timed, logs, 3, WHOLE_RUN_SAMPLES);
    println!(
        "  whole run: median {}, between hyperfine's {} and {}, against both: {}",
        ms(&walls),
        ms(&before),
        ms(&after),
        ratio(ratio_of_medians(&walls, &[before, after].concat()))
    );
}

/// Wall times (seconds) of `timed` through the harness's executor, through it without a
/// cgroup, through a plain posix_spawn and through hyperfine (one run per call; empty
/// without it), in rounds whose order rotates, after three warm-ups of each: sample `i` of
/// every timer comes from round `i`.
fn interleaved(
    exec: &BuildExecutor,
    hyperfine: Option<&Path>,
    timed: &Timed,
    logs: &Path,
) -> [Vec<f64>; 4] {
    let mut spec = CommandSpec::new(
        &timed.argv[0],
        timed.argv[1..].iter().map(OsString::from).collect(),
        Duration::from_secs(120),
    )
    .env(
        timed
            .env
            .iter()
            .map(|(k, v)| (k.clone(), OsString::from(v)))
            .collect(),
    )
    .cwd(&timed.cwd);
    spec.stdout = logs.join("stdout");
    spec.stderr = logs.join("stderr");
    spec.stderr_times = timed.stderr_times;
    let time = |timer: usize| -> Option<f64> {
        let executor: &dyn Executor = match timer {
            0 => exec,
            1 => &ProcessExecutor,
            2 => return Some(spawn_timer(timed, logs)),
            _ => return hyperfine.map(|h| run_hyperfine(h, timed, logs)),
        };
        let outcome = executor.run(&spec).expect("the harness runs the command");
        assert!(outcome.success(), "{}: {}", timed.label, outcome.describe());
        Some(outcome.wall.as_secs_f64())
    };
    const TIMERS: usize = 4;
    for timer in (0..TIMERS).cycle().take(3 * TIMERS) {
        time(timer);
    }
    let mut walls: [Vec<f64>; TIMERS] = Default::default();
    for i in 0..timed.samples {
        for timer in (0..TIMERS).map(|t| (t + i) % TIMERS) {
            walls[timer].extend(time(timer));
        }
    }
    walls
}

/// The simplest honest clock: std's posix_spawn (no pre_exec hook), then wait.
fn spawn_timer(timed: &Timed, logs: &Path) -> f64 {
    let mut cmd = Command::new(&timed.argv[0]);
    cmd.args(&timed.argv[1..])
        .envs(timed.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&timed.cwd)
        .stdin(Stdio::null())
        .stdout(File::create(logs.join("spawn.stdout")).expect("a log"))
        .stderr(File::create(logs.join("spawn.stderr")).expect("a log"));
    let start = Instant::now();
    let status = cmd.spawn().and_then(|mut c| c.wait()).expect("spawn");
    let wall = start.elapsed().as_secs_f64();
    assert!(status.success(), "{}: {status}", timed.label);
    wall
}

/// One run of `timed` measured by hyperfine (`-N`: no shell), in seconds.
fn run_hyperfine(hyperfine: &Path, timed: &Timed, logs: &Path) -> f64 {
    hyperfine_times(hyperfine, timed, logs, 0, 1)[0]
}

/// `runs` runs of `timed` measured by hyperfine after `warmups`, in seconds.
fn hyperfine_times(
    hyperfine: &Path,
    timed: &Timed,
    logs: &Path,
    warmups: usize,
    runs: usize,
) -> Vec<f64> {
    let json = logs.join("hyperfine.json");
    let line = timed
        .argv
        .iter()
        .map(|a| flywheel_bench::exec::process::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let status = Command::new(hyperfine)
        .args(["-N", "--style", "none", "--warmup", &warmups.to_string()])
        .args(["--runs", &runs.to_string(), "--export-json"])
        .arg(&json)
        .arg(line)
        .envs(timed.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&timed.cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("hyperfine runs");
    assert!(status.success(), "hyperfine failed on {}", timed.label);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("hyperfine's JSON")).expect("JSON");
    doc["results"][0]["times"]
        .as_array()
        .expect("hyperfine's times")
        .iter()
        .map(|t| t.as_f64().expect("a time"))
        .collect()
}

/// Samples of the harness's end-to-end noop run of fixture-c-dag.
const WHOLE_RUN_SAMPLES: usize = 60;

/// The harness's end-to-end noop run of fixture-c-dag in `runs`: its noop case.
fn whole_run(runs: &Path, results: &Path) -> flywheel_bench::results::CaseResult {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let harness = std::env::var_os("FLYWHEEL_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_flywheel-bench").into());
    let status = Command::new(harness)
        .args(["run", "--repo", "fixture-c-dag", "--system", "nix"])
        .args(["--scenario", "noop", "--param", "size=4", "--warmups", "3"])
        .args(["--samples", &WHOLE_RUN_SAMPLES.to_string()])
        .arg("--work-dir")
        .arg(runs)
        .arg("--output")
        .arg(results)
        .current_dir(&root)
        .stdout(Stdio::null())
        .status()
        .expect("the harness runs");
    assert!(status.success(), "the harness's noop run failed");
    let doc = flywheel_bench::results::load(results).expect("its results");
    doc.cases
        .into_iter()
        .find(|c| c.scenario == Scenario::Noop)
        .expect("a noop case")
}

/// The harness's end-to-end noop run of fixture-c-dag, and its command replayed from the
/// reproduce record in a store primed here.
fn nix_noop(work: &Path) -> Timed {
    let runs = work.join("runs");
    let case = whole_run(&runs, &work.join("noop.json"));
    let record = case.reproduce.as_ref().expect("a reproduce record");
    // The record names the run's scratch folder, gone with the run: replay it in ours.
    let cwd = record.cwd.clone().expect("a working folder");
    let scratch = cwd
        .strip_prefix(&format!("{}/", runs.display()))
        .and_then(|rest| rest.split('/').next())
        .map(|name| format!("{}/{name}", runs.display()))
        .expect("the record's folder is in the run's scratch folder");
    let replay = work.join("replay").display().to_string();
    let moved = |s: &str| s.replace(&scratch, &replay);
    for file in &record.files {
        let path = PathBuf::from(moved(&file.path));
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("its folder");
        std::fs::write(&path, &file.text).expect("the config file");
    }
    std::fs::create_dir_all(moved(&cwd)).expect("the working folder");
    // The driver's temporary folder went with the run's; the replay needs its own.
    if let Some(dir) = record.env.get("TMPDIR") {
        std::fs::create_dir_all(moved(dir)).expect("the temporary folder");
    }
    let timed = Timed {
        label: "nix build (noop)",
        argv: split_words(&moved(&record.command)),
        env: record
            .env
            .iter()
            .map(|(k, v)| (k.clone(), moved(v)))
            .collect(),
        cwd: PathBuf::from(moved(&cwd)),
        stderr_times: true,
        samples: 300,
    };
    // Priming: the first build fills the store; every later one is a no-op.
    let logs = work.join("prime");
    std::fs::create_dir_all(&logs).expect("a log folder");
    spawn_timer(&timed, &logs);
    timed
}

/// Splits a command line that `shell_quote` wrote: words, some in single quotes, and
/// `\'` for a quote inside them.
fn split_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut started) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '\\' if !quoted => word.extend(chars.next()),
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
                continue;
            }
            c => word.push(c),
        }
        started = true;
    }
    if started {
        words.push(word);
    }
    words
}

/// The median in milliseconds, `-` for no samples.
fn ms(walls: &[f64]) -> String {
    if walls.is_empty() {
        "-".into()
    } else {
        format!("{:.2} ms", median(walls) * 1e3)
    }
}

fn ratio(r: Option<RatioInterval>) -> String {
    match r {
        Some(r) => match r.interval() {
            Some((low, high)) => format!("{:.3} [{low:.3}, {high:.3}]", r.ratio),
            None => format!("{:.3}", r.ratio),
        },
        None => "-".into(),
    }
}
