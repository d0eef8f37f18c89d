//! The request's own log line, for the answers no response body logs:
//! errors, routes that relay nothing, and requests the client abandoned
//! before their answer began. (A relayed answer is logged when its body
//! ends, `stream.rs` and `passthrough.rs`.)
//!
//! A failed relayed request still names its model and endpoint: the
//! handler notes them in [`Resolved`] as soon as it knows them. A request
//! whose handler is dropped unfinished (a client that closed, or reset
//! its HTTP/2 stream, while goproxy waited for the upstream, when its
//! answer is not read on for usage: `serve::after_client_left`) is
//! logged by [`Abandoned`] with status 499, nginx's "client closed
//! request"; dropping the handler cancels its upstream request. One
//! dropped by a panic is logged 500. When the upstream request went on
//! for the usage, or was refused that, the line's `read_on` says how it
//! ended ([`crate::gone`]).

use std::sync::OnceLock;

use http::Method;
use tokio::time::Instant;

use crate::app::App;
use crate::config::{Endpoint, Model};
use crate::gone::Gone;
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
        self.0.get().map_or(("", ""), |(m, e)| (&*m.id, &*e.name))
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
        self.write_read_on(status, None);
    }

    /// The request's line, with how reading on ended for a client that
    /// left before its answer began ([`crate::gone`]).
    pub fn write_read_on(&self, status: u16, read_on: Option<&str>) {
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
            read_on,
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
        if !self.armed {
            return;
        }
        // A handler unwinding from a panic is goproxy's fault, not a
        // client that left: 500, as the panic's own message says why.
        let status = if std::thread::panicking() { 500 } else { 499 };
        self.app.metrics.request(self.line.route, status);
        let read_on = match crate::gone::current() {
            Some(Gone::Dropped(end)) => Some(end.as_str()),
            _ => None,
        };
        self.line.write_read_on(status, read_on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secrets;
    use crate::config::Config;

    fn app() -> App {
        let config = Config::from_json(
            r#"{"port": 8004, "endpoints": [{"name":"openai","base_url":"http://127.0.0.1:1/v1/chat/completions"}],
                "models": [{"id":"m","type":"openai"}]}"#,
            "t",
        )
        .unwrap();
        App::new(config, Secrets::new(Vec::new(), Default::default())).unwrap()
    }

    /// An unfinished handler is the client's leaving (499), unless it was
    /// dropped by a panic (500: goproxy's fault); a finished one is not
    /// logged here.
    #[test]
    fn dropped_handlers_are_499_and_panicked_ones_500() {
        let app = app();
        let peer = Peer::new("127.0.0.1:9".parse().unwrap());
        let resolved = Resolved::default();
        let line = Line {
            id: 1,
            peer: &peer,
            method: &Method::POST,
            route: "/v1/chat/completions",
            started: Instant::now(),
            resolved: &resolved,
        };
        drop(Abandoned::new(&line, &app));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = Abandoned::new(&line, &app);
            panic!("a handler bug");
        }));
        assert!(panicked.is_err());
        Abandoned::new(&line, &app).disarm();
        let text = app.metrics.render();
        let count = |status| {
            format!(
                "goproxy_requests_total{{route=\"/v1/chat/completions\",status=\"{status}\"}} 1"
            )
        };
        assert!(text.contains(&count(499)), "{text}");
        assert!(text.contains(&count(500)), "{text}");
    }
}
