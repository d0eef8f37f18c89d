//! One event loop per CPU: goproxy's extra threads, each running a
//! current-thread tokio runtime that accepts on the same listening socket
//! (a duplicate of its descriptor, as nginx's workers share theirs).
//!
//! Why not tokio's multi-thread runtime: a connection's tasks there are
//! woken across threads and stolen between them, and on the 2-core bench
//! that cost more than the second core gave (c16, unpinned: 5,600 req/s
//! with two workers against 6,000 with one; bench/README.md). Here a
//! connection, its upstream connections and its timers stay on the thread
//! that accepted it, and an idle thread, waiting in `epoll_wait`, is the
//! one the kernel wakes for the next connection.

use std::future::Future;
use std::os::fd::AsFd;
use std::thread::JoinHandle;

use tokio::net::TcpListener;

/// The extra threads; [`Workers::join`] waits for them.
#[derive(Debug, Default)]
pub struct Workers {
    threads: Vec<JoinHandle<()>>,
}

/// Start `n` threads, each serving `serve(listener)` on its own copy of
/// `listener` in a current-thread runtime; a thread ends when its future
/// does. A thread that cannot start is logged and skipped: the others and
/// the caller's loop still serve.
pub fn spawn<F, Fut>(n: usize, listener: &TcpListener, serve: F) -> Workers
where
    F: FnOnce(TcpListener) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()>,
{
    let mut threads = Vec::with_capacity(n);
    for i in 1..=n {
        let copy = match listener.as_fd().try_clone_to_owned() {
            Ok(fd) => std::net::TcpListener::from(fd),
            Err(e) => {
                tracing::error!(error = %e, "cannot share the listener with another thread");
                break;
            }
        };
        let serve = serve.clone();
        let started = std::thread::Builder::new()
            .name(format!("goproxy-{i}"))
            .spawn(move || run(copy, serve));
        match started {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(error = %e, "cannot start a worker thread"),
        }
    }
    Workers { threads }
}

fn run<F, Fut>(listener: std::net::TcpListener, serve: F)
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::log_batch::flush)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!(error = %e, "cannot start a worker runtime"),
    };
    rt.block_on(crate::log_batch::batched(async move {
        match TcpListener::from_std(listener) {
            Ok(listener) => serve(listener).await,
            Err(e) => tracing::error!(error = %e, "cannot register the listener"),
        }
    }));
}

impl Workers {
    /// How many threads started.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether none started.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Wait for every thread to end (their futures must be ending).
    pub async fn join(self) {
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = joined.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Every thread accepts on the shared socket: each takes one
    /// connection and stops, so two connections reach two threads.
    #[tokio::test]
    async fn every_thread_accepts_on_the_shared_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let workers = spawn(2, &listener, move |l: TcpListener| async move {
            let (_conn, _) = l.accept().await.unwrap();
            let name = std::thread::current().name().map(str::to_owned);
            tx.send(name).unwrap();
        });
        assert_eq!(workers.len(), 2);
        drop(listener); // the threads' copies keep the socket open
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut names: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [Some("goproxy-1".into()), Some("goproxy-2".into())]);
        workers.join().await;
    }
}
