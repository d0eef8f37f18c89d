//! The shared state of one server: config, keys, the upstream client,
//! metrics and the drain signals. A leaf for the request path (routes,
//! forward, conn), which the accept loop in [`crate::server`] builds.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::auth::Secrets;
use crate::body_budget::BodyBudget;
use crate::cancel::Cut;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::read_on::ReadOnPolicy;
use crate::upstream::Upstream;

/// Shared state of one server.
#[derive(Debug)]
pub struct App {
    /// The validated config.
    pub config: Config,
    /// Client and upstream keys.
    pub secrets: Arc<Secrets>,
    /// The upstream client and key rings.
    pub upstream: Upstream,
    /// This server's metrics (one registry per server).
    pub metrics: Arc<Metrics>,
    /// Start time, for `/health` uptime.
    pub started: Instant,
    /// `/health` answers 503 once set.
    pub draining: AtomicBool,
    /// Request ids for log correlation.
    pub next_id: AtomicU64,
    /// Cancelled when the listener closes: connections finish and close.
    pub drain: Cut,
    /// Cancelled when the drain timeout is reached: open streams end with an
    /// error event and are logged as `drain_cut`.
    pub cut: Cut,
    /// The connections, and the answers read on after their client left
    /// ([`crate::read_on`]): the drain waits for all of them.
    pub tasks: TaskTracker,
    /// How answers are read on after their client left.
    pub read_on: ReadOnPolicy,
    /// Request body bytes all requests may hold at once.
    pub body_budget: BodyBudget,
    /// Client connections: `max_connections`, and idle ones closed to
    /// make room.
    pub admission: Admission,
}

impl App {
    /// A server's state for `config` and `secrets`, not draining; fails
    /// only if the upstream HTTP client cannot be built.
    pub fn new(config: Config, secrets: Secrets) -> Result<Self, rustls::Error> {
        let tasks = TaskTracker::new();
        let config_budget = config.max_body_bytes_in_flight;
        let config_connections = config.max_connections;
        Ok(App {
            read_on: ReadOnPolicy::new(config.read_on_after_disconnect, tasks.clone()),
            upstream: Upstream::new(&config, &secrets)?,
            metrics: Arc::new(Metrics::with_models(config.models().iter().map(|m| &*m.id))),
            config,
            secrets: Arc::new(secrets),
            started: Instant::now(),
            draining: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            drain: Cut::new(),
            cut: Cut::new(),
            tasks,
            body_budget: BodyBudget::new(config_budget),
            admission: Admission::new(config_connections),
        })
    }
}
