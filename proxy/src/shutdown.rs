//! When the server stops: the first SIGTERM or SIGINT (or SIGQUIT, SIGHUP)
//! drains (open requests and streams get `drain_timeout_secs`), a second
//! one cuts what is still open at once, as it would be cut at the drain
//! timeout: streams end with their SSE error event, waiting requests get a
//! 503, and the process exits within a few seconds. An operator who pressed Ctrl-C, or a script that
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

    /// Follow SIGTERM, SIGINT, SIGQUIT and SIGHUP: the first drains, the
    /// second cuts; other signals whose default would end goproxy are
    /// logged and ignored. Runs until the second (spawn it beside the
    /// server).
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

/// The signals goproxy takes, each one stream kept for the whole run (a
/// signal that comes between two waits is not lost): SIGTERM, SIGINT,
/// SIGQUIT (nginx's graceful stop) and SIGHUP (a lost terminal; nginx's
/// reload, which goproxy does not have: under a restart policy the drain
/// and exit reload it) stop; SIGUSR1, SIGUSR2 and every other signal whose
/// default action ends or stops a process (SIGALRM, SIGIO, SIGXFSZ,
/// SIGTTOU...) are logged and ignored: their default killed goproxy on the
/// spot, streams and all, or stopped it deaf to SIGTERM.
struct Signals {
    #[cfg(unix)]
    streams: Vec<(Signal, &'static str, bool)>,
}

#[cfg(unix)]
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The other signals whose default action ends or stops the process
/// (Linux numbers; tokio names only the common ones). SIGTRAP and SIGSYS
/// are left alone: they report faults of the process's own making.
#[cfg(unix)]
fn linux_only() -> Vec<(SignalKind, &'static str, bool)> {
    if !cfg!(target_os = "linux") {
        return Vec::new();
    }
    [
        (16, "SIGSTKFLT"),
        (21, "SIGTTIN"),
        (22, "SIGTTOU"),
        (24, "SIGXCPU"),
        (25, "SIGXFSZ"),
        (26, "SIGVTALRM"),
        (27, "SIGPROF"),
        (30, "SIGPWR"),
    ]
    .into_iter()
    .map(|(n, name)| (SignalKind::from_raw(n), name, false))
    .collect()
}

impl Signals {
    fn new() -> Self {
        Signals {
            #[cfg(unix)]
            streams: [
                (SignalKind::terminate(), "SIGTERM", true),
                (SignalKind::interrupt(), "SIGINT", true),
                (SignalKind::quit(), "SIGQUIT", true),
                (SignalKind::hangup(), "SIGHUP", true),
                (SignalKind::user_defined1(), "SIGUSR1", false),
                (SignalKind::user_defined2(), "SIGUSR2", false),
                (SignalKind::alarm(), "SIGALRM", false),
                (SignalKind::io(), "SIGIO", false),
            ]
            .into_iter()
            .chain(linux_only())
            .filter_map(|(kind, name, stops)| Some((signal(kind).ok()?, name, stops)))
            .collect(),
        }
    }

    /// The next signal that stops goproxy, by name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if !self.streams.is_empty() {
            loop {
                let (name, stops) = std::future::poll_fn(|cx| {
                    for (s, name, stops) in &mut self.streams {
                        if s.poll_recv(cx).is_ready() {
                            return std::task::Poll::Ready((*name, *stops));
                        }
                    }
                    std::task::Poll::Pending
                })
                .await;
                if stops {
                    return name;
                }
                tracing::info!("{name} received and ignored (goproxy logs to stderr and has no reload: restart it to load a new config)");
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
