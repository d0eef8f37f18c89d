//! The body of a client request: read from the socket by goproxy's own
//! HTTP/1.1 server side, or by hyper's HTTP/2 server. One type for the
//! handlers either way.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::time::Instant;

use crate::body::BodyError;
use crate::body_budget::{BodyBudget, Held};
use crate::h1::Step;

use crate::wire::{Wire, MIN_SPARE};

/// What an interim `100 Continue` looks like on the wire.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Bodies of a `content-length` up to this are handed on in one frame.
pub const WHOLE_BODY: u64 = 1024 * 1024;

/// A request body: ours (HTTP/1.1) or hyper's (HTTP/2).
pub type ReqBody = Either<H1ReqBody, Incoming>;

/// An HTTP/1.1 request body: decoded straight out of the connection's read
/// buffer, one frame per read (a body already read with its head is one
/// frame, not copied).
#[derive(Debug)]
pub struct H1ReqBody {
    wire: Arc<Wire>,
    /// Most body bytes accepted (`max_body_bytes`), and how many were
    /// handed on: a body whose framing promises more is refused at once.
    limit: u64,
    handed: u64,
    /// When bytes of a body held back to be handed on whole last arrived:
    /// the reader's silence timeout counts from there, not from its last
    /// frame (a whole body is one frame, however slowly it comes).
    arrived: Option<Instant>,
    /// The shared body budget, and what this body took from it: the bytes
    /// that arrived, as they arrive (not the declared length up front: a
    /// client trickling a byte a second then holds a byte, not a megabyte).
    budget: BodyBudget,
    held: Held,
}

impl H1ReqBody {
    pub fn new(wire: Arc<Wire>, limit: u64, budget: BodyBudget) -> Self {
        H1ReqBody {
            wire,
            limit,
            handed: 0,
            arrived: None,
            budget,
            held: Held::default(),
        }
    }

    /// When the last bytes of a body not yet handed on arrived.
    pub fn arrived(&self) -> Option<Instant> {
        self.arrived
    }

    /// Bytes of this body that arrived so far.
    pub fn received(&self) -> u64 {
        self.held.bytes() as u64
    }

    /// The budget this body took, for whoever keeps its bytes.
    pub fn take_held(&mut self) -> Held {
        std::mem::take(&mut self.held)
    }
}

/// What [`hyper::body::Body::poll_frame`] gives.
type Polled = Poll<Option<Result<Frame<Bytes>, BodyError>>>;

/// [`BodyBudget::hold`], or the error frame when the budget has no room.
fn hold(budget: &BodyBudget, held: &mut Held, received: u64) -> Result<(), Polled> {
    budget
        .hold(held, received as usize)
        .map_err(|_| Poll::Ready(Some(Err(Box::new(ReqBodyError::Overloaded) as BodyError))))
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReqBodyError {
    /// Broken framing.
    #[error("the client's request body: {0}")]
    Broken(String),
    /// The connection closed or failed before the body's end: the client
    /// left, as an HTTP/2 client that resets its stream does.
    #[error("the client closed the connection before its request body ended")]
    Gone,
    /// A chunk size (or a length) promising more than the limit: refused
    /// before its bytes arrive, as nginx answers 413 at the chunk's size
    /// line (the client otherwise waited, sending, for a timeout).
    #[error("the client's request body is larger than the limit")]
    TooLarge,
    /// The bodies in flight hold all of `max_body_bytes_in_flight`.
    #[error("no room for the client's request body in max_body_bytes_in_flight")]
    Overloaded,
}

fn gone() -> Polled {
    Poll::Ready(Some(Err(Box::new(ReqBodyError::Gone))))
}

fn fail(e: impl std::fmt::Display) -> Polled {
    Poll::Ready(Some(Err(Box::new(ReqBodyError::Broken(e.to_string())))))
}

impl hyper::body::Body for H1ReqBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let wire = &this.wire;
        let mut inbound = wire.inbound();
        if inbound.owe_continue && !inbound.body.is_done() && inbound.buf.is_empty() {
            // The client waits for this before it sends the body. Small
            // enough for any socket buffer; a full one means a client that
            // stopped reading, and its body then fails on the timeout.
            match std::task::ready!(inbound.poll_write_small(cx, CONTINUE)) {
                Ok(()) => inbound.owe_continue = false,
                Err(_) => return gone(),
            }
        }
        inbound.owe_continue = false;
        loop {
            let inbound = &mut *inbound;
            // A body of known, moderate length is handed on whole, as one
            // slice of the buffer: the handler then never joins pieces.
            let whole_pending = inbound
                .body
                .remaining()
                .is_some_and(|n| n <= WHOLE_BODY && (inbound.buf.len() as u64) < n);
            // What of a body of known length is here takes its bytes from
            // the budget (a chunked body's, as each piece is handed on).
            let here = inbound
                .body
                .remaining()
                .map_or(0, |n| n.min(inbound.buf.len() as u64));
            if let Err(refused) = hold(&this.budget, &mut this.held, this.handed + here) {
                return refused;
            }
            let step = if whole_pending {
                // Room for all of it at once: the buffer grows by one copy
                // at most (the handler checked the declared length first).
                // (The read's own spare room is asked for on top, or the
                // last few KB would grow it once more.)
                let n = inbound.body.remaining().unwrap_or(0) as usize;
                let want = n.saturating_sub(inbound.buf.len()) + MIN_SPARE;
                inbound.buf.reserve(want);
                Ok(Step::NeedMore)
            } else {
                inbound.body.decode(&mut inbound.buf)
            };
            match step {
                Ok(Step::Data(data)) => {
                    this.handed += data.len() as u64;
                    if let Err(refused) = hold(&this.budget, &mut this.held, this.handed) {
                        return refused;
                    }
                    // A body whose end came with its data is whole now.
                    let _ = inbound.body.skip_control(&mut inbound.buf);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => return Poll::Ready(None),
                Ok(Step::NeedMore) => {}
                Err(e) => return fail(e),
            }
            if this.handed.saturating_add(inbound.body.at_least()) > this.limit {
                return Poll::Ready(Some(Err(Box::new(ReqBodyError::TooLarge))));
            }
            match inbound.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return gone(),
                Poll::Ready(Ok(_)) if whole_pending => this.arrived = Some(Instant::now()),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(_)) => return gone(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.wire.inbound().body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.wire.inbound().body.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
