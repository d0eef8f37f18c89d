//! The one Docker layer: every `docker` command the harness runs goes
//! through [`docker`], its errors are one type ([`DockerError`]), and the
//! container state is read from one `inspect` ([`State`]).
//!
//! Beside the compose CLI ([`crate::compose`]) it does what compose does not
//! do well: exec by container id (after a scale-up, `compose exec` picks a
//! replica by index, not the one we mean), copying a candidate file in, logs
//! since an instant, and reading what a container listens on.

use std::future::Future;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::process::Command;

use crate::poll::{poll_until, Attempt, PollError};

/// Errors from Docker or Compose, with the command and what it said.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon does not answer, or no Compose CLI is installed.
    #[error("Docker is not available ({why}). {fix}")]
    NoDocker { why: String, fix: &'static str },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` exited {code}: {stderr}")]
    Command {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("service {service} not healthy after {waited:?}: last status `{status}`; last health check: {health_log} / logs: {logs}")]
    NotHealthy {
        service: String,
        waited: Duration,
        status: String,
        health_log: String,
        /// The container's last log lines.
        logs: String,
    },
    #[error("{service}:{port} is not published (`port` said `{said}`)")]
    NotPublished {
        service: String,
        port: u16,
        said: String,
    },
    #[error("compose file {path}: {source}")]
    ComposeFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("`docker inspect {id}` printed something unexpected: {message}")]
    Inspect { id: String, message: String },
}

/// Output of a command (`docker ...`, or a command run in a container).
#[derive(Debug, Clone)]
pub struct Exec {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Exec {
    pub(crate) fn from_output(out: &std::process::Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `docker <args>`; a non-zero exit is returned, not an error.
pub async fn docker(args: &[&str]) -> Result<Exec, DockerError> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|source| DockerError::Spawn {
            command: format!("docker {}", args.join(" ")),
            source,
        })?;
    Ok(Exec::from_output(&out))
}

/// Like [`docker`], but a non-zero exit is an error; returns stdout.
pub async fn docker_ok(args: &[&str]) -> Result<String, DockerError> {
    let out = docker(args).await?;
    if out.code == 0 {
        Ok(out.stdout)
    } else {
        Err(DockerError::Command {
            command: format!("docker {}", args.join(" ")),
            code: out.code,
            stderr: tail(&out.stderr, 1500),
        })
    }
}

/// Whether the Docker daemon answers. Blocking on purpose: it runs once,
/// before anything starts, and also from synchronous constructors.
pub fn available() -> Result<(), DockerError> {
    let out = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(DockerError::NoDocker {
            why: format!(
                "the daemon did not answer: {}",
                tail(&String::from_utf8_lossy(&o.stderr), 400)
            ),
            fix: "Start Docker, or use `harness lint` for the static checks.",
        }),
        Err(e) => Err(DockerError::NoDocker {
            why: format!("cannot run `docker`: {e}"),
            fix: "Install Docker, or use `harness lint`.",
        }),
    }
}

/// Runs `cmd` in container `id`.
pub async fn exec(id: &str, cmd: &[&str]) -> Result<Exec, DockerError> {
    let mut args = vec!["exec", id];
    args.extend_from_slice(cmd);
    docker(&args).await
}

/// Copies a host file into a container.
pub async fn copy_in(
    id: &str,
    host: &std::path::Path,
    in_container: &str,
) -> Result<(), DockerError> {
    let src = host.to_string_lossy();
    let dst = format!("{id}:{in_container}");
    docker_ok(&["cp", &src, &dst]).await.map(|_| ())
}

/// stdout and stderr of a container since `since`.
pub async fn logs_since(id: &str, since: SystemTime) -> Result<String, DockerError> {
    let secs = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let since = format!("{secs:.3}");
    let out = docker(&["logs", "--since", &since, id]).await?;
    if out.code != 0 {
        return Err(DockerError::Command {
            command: format!("docker logs {id}"),
            code: out.code,
            stderr: out.stderr.trim().to_string(),
        });
    }
    Ok(format!("{}{}", out.stdout, out.stderr))
}

/// The last `lines` log lines of a container, stdout and stderr together
/// (empty when Docker cannot say: this is evidence, not a check).
pub async fn last_logs(id: &str, lines: u32) -> String {
    let n = lines.to_string();
    match docker(&["logs", "--tail", &n, id]).await {
        Ok(out) => format!("{}{}", out.stdout, out.stderr),
        Err(_) => String::new(),
    }
}

/// The TCP ports a container listens on, read from `/proc/net/tcp{,6}` in
/// its network namespace (works whatever tools the image has).
pub async fn listening_ports(id: &str) -> Result<Vec<u16>, DockerError> {
    let out = exec(id, &["cat", "/proc/net/tcp", "/proc/net/tcp6"]).await?;
    if out.code != 0 && out.stdout.is_empty() {
        return Err(DockerError::Command {
            command: format!("docker exec {id} cat /proc/net/tcp"),
            code: out.code,
            stderr: out.stderr.trim().to_string(),
        });
    }
    Ok(parse_listening(&out.stdout))
}

/// Ports in state LISTEN (`0A`) in `/proc/net/tcp` text.
pub fn parse_listening(proc_net_tcp: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = proc_net_tcp
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _slot = f.next()?;
            let local = f.next()?;
            let _remote = f.next()?;
            let state = f.next()?;
            if state != "0A" {
                return None;
            }
            let port_hex = local.rsplit(':').next()?;
            u16::from_str_radix(port_hex, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// A container's state, from one `docker inspect -f '{{json .State}}'`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// `created`, `running`, `exited`, `dead`, ...
    pub status: String,
    /// When it last started (changes on restart).
    #[serde(default)]
    pub started_at: String,
    /// Present when the image or compose file defines a healthcheck.
    #[serde(default)]
    pub health: Option<Health>,
}

/// Docker's healthcheck state.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    #[serde(default)]
    pub log: Option<Vec<HealthLog>>,
}

/// One healthcheck run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    #[serde(default)]
    pub output: String,
}

impl State {
    /// Parses the JSON of `{{json .State}}`.
    pub fn parse(id: &str, json: &str) -> Result<Self, DockerError> {
        serde_json::from_str(json.trim()).map_err(|e| DockerError::Inspect {
            id: id.to_string(),
            message: e.to_string(),
        })
    }

    /// Running, and healthy if it has a healthcheck.
    pub fn is_ready(&self) -> bool {
        self.status == "running" && self.health.as_ref().is_none_or(|h| h.status == "healthy")
    }

    /// Stopped for good: waiting longer will not make it healthy.
    pub fn has_exited(&self) -> bool {
        self.status == "exited" || self.status == "dead"
    }

    /// `running healthy`, `exited`: how the harness has always said it.
    pub fn summary(&self) -> String {
        match &self.health {
            Some(h) => format!("{} {}", self.status, h.status),
            None => self.status.clone(),
        }
    }

    /// What the healthchecks printed, oldest first.
    pub fn health_output(&self) -> String {
        self.health
            .iter()
            .flat_map(|h| h.log.iter().flatten())
            .map(|l| l.output.as_str())
            .collect()
    }
}

/// The state of container `id`.
pub async fn inspect_state(id: &str) -> Result<State, DockerError> {
    let json = docker_ok(&["inspect", "-f", "{{json .State}}", id]).await?;
    State::parse(id, &json)
}

/// The container's start time as docker reports it (changes on restart).
pub async fn started_at(id: &str) -> Result<String, DockerError> {
    inspect_state(id).await.map(|s| s.started_at)
}

/// How often [`wait_healthy`] looks.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// Waits until every container `ids()` lists is ready ([`State::is_ready`]),
/// re-listing each time (a service may not have its container yet). Fails
/// at once when one exits, and after `deadline` otherwise, with its last
/// status, healthcheck output and log lines.
pub async fn wait_healthy<F, Fut>(
    service: &str,
    deadline: Duration,
    mut ids: F,
) -> Result<(), DockerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<String>, DockerError>>,
{
    let started = tokio::time::Instant::now();
    // What the last look saw: (container, its state), or none listed yet.
    type Seen = Option<(String, State)>;
    let waited = poll_until(deadline, HEALTH_EVERY, || {
        let listed = ids();
        async move {
            let mut seen: Seen = None;
            let listed = listed.await?;
            for id in &listed {
                let state = inspect_state(id).await?;
                if state.has_exited() {
                    return Err(
                        not_healthy(service, started.elapsed(), Some((id.clone(), state))).await,
                    );
                }
                if !state.is_ready() {
                    seen = Some((id.clone(), state));
                }
            }
            Ok(match (listed.is_empty(), seen) {
                (false, None) => Attempt::Ready(()),
                (_, seen) => Attempt::NotYet(seen),
            })
        }
    })
    .await;
    match waited {
        Ok(()) => Ok(()),
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::TimedOut { waited, last }) => Err(not_healthy(service, waited, last).await),
    }
}

async fn not_healthy(
    service: &str,
    waited: Duration,
    seen: Option<(String, State)>,
) -> DockerError {
    let (status, health_log, logs) = match seen {
        Some((id, state)) => (
            state.summary(),
            tail(&state.health_output(), 400),
            tail(&last_logs(&id, 10).await, 800),
        ),
        None => ("no container".into(), String::new(), String::new()),
    };
    DockerError::NotHealthy {
        service: service.to_string(),
        waited,
        status,
        health_log,
        logs,
    }
}

/// The end of `s`, at most `max` bytes, trimmed.
pub(crate) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only LISTEN sockets count, from both tcp and tcp6 tables.
    #[test]
    fn parses_listening_ports() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F44 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F44 0100007F:A000 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   0: 00000000000000000000000000000000:1F45 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 3 1";
        assert_eq!(parse_listening(text), [8004, 8005]);
    }

    /// One inspect gives status, health and the healthcheck's output; a
    /// container without a healthcheck is ready once running.
    #[test]
    fn reads_state_json() {
        let s = State::parse(
            "c1",
            r#"{"Status":"running","StartedAt":"2026-11-27T07:00:00Z",
                "Health":{"Status":"starting","Log":[{"Output":"curl: (7) refused"}]}}"#,
        )
        .unwrap();
        assert_eq!(s.summary(), "running starting");
        assert!(!s.is_ready() && !s.has_exited());
        assert_eq!(s.health_output(), "curl: (7) refused");
        let plain = State::parse("c2", r#"{"Status":"running","Health":null}"#).unwrap();
        assert!(plain.is_ready());
        assert_eq!(plain.summary(), "running");
        let dead = State::parse("c3", r#"{"Status":"exited"}"#).unwrap();
        assert!(dead.has_exited());
    }

    /// Anything but JSON is an error naming the container.
    #[test]
    fn state_that_is_not_json_names_the_container() {
        let e = State::parse("abc", "running healthy").unwrap_err();
        assert!(e.to_string().contains("docker inspect abc"), "{e}");
    }

    /// The tail keeps the end and marks the cut on a char boundary.
    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("  short  ", 10), "short");
        assert_eq!(tail("abcdéfgh", 4), "...fgh");
    }
}
