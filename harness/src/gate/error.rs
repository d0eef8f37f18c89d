//! Why the gate could not prepare or drive a run, before a check could say
//! so: the run directory, the mocks, the rendered configs.

use crate::render::RenderError;
use crate::stack::StackError;

/// A failure of the gate's own preparation (not a failed check).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error("cannot {what} the mock upstream: {source}")]
    Mock {
        /// "bind", "start".
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot render the configs: {0}")]
    Render(#[source] RenderError),
    #[error("cannot make a run directory: {0}")]
    RunDir(#[source] std::io::Error),
    #[error("cannot write the {what}: {source}")]
    Write {
        /// "run's files", "candidate files".
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the rendered goproxy config does not load: {0}")]
    ConfigDoesNotLoad(#[source] proxy::config::ConfigError),
    #[error("no model of the config is served in OpenAI format by the mock upstream")]
    NoStreamModel,
    #[error("the squatter never listened on {port}")]
    SquatterNeverListened { port: u16 },
}
