//! A warning that would repeat on every event of a sustained condition
//! (every connection waiting at `max_connections`), logged at most once a
//! period instead.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most once per `period`.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl Every {
    /// Due at once, then again `period` after each time it was due.
    pub fn new(period: Duration) -> Self {
        Every {
            period,
            last: Mutex::new(None),
        }
    }

    /// Whether it is due at `now`; if so, the next is a period later.
    pub fn due(&self, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some(t) if now < t + self.period => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_period() {
        let e = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(e.due(t0));
        assert!(!e.due(t0 + Duration::from_secs(9)));
        assert!(e.due(t0 + Duration::from_secs(10)));
        assert!(!e.due(t0 + Duration::from_secs(19)));
    }
}
