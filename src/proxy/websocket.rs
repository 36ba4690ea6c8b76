//! Upgraded connections (WebSockets): once both sides have switched protocols the gateway
//! copies bytes both ways, and closes the tunnel when the token's session (or user, or the
//! token itself) is revoked, when the token expires (`exp` plus the leeway), or when the
//! gateway shuts down. hyper's graceful shutdown does not follow upgraded connections, so
//! they are tracked here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::app::AppState;
use crate::auth::claims::Claims;

/// Tunnels an authenticated upgrade until revocation, expiry or shutdown.
pub fn tunnel(state: &Arc<AppState>, client: OnUpgrade, upstream: OnUpgrade, claims: &Claims) {
    let state = state.clone();
    let jti = claims.jti.clone();
    let sid = claims.sid.clone();
    let user_id = claims.user_id();
    let until_expiry = time_left(claims.exp, state.tokens.leeway());
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
            tracing::debug!("upgrade did not complete");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let mut revocations = state.revocations.subscribe();
        let revoked = async {
            loop {
                if state.revocations.is_revoked(&jti, &sid, user_id) {
                    return "revoked";
                }
                if revocations.changed().await.is_err() {
                    // The index is gone with the gateway: shutdown closes the tunnel.
                    std::future::pending::<()>().await;
                }
            }
        };
        let reason = tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                super::forward::tunnel_ended(r);
                "closed"
            }
            r = revoked => r,
            () = tokio::time::sleep(until_expiry) => "token expired",
            () = state.shutdown.cancelled() => "shutdown",
        };
        tracing::info!(user_id, reason, "upgraded connection ended");
    });
}

/// Tunnels an upgrade on a public route until either side closes or the gateway shuts down.
pub fn tunnel_public(state: &Arc<AppState>, client: OnUpgrade, upstream: OnUpgrade) {
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => super::forward::tunnel_ended(r),
            () = shutdown.cancelled() => {}
        }
    });
}

/// Time until `exp` plus the leeway has passed.
fn time_left(exp: u64, leeway: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (Duration::from_secs(exp) + leeway).saturating_sub(now)
}
