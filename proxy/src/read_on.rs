//! After a client leaves mid-answer, the rest of the upstream's answer is
//! read (and thrown away) for its usage, for at most
//! `read_on_after_disconnect_secs`.
//!
//! Why: usage comes at the end of an answer (OpenAI's last stream chunk,
//! Anthropic's `message_delta`, a JSON body's tail). A client that read
//! the content and closed before that final chunk (some SDKs stop at
//! `finish_reason`; a hostile client does it on purpose) was logged and
//! metered with no tokens, while the upstream billed the operator for all
//! of them. nginx's equivalent is `proxy_ignore_client_abort on`; here it
//! is bounded: by the read-on limit, by `stream_idle_timeout` between two
//! chunks, and by the drain's cut. Memory stays what the relay's usage
//! reader already bounds (the chunks themselves are dropped as read).
//!
//! A client that leaves before its answer's head is treated alike: the
//! upstream request goes on for up to the limit (an answer being
//! generated is billed to the operator whether or not anyone waits for
//! it), and then its body is read on (so at most twice the limit in all).
//! Over HTTP/2, where hyper drops a reset stream's handler, the handler
//! is first moved to a task of its own (`serve/h2_reset.rs`).
//!
//! The relay bodies are wrapped in [`HandOff`]: when hyper drops the body
//! (the client went away) with the upstream still open, the relay moves
//! into a task of the server's tracker, so the drain waits for it as for a
//! connection, and the relay's own drop writes the request's line after
//! the read-on, with how it ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::body::BodyError;
use crate::cancel::Cut;
use crate::every::Every;
use crate::upstream_body::UpstreamBody;

/// Most a read-on reads: an answer's usage comes within this (a
/// 128k-token answer is a few MB of SSE); an upstream sending more is not
/// worth a core of goproxy for the rest of the limit.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Most read-ons at once: each holds an upstream connection (a file
/// descriptor) for up to the limit after its client is gone, so a client
/// that opens and leaves streams in a loop could otherwise run goproxy out
/// of descriptors. Past it, the upstream is cut at once, as with read-on
/// off, and a warning says so.
pub const MAX_AT_ONCE: usize = 256;

/// What a relay needs to read on: the limit (zero: never), the tracker
/// the drain waits on, and the permits that bound read-ons at once.
#[derive(Debug, Clone)]
pub struct ReadOnPolicy {
    /// Longest read-on after the client left.
    pub limit: Duration,
    /// The server's tasks (connections and read-ons).
    pub tasks: TaskTracker,
    /// [`MAX_AT_ONCE`] permits, one per read-on.
    permits: Arc<Semaphore>,
    /// The warning when they run out, at most every 10 s (a client
    /// resetting thousands of HTTP/2 streams a second otherwise wrote a
    /// warning for each).
    warning: Arc<Every>,
}

impl ReadOnPolicy {
    /// Read on for `limit`, on `tasks`, at most [`MAX_AT_ONCE`] at once.
    pub fn new(limit: Duration, tasks: TaskTracker) -> Self {
        ReadOnPolicy {
            limit,
            tasks,
            permits: Arc::new(Semaphore::new(MAX_AT_ONCE)),
            warning: Arc::new(Every::new(Duration::from_secs(10))),
        }
    }

    /// A read-on's permit, unless reading on is off or [`MAX_AT_ONCE`]
    /// read-ons are running (then with a warning).
    pub fn permit(&self) -> Option<ReadOnPermit> {
        if self.limit.is_zero() {
            return None;
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                if self.warning.due(Instant::now()) {
                    tracing::warn!(
                        at_once = MAX_AT_ONCE,
                        "too many answers read on after their clients left: upstreams past that are cut at once, and usage they had not sent yet is not billed (warned at most every 10 s)"
                    );
                }
                None
            }
        }
    }
}

/// One read-on's place among [`MAX_AT_ONCE`], given back when dropped.
pub type ReadOnPermit = OwnedSemaphorePermit;

/// How a read-on ended (the `read_on` field of the request's line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The upstream's answer ended: its usage is whole.
    Complete,
    /// `read_on_after_disconnect_secs` passed first.
    TimeLimit,
    /// [`MAX_BYTES`] were read first.
    ByteLimit,
    /// The upstream was silent for `stream_idle_timeout`.
    UpstreamStalled,
    /// The upstream connection broke.
    UpstreamError,
    /// The drain's cut (its timeout, or a second signal).
    DrainCut,
    /// Not read on: [`MAX_AT_ONCE`] read-ons were running.
    TooMany,
}

impl End {
    /// The name in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::TimeLimit => "time_limit",
            End::ByteLimit => "byte_limit",
            End::UpstreamStalled => "upstream_stalled",
            End::UpstreamError => "upstream_error",
            End::DrainCut => "drain_cut",
            End::TooMany => "too_many",
        }
    }
}

/// A finished read-on, for the request's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOn {
    /// How it ended.
    pub end: End,
    /// Upstream body bytes read (and dropped) after the client left.
    pub bytes: u64,
}

/// Read `upstream` to its end, giving each chunk to `feed`: for at most
/// `limit` and [`MAX_BYTES`], with at most `idle` between two chunks,
/// until `cut`.
pub async fn read_rest(
    upstream: &mut UpstreamBody,
    mut feed: impl FnMut(&[u8]),
    limit: Duration,
    idle: Duration,
    cut: &Cut,
) -> ReadOn {
    let deadline = Instant::now() + limit;
    let mut bytes = 0u64;
    let end = loop {
        let next = tokio::time::timeout(idle, upstream.frame());
        let frame = tokio::select! {
            biased;
            () = cut.cancelled() => break End::DrainCut,
            () = tokio::time::sleep_until(deadline) => break End::TimeLimit,
            frame = next => frame,
        };
        match frame {
            Err(_) => break End::UpstreamStalled,
            Ok(None) => break End::Complete,
            Ok(Some(Err(_))) => break End::UpstreamError,
            Ok(Some(Ok(frame))) => {
                if let Ok(chunk) = frame.into_data() {
                    bytes += chunk.len() as u64;
                    feed(&chunk);
                    if bytes >= MAX_BYTES {
                        break End::ByteLimit;
                    }
                }
            }
        }
    };
    ReadOn { end, bytes }
}

/// A relay body that can go on reading its upstream once the client left.
pub trait ReadsOn:
    hyper::body::Body<Data = Bytes, Error = BodyError> + Send + Unpin + 'static
{
    /// The read-on policy, when the client left with the upstream body
    /// still open (not cut by the drain, not ended); `None` otherwise.
    fn left_open(&mut self) -> Option<&ReadOnPolicy>;

    /// Read the rest of the upstream body for usage ([`read_rest`]).
    fn read_rest(&mut self) -> impl Future<Output = ReadOn> + Send;

    /// Note how the read-on ended, for the line written on drop.
    fn read_on_ended(&mut self, r: ReadOn);
}

/// A relay body that hands itself to a read-on task when dropped while
/// the upstream is still open; see the module docs.
#[derive(Debug)]
pub struct HandOff<R: ReadsOn>(Option<R>);

impl<R: ReadsOn> HandOff<R> {
    /// Wrap `relay` (boxed as the client body by the caller).
    pub fn new(relay: R) -> Self {
        HandOff(Some(relay))
    }
}

impl<R: ReadsOn> Drop for HandOff<R> {
    fn drop(&mut self) {
        let Some(mut relay) = self.0.take() else {
            return;
        };
        let Some(policy) = relay.left_open() else {
            return;
        };
        let tasks = policy.tasks.clone();
        let Some(permit) = policy.permit() else {
            return relay.read_on_ended(ReadOn {
                end: End::TooMany,
                bytes: 0,
            });
        };
        // Outside a runtime (none to run the task on) the relay just drops:
        // its line says what it saw. A runtime shutting down drops the task
        // at once, with the same result.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let read_on = async move {
                let r = relay.read_rest().await;
                relay.read_on_ended(r);
                // The line is written and the upstream closed first.
                drop(relay);
                drop(permit);
            };
            tasks.spawn_on(read_on, &rt);
        }
    }
}

impl<R: ReadsOn> hyper::body::Body for HandOff<R> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.0.as_mut() {
            Some(r) => Pin::new(r).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(|r| r.size_hint()).unwrap_or_default()
    }
}

/// Box a relay, wrapped in [`HandOff`], as a client body.
pub fn boxed<R: ReadsOn>(relay: R) -> crate::body::Body {
    BodyExt::boxed_unsync(HandOff::new(relay))
}
