//! Admitting client connections: at most `max_connections` served at
//! once, idle ones asked to close to make room for a new one, and the
//! operator told (at most every 10 s) when the limit or the process's file
//! descriptors run out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::every::Every;
use crate::shed::Shed;

/// How often idle connections are asked again to close while a new one
/// waits at `max_connections`.
const SHED_EVERY: Duration = Duration::from_secs(1);

/// The connection limit of one server, and what enforces it.
#[derive(Debug)]
pub struct Admission {
    /// `max_connections`.
    max: usize,
    /// One permit per client connection served.
    permits: Arc<Semaphore>,
    /// Asks idle connections to close when at the limit.
    shed: Shed,
    /// The warning that the connections reached the limit.
    full_warning: Every,
    /// The error that accepting failed (out of file descriptors).
    accept_failed_warning: Every,
}

impl Admission {
    /// At most `max` connections at once.
    pub fn new(max: usize) -> Self {
        Admission {
            max,
            permits: Arc::new(Semaphore::new(max)),
            shed: Shed::new(),
            full_warning: Every::new(Duration::from_secs(10)),
            accept_failed_warning: Every::new(Duration::from_secs(10)),
        }
    }

    /// The next connection, with its permit. At the limit it waits,
    /// accepted, for a connection to close (so at most one per event loop
    /// beyond the limit is held; more wait in the kernel's listen
    /// backlog), and idle connections are asked to close to make room
    /// every second (`SHED_EVERY`) while it waits, as nginx closes idle
    /// keep-alive connections when its `worker_connections` run out.
    pub async fn admit(
        &self,
        listener: &TcpListener,
    ) -> std::io::Result<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok((permit, stream, peer));
        }
        if self.full_warning.due(Instant::now()) {
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached: closing connections idle for 1 s or more to make room; new connections wait until one closes (raise max_connections if this is expected load)"
            );
        }
        let room = self.permits.clone().acquire_owned();
        tokio::pin!(room);
        loop {
            self.shed.ask();
            tokio::select! {
                permit = &mut room => {
                    let permit = permit.expect("the connection semaphore is never closed");
                    return Ok((permit, stream, peer));
                }
                () = tokio::time::sleep(SHED_EVERY) => {}
            }
        }
    }

    /// Accepting failed (EMFILE and friends): said once in a while, not
    /// at every retry.
    pub fn accept_failed(&self, e: &std::io::Error) {
        if self.accept_failed_warning.due(Instant::now()) {
            tracing::error!(error = %e, open_files_limit = crate::fd_limit::soft().unwrap_or(0), "accept failed (retried every 100 ms; out of file descriptors: raise the open-file limit or lower max_connections)");
        }
    }

    /// Connections served now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// The asks to close idle connections, which each connection watches.
    pub fn shed(&self) -> &Shed {
        &self.shed
    }
}
