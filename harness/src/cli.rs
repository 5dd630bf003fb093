//! The command line: parse, run, print the error once, map it to a documented exit code.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::error::{exit_code, Error, Result};
use crate::exec::process::{self, Executor, ProcessExecutor};
use crate::fake_tools::{FakeScript, FakeTools};
use crate::plan::args::{CoverageArgs, RunArgs};
use crate::plan::config::{Env, RunConfig};
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
    /// The runner-lane proof matrix (Markdown) from lanes.toml and results files.
    Matrix(MatrixArgs),
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
struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
    /// For developers: run with fake tools, as FILE scripts them (see the README's
    /// Development section); nothing is built and no Nix, Bazel or nginx is needed.
    #[arg(long, hide = true, value_name = "FILE")]
    fake_tools: Option<PathBuf>,
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
    /// Results files that are the lanes' evidence.
    files: Vec<PathBuf>,
    /// Lane declarations.
    #[arg(long, value_name = "FILE", default_value = "lanes.toml")]
    lanes: PathBuf,
}

/// Entry point: returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(command) => run(*command),
        Command::Doctor { lane } => crate::doctor::run(&ProcessExecutor, lane, &Env::capture()),
        Command::Schema => {
            print!("{}", results::json_schema());
            Ok(exit_code::OK)
        }
        Command::Report(args) => report(&args),
        Command::Compare(args) => compare(&args),
        Command::Export(args) => export(&args),
        Command::Matrix(args) => matrix(&args),
        Command::Coverage(args) => {
            crate::run::coverage::run(&args, &Env::capture(), std::env::args().collect())
        }
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

fn run(command: RunCommand) -> Result<i32> {
    let args = command.args;
    let env = Env::capture();
    let profile = crate::plan::profile::load_from(args.config.as_deref(), &env.cwd, &args.profile)?;
    let config = RunConfig::resolve(&args, &profile, &env)?;
    crate::exec::checks::check_output_path(&config.output)?;
    let fakes = command
        .fake_tools
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
    let header = session.start_results(&config, std::env::args().collect(), exec);
    let mut recorder = Recorder::new(config.output.clone(), header);
    eprintln!(
        "flywheel-bench: {}; results go to {}",
        session.describe_work(),
        recorder.path().display()
    );
    let mut progress = Progress::new();
    let outcome = session.run(&mut [&mut progress, &mut recorder]);
    drop(progress);
    drop(session);
    if let Err(e) = outcome {
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
    let lanes = crate::report::matrix::load_lanes(&args.lanes)?;
    let files = load_all(&args.files)?;
    print!(
        "{}",
        crate::report::matrix::render_markdown(&crate::report::matrix::judge(&lanes, &files))
    );
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
