//! The client socket of one HTTP/1.1 connection ([`mod@crate::serve`]),
//! shared by the connection's driver (heads, responses) and the request body it hands to the handler
//! (which reads the rest of the request). All of it runs in the
//! connection's one task, so the lock is never contended; it is there
//! because the body must be `'static` and `Send` to sit in a
//! `Request`. The socket is inside the lock too: reads go through
//! `AsyncRead`, which takes `&mut` and, unlike `try_read`, knows that a
//! short read emptied the socket (no extra `EAGAIN` read per request).

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::h1::Decoder;
use crate::peer::Peer;

/// Largest request head accepted (an LLM API request head is a few hundred
/// bytes; nginx's own default buffers hold 1 KB, then 4 x 8 KB); also how
/// far a connection reads ahead while it answers.
pub const MAX_HEAD: usize = 64 * 1024;
/// Spare buffer room below which the next read gets a new block.
pub const MIN_SPARE: usize = 4 * 1024;
/// A request body over this size has its read buffer let go after it.
pub const KEEP_BUF: u64 = 32 * 1024;
/// Read block size: most request bodies of an LLM API arrive in one.
const READ_BLOCK: usize = 16 * 1024;

/// The socket and what was read from it but not used yet.
#[derive(Debug)]
pub struct Wire {
    inbound: Mutex<Inbound>,
    /// Longest one write may wait for the client to take bytes
    /// (`send_timeout_secs`, like nginx's `send_timeout`).
    send_timeout: Duration,
    /// Told when that timeout fires, before the response body is dropped,
    /// so the body's log line says why.
    peer: Peer,
}

/// The socket, bytes read but not used, and where the current request's
/// body is.
#[derive(Debug)]
pub struct Inbound {
    stream: TcpStream,
    pub buf: BytesMut,
    /// The current request's body; done between requests.
    pub body: Decoder,
    /// `100 Continue` is owed before the body is read.
    pub owe_continue: bool,
    /// The client closed its side (or the socket failed).
    pub eof: bool,
}

impl Wire {
    pub fn new(stream: TcpStream, buf: BytesMut, send_timeout: Duration, peer: Peer) -> Self {
        Wire {
            send_timeout,
            peer,
            inbound: Mutex::new(Inbound {
                stream,
                buf,
                body: Decoder::new(crate::h1::Framing::Empty),
                owe_continue: false,
                eof: false,
            }),
        }
    }

    /// The socket and the bytes read from it but not used.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        let inbound = self.inbound.into_inner().unwrap_or_else(|p| p.into_inner());
        (inbound.stream, inbound.buf)
    }

    /// Between requests, after a large body: the buffer it was read into
    /// (up to [`crate::req_body::WHOLE_BODY`]) is let go once nothing is left
    /// in it, so an idle connection holds little.
    pub fn shrink(&self) {
        let mut inbound = self.inbound();
        if inbound.buf.is_empty() {
            inbound.buf = BytesMut::new();
        }
    }

    pub fn inbound(&self) -> MutexGuard<'_, Inbound> {
        // Never poisoned in practice (nothing panics under it); a poisoned
        // lock still holds consistent bytes.
        self.inbound.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While a response is being sent: read ahead (a pipelined request)
    /// up to the head bound, and resolve once the client has gone.
    pub fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inbound = self.inbound();
        loop {
            if !inbound.body.is_done() || inbound.buf.len() >= MAX_HEAD {
                // The unread body (or a full buffer) is not ours to read
                // now; a write will notice a client that went away.
                return Poll::Pending;
            }
            // Readiness first: the client almost never sends while its
            // answer streams, and a readiness check costs about half a
            // read attempt through the buffer (~90 instructions per SSE
            // event).
            if !inbound.eof && inbound.stream.poll_read_ready(cx).is_pending() {
                return Poll::Pending;
            }
            match inbound.poll_fill(cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Write all of `bufs`, waiting for the socket as needed, but never
    /// longer than the send timeout for one write: a client that stops
    /// reading (its window full) would otherwise hold the response, its
    /// upstream stream and the connection forever, since nothing else is
    /// polled while a write waits. `TimedOut` then closes the connection.
    pub async fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = &mut bufs[..];
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            // The timer is armed only once a write has to wait: the usual
            // write goes straight into the socket buffer.
            let n = match poll_fn(|cx| Poll::Ready(self.poll_write(cx, bufs))).await {
                Poll::Ready(n) => n?,
                Poll::Pending => {
                    let wait = poll_fn(|cx| self.poll_write(cx, bufs));
                    match tokio::time::timeout(self.send_timeout, wait).await {
                        Ok(n) => n?,
                        Err(_) => {
                            self.peer.set_stopped_reading();
                            return Err(SendTimedOut(self.send_timeout).into());
                        }
                    }
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }

    fn poll_write(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let mut inbound = self.inbound();
        Pin::new(&mut inbound.stream).poll_write_vectored(cx, bufs)
    }
}

/// A write waited longer than `send_timeout_secs` for the client to read.
#[derive(Debug, thiserror::Error)]
#[error("the client read nothing for {} s (send_timeout_secs)", .0.as_secs_f64())]
pub struct SendTimedOut(pub Duration);

impl From<SendTimedOut> for io::Error {
    fn from(e: SendTimedOut) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

impl Inbound {
    /// Read what the socket has into `buf`: `Ready(Ok(n))` with `n == 0`
    /// at end of stream, `Pending` when nothing is there yet.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            self.buf.reserve(READ_BLOCK);
        }
        match std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.buf
        )) {
            Ok(0) => {
                self.eof = true;
                Poll::Ready(Ok(0))
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => {
                self.eof = true;
                Poll::Ready(Err(e))
            }
        }
    }

    /// Write `bytes` now if the socket takes all of them (an interim
    /// response); `Pending` while it is full.
    pub fn poll_write_small(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<()>> {
        let n = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, bytes))?;
        if n == bytes.len() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
        }
    }
}
