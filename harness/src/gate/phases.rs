//! The gate's phases after preparation, each a function returning a
//! [`Step`]: lint, the stack up, the pre-deployment checks, the switch
//! under load, the post-deployment checks, and the verdict or rollback.

use std::path::PathBuf;
use std::time::Duration;

use super::{no_go, GateError, GateOptions, Prepared, Step, Stop};
use crate::check::{Checks, Phase};
use crate::deploy::DeployOutcome as Deployed;
use crate::files::{self, LiveFiles, Rendered};
use crate::lint::{self, LintTargets};
use crate::names::Namer;
use crate::poll::{poll_until, Attempt, PollError};
use crate::pre::PreOutcome;
use crate::report::{Figures, Verdict};
use crate::scenario::{Fault, Scenario};
use crate::stack::{Stack, StackError, StackOptions};
use crate::traffic::Target;
use crate::verify::{self, StreamModel};
use crate::{deploy, pre, rollback};

/// lint on the operator's files exactly as written: a no-go stops the run
/// before any container starts (unless forced).
pub(super) async fn lint_operator_files(
    opts: &GateOptions,
    checks: &mut Checks,
    force: bool,
) -> Step<()> {
    lint::run(&opts.targets, checks).await;
    if checks.all_passed() || force {
        return Ok(());
    }
    Err(no_go(
        "lint failed on the files as written: fix the files and lines named above; no container was started",
    ))
}

/// lint on a candidate the scenario derived (a fault scenario's bad file).
pub(super) async fn lint_derived(
    opts: &GateOptions,
    p: &Prepared,
    checks: &mut Checks,
    force: bool,
) -> Step<()> {
    // The dev config is the repository's; compose files as the operator has them.
    let targets = LintTargets {
        prod_config: p.candidate_json.clone(),
        nginx_conf: p.candidate_nginx.clone(),
        ..opts.targets.clone()
    };
    lint::run(&targets, checks).await;
    if checks.all_passed() || force {
        return Ok(());
    }
    Err(no_go(
        "lint failed: the candidate files disagree or do not validate",
    ))
}

/// The report lists what was deployed and every substitution made.
pub(super) fn record_render(p: &Prepared, checks: &mut Checks) {
    let say = |r: &Rendered| {
        let mut s = format!("from {}", r.origin);
        if !r.substitutions.is_empty() {
            s.push_str("; test-stack substitutions: ");
            s.push_str(&r.substitutions.join("; "));
        }
        s
    };
    checks.push(crate::check::CheckResult::pass(
        Phase::Lint,
        "render.candidate",
        say(&p.candidate),
    ));
    checks.push(crate::check::CheckResult::pass(
        Phase::Lint,
        "render.base",
        say(&p.start),
    ));
}

pub(super) async fn start_stack(
    scenario: &Scenario,
    opts: &GateOptions,
    checks: &mut Checks,
    live: LiveFiles,
    wiremock: wiremock::MockServer,
    mock: Option<mock_upstream::MockUpstream>,
) -> Step<Stack> {
    let mut stack_opts = StackOptions::from_root(&opts.root);
    stack_opts.keep = opts.keep;
    stack_opts.backend = opts.backend;
    if scenario.second_port.is_some() {
        stack_opts.multi_file = Some(opts.root.join("docker-compose.multi.yml"));
    }
    let mut slot = None;
    let up = checks
        .run(Phase::PreDeployment, "pre.stack-up", async {
            let s = Stack::start(&stack_opts, live, wiremock, mock).await?;
            let said = format!(
                "{} healthy; nginx on 127.0.0.1:{}",
                s.describe(),
                s.https_port
            );
            slot = Some(s);
            Ok::<_, StackError>(said)
        })
        .await;
    let why = checks
        .results()
        .last()
        .map(|r| r.evidence.clone())
        .unwrap_or_default();
    slot.filter(|_| up)
        .ok_or_else(|| no_go(format!("the test stack did not come up: {why}")))
}

pub(super) async fn inject_port_in_use(
    scenario: &Scenario,
    stack: &Stack,
    checks: &mut Checks,
    candidate: &Rendered,
) -> Step<()> {
    if scenario.fault != Fault::PortInUse {
        return Ok(());
    }
    let occupied = checks
        .run(Phase::PreDeployment, "fault.occupy-new-port", async {
            stack
                .occupy_port(scenario.change.port, &candidate.goproxy_config)
                .await?;
            wait_listening(stack, scenario.change.port).await
        })
        .await;
    if occupied {
        Ok(())
    } else {
        Err(no_go("could not inject the port-in-use fault"))
    }
}

pub(super) async fn pre_deployment(
    scenario: &Scenario,
    stack: &Stack,
    checks: &mut Checks,
    old_ports: &[u16],
    candidate: (&std::path::Path, &std::path::Path),
    namer: &Namer,
) -> Step<PreOutcome> {
    let pre = pre::run(
        stack,
        checks,
        old_ports,
        scenario.change.port,
        candidate,
        namer,
    )
    .await;
    if pre.passed {
        return Ok(pre);
    }
    checks
        .run(Phase::PreDeployment, "nogo.old-service-intact", async {
            for b in &pre.backups {
                files::verify_same(&b.original, &b.copy).map_err(pre::PreError::from)?;
            }
            Ok::<_, pre::PreError>(pre::old_service(stack, old_ports).await?)
        })
        .await;
    Err(no_go("a pre-deployment check failed; nothing was changed"))
}

pub(super) fn save_state(
    scenario: &Scenario,
    stack: &Stack,
    model: &StreamModel,
    pre: &PreOutcome,
) {
    // Either step's error is only printed: a stack that cannot be kept
    // still gave its verdict.
    let saved: Result<PathBuf, Box<dyn std::error::Error>> = stack
        .state(scenario, model, &pre.backups)
        .map_err(Into::into)
        .and_then(|s| Ok(s.save()?));
    match saved {
        Ok(path) => eprintln!(
            "  state saved to {}: `harness rollback --run-dir {dir}` rolls back, \
             `harness down --run-dir {dir}` removes the stack",
            path.display(),
            dir = stack.files.dir.display()
        ),
        Err(e) => eprintln!("  {e}"),
    }
}

pub(super) async fn deploy_under_load(
    scenario: &Scenario,
    stack: &Stack,
    checks: &mut Checks,
    candidate: &Rendered,
    model: &StreamModel,
    figures: &mut Figures,
) -> Deployed {
    let target = Target {
        client: stack.client.clone(),
        base: stack.url(""),
        api_key: stack.api_key.clone(),
        model: model.id.clone(),
    };
    // Streams long enough to be open across the whole switch.
    let _ = stack
        .set_mock(&mock_upstream::MockConfig {
            chunks: scenario.load.stream_chunks as usize,
            chunk_delay: scenario.load.stream_chunk_delay,
            ..Default::default()
        })
        .await;
    let deployed = deploy::run(stack, checks, scenario, candidate, Some(target)).await;
    let _ = stack.set_mock(&mock_upstream::MockConfig::default()).await;
    if let Some(l) = &deployed.load {
        figures.switch_requests = Some(l.requests);
        figures.switch_failed_requests = Some(l.failed_total());
        figures.switch_slow_requests = Some(l.slow);
        figures.switch_longest_gap_ms = Some(l.longest_gap.as_secs_f64() * 1000.0);
        figures.switch_streams_opened = Some(l.streams_opened);
        figures.switch_streams_completed = Some(l.streams_completed);
    }
    figures.switch_duration_ms = Some(deployed.switch_duration.as_secs_f64() * 1000.0);
    deployed
}

/// Failed requests during the switch are a finding, not a reason to skip
/// the post-deployment checks: they say whether the service works now.
pub(super) async fn post_deployment(
    scenario: &Scenario,
    opts: &GateOptions,
    stack: &Stack,
    checks: &mut Checks,
    model: &StreamModel,
    deployed: &Deployed,
) -> Step<bool> {
    if !deployed.switched {
        return Ok(false);
    }
    let switched_at = stack.log_mark();
    inject_after_change(scenario, stack).await;
    let p = Phase::PostDeployment;
    let expected = verify::Expected::new(
        scenario.change.port,
        scenario.start_port,
        scenario.second_port,
    );
    let mut ok = verify::verify(stack, checks, p, "post", &expected, model).await;
    if !ok {
        // Tell an upstream outage apart from a broken deployment:
        // rolling back cannot fix the upstream.
        let reachable = checks
            .run(
                p,
                "post.upstream-reachable",
                verify::upstream_reachable(stack),
            )
            .await;
        if !reachable {
            return Err(no_go(
                "the LLM upstream is down; the deployment itself is not the cause, no rollback",
            ));
        }
    }
    if ok {
        ok = checks
            .run(
                p,
                "post.monitor",
                verify::monitor(stack, opts.monitor, &switched_at),
            )
            .await;
    }
    Ok(ok && deployed.passed)
}

pub(super) async fn inject_after_change(scenario: &Scenario, stack: &Stack) {
    match scenario.fault {
        Fault::UpstreamDown => {
            let _ = stack.stop_upstream().await;
        }
        Fault::UpstreamSlowStream => {
            let _ = stack
                .set_mock(&mock_upstream::MockConfig {
                    chunks: 4,
                    chunk_delay: Duration::from_millis(1500),
                    ..Default::default()
                })
                .await;
        }
        _ => {}
    }
}

/// The verdict when no rollback is due: GO, or NO-GO because automatic
/// rollback is off (`--no-rollback`). `None`: roll back.
pub(super) fn without_rollback(
    scenario: &Scenario,
    auto_rollback: bool,
    after_change_ok: bool,
) -> Option<Step<Stop>> {
    if after_change_ok && !scenario.change.rollback_after {
        return Some(Ok((Verdict::Go, "every check passed".into())));
    }
    if !auto_rollback && !scenario.change.rollback_after {
        return Some(Err(no_go(
            "a check after the change failed; automatic rollback is off: roll back now",
        )));
    }
    None
}

/// Roll back (after a failed check, or on demand) and word its verdict.
pub(super) async fn roll_back(
    scenario: &Scenario,
    stack: &Stack,
    checks: &mut Checks,
    figures: &mut Figures,
    pre: &PreOutcome,
    model: &StreamModel,
    after_change_ok: bool,
) -> Step<Stop> {
    let old = verify::Expected::new(
        scenario.start_port,
        scenario.change.port,
        scenario.second_port,
    );
    let (restored, took) = rollback::run(stack, checks, &pre.backups, &old, model).await;
    figures.rollback_duration_ms = Some(took.as_secs_f64() * 1000.0);
    let secs = took.as_secs_f64();
    Ok(if restored && after_change_ok {
        (Verdict::RolledBack, format!("deployed, then rolled back on demand in {secs:.1}s; the old deployment passed its checks"))
    } else if restored {
        (Verdict::RolledBack, format!("a check after the change failed; rolled back in {secs:.1}s and the old deployment passed its checks"))
    } else {
        (
            Verdict::RollbackFailed,
            "a check after the change failed and the rollback did not restore service".into(),
        )
    })
}

pub(super) async fn wait_listening(stack: &Stack, port: u16) -> Result<String, GateError> {
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let held = stack.listening_where_goproxy_binds().await?.contains(&port);
            Ok(if held {
                Attempt::Ready(())
            } else {
                Attempt::NotYet(())
            })
        },
    )
    .await
    .map_err(|e| match e {
        PollError::Failed(e) => GateError::Stack(e),
        PollError::TimedOut { .. } => GateError::SquatterNeverListened { port },
    })?;
    Ok(format!(
        "port {port} now held {} by another process",
        pre::where_goproxy_binds(stack)
    ))
}
