//! Which backend runs a stack: a leaf, so that [`crate::scenario`] (which
//! lists the backends a scenario supports) does not depend on
//! [`crate::stack`], which depends on scenarios in turn.

/// What runs the stack.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Containers from docker-compose.test.yml on a private network.
    Containers,
    /// Host nginx, goproxy and the mock as processes on loopback.
    Local,
}
