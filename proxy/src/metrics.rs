//! Prometheus metrics, rendered by hand in the text exposition format.
//!
//! Kept dependency-free: a few counters under one mutex each are cheap at
//! the request rates of an LLM proxy (requests last seconds, not microseconds).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::usage::Usage;

const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    tokens: Mutex<BTreeMap<(String, &'static str), u64>>,
    cost: Mutex<BTreeMap<String, f64>>,
    open_streams: AtomicI64,
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

impl Metrics {
    /// Empty metrics for one server.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a finished request by route and status.
    pub fn request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap()
            .entry((route, status))
            .or_default() += 1;
    }

    /// Time from sending upstream to its response headers.
    pub fn upstream_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Tokens and cost of one response.
    pub fn usage(&self, model: &str, usage: &Usage, cost: f64) {
        let mut t = self.tokens.lock().unwrap();
        for (kind, n) in [
            ("input", usage.input),
            ("output", usage.output),
            ("cache_write", usage.cache_write),
            ("cache_read", usage.cache_read),
        ] {
            *t.entry((model.to_string(), kind)).or_default() += n;
        }
        *self
            .cost
            .lock()
            .unwrap()
            .entry(model.to_string())
            .or_default() += cost;
    }

    /// A stream started (+1) or ended (-1).
    pub fn open_streams(&self, delta: i64) {
        self.open_streams.fetch_add(delta, Ordering::Relaxed);
    }

    /// Current number of open streams.
    pub fn open_stream_count(&self) -> i64 {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP goproxy_requests_total Requests by route and status.\n# TYPE goproxy_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "goproxy_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP goproxy_upstream_latency_seconds Time to upstream response headers.\n# TYPE goproxy_upstream_latency_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "goproxy_upstream_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "goproxy_upstream_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "goproxy_upstream_latency_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "goproxy_upstream_latency_seconds_count {count}");
        out.push_str("# HELP goproxy_tokens_total Tokens by model and kind.\n# TYPE goproxy_tokens_total counter\n");
        for ((model, kind), n) in self.tokens.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "goproxy_tokens_total{{model=\"{}\",kind=\"{kind}\"}} {n}",
                escape(model)
            );
        }
        out.push_str("# HELP goproxy_cost_total Priced cost by model (price unit of the config).\n# TYPE goproxy_cost_total counter\n");
        for (model, c) in self.cost.lock().unwrap().iter() {
            let _ = writeln!(out, "goproxy_cost_total{{model=\"{}\"}} {c}", escape(model));
        }
        out.push_str("# HELP goproxy_open_streams SSE streams being relayed.\n# TYPE goproxy_open_streams gauge\n");
        let _ = writeln!(out, "goproxy_open_streams {}", self.open_stream_count());
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
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
    }
}
