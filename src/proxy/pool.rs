//! Kept-alive HTTP/1.1 connections to one clear-text upstream, for one serving worker: the
//! common case (`http://` upstream, `upstream_protocol = "http1"`) without the general pooled
//! client's machinery (a pool keyed and hashed by scheme and authority, a checkout racing a
//! connect, a connector stack): one list per route and worker, last in first out.
//!
//! What it keeps of the general client's behaviour: connections are made by its connector
//! (DNS, both address families with the fallback after 300 ms, `TCP_NODELAY`); requests go out
//! in origin form; an idle connection is dropped after [`IDLE_TIMEOUT`] (checked when a
//! connection is taken or returned, and by a sweep every [`SWEEP_EVERY`] while the list is in
//! use, so a route that falls quiet does not keep its connections open); a request that a reused connection turned
//! down before writing a byte of it (the upstream had closed it meanwhile) is sent again on a
//! new connection; a connection returns to the list only once its previous exchange is over
//! (the response read to its end), and never after an upgrade.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower_service::Service;

use crate::server::response::{Body, BoxError};

/// How long an unused upstream connection is kept (the general client's `pool_idle_timeout`).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a list in use drops its expired connections between requests.
pub const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// The idle connections to one upstream.
pub struct Http1Pool {
    /// `http://host:port/`: what the connector dials.
    base: Uri,
    connector: HttpConnector,
    idle: Arc<Mutex<Vec<Idle>>>,
    /// Whether this list's sweep is running.
    sweeping: AtomicBool,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Http1Pool {
    /// A pool dialling the scheme and authority of `base` (an `http://` URI).
    pub fn new(base: Uri) -> Http1Pool {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http1Pool {
            base,
            connector,
            idle: Arc::new(Mutex::new(Vec::new())),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `req` (its URI may be absolute: it goes out in origin form) on an idle connection,
    /// or a new one, and returns the response head; the connection goes back to the pool when
    /// the exchange is over.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        if req.uri().scheme().is_some() {
            *req.uri_mut() = origin_form(req.uri());
        }
        loop {
            let (mut sender, reused) = match self.take_idle(Instant::now()) {
                Some(sender) => (sender, true),
                // Boxed: the connect and handshake state is large, and inline it would be
                // part of every request's future (copied whenever that future moves).
                None => (Box::pin(self.connect()).await?, false),
            };
            if reused && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(res) => {
                    self.give_back_when_ready(sender, &res);
                    return Ok(res);
                }
                Err(mut e) => match e.take_message() {
                    // Not a byte of it was written: the upstream closed this kept-alive
                    // connection meanwhile. A new connection gets it; a new one failing so is
                    // the upstream's failure.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open at `now`, dropping closed
    /// and expired ones.
    fn take_idle(&self, now: Instant) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let stream = self.connector.clone().call(self.base.clone()).await?;
        let (sender, connection) = http1::Builder::new().handshake(stream).await?;
        // The list can hold connections from now on: it needs its sweep (once per pool).
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.idle), SWEEP_EVERY));
        }
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Puts `sender` back once its connection can take the next request: at once when the
    /// response has no body to read, else when hyper has read it to the end. A connection that
    /// switched protocols is the tunnel's now.
    fn give_back_when_ready(&self, mut sender: SendRequest<Body>, res: &Response<Incoming>) {
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let idle = self.idle.clone();
        if sender.is_ready() {
            put(&idle, sender, Instant::now());
            return;
        }
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                put(&idle, sender, Instant::now());
            }
        });
    }
}

/// Returns a connection to the list at `now`, dropping the ones idle past [`IDLE_TIMEOUT`].
fn put(idle: &Mutex<Vec<Idle>>, sender: SendRequest<Body>, now: Instant) {
    let Ok(mut idle) = idle.lock() else {
        return;
    };
    drop_expired(&mut idle, now);
    idle.push(Idle { sender, since: now });
}

/// Drops the connections idle past [`IDLE_TIMEOUT`] at `now` (the oldest sit at the front).
fn drop_expired(idle: &mut Vec<Idle>, now: Instant) {
    let expired = idle
        .iter()
        .take_while(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT)
        .count();
    idle.drain(..expired);
}

/// Drops expired connections from `idle` every `every` until the pool is gone (a reload
/// replaced it): dropping a connection's sender closes it.
async fn sweep(idle: Weak<Mutex<Vec<Idle>>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = idle.upgrade() else {
            return;
        };
        if let Ok(mut list) = pool.lock() {
            drop_expired(&mut list, Instant::now());
        };
    }
}

/// The request target as an HTTP/1.1 origin-form URI (`/path?query`).
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use hyper_util::rt::TokioIo;

    use super::*;

    /// A live HTTP/1.1 client connection over an in-memory pipe (its peer never answers).
    async fn open_sender() -> SendRequest<Body> {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake(TokioIo::new(ours)).await.unwrap();
        tokio::spawn(async move {
            let _theirs = theirs;
            let _ = connection.await;
        });
        sender
    }

    fn idle_count(pool: &Http1Pool) -> usize {
        pool.idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_until_the_idle_timeout_then_dropped() {
        let pool = Http1Pool::new(Uri::from_static("http://127.0.0.1:9/"));
        let start = Instant::now();
        put(&pool.idle, open_sender().await, start);
        let almost = start + IDLE_TIMEOUT - Duration::from_secs(1);
        let reused = pool
            .take_idle(almost)
            .expect("a connection idle for 59 s is reused");
        put(&pool.idle, reused, start);
        assert!(pool.take_idle(start + IDLE_TIMEOUT).is_none());
        assert_eq!(idle_count(&pool), 0, "the expired connection was dropped");
    }

    #[tokio::test]
    async fn returning_a_connection_drops_the_expired_ones_and_the_newest_goes_out_first() {
        let pool = Http1Pool::new(Uri::from_static("http://127.0.0.1:9/"));
        let start = Instant::now();
        put(&pool.idle, open_sender().await, start);
        put(
            &pool.idle,
            open_sender().await,
            start + Duration::from_secs(30),
        );
        let later = start + IDLE_TIMEOUT + Duration::from_secs(1);
        put(&pool.idle, open_sender().await, later);
        assert_eq!(idle_count(&pool), 2, "the one from the start expired");
        pool.take_idle(later).unwrap();
        assert_eq!(
            pool.idle.lock().unwrap()[0].since,
            start + Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_that_falls_quiet_is_swept_and_the_sweep_ends_with_its_pool() {
        let pool = Http1Pool::new(Uri::from_static("http://127.0.0.1:9/"));
        put(&pool.idle, open_sender().await, Instant::now());
        let every = Duration::from_secs(15);
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&pool.idle), every));
        // Virtual time: the clock jumps while every task waits.
        tokio::time::sleep(IDLE_TIMEOUT - every).await;
        assert_eq!(idle_count(&pool), 1, "not idle for the timeout yet");
        tokio::time::sleep(2 * every).await;
        assert_eq!(idle_count(&pool), 0, "closed by the sweep with no request");
        drop(pool);
        tokio::time::sleep(2 * every).await;
        assert!(
            sweeper.is_finished(),
            "the sweep ends once its pool is gone"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_never_handed_out() {
        let pool = Http1Pool::new(Uri::from_static("http://127.0.0.1:9/"));
        let (ours, theirs) = tokio::io::duplex(1024);
        let (sender, connection) = http1::handshake(TokioIo::new(ours)).await.unwrap();
        let ended = tokio::spawn(connection);
        drop(theirs);
        let _ = ended.await;
        put(&pool.idle, sender, Instant::now());
        assert!(pool.take_idle(Instant::now()).is_none());
    }

    #[test]
    fn absolute_targets_go_out_in_origin_form() {
        let uri: Uri = "http://up.example:8080/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let bare: Uri = "http://up.example".parse().unwrap();
        assert_eq!(origin_form(&bare), "/");
    }
}
