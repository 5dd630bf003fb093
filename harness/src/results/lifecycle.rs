//! A lane's lifecycle as evidence: how long getting the harness and its tools ready took
//! (bootstrap, in each lane's identity), what the janitor removed and what a run left
//! (cleanup, in the results), and how long each lane's job waited for a runner (the
//! lifecycle file the scheduled job writes per workflow run, from GitHub's REST API). Pure:
//! types, and the parser of the API's "list jobs for a workflow run" response.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// One timed step of getting a lane ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimedStep {
    /// e.g. `nix run .#bench -- --version`, `user-namespace probe`, `kvm probe`.
    pub name: String,
    pub seconds: f64,
    /// What it found, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl TimedStep {
    pub fn new(name: impl Into<String>, seconds: f64) -> TimedStep {
        TimedStep {
            name: name.into(),
            seconds,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> TimedStep {
        self.detail = Some(detail.into());
        self
    }

    /// Times `step`, named `name`.
    pub fn time<T>(name: &str, step: impl FnOnce() -> T) -> (T, TimedStep) {
        let started = std::time::Instant::now();
        let out = step();
        (out, TimedStep::new(name, started.elapsed().as_secs_f64()))
    }
}

/// How long a lane took to get ready before its first case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Bootstrap {
    /// What the lane's job timed before the harness started (`--bootstrap-time`): e.g.
    /// realising `nix run .#bench`'s closure, the dev shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job: Vec<TimedStep>,
    /// The harness's own start-up checks, in the order they ran: the cache preflight, the
    /// user-namespace probe (Nix's sandbox), the vm lane's image and KVM probe, the gpu
    /// lane's preflight and dev shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<TimedStep>,
}

impl Bootstrap {
    pub fn total_s(&self) -> f64 {
        self.job.iter().chain(&self.checks).map(|s| s.seconds).sum()
    }

    /// This bootstrap with `more`'s steps after its own.
    pub fn then(mut self, more: &Bootstrap) -> Bootstrap {
        self.job.extend(more.job.iter().cloned());
        self.checks.extend(more.checks.iter().cloned());
        self
    }
}

/// What a run cleaned at its start and what it left at its end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cleanup {
    /// What the janitor removed when the run started: scratch folders of runs that died,
    /// their processes and cgroups.
    #[serde(default)]
    pub swept: Vec<SweptRun>,
    /// What was left after the run had stopped everything it started: empty when nothing
    /// was. Absent when the end was never checked (the run was killed, or is still going).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<Vec<Leftover>>,
}

impl Cleanup {
    /// Checked at the end, and nothing was left.
    pub fn clean(&self) -> bool {
        self.left.as_ref().is_some_and(Vec::is_empty)
    }
}

/// One stale scratch folder the janitor cleaned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SweptRun {
    pub folder: String,
    /// The pid of the run that left it (gone).
    pub owner_pid: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes_killed: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups_removed: Vec<String>,
    /// What could not be cleaned, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Something a run left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Leftover {
    pub kind: LeftoverKind,
    /// The folder, the cgroup, or the process (`pid 123: its command line`).
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LeftoverKind {
    /// The run's scratch folder.
    Scratch,
    /// A process still working in the scratch folder.
    Process,
    /// A cache or build server the run started (nginx, a Bazel server).
    Server,
    /// A cgroup the run made.
    Cgroup,
}

impl LeftoverKind {
    pub fn name(self) -> &'static str {
        match self {
            LeftoverKind::Scratch => "scratch folder",
            LeftoverKind::Process => "process",
            LeftoverKind::Server => "server",
            LeftoverKind::Cgroup => "cgroup",
        }
    }
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.what)
    }
}

pub const LIFECYCLE_SCHEMA_VERSION: u32 = 1;

/// The lifecycle file of one workflow run (`flywheel-bench lifecycle`): each job's times
/// and runner, and for the lane jobs their queue wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lifecycle {
    pub schema_version: u32,
    /// Where the jobs came from, e.g. the API URL.
    pub source: String,
    pub jobs: Vec<JobTiming>,
}

impl Lifecycle {
    /// The job that ran `lane` (`bench LANE (RUNNER)`).
    pub fn lane_job(&self, lane: &str) -> Option<&JobTiming> {
        self.jobs.iter().find(|j| j.lane.as_deref() == Some(lane))
    }
}

/// One job of a workflow run, as GitHub reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobTiming {
    pub name: String,
    /// The harness lane a lane job ran (from its name, `bench LANE (RUNNER)`); absent for
    /// other jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    pub run_id: u64,
    #[serde(default)]
    pub run_attempt: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_branch: Option<String>,
    pub head_sha: String,
    /// `queued`, `in_progress`, `completed`, ...
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// RFC 3339: when the job was queued.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// `runs-on` labels.
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
    /// Seconds from queued to started on a runner; absent for a job no runner took
    /// (still queued, skipped, cancelled before it started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_s: Option<f64>,
    /// Seconds from started to completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
}

/// A job of the REST API's `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs` (and
/// `.../attempts/{n}/jobs`) response, the fields used.
#[derive(Deserialize)]
struct ApiJob {
    name: String,
    run_id: u64,
    #[serde(default)]
    run_attempt: Option<u64>,
    #[serde(default)]
    head_branch: Option<String>,
    head_sha: String,
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
    created_at: String,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    completed_at: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    runner_name: Option<String>,
}

#[derive(Deserialize)]
struct ApiJobs {
    total_count: u64,
    jobs: Vec<ApiJob>,
}

/// The lane of a lane job's name, `bench LANE (RUNNER)` as the workflow names them.
pub fn lane_of_job(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("bench ")?;
    let (lane, runner) = rest.split_once(" (")?;
    (runner.ends_with(')') && !lane.is_empty() && !lane.contains(' ')).then_some(lane)
}

fn time(what: &str, job: &str, text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("job `{job}`: {what} `{text}` is not an RFC 3339 time ({e})"))
}

/// The lifecycle of a workflow run from the API's jobs response (`source` says where it
/// came from). `Err` names what is wrong with the response.
pub fn from_github_jobs(json: &str, source: &str) -> Result<Lifecycle, String> {
    let response: ApiJobs = serde_json::from_str(json)
        .map_err(|e| format!("not a GitHub \"list jobs for a workflow run\" response ({e})"))?;
    if response.total_count as usize > response.jobs.len() {
        return Err(format!(
            "the response lists {} of {} jobs: ask for more per page (per_page=100)",
            response.jobs.len(),
            response.total_count
        ));
    }
    let jobs = response
        .jobs
        .into_iter()
        .map(|job| {
            let created = time("created_at", &job.name, &job.created_at)?;
            let parse = |what, value: &Option<String>| {
                value
                    .as_deref()
                    .map(|t| time(what, &job.name, t))
                    .transpose()
            };
            let started = parse("started_at", &job.started_at)?;
            let completed = parse("completed_at", &job.completed_at)?;
            // A job no runner took has a start time but no runner (skipped, cancelled).
            let ran = job.runner_name.is_some() && job.status != "queued";
            let seconds = |from: DateTime<FixedOffset>, to: DateTime<FixedOffset>| {
                (to - from).num_milliseconds() as f64 / 1000.0
            };
            Ok(JobTiming {
                lane: lane_of_job(&job.name).map(str::to_string),
                queue_wait_s: started.filter(|_| ran).map(|s| seconds(created, s)),
                duration_s: started
                    .zip(completed)
                    .filter(|_| ran)
                    .map(|(s, c)| seconds(s, c)),
                name: job.name,
                run_id: job.run_id,
                run_attempt: job.run_attempt.unwrap_or(1),
                head_branch: job.head_branch,
                head_sha: job.head_sha,
                status: job.status,
                conclusion: job.conclusion,
                created_at: job.created_at,
                started_at: job.started_at,
                completed_at: job.completed_at,
                labels: job.labels,
                runner_name: job.runner_name,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Lifecycle {
        schema_version: LIFECYCLE_SCHEMA_VERSION,
        source: source.to_string(),
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Responses written from the REST API's documented schema (see their README).
    fn recorded(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github-api")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn queue_waits_come_from_the_jobs_of_a_workflow_run() {
        let life = from_github_jobs(&recorded("jobs-nightly.json"), "jobs-nightly.json").unwrap();
        let lanes: Vec<(&str, Option<f64>, Option<f64>)> = life
            .jobs
            .iter()
            .filter_map(|j| Some((j.lane.as_deref()?, j.queue_wait_s, j.duration_s)))
            .collect();
        // created 03:17:05; host started 03:17:09, vm 03:41:52 (the KVM class was busy),
        // gpu 03:18:31.
        assert_eq!(
            lanes,
            [
                ("host", Some(4.0), Some(1266.0)),
                ("vm", Some(1487.0), Some(2233.0)),
                ("gpu", Some(86.0), Some(1052.0)),
            ]
        );
        let vm = life.lane_job("vm").unwrap();
        assert_eq!(vm.labels, ["tinyland-nix-kvm"]);
        assert_eq!(vm.runner_name.as_deref(), Some("kvm-runner-2"));
        assert_eq!(vm.head_branch.as_deref(), Some("main"));
        // The judge job is still running when it asks: no end, no lane.
        let judge = life
            .jobs
            .iter()
            .find(|j| j.name == "judge all lanes")
            .unwrap();
        assert_eq!(judge.lane, None);
        assert_eq!(judge.completed_at, None);
        assert!(judge.queue_wait_s.is_some() && judge.duration_s.is_none());
    }

    #[test]
    fn jobs_no_runner_took_have_no_queue_wait() {
        let life = from_github_jobs(&recorded("jobs-gpu-never-ran.json"), "x").unwrap();
        let gpu = life.lane_job("gpu").unwrap();
        assert_eq!(gpu.conclusion.as_deref(), Some("cancelled"));
        assert_eq!((gpu.queue_wait_s, gpu.duration_s), (None, None));
        let queued = life.lane_job("vm").unwrap();
        assert_eq!(queued.status, "queued");
        assert_eq!(queued.queue_wait_s, None);
    }

    #[test]
    fn bad_responses_say_what_is_wrong() {
        assert!(from_github_jobs("{\"message\": \"Bad credentials\"}", "x")
            .unwrap_err()
            .contains("not a GitHub"));
        let partial = "{\"total_count\": 40, \"jobs\": []}";
        assert!(from_github_jobs(partial, "x")
            .unwrap_err()
            .contains("per_page"));
        let bad_time = recorded("jobs-nightly.json").replace("2026-12-06T03:17:05Z", "yesterday");
        assert!(from_github_jobs(&bad_time, "x")
            .unwrap_err()
            .contains("created_at `yesterday`"));
    }

    #[test]
    fn lane_jobs_are_named_as_the_workflow_names_them() {
        assert_eq!(lane_of_job("bench vm (tinyland-nix-kvm)"), Some("vm"));
        assert_eq!(lane_of_job("judge all lanes"), None);
        assert_eq!(lane_of_job("bench (x)"), None);
        assert_eq!(lane_of_job("bench host tinyland-nix"), None);
    }

    #[test]
    fn cleanup_is_clean_only_when_checked_with_nothing_left() {
        assert!(!Cleanup::default().clean());
        let checked = Cleanup {
            swept: Vec::new(),
            left: Some(Vec::new()),
        };
        assert!(checked.clean());
        let left = Cleanup {
            left: Some(vec![Leftover {
                kind: LeftoverKind::Scratch,
                what: "/tmp/flywheel-bench-x".into(),
            }]),
            ..checked
        };
        assert!(!left.clean());
        assert_eq!(
            left.left.unwrap()[0].to_string(),
            "scratch folder /tmp/flywheel-bench-x"
        );
    }
}
