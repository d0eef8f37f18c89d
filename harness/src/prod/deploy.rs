//! `harness deploy`: the gate's phases on the operator's running project.
//!
//! lint of the candidate -> pre-deployment on the live project (healthy,
//! target port free in goproxy's namespace, `goproxy --check-config` in the
//! deployed image, `nginx -t` of the candidate by the deployed nginx,
//! verified timestamped backups) -> state saved -> candidate written in
//! place -> the overlap switch -> the live checks of `harness check` and
//! the monitoring window -> an automatic rollback (the same switch back)
//! when anything after the change fails. Each step is a check in the same
//! report as `validate`; the state on disk lets `harness rollback` finish
//! the job after an interruption.

use super::ProdError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::backend::Production;
use super::state::{DeployState, Step};
use super::{plan, project, strategy};
use crate::check::{Checks, Phase};
use crate::files::{self, Backup, LiveFiles, Rendered};
use crate::lint::{self, LintTargets};
use crate::live::target::{Resolve, Target, TargetSpec};
use crate::live::{self, LiveOptions};
use crate::names::Namer;
use crate::report::{Figures, Report, Verdict};
use crate::scenario::Strategy;
use crate::stack::{Stack, HOSTNAME};
use crate::verify::Expected;
use crate::{deploy, pre, rollback};

/// What `harness deploy` was asked.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub compose_files: Vec<PathBuf>,
    pub project: String,
    /// Where the new files are, laid out like the project directory.
    pub candidate_dir: PathBuf,
    /// The public URL (default: `https://chat.trollllm.xyz:<published 443>`
    /// resolved to 127.0.0.1).
    pub url: Option<String>,
    pub resolve: Option<Resolve>,
    pub ca_cert: Option<PathBuf>,
    pub insecure: bool,
    pub api_key_env: String,
    pub model: Option<String>,
    pub monitor: Duration,
    /// How long a stream may stay open across the switch.
    pub stream_bound: Duration,
    /// Where the state goes (default: `<project dir>/.harness-deploy/<project>-<time>`).
    pub state_dir: Option<PathBuf>,
    pub dry_run: bool,
    /// The operator's `--strategy` (default: chosen for the project's shape).
    pub strategy: Option<Strategy>,
    pub auto_rollback: bool,
    pub quiet: bool,
}

/// The project, its files and how to reach it, found before any check.
#[derive(Debug)]
pub struct Found {
    pub stack: Stack,
    pub target: Target,
    pub live: (PathBuf, PathBuf),
    pub candidate: (PathBuf, PathBuf),
    /// goproxy-b's (live config, candidate), when the project runs two instances.
    pub second: Option<(PathBuf, PathBuf)>,
    /// The switch for this project.
    pub strategy: Strategy,
    pub state_dir: PathBuf,
}

/// Runs the deploy; Err is bad input (exit 2) before anything changed.
pub async fn run(opts: &DeployOptions) -> Result<Report, ProdError> {
    let started = Instant::now();
    let found = find(opts).await?;
    let mut checks = Checks::new(opts.quiet);
    let mut figures = Figures::default();
    let (verdict, reason) = phases(opts, &found, &mut checks, &mut figures).await;
    Ok(Report::new(
        format!("deploy {}", opts.project),
        verdict,
        reason,
        checks.into_results(),
        figures,
        started.elapsed(),
    ))
}

/// Attaches to the project and pairs each live file with its candidate.
pub async fn find(opts: &DeployOptions) -> Result<Found, ProdError> {
    let project_dir = project_dir(opts)?;
    let backend = Production::attach(&opts.compose_files, &opts.project).await?;
    let live = project::live_files(&backend.containers).await?;
    let live_b = project::live_second(&backend.containers).await?;
    let strategy = strategy::choose(opts.strategy, live_b.is_some())?;
    let lives = [Some(&live.0), Some(&live.1), live_b.as_ref()];
    let mut candidate = candidates(lives.into_iter().flatten(), &project_dir, opts)?;
    let target = target_spec(opts, backend.https_port).connect()?;
    let state_dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&project_dir, &opts.project));
    let files = LiveFiles {
        dir: state_dir.clone(),
        goproxy_config: live.0.clone(),
        goproxy_b_config: live_b.clone().unwrap_or_else(|| state_dir.join("unused")),
        nginx_conf: live.1.clone(),
        tls_dir: state_dir.join("unused"),
    };
    let mut stack = backend.into_stack(files, &target);
    stack.stream_bound = opts.stream_bound;
    stack.quiet = opts.quiet;
    let candidate_main = (candidate.remove(0), candidate.remove(0));
    Ok(Found {
        stack,
        target,
        live,
        candidate: candidate_main,
        second: live_b.zip(candidate.pop()),
        strategy,
        state_dir,
    })
}

/// The project's directory: the folder of its first compose file.
fn project_dir(opts: &DeployOptions) -> Result<PathBuf, ProdError> {
    let first = opts.compose_files.first().ok_or(ProdError::NoComposeFile)?;
    Ok(first
        .canonicalize()
        .map_err(|source| ProdError::ComposeFile {
            path: first.clone(),
            source,
        })?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default())
}

/// Each live file's candidate under `--candidate-dir`, in the same order:
/// it must exist and must not be the live file itself.
fn candidates<'a>(
    live: impl Iterator<Item = &'a PathBuf>,
    project_dir: &Path,
    opts: &DeployOptions,
) -> Result<Vec<PathBuf>, ProdError> {
    let mut candidate = Vec::new();
    for file in live {
        let c = project::candidate_for(file, project_dir, &opts.candidate_dir)?;
        if !c.is_file() {
            return Err(ProdError::NoCandidate {
                candidate: c,
                project_dir: project_dir.to_path_buf(),
            });
        }
        if c.canonicalize().ok() == file.canonicalize().ok() {
            return Err(ProdError::CandidateIsLive { candidate: c });
        }
        candidate.push(c);
    }
    Ok(candidate)
}

/// `<project dir>/.harness-deploy/<project>-<UTC time>`.
fn default_state_dir(project_dir: &Path, project: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    project_dir
        .join(".harness-deploy")
        .join(format!("{project}-{stamp}"))
}

/// The URL and trust: the operator's, or nginx's published port on loopback.
fn target_spec(opts: &DeployOptions, published: u16) -> TargetSpec {
    let url = opts
        .url
        .clone()
        .unwrap_or_else(|| format!("https://{HOSTNAME}:{published}"));
    let resolve = opts.resolve.clone().or_else(|| {
        opts.url.is_none().then(|| Resolve {
            host: HOSTNAME.into(),
            port: published,
            addr: [127, 0, 0, 1].into(),
        })
    });
    TargetSpec {
        url,
        resolve,
        ca_cert: opts.ca_cert.clone(),
        insecure: opts.insecure,
        api_key_env: opts.api_key_env.clone(),
        stream_bound: opts.stream_bound,
    }
}

async fn phases(
    opts: &DeployOptions,
    f: &Found,
    checks: &mut Checks,
    figures: &mut Figures,
) -> (Verdict, String) {
    let no_go = |why: &str| (Verdict::NoGo, why.to_string());
    let (old_port, new_port) = match read_only_checks(opts, f, checks).await {
        Ok(ports) => ports,
        Err(why) => return no_go(why),
    };
    if opts.dry_run {
        println!("{}", plan::render(opts, f, old_port, new_port));
        return (
            Verdict::Go,
            "dry run: every step printed above; nothing was changed".into(),
        );
    }
    let (backups, mut state) = match back_up(opts, f, checks, old_port, new_port).await {
        Ok(done) => done,
        Err(why) => return no_go(why),
    };
    let after = switch_and_check(opts, f, checks, &mut state).await;
    if after {
        let _ = state.advance(Step::Done);
        return (
            Verdict::Go,
            format!("deployed: goproxy on {new_port}, every check passed"),
        );
    }
    if !opts.auto_rollback {
        return no_go("a check after the change failed; automatic rollback is off: roll back now");
    }
    roll_back(f, checks, figures, &mut state, &backups).await
}

/// The checks that change nothing: the project healthy, lint of the
/// candidate, and the old and new ports. `Err` says why deploy stops.
async fn read_only_checks(
    opts: &DeployOptions,
    f: &Found,
    checks: &mut Checks,
) -> Result<(u16, u16), &'static str> {
    let healthy = checks
        .run(
            Phase::PreDeployment,
            "pre.project-healthy",
            project::healthy(f.stack.backend.as_ref()),
        )
        .await;
    if !healthy {
        return Err("the project is not healthy: deploy refuses to start; nothing was changed");
    }
    let targets = LintTargets {
        prod_config: f.candidate.0.clone(),
        nginx_conf: f.candidate.1.clone(),
        ..LintTargets::from_root(&opts.candidate_dir)
    };
    lint::run(&targets, checks).await;
    if !checks.all_passed() {
        return Err("lint failed on the candidate files; nothing was changed");
    }
    match ports(f).await {
        Ok(p) => Ok(p),
        Err(e) => {
            checks.push_fail(Phase::PreDeployment, "pre.ports", e);
            Err("cannot read the old and new ports; nothing was changed")
        }
    }
}

/// The pre-deployment checks on the live project and the verified backups,
/// then the state saved so `harness rollback` can finish the job from here.
async fn back_up(
    opts: &DeployOptions,
    f: &Found,
    checks: &mut Checks,
    old_port: u16,
    new_port: u16,
) -> Result<(Vec<Backup>, DeployState), &'static str> {
    let Ok(second) = pre_second(f, checks).await else {
        return Err("a pre-deployment check of goproxy-b failed; nothing was changed");
    };
    let old_ports: Vec<u16> = std::iter::once(old_port).chain(second).collect();
    let mut pre = pre::run(
        &f.stack,
        checks,
        &old_ports,
        new_port,
        (&f.candidate.0, &f.candidate.1),
        &Namer::verbatim(&f.candidate.1, &f.candidate.0),
    )
    .await;
    if pre.passed && f.second.is_some() {
        pre.passed = backup_second(f, checks, &mut pre.backups).await;
    }
    if !pre.passed {
        return Err("a pre-deployment check failed; nothing was changed");
    }
    let state = new_state(opts, f, (old_port, new_port), &pre.backups);
    if let Err(e) = state.save() {
        checks.push_fail(Phase::PreDeployment, "pre.state", e);
        return Err("cannot save the deploy state; nothing was changed");
    }
    if !opts.quiet {
        eprintln!(
            "  state in {dir}: `harness rollback --run-dir {dir}` rolls back at any time",
            dir = f.state_dir.display()
        );
    }
    Ok((pre.backups, state))
}

/// The state on disk once the backups are made: everything `harness
/// rollback` needs to put the old files and port back.
fn new_state(
    opts: &DeployOptions,
    f: &Found,
    (old_port, new_port): (u16, u16),
    backups: &[Backup],
) -> DeployState {
    DeployState {
        dir: f.state_dir.clone(),
        project: opts.project.clone(),
        compose_files: opts.compose_files.clone(),
        step: Step::BackedUp,
        old_port,
        new_port,
        backups: backups
            .iter()
            .map(|b| (b.original.clone(), b.copy.clone()))
            .collect(),
        url: f.target.base.clone(),
        resolve: target_spec(opts, f.stack.https_port)
            .resolve
            .map(|r| format!("{}:{}:{}", r.host, r.port, r.addr)),
        ca_cert: opts.ca_cert.clone(),
        insecure: opts.insecure,
        api_key_env: opts.api_key_env.clone(),
    }
}

/// The automatic rollback after a failed check: the backups back, the same
/// switch to the old port; the verdict says whether service came back.
async fn roll_back(
    f: &Found,
    checks: &mut Checks,
    figures: &mut Figures,
    state: &mut DeployState,
    backups: &[Backup],
) -> (Verdict, String) {
    let (old_port, new_port) = (state.old_port, state.new_port);
    let old = Expected::new(old_port, new_port, None);
    let (restored, took) = rollback::restore(&f.stack, checks, backups, &old).await;
    figures.rollback_duration_ms = Some(took.as_secs_f64() * 1000.0);
    if restored {
        let _ = state.advance(Step::RolledBack);
        (
            Verdict::RolledBack,
            format!(
                "a check after the change failed; rolled back in {:.1}s: goproxy on {old_port} \
                 again, the files restored byte for byte",
                took.as_secs_f64()
            ),
        )
    } else {
        let _ = state.advance(Step::RollbackFailed);
        (
            Verdict::RollbackFailed,
            "a check after the change failed and the rollback did not restore service".into(),
        )
    }
}

/// The configured port now (goproxy's mounted config) and the candidate's.
async fn ports(f: &Found) -> Result<(u16, u16), ProdError> {
    let old = super::goproxy_port(&f.live.0)?;
    let new = super::goproxy_port(&f.candidate.0)?;
    Ok((old, new))
}

/// Writes the candidate in place, switches, runs the live checks.
async fn switch_and_check(
    opts: &DeployOptions,
    f: &Found,
    checks: &mut Checks,
    state: &mut DeployState,
) -> bool {
    let p = Phase::Deployment;
    let applied = checks
        .run(p, "deploy.apply-config", apply(opts, f, state))
        .await;
    if !applied {
        return false;
    }
    let switched = match f.strategy {
        Strategy::RollingRestart => deploy::rolling_restart(&f.stack, checks, p, "deploy").await,
        _ => deploy::overlap(&f.stack, checks, p, "deploy", 0).await,
    };
    if !switched {
        return false;
    }
    live_checks(opts, f, checks).await
}

/// The candidate read and written over the live files in place (the state
/// says so first, so an interrupted deploy is rolled back).
async fn apply(
    opts: &DeployOptions,
    f: &Found,
    state: &mut DeployState,
) -> Result<String, ProdError> {
    let read = |path: &PathBuf| std::fs::read_to_string(path).map_err(ProdError::io("read", path));
    let candidate = Rendered {
        goproxy_config: read(&f.candidate.0)?,
        nginx_conf: read(&f.candidate.1)?,
        goproxy_b_config: match &f.second {
            Some((_, c)) => Some(read(c)?),
            None => None,
        },
        nginx_map: Default::default(),
        substitutions: Vec::new(),
        origin: format!("the files under {}", opts.candidate_dir.display()),
    };
    state.advance(Step::Applied)?;
    f.stack
        .files
        .write(&candidate)
        .map_err(ProdError::WriteCandidate)?;
    let mut pairs = vec![(&f.candidate.0, &f.live.0), (&f.candidate.1, &f.live.1)];
    if let Some((live, cand)) = &f.second {
        pairs.insert(1, (cand, live));
    }
    let wrote: Vec<String> = pairs
        .iter()
        .map(|(c, l)| format!("{} over {}", c.display(), l.display()))
        .collect();
    Ok(format!(
        "wrote {} (in place: bind mounts follow the inode)",
        wrote.join(", ")
    ))
}

/// `harness check`'s live checks and monitoring window after the switch;
/// whether all of them passed.
async fn live_checks(opts: &DeployOptions, f: &Found, checks: &mut Checks) -> bool {
    let live_opts = LiveOptions {
        target: target_spec(opts, f.stack.https_port),
        model: opts.model.clone(),
        monitor: opts.monitor,
        compose_files: opts.compose_files.clone(),
        project: Some(opts.project.clone()),
        quiet: opts.quiet,
    };
    let before = checks.results().len();
    live::run_checks(&f.target, &live_opts, checks).await;
    checks.results()[before..].iter().all(|r| r.passed())
}

/// goproxy-b's pre-deployment checks, when the project runs it: its
/// candidate passes `goproxy --check-config` in the deployed image and
/// keeps its port (see [`strategy::check_second_port`]). Returns its
/// live port; Err when a check failed (already recorded).
async fn pre_second(f: &Found, checks: &mut Checks) -> Result<Option<u16>, ()> {
    let Some((live, candidate)) = &f.second else {
        return Ok(None);
    };
    let p = Phase::PreDeployment;
    let ports = super::goproxy_port(live).and_then(|l| Ok((l, super::goproxy_port(candidate)?)));
    let (old, new) = match ports {
        Ok(p) => p,
        Err(e) => {
            checks.push_fail(p, "pre.goproxy-b-ports", e);
            return Err(());
        }
    };
    let mut ok = checks
        .run(p, "pre.goproxy-b-port", async {
            strategy::check_second_port(old, new)
        })
        .await;
    ok &= checks
        .run(p, "pre.goproxy-b-check-config", async {
            let said = pre::check_config(&f.stack, candidate).await;
            said.map(|s| format!("{}: {s}", candidate.display()))
                .map_err(|e| format!("{}: {e}", candidate.display()))
        })
        .await;
    if ok {
        Ok(Some(old))
    } else {
        Err(())
    }
}

/// goproxy-b's verified backup, placed between nginx.conf's and goproxy's
/// (a rollback reads nginx.conf first and goproxy's config last).
async fn backup_second(f: &Found, checks: &mut Checks, backups: &mut Vec<Backup>) -> bool {
    let Some((live, _)) = &f.second else {
        return true;
    };
    checks
        .run(Phase::PreDeployment, "pre.goproxy-b-backup", async {
            let b = files::backup(live)?;
            let said = format!("{} ({} bytes, verified)", b.copy.display(), b.bytes);
            backups.insert(1.min(backups.len()), b);
            Ok::<_, files::FilesError>(said)
        })
        .await
}
