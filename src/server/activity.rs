//! What one connection is doing, as its service and its socket see it ([`Activity`]): requests
//! in progress, reads, waiting writes, the send timeout of the latest answer, an upgrade — and
//! the socket wrapper that reports it ([`Watched`]), which also fails writes a client does not
//! read. The idle rules of `connection` (HTTP/2) and `http1` (parking) read it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::response::Body;
use super::upgrade::{Handoff, UpgradedIo};

/// How long a client may accept no byte of one answer before its connection is closed; set on
/// a response's extensions to override the listener's default for that answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendTimeout(pub Duration);

/// What is known about a connection's requests, shared by its service and its socket.
pub(super) struct Activity {
    /// Requests being handled (their handler has not returned).
    in_flight: AtomicUsize,
    /// Set by the first HTTP/1 request: from then on hyper's header timeout rules idleness.
    http1: AtomicBool,
    /// Changes of the two above.
    changed: Notify,
    /// The send timeout of the latest answer, in milliseconds; 0 switches it off, which only
    /// a `101` does.
    send_timeout_ms: AtomicU64,
    /// The listener's default send timeout.
    default_send: Duration,
    /// Reads that returned (plain HTTP/1's idle rule watches them move).
    reads: AtomicU64,
    /// HTTP/1 requests begun.
    requests: AtomicU64,
    /// `reads` when the latest HTTP/1 request began: reads since belong to the next head.
    reads_at_begin: AtomicU64,
    /// HTTP/1 requests being handled.
    http1_in_flight: AtomicUsize,
    /// The latest HTTP/1 request's body may still be arriving.
    body_pending: AtomicBool,
    /// hyper will close the connection after the latest HTTP/1 answer (an HTTP/1.0 request,
    /// or `Connection: close` either way): such a connection never parks.
    closes: AtomicBool,
    /// A write is waiting for the client to read.
    write_waiting: AtomicBool,
    /// Served in segments: the fields above from `reads` on are kept, and upgrades go
    /// through [`Self::handoff`].
    segmented: AtomicBool,
    /// Where a segmented connection's socket goes after a `101`; made by the first request
    /// that asks to upgrade.
    handoff: OnceLock<Handoff>,
}

/// What moves while a connection is in use; parking waits for it to stand still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    reads: u64,
    /// HTTP/1 requests begun so far.
    pub requests: u64,
}

impl Activity {
    pub(super) fn new(default_send: Duration) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            http1: AtomicBool::new(false),
            changed: Notify::new(),
            send_timeout_ms: AtomicU64::new(millis(default_send)),
            default_send,
            reads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            reads_at_begin: AtomicU64::new(0),
            http1_in_flight: AtomicUsize::new(0),
            body_pending: AtomicBool::new(false),
            closes: AtomicBool::new(false),
            write_waiting: AtomicBool::new(false),
            segmented: AtomicBool::new(false),
            handoff: OnceLock::new(),
        }
    }

    /// Counts a request in until the guard drops (its handler returned, or hyper dropped it
    /// on a reset or a closed connection). The first HTTP/1 request hands the idleness of
    /// hyper-util's connections to hyper; on a segmented connection, a request that asks to
    /// upgrade gets the connection's [`Handoff`].
    pub(super) fn begin<B: http_body::Body>(&self, req: &mut Request<B>) -> InFlight<'_> {
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
        self.http1_in_flight.fetch_add(1, Ordering::Relaxed);
        if self.segmented.load(Ordering::Relaxed) {
            self.begin_segmented(req);
        }
        InFlight {
            activity: self,
            http2: false,
        }
    }

    /// What the idle rule of a segmented connection needs to know of a request beginning.
    fn begin_segmented<B: http_body::Body>(&self, req: &mut Request<B>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.reads_at_begin
            .store(self.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        self.body_pending
            .store(!req.body().is_end_stream(), Ordering::Relaxed);
        self.closes.store(
            req.version() <= http::Version::HTTP_10 || asks_to_close(req.headers()),
            Ordering::Relaxed,
        );
        if req.extensions().get::<OnUpgrade>().is_some() {
            let handoff = self.handoff.get_or_init(Handoff::default).clone();
            req.extensions_mut().insert(handoff);
        }
    }

    /// Gives a segmented connection's socket, after its `101`, to the request that asked for
    /// it; closes it when none did.
    pub(super) fn hand_over(&self, io: Box<dyn UpgradedIo>) {
        if let Some(handoff) = self.handoff.get() {
            handoff.hand_over(io);
        }
    }

    /// Reads and requests so far.
    pub(super) fn progress(&self) -> Progress {
        Progress {
            reads: self.reads.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Nothing in progress: no request being handled or with a body still to come, no byte
    /// of a next request head read (hyper's header timeout bounds a head it holds), no write
    /// waiting for the client, no upgrade.
    pub(super) fn quiet(&self) -> bool {
        self.http1_in_flight.load(Ordering::Relaxed) == 0
            && self.reads.load(Ordering::Relaxed) == self.reads_at_begin.load(Ordering::Relaxed)
            && !self.body_pending.load(Ordering::Relaxed)
            && !self.closes.load(Ordering::Relaxed)
            && !self.write_waiting.load(Ordering::Relaxed)
            && !self.is_upgraded()
    }

    /// From now on the connection is served in segments (the `http1` module): a request asking
    /// to upgrade gets its [`Handoff`].
    pub(super) fn serve_in_segments(&self) {
        self.segmented.store(true, Ordering::Relaxed);
    }

    /// A `101` was answered on this connection (the one answer with no send timeout).
    pub(super) fn is_upgraded(&self) -> bool {
        self.send_timeout_ms.load(Ordering::Acquire) == 0
    }

    /// Takes the send timeout of an answer about to be written.
    pub(super) fn answered(&self, res: &Response<Body>) {
        let send = if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            0
        } else {
            res.extensions()
                .get::<SendTimeout>()
                .map_or(millis(self.default_send), |t| millis(t.0))
        };
        self.send_timeout_ms.store(send, Ordering::Release);
        if self.segmented.load(Ordering::Relaxed) && asks_to_close(res.headers()) {
            self.closes.store(true, Ordering::Relaxed);
        }
    }

    fn send_timeout(&self) -> Option<Duration> {
        match self.send_timeout_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Resolves once no request has been in progress for `limit`; never once the connection
    /// turned out to be HTTP/1 (hyper's header timeout rules it then).
    pub(super) async fn idle_for(&self, limit: Duration) {
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
pub(super) struct InFlight<'a> {
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

/// Whether `headers` carry a `Connection: close` (the token in any case, among others).
fn asks_to_close(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            stalled: None,
            rewound: Bytes::new(),
        }
    }

    /// Puts `bytes` (read earlier, not yet used) back in front of what the socket delivers.
    pub(super) fn rewind(&mut self, bytes: Bytes) {
        self.rewound = if self.rewound.is_empty() {
            bytes
        } else {
            [bytes, std::mem::take(&mut self.rewound)].concat().into()
        };
    }

    /// Waits until the socket has bytes (or an end) to read.
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// The first bytes waiting on the socket, left there.
    pub(super) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
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

    #[test]
    fn a_close_token_is_found_among_others_in_any_case() {
        let mut headers = http::HeaderMap::new();
        assert!(!asks_to_close(&headers));
        headers.append(http::header::CONNECTION, "keep-alive".parse().unwrap());
        assert!(!asks_to_close(&headers));
        headers.append(http::header::CONNECTION, "Upgrade, CLOSE ".parse().unwrap());
        assert!(asks_to_close(&headers));
        let mut closing = http::HeaderMap::new();
        closing.insert(http::header::CONNECTION, "closed".parse().unwrap());
        assert!(!asks_to_close(&closing));
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
        // An HTTP/1 request hands idleness to hyper, and keeps a segmented connection from
        // parking while it is handled.
        activity.serve_in_segments();
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
