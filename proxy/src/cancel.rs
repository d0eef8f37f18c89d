//! Waiting for the drain's cut from a future polled on every relayed
//! chunk, at the cost of an atomic load per poll.
//!
//! Polling tokio_util's cancellation future locks the token's waiter list
//! each time (to refresh the waker), and even `is_cancelled` takes the
//! token's mutex: both once per SSE event. [`Cut`] pairs the token with an
//! atomic flag set before the token is cancelled, and [`Cancelled`]
//! registers the task's waker once and, while the waker stays the same (a
//! connection's body is always polled by its connection task), only reads
//! that flag; the registered waker still wakes the task on the cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A cancellation signal that is cheap to check: a [`CancellationToken`]
/// and a flag that is set first.
#[derive(Debug, Clone, Default)]
pub struct Cut {
    token: CancellationToken,
    flag: Arc<AtomicBool>,
}

impl Cut {
    /// Not cancelled yet.
    pub fn new() -> Self {
        Cut::default()
    }

    /// Cancel: the flag first, so a task the token wakes sees it set.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether [`Cut::cancel`] was called (one atomic load).
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves when cancelled (for `select!`; the per-chunk path uses
    /// [`Cancelled`]).
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }
}

/// Resolves once the cut is cancelled; see the module docs.
#[derive(Debug)]
pub struct Cancelled {
    cut: Cut,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: Option<Waker>,
}

impl Cancelled {
    /// Wait for `cut`.
    pub fn new(cut: Cut) -> Self {
        Cancelled {
            wait: Box::pin(cut.token.clone().cancelled_owned()),
            cut,
            registered: None,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.cut.is_cancelled() {
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
    use crate::wake_count::WakeCount;

    /// Pending until cancelled, the registered waker is woken by the
    /// cancellation, and a new waker gets registered too.
    #[test]
    fn wakes_the_registered_task_on_cancel() {
        let token = Cut::new();
        let mut c = Box::pin(Cancelled::new(token.clone()));
        let (_, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        assert!(c.as_mut().poll(&mut cx).is_pending());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        let (second, waker2) = WakeCount::waker();
        assert!(c
            .as_mut()
            .poll(&mut Context::from_waker(&waker2))
            .is_pending());
        token.cancel();
        assert_eq!(second.get(), 1, "the latest waker is woken");
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }
}
