//! The `harness` command line: parse, dispatch, print, pick the exit code.
//!
//! One file per subcommand: each defines its clap `Args` struct and a
//! `run(args, &Global) -> anyhow::Result<i32>` (the report's exit code, or
//! the error that ended the command, with context naming the operator's
//! file or target). Adding a subcommand is a variant in [`Command`], one
//! dispatch line in [`run`] and a new file. Errors are printed in one place,
//! [`crate::exit::fail`], which also picks their exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::docker::DockerError;
use crate::report::Report;
use crate::stack::BackendKind;

mod check;
mod default_scenario;
mod deploy;
mod gen_cert;
mod kept;
mod lint;
mod scenarios;
mod targets;
mod validate;

pub use check::{CheckArgs, ReachArgs};
pub use deploy::DeployArgs;
pub use gen_cert::GenCertArgs;
pub use kept::{DownArgs, RollbackArgs, UpArgs};
pub use lint::LintArgs;
pub use scenarios::ScenariosAction;
pub use validate::ValidateArgs;

/// The pre-deploy validation gate for moving goproxy between ports.
///
/// Exit codes: 0 go, 1 no-go (nothing changed), 2 bad input or no Docker,
/// 3 no-go after an automatic rollback that restored service, 4 rollback failed,
/// 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM (everything started was removed).
#[derive(Debug, Parser)]
#[command(name = "harness", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Repository root: where proxy/, nginx/ and docker-compose.yml are.
    #[arg(long, global = true, default_value = ".", env = "HARNESS_ROOT")]
    pub root: PathBuf,
    /// No progress lines, only the summary (or the JSON report).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole gate on a scenario: lint, pre-deployment, the switch
    /// under load, post-deployment, monitoring, rollback if needed.
    Validate(ValidateArgs),
    /// Static checks of the deployment files: configs validate, ports agree.
    Lint(LintArgs),
    /// Start the stack in a scenario's starting state and keep it running
    /// (prints its run directory, for `rollback` and `down`).
    Up(UpArgs),
    /// Roll back a kept deployment (from `validate --keep`) on demand:
    /// restore the backups, restart goproxy, reload nginx, re-check.
    Rollback(RollbackArgs),
    /// Remove a kept stack (containers and network).
    Down(DownArgs),
    /// The post-deployment checks against a live deployment: TLS and expiry,
    /// /health, /v1/models, a real completion and stream, a monitoring window;
    /// with --project-name also the Docker host's checks.
    Check(CheckArgs),
    /// Apply candidate files to a running compose project with the
    /// zero-downtime switch, verified backups and automatic rollback.
    Deploy(DeployArgs),
    /// Scenarios in scenarios/.
    Scenarios {
        #[command(subcommand)]
        action: ScenariosAction,
    },
    /// Write a throwaway TLS certificate for chat.trollllm.xyz (fullchain.pem, privkey.pem).
    GenCert(GenCertArgs),
}

/// Runs the command and returns the process exit code; an error that ended
/// it is printed here with its whole chain (see [`crate::exit::fail`]).
pub async fn run(cli: Cli) -> i32 {
    let g = &cli.global;
    let ran = match cli.command {
        Command::Validate(a) => validate::run(a, g).await,
        Command::Lint(a) => lint::run(a, g).await,
        Command::Up(a) => kept::up(a, g).await,
        Command::Rollback(a) => kept::rollback(a, g).await,
        Command::Down(a) => kept::down(a, g).await,
        Command::Check(a) => check::run(a, g).await,
        Command::Deploy(a) => deploy::run(a, g).await,
        Command::Scenarios { action } => scenarios::run(action, g).await,
        Command::GenCert(a) => gen_cert::run(a, g),
    };
    ran.unwrap_or_else(|e| crate::exit::fail(&e))
}

/// How a report is written.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub report: Format,
    /// Also write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

/// What runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Containers wherever Docker answers, local processes otherwise.
    Auto,
    /// Containers from docker-compose.yml + docker-compose.test.yml (needs Docker and Compose).
    Containers,
    /// Host nginx, goproxy and the mock as processes on loopback.
    Local,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// A `--monitor` value that is no window.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Parse(#[from] humantime::DurationError),
    #[error(
        "a monitoring window of 0s watches nothing after the change; give at least 1s \
         (the design asks 15m)"
    )]
    Zero,
}

/// A monitoring window of zero would watch nothing and still say GO.
pub(super) fn monitor_window(s: &str) -> Result<std::time::Duration, MonitorError> {
    let d = humantime::parse_duration(s)?;
    if d.is_zero() {
        return Err(MonitorError::Zero);
    }
    Ok(d)
}

/// Prints the report as asked, writes JUnit if asked, returns its exit code.
pub(crate) fn emit(report: &Report, out: &Output) -> i32 {
    match out.report {
        Format::Text => print!("{}", report.summary()),
        Format::Json => println!("{}", report.to_json()),
    }
    if let Some(path) = &out.junit {
        if let Err(e) = report.write_junit(path) {
            eprintln!("harness: {e}");
        }
    }
    report.exit_code
}

/// `auto` is containers wherever Docker answers and local processes
/// otherwise, said plainly; `containers` without Docker is an error.
async fn resolve_backend(choice: BackendChoice, quiet: bool) -> Result<BackendKind, DockerError> {
    match choice {
        BackendChoice::Local => Ok(BackendKind::Local),
        BackendChoice::Containers => crate::docker::available().map(|_| BackendKind::Containers),
        BackendChoice::Auto => match crate::docker::available() {
            Ok(()) => Ok(BackendKind::Containers),
            Err(why) => {
                if !quiet {
                    eprintln!("harness: {why}\nharness: running the stack as local processes instead (--backend local)");
                }
                Ok(BackendKind::Local)
            }
        },
    }
}
