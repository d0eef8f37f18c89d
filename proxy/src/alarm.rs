//! A timer polled on every relayed chunk without re-registering it each
//! time: the stall and heartbeat deadlines of a body.
//!
//! A relay polls its timer whenever the upstream has nothing (twice per SSE
//! event). Polling a `Sleep` takes a coop budget unit and swaps the waker
//! it holds, work that is measurable per event (~400 instructions). An
//! [`Alarm`] polls its `Sleep` only when it may have fired (it left the
//! timer wheel) or the task's waker changed; otherwise the waker already
//! registered will be woken when it fires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

/// A resettable deadline; see the module docs.
#[derive(Debug)]
pub struct Alarm {
    sleep: Pin<Box<Sleep>>,
    /// The waker the sleep holds, once a poll left it registered.
    waker: Option<Waker>,
}

impl Alarm {
    /// An alarm at `at`.
    pub fn at(at: Instant) -> Self {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            waker: None,
        }
    }

    /// Move the alarm to `at` (it fires again after having fired).
    pub fn reset(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.waker = None;
    }

    /// Ready once the deadline passed.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let registered = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        // Out of coop budget, a `Sleep` answers Pending without registering
        // the waker: only a Pending from the timer itself is remembered.
        let budget = tokio::task::coop::has_budget_remaining();
        let polled = self.sleep.as_mut().poll(cx);
        self.waker = (budget && polled.is_pending()).then(|| cx.waker().clone());
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wake_count::WakeCount;

    /// Registered once, the alarm is not polled again while pending, yet
    /// its firing wakes the task and the next poll sees it; after a reset
    /// it fires again; a new waker is registered.
    #[tokio::test(start_paused = true)]
    async fn fires_once_registered_and_again_after_reset() {
        let (count, waker) = WakeCount::waker();
        let mut cx = Context::from_waker(&waker);
        let mut alarm = Alarm::at(Instant::now() + Duration::from_secs(1));
        assert!(alarm.poll(&mut cx).is_pending());
        assert!(alarm.waker.is_some(), "registered");
        assert!(alarm.poll(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(count.get(), 1, "the firing woke the task");
        assert!(alarm.poll(&mut cx).is_ready());

        alarm.reset(Instant::now() + Duration::from_secs(1));
        assert!(alarm.poll(&mut cx).is_pending());
        let (other, other_waker) = WakeCount::waker();
        assert!(alarm
            .poll(&mut Context::from_waker(&other_waker))
            .is_pending());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(other.get(), 1, "the newest waker is woken");
        assert!(alarm.poll(&mut cx).is_ready());
    }
}
