//! `harness check`: the design's post-deployment checks against any live
//! deployment, by URL, with the same report, JSON, JUnit and exit codes as
//! `validate`.
//!
//! ```text
//! harness check --url https://chat.trollllm.xyz                       # from anywhere
//! harness check --url https://chat.trollllm.xyz \
//!     --compose-file docker-compose.yml --project-name app            # on the Docker host
//! ```
//!
//! # Layout
//!
//! - [`target`]: the URL, `--resolve`, trust (`--ca-cert`, `--insecure`), the key's variable.
//! - [`cert`]: the served certificate: trusted, valid for the host, days to expiry.
//! - [`probes`]: `/health`, `/v1/models`, a completion, a stream, the monitoring window.
//! - [`host`]: with a compose project: port in goproxy's namespace, `nginx -t`,
//!   nginx -> `goproxy:<port>`, logs and restarts.

pub mod cert;
pub mod host;
pub mod probes;
pub mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::check::{Checks, Phase};
use crate::probe::ProbeError;
use crate::report::{Figures, Report, Verdict};
use host::Host;
use target::{Target, TargetSpec};

/// What `harness check` was asked.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub target: TargetSpec,
    /// The model for the completions [default: the first of /v1/models].
    pub model: Option<String>,
    /// The monitoring window after the requests.
    pub monitor: Duration,
    /// The compose project on this Docker host, for the host checks.
    pub compose_files: Vec<PathBuf>,
    pub project: Option<String>,
    pub quiet: bool,
}

/// Runs every check and returns the report; Err is bad input (exit 2).
pub async fn check(opts: &LiveOptions) -> Result<Report, target::TargetError> {
    let started = Instant::now();
    let target = opts.target.connect()?;
    let mut checks = Checks::new(opts.quiet);
    let (verdict, reason) = run_checks(&target, opts, &mut checks).await;
    Ok(Report::new(
        format!("check {}", target.base),
        verdict,
        reason,
        checks.into_results(),
        Figures::default(),
        started.elapsed(),
    ))
}

/// The checks of [`check`] on a connected target, into `checks`; also the
/// post-deployment phase of `harness deploy`.
pub async fn run_checks(
    target: &Target,
    opts: &LiveOptions,
    checks: &mut Checks,
) -> (Verdict, String) {
    let p = Phase::PostDeployment;
    checks.run(p, "live.tls", cert::check(target)).await;
    checks
        .run(p, "live.health", async {
            probes::health(target).await.map(|(e, _)| e)
        })
        .await;
    let mut ids = Vec::new();
    checks
        .run(p, "live.models-auth", async {
            let (e, found) = probes::models(target).await?;
            ids = found;
            Ok::<_, ProbeError>(e)
        })
        .await;
    let model = opts.model.clone().or_else(|| ids.first().cloned());
    match &model {
        Some(m) => {
            checks.run(p, "live.chat", probes::chat(target, m)).await;
            checks
                .run(p, "live.chat-stream", probes::chat_stream(target, m))
                .await;
        }
        None => {
            let why = "no model: /v1/models listed none; name one with --model";
            checks.push_fail(p, "live.chat", why);
            checks.skip(p, "live.chat-stream", why);
        }
    }
    let host = match &opts.project {
        Some(project) => host_checks(&opts.compose_files, project, checks).await,
        None => None,
    };
    let window_start = SystemTime::now();
    let restarts_before = match &host {
        Some(h) => h.restarts().await.unwrap_or(0),
        None => 0,
    };
    checks
        .run(p, "live.monitor", probes::monitor(target, opts.monitor))
        .await;
    if let Some(h) = &host {
        checks
            .run(
                p,
                "host.logs-and-restarts",
                h.logs_and_restarts(window_start, restarts_before),
            )
            .await;
    }
    verdict(checks)
}

/// The host checks; returns the project for the logs after the window.
async fn host_checks(files: &[PathBuf], project: &str, checks: &mut Checks) -> Option<Host> {
    let p = Phase::PostDeployment;
    let host = match Host::attach(files, project).await {
        Ok(h) => h,
        Err(e) => {
            checks.push_fail(p, "host.project", e);
            return None;
        }
    };
    let mut port = None;
    checks
        .run(p, "host.listening-port", async {
            let (e, found) = host.listening().await?;
            port = Some(found);
            Ok::<_, host::HostError>(e)
        })
        .await;
    checks.run(p, "host.nginx-t", host.nginx_t()).await;
    match port {
        Some(port) => {
            checks
                .run(p, "host.nginx-to-goproxy", host.nginx_to_goproxy(port))
                .await;
        }
        None => checks.skip(
            p,
            "host.nginx-to-goproxy",
            "goproxy's port is unknown (see host.listening-port)",
        ),
    }
    Some(host)
}

/// GO when nothing failed; otherwise NO-GO naming the failed checks.
fn verdict(checks: &Checks) -> (Verdict, String) {
    let failed: Vec<&str> = checks.failed().map(|c| c.name.as_str()).collect();
    if failed.is_empty() {
        let warned = checks
            .results()
            .iter()
            .any(|c| c.evidence.starts_with("WARNING"));
        let reason = if warned {
            "every check passed, with a warning above"
        } else {
            "every check passed"
        };
        (Verdict::Go, reason.into())
    } else {
        (
            Verdict::NoGo,
            format!("the live deployment failed: {}", failed.join(", ")),
        )
    }
}
