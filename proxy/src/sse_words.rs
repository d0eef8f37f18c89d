//! The three words the SSE relay looks for in every chunk it passes on,
//! found in one pass: `"delta"` (a content event, counted for the output
//! estimate; [`Junction`] finds one split between two chunks), and `"usage"` and `"error"` with a value other than `null`
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
    /// How many `"delta"`s, anywhere.
    pub deltas: u32,
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
            DELTA => found.deltas += 1,
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

/// The last bytes of the stream before the current chunk: enough to find
/// a `"delta"` that began in them and ends in the chunk (an upstream's
/// writes, or the reads, may cut anywhere; one that came a byte at a time
/// counted no delta at all).
#[derive(Debug, Default, Clone, Copy)]
pub struct Junction {
    tail: [u8; PAIR],
    len: usize,
}

impl Junction {
    /// How many `"delta"`s begin before `chunk` and end in it; then
    /// `chunk`'s last bytes become the tail.
    pub fn split_deltas(&mut self, chunk: &[u8]) -> u32 {
        // A word begins at a quote: a tail without one (an event's usual
        // end, `}]}\n\n`) begins none, and costs no search.
        let split = if self.has_quote() {
            self.count_split(chunk)
        } else {
            0
        };
        self.keep_tail(chunk);
        split
    }

    /// Whether the tail holds a quote: its six bytes (zero past `len`) at
    /// once, each compared with `"` by the zero-byte test.
    fn has_quote(&self) -> bool {
        let t = self.tail;
        let x =
            u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], 0, 0]) ^ 0x0000_2222_2222_2222;
        x.wrapping_sub(0x0000_0101_0101_0101) & !x & 0x0000_8080_8080_8080 != 0
    }

    /// The words starting in the tail and ending in `chunk`.
    fn count_split(&self, chunk: &[u8]) -> u32 {
        const WORD: &[u8] = b"\"delta\"";
        let (both, len) = self.then(chunk);
        let both = &both[..len];
        (0..self.len)
            .filter(|&s| both.get(s..s + WORD.len()) == Some(WORD))
            .count() as u32
    }

    /// The stream's last [`PAIR`] bytes, however short `chunk` is.
    fn keep_tail(&mut self, chunk: &[u8]) {
        if chunk.len() >= PAIR {
            self.tail.copy_from_slice(&chunk[chunk.len() - PAIR..]);
            self.len = PAIR;
            return;
        }
        let (both, all) = self.then(chunk);
        let keep = all.min(PAIR);
        self.tail = [0; PAIR];
        self.tail[..keep].copy_from_slice(&both[all - keep..all]);
        self.len = keep;
    }

    /// The tail, then `chunk`'s first [`PAIR`] bytes, and their length.
    fn then(&self, chunk: &[u8]) -> ([u8; 2 * PAIR], usize) {
        let head = &chunk[..chunk.len().min(PAIR)];
        let mut both = [0u8; 2 * PAIR];
        both[..self.len].copy_from_slice(&self.tail[..self.len]);
        both[self.len..self.len + head.len()].copy_from_slice(head);
        (both, self.len + head.len())
    }
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
            // Overlapping ones too (`"delta"delta"`), as the pass finds.
            deltas: b.windows(7).filter(|w| w == b"\"delta\"").count() as u32,
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

#[cfg(test)]
mod junction_tests {
    use super::*;

    /// The quote test finds a quote at each of the tail's places and none
    /// in a tail without one, whatever else it holds.
    #[test]
    fn a_quote_is_found_at_every_place_of_the_tail() {
        for base in [
            [b'x'; PAIR],
            [0; PAIR],
            [0x21; PAIR],
            [0x23; PAIR],
            [0xa2; PAIR],
        ] {
            let j = Junction {
                tail: base,
                len: PAIR,
            };
            assert!(!j.has_quote(), "{base:?}");
            for at in 0..PAIR {
                let mut tail = base;
                tail[at] = b'"';
                assert!(Junction { tail, len: PAIR }.has_quote(), "{tail:?}");
            }
        }
    }
}
