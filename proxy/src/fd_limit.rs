//! The open-file limit (`ulimit -n`): raised from its soft value to the
//! hard one at start, as Go's runtime does since Go 1.19 (so the Go
//! goproxy this replaces ran with it raised), and compared with what
//! `max_connections` may need. A soft limit of 1024 (many hosts' default)
//! otherwise ran out long before 4096 connections, and every accept then
//! failed with "Too many open files".

use rlimit::Resource;

/// Descriptors besides the client connections' own: an upstream
/// connection each (counted in [`needed`]), the read-ons' upstream
/// connections (256 at most), the listener, the runtime's and spares.
const SPARE: u64 = 256 + 64;

/// The soft open-file limit now, if it can be read.
pub fn soft() -> Option<u64> {
    Resource::NOFILE.get_soft().ok()
}

/// Raise the soft limit to the hard one; the soft limit after.
pub fn raise() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// Descriptors `max_connections` client connections may need: each may
/// have an upstream connection of its own.
pub fn needed(max_connections: usize) -> u64 {
    2 * max_connections as u64 + SPARE
}

/// What to tell the operator when `limit` is below what `max_connections`
/// may need, in their terms.
pub fn shortfall(limit: u64, max_connections: usize) -> Option<String> {
    let need = needed(max_connections);
    (limit < need).then(|| {
        format!(
            "the open-file limit (ulimit -n, hard limit included) is {limit}, and max_connections = {max_connections} may need {need} (a client and an upstream connection each, and spares): from about {} busy connections accepting may fail; raise the limit (compose: `ulimits: nofile:`) or lower max_connections",
            limit / 2
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_is_said_in_the_operators_terms() {
        assert_eq!(shortfall(100_000, 4096), None);
        let s = shortfall(1024, 4096).unwrap();
        assert!(s.contains("is 1024"), "{s}");
        assert!(s.contains("may need 8512"), "{s}");
        assert!(s.contains("from about 512 busy connections"), "{s}");
    }

    /// Raising never lowers the limit, and the soft limit reads back.
    #[test]
    fn raise_keeps_or_raises_the_soft_limit() {
        let before = soft().unwrap();
        let after = raise().unwrap();
        assert!(after >= before);
        assert_eq!(soft(), Some(after));
    }
}
