//! Upgraded connections (WebSockets): once both sides have switched protocols the gateway
//! copies bytes both ways, and closes the tunnel when the token's session (or user, or the
//! token itself) is revoked, when the token expires (`exp` plus the leeway), or when the
//! gateway shuts down. hyper's graceful shutdown does not follow upgraded connections, so
//! they are tracked here.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::authenticator::Authenticator;
use crate::auth::identity::Identity;
use crate::clock::Clock;
use crate::server::ConnectionSlot;

/// What a tunnel needs to know when to close: built once, shared by every tunnel.
#[derive(Debug, Clone)]
pub struct Tunnels {
    auth: Arc<Authenticator>,
    leeway: Duration,
    shutdown: CancellationToken,
    clock: Clock,
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
        }
    }

    /// Tunnels an upgraded connection until either side closes or the gateway shuts down,
    /// and for an authenticated one (`identity`) also until its token is revoked or expires.
    /// The tunnel holds the connection's `slot`, so upgraded connections count against
    /// `max_connections`.
    pub fn open(
        &self,
        client: OnUpgrade,
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
        // The tunnel outlives the request; its lines still carry the request's span.
        let tunnel = async move {
            let _slot = slot;
            let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
                tracing::debug!("upgrade did not complete");
                return;
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            let ended = async {
                match &watch {
                    Some(w) => w.ended(&auth).await,
                    None => std::future::pending().await,
                }
            };
            let reason = tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    tunnel_ended(r);
                    "closed"
                }
                r = ended => r,
                () = shutdown.cancelled() => "shutdown",
            };
            let user_id = watch.as_ref().map(|w| w.identity.user_id);
            tracing::info!(user_id, reason, "upgraded connection ended");
        };
        tokio::spawn(tunnel.in_current_span());
    }
}

/// What ends an authenticated tunnel besides the peers: revocation of its token, session or
/// user, or the token's expiry.
struct Watch {
    identity: Identity,
    until_expiry: Duration,
}

impl Watch {
    async fn ended(&self, auth: &Authenticator) -> &'static str {
        let mut changes = auth.revocation_changes();
        let revoked = async {
            loop {
                if auth.is_revoked(&self.identity) {
                    return "revoked";
                }
                if changes.changed().await.is_err() {
                    // The index is gone with the gateway: shutdown closes the tunnel.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            r = revoked => r,
            () = tokio::time::sleep(self.until_expiry) => "token expired",
        }
    }
}

/// Time from `now` (since the epoch) until `exp` plus the leeway has passed.
fn time_left(exp: u64, leeway: Duration, now: Duration) -> Duration {
    (Duration::from_secs(exp) + leeway).saturating_sub(now)
}

/// An io error from a closed tunnel is expected; anything else is logged at debug.
fn tunnel_ended(result: io::Result<(u64, u64)>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
