//! HTTP/2 responses whose client gives no flow-control window.
//!
//! hyper sends an HTTP/2 body by taking a frame from it, then waiting for
//! window before it asks for the next, so a client that never sends
//! `WINDOW_UPDATE` leaves the body unpolled for good: its own timers (the
//! stall timeout, heartbeats, the drain's cut) never run. Each HTTP/2 body
//! is therefore wrapped to note in the connection's [`Activity`] when it
//! handed out a frame and was not asked again; the connection's watchdog
//! ([`crate::conn`]) closes a connection whose body waited longer than
//! `send_timeout_secs`, as an HTTP/1.1 write would time out. Frames are
//! handed out at most [`PIECE`] bytes at a time, so a client granting
//! window slowly but steadily shows progress often enough (a 64 KB chunk
//! at 1 KB/s took longer than a minute to go out as one frame; a 4 KB
//! piece keeps a reader of ~70 B/s within the default 60 s). HTTP/2
//! clients reach goproxy directly only: behind nginx it is HTTP/1.1, so
//! the extra polls cost nothing on the production path.

/// Largest piece of a data frame handed to hyper at once.
pub const PIECE: usize = 4 * 1024;

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
        rest: Bytes::new(),
    }
    .boxed_unsync()
}

struct Watched {
    inner: Body,
    activity: Arc<Activity>,
    id: u64,
    /// A frame was handed out and the body not polled since.
    waiting: bool,
    /// What is left of a data frame larger than [`PIECE`].
    rest: Bytes,
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
        let polled = if self.rest.is_empty() {
            Pin::new(&mut self.inner).poll_frame(cx)
        } else {
            let rest = std::mem::take(&mut self.rest);
            Poll::Ready(Some(Ok(Frame::data(rest))))
        };
        let Poll::Ready(Some(Ok(frame))) = polled else {
            return polled;
        };
        self.waiting = true;
        self.activity.waits_on_client(self.id, Some(Instant::now()));
        let frame = match frame.into_data() {
            Ok(mut data) if data.len() > PIECE => {
                self.rest = data.split_off(PIECE);
                Frame::data(data)
            }
            Ok(data) => Frame::data(data),
            Err(frame) => frame,
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        hint.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.waiting {
            self.activity.waits_on_client(self.id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// A large frame goes out in pieces of at most PIECE, in order, whole;
    /// each piece counts as progress (the wait is noted, then cleared).
    #[tokio::test]
    async fn large_frames_go_out_in_pieces() {
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let activity = crate::activity::Activity::new();
        let mut body = watched(crate::body::full(data.clone()), activity.clone());
        assert_eq!(body.size_hint().exact(), Some(50_000));
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(
                activity.oldest_wait_on_client().is_some(),
                "a handed-out piece waits"
            );
            sizes.push(chunk.len());
            out.extend_from_slice(&chunk);
        }
        let mut expected = vec![PIECE; 50_000 / PIECE];
        expected.push(50_000 % PIECE);
        assert_eq!(sizes, expected);
        assert_eq!(out, data);
        assert!(
            activity.oldest_wait_on_client().is_none(),
            "done: nothing waits"
        );
    }
}
