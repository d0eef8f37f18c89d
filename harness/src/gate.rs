//! The gate: one scenario from lint to verdict, in the runbook's order.
//!
//! lint -> start the old deployment -> pre-deployment -> deployment under
//! load -> post-deployment -> monitoring window, with an automatic rollback
//! when anything after the change fails. Each phase is a function returning
//! a [`Step`]: `Err` carries the verdict that ends the run early, so `?`
//! reads as "stop here with this verdict". Each step is a check in the
//! report; the verdict and its exit code come from [`crate::report`].
//!
//! This file holds the order; `gate/prepare.rs` the work before any
//! container starts (mocks, rendered files, run directory) and
//! `gate/phases.rs` each phase after it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::check::{CheckResult, Checks, Phase, Status};
use crate::files::Rendered;
use crate::lint::LintTargets;
use crate::names::{self, Namer};
use crate::render::BaseSource;
use crate::report::{Figures, Report, Verdict};
use crate::scenario::Scenario;
use crate::stack::{BackendKind, Stack};

mod error;
mod phases;
mod prepare;
pub use error::GateError;
use phases::{
    deploy_under_load, inject_port_in_use, lint_derived, lint_operator_files, post_deployment,
    pre_deployment, record_render, roll_back, save_state, start_stack, without_rollback,
};
use prepare::effective;
pub use prepare::{prepare, sources_of, stream_model, Prepared};

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
    let (scenario, up) = set_up(scenario, opts, checks, namer_out).await?;
    change_and_check(&scenario, opts, checks, figures, &up).await
}

/// A run once its stack is up: what the phases of the change work on.
struct Up {
    // Declared first so it is dropped first: the stack's teardown still
    // reads the files in the run directory.
    stack: Stack,
    namer: Namer,
    start: Rendered,
    candidate: Rendered,
    candidate_json: PathBuf,
    candidate_nginx: PathBuf,
    _run_dir: Option<tempfile::TempDir>,
}

/// lint, the files rendered and written, the old deployment started.
async fn set_up(
    scenario: &Scenario,
    opts: &GateOptions,
    checks: &mut Checks,
    namer_out: &mut Option<Namer>,
) -> Step<(Scenario, Up)> {
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
    let scenario = effective(scenario, &prepared);
    let namer = say_in_operator_terms(opts, &prepared, checks);
    *namer_out = Some(namer.clone());
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
    let stack = start_stack(&scenario, opts, checks, live, wiremock, mock).await?;
    let run_dir = if opts.keep {
        eprintln!(
            "  keeping run directory {} and {}",
            run_dir.path().display(),
            stack.describe()
        );
        let _ = run_dir.keep();
        None
    } else {
        Some(run_dir)
    };
    let up = Up {
        stack,
        namer,
        start,
        candidate,
        candidate_json,
        candidate_nginx,
        _run_dir: run_dir,
    };
    Ok((scenario, up))
}

/// From here on every check's evidence names the operator's files and
/// lines, not the run directory's rendered copies.
fn say_in_operator_terms(opts: &GateOptions, prepared: &Prepared, checks: &mut Checks) -> Namer {
    let rendered = names::Rendered {
        candidate_map: &prepared.candidate.nginx_map,
        base_map: &prepared.start.nginx_map,
        run_dir: prepared.run_dir.path(),
    };
    let namer = Namer::new(rendered, &opts.targets, opts.keep);
    let live = namer.clone();
    checks.set_say(crate::check::Say(Box::new(move |evidence, phase| {
        // Before the switch the live nginx.conf is the base's.
        live.say_live(
            evidence,
            matches!(phase, Phase::Lint | Phase::PreDeployment),
        )
    })));
    namer
}

/// pre-deployment, the switch under load, post-deployment, and the verdict
/// (with a rollback when needed).
async fn change_and_check(
    scenario: &Scenario,
    opts: &GateOptions,
    checks: &mut Checks,
    figures: &mut Figures,
    up: &Up,
) -> Step<Stop> {
    let stack = &up.stack;
    let model = stream_model(&up.candidate.goproxy_config, &up.start.goproxy_config)
        .map_err(|e| no_go(e.to_string()))?;
    inject_port_in_use(scenario, stack, checks, &up.candidate).await?;
    let old_ports: Vec<u16> = std::iter::once(scenario.start_port)
        .chain(scenario.second_port)
        .collect();
    let pre = pre_deployment(
        scenario,
        stack,
        checks,
        &old_ports,
        (&up.candidate_json, &up.candidate_nginx),
        &up.namer,
    )
    .await?;
    if opts.keep {
        save_state(scenario, stack, &model, &pre);
    }
    let deployed = deploy_under_load(scenario, stack, checks, &up.candidate, &model, figures).await;
    let after_change_ok = post_deployment(scenario, opts, stack, checks, &model, &deployed).await?;
    if let Some(stop) = without_rollback(scenario, opts.auto_rollback, after_change_ok) {
        return stop;
    }
    roll_back(
        scenario,
        stack,
        checks,
        figures,
        &pre,
        &model,
        after_change_ok,
    )
    .await
}
