//! The `date` header every response carries (RFC 9110 section 6.6.1, as
//! hyper sends it), formatted once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `Sun, 06 Nov 1994 08:49:37 GMT` is 29 bytes.
const LEN: usize = 29;

thread_local! {
    static CACHE: RefCell<(u64, [u8; LEN])> = const { RefCell::new((u64::MAX, [0; LEN])) };
}

/// Append `date: <now>\r\n` to `out`.
pub fn put_date(out: &mut bytes::BytesMut) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == LEN {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            }
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&c.1);
        out.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_an_http_date_of_now() {
        let mut out = bytes::BytesMut::new();
        put_date(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let value = text
            .strip_prefix("date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        let when = httpdate::parse_http_date(value).unwrap();
        let age = SystemTime::now().duration_since(when).unwrap();
        assert!(age.as_secs() <= 1, "{value}");
    }
}
