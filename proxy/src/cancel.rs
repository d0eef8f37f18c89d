//! Waiting for a [`CancellationToken`] from a future polled on every
//! relayed chunk, at the cost of an atomic load per poll.
//!
//! Polling tokio_util's cancellation future locks the token's waiter list
//! each time (to refresh the waker), i.e. once per SSE event. This wrapper
//! registers the task's waker once and, while the waker stays the same
//! (a connection's body is always polled by its connection task), only
//! reads the token's flag; the registered waker still wakes the task when
//! the token is cancelled.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Resolves once `token` is cancelled; see the module docs.
#[derive(Debug)]
pub struct Cancelled {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: Option<Waker>,
}

impl Cancelled {
    /// Wait for `token`.
    pub fn new(token: CancellationToken) -> Self {
        Cancelled {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            registered: None,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token.is_cancelled() {
            return Poll::Ready(());
        }
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.registered = Some(cx.waker().clone());
        self.wait.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending until cancelled, the registered waker is woken by the
    /// cancellation, and a new waker gets registered too.
    #[test]
    fn wakes_the_registered_task_on_cancel() {
        let token = CancellationToken::new();
        let mut c = Box::pin(Cancelled::new(token.clone()));
        let first = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(first.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(c.as_mut().poll(&mut cx).is_pending());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        let second = Arc::new(Count(AtomicUsize::new(0)));
        let waker2 = Waker::from(second.clone());
        assert!(c
            .as_mut()
            .poll(&mut Context::from_waker(&waker2))
            .is_pending());
        token.cancel();
        assert_eq!(
            second.0.load(Ordering::SeqCst),
            1,
            "the latest waker is woken"
        );
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }
}
