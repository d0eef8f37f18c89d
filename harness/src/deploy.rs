//! The deployment step under load: write the candidate configs, switch
//! goproxy, reload nginx, and count what a steady client noticed.
//!
//! Three strategies. `restart-then-reload` is the design document's
//! (`up -d --build goproxy`, then `nginx -s reload`): between the old
//! goproxy closing and nginx learning the new port, requests fail (and
//! compose may not restart goproxy at all). `overlap` is ours: start the new
//! goproxy beside the old one, reload nginx (whose `goproxy` name now
//! resolves to both; the old one refuses the new port and nginx passes the
//! request on before sending anything), wait until the previous nginx
//! workers have exited, drain and stop the old goproxy, reload nginx again so
//! only the new address remains. `rolling-restart` restarts two instances
//! one at a time, each taken out of nginx's rotation first.

use std::time::{Duration, Instant};

use crate::check::{Checks, Phase};
use crate::files::{self, FilesError, Rendered};
use crate::scenario::{Scenario, Strategy};
use crate::stack::{Stack, StackError};
use crate::traffic::{self, LoadStats, Target};

/// Why a step of the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot write the candidate configs: {0}")]
    WriteCandidate(#[source] std::io::Error),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Stack(#[from] StackError),
}

/// How long a new goproxy may take to turn healthy.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What the deployment measured.
#[derive(Debug, Default)]
pub struct DeployOutcome {
    /// The switch itself worked: configs written, goproxy switched, nginx
    /// reloaded. The post-deployment checks run only then.
    pub switched: bool,
    /// And the steady client saw no more failures than the scenario allows.
    pub passed: bool,
    pub load: Option<LoadStats>,
    pub switch_duration: Duration,
}

/// Applies the candidate and switches goproxy under load.
pub async fn run(
    stack: &Stack,
    checks: &mut Checks,
    scenario: &Scenario,
    candidate: &Rendered,
    target: Option<Target>,
) -> DeployOutcome {
    let p = Phase::Deployment;
    let mut out = DeployOutcome::default();
    if !apply(stack, checks, candidate).await {
        return out;
    }
    let load = target.map(|t| {
        traffic::start(
            t,
            scenario.load.interval,
            scenario.load.streams,
            scenario.load.slow_threshold,
        )
    });
    let started = Instant::now();
    let switched = match scenario.change.strategy {
        Strategy::Overlap => overlap(stack, checks, p, "deploy", scenario.load.extra_reloads).await,
        Strategy::RestartThenReload => restart_then_reload(stack, checks).await,
        Strategy::RollingRestart => rolling_restart(stack, checks, p, "deploy").await,
    };
    out.switch_duration = started.elapsed();
    // Let the steady client see the settled state before it stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = match load {
        Some(l) => Some(l.stop().await),
        None => None,
    };
    let mut ok = switched;
    if let Some(stats) = &stats {
        let max = scenario.expect.max_failed_requests;
        ok &= judge_load(checks, stats.clone(), max, out.switch_duration).await;
    }
    out.load = stats;
    out.switched = switched;
    out.passed = ok;
    out
}

/// The candidate written over the live files in place.
async fn apply(stack: &Stack, checks: &mut Checks, candidate: &Rendered) -> bool {
    checks
        .run(Phase::Deployment, "deploy.apply-config", async {
            stack
                .files
                .write(candidate)
                .map_err(DeployError::WriteCandidate)?;
            Ok::<_, DeployError>(format!(
                "wrote {} and {} in place",
                stack.files.goproxy_config.display(),
                stack.files.nginx_conf.display()
            ))
        })
        .await
}

/// What the steady client saw during the switch, against the scenario's
/// target of at most `max` failures.
async fn judge_load(checks: &mut Checks, stats: LoadStats, max: u64, took: Duration) -> bool {
    checks
        .run(Phase::Deployment, "deploy.switch-under-load", async move {
            let line = format!(
                "{} failed of {} requests + {} streams ({} slow, longest gap {:.0} ms, \
                 {}/{} streams completed), switch {:.0} ms",
                stats.failed_total(),
                stats.requests,
                stats.streams_opened,
                stats.slow,
                stats.longest_gap.as_secs_f64() * 1000.0,
                stats.streams_completed,
                stats.streams_opened,
                took.as_secs_f64() * 1000.0
            );
            if stats.failed_total() <= max {
                Ok(line)
            } else {
                Err(format!(
                    "{line}; target {max}; first failures: {}",
                    stats.failures.join(" | ")
                ))
            }
        })
        .await
}

/// The overlap switch; its checks are named `<prefix>.<step>` in `phase`,
/// so the rollback reuses it to go back without downtime.
pub(crate) async fn overlap(
    stack: &Stack,
    checks: &mut Checks,
    p: Phase,
    prefix: &str,
    extra_reloads: u32,
) -> bool {
    let Some(old) = start_beside(stack, checks, p, prefix).await else {
        return false;
    };
    let Some(workers) = reload_onto_both(stack, checks, p, prefix, extra_reloads).await else {
        return false;
    };
    retire_old(stack, checks, p, prefix, &old, &workers).await
}

/// A new goproxy started beside the old one(s) and healthy; the old ids.
async fn start_beside(
    stack: &Stack,
    checks: &mut Checks,
    p: Phase,
    prefix: &str,
) -> Option<Vec<String>> {
    let name = format!("{prefix}.start-new-goproxy");
    let old = match stack.goproxy_ids("goproxy").await {
        Ok(ids) => ids,
        Err(e) => {
            checks.push_fail(p, &name, e);
            return None;
        }
    };
    let mut new_id = String::new();
    let started = checks
        .run(p, &name, async {
            new_id = stack.start_goproxy_beside().await?;
            stack.wait_goproxy_healthy(&new_id, START_DEADLINE).await
        })
        .await;
    if !started {
        if !new_id.is_empty() {
            // The old goproxy is still serving; take the failed one away.
            stack.remove_goproxy(&new_id).await;
        }
        return None;
    }
    Some(old)
}

/// nginx reloaded onto both goproxies (and the scenario's extra reloads);
/// the nginx workers from before, which may still hold open streams.
async fn reload_onto_both(
    stack: &Stack,
    checks: &mut Checks,
    p: Phase,
    prefix: &str,
    extra_reloads: u32,
) -> Option<Vec<String>> {
    let n = |step: &str| format!("{prefix}.{step}");
    let workers = stack.nginx_workers().await.unwrap_or_default();
    let mut ok = checks
        .run(p, &n("nginx-reload"), stack.reload_nginx())
        .await;
    for i in 0..extra_reloads {
        ok &= checks
            .run(p, &n(&format!("nginx-reload-extra-{}", i + 1)), async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                stack.reload_nginx().await
            })
            .await;
    }
    ok.then_some(workers)
}

/// Once the previous workers are gone, the old goproxy drained and stopped
/// and nginx reloaded so only the new address remains.
async fn retire_old(
    stack: &Stack,
    checks: &mut Checks,
    p: Phase,
    prefix: &str,
    old: &[String],
    workers: &[String],
) -> bool {
    let n = |step: &str| format!("{prefix}.{step}");
    let mut ok = checks
        .run(
            p,
            &n("old-nginx-workers-done"),
            stack.wait_nginx_workers_gone(workers, stack.stream_bound),
        )
        .await;
    ok &= checks
        .run(p, &n("drain-old-goproxy"), async {
            let t0 = Instant::now();
            for id in old {
                stack.stop_goproxy(id).await?;
            }
            Ok::<_, StackError>(format!(
                "old goproxy drained and stopped in {:.0} ms",
                t0.elapsed().as_secs_f64() * 1000.0
            ))
        })
        .await;
    let workers = stack.nginx_workers().await.unwrap_or_default();
    ok &= checks
        .run(p, &n("nginx-reload-final"), stack.reload_nginx())
        .await;
    ok & checks
        .run(
            p,
            &n("final-nginx-workers-done"),
            stack.wait_nginx_workers_gone(&workers, stack.stream_bound),
        )
        .await
}

async fn restart_then_reload(stack: &Stack, checks: &mut Checks) -> bool {
    let p = Phase::Deployment;
    let ok = checks
        .run(p, "deploy.restart-goproxy", async {
            let id = stack.design_restart_goproxy().await?;
            stack.wait_goproxy_healthy(&id, START_DEADLINE).await
        })
        .await;
    ok & checks
        .run(p, "deploy.nginx-reload", stack.reload_nginx())
        .await
}

/// Restarts each goproxy instance in turn while the other serves. First
/// the instance is taken out of nginx's rotation (`server ... down`, reload,
/// the previous workers waited for), so no nginx worker holds a keep-alive
/// connection to it when it drains: restarting it under nginx gave 1 failed
/// of 473 requests (a POST sent on a connection goproxy was closing; nginx
/// never retries a sent POST). Then restart, healthy, back into rotation.
/// Its checks are named `<prefix>.<step>` in `phase`, so `harness deploy`
/// and the rollbacks of a two-instance project reuse it.
pub(crate) async fn rolling_restart(
    stack: &Stack,
    checks: &mut Checks,
    p: Phase,
    prefix: &str,
) -> bool {
    let live = &stack.files.nginx_conf;
    let conf = match std::fs::read_to_string(live) {
        Ok(c) => c,
        Err(e) => {
            checks.push_fail(
                p,
                &format!("{prefix}.read-nginx-conf"),
                format!("cannot read {}: {e}", live.display()),
            );
            return false;
        }
    };
    for service in MULTI_SERVICES {
        let out_of_rotation = checks
            .run(p, &format!("{prefix}.{service}-out-of-rotation"), async {
                write_nginx(stack, &files::mark_down(&conf, service)).await
            })
            .await;
        let restarted = out_of_rotation
            && checks
                .run(p, &format!("{prefix}.restart-{service}"), async {
                    let id = stack.restart_instance(service).await?;
                    stack.wait_goproxy_healthy(&id, START_DEADLINE).await
                })
                .await;
        // Back into rotation even when the restart failed: the config must
        // not be left with an instance marked down.
        let back = checks
            .run(
                p,
                &format!("{prefix}.{service}-back-in-rotation"),
                write_nginx(stack, &conf),
            )
            .await;
        if !(restarted && back) {
            return false;
        }
    }
    true
}

/// Writes the live nginx.conf, reloads, and waits for the previous workers.
async fn write_nginx(stack: &Stack, conf: &str) -> Result<String, DeployError> {
    std::fs::write(&stack.files.nginx_conf, conf).map_err(|source| FilesError::Io {
        action: "write",
        path: stack.files.nginx_conf.clone(),
        source,
    })?;
    let workers = stack.nginx_workers().await?;
    stack.reload_nginx().await?;
    Ok(stack
        .wait_nginx_workers_gone(&workers, stack.stream_bound)
        .await?)
}

/// The goproxy services of a multi-instance stack, restarted in this order.
pub const MULTI_SERVICES: [&str; 2] = ["goproxy", "goproxy-b"];
