//! Pre-deployment checks against the running old deployment: the target
//! port is free, the candidate configs pass the real goproxy and the real
//! nginx, and verified backups exist before anything changes.

use std::path::Path;

use crate::check::{Checks, Phase};
use crate::files::{self, Backup, FilesError, LiveFiles};
use crate::names::Namer;
use crate::probe::ProbeError;
use crate::stack::client::SHORT;
use crate::stack::{Stack, StackError};

/// Why a pre-deployment check failed: the stack's operation, or what the
/// deployed tools said of the candidate.
#[derive(Debug, thiserror::Error)]
pub enum PreError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("port {port} is already in use {place}: {owner}")]
    PortInUse {
        port: u16,
        /// Where goproxy binds ("in goproxy's network namespace").
        place: &'static str,
        /// Who holds it, as netstat or /proc says.
        owner: String,
    },
    #[error("goproxy --check-config exited {code}: {stderr}")]
    ConfigRefused { code: i32, stderr: String },
    #[error("nginx -t on the candidate exited {code}: {said}")]
    NginxRefused { code: i32, said: String },
}

/// What the pre-deployment phase leaves for the later ones.
#[derive(Debug, Default)]
pub struct PreOutcome {
    pub passed: bool,
    pub backups: Vec<Backup>,
}

/// Runs the pre-deployment checks in the runbook's order.
pub async fn run(
    stack: &Stack,
    checks: &mut Checks,
    old_ports: &[u16],
    new_port: u16,
    candidate: (&Path, &Path),
    namer: &Namer,
) -> PreOutcome {
    let p = Phase::PreDeployment;
    let mut ok = checks
        .run(
            p,
            "pre.old-service-answering",
            old_service(stack, old_ports),
        )
        .await;
    if old_ports.contains(&new_port) {
        checks.skip(
            p,
            "pre.port-free",
            &format!("port {new_port} does not change: goproxy itself holds it"),
        );
    } else {
        ok &= checks
            .run(p, "pre.port-free", port_free(stack, new_port))
            .await;
    }
    ok &= checks
        .run(p, "pre.goproxy-check-config", async {
            check_config(stack, candidate.0)
                .await
                .map_err(|e| namer.say(&e.to_string()))
        })
        .await;
    ok &= checks
        .run(p, "pre.nginx-t", async {
            nginx_t(stack, candidate.1)
                .await
                .map(|s| namer.say(&s))
                .map_err(|e| namer.say(&e.to_string()))
        })
        .await;
    let mut backups = Vec::new();
    ok &= checks
        .run(p, "pre.backups", async {
            take_backups(&stack.files, &mut backups)
        })
        .await;
    PreOutcome {
        passed: ok,
        backups,
    }
}

/// The old deployment answers through nginx, from one of its ports.
pub async fn old_service(stack: &Stack, ports: &[u16]) -> Result<String, ProbeError> {
    let resp = stack
        .client
        .get(stack.url("/health"))
        .timeout(SHORT)
        .send()
        .await
        .map_err(|e| ProbeError::request("old service does not answer through nginx", e))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    let port = v["port"].as_u64().unwrap_or(0);
    if status == 200 && ports.iter().any(|p| u64::from(*p) == port) {
        Ok(format!("/health 200 through nginx from goproxy on {port}"))
    } else {
        let detail = format!(", port {}", v["port"]);
        Err(ProbeError::status("/health through nginx", status, detail))
    }
}

/// Where goproxy binds, in words, for evidence.
pub fn where_goproxy_binds(stack: &Stack) -> &'static str {
    stack.backend.where_goproxy_binds()
}

/// Nothing listens on the new port where goproxy will bind it.
async fn port_free(stack: &Stack, port: u16) -> Result<String, PreError> {
    let ports = stack.listening_where_goproxy_binds().await?;
    let place = where_goproxy_binds(stack);
    if ports.contains(&port) {
        let owner = stack.port_owner(port).await;
        return Err(PreError::PortInUse { port, place, owner });
    }
    Ok(format!("port {port} free {place}"))
}

/// The candidate JSON passes `goproxy --check-config` of the deployed binary.
pub(crate) async fn check_config(stack: &Stack, candidate: &Path) -> Result<String, PreError> {
    let out = stack.check_config(candidate).await?;
    if out.code == 0 {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(PreError::ConfigRefused {
            code: out.code,
            stderr: out.stderr.trim().to_string(),
        })
    }
}

/// The candidate nginx.conf passes `nginx -t` run by the deployed nginx.
async fn nginx_t(stack: &Stack, candidate: &Path) -> Result<String, PreError> {
    let out = stack.nginx_test(candidate).await?;
    let said = out.stderr.trim().replace('\n', " / ");
    if out.code == 0 {
        Ok(said)
    } else {
        Err(PreError::NginxRefused {
            code: out.code,
            said,
        })
    }
}

fn take_backups(files: &LiveFiles, out: &mut Vec<Backup>) -> Result<String, FilesError> {
    for path in [&files.nginx_conf, &files.goproxy_config] {
        out.push(files::backup(path)?);
    }
    Ok(out
        .iter()
        .map(|b| format!("{} ({} bytes, verified)", b.copy.display(), b.bytes))
        .collect::<Vec<_>>()
        .join(", "))
}
