//! The echo upstream on its own: `cargo run --example echo_upstream -- 127.0.0.1:9000`.
//!
//! Answers every request with JSON describing what it received (method, path, query, every
//! header line, body length); `?echo_bytes=N` streams N bytes back. Handy to see what the
//! gateway forwards. It is the demo's upstream, compiled here from the same file (the
//! library does not export it).

#[path = "../src/cli/echo_upstream.rs"]
mod echo;

use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stop = CancellationToken::new();
    let bound = echo::spawn(addr, stop.clone()).await?;
    println!("echo upstream on http://{bound} (Ctrl-C stops it)");
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    Ok(())
}
