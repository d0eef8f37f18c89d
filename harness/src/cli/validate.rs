//! `harness validate`: the whole gate on one scenario.

use std::path::PathBuf;
use std::time::Duration;

use super::{default_scenario, emit, resolve_backend, usage, BackendChoice, Global, Output};
use crate::gate::{self, GateOptions};
use crate::scenario::Scenario;

/// Arguments of `harness validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Scenario file [default: scenarios/port-change-8005-to-8004.toml].
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Monitoring window after the change (the design asks 15m in production).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub monitor: Duration,
    /// Keep containers and the run directory afterwards (also HARNESS_KEEP=1).
    #[arg(long)]
    pub keep: bool,
    /// Do not roll back automatically when a check after the change fails.
    #[arg(long)]
    pub no_rollback: bool,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub out: Output,
}

pub(super) async fn run(a: ValidateArgs, g: &Global) -> i32 {
    let path = a.scenario.unwrap_or_else(|| default_scenario(&g.root));
    let scenario = match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => return crate::exit::fail(&e),
    };
    let backend = match resolve_backend(a.backend, g.quiet).await {
        Ok(b) => b,
        Err(e) => return usage(&e),
    };
    let opts = GateOptions {
        backend,
        root: g.root.clone(),
        monitor: a.monitor,
        keep: a.keep || std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "1"),
        auto_rollback: !a.no_rollback,
        quiet: g.quiet,
    };
    if !g.quiet {
        eprintln!(
            "harness validate: {} ({})",
            scenario.name,
            scenario.description.trim()
        );
    }
    let report = gate::validate(&scenario, &opts).await;
    emit(&report, &a.out)
}
