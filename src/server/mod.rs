//! The server: listening and connection handling (accept loop, connection cap, TLS,
//! HTTP/1.1 + HTTP/2, header limits, the timeouts that stop slow clients holding a place under
//! the cap, the bookkeeping a graceful drain needs), and what
//! every handler shares — the request context, the response body type, request-body reading
//! and the request id. The admin listener's service lives here too.
//!
//! What a public request *means* is not decided here: each listener is given a [`Handler`].

pub mod accept;
mod activity;
pub mod admin;
pub mod connection;
pub mod context;
pub mod drain;
mod http1;
pub mod limits;
pub mod request_body;
pub mod request_id;
pub mod response;
pub mod reusable_timer;
pub mod tls;
pub mod upgrade;
pub mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use connection::{Accepted, Builders, Connections};
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
    /// The timer its proxied requests take turns with for their route timeout.
    pub timer: reusable_timer::ReusableTimer,
}

/// A share of one accepted connection's slot; the slot frees, the connection stops counting
/// as live for a shutdown, and its worker's load drops, when the last share drops.
#[derive(Clone)]
pub struct ConnectionSlot(
    #[allow(dead_code)]
    Arc<(
        OwnedSemaphorePermit,
        connection::Tracked,
        Option<workers::Load>,
    )>,
);

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
    /// Time allowed for a request head (and for a TLS handshake), and how long a connection
    /// may sit with no request in progress.
    pub header_timeout: Duration,
    /// How long a client may accept no byte of an answer (see [`connection::SendTimeout`]).
    pub send_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// TLS configuration, swapped on reload; `None` for plain TCP.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    /// Header limits: the protocol layer's hard caps are set above them.
    pub limits: limits::HeadLimits,
}

/// Accepts connections on `listener` until `stop` fires, serving each with `handler` — on
/// one of `workers` when given (see [`workers`]), else on the calling runtime.
///
/// Every connection joins `connections`, so the caller can drain them after this returns;
/// the listener is dropped on return, so new connections are refused from then on.
pub async fn accept_loop<H: Handler>(
    listener: TcpListener,
    opts: ServeOptions,
    handler: Arc<H>,
    connections: &Arc<Connections>,
    stop: CancellationToken,
    workers: Option<&workers::Workers>,
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
        let tracked = connections.track();
        let tls = opts.tls.as_ref().map(|t| t.load_full());
        let serve = {
            let (builder, handler, connections) =
                (builder.clone(), handler.clone(), connections.clone());
            let (header_timeout, send_timeout) = (opts.header_timeout, opts.send_timeout);
            move |stream, load| {
                let conn = Accepted {
                    stream,
                    peer,
                    slot: ConnectionSlot(Arc::new((permit, tracked, load))),
                    tls,
                    header_timeout,
                    send_timeout,
                };
                connection::serve(conn, builder, handler, connections)
            }
        };
        match workers {
            Some(workers) => hand_over(workers, stream, serve),
            None => drop(tokio::spawn(serve(stream, None))),
        }
    }
}

/// Moves an accepted connection to a worker: its socket leaves this runtime's I/O driver and
/// joins the worker's, so its readiness wakes that worker alone.
fn hand_over<F, S>(workers: &workers::Workers, stream: tokio::net::TcpStream, serve: S)
where
    S: FnOnce(tokio::net::TcpStream, Option<workers::Load>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a connection to a worker");
            return;
        }
    };
    let job: workers::Job = Box::new(move |load| match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => Box::pin(serve(stream, Some(load))),
        Err(e) => {
            tracing::warn!(error = %e, "a worker cannot take a connection");
            Box::pin(std::future::ready(()))
        }
    });
    if workers.dispatch(job).is_err() {
        tracing::warn!("no worker to serve a connection");
    }
}

/// The HTTP/1.1 + HTTP/2 connection builders. The timer is what makes the header timeout
/// real: without one hyper silently ignores it. (A plain HTTP/1 connection swaps in a timer
/// of its own, which its request heads reuse: see [`reusable_timer`].) The header caps bound what a pending request
/// head can hold, above the limits the gateway checks itself (see [`limits`]).
fn http_builder(opts: &ServeOptions) -> Builders {
    // hyper-util's HTTP/1 settings and hyper's are two types with the same methods.
    macro_rules! http1_settings {
        ($builder:expr) => {{
            let b = $builder;
            b.timer(TokioTimer::new())
                .header_read_timeout(opts.header_timeout)
                .keep_alive(true)
                .max_buf_size(opts.limits.http1_buffer());
            if let Some(fields) = opts.limits.http1_fields() {
                b.max_headers(fields);
            }
        }};
    }
    let mut auto = Builder::new(TokioExecutor::new());
    http1_settings!(&mut auto.http1());
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1_settings!(&mut http1);
    auto.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(256)
        .max_header_list_size(opts.limits.http2_header_list());
    Builders { auto, http1 }
}
