//! Command line: flags, subcommands and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::server::BindError;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, LogFormat};

/// Exit code: clean exit (including after a drain).
pub const EXIT_OK: u8 = 0;
/// Exit code: runtime failure (or failed healthcheck).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code: the config file is invalid.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code: the configured port is already in use.
pub const EXIT_PORT_IN_USE: u8 = 3;

/// goproxy: an LLM reverse proxy (OpenAI and Anthropic routes, SSE).
#[derive(Debug, Parser)]
#[command(
    name = "goproxy",
    version,
    after_help = "Exit codes:\n  0  ok (also after a graceful drain on SIGTERM/SIGINT)\n  1  runtime failure; `healthcheck`: not healthy\n  2  invalid config (also `--check-config` failure)\n  3  the configured port is already in use\n\nEnvironment:\n  CONFIG_PATH          config file (like --config)\n  PROXY_API_KEY        client key (default of client_api_keys_env)\n  GOPROXY_LOG_FORMAT   text | json\n  RUST_LOG             log filter (default info)"
)]
pub struct Cli {
    /// Config file to serve with.
    #[arg(
        long,
        env = "CONFIG_PATH",
        default_value = "config.json",
        global = true
    )]
    pub config: PathBuf,
    /// Validate this config file, print a summary line and exit (0 ok, 2 invalid).
    #[arg(long, value_name = "PATH")]
    pub check_config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "GOPROXY_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Subcommand; none means serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// GET `http://127.0.0.1:<port>/health`; exit 0 on 200, 1 otherwise.
    Healthcheck {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3.0)]
        timeout_secs: f64,
    },
}

/// Run the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = &cli.check_config {
        return check_config(path);
    }
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config invalid: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if let Some(Command::Healthcheck { timeout_secs }) = cli.command {
        return healthcheck(&rt, &config, timeout_secs);
    }
    telemetry::init(cli.log_format);
    rt.block_on(crate::log_batch::batched(serve(config)))
}

/// `--check-config`: the summary and warnings, or why the file is refused.
fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            println!("{}", c.summary());
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            // The file is valid; what goproxy would meet where this runs
            // (same environment, same machine) is reported, not refused.
            for p in crate::auth::Secrets::env_problems(&c) {
                eprintln!("warning: environment: {p}");
            }
            // What goproxy raises its soft limit to: the hard limit.
            let hard = rlimit::Resource::NOFILE.get_hard().ok();
            if let Some(p) = hard.and_then(|h| crate::fd_limit::shortfall(h, c.max_connections)) {
                eprintln!("warning: environment: {p}");
            }
            if let Some(p) = bind_problem(c.host(), c.port()) {
                eprintln!("warning: environment: {p}");
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("config invalid: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Why goproxy could not listen on `host:port` on this machine now: the
/// address is not this machine's, the port is held (perhaps by goproxy
/// itself, serving this config: then that is expected), or it needs
/// privileges. Opened and closed at once; nothing is served.
fn bind_problem(host: std::net::IpAddr, port: u16) -> Option<String> {
    use crate::config::error::io_words as words;
    use std::io::ErrorKind;
    if let Err(e) = std::net::TcpListener::bind((host, 0)) {
        return Some(format!(
            "host {host} cannot be bound on this machine ({}); goproxy fails to start wherever that is so",
            words(&e)
        ));
    }
    let e = std::net::TcpListener::bind((host, port)).err()?;
    Some(match e.kind() {
        ErrorKind::AddrInUse => format!(
            "port {port} on {host} is in use now: goproxy cannot start here while something \
             holds it (if that is goproxy serving this config, this is expected)"
        ),
        ErrorKind::PermissionDenied => format!(
            "port {port} needs privileges here (below 1024: root or CAP_NET_BIND_SERVICE); \
             goproxy cannot start as this user"
        ),
        _ => format!(
            "port {port} on {host} cannot be opened here ({})",
            words(&e)
        ),
    })
}

/// `healthcheck`: ask the running goproxy's `/health` (the image's
/// HEALTHCHECK, which has no curl).
fn healthcheck(rt: &tokio::runtime::Runtime, config: &Config, timeout_secs: f64) -> ExitCode {
    let timeout = Duration::from_secs_f64(timeout_secs.clamp(0.1, 60.0));
    match rt.block_on(crate::healthcheck::check(config, timeout)) {
        Ok(()) => {
            println!("healthy");
            ExitCode::from(EXIT_OK)
        }
        Err(reason) => {
            println!("unhealthy: {reason}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Bind the configured port and serve until SIGTERM/SIGINT and the drain.
async fn serve(config: Config) -> ExitCode {
    let listener = match crate::server::bind(&config).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            return ExitCode::from(match e {
                BindError::InUse { .. } => EXIT_PORT_IN_USE,
                BindError::Other { .. } => EXIT_RUNTIME,
            });
        }
    };
    let shutdown = Shutdown::new();
    tokio::spawn(shutdown.clone().on_signals());
    match crate::run(listener, config, shutdown, cpus()).await {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The main thread's runtime: current-thread, as is each further event
/// loop [`crate::workers`] starts (one per CPU goproxy may use).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::log_batch::flush)
        .build()
}

/// The CPUs goproxy may use (its affinity mask and cgroup CPU quota).
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
