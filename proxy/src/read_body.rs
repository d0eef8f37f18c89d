//! Reading the client's request body: at most `max_body_bytes`, at most
//! `request_read_timeout` of silence between two pieces of it, at least
//! [`MIN_RATE`] bytes a second once that much time has passed (a grace),
//! and only bytes the shared [`BodyBudget`] has room for.
//!
//! A body that arrives in one frame (the usual case: hyper reads up to its
//! buffer size at once) is kept as that frame, not copied; only a body in
//! several frames is joined.

use crate::req_body::{ReqBody, ReqBodyError};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;

use crate::body_budget::{BodyBudget, Held};
use crate::cancel::Cut;
use crate::config::Config;
use crate::error::ProxyError;

/// The body read so far: its first frame, then a joined buffer.
#[derive(Debug, Default)]
struct Pieces {
    first: Option<Bytes>,
    joined: BytesMut,
    len: usize,
}

impl Pieces {
    fn add(&mut self, data: Bytes, capacity: usize) {
        self.len += data.len();
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(data),
            None => self.joined.extend_from_slice(&data),
            Some(first) => {
                self.joined.reserve(capacity.max(self.len));
                self.joined.extend_from_slice(&first);
                self.joined.extend_from_slice(&data);
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.joined.freeze())
    }
}

/// Silence allowed between pieces of a body once the drain began: an
/// upload still coming goes on, a silent one no longer holds the drain for
/// `request_read_timeout` (60 s by default) before its 408.
pub const DRAIN_SILENCE: Duration = Duration::from_secs(2);

/// Read the whole client body within the limits of `config`, with its
/// bytes taken from `budget`: the caller holds the [`Held`] bytes as long
/// as it holds the body (or copies of it). Once `drain` is cancelled the
/// body gets [`DRAIN_SILENCE`] between pieces, and a body cut then is
/// [`ProxyError::ShuttingDown`].
pub async fn read_body(
    mut body: ReqBody,
    headers: &HeaderMap,
    config: &Config,
    budget: &BodyBudget,
    drain: &Cut,
) -> Result<(Bytes, Held), ProxyError> {
    let limit = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ProxyError::PayloadTooLarge(limit));
    }
    let capacity = declared.map_or(8192, |n| n as usize);
    // Bytes are taken from the budget as they arrive: by our HTTP/1.1
    // body itself (it holds a body back to hand it on whole), here for
    // hyper's HTTP/2 frames.
    let mut held = Held::default();
    let mut pieces = Pieces::default();
    // One timer for the whole body, moved on only when it fires (a timer
    // per frame would cost a timer-wheel entry each); it is not even
    // registered while frames are ready.
    let mut clock = Clock::new(config.request_read_timeout);
    let timer = tokio::time::sleep_until(clock.first_look());
    tokio::pin!(timer);
    loop {
        let next = tokio::select! {
            biased;
            f = body.frame() => f,
            _ = &mut timer => {
                timer.as_mut().reset(look_again(&mut clock, &body, pieces.len, drain)?);
                continue;
            }
            _ = drain.cancelled(), if !clock.draining() => {
                clock.drain();
                timer.as_mut().reset(look_again(&mut clock, &body, pieces.len, drain)?);
                continue;
            }
        };
        let frame = match next {
            None => {
                if let http_body_util::Either::Left(h1) = &mut body {
                    held.absorb(h1.take_held());
                }
                return Ok((pieces.into_bytes(), held));
            }
            Some(Err(e)) if matches!(e.downcast_ref(), Some(ReqBodyError::TooLarge)) => {
                return Err(ProxyError::PayloadTooLarge(limit));
            }
            Some(Err(e)) if matches!(e.downcast_ref(), Some(ReqBodyError::Overloaded)) => {
                return Err(ProxyError::Overloaded);
            }
            Some(Err(e)) if matches!(e.downcast_ref(), Some(ReqBodyError::Gone)) => {
                return Err(ProxyError::ClientGone);
            }
            Some(Err(_)) => {
                return Err(ProxyError::BadRequest(
                    "could not read the request body".into(),
                ))
            }
            Some(Ok(frame)) => frame,
        };
        clock.frame(Instant::now());
        if let Ok(data) = frame.into_data() {
            let len = pieces.len + data.len();
            if len > limit {
                return Err(ProxyError::PayloadTooLarge(limit));
            }
            if matches!(body, http_body_util::Either::Right(_)) {
                budget
                    .hold(&mut held, len)
                    .map_err(|_| ProxyError::Overloaded)?;
            }
            pieces.add(data, capacity);
        }
    }
}

/// When to look at `body` again (`handed` bytes of it handed on so far),
/// or why it ends: too slow or silent, and a body cut during the drain is
/// cut by it (503), not the client's 408.
fn look_again(
    clock: &mut Clock,
    body: &ReqBody,
    handed: usize,
    drain: &Cut,
) -> Result<Instant, ProxyError> {
    let (arrived, received) = progress(body, handed);
    clock
        .look(Instant::now(), arrived, received)
        .map_err(|e| match e {
            ProxyError::ClientTimeout if drain.is_cancelled() => ProxyError::ShuttingDown,
            e => e,
        })
}

/// When bytes last arrived of a body our HTTP/1.1 side holds back to hand
/// on whole (hyper's HTTP/2 body hands on every frame), and how many bytes
/// of the body arrived so far (`handed`: what was handed on).
fn progress(body: &ReqBody, handed: usize) -> (Option<Instant>, u64) {
    match body {
        http_body_util::Either::Left(h1) => (h1.arrived(), h1.received().max(handed as u64)),
        http_body_util::Either::Right(_) => (None, handed as u64),
    }
}

/// Slowest a body may keep arriving once `request_read_timeout` has
/// passed (the figure of Kestrel's `MinRequestBodyDataRate`). Silence
/// alone let a client trickling a byte a second hold its connection (and
/// its handler) for as long as it liked: at `max_connections` a few KB/s
/// from one key holder locked everyone out.
pub const MIN_RATE: u64 = 240;

/// The two bounds on reading a body: silence, and rate. Each byte earns
/// the body 1/[`MIN_RATE`] s more, but never more than
/// `request_read_timeout` beyond its last bytes: an average since the
/// start let a body sent fast and then trickled a byte every few seconds
/// bank an hour (and hold its budget) on its first megabyte.
#[derive(Debug)]
struct Clock {
    last_frame: Instant,
    silence: Duration,
    /// Once the drain began: the silence allowed from then on
    /// ([`DRAIN_SILENCE`]), beside (not instead of) the rate's deadline.
    drain_silence: Option<Duration>,
    /// When the body is too slow, unless more bytes come.
    due: Instant,
    /// Bytes already earned time for.
    credited: u64,
}

impl Clock {
    fn new(silence: Duration) -> Self {
        let now = Instant::now();
        Clock {
            last_frame: now,
            silence,
            drain_silence: None,
            due: now + silence,
            credited: 0,
        }
    }

    /// The first time to look: most bodies are whole long before.
    fn first_look(&self) -> Instant {
        self.due
    }

    fn frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// From now, [`DRAIN_SILENCE`] of silence ends the body too.
    fn drain(&mut self) {
        self.drain_silence = Some(DRAIN_SILENCE.min(self.silence));
    }

    fn draining(&self) -> bool {
        self.drain_silence.is_some()
    }

    /// At `now`, with bytes last `arrived` and `received` in all: the
    /// next time to look, or the 408 (silent too long, or too slow).
    fn look(
        &mut self,
        now: Instant,
        arrived: Option<Instant>,
        received: u64,
    ) -> Result<Instant, ProxyError> {
        if let Some(t) = arrived {
            self.last_frame = self.last_frame.max(t);
        }
        let quiet_until = self.last_frame + self.silence;
        let earned = received.saturating_sub(self.credited) as f64 / MIN_RATE as f64;
        self.credited = received;
        self.due = (self.due + Duration::from_secs_f64(earned)).min(quiet_until);
        let next = match self.drain_silence {
            Some(quiet) => self.due.min(self.last_frame + quiet),
            None => self.due,
        };
        if now >= next {
            return Err(ProxyError::ClientTimeout);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Silence ends a body at `request_read_timeout`; so does a trickle
    /// under MIN_RATE once it has used up the time its bytes earned, which
    /// is never more than `request_read_timeout` past its last bytes; a
    /// steady body goes on.
    #[test]
    fn clock_ends_silent_and_trickling_bodies() {
        let s = |n| Duration::from_secs(n);
        let mut c = Clock::new(s(5));
        let t0 = c.last_frame;
        assert_eq!(c.first_look(), t0 + s(5));
        // 240 bytes by 5 s: one second more.
        assert_eq!(c.look(t0 + s(5), Some(t0 + s(5)), 240).unwrap(), t0 + s(6));
        assert!(c.look(t0 + s(6), Some(t0 + s(6)), 240).is_err(), "too slow");

        // 24,000 bytes at once, then a byte every 4 s: the burst earns
        // 5 s past its last bytes, not 100 s.
        let mut c = Clock::new(s(5));
        let t0 = c.last_frame;
        let next = c.look(t0 + s(5), Some(t0 + s(4)), 24_001).unwrap();
        assert_eq!(next, t0 + s(9));
        let next = c.look(t0 + s(9), Some(t0 + s(8)), 24_002).unwrap();
        assert!(next < t0 + s(10), "a byte earns 1/240 s: {next:?}");
        let e = c.look(next, None, 24_002);
        assert!(e.is_err(), "the trickle after the burst is cut");

        // 900 bytes every 3 s (300 B/s) goes on.
        let mut c = Clock::new(s(5));
        let t0 = c.last_frame;
        let (mut at, mut got) = (c.first_look(), 0);
        for k in 1..=20u64 {
            while t0 + s(3 * k) > at {
                let last = t0 + s(3 * (k - 1));
                at = c.look(at, Some(last), got).expect("steady");
            }
            got += 900;
        }

        // 10 MB at once, then silence: the silence bound.
        let mut c = Clock::new(s(60));
        let t0 = c.last_frame;
        let next = c.look(t0 + s(60), Some(t0 + s(5)), 10_000_000).unwrap();
        assert_eq!(next, t0 + s(65));
        assert!(c.look(t0 + s(65), None, 10_000_000).is_err(), "silent");
    }

    /// One frame is kept as it is; several are joined in order.
    #[test]
    fn pieces_keep_one_frame_and_join_several() {
        let one = Bytes::from_static(b"{\"a\":1}");
        let mut p = Pieces::default();
        p.add(one.clone(), 8);
        let out = p.into_bytes();
        assert_eq!(out.as_ptr(), one.as_ptr(), "not copied");

        let mut p = Pieces::default();
        for part in ["ab", "cd", "ef"] {
            p.add(Bytes::from(part), 2);
        }
        assert_eq!(p.len, 6);
        assert_eq!(&p.into_bytes()[..], b"abcdef");
        assert_eq!(Pieces::default().into_bytes().len(), 0);
    }
}
