//! A raw HTTP/1.1 upstream whose body is scripted byte for byte: endless,
//! trickling or huge bodies that wiremock cannot send. It counts what it
//! wrote, so a test can show how much goproxy took in.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the raw upstream answers.
#[derive(Debug, Clone)]
pub struct Script {
    /// Status code.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Body piece repeated `chunks` times (chunked encoding).
    pub chunk: Vec<u8>,
    /// How many pieces (`u64::MAX`: endless).
    pub chunks: u64,
    /// Pause before each piece after the first.
    pub gap: Duration,
    /// Sent after the last piece.
    pub last: Vec<u8>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            status: 200,
            content_type: "application/json",
            chunk: b"{}".to_vec(),
            chunks: 1,
            gap: Duration::ZERO,
            last: Vec::new(),
        }
    }
}

/// The raw upstream and its counters.
#[derive(Debug, Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    /// Body bytes written so far (all connections).
    pub written: Arc<AtomicU64>,
    /// Set when a write failed: goproxy closed the connection.
    pub peer_closed: Arc<AtomicBool>,
}

impl RawUpstream {
    pub async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw = RawUpstream {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            written: Arc::default(),
            peer_closed: Arc::default(),
        };
        let r = raw.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(r.clone().answer(sock));
            }
        });
        raw
    }

    /// Wait (up to `within`) until goproxy closed a connection to it.
    pub async fn closed(&self, within: Duration) {
        crate::helpers::wait_for("the upstream connection to close", within, || async {
            self.peer_closed.load(Ordering::SeqCst).then_some(())
        })
        .await
    }

    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    async fn answer(self, mut sock: TcpStream) {
        if !read_head(&mut sock).await {
            return;
        }
        let s = self.script.lock().unwrap().clone();
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: {}\r\ntransfer-encoding: chunked\r\n\r\n",
            s.status, s.content_type
        );
        if sock.write_all(head.as_bytes()).await.is_err() {
            return self.peer_closed.store(true, Ordering::SeqCst);
        }
        let framed = |data: &[u8]| {
            let mut v = format!("{:x}\r\n", data.len()).into_bytes();
            v.extend_from_slice(data);
            v.extend_from_slice(b"\r\n");
            v
        };
        let piece = framed(&s.chunk);
        for i in 0..s.chunks {
            if i > 0 && !s.gap.is_zero() {
                tokio::time::sleep(s.gap).await;
            }
            if sock.write_all(&piece).await.is_err() {
                return self.peer_closed.store(true, Ordering::SeqCst);
            }
            self.written
                .fetch_add(s.chunk.len() as u64, Ordering::SeqCst);
        }
        let mut end = if s.last.is_empty() {
            Vec::new()
        } else {
            framed(&s.last)
        };
        end.extend_from_slice(b"0\r\n\r\n");
        let _ = sock.write_all(&end).await;
        // Hold the connection until the peer closes it.
        let _ = sock.read(&mut [0u8; 1024]).await;
    }
}

/// Reads until the blank line that ends a request head; false when the
/// client went away first.
pub async fn read_head(sock: &mut TcpStream) -> bool {
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}
