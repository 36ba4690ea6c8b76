//! The gateway's background tasks: following the store's revocation log (other processes —
//! the CLI, other gateways — write to it too) and pruning what has expired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::auth::limiter::LoginLimiter;
use crate::auth::revocation::RevocationIndex;
use crate::clock::Clock;
use crate::sessions::rules::expired_by;
use crate::store::Store;

/// How often the revocation log is read for entries written by other processes (§6: ≤ 1 s).
const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// How often expired revocations, sessions and login-limit windows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the background tasks keep in step.
#[derive(Clone)]
pub struct Background {
    /// The store whose log is followed and whose expired rows are pruned.
    pub store: Arc<dyn Store>,
    /// The in-memory revocation index the request path reads.
    pub revocations: Arc<RevocationIndex>,
    /// The failed-login limiter, whose passed windows are pruned.
    pub limiter: Arc<LoginLimiter>,
    /// Session rows are kept this long past their expiry: their tokens still verify.
    pub leeway: Duration,
    /// Wall time.
    pub clock: Clock,
}

impl Background {
    /// Spawns the revocation-log follower (resuming after `cursor`) and the pruner; both stop
    /// when `stop` fires.
    ///
    /// The follower keeps its own cursor into the log rather than the index's highest applied
    /// `seq`: this process applies its own revocations at once, and they may carry a higher
    /// `seq` than another process's entry committed just before and not yet read.
    pub fn spawn(self, cursor: i64, stop: CancellationToken) {
        tokio::spawn(self.clone().poll_revocations(cursor, stop.clone()));
        tokio::spawn(self.prune_expired(stop));
    }

    /// Applies revocation-log entries written since `cursor`, every [`REVOCATION_POLL`].
    async fn poll_revocations(self, mut cursor: i64, stop: CancellationToken) {
        let mut tick = interval(REVOCATION_POLL);
        while next_tick(&mut tick, &stop).await {
            match self.store.revocations_since(cursor).await {
                Ok(entries) => {
                    if let Some(last) = entries.iter().map(|e| e.seq).max() {
                        cursor = cursor.max(last);
                        self.revocations.apply(&entries);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the revocation log"),
            }
        }
    }

    /// Drops expired revocations, login-limit windows and store rows, every [`PRUNE_EVERY`].
    async fn prune_expired(self, stop: CancellationToken) {
        let mut tick = interval(PRUNE_EVERY);
        while next_tick(&mut tick, &stop).await {
            // Entries and session rows stay through the leeway: their tokens still verify.
            let expired_by = expired_by(self.clock.now(), self.leeway);
            self.revocations.prune(expired_by);
            self.limiter.prune(Instant::now());
            if let Err(e) = self.store.prune(expired_by).await {
                tracing::warn!(error = %e, "cannot prune the store");
            }
        }
    }
}

/// A ticker that, after a stall, waits a full period rather than firing a burst.
fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next tick; false once `stop` fires.
async fn next_tick(tick: &mut tokio::time::Interval, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        _ = tick.tick() => true,
    }
}
