//! What one connection is doing: how many requests it has in progress
//! ([`Busy`] guards, held until the response body is dropped) and since when
//! it has been idle. The connection's watchdog ([`crate::conn`]) reads it;
//! the request handler ([`crate::routes`]) holds a [`Busy`]. A leaf module,
//! so the two need not import each other.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cancel::Cut;

/// What one connection is doing, shared by its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    requests: AtomicU64,
    opened: Instant,
    idle_since: Mutex<Instant>,
    /// HTTP/2 response bodies that handed hyper a frame and have not been
    /// polled since, so hyper waits for flow-control window the client does
    /// not give: their ids and since when ([`crate::serve::h2_watch`]).
    waiting_on_client: Mutex<Vec<(u64, Instant)>>,
    next_body: AtomicU64,
    /// Notified on every begin and end of a request: the watchdog wakes.
    pub changed: Notify,
    /// Part of a request head has arrived: not idle for [`crate::shed`],
    /// though no request is in progress yet.
    head_begun: AtomicBool,
    /// Set when the watchdog (idle, drain) wants the connection closed:
    /// no new request is read, what is in progress may finish.
    close: Cut,
}

/// Held while a request is in progress (handler, then response body).
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap() = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

impl Activity {
    pub fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            opened: now,
            idle_since: Mutex::new(now),
            waiting_on_client: Mutex::new(Vec::new()),
            next_body: AtomicU64::new(0),
            changed: Notify::new(),
            head_begun: AtomicBool::new(false),
            close: Cut::new(),
        })
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Ask the connection to close once what is in progress is done.
    pub fn request_close(&self) {
        self.close.cancel();
    }

    pub fn closing(&self) -> bool {
        self.close.is_cancelled()
    }

    /// Resolves once [`Activity::request_close`] was called.
    pub async fn close_requested(&self) {
        self.close.cancelled().await
    }

    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// Note whether part of a request head has arrived.
    pub fn set_head_begun(&self, begun: bool) {
        self.head_begun.store(begun, Ordering::SeqCst);
    }

    /// Whether part of a request head has arrived (and no whole head yet).
    pub fn head_begun(&self) -> bool {
        self.head_begun.load(Ordering::SeqCst)
    }

    /// When this connection has been idle too long, or `None` while busy.
    /// A new id for [`Activity::waits_on_client`].
    pub fn body_id(&self) -> u64 {
        self.next_body.fetch_add(1, Ordering::Relaxed)
    }

    /// Body `id` waits on the client since `since`, or (`None`) no longer.
    pub fn waits_on_client(&self, id: u64, since: Option<Instant>) {
        let mut waiting = self.waiting_on_client.lock().unwrap();
        waiting.retain(|&(i, _)| i != id);
        if let Some(t) = since {
            waiting.push((id, t));
        }
    }

    /// Since when the longest-waiting body has waited on the client.
    pub fn oldest_wait_on_client(&self) -> Option<Instant> {
        let waiting = self.waiting_on_client.lock().unwrap();
        waiting.iter().map(|&(_, t)| t).min()
    }

    /// Since when nothing is in progress (`None`: busy).
    pub fn idle_since(&self) -> Option<Instant> {
        if self.busy() {
            None
        } else if self.requests.load(Ordering::SeqCst) == 0 {
            Some(self.opened)
        } else {
            Some(*self.idle_since.lock().unwrap())
        }
    }

    pub fn idle_deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        let since = self.idle_since()?;
        let first = self.requests.load(Ordering::SeqCst) == 0;
        Some(since + if first { first_request } else { idle })
    }
}
