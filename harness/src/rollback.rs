//! The rollback of the design: restore the backups, restart goproxy, reload
//! nginx; then the post-deployment checks again, against the old port.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::check::{Checks, Phase};
use crate::deploy;
use crate::files::{self, Backup, FilesError};
use crate::poll::{poll_until, Attempt, PollError};
use crate::pre;
use crate::stack::{Stack, StackError};
use crate::verify::{self, Expected, StreamModel};

/// Why a rollback step failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no backups were taken: nothing to restore")]
    NoBackups,
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Stack(#[from] StackError),
}

/// How long the restored service may take to answer through nginx.
const RESTORE_DEADLINE: Duration = Duration::from_secs(60);

/// Brings goproxy back on the restored config without downtime: the same
/// overlap switch as the deployment (a goproxy on the restored config
/// beside the current one, nginx reloaded, old workers waited for, the
/// current goproxy drained). The design's `restart goproxy` instead left
/// nginx without a goproxy for 5 s (measured: `rollback.service-restored`
/// took 5.1 s). Containers that exited (a goproxy that failed at start) are
/// removed first; with no goproxy running at all, it is simply started.
async fn restart_goproxy(stack: &Stack, checks: &mut Checks, restored: &Expected) -> bool {
    let p = Phase::Rollback;
    stack.remove_exited_goproxy().await;
    if runs_two_instances(stack).await {
        // Two instances behind one upstream: each takes the restored
        // config in turn while the other serves (the overlap switch would
        // scale `goproxy` only and leave goproxy-b on the candidate).
        return deploy::rolling_restart(stack, checks, p, "rollback").await;
    }
    let running = stack.goproxy_ids("goproxy").await.unwrap_or_default();
    if let (true, Some((_, port))) = (stack.shared_namespace(), restored.instances.first()) {
        // Local processes share one network namespace: a goproxy already on
        // the restored port is the old one (a failed start never replaced
        // it), serving the restored config. A second one beside it could
        // not bind; keep it and retire the others.
        for id in &running {
            if stack
                .listening_ports(id)
                .await
                .unwrap_or_default()
                .contains(port)
            {
                return retire_others(stack, checks, id, &running).await;
            }
        }
    }
    if !running.is_empty() {
        return deploy::overlap(stack, checks, p, "rollback", 0).await;
    }
    let started = checks
        .run(p, "rollback.start-goproxy", async {
            let id = stack.start_single_goproxy().await?;
            stack.wait_goproxy_healthy(&id, RESTORE_DEADLINE).await
        })
        .await;
    started
        && checks
            .run(p, "rollback.nginx-reload", stack.reload_nginx())
            .await
}

/// Whether the stack runs the second instance `goproxy-b` beside `goproxy`.
pub(crate) async fn runs_two_instances(stack: &Stack) -> bool {
    stack
        .goproxy_ids(deploy::MULTI_SERVICES[1])
        .await
        .is_ok_and(|ids| !ids.is_empty())
}

/// Keeps goproxy `keep`, points nginx back at it and drains the others.
async fn retire_others(stack: &Stack, checks: &mut Checks, keep: &str, running: &[String]) -> bool {
    let p = Phase::Rollback;
    let workers = stack.nginx_workers().await.unwrap_or_default();
    checks
        .run(p, "rollback.keep-goproxy-on-port", async {
            stack.reload_nginx().await?;
            stack
                .wait_nginx_workers_gone(&workers, RESTORE_DEADLINE)
                .await?;
            for id in running.iter().filter(|id| *id != keep) {
                stack.stop_goproxy(id).await?;
            }
            Ok::<_, StackError>(format!(
                "{keep} already serves the restored port; nginx reloaded, others drained"
            ))
        })
        .await
}

/// Rolls back; returns whether the old deployment passed its checks again,
/// and how long it took until it answered through nginx.
pub async fn run(
    stack: &Stack,
    checks: &mut Checks,
    backups: &[Backup],
    restored: &Expected,
    model: &StreamModel,
) -> (bool, Duration) {
    let (mut ok, took) = restore(stack, checks, backups, restored).await;
    if ok {
        ok = verify::verify(stack, checks, Phase::Rollback, "rollback", restored, model).await;
    }
    (ok, took)
}

/// Restores the backups and switches goproxy back (the overlap switch back)
/// until the old service answers through nginx; returns whether it did and
/// how long it took. The checks of the restored service are the caller's
/// (the test stack's mocks, or a production project's live checks).
pub async fn restore(
    stack: &Stack,
    checks: &mut Checks,
    backups: &[Backup],
    restored: &Expected,
) -> (bool, Duration) {
    let p = Phase::Rollback;
    let started = Instant::now();
    let mut ok = checks
        .run(p, "rollback.restore-backups", async {
            if backups.is_empty() {
                return Err(RollbackError::NoBackups);
            }
            for b in backups {
                files::restore(b).map_err(RollbackError::from)?;
            }
            Ok(backups
                .iter()
                .map(|b| format!("{} restored byte for byte", b.original.display()))
                .collect::<Vec<_>>()
                .join(", "))
        })
        .await;
    ok &= restart_goproxy(stack, checks, restored).await;
    ok &= checks
        .run(p, "rollback.service-restored", async {
            let every = Duration::from_millis(100);
            poll_until(RESTORE_DEADLINE, every, || async {
                Ok::<_, Infallible>(match pre::old_service(stack, &restored.ports()).await {
                    Ok(e) => Attempt::Ready(e),
                    Err(e) => Attempt::NotYet(e),
                })
            })
            .await
            .map_err(|e| match e {
                PollError::Failed(never) => match never {},
                PollError::TimedOut { last, .. } => last,
            })
        })
        .await;
    (ok, started.elapsed())
}
