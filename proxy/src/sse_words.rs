//! The three words the SSE relay looks for in every chunk it passes on,
//! found in one pass: `"delta"` (a content event, for the output
//! estimate), and `"usage"` and `"error"` with a value other than `null`
//! (an event worth parsing).
//!
//! All three are five letters between two quotes, so a word can start only
//! at a quote with another quote six bytes on: [`window::quote_pairs`]
//! finds those 16 places at a time, and only they are compared. OpenAI
//! sends `"usage":null` in every chunk of a stream that asked for usage
//! (goproxy always asks); taken for usage events, every chunk was split
//! into lines and parsed whole. With three `memmem` searches instead (the
//! null check going on past the first hit) reading a chunk cost ~590
//! instructions an event, with this pass ~425, and the relay's whole
//! event 2,751 against 2,590 (callgrind,
//! `bench/callgrind/ir-per-sse-event.sh`).

use crate::window::{self, PAIR, WIDTH};

/// The words a chunk holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    /// `"delta"`, anywhere.
    pub delta: bool,
    /// `"usage"`, other than as a member whose value is `null`.
    pub usage: bool,
    /// `"error"`, other than as a member whose value is `null`.
    pub error: bool,
}

/// The words `b` holds.
pub fn words(b: &[u8]) -> Words {
    let mut found = Words::default();
    let mut at = 0;
    while let Some(w) = b.get(at..at + WIDTH + PAIR) {
        let starts = window::quote_pairs(w.try_into().expect("a window and a pair"));
        if starts != 0 {
            check(b, at, starts, &mut found);
        }
        at += WIDTH;
    }
    // The last bytes (fewer than a window and a pair), zero-padded: no
    // word starts in the padding, which has no quotes.
    let rest = &b[at..];
    if rest.len() > PAIR {
        let mut pad = [0u8; WIDTH + PAIR];
        pad[..rest.len()].copy_from_slice(rest);
        check(&pad, 0, window::quote_pairs(&pad), &mut found);
    }
    found
}

/// Compare the letters after each quote in `starts` (bit `i`: quotes at
/// `base + i` and six bytes on).
fn check(b: &[u8], base: usize, mut starts: u32, found: &mut Words) {
    while starts != 0 {
        let i = base + starts.trailing_zeros() as usize;
        starts &= starts - 1;
        let not_null = || !is_null_member(&b[i + PAIR + 1..]);
        // The five letters as one number: three compares of a register.
        let Some(&[a, b1, c, d, e]) = b.get(i + 1..i + PAIR) else {
            continue;
        };
        match u64::from(u32::from_le_bytes([a, b1, c, d])) | u64::from(e) << 32 {
            DELTA => found.delta = true,
            USAGE => found.usage |= not_null(),
            ERROR => found.error |= not_null(),
            _ => {}
        }
    }
}

const DELTA: u64 = letters(b"delta");
const USAGE: u64 = letters(b"usage");
const ERROR: u64 = letters(b"error");

/// Five bytes as the low bytes of a number (little-endian, as `check`
/// reads them).
const fn letters(w: &[u8; 5]) -> u64 {
    let mut n = 0u64;
    let mut k = 0;
    while k < 5 {
        n |= (w[k] as u64) << (8 * k);
        k += 1;
    }
    n
}

/// Whether `rest`, what follows a key's closing quote, is `: null`.
fn is_null_member(rest: &[u8]) -> bool {
    rest.trim_ascii_start()
        .strip_prefix(b":")
        .is_some_and(|v| v.trim_ascii_start().starts_with(b"null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What substring searches give (a `null` member passed over).
    fn searched(b: &[u8]) -> Words {
        let has = |w: &[u8]| {
            memchr::memmem::find_iter(b, w).any(|at| !is_null_member(&b[at + w.len()..]))
        };
        Words {
            delta: memchr::memmem::find(b, b"\"delta\"").is_some(),
            usage: has(b"\"usage\""),
            error: has(b"\"error\""),
        }
    }

    /// Each word at every offset of chunks of every length up to three
    /// windows and more (across window edges, at both ends), among near
    /// misses and `null` members, gives what the substring searches give.
    #[test]
    fn words_are_found_at_every_offset() {
        let pieces: [&[u8]; 10] = [
            b"\"delta\"",
            b"\"usage\"",
            b"\"error\"",
            b"\"usage\":null",
            b"\"error\" : null,",
            b"\"model\"",
            b"\\\"error\\\"",
            b"\"errors\"",
            b"\"\"\"\"\"\"\"",
            b"\"erro\"",
        ];
        for piece in pieces {
            for len in piece.len()..3 * WIDTH + 2 * PAIR + 2 {
                for at in 0..=len - piece.len() {
                    let mut b = vec![b'x'; len];
                    b[at..at + piece.len()].copy_from_slice(piece);
                    let what = format!("{} at {at} of {len}", piece.escape_ascii());
                    assert_eq!(words(&b), searched(&b), "{what}");
                }
            }
        }
    }

    /// Real events, and pseudo-random runs of quotes, words, pieces of
    /// words and `null` members (a fixed generator: every run the same).
    #[test]
    fn words_match_the_substring_searches() {
        let events: [&[u8]; 5] = [
            b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok\"},\"finish_reason\":null}],\"usage\":null}\n\n",
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n",
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n",
            b"",
            b"\"",
        ];
        for e in events {
            assert_eq!(words(e), searched(e), "{}", e.escape_ascii());
        }
        let pieces: [&[u8]; 9] = [
            b"\"", b"delta", b"usage", b"error", b"x", b"\\", b"err", b":null", b" ",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = Vec::new();
            for _ in 0..next() % 120 {
                b.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            assert_eq!(words(&b), searched(&b), "{}", b.escape_ascii());
        }
    }
}
