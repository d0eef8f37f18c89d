//! The stack layer's one error type: what failed on a running stack, with
//! what the operator needs to act on it (the container or process, the
//! command, the URL, and the tool's own words).
//!
//! Each message reads whole on its own (the phases quote it as a check's
//! evidence); a wrapped cause is also kept as the error's `source()`, so
//! the CLI edge can match on it (no Docker -> exit 2).

use std::path::PathBuf;
use std::time::Duration;

use crate::docker::DockerError;

/// A failed operation on a stack, whichever backend runs it.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A `docker` or compose command failed (its command and stderr).
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// `docker compose up` of the test stack failed.
    // Boxed where the Docker error sits beside other fields: the enum stays
    // small for every `Result` of the layer.
    #[error("docker compose up failed: {0}")]
    ComposeUp(#[source] Box<DockerError>),
    /// nginx did not start; `said` is nginx's own `nginx -t` output.
    #[error("nginx did not start; nginx -t says: {said} ({source})")]
    NginxDidNotStart {
        said: String,
        source: Box<DockerError>,
    },
    /// No running container of a service, or more than the one expected.
    #[error("{}", containers_message(service, *count))]
    NotOneContainer { service: String, count: usize },
    /// A kept project whose nginx is gone.
    #[error("compose project {project} has no running nginx: was it taken down?")]
    TakenDown { project: String },
    /// `compose up --scale` returned without a new goproxy container.
    #[error("compose did not start a new goproxy container")]
    NoNewContainer,
    /// A goproxy instance the backend does not know.
    #[error("no goproxy {id}")]
    NoSuchGoproxy { id: String },
    /// `nginx -t` or `nginx -s reload` exited non-zero.
    #[error("nginx {step} exited {code}: {stderr}")]
    NginxFailed {
        step: &'static str,
        code: i32,
        stderr: String,
    },
    /// goproxy exited while starting; its last log lines.
    #[error("goproxy exited at start{}: {logs}", status.as_ref().map(|s| format!(" ({s})")).unwrap_or_default())]
    ExitedAtStart {
        status: Option<String>,
        logs: String,
    },
    /// A wait ran out: what was waited for, how long, and what was seen last.
    #[error("{what} after {after:?}{last}")]
    Timeout {
        what: String,
        after: Duration,
        /// What the last look saw, with its own separator (`; last state:
        /// starting`, `: ` and the last log lines), or empty.
        last: String,
    },
    /// `up -d --build goproxy` left the same goproxy process running.
    #[error(
        "`up -d --build goproxy` did not restart goproxy (same container, \
         started {started}): compose does not see a change in a bind-mounted \
         config file, so the old process keeps the old port. Use \
         `up -d --force-recreate goproxy` or `restart goproxy`{also}."
    )]
    NotRestarted { started: String, also: String },
    /// After the design's restart no single goproxy runs (and what else
    /// compose recreated).
    #[error("{source}{also}")]
    AfterRestart {
        source: Box<StackError>,
        also: &'static str,
    },
    /// A goproxy process stopped badly (its exit status, its log).
    #[error("goproxy {id} {how}")]
    Stop { id: String, how: String },
    /// An HTTP request failed before any answer.
    #[error("{what}: {source}")]
    Http {
        what: String,
        source: reqwest::Error,
    },
    /// An HTTP answer with the wrong status (or curl's view of it).
    #[error("{what} -> {said}")]
    HttpStatus { what: String, said: String },
    /// A TCP connection that could not be opened.
    #[error("{target}: {why}")]
    Unreachable { target: String, why: String },
    /// A file or directory of the run that could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A program that could not be started at all.
    #[error("cannot {action} {program}: {source}")]
    Spawn {
        action: &'static str,
        program: String,
        source: std::io::Error,
    },
    /// A port that could not be bound (wiremock, a squatter, a free port).
    #[error("{what}: {source}")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    /// The run's TLS material or HTTP client could not be made.
    #[error("{what}: {source}")]
    Tls {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A program the local backend needs is missing: how to get it.
    #[error("{0}")]
    Missing(&'static str),
    /// What this backend never does (a fault in production, two instances
    /// as local processes), or a call that does not fit it.
    #[error("{0}")]
    Unsupported(String),
    /// The stack's streaming mock refused or missed its config.
    #[error("mock refused its config: HTTP {status}")]
    MockRefused { status: reqwest::StatusCode },
    /// Old nginx workers still ran at the stream bound.
    #[error(
        "{progress}; still running after the {bound:?} bound: raise \
         --stream-bound if streams really last that long"
    )]
    WorkersLeft { progress: String, bound: Duration },
}

fn containers_message(service: &str, count: usize) -> String {
    if count == 0 {
        format!("no running container for service {service}")
    } else {
        format!("{count} containers for service {service}, expected one")
    }
}

impl StackError {
    /// An I/O failure on `path` ("read", "write", "create").
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether Docker itself is missing (the CLI exits 2 for it).
    pub fn is_no_docker(&self) -> bool {
        matches!(self, Self::Docker(DockerError::NoDocker { .. }))
    }
}
