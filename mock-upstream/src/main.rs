//! `mock-upstream`: serve the mock LLM upstream, or probe one (`healthcheck`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mock_upstream::{MockConfig, MockUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A mock OpenAI/Anthropic upstream that streams SSE with gaps"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MOCK_LISTEN", default_value = "0.0.0.0:9000")]
    listen: SocketAddr,
    /// Content chunks per streamed answer.
    #[arg(long, env = "MOCK_CHUNKS", default_value_t = 8)]
    chunks: usize,
    /// Pause between content chunks, in milliseconds.
    #[arg(long, env = "MOCK_CHUNK_DELAY_MS", default_value_t = 20)]
    chunk_delay_ms: u64,
    /// Pause before the first content chunk, in milliseconds.
    #[arg(long, env = "MOCK_FIRST_CHUNK_DELAY_MS", default_value_t = 0)]
    first_chunk_delay_ms: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 if the mock on the `--listen` port answers `GET /health` with
    /// 200 (probes 127.0.0.1 when listening on 0.0.0.0); for container
    /// healthchecks.
    Healthcheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Healthcheck) = args.command {
        return healthcheck(args.listen).await;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = MockConfig {
        chunks: args.chunks,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        first_chunk_delay: Duration::from_millis(args.first_chunk_delay_ms),
        ..MockConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mock = MockUpstream::start(listener, config).await?;
    tracing::info!(addr = %mock.addr(), "mock-upstream listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    drop(mock);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A dependency-free HTTP/1.0 probe, so the container image needs no curl.
async fn healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .with_context(|| format!("no answer from {target} within 3 s"))?
        .with_context(|| format!("GET http://{target}/health failed"))?;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("GET http://{target}/health answered {status_line:?}");
    }
    println!("ok: {target} {status_line}");
    Ok(())
}
