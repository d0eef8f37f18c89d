//! HTTP/1.1 message heads on the upstream side: the request head written
//! into one buffer, the response head parsed with `httparse` (the parser
//! hyper uses), and what the head says about the body and the connection.

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};

use super::decode::Framing;

/// Largest response head accepted (hyper's default limit is ~400 KB; an
/// LLM API's head is a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;
/// Headers of the first parse attempt (an LLM API answers with 10-30).
const FEW_HEADERS: usize = 32;

/// Why a response head was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("invalid upstream response head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("upstream response head over {MAX_HEAD} bytes")]
    TooLarge,
    #[error("invalid upstream response header {0:?}")]
    Header(String),
    #[error("invalid content-length in the upstream response")]
    ContentLength,
}

/// A parsed response head: the response without a body, how its body is
/// framed, and whether the connection may carry another request after it.
#[derive(Debug)]
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Write `POST /path HTTP/1.1`, `host`, the request's headers and
/// `content-length` into `out`. `host`, `content-length` and
/// `transfer-encoding` in the request are not copied: they are ours to set.
pub fn write_request(req: &Request<impl Sized>, body_len: usize, out: &mut BytesMut) {
    let uri = req.uri();
    out.put_slice(req.method().as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(uri.host().unwrap_or("").as_bytes());
    // The port is written only when it is not the scheme's default, as
    // hyper's client did.
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    if let Some(port) = uri.port_u16().filter(|&p| p != default_port) {
        out.put_u8(b':');
        out.put_slice(itoa::Buffer::new().format(port).as_bytes());
    }
    out.put_slice(b"\r\n");
    for (name, value) in req.headers() {
        if name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
        {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"content-length: ");
    out.put_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.put_slice(b"\r\n\r\n");
}

/// Parse a response head from the start of `buf`: the head and its length
/// in bytes, or `None` if more bytes are needed.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // httparse fills its header array before parsing (its uninitialised
    // variant is for requests only): most upstream heads fit the small
    // array, and only one with more headers pays for the large one.
    let mut few = [httparse::EMPTY_HEADER; FEW_HEADERS];
    let mut many;
    let mut parsed = httparse::Response::new(&mut few);
    let mut status = parsed.parse(buf);
    if let Err(httparse::Error::TooManyHeaders) = status {
        many = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parsed = httparse::Response::new(&mut many);
        status = parsed.parse(buf);
    }
    let len = match status? {
        httparse::Status::Complete(len) if len > MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Parse(httparse::Error::Status))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let bad = || HeadError::Header(h.name.to_string());
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad())?;
        map.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    let (framing, keep_alive) = framing(&response)?;
    Ok(Some((
        Head {
            response,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// How the body is delimited (RFC 9112 section 6.3) and whether the
/// connection can be reused after it.
fn framing(response: &Response<()>) -> Result<(Framing, bool), HeadError> {
    let h = response.headers();
    let status = response.status();
    let mut keep_alive = response.version() == Version::HTTP_11 && !has_token(h, "close");
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, keep_alive));
    }
    if let Some(te) = h.get_all(header::TRANSFER_ENCODING).iter().next_back() {
        // A length beside a transfer coding may be a smuggling attempt: the
        // coding wins and the connection is not reused.
        if h.contains_key(header::CONTENT_LENGTH) {
            keep_alive = false;
        }
        let last = te.as_bytes().rsplit(|&b| b == b',').next().unwrap_or(b"");
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Ok((Framing::Chunked, keep_alive));
        }
        return Ok((Framing::Close, false));
    }
    let mut length = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(HeadError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, keep_alive),
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Close, false),
    })
}

/// Whether a `connection` header lists `token`.
fn has_token(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_response(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn request_head_has_origin_form_host_and_length() {
        let mut req = Request::post("http://up.example:8080/v1/messages?x=1")
            .header("x-api-key", "k")
            .header("host", "evil")
            .header("content-length", "999")
            .body(())
            .unwrap();
        let mut out = BytesMut::new();
        write_request(&req, 42, &mut out);
        assert_eq!(
            &out[..],
            b"POST /v1/messages?x=1 HTTP/1.1\r\nhost: up.example:8080\r\nx-api-key: k\r\ncontent-length: 42\r\n\r\n"
        );
        *req.uri_mut() = "https://up.example:443/v1".parse().unwrap();
        out.clear();
        write_request(&req, 0, &mut out);
        assert!(out.starts_with(b"POST /v1 HTTP/1.1\r\nhost: up.example\r\n"));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(12), true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, false));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn bad_heads_are_refused() {
        for text in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +1\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
        ] {
            assert!(parse_response(text.as_bytes()).is_err(), "{text:?}");
        }
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-le")
            .unwrap()
            .is_none());
        let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(
            parse_response(endless.as_bytes()),
            Err(HeadError::TooLarge)
        ));
        // The same bound when the whole head came in one read.
        let whole = format!("{endless}\r\n\r\n");
        assert!(matches!(
            parse_response(whole.as_bytes()),
            Err(HeadError::TooLarge)
        ));
    }

    /// A head with more headers than the first, small attempt holds is
    /// read whole by the second; one over the bound is refused.
    #[test]
    fn header_counts_up_to_the_bound_are_read() {
        let with = |n: usize| {
            let lines: String = (0..n).map(|i| format!("x-h{i}: v{i}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\n{lines}content-length: 0\r\n\r\n")
        };
        for n in [FEW_HEADERS - 1, FEW_HEADERS, MAX_HEADERS - 1] {
            let h = head(&with(n));
            assert_eq!(h.response.headers().len(), n + 1, "{n} headers");
            assert_eq!(
                h.response.headers()[format!("x-h{}", n - 1)],
                format!("v{}", n - 1)
            );
        }
        assert!(parse_response(with(MAX_HEADERS).as_bytes()).is_err());
        assert!(parse_response(b"").unwrap().is_none());
    }
}
