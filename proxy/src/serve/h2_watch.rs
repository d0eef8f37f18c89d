//! HTTP/2 responses whose client gives no flow-control window.
//!
//! hyper sends an HTTP/2 body by taking a frame from it, then waiting for
//! window before it asks for the next, so a client that never sends
//! `WINDOW_UPDATE` leaves the body unpolled for good: its own timers (the
//! stall timeout, heartbeats, the drain's cut) never run. Each HTTP/2 body
//! is therefore wrapped to note in the connection's [`Activity`] when it
//! handed out a frame and was not asked again; the connection's watchdog
//! ([`crate::conn`]) closes a connection whose body waited longer than
//! `send_timeout_secs`, as an HTTP/1.1 write would time out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::activity::Activity;
use crate::body::{Body, BodyError};

/// Wrap an HTTP/2 response body; see the module docs.
pub fn watched(inner: Body, activity: Arc<Activity>) -> Body {
    let id = activity.body_id();
    Watched {
        inner,
        activity,
        id,
        waiting: false,
    }
    .boxed_unsync()
}

struct Watched {
    inner: Body,
    activity: Arc<Activity>,
    id: u64,
    /// A frame was handed out and the body not polled since.
    waiting: bool,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if std::mem::take(&mut self.waiting) {
            self.activity.waits_on_client(self.id, None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = polled {
            self.waiting = true;
            self.activity.waits_on_client(self.id, Some(Instant::now()));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.waiting {
            self.activity.waits_on_client(self.id, None);
        }
    }
}
