//! The client at the other end of one connection: its address as the log
//! lines print it, rendered once per connection (formatting a `SocketAddr`
//! for every request's info line cost more than the rest of the field,
//! ~1.2k instructions), and whether it stopped reading, so that a response
//! body the connection drops can say why in its log line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A client address, already rendered (`127.0.0.1:4711`, `[::1]:4711`).
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct Peer(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    addr: Box<str>,
    stopped_reading: AtomicBool,
}

impl Peer {
    /// Render `addr` the way `SocketAddr`'s `Display` does.
    pub fn new(addr: SocketAddr) -> Self {
        Peer(Arc::new(Inner {
            addr: addr.to_string().into(),
            stopped_reading: AtomicBool::new(false),
        }))
    }

    /// The rendered address.
    pub fn as_str(&self) -> &str {
        &self.0.addr
    }

    /// A write to this client waited out `send_timeout_secs`: the
    /// connection is being closed.
    pub fn set_stopped_reading(&self) {
        self.0.stopped_reading.store(true, Ordering::Relaxed);
    }

    /// Whether [`Peer::set_stopped_reading`] was called.
    pub fn stopped_reading(&self) -> bool {
        self.0.stopped_reading.load(Ordering::Relaxed)
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_the_socket_address_does() {
        for text in ["127.0.0.1:4711", "[::1]:8004", "[fe80::1%2]:80"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(Peer::new(addr).to_string(), addr.to_string());
        }
    }
}
