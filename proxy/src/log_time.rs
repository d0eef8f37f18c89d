//! The log line's timestamp, `2026-11-27T10:51:37.720033Z` (what
//! tracing-subscriber's `SystemTime` writes), with the part up to the
//! second formatted once per second per thread: a line then costs a clock
//! read, six digits and a UTF-8 check (~160 instructions, measured with
//! `bench/callgrind`) instead of a calendar computation through
//! `core::fmt` (~550), the way nginx caches its time strings.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-27T10:51:37`: the part of a timestamp up to the second.
const PREFIX: usize = 19;
/// 10000-01-01T00:00:00Z: humantime formats instants before it.
const HUMANTIME_END: u64 = 253_402_300_800;

thread_local! {
    /// The second last formatted on this thread, and its prefix.
    static CACHED: Cell<(u64, [u8; PREFIX])> = const { Cell::new((u64::MAX, [0; PREFIX])) };
}

/// Write `now` as tracing-subscriber's `SystemTime` does; `None` (nothing
/// written) for an instant humantime cannot format (before 1970, from the
/// year 10000 on), which the caller then leaves to tracing-subscriber.
pub fn write(now: SystemTime, w: &mut impl fmt::Write) -> Option<fmt::Result> {
    let since = now.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    if secs >= HUMANTIME_END {
        return None;
    }
    let mut out = [0u8; PREFIX + 8];
    out[..PREFIX].copy_from_slice(&prefix(secs, now));
    out[PREFIX] = b'.';
    let mut micros = since.subsec_micros();
    for digit in out[PREFIX + 1..PREFIX + 7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out[PREFIX + 7] = b'Z';
    // ASCII digits and punctuation only: the check cannot fail.
    Some(
        std::str::from_utf8(&out)
            .map_err(|_| fmt::Error)
            .and_then(|text| w.write_str(text)),
    )
}

/// `secs`' prefix, from this thread's cache or formatted anew.
fn prefix(secs: u64, now: SystemTime) -> [u8; PREFIX] {
    let (cached_secs, cached) = CACHED.get();
    if cached_secs == secs {
        return cached;
    }
    let text = humantime::format_rfc3339_seconds(now).to_string();
    let mut prefix = [0u8; PREFIX];
    prefix.copy_from_slice(&text.as_bytes()[..PREFIX]);
    CACHED.set((secs, prefix));
    prefix
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ours(t: SystemTime) -> String {
        let mut s = String::new();
        write(t, &mut s).unwrap().unwrap();
        s
    }

    /// The same text as humantime's own micro-second format, across second,
    /// day and year boundaries and with the cache warm or cold.
    #[test]
    fn matches_humantime_across_boundaries() {
        let starts = [
            0,
            59,
            86_399,
            1_798_761_599,
            1_795_000_000,
            HUMANTIME_END - 3,
        ];
        for start in starts {
            for micros in [0, 1, 999_999] {
                for step in 0..3 {
                    let t = UNIX_EPOCH + Duration::new(start + step, micros * 1000);
                    let want = humantime::format_rfc3339_micros(t).to_string();
                    assert_eq!(ours(t), want);
                    assert_eq!(ours(t), want, "cached");
                }
            }
        }
    }

    #[test]
    fn out_of_range_instants_are_refused() {
        let mut s = String::new();
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(write(before, &mut s), None);
        let after = UNIX_EPOCH + Duration::from_secs(HUMANTIME_END);
        assert_eq!(write(after, &mut s), None);
        assert!(s.is_empty());
    }
}
