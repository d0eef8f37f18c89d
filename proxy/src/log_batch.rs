//! Log lines written to stderr in batches, one `write` per batch, from
//! each event loop's own buffer.
//!
//! Why: every request logs one line. Written at once, that is one system
//! call per request (a seventh of goproxy's), and with two event loops the
//! two threads meet on std's stderr lock (141-210 futex calls per 6,000
//! requests at concurrency 16, each a thread put to sleep and woken; under
//! strace, which slows every write, 0.4 a request). nginx's workers are
//! processes, so they never share a lock; its own answer to the system
//! call is `access_log ... buffer=`.
//!
//! How long a line may wait is bounded: an event loop's buffer is written
//! when the loop is about to sleep (the runtime's park hook, so a quiet
//! loop writes each line as it comes), when it would pass [`MAX_BATCH`]
//! bytes, when its oldest line is [`MAX_AGE`] old (checked on each line
//! and by a timer while serving), and when serving ends. A warning or an
//! error is written at once, after what was buffered before it. Threads
//! that are not event loops (and every thread before [`batched`] runs)
//! write each line at once.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::LazyLock;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use tracing_subscriber::fmt::MakeWriter;

/// Largest batch: a write of up to `PIPE_BUF` bytes to a pipe (docker's
/// log driver reads one) is never interleaved with another thread's.
pub const MAX_BATCH: usize = 4096;
/// Longest a line waits in a busy loop's buffer.
pub const MAX_AGE: Duration = Duration::from_millis(100);

/// The lines one thread has not written yet.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// When the oldest buffered line came.
    since: Option<Instant>,
    /// Whether this thread buffers at all (an event loop while serving).
    on: bool,
}

impl Batch {
    /// Add one whole line, handing `out` what is to be written now (the
    /// buffer is kept and reused: no allocation per line or per batch).
    /// Lines keep their order: what is buffered goes out before an urgent
    /// line (with it, if both fit in one batch), and before a line that
    /// would not fit. Returns whether the line stayed in the buffer.
    pub fn push(
        &mut self,
        line: &[u8],
        urgent: bool,
        now: Instant,
        mut out: impl FnMut(&[u8]),
    ) -> bool {
        // What would not fit beside the line goes out first: no write but
        // a single over-long line passes MAX_BATCH.
        if self.buf.len() + line.len() > MAX_BATCH {
            self.drain(&mut out);
        }
        self.buf.extend_from_slice(line);
        if !self.on || urgent || line.len() > MAX_BATCH {
            self.drain(out);
            return false;
        }
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= MAX_AGE {
            self.drain(out);
            return false;
        }
        true
    }

    /// Hand `out` everything buffered, if anything, and empty the buffer.
    pub fn drain(&mut self, mut out: impl FnMut(&[u8])) {
        self.since = None;
        if !self.buf.is_empty() {
            out(&self.buf);
            self.buf.clear();
        }
    }

    /// Whether the oldest buffered line is `MAX_AGE` old.
    pub fn is_due(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|s| now.saturating_duration_since(s) >= MAX_AGE)
    }
}

thread_local! {
    static BATCH: RefCell<Batch> = RefCell::new(Batch::default());
    /// The age timer's waker while it waits for a first line.
    static TIMER: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// A duplicate of stderr's descriptor: writes through `&File` take no
/// lock (each is one `write`, whole lines only), where `std::io::Stderr`
/// serialises every thread on one mutex.
static STDERR: LazyLock<Option<File>> = LazyLock::new(|| {
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from)
});

fn write_out(bytes: &[u8]) {
    let _ = match STDERR.as_ref() {
        Some(mut f) => f.write_all(bytes),
        None => std::io::stderr().write_all(bytes),
    };
}

/// Write this thread's buffered lines now (the park hook and the age timer
/// call it; a no-op on an empty buffer).
pub fn flush() {
    BATCH.with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.drain(write_out);
        }
    });
}

/// Buffers this thread's lines until dropped, then writes them.
struct On;

impl On {
    fn start() -> On {
        BATCH.with(|b| b.borrow_mut().on = true);
        On
    }
}

impl Drop for On {
    fn drop(&mut self) {
        BATCH.with(|b| b.borrow_mut().on = false);
        flush();
    }
}

/// Run `serve` with this thread's lines batched (see the module docs):
/// a timer writes lines [`MAX_AGE`] old while `serve` keeps the loop
/// busy, and what is left is written when `serve` ends or is dropped.
/// The runtime should also call [`flush`] before it parks.
pub async fn batched<F: Future>(serve: F) -> F::Output {
    let _on = On::start();
    tokio::select! {
        biased;
        out = serve => out,
        never = age_timer() => match never {},
    }
}

/// Writes the buffer when its oldest line is `MAX_AGE` old. It sleeps
/// without a timer while the buffer is empty (an idle loop is not woken;
/// an interval here cost every loop ten wakeups a second, each three
/// system calls), and a line entering an empty buffer wakes it.
async fn age_timer() -> std::convert::Infallible {
    loop {
        let oldest = std::future::poll_fn(|cx| match BATCH.with(|b| b.borrow().since) {
            Some(since) => Poll::Ready(since),
            None => {
                TIMER.with(|t| t.set(Some(cx.waker().clone())));
                Poll::Pending
            }
        })
        .await;
        tokio::time::sleep_until(oldest + MAX_AGE).await;
        if BATCH.with(|b| b.borrow().is_due(Instant::now())) {
            flush();
        }
    }
}

/// Wake the age timer if it sleeps on an empty buffer.
fn wake_age_timer() {
    if let Some(w) = TIMER.with(Cell::take) {
        w.wake();
    }
}

/// Write a panicking thread's buffered lines before the panic message (a
/// release build aborts on panic, so nothing would unwind to flush them).
pub fn flush_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

/// The subscriber's writer: one [`Line`] per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

/// One event's line on its way into the thread's batch.
#[derive(Debug)]
pub struct Line {
    urgent: bool,
}

impl Line {
    /// A line at info level (not urgent: it waits for its batch).
    pub fn info() -> Line {
        Line { urgent: false }
    }
}

impl Write for Line {
    /// tracing-subscriber formats an event whole, then writes it with one
    /// `write_all`: `buf` is the whole line.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let kept = BATCH.with(|b| match b.try_borrow_mut() {
            Ok(mut b) => b.push(buf, self.urgent, now, write_out),
            // Only if logging re-entered itself: write it alone.
            Err(_) => {
                write_out(buf);
                false
            }
        });
        if kept {
            wake_age_timer();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one push hands out to be written, write by write.
    fn push(b: &mut Batch, line: &[u8], urgent: bool, now: Instant) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        let kept = b.push(line, urgent, now, |w| writes.push(w.to_vec()));
        // Kept: the line ends the buffer; not kept: it went out with it.
        assert_eq!(kept, b.buf.ends_with(line) && !b.buf.is_empty());
        assert!(kept || b.buf.is_empty());
        writes
    }

    fn taken(b: &mut Batch) -> Vec<Vec<u8>> {
        let mut writes = Vec::new();
        b.drain(|w| writes.push(w.to_vec()));
        writes
    }

    fn on() -> Batch {
        Batch {
            on: true,
            ..Batch::default()
        }
    }

    /// Off (not an event loop), every line goes out at once.
    #[test]
    fn off_writes_each_line() {
        let mut b = Batch::default();
        let now = Instant::now();
        assert_eq!(push(&mut b, b"a\n", false, now), [b"a\n"]);
        assert!(taken(&mut b).is_empty());
    }

    /// On, lines wait; an urgent line takes the buffered ones with it, in
    /// order.
    #[test]
    fn urgent_line_goes_out_after_the_buffered_ones() {
        let mut b = on();
        let now = Instant::now();
        assert!(push(&mut b, b"info 1\n", false, now).is_empty());
        assert!(push(&mut b, b"info 2\n", false, now).is_empty());
        assert_eq!(
            push(&mut b, b"warn\n", true, now),
            [b"info 1\ninfo 2\nwarn\n"]
        );
        assert!(taken(&mut b).is_empty());
    }

    /// No batch passes MAX_BATCH: the line that would not fit starts the
    /// next one; a line longer than that goes out alone, after the buffer.
    #[test]
    fn batches_stay_within_the_bound() {
        let mut b = on();
        let now = Instant::now();
        let line = vec![b'x'; 1000];
        let mut written = Vec::new();
        for _ in 0..10 {
            for out in push(&mut b, &line, false, now) {
                assert!(out.len() <= MAX_BATCH);
                written.push(out.len());
            }
        }
        assert_eq!(written, [4000, 4000]);
        let long = vec![b'y'; MAX_BATCH + 1];
        let lens = |w: Vec<Vec<u8>>| w.iter().map(Vec::len).collect::<Vec<_>>();
        let out = lens(push(&mut b, &long, false, now));
        assert_eq!(
            out,
            [2000, MAX_BATCH + 1],
            "the buffer, then the long line alone"
        );
        // An urgent line goes out with the buffer only if both fit.
        push(&mut b, &vec![b'z'; 3000], false, now);
        let out = lens(push(&mut b, &vec![b'w'; 2000], true, now));
        assert_eq!(out, [3000, 2000]);
        push(&mut b, &vec![b'z'; 1000], false, now);
        let out = lens(push(&mut b, &vec![b'w'; 2000], true, now));
        assert_eq!(out, [3000]);
    }

    /// A line that finds the oldest one MAX_AGE old takes the batch out.
    #[test]
    fn old_lines_go_out_with_the_next() {
        let mut b = on();
        let t0 = Instant::now();
        assert!(push(&mut b, b"a\n", false, t0).is_empty());
        assert!(!b.is_due(t0 + MAX_AGE / 2));
        assert!(push(&mut b, b"b\n", false, t0 + MAX_AGE / 2).is_empty());
        assert!(b.is_due(t0 + MAX_AGE));
        assert_eq!(push(&mut b, b"c\n", false, t0 + MAX_AGE), [b"a\nb\nc\n"]);
        assert!(!b.is_due(t0 + MAX_AGE * 3), "empty again");
    }

    /// While `batched` serves, lines wait in the thread's buffer; the
    /// age timer writes them once due, and waits unarmed while idle; what is left is written at the end.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn batched_buffers_while_serving_and_writes_at_the_end() {
        let buffered = || BATCH.with(|b| b.borrow().buf.len());
        batched(async {
            let mut line = Line { urgent: false };
            line.write_all(b"log_batch test: a line the timer writes\n")
                .unwrap();
            assert!(buffered() > 0, "buffered");
            tokio::time::sleep(MAX_AGE * 2).await;
            assert_eq!(buffered(), 0, "the age timer wrote it");
            // Idle (nothing buffered), the timer waits for a line, unarmed.
            tokio::time::sleep(MAX_AGE * 10).await;
            let waiting = TIMER.with(|t| {
                let w = t.take();
                let waiting = w.is_some();
                t.set(w);
                waiting
            });
            assert!(waiting, "the timer waits for a line");
            line.write_all(b"log_batch test: a line that wakes the timer\n")
                .unwrap();
            tokio::time::sleep(MAX_AGE + Duration::from_millis(1)).await;
            assert_eq!(buffered(), 0, "woken, the timer wrote it on time");
            line.write_all(b"log_batch test: a line written at the end\n")
                .unwrap();
            assert!(buffered() > 0);
        })
        .await;
        assert_eq!(buffered(), 0, "written at the end");
        assert!(!BATCH.with(|b| b.borrow().on), "off again");
    }
}
