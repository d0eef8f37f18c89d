//! Sending one response on an HTTP/1.1 connection: the head, then the body
//! as it comes (fixed length, chunked, or until close for HTTP/1.0), with
//! what is ready at once gathered into one write.

use std::future::poll_fn;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::{Response, StatusCode, Version};
use hyper::body::Body as _;

use crate::body::Body;

use super::date::put_date;
use crate::wire::Wire;

/// Data frames up to this size are copied next to the head or chunk
/// framing (one write); larger ones are written from where they are.
const COPY_MAX: usize = 8 * 1024;
/// Ready bytes gathered before a write is made anyway.
const FLUSH_AT: usize = 64 * 1024;

/// Why a response could not be sent whole: the connection is then closed,
/// so the client sees a broken transfer, never a silently short one.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("writing to the client: {0}")]
    Io(#[from] io::Error),
    #[error("the client closed the connection")]
    Gone,
    #[error("the response body failed: {0}")]
    Body(crate::body::BodyError),
    #[error("the response body does not match its content-length")]
    Length,
}

/// What the request said about the response.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub version: Version,
    pub keep_alive: bool,
    pub head_only: bool,
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Send `resp`; whether the connection can carry another request after it.
pub async fn send(
    wire: &Wire,
    out: &mut BytesMut,
    resp: Response<Body>,
    asked: Asked,
) -> Result<bool, SendError> {
    let (parts, mut body) = resp.into_parts();
    let mut keep_alive = asked.keep_alive && !says_close(&parts.headers);
    let framing = framing(&parts.headers, parts.status, &body, asked);
    if framing == Framing::Close {
        keep_alive = false;
    }
    put_head(
        out,
        parts.status,
        &parts.headers,
        framing,
        keep_alive,
        asked,
    );
    if asked.head_only || framing == Framing::None {
        flush(wire, out).await?;
        return Ok(keep_alive);
    }
    let mut sent = 0u64;
    // The body answered `Pending` and the task has not yielded since.
    let mut body_waits = false;
    loop {
        if out.len() >= FLUSH_AT {
            flush(wire, out).await?;
        }
        let next = if out.is_empty() {
            next_frame(wire, &mut body, std::mem::take(&mut body_waits)).await?
        } else {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                Poll::Ready(f) => f,
                Poll::Pending => {
                    body_waits = flush_unyielding(wire, out).await?;
                    continue;
                }
            }
        };
        let data = match next {
            None => break,
            Some(Err(e)) => {
                // What came before the failure still goes out.
                let _ = flush(wire, out).await;
                return Err(SendError::Body(e));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        sent += data.len() as u64;
        if let Framing::Length(n) = framing {
            if sent > n {
                return Err(SendError::Length);
            }
        }
        put_data(wire, out, data, framing).await?;
    }
    match framing {
        Framing::Chunked => out.put_slice(b"0\r\n\r\n"),
        Framing::Length(n) if n != sent => {
            let _ = flush(wire, out).await;
            return Err(SendError::Length);
        }
        _ => {}
    }
    flush(wire, out).await?;
    Ok(keep_alive)
}

/// The body's next frame, or `Gone` once the client left. `body_waits`:
/// the body's last poll answered `Pending` and the task has not yielded
/// since, so the body holds this task's waker and any wake since then is
/// still to come (a task woken while it runs is polled again): the first
/// poll then leaves the body alone. That saves a whole body poll per
/// relayed SSE event, the one after the flush of the event (~400
/// instructions of ~3.5k, `bench/callgrind`).
async fn next_frame(
    wire: &Wire,
    body: &mut Body,
    mut body_waits: bool,
) -> Result<Option<Result<hyper::body::Frame<Bytes>, crate::body::BodyError>>, SendError> {
    poll_fn(|cx| {
        if !std::mem::take(&mut body_waits) {
            if let Poll::Ready(f) = Pin::new(&mut *body).poll_frame(cx) {
                return Poll::Ready(Ok(f));
            }
        }
        wire.poll_gone(cx).map(|()| Err(SendError::Gone))
    })
    .await
}

/// How the body goes on the wire: a length the handler set or the body
/// knows, else chunked (HTTP/1.1) or until close (HTTP/1.0).
fn framing(h: &HeaderMap, status: StatusCode, body: &Body, asked: Asked) -> Framing {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    if let Some(n) = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        return Framing::Length(n);
    }
    if body.is_end_stream() {
        return Framing::Length(0);
    }
    if let Some(n) = body.size_hint().exact() {
        return Framing::Length(n);
    }
    if asked.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        Framing::Close
    }
}

fn says_close(h: &HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The status line and headers, with `date`, the framing header and the
/// connection header added where the handler did not set them.
fn put_head(
    out: &mut BytesMut,
    status: StatusCode,
    h: &HeaderMap,
    framing: Framing,
    keep_alive: bool,
    asked: Asked,
) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in h {
        if name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    if !h.contains_key(header::DATE) {
        put_date(out);
    }
    match framing {
        Framing::Length(n) if !h.contains_key(header::CONTENT_LENGTH) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
        }
        Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !keep_alive && asked.version == Version::HTTP_11 {
        out.put_slice(b"connection: close\r\n");
    } else if keep_alive && asked.version == Version::HTTP_10 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Add one data frame: copied into `out` when small, else written with
/// what is in `out` in one vectored write.
async fn put_data(
    wire: &Wire,
    out: &mut BytesMut,
    data: Bytes,
    framing: Framing,
) -> Result<(), SendError> {
    let chunked = framing == Framing::Chunked;
    if chunked {
        put_chunk_size(out, data.len());
    }
    if data.len() <= COPY_MAX {
        out.put_slice(&data);
        if chunked {
            out.put_slice(b"\r\n");
        }
        return Ok(());
    }
    let tail: &[u8] = if chunked { b"\r\n" } else { b"" };
    let mut bufs = [IoSlice::new(out), IoSlice::new(&data), IoSlice::new(tail)];
    wire.write_all(&mut bufs).await?;
    out.clear();
    Ok(())
}

/// `<size in hex>\r\n`.
fn put_chunk_size(out: &mut BytesMut, n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = HEX[v & 0xf];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
    out.put_slice(b"\r\n");
}

/// [`flush`], and whether it finished without the task yielding.
async fn flush_unyielding(wire: &Wire, out: &mut BytesMut) -> io::Result<bool> {
    let mut yielded = false;
    let write = flush(wire, out);
    tokio::pin!(write);
    poll_fn(|cx| {
        let polled = write.as_mut().poll(cx);
        yielded |= polled.is_pending();
        polled.map_ok(|()| !yielded)
    })
    .await
}

async fn flush(wire: &Wire, out: &mut BytesMut) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    wire.write_all(&mut [IoSlice::new(out)]).await?;
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut out = BytesMut::new();
        for n in [0, 9, 10, 255, 4096, 0x1234_5678] {
            put_chunk_size(&mut out, n);
        }
        assert_eq!(&out[..], b"0\r\n9\r\na\r\nff\r\n1000\r\n12345678\r\n");
    }

    fn head(h: &HeaderMap, framing: Framing, keep_alive: bool, version: Version) -> String {
        let mut out = BytesMut::new();
        let asked = Asked {
            version,
            keep_alive,
            head_only: false,
        };
        put_head(&mut out, StatusCode::OK, h, framing, keep_alive, asked);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// Chunks that become ready while a flush waits for a full socket are
    /// all sent: after a flush that yielded, the body is polled again, not
    /// trusted to wake the task (a wake-up spent during the flush would
    /// stall the stream). The producer can only run ahead by one chunk, so
    /// a stall is a deadlock the timeout catches. Paused time: the reader
    /// starts, and the timeout fires, once every task is stuck.
    #[tokio::test(start_paused = true)]
    async fn chunks_ready_during_a_blocked_flush_are_sent() {
        use futures_util::StreamExt;
        use tokio::io::AsyncReadExt;

        const CHUNK: usize = 4096;
        const CHUNKS: usize = 4096; // 16 MiB: more than the socket buffers
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for _ in 0..CHUNKS {
                if tx.send(Bytes::from(vec![b'x'; CHUNK])).await.is_err() {
                    return;
                }
            }
        });
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok(hyper::body::Frame::data(chunk)), rx))
        });
        let body: Body =
            http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames.boxed()));
        let reader = tokio::spawn(async move {
            // Let the socket buffers fill before reading: the sleep ends
            // when nothing else can run (the writer waits on the socket).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut all = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while !all.ends_with(b"0\r\n\r\n") {
                match client.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => all.extend_from_slice(&buf[..n]),
                }
            }
            all
        });
        let peer = crate::peer::Peer::new(listener.local_addr().unwrap());
        let wire = Wire::new(server, BytesMut::new(), Duration::from_secs(60), peer);
        let asked = Asked {
            version: Version::HTTP_11,
            keep_alive: true,
            head_only: false,
        };
        let mut out = BytesMut::new();
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            send(&wire, &mut out, Response::new(body), asked),
        )
        .await
        .expect("the stream stalled");
        assert!(sent.unwrap(), "keep-alive");
        let all = reader.await.unwrap();
        let data = all.iter().filter(|&&b| b == b'x').count();
        assert_eq!(data, CHUNK * CHUNKS);
    }

    #[test]
    fn heads_carry_date_framing_and_connection() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let text = head(&h, Framing::Chunked, true, Version::HTTP_11);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ndate: "));
        assert!(
            text.ends_with(" GMT\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{text}"
        );
        let text = head(&h, Framing::Length(12), false, Version::HTTP_11);
        assert!(text.ends_with("content-length: 12\r\nconnection: close\r\n\r\n"));
        let text = head(&h, Framing::Length(1), true, Version::HTTP_10);
        assert!(text.ends_with("content-length: 1\r\nconnection: keep-alive\r\n\r\n"));
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        let text = head(&h, Framing::Length(5), true, Version::HTTP_11);
        assert_eq!(text.matches("content-length").count(), 1);
    }
}
