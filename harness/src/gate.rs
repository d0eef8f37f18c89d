//! The gate: one scenario from lint to verdict, in the runbook's order.
//!
//! lint -> start the old deployment -> pre-deployment -> deployment under
//! load -> post-deployment -> monitoring window, with an automatic rollback
//! when anything after the change fails. Each step is a check in the
//! report; the verdict and its exit code come from [`crate::report`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::check::{Checks, Phase};
use crate::files::{self, LiveFiles, MockEndpoints, Rendered, Sources};
use crate::lint::{self, LintTargets};
use crate::poll::{poll_until, Attempt, PollError};
use crate::report::{Figures, Report, Verdict};
use crate::scenario::{Fault, Scenario};
use crate::stack::{self, BackendKind, Stack, StackOptions, MOCK_PORT};
use crate::traffic::Target;
use crate::verify::{self, StreamModel};
use crate::{deploy, pre, rollback};

/// How a validate run is set up.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The repository root (configs, nginx, compose file).
    pub root: PathBuf,
    /// The monitoring window after the change (the design's 15 minutes).
    pub monitor: Duration,
    /// Keep containers and the run directory for debugging.
    pub keep: bool,
    /// Roll back automatically when a check after the change fails.
    pub auto_rollback: bool,
    /// No per-check progress lines.
    pub quiet: bool,
    /// Containers (default) or local processes.
    pub backend: BackendKind,
}

/// Runs a scenario end to end and returns its report.
pub async fn validate(scenario: &Scenario, opts: &GateOptions) -> Report {
    let started = Instant::now();
    let mut checks = Checks::new(opts.quiet);
    let mut figures = Figures::default();
    let (verdict, reason) = run(scenario, opts, &mut checks, &mut figures).await;
    Report::new(
        scenario.name.clone(),
        verdict,
        reason,
        checks.into_results(),
        figures,
        started.elapsed(),
    )
}

async fn run(
    scenario: &Scenario,
    opts: &GateOptions,
    checks: &mut Checks,
    figures: &mut Figures,
) -> (Verdict, String) {
    let no_go = |why: String| (Verdict::NoGo, why);
    if !scenario.backends.contains(&opts.backend) {
        return no_go(format!(
            "scenario {} runs only on {:?}, not on the {:?} backend",
            scenario.name, scenario.backends, opts.backend
        ));
    }
    let Prepared {
        wiremock,
        start,
        candidate,
        run_dir,
        live,
        candidate_json: cand_json,
        candidate_nginx: cand_nginx,
        mock,
    } = match prepare(scenario, &opts.root, opts.backend).await {
        Ok(p) => p,
        Err(e) => return no_go(e),
    };

    // Lint the candidate as it will be deployed, before any container; the
    // dev config is the repository's.
    let targets = LintTargets {
        prod_config: cand_json.clone(),
        nginx_conf: cand_nginx.clone(),
        ..LintTargets::from_root(&opts.root)
    };
    lint::run(&targets, checks).await;
    if !checks.all_passed() && !scenario.change.force {
        return no_go("lint failed: the candidate files disagree or do not validate".into());
    }

    let mut stack_opts = StackOptions::from_root(&opts.root);
    stack_opts.keep = opts.keep;
    stack_opts.backend = opts.backend;
    if scenario.second_port.is_some() {
        stack_opts.multi_file = Some(opts.root.join("docker-compose.multi.yml"));
    }
    let mut stack_slot = None;
    let up = checks
        .run(Phase::PreDeployment, "pre.stack-up", async {
            let s = Stack::start(&stack_opts, live, wiremock, mock).await?;
            let said = format!(
                "{} healthy; nginx on 127.0.0.1:{}",
                s.describe(),
                s.https_port
            );
            stack_slot = Some(s);
            Ok(said)
        })
        .await;
    let Some(stack) = stack_slot.filter(|_| up) else {
        return no_go("the test stack did not come up".into());
    };
    if opts.keep {
        eprintln!(
            "  keeping run directory {} and {}",
            run_dir.path().display(),
            stack.describe()
        );
        let _ = run_dir.keep();
    }
    let model = match stream_model(&candidate.goproxy_config, &start.goproxy_config) {
        Ok(m) => m,
        Err(e) => return no_go(e),
    };

    if scenario.fault == Fault::PortInUse {
        let occupied = checks
            .run(Phase::PreDeployment, "fault.occupy-new-port", async {
                stack
                    .occupy_port(scenario.change.port, &candidate.goproxy_config)
                    .await?;
                wait_listening(&stack, scenario.change.port).await
            })
            .await;
        if !occupied {
            return no_go("could not inject the port-in-use fault".into());
        }
    }

    let old_ports: Vec<u16> = std::iter::once(scenario.start_port)
        .chain(scenario.second_port)
        .collect();
    let pre = pre::run(
        &stack,
        checks,
        &old_ports,
        scenario.change.port,
        (&cand_json, &cand_nginx),
    )
    .await;
    if !pre.passed {
        checks
            .run(Phase::PreDeployment, "nogo.old-service-intact", async {
                for b in &pre.backups {
                    files::verify_same(&b.original, &b.copy)?;
                }
                pre::old_service(&stack, &old_ports).await
            })
            .await;
        return no_go("a pre-deployment check failed; nothing was changed".into());
    }

    if opts.keep {
        match stack
            .state(scenario, &model, &pre.backups)
            .and_then(|s| s.save().map_err(String::from))
        {
            Ok(path) => eprintln!(
                "  state saved to {}: `harness rollback --run-dir {dir}` rolls back, \
                 `harness down --run-dir {dir}` removes the stack",
                path.display(),
                dir = stack.files.dir.display()
            ),
            Err(e) => eprintln!("  {e}"),
        }
    }
    let target = Target {
        client: stack.client.clone(),
        base: stack.url(""),
        api_key: stack.api_key.clone(),
        model: model.id.clone(),
    };
    // Streams long enough to be open across the whole switch.
    let _ = stack
        .set_mock(&mock_upstream::MockConfig {
            chunks: 30,
            chunk_delay: Duration::from_millis(100),
            ..Default::default()
        })
        .await;
    let deployed = deploy::run(&stack, checks, scenario, &candidate, Some(target)).await;
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
    let switched_at = stack.log_mark();

    // Failed requests during the switch are a finding, not a reason to skip
    // the post-deployment checks: they say whether the service works now.
    let after_change_ok = if deployed.switched {
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
        let p = Phase::PostDeployment;
        let expected = verify::Expected::new(
            scenario.change.port,
            scenario.start_port,
            scenario.second_port,
        );
        let mut ok = verify::verify(&stack, checks, p, "post", &expected, &model).await;
        if !ok {
            // Tell an upstream outage apart from a broken deployment:
            // rolling back cannot fix the upstream.
            let reachable = checks
                .run(
                    p,
                    "post.upstream-reachable",
                    verify::upstream_reachable(&stack),
                )
                .await;
            if !reachable {
                return no_go(
                    "the LLM upstream is down; the deployment itself is not the cause, no rollback"
                        .into(),
                );
            }
        }
        if ok {
            ok = checks
                .run(
                    p,
                    "post.monitor",
                    verify::monitor(&stack, opts.monitor, &switched_at),
                )
                .await;
        }
        ok && deployed.passed
    } else {
        false
    };
    if after_change_ok && !scenario.change.rollback_after {
        return (Verdict::Go, "every check passed".into());
    }
    if !opts.auto_rollback && !scenario.change.rollback_after {
        return no_go(
            "a check after the change failed; automatic rollback is off: roll back now".into(),
        );
    }
    let old = verify::Expected::new(
        scenario.start_port,
        scenario.change.port,
        scenario.second_port,
    );
    let (restored, took) = rollback::run(&stack, checks, &pre.backups, &old, &model).await;
    figures.rollback_duration_ms = Some(took.as_secs_f64() * 1000.0);
    if restored && after_change_ok {
        (Verdict::RolledBack, format!("deployed, then rolled back on demand in {:.1}s; the old deployment passed its checks", took.as_secs_f64()))
    } else if restored {
        (Verdict::RolledBack, format!("a check after the change failed; rolled back in {:.1}s and the old deployment passed its checks", took.as_secs_f64()))
    } else {
        (
            Verdict::RollbackFailed,
            "a check after the change failed and the rollback did not restore service".into(),
        )
    }
}

/// A run's files and mocks, before any container starts.
#[derive(Debug)]
pub struct Prepared {
    pub wiremock: wiremock::MockServer,
    pub start: Rendered,
    pub candidate: Rendered,
    pub run_dir: tempfile::TempDir,
    pub live: LiveFiles,
    pub candidate_json: PathBuf,
    pub candidate_nginx: PathBuf,
    /// The streaming mock, for the local backend (containers run their own).
    pub mock: Option<mock_upstream::MockUpstream>,
}

/// Starts wiremock, renders the start and candidate configs pointed at the
/// mocks, and writes them into a fresh run directory.
pub async fn prepare(
    scenario: &Scenario,
    root: &std::path::Path,
    backend: BackendKind,
) -> Result<Prepared, String> {
    let wiremock = stack::start_wiremock(backend).await?;
    let wm_port = wiremock.address().port();
    let (mocks, mock) = match backend {
        BackendKind::Containers => (
            MockEndpoints {
                stream_mock: format!("http://upstream:{MOCK_PORT}"),
                wiremock: Some(format!("http://host.docker.internal:{wm_port}")),
                goproxy_host: None,
            },
            None,
        ),
        BackendKind::Local => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind the mock upstream: {e}"))?;
            let mock = mock_upstream::MockUpstream::start(listener, Default::default())
                .await
                .map_err(|e| format!("cannot start the mock upstream: {e}"))?;
            let endpoints = MockEndpoints {
                stream_mock: format!("http://{}", mock.addr()),
                wiremock: Some(format!("http://127.0.0.1:{wm_port}")),
                goproxy_host: Some("127.0.0.1".into()),
            };
            (endpoints, Some(mock))
        }
    };
    let (start, candidate) = files::render(scenario, &Sources::from_root(root), &mocks)
        .map_err(|e| format!("cannot render the scenario's configs: {e}"))?;
    let run_dir = tempfile::Builder::new()
        .prefix(&format!("harness-{}-", scenario.name))
        .tempdir()
        .map_err(|e| format!("cannot make a run directory: {e}"))?;
    let live = LiveFiles::create(run_dir.path(), &start)
        .map_err(|e| format!("cannot write the run's files: {e}"))?;
    let (candidate_json, candidate_nginx) = live
        .write_candidate(&candidate)
        .map_err(|e| format!("cannot write the candidate files: {e}"))?;
    Ok(Prepared {
        wiremock,
        start,
        candidate,
        run_dir,
        live,
        candidate_json,
        candidate_nginx,
        mock,
    })
}

/// The first model of the deployed config that the streaming mock serves
/// in OpenAI format (the probe model goes to wiremock instead).
pub fn stream_model(candidate: &str, start: &str) -> Result<StreamModel, String> {
    // A candidate that does not parse (a no-go scenario) still has a start.
    let config = proxy::config::Config::from_json(candidate, "candidate")
        .or_else(|_| proxy::config::Config::from_json(start, "start"))
        .map_err(|e| format!("the rendered goproxy config does not load: {e}"))?;
    config
        .models()
        .iter()
        .find(|m| {
            m.id != files::PROBE_MODEL
                && config
                    .endpoint_for(m, proxy::config::Format::OpenAi)
                    .is_some_and(|e| e.name != files::PROBE_ENDPOINT)
        })
        .map(|m| StreamModel {
            id: m.id.clone(),
            upstream_ids: m.upstream_ids.iter().map(|(id, _)| id.clone()).collect(),
        })
        .ok_or_else(|| {
            "no model of the config is served in OpenAI format by the mock upstream".into()
        })
}

async fn wait_listening(stack: &Stack, port: u16) -> Result<String, String> {
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
        PollError::Failed(e) => e,
        PollError::TimedOut { .. } => format!("the squatter never listened on {port}"),
    })?;
    Ok(format!(
        "port {port} now held {} by another process",
        pre::where_goproxy_binds(stack)
    ))
}
