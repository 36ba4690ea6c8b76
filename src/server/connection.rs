//! One accepted connection's life after the accept loop: TLS, HTTP, and the rules that stop a
//! slow or silent client from holding its place under `max_connections`.
//!
//! A plain connection whose first bytes are not HTTP/2's preface is served as HTTP/1 in
//! segments that free hyper's buffers while it is idle ([`super::http1`]); TLS connections and
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
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::http1::Segments;
use super::response::Body;
use super::upgrade::Handoff;
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

/// How long a client may accept no byte of one answer before its connection is closed; set on
/// a response's extensions to override the listener's default for that answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTimeout(pub Duration);

/// The live connections of one listener: a shutdown asks each to finish gracefully and waits
/// for them all.
#[derive(Debug, Default)]
pub struct Connections {
    stop: CancellationToken,
    live: AtomicUsize,
    gone: Notify,
    /// Parked now: idle HTTP/1 connections holding no buffers (see [`super::http1`]).
    parked: AtomicUsize,
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

    /// The listener's shutdown signal, fired by [`Self::shutdown`].
    pub(super) fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Idle connections parked now, holding no buffers.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Counts one connection as parked until the guard drops.
    pub(super) fn park(&self) -> Parked<'_> {
        self.parked.fetch_add(1, Ordering::Relaxed);
        Parked(&self.parked)
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

/// One parked connection, counted in [`Connections::parked`].
pub(super) struct Parked<'a>(&'a AtomicUsize);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
        };
        return serving.run_plain(stream, info, handler).await;
    };
    // Boxed: the TLS handshake's and the TLS stream's state would otherwise size every
    // connection's task, plain ones included.
    Box::pin(serving.run_tls(cfg, stream, peer, slot, handler)).await;
}

/// What is known about a connection's requests, shared by its service and its socket.
pub(super) struct Activity {
    /// Requests being handled (their handler has not returned).
    in_flight: AtomicUsize,
    /// Set by the first HTTP/1 request: from then on hyper's header timeout rules idleness.
    http1: AtomicBool,
    /// Changes of the two above.
    changed: Notify,
    /// The send timeout of the latest answer, in milliseconds; 0 switches it off.
    send_timeout_ms: AtomicU64,
    /// The listener's default send timeout.
    default_send: Duration,
    /// Reads that returned (plain HTTP/1's idle rule watches them move).
    reads: AtomicU64,
    /// HTTP/1 requests begun.
    requests: AtomicU64,
    /// HTTP/1 requests being handled.
    http1_in_flight: AtomicUsize,
    /// The latest HTTP/1 request's body may still be arriving.
    body_pending: AtomicBool,
    /// A write is waiting for the client to read.
    write_waiting: AtomicBool,
    /// A `101` was answered.
    upgraded: AtomicBool,
    /// Served in segments: upgrades go through [`Self::handoff`].
    segmented: AtomicBool,
    /// Where a segmented connection's socket goes after a `101`.
    pub(super) handoff: Handoff,
}

/// What moves while a connection is in use; parking waits for it to stand still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    reads: u64,
    /// HTTP/1 requests begun so far.
    pub requests: u64,
}

impl Activity {
    fn new(default_send: Duration) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            http1: AtomicBool::new(false),
            changed: Notify::new(),
            send_timeout_ms: AtomicU64::new(millis(default_send)),
            default_send,
            reads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            http1_in_flight: AtomicUsize::new(0),
            body_pending: AtomicBool::new(false),
            write_waiting: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            segmented: AtomicBool::new(false),
            handoff: Handoff::default(),
        }
    }

    /// Counts a request in until the guard drops (its handler returned, or hyper dropped it
    /// on a reset or a closed connection). The first HTTP/1 request hands the idleness of
    /// hyper-util's connections to hyper; on a segmented connection, a request that asks to
    /// upgrade gets the connection's [`Handoff`].
    fn begin<B: http_body::Body>(&self, req: &mut Request<B>) -> InFlight<'_> {
        if req.version() >= http::Version::HTTP_2 {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            return InFlight {
                activity: self,
                http2: true,
            };
        }
        if !self.http1.load(Ordering::Acquire) {
            self.http1.store(true, Ordering::Release);
            self.changed.notify_waiters();
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.http1_in_flight.fetch_add(1, Ordering::Relaxed);
        self.body_pending
            .store(!req.body().is_end_stream(), Ordering::Relaxed);
        if self.segmented.load(Ordering::Relaxed) && req.extensions().get::<OnUpgrade>().is_some() {
            req.extensions_mut().insert(self.handoff.clone());
        }
        InFlight {
            activity: self,
            http2: false,
        }
    }

    /// Reads and requests so far.
    pub(super) fn progress(&self) -> Progress {
        Progress {
            reads: self.reads.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Nothing in progress: no request being handled or with a body still to come, no write
    /// waiting for the client, no upgrade.
    pub(super) fn quiet(&self) -> bool {
        self.http1_in_flight.load(Ordering::Relaxed) == 0
            && !self.body_pending.load(Ordering::Relaxed)
            && !self.write_waiting.load(Ordering::Relaxed)
            && !self.is_upgraded()
    }

    /// A `101` was answered on this connection.
    pub(super) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// Takes the send timeout of an answer about to be written.
    fn answered(&self, res: &Response<Body>) {
        let send = if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.upgraded.store(true, Ordering::Release);
            0
        } else {
            res.extensions()
                .get::<SendTimeout>()
                .map_or(millis(self.default_send), |t| millis(t.0))
        };
        self.send_timeout_ms.store(send, Ordering::Release);
    }

    fn send_timeout(&self) -> Option<Duration> {
        match self.send_timeout_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Resolves once no request has been in progress for `limit`; never once the connection
    /// turned out to be HTTP/1 (hyper's header timeout rules it then).
    async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.http1.load(Ordering::Acquire) {
                return std::future::pending().await;
            }
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(limit) => return,
                () = changed => {}
            }
        }
    }
}

/// A request being handled.
struct InFlight<'a> {
    activity: &'a Activity,
    http2: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let a = self.activity;
        if !self.http2 {
            a.http1_in_flight.fetch_sub(1, Ordering::Relaxed);
        } else if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_waiters();
        }
    }
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
        Box::pin(async move {
            let in_flight = activity.begin(&mut req);
            let res = handler.handle(req, info).await;
            activity.answered(&res);
            drop(in_flight);
            Ok(res)
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
        self.activity.segmented.store(true, Ordering::Relaxed);
        let service = self.service(info, handler);
        Segments {
            builder: &self.builder.http1,
            activity: &self.activity,
            header_timeout: self.header_timeout,
            set: self.set,
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

/// A client socket whose writes fail once they could not hand over a single byte for the
/// current send timeout. The timer exists only while a write is waiting.
///
/// It also counts its reads and waiting writes for the idle rule of segmented HTTP/1, and
/// can put bytes already read back in front of the socket.
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Bytes read before, served first.
    rewound: Bytes,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            stalled: None,
            rewound: Bytes::new(),
        }
    }

    /// Puts `bytes` (read earlier, not yet used) back in front of what the socket delivers.
    pub(super) fn rewind(&mut self, bytes: Bytes) {
        self.rewound = bytes;
    }

    /// Waits until the socket has bytes (or an end) to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// The first bytes waiting on the socket, left there.
    async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }

    /// A write made progress (or failed on its own): the stall is over.
    fn moved<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            self.activity.write_waiting.store(false, Ordering::Relaxed);
        }
        r
    }

    /// A write is waiting: starts or checks the stall timer, failing once it has run out.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        self.activity.write_waiting.store(true, Ordering::Relaxed);
        let Some(limit) = self.activity.send_timeout() else {
            self.stalled = None;
            return Poll::Pending;
        };
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client accepted no byte of its answer within the send timeout",
        )))
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Pending => self.waiting(cx),
            ready => self.moved(ready),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.rewound.has_remaining() {
            let n = self.rewound.len().min(buf.remaining());
            buf.put_slice(&self.rewound.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.reads.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().watch(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .watch(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().watch(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(send: Duration) -> (Watched, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let activity = Arc::new(Activity::new(send));
        (Watched::new(accepted.unwrap().0, activity), client.unwrap())
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_with_timed_out() {
        let (mut watched, _peer) = pair(Duration::from_millis(50)).await;
        let chunk = vec![0u8; 1 << 20];
        let err = loop {
            if let Err(e) = watched.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_peer_that_reads_keeps_the_writes_going() {
        let (mut watched, mut peer) = pair(Duration::from_secs(30)).await;
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            peer.read_to_end(&mut buf).await.map(|_| buf.len())
        });
        let chunk = vec![1u8; 1 << 20];
        for _ in 0..32 {
            watched.write_all(&chunk).await.unwrap();
        }
        watched.shutdown().await.unwrap();
        drop(watched);
        assert_eq!(reader.await.unwrap().unwrap(), 32 << 20);
    }

    #[tokio::test]
    async fn an_upgraded_answer_switches_the_send_timeout_off() {
        let activity = Arc::new(Activity::new(Duration::from_secs(5)));
        assert_eq!(activity.send_timeout(), Some(Duration::from_secs(5)));
        let mut res = Response::new(super::super::response::full(""));
        res.extensions_mut()
            .insert(SendTimeout(Duration::from_secs(60)));
        activity.answered(&res);
        assert_eq!(activity.send_timeout(), Some(Duration::from_secs(60)));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        activity.answered(&res);
        assert_eq!(activity.send_timeout(), None);
    }

    #[tokio::test]
    async fn requests_are_counted_until_their_guard_drops() {
        let activity = Arc::new(Activity::new(Duration::from_secs(5)));
        let mut req = Request::get("/")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        *req.version_mut() = http::Version::HTTP_2;
        let a = activity.begin(&mut req);
        let b = activity.begin(&mut req);
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 2);
        drop((a, b));
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 0);
        // An HTTP/1 request hands idleness to hyper, and keeps the connection from parking
        // while it is handled.
        *req.version_mut() = http::Version::HTTP_11;
        let c = activity.begin(&mut req);
        assert!(activity.http1.load(Ordering::Acquire));
        assert!(!activity.quiet());
        assert_eq!(activity.progress().requests, 1);
        drop(c);
        assert!(activity.quiet());
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 0);
    }
}
