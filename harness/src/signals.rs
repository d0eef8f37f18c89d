//! The signals that end a run, and the exit code each gives (128 + signal
//! number, as shells report them): SIGHUP 129, SIGINT 130, SIGTERM 143.

use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGINT, SIGTERM or SIGHUP and returns the exit code for it.
/// If a handler cannot be installed, that signal keeps its default action.
pub async fn interrupted() -> i32 {
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        Some(()) = recv(&mut int) => 130,
        Some(()) = recv(&mut term) => 143,
        Some(()) = recv(&mut hup) => 129,
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
