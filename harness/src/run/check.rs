//! A bench repo's `[check]`: after each build, its command runs on the built output on
//! disk (outside the build and any cache, timed apart from it), so a substituted or
//! already-valid output is exercised too; a failing check fails the build's sample.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result, StepError};
use crate::exec::process::{CommandSpec, Executor, ProcessOutcome};
use crate::plan::manifest::CheckSpec;
use crate::results::CheckResult;
use crate::tools::{BuildDriver, CaseContext, PreparedBuild};

/// The first output's path on disk (a Nix output inside the build's chroot store, Bazel's
/// bazel-bin).
pub const OUTPUT_ENV: &str = "FLYWHEEL_OUTPUT";
/// Every output path, `:`-separated.
pub const OUTPUTS_ENV: &str = "FLYWHEEL_OUTPUTS";
/// The bench repo's source folder (read it, never write it).
pub const SOURCE_ENV: &str = "FLYWHEEL_SOURCE";

/// What a check keeps of its output.
const TAIL_LINES: usize = 20;
const TAIL_CHARS: usize = 2000;

/// Runs the case's check on a finished build's output, when the repo has one and the build
/// succeeded. A check that cannot start, or whose output the driver cannot find, fails;
/// only what stops the run (an interruption, a folder that cannot be made) is an error.
pub fn after_build(
    ctx: &CaseContext,
    driver: &mut dyn BuildDriver,
    build: &PreparedBuild,
    outcome: &ProcessOutcome,
    exec: &dyn Executor,
    dir: &Path,
) -> Result<Option<CheckResult>> {
    let Some(spec) = ctx.repo.check.as_ref().filter(|_| outcome.success()) else {
        return Ok(None);
    };
    let result = match driver.output_paths(build, exec) {
        Ok(outputs) => run_check(spec, &outputs, ctx.source, exec, &dir.join("check"))?,
        Err(StepError::Case(why)) => not_run(format!("the build's output was not found: {why}")),
        Err(StepError::Run(e)) => return Err(e),
    };
    Ok(Some(result))
}

/// Runs `spec` with `outputs` named in its environment, in a fresh folder `dir`.
pub fn run_check(
    spec: &CheckSpec,
    outputs: &[PathBuf],
    source: &Path,
    exec: &dyn Executor,
    dir: &Path,
) -> Result<CheckResult> {
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let command = command_of(spec, outputs, source, dir);
    match exec.run(&command) {
        Ok(outcome) => Ok(finished(&outcome, &command)),
        Err(e @ Error::Interrupted { .. }) => Err(e),
        Err(e) => Ok(not_run(format!("`{}` did not run: {e}", display(spec)))),
    }
}

/// Why a check failed, as the case's reason shows it; `None` when it passed.
pub fn failure(check: &CheckResult, spec: &CheckSpec) -> Option<String> {
    if check.passed {
        return None;
    }
    let how = match (check.exit_code, check.signal, check.timed_out) {
        (_, _, true) => format!("timed out after {:.0} s", check.wall_s),
        (Some(code), _, _) => format!("exit code {code}"),
        (None, Some(signal), _) => format!("killed by signal {signal}"),
        (None, None, false) => "did not run".into(),
    };
    let output = if check.output_tail.is_empty() {
        "it printed nothing".to_string()
    } else {
        check.output_tail.clone()
    };
    Some(format!(
        "the check `{}` failed ({how}): {output}",
        display(spec)
    ))
}

fn command_of(spec: &CheckSpec, outputs: &[PathBuf], source: &Path, dir: &Path) -> CommandSpec {
    let (program, args) = spec
        .command
        .split_first()
        .expect("a manifest's check has a program");
    // `./check.sh` is the repo's own script; a bare name is looked up on PATH.
    let program = if program.contains('/') && Path::new(program).is_relative() {
        source.join(program)
    } else {
        PathBuf::from(program)
    };
    let joined = std::env::join_paths(outputs).unwrap_or_default();
    let env: Vec<(String, OsString)> = vec![
        (
            OUTPUT_ENV.into(),
            outputs.first().cloned().unwrap_or_default().into(),
        ),
        (OUTPUTS_ENV.into(), joined),
        (SOURCE_ENV.into(), source.into()),
    ];
    let mut command = CommandSpec::new(
        program,
        args.iter().map(OsString::from).collect(),
        spec.timeout,
    )
    .env(env)
    .cwd(dir);
    command.stdout = dir.join("stdout.log");
    command.stderr = dir.join("stderr.log");
    command
}

fn finished(outcome: &ProcessOutcome, command: &CommandSpec) -> CheckResult {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let printed = format!("{}\n{}", read(&command.stdout), read(&command.stderr));
    let (exit_code, signal, timed_out) = crate::run::build::exit_parts(outcome);
    CheckResult {
        passed: outcome.success(),
        wall_s: outcome.wall.as_secs_f64(),
        exit_code,
        signal,
        timed_out,
        output_tail: tail(&printed),
    }
}

fn not_run(why: String) -> CheckResult {
    CheckResult {
        output_tail: tail(&why),
        ..CheckResult::default()
    }
}

fn display(spec: &CheckSpec) -> String {
    spec.command
        .iter()
        .map(|w| crate::exec::process::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last non-empty lines of `text`, at most `TAIL_CHARS` characters of them.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let kept = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    let skip = kept.chars().count().saturating_sub(TAIL_CHARS);
    kept.chars().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::process::{Exit, ProcessExecutor};
    use std::time::Duration;

    fn spec(command: &[&str]) -> CheckSpec {
        CheckSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn the_check_sees_the_output_and_the_source() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir_all(out.join("bin")).unwrap();
        std::fs::write(out.join("bin/app"), "echo ok 42\n").unwrap();
        let check = spec(&[
            "sh",
            "-c",
            "sh \"$FLYWHEEL_OUTPUT/bin/app\"; echo \"$FLYWHEEL_OUTPUTS\" \"$FLYWHEEL_SOURCE\"; pwd",
        ]);
        let dir = tmp.path().join("check");
        let result = run_check(
            &check,
            &[out.clone(), tmp.path().join("second")],
            Path::new("/src"),
            &ProcessExecutor,
            &dir,
        )
        .unwrap();
        assert!(result.passed && result.exit_code == Some(0), "{result:?}");
        let lines: Vec<&str> = result.output_tail.lines().collect();
        assert_eq!(lines[0], "ok 42");
        assert_eq!(
            lines[1],
            format!(
                "{}:{} /src",
                out.display(),
                tmp.path().join("second").display()
            )
        );
        assert_eq!(
            lines[2],
            dir.display().to_string(),
            "runs in its own folder"
        );
        assert_eq!(failure(&result, &check), None);
    }

    #[test]
    fn a_failing_check_says_how_and_what_it_printed() {
        let tmp = tempfile::tempdir().unwrap();
        let check = spec(&[
            "sh",
            "-c",
            "echo progress; echo 'no CUDA device usable' >&2; exit 2",
        ]);
        let result = run_check(&check, &[], tmp.path(), &ProcessExecutor, tmp.path()).unwrap();
        assert!(!result.passed);
        assert_eq!(result.exit_code, Some(2));
        assert_eq!(result.output_tail, "progress\nno CUDA device usable");
        let text = failure(&result, &check).unwrap();
        assert_eq!(
            text,
            "the check `sh -c 'echo progress; echo '\\''no CUDA device usable'\\'' >&2; exit 2'` failed (exit code 2): progress\nno CUDA device usable"
        );
    }

    #[test]
    fn a_check_that_cannot_start_or_hangs_fails_without_stopping_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = spec(&["flywheel-bench-no-such-check"]);
        let result = run_check(&missing, &[], tmp.path(), &ProcessExecutor, tmp.path()).unwrap();
        assert!(!result.passed && result.exit_code.is_none());
        assert!(
            failure(&result, &missing)
                .unwrap()
                .contains("(did not run): `flywheel-bench-no-such-check` did not run"),
            "{result:?}"
        );
        let mut slow = spec(&["sleep", "30"]);
        slow.timeout = Duration::from_millis(300);
        let result = run_check(&slow, &[], tmp.path(), &ProcessExecutor, tmp.path()).unwrap();
        assert!(result.timed_out && !result.passed, "{result:?}");
        assert!(failure(&result, &slow).unwrap().contains("timed out"));
    }

    /// A plan of one repo whose check is the fake tool's `check` command.
    fn checked_plan(scenarios: &[crate::plan::Scenario]) -> crate::plan::Plan {
        let mut plan = crate::testing::plan(
            scenarios,
            crate::plan::Settings {
                warmups: 1,
                samples: 2,
                ..Default::default()
            },
        );
        plan.repos[0].check = Some(spec(&[crate::testing::FAKE_TOOL, "check"]));
        plan
    }

    fn schedule(plan: &crate::plan::Plan, exec: &dyn Executor) -> Vec<crate::results::CaseResult> {
        let driver = crate::testing::FakeDriver::new(Some("http://127.0.0.1:9/nix"));
        crate::testing::schedule(plan, exec, driver, None).0
    }

    #[test]
    fn every_build_of_every_scenario_is_checked_on_its_output() {
        use crate::plan::Scenario;
        let exec = crate::testing::FakeExecutor::new(|_| Exit::Code(0));
        let plan = checked_plan(&[Scenario::Cold, Scenario::Warm, Scenario::Noop]);
        let results = schedule(&plan, &exec);
        for case in &results {
            assert_eq!(case.outcome, crate::results::Outcome::Ok, "{case:?}");
            for sample in case.warmups.iter().chain(&case.samples) {
                assert!(
                    sample.check.as_ref().is_some_and(|c| c.passed),
                    "{sample:?}"
                );
            }
        }
        let checks = exec.builds().iter().filter(|a| a[0] == "check").count();
        assert_eq!(
            checks,
            3 * 3,
            "one check per warm-up and sample; none for priming"
        );
    }

    #[test]
    fn a_failing_check_fails_the_case_with_what_it_printed() {
        let exec = crate::testing::FakeExecutor::new(|args| match args[0].as_str() {
            "check" => Exit::Code(3),
            _ => Exit::Code(0),
        });
        let results = schedule(&checked_plan(&[crate::plan::Scenario::Warm]), &exec);
        let case = &results[0];
        assert_eq!(case.outcome, crate::results::Outcome::Failed);
        assert_eq!(
            case.reason.as_deref(),
            Some("warm-up 1 failed: the check `fake-build check` failed (exit code 3): it printed nothing")
        );
        let warmup = &case.warmups[0];
        assert_eq!(warmup.exit_code, Some(0), "the build itself worked");
        assert_eq!(warmup.check.as_ref().unwrap().exit_code, Some(3));
    }

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let kept = tail(&text);
        assert!(kept.starts_with("line 11\nline 12") && kept.ends_with("line 30"));
        assert_eq!(tail(&"x".repeat(5000)).len(), TAIL_CHARS);
    }
}
