//! The body of an HTTP/1.1 upstream response, read from the socket by
//! whichever task polls it (the relay of the client's response): one task
//! wake per upstream event, where hyper's client needs its connection task
//! and a channel in between.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

use super::conn::{Conn, H1Error};
use super::decode::{Decoder, Framing, Step};
use super::pool::{Key, Pool};

/// A response body; the connection goes back to the pool the moment the
/// body is known to be whole, and is closed if the body is dropped early.
#[derive(Debug)]
pub struct H1Body {
    /// `None` once the body ended (or failed) and the connection was
    /// returned or closed.
    conn: Option<Box<Conn>>,
    decoder: Decoder,
    keep_alive: bool,
    home: Option<(Arc<Pool>, Key)>,
}

impl H1Body {
    /// The body of a response whose head was just read from `conn`.
    pub fn new(
        conn: Box<Conn>,
        framing: Framing,
        keep_alive: bool,
        home: Option<(Arc<Pool>, Key)>,
    ) -> Self {
        let mut body = H1Body {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            keep_alive,
            home,
        };
        if body.decoder.is_done() {
            body.release();
        }
        body
    }

    /// The body ended: the connection is pooled if it can carry another
    /// request (keep-alive, nothing unread after the body), else closed.
    fn release(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if let Some((pool, key)) = &self.home {
            if self.keep_alive && self.decoder.is_done() && conn.buf.is_empty() {
                pool.put(key, conn);
            }
        }
    }

    fn fail(&mut self, e: impl Into<H1Error>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl hyper::body::Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        // Each round returns, or read at least one byte into the buffer;
        // a read that has nothing returns `Pending`.
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    // The end of the body may already be in the buffer: a
                    // `content-length` body is not polled past its length.
                    if let Ok(Step::Done) = this.decoder.skip_control(&mut conn.buf) {
                        this.release();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.release();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => return this.fail(e),
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Ready(Ok(0)) => {
                    return match this.decoder.eof() {
                        Ok(()) => {
                            this.conn = None;
                            Poll::Ready(None)
                        }
                        Err(e) => this.fail(e),
                    }
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
