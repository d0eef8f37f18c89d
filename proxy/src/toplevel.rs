//! The members of a JSON object's top level, found by a structural scan
//! instead of a full parse: nested values are stepped through 64 bytes at
//! a time ([`crate::window`], [`crate::in_string`]), long strings are
//! skipped with `memchr`, and only top-level keys and scalars are decoded
//! and validated. A 90 KB agent request is nearly all string text, so this
//! is several times cheaper than `serde_json` walking every byte of every
//! message.
//!
//! What is checked: the body is one object; every string is closed;
//! brackets nest and match; no backslash stands outside a string;
//! top-level keys are strings; top-level scalar values are valid JSON.
//! What is not: scalars *inside* nested values (a malformed number deep in
//! `messages` is left for the upstream to refuse, as nginx would pass it on
//! too).

use std::borrow::Cow;

use crate::in_string::InString;
use crate::window;

/// Why a body is not a JSON object (the caller words the 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ScanError {
    what: &'static str,
    at: usize,
}

fn err<T>(what: &'static str, at: usize) -> Result<T, ScanError> {
    Err(ScanError { what, at })
}

/// One top-level member: its decoded key and its value's exact text.
pub type Member<'a> = (Cow<'a, str>, &'a str);

/// The top-level members of the object `text`, in order (duplicates kept).
pub fn members(text: &str) -> Result<Vec<Member<'_>>, ScanError> {
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return err("expected an object", i);
    }
    i = ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return end(b, i + 1).map(|()| out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return err("expected a string key", i);
        }
        let key_end = string(b, i)?;
        let key = key_text(&text[i..key_end]).ok_or(ScanError {
            what: "invalid key",
            at: i,
        })?;
        i = ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return err("expected ':'", i);
        }
        let start = ws(b, i + 1);
        let stop = value(b, start)?;
        out.push((key, &text[start..stop]));
        i = ws(b, stop);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return end(b, i + 1).map(|()| out),
            _ => return err("expected ',' or '}'", i),
        }
    }
}

/// Only whitespace may follow the object.
fn end(b: &[u8], i: usize) -> Result<(), ScanError> {
    let j = ws(b, i);
    if j == b.len() {
        Ok(())
    } else {
        err("trailing characters", j)
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// A key without escapes is borrowed; one with escapes is decoded by
/// serde_json (so `"\u006dodel"` is `model`, as the upstream reads it).
fn key_text(quoted: &str) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
}

/// `b[i]` is `"`: the index just past the closing quote. Most strings of a
/// request are keys and short values that end in the first window; a long
/// message text is left to `memchr2` (AVX2 where the CPU has it).
fn string(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut j = i + 1;
    loop {
        let k = match window::at(b, j).map(window::quote_or_escape) {
            Some(0) => {
                memchr::memchr2(b'"', b'\\', &b[j + window::WIDTH..]).map(|k| j + window::WIDTH + k)
            }
            Some(m) => Some(j + m.trailing_zeros() as usize),
            None => memchr::memchr2(b'"', b'\\', &b[j.min(b.len())..]).map(|k| j + k),
        };
        match k {
            None => return err("unterminated string", i),
            Some(k) if b[k] == b'\\' => j = k + 2,
            Some(k) => return Ok(k + 1),
        }
    }
}

/// A value starting at `b[i]`: the index just past it. Top-level scalars
/// are validated by serde_json (they are short).
fn value(b: &[u8], i: usize) -> Result<usize, ScanError> {
    match b.get(i) {
        Some(b'"') => string(b, i),
        Some(b'{' | b'[') => nested(b, i),
        Some(_) => {
            let mut j = i;
            while !matches!(
                b.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            ) {
                j += 1;
            }
            serde_json::from_slice::<serde::de::IgnoredAny>(&b[i..j])
                .map(|_| j)
                .or_else(|_| err("invalid value", i))
        }
        None => err("expected a value", i),
    }
}

/// An object or array at `b[i]`: the index just past its closer. Brackets
/// must nest and match, strings close, and no backslash stand outside a
/// string. 64 bytes a step ([`window::block`], [`InString`]): a step costs
/// the same with one bracket or ten, so the dense part of a request (tool
/// schemas: short keys, short values) costs no more a byte than the rest.
/// A block that ends inside a string is followed by a `memchr2` jump to
/// the string's next quote or backslash, so long message text is crossed
/// at memchr's speed (AVX2 where the CPU has it).
fn nested(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut open: Vec<u8> = Vec::with_capacity(16);
    let mut strings = InString::default();
    let mut at = i;
    let mut last = [b' '; window::BLOCK];
    while at < b.len() {
        let block = match b.get(at..at + window::BLOCK) {
            Some(w) => w.try_into().expect("a block"),
            // The last, short block, padded with spaces (which matter to
            // nothing here).
            None => {
                let n = b.len() - at;
                last[..n].copy_from_slice(&b[at..]);
                &last
            }
        };
        let outside = strings.step(window::block(block));
        if outside.backslashes != 0 {
            return err(
                "backslash outside a string",
                at + outside.backslashes.trailing_zeros() as usize,
            );
        }
        let mut brackets = outside.brackets;
        while brackets != 0 {
            let k = at + brackets.trailing_zeros() as usize;
            match b[k] {
                // The closer of `{` is `}` and of `[` is `]`: two bytes on.
                c @ (b'{' | b'[') => open.push(c + 2),
                c => {
                    if open.pop() != Some(c) {
                        return err("mismatched bracket", k);
                    }
                    if open.is_empty() {
                        return Ok(k + 1);
                    }
                }
            }
            brackets &= brackets - 1;
        }
        at += window::BLOCK;
        if strings.in_plain_string() {
            match memchr::memchr2(b'"', b'\\', b.get(at..).unwrap_or_default()) {
                Some(k) => at += k,
                None => break,
            }
        }
    }
    err("unclosed object or array", i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_exact_text_and_decode_keys() {
        let text = r#" { "a" : [1, {"b": "x\"]}"}] ,"\u006dodel":"m", "n":null ,"s":"\\"} "#;
        let m = members(text).unwrap();
        let keys: Vec<_> = m.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "model", "n", "s"]);
        assert_eq!(m[0].1, r#"[1, {"b": "x\"]}"}]"#);
        assert_eq!(m[1].1, r#""m""#);
        assert_eq!(m[2].1, "null");
        assert_eq!(m[3].1, r#""\\""#);
        assert_eq!(members("{}").unwrap(), vec![]);
    }

    /// Quotes, escapes and brackets inside strings, at every offset of a
    /// 16-byte window (so across window edges too): the value is found
    /// exactly, and every cut of the body is refused.
    #[test]
    fn strings_and_brackets_at_every_window_offset() {
        let tricky = [r#"\""#, r#"\\"#, r#"\\\""#, "]", "}", "{[", r#"\u0022"#, ""];
        for pad in 0..40 {
            for t in tricky {
                let s = format!("{}{t}{}", "x".repeat(pad), "y".repeat(pad % 7));
                let value = format!(r#"[{{"k":"{s}","n":[1,{{"{s}":"{s}"}}]}}, "{s}"]"#);
                serde_json::from_str::<serde_json::Value>(&value).expect("the value is JSON");
                let text = format!("{{\"a\":{value},\n\"model\":\"m\"}}");
                let m = members(&text).unwrap();
                assert_eq!(m.len(), 2, "{text}");
                assert_eq!(m[0].1, value);
                assert_eq!(m[1].1, r#""m""#);
                for cut in 1..text.len() {
                    assert!(members(&text[..cut]).is_err(), "{}", &text[..cut]);
                }
            }
        }
    }

    /// A random JSON value of strings full of quotes, backslashes and
    /// brackets, some long enough to cross 64-byte blocks.
    fn random_value(next: &mut impl FnMut() -> u64, depth: u32) -> serde_json::Value {
        use serde_json::Value;
        let pieces = ["\\", "\"", "[", "]", "{", "}", "\\\"", "x", "\u{e9}", " "];
        match next() % if depth == 0 { 2 } else { 4 } {
            0 => Value::String(
                (0..next() % 140)
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect(),
            ),
            1 => Value::from(next() % 1000),
            2 => (0..next() % 5)
                .map(|_| random_value(next, depth - 1))
                .collect(),
            _ => (0..next() % 5)
                .map(|k| (format!("k{k}\"]"), random_value(next, depth - 1)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// Nested values as serde_json writes them, at every alignment to the
    /// 64-byte blocks: each is found exactly, and cut short it is refused.
    #[test]
    fn random_nested_values_are_found_exactly() {
        let mut next = crate::test_rng::xorshift(0x2545_F491_4F6C_DD1D);
        for round in 0..400 {
            let value = serde_json::to_string(&random_value(&mut next, 4)).unwrap();
            let pad = " ".repeat(round % 64);
            let text = format!("{{{pad}\"a\":{value},\"model\":\"m\"}}");
            let m = members(&text).unwrap();
            assert_eq!(m[0].1, value, "{text}");
            assert_eq!(m[1].1, r#""m""#, "{text}");
            for cut in (1..text.len()).step_by(7) {
                if text.is_char_boundary(cut) {
                    assert!(members(&text[..cut]).is_err(), "{}", &text[..cut]);
                }
            }
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for bad in [
            "",
            "[1]",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{\"a\":\"x}",
            "{\"a\":[1}",
            "{\"a\":{]}",
            "{\"a\":tru}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":\"\\",
            r#"{"a":[1,\"x"]}"#,
            r#"{"a":{"b":\[]}}"#,
        ] {
            assert!(members(bad).is_err(), "{bad:?}");
        }
    }
}
