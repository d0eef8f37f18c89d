//! Idle HTTP/1.1 connections, per upstream (scheme, host and port).
//!
//! A connection comes back only after its response body was read to the
//! end with nothing after it, so a taken connection is always between
//! messages. Before reuse it is checked without waiting: one the upstream
//! closed (or wrote to) since is dropped, as nginx's keepalive cache does.
//! Nothing is ever sent twice: a request that fails on a reused connection
//! fails (a POST to an LLM API is not idempotent).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::uri::{Authority, Uri};
use tokio::time::Instant;

use super::conn::Conn;

/// Most idle connections kept per upstream.
const MAX_IDLE_PER_KEY: usize = 256;

/// Which connections can serve a URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    https: bool,
    authority: Authority,
}

impl Key {
    /// The key of an absolute URI (`None` without an authority).
    pub fn of(uri: &Uri) -> Option<Key> {
        Some(Key {
            https: uri.scheme_str() == Some("https"),
            authority: uri.authority()?.clone(),
        })
    }
}

/// The idle connections.
#[derive(Debug)]
pub struct Pool {
    #[expect(
        clippy::vec_box,
        reason = "connections move boxed between the pool and response bodies"
    )]
    idle: Mutex<HashMap<Key, Vec<Box<Conn>>>>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            idle_timeout,
        }
    }

    /// The most recently used live connection for `key`, if any. Expired
    /// and stale ones met on the way are closed.
    pub fn take(&self, key: &Key) -> Option<Box<Conn>> {
        loop {
            let mut conn = self.idle.lock().unwrap().get_mut(key)?.pop()?;
            if conn.idle_since.elapsed() < self.idle_timeout && !conn.is_stale() {
                return Some(conn);
            }
        }
    }

    /// Keep `conn` for the next request to `key`.
    pub fn put(&self, key: &Key, mut conn: Box<Conn>) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        let list = match idle.get_mut(key) {
            Some(list) => list,
            None => idle.entry(key.clone()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_KEY {
            list.push(conn);
        }
    }

    /// Close connections idle for longer than the idle timeout or closed by
    /// the upstream; run periodically so an idle proxy holds no dead
    /// sockets.
    pub fn prune(&self) {
        let closed: Vec<Box<Conn>> = {
            let mut idle = self.idle.lock().unwrap();
            let mut closed = Vec::new();
            for list in idle.values_mut() {
                let (keep, drop): (Vec<Box<Conn>>, Vec<Box<Conn>>) = std::mem::take(list)
                    .into_iter()
                    .partition(|c| c.idle_since.elapsed() < self.idle_timeout);
                *list = keep;
                closed.extend(drop);
                list.retain_mut(|c| !c.is_stale());
            }
            idle.retain(|_, list| !list.is_empty());
            closed
        };
        drop(closed); // sockets closed outside the lock
    }

    /// Idle connections kept (tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().values().map(Vec::len).sum()
    }
}
