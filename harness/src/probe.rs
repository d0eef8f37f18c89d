//! Why a probe of a deployment failed: the request that got no answer, the
//! HTTP status and body that were wrong, the answer that did not match.
//!
//! The probes of `verify`, `traffic`, `pre` and `live` return it, and a
//! check records its message as the failed check's evidence, so each
//! message names the request and what came back.

use std::time::Duration;

use crate::stack::StackError;

/// A failed probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The request got no answer (connection, TLS, timeout, a broken body).
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: reqwest::Error,
    },
    /// The request got no answer, said in the operator's terms (a refused
    /// connection, a certificate problem) rather than reqwest's.
    #[error("{what}: {why}")]
    NoAnswer { what: String, why: String },
    /// An answer with the wrong HTTP status; `detail` carries its own
    /// separator (`: <body>`, `, port 8004`) or is empty.
    #[error("{}HTTP {status}{detail}", prefix(what))]
    Status {
        what: String,
        status: reqwest::StatusCode,
        detail: String,
    },
    /// A body that does not parse as what the route must answer.
    #[error("{what} is not JSON ({source}): {body}")]
    NotJson {
        what: String,
        source: serde_json::Error,
        body: String,
    },
    /// An answer that arrived but is not what the deployment must give
    /// (the wrong port, a stream without `[DONE]`, a buffered stream).
    #[error("{0}")]
    Mismatch(String),
    /// Nothing arrived in time.
    #[error("{what} after {after:?}{last}")]
    Timeout {
        what: String,
        after: Duration,
        /// What was seen last, with its separator, or empty.
        last: String,
    },
    /// goproxy cannot reach its upstream: the chat probes' failures are
    /// the upstream's, not the deployment's.
    #[error(
        "the LLM upstream is unreachable from goproxy ({source}): \
         chat failures come from the upstream, not from the deployment"
    )]
    UpstreamDown { source: StackError },
    /// The stack operation the probe needed (listening ports, logs).
    #[error(transparent)]
    Stack(#[from] StackError),
}

/// `what: ` before a status, nothing when the request needs no name (the
/// steady client's failures are all the same request).
fn prefix(what: &str) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    }
}

impl ProbeError {
    /// A request that got no answer.
    pub fn request(what: impl Into<String>, source: reqwest::Error) -> Self {
        Self::Request {
            what: what.into(),
            source,
        }
    }

    /// A wrong status with its detail (separator included).
    pub fn status(
        what: impl Into<String>,
        status: reqwest::StatusCode,
        detail: impl Into<String>,
    ) -> Self {
        Self::Status {
            what: what.into(),
            status,
            detail: detail.into(),
        }
    }

    /// An answer that is not the one expected.
    pub fn mismatch(what: impl Into<String>) -> Self {
        Self::Mismatch(what.into())
    }
}

/// `mismatch!("...", args)`: a [`ProbeError::Mismatch`] with a formatted
/// message, where the answer arrived but is wrong.
macro_rules! mismatch {
    ($($arg:tt)*) => {
        $crate::probe::ProbeError::Mismatch(format!($($arg)*))
    };
}
pub(crate) use mismatch;
