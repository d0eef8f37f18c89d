//! The gate: one scenario from lint to verdict, in the runbook's order.
//!
//! lint -> start the old deployment -> pre-deployment -> deployment under
//! load -> post-deployment -> monitoring window, with an automatic rollback
//! when anything after the change fails. Each phase is a function returning
//! a [`Step`]: `Err` carries the verdict that ends the run early, so `?`
//! reads as "stop here with this verdict". Each step is a check in the
//! report; the verdict and its exit code come from [`crate::report`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::check::{CheckResult, Checks, Phase, Status};
use crate::deploy::DeployOutcome as Deployed;
use crate::files::{self, LiveFiles, MockEndpoints, Rendered};
use crate::lint::{self, LintTargets};
use crate::names::{self, Namer};
use crate::poll::{poll_until, Attempt, PollError};
use crate::pre::PreOutcome;
use crate::render::BaseSource;
use crate::render::{self, Sources};
use crate::report::{Figures, Report, Verdict};
use crate::scenario::{Fault, Scenario};
use crate::stack::{self, BackendKind, Stack, StackError, StackOptions, MOCK_PORT};
use crate::traffic::Target;
use crate::verify::{self, StreamModel};

mod error;
use crate::{deploy, pre, rollback};
pub use error::GateError;

/// How a validate run is set up.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The repository root (compose file, scenarios).
    pub root: PathBuf,
    /// The operator's files judged by lint and deployed as the candidate.
    pub targets: LintTargets,
    /// What is deployed now.
    pub base: BaseSource,
    /// Run the change even when lint says no-go (as `force = true` in a scenario).
    pub force: bool,
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

impl GateOptions {
    /// The repository's own files, a simulated base, no force.
    pub fn from_root(root: &std::path::Path, backend: BackendKind, monitor: Duration) -> Self {
        Self {
            root: root.to_path_buf(),
            targets: LintTargets::from_root(root),
            base: BaseSource::Simulated,
            force: false,
            monitor,
            keep: false,
            auto_rollback: true,
            quiet: true,
            backend,
        }
    }
}

/// A verdict that ends the run, with its reason.
pub type Stop = (Verdict, String);
/// A phase's result: its value, or the verdict that ends the run here.
pub type Step<T> = Result<T, Stop>;

/// The runbook's checks, in order: those a run did not reach are listed
/// as skipped, so a report shows what was not verified.
const RUNBOOK_CHECKS: [(Phase, &str); 15] = [
    (Phase::Lint, "lint.ports-agree"),
    (Phase::PreDeployment, "pre.stack-up"),
    (Phase::PreDeployment, "pre.old-service-answering"),
    (Phase::PreDeployment, "pre.port-free"),
    (Phase::PreDeployment, "pre.goproxy-check-config"),
    (Phase::PreDeployment, "pre.nginx-t"),
    (Phase::PreDeployment, "pre.backups"),
    (Phase::Deployment, "deploy.switch-under-load"),
    (Phase::PostDeployment, "post.listening-port"),
    (Phase::PostDeployment, "post.https-health"),
    (Phase::PostDeployment, "post.models-auth"),
    (Phase::PostDeployment, "post.chat"),
    (Phase::PostDeployment, "post.chat-stream"),
    (Phase::PostDeployment, "post.internal-routing"),
    (Phase::PostDeployment, "post.monitor"),
];

fn list_not_run(results: &mut Vec<CheckResult>, reason: &str) {
    for (phase, name) in RUNBOOK_CHECKS {
        if !results.iter().any(|r| r.name == name) {
            results.push(CheckResult {
                name: name.to_string(),
                phase,
                status: Status::Skip,
                evidence: format!("not run: {}", first_line(reason)),
                duration: Duration::ZERO,
            });
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn n_reason(namer: &Option<Namer>, reason: String) -> String {
    match namer {
        Some(n) => n.say(&reason),
        None => reason,
    }
}

fn no_go(why: impl Into<String>) -> Stop {
    (Verdict::NoGo, why.into())
}

/// Runs a scenario end to end and returns its report.
pub async fn validate(scenario: &Scenario, opts: &GateOptions) -> Report {
    let started = Instant::now();
    let mut checks = Checks::new(opts.quiet);
    let mut figures = Figures::default();
    let mut namer = None;
    let (verdict, reason) = match run(scenario, opts, &mut checks, &mut figures, &mut namer).await {
        Ok(v) | Err(v) => v,
    };
    // Evidence was put in the operator's terms as each result came in.
    let mut results = checks.into_results();
    let reason = n_reason(&namer, reason);
    list_not_run(&mut results, &reason);
    Report::new(
        scenario.name.clone(),
        verdict,
        reason,
        results,
        figures,
        started.elapsed(),
    )
}

async fn run(
    scenario: &Scenario,
    opts: &GateOptions,
    checks: &mut Checks,
    figures: &mut Figures,
    namer_out: &mut Option<Namer>,
) -> Step<Stop> {
    if !scenario.backends.contains(&opts.backend) {
        return Err(no_go(format!(
            "scenario {} runs only on {:?}, not on the {:?} backend",
            scenario.name, scenario.backends, opts.backend
        )));
    }
    let force = scenario.change.force || opts.force;
    if !scenario.change.derives() {
        lint_operator_files(opts, checks, force).await?;
    }
    let prepared = prepare(scenario, opts)
        .await
        .map_err(|e| no_go(e.to_string()))?;
    let scenario = &effective(scenario, &prepared);
    let rendered = names::Rendered {
        candidate_map: &prepared.candidate.nginx_map,
        base_map: &prepared.start.nginx_map,
        run_dir: prepared.run_dir.path(),
    };
    let namer = Namer::new(rendered, &opts.targets, opts.keep);
    *namer_out = Some(namer.clone());
    let live = namer.clone();
    checks.set_say(crate::check::Say(Box::new(move |evidence, phase| {
        // Before the switch the live nginx.conf is the base's.
        live.say_live(
            evidence,
            matches!(phase, Phase::Lint | Phase::PreDeployment),
        )
    })));
    record_render(&prepared, checks);
    if scenario.change.derives() {
        lint_derived(opts, &prepared, checks, force).await?;
    }
    let Prepared {
        wiremock,
        start,
        candidate,
        run_dir,
        live,
        candidate_json,
        candidate_nginx,
        mock,
    } = prepared;
    let stack = start_stack(scenario, opts, checks, live, wiremock, mock).await?;
    if opts.keep {
        eprintln!(
            "  keeping run directory {} and {}",
            run_dir.path().display(),
            stack.describe()
        );
        let _ = run_dir.keep();
    }
    let model = stream_model(&candidate.goproxy_config, &start.goproxy_config)
        .map_err(|e| no_go(e.to_string()))?;
    inject_port_in_use(scenario, &stack, checks, &candidate).await?;
    let old_ports: Vec<u16> = std::iter::once(scenario.start_port)
        .chain(scenario.second_port)
        .collect();
    let pre = pre_deployment(
        scenario,
        &stack,
        checks,
        &old_ports,
        (&candidate_json, &candidate_nginx),
        &namer,
    )
    .await?;
    if opts.keep {
        save_state(scenario, &stack, &model, &pre);
    }
    let deployed = deploy_under_load(scenario, &stack, checks, &candidate, &model, figures).await;
    let after_change_ok =
        post_deployment(scenario, opts, &stack, checks, &model, &deployed).await?;
    finish(
        scenario,
        opts,
        &stack,
        checks,
        figures,
        &pre,
        &model,
        after_change_ok,
    )
    .await
}

/// lint on the operator's files exactly as written: a no-go stops the run
/// before any container starts (unless forced).
async fn lint_operator_files(opts: &GateOptions, checks: &mut Checks, force: bool) -> Step<()> {
    lint::run(&opts.targets, checks).await;
    if checks.all_passed() || force {
        return Ok(());
    }
    Err(no_go(
        "lint failed on the files as written: fix the files and lines named above; no container was started",
    ))
}

/// lint on a candidate the scenario derived (a fault scenario's bad file).
async fn lint_derived(
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

/// The scenario with the ports the files actually carry: the candidate's
/// own port, and the base's when the base is real (not simulated).
fn effective(scenario: &Scenario, p: &Prepared) -> Scenario {
    let mut s = scenario.clone();
    if !s.change.derives() {
        if let Some(port) = json_port(&p.candidate.goproxy_config) {
            s.change.port = port;
            s.change.nginx_port = port;
        }
    }
    if !p.start.origin.starts_with("simulated") {
        if let Some(port) = json_port(&p.start.goproxy_config) {
            s.start_port = port;
        }
    }
    s
}

fn json_port(text: &str) -> Option<u16> {
    crate::ports::json_port(std::path::Path::new("config.json"), text)?.port()
}

/// The report lists what was deployed and every substitution made.
fn record_render(p: &Prepared, checks: &mut Checks) {
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

async fn start_stack(
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

async fn inject_port_in_use(
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

async fn pre_deployment(
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

fn save_state(scenario: &Scenario, stack: &Stack, model: &StreamModel, pre: &PreOutcome) {
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

async fn deploy_under_load(
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
async fn post_deployment(
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

async fn inject_after_change(scenario: &Scenario, stack: &Stack) {
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

/// GO, or the rollback and its verdict.
#[allow(clippy::too_many_arguments)]
async fn finish(
    scenario: &Scenario,
    opts: &GateOptions,
    stack: &Stack,
    checks: &mut Checks,
    figures: &mut Figures,
    pre: &PreOutcome,
    model: &StreamModel,
    after_change_ok: bool,
) -> Step<Stop> {
    if after_change_ok && !scenario.change.rollback_after {
        return Ok((Verdict::Go, "every check passed".into()));
    }
    if !opts.auto_rollback && !scenario.change.rollback_after {
        return Err(no_go(
            "a check after the change failed; automatic rollback is off: roll back now",
        ));
    }
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

/// Starts wiremock, renders the base and candidate configs pointed at the
/// mocks, and writes them into a fresh run directory.
pub async fn prepare(scenario: &Scenario, opts: &GateOptions) -> Result<Prepared, GateError> {
    let wiremock = stack::start_wiremock(opts.backend).await?;
    let wm_port = wiremock.address().port();
    let (mocks, mock) = match opts.backend {
        BackendKind::Containers => (
            MockEndpoints {
                stream_mock: format!("http://upstream:{MOCK_PORT}"),
                wiremock: Some(format!("http://host.docker.internal:{wm_port}")),
                goproxy_host: None,
            },
            None,
        ),
        BackendKind::Local => {
            let listener =
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|source| GateError::Mock {
                        what: "bind",
                        source,
                    })?;
            let mock = mock_upstream::MockUpstream::start(listener, Default::default())
                .await
                .map_err(|source| GateError::Mock {
                    what: "start",
                    source,
                })?;
            let endpoints = MockEndpoints {
                stream_mock: format!("http://{}", mock.addr()),
                wiremock: Some(format!("http://127.0.0.1:{wm_port}")),
                goproxy_host: Some("127.0.0.1".into()),
            };
            (endpoints, Some(mock))
        }
    };
    let sources = sources_of(&opts.targets);
    let (start, candidate) =
        render::render(scenario, &sources, &opts.base, &mocks).map_err(GateError::Render)?;
    let run_dir = tempfile::Builder::new()
        .prefix(&format!("harness-{}-", scenario.name))
        .tempdir()
        .map_err(GateError::RunDir)?;
    let live = LiveFiles::create(run_dir.path(), &start).map_err(|source| GateError::Write {
        what: "run's files",
        source,
    })?;
    let (candidate_json, candidate_nginx) =
        live.write_candidate(&candidate)
            .map_err(|source| GateError::Write {
                what: "candidate files",
                source,
            })?;
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

/// The files to render, and the names nginx reaches goproxy by (from compose).
pub fn sources_of(t: &LintTargets) -> Sources {
    Sources::of(t)
}

/// The first model of the deployed config that the streaming mock serves
/// in OpenAI format (the probe model goes to wiremock instead).
pub fn stream_model(candidate: &str, start: &str) -> Result<StreamModel, GateError> {
    // A candidate that does not parse (a no-go scenario) still has a start.
    let config = proxy::config::Config::from_json(candidate, "candidate")
        .or_else(|_| proxy::config::Config::from_json(start, "start"))
        .map_err(GateError::ConfigDoesNotLoad)?;
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
        .ok_or(GateError::NoStreamModel)
}

async fn wait_listening(stack: &Stack, port: u16) -> Result<String, GateError> {
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
