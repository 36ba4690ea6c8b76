//! The gateway's background tasks: following the store's revocation feed (see
//! [`follower`](super::follower)) and pruning what has expired.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::follower::RevocationFollower;
use super::ticker::Ticker;
use crate::auth::limiter::LoginLimiter;
use crate::auth::revocation::RevocationIndex;
use crate::clock::Clock;
use crate::sessions::rules::expired_by;
use crate::store::health::probe;
use crate::store::Store;

/// How often expired revocations, sessions and failed-login counters are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often the store's writability is probed (one one-row write), so readiness notices a
/// locked, read-only or full database in quiet times and its recovery after a failed write.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// What the background tasks keep in step.
pub struct Background {
    /// Follows the revocation feed into the index.
    pub(super) follower: RevocationFollower,
    /// The store whose expired rows are pruned.
    pub store: Arc<dyn Store>,
    /// The in-memory revocation index the request path reads.
    pub revocations: Arc<RevocationIndex>,
    /// The failed-login limiter, whose empty counters are pruned.
    pub limiter: LoginLimiter,
    /// Session rows and revocation entries are kept this long past their expiry: their
    /// tokens still verify.
    pub leeway: Duration,
    /// Wall time.
    pub clock: Clock,
}

impl Background {
    /// Spawns the revocation-feed follower and the pruner; both stop when `stop` fires.
    pub fn spawn(self, stop: CancellationToken) {
        let Background {
            follower,
            store,
            revocations,
            limiter,
            leeway,
            clock,
        } = self;
        tokio::spawn(follower.run(stop.clone()));
        tokio::spawn(probe_writes(store.clone(), clock.clone(), stop.clone()));
        let pruner = Pruner {
            store,
            revocations,
            limiter,
            leeway,
            clock,
        };
        tokio::spawn(pruner.run(stop));
    }
}

/// Probes the store's writability every [`PROBE_EVERY`]; the watched store records the
/// outcome for `/readyz`.
async fn probe_writes(store: Arc<dyn Store>, clock: Clock, stop: CancellationToken) {
    let mut ticker = Ticker::new(PROBE_EVERY, stop);
    while ticker.next().await {
        let now_ms = i64::try_from(clock.since_epoch().as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = probe(store.as_ref(), now_ms).await {
            tracing::debug!(error = %e, "store write probe failed");
        }
    }
}

/// Drops what has expired from memory and from the store.
struct Pruner {
    store: Arc<dyn Store>,
    revocations: Arc<RevocationIndex>,
    limiter: LoginLimiter,
    leeway: Duration,
    clock: Clock,
}

impl Pruner {
    /// Drops expired revocations, login-limit windows and store rows, every [`PRUNE_EVERY`].
    async fn run(self, stop: CancellationToken) {
        let mut ticker = Ticker::new(PRUNE_EVERY, stop);
        while ticker.next().await {
            // Entries and session rows stay through the leeway: their tokens still verify.
            let expired_by = expired_by(self.clock.now(), self.leeway);
            self.revocations.prune(expired_by);
            if let Err(e) = self.limiter.prune().await {
                tracing::warn!(error = %e, "cannot prune the failed-login counters");
            }
            if let Err(e) = self.store.prune(expired_by).await {
                tracing::warn!(error = %e, "cannot prune the store");
            }
        }
    }
}
