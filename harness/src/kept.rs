//! Commands on a kept stack: `harness up` starts one and leaves it running,
//! `harness rollback` rolls a kept deployment back on demand, `harness down`
//! removes it. They find the stack through its run directory's state file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::Checks;
use crate::docker::DockerError;
use crate::gate::{self, GateError, Prepared};
use crate::report::{Figures, Report, Verdict};
use crate::rollback;
use crate::scenario::Scenario;
use crate::stack::StackError;
use crate::stack::{BackendKind, Stack, StackOptions};
use crate::state::{RunState, StateError};
use crate::verify::Expected;

/// Why `up`, `rollback` or `down` on a kept stack could not run.
#[derive(Debug, thiserror::Error)]
pub enum KeptError {
    /// The run directory's state file is missing, unreadable or foreign.
    #[error(transparent)]
    State(#[from] StateError),
    /// Docker or compose, in their words.
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(
        "{} holds no backups: nothing was deployed there, so there is nothing to roll back",
        run_dir.display()
    )]
    NoBackups { run_dir: PathBuf },
    /// Starting or attaching the stack.
    #[error(transparent)]
    Running(#[from] StackError),
    /// Preparing the run (mocks, rendered configs, run directory).
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Starts the scenario's start state (e.g. goproxy and nginx on 8005) and
/// keeps it; returns the saved state.
pub async fn up(scenario: &Scenario, root: &Path) -> Result<RunState, KeptError> {
    let Prepared {
        wiremock,
        start,
        candidate,
        run_dir,
        live,
        ..
    } = gate::prepare(
        scenario,
        &gate::GateOptions::from_root(root, BackendKind::Containers, Duration::ZERO),
    )
    .await?;
    let mut opts = StackOptions::from_root(root);
    opts.keep = true;
    if scenario.second_port.is_some() {
        opts.multi_file = Some(root.join("docker-compose.multi.yml"));
    }
    let stack = Stack::start(&opts, live, wiremock, None).await?;
    let _ = run_dir.keep();
    let model = gate::stream_model(&candidate.goproxy_config, &start.goproxy_config)?;
    let state = stack.state(scenario, &model, &[])?;
    state.save()?;
    Ok(state)
}

/// Rolls a kept deployment back: restore its backups, restart goproxy,
/// reload nginx, then the post-deployment checks against the old port.
pub async fn rollback(run_dir: &Path, quiet: bool) -> Result<Report, KeptError> {
    let started = Instant::now();
    let state = RunState::load(run_dir)?;
    let backups = state.backups();
    if backups.is_empty() {
        return Err(KeptError::NoBackups {
            run_dir: run_dir.to_path_buf(),
        });
    }
    let stack = Stack::attach(&state).await?;
    let mut checks = Checks::new(quiet);
    let old = Expected::new(state.start_port, state.change_port, state.second_port);
    let (restored, took) =
        rollback::run(&stack, &mut checks, &backups, &old, &state.stream_model()).await;
    let figures = Figures {
        rollback_duration_ms: Some(took.as_secs_f64() * 1000.0),
        ..Figures::default()
    };
    let (verdict, reason) = if restored {
        (
            Verdict::Go,
            format!(
                "rolled back in {:.1}s: goproxy on {} again, backups restored byte for byte",
                took.as_secs_f64(),
                state.start_port
            ),
        )
    } else {
        (
            Verdict::RollbackFailed,
            "the rollback did not restore service: see the failed checks".into(),
        )
    };
    Ok(Report::new(
        "rollback",
        verdict,
        reason,
        checks.into_results(),
        figures,
        started.elapsed(),
    ))
}

/// Removes a kept stack (containers and network); the run directory with
/// its backups stays for the record.
pub async fn down(run_dir: &Path) -> Result<String, KeptError> {
    let state = RunState::load(run_dir)?;
    let compose = crate::compose::ComposeStack::attach(
        &state.compose_files,
        &state.project,
        state.env.clone(),
    )?;
    compose.down().await?;
    Ok(format!(
        "removed compose project {}; backups and configs stay in {}",
        state.project,
        run_dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_without_backups(dir: &Path) -> RunState {
        RunState {
            run_dir: dir.to_path_buf(),
            compose_files: vec![],
            project: "harness-test".into(),
            env: vec![],
            https_port: 1,
            mock_port: 2,
            wiremock_port: 3,
            api_key: "sk-test".into(),
            cert_pem: String::new(),
            start_port: 8005,
            change_port: 8004,
            second_port: None,
            stream_model_id: "m".into(),
            stream_upstream_ids: vec![],
            backups: vec![],
        }
    }

    /// A directory that is not a run directory is refused before Docker is
    /// asked anything, saying what to pass.
    #[tokio::test]
    async fn rollback_of_a_foreign_directory_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let e = rollback(dir.path(), true).await.unwrap_err();
        assert!(
            matches!(e, KeptError::State(StateError::Read { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("harness up"), "{e}");
    }

    /// A kept stack where nothing was deployed has nothing to roll back.
    #[tokio::test]
    async fn rollback_without_backups_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        state_without_backups(dir.path()).save().unwrap();
        let e = rollback(dir.path(), true).await.unwrap_err();
        assert!(matches!(e, KeptError::NoBackups { .. }), "{e}");
        assert!(e.to_string().contains("nothing to roll back"), "{e}");
    }
}
