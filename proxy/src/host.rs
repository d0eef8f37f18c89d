//! What a Host header (or an HTTP/2 `:authority`) may hold: a host and an
//! optional port, nothing else (RFC 9110 section 7.2). One check for both
//! sides of goproxy's server, so neither passes what the other refuses.

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 section 7.2,
/// RFC 3986 section 3.2.2) with a host that is not empty: an invalid one
/// is answered 400 (RFC 9110 says so; nginx's "client sent invalid host
/// header"). A value with spaces, slashes, `@` or control characters is
/// never a host, and must not reach a log or an upstream as one.
pub fn valid_host(value: &[u8]) -> bool {
    // (httparse has trimmed the value's whitespace.)
    let (host, port) = match value {
        // IPv6 or IPvFuture in brackets: hex digits, colons, dots, and
        // the bytes of a name.
        [b'[', ..] => match memchr::memchr(b']', value) {
            Some(end) if end > 1 => {
                let literal = &value[1..end];
                if !literal.iter().all(|&b| HOST_BYTE[usize::from(b)]) {
                    return false;
                }
                match &value[end + 1..] {
                    [] => return true,
                    [b':', port @ ..] => (&value[..=end], port),
                    _ => return false,
                }
            }
            _ => return false,
        },
        // One table load a byte (this runs on every request); a second
        // colon is then caught by the port's digits.
        _ if !value.iter().all(|&b| HOST_BYTE[usize::from(b)]) => return false,
        _ => match memchr::memchr(b':', value) {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        },
    };
    !host.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

/// The bytes of a `reg-name` (RFC 3986: unreserved, sub-delims, and `%`
/// of an escape), and `:` (before a port, or in an IP literal).
const HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
            );
        b += 1;
    }
    t
};
