//! A mock LLM upstream for goproxy's tests and test stack.
//!
//! It speaks just enough of the OpenAI (`POST /v1/chat/completions`) and
//! Anthropic (`POST /v1/messages`) APIs for a relay to be exercised: with
//! `"stream": true` it sends Server-Sent Events spaced by a configurable
//! delay (which wiremock cannot do), reports token usage the way each
//! provider does, echoes the request's `model`, records every request, and
//! can inject faults (an error status, a stream cut mid-way, a hang).
//!
//! # Layout
//!
//! - [`config`]: [`MockConfig`] and [`Fault`], what the next request gets.
//! - `routes`: the HTTP routes and the SSE bodies.
//! - this file: [`MockUpstream`], the server handle, and [`RecordedRequest`].
//!
//! # Routes
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/chat/completions` | OpenAI chat completion, or `chat.completion.chunk` events + usage + `data: [DONE]` |
//! | `POST /v1/messages` | Anthropic message, or `message_start` .. `message_stop` events |
//! | `GET /v1/models` | an OpenAI-style model list |
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET`/`DELETE /__mock/requests` | the recorded requests (the newest 1024) / forget them |
//! | `GET`/`PUT /__mock/config` | the current [`MockConfig`] / replace it |
//!
//! # Trying the binary
//!
//! ```text
//! cargo run -p mock-upstream -- --listen 127.0.0.1:9000 --chunk-delay-ms 200
//! curl -N localhost:9000/v1/chat/completions -d '{"model":"m","stream":true}'
//! ```
//!
//! # In a test
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_upstream::{MockConfig, MockUpstream};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let mock = MockUpstream::start(listener, MockConfig::default()).await?;
//! let endpoint = mock.url("/v1/chat/completions");
//! // ... point the code under test at `endpoint`, then:
//! assert!(mock.requests().is_empty());
//! # Ok(()) }
//! ```

pub mod config;
mod routes;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub use config::{Fault, MockConfig};

/// A request the mock received (admin routes and `/health` excepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path with the query string, if any.
    pub path: String,
    /// Headers in arrival order; names are lower case.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; a JSON string holding the raw text when it
    /// was not JSON; `null` when empty.
    pub body: serde_json::Value,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Requests kept for [`MockUpstream::requests`]: the newest this many.
/// Bounded because a bench sends millions through one mock; a test looks
/// at a handful.
pub const MAX_RECORDED: usize = 1024;

/// A request as recorded: the body stays raw bytes (a reference count, no
/// copy) and is parsed only when a test asks for it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) raw: bytes::Bytes,
}

impl Recorded {
    fn public(&self) -> RecordedRequest {
        RecordedRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            body: routes::body_value(&self.raw),
        }
    }
}

/// State shared by the handle and every connection.
#[derive(Debug)]
pub(crate) struct State {
    config: Mutex<MockConfig>,
    requests: Mutex<VecDeque<Recorded>>,
    /// Numbers response ids so each answer is distinguishable.
    next_id: AtomicU64,
}

impl State {
    // A panic while holding these locks cannot leave the data half-updated
    // (each critical section is a single push/clone/assignment), so a poisoned
    // lock is simply taken over.
    fn lock_requests(&self) -> MutexGuard<'_, VecDeque<Recorded>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `r`, dropping the oldest beyond [`MAX_RECORDED`].
    pub(crate) fn record(&self, r: Recorded) {
        let mut requests = self.lock_requests();
        if requests.len() == MAX_RECORDED {
            requests.pop_front();
        }
        requests.push_back(r);
    }

    /// The recorded requests, oldest first, bodies parsed.
    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        let kept: Vec<Recorded> = self.lock_requests().iter().cloned().collect();
        kept.iter().map(Recorded::public).collect()
    }

    fn lock_config(&self) -> MutexGuard<'_, MockConfig> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> MockConfig {
        self.lock_config().clone()
    }
}

/// A running mock upstream. Dropping it stops the server and closes every
/// open connection (hanging and streaming ones included).
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl MockUpstream {
    /// Serves on `listener` (bind `127.0.0.1:0` in tests) until dropped.
    pub async fn start(listener: TcpListener, config: MockConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            config: Mutex::new(config),
            requests: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`; an unspecified listen address (`0.0.0.0`)
    /// is replaced with `127.0.0.1` so the URL is usable as is.
    pub fn url(&self, path: &str) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}{path}")
    }

    /// The requests received so far (the newest [`MAX_RECORDED`]), oldest
    /// first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorded()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.lock_requests().clear();
    }

    /// Replaces the behaviour for requests that arrive from now on.
    pub fn set_config(&self, config: MockConfig) {
        *self.state.lock_config() = config;
    }

    /// The current behaviour.
    pub fn config(&self) -> MockConfig {
        self.state.config()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task with it.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends are transient; back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |req| routes::handle(req, Arc::clone(&state)));
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
