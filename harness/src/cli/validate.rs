//! `harness validate`: the whole gate on one scenario, on the operator's
//! files as written, against what is deployed now.

use std::path::PathBuf;
use std::time::Duration;

use super::targets::{TargetArgs, UNUSABLE};
use anyhow::Context as _;

use super::{default_scenario, emit, resolve_backend, BackendChoice, Global, Output};
use crate::exit::Usage;
use crate::gate::{self, GateOptions};
use crate::render::BaseSource;

/// Arguments of `harness validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Scenario file [default: scenarios/port-change-8005-to-8004.toml under --root,
    /// else the same scenario built into harness].
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    #[command(flatten)]
    pub files: TargetArgs,
    /// What is deployed now: the same files at this git ref (a tag, the
    /// pull request's base commit), read from the repository containing --root.
    #[arg(long, conflicts_with = "base_dir")]
    pub base: Option<String>,
    /// What is deployed now: the same relative paths under this directory.
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// Deploy even when lint says no-go (to watch a bad change fail).
    #[arg(long)]
    pub force: bool,
    /// Monitoring window after the change (the design asks 15m in production).
    #[arg(long, default_value = "30s", value_parser = super::monitor_window)]
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

pub(super) async fn run(a: ValidateArgs, g: &Global) -> anyhow::Result<i32> {
    let scenario = default_scenario::load(a.scenario, &g.root, g.quiet)?;
    let targets = a.files.targets(&g.root).context(UNUSABLE)?;
    let base = match (a.base, a.base_dir) {
        (Some(rev), _) => BaseSource::GitRef {
            rev,
            root: g.root.clone(),
        },
        (None, Some(dir)) if !dir.is_dir() => {
            let why = format!("--base-dir {}: not a directory", dir.display());
            return Err(Usage(why).into());
        }
        (None, Some(dir)) => BaseSource::Dir {
            dir,
            root: g.root.clone(),
        },
        (None, None) => BaseSource::Simulated,
    };
    base.check()?;
    let backend = resolve_backend(a.backend, g.quiet)
        .await
        .context("--backend containers")?;
    let opts = GateOptions {
        targets,
        base,
        force: a.force,
        monitor: a.monitor,
        keep: a.keep || std::env::var("HARNESS_KEEP").is_ok_and(|v| v == "1"),
        auto_rollback: !a.no_rollback,
        quiet: g.quiet,
        ..GateOptions::from_root(&g.root, backend, a.monitor)
    };
    if !g.quiet {
        eprintln!(
            "harness validate: {} ({})",
            scenario.name,
            scenario.description.trim()
        );
    }
    let report = gate::validate(&scenario, &opts).await;
    Ok(emit(&report, &a.out))
}
