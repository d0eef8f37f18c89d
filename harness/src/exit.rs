//! Exit codes of the errors that end a command before any verdict, beside
//! [`Verdict::exit_code`](crate::report::Verdict::exit_code) for the ones
//! that end with a verdict. Bad input and an unusable environment are
//! [`EXIT_USAGE`]; a stack that fails to come up is 1, like a no-go.

use crate::docker::DockerError;
use crate::report::EXIT_USAGE;
use crate::scenario::ScenarioError;

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

/// Prints `harness: <error>` on stderr and returns its exit code.
pub fn fail(err: &impl ExitCode) -> i32 {
    eprintln!("harness: {err}");
    err.exit_code()
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
