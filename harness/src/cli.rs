//! The command line: parse, run, print the error once, map it to a documented exit code.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::error::{exit_code, Error, Result};
use crate::exec::process::{self, Executor, ProcessExecutor};
use crate::fake_tools::{FakeScript, FakeTools};
use crate::plan::args::{CoverageArgs, RunArgs};
use crate::plan::config::{Env, RunConfig};
use crate::plan::VerdictPolicy;
use crate::results::{self, Results};
use crate::run::progress::Progress;
use crate::run::recorder::Recorder;
use crate::run::session::{MachineTools, Session, Toolbox};

#[derive(Parser)]
#[command(
    name = "flywheel-bench",
    version,
    about = "Measures cold vs warm builds against build caches, with honest statistics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build bench repos cold, warm and no-op, several samples each, and write results JSON.
    Run(Box<RunCommand>),
    /// Show which tools were found, their versions, where the bench repos are and what can
    /// run here.
    Doctor(DoctorArgs),
    /// Print the JSON Schema of the results file.
    Schema,
    /// Markdown (stdout or --markdown) and self-contained HTML (--html) reports of results files.
    Report(ReportArgs),
    /// Compare two results files; exits 1 on a regression, 2 if they cannot be compared.
    Compare(CompareArgs),
    /// The results as "github-action-benchmark" input (customSmallerIsBetter).
    Export(ExportArgs),
    /// The runner-lane proof matrix (Markdown, and HTML with --html) from lanes.toml and a
    /// history of runs.
    Matrix(MatrixArgs),
    /// A lane's baseline for `compare`: its last runs on main in a history, samples pooled.
    Baseline(BaselineArgs),
    /// A workflow run's lifecycle file (each job's queue wait and runner) from GitHub's
    /// "list jobs for a workflow run" response.
    Lifecycle(LifecycleArgs),
    /// How much of each bench repo's Nix closure a cache holds now (nothing is built);
    /// JSON plus Markdown.
    Coverage(Box<CoverageArgs>),
    /// A scale model of a closure: from a coverage file (or a shape file), an offline bench
    /// repo whose Nix derivations have the same graph and NAR sizes, synthetic contents.
    Model(ModelArgs),
    /// Inside a vm lane's guest: runs the job the host wrote (set up by the harness).
    #[command(hide = true)]
    Guest { job: PathBuf },
    /// Remove what runs that died left in the work folder (scratch folders, their processes
    /// such as Bazel servers, their cgroups), and say what was removed.
    Clean {
        /// The folder runs were given with --work-dir (default: the system temp folder).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
    /// For developers: run with fake tools, as FILE scripts them (see the README's
    /// Development section); nothing is built and no Nix, Bazel or nginx is needed.
    #[arg(long, hide = true, value_name = "FILE")]
    fake_tools: Option<PathBuf>,
    #[command(flatten)]
    reports: ReportFiles,
}

#[derive(Args)]
struct ReportFiles {
    /// Also write the Markdown report of the results here (as `report --markdown`).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the HTML report of the results here (as `report --html`).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct DoctorArgs {
    /// Also check what this lane needs here (vm: QEMU, a kernel with its modules, a static
    /// busybox, xz, the guest image; gpu: the GPU, its device files, the driver's library,
    /// a CUDA toolkit, Nix, nginx, user namespaces, the dev shell).
    #[arg(long, value_enum)]
    lane: Option<crate::plan::Lane>,
    /// With --lane vm: boot a test VM under KVM to prove it works (up to 30 s), as a run does.
    #[arg(long)]
    kvm_probe: bool,
    /// Folder of bench repos to check (found as `run` finds it).
    #[arg(long, value_name = "DIR")]
    bench_repos: Option<PathBuf>,
}

#[derive(Args)]
struct ReportArgs {
    /// Results files (written by `run`); each gets its own section, headed by its file name.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the Markdown here instead of standard output.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Markdown for a PR comment or a job summary: the tables without each case's samples,
    /// under 60,000 characters (files that do not fit are named; the HTML has everything).
    #[arg(long)]
    summary: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// The results file to compare against (e.g. the last run on main).
    baseline: PathBuf,
    /// The results file under judgement.
    new: PathBuf,
    /// Allowed change: a regression needs the whole 95% interval of new/baseline beyond
    /// 1 + this (1 - this for a speedup).
    #[arg(long, default_value_t = crate::report::compare::DEFAULT_THRESHOLD, value_parser = crate::plan::args::parse_non_negative)]
    threshold: f64,
    /// Also write the Markdown here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Folder of bench repos whose repo.toml defaults fill the parameters a file did not
    /// record (found as `run` finds it).
    #[arg(long, value_name = "DIR")]
    bench_repos: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// The results file to export.
    file: PathBuf,
    /// Where to write the JSON (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct MatrixArgs {
    /// Results files of one more run, the newest (beside or instead of --history).
    files: Vec<PathBuf>,
    /// Past runs: one folder per run with its results files and lifecycle.json, folder
    /// names in time order (the bench-history branch's runs/).
    #[arg(long, value_name = "DIR")]
    history: Option<PathBuf>,
    /// Lane declarations and how often a proof must repeat.
    #[arg(long, value_name = "FILE", default_value = "lanes.toml")]
    lanes: PathBuf,
    /// Write the Markdown here instead of standard output.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the HTML matrix here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct BaselineArgs {
    /// Past runs, as `matrix --history` takes them.
    #[arg(long, value_name = "DIR")]
    history: PathBuf,
    /// The lane whose baseline it is.
    #[arg(long, value_enum)]
    lane: crate::plan::Lane,
    /// Runs on main to pool, at least 1 [default: lanes.toml's baseline_runs].
    #[arg(long, value_parser = crate::plan::args::parse_count)]
    runs: Option<usize>,
    /// Lane declarations (for baseline_runs).
    #[arg(long, value_name = "FILE", default_value = "lanes.toml")]
    lanes: PathBuf,
    /// The baseline results file; nothing is written when there is no baseline yet.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Args)]
struct ModelArgs {
    /// A coverage file (`flywheel-bench coverage`'s JSON), a shape file, or the output of
    /// `nix path-info --json -r`.
    input: PathBuf,
    /// The folder to write the bench repo into: new, empty, or an earlier model.
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// Of a coverage file with several repos: whose closure.
    #[arg(long, value_name = "NAME")]
    repo: Option<String>,
    /// The model's bench repo name [default: model-<repo>].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Each path's contents are this fraction of the original's, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The share of the generated bytes that is compressible text, in [0, 1] (the rest is
    /// pseudo-random, which no compression shrinks).
    #[arg(long, default_value_t = 0.0)]
    compressible: f64,
    /// Refuse a model whose NARs add up to more than this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = crate::plan::model::DEFAULT_MAX_BYTES >> 20)]
    max_mb: u64,
}

#[derive(Args)]
struct LifecycleArgs {
    /// The API's response (`GET /repos/OWNER/REPO/actions/runs/RUN_ID/jobs`), as JSON.
    jobs: PathBuf,
    /// Where it came from, recorded in the file [default: the file's path].
    #[arg(long, value_name = "TEXT")]
    source: Option<String>,
    /// Where to write the lifecycle file (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(command) => run(*command),
        Command::Doctor(args) => crate::doctor::run(
            &ProcessExecutor,
            &crate::doctor::Request {
                lane: args.lane,
                kvm_probe: args.kvm_probe,
                bench_repos: args.bench_repos,
            },
            &Env::capture(),
        ),
        Command::Schema => {
            print!("{}", results::json_schema());
            Ok(exit_code::OK)
        }
        Command::Report(args) => report(&args),
        Command::Compare(args) => compare(&args),
        Command::Export(args) => export(&args),
        Command::Matrix(args) => matrix(&args),
        Command::Baseline(args) => baseline(&args),
        Command::Lifecycle(args) => lifecycle(&args),
        Command::Coverage(args) => {
            crate::run::coverage::run(&args, &Env::capture(), redacted_args())
        }
        Command::Model(args) => crate::run::model::run(&crate::run::model::Request {
            input: args.input,
            output: args.output,
            repo: args.repo,
            name: args.name,
            scale: args.scale,
            compressible: args.compressible,
            max_mb: args.max_mb,
        }),
        Command::Guest { job } => process::install_interrupt_handler()
            .and_then(|()| Session::serve_guest_job(&job, &ProcessExecutor, &Env::capture()))
            .map(|()| exit_code::OK),
        Command::Clean { work_dir } => {
            crate::exec::janitor::clean(&work_dir.unwrap_or_else(|| Env::capture().temp_dir))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        e.exit_code()
    })
}

fn run(
    RunCommand {
        args,
        reports,
        fake_tools,
    }: RunCommand,
) -> Result<i32> {
    let env = Env::capture();
    let profile = crate::plan::profile::load_from(args.config.as_deref(), &env.cwd, &args.profile)?;
    let config = RunConfig::resolve(&args, &profile, &env)?;
    crate::exec::checks::check_output_paths([
        ("--output", Some(config.output.as_path())),
        ("--markdown", reports.markdown.as_deref()),
        ("--html", reports.html.as_deref()),
    ])?;
    crate::exec::checks::check_work_dir(&config.work_dir)?;
    let fakes = fake_tools
        .as_deref()
        .map(|file| FakeScript::load(file).map(FakeTools::new))
        .transpose()?;
    process::install_interrupt_handler()?;
    // The seam at the binary's edge: the machine's tools, or the fakes.
    let (exec, toolbox): (Box<dyn Executor>, &dyn Toolbox) = match &fakes {
        Some(fakes) => (Box::new(fakes.helper_executor()), fakes),
        None => (Box::new(ProcessExecutor), &MachineTools),
    };
    let exec = &*exec;
    let mut session = Session::open(&config, exec, toolbox)?;
    let header = session.start_results(&config, redacted_args(), exec);
    let mut recorder = Recorder::new(config.output.clone(), header);
    eprintln!(
        "flywheel-bench: {}; results go to {}",
        session.describe_work(),
        recorder.path().display()
    );
    let mut progress = Progress::new();
    let outcome = session.run(&mut [&mut progress, &mut recorder]);
    drop(progress);
    if outcome.is_ok() {
        recorder.record_speed_after(session.probe_speed_after());
    }
    recorder.record_cleanup(session.close());
    if let Err(e) = outcome {
        if let Err(w) = recorder.write() {
            eprintln!("warning: the cleanup record was not written: {w}");
        }
        eprintln!("partial results: {}", recorder.path().display());
        return Err(e);
    }
    recorder.finish()?;
    print!("{}", crate::report::summary::render(recorder.results()));
    println!("results: {}", recorder.path().display());
    let files = [(
        recorder.path().display().to_string(),
        recorder.results().clone(),
    )];
    write_reports(&files, reports.markdown.as_deref(), reports.html.as_deref())?;
    let code = run_exit_code(recorder.results(), config.verdicts);
    let failed: usize = recorder.results().verdicts.iter().map(|v| v.failed()).sum();
    if failed > 0 {
        let verdicts = crate::stats::numbers::count(failed as u64, "verdict");
        match config.verdicts {
            VerdictPolicy::Fail if code == exit_code::VERDICT_FAILED => eprintln!(
                "{verdicts} failed: exit {code} (`--verdicts warn` reports them without failing the run)"
            ),
            VerdictPolicy::Fail => {}
            VerdictPolicy::Warn => eprintln!(
                "warning: {verdicts} failed; the exit code ignores them (`--verdicts warn`)"
            ),
        }
    }
    Ok(code)
}

/// 1 when a case failed; 3 when every case was skipped (nothing could run here: no GPU,
/// no source, no driver); 5 when a verdict failed and `verdicts` says to fail; else 0.
/// A failed case outranks a failed verdict: its verdicts may be missing.
fn run_exit_code(results: &Results, verdicts: VerdictPolicy) -> i32 {
    let skipped = |c: &results::CaseResult| c.outcome == results::Outcome::Skipped;
    if results.any_failed() {
        exit_code::CASE_FAILED
    } else if !results.cases.is_empty() && results.cases.iter().all(skipped) {
        exit_code::ENVIRONMENT
    } else if verdicts == VerdictPolicy::Fail && results.verdicts.iter().any(|v| v.failed() > 0) {
        exit_code::VERDICT_FAILED
    } else {
        exit_code::OK
    }
}

/// The harness's command line as results record it: credentials in URLs removed.
fn redacted_args() -> Vec<String> {
    std::env::args()
        .map(|a| crate::boundary::redact_urls(&a))
        .collect()
}

fn load_all(files: &[PathBuf]) -> Result<Vec<(String, Results)>> {
    files
        .iter()
        .map(|f| Ok((f.display().to_string(), results::load(f)?)))
        .collect()
}

/// Writes a report file atomically, or prints it.
fn emit_text(text: &str, to: Option<&Path>) -> Result<()> {
    match to {
        Some(path) => results::writer::write_atomic(path, text.as_bytes()),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn report(args: &ReportArgs) -> Result<i32> {
    use crate::report::markdown::{self, Detail};
    crate::exec::checks::check_output_paths([
        ("--markdown", args.markdown.as_deref()),
        ("--html", args.html.as_deref()),
    ])?;
    let files = load_all(&args.files)?;
    let detail = if args.summary {
        Detail::Summary
    } else {
        Detail::Full
    };
    emit_text(&markdown::render(&files, detail), args.markdown.as_deref())?;
    if let Some(html) = &args.html {
        results::writer::write_atomic(html, crate::report::html::render(&files).as_bytes())?;
    }
    Ok(exit_code::OK)
}

/// The report files a run was asked for, written atomically.
fn write_reports(
    files: &[(String, Results)],
    markdown: Option<&Path>,
    html: Option<&Path>,
) -> Result<()> {
    use crate::report::markdown::{render, Detail};
    if let Some(path) = markdown {
        results::writer::write_atomic(path, render(files, Detail::Full).as_bytes())?;
        println!("markdown report: {}", path.display());
    }
    if let Some(path) = html {
        results::writer::write_atomic(path, crate::report::html::render(files).as_bytes())?;
        println!("html report: {}", path.display());
    }
    Ok(())
}

/// The parameter defaults of every bench repo the files name, from their repo.toml where
/// it can be found (a repo whose manifest is not found gets none: its cases are compared
/// as recorded).
fn manifest_defaults(
    files: [&Results; 2],
    bench_repos: Option<&Path>,
) -> crate::report::compare::Defaults {
    let (dir, _) = Env::capture().bench_repos(bench_repos);
    let names: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|f| f.cases.iter().map(|c| c.repo.as_str()))
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let manifest = crate::plan::manifest::resolve(name, Some(&dir)).ok()?;
            Some((name.to_string(), manifest.parameters))
        })
        .collect()
}

fn compare(args: &CompareArgs) -> Result<i32> {
    crate::exec::checks::check_output_paths([("--markdown", args.markdown.as_deref())])?;
    let baseline = results::load(&args.baseline)?;
    let new = results::load(&args.new)?;
    let defaults = manifest_defaults([&baseline, &new], args.bench_repos.as_deref());
    let comparison = crate::report::compare::compare(&baseline, &new, args.threshold, &defaults)
        .map_err(|why| {
            Error::Usage(format!(
                "cannot compare {} with {}: {why}",
                args.baseline.display(),
                args.new.display()
            ))
        })?;
    let text = crate::report::compare::render_markdown(&comparison);
    print!("{text}");
    if let Some(path) = &args.markdown {
        results::writer::write_atomic(path, text.as_bytes())?;
    }
    Ok(if comparison.regressed() {
        exit_code::CASE_FAILED
    } else {
        exit_code::OK
    })
}

fn export(args: &ExportArgs) -> Result<i32> {
    crate::exec::checks::check_output_paths([("--output", args.output.as_deref())])?;
    let results = results::load(&args.file)?;
    let entries = crate::report::export::github_action_benchmark(&results);
    let json = serde_json::to_string_pretty(&entries).expect("entries serialise") + "\n";
    emit_text(&json, args.output.as_deref())?;
    Ok(exit_code::OK)
}

fn matrix(args: &MatrixArgs) -> Result<i32> {
    use crate::report::{history, matrix};
    crate::exec::checks::check_output_paths([
        ("--markdown", args.markdown.as_deref()),
        ("--html", args.html.as_deref()),
    ])?;
    let lanes = matrix::load_lanes(&args.lanes)?;
    let mut past = match &args.history {
        Some(dir) => history::load(dir)?,
        None => history::History::default(),
    };
    if !args.files.is_empty() {
        past.runs.push(history::HistoryRun {
            name: "command line".into(),
            results: load_all(&args.files)?,
            ..Default::default()
        });
    }
    let proofs = matrix::judge(&lanes, &past);
    emit_text(
        &matrix::render_markdown(&proofs, &past, lanes.proof),
        args.markdown.as_deref(),
    )?;
    if let Some(html) = &args.html {
        let page = matrix::render_html(&proofs, &past, lanes.proof);
        results::writer::write_atomic(html, page.as_bytes())?;
    }
    Ok(exit_code::OK)
}

fn baseline(args: &BaselineArgs) -> Result<i32> {
    use crate::report::history;
    crate::exec::checks::check_output_path("--output", &args.output)?;
    let runs = match args.runs {
        Some(runs) => runs,
        None => {
            crate::report::matrix::load_lanes(&args.lanes)?
                .proof
                .baseline_runs
        }
    };
    let past = history::load(&args.history)?;
    let lane = args.lane.name();
    match history::baseline(&past, lane, runs) {
        Ok(pool) => {
            let mut json =
                serde_json::to_vec_pretty(&pool.results).expect("results always serialise");
            json.push(b'\n');
            results::writer::write_atomic(&args.output, &json)?;
            println!(
                "baseline of the {lane} lane: {} (runs {})",
                args.output.display(),
                pool.runs.join(", ")
            );
            for why in &pool.skipped {
                println!("left out: {why}");
            }
        }
        Err(why) => println!("{why}; nothing written to {}", args.output.display()),
    }
    Ok(exit_code::OK)
}

fn lifecycle(args: &LifecycleArgs) -> Result<i32> {
    crate::exec::checks::check_output_paths([("--output", args.output.as_deref())])?;
    let path = args.jobs.display().to_string();
    let text = crate::boundary::read_text(&args.jobs, crate::boundary::TEXT_LIMIT)
        .map_err(|e| Error::Usage(format!("{path}: cannot read it: {e}")))?;
    let source = args.source.as_deref().unwrap_or(&path);
    let life = crate::results::lifecycle::from_github_jobs(&text, source).map_err(|why| {
        Error::Usage(format!(
            "{path}: {why}\n  fix: pass the JSON of GET /repos/OWNER/REPO/actions/runs/RUN_ID/jobs?per_page=100"
        ))
    })?;
    let json = serde_json::to_string_pretty(&life).expect("a lifecycle always serialises") + "\n";
    emit_text(&json, args.output.as_deref())?;
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn repo_file(path: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The README and every page of docs/, by name.
    fn pages() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md"))
            .map(|n| format!("docs/{n}"))
            .collect();
        names.sort();
        names.insert(0, "README.md".into());
        names
            .into_iter()
            .map(|n| {
                let text = repo_file(&n);
                (n, text)
            })
            .collect()
    }

    /// The visible subcommands.
    fn subcommands() -> Vec<clap::Command> {
        Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .cloned()
            .collect()
    }

    /// Every long flag a subcommand's `--help` shows, visible aliases included.
    fn help_flags(cmd: &clap::Command) -> BTreeSet<String> {
        long_flags(cmd, false)
    }

    /// `cmd`'s long flags and their aliases; hidden ones too when `hidden`.
    fn long_flags(cmd: &clap::Command, hidden: bool) -> BTreeSet<String> {
        cmd.get_arguments()
            .filter(|a| hidden || !a.is_hide_set())
            .flat_map(|a| {
                a.get_long()
                    .into_iter()
                    .chain(a.get_visible_aliases().into_iter().flatten())
                    .map(|l| format!("--{l}"))
                    .collect::<Vec<_>>()
            })
            .filter(|f| f != "--help")
            .collect()
    }

    /// The harness-style long flags in `text` (`--samples`, `--bench-repos`); other tools'
    /// flags with underscores (`--remote_cache`) are not ours and are skipped.
    fn flags_in(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("--") {
            let before = rest[..at].chars().last();
            let tail = &rest[at + 2..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                .collect();
            let next = tail[name.len()..].chars().next();
            let ours = !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && next != Some('_');
            if ours {
                out.push(format!("--{}", name.trim_end_matches('-')));
            }
            rest = &tail[name.len()..];
        }
        out
    }

    /// The flags docs/commands.md lists for each subcommand: the first cell of every table
    /// row under its `## \`flywheel-bench NAME\`` heading; and each section's text.
    fn documented() -> BTreeMap<String, (BTreeSet<String>, String)> {
        let mut out: BTreeMap<String, (BTreeSet<String>, String)> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in repo_file("docs/commands.md").lines() {
            if let Some(name) = line
                .strip_prefix("## `flywheel-bench ")
                .and_then(|l| l.strip_suffix('`'))
            {
                current = Some(name.to_string());
                out.entry(name.to_string()).or_default();
                continue;
            }
            let Some(name) = &current else { continue };
            let entry = out.get_mut(name).expect("entered above");
            entry.1.push_str(line);
            entry.1.push('\n');
            if let Some(first) = line.strip_prefix("| ").and_then(|l| l.split(" | ").next()) {
                entry.0.extend(flags_in(first));
            }
        }
        out
    }

    #[test]
    fn every_flag_is_documented_and_every_documented_flag_exists() {
        let docs = documented();
        let mut problems = Vec::new();
        for cmd in subcommands() {
            let name = cmd.get_name().to_string();
            let Some((listed, section)) = docs.get(&name) else {
                problems.push(format!("docs/commands.md has no section for `{name}`"));
                continue;
            };
            let help = help_flags(&cmd);
            for missing in help.difference(listed) {
                problems.push(format!(
                    "`{name} {missing}` is in --help but not in docs/commands.md"
                ));
            }
            for gone in listed.difference(&help) {
                problems.push(format!(
                    "docs/commands.md lists `{name} {gone}`, which --help does not have"
                ));
            }
            for arg in cmd.get_positionals() {
                let value = arg
                    .get_value_names()
                    .and_then(|v| v.first().map(ToString::to_string))
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
                if !section.contains(&format!("`{value}")) {
                    problems.push(format!(
                        "docs/commands.md does not describe `{name}`'s {value}"
                    ));
                }
            }
        }
        let names: BTreeSet<String> = subcommands()
            .iter()
            .map(|c| c.get_name().to_string())
            .collect();
        for documented in docs.keys().filter(|d| !names.contains(*d)) {
            problems.push(format!(
                "docs/commands.md documents `{documented}`, which is no subcommand"
            ));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Where the docs show a command line (`flywheel-bench SUB ...`, `nix run .#bench --
    /// SUB ...`, `cargo run -- SUB ...`), every long flag on it belongs to SUB.
    #[test]
    fn every_command_line_in_the_docs_uses_real_flags() {
        let commands: BTreeMap<String, BTreeSet<String>> = subcommands()
            .iter()
            .map(|c| (c.get_name().to_string(), long_flags(c, true)))
            .collect();
        let mut problems = Vec::new();
        let mut seen = 0;
        for (page, text) in pages() {
            for line in text.lines() {
                for prefix in [
                    "flywheel-bench ",
                    ".#bench -- ",
                    "cargo run --release -- ",
                    "cargo run -- ",
                ] {
                    let mut from = 0;
                    while let Some(at) = line[from..].find(prefix) {
                        let start = from + at;
                        from = start + prefix.len();
                        let rest = &line[from..];
                        let sub: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase())
                            .collect();
                        let Some(flags) = commands.get(&sub) else {
                            continue;
                        };
                        // Inside inline code the command ends at the closing backtick.
                        let in_code = line[..start].matches('`').count() % 2 == 1;
                        let end = if in_code {
                            rest.find('`').unwrap_or(rest.len())
                        } else {
                            rest.len()
                        };
                        seen += 1;
                        for flag in flags_in(&rest[sub.len()..end]) {
                            if !flags.contains(&flag) {
                                problems.push(format!("{page}: `{sub} {flag}` in {line:?}"));
                            }
                        }
                    }
                }
            }
        }
        assert!(
            seen > 20,
            "only {seen} command lines found: is the parser right?"
        );
        assert!(
            problems.is_empty(),
            "flags no subcommand has:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn every_argument_has_help_and_at_most_one_default() {
        let mut problems = Vec::new();
        for cmd in subcommands() {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = arg.get_id().as_str();
                if id == "help" {
                    continue;
                }
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                if help.is_empty() {
                    problems.push(format!("{} {id}: no help text", cmd.get_name()));
                }
                if !arg.get_default_values().is_empty() && help.contains("[default") {
                    problems.push(format!(
                        "{} {id}: two defaults (clap prints the one it has)",
                        cmd.get_name()
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn ci_runs_the_readme_test_command() {
        let ci = repo_file(".ci/run");
        let command = ci.lines().last().unwrap().trim();
        assert!(
            repo_file("README.md").contains(&format!("```sh\n{command}\n```")),
            "the README's test command is not .ci/run's: {command}"
        );
    }

    #[test]
    fn the_readme_is_short_and_links_every_docs_page() {
        let readme = repo_file("README.md");
        assert!(
            readme.lines().count() < 250,
            "{} lines",
            readme.lines().count()
        );
        for (page, _) in pages().iter().skip(1) {
            assert!(
                readme.contains(&format!("]({page})")),
                "the README does not link {page}"
            );
        }
        // Relative links between the pages point at files that exist.
        for (page, text) in pages() {
            let base = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(Path::new(&page).parent().unwrap());
            for link in text.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or("");
                let file = target.split('#').next().unwrap_or("");
                if file.is_empty() || file.contains("://") {
                    continue;
                }
                assert!(
                    base.join(file).exists(),
                    "{page} links {target}, which does not exist"
                );
            }
        }
    }

    #[test]
    fn a_run_whose_every_case_was_skipped_exits_3() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/results/nix-fixture.json");
        let mut results = results::load(&path).unwrap();
        let code = |r: &Results| run_exit_code(r, VerdictPolicy::Fail);
        assert_eq!(code(&results), exit_code::OK);
        for case in &mut results.cases {
            case.outcome = results::Outcome::Skipped;
        }
        assert_eq!(code(&results), exit_code::ENVIRONMENT);
        results.cases[0].outcome = results::Outcome::Ok;
        assert_eq!(code(&results), exit_code::OK, "one case ran");
        results.cases[1].outcome = results::Outcome::Failed;
        assert_eq!(code(&results), exit_code::CASE_FAILED);
    }

    #[test]
    fn a_failing_verdict_exits_5_unless_told_to_warn() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/results/nix-fixture.json");
        let mut results = results::load(&path).unwrap();
        assert_eq!(run_exit_code(&results, VerdictPolicy::Fail), exit_code::OK);
        // The same cases, a speedup that cannot pass.
        results.settings.thresholds.min_speedup = 1e9;
        results::derive(&mut results);
        assert!(results.verdicts.iter().any(|v| v.failed() > 0));
        assert_eq!(
            run_exit_code(&results, VerdictPolicy::Fail),
            exit_code::VERDICT_FAILED
        );
        assert_eq!(run_exit_code(&results, VerdictPolicy::Warn), exit_code::OK);
        // A failed case outranks it.
        results.cases[0].outcome = results::Outcome::Failed;
        assert_eq!(
            run_exit_code(&results, VerdictPolicy::Fail),
            exit_code::CASE_FAILED
        );
        let distinct: std::collections::BTreeSet<i32> = [
            exit_code::OK,
            exit_code::CASE_FAILED,
            exit_code::INVALID_INPUT,
            exit_code::ENVIRONMENT,
            exit_code::INTERNAL,
            exit_code::VERDICT_FAILED,
        ]
        .into();
        assert_eq!(distinct.len(), 6);
    }
}
