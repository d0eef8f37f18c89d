//! Whether the handler being polled, or dropped, right now serves a
//! client that already left: what its request's line says instead of the
//! status of an answer nobody receives.
//!
//! A client that leaves before its answer began may have its upstream
//! request go on for the usage (`serve::after_client_left`). The handler
//! does not know: it logged the status of an answer nobody received (a
//! drain cut's 503, "retry"), and one dropped unfinished was logged 499
//! without saying why it was not read on. The read-on sets a note around
//! each poll of the handler and around its drop; the line
//! ([`crate::routes`], [`crate::request_line`]) reads it.
//!
//! A thread-local is exact here: a handler is polled and dropped on one
//! event loop thread, and nothing else runs inside one poll or one drop.

use std::cell::Cell;

use crate::error::{Fault, ProxyError};
use crate::read_on::End;

/// What the request's line is to say of a client that left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// The client left; its upstream request goes on for the usage.
    ReadingOn,
    /// The client left, and its request is dropped unfinished: why it was
    /// not read on, or not further.
    Dropped(End),
}

thread_local! {
    static NOTE: Cell<Option<Gone>> = const { Cell::new(None) };
}

/// Restores the note before [`with`], even when `f` panics.
struct Restore(Option<Gone>);

impl Drop for Restore {
    fn drop(&mut self) {
        NOTE.set(self.0);
    }
}

/// Run `f` (a poll or the drop of a handler) with `note` in force.
pub fn with<R>(note: Gone, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(NOTE.replace(Some(note)));
    f()
}

/// The note in force, if any.
pub fn current() -> Option<Gone> {
    NOTE.get()
}

/// How reading on ended when the handler of a client that left ends in
/// `e`: the drain's cut, or the upstream's failure (nothing to bill);
/// `None` for an error of goproxy's own or of the request.
pub fn end_of(e: &ProxyError) -> Option<End> {
    match e {
        ProxyError::ShuttingDown => Some(End::DrainCut),
        ProxyError::UpstreamTimeout => Some(End::UpstreamStalled),
        e if e.fault() == Fault::Upstream => Some(End::UpstreamError),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A note holds inside `with` only, nested ones too, and is restored
    /// when `f` panics.
    #[test]
    fn notes_hold_inside_with_only() {
        assert_eq!(current(), None);
        with(Gone::ReadingOn, || {
            assert_eq!(current(), Some(Gone::ReadingOn));
            with(Gone::Dropped(End::TimeLimit), || {
                assert_eq!(current(), Some(Gone::Dropped(End::TimeLimit)));
            });
            assert_eq!(current(), Some(Gone::ReadingOn));
        });
        let _ = std::panic::catch_unwind(|| with(Gone::ReadingOn, || panic!("in a handler")));
        assert_eq!(current(), None);
        assert_eq!(end_of(&ProxyError::ShuttingDown), Some(End::DrainCut));
        assert_eq!(
            end_of(&ProxyError::UpstreamFailed),
            Some(End::UpstreamError)
        );
        assert_eq!(end_of(&ProxyError::Unauthorized), None);
    }
}
