//! Logging setup: tracing to stderr, as text (see [`crate::log_line`]) or
//! JSON lines.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber. `RUST_LOG` filters (default `info`).
/// Lines go to stderr, batched per event loop ([`crate::log_batch`]).
pub fn init(format: LogFormat) {
    crate::log_batch::flush_on_panic();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::log_batch::Stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => {
            let installed = builder
                .event_format(crate::log_line::Lines::default())
                .fmt_fields(crate::log_line::LineFields)
                .try_init();
            if installed.is_ok() && !ansi {
                crate::direct_line::enable();
            }
            installed
        }
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
