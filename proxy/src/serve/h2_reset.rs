//! HTTP/2 handlers that outlive their stream's reset.
//!
//! hyper drops a stream's handler when the client resets the stream (or
//! the connection goes) before the answer began: the upstream request was
//! cancelled and the request logged 499, while the upstream may already
//! have billed the operator for a generation. Over HTTP/1.1 a client that
//! leaves while its answer is prepared is handled by
//! [`super::after_client_left`]: the upstream request goes on (bounded by
//! the read-on limit, the drain and 256 read-ons at once) and its answer
//! is read on for its usage. [`KeepOnReset`] gives HTTP/2 the same: a
//! handler dropped unfinished is moved to a task of the server's tracker
//! that does just that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::app::App;

/// A boxed handler future, finished on a task of its own if dropped early.
pub struct KeepOnReset<T: Send + 'static> {
    app: Arc<App>,
    handler: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> KeepOnReset<T> {
    /// Wrap `handler` (boxed here: it moves to a task if dropped).
    pub fn new(app: Arc<App>, handler: impl Future<Output = T> + Send + 'static) -> Self {
        KeepOnReset {
            app,
            handler: Some(Box::pin(handler)),
        }
    }
}

impl<T: Send + 'static> Future for KeepOnReset<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(handler) = self.handler.as_mut() else {
            panic!("KeepOnReset polled after it finished");
        };
        let out = std::task::ready!(handler.as_mut().poll(cx));
        self.handler = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for KeepOnReset<T> {
    fn drop(&mut self) {
        let Some(mut handler) = self.handler.take() else {
            return;
        };
        // No runtime (it is shutting down): nothing can go on; dropped.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let app = self.app.clone();
        self.app.tasks.spawn(async move {
            if let Some(end) = super::after_client_left(&app, handler.as_mut()).await {
                crate::gone::with(crate::gone::Gone::Dropped(end), || drop(handler));
            }
        });
    }
}
