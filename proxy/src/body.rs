//! The response body type every handler returns, and the guard that keeps a
//! connection counted as busy while a body is still being sent.
//!
//! Its own module so `error`, `stream` and `passthrough` can build bodies
//! without importing the server (no import cycle).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};

/// Why a response body stopped early. hyper then aborts the response (no
/// final chunk, or a short `content-length` body) so the client sees a
/// broken transfer instead of a silently truncated one.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Response body type: full bodies, SSE relays and passed-through bodies.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BodyError>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that holds `guard` until hyper drops it, i.e. until the response
/// has been sent (or the client went away).
pub fn with_guard<G: Send + Unpin + 'static>(inner: Body, guard: G) -> Body {
    Guarded {
        inner,
        _guard: guard,
    }
    .boxed_unsync()
}

struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G> hyper::body::Body for Guarded<G>
where
    G: Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Most non-data frames (trailers) skipped in a row before a body is taken
/// as ended: HTTP/1 and HTTP/2 send at most one trailer frame.
const MAX_SKIPPED_FRAMES: usize = 4;

/// The next data chunk of a body; trailers are skipped.
pub async fn next_data<B>(body: &mut B) -> Option<Result<Bytes, B::Error>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    for _ in 0..MAX_SKIPPED_FRAMES {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
    None
}
