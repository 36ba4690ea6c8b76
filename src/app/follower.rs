//! The revocation-feed follower: keeps this process's in-memory revocation index (which the
//! request path reads) in step with the store's revocation log, which other processes — the
//! operator CLI, other gateways — append to as well.
//!
//! It owns the reader's side of the feed in one place: the start (the entries in force and a
//! cursor from one snapshot, so nothing falls in a gap), the cursor, and the loop that
//! catches up every [`POLL`] — and at once whenever the store signals that another writer
//! announced entries (PostgreSQL's `NOTIFY`, which carries them: they are applied before the
//! read) or that it is listening again after a lost connection. The feed stays what the index
//! is confirmed against: a missed announcement only delays an entry to the next poll.
//!
//! With a staleness limit (PostgreSQL: `max_staleness`), a watchdog marks the index stale
//! when no read of the feed has succeeded for that long — authenticated requests then fail
//! closed — and in sync again after the next successful read. A read confirms what was
//! committed before it started, so the confirmation is stamped with its start.
//!
//! The follower keeps its own cursor rather than deriving one from what the index holds: this
//! process applies its own revocations at once, out of log order. Entries it applied itself
//! come again through the feed, which is harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ticker::Ticker;
use crate::auth::revocation::RevocationIndex;
use crate::sessions::rules::expired_by;
use crate::store::{FeedCursor, FeedSignal, FeedSignals, RevocationKind, Store, StoreError};

/// How often the feed is read for entries written by other processes (§6: within 1 s), when
/// nothing signals them sooner.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// A feed read that takes longer than this is abandoned (and retried at the next tick), so a
/// hung connection cannot stall the follower.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Follows the store's revocation feed into a [`RevocationIndex`].
pub(super) struct RevocationFollower {
    store: Arc<dyn Store>,
    index: Arc<RevocationIndex>,
    cursor: FeedCursor,
    /// When the last successful read started; watched by the staleness watchdog.
    confirmed: watch::Sender<Instant>,
    max_staleness: Option<Duration>,
    /// Since when reads fail, so a store that is down is logged once, not every poll.
    failing_since: Option<Instant>,
    /// Whether the index keeps the username map of legacy tokens (re-read from the store
    /// when the feed says users were added).
    directory: bool,
}

impl RevocationFollower {
    /// A new index holding every entry in force at `now` (epoch seconds; tokens verify
    /// `leeway` past their `exp`), and a follower resuming right after that snapshot. With
    /// `max_staleness`, the index turns stale when the follower has not confirmed it in sync
    /// for that long.
    pub(super) async fn start(
        store: Arc<dyn Store>,
        now: i64,
        leeway: Duration,
        max_staleness: Option<Duration>,
    ) -> Result<RevocationFollower, StoreError> {
        let started = Instant::now();
        let start = store.live_revocations(expired_by(now, leeway)).await?;
        let index = Arc::new(RevocationIndex::new());
        let cursor = start.cursor;
        index.apply_owned(start.entries);
        let (confirmed, _) = watch::channel(started);
        Ok(RevocationFollower {
            store,
            index,
            cursor,
            confirmed,
            max_staleness,
            failing_since: None,
            directory: false,
        })
    }

    /// When the last successful read of the feed started (the index is in sync as of then).
    pub(super) fn confirmed(&self) -> watch::Receiver<Instant> {
        self.confirmed.subscribe()
    }

    /// Loads the username map legacy tokens are read with (docs/http-api.md §7.5), and keeps it
    /// current from here on. Called right after [`RevocationFollower::start`]: a user created
    /// after the start's snapshot is announced on the feed, so none falls in between.
    pub(super) async fn load_directory(&mut self) -> Result<(), StoreError> {
        self.directory = true;
        self.reload_directory().await
    }

    async fn reload_directory(&self) -> Result<(), StoreError> {
        let users = self.store.list_users().await?;
        self.index
            .load_users(users.iter().map(|u| (u.id, u.username.as_str())));
        Ok(())
    }

    /// The index this follower keeps up to date.
    pub(super) fn index(&self) -> Arc<RevocationIndex> {
        self.index.clone()
    }

    /// Applies what the feed holds past the cursor, then moves the cursor on and confirms
    /// the index in sync as of the read's start. Returns how many entries came. On an error
    /// the cursor stays, so the next call reads them again.
    pub(super) async fn catch_up(&mut self) -> Result<usize, StoreError> {
        let started = Instant::now();
        let read = tokio::time::timeout(READ_TIMEOUT, self.store.revocations_since(&self.cursor));
        let page = read
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer within {READ_TIMEOUT:?}")))??;
        self.index.apply(&page.entries);
        let added_users = page
            .entries
            .iter()
            .any(|e| e.kind == RevocationKind::Directory);
        if self.directory && added_users {
            // The cursor stays until the map is read, so a failure retries both.
            self.reload_directory().await?;
        }
        self.cursor = page.cursor;
        self.confirmed.send_replace(started);
        Ok(page.entries.len())
    }

    /// Catches up every [`POLL`], and whenever the store signals, until `stop` fires; with a
    /// staleness limit, runs the watchdog beside it.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        if let Some(max) = self.max_staleness {
            let watchdog = Watchdog {
                index: self.index.clone(),
                confirmed: self.confirmed.subscribe(),
                max,
            };
            tokio::spawn(watchdog.run(stop.clone()));
        }
        let mut signals = self.store.feed_signals();
        let mut ticker = Ticker::new(POLL, stop.clone());
        loop {
            tokio::select! {
                more = ticker.next() => if !more { return },
                signal = next_signal(&mut signals) => match signal {
                    // Committed and durable: into the index before the feed is even read.
                    Some(FeedSignal::Appended(entries)) => self.index.apply(&entries),
                    Some(FeedSignal::Listening) => {}
                    None => {
                        // The store stopped signalling: polling alone from here on.
                        signals = None;
                        continue;
                    }
                },
            }
            let read = self.catch_up().await;
            self.log_outcome(read.map(|_| ()));
        }
    }

    /// Logs when reading the log starts failing and when it works again, not every poll.
    fn log_outcome(&mut self, read: Result<(), StoreError>) {
        match (read, self.failing_since) {
            (Err(e), None) => {
                tracing::warn!(error = %e, "cannot read the revocation log; retrying every poll");
                self.failing_since = Some(Instant::now());
            }
            (Err(e), Some(_)) => tracing::debug!(error = %e, "cannot read the revocation log"),
            (Ok(()), Some(since)) => {
                tracing::info!(failed_for = ?since.elapsed(), "reading the revocation log again");
                self.failing_since = None;
            }
            (Ok(()), None) => {}
        }
    }
}

/// The next store signal, or never when the store has none.
async fn next_signal(signals: &mut Option<FeedSignals>) -> Option<FeedSignal> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}

/// Marks the index stale once `max` has passed since the last confirmation, and in sync
/// again when a confirmation comes that is recent enough.
struct Watchdog {
    index: Arc<RevocationIndex>,
    confirmed: watch::Receiver<Instant>,
    max: Duration,
}

impl Watchdog {
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let deadline = *self.confirmed.borrow_and_update() + self.max;
            let stale = Instant::now() >= deadline;
            self.mark(stale);
            tokio::select! {
                () = stop.cancelled() => return,
                changed = self.confirmed.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline), if !stale => {}
            }
        }
    }

    fn mark(&self, stale: bool) {
        let was = self.index.set_stale(stale);
        if stale && !was {
            tracing::error!(
                max_staleness = ?self.max,
                "revocations not confirmed in sync for max_staleness: authenticated requests \
                 answer 503 until the revocation log can be read again"
            );
        } else if !stale && was {
            tracing::warn!("revocations in sync again: authenticated requests are served");
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
        let mut follower = RevocationFollower::start(reader, 1_530, leeway, None)
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod watchdog_tests {
    use super::*;

    /// Polls `cond` until it holds, failing after a generous deadline (never a fixed sleep).
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_index_turns_stale_no_sooner_than_max_staleness_and_recovers_on_a_fresh_confirmation(
    ) {
        let index = Arc::new(RevocationIndex::new());
        let start = Instant::now();
        let (confirmed, receiver) = watch::channel(start);
        let stop = CancellationToken::new();
        let max = Duration::from_millis(200);
        let watchdog = Watchdog {
            index: index.clone(),
            confirmed: receiver,
            max,
        };
        let task = tokio::spawn(watchdog.run(stop.clone()));
        until("stale", || index.is_stale()).await;
        assert!(start.elapsed() >= max, "stale after {:?}", start.elapsed());

        let again = Instant::now();
        confirmed.send_replace(again);
        until("in sync", || !index.is_stale()).await;
        until("stale again", || index.is_stale()).await;
        assert!(again.elapsed() >= max);
        stop.cancel();
        task.await.unwrap();
    }
}
