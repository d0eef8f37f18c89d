//! Exit codes of the errors that end a command before any verdict, beside
//! [`Verdict::exit_code`](crate::report::Verdict::exit_code) for the ones
//! that end with a verdict. Bad input and an unusable environment are
//! [`EXIT_USAGE`]; a stack that fails to come up is 1, like a no-go.
//!
//! The subcommands return `anyhow::Result`; [`fail`] is the one place an
//! error is printed (its whole chain) and turned into the exit code.

use std::fmt;

use crate::docker::DockerError;
use crate::report::EXIT_USAGE;
use crate::scenario::ScenarioError;
use crate::stack::StackError;

/// Exit code when the stack could not be started or driven.
pub const EXIT_STACK: i32 = 1;

/// The process exit code an error ends a command with.
pub trait ExitCode: std::error::Error {
    fn exit_code(&self) -> i32;
}

impl ExitCode for ScenarioError {
    /// The scenario file is the operator's input.
    fn exit_code(&self) -> i32 {
        EXIT_USAGE
    }
}

impl ExitCode for DockerError {
    fn exit_code(&self) -> i32 {
        match self {
            // The environment or the compose file named on the command line.
            DockerError::NoDocker { .. } | DockerError::ComposeFile { .. } => EXIT_USAGE,
            _ => EXIT_STACK,
        }
    }
}

impl ExitCode for StackError {
    /// No Docker is the environment's (2); anything else the stack's (1).
    fn exit_code(&self) -> i32 {
        match self {
            StackError::Docker(d) => d.exit_code(),
            _ => EXIT_STACK,
        }
    }
}

/// What a command was doing when an error ended it, in the operator's
/// words, and the exit code the command gives that failure whatever its
/// kind (`harness up` whose stack does not come up exits 1). Attached with
/// `with_context`; the outermost one decides.
#[derive(Debug, Clone)]
pub struct Doing {
    pub what: String,
    pub code: i32,
}

impl Doing {
    /// Starting or driving a stack failed (exit 1, like a no-go).
    pub fn stack(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            code: EXIT_STACK,
        }
    }

    /// The operator's input is at fault (exit 2).
    pub fn input(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            code: EXIT_USAGE,
        }
    }
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// Bad input said in one sentence (a flag's value, a missing directory).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The exit code of an error that ended a command: the command's own
/// [`Doing`] if it gave one; else the first error in the chain whose kind
/// decides (no Docker -> 2, a container that does not come up -> 1, a bad
/// scenario file -> 2); else [`EXIT_USAGE`], since what fails before a
/// verdict is the operator's input (a file, a flag, a directory).
pub fn code_of(err: &anyhow::Error) -> i32 {
    if let Some(doing) = err.downcast_ref::<Doing>() {
        return doing.code;
    }
    err.chain()
        .find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<DockerError>() {
                Some(e.exit_code())
            } else if let Some(e) = cause.downcast_ref::<StackError>() {
                Some(e.exit_code())
            } else {
                cause.downcast_ref::<ScenarioError>().map(|e| e.exit_code())
            }
        })
        .unwrap_or(EXIT_USAGE)
}

/// The error and its causes on one line, outermost first. Not anyhow's
/// `{:#}` as is: the harness's typed errors quote their cause in their own
/// message (a check's evidence shows one message, whole), so a cause
/// already said is not repeated.
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let said = cause.to_string();
        if said.is_empty() || out.contains(&said) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&said);
    }
    out
}

/// Prints `harness: <error chain>` on stderr and returns its exit code:
/// the one place an error that ends a command is shown.
pub fn fail(err: &anyhow::Error) -> i32 {
    eprintln!("harness: {}", chain(err));
    code_of(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No Docker is the environment's fault (2); a container that does not
    /// come up is the stack's (1).
    #[test]
    fn docker_errors_split_by_who_must_act() {
        let no_docker = DockerError::NoDocker {
            why: "the daemon did not answer".into(),
            fix: "Start Docker.",
        };
        assert_eq!(no_docker.exit_code(), EXIT_USAGE);
        let unhealthy = DockerError::NotHealthy {
            service: "nginx".into(),
            waited: std::time::Duration::from_secs(1),
            status: "exited".into(),
            health_log: String::new(),
            logs: String::new(),
        };
        assert_eq!(unhealthy.exit_code(), EXIT_STACK);
    }

    /// At the edge, the command's own code wins; otherwise the kind of a
    /// Docker error decides through the stack layer's wrapper, and what
    /// is left is bad input.
    #[test]
    fn the_exit_code_follows_the_command_then_the_kind() {
        let no_docker = || DockerError::NoDocker {
            why: "cannot run `docker`".into(),
            fix: "Install Docker.",
        };
        let e = anyhow::Error::new(StackError::from(no_docker())).context("--backend containers");
        assert_eq!(code_of(&e), EXIT_USAGE);
        let failed = DockerError::Command {
            command: "docker compose up -d".into(),
            code: 1,
            stderr: "port is already allocated".into(),
        };
        let e = anyhow::Error::new(StackError::ComposeUp(Box::new(failed)));
        assert_eq!(code_of(&e), EXIT_STACK);
        let e = anyhow::Error::new(StackError::from(no_docker())).context(Doing::stack("up"));
        assert_eq!(code_of(&e), EXIT_STACK);
        let e = anyhow::Error::new(Usage("--base-dir /x: not a directory".into()));
        assert_eq!(code_of(&e), EXIT_USAGE);
    }

    /// The printed chain has the context first and says each cause once,
    /// though the typed error quotes its own cause.
    #[test]
    fn the_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(StackError::io("read", "/run/x/nginx.conf", io))
            .context(Doing::stack("starting the start state of scenario s"));
        assert_eq!(
            chain(&e),
            "starting the start state of scenario s: cannot read /run/x/nginx.conf: gone"
        );
    }

    /// A bad scenario file is bad input.
    #[test]
    fn scenario_errors_are_usage_errors() {
        let e = ScenarioError::Parse {
            path: "scenarios/x.toml".into(),
            message: "expected `=`".into(),
        };
        assert_eq!(e.exit_code(), EXIT_USAGE);
    }
}
