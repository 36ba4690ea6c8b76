//! One accepted connection's life after the accept loop: TLS, HTTP, and the rules that stop a
//! slow or silent client from holding its place under `max_connections`.
//!
//! A plain connection whose first bytes are not HTTP/2's preface is served as HTTP/1 in
//! segments that free hyper's buffers while it is idle (the `http1` module); TLS connections and
//! HTTP/2 go through hyper-util's protocol-detecting builder.
//!
//! hyper bounds the HTTP/1 request head (`request_header_timeout`, which also ends an idle
//! kept-alive connection), and the account endpoints bound their bodies (`body_timeout`). What
//! hyper does not bound is watched here:
//! - **Nothing sent, or an idle HTTP/2 connection.** A plain connection waits for its first
//!   bytes (with no buffer) for `request_header_timeout`; hyper-util reads the first bytes to
//!   pick the protocol without any deadline, and HTTP/2 has no idle timeout at all. A
//!   connection with no request in progress for `request_header_timeout` — before its first
//!   request, or between HTTP/2 requests — is shut down gracefully (HTTP/2: `GOAWAY`; streams
//!   already answered finish).
//! - **A client that does not read its answer.** A write that cannot hand the socket a single
//!   byte for the answer's send timeout ([`SendTimeout`], by default the listener's) fails, and
//!   the connection is closed. Upgraded connections (`101`) are exempt: their tunnel has its
//!   own rules.
//!
//! [`Connections`] counts the live connections so a shutdown can ask each to finish and wait.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Watched};
use super::http1::{ParkedCount, Segments};
use super::response::Body;
use super::reusable_timer::ReusableTimer;
use super::{ConnInfo, ConnectionSlot, Handler};

/// HTTP/2's connection preface: a plain connection that starts otherwise is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a listener speaks HTTP: hyper-util's protocol-detecting builder, and the same HTTP/1
/// settings for plain connections served in segments.
pub(super) struct Builders {
    /// TLS connections and plain HTTP/2.
    pub auto: Builder<TokioExecutor>,
    /// Plain HTTP/1.
    pub http1: http1::Builder,
}

pub use super::activity::SendTimeout;

/// The live connections of one listener: a shutdown asks each to finish gracefully and waits
/// for them all.
#[derive(Debug, Default)]
pub struct Connections {
    stop: CancellationToken,
    live: AtomicUsize,
    gone: Notify,
    /// Parked now: idle HTTP/1 connections holding no buffers (the `http1` module).
    parked: ParkedCount,
}

/// Counts one connection as live until dropped; its [`ConnectionSlot`] holds it, so an
/// upgraded connection's tunnel counts too.
pub(super) struct Tracked {
    set: Arc<Connections>,
}

impl Connections {
    /// An empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Connections still open.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Idle connections parked now, holding no buffers.
    pub fn parked(&self) -> usize {
        self.parked.count()
    }

    pub(super) fn track(self: &Arc<Self>) -> Tracked {
        self.live.fetch_add(1, Ordering::AcqRel);
        Tracked { set: self.clone() }
    }

    /// Asks every connection to finish (HTTP/1: after the answer in progress; HTTP/2: `GOAWAY`,
    /// open streams finish) and waits until all are gone, upgraded ones included (their
    /// tunnels close on the gateway's own shutdown signal). The caller bounds the wait.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        loop {
            let gone = self.gone.notified();
            if self.live() == 0 {
                return;
            }
            gone.await;
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.set.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set.gone.notify_waiters();
        }
    }
}

/// One accepted connection and what serving it needs.
pub(super) struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: ConnectionSlot,
    /// The TLS configuration current when it was accepted (reloads affect later ones).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `request_header_timeout`: the TLS handshake, and how long a connection may sit idle.
    pub header_timeout: Duration,
    /// The default [`SendTimeout`] of its answers.
    pub send_timeout: Duration,
}

/// Serves one connection: the TLS handshake first when configured (bounded by the header
/// timeout), then HTTP until the client, the idle rule or a shutdown ends it.
pub(super) async fn serve<H: Handler>(
    conn: Accepted,
    builder: Arc<Builders>,
    handler: Arc<H>,
    set: Arc<Connections>,
) {
    let Accepted {
        stream,
        peer,
        slot,
        tls,
        header_timeout,
        send_timeout,
    } = conn;
    let activity = Arc::new(Activity::new(send_timeout));
    let stream = Watched::new(stream, activity.clone());
    let serving = Serving {
        builder: &builder,
        activity,
        header_timeout,
        set: &set,
    };
    let Some(cfg) = tls else {
        let info = ConnInfo {
            peer,
            tls: false,
            slot,
            timer: ReusableTimer::default(),
        };
        return serving.run_plain(stream, info, handler).await;
    };
    // Boxed: the TLS handshake's and the TLS stream's state would otherwise size every
    // connection's task, plain ones included.
    Box::pin(serving.run_tls(cfg, stream, peer, slot, handler)).await;
}

/// The service of one connection: each request goes to the listener's handler, counted in
/// the connection's [`Activity`].
struct ConnService<H> {
    handler: Arc<H>,
    info: ConnInfo,
    activity: Arc<Activity>,
}

impl<H: Handler> hyper::service::Service<Request<Incoming>> for ConnService<H> {
    type Response = Response<Body>;
    type Error = Infallible;
    /// Boxed: hyper keeps a slot of the service future's size for the whole life of a
    /// connection, and the gateway's is kilobytes. Boxed, an idle kept-alive connection holds
    /// a pointer; the allocation lives as long as the request.
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let handler = self.handler.clone();
        let info = self.info.clone();
        let activity = self.activity.clone();
        // Given to `Box::write` on a fresh allocation rather than to `Box::pin`: the future is
        // kilobytes, and `Box::pin`'s move copied all of it, twice, for every request (740
        // instructions a request under callgrind); this way the optimiser builds it in place.
        // Not guaranteed by the language: recount (benches/callgrind.sh) after a toolchain
        // upgrade.
        let future = Box::write(Box::new_uninit(), async move {
            let in_flight = activity.begin(&mut req);
            let res = handler.handle(req, info).await;
            activity.answered(&res);
            drop(in_flight);
            Ok(res)
        });
        Box::into_pin(future)
    }
}

/// HTTP on one connection, with the idle rule and the listener's shutdown.
struct Serving<'a> {
    builder: &'a Builders,
    activity: Arc<Activity>,
    header_timeout: Duration,
    set: &'a Connections,
}

impl Serving<'_> {
    fn service<H>(&self, info: ConnInfo, handler: Arc<H>) -> ConnService<H> {
        ConnService {
            handler,
            info,
            activity: self.activity.clone(),
        }
    }

    /// A TLS connection: the handshake (bounded by the header timeout), then HTTP through
    /// hyper-util.
    async fn run_tls<H: Handler>(
        self,
        cfg: Arc<rustls::ServerConfig>,
        stream: Watched,
        peer: SocketAddr,
        slot: ConnectionSlot,
        handler: Arc<H>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        match tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                let info = ConnInfo {
                    peer,
                    tls: true,
                    slot,
                    timer: ReusableTimer::default(),
                };
                self.run(tls_stream, info, handler).await;
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }

    /// A plain connection: waits, with no buffer, for its first bytes, then serves HTTP/1 in
    /// segments, or HTTP/2 (its preface, or too few bytes to tell) through hyper-util.
    async fn run_plain<H: Handler>(self, io: Watched, info: ConnInfo, handler: Arc<H>) {
        let Some(http2) = self.first_bytes(&io, info.peer).await else {
            return;
        };
        if http2 {
            // Boxed: hyper-util's connection state would otherwise size every plain
            // connection's task, parked ones included.
            return Box::pin(self.run(io, info, handler)).await;
        }
        self.activity.serve_in_segments();
        let service = self.service(info, handler);
        // The connection's own timer for its request heads, reused head after head.
        let heads = ReusableTimer::default();
        let mut builder = self.builder.http1.clone();
        builder.timer(heads.clone());
        Segments {
            builder: &builder,
            head_timer: &heads,
            activity: &self.activity,
            header_timeout: self.header_timeout,
            stop: &self.set.stop,
            parked: &self.set.parked,
        }
        .serve(io, service)
        .await;
    }

    /// Waits for a plain connection's first bytes, leaving them on the socket: whether they
    /// could be HTTP/2's preface (too few to tell count as yes), or `None` when the connection
    /// should close (it ended, sent nothing for the header timeout, or the listener stops).
    async fn first_bytes(&self, io: &Watched, peer: SocketAddr) -> Option<bool> {
        let mut first = [0u8; H2_PREFACE.len()];
        let seen = tokio::select! {
            r = tokio::time::timeout(self.header_timeout, io.peek(&mut first)) => r,
            () = self.set.stop.cancelled() => return None,
        };
        match seen {
            Ok(Ok(0)) => None,
            Ok(Ok(n)) => Some(H2_PREFACE.starts_with(&first[..n])),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "connection failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "closing a connection that sent nothing");
                None
            }
        }
    }

    async fn run<I, H>(self, io: I, info: ConnInfo, handler: Arc<H>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Handler,
    {
        let peer = info.peer;
        let service = self.service(info, handler);
        let conn = self
            .builder
            .auto
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        tokio::pin!(conn);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                () = self.set.stop.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = self.activity.idle_for(self.header_timeout), if !closing => {
                    tracing::debug!(%peer, "closing a connection with no request in progress");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
