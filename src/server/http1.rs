//! Plain-TCP HTTP/1 connections that cost no buffers while idle.
//!
//! hyper keeps an HTTP/1 connection's read buffer (8–16 KiB) and header write buffer (8 KiB)
//! for the connection's whole life, so ten thousand idle keep-alive connections cost a few
//! hundred megabytes. Here a connection is served in *segments*: when it has been quiet for a
//! while ([`park_after`]: no bytes read, no request in progress, nothing waiting to be
//! written), hyper's connection is asked to stop after the message in progress without
//! closing the socket (`poll_without_shutdown`), its buffers are freed, and the bare socket
//! waits for its next bytes; they start a new hyper connection on the same socket. The client
//! sees one kept-alive connection throughout.
//!
//! The rules that held before still hold: a parked connection that stays silent is closed once
//! `request_header_timeout` has passed since it went quiet (give or take one [`park_after`]),
//! a shutdown closes a parked connection at once and lets a serving one finish its answer. A
//! request whose body may still be arriving keeps its connection unparked until the next
//! request (hyper alone knows where such a body ends). hyper's upgrade machinery only works on
//! connections it closes itself, so here a `101` hands the socket over through the request's
//! [`Handoff`] instead (see [`super::upgrade`]).

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Watched};
use super::response::Body;
use super::reusable_timer::ReusableTimer;

/// The number of a listener's connections parked now.
#[derive(Debug, Default)]
pub(super) struct ParkedCount(AtomicUsize);

impl ParkedCount {
    /// Parked now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one connection as parked until the guard drops.
    fn park(&self) -> Parked<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Parked(&self.0)
    }
}

/// One parked connection, counted in its [`ParkedCount`].
struct Parked<'a>(&'a AtomicUsize);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The longest a connection stays quiet before it is parked. Shorter means fewer connections
/// holding buffers at once when many open together, and so less of the allocator's
/// fragmentation left behind: 10,000 connections opened in a burst and idle for 5 s held
/// 94,232–100,120 KiB at 100 ms and 86,196–92,620 KiB at 60 ms (`benches/memory.sh -p idle`,
/// five runs each, one machine). A connection in steady use (a request every 50 ms) still
/// never parks.
const PARK_AFTER_AT_MOST: Duration = Duration::from_millis(60);

/// How long a connection must have been quiet before it is parked: [`PARK_AFTER_AT_MOST`], or
/// a quarter of the header timeout when that is shorter, so parking never comes close to the
/// idle limit.
pub(super) fn park_after(header_timeout: Duration) -> Duration {
    (header_timeout / 4).clamp(Duration::from_millis(1), PARK_AFTER_AT_MOST)
}

/// How a segment (one hyper connection on the socket) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client closed, asked to close, or the gateway shut down: close the socket.
    Closed,
    /// Parked on purpose: wait for the next bytes without buffers.
    Parked,
    /// A `101` went out: the socket belongs to the tunnel now.
    Upgraded,
}

/// The waker a segment gives its parking timer and the listener's stop signal. It wakes the
/// connection's task and notes that it did, so the segment polls those two only after one of
/// them fired — not on every wake-up of the task, which a proxied request causes about twice
/// (polling both each time cost about 700 instructions a request under callgrind).
struct SideWaker {
    /// What the side futures wake.
    shared: Arc<SideWake>,
    /// `shared` as the waker the side futures are polled with.
    waker: Waker,
}

/// The state a [`SideWaker`] shares with the side futures' timer and notifier.
struct SideWake {
    /// A side future woke the task since the segment last looked.
    fired: AtomicBool,
    /// The connection's task, woken in turn.
    task: AtomicWaker,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl SideWaker {
    /// Fired at first, so the timer and the stop signal are polled (and register) once.
    fn new() -> SideWaker {
        let shared = Arc::new(SideWake {
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        SideWaker {
            waker: Waker::from(shared.clone()),
            shared,
        }
    }

    /// Points the side waker at the task polling with `cx`; if it fired since the last call,
    /// the context to poll the side futures with (and the flag is cleared).
    fn side_context(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        // Registered before the flag is read: a side future firing in between wakes this task.
        self.shared.task.register(cx.waker());
        self.shared
            .fired
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }
}

/// Serves HTTP/1 on one plain connection, segment after segment, until it closes.
pub(super) struct Segments<'a> {
    /// The listener's HTTP/1 settings.
    pub builder: &'a http1::Builder,
    /// What the connection's service and socket report.
    pub activity: &'a Activity,
    /// `request_header_timeout`.
    pub header_timeout: Duration,
    /// The listener's shutdown.
    pub stop: &'a CancellationToken,
    /// The listener's parked connections.
    pub parked: &'a ParkedCount,
    /// The timer `builder` gives the connection's request heads; emptied while parked.
    pub head_timer: &'a ReusableTimer,
}

impl Segments<'_> {
    /// Serves `io` with `service` until the client, the idle rule, an upgrade or a shutdown
    /// ends the connection.
    pub async fn serve<S>(&self, mut io: Watched, mut service: S)
    where
        S: HttpService<Incoming, ResBody = Body> + Unpin,
        S::Future: Unpin,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A segment resumed with bytes hyper had read (a request head cut by the pause) may
        // not park again before a request begins, so a slow head gets one extension at most.
        let mut parks_from = 0;
        loop {
            // Boxed: the connection and its buffers are freed while the socket is parked.
            let mut conn = Box::new(self.builder.serve_connection(TokioIo::new(io), service));
            let ended = match self.segment(&mut conn, parks_from).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended with an error");
                    return;
                }
            };
            if ended == Ended::Closed {
                // As hyper would end it: what it still holds is flushed, then the socket is
                // shut down.
                if let Err(e) = Pin::new(&mut *conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            let http1::Parts {
                io: tokio_io,
                read_buf,
                service: returned,
                ..
            } = conn.into_parts();
            (io, service) = (tokio_io.into_inner(), returned);
            // Bytes read but not used, copied out: the empty rest still holds hyper's whole
            // read buffer.
            let unread = Bytes::copy_from_slice(&read_buf);
            drop(read_buf);
            if ended == Ended::Upgraded {
                io.rewind(unread);
                self.activity.hand_over(Box::new(io));
                return;
            }
            if unread.is_empty() {
                // A parked socket holds no timer either: the next segment's first head makes one.
                self.head_timer.clear();
                if !self.parked(&io).await {
                    return;
                }
                parks_from = 0;
            } else {
                parks_from = self.activity.progress().requests + 1;
                io.rewind(unread);
            }
        }
    }

    /// Runs one hyper connection until it ends; parks it once it has been quiet for a whole
    /// [`park_after`] and at least `parks_from` requests have begun.
    async fn segment<S>(
        &self,
        conn: &mut http1::Connection<TokioIo<Watched>, S>,
        parks_from: u64,
    ) -> hyper::Result<Ended>
    where
        S: HttpService<Incoming, ResBody = Body> + Unpin,
        S::Future: Unpin,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let period = park_after(self.header_timeout);
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stop = self.stop.cancelled();
        let mut stop = pin!(stop);
        let side = SideWaker::new();
        let mut seen = self.activity.progress();
        let mut ending = None;
        poll_fn(|cx| {
            if let Some(mut side_cx) = side.side_context(cx) {
                if ending.is_none() && stop.as_mut().poll(&mut side_cx).is_ready() {
                    Pin::new(&mut *conn).graceful_shutdown();
                    ending = Some(Ended::Closed);
                }
                // Polled until pending, so the interval is armed again; ticks that were due
                // together (a very short period) count as one look at the connection.
                let mut ticked = false;
                while ending.is_none() && ticks.poll_tick(&mut side_cx).is_ready() {
                    ticked = true;
                }
                if ticked && ending.is_none() {
                    let now = self.activity.progress();
                    if now == seen && now.requests >= parks_from && self.activity.quiet() {
                        Pin::new(&mut *conn).graceful_shutdown();
                        ending = Some(Ended::Parked);
                    }
                    seen = now;
                }
            }
            conn.poll_without_shutdown(cx)
        })
        .await?;
        Ok(if self.activity.is_upgraded() {
            Ended::Upgraded
        } else {
            ending.unwrap_or(Ended::Closed)
        })
    }

    /// Waits, holding no buffer, for the parked socket's next bytes. False when it should
    /// close instead: silent past the header timeout, or the listener shutting down.
    async fn parked(&self, io: &Watched) -> bool {
        let _parked = self.parked.park();
        let rest = self
            .header_timeout
            .saturating_sub(park_after(self.header_timeout));
        tokio::select! {
            r = io.readable() => r.is_ok(),
            () = tokio::time::sleep(rest) => {
                tracing::debug!("closing a kept-alive connection idle past the header timeout");
                false
            }
            () = self.stop.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use super::{park_after, SideWaker};

    /// A task waker that counts its wake-ups.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_side_futures_are_polled_first_and_then_only_after_they_woke_the_task() {
        let task = Arc::new(Counting::default());
        let waker = Waker::from(task.clone());
        let cx = Context::from_waker(&waker);
        let side = SideWaker::new();
        let first = side.side_context(&cx).map(|c| c.waker().clone());
        let side_waker = first.expect("the first poll registers the side futures");
        assert!(side.side_context(&cx).is_none(), "not polled again unwoken");
        side_waker.wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
        assert!(side.side_context(&cx).is_some(), "polled after they fired");
        assert!(side.side_context(&cx).is_none());
        // A new task waker (the connection's task moved) is the one woken from then on.
        let moved = Arc::new(Counting::default());
        let moved_waker = Waker::from(moved.clone());
        assert!(side
            .side_context(&Context::from_waker(&moved_waker))
            .is_none());
        side_waker.wake_by_ref();
        assert_eq!(moved.0.load(Ordering::SeqCst), 1);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn parking_waits_60_ms_or_a_quarter_of_a_short_header_timeout() {
        assert_eq!(
            park_after(Duration::from_secs(10)),
            Duration::from_millis(60)
        );
        assert_eq!(
            park_after(Duration::from_millis(200)),
            Duration::from_millis(50)
        );
        assert_eq!(park_after(Duration::ZERO), Duration::from_millis(1));
    }
}
