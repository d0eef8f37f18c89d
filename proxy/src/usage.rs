//! Token usage read from upstream bodies and SSE events, and its price.

use serde::Deserialize;
use serde_json::Value;

use crate::config::Prices;
use crate::usage_counts::Counts;

/// Token counts of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens written to the prompt cache.
    pub cache_write: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
}

/// Most tokens one response can count in any field: 100 million, ten
/// times the largest context window offered today.
pub const MAX_TOKENS: u64 = 100_000_000;

impl Usage {
    /// Fold in the usage carried by one JSON body or SSE `data:` payload.
    /// Anthropic counts are cumulative (`message_start`, then
    /// `message_delta`), so present fields overwrite; absent ones are kept.
    /// Returns whether the value carried any usage.
    pub fn observe(&mut self, v: &Value) -> bool {
        let u = match (
            v.get("usage"),
            v.get("message").and_then(|m| m.get("usage")),
        ) {
            (Some(u), _) if u.is_object() => u,
            (_, Some(u)) if u.is_object() => u,
            _ => return false,
        };
        match Counts::deserialize(u) {
            Ok(c) => {
                self.apply(&c);
                true
            }
            Err(_) => false,
        }
    }

    /// Fold in the counts of one `usage` object (see [`Usage::observe`]).
    /// A count no response can have (over [`MAX_TOKENS`]) is taken as
    /// absent: an upstream reporting `u64::MAX` would otherwise bill ~1.8e13
    /// and wrap the token counters.
    pub fn apply(&mut self, c: &Counts) {
        let plausible = |n: Option<u64>| n.filter(|&n| n <= MAX_TOKENS);
        let c = &Counts {
            prompt: plausible(c.prompt),
            cached: plausible(c.cached),
            completion: plausible(c.completion),
            input: plausible(c.input),
            output: plausible(c.output),
            cache_write: plausible(c.cache_write),
            cache_read: plausible(c.cache_read),
        };
        if c.prompt.is_some() || c.completion.is_some() {
            // OpenAI: prompt_tokens includes cached tokens.
            if let Some(prompt) = c.prompt {
                let cached = c.cached.unwrap_or(0);
                self.cache_read = cached;
                self.input = prompt.saturating_sub(cached);
            }
            if let Some(x) = c.completion {
                self.output = x;
            }
            return;
        }
        let fields = [
            (c.input, &mut self.input),
            (c.output, &mut self.output),
            (c.cache_write, &mut self.cache_write),
            (c.cache_read, &mut self.cache_read),
        ];
        for (count, slot) in fields {
            if let Some(x) = count {
                *slot = x;
            }
        }
    }

    /// Cost in the price unit (prices are per million tokens and already
    /// include `billing_multiplier`).
    pub fn cost(&self, p: &Prices) -> f64 {
        (self.input as f64 * p.input
            + self.output as f64 * p.output
            + self.cache_write as f64 * p.cache_write
            + self.cache_read as f64 * p.cache_hit)
            / 1_000_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Counts no response can have are not billed (they would bill ~1.8e13
    /// and wrap the token counters); the plausible ones beside them are.
    #[test]
    fn implausible_counts_are_ignored() {
        let mut u = Usage::default();
        u.observe(&json!({"usage": {"prompt_tokens": u64::MAX, "completion_tokens": 7}}));
        assert_eq!((u.input, u.output), (0, 7));
        u.observe(&json!({"usage": {"input_tokens": 12, "output_tokens": MAX_TOKENS + 1}}));
        assert_eq!((u.input, u.output), (12, 7));
        let cost = u.cost(&crate::config::Prices {
            input: 1.0,
            output: 1.0,
            cache_write: 0.0,
            cache_hit: 0.0,
        });
        assert!(cost < 1.0, "{cost}");
    }

    #[test]
    fn anthropic_stream_usage_accumulates() {
        let mut u = Usage::default();
        u.observe(&json!({"type":"message_start","message":{"usage":{"input_tokens":100,"output_tokens":1,"cache_read_input_tokens":50}}}));
        u.observe(&json!({"type":"content_block_delta","delta":{"text":"hi"}}));
        u.observe(&json!({"type":"message_delta","usage":{"output_tokens":42}}));
        assert_eq!(
            u,
            Usage {
                input: 100,
                output: 42,
                cache_write: 0,
                cache_read: 50
            }
        );
        let p = Prices {
            input: 3.0,
            output: 15.0,
            cache_write: 3.75,
            cache_hit: 0.3,
        };
        let expected = (100.0 * 3.0 + 42.0 * 15.0 + 50.0 * 0.3) / 1e6;
        assert!((u.cost(&p) - expected).abs() < 1e-12);
    }

    #[test]
    fn openai_usage_splits_cached() {
        let mut u = Usage::default();
        assert!(u.observe(&json!({"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}}})));
        assert_eq!(
            u,
            Usage {
                input: 6,
                output: 5,
                cache_write: 0,
                cache_read: 4
            }
        );
        assert!(!u.observe(&json!({"usage": null})));
    }
}
