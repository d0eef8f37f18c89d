//! Which of 16 (or 64) bytes are JSON syntax, as a bit mask: one SSE2
//! compare per byte class on x86_64 (through `safe_arch`, so no `unsafe`
//! here), a plain loop elsewhere. [`crate::toplevel`] steps through a body
//! a window or a block at a time instead of a byte at a time.

/// Bytes per window.
pub const WIDTH: usize = 16;

/// Bytes per block of [`block`].
pub const BLOCK: usize = 64;

/// The bytes of a block that matter to JSON's structure: bit `k` for byte
/// `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masks {
    /// `"`.
    pub quote: u64,
    /// `\`.
    pub backslash: u64,
    /// `{`, `}`, `[` and `]`.
    pub bracket: u64,
}

/// The quotes, backslashes and brackets of 64 bytes.
pub fn block(b: &[u8; BLOCK]) -> Masks {
    imp::block(b)
}

/// Bit `k` is set if `w[k]` is `"` or `\`: what matters inside a string.
pub fn quote_or_escape(w: &[u8; WIDTH]) -> u32 {
    imp::quote_or_escape(w)
}

/// From a quote to the quote that closes a five-letter word after it.
pub const PAIR: usize = 6;

/// Bit `k` is set if `w[k]` and `w[k + PAIR]` are both `"`: where a
/// five-letter word between quotes (`"usage"`) may start.
pub fn quote_pairs(w: &[u8; WIDTH + PAIR]) -> u32 {
    imp::quote_pairs(w)
}

/// `{`, `}`, `[` or `]`.
pub fn is_bracket(c: u8) -> bool {
    matches!(c, b'{' | b'}' | b'[' | b']')
}

/// `"` or `\`: the byte class of [`quote_or_escape`], one byte at a time.
pub fn is_quote_or_escape(c: u8) -> bool {
    matches!(c, b'"' | b'\\')
}

/// The window of `b` at `at`, if 16 bytes remain there.
pub fn at(b: &[u8], at: usize) -> Option<&[u8; WIDTH]> {
    b.get(at..at + WIDTH)?.try_into().ok()
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, load_unaligned_m128i, m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };

    fn eq(v: m128i, c: u8) -> m128i {
        cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(c as i8))
    }

    pub fn block(b: &[u8; 64]) -> super::Masks {
        let mut m = super::Masks {
            quote: 0,
            backslash: 0,
            bracket: 0,
        };
        for (k, w) in b.chunks_exact(16).enumerate() {
            let v = load_unaligned_m128i(w.try_into().expect("16 bytes"));
            // `[` | 0x20 is `{` and `]` | 0x20 is `}` (and no other byte
            // maps to either), so two compares find all four brackets.
            let folded = bitor_m128i(v, set_splat_i8_m128i(0x20));
            let brackets = bitor_m128i(eq(folded, b'{'), eq(folded, b'}'));
            let bits = |x: m128i| u64::from(move_mask_i8_m128i(x) as u16) << (16 * k);
            m.quote |= bits(eq(v, b'"'));
            m.backslash |= bits(eq(v, b'\\'));
            m.bracket |= bits(brackets);
        }
        m
    }

    pub fn quote_or_escape(w: &[u8; 16]) -> u32 {
        let v = load_unaligned_m128i(w);
        move_mask_i8_m128i(bitor_m128i(eq(v, b'"'), eq(v, b'\\'))) as u32
    }

    pub fn quote_pairs(w: &[u8; 16 + super::PAIR]) -> u32 {
        let at = |k: usize| -> &[u8; 16] { w[k..k + 16].try_into().expect("16 bytes") };
        let first = eq(load_unaligned_m128i(at(0)), b'"');
        let second = eq(load_unaligned_m128i(at(super::PAIR)), b'"');
        move_mask_i8_m128i(bitand_m128i(first, second)) as u32
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod imp {
    use super::{is_bracket, is_quote_or_escape, Masks};

    fn mask(w: &[u8], hit: impl Fn(u8) -> bool) -> u64 {
        w.iter()
            .enumerate()
            .fold(0, |m, (k, &c)| m | (u64::from(hit(c)) << k))
    }

    pub fn block(b: &[u8; 64]) -> Masks {
        Masks {
            quote: mask(b, |c| c == b'"'),
            backslash: mask(b, |c| c == b'\\'),
            bracket: mask(b, is_bracket),
        }
    }

    pub fn quote_or_escape(w: &[u8; 16]) -> u32 {
        mask(w, is_quote_or_escape) as u32
    }

    pub fn quote_pairs(w: &[u8; 16 + super::PAIR]) -> u32 {
        (0..16).fold(0, |m, k| {
            m | (u32::from(w[k] == b'"' && w[k + super::PAIR] == b'"') << k)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, in every lane, against the plain definition.
    #[test]
    fn masks_match_the_byte_classes() {
        for c in 0..=255u8 {
            for lane in 0..WIDTH {
                let mut w = [b'a'; WIDTH];
                w[lane] = c;
                let q = matches!(c, b'"' | b'\\');
                assert_eq!(quote_or_escape(&w), u32::from(q) << lane, "{c} at {lane}");
                let mut p = [b'"'; WIDTH + PAIR];
                p[lane] = c;
                let want = (0..WIDTH).fold(0, |m, k| {
                    m | (u32::from(p[k] == b'"' && p[k + PAIR] == b'"') << k)
                });
                assert_eq!(quote_pairs(&p), want, "{c} at {lane}");
            }
            for lane in 0..BLOCK {
                let mut b = [b'a'; BLOCK];
                b[lane] = c;
                let bit = |hit: bool| u64::from(hit) << lane;
                let want = Masks {
                    quote: bit(c == b'"'),
                    backslash: bit(c == b'\\'),
                    bracket: bit(matches!(c, b'{' | b'}' | b'[' | b']')),
                };
                assert_eq!(block(&b), want, "{c} at {lane}");
            }
        }
    }
}
