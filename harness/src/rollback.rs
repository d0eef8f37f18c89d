//! The rollback of the design: restore the backups, restart goproxy, reload
//! nginx; then the post-deployment checks again, against the old port.

use std::time::{Duration, Instant};

use crate::check::{Checks, Phase};
use crate::deploy::wait_healthy;
use crate::files::{self, Backup};
use crate::pre;
use crate::stack::Stack;
use crate::verify::{self, StreamModel};

/// How long the restored service may take to answer through nginx.
const RESTORE_DEADLINE: Duration = Duration::from_secs(60);

/// Rolls back; returns whether the old deployment passed its checks again,
/// and how long it took until it answered through nginx.
pub async fn run(
    stack: &Stack,
    checks: &mut Checks,
    backups: &[Backup],
    old_port: u16,
    new_port: u16,
    model: &StreamModel,
) -> (bool, Duration) {
    let p = Phase::Rollback;
    let started = Instant::now();
    let mut ok = checks
        .run(p, "rollback.restore-backups", async {
            if backups.is_empty() {
                return Err("no backups were taken: nothing to restore".into());
            }
            for b in backups {
                files::restore(b)?;
            }
            Ok(backups
                .iter()
                .map(|b| format!("{} restored byte for byte", b.original.display()))
                .collect::<Vec<_>>()
                .join(", "))
        })
        .await;
    ok &= checks
        .run(p, "rollback.restart-goproxy", async {
            // The design's `restart goproxy`; `up -d` first in case the
            // failed deployment left no goproxy container at all.
            let ids = stack
                .compose
                .container_ids("goproxy")
                .await
                .map_err(|e| e.to_string())?;
            if ids.is_empty() {
                stack
                    .compose
                    .compose(&["up", "-d", "--no-deps", "goproxy"])
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                stack
                    .compose
                    .compose(&["restart", "goproxy"])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let mut said = Vec::new();
            for id in stack
                .compose
                .container_ids("goproxy")
                .await
                .map_err(|e| e.to_string())?
            {
                said.push(wait_healthy(&id, RESTORE_DEADLINE).await?);
            }
            Ok(said.join(", "))
        })
        .await;
    ok &= checks
        .run(p, "rollback.nginx-reload", stack.reload_nginx())
        .await;
    ok &= checks
        .run(p, "rollback.service-restored", async {
            let t0 = Instant::now();
            loop {
                match pre::old_service(stack, old_port).await {
                    Ok(e) => return Ok(e),
                    Err(e) if t0.elapsed() > RESTORE_DEADLINE => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await;
    let took = started.elapsed();
    if ok {
        ok = verify::verify(stack, checks, p, "rollback", old_port, new_port, model).await;
    }
    (ok, took)
}
