//! Waiting for the nginx workers of a previous configuration to exit.
//!
//! `nginx -s reload` only signals the master; the old workers then keep
//! serving the client connections they hold (an SSE stream, an HTTP/2
//! connection that carries new requests for a while) with the OLD upstream
//! list. Stopping the old goproxy before they exit turns those requests into
//! 502s (measured: 3 of 160 requests), and cutting them early breaks the
//! streams. So the switch waits, as long as a stream may last (nginx's
//! `proxy_read_timeout` is 300 s between two reads), and says while it
//! waits how many connections are still open and for how long.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{Backend, StackError};
use crate::poll::{ms_since, poll_until, Attempt, PollError};

/// How often progress is printed while old workers still run.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Waits until every worker in `old` has exited, printing progress (the
/// client connections they still hold, how long since the reload) unless
/// `quiet`. Fails after `deadline` naming the workers left.
pub async fn wait_gone(
    backend: &dyn Backend,
    old: &[String],
    deadline: Duration,
    quiet: bool,
) -> Result<String, StackError> {
    let t0 = Instant::now();
    // Atomics, not Cells: the switch's future may be sent between threads.
    let next_progress_ms = AtomicU64::new(PROGRESS_EVERY.as_millis() as u64);
    let most_open = AtomicUsize::new(0);
    let waited = poll_until(deadline, Duration::from_millis(100), || async {
        let now = backend.nginx_workers().await?;
        let left: Vec<String> = old.iter().filter(|p| now.contains(p)).cloned().collect();
        if left.is_empty() {
            return Ok(Attempt::Ready(()));
        }
        let waited = t0.elapsed();
        if waited.as_millis() as u64 >= next_progress_ms.load(Ordering::Relaxed) {
            let open = backend.worker_connections(&left).await;
            most_open.fetch_max(open.unwrap_or(0), Ordering::Relaxed);
            if !quiet {
                eprintln!("         {}", progress_line(left.len(), open, waited));
            }
            next_progress_ms.fetch_add(PROGRESS_EVERY.as_millis() as u64, Ordering::Relaxed);
        }
        Ok(Attempt::NotYet(left))
    })
    .await;
    match waited {
        Ok(()) => {
            let most_open = most_open.load(Ordering::Relaxed);
            let held = if most_open > 0 {
                format!(" (they held up to {most_open} client connections)")
            } else {
                String::new()
            };
            Ok(format!(
                "the {} workers of the previous configuration exited after {:.0} ms{held}",
                old.len(),
                ms_since(t0)
            ))
        }
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::TimedOut { waited, last }) => {
            let open = backend.worker_connections(&last).await;
            Err(StackError::WorkersLeft {
                progress: progress_line(last.len(), open, waited),
                bound: deadline,
            })
        }
    }
}

/// "2 old nginx workers still serve 3 open connections (oldest open 40 s)".
fn progress_line(workers: usize, open: Option<usize>, waited: Duration) -> String {
    let conns = match open {
        Some(n) => format!("{n} open client connection(s)"),
        None => "client connections".to_string(),
    };
    format!(
        "{workers} old nginx worker(s) still serve {conns}, the oldest open for at least {:.0} s \
         (since the reload)",
        waited.as_secs_f64()
    )
}

/// Counts ESTABLISHED client connections (local port 443 or 80) among the
/// sockets in `links` (`readlink /proc/<pid>/fd/*` lines, `socket:[inode]`),
/// looked up in `table` (`/proc/net/tcp` and `tcp6` text). None when no
/// socket was readable at all (a worker always holds its listening sockets,
/// so that means the fds could not be read, not "no connections").
pub fn client_connections(links: &str, table: &str) -> Option<usize> {
    let inodes: std::collections::HashSet<&str> = links
        .lines()
        .filter_map(|l| l.trim().strip_prefix("socket:["))
        .filter_map(|l| l.strip_suffix(']'))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let n = table
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            f.len() > 9
                && f[3] == "01"
                && matches!(local_port, Some(443) | Some(80))
                && inodes.contains(f[9])
        })
        .count();
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only established connections on 443/80 owned by the workers count:
    /// not the shared listening socket, not the upstream keep-alive.
    #[test]
    fn counts_client_connections_of_the_workers() {
        let links = "socket:[100]\nsocket:[101]\nsocket:[102]\n/dev/null\npipe:[5]\n";
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0
   1: 0200A8C0:01BB 0100A8C0:C350 01 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0
   2: 0200A8C0:9C40 0300A8C0:1F44 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0 100 0 0 10 0
   3: 0200A8C0:01BB 0100A8C0:C351 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0 100 0 0 10 0";
        assert_eq!(client_connections(links, table), Some(1));
        assert_eq!(client_connections("/dev/null\n", table), None);
    }

    /// The progress line says how many connections and for how long.
    #[test]
    fn progress_names_connections_and_age() {
        let l = progress_line(2, Some(3), Duration::from_secs(40));
        assert!(l.contains("2 old nginx worker(s)"), "{l}");
        assert!(l.contains("3 open client connection(s)"), "{l}");
        assert!(l.contains("at least 40 s"), "{l}");
    }
}
