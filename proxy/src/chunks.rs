//! The upstream request body: the client's bytes as slices, with the few
//! rewritten pieces between them, sent without joining them into one buffer
//! (hyper writes them with one `writev`). A 90 KB agent request is then
//! never copied in goproxy: not when read, not when rewritten.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

/// Bodies below this size are joined into one buffer: copying a few
/// hundred bytes is cheaper than a frame and an iovec per piece.
const JOIN_BELOW: usize = 16 * 1024;

/// A request body of several pieces with an exact length (so it is sent
/// with `content-length`, as one buffer was). Cloning shares the pieces.
#[derive(Debug, Clone, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    /// Append a piece (empty pieces are dropped).
    pub fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.parts.push_back(piece);
        }
    }

    /// The same body as one piece when it is small.
    pub fn joined_if_small(self) -> Self {
        if self.parts.len() <= 1 || self.len >= JOIN_BELOW {
            return self;
        }
        let mut one = BytesMut::with_capacity(self.len);
        for p in &self.parts {
            one.extend_from_slice(p);
        }
        let mut out = Chunks::default();
        out.push(one.freeze());
        out
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

    /// The pieces come out in order with an exact length; small bodies are
    /// joined, big ones are not.
    #[tokio::test]
    async fn pieces_in_order_with_exact_length() {
        let mut c = Chunks::default();
        for p in ["ab", "", "cd", "e"] {
            c.push(Bytes::from(p));
        }
        assert_eq!(c.len(), 5);
        assert_eq!(hyper::body::Body::size_hint(&c).exact(), Some(5));
        let joined = c.clone().joined_if_small();
        assert_eq!(joined.parts.len(), 1);
        let all = c.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcde");

        let mut big = Chunks::default();
        big.push(Bytes::from(vec![b'x'; JOIN_BELOW]));
        big.push(Bytes::from_static(b"y"));
        assert_eq!(big.clone().joined_if_small().parts.len(), 2);
        assert_eq!(big.to_vec().len(), JOIN_BELOW + 1);
    }
}
