//! A seeded xorshift for tests that try many random inputs: the same
//! inputs every run, so a failure names a round that can be replayed.

/// The next 64 bits of a xorshift sequence from `seed` (not zero).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
