//! The revocation-feed follower: keeps this process's in-memory revocation index (which the
//! request path reads) in step with the store's revocation log, which other processes — the
//! operator CLI, other gateways — append to as well.
//!
//! It owns the reader's side of the feed in one place: the start (the entries in force and a
//! cursor from one snapshot, so nothing falls in a gap), the cursor, and the loop that
//! catches up every [`POLL`]. Wake-ups by notification and a staleness clock (how long since
//! the follower last confirmed it is in sync) belong here too.
//!
//! The follower keeps its own cursor rather than deriving one from what the index holds: this
//! process applies its own revocations at once, out of log order. Entries it applied itself
//! come again through the feed, which is harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ticker::Ticker;
use crate::auth::revocation::RevocationIndex;
use crate::sessions::rules::expired_by;
use crate::store::{FeedCursor, Store, StoreError};

/// How often the feed is read for entries written by other processes (§6: within 1 s).
pub(super) const POLL: Duration = Duration::from_millis(250);

/// Follows the store's revocation feed into a [`RevocationIndex`].
pub(super) struct RevocationFollower {
    store: Arc<dyn Store>,
    index: Arc<RevocationIndex>,
    cursor: FeedCursor,
}

impl RevocationFollower {
    /// A new index holding every entry in force at `now` (epoch seconds; tokens verify
    /// `leeway` past their `exp`), and a follower resuming right after that snapshot.
    pub(super) async fn start(
        store: Arc<dyn Store>,
        now: i64,
        leeway: Duration,
    ) -> Result<RevocationFollower, StoreError> {
        let start = store.live_revocations(expired_by(now, leeway)).await?;
        let index = Arc::new(RevocationIndex::new());
        index.apply(&start.entries);
        Ok(RevocationFollower {
            store,
            index,
            cursor: start.cursor,
        })
    }

    /// The index this follower keeps up to date.
    pub(super) fn index(&self) -> Arc<RevocationIndex> {
        self.index.clone()
    }

    /// Applies what the feed holds past the cursor, then moves the cursor on. Returns how
    /// many entries came. On an error the cursor stays, so the next call reads them again.
    pub(super) async fn catch_up(&mut self) -> Result<usize, StoreError> {
        let page = self.store.revocations_since(&self.cursor).await?;
        self.index.apply(&page.entries);
        self.cursor = page.cursor;
        Ok(page.entries.len())
    }

    /// Catches up every [`POLL`] until `stop` fires.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let mut ticker = Ticker::new(POLL, stop);
        while ticker.next().await {
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, "cannot read the revocation log");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;
    use crate::store::{Session, SqliteStore};

    fn session(sid: &str, expires_at: i64) -> Session {
        Session {
            sid: sid.into(),
            user_id: 1,
            created_at: 1_000,
            expires_at,
            auth_time: 1_000,
            refresh_jti: format!("{sid}-r0"),
            retired_refresh: None,
            revoked: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_follower_starts_from_the_live_entries_and_applies_another_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.db");
        let writer = SqliteStore::open(&path).await.unwrap();
        for (sid, expires_at) in [("gone", 1_500), ("live", 5_000), ("later", 5_000)] {
            writer
                .create_session(&session(sid, expires_at))
                .await
                .unwrap();
        }
        writer.revoke_session("gone", 1_001).await.unwrap().unwrap();
        writer.revoke_session("live", 1_001).await.unwrap().unwrap();

        // At 1_520 with a 30 s leeway, "gone"'s tokens (exp 1_500) no longer verify.
        let reader: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let leeway = Duration::from_secs(30);
        let mut follower = RevocationFollower::start(reader, 1_530, leeway)
            .await
            .unwrap();
        let index = follower.index();
        assert!(index.is_revoked("j", "live", 1));
        assert!(!index.is_revoked("j", "gone", 1));
        assert_eq!(follower.catch_up().await.unwrap(), 0);

        writer
            .revoke_session("later", 1_600)
            .await
            .unwrap()
            .unwrap();
        assert!(!index.is_revoked("j", "later", 1));
        assert_eq!(follower.catch_up().await.unwrap(), 1);
        assert!(index.is_revoked("j", "later", 1));
        assert_eq!(follower.catch_up().await.unwrap(), 0);
    }
}
