//! Prometheus metrics on `prometheus-client`, one registry per server so
//! several proxies in one process (tests) keep their counts apart.
//!
//! Names are the ones dashboards already use: `goproxy_requests_total`,
//! `goproxy_upstream_latency_seconds`, `goproxy_tokens_total`,
//! `goproxy_cost_total`, `goproxy_open_streams`. The text is OpenMetrics
//! (Prometheus reads it; it ends with `# EOF`).

use std::sync::atomic::AtomicU64;
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
struct TokenLabels {
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
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabel, Counter<f64, AtomicU64>>,
    open_streams: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics in a registry of their own.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_latency = Histogram::new(BUCKETS);
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost = Family::<ModelLabel, Counter<f64, AtomicU64>>::default();
        let open_streams = Gauge::default();
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
        Metrics {
            registry,
            requests,
            upstream_latency,
            tokens,
            cost,
            open_streams,
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

    /// Tokens and cost of one response.
    pub fn usage(&self, model: &str, usage: &Usage, cost: f64) {
        for (kind, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cache_write", usage.cache_write),
            ("cache_read", usage.cache_read),
        ] {
            let labels = TokenLabels {
                model: model.to_string(),
                kind,
            };
            self.tokens.get_or_create(&labels).inc_by(n);
        }
        let labels = ModelLabel {
            model: model.to_string(),
        };
        self.cost.get_or_create(&labels).inc_by(cost);
    }

    /// A stream started (+1) or ended (-1).
    pub fn open_streams(&self, delta: i64) {
        self.open_streams.inc_by(delta);
    }

    /// Current number of open streams.
    pub fn open_stream_count(&self) -> i64 {
        self.open_streams.get()
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
        assert!(text.ends_with("# EOF\n"), "{text}");
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
