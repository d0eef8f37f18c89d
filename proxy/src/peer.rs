//! The client's address as the log lines print it, rendered once per
//! connection: formatting a `SocketAddr` for every request's info line
//! cost more than the rest of the field (~1.2k instructions).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// A client address, already rendered (`127.0.0.1:4711`, `[::1]:4711`).
/// Cloning shares the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer(Arc<str>);

impl Peer {
    /// Render `addr` the way `SocketAddr`'s `Display` does.
    pub fn new(addr: SocketAddr) -> Self {
        Peer(addr.to_string().into())
    }
}

impl Peer {
    /// The rendered address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
