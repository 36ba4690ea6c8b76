//! Upgraded connections (WebSockets): once both sides have switched protocols the gateway
//! copies bytes both ways, and closes the tunnel when the token's session (or user, or the
//! token itself) is revoked, when the token expires (`exp` plus the leeway), or when the
//! gateway shuts down. hyper's graceful shutdown does not follow upgraded connections, so
//! they are tracked here.

use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::app::AppState;
use crate::auth::identity::Identity;
use crate::server::ConnectionSlot;

/// Tunnels an upgraded connection until either side closes or the gateway shuts down, and
/// for an authenticated one (`identity`) also until its token is revoked or expires. The
/// tunnel holds the connection's `slot`, so upgraded connections count against
/// `max_connections`.
pub fn tunnel(
    state: &Arc<AppState>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    identity: Option<Identity>,
    slot: ConnectionSlot,
) {
    let state = state.clone();
    let watch = identity.map(|identity| Watch {
        until_expiry: time_left(
            identity.expires_at,
            state.tokens.leeway(),
            state.clock.since_epoch(),
        ),
        identity,
    });
    tokio::spawn(async move {
        let _slot = slot;
        let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
            tracing::debug!("upgrade did not complete");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let ended = async {
            match &watch {
                Some(w) => w.ended(&state).await,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                super::forward::tunnel_ended(r);
                "closed"
            }
            r = ended => r,
            () = state.shutdown.cancelled() => "shutdown",
        };
        let user_id = watch.as_ref().map(|w| w.identity.user_id);
        tracing::info!(?user_id, reason, "upgraded connection ended");
    });
}

/// What ends an authenticated tunnel besides the peers: revocation of its token, session or
/// user, or the token's expiry.
struct Watch {
    identity: Identity,
    until_expiry: Duration,
}

impl Watch {
    async fn ended(&self, state: &AppState) -> &'static str {
        let mut changes = state.auth.revocation_changes();
        let revoked = async {
            loop {
                if state.auth.is_revoked(&self.identity) {
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
