//! Prometheus metrics on `prometheus-client`, one registry per server so
//! several proxies in one process (tests) keep their counts apart.
//!
//! Names are the ones dashboards already use: `goproxy_requests_total`,
//! `goproxy_upstream_latency_seconds`, `goproxy_tokens_total`,
//! `goproxy_cost_total`, `goproxy_open_streams`; and what the limits hold,
//! `goproxy_open_connections` and `goproxy_body_bytes_in_flight`. The text is OpenMetrics
//! (Prometheus reads it; it ends with `# EOF`).

use foldhash::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::usage::Usage;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelKindLabels {
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

/// One server's metrics and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_latency: Histogram,
    tokens: Family<ModelKindLabels, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    open_streams: Gauge,
    open_connections: Gauge,
    body_bytes_in_flight: Gauge,
    upstream_error_answers: Family<ModelKindLabels, Counter>,
    /// Usage counters per configured model, resolved on first use.
    by_model: HashMap<String, OnceLock<ModelCounters>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics in a registry of their own.
    pub fn new() -> Self {
        Self::with_models(std::iter::empty())
    }

    /// Empty metrics that cache the usage counters of these models (their
    /// series still appear only once a response of theirs was recorded).
    pub fn with_models<'a>(models: impl Iterator<Item = &'a str>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_latency = Histogram::new(BUCKETS);
        let tokens = Family::<ModelKindLabels, Counter>::default();
        let cost = Family::<ModelLabel, Counter<f64, AtomicU64>>::default();
        let open_streams = Gauge::default();
        let open_connections = Gauge::default();
        let body_bytes_in_flight = Gauge::default();
        let upstream_error_answers = Family::<ModelKindLabels, Counter>::default();
        // Counters get `_total` appended by the registry.
        registry.register(
            "goproxy_requests",
            "Requests by route and status",
            requests.clone(),
        );
        registry.register(
            "goproxy_upstream_latency_seconds",
            "Time to upstream response headers",
            upstream_latency.clone(),
        );
        registry.register("goproxy_tokens", "Tokens by model and kind", tokens.clone());
        registry.register(
            "goproxy_cost",
            "Priced cost by model (price unit of the config)",
            cost.clone(),
        );
        registry.register(
            "goproxy_open_streams",
            "SSE streams being relayed",
            open_streams.clone(),
        );
        registry.register(
            "goproxy_open_connections",
            "Client connections open (at most max_connections)",
            open_connections.clone(),
        );
        registry.register(
            "goproxy_body_bytes_in_flight",
            "Request body bytes held (at most max_body_bytes_in_flight)",
            body_bytes_in_flight.clone(),
        );
        registry.register(
            "goproxy_upstream_error_answers",
            "Answers relayed with a 2xx status in which the upstream reported an error, by model and kind (event: in a stream; body: the whole body)",
            upstream_error_answers.clone(),
        );
        Metrics {
            registry,
            requests,
            upstream_latency,
            tokens,
            cost,
            open_streams,
            open_connections,
            body_bytes_in_flight,
            upstream_error_answers,
            by_model: models.map(|m| (m.to_string(), OnceLock::new())).collect(),
        }
    }

    /// Count a finished request by route and status.
    pub fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Time from sending upstream to its response headers.
    pub fn upstream_latency(&self, d: Duration) {
        self.upstream_latency.observe(d.as_secs_f64());
    }

    /// Tokens and cost of one response. A model named in
    /// [`Metrics::with_models`] resolves its counters on its first response
    /// only; later ones cost no allocation (a label set owns the model name).
    pub fn usage(&self, model: &str, usage: &Usage, cost: f64) {
        match self.by_model.get(model) {
            Some(cell) => cell.get_or_init(|| self.model(model)).record(usage, cost),
            None => self.model(model).record(usage, cost),
        }
    }

    /// The token and cost counters of `model`.
    fn model(&self, model: &str) -> ModelCounters {
        let token = |kind| {
            let labels = ModelKindLabels {
                model: model.to_string(),
                kind,
            };
            self.tokens.get_or_create(&labels).clone()
        };
        let cost = ModelLabel {
            model: model.to_string(),
        };
        ModelCounters {
            input: token("input"),
            output: token("output"),
            cache_write: token("cache_write"),
            cache_read: token("cache_read"),
            cost: self.cost.get_or_create(&cost).clone(),
        }
    }

    /// An answer relayed as a success in which the upstream reported an
    /// error (`kind`: `event` in a stream, `body` the whole body). Rare:
    /// its label set is built each time.
    pub fn upstream_error_answer(&self, model: &str, kind: &'static str) {
        let labels = ModelKindLabels {
            model: model.to_string(),
            kind,
        };
        self.upstream_error_answers.get_or_create(&labels).inc();
    }

    /// A stream started (+1) or ended (-1).
    pub fn open_streams(&self, delta: i64) {
        self.open_streams.inc_by(delta);
    }

    /// Current number of open streams.
    pub fn open_stream_count(&self) -> i64 {
        self.open_streams.get()
    }

    /// Set the gauges read off the limits at scrape time (nothing on the
    /// request path counts them twice).
    pub fn set_limits_in_use(&self, connections: usize, body_bytes: usize) {
        self.open_connections.set(connections as i64);
        self.body_bytes_in_flight.set(body_bytes as i64);
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One model's token and cost counters (handles into [`Metrics`]).
#[derive(Debug, Clone)]
pub struct ModelCounters {
    input: Counter,
    output: Counter,
    cache_write: Counter,
    cache_read: Counter,
    cost: Counter<f64, AtomicU64>,
}

impl ModelCounters {
    /// Add one response's tokens and cost.
    pub fn record(&self, usage: &Usage, cost: f64) {
        self.input.inc_by(usage.input);
        self.output.inc_by(usage.output);
        self.cache_write.inc_by(usage.cache_write);
        self.cache_read.inc_by(usage.cache_read);
        self.cost.inc_by(cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        m.request("/v1/messages", 200);
        m.upstream_latency(Duration::from_millis(30));
        m.usage(
            "claude",
            &Usage {
                input: 3,
                output: 4,
                ..Default::default()
            },
            0.5,
        );
        let text = m.render();
        assert!(text.contains("goproxy_requests_total{route=\"/v1/messages\",status=\"200\"} 1"));
        assert!(text.contains("goproxy_upstream_latency_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("goproxy_upstream_latency_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("goproxy_tokens_total{model=\"claude\",kind=\"output\"} 4"));
        assert!(text.contains("goproxy_cost_total{model=\"claude\"} 0.5"));
        m.upstream_error_answer("claude", "event");
        let text = m.render();
        assert!(
            text.contains(
                "goproxy_upstream_error_answers_total{model=\"claude\",kind=\"event\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// A configured model's cached counters add up like uncached ones, and
    /// its series appear only once it had a response.
    #[test]
    fn cached_model_counters_count() {
        let m = Metrics::with_models(["claude"].into_iter());
        assert!(!m.render().contains("goproxy_tokens_total"));
        let u = Usage {
            input: 3,
            output: 4,
            ..Default::default()
        };
        m.usage("claude", &u, 0.5);
        m.usage("claude", &u, 0.25);
        m.usage("other", &u, 1.0);
        let text = m.render();
        assert!(text.contains("goproxy_tokens_total{model=\"claude\",kind=\"input\"} 6"));
        assert!(text.contains("goproxy_cost_total{model=\"claude\"} 0.75"));
        assert!(text.contains("goproxy_tokens_total{model=\"other\",kind=\"output\"} 4"));
    }

    /// Two servers in one process count apart (a registry each).
    #[test]
    fn registries_are_per_server() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.request("/health", 200);
        assert!(a
            .render()
            .contains("goproxy_requests_total{route=\"/health\",status=\"200\"} 1"));
        assert!(!b.render().contains("route=\"/health\""));
    }
}
