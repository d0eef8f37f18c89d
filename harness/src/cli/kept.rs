//! `harness up`, `rollback` and `down`: commands on a kept stack.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{default_scenario, emit, Global, Output};
use crate::exit::Doing;
use crate::kept;

/// Arguments of `harness up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Scenario whose start state to run [default: the 8005 -> 8004 change].
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

/// Arguments of `harness rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run directory printed by `validate --keep` or `up`, or the
    /// deploy directory printed by `deploy`.
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub out: Output,
}

/// Arguments of `harness down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The run directory printed by `validate --keep` or `up`.
    #[arg(long)]
    pub run_dir: PathBuf,
}

pub(super) async fn up(a: UpArgs, g: &Global) -> anyhow::Result<i32> {
    let scenario = default_scenario::load(a.scenario, &g.root, false)?;
    crate::docker::available()?;
    let state = kept::up(&scenario, &g.root).await.with_context(|| {
        Doing::stack(format!(
            "starting the start state of scenario {}",
            scenario.name
        ))
    })?;
    let check = super::check::check_command_for(&state)
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
    Ok(0)
}

/// What a rollback or `down` of `dir` could not do is the operator's to
/// fix (the directory, the state in it, the stack it names): exit 2.
fn on_dir(doing: &str, dir: &std::path::Path) -> Doing {
    Doing::input(format!("{doing} {}", dir.display()))
}

pub(super) async fn rollback(a: RollbackArgs, g: &Global) -> anyhow::Result<i32> {
    // A deploy directory (`harness deploy` on a production project).
    let report = if crate::prod::state::DeployState::is_deploy_dir(&a.run_dir) {
        crate::prod::rollback::run(&a.run_dir, g.quiet)
            .await
            .with_context(|| on_dir("rolling back", &a.run_dir))?
    } else {
        crate::docker::available()?;
        kept::rollback(&a.run_dir, g.quiet)
            .await
            .with_context(|| on_dir("rolling back", &a.run_dir))?
    };
    Ok(emit(&report, &a.out))
}

pub(super) async fn down(a: DownArgs, _g: &Global) -> anyhow::Result<i32> {
    let said = kept::down(&a.run_dir)
        .await
        .with_context(|| on_dir("taking down", &a.run_dir))?;
    println!("{said}");
    Ok(0)
}
