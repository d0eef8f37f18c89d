//! One HTTP/1.1 connection to an upstream: the socket (plain or TLS) and
//! its read buffer. A request is written with one vectored write; the
//! response head is read here, the body by [`super::body::H1Body`] in the
//! task that relays it, so no connection task sits in between.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::decode::DecodeError;
use super::head::{parse_response, Head, HeadError};
use crate::chunks::Chunks;

/// The socket type the connector hands out, as a tokio stream.
pub type Io = TokioIo<MaybeHttpsStream<TokioIo<TcpStream>>>;

/// Spare buffer room below which the next read gets a new block.
const MIN_SPARE: usize = 4 * 1024;
/// First read block; doubled while reads fill it, up to `MAX_READ`.
const FIRST_READ: usize = 16 * 1024;
/// Largest read block. A block handed on to a client that reads slowly
/// stays held while the next is read into a new one: at 256 KiB, 100
/// slow readers of 1 GiB answers held 82 MB of RSS; at 64 KiB (still 16
/// reads a megabyte, and an LLM answer is rarely one) 41 MB, and no less
/// at 32 KiB (100 clients, each with an 8 KB receive buffer, reading
/// 4 KB every 0.5 s). nginx's `proxy_buffer_size` is 4-8 KiB.
const MAX_READ: usize = 64 * 1024;
/// Most informational (1xx) heads skipped before the real one.
const MAX_INFORMATIONAL: usize = 8;

/// Why an exchange on an HTTP/1.1 connection failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Body(#[from] DecodeError),
    #[error("the upstream closed the connection before answering")]
    ClosedBeforeHead,
    #[error("the upstream answered with an unexpected 101 or too many 1xx heads")]
    Informational,
}

/// An open connection and the bytes read from it but not yet used.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    pub(super) buf: BytesMut,
    read_size: usize,
    /// When it went back into the pool.
    pub(super) idle_since: Instant,
}

/// A write error after which the upstream cannot take more, but may have
/// answered.
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Conn {
    /// Boxed: with TLS state a connection is over a kilobyte, and it moves
    /// between the pool and response bodies.
    pub fn new(io: Io) -> Box<Self> {
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            read_size: FIRST_READ,
            idle_since: Instant::now(),
        })
    }

    /// A plain TCP connection (tests).
    pub fn plain(tcp: TcpStream) -> Box<Self> {
        Conn::new(TokioIo::new(MaybeHttpsStream::Http(TokioIo::new(tcp))))
    }

    /// Write the request (its head, then the body's pieces, in one vectored
    /// write where the socket takes it) and read the response head.
    ///
    /// An upstream may answer before it read the whole body (a 413 to a big
    /// request, then a close): while the socket is full, the connection is
    /// also read, and an answer that came, or that is there when a write
    /// fails, is returned. The connection is then not reused, since part of
    /// the request was never sent.
    pub async fn exchange(&mut self, head: &[u8], body: &Chunks) -> Result<Head, H1Error> {
        let (mut answer, whole) = match self.write_all(head, body).await {
            Ok(whole) => (self.read_head().await?, whole),
            // The upstream is gone; what it said before (a 413, then a
            // close) may still be there to read. If not, the write's error
            // is the one to report.
            Err(e) if is_gone(&e) => match self.read_head().await {
                Ok(h) => (h, false),
                Err(_) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        answer.keep_alive &= whole;
        Ok(answer)
    }

    /// Write the request: `true` once all of it went out, `false` if the
    /// upstream answered (or closed) while the socket was full.
    async fn write_all(&mut self, head: &[u8], body: &Chunks) -> io::Result<bool> {
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(head)
            .chain(body.pieces())
            .map(IoSlice::new)
            .collect();
        let mut rest = &mut slices[..];
        let whole = std::future::poll_fn(|cx| {
            while !rest.is_empty() {
                match Pin::new(&mut self.io).poll_write_vectored(cx, rest) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => IoSlice::advance_slices(&mut rest, n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Full: has the upstream answered (or closed)?
                        std::task::ready!(self.poll_fill(cx))?;
                        return Poll::Ready(Ok(false));
                    }
                }
            }
            Poll::Ready(Ok(true))
        })
        .await?;
        if whole {
            self.io.flush().await?;
        }
        Ok(whole)
    }

    /// The response head; informational (1xx) heads are skipped.
    async fn read_head(&mut self) -> Result<Head, H1Error> {
        let mut informational = 0;
        loop {
            if let Some((head, len)) = parse_response(&self.buf)? {
                self.buf.advance(len);
                if !head.response.status().is_informational() {
                    return Ok(head);
                }
                informational += 1;
                if head.response.status() == 101 || informational > MAX_INFORMATIONAL {
                    return Err(H1Error::Informational);
                }
                continue;
            }
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                return Err(H1Error::ClosedBeforeHead);
            }
        }
    }

    /// Read more bytes into the buffer; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))?;
        // A read that filled the room asks for bigger reads (a long body
        // then takes fewer system calls); hyper's client does the same.
        if n == room {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Going idle: a read buffer grown by a long body is given up, so an
    /// idle connection holds at most one first-size block.
    pub(super) fn rest(&mut self) {
        if self.read_size > FIRST_READ || self.buf.capacity() > FIRST_READ {
            self.buf = BytesMut::new();
            self.read_size = FIRST_READ;
        }
        self.idle_since = Instant::now();
    }

    /// Whether an idle connection can still be used: idle for less than
    /// `idle_timeout` and not stale. Never waits.
    pub(super) fn is_usable(&mut self, idle_timeout: Duration) -> bool {
        self.idle_since.elapsed() < idle_timeout && !self.is_stale()
    }

    /// Whether an idle connection can no longer be used: the upstream
    /// closed it, reset it, or sent bytes nobody asked for. Never waits.
    fn is_stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut rb)
            .is_ready()
    }
}
