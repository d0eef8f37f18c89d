//! SSE relay: upstream chunks go to the client as they arrive (never
//! buffered), while a side parser reads usage from `data:` lines.
//!
//! The relay is a body that owns the upstream response. When hyper drops
//! it (the client went away) with the upstream still open, the rest is read
//! for its usage, bounded ([`crate::read_on`]); then, or at once when that
//! is off, the upstream response is dropped, which closes that upstream
//! connection and so cancels the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Response;
use hyper::body::{Body as _, Frame};
use tokio::time::Instant;

use crate::alarm::Alarm;
use crate::auth::Secrets;
use crate::body::{Body, BodyError};
use crate::cancel::{Cancelled, Cut};
use crate::config::{Format, Prices};
use crate::direct_line::DirectLine;
use crate::error::stream_error_event;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::read_on::{ReadOn, ReadOnPolicy, ReadsOn};
use crate::redact::{redact_prefix, ERROR_LOG_CHARS};
use crate::sse_words::{words, Junction};
use crate::upstream_body::UpstreamBody;
use crate::usage::Usage;

/// Timer firings handled in one poll before yielding (each re-arms the
/// timer in the future, so one is the norm).
const MAX_ROUNDS: usize = 4;
/// Longest SSE line kept for usage parsing; longer lines are relayed but
/// not parsed (usage events are small).
const MAX_LINE: usize = 1 << 20;

/// What a relay needs to know to log and price its stream.
#[derive(Debug, Clone)]
pub struct RelayContext {
    /// Request id for log correlation.
    pub request_id: u64,
    /// The client's address (the completion line is the request's only
    /// info line).
    pub peer: Peer,
    /// The status sent to the client.
    pub status: u16,
    /// Milliseconds from the request's arrival to the response head.
    pub head_ms: f64,
    /// Public model id.
    pub model: Arc<str>,
    /// Upstream model id sent.
    pub upstream_model: Arc<str>,
    /// Endpoint name.
    pub endpoint: Arc<str>,
    /// Route format (decides the error event shape).
    pub format: Format,
    /// Effective prices.
    pub prices: Prices,
    /// Longest silence allowed between upstream chunks.
    pub idle_timeout: Duration,
    /// Send `: ping` to the client after this much upstream silence.
    pub heartbeat: Option<Duration>,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// When the client request arrived.
    pub started: Instant,
    /// Cancelled when the drain timeout cuts open streams.
    pub cut: Cut,
    /// How long to read on after the client left ([`crate::read_on`]).
    pub read_on: ReadOnPolicy,
    /// What an upstream's error event is redacted of before it is logged.
    pub secrets: Arc<Secrets>,
}

/// Reads usage out of SSE text split across arbitrary chunk boundaries.
#[derive(Debug, Default)]
pub struct SseUsage {
    line: BytesMut,
    skipping_long_line: bool,
    /// Usage seen so far.
    pub usage: Usage,
    /// Whether an event carried the final output count (OpenAI's usage
    /// chunk, Anthropic's `message_delta`).
    final_seen: bool,
    /// `"delta"` keys: one per content event (OpenAI chunks, Anthropic
    /// `content_block_delta`; one per choice when several) and one or two
    /// more (Anthropic's `message_delta`), however the chunks cut them.
    deltas: u64,
    /// The stream's last bytes, for a `"delta"` cut between chunks.
    junction: Junction,
    /// The first error event of the stream (its data, at most 8 KiB): an
    /// answer that began `200` and then failed (OpenAI's `{"error": ...}`,
    /// Anthropic's `{"type": "error", ...}`, `{"object": "error", ...}` of
    /// vLLM and others).
    pub error: Option<Bytes>,
}

impl SseUsage {
    /// The usage to bill, and whether its output count is an estimate:
    /// with no final count (the client left and the read-on ended first,
    /// the upstream broke, or it ignores `include_usage`), at least one
    /// token per delta event seen, not 0: a client could otherwise read
    /// most of an answer and leave before its end, unbilled.
    pub fn billed(&self) -> (Usage, bool) {
        let mut usage = self.usage;
        let estimate = !self.final_seen && self.deltas > usage.output;
        if estimate {
            usage.output = self.deltas;
        }
        (usage, estimate)
    }

    /// Feed one chunk of the stream (lines end at LF, CRLF or a lone CR;
    /// the empty "line" between CR and LF is passed over). A line that arrives whole in one chunk
    /// (the usual case) is looked at in place: only a line split across
    /// chunks is copied, so an event costs no allocation and no copy.
    pub fn feed(&mut self, chunk: &[u8]) {
        // One pass for the three words ([`words`]); every delta event
        // counts, also one cut between this chunk and the last.
        let words = words(chunk);
        self.deltas += u64::from(words.deltas) + u64::from(self.junction.split_deltas(chunk));
        // Most chunks are whole content deltas with no `"usage"` and no
        // `"error"` in them, or only `null` ones (content text has its
        // quotes escaped): that rules out every line the chunk ends, and
        // only the unfinished line after its last newline is kept.
        let worth_reading = words.usage || (words.error && self.error.is_none());
        if self.line.is_empty() && !self.skipping_long_line && !worth_reading {
            // A line ends at LF, CRLF or a lone CR (the SSE spec's three).
            let after_last_line = memchr::memrchr2(b'\n', b'\r', chunk).map_or(0, |nl| nl + 1);
            self.keep_unfinished(&chunk[after_last_line..]);
            return;
        }
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr2(b'\n', b'\r', rest) {
            let (part, after) = rest.split_at(nl + 1);
            rest = after;
            if self.skipping_long_line {
                self.skipping_long_line = false;
            } else if self.line.is_empty() {
                self.line_done(part);
            } else if self.line.len() + part.len() <= MAX_LINE {
                self.line.extend_from_slice(part);
                let line = self.line.split().freeze();
                self.line_done(&line);
            } else {
                self.line.clear();
            }
        }
        self.keep_unfinished(rest);
    }

    /// Keep the start of a line the next chunk finishes (or start skipping
    /// it when it is already too long to parse).
    fn keep_unfinished(&mut self, rest: &[u8]) {
        if rest.is_empty() || self.skipping_long_line {
            return;
        }
        if self.line.len() + rest.len() > MAX_LINE {
            self.line.clear();
            self.skipping_long_line = true;
        } else {
            self.line.extend_from_slice(rest);
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return; // comments, event:, id:, blank lines
        };
        let data = data.trim_ascii();
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        // Only events that carry a `"usage"` key (OpenAI's last chunk,
        // Anthropic's message_start / message_delta) or an `"error"` matter;
        // skipping the JSON parse of every content delta is most of the
        // relay's per-chunk CPU.
        let words = words(data);
        let (usage, error) = (words.usage, words.error && self.error.is_none());
        if !(usage || error) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        if usage && self.usage.observe(&v) && has_output_count(&v) {
            self.final_seen = true;
        }
        if error && is_error_event(&v) {
            self.error = Some(Bytes::copy_from_slice(&data[..data.len().min(ERROR_KEPT)]));
        }
    }
}

/// Most bytes of an error event kept for the log (it is redacted and cut
/// to the log's length when written).
const ERROR_KEPT: usize = 8 * 1024;

/// Whether `v` (an event's or a body's JSON) reports an error: a
/// top-level `error` member (OpenAI, and OpenRouter's chunks that also
/// carry a last delta), or `type` / `object` saying `"error"` (Anthropic;
/// vLLM and others).
pub(crate) fn is_error_event(v: &serde_json::Value) -> bool {
    let says_error = |k| v.get(k).and_then(serde_json::Value::as_str) == Some("error");
    v.get("error").is_some_and(|e| !e.is_null()) || says_error("type") || says_error("object")
}

/// Whether `v` (an event's JSON) has a top-level `usage` with an output
/// count: the final count, not `message_start`'s opening one.
fn has_output_count(v: &serde_json::Value) -> bool {
    let usage = v.get("usage");
    ["completion_tokens", "output_tokens"].iter().any(|k| {
        usage
            .and_then(|u| u.get(k))
            .and_then(serde_json::Value::as_u64)
            .is_some()
    })
}

/// How a stream ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Open,
    Complete,
    UpstreamError,
    UpstreamStalled,
    DrainCut,
}

/// Owns the upstream stream; logs and records usage exactly once, on drop.
struct Relay {
    upstream: UpstreamBody,
    parser: SseUsage,
    ctx: RelayContext,
    outcome: Outcome,
    /// Last bytes relayed: heartbeats and error events are only injected
    /// between events, so a half-written event is closed first.
    tail: [u8; 4],
    last_upstream: Instant,
    last_sent: Instant,
    /// Fires at [`Relay::next_check`].
    timer: Alarm,
    /// Resolves when the drain timeout cuts open streams.
    cut: Cancelled,
    bytes: u64,
    first_chunk_at: Option<Duration>,
    /// Why the client's side ended, once it left with the upstream open.
    left: Option<&'static str>,
    /// How reading on after the client left ended.
    read_on: Option<ReadOn>,
}

/// Where an answer relayed as a success reported an upstream error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorAnswer {
    /// An error event in an SSE stream.
    Event,
    /// A whole body that is an error object.
    Body,
}

impl RelayContext {
    /// An answer relayed as a success in which the upstream reported an
    /// error: warned of with the upstream's words (`text`, its first bytes
    /// if `cut`) redacted, and counted in `/metrics`.
    pub(crate) fn error_answer(&self, kind: ErrorAnswer, text: &[u8], cut: bool) {
        let error = redact_prefix(text, cut, ERROR_LOG_CHARS, &self.secrets);
        let (id, endpoint) = (self.request_id, &self.endpoint);
        let label = match kind {
            ErrorAnswer::Event => {
                tracing::warn!(request_id = id, %endpoint, error, "upstream sent an error event in its stream");
                "event"
            }
            ErrorAnswer::Body => {
                tracing::warn!(request_id = id, %endpoint, status = self.status, error, "upstream answered a success status with an error body");
                "body"
            }
        };
        self.metrics.upstream_error_answer(&self.model, label);
    }

    /// Why a body still open is being dropped: the drain's cut (the
    /// connection was closed after its grace), a client that read nothing
    /// for `send_timeout_secs`, or else a client that went away. The first
    /// two are warnings: the client got a cut response.
    pub(crate) fn open_outcome(&self) -> &'static str {
        if self.cut.is_cancelled() {
            tracing::warn!(request_id = self.request_id, peer = %self.peer, endpoint = %self.endpoint, "response cut by the drain (its timeout, or a second signal)");
            "drain_cut"
        } else if self.peer.stopped_reading() {
            tracing::warn!(request_id = self.request_id, peer = %self.peer, endpoint = %self.endpoint, "client stopped reading the response (send_timeout_secs); connection closed");
            "client_stopped_reading"
        } else {
            "client_disconnected"
        }
    }

    /// How the client's side of a body dropped open ended, when its
    /// answer is to be read on: reading on is on and the drain's cut has
    /// not come (both relays ask this of a body their client left).
    pub(crate) fn read_on_outcome(&self) -> Option<&'static str> {
        (!self.read_on.limit.is_zero() && !self.cut.is_cancelled()).then(|| self.open_outcome())
    }

    /// Read the rest of `upstream` for its usage, within this request's
    /// read-on limit, idle timeout and cut ([`crate::read_on::read_rest`]).
    pub(crate) async fn read_rest(
        &self,
        upstream: &mut UpstreamBody,
        feed: impl FnMut(&[u8]),
    ) -> ReadOn {
        let limit = self.read_on.limit;
        crate::read_on::read_rest(upstream, feed, limit, self.idle_timeout, &self.cut).await
    }

    /// The relayed request's info line with the fields both relays log,
    /// in the macro's order, written directly ([`crate::direct_line`]);
    /// `None` when the caller logs through the macro instead.
    pub(crate) fn direct_line(
        &self,
        target: &str,
        message: &str,
        done: (&str, &Usage, f64, u64),
        enabled: impl FnOnce() -> bool,
    ) -> Option<DirectLine> {
        let (outcome, usage, cost, bytes) = done;
        let mut d = DirectLine::info(target, message, enabled)?;
        d.u64("request_id", self.request_id)
            .raw("peer", self.peer.as_str())
            .raw("method", http::Method::POST.as_str())
            .str("route", self.format.route())
            .u64("status", self.status.into())
            .f64("latency_ms", self.head_ms)
            .raw("model", &self.model)
            .raw("upstream_model", &self.upstream_model)
            .raw("endpoint", &self.endpoint)
            .str("outcome", outcome)
            .u64("input_tokens", usage.input)
            .u64("output_tokens", usage.output)
            .u64("cache_write_tokens", usage.cache_write)
            .u64("cache_read_tokens", usage.cache_read)
            .f64("cost", cost)
            .u64("bytes", bytes);
        Some(d)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let ctx = &self.ctx;
        if self.left.is_none() {
            ctx.metrics.open_streams(-1);
        }
        let (usage, estimated) = self.parser.billed();
        if estimated {
            tracing::warn!(request_id = ctx.request_id, endpoint = %ctx.endpoint, output_tokens = usage.output, "stream ended without its final usage: output billed at one token per delta event seen");
        }
        let cost = usage.cost(&ctx.prices);
        ctx.metrics.usage(&ctx.model, &usage, cost);
        if let Some(error) = &self.parser.error {
            ctx.error_answer(ErrorAnswer::Event, error, error.len() == ERROR_KEPT);
        }
        let outcome = match self.outcome {
            Outcome::Open => self.left.unwrap_or_else(|| ctx.open_outcome()),
            // The upstream ended the stream itself, after saying it failed:
            // the client got a 200 that holds an error.
            Outcome::Complete if self.parser.error.is_some() => "upstream_error_event",
            Outcome::Complete => "complete",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamStalled => "upstream_stalled",
            Outcome::DrainCut => "drain_cut",
        };
        let first_chunk_ms = self.first_chunk_at.map(|d| d.as_millis() as u64);
        let duration_ms = ctx.started.elapsed().as_millis() as u64;
        let done = (outcome, &usage, cost, self.bytes);
        let enabled = || tracing::enabled!(tracing::Level::INFO);
        let read_on = self.read_on.map(|r| r.end.as_str());
        let read_on_bytes = self.read_on.map(|r| r.bytes);
        if let Some(mut d) = ctx.direct_line(module_path!(), "stream finished", done, enabled) {
            d.opt_u64("first_chunk_ms", first_chunk_ms)
                .u64("duration_ms", duration_ms)
                .opt_str("read_on", read_on)
                .opt_u64("read_on_bytes", read_on_bytes)
                .opt_raw("output_tokens_estimated", estimated.then_some("true"));
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
            first_chunk_ms,
            duration_ms,
            read_on,
            read_on_bytes,
            output_tokens_estimated = estimated.then_some(true),
            "stream finished"
        );
    }
}

impl Relay {
    fn at_event_boundary(&self) -> bool {
        self.bytes == 0 || self.tail.ends_with(b"\n\n") || self.tail == *b"\r\n\r\n"
    }

    fn error_event(&mut self, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        if !self.at_event_boundary() {
            out.extend_from_slice(if self.tail[3] == b'\n' {
                b"\n"
            } else {
                b"\n\n"
            });
        }
        out.extend_from_slice(&stream_error_event(self.ctx.format, message));
        out.freeze()
    }

    /// When the timer should next look at the stream: the stall deadline,
    /// or the next heartbeat (between events only; mid-event, look again a
    /// heartbeat later).
    fn next_check(&self, now: Instant) -> Instant {
        let stall = self.last_upstream + self.ctx.idle_timeout;
        match self.ctx.heartbeat {
            Some(h) if self.at_event_boundary() => stall.min(self.last_sent + h),
            Some(h) => stall.min(now + h),
            None => stall,
        }
    }

    /// The next bytes for the client, in the order `cut`, upstream, timer.
    /// The timer is not reset per chunk (that would be a timer-wheel update
    /// per event): it fires at [`Self::next_check`] and the silence is
    /// measured then. Polled by hyper directly (no stream adapter between).
    fn poll_next_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.outcome != Outcome::Open {
            return Poll::Ready(None);
        }
        // Each round either returns or consumed a timer firing that re-armed
        // the timer in the future; a few rounds are plenty.
        for _ in 0..MAX_ROUNDS {
            if Pin::new(&mut self.cut).poll(cx).is_ready() {
                tracing::warn!(request_id = self.ctx.request_id, endpoint = %self.ctx.endpoint, "stream cut by the drain (its timeout, or a second signal)");
                self.outcome = Outcome::DrainCut;
                return Poll::Ready(Some(
                    self.error_event("the proxy is shutting down; retry the request"),
                ));
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(chunk) => return Poll::Ready(Some(self.on_chunk(chunk))),
                    Err(_) => continue, // trailers
                },
                Poll::Ready(None) => {
                    self.outcome = Outcome::Complete;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(request_id = self.ctx.request_id, endpoint = %self.ctx.endpoint, error = %crate::client::describe(&*e), "upstream stream broke");
                    self.outcome = Outcome::UpstreamError;
                    return Poll::Ready(Some(
                        self.error_event("the upstream stream was interrupted"),
                    ));
                }
                Poll::Pending => {}
            }
            match self.timer.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if let Some(frame) = self.on_timer() {
                        return Poll::Ready(Some(frame));
                    }
                }
            }
        }
        // Not reached in practice; ask to be polled again rather than stall.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn on_chunk(&mut self, chunk: Bytes) -> Bytes {
        let now = Instant::now();
        self.last_upstream = now;
        self.last_sent = now;
        if self.first_chunk_at.is_none() {
            self.first_chunk_at = Some(self.ctx.started.elapsed());
        }
        self.parser.feed(&chunk);
        self.bytes += chunk.len() as u64;
        for b in chunk.iter().rev().take(4).rev() {
            self.tail = [self.tail[1], self.tail[2], self.tail[3], *b];
        }
        chunk
    }

    /// The timer fired: a stall ends the stream, a due heartbeat is sent,
    /// otherwise the timer is set again.
    fn on_timer(&mut self) -> Option<Bytes> {
        let now = Instant::now();
        if now >= self.last_upstream + self.ctx.idle_timeout {
            tracing::warn!(request_id = self.ctx.request_id, endpoint = %self.ctx.endpoint, idle_secs = self.ctx.idle_timeout.as_secs_f64(), "upstream stream stalled");
            self.outcome = Outcome::UpstreamStalled;
            return Some(self.error_event("the upstream stream stalled"));
        }
        let ping = self.at_event_boundary()
            && self
                .ctx
                .heartbeat
                .is_some_and(|h| now >= self.last_sent + h);
        if ping {
            self.last_sent = now;
        }
        let at = self.next_check(now);
        self.timer.reset(at);
        ping.then(|| Bytes::from_static(b": ping\n\n"))
    }
}

/// Turn an upstream SSE response into a client body that relays each chunk
/// as it arrives.
pub fn relay(upstream: Response<UpstreamBody>, ctx: RelayContext) -> Body {
    ctx.metrics.open_streams(1);
    let cut = Cancelled::new(ctx.cut.clone());
    let mut relay = Relay {
        upstream: upstream.into_body(),
        parser: SseUsage::default(),
        ctx,
        outcome: Outcome::Open,
        tail: [0; 4],
        last_upstream: Instant::now(),
        last_sent: Instant::now(),
        timer: Alarm::at(Instant::now()),
        cut,
        bytes: 0,
        first_chunk_at: None,
        left: None,
        read_on: None,
    };
    let first = relay.next_check(Instant::now());
    relay.timer.reset(first);
    crate::read_on::boxed(relay)
}

impl ReadsOn for Relay {
    fn left_open(&mut self) -> Option<&ReadOnPolicy> {
        if self.outcome != Outcome::Open {
            return None;
        }
        self.left = Some(self.ctx.read_on_outcome()?);
        // No longer relayed to anyone: not an open stream (the drain
        // counts it among its tasks).
        self.ctx.metrics.open_streams(-1);
        Some(&self.ctx.read_on)
    }

    async fn read_rest(&mut self) -> ReadOn {
        let Relay {
            upstream,
            parser,
            ctx,
            ..
        } = self;
        ctx.read_rest(upstream, |chunk| parser.feed(chunk)).await
    }

    fn read_on_ended(&mut self, r: ReadOn) {
        self.read_on = Some(r);
    }
}

impl hyper::body::Body for Relay {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.get_mut()
            .poll_next_frame(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_survives_arbitrary_chunk_splits() {
        let text = b": ping\n\nevent: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\nevent: error\ndata: {\"type\":\"error\"}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\ndata: [DONE]\n\n";
        for split in 1..text.len() {
            let mut p = SseUsage::default();
            for chunk in text.chunks(split) {
                p.feed(chunk);
            }
            assert_eq!(p.usage.input, 12, "split {split}");
            assert_eq!(p.usage.output, 7, "split {split}");
        }
    }

    /// Lines may end at CRLF or a lone CR too (the SSE spec's three line
    /// ends): usage is read the same, however the chunks split (with CR
    /// alone the stream was unbilled).
    #[test]
    fn usage_is_read_whatever_the_line_ends() {
        let lf = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\ndata: {\"type\":\"content_block_delta\"}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n";
        for ending in ["\r", "\r\n"] {
            let text = lf.replace('\n', ending);
            for split in 1..text.len() {
                let mut p = SseUsage::default();
                for chunk in text.as_bytes().chunks(split) {
                    p.feed(chunk);
                }
                assert_eq!(
                    (p.usage.input, p.usage.output),
                    (12, 7),
                    "{ending:?} split {split}"
                );
            }
        }
    }

    /// A line longer than `MAX_LINE` split across chunks is skipped (never
    /// buffered whole) and the line after it is still read.
    #[test]
    fn overlong_split_line_is_skipped() {
        let mut p = SseUsage::default();
        let big = vec![b'x'; MAX_LINE / 2 + 1];
        p.feed(b"data: {\"usage\":{\"input_tokens\":99},\"pad\":\"");
        p.feed(&big);
        p.feed(&big);
        assert!(p.line.is_empty() && p.skipping_long_line);
        p.feed(b"\"}\n\ndata: {\"usage\":{\"input_tokens\":3}}\n\n");
        assert_eq!(p.usage.input, 3);
    }

    /// Chunks with no `"usage"` in them take the one-search path: the line
    /// they leave unfinished is still kept, whether the rest of the line
    /// (and its `"usage"`) comes next or a chunk later, and a key cut in
    /// half by a chunk boundary is still found.
    #[test]
    fn chunks_without_usage_keep_their_unfinished_line() {
        let usage_line = b"data: {\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}\n\n";
        for cut in 0..usage_line.len() {
            let mut p = SseUsage::default();
            p.feed(b"data: {\"choices\":[]}\n\ndata: {\"cho");
            p.feed(b"ices\":[]}\n\n");
            let (head, tail) = usage_line.split_at(cut);
            p.feed(head);
            p.feed(tail);
            assert_eq!((p.usage.input, p.usage.output), (5, 6), "cut at {cut}");
            assert!(p.line.is_empty(), "cut at {cut}");
        }
    }

    /// With no final output count, output is billed at one token per
    /// delta event seen (it was 0: a client that left before the end, an
    /// upstream ignoring include_usage, a usage without counts), and says
    /// it is an estimate; a final count is taken as it is.
    #[test]
    fn output_without_its_final_count_is_estimated_from_deltas() {
        let delta = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        let cases = [
            (delta.repeat(3), (3, true)),
            (format!("{}data: {{\"choices\":[],\"usage\":{{}}}}\n\n", delta.repeat(3)), (3, true)),
            (format!("{}data: {{\"usage\":{{\"completion_tokens\":2.0}}}}\n\n", delta.repeat(3)), (3, true)),
            (format!("{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":5,\"completion_tokens\":2}}}}\n\n", delta.repeat(3)), (2, false)),
            (
                "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n".to_string()
                    + &"data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"ab\"}}\n\n".repeat(4),
                (4, true),
            ),
            (
                "data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"ab\"}}\n\n".repeat(4)
                    + "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":11}}\n\n",
                (11, false),
            ),
        ];
        for (text, want) in cases {
            // An event a chunk, as upstreams write them.
            let mut p = SseUsage::default();
            for event in text.split_inclusive("\n\n") {
                p.feed(event.as_bytes());
            }
            let (usage, estimated) = p.billed();
            assert_eq!((usage.output, estimated), want, "{text}");
        }
        // However the upstream's writes or goproxy's reads cut the
        // events (several in a chunk, or a `"delta"` cut in two, down to a
        // byte at a time), each counts once: this counted a chunk, so 20
        // events in one write were billed as one token, and a byte at a
        // time as none.
        let text = delta.repeat(20)
            + &"data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"ab\"}}\r\n\r\n"
                .repeat(5);
        for size in (1..=80).chain([text.len()]) {
            let mut p = SseUsage::default();
            for piece in text.as_bytes().chunks(size) {
                p.feed(piece);
            }
            assert_eq!(
                p.billed(),
                (
                    Usage {
                        output: 25,
                        ..Usage::default()
                    },
                    true
                ),
                "{size}"
            );
        }
    }

    /// An error event is kept whatever its shape (OpenAI's, Anthropic's,
    /// vLLM's, OpenRouter's chunk that also has a delta) and however the
    /// stream is cut; the word in content, a `finish_reason` of `"error"`
    /// alone and `"error": null` are not errors.
    #[test]
    fn error_events_are_kept_in_every_shape() {
        let delta = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"an \\\"error\\\" word\"}}]}\n\n";
        let errors = [
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "data: {\"object\":\"error\",\"message\":\"engine died\",\"code\":500}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}],\"error\":{\"message\":\"provider down\"}}\n\n",
        ];
        for error in errors {
            let text = format!("{delta}{delta}{error}data: [DONE]\n\n");
            for split in 1..text.len() {
                let mut p = SseUsage::default();
                for chunk in text.as_bytes().chunks(split) {
                    p.feed(chunk);
                }
                let kept = p
                    .error
                    .as_deref()
                    .unwrap_or_else(|| panic!("{error} split {split}"));
                let data = error.split("data: ").nth(1).unwrap().trim_end();
                assert_eq!(kept, data.as_bytes(), "split {split}");
            }
        }
        let not_errors = [
            delta,
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"error\"}]}\n\n",
            "data: {\"choices\":[],\"error\":null,\"usage\":{\"completion_tokens\":2}}\n\n",
            "event: error\n\n",
        ];
        for text in not_errors {
            let mut p = SseUsage::default();
            p.feed(text.as_bytes());
            assert_eq!(p.error, None, "{text}");
        }
        // The first error is the one kept.
        let mut p = SseUsage::default();
        p.feed(errors[1].as_bytes());
        p.feed(errors[2].as_bytes());
        assert!(p.error.unwrap().ends_with(b"\"Overloaded\"}}"));
    }

    /// `"usage":null` (OpenAI's in every chunk of a stream that asked for
    /// usage) and `"error":null` are no reason to parse a chunk; any other
    /// value, a later member of the same name, or the word as a value is.
    /// The final usage is still read past a stream of null ones.
    #[test]
    fn null_members_are_passed_over() {
        let cases: [(&[u8], bool); 8] = [
            (b"{\"usage\":null}", false),
            (b"{\"usage\" :\n null,\"x\":1}", false),
            (b"{\"usage\":{\"completion_tokens\":2}}", true),
            (b"{\"usage\":null,\"m\":{\"usage\":{}}}", true),
            (b"{\"type\":\"usage\"}", true),
            (b"{\"usage\":nullx}", false),
            (b"{\"usage\"", true),
            (b"{}", false),
        ];
        for (hay, want) in cases {
            assert_eq!(words(hay).usage, want, "{}", hay.escape_ascii());
        }
        assert!(!words(b"{\"error\": null}").error);
        assert!(words(b"{\"type\":\"error\"}").error);
        let content = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\n";
        let last =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n";
        let mut p = SseUsage::default();
        for _ in 0..3 {
            p.feed(content.as_bytes());
            assert!(p.line.is_empty(), "nothing of whole lines is kept");
        }
        p.feed(last.as_bytes());
        assert_eq!((p.usage.input, p.usage.output), (9, 4));
    }

    /// OpenAI: content deltas carry no usage (and are not parsed); the last
    /// chunk's usage is read.
    #[test]
    fn openai_usage_comes_from_the_final_chunk() {
        let text = b"data: {\"choices\":[{\"delta\":{\"content\":\"usage is a word\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n\
data: [DONE]\n\n";
        let mut p = SseUsage::default();
        p.feed(text);
        assert_eq!((p.usage.input, p.usage.output), (9, 4));
    }
}
