//! The echo upstream: a small HTTP server that answers every request with JSON describing
//! what it received — method, path, query, every header line in order, and the body's length.
//! It can also stream a large body back (`?echo_bytes=N`) so downloads can be measured.
//!
//! The demo fronts it. It is not part of the library's API: the integration tests (as their
//! oracle of what the gateway forwards) and `examples/echo_upstream.rs` compile this same
//! file on their own, so it uses nothing of the crate and only crates they all have.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest body `?echo_bytes=N` will stream back (1 GiB).
const MAX_ECHO_BYTES: u64 = 1 << 30;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// Binds `addr` and serves the echo upstream until `stop` fires; returns the bound address.
pub async fn spawn(addr: SocketAddr, stop: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, stop));
    Ok(local)
}

/// Header fields the echo accepts per request.
const ECHO_MAX_HEADERS: usize = 1100;

/// Serves the echo upstream on an already bound listener until `stop` fires.
async fn serve(listener: TcpListener, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            // As many fields as the gateway may forward (its own `max_headers` is at most
            // 1000), so the echo shows what was sent instead of refusing it.
            builder.http1().max_headers(ECHO_MAX_HEADERS);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                service_fn(|req| async { Ok::<_, Infallible>(answer(req).await) }),
            );
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    if let Some(n) = echo_bytes(query) {
        return stream_bytes(n);
    }
    // Count the body as it streams: a 50 MB upload never sits in memory here.
    let mut body_bytes: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let headers: Vec<[String; 2]> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            [
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_bytes": body_bytes,
    });
    let body = Full::new(Bytes::from(json.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let mut res = Response::new(body);
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

fn echo_bytes(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("echo_bytes="))
        .and_then(|n| n.parse().ok())
        .map(|n: u64| n.min(MAX_ECHO_BYTES))
}

/// Streams `n` bytes in 64 KiB chunks without holding them all.
fn stream_bytes(n: u64) -> Response<Body> {
    let mut res = Response::new(BodyExt::boxed(RepeatBody {
        remaining: n,
        chunk: Bytes::from(vec![b'x'; 64 * 1024]),
    }));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(n));
    res
}

/// A body of `remaining` bytes of `x`, produced chunk by chunk as the client reads.
struct RepeatBody {
    remaining: u64,
    chunk: Bytes,
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let len = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= len;
        let data = self.chunk.slice(..len as usize);
        std::task::Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
