//! The command line: parse, run, print the error once, map it to a documented exit code.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::error::{exit_code, Error, Result};
use crate::plan::args::{CoverageArgs, RunArgs};
use crate::plan::config::{Env, RunConfig};
use crate::results::{self, Results};
use crate::run::process::{self, ProcessExecutor};
use crate::run::progress::Progress;
use crate::run::recorder::Recorder;
use crate::run::session::Session;

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
    Run(Box<RunArgs>),
    /// Show which tools were found, their versions and what can run here.
    Doctor {
        /// Also check what this lane needs here (gpu: the GPU, its device files, the
        /// driver's library, a CUDA toolkit, Nix, nginx, user namespaces, the dev shell).
        #[arg(long, value_enum)]
        lane: Option<crate::plan::Lane>,
    },
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
struct ReportArgs {
    /// Results files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Write the Markdown here instead of standard output.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Also write the HTML report here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    baseline: PathBuf,
    new: PathBuf,
    /// Allowed slowdown: a regression needs the whole 95% interval of new/baseline above 1 + this.
    #[arg(long, default_value_t = crate::report::compare::DEFAULT_THRESHOLD, value_parser = crate::plan::args::parse_non_negative)]
    threshold: f64,
    /// Also write the Markdown here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
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
        Command::Run(args) => run(*args),
        Command::Doctor { lane } => crate::doctor::run(&ProcessExecutor, lane, &Env::capture()),
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
            crate::run::coverage::run(&args, &Env::capture(), std::env::args().collect())
        }
        Command::Guest { job } => process::install_interrupt_handler()
            .and_then(|()| Session::serve_guest_job(&job, &ProcessExecutor))
            .map(|()| exit_code::OK),
        Command::Clean { work_dir } => {
            crate::run::janitor::clean(&work_dir.unwrap_or_else(std::env::temp_dir))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        e.exit_code()
    })
}

fn run(args: RunArgs) -> Result<i32> {
    let env = Env::capture();
    let profile = crate::plan::profile::load_from(args.config.as_deref(), &env.cwd, &args.profile)?;
    let config = RunConfig::resolve(&args, &profile, &env)?;
    crate::checks::check_output_path(&config.output)?;
    process::install_interrupt_handler()?;
    let exec = ProcessExecutor;
    let mut session = Session::open(&config, &exec)?;
    let header = session.start_results(&config, std::env::args().collect(), &exec);
    let mut recorder = Recorder::new(config.output.clone(), header);
    eprintln!(
        "flywheel-bench: {}; results go to {}",
        session.describe_work(),
        recorder.path().display()
    );
    let mut progress = Progress::new();
    let outcome = session.run(&mut [&mut progress, &mut recorder]);
    drop(progress);
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
    Ok(if recorder.results().any_failed() {
        exit_code::CASE_FAILED
    } else {
        exit_code::OK
    })
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
    let files = load_all(&args.files)?;
    emit_text(
        &crate::report::markdown::render(&files),
        args.markdown.as_deref(),
    )?;
    if let Some(html) = &args.html {
        results::writer::write_atomic(html, crate::report::html::render(&files).as_bytes())?;
    }
    Ok(exit_code::OK)
}

fn compare(args: &CompareArgs) -> Result<i32> {
    let baseline = results::load(&args.baseline)?;
    let new = results::load(&args.new)?;
    let comparison =
        crate::report::compare::compare(&baseline, &new, args.threshold).map_err(|why| {
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
    let results = results::load(&args.file)?;
    let entries = crate::report::export::github_action_benchmark(&results);
    let json = serde_json::to_string_pretty(&entries).expect("entries serialise") + "\n";
    emit_text(&json, args.output.as_deref())?;
    Ok(exit_code::OK)
}

fn matrix(args: &MatrixArgs) -> Result<i32> {
    use crate::report::{history, matrix};
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
    let path = args.jobs.display().to_string();
    let text = std::fs::read_to_string(&args.jobs)
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

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
