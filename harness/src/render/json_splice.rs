//! Byte spans in a JSON text, so the test stack's substitutions are spliced
//! into the operator's goproxy JSON and every other byte (formatting, key
//! order, duplicate keys) stays as the operator wrote it.
//!
//! The text has been parsed by serde_json before it gets here, so the scan
//! may assume valid JSON; it only has to find where values start and end.

use std::ops::Range;

/// A member of an object: its key (unescaped) and its value's span.
pub type Member = (String, Range<usize>);

/// The end (exclusive) of the value starting at `i` (no leading space).
fn value_end(b: &[u8], mut i: usize) -> usize {
    match b[i] {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
    }
}

/// The end (exclusive, after the closing quote) of the string at `i`.
fn string_end(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The first value of the text (after leading whitespace).
pub fn root(text: &str) -> usize {
    skip_ws(text.as_bytes(), 0)
}

/// The members of the object at `at`, and the position of its `}`.
pub fn object(text: &str, at: usize) -> (Vec<Member>, usize) {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(b, at + 1);
    while i < b.len() && b[i] != b'}' {
        let key_end = string_end(b, i);
        let key = serde_json::from_str(&text[i..key_end]).unwrap_or_default();
        let v = skip_ws(b, skip_ws(b, key_end) + 1); // past ':'
        let end = value_end(b, v);
        out.push((key, v..end));
        i = skip_ws(b, end);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    (out, i)
}

/// The elements of the array at `at`, and the position of its `]`.
pub fn array(text: &str, at: usize) -> (Vec<Range<usize>>, usize) {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_ws(b, at + 1);
    while i < b.len() && b[i] != b']' {
        let end = value_end(b, i);
        out.push(i..end);
        i = skip_ws(b, end);
        if b.get(i) == Some(&b',') {
            i = skip_ws(b, i + 1);
        }
    }
    (out, i)
}

/// Where to insert one more item after `items` (or at `close` when there is
/// none), and the text to insert for `item` there.
pub fn append(items: &[Range<usize>], close: usize, item: &str) -> (Range<usize>, String) {
    match items.last() {
        Some(last) => (last.end..last.end, format!(", {item}")),
        None => (close..close, item.to_string()),
    }
}

/// `text` with each span replaced; spans must not overlap.
pub fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse((r.start, r.end)));
    let mut out = text.to_string();
    for (r, with) in edits {
        out.replace_range(r, &with);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_and_elements() {
        let t = "{ \"a\" : [1, {\"b\": \"x]}\"}] ,\"c\":true}";
        let (m, close) = object(t, root(t));
        assert_eq!(m.len(), 2);
        assert_eq!(&t[m[0].1.clone()], "[1, {\"b\": \"x]}\"}]");
        assert_eq!(&t[m[1].1.clone()], "true");
        assert_eq!(&t[close..], "}");
        let (els, _) = array(t, m[0].1.start);
        assert_eq!(&t[els[1].clone()], "{\"b\": \"x]}\"}");
    }
}
