//! Commands on a kept stack: `harness up` starts one and leaves it running,
//! `harness rollback` rolls a kept deployment back on demand, `harness down`
//! removes it. They find the stack through its run directory's state file.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::check::Checks;
use crate::gate::{self, Prepared};
use crate::report::{Figures, Report, Verdict};
use crate::rollback;
use crate::scenario::Scenario;
use crate::stack::{BackendKind, Stack, StackOptions};
use crate::state::RunState;
use crate::verify::Expected;

/// Starts the scenario's start state (e.g. goproxy and nginx on 8005) and
/// keeps it; returns the saved state.
pub async fn up(scenario: &Scenario, root: &Path) -> Result<RunState, String> {
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
pub async fn rollback(run_dir: &Path, quiet: bool) -> Result<Report, String> {
    let started = Instant::now();
    let state = RunState::load(run_dir)?;
    let backups = state.backups();
    if backups.is_empty() {
        return Err(format!(
            "{} holds no backups: nothing was deployed there, so there is nothing to roll back",
            run_dir.display()
        ));
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
pub async fn down(run_dir: &Path) -> Result<String, String> {
    let state = RunState::load(run_dir)?;
    let compose = crate::compose::ComposeStack::attach(
        &state.compose_files,
        &state.project,
        state.env.clone(),
    )
    .map_err(|e| e.to_string())?;
    compose.down().await.map_err(|e| e.to_string())?;
    Ok(format!(
        "removed compose project {}; backups and configs stay in {}",
        state.project,
        run_dir.display()
    ))
}
