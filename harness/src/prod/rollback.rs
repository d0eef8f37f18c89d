//! `harness rollback --run-dir <deploy dir>`: a deploy rolled back on
//! demand, or finished after an interruption, from its state on disk:
//! restore the verified backups, the overlap switch back to the old port,
//! and the old service checked through nginx.

use super::ProdError;
use std::path::Path;
use std::time::{Duration, Instant};

use super::backend::Production;
use super::state::{DeployState, Step};
use crate::check::Checks;
use crate::files::{Backup, LiveFiles};
use crate::live::target::TargetSpec;
use crate::report::{Figures, Report, Verdict};
use crate::stack::{Stack, DEFAULT_STREAM_BOUND};
use crate::verify::Expected;

/// Rolls the deploy in `dir` back; Err is bad input (exit 2).
pub async fn run(dir: &Path, quiet: bool) -> Result<Report, ProdError> {
    let started = Instant::now();
    let mut state = DeployState::load(dir)?;
    let backups = state.backups();
    if backups.is_empty() {
        return Err(ProdError::NoBackups {
            dir: dir.to_path_buf(),
        });
    }
    // Saved unchanged, so that a signal during the rollback says how to
    // run it again.
    state.save()?;
    let stack = attach(&state, dir, &backups, quiet).await?;
    let mut checks = Checks::new(quiet);
    let old = Expected::new(state.old_port, state.new_port, None);
    let (restored, took) = crate::rollback::restore(&stack, &mut checks, &backups, &old).await;
    let _ = state.advance(if restored {
        Step::RolledBack
    } else {
        Step::RollbackFailed
    });
    let (verdict, reason) = outcome(restored, took, state.old_port);
    Ok(Report::new(
        format!("rollback {}", state.project),
        verdict,
        reason,
        checks.into_results(),
        Figures {
            rollback_duration_ms: Some(took.as_secs_f64() * 1000.0),
            ..Figures::default()
        },
        started.elapsed(),
    ))
}

/// The deployed project as a stack the rollback can drive: its containers,
/// reached at the URL the deploy used, its live files where the backups
/// say they are.
async fn attach(
    state: &DeployState,
    dir: &Path,
    backups: &[Backup],
    quiet: bool,
) -> Result<Stack, ProdError> {
    let backend = Production::attach(&state.compose_files, &state.project).await?;
    let target = TargetSpec {
        url: state.url.clone(),
        resolve: state.resolve(),
        ca_cert: state.ca_cert.clone(),
        insecure: state.insecure,
        api_key_env: state.api_key_env.clone(),
        stream_bound: DEFAULT_STREAM_BOUND,
    }
    .connect()?;
    let files = LiveFiles {
        dir: dir.to_path_buf(),
        // pre.backups takes nginx.conf first, then goproxy's config.
        goproxy_config: backups[backups.len() - 1].original.clone(),
        goproxy_b_config: dir.join("unused"),
        nginx_conf: backups[0].original.clone(),
        tls_dir: dir.join("unused"),
    };
    let mut stack = backend.into_stack(files, &target);
    stack.quiet = quiet;
    Ok(stack)
}

/// The verdict and its reason: GO when service came back on the old port.
fn outcome(restored: bool, took: Duration, old_port: u16) -> (Verdict, String) {
    if restored {
        (
            Verdict::Go,
            format!(
                "rolled back in {:.1}s: goproxy on {} again, backups restored byte for byte",
                took.as_secs_f64(),
                old_port
            ),
        )
    } else {
        (
            Verdict::RollbackFailed,
            "the rollback did not restore service: see the failed checks".into(),
        )
    }
}
