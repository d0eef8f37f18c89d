//! HTTP/1.1 request heads on the client side: parsed with `httparse` (the
//! parser hyper uses), header values kept as slices of the read buffer, and
//! what the head says about the body and the connection (RFC 9112).

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::h1::Framing;
use crate::host::valid_host;
use crate::wire::MAX_HEAD;

/// Most request headers accepted (hyper's default).
const MAX_HEADERS: usize = 100;

/// Why a request head was refused: answered with its status, then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request head")]
    Malformed,
    #[error("request head over {MAX_HEAD} bytes or over {MAX_HEADERS} headers")]
    TooLarge,
    #[error("invalid or conflicting content-length / transfer-encoding")]
    Framing,
    #[error("HTTP version not supported")]
    Version,
    #[error("request target over {} bytes", MAX_HEAD / 2)]
    UriTooLong,
    #[error("HTTP/1.1 request without exactly one Host header")]
    Host,
    #[error("Host header that is not a host with an optional port")]
    HostValue,
    #[error("transfer coding other than chunked")]
    Coding,
    #[error("an expectation other than 100-continue")]
    Expectation,
}

impl HeadError {
    /// The status the client is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Coding => StatusCode::NOT_IMPLEMENTED,
            HeadError::Expectation => StatusCode::EXPECTATION_FAILED,
            HeadError::Malformed | HeadError::Framing | HeadError::Host | HeadError::HostValue => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

/// A parsed request head: the request without a body, how the body is
/// framed, whether the connection may carry another request, and whether
/// the client waits for `100 Continue` before sending the body.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

/// Where a header's name and value sit in the head: byte ranges.
pub type Spans = Vec<((usize, usize), (usize, usize))>;

/// Parse a request head from the start of `buf` and remove it from `buf`;
/// `None` (nothing removed) if more bytes are needed. `spans` is scratch
/// room, kept by the connection so a request allocates none.
pub fn parse_request(buf: &mut BytesMut, spans: &mut Spans) -> Result<Option<Head>, HeadError> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Left uninitialised: filling 100 empty headers per parse was ~700
    // instructions, and a request is parsed twice when its head is not
    // there yet.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => return Err(too_large(buf)),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(too_large(buf)),
        // A request line alone over half the bound: 414 without waiting for
        // the rest of the head.
        Ok(httparse::Status::Partial)
            if buf.len() > MAX_HEAD / 2 && too_large(buf) == HeadError::UriTooLong =>
        {
            return Err(HeadError::UriTooLong)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Malformed),
    };
    if parsed.path.map_or(0, str::len) > MAX_HEAD / 2 {
        return Err(HeadError::UriTooLong);
    }
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Malformed)?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Where each header's name and value sit in the head, so the values
    // can be slices of it once it is split off (no copy per value).
    let base = buf.as_ptr() as usize;
    let path = span(base, parsed.path.unwrap_or("").as_bytes());
    spans.clear();
    for h in parsed.headers.iter() {
        spans.push((span(base, h.name.as_bytes()), span(base, h.value)));
    }
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(path.0..path.1)).map_err(|_| HeadError::Malformed)?;
    let mut map = HeaderMap::with_capacity(spans.len());
    // Host headers counted on the way (a map lookup after was ~100
    // instructions a request).
    let mut hosts = 0;
    for &(name, value) in spans.iter() {
        let name = &head[name.0..name.1];
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !valid_host(&head[value.0..value.1]) {
                return Err(HeadError::HostValue);
            }
        }
        let name = HeaderName::from_bytes(name).map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_maybe_shared(head.slice(value.0..value.1))
            .map_err(|_| HeadError::Malformed)?;
        map.append(name, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    // RFC 9112 section 3.2: an HTTP/1.1 request has one Host, or gets 400.
    if version == Version::HTTP_11 && hosts != 1 {
        return Err(HeadError::Host);
    }
    let framing = framing(request.headers(), version)?;
    let keep_alive = keep_alive(request.headers(), version);
    // RFC 9110 section 10.1.1: 100-continue is the only expectation; any
    // other is answered 417 rather than silently ignored.
    let expect = request.headers().get(header::EXPECT);
    if expect.is_some_and(|v| {
        !v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    }) {
        return Err(HeadError::Expectation);
    }
    let expect_continue = version == Version::HTTP_11 && expect.is_some();
    Ok(Some(Head {
        request,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// A head over the bound: 414 when the request line alone is the
/// problem (unfinished, or over half the bound), else 431.
fn too_large(buf: &[u8]) -> HeadError {
    match memchr::memchr(b'\n', buf) {
        Some(end) if end <= MAX_HEAD / 2 => HeadError::TooLarge,
        _ => HeadError::UriTooLong,
    }
}

/// The byte range of `part` (a slice of the buffer at `base`).
fn span(base: usize, part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - base;
    (start, start + part.len())
}

/// How the request body is delimited (RFC 9112 section 6.3). Anything a
/// server and a proxy in front of it could read two ways is refused: a
/// transfer coding beside a length, a coding other than a final `chunked`,
/// a transfer coding in HTTP/1.0, lengths that disagree.
fn framing(h: &HeaderMap, version: Version) -> Result<Framing, HeadError> {
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if version == Version::HTTP_10 || h.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::Framing);
        }
        let mut last_chunked = false;
        for v in codings {
            for coding in v.as_bytes().split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if last_chunked || coding.is_empty() {
                    // `chunked` applied twice, or not last.
                    return Err(HeadError::Framing);
                }
                last_chunked = coding.eq_ignore_ascii_case(b"chunked");
                if !last_chunked {
                    // gzip, deflate...: goproxy decodes none (RFC 9112
                    // section 6.1: 501), and would pass them on as JSON.
                    return Err(HeadError::Coding);
                }
            }
        }
        return if last_chunked {
            Ok(Framing::Chunked)
        } else {
            Err(HeadError::Framing)
        };
    }
    let mut length = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Framing);
            }
            let n = part.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Framing);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
    })
}

/// Whether the client lets the connection carry another request: HTTP/1.1
/// unless it says `close`, HTTP/1.0 only if it says `keep-alive`.
fn keep_alive(h: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| {
        h.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if version == Version::HTTP_11 {
        !has(b"close")
    } else {
        has(b"keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, HeadError> {
        parse_request(&mut BytesMut::from(text), &mut Spans::new())
    }

    fn head(text: &str) -> Head {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn a_request_head_is_split_off_and_the_rest_kept() {
        let mut buf = BytesMut::from(
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nX-Key: v\r\ncontent-length: 2\r\n\r\n{}GET",
        );
        let h = parse_request(&mut buf, &mut Spans::new()).unwrap().unwrap();
        assert_eq!(&buf[..], b"{}GET");
        let r = &h.request;
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().path(), "/v1/chat/completions");
        assert_eq!(r.uri().query(), Some("x=1"));
        assert_eq!(r.headers()["x-key"], "v");
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(h.framing, Framing::Length(2));
        assert!(h.keep_alive && !h.expect_continue);
    }

    #[test]
    fn a_cut_head_needs_more_and_leaves_the_buffer() {
        let text = "GET /health HTTP/1.1\r\nHost: a\r\n";
        let mut buf = BytesMut::from(text);
        assert!(parse_request(&mut buf, &mut Spans::new())
            .unwrap()
            .is_none());
        assert_eq!(&buf[..], text.as_bytes());
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        let h = head("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("POST / HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3, 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(
            head("GET / HTTP/1.1\r\nhost: a\r\n\r\n").framing,
            Framing::Empty
        );
        assert!(
            !head("GET / HTTP/1.1\r\nhost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(head("POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-Continue\r\n\r\n").expect_continue);
        assert!(!head("POST / HTTP/1.0\r\nexpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn heads_read_two_ways_are_refused() {
        for text in [
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: ,\r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length:\r\n\r\n",
        ] {
            assert_eq!(parse(text).unwrap_err(), HeadError::Framing, "{text:?}");
        }
    }

    /// RFC 9112: one Host in HTTP/1.1 (400), codings goproxy cannot
    /// decode (501), a request line over the bound (414).
    #[test]
    fn host_codings_and_long_uris_get_their_status() {
        let bad = |t: &str| parse(t).unwrap_err().status().as_u16();
        assert_eq!(bad("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(bad("GET / HTTP/1.1\r\nhost: a\r\nHost: b\r\n\r\n"), 400);
        for host in [
            "",
            "a b",
            "a/b",
            "a\\b",
            "user@a",
            "a:b",
            "a:123456",
            "[",
            "[]",
            "a\tb",
            "caf\u{e9}",
            "\"a\"",
            "a:8004:1",
            "[::1]x",
            "[a b]",
            "[::1]:80:1",
            "a[::1]",
        ] {
            let t = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
            assert_eq!(parse(&t).unwrap_err(), HeadError::HostValue, "{host:?}");
        }
        assert_eq!(bad("GET / HTTP/1.0\r\nhost: a b\r\n\r\n"), 400);
        for host in [
            "chat.trollllm.xyz",
            "goproxy:8004",
            "127.0.0.1:8005",
            "[::1]",
            "[::1]:8004",
            "a-b_c.~",
            "xn--bcher-kva.example",
            "a:",
            "a ",
        ] {
            let t = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
            assert!(parse(&t).is_ok(), "{host:?}");
        }
        assert!(head("GET / HTTP/1.0\r\n\r\n").request.headers().is_empty());
        assert_eq!(
            bad("POST / HTTP/1.1\r\nhost: a\r\nexpect: 200-ok\r\n\r\n"),
            417
        );
        for te in ["gzip, chunked", "gzip", "deflate,chunked"] {
            let t = format!("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: {te}\r\n\r\n");
            assert_eq!(bad(&t), 501, "{te}");
        }
        let long = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(70 * 1024));
        assert_eq!(bad(&long), 414);
        assert_eq!(bad(&long[..MAX_HEAD + 10]), 414);
        // Over half the bound: 414 whether the head is whole or not yet.
        let half = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(40 * 1024));
        assert_eq!(bad(&half), 414);
        assert_eq!(bad(&half[..40 * 1024]), 414);
        assert!(
            parse(&half[..20 * 1024]).unwrap().is_none(),
            "still reading"
        );
    }

    #[test]
    fn malformed_and_oversized_heads_get_their_status() {
        let bad = |t: &str| parse(t).unwrap_err().status().as_u16();
        assert_eq!(bad("GET / HTTP/1.1\r\nhost: a\r\nbad header\r\n\r\n"), 400);
        assert_eq!(bad("GET / HTTP/1.1\r\nhost: a\r\n: no-name\r\n\r\n"), 400);
        assert_eq!(bad("GET /\x7f HTTP/1.1\r\nhost: a\r\n\r\n"), 400);
        assert_eq!(bad("GET / HTTP/2.0\r\n\r\n"), 505);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x{i}: v\r\n")).collect();
        assert_eq!(
            bad(&format!("GET / HTTP/1.1\r\nhost: a\r\n{many}\r\n")),
            431
        );
        let endless = format!("GET / HTTP/1.1\r\nhost: a\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(bad(&endless), 431);
        // The same bound when the whole head came in one read.
        assert_eq!(bad(&format!("{endless}\r\n\r\n")), 431);
    }
}
