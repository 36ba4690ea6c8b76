//! Proxied bodies in motion (docs/http-api.md §6, §7.1): the client's request body on its way
//! upstream ([`UploadBody`]) and the upstream's response body on its way back
//! ([`DownloadBody`]).
//!
//! Both end a transfer that moves no byte for the route's `idle_timeout`. The upload also
//! tells the forwarding step what it needs to know and cannot see through the upstream client:
//! where the upload stands ([`Phase`]: the route timeout counts connecting and the wait after
//! the body, never the body itself), and whether a failure was the client's
//! ([`ClientFault`]: bad chunk framing or a stalled body is a 400 or 408, never a 502 and never
//! an upstream error). For `Expect: 100-continue` the upload waits before reading the client's
//! body until the upstream has said `100 Continue` ([`ContinueGate`]), so a body the upstream
//! refuses is never uploaded — hyper's server sends the client its `100` on that first read.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};

use crate::server::response::BoxError;

/// How long an `Expect: 100-continue` upload waits for the upstream's `100` before sending the
/// body anyway (an upstream may ignore `Expect`; curl waits as long).
const CONTINUE_FALLBACK: Duration = Duration::from_secs(1);

/// A proxied body moved no byte for the route's `idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no byte moved for {0:?}")]
pub struct IdleTimeout(pub Duration);

/// Why the client's request body failed: the client's doing, whatever the upstream saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// Bad framing (chunk syntax, a body shorter than its `Content-Length`) or a dropped
    /// connection.
    Malformed,
    /// No byte for `idle_timeout`.
    Stalled,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not read yet: the upstream is being connected to (or has not asked for the body).
    Waiting,
    /// The body is being sent.
    Sending,
    /// The whole body has been sent (or failed): the wait for the answer runs.
    Sent,
}

/// The forwarding step's view of an [`UploadBody`].
pub struct UploadWatch {
    phase: watch::Receiver<Phase>,
    fault: Arc<OnceLock<ClientFault>>,
}

impl UploadWatch {
    /// Where the upload stands now.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Resolves when the phase changes (never, once the body is dropped).
    pub async fn changed(&mut self) {
        if self.phase.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The client's fault, if the body failed because of the client.
    pub fn fault(&self) -> Option<ClientFault> {
        self.fault.get().copied()
    }
}

/// The client's request body, forwarded frame by frame (data and trailers) as the upstream
/// reads it.
pub struct UploadBody {
    inner: Incoming,
    idle: IdleTimer,
    phase: Phase,
    phase_tx: watch::Sender<Phase>,
    fault: Arc<OnceLock<ClientFault>>,
    gate: Option<ContinueGate>,
    /// The upstream answered an `Expect: 100-continue` without asking for the body.
    withheld: bool,
    /// Hide the length, so an HTTP/1.1 upstream gets a chunked body that can carry trailers.
    hide_length: bool,
}

impl UploadBody {
    /// Wraps `inner` with `idle_timeout`, waiting for `gate` before the first read; with
    /// `hide_length` its length is not announced (see [`UploadBody::size_hint`]).
    pub fn new(
        inner: Incoming,
        idle_timeout: Duration,
        gate: Option<ContinueGate>,
        hide_length: bool,
    ) -> (UploadBody, UploadWatch) {
        let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
        let fault = Arc::new(OnceLock::new());
        let body = UploadBody {
            inner,
            idle: IdleTimer::new(idle_timeout),
            phase: Phase::Waiting,
            phase_tx,
            fault: fault.clone(),
            gate,
            withheld: false,
            hide_length,
        };
        let watch = UploadWatch {
            phase: phase_rx,
            fault,
        };
        (body, watch)
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase != phase {
            self.phase = phase;
            self.phase_tx.send_replace(phase);
        }
    }

    fn fail(&mut self, fault: ClientFault) {
        let _ = self.fault.set(fault);
        self.enter(Phase::Sent);
    }
}

impl HttpBody for UploadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.withheld {
            return Poll::Ready(None);
        }
        if let Some(gate) = &mut this.gate {
            let open = ready!(Pin::new(gate).poll(cx));
            this.gate = None;
            if open == Continue::Answered {
                // The upstream answered without asking for the body: it is never read.
                this.withheld = true;
                return Poll::Ready(None);
            }
            this.idle.touch();
        }
        if this.phase == Phase::Waiting {
            this.enter(Phase::Sending);
            this.idle.touch();
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.touch();
                if this.inner.is_end_stream() {
                    this.enter(Phase::Sent);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(ClientFault::Malformed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.enter(Phase::Sent);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.poll_expired(cx) {
                    this.fail(ClientFault::Stalled);
                    return Poll::Ready(Some(Err(IdleTimeout(this.idle.limit).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.withheld || self.inner.is_end_stream()
    }

    /// The client's length, unless hidden: a message that declares trailers (`Trailer`) goes
    /// chunked to an HTTP/1.1 peer, which a `Content-Length` would prevent.
    fn size_hint(&self) -> SizeHint {
        length_hint(&self.inner, self.hide_length)
    }
}

/// Whether a [`ContinueGate`] lets the body through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// The upstream said `100 Continue`, or did not answer within [`CONTINUE_FALLBACK`].
    Send,
    /// The upstream gave its final answer first: the body is not wanted.
    Answered,
}

/// Holds an `Expect: 100-continue` upload back until the upstream answers `100 Continue`
/// ([`Continue::Send`], as when [`CONTINUE_FALLBACK`] passes first), or gives its final
/// answer without one ([`Continue::Answered`]: hyper drops the hook with the exchange).
pub struct ContinueGate {
    continued: oneshot::Receiver<()>,
    fallback: Pin<Box<Sleep>>,
}

impl ContinueGate {
    /// A gate opened through `req`'s informational-response hook (HTTP/1.1 upstreams).
    pub fn on<B>(req: &mut http::Request<B>) -> ContinueGate {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        hyper::ext::on_informational(req, move |res| {
            if res.status() == http::StatusCode::CONTINUE {
                if let Some(tx) = tx.lock().ok().and_then(|mut tx| tx.take()) {
                    let _ = tx.send(());
                }
            }
        });
        ContinueGate {
            continued: rx,
            fallback: Box::pin(tokio::time::sleep(CONTINUE_FALLBACK)),
        }
    }
}

impl Future for ContinueGate {
    type Output = Continue;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Continue> {
        match Pin::new(&mut self.continued).poll(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Continue::Send),
            Poll::Ready(Err(_)) => return Poll::Ready(Continue::Answered),
            Poll::Pending => {}
        }
        self.fallback.as_mut().poll(cx).map(|()| Continue::Send)
    }
}

/// The upstream's response body on its way to the client. A failure or a stall ends the
/// client's answer: hyper then closes an HTTP/1.1 connection or resets an HTTP/2 stream.
pub struct DownloadBody {
    inner: Incoming,
    idle: IdleTimer,
    hide_length: bool,
}

impl DownloadBody {
    /// Wraps `inner` with `idle_timeout`; with `hide_length` its length is not announced
    /// (as for [`UploadBody`]).
    pub fn new(inner: Incoming, idle_timeout: Duration, hide_length: bool) -> DownloadBody {
        DownloadBody {
            inner,
            idle: IdleTimer::new(idle_timeout),
            hide_length,
        }
    }
}

impl HttpBody for DownloadBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "upstream response body failed");
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.idle.poll_expired(cx) => {
                tracing::info!(
                    idle = ?this.idle.limit,
                    "upstream response body stalled: ended"
                );
                Poll::Ready(Some(Err(IdleTimeout(this.idle.limit).into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        length_hint(&self.inner, self.hide_length)
    }
}

/// `inner`'s length, or none when it is to be hidden (a message declaring trailers).
fn length_hint(inner: &Incoming, hide: bool) -> SizeHint {
    if hide {
        SizeHint::default()
    } else {
        inner.size_hint()
    }
}

/// `idle_timeout` of one body: when it last moved, and a timer armed only while the body
/// waits. The clock is read only when the body has to wait after moving, so a body that is
/// always ready (a small answer in one frame) costs no clock read and no timer at all.
struct IdleTimer {
    limit: Duration,
    /// When the body was last seen moving; `None` until it first has to wait.
    last: Option<Instant>,
    /// A frame passed since `last` was taken.
    moved: bool,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    fn new(limit: Duration) -> IdleTimer {
        IdleTimer {
            limit,
            last: None,
            moved: false,
            sleep: None,
        }
    }

    /// A byte moved.
    fn touch(&mut self) {
        self.moved = true;
    }

    /// Whether `limit` has passed since the body last moved; registers `cx` to wake when it
    /// does. Called when the body has nothing to give.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let last = match self.last {
            Some(last) if !self.moved => last,
            _ => {
                self.moved = false;
                *self.last.insert(Instant::now())
            }
        };
        let deadline = last + self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}
