//! Which bytes of a JSON text are inside strings, 64 at a time, from the
//! masks of [`crate::window::block`]. A quote after an odd run of
//! backslashes is escaped; every other quote opens or closes a string, so
//! a byte is inside one when an odd number of those come before it (a
//! prefix XOR of their mask). This is the first stage of simdjson
//! (Langdale and Lemire, "Parsing Gigabytes of JSON per Second"), in
//! plain integer arithmetic: no branch per byte, and none per string.

use crate::window::Masks;

/// What one block hands on to the next.
#[derive(Debug, Default, Clone, Copy)]
pub struct InString {
    /// All ones if the last block ended inside a string.
    inside: u64,
    /// 1 if the next block's first byte is escaped.
    next_escaped: u64,
}

/// What of a block lies outside strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outside {
    /// Brackets that are JSON structure, not string text.
    pub brackets: u64,
    /// Backslashes outside any string: never valid JSON.
    pub backslashes: u64,
}

const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;

impl InString {
    /// The next block's masks, in order.
    pub fn step(&mut self, m: Masks) -> Outside {
        let quotes = m.quote & !self.escaped(m.backslash);
        let inside = prefix_xor(quotes) ^ self.inside;
        // The top bit, spread: whether the block ended inside a string.
        self.inside = ((inside as i64) >> 63) as u64;
        Outside {
            brackets: m.bracket & !inside,
            backslashes: m.backslash & !inside,
        }
    }

    /// Whether the blocks so far end inside a string, with no escape
    /// pending: the next quote or backslash is then the next byte that
    /// matters, and a caller may jump to it and go on from there.
    pub fn in_plain_string(&self) -> bool {
        self.inside != 0 && self.next_escaped == 0
    }

    /// Which bytes are escaped (the byte after each odd run of
    /// backslashes, and every second backslash of a run); simdjson's
    /// `json_escape_scanner::next`.
    fn escaped(&mut self, backslash: u64) -> u64 {
        if backslash == 0 {
            return std::mem::take(&mut self.next_escaped);
        }
        let potential = backslash & !self.next_escaped;
        let maybe_escaped = potential << 1;
        let codes = ((maybe_escaped | ODD_BITS).wrapping_sub(potential)) ^ ODD_BITS;
        let escaped = codes ^ (backslash | self.next_escaped);
        self.next_escaped = (codes & backslash) >> 63;
        escaped
    }
}

/// Bit `k` is the XOR of bits `0..=k`.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{block, BLOCK};

    /// Byte at a time, as a reader of JSON text goes: whether each byte
    /// is inside a string (an opening quote is, a closing one is not).
    fn reference(text: &[u8]) -> Vec<bool> {
        let (mut inside, mut in_str, mut escaped) = (Vec::new(), false, false);
        for &c in text {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = !in_str,
                _ => {}
            }
            inside.push(in_str);
        }
        inside
    }

    /// Random texts of quotes, backslashes, brackets and letters (so runs
    /// of backslashes and strings cross block edges): brackets and
    /// backslashes outside strings are those the byte-at-a-time reader
    /// finds.
    #[test]
    fn blocks_agree_with_a_byte_at_a_time_reader() {
        let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
        let alphabet = *b"\\\\\\\"\"[]{}ab";
        for round in 0..3000 {
            let len = 1 + (next() % 300) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let inside = reference(&text);
            let mut state = InString::default();
            for (n, chunk) in text.chunks(BLOCK).enumerate() {
                let mut b = [b' '; BLOCK];
                b[..chunk.len()].copy_from_slice(chunk);
                let out = state.step(block(&b));
                for (k, &c) in chunk.iter().enumerate() {
                    let at = n * BLOCK + k;
                    let bit = |m: u64| m >> k & 1 == 1;
                    let is_bracket = matches!(c, b'[' | b']' | b'{' | b'}');
                    assert_eq!(bit(out.brackets), is_bracket && !inside[at], "{round} {at}");
                    let stray = c == b'\\' && !inside[at];
                    assert_eq!(bit(out.backslashes), stray, "{round} {at}");
                }
            }
        }
    }
}
