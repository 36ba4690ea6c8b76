//! The server: listening and connection handling (accept loop, connection cap, TLS,
//! HTTP/1.1 + HTTP/2, request-head timeout, the bookkeeping a graceful drain needs), and what
//! every handler shares — the request context, the response body type, request-body reading
//! and the request id. The admin listener's service lives here too.
//!
//! What a public request *means* is not decided here: each listener is given a [`Handler`].

pub mod admin;
pub mod context;
pub mod drain;
pub mod limits;
pub mod request_body;
pub mod request_id;
pub mod response;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use response::Body;

/// What the gateway knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS (for `X-Forwarded-Proto`).
    pub tls: bool,
    /// The connection's place under `max_connections`. An upgraded connection (WebSocket)
    /// outlives hyper's connection task, so its tunnel keeps a clone of this.
    pub slot: ConnectionSlot,
}

/// A share of one accepted connection's slot; the slot frees when the last share drops.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

/// Answers requests of one listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Never fails: errors are already turned into responses.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Time allowed for a request head (and for a TLS handshake).
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// TLS configuration, swapped on reload; `None` for plain TCP.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// Header limits: the protocol layer's hard caps are set above them.
    pub limits: limits::HeadLimits,
}

/// Accepts connections on `listener` until `stop` fires, serving each with `handler`.
///
/// Every connection is watched by `graceful`, so the caller can drain them after this returns;
/// the listener is dropped on return, so new connections are refused from then on.
pub async fn accept_loop<H: Handler>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: Arc<H>,
    graceful: &GracefulShutdown,
    stop: CancellationToken,
) {
    let builder = Arc::new(http_builder(&opts));
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    loop {
        // Taking a slot before accepting leaves connections beyond the cap in the backlog.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Accepted {
            stream,
            peer,
            slot: ConnectionSlot(Arc::new(permit)),
            tls: opts.tls.as_ref().map(|t| t.load_full()),
            header_timeout: opts.header_timeout,
        };
        tokio::spawn(serve_conn(
            conn,
            builder.clone(),
            handler.clone(),
            graceful.watcher(),
        ));
    }
}

/// One accepted connection and what serving it needs.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnectionSlot,
    /// The TLS configuration current when it was accepted (reloads affect later ones).
    tls: Option<Arc<rustls::ServerConfig>>,
    header_timeout: Duration,
}

/// Serves one connection: the TLS handshake first when configured (bounded by the header
/// timeout), then HTTP until the client or a graceful shutdown ends it.
async fn serve_conn<H: Handler>(
    conn: Accepted,
    builder: Arc<Builder<TokioExecutor>>,
    handler: Arc<H>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let Accepted {
        stream,
        peer,
        slot,
        tls,
        header_timeout,
    } = conn;
    let Some(cfg) = tls else {
        let info = ConnInfo {
            peer,
            tls: false,
            slot,
        };
        return serve_io(stream, info, &builder, handler, watcher).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let info = ConnInfo {
                peer,
                tls: true,
                slot,
            };
            serve_io(tls_stream, info, &builder, handler, watcher).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// The HTTP/1.1 + HTTP/2 connection builder. The timer is what makes the header timeout
/// real: without one hyper silently ignores it. The header caps bound what a pending request
/// head can hold, above the limits the gateway checks itself (see [`limits`]).
fn http_builder(opts: &ServeOptions) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    let mut http1 = builder.http1();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .keep_alive(true)
        .max_buf_size(opts.limits.http1_buffer());
    if let Some(fields) = opts.limits.http1_fields() {
        http1.max_headers(fields);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256)
        .max_header_list_size(opts.limits.http2_header_list());
    builder
}

async fn serve_io<I, H>(
    io: I,
    info: ConnInfo,
    builder: &Builder<TokioExecutor>,
    handler: Arc<H>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let peer = info.peer;
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.handle(req, info).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
