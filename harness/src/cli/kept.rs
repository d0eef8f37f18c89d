//! `harness up`, `rollback` and `down`: commands on a kept stack.

use std::path::PathBuf;

use super::{default_scenario, emit, usage, Global, Output};
use crate::exit;
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

pub(super) async fn up(a: UpArgs, g: &Global) -> i32 {
    let scenario = match default_scenario::load(a.scenario, &g.root, false) {
        Ok(s) => s,
        Err(e) => return exit::fail(&e),
    };
    if let Err(e) = crate::docker::available() {
        return exit::fail(&e);
    }
    match kept::up(&scenario, &g.root).await {
        Ok(state) => {
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
            0
        }
        Err(e) => {
            eprintln!("harness up: {e}");
            1
        }
    }
}

pub(super) async fn rollback(a: RollbackArgs, g: &Global) -> i32 {
    // A deploy directory (`harness deploy` on a production project).
    if crate::prod::state::DeployState::is_deploy_dir(&a.run_dir) {
        return match crate::prod::rollback::run(&a.run_dir, g.quiet).await {
            Ok(report) => emit(&report, &a.out),
            Err(e) => usage(&e.to_string()),
        };
    }
    if let Err(e) = crate::docker::available() {
        return exit::fail(&e);
    }
    match kept::rollback(&a.run_dir, g.quiet).await {
        Ok(report) => emit(&report, &a.out),
        Err(e) => usage(&e.to_string()),
    }
}

pub(super) async fn down(a: DownArgs, _g: &Global) -> i32 {
    match kept::down(&a.run_dir).await {
        Ok(said) => {
            println!("{said}");
            0
        }
        Err(e) => usage(&e.to_string()),
    }
}
