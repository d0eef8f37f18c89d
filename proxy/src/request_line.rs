//! The request's own log line, for the answers no response body logs:
//! errors, routes that relay nothing, and requests the client abandoned
//! before their answer began. (A relayed answer is logged when its body
//! ends, `stream.rs` and `passthrough.rs`.)
//!
//! A failed relayed request still names its model and endpoint: the
//! handler notes them in [`Resolved`] as soon as it knows them. A request
//! whose handler is dropped unfinished (an HTTP/1.1 client that closed
//! while goproxy waited for the upstream, an HTTP/2 stream reset) is
//! logged by [`Abandoned`] with status 499, nginx's "client closed
//! request"; dropping the handler cancels its upstream request.

use std::sync::OnceLock;

use http::Method;
use tokio::time::Instant;

use crate::app::App;
use crate::config::{Endpoint, Model};
use crate::peer::Peer;

/// The model and endpoint a relayed request resolved to, once known.
#[derive(Debug, Default)]
pub struct Resolved<'a>(OnceLock<(&'a Model, &'a Endpoint)>);

impl<'a> Resolved<'a> {
    /// Note what the request resolved to (the first call counts).
    pub fn set(&self, model: &'a Model, endpoint: &'a Endpoint) {
        let _ = self.0.set((model, endpoint));
    }

    /// The model id and endpoint name, or empty strings.
    pub fn names(&self) -> (&str, &str) {
        self.0
            .get()
            .map_or(("", ""), |(m, e)| (m.id.as_str(), e.name.as_str()))
    }
}

/// What every request line carries.
#[derive(Debug)]
pub struct Line<'a> {
    pub id: u64,
    pub peer: &'a Peer,
    pub method: &'a Method,
    pub route: &'static str,
    pub started: Instant,
    pub resolved: &'a Resolved<'a>,
}

impl Line<'_> {
    /// The request's line at INFO, with its status.
    pub fn write(&self, status: u16) {
        let (model, endpoint) = self.resolved.names();
        let latency_ms = crate::log_line::millis(self.started.elapsed());
        tracing::info!(
            request_id = self.id,
            peer = %self.peer,
            method = %self.method,
            route = self.route,
            status,
            model,
            endpoint,
            latency_ms,
            "request"
        );
    }
}

/// Logs the request as abandoned (499) if dropped before [`Abandoned::disarm`].
#[derive(Debug)]
pub struct Abandoned<'a> {
    line: &'a Line<'a>,
    app: &'a App,
    armed: bool,
}

impl<'a> Abandoned<'a> {
    pub fn new(line: &'a Line<'a>, app: &'a App) -> Self {
        Abandoned {
            line,
            app,
            armed: true,
        }
    }

    /// The handler finished: its answer is logged the usual way.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.app.metrics.request(self.line.route, 499);
            self.line.write(499);
        }
    }
}
