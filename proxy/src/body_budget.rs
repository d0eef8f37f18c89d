//! One budget of request body bytes for all requests at once
//! (`max_body_bytes_in_flight`).
//!
//! `max_body_bytes` bounds one body, but every request holds its body
//! whole (the model is renamed before anything goes upstream), so without
//! a budget for all of them memory grows with the clients: 40 clients
//! holding 9.9 MB bodies raised RSS to 420 MB. A request takes its bytes
//! from the budget as they arrive (not its declared length up front: a
//! client trickling a byte a second would hold a megabyte of budget) and
//! gives them back when it is done with the body; a request the budget
//! cannot serve now gets a 503 with `Retry-After`, which the OpenAI and
//! Anthropic SDKs retry. Waiting instead would let a few slow senders
//! hold everyone else's requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::every::Every;

/// The shared budget (cheap to clone).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
    /// The warning that bodies were refused, at most once every 10 s (a
    /// line per refused request would flood the log under load).
    warning: Arc<Every>,
}

/// Bytes one request holds; given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
}

/// The budget lacks the bytes asked for right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted;

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            warning: Arc::new(Every::new(Duration::from_secs(10))),
        }
    }

    /// Bytes held by requests now.
    pub fn in_use(&self) -> usize {
        self.total - self.available()
    }

    /// Make `held` hold `received` bytes in all (what a body has
    /// received so far), without waiting. When the budget has no room, the
    /// refusal is warned of here, at most every 10 s.
    pub fn hold(&self, held: &mut Held, received: usize) -> Result<(), Exhausted> {
        let n = received.saturating_sub(held.bytes());
        if n == 0 {
            return Ok(());
        }
        // One body is at most 1 GiB (`max_body_bytes`), so one take fits.
        let more = u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok());
        let Some(more) = more else {
            self.refused();
            return Err(Exhausted);
        };
        match &mut held.permit {
            Some(p) => p.merge(more),
            None => held.permit = Some(more),
        }
        Ok(())
    }

    /// A body was refused for want of room: say so, at most every 10 s.
    fn refused(&self) {
        if self.warning.due(Instant::now()) {
            tracing::warn!(
                max_body_bytes_in_flight = self.total,
                "request bodies in flight fill max_body_bytes_in_flight: new bodies are answered 503 with Retry-After until some are sent on (raise it if this is expected load)"
            );
        }
    }

    /// Bytes not held by any request now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Hold what `other` held too.
    pub fn absorb(&mut self, other: Held) {
        match (&mut self.permit, other.permit) {
            (Some(p), Some(o)) => p.merge(o),
            (None, o) => self.permit = o,
            (Some(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds grow to what was received, fail without waiting past the
    /// total, and come back when the holder is dropped.
    #[test]
    fn holds_grow_and_come_back_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = Held::default();
        budget.hold(&mut a, 60).unwrap();
        budget.hold(&mut a, 90).unwrap();
        assert_eq!(a.bytes(), 90);
        let mut b = Held::default();
        assert_eq!(budget.hold(&mut b, 11), Err(Exhausted));
        budget.hold(&mut b, 10).unwrap();
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.available(), 90);
        budget.hold(&mut b, 5).unwrap();
        assert_eq!(b.bytes(), 10, "never less than it holds");
    }
}
