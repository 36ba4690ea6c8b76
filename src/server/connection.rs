//! One accepted connection's life after the accept loop: TLS, HTTP, and the rules that stop a
//! slow or silent client from holding its place under `max_connections`.
//!
//! hyper bounds the HTTP/1 request head (`request_header_timeout`, which also ends an idle
//! kept-alive connection), and the account endpoints bound their bodies (`body_timeout`). What
//! hyper does not bound is watched here:
//! - **Nothing sent, or an idle HTTP/2 connection.** hyper-util reads the first bytes to pick
//!   the protocol without any deadline, and HTTP/2 has no idle timeout at all. A connection
//!   with no request in progress for `request_header_timeout` — before its first request, or
//!   between HTTP/2 requests — is shut down gracefully (HTTP/2: `GOAWAY`; streams already
//!   answered finish).
//! - **A client that does not read its answer.** A write that cannot hand the socket a single
//!   byte for the answer's send timeout ([`SendTimeout`], by default the listener's) fails, and
//!   the connection is closed. Upgraded connections (`101`) are exempt: their tunnel has its
//!   own rules.
//!
//! [`Connections`] counts the live connections so a shutdown can ask each to finish and wait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use super::response::Body;
use super::{ConnInfo, ConnectionSlot, Handler};

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
    builder: Arc<Builder<TokioExecutor>>,
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
        stop: &set.stop,
    };
    let Some(cfg) = tls else {
        let info = ConnInfo {
            peer,
            tls: false,
            slot,
        };
        return serving.run(stream, info, handler).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let info = ConnInfo {
                peer,
                tls: true,
                slot,
            };
            // Boxed: the TLS stream's state would otherwise size every connection's task,
            // plain ones included.
            Box::pin(serving.run(tls_stream, info, handler)).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// What is known about a connection's requests, shared by its service and its socket.
struct Activity {
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
}

impl Activity {
    fn new(default_send: Duration) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            http1: AtomicBool::new(false),
            changed: Notify::new(),
            send_timeout_ms: AtomicU64::new(millis(default_send)),
            default_send,
        }
    }

    /// Counts an HTTP/2 request in until the guard drops (its handler returned, or hyper
    /// dropped it on a reset). The first HTTP/1 request hands idleness to hyper instead.
    fn begin<B>(self: &Arc<Self>, req: &Request<B>) -> Option<InFlight> {
        if req.version() < http::Version::HTTP_2 {
            if !self.http1.swap(true, Ordering::AcqRel) {
                self.changed.notify_waiters();
            }
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(InFlight(self.clone()))
    }

    /// Takes the send timeout of an answer about to be written.
    fn answered(&self, res: &Response<Body>) {
        let send = if res.status() == StatusCode::SWITCHING_PROTOCOLS {
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

/// An HTTP/2 request being handled.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// HTTP on one connection, with the idle rule and the listener's shutdown.
struct Serving<'a> {
    builder: &'a Builder<TokioExecutor>,
    activity: Arc<Activity>,
    header_timeout: Duration,
    stop: &'a CancellationToken,
}

impl Serving<'_> {
    async fn run<I, H>(self, io: I, info: ConnInfo, handler: Arc<H>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Handler,
    {
        let peer = info.peer;
        let activity = self.activity.clone();
        // The request's future is boxed: hyper keeps a slot of the service future's size for
        // the whole life of a connection, and the gateway's is kilobytes. Boxed, an idle
        // kept-alive connection holds a pointer; the allocation lives as long as the request.
        let service = service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let info = info.clone();
            let activity = activity.clone();
            Box::pin(async move {
                let _in_flight = activity.begin(&req);
                let res = handler.handle(req, info).await;
                activity.answered(&res);
                Ok::<_, std::convert::Infallible>(res)
            })
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        tokio::pin!(conn);
        let mut closing = false;
        let result = loop {
            tokio::select! {
                r = conn.as_mut() => break r,
                () = self.stop.cancelled(), if !closing => {
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
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            stalled: None,
        }
    }

    /// A write made progress (or failed on its own): the stall is over.
    fn moved<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
        }
        r
    }

    /// A write is waiting: starts or checks the stall timer, failing once it has run out.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
    async fn http2_requests_are_counted_until_their_guard_drops() {
        let activity = Arc::new(Activity::new(Duration::from_secs(5)));
        let mut req = Request::get("/").body(()).unwrap();
        *req.version_mut() = http::Version::HTTP_2;
        let a = activity.begin(&req);
        let b = activity.begin(&req);
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 2);
        drop((a, b));
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 0);
        // An HTTP/1 request is not counted: it hands idleness to hyper.
        *req.version_mut() = http::Version::HTTP_11;
        assert!(activity.begin(&req).is_none());
        assert!(activity.http1.load(Ordering::Acquire));
    }
}
