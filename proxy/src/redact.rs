//! What may be logged of text an upstream sent (error bodies echo keys,
//! sometimes the caller's): secrets and key-like tokens replaced, the text
//! made one safe log line.
//!
//! Keys hide in more shapes than `sk-...` between spaces: JSON escapes
//! (`\nsk-...`, `sk-\u0070roj`, `sk-...\/...`), URL encoding (`sk%2D...`),
//! a key glued to a word (`key.sk-...`), a known key's fragment cut at a
//! buffer edge, bearer tokens that are JWTs, hex or base64. So the text is
//! decoded first (JSON string escapes, then `%XX`), then every token (a run
//! of key characters) is judged whole:
//!
//! - it holds an 8-character piece of a configured secret;
//! - it holds `sk-` / `sk_` at its start or after a non-letter (the rest of
//!   the token goes);
//! - it follows `Bearer`;
//! - one of its `-_.`-separated parts is 16+ characters with 2+ digits and
//!   2+ letters (random keys, JWT parts, hex and base64 secrets), unless
//!   the token is an upstream's request or message id (`req_...`).
//!
//! Model names (`gpt-4o-2024-08-06`), UUIDs and paths have no such part.
//! Then the text is cut to the log's length and its control characters are
//! escaped, so a body cannot forge log lines or send terminal escapes.

use std::fmt::Write as _;

use crate::auth::Secrets;

/// Most characters of upstream error text logged (after redaction).
pub const ERROR_LOG_CHARS: usize = 512;
/// Shortest piece of a configured secret that marks a token as holding it.
const FRAGMENT: usize = 8;
/// Shortest part of a token that can be a random secret by its shape.
const RANDOM_PART: usize = 16;
/// Token starts of upstream ids worth keeping in a log (they are not keys).
const ID_PREFIXES: &[&str] = &[
    "req_",
    "request_",
    "chatcmpl-",
    "msg_",
    "resp_",
    "run_",
    "call_",
    "toolu_",
];

/// `text` with secrets and key-like tokens replaced; see the module docs.
/// Not yet cut or escaped: [`redact_prefix`] does that.
pub fn redact(text: &str, secrets: &Secrets) -> String {
    redact_decoded(&decode(text), secrets)
}

/// JSON string escapes, then `%XX`, decoded.
fn decode(text: &str) -> String {
    percent_decode(&json_unescape(text))
}

fn redact_decoded(text: &str, secrets: &Secrets) -> String {
    let mut text = text.to_string();
    for s in secrets.all_values().filter(|s| s.len() >= 4) {
        text = text.replace(s, "[REDACTED]");
    }
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    for (token, is_token) in tokens(&text) {
        if !is_token {
            out.push_str(token);
            continue;
        }
        let bearer = after_bearer;
        after_bearer = token.eq_ignore_ascii_case("bearer");
        if bearer || holds_secret(token, secrets) || looks_random(token) {
            out.push_str("[REDACTED]");
        } else if let Some(i) = sk_start(token) {
            out.push_str(&token[..i]);
            out.push_str("sk-[REDACTED]");
        } else {
            out.push_str(token);
        }
    }
    out
}

/// What may be logged of the first bytes of a body: decoded and redacted,
/// then cut to `max_chars` and made one line. When the body went on past
/// `prefix` (`cut`), its last token is dropped first: it may be the start
/// of a key too short to recognise.
pub fn redact_prefix(prefix: &[u8], cut: bool, max_chars: usize, secrets: &Secrets) -> String {
    let text = String::from_utf8_lossy(prefix);
    // A cut body's last token goes before decoding as well as after: an
    // escape or a UTF-8 sequence cut in half (`Zq8XkP3%4`, `\u00`, a lone
    // 0xC3) is no key character, and would shelter the fragment before it.
    let decoded;
    let whole = if cut {
        decoded = decode(
            text.trim_end_matches(|c| is_key_char(c) || matches!(c, '%' | '\\' | '\u{fffd}')),
        );
        decoded.trim_end_matches(is_key_char)
    } else {
        decoded = decode(&text);
        &decoded
    };
    let red = redact_decoded(whole, secrets);
    let shown = match red.char_indices().nth(max_chars) {
        Some((i, _)) => &red[..i],
        None => &red,
    };
    let mut line = escape_controls(shown);
    if shown.len() < red.len() {
        line.push_str("...");
    }
    line
}

/// Characters keys are made of (base64's `+/=` included).
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=' | '~')
}

/// `text` split into runs of key characters (`true`) and the rest.
fn tokens(text: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let kind = is_key_char(first);
        let end = rest
            .char_indices()
            .find(|&(_, c)| is_key_char(c) != kind)
            .map_or(rest.len(), |(i, _)| i);
        let (run, after) = rest.split_at(end);
        rest = after;
        Some((run, kind))
    })
}

/// Whether `token` holds a piece of a configured secret.
fn holds_secret(token: &str, secrets: &Secrets) -> bool {
    let t = token.as_bytes();
    if t.len() < FRAGMENT {
        return false;
    }
    secrets
        .all_values()
        .filter(|s| s.len() >= FRAGMENT)
        .any(|s| {
            t.windows(FRAGMENT)
                .any(|w| memchr::memmem::find(s.as_bytes(), w).is_some())
        })
}

/// Where `sk-` / `sk_` starts a key in `token`: at its start or after a
/// non-letter, with 8+ characters after it.
fn sk_start(token: &str) -> Option<usize> {
    let b = token.as_bytes();
    (0..b.len().saturating_sub(2)).find(|&i| {
        b[i..].starts_with(b"sk")
            && matches!(b[i + 2], b'-' | b'_')
            && b.len() - i >= 3 + FRAGMENT
            && (i == 0 || !b[i - 1].is_ascii_alphabetic())
    })
}

/// Whether a part of `token` has the shape of a random secret.
fn looks_random(token: &str) -> bool {
    if ID_PREFIXES.iter().any(|p| token.starts_with(p)) {
        return false;
    }
    token.split(['-', '_', '.']).any(|part| {
        let digits = part.bytes().filter(u8::is_ascii_digit).count();
        let letters = part.bytes().filter(u8::is_ascii_alphabetic).count();
        part.len() >= RANDOM_PART && digits >= 2 && letters >= 2
    })
}

/// JSON string escapes decoded (`\n`, `\/`, `\u0070`, surrogate pairs); a
/// malformed escape is kept as written.
fn json_unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (decoded, used) = unescape_one(rest);
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[..used]),
        }
        rest = &rest[used..];
    }
    out.push_str(rest);
    out
}

/// The escape at the start of `s` (which starts with `\`): the character
/// and how many bytes it took, or `None` and the bytes to keep as written.
fn unescape_one(s: &str) -> (Option<char>, usize) {
    let b = s.as_bytes();
    let Some(&kind) = b.get(1) else {
        return (None, 1);
    };
    let simple = match kind {
        b'n' => Some('\n'),
        b'r' => Some('\r'),
        b't' => Some('\t'),
        b'b' => Some('\u{8}'),
        b'f' => Some('\u{c}'),
        b'"' | b'\\' | b'/' => Some(kind as char),
        _ => None,
    };
    if simple.is_some() {
        return (simple, 2);
    }
    let hex = |at: usize| {
        s.get(at..at + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    match (kind, hex(2)) {
        (b'u', Some(hi @ 0xd800..=0xdbff)) => {
            let lo = s.get(6..8).filter(|p| *p == "\\u").and_then(|_| hex(8));
            match lo {
                Some(lo @ 0xdc00..=0xdfff) => {
                    let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                    (char::from_u32(c), 12)
                }
                _ => (Some(char::REPLACEMENT_CHARACTER), 6),
            }
        }
        (b'u', Some(c)) => (Some(char::from_u32(c).unwrap_or('\u{fffd}')), 6),
        _ => (None, 1),
    }
}

/// `%XX` sequences decoded (the result read as UTF-8, lossily).
fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Control characters (C0, DEL, C1, line and paragraph separators) written
/// as JSON escapes (`\u001b`): one log line, no terminal escapes, and text
/// a reader of JSON or of the upstream's own body recognises.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
