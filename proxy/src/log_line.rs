//! The text log line, written without most of `core::fmt`: the same bytes
//! as tracing-subscriber's default (`Full`) format without colours, e.g.
//!
//! ```text
//! 2026-11-27T10:51:37.720033Z  INFO proxy::stream: stream finished request_id=2 outcome="complete"
//! ```
//!
//! The default format paints every field name and `=` through a style
//! (a no-op without colours, but a nested `write!` each) and formats every
//! integer through `Debug`; that was most of the cost of the one line per
//! request. Here names and plain strings are copied, integers go through
//! `itoa`, and only floats and `%`/`?` values use `fmt`. Anything unusual
//! (colours on a terminal, events bridged from the `log` crate, events
//! inside a span) is left to the default format.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format: [`Lines::format_event`] writes the line.
#[derive(Debug, Default)]
pub struct Lines {
    fallback: Format<Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let plain =
            !w.has_ansi_escapes() && meta.target() != "log" && ctx.lookup_current().is_none();
        if !plain {
            return self.fallback.format_event(ctx, w, event);
        }
        if timestamp(&mut w).is_err() {
            w.write_str("<unknown time>")?;
        }
        w.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        w.write_str(meta.target())?;
        w.write_str(": ")?;
        ctx.format_fields(w.by_ref(), event)?;
        w.write_char('\n')
    }
}

/// Now, as tracing-subscriber's `SystemTime` writes it
/// (`2026-11-27T10:51:37.720033Z`), by [`crate::log_time`]; an instant it
/// cannot write (before 1970, from the year 10000 on) is left to
/// tracing-subscriber's own formatter.
fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    match crate::log_time::write(std::time::SystemTime::now(), w) {
        Some(written) => written,
        None => SystemTime.format_time(w),
    }
}

/// [`timestamp`] into a string (the direct line's; a `String` never
/// refuses a write).
pub(crate) fn timestamp_into(line: &mut String) {
    let _ = timestamp(&mut Writer::new(line));
}

/// The field format (also used for span fields by the fallback).
#[derive(Debug, Default)]
pub struct LineFields;

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Fields {
            line: String::with_capacity(LINE_CAPACITY),
            first: true,
        };
        fields.record(&mut v);
        writer.write_str(&v.line)
    }
}

/// Room for a request's info line without growing.
pub(crate) const LINE_CAPACITY: usize = 512;

/// Writes `message name=value ...` as the default visitor does: the
/// message bare, strings quoted and escaped (`Debug`), the rest by `Debug`.
/// Into a buffer of its own, handed to the writer in one call: the
/// writer is a `dyn fmt::Write`, and a line is ~50 pieces.
struct Fields {
    line: String,
    first: bool,
}

impl Fields {
    /// The separator and `name=`; false for fields the line leaves out.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }

    /// `value` as `Debug` writes it.
    fn float(&mut self, value: f64) {
        push_float(&mut self.line, value);
    }

    /// `value` by `Debug`.
    fn debug(&mut self, value: &dyn fmt::Debug) {
        push_debug(&mut self.line, value);
    }
}

/// `value` by `Debug`. A `String` never refuses a write; a `Debug` impl
/// that reports an error leaves what it wrote, and the line is still
/// logged (not dropped).
fn push_debug(line: &mut String, value: &dyn fmt::Debug) {
    let _ = fmt::Write::write_fmt(line, format_args!("{value:?}"));
}

/// `value` as `Debug` writes it.
pub(crate) fn push_float(line: &mut String, value: f64) {
    if let Some(m) = thousandths(value) {
        push_thousandths(line, m);
    } else if ryu_matches_debug(value) {
        line.push_str(ryu::Buffer::new().format_finite(value));
    } else {
        push_debug(line, &value);
    }
}

/// A string field's value as `Debug` writes it: quoted, escaped.
pub(crate) fn push_quoted(line: &mut String, value: &str) {
    if plain(value) {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        push_debug(line, &value);
    }
}

/// Whether `Debug` would print `s` as `"s"` (nothing to escape).
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            self.line.push_str(value);
        } else {
            push_quoted(&mut self.line, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    /// Through `ryu` where it writes what `Debug` does (a request line has
    /// two floats, and `Debug` took 800 instructions each).
    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.start(field) {
            self.float(value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.debug(value);
        }
    }
}

/// A duration in milliseconds to the microsecond, for log lines: `0.488`
/// where the nanoseconds gave `0.48840600000000006` (and a longer float
/// to format, per request).
pub fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `value` as a whole number of thousandths `m`, if it is exactly the
/// double nearest `m / 1000` and below 2^43 (a latency from [`millis`] is).
/// Then `Debug`, which writes the shortest decimal that reads back as
/// `value`, writes `m / 1000` with at most three decimals: a double that
/// small is less than 0.001 from its neighbours, so no other decimal of
/// at most three decimals reads back as it. Writing that by hand costs a
/// tenth of `ryu` (~600 instructions a request, the latency of its line).
fn thousandths(value: f64) -> Option<u64> {
    if !(value.is_sign_positive() && value < 8_796_093_022_208.0) {
        return None;
    }
    let m = (value * 1000.0).round();
    (m / 1000.0 == value).then_some(m as u64)
}

/// `m` thousandths as `Debug` writes them: `12.5`, `0.001`, `3.0`.
fn push_thousandths(line: &mut String, m: u64) {
    let (whole, frac) = (m / 1000, m % 1000);
    line.push_str(itoa::Buffer::new().format(whole));
    line.push('.');
    if frac == 0 {
        line.push('0');
        return;
    }
    let digits = [frac / 100, frac / 10 % 10, frac % 10];
    let used = if frac % 10 != 0 {
        3
    } else if frac % 100 != 0 {
        2
    } else {
        1
    };
    for d in &digits[..used] {
        line.push(char::from(b'0' + *d as u8));
    }
}

/// Whether `ryu` writes `value` as `Debug` does: finite, and zero or in
/// Debug's plain-decimal range (outside it Debug writes `1e16`, `1e-5`).
fn ryu_matches_debug(value: f64) -> bool {
    let a = value.abs();
    value == 0.0 || (1e-4..1e16).contains(&a)
}

/// A writer that keeps what a test subscriber wrote.
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    pub struct Buf(pub Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::Buf;
    use super::*;

    fn events() {
        let peer: std::net::SocketAddr = "127.0.0.1:4711".parse().unwrap();
        tracing::info!(
            request_id = 7u64,
            delta = -3i64,
            %peer,
            model = "gpt \"4\"\n",
            route = "/v1/messages",
            ok = true,
            latency_ms = 1.25,
            r#type = "x",
            first_chunk_ms = ?Some(3u64),
            "stream finished"
        );
        tracing::warn!(endpoint = %"e", "upstream request failed: {}", 42);
        tracing::error!("boom");
        tracing::debug!(n = 1u64, "quiet");
        tracing::info!(only = 1u64);
        let span = tracing::info_span!("conn", id = 3u64);
        span.in_scope(|| tracing::info!(x = "y", "inside"));
    }

    /// Floats are written as `Debug` writes them, in ryu's range and out.
    #[test]
    fn floats_as_debug_writes_them() {
        let values = [
            0.0,
            -0.0,
            1.25,
            0.1 + 0.2,
            1e-4,
            9.99e-5,
            1e-5,
            123.456,
            1e15,
            9.999e15,
            1e16,
            1e20,
            -2.5e-3,
            1.0,
            3.0e10,
            0.000123,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ];
        for v in values {
            let mut f = Fields {
                line: String::new(),
                first: true,
            };
            f.float(v);
            assert_eq!(f.line, format!("{v:?}"), "{v:e}");
        }
    }

    /// Every latency to the microsecond, and whole thousandths up to the
    /// bound, are written as `Debug` writes them; other values are left
    /// to `ryu` or `Debug`.
    #[test]
    fn thousandths_are_written_as_debug_writes_them() {
        let check = |v: f64| {
            let mut line = String::new();
            push_float(&mut line, v);
            assert_eq!(line, format!("{v:?}"), "{v:e}");
        };
        for m in 0..2_000_000u64 {
            check(m as f64 / 1000.0);
        }
        // Larger ones, by a fixed generator (every run the same).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = x % 8_796_093_022_208_000;
            check(m as f64 / 1000.0);
            check(f64::from_bits(x >> 2));
        }
        for v in [
            8_796_093_022_208.0,
            1e13,
            0.0005,
            -0.0,
            -1.5,
            1e-7,
            0.1 + 0.2,
        ] {
            check(v);
        }
        assert_eq!(thousandths(-0.0), None);
        assert_eq!(thousandths(0.0005), None);
        assert_eq!(thousandths(12.345), Some(12_345));
    }

    /// Latencies are logged to the microsecond.
    #[test]
    fn millis_are_to_the_microsecond() {
        use std::time::Duration;
        let cases = [
            (488_406, "0.488"),
            (1_999, "0.001"),
            (12_345_678_901, "12345.678"),
            (0, "0.0"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format!("{:?}", millis(Duration::from_nanos(nanos))), text);
        }
    }

    /// Everything after the timestamp, per line.
    fn lines(custom: bool) -> Vec<String> {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .with_max_level(Level::DEBUG);
        if custom {
            let sub = builder
                .event_format(Lines::default())
                .fmt_fields(LineFields)
                .finish();
            tracing::subscriber::with_default(sub, events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| l.split_once(' ').expect("a timestamp").1.to_string())
            .collect()
    }

    /// The timestamp has tracing-subscriber's shape and the same second
    /// (taken twice, so retried if a second ended in between).
    #[test]
    fn timestamp_matches_tracing_subscribers() {
        let stamp = |ours: bool| {
            let mut s = String::new();
            let mut w = Writer::new(&mut s);
            if ours {
                timestamp(&mut w).unwrap();
            } else {
                SystemTime.format_time(&mut w).unwrap();
            }
            s
        };
        for _ in 0..5 {
            let (ours, theirs) = (stamp(true), stamp(false));
            assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            if ours[..20] == theirs[..20] {
                return;
            }
        }
        panic!("the timestamps never agreed on the second");
    }

    /// The same bytes as tracing-subscriber's default text format.
    #[test]
    fn lines_match_the_default_format() {
        let (ours, theirs) = (lines(true), lines(false));
        assert_eq!(ours.len(), 6, "{ours:#?}");
        assert_eq!(ours, theirs);
    }
}
