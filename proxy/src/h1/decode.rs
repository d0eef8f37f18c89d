//! The framing of an HTTP/1.1 response body (RFC 9112 section 6.3):
//! `content-length`, chunked, or until the connection closes. Data comes
//! out as slices of the read buffer (no copy); chunk sizes, chunk ends and
//! trailers are read a byte at a time, with a bound on each.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (size plus extensions) accepted.
const MAX_SIZE_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// How a response body is delimited, from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (`204`, `304`, `content-length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid chunk size line in the upstream body")]
    ChunkSize,
    #[error("chunk size line over {MAX_SIZE_LINE} bytes in the upstream body")]
    ChunkSizeTooLong,
    #[error("chunk data not followed by CRLF in the upstream body")]
    ChunkEnd,
    #[error("trailers over {MAX_TRAILERS} bytes in the upstream body")]
    TrailersTooLong,
    #[error("the upstream closed the connection before the body ended")]
    UnexpectedEof,
}

/// What the buffer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Close,
    /// Reading a chunk size: its value so far, whether a digit was seen,
    /// whether the extensions began, and the line's length so far.
    Size {
        value: u64,
        digits: bool,
        ext: bool,
        line: usize,
    },
    /// `\r` seen at the end of a size line.
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, then an empty line. `line` is
    /// the current line's length, `total` all trailer bytes so far.
    Trailers {
        line: usize,
        total: usize,
    },
    Done,
}

/// Decodes one response body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::size_start(),
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes still to come, when the framing says so.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Data bytes the framing says must still come: the rest of a length,
    /// or of the chunk being read (a chunk size line promises its data).
    pub fn at_least(&self) -> u64 {
        match self.state {
            State::Length(n) | State::Data(n) | State::SizeLf { value: n } => n,
            _ => 0,
        }
    }

    /// The next data slice from `buf`, or whether more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        match self.skip_control(buf)? {
            Step::NeedMore => {}
            other => return Ok(other),
        }
        Ok(match self.state {
            _ if buf.is_empty() => Step::NeedMore,
            State::Length(n) => self.take(buf, n, State::Done, State::Length),
            State::Data(n) => self.take(buf, n, State::DataCr, State::Data),
            State::Close => Step::Data(buf.split().freeze()),
            _ => Step::NeedMore,
        })
    }

    /// Up to `n` data bytes from `buf`; the state after is `end` if that
    /// was all of them, else `more(left)`.
    fn take(&mut self, buf: &mut BytesMut, n: u64, end: State, more: fn(u64) -> State) -> Step {
        let data = buf.split_to(n.min(buf.len() as u64) as usize);
        self.state = match n - data.len() as u64 {
            0 => end,
            left => more(left),
        };
        Step::Data(data.freeze())
    }

    /// Consume chunk sizes, chunk ends and trailers from `buf` up to the
    /// next data byte: `Done` if the body ended, `NeedMore` otherwise
    /// (also when data is next). Called after each data slice too, so a
    /// body whose last chunk came with its data is known to be whole then.
    #[inline]
    pub fn skip_control(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        // Most calls find nothing to do (an empty buffer between SSE events,
        // data next): answered inline, without the loop's set-up.
        if buf.is_empty() || !self.is_control() {
            return Ok(if self.state == State::Done {
                Step::Done
            } else {
                Step::NeedMore
            });
        }
        self.skip_control_bytes(buf)
    }

    /// [`Self::skip_control`] on a buffer that starts with control bytes.
    fn skip_control_bytes(&mut self, buf: &mut BytesMut) -> Result<Step, DecodeError> {
        let mut used = 0;
        let step = loop {
            if self.state == State::Done {
                break Ok(Step::Done);
            }
            let Some(&b) = buf.get(used).filter(|_| self.is_control()) else {
                break Ok(Step::NeedMore);
            };
            let took = self.whole_line(&buf[used..]);
            if took > 0 {
                used += took;
                continue;
            }
            // A byte is consumed only once it was accepted: a bad byte
            // fails every call, not just the first.
            match self.state.control(b) {
                Ok(next) => self.state = next,
                Err(e) => break Err(e),
            }
            used += 1;
        };
        // One advance for all the bytes: `BytesMut::advance` is not free.
        if used > 0 {
            buf.advance(used);
        }
        step
    }

    /// The usual bytes between chunks taken at once: the `\r\n` after a
    /// chunk's data, or a whole, plain size line. How many bytes that was;
    /// 0 leaves anything else (a line cut by the read, extensions with a
    /// stray CR, an error) to the byte-at-a-time path, which decides it.
    fn whole_line(&mut self, rest: &[u8]) -> usize {
        match self.state {
            State::DataCr if rest.starts_with(b"\r\n") => {
                self.state = State::size_start();
                2
            }
            State::Size {
                digits: false,
                line: 0,
                ..
            } => {
                if let Some(took) = self.plain_size_line(rest) {
                    return took;
                }
                let window = &rest[..rest.len().min(MAX_SIZE_LINE)];
                let Some(nl) = memchr::memchr(b'\n', window) else {
                    return 0;
                };
                let line = &rest[..nl];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let ext = &line[digits..];
                let plain_ext = ext.is_empty()
                    || (matches!(ext[0], b';' | b' ' | b'\t') && !ext.contains(&b'\r'));
                if digits == 0 || digits > 16 || !plain_ext {
                    return 0;
                }
                let value = line[..digits].iter().fold(0u64, |v, &b| {
                    v << 4 | u64::from((b as char).to_digit(16).unwrap_or(0))
                });
                self.state = State::after_size(value);
                nl + 1
            }
            _ => 0,
        }
    }

    /// `<hex>\r\n`, the size line of nearly every chunk, read in one pass
    /// (no `memchr` set-up for a line of a few bytes); how many bytes it
    /// took, or `None` to leave the line to [`Self::whole_line`]'s general
    /// path (extensions, a line cut by the read, over 16 digits).
    fn plain_size_line(&mut self, rest: &[u8]) -> Option<usize> {
        let mut value = 0u64;
        for (i, &b) in rest.iter().enumerate() {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                b'\r' if i > 0 && rest.get(i + 1) == Some(&b'\n') => {
                    self.state = State::after_size(value);
                    return Some(i + 2);
                }
                _ => return None,
            };
            if i == 16 {
                return None;
            }
            value = value << 4 | u64::from(digit);
        }
        None
    }

    #[inline]
    fn is_control(&self) -> bool {
        !matches!(self.state, State::Length(_) | State::Data(_) | State::Close)
    }

    /// The connection closed: the end of a close-delimited body, an error
    /// for any other.
    pub fn eof(&mut self) -> Result<(), DecodeError> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(DecodeError::UnexpectedEof),
        }
    }
}

impl State {
    fn size_start() -> Self {
        State::Size {
            value: 0,
            digits: false,
            ext: false,
            line: 0,
        }
    }

    /// The state after one control byte.
    #[inline]
    fn control(self, b: u8) -> Result<State, DecodeError> {
        Ok(match self {
            State::Size {
                value,
                digits,
                ext,
                line,
            } => {
                if line >= MAX_SIZE_LINE {
                    return Err(DecodeError::ChunkSizeTooLong);
                }
                let line = line + 1;
                match b {
                    b'\r' if digits => State::SizeLf { value },
                    b'\n' if digits => State::after_size(value),
                    _ if ext => State::Size {
                        value,
                        digits,
                        ext,
                        line,
                    },
                    b';' | b' ' | b'\t' if digits => State::Size {
                        value,
                        digits,
                        ext: true,
                        line,
                    },
                    _ => {
                        let d = (b as char).to_digit(16).ok_or(DecodeError::ChunkSize)?;
                        let value = value
                            .checked_mul(16)
                            .and_then(|v| v.checked_add(u64::from(d)))
                            .ok_or(DecodeError::ChunkSize)?;
                        State::Size {
                            value,
                            digits: true,
                            ext,
                            line,
                        }
                    }
                }
            }
            State::SizeLf { value } if b == b'\n' => State::after_size(value),
            State::SizeLf { .. } => return Err(DecodeError::ChunkSize),
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::size_start(),
            State::DataCr | State::DataLf => return Err(DecodeError::ChunkEnd),
            State::Trailers { line, total } => {
                if total >= MAX_TRAILERS {
                    return Err(DecodeError::TrailersTooLong);
                }
                match b {
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailers {
                        line: 0,
                        total: total + 1,
                    },
                    // A CR does not count towards the line: "\r\n" alone
                    // is the empty line that ends the trailers.
                    b'\r' => State::Trailers {
                        line,
                        total: total + 1,
                    },
                    _ => State::Trailers {
                        line: line + 1,
                        total: total + 1,
                    },
                }
            }
            State::Length(_) | State::Data(_) | State::Close | State::Done => self,
        })
    }

    fn after_size(value: u64) -> State {
        match value {
            0 => State::Trailers { line: 0, total: 0 },
            n => State::Data(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `wire` fed in pieces of `split` bytes; the data and whether
    /// the body ended.
    fn run(framing: Framing, wire: &[u8], split: usize) -> Result<(Vec<u8>, bool), DecodeError> {
        let mut d = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(split.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&mut buf)? {
                    Step::Data(b) => out.extend_from_slice(&b),
                    Step::NeedMore => break,
                    Step::Done => return Ok((out, true)),
                }
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn chunked_with_extensions_and_trailers_at_every_split() {
        let wire = b"5;name=v\r\nhello\r\n1 \r\n \r\n6\r\nworld!\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 1..=wire.len() {
            let (data, done) = run(Framing::Chunked, wire, split).unwrap();
            assert_eq!(data, b"hello world!", "split {split}");
            assert!(done, "split {split}");
        }
    }

    #[test]
    fn bare_lf_line_ends_are_read() {
        let (data, done) = run(Framing::Chunked, b"3\nabc\r\n0\n\n", 1).unwrap();
        assert_eq!((data.as_slice(), done), (&b"abc"[..], true));
    }

    #[test]
    fn length_bodies_end_at_their_length() {
        let (data, done) = run(Framing::Length(5), b"hello", 2).unwrap();
        assert_eq!((data.as_slice(), done), (&b"hello"[..], true));
        let mut d = Decoder::new(Framing::Length(3));
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(d.decode(&mut buf), Ok(Step::Data(Bytes::from("abc"))));
        assert!(d.is_done());
        assert_eq!(&buf[..], b"def", "bytes past the body are left alone");
        assert!(Decoder::new(Framing::Empty).is_done());
    }

    #[test]
    fn close_delimited_bodies_end_at_eof_only() {
        let mut d = Decoder::new(Framing::Close);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(d.decode(&mut buf), Ok(Step::Data(Bytes::from("abc"))));
        assert_eq!(d.eof(), Ok(()));
        assert!(d.is_done());
        let mut d = Decoder::new(Framing::Length(4));
        assert_eq!(d.eof(), Err(DecodeError::UnexpectedEof));
        let mut d = Decoder::new(Framing::Chunked);
        assert_eq!(d.eof(), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let bad: [(&[u8], DecodeError); 5] = [
            (b"xyz\r\n", DecodeError::ChunkSize),
            (b"\r\n", DecodeError::ChunkSize),
            (b"11111111111111111\r\n", DecodeError::ChunkSize),
            (b"3\r\nabcX", DecodeError::ChunkEnd),
            (b"3\r\nabc\rX", DecodeError::ChunkEnd),
        ];
        for (wire, want) in bad {
            assert_eq!(run(Framing::Chunked, wire, 64), Err(want), "{wire:?}");
        }
    }

    /// Size lines and trailers are bounded: an upstream cannot make the
    /// decoder read forever without producing data.
    #[test]
    fn control_bytes_are_bounded() {
        let mut long = b"1;".to_vec();
        long.resize(MAX_SIZE_LINE + 10, b'a');
        assert_eq!(
            run(Framing::Chunked, &long, 100),
            Err(DecodeError::ChunkSizeTooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..MAX_TRAILERS / 8 + 1 {
            trailers.extend_from_slice(b"x: yyy\r\n");
        }
        assert_eq!(
            run(Framing::Chunked, &trailers, 100),
            Err(DecodeError::TrailersTooLong)
        );
    }

    /// Whole lines (the fast path) and byte by byte decide alike, on good
    /// and bad size lines.
    #[test]
    fn whole_lines_and_single_bytes_agree() {
        let lines: [&[u8]; 14] = [
            b"5\r\nhello\r\n0\r\n\r\n",
            b"aB\r\n0123456789a\r\n0\r\n\r\n",
            b"0000000000000000a\r\n0123456789\r\n0\r\n\r\n",
            b"0005\r\nhello\r\n0\r\n\r\n",
            b"A;x=\"y\"\r\n0123456789\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\n\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5x\r\nhello\r\n",
            b"5\r\r\nhello\r\n",
            b";5\r\nhello\r\n",
            b"ffffffffffffffff\r\nab",
            b"10000000000000000\r\nab",
            b"5\r\nhello\n\r\n",
            b"-5\r\nhello\r\n",
        ];
        for wire in lines {
            let whole = run(Framing::Chunked, wire, wire.len());
            let bytes = run(Framing::Chunked, wire, 1);
            assert_eq!(whole, bytes, "{:?}", String::from_utf8_lossy(wire));
        }
    }

    /// The last chunk's terminator is consumed right after its data, so the
    /// body is known to be whole without another read.
    #[test]
    fn end_is_seen_right_after_the_last_data() {
        let mut d = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\n\r\n"[..]);
        assert_eq!(d.decode(&mut buf), Ok(Step::Data(Bytes::from("ok"))));
        assert_eq!(d.skip_control(&mut buf), Ok(Step::Done));
        assert!(buf.is_empty());
    }
}
