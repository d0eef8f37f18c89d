//! Readiness as a condition with a deadline: the one loop every wait in the
//! harness goes through (a container turning healthy, a port listening, old
//! nginx workers exiting), so each wait only says what it looks at.
//!
//! The clock is tokio's, so tests run these waits under paused time and a
//! 120 s deadline costs them nothing.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// What one look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T, S> {
    /// The condition holds: stop with this value.
    Ready(T),
    /// Not yet. `S` is what the look saw; the last one is reported if time
    /// runs out, so a failed wait says what it saw last.
    NotYet(S),
}

/// Why a wait ended without its condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError<S, E> {
    /// A look failed in a way more waiting cannot mend (the process exited,
    /// Docker refused a command): returned at once.
    #[error("{0}")]
    Failed(E),
    /// The deadline passed; `last` is what the final look saw.
    #[error("not ready after {waited:?}: {last}")]
    TimedOut { waited: Duration, last: S },
}

/// Looks with `look` at once, then every `every`, until it is ready, fails,
/// or `deadline` has passed since the start (then one last look is made at
/// or just after the deadline, never a sleep past it for nothing).
pub async fn poll_until<T, S, E, F, Fut>(
    deadline: Duration,
    every: Duration,
    mut look: F,
) -> Result<T, PollError<S, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T, S>, E>>,
{
    let started = Instant::now();
    loop {
        match look().await.map_err(PollError::Failed)? {
            Attempt::Ready(value) => return Ok(value),
            Attempt::NotYet(last) => {
                let waited = started.elapsed();
                if waited >= deadline {
                    return Err(PollError::TimedOut { waited, last });
                }
                tokio::time::sleep(every.min(deadline - waited)).await;
            }
        }
    }
}

/// Milliseconds since `started`, the way waits report how long they took.
pub fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A condition that turns true on the fourth look is met after three
    /// intervals, without waiting for the deadline.
    #[tokio::test(start_paused = true)]
    async fn returns_once_ready() {
        let looks = Cell::new(0);
        let started = Instant::now();
        let got: Result<u32, PollError<String, &'static str>> = poll_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            || async {
                looks.set(looks.get() + 1);
                Ok(if looks.get() == 4 {
                    Attempt::Ready(7)
                } else {
                    Attempt::NotYet(format!("look {}", looks.get()))
                })
            },
        )
        .await;
        assert_eq!(got, Ok(7));
        assert_eq!(looks.get(), 4);
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    /// Past the deadline the wait gives up with what it saw last, and its
    /// final look is at the deadline, not an interval later.
    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_observation() {
        let looks = Cell::new(0u32);
        let started = Instant::now();
        let got: Result<(), PollError<String, &'static str>> = poll_until(
            Duration::from_millis(250),
            Duration::from_millis(100),
            || async {
                looks.set(looks.get() + 1);
                Ok(Attempt::NotYet(format!("status {}", looks.get())))
            },
        )
        .await;
        assert_eq!(
            got,
            Err(PollError::TimedOut {
                waited: Duration::from_millis(250),
                last: "status 4".into()
            })
        );
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }

    /// A failed look ends the wait at once with its error.
    #[tokio::test(start_paused = true)]
    async fn a_failure_stops_at_once() {
        let started = Instant::now();
        let got: Result<(), PollError<String, &'static str>> =
            poll_until(Duration::from_secs(60), Duration::from_secs(1), || async {
                Err("container exited (1)")
            })
            .await;
        assert_eq!(got, Err(PollError::Failed("container exited (1)")));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// The message of a timeout names the time waited and the last sight.
    #[test]
    fn timeout_message_says_what_it_saw() {
        let e: PollError<&str, &str> = PollError::TimedOut {
            waited: Duration::from_secs(2),
            last: "starting",
        };
        assert_eq!(e.to_string(), "not ready after 2s: starting");
    }
}
