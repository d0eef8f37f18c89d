//! Idle HTTP/1.1 connections, per upstream (scheme, host and port).
//!
//! A connection comes back only after its response body was read to the
//! end with nothing after it, so a taken connection is always between
//! messages. Before reuse it is checked without waiting: one the upstream
//! closed (or wrote to) since is dropped, as nginx's keepalive cache does.
//! Nothing is ever sent twice: a request that fails on a reused connection
//! fails (a POST to an LLM API is not idempotent).
//!
//! Each thread keeps its own idle connections (a shard per thread): a
//! connection is registered with the event loop of the thread that opened
//! it ([`crate::workers`]), and is only used there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use http::uri::{Authority, Uri};

use super::conn::Conn;

/// Most idle connections kept per upstream and thread.
const MAX_IDLE_PER_KEY: usize = 256;
/// Shards: threads beyond this many share them (still correct, as every
/// shard is locked; only slower).
const SHARDS: usize = 64;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, assigned on first use.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Which connections can serve a URI.
#[derive(Debug, Clone)]
pub struct Key {
    https: bool,
    authority: Authority,
}

// By the authority's exact text: `Authority`'s own `Hash` and `Eq` ignore
// case a byte at a time (~600 instructions per pool lookup, two lookups
// per request). An endpoint's URLs all come from one `base_url`, so its
// case never varies; were it to, the cost is a second idle list.
impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.authority.as_str().hash(state);
    }
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

/// Idle connections to one upstream, most recently used last (boxed: they
/// move between the pool and response bodies).
type Idle = Vec<Box<Conn>>;

/// One thread's idle connections.
/// (foldhash: SipHash, per byte of the authority, twice a request, was
/// 4% of a small request's instructions.)
type Shard = Mutex<foldhash::HashMap<Key, Idle>>;

/// The idle connections.
#[derive(Debug)]
pub struct Pool {
    shards: Box<[Shard]>,
    idle_timeout: Duration,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Self {
        Pool {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            idle_timeout,
        }
    }

    /// This thread's idle connections.
    fn mine(&self) -> &Shard {
        &self.shards[SHARD.with(|s| *s)]
    }

    /// The most recently used live connection for `key`, if any. Expired
    /// and stale ones met on the way are closed.
    pub fn take(&self, key: &Key) -> Option<Box<Conn>> {
        loop {
            let mut conn = self.mine().lock().unwrap().get_mut(key)?.pop()?;
            if conn.is_usable(self.idle_timeout) {
                return Some(conn);
            }
        }
    }

    /// Keep `conn` for the next request to `key`.
    pub fn put(&self, key: &Key, mut conn: Box<Conn>) {
        conn.rest();
        let mut idle = self.mine().lock().unwrap();
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
        for shard in self.shards.iter() {
            self.prune_shard(shard);
        }
    }

    fn prune_shard(&self, shard: &Shard) {
        let closed: Idle = {
            let mut idle = shard.lock().unwrap();
            let mut closed = Vec::new();
            for list in idle.values_mut() {
                closed.extend(list.extract_if(.., |c| !c.is_usable(self.idle_timeout)));
            }
            idle.retain(|_, list| !list.is_empty());
            closed
        };
        drop(closed); // sockets closed outside the lock
    }

    /// Idle connections kept (tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        let count = |s: &Shard| s.lock().unwrap().values().map(Vec::len).sum::<usize>();
        self.shards.iter().map(count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// An idle connection is handed out until the idle timeout, then
    /// closed, by `take` and by `prune` alike.
    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = Key::of(&format!("http://{addr}/v1").parse().unwrap()).unwrap();
        let pool = Pool::new(Duration::from_secs(50));
        let mut peers = Vec::new();
        for _ in 0..2 {
            pool.put(&key, Conn::plain(TcpStream::connect(addr).await.unwrap()));
            peers.push(listener.accept().await.unwrap());
        }
        tokio::time::advance(Duration::from_secs(49)).await;
        let conn = pool.take(&key).expect("not expired yet");
        pool.put(&key, conn); // idle again from now
        assert_eq!(pool.idle_count(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        pool.prune();
        assert_eq!(pool.idle_count(), 1, "the older one expired");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(pool.take(&key).is_none());
        assert_eq!(pool.idle_count(), 0);
    }
}
