//! The `harness` command line: parse, dispatch, print, pick the exit code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use crate::check::Checks;
use crate::gate::{self, GateOptions};
use crate::lint::{self, LintTargets};
use crate::report::{Figures, Report, Verdict, EXIT_USAGE};
use crate::scenario::{self, Scenario};
use crate::stack::BackendKind;
use crate::{expect, kept, tls};

/// The pre-deploy validation gate for moving goproxy between ports.
///
/// Exit codes: 0 go, 1 no-go (nothing changed), 2 bad input or no Docker,
/// 3 no-go after an automatic rollback that restored service, 4 rollback failed.
#[derive(Debug, Parser)]
#[command(name = "harness", version, about, long_about)]
pub struct Cli {
    /// Repository root: where proxy/, nginx/ and docker-compose.test.yml are.
    #[arg(long, global = true, default_value = ".", env = "HARNESS_ROOT")]
    pub root: PathBuf,
    /// No progress lines, only the summary (or the JSON report).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole gate on a scenario: lint, pre-deployment, the switch
    /// under load, post-deployment, monitoring, rollback if needed.
    Validate {
        /// Scenario file [default: scenarios/port-change-8005-to-8004.toml].
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Monitoring window after the change (the design asks 15m in production).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        monitor: Duration,
        /// Keep containers and the run directory afterwards (also HARNESS_KEEP=1).
        #[arg(long)]
        keep: bool,
        /// Do not roll back automatically when a check after the change fails.
        #[arg(long)]
        no_rollback: bool,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
        #[command(flatten)]
        out: Output,
    },
    /// Static checks of the deployment files: configs validate, ports agree.
    Lint {
        /// goproxy production config [default: proxy/config-ohmygpt-prod.json].
        #[arg(long)]
        goproxy_config: Option<PathBuf>,
        /// goproxy dev config, which must agree on the port.
        #[arg(long)]
        dev_config: Option<PathBuf>,
        /// nginx config [default: nginx/nginx.conf].
        #[arg(long)]
        nginx_conf: Option<PathBuf>,
        /// Compose files to scan for goproxy ports.
        #[arg(long)]
        compose: Vec<PathBuf>,
        #[command(flatten)]
        out: Output,
    },
    /// Start the stack in a scenario's starting state and keep it running
    /// (prints its run directory, for `rollback` and `down`).
    Up {
        /// Scenario whose start state to run [default: the 8005 -> 8004 change].
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Roll back a kept deployment (from `validate --keep`) on demand:
    /// restore the backups, restart goproxy, reload nginx, re-check.
    Rollback {
        /// The run directory printed by `validate --keep` or `up`.
        #[arg(long)]
        run_dir: PathBuf,
        #[command(flatten)]
        out: Output,
    },
    /// Remove a kept stack (containers and network).
    Down {
        /// The run directory printed by `validate --keep` or `up`.
        #[arg(long)]
        run_dir: PathBuf,
    },
    /// The post-deployment checks against a live deployment: TLS and expiry,
    /// /health, /v1/models, a real completion and stream, a monitoring window;
    /// with --project-name also the Docker host's checks.
    Check(crate::live::cli::CheckArgs),
    /// Apply candidate files to a running compose project with the
    /// zero-downtime switch, verified backups and automatic rollback.
    Deploy(crate::prod::cli::DeployArgs),
    /// Scenarios in scenarios/.
    Scenarios {
        #[command(subcommand)]
        action: ScenariosAction,
    },
    /// Write a throwaway TLS certificate for chat.trollllm.xyz (fullchain.pem, privkey.pem).
    GenCert {
        #[arg(long, default_value = "stack/tls")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScenariosAction {
    /// Run every scenario (or those whose name contains --only), one line each.
    Run {
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
        #[arg(long)]
        only: Option<String>,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        monitor: Duration,
        /// JUnit XML with one suite per scenario.
        #[arg(long)]
        junit: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },
    /// List the scenarios and check that every file is valid.
    List {
        #[arg(long, default_value = "scenarios")]
        dir: PathBuf,
    },
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
    /// Containers from docker-compose.test.yml (needs Docker and Compose).
    Containers,
    /// Host nginx, goproxy and the mock as processes on loopback.
    Local,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Runs the command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let root = cli.root.clone();
    match cli.command {
        Command::Validate {
            scenario,
            monitor,
            keep,
            no_rollback,
            backend,
            out,
        } => {
            let path = scenario.unwrap_or_else(|| default_scenario(&root));
            let scenario = match Scenario::load(&path) {
                Ok(s) => s,
                Err(e) => return usage(&e.to_string()),
            };
            let backend = match resolve_backend(backend, cli.quiet).await {
                Ok(b) => b,
                Err(e) => return usage(&e),
            };
            let opts = GateOptions {
                backend,
                root,
                monitor,
                keep: keep || std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "1"),
                auto_rollback: !no_rollback,
                quiet: cli.quiet,
            };
            if !cli.quiet {
                eprintln!(
                    "harness validate: {} ({})",
                    scenario.name,
                    scenario.description.trim()
                );
            }
            let report = gate::validate(&scenario, &opts).await;
            emit(&report, &out)
        }
        Command::Lint {
            goproxy_config,
            dev_config,
            nginx_conf,
            compose,
            out,
        } => {
            let mut t = LintTargets::from_root(&root);
            if let Some(p) = goproxy_config {
                t.prod_config = p;
            }
            if dev_config.is_some() {
                t.dev_config = dev_config;
            }
            if let Some(p) = nginx_conf {
                t.nginx_conf = p;
            }
            if !compose.is_empty() {
                t.compose_files = compose;
            }
            let started = Instant::now();
            let mut checks = Checks::new(cli.quiet);
            lint::run(&t, &mut checks).await;
            let (verdict, reason) = if checks.all_passed() {
                (Verdict::Go, "the files agree and validate".to_string())
            } else {
                (
                    Verdict::NoGo,
                    "lint failed: fix the files named above".to_string(),
                )
            };
            let report = Report::new(
                "lint",
                verdict,
                reason,
                checks.into_results(),
                Figures::default(),
                started.elapsed(),
            );
            emit(&report, &out)
        }
        Command::Up { scenario } => {
            let path = scenario.unwrap_or_else(|| default_scenario(&root));
            let scenario = match Scenario::load(&path) {
                Ok(s) => s,
                Err(e) => return usage(&e.to_string()),
            };
            if let Err(e) = docker_available().await {
                return usage(&e);
            }
            match kept::up(&scenario, &root).await {
                Ok(state) => {
                    let check = crate::live::cli::check_command_for(&state)
                        .unwrap_or_else(|e| format!("(no check command: {e})"));
                    println!(
                        "stack {project} healthy, goproxy on {goport}\n\
                         try:       curl --cacert {dir}/tls/fullchain.pem --resolve chat.trollllm.xyz:{port}:127.0.0.1 https://chat.trollllm.xyz:{port}/health\n\
                         roll back: harness rollback --run-dir {dir}\n\
                         remove:    harness down --run-dir {dir}\n\
                         check the stack as deployed (the key is read from the run directory, never printed):\n\
                         {check}",
                        project = state.project,
                        goport = state.start_port,
                        port = state.https_port,
                        dir = state.run_dir.display()
                    );
                    0
                }
                Err(e) => {
                    eprintln!("harness up: {e}");
                    1
                }
            }
        }
        Command::Check(a) => crate::live::cli::run(a, &root, cli.quiet).await,
        Command::Deploy(a) => crate::prod::cli::run(a, &root, cli.quiet).await,
        Command::Rollback { run_dir, out }
            if crate::prod::state::DeployState::is_deploy_dir(&run_dir) =>
        {
            match crate::prod::rollback::run(&run_dir, cli.quiet).await {
                Ok(report) => emit(&report, &out),
                Err(e) => usage(&e),
            }
        }
        Command::Rollback { run_dir, out } => {
            if let Err(e) = docker_available().await {
                return usage(&e);
            }
            match kept::rollback(&run_dir, cli.quiet).await {
                Ok(report) => emit(&report, &out),
                Err(e) => usage(&e),
            }
        }
        Command::Down { run_dir } => match kept::down(&run_dir).await {
            Ok(said) => {
                println!("{said}");
                0
            }
            Err(e) => usage(&e),
        },
        Command::Scenarios { action } => match action {
            ScenariosAction::List { dir } => list_scenarios(&root.join(dir)),
            ScenariosAction::Run {
                dir,
                only,
                monitor,
                junit,
                backend,
            } => {
                let backend = match resolve_backend(backend, cli.quiet).await {
                    Ok(b) => b,
                    Err(e) => return usage(&e),
                };
                let opts = GateOptions {
                    root: root.clone(),
                    monitor,
                    keep: false,
                    auto_rollback: true,
                    quiet: true,
                    backend,
                };
                run_scenarios(
                    &root.join(dir),
                    only.as_deref(),
                    junit.as_deref(),
                    cli.quiet,
                    &opts,
                )
                .await
            }
        },
        Command::GenCert { out } => {
            let out = if out.is_absolute() {
                out
            } else {
                root.join(out)
            };
            let written = std::fs::create_dir_all(&out)
                .map_err(|e| e.to_string())
                .and_then(|_| tls::generate(crate::stack::HOSTNAME).map_err(|e| e.to_string()))
                .and_then(|c| tls::write_tls_dir(&out, &c).map_err(|e| e.to_string()));
            match written {
                Ok(()) => {
                    println!(
                        "wrote {}/fullchain.pem and privkey.pem for {}",
                        out.display(),
                        crate::stack::HOSTNAME
                    );
                    0
                }
                Err(e) => usage(&format!(
                    "cannot write a certificate to {}: {e}",
                    out.display()
                )),
            }
        }
    }
}

/// ", switch 0/220 failed, gap 28 ms, rollback 3.9 s" for a scenario line.
fn figures_line(f: &crate::report::Figures) -> String {
    let mut out = String::new();
    if let (Some(sent), Some(failed)) = (f.switch_requests, f.switch_failed_requests) {
        out.push_str(&format!(
            ", switch {failed}/{sent} failed, gap {:.0} ms, {:.1} s",
            f.switch_longest_gap_ms.unwrap_or(0.0),
            f.switch_duration_ms.unwrap_or(0.0) / 1000.0
        ));
    }
    if let Some(ms) = f.rollback_duration_ms {
        out.push_str(&format!(", rollback {:.1} s", ms / 1000.0));
    }
    out
}

fn default_scenario(root: &Path) -> PathBuf {
    root.join("scenarios/port-change-8005-to-8004.toml")
}

fn emit(report: &Report, out: &Output) -> i32 {
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

fn usage(msg: &str) -> i32 {
    eprintln!("harness: {msg}");
    EXIT_USAGE
}

/// `auto` is containers wherever Docker answers and local processes
/// otherwise, said plainly; `containers` without Docker is an error.
async fn resolve_backend(choice: BackendChoice, quiet: bool) -> Result<BackendKind, String> {
    match choice {
        BackendChoice::Local => Ok(BackendKind::Local),
        BackendChoice::Containers => docker_available().await.map(|_| BackendKind::Containers),
        BackendChoice::Auto => match docker_available().await {
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

/// Docker must answer before a gate that needs containers starts.
async fn docker_available() -> Result<(), String> {
    match crate::docker::docker(&["version", "--format", "{{.Server.Version}}"]).await {
        Ok(out) if out.code == 0 => Ok(()),
        Ok(out) => Err(format!(
            "Docker is not available (the daemon did not answer: {}). Start Docker, or use \
             `harness lint` for the static checks.",
            out.stderr.trim()
        )),
        Err(e) => Err(format!(
            "Docker is not available: {e}. Install Docker, or use `harness lint`."
        )),
    }
}

fn list_scenarios(dir: &Path) -> i32 {
    let files = match scenario::list(dir) {
        Ok(f) => f,
        Err(e) => return usage(&format!("cannot list scenarios in {}: {e}", dir.display())),
    };
    let mut bad = 0;
    for f in &files {
        match Scenario::load(f) {
            Ok(s) => println!(
                "{:<32} expect {:<10} {}",
                s.name,
                s.expect.verdict.label(),
                s.description.trim()
            ),
            Err(e) => {
                bad += 1;
                println!("INVALID {e}");
            }
        }
    }
    if bad > 0 {
        EXIT_USAGE
    } else {
        0
    }
}

async fn run_scenarios(
    dir: &Path,
    only: Option<&str>,
    junit: Option<&Path>,
    quiet: bool,
    opts: &GateOptions,
) -> i32 {
    let files = match scenario::list(dir) {
        Ok(f) => f,
        Err(e) => return usage(&format!("cannot list scenarios in {}: {e}", dir.display())),
    };
    let mut scenarios = Vec::new();
    for f in &files {
        match Scenario::load(f) {
            Ok(s) if only.is_none_or(|o| s.name.contains(o)) => scenarios.push(s),
            Ok(_) => {}
            Err(e) => return usage(&e.to_string()),
        }
    }
    let mut failed = 0;
    let mut suites = quick_junit::Report::new("scenarios");
    let (scenarios, skipped): (Vec<_>, Vec<_>) = scenarios
        .into_iter()
        .partition(|s| s.backends.contains(&opts.backend));
    for s in &skipped {
        println!("SKIP {:<32} runs only on {:?}", s.name, s.backends);
    }
    for (i, s) in scenarios.iter().enumerate() {
        if !quiet {
            eprintln!("[{}/{}] {} ...", i + 1, scenarios.len(), s.name);
        }
        let report = gate::validate(s, opts).await;
        let verdict = expect::matches(s, &report);
        let figures = figures_line(&report.figures);
        let line = match &verdict {
            Ok(why) => format!(
                "PASS {:<32} {why} ({:.1}s{figures})",
                s.name,
                report.wall_time.as_secs_f64()
            ),
            Err(why) => {
                failed += 1;
                format!(
                    "FAIL {:<32} {why} ({:.1}s{figures})",
                    s.name,
                    report.wall_time.as_secs_f64()
                )
            }
        };
        println!("{line}");
        if verdict.is_err() && !quiet {
            print!("{}", report.summary());
        }
        if junit.is_some() {
            let mut suite = quick_junit::TestSuite::new(s.name.clone());
            let status = match &verdict {
                Ok(_) => quick_junit::TestCaseStatus::success(),
                Err(why) => {
                    let mut st = quick_junit::TestCaseStatus::non_success(
                        quick_junit::NonSuccessKind::Failure,
                    );
                    st.set_message(why.clone());
                    st.set_description(report.summary());
                    st
                }
            };
            let mut case = quick_junit::TestCase::new("expected-outcome", status);
            case.set_time(report.wall_time);
            suite.add_test_case(case);
            suites.add_test_suite(suite);
        }
    }
    println!(
        "{} passed, {} failed, {} skipped",
        scenarios.len() - failed,
        failed,
        skipped.len()
    );
    if let Some(path) = junit {
        if let Err(e) = suites
            .to_string()
            .map_err(|e| e.to_string())
            .and_then(|x| std::fs::write(path, x).map_err(|e| e.to_string()))
        {
            eprintln!("harness: cannot write {}: {e}", path.display());
        }
    }
    if failed == 0 {
        0
    } else {
        1
    }
}
