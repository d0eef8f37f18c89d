//! Non-SSE upstream bodies, passed to the client chunk by chunk as they
//! arrive: memory stays bounded whatever the upstream sends (a 1 GiB answer
//! is never held). Usage is read from a bounded tail of the body, where
//! OpenAI and Anthropic both put their `usage` object, or else from its
//! first 16 KiB (a gateway that writes it first); a `usage` in the middle
//! of a body over ~80 KiB is not read.
//!
//! If the upstream breaks, stalls for `stream_idle_timeout` between two
//! chunks, or the drain cuts the body, the body ends with an error: hyper
//! then aborts the response, so the client sees a broken transfer, never a
//! truncated JSON that looks whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as _, Frame};
use serde::Deserialize;
use tokio::time::Instant;

use crate::alarm::Alarm;
use crate::body::{Body, BodyError};
use crate::cancel::Cancelled;
use crate::read_on::{ReadOn, ReadOnPolicy, ReadsOn};
use crate::stream::{is_error_event, ErrorAnswer, RelayContext};
use crate::upstream_body::UpstreamBody;
use crate::usage::Usage;
use crate::usage_counts::Counts;

/// Stall-timer firings handled in one poll before yielding.
const MAX_ROUNDS: usize = 4;
/// Bytes of the body's end kept for reading usage.
const TAIL_BYTES: usize = 64 * 1024;
/// Bytes of the body's start kept, once the body outgrew the tail: a
/// gateway that writes `usage` first (re-serialised JSON) is still read.
const HEAD_BYTES: usize = 16 * 1024;

/// Keeps the last 64 KiB (up to twice that between trims) of a body, and
/// its first 16 KiB once they fall out of that tail.
#[derive(Debug, Default)]
pub struct Tail {
    buf: Vec<u8>,
    /// The body's first bytes, filled from what the tail lets go (a body
    /// the tail holds whole is not copied twice).
    head: Vec<u8>,
}

impl Tail {
    /// Remember the end of `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.len() >= TAIL_BYTES {
            let (dropped, kept) = chunk.split_at(chunk.len() - TAIL_BYTES);
            self.let_go(self.buf.len());
            self.keep_head(dropped);
            self.buf.clear();
            self.buf.extend_from_slice(kept);
            return;
        }
        if self.buf.len() + chunk.len() > 2 * TAIL_BYTES {
            let keep = TAIL_BYTES.saturating_sub(chunk.len());
            self.let_go(self.buf.len() - keep);
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Drop the tail's first `n` bytes, keeping what the head still lacks.
    fn let_go(&mut self, n: usize) {
        let want = HEAD_BYTES.saturating_sub(self.head.len()).min(n);
        self.head.extend_from_slice(&self.buf[..want]);
        self.buf.drain(..n);
    }

    /// Body bytes that never were in the tail: the head's share of them.
    fn keep_head(&mut self, dropped: &[u8]) {
        let want = HEAD_BYTES
            .saturating_sub(self.head.len())
            .min(dropped.len());
        self.head.extend_from_slice(&dropped[..want]);
    }

    /// The usage of the last `"usage": {...}` object in the tail, or else
    /// in the head (a key in the JSON, not the word inside a string:
    /// `\"usage\"` is skipped).
    pub fn usage(&self) -> Option<Usage> {
        usage_in(&self.buf).or_else(|| usage_in(&self.head))
    }

    /// The body, if it was `bytes` long in all, the tail holds it whole,
    /// and it is an error object (an upstream or gateway that answers
    /// `200` and says in the body that it failed).
    pub fn error_body(&self, bytes: u64) -> Option<&[u8]> {
        // Not parsed at all unless whole (up to 128 KiB for nothing).
        let whole = self.head.is_empty() && bytes == self.buf.len() as u64;
        if !whole {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&self.buf).ok()?;
        is_error_event(&v).then_some(&self.buf[..])
    }
}

/// The usage of the last `"usage": {...}` object in `buf`.
fn usage_in(buf: &[u8]) -> Option<Usage> {
    let needle = USAGE_KEY.needle();
    let mut end = buf.len();
    while let Some(at) = USAGE_KEY.rfind(&buf[..end]) {
        end = at;
        if at > 0 && buf[at - 1] == b'\\' {
            continue;
        }
        let rest = buf[at + needle.len()..].trim_ascii_start();
        let Some(rest) = rest.strip_prefix(b":") else {
            continue;
        };
        // Read in place (no `Value` tree); not an object: look further back.
        let mut de = serde_json::Deserializer::from_slice(rest);
        if let Ok(counts) = Counts::deserialize(&mut de) {
            let mut usage = Usage::default();
            usage.apply(&counts);
            return Some(usage);
        }
    }
    None
}

/// The `"usage"` key, searched for backwards: the searcher is built once
/// (built per call it was ~600 instructions per request).
static USAGE_KEY: LazyLock<memchr::memmem::FinderRev<'static>> =
    LazyLock::new(|| memchr::memmem::FinderRev::new(b"\"usage\""));

/// Owns the upstream body; logs and records usage exactly once, on drop.
struct Passthrough {
    upstream: UpstreamBody,
    ctx: RelayContext,
    tail: Tail,
    bytes: u64,
    /// The upstream's `content-length`: hyper stops polling once that many
    /// bytes went out, so the end is known by count, not by a final poll.
    expected: Option<u64>,
    /// How the body ended; `None` while it is open.
    outcome: Option<&'static str>,
    /// How reading on after the client left ended.
    read_on: Option<ReadOn>,
    last_chunk: Instant,
    timer: Alarm,
    cut: Cancelled,
}

impl Drop for Passthrough {
    fn drop(&mut self) {
        let mut outcome = match self.outcome {
            Some(o) => o,
            None if self.sent_whole() => "complete",
            None => self.ctx.open_outcome(),
        };
        let ctx = &self.ctx;
        let found = self.tail.usage();
        // A whole answer without usage may be a failure said in a 200 (only
        // then is the body parsed whole: an answer has its usage).
        if let (None, "complete") = (found, outcome) {
            if let Some(body) = self.tail.error_body(self.bytes) {
                ctx.error_answer(ErrorAnswer::Body, body, false);
                outcome = "upstream_error_body";
            }
        }
        let usage = found.unwrap_or_default();
        let cost = usage.cost(&ctx.prices);
        ctx.metrics.usage(&ctx.model, &usage, cost);
        let done = (outcome, &usage, cost, self.bytes);
        let enabled = || tracing::enabled!(tracing::Level::INFO);
        let read_on = self.read_on.map(|r| r.end.as_str());
        let read_on_bytes = self.read_on.map(|r| r.bytes);
        if let Some(mut d) = ctx.direct_line(module_path!(), "completion", done, enabled) {
            d.opt_str("read_on", read_on)
                .opt_u64("read_on_bytes", read_on_bytes);
            return d.send();
        }
        tracing::info!(
            request_id = ctx.request_id,
            peer = %ctx.peer,
            method = %http::Method::POST,
            route = ctx.format.route(),
            status = ctx.status,
            latency_ms = ctx.head_ms,
            model = %ctx.model,
            upstream_model = %ctx.upstream_model,
            endpoint = %ctx.endpoint,
            outcome,
            input_tokens = usage.input,
            output_tokens = usage.output,
            cache_write_tokens = usage.cache_write,
            cache_read_tokens = usage.cache_read,
            cost,
            bytes = self.bytes,
            read_on,
            read_on_bytes,
            "completion"
        );
    }
}

impl Passthrough {
    /// The next chunk, in the order `cut`, upstream, stall timer. The stall
    /// timer is not reset per chunk: it fires at the old deadline and is
    /// moved on if a chunk came since. Polled by hyper directly.
    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        if self.outcome.is_some() {
            return Poll::Ready(None);
        }
        // Each round either returns or moved the timer into the future.
        for _ in 0..MAX_ROUNDS {
            if Pin::new(&mut self.cut).poll(cx).is_ready() {
                return Poll::Ready(Some(Err(
                    self.fail("drain_cut", "the proxy is shutting down")
                )));
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => {
                        self.last_chunk = Instant::now();
                        self.tail.feed(&chunk);
                        self.bytes += chunk.len() as u64;
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Err(_) => continue, // trailers
                },
                Poll::Ready(None) => {
                    self.outcome = Some("complete");
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(request_id = self.ctx.request_id, endpoint = %self.ctx.endpoint, error = %crate::client::describe(&*e), "upstream body broke");
                    let err = self.fail("upstream_error", "the upstream body was interrupted");
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Pending => {}
            }
            if self.timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
            let stall = self.last_chunk + self.ctx.idle_timeout;
            if Instant::now() >= stall {
                tracing::warn!(request_id = self.ctx.request_id, endpoint = %self.ctx.endpoint, idle_secs = self.ctx.idle_timeout.as_secs_f64(), "upstream body stalled");
                let err = self.fail("upstream_stalled", "the upstream body stalled");
                return Poll::Ready(Some(Err(err)));
            }
            self.timer.reset(stall);
        }
        // Not reached in practice; ask to be polled again rather than stall.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// End the body with an error (hyper then aborts the response).
    fn fail(&mut self, outcome: &'static str, why: &'static str) -> BodyError {
        self.outcome = Some(outcome);
        why.into()
    }

    /// Every byte the upstream announced went to the client (hyper stops
    /// polling then, so the end is known by count).
    fn sent_whole(&self) -> bool {
        self.expected == Some(self.bytes)
    }
}

impl ReadsOn for Passthrough {
    fn left_open(&mut self) -> Option<&ReadOnPolicy> {
        if self.outcome.is_some() || self.sent_whole() {
            return None;
        }
        self.outcome = Some(self.ctx.read_on_outcome()?);
        Some(&self.ctx.read_on)
    }

    async fn read_rest(&mut self) -> ReadOn {
        let Passthrough {
            upstream,
            tail,
            ctx,
            ..
        } = self;
        ctx.read_rest(upstream, |chunk| tail.feed(chunk)).await
    }

    fn read_on_ended(&mut self, r: ReadOn) {
        self.read_on = Some(r);
    }
}

impl hyper::body::Body for Passthrough {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.get_mut()
            .poll_next_chunk(cx)
            .map(|c| c.map(|r| r.map(Frame::data)))
    }
}

/// Turn a non-SSE upstream response into a client body that passes each
/// chunk on as it arrives.
pub fn passthrough(upstream: UpstreamBody, ctx: RelayContext) -> Body {
    let now = Instant::now();
    let p = Passthrough {
        last_chunk: now,
        timer: Alarm::at(now + ctx.idle_timeout),
        cut: Cancelled::new(ctx.cut.clone()),
        expected: upstream.size_hint().exact(),
        upstream,
        ctx,
        tail: Tail::default(),
        bytes: 0,
        outcome: None,
        read_on: None,
    };
    crate::read_on::boxed(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Usage is found at the end of a body of any size, split anywhere, and
    /// the word "usage" inside a string does not fool it.
    #[test]
    fn tail_finds_usage_after_megabytes() {
        let filler = "x".repeat(3 * 1024 * 1024);
        let text = format!(
            "{{\"choices\":[{{\"message\":{{\"content\":\"{filler} \\\"usage\\\": {{}}\"}}}}],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":4}}}}"
        );
        for split in [1000, 65_535, 70_001, 1 << 20] {
            let mut t = Tail::default();
            for c in text.as_bytes().chunks(split) {
                t.feed(c);
            }
            assert!(t.buf.len() <= 2 * TAIL_BYTES);
            let u = t.usage().unwrap();
            assert_eq!((u.input, u.output), (9, 4), "split {split}");
        }
    }

    /// A body that writes `usage` first (a gateway's re-serialised JSON)
    /// and outgrows the tail still has its usage read, from its head;
    /// the head is kept only once the tail let the start go.
    #[test]
    fn usage_written_first_is_read_from_the_head() {
        let filler = "x".repeat(300 * 1024);
        let text = format!(
            "{{\"usage\":{{\"prompt_tokens\":7,\"completion_tokens\":2}},\"choices\":[{{\"message\":{{\"content\":\"{filler}\"}}}}]}}"
        );
        for split in [1, 1000, 16_384, 65_535, 70_001, 1 << 20] {
            let mut t = Tail::default();
            for c in text.as_bytes().chunks(split) {
                t.feed(c);
            }
            assert_eq!(t.head.len(), HEAD_BYTES, "split {split}");
            assert_eq!(&t.head[..], &text.as_bytes()[..HEAD_BYTES], "split {split}");
            let u = t.usage().unwrap();
            assert_eq!((u.input, u.output), (7, 2), "split {split}");
        }
        let mut t = Tail::default();
        t.feed(br#"{"usage":{"prompt_tokens":7,"completion_tokens":2}}"#);
        assert!(
            t.head.is_empty(),
            "a body the tail holds is not copied twice"
        );
    }

    #[test]
    fn anthropic_usage_and_no_usage() {
        let mut t = Tail::default();
        t.feed(br#"{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":5}}"#);
        let u = t.usage().unwrap();
        assert_eq!((u.input, u.output), (3, 5));
        let mut t = Tail::default();
        t.feed(br#"{"content":"\"usage\": {\"input_tokens\":3}"}"#);
        assert_eq!(t.usage(), None);
    }

    /// A whole body that is an error object is one (each shape); an
    /// answer, a cut body, or one the tail does not hold whole is not.
    #[test]
    fn error_bodies_are_told_from_answers() {
        let errors: [&[u8]; 3] = [
            br#"{"error":{"message":"no capacity","code":503}}"#,
            br#"{"type":"error","error":{"type":"overloaded_error"}}"#,
            br#"{"object":"error","message":"engine died"}"#,
        ];
        for e in errors {
            let mut t = Tail::default();
            t.feed(e);
            assert_eq!(
                t.error_body(e.len() as u64),
                Some(e),
                "{}",
                e.escape_ascii()
            );
            assert_eq!(t.error_body(e.len() as u64 + 1), None, "not whole");
        }
        let answer = br#"{"choices":[{"message":{"content":"\"error\""}}],"error":null}"#;
        let mut t = Tail::default();
        t.feed(answer);
        assert_eq!(t.error_body(answer.len() as u64), None);
        let mut t = Tail::default();
        t.feed(&errors[0][..10]);
        assert_eq!(t.error_body(10), None, "not JSON");
    }

    /// A later `"usage"` that is not an object is passed over; OpenAI's
    /// cached tokens are split out of the prompt.
    #[test]
    fn usage_that_is_not_an_object_is_skipped() {
        let mut t = Tail::default();
        t.feed(br#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":4}},"meta":{"usage":"n/a"}}"#);
        let u = t.usage().unwrap();
        assert_eq!((u.input, u.output, u.cache_read), (6, 5, 4));
    }
}
