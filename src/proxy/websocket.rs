//! Upgraded connections (WebSockets): once both sides have switched protocols the gateway
//! copies bytes both ways, and closes the tunnel when the token's session (or user, or the
//! token itself) is revoked, when the token expires (`exp` plus the leeway), or when the
//! gateway shuts down. hyper's graceful shutdown does not follow upgraded connections, so
//! they are tracked here.
//!
//! A tunnel the gateway closes ends the WebSocket way: each direction finishes the frame in
//! flight, then the gateway writes a close frame of its own (1008 "token revoked" or "token
//! expired", 1001 on shutdown) — unmasked to the client, masked to the upstream — and reads
//! whatever the peer still sends until it closes too, so the close frame is not lost to a TCP
//! reset. Only frame headers are read ([`frames`]); payloads and extensions pass untouched.

mod frames;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use frames::{close_frame, FrameTracker, Towards};

use crate::auth::authenticator::Authenticator;
use crate::auth::identity::Identity;
use crate::clock::Clock;
use crate::server::upgrade::ClientUpgrade;
use crate::server::ConnectionSlot;

/// What a tunnel needs to know when to close: built once, shared by every tunnel.
#[derive(Debug, Clone)]
pub struct Tunnels {
    auth: Arc<Authenticator>,
    leeway: Duration,
    shutdown: CancellationToken,
    clock: Clock,
    /// Tunnels open now (for `/metrics`).
    open: Arc<AtomicUsize>,
}

impl Tunnels {
    /// Tunnels that re-check identities with `auth`, allow `leeway` past a token's `exp`, and
    /// close when `shutdown` fires.
    pub fn new(
        auth: Arc<Authenticator>,
        leeway: Duration,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        Self {
            auth,
            leeway,
            shutdown,
            clock,
            open: Arc::default(),
        }
    }

    /// The number of tunnels open, shared: it changes as tunnels open and close.
    pub fn open_count(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Tunnels an upgraded connection until either side closes or the gateway shuts down,
    /// and for an authenticated one (`identity`) also until its token is revoked or expires.
    /// The tunnel holds the connection's `slot`, so upgraded connections count against
    /// `max_connections`.
    pub fn open(
        &self,
        client: ClientUpgrade,
        upstream: OnUpgrade,
        identity: Option<Identity>,
        slot: ConnectionSlot,
    ) {
        let watch = identity.map(|identity| Watch {
            until_expiry: time_left(identity.expires_at, self.leeway, self.clock.since_epoch()),
            identity,
        });
        let auth = self.auth.clone();
        let shutdown = self.shutdown.clone();
        let open = OpenTunnel::count(&self.open);
        // The tunnel outlives the request; its lines still carry the request's span.
        let tunnel = async move {
            let _slot = slot;
            let _open = open;
            let (Some(client), Ok(upstream)) = (client.finish().await, upstream.await) else {
                tracing::debug!("upgrade did not complete");
                return;
            };
            let ended = async {
                let by_token = async {
                    match &watch {
                        Some(w) => w.ended(&auth).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    e = by_token => e,
                    () = shutdown.cancelled() => Ending::Shutdown,
                }
            };
            let outcome = relay(client, TokioIo::new(upstream), ended).await;
            let user_id = watch.as_ref().map(|w| w.identity.user_id);
            tracing::info!(user_id, reason = outcome, "upgraded connection ended");
        };
        tokio::spawn(tunnel.in_current_span());
    }
}

/// Counts one tunnel as open until dropped.
struct OpenTunnel(Arc<AtomicUsize>);

impl OpenTunnel {
    fn count(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why the gateway closes a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The token, its session or its user was revoked.
    Revoked,
    /// The token's `exp` plus the leeway has passed.
    Expired,
    /// The gateway is shutting down.
    Shutdown,
}

impl Ending {
    /// The close frame's status code (RFC 6455 §7.4.1): policy violation, or going away.
    fn code(self) -> u16 {
        match self {
            Self::Revoked | Self::Expired => 1008,
            Self::Shutdown => 1001,
        }
    }

    /// The close frame's reason, also the log's.
    fn reason(self) -> &'static str {
        match self {
            Self::Revoked => "token revoked",
            Self::Expired => "token expired",
            Self::Shutdown => "shutting down",
        }
    }
}

/// How long a closing tunnel may take to reach a frame boundary, write its close frames and
/// see the peers close; after that its connections are dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes read at a time in each direction.
const BUFFER: usize = 16 * 1024;

/// Copies frames both ways until a peer closes (`"closed"`) or `ended` says why the gateway
/// closes the tunnel; then closes it the WebSocket way within [`CLOSE_GRACE`] (`"cut"` when
/// that ran out). Returns what the log says.
async fn relay<C, U>(client: C, upstream: U, ended: impl Future<Output = Ending>) -> &'static str
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (closing, close_rx) = watch::channel(None);
    let (from_client, to_client) = tokio::io::split(client);
    let (from_upstream, to_upstream) = tokio::io::split(upstream);
    let both = async {
        tokio::join!(
            pump(from_client, to_upstream, Towards::Server, close_rx.clone()),
            pump(from_upstream, to_client, Towards::Client, close_rx),
        )
    };
    tokio::pin!(both);
    let ending = tokio::select! {
        _ = &mut both => return "closed",
        e = ended => e,
    };
    let _ = closing.send(Some(ending));
    match tokio::time::timeout(CLOSE_GRACE, both).await {
        Ok(_) => ending.reason(),
        Err(_) => "cut",
    }
}

/// One direction of a tunnel: copies `src` to `dst`, tracking frame boundaries. When the
/// tunnel closes, finishes the frame in flight, writes the close frame, shuts `dst` down and
/// reads `src` until it ends. A peer that closes is passed on as a shutdown of `dst`.
async fn pump<R, W>(
    mut src: R,
    mut dst: W,
    towards: Towards,
    mut close: watch::Receiver<Option<Ending>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameTracker::new();
    let mut buf = vec![0u8; BUFFER];
    let mut ending: Option<Ending> = None;
    let mut watching = true;
    let ending = loop {
        if let Some(e) = ending.filter(|_| frames.at_boundary()) {
            break e;
        }
        // Biased: the order to close is seen before bytes read after it. The other direction
        // writes its close frame as soon as it sees the order, and the peer's reply to that
        // (a close frame) must not be passed on ahead of ours: two close frames make a browser
        // fail the connection (1006) instead of reporting our code.
        let n = tokio::select! {
            biased;
            changed = close.changed(), if watching && ending.is_none() => {
                match changed {
                    Ok(()) => ending = *close.borrow_and_update(),
                    // Nothing will ask to close any more.
                    Err(_) => watching = false,
                }
                continue;
            }
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = dst.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        let data = &buf[..n];
        // Once closing, only the rest of the frame in flight is passed on.
        let pass = if ending.is_some() {
            frames.advance(data)
        } else {
            frames.skip(data);
            n
        };
        if dst.write_all(&data[..pass]).await.is_err() || dst.flush().await.is_err() {
            return;
        }
    };
    // A close frame already passed this way (the peer closed first): one is all a side gets,
    // and that peer sends nothing more.
    if frames.closed() {
        let _ = dst.shutdown().await;
        return;
    }
    let frame = close_frame(ending.code(), ending.reason(), towards);
    if dst.write_all(&frame).await.is_ok() && dst.flush().await.is_ok() {
        let _ = dst.shutdown().await;
    }
    // What the peer still sends is read and dropped until its own close frame (the closing
    // handshake is complete) or its end: closing with unread bytes would reset the connection
    // and could lose our close frame on the way.
    while let Ok(n @ 1..) = src.read(&mut buf).await {
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let used = frames.advance(rest);
            rest = &rest[used..];
            if frames.closed() {
                return;
            }
        }
    }
}

/// What ends an authenticated tunnel besides the peers: revocation of its token, session or
/// user, or the token's expiry.
struct Watch {
    identity: Identity,
    until_expiry: Duration,
}

impl Watch {
    async fn ended(&self, auth: &Authenticator) -> Ending {
        let mut changes = auth.revocation_changes();
        let revoked = async {
            loop {
                if auth.is_revoked(&self.identity) {
                    return Ending::Revoked;
                }
                if changes.changed().await.is_err() {
                    // The index is gone with the gateway: shutdown closes the tunnel.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            r = revoked => r,
            () = tokio::time::sleep(self.until_expiry) => Ending::Expired,
        }
    }
}

/// Time from `now` (since the epoch) until `exp` plus the leeway has passed.
fn time_left(exp: u64, leeway: Duration, now: Duration) -> Duration {
    (Duration::from_secs(exp) + leeway).saturating_sub(now)
}
