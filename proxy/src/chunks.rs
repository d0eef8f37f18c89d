//! The upstream request body: the client's bytes as slices, with the few
//! rewritten pieces between them, sent without joining them into one buffer
//! (hyper writes them with one `writev`). A 90 KB agent request is then
//! never copied in goproxy: not when read, not when rewritten.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// Bodies below this size are better joined into one buffer: copying a
/// few hundred bytes is cheaper than a frame and an iovec per piece.
pub const JOIN_BELOW: usize = 16 * 1024;

/// A request body of several pieces with an exact length (so it is sent
/// with `content-length`, as one buffer was). Cloning shares the pieces.
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    /// A body of one piece.
    pub fn one(piece: Bytes) -> Self {
        let mut out = Chunks {
            parts: VecDeque::with_capacity(1),
            len: 0,
        };
        out.push(piece);
        out
    }

    /// An empty body with room for `pieces` pieces.
    pub fn with_capacity(pieces: usize) -> Self {
        Chunks {
            parts: VecDeque::with_capacity(pieces),
            len: 0,
        }
    }

    /// Append a piece (empty pieces are dropped).
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.parts.push_back(piece);
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(|p| &p[..])
    }

    /// The whole body in one buffer (tests and diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts.iter().flat_map(|p| p.iter().copied()).collect()
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.parts.pop_front();
        if let Some(p) = &next {
            self.len -= p.len();
        }
        Poll::Ready(next.map(|p| Ok(Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The pieces come out in order with an exact length; empty pieces
    /// are dropped.
    #[tokio::test]
    async fn pieces_in_order_with_exact_length() {
        let mut c = Chunks::with_capacity(4);
        for p in ["ab", "", "cd", "e"] {
            c.push(Bytes::from(p));
        }
        assert_eq!(c.len(), 5);
        assert_eq!(c.pieces().count(), 3);
        assert_eq!(hyper::body::Body::size_hint(&c).exact(), Some(5));
        let all = c.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcde");
        assert_eq!(Chunks::one(Bytes::new()).pieces().count(), 0);
    }
}
