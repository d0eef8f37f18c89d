//! Why `harness deploy` or `harness rollback` could not run, or a step of
//! theirs failed: the operator's project (its containers, mounts and
//! published port), the candidate files, the deploy state on disk.

use std::path::PathBuf;

use crate::docker::DockerError;
use crate::files::FilesError;
use crate::live::target::TargetError;
use crate::stack::StackError;

/// A failure of the production commands, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum ProdError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error("--compose-file is required")]
    NoComposeFile,
    #[error("--compose-file {}: {source}", path.display())]
    ComposeFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "container {id} has no file mounted at {inside}: `harness deploy` replaces the \
         bind-mounted file, so the compose file must mount it (as docker-compose.yml does)"
    )]
    NotMounted { id: String, inside: String },
    #[error("nginx does not publish 443 on this host (`docker port` said `{said}`)")]
    NotPublished { said: String },
    #[error("no running {service} container")]
    NoContainer { service: &'static str },
    #[error("{service} {id} is `{state}`: deploy only onto a healthy project")]
    Unhealthy {
        service: &'static str,
        id: String,
        state: String,
    },
    #[error(
        "the live file {} is outside the project directory {}: deploy replaces files \
         that the compose file mounts from its own directory",
        live.display(),
        project_dir.display()
    )]
    OutsideProject { live: PathBuf, project_dir: PathBuf },
    #[error(
        "the candidate {} does not exist: --candidate-dir must hold the new files laid \
         out like {}",
        candidate.display(),
        project_dir.display()
    )]
    NoCandidate {
        candidate: PathBuf,
        project_dir: PathBuf,
    },
    #[error(
        "the candidate {} is the live file itself: check the new version out elsewhere \
         (e.g. `git worktree add /tmp/next <ref>`) and pass --candidate-dir",
        candidate.display()
    )]
    CandidateIsLive { candidate: PathBuf },
    /// A goproxy config that goproxy itself would not load.
    #[error("{}: {source}", path.display())]
    GoproxyConfig {
        path: PathBuf,
        // Boxed: goproxy's config error is large, and every Result of
        // this layer would carry its size.
        source: Box<proxy::config::ConfigError>,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "create", "write", "read".
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the candidate in place: {0}")]
    WriteCandidate(#[source] std::io::Error),
    #[error(
        "cannot read {} ({source}): is this the deploy directory `harness deploy` printed?",
        path.display()
    )]
    NoState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a deploy state file: {source}", path.display())]
    BadState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} holds no backups: nothing to restore", dir.display())]
    NoBackups { dir: PathBuf },
    #[error(
        "`{given}` is not a deploy strategy: overlap (one goproxy) or rolling-restart \
         (goproxy and goproxy-b)"
    )]
    UnknownStrategy { given: String },
    /// The `--strategy` asked for does not fit the project's shape.
    #[error("{0}")]
    StrategyDoesNotFit(&'static str),
    #[error(
        "the candidate moves goproxy-b from {live} to {candidate}: a rolling restart \
         needs goproxy-b on its old port while goproxy restarts. Deploy goproxy's \
         change first, then goproxy-b's in a second deploy"
    )]
    SecondPortMoves { live: u16, candidate: u16 },
}

impl ProdError {
    /// An I/O failure on `path`.
    pub fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
