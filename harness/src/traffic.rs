//! A steady client and open SSE streams, run through nginx while the
//! deployment switches goproxy, counting what an end user would notice.
//!
//! The requests go only to the stack's loopback HTTPS port, are paced by a
//! fixed interval, and stop when the switch is over (or at a hard cap), so
//! the load is bounded in count and time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::probe::{mismatch, ProbeError};

/// Where and how to send the load.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: reqwest::Client,
    /// `https://chat.trollllm.xyz:<port>`.
    pub base: String,
    pub api_key: String,
    /// A model of the deployed config served by the streaming mock.
    pub model: String,
}

/// What the load saw.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub requests: u64,
    pub failed: u64,
    pub slow: u64,
    /// Longest time without a successful answer.
    pub longest_gap: Duration,
    pub streams_opened: u64,
    pub streams_completed: u64,
    /// The first few failures, for the evidence.
    pub failures: Vec<String>,
}

impl LoadStats {
    /// Total failures a user would notice: failed requests and broken streams.
    pub fn failed_total(&self) -> u64 {
        self.failed + (self.streams_opened - self.streams_completed)
    }
}

/// Running load; [`RunningLoad::stop`] ends it and returns the figures.
#[derive(Debug)]
pub struct RunningLoad {
    stop: Arc<AtomicBool>,
    steady: JoinHandle<LoadStats>,
    streams: Vec<JoinHandle<Result<(), ProbeError>>>,
}

/// The longest a load may run, whatever happens to the switch: the
/// longest switch waits for streams up to the stream bound (330 s).
const HARD_CAP: Duration = Duration::from_secs(420);

/// Starts `streams` SSE streams and a steady client sending one request per
/// `interval`.
pub fn start(target: Target, interval: Duration, streams: u32, slow: Duration) -> RunningLoad {
    let stop = Arc::new(AtomicBool::new(false));
    let streams = (0..streams)
        .map(|_| tokio::spawn(one_stream(target.clone())))
        .collect();
    let steady = tokio::spawn(steady(target, interval, slow, stop.clone()));
    RunningLoad {
        stop,
        steady,
        streams,
    }
}

impl RunningLoad {
    /// Stops the steady client, waits for the streams to end, and returns
    /// what was seen.
    pub async fn stop(self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        let mut stats = self.steady.await.unwrap_or_default();
        stats.streams_opened = self.streams.len() as u64;
        for s in self.streams {
            match s.await {
                Ok(Ok(())) => stats.streams_completed += 1,
                Ok(Err(e)) => push_failure(&mut stats, format!("stream: {e}")),
                Err(e) => push_failure(&mut stats, format!("stream task: {e}")),
            }
        }
        stats
    }
}

fn push_failure(stats: &mut LoadStats, what: String) {
    if stats.failures.len() < 5 {
        stats.failures.push(what);
    }
}

async fn steady(
    target: Target,
    interval: Duration,
    slow: Duration,
    stop: Arc<AtomicBool>,
) -> LoadStats {
    let mut stats = LoadStats::default();
    let started = Instant::now();
    let mut last_ok = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) && started.elapsed() < HARD_CAP {
        ticker.tick().await;
        let t0 = Instant::now();
        let result = chat(&target, false).await;
        let took = t0.elapsed();
        stats.requests += 1;
        if took > slow {
            stats.slow += 1;
        }
        match result {
            Ok(_) => {
                stats.longest_gap = stats.longest_gap.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            Err(e) => {
                stats.failed += 1;
                push_failure(&mut stats, e.to_string());
            }
        }
    }
    stats.longest_gap = stats.longest_gap.max(last_ok.elapsed());
    stats
}

/// Sends one chat completion through nginx; Ok is a 200 with a body.
pub async fn chat(target: &Target, stream: bool) -> Result<reqwest::Response, ProbeError> {
    let resp = target
        .client
        .post(format!("{}/v1/chat/completions", target.base))
        .bearer_auth(&target.api_key)
        .json(&serde_json::json!({
            "model": target.model,
            "stream": stream,
            "messages": [{"role": "user", "content": "ping"}],
        }))
        .send()
        .await
        .map_err(|e| ProbeError::request("request failed", e))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(ProbeError::Status {
            what: String::new(),
            status,
            detail: format!(": {}", truncate(&body, 200)),
        });
    }
    Ok(resp)
}

/// How much of a stream's end is kept, for the `[DONE]` check and the
/// evidence when it is missing: a stream may run for minutes, so its body
/// is counted, never held whole.
const TAIL_BYTES: usize = 512;

/// What is kept of a stream: its size and a bounded tail.
#[derive(Debug, Default)]
struct StreamTail {
    bytes: u64,
    tail: Vec<u8>,
}

impl StreamTail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
    }

    /// `[DONE]` is the last event of an OpenAI stream, so the tail holds it.
    fn done(&self) -> bool {
        String::from_utf8_lossy(&self.tail).contains("data: [DONE]")
    }
}

/// One SSE stream held to its end: must see `data: [DONE]`.
async fn one_stream(target: Target) -> Result<(), ProbeError> {
    let resp = chat(&target, true).await?;
    let mut body = resp.bytes_stream();
    let mut seen = StreamTail::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ProbeError::request(format!("stream broke after {} bytes", seen.bytes), e)
        })?;
        seen.push(&chunk);
    }
    if seen.done() {
        Ok(())
    } else {
        Err(mismatch!(
            "stream ended without [DONE] after {} bytes; it ended with: {}",
            seen.bytes,
            String::from_utf8_lossy(&seen.tail)
        ))
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long stream keeps only its size and a bounded tail, and `[DONE]`
    /// split across chunks at the end is still seen.
    #[test]
    fn stream_tail_is_bounded() {
        let mut t = StreamTail::default();
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        for _ in 0..10_000 {
            t.push(event);
        }
        assert!(!t.done());
        t.push(b"data: [DO");
        t.push(b"NE]\n\n");
        assert!(t.done());
        assert_eq!(t.bytes, 10_000 * event.len() as u64 + 14);
        assert!(t.tail.len() <= TAIL_BYTES);
    }
}
