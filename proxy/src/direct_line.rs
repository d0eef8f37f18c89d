//! The info line of a relayed request, written straight into the event
//! loop's log batch: the same bytes as [`crate::log_line::Lines`] writes
//! for the `tracing::info!` it stands for, without tracing's dispatch, its
//! per-field visitor calls, and `core::fmt` for every `%` field (together
//! ~4.5k of a small request's ~48k instructions, `bench/callgrind`).
//!
//! Only when the text format writes plain lines (set by
//! [`crate::telemetry::init`]; JSON, colours and in-process subscribers
//! keep the macro) and the line's level and target are enabled; the caller
//! falls back to the macro when [`DirectLine::info`] says no.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether lines may be written here (plain text lines to the batch).
static ON: AtomicBool = AtomicBool::new(false);

/// Let [`DirectLine::info`] write lines (the text format without colours
/// was installed).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
}

/// One line being written.
#[derive(Debug)]
pub struct DirectLine {
    line: String,
}

impl DirectLine {
    /// An `INFO` line of `target` saying `message`, if lines are written
    /// here; `enabled` is the call site's `tracing::enabled!`, so
    /// `RUST_LOG` filters the line as it would the macro's.
    pub fn info(target: &str, message: &str, enabled: impl FnOnce() -> bool) -> Option<Self> {
        if !ON.load(Ordering::Relaxed) || !enabled() {
            return None;
        }
        let mut line = String::with_capacity(crate::log_line::LINE_CAPACITY);
        crate::log_line::timestamp_into(&mut line);
        line.push_str("  INFO ");
        line.push_str(target);
        line.push_str(": ");
        line.push_str(message);
        Some(DirectLine { line })
    }

    fn name(&mut self, name: &str) {
        self.line.push(' ');
        self.line.push_str(name);
        self.line.push('=');
    }

    /// A `%value` field: the text as it is.
    pub fn raw(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        self.line.push_str(value);
        self
    }

    /// A string field: quoted, escaped as `Debug` does.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        crate::log_line::push_quoted(&mut self.line, value);
        self
    }

    pub fn u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.name(name);
        self.line.push_str(itoa::Buffer::new().format(value));
        self
    }

    /// A field left out when `None`, as tracing leaves out a `None`.
    pub fn opt_u64(&mut self, name: &str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.u64(name, v);
        }
        self
    }

    /// A `%value` field left out when `None`.
    pub fn opt_raw(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.raw(name, v);
        }
        self
    }

    /// A string field left out when `None`.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(name, v);
        }
        self
    }

    pub fn f64(&mut self, name: &str, value: f64) -> &mut Self {
        self.name(name);
        crate::log_line::push_float(&mut self.line, value);
        self
    }

    /// Into the batch, as an info line (not urgent).
    pub fn send(mut self) {
        self.line.push('\n');
        let _ = crate::log_batch::Line::info().write_all(self.line.as_bytes());
    }
}

#[cfg(test)]
impl DirectLine {
    /// The line so far (tests compare it with the macro's).
    pub fn text(&self) -> &str {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_line::capture::Buf;

    /// The direct line is the macro's line, with
    /// every kind of field it writes.
    #[test]
    fn direct_lines_are_the_macros_lines() {
        let buf = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .event_format(crate::log_line::Lines::default())
            .fmt_fields(crate::log_line::LineFields)
            .finish();
        let outcome = "a \"b\"\n";
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                request_id = 7u64,
                peer = %"127.0.0.1:4711",
                route = "/v1/chat/completions",
                latency_ms = 0.25,
                outcome,
                first_chunk_ms = None::<u64>,
                duration_ms = Some(12u64),
                read_on = None::<&str>,
                read_end = Some("complete"),
                unset = None::<bool>,
                flag = Some(true),
                cost = 1e-7,
                "completion"
            )
        });
        enable();
        let target = module_path!();
        let mut d = DirectLine::info(target, "completion", || true).unwrap();
        d.u64("request_id", 7)
            .raw("peer", "127.0.0.1:4711")
            .str("route", "/v1/chat/completions")
            .f64("latency_ms", 0.25)
            .str("outcome", outcome)
            .opt_u64("first_chunk_ms", None)
            .opt_u64("duration_ms", Some(12))
            .opt_str("read_on", None)
            .opt_str("read_end", Some("complete"))
            .opt_raw("unset", None)
            .opt_raw("flag", Some("true"))
            .f64("cost", 1e-7);
        let theirs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let after_stamp = |l: &str| l.split_once(' ').unwrap().1.trim_end().to_string();
        assert_eq!(after_stamp(d.text()), after_stamp(&theirs));
        assert!(
            theirs.contains(
                r#"outcome="a \"b\"\n" duration_ms=12 read_end="complete" flag=true cost=1e-7"#
            ),
            "{theirs}"
        );
    }
}
