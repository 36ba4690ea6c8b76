//! Whether the store accepts writes, for readiness: a load balancer must stop sending logins
//! and logouts to an instance whose database is locked, read-only or full.
//!
//! [`WatchedStore`] wraps any [`Store`] and records the outcome of every real write (a
//! client's mistake such as a taken username is an accepted write; a busy, unavailable or
//! failing database is not). [`probe`] is the cheap periodic check for quiet times: one
//! one-row write (a lapsed reservation on a counter no login uses), run by a background task
//! every few seconds and never by `/readyz` itself, which only reads the recorded state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{
    CounterKey, CounterTimes, FeedCursor, FeedPage, FeedSignals, LoginFinish, LoginReserve,
    Reservation, Revocation, RevocationKind, Session, SessionSweep, Store, StoreError, StoreFuture,
    User, UserWithHash,
};

/// The counter the probe writes: `/` is in no username, so no login or unlock meets it.
const PROBE_KEY: &str = "/health-probe";

/// The outcome of the latest-started write that has finished, shared by the watched store and
/// the readiness check. Writes are numbered when they start, and a write that finishes after
/// a later-started one has been recorded does not overwrite it: a probe stuck behind a lock
/// that has since been released cannot undo the success of a write that came after it.
#[derive(Debug)]
pub struct WriteHealth {
    /// Numbers handed to writes as they start.
    started: AtomicU64,
    /// (number of the write last recorded, whether it was accepted).
    last: Mutex<(u64, bool)>,
    failures: AtomicU64,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            started: AtomicU64::new(1),
            last: Mutex::new((0, true)),
            failures: AtomicU64::new(0),
        }
    }
}

impl WriteHealth {
    /// Whether the latest write (real or probe) was accepted by the database.
    pub fn is_writable(&self) -> bool {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// Writes the database failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A number for a write about to start; pass it to [`WriteHealth::record`].
    pub fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the outcome of write number `seq` (from [`WriteHealth::start`]), unless a
    /// later-started write's outcome is already recorded.
    pub fn record<T>(&self, seq: u64, result: &Result<T, StoreError>) {
        let accepted = match result {
            Ok(_) => true,
            Err(e) => e.is_refusal(),
        };
        if !accepted {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let was = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if seq < last.0 {
                return;
            }
            std::mem::replace(&mut *last, (seq, accepted)).1
        };
        if was != accepted {
            if accepted {
                tracing::info!("the store accepts writes again");
            } else if let Err(e) = result {
                tracing::warn!(error = %e, "the store refused a write: not ready");
            }
        }
    }
}

/// One small real write, recorded in `store`'s health when `store` is a [`WatchedStore`]:
/// a reservation on the probe counter whose lease has already lapsed (so it never counts),
/// at `now_ms`. Pruning removes the row like any idle counter.
pub async fn probe(store: &dyn Store, now_ms: i64) -> Result<(), StoreError> {
    let reserve = LoginReserve {
        counters: vec![(
            CounterKey {
                username: PROBE_KEY.into(),
                address: String::new(),
            },
            u32::MAX,
        )],
        times: CounterTimes {
            now: now_ms,
            window_from: now_ms,
        },
        lease_until: now_ms,
    };
    store.reserve_login(reserve).await.map(|_| ())
}

/// A [`Store`] whose writes record their outcome in a [`WriteHealth`].
pub struct WatchedStore {
    inner: Arc<dyn Store>,
    health: Arc<WriteHealth>,
}

impl WatchedStore {
    /// Wraps `inner`, recording into `health`.
    pub fn new(inner: Arc<dyn Store>, health: Arc<WriteHealth>) -> Self {
        Self { inner, health }
    }

    /// Runs a write and records its outcome.
    fn watch<'a, T: Send + 'a>(&'a self, write: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        let seq = self.health.start();
        Box::pin(async move {
            let result = write.await;
            self.health.record(seq, &result);
            result
        })
    }
}

impl Store for WatchedStore {
    fn create_user<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
        roles: Vec<String>,
        now: i64,
    ) -> StoreFuture<'a, User> {
        self.watch(self.inner.create_user(username, password_hash, roles, now))
    }

    fn user_by_name<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserWithHash>> {
        self.inner.user_by_name(username)
    }

    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<User>> {
        self.inner.user_by_id(id)
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        self.inner.list_users()
    }

    fn set_password<'a>(
        &'a self,
        user_id: i64,
        new_hash: &'a str,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        self.watch(self.inner.set_password(user_id, new_hash, sweep))
    }

    fn set_disabled<'a>(
        &'a self,
        user_id: i64,
        disabled: bool,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        self.watch(self.inner.set_disabled(user_id, disabled, sweep))
    }

    fn delete_user(
        &self,
        id: i64,
        now: i64,
        covers_until: i64,
    ) -> StoreFuture<'_, Option<Vec<Revocation>>> {
        self.watch(self.inner.delete_user(id, now, covers_until))
    }

    fn grant_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        self.watch(self.inner.grant_role(username, role))
    }

    fn revoke_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        self.watch(self.inner.revoke_role(username, role))
    }

    fn create_session<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        self.watch(self.inner.create_session(session))
    }

    fn session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        self.inner.session(sid)
    }

    fn swap_refresh<'a>(
        &'a self,
        sid: &'a str,
        expected_jti: &'a str,
        new_jti: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        self.watch(self.inner.swap_refresh(sid, expected_jti, new_jti, now))
    }

    fn set_auth_time<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, bool> {
        self.watch(self.inner.set_auth_time(sid, now))
    }

    fn revoke_session<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, Option<Revocation>> {
        self.watch(self.inner.revoke_session(sid, now))
    }

    fn revoke_user_sessions<'a>(
        &'a self,
        user_id: i64,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        self.watch(self.inner.revoke_user_sessions(user_id, sweep))
    }

    fn revocations_since<'a>(&'a self, cursor: &'a FeedCursor) -> StoreFuture<'a, FeedPage> {
        self.inner.revocations_since(cursor)
    }

    fn live_revocations(&self, expired_by: i64) -> StoreFuture<'_, FeedPage> {
        self.inner.live_revocations(expired_by)
    }

    fn prune(&self, expired_by: i64) -> StoreFuture<'_, usize> {
        self.watch(self.inner.prune(expired_by))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.inner.ping()
    }

    fn append_revocation(
        &self,
        kind: RevocationKind,
        covers_until: i64,
    ) -> StoreFuture<'_, Revocation> {
        self.watch(self.inner.append_revocation(kind, covers_until))
    }

    fn exchange_legacy<'a>(
        &'a self,
        legacy_jti: &'a str,
        legacy_exp: i64,
        session: &'a Session,
    ) -> StoreFuture<'a, Option<Session>> {
        self.watch(self.inner.exchange_legacy(legacy_jti, legacy_exp, session))
    }

    fn legacy_exchange_of<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<(String, i64)>> {
        self.inner.legacy_exchange_of(sid)
    }

    fn legacy_session_of<'a>(&'a self, legacy_jti: &'a str) -> StoreFuture<'a, Option<String>> {
        self.inner.legacy_session_of(legacy_jti)
    }

    fn rehash_password<'a>(
        &'a self,
        user_id: i64,
        old_hash: &'a str,
        new_hash: &'a str,
    ) -> StoreFuture<'a, bool> {
        self.watch(self.inner.rehash_password(user_id, old_hash, new_hash))
    }

    fn password_hash_samples(&self) -> StoreFuture<'_, Vec<String>> {
        self.inner.password_hash_samples()
    }

    fn feed_signals(&self) -> Option<FeedSignals> {
        self.inner.feed_signals()
    }

    fn reserve_login(&self, reserve: LoginReserve) -> StoreFuture<'_, Reservation> {
        self.watch(self.inner.reserve_login(reserve))
    }

    fn finish_login(&self, finish: LoginFinish) -> StoreFuture<'_, ()> {
        self.watch(self.inner.finish_login(finish))
    }

    fn clear_login_failures<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize> {
        self.watch(self.inner.clear_login_failures(username))
    }

    fn prune_login_counters(&self, times: CounterTimes) -> StoreFuture<'_, usize> {
        self.watch(self.inner.prune_login_counters(times))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_accepted_writes_and_database_failures_are_not() {
        let h = WriteHealth::default();
        assert!(h.is_writable());
        h.record::<()>(h.start(), &Err(StoreError::Busy));
        assert!(!h.is_writable());
        h.record::<()>(h.start(), &Err(StoreError::UsernameTaken));
        assert!(h.is_writable());
        h.record::<()>(
            h.start(),
            &Err(StoreError::Internal("disk I/O error".into())),
        );
        h.record::<()>(h.start(), &Err(StoreError::Unavailable("gone".into())));
        assert!(!h.is_writable());
        assert_eq!(h.failures(), 3);
        h.record(h.start(), &Ok(()));
        assert!(h.is_writable());
    }

    #[test]
    fn a_write_that_started_earlier_and_failed_later_does_not_undo_a_later_success() {
        let h = WriteHealth::default();
        let stuck_probe = h.start();
        let logout = h.start();
        h.record(logout, &Ok(()));
        h.record::<()>(stuck_probe, &Err(StoreError::Busy));
        assert!(h.is_writable());
        assert_eq!(h.failures(), 1, "still counted as a failure");
    }

    #[test]
    fn a_probe_reading_is_never_counted_against_a_login() {
        // The probe's lease has lapsed when written: a reading at any later time shows no
        // check in flight and no failure.
        let stored = super::super::StoredCounter {
            window_start: 0,
            failures: 0,
            pending: 1,
            pending_until: 1_000,
        };
        let times = CounterTimes {
            now: 1_000,
            window_from: 0,
        };
        assert_eq!(times.read(&stored), super::super::CounterReading::default());
    }
}
