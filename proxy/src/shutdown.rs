//! When the server stops: the first SIGTERM or SIGINT drains (open requests
//! and streams get `drain_timeout_secs`), a second one cuts what is still
//! open at once, as it would be cut at the drain timeout: streams end with
//! their SSE error event, waiting requests get a 503, and the process exits
//! within a few seconds. An operator who pressed Ctrl-C, or a script that
//! sent SIGTERM, can say "now" without reaching for SIGKILL, which would
//! end streams with no event and no log line.

use crate::cancel::Cut;

/// The two steps of stopping; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: Cut,
    now: Cut,
}

impl Shutdown {
    /// Nothing asked yet.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Start the drain (the first signal).
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Cut what is still open now (a second signal); drains first if
    /// [`Shutdown::drain`] was not called.
    pub fn cut_now(&self) {
        self.drain.cancel();
        self.now.cancel();
    }

    /// Resolves once the drain was asked for.
    pub async fn drain_asked(&self) {
        self.drain.cancelled().await
    }

    /// Resolves once the cut was asked for.
    pub async fn cut_asked(&self) {
        self.now.cancelled().await
    }

    /// Follow SIGTERM and SIGINT: the first drains, the second cuts. Runs
    /// until the second (spawn it beside the server).
    pub async fn on_signals(self) {
        let mut signals = Signals::new();
        let first = signals.next().await;
        tracing::info!("{first} received");
        self.drain();
        let second = signals.next().await;
        tracing::warn!("{second} received during the drain: cutting open requests and streams now");
        self.cut_now();
    }
}

/// SIGTERM and SIGINT, one after another. Each is one stream kept for the
/// whole run: a signal that comes between two waits is not lost.
struct Signals {
    #[cfg(unix)]
    streams: Option<(Signal, Signal)>,
}

#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};

impl Signals {
    fn new() -> Self {
        Signals {
            #[cfg(unix)]
            streams: signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .ok(),
        }
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((term, int)) = self.streams.as_mut() {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
