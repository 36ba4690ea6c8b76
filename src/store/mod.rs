//! The store: users, login sessions and the revocation log.
//!
//! [`Store`] is the interface the gateway and the CLI use (as `Arc<dyn Store>`): async, and
//! data only. It offers atomic data operations (a compare-and-swap of a session's refresh
//! token, a revocation together with its log entry, a password change together with the
//! revocations it sweeps) while the session rules that decide when to call them live in
//! `sessions/`. The revocation log is read as a resumable [`feed`]. Times are seconds since
//! the epoch and always passed in by the caller, so tests control them.
//!
//! All SQL lives below this module and runs off the async reactor threads: [`SqliteStore`] is
//! the embedded implementation, [`PostgresStore`] the one several replicas share. Each backend
//! has its folder, its migrations, a branch in [`open`] and [`check`], and passes the
//! conformance suite in `tests/store/`.

pub mod feed;
pub mod health;
mod model;
mod postgres;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{StoreConfig, StoreUrl};

pub use feed::{FeedCursor, FeedPage, FeedSignal, FeedSignals};
pub use model::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store `config` names (creating an SQLite file and its folder on first use;
/// bringing a PostgreSQL database's schema up to date). The gateway and the operator CLI both
/// open their store here. Messages never hold a password.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, String> {
    match &config.url {
        StoreUrl::Sqlite(path) => match SqliteStore::open(path).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(format!("cannot open the store {}: {e}", path.display())),
        },
        StoreUrl::Postgres(url) => match PostgresStore::open(url, config.pool_size).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(format!("cannot open the store {url}: {e}")),
        },
    }
}

/// Checks the store `url` names without creating anything (for `check-config`): an existing
/// SQLite database must be one this build can use. A PostgreSQL URL was checked offline when
/// the configuration was read; nothing connects here. Blocking; it runs before any runtime
/// starts.
pub fn check(url: &StoreUrl) -> Result<(), StoreError> {
    match url {
        StoreUrl::Sqlite(path) => SqliteStore::check(path),
        StoreUrl::Postgres(_) => Ok(()),
    }
}

/// Refuses a database whose schema `version` is not one of this build's `0..=latest`: one
/// written by a newer build means tables this one does not understand.
pub(crate) fn ensure_known_version(version: i64, latest: i64) -> Result<(), StoreError> {
    if version > latest {
        return Err(StoreError::Schema(format!(
            "the database has schema version {version}, but this build of authgate only knows \
             versions up to {latest}; run a newer authgate"
        )));
    }
    if version < 0 {
        return Err(StoreError::Schema(format!(
            "the database has an invalid schema version {version}"
        )));
    }
    Ok(())
}

/// The future every [`Store`] method returns; boxed so the trait stays dyn-compatible.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store call failed.
///
/// The messages never hold SQL text, password hashes or token ids; still, callers log them and
/// answer clients with a generic `internal` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A user with this name (compared case-insensitively) already exists.
    #[error("username already taken")]
    UsernameTaken,
    /// The user (or session) the call names does not exist.
    #[error("not found")]
    NotFound,
    /// The database stayed locked by another connection or process past the busy timeout.
    #[error("the store is busy: the database stayed locked past the busy timeout")]
    Busy,
    /// The file is not an SQLite database, or is damaged.
    #[error("the store file is corrupt or not an SQLite database")]
    Corrupt,
    /// The database schema is not one this build can use (e.g. written by a newer version).
    #[error("store schema problem: {0}")]
    Schema(String),
    /// The database server cannot be reached (refused, connection lost, pool exhausted);
    /// worth retrying later. Answered `503`.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A session was to start for a user an operator has disabled (answered like a wrong
    /// password).
    #[error("the user is disabled")]
    UserDisabled,
    /// Anything else (I/O, an unexpected SQLite error); details for the log.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// A refusal the data decided (a taken name, a missing or disabled user): the answer of a
    /// store that works, as opposed to one that could not do the work.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::UsernameTaken | StoreError::NotFound | StoreError::UserDisabled
        )
    }
}

/// Users, login sessions and the revocation log.
///
/// Every method runs its work off the reactor threads. Methods that change several rows do so
/// in one transaction; the revocation entries they return are already durable.
pub trait Store: Send + Sync + 'static {
    /// Creates a user with the given roles. [`StoreError::UsernameTaken`] when the name exists
    /// case-insensitively (decided by a UNIQUE constraint, so concurrent registrations of one
    /// name yield exactly one user).
    fn create_user<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
        roles: Vec<String>,
        now: i64,
    ) -> StoreFuture<'a, User>;

    /// Looks a user up by name, case-insensitively, with the password hash.
    fn user_by_name<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserWithHash>>;

    /// Looks a user up by id.
    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<User>>;

    /// Every user, by id.
    fn list_users(&self) -> StoreFuture<'_, Vec<User>>;

    /// Replaces the password hash and revokes the user's sessions that `sweep` selects, in one
    /// transaction (a login racing the change is revoked or starts after it). Returns the
    /// appended `Session` entries, each covering its session's tokens until the session's
    /// `expires_at`. [`StoreError::NotFound`] for an unknown user.
    fn set_password<'a>(
        &'a self,
        user_id: i64,
        new_hash: &'a str,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>>;

    /// Disables (`true`) or enables user `user_id`. Disabling also revokes the sessions
    /// `sweep` selects, in the same transaction, and from then on [`Store::create_session`]
    /// refuses the user with [`StoreError::UserDisabled`]: a login racing the change is either
    /// revoked or refused. Enabling revokes nothing. Returns the appended `Session` entries.
    /// [`StoreError::NotFound`] for an unknown user.
    fn set_disabled<'a>(
        &'a self,
        user_id: i64,
        disabled: bool,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>>;

    /// Deletes the user and their roles, marks their sessions revoked at `now` and appends a
    /// `User(id)` entry covering tokens until `covers_until`, in one transaction. Returns the
    /// appended entries, or `None` when there is no such user.
    fn delete_user(
        &self,
        id: i64,
        now: i64,
        covers_until: i64,
    ) -> StoreFuture<'_, Option<Vec<Revocation>>>;

    /// Grants a role; `true` if the user did not have it yet. [`StoreError::NotFound`] for an
    /// unknown user (matched case-insensitively).
    fn grant_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool>;

    /// Takes a role away; `true` if the user had it. [`StoreError::NotFound`] for an unknown
    /// user (matched case-insensitively).
    fn revoke_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool>;

    /// Records a new login session; [`StoreError::UserDisabled`] when its user is disabled.
    fn create_session<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()>;

    /// Looks a session up, revoked or not, with its retired refresh token. Reads the latest
    /// committed state: a token the caller holds was issued after its session row said so.
    fn session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Compare-and-swap of the current refresh token: when session `sid` is not revoked and
    /// its current refresh `jti` is `expected_jti`, makes `new_jti` current and records
    /// `expected_jti` as retired at `now` — as one atomic step (SQL:
    /// `UPDATE … WHERE sid = ? AND refresh_jti = ? AND revoked_at IS NULL`). `true` when it
    /// swapped. Of concurrent swaps from one `expected_jti`, in this process or any other
    /// sharing the database, exactly one wins; the losers re-read the session to learn why.
    fn swap_refresh<'a>(
        &'a self,
        sid: &'a str,
        expected_jti: &'a str,
        new_jti: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool>;

    /// Sets the session's `auth_time` (step-up). `false` when the session is unknown or revoked.
    fn set_auth_time<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, bool>;

    /// Revokes one session at `now` and appends its `Session` entry (covering its tokens until
    /// the session's `expires_at`), in one transaction. `None` when the session is unknown or
    /// already revoked — of concurrent calls, exactly one gets the entry.
    fn revoke_session<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, Option<Revocation>>;

    /// Revokes the sessions of a user that `sweep` selects and appends their entries, in one
    /// transaction (CLI `user logout-all`). [`StoreError::NotFound`] for an unknown user.
    fn revoke_user_sessions<'a>(
        &'a self,
        user_id: i64,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>>;

    /// The revocation feed from where `cursor` stands: entries committed since, in `seq`
    /// order, and the cursor to resume from. Complete whatever order concurrent writers commit
    /// in (see [`feed`] for the guarantee and what it takes); entries may repeat.
    fn revocations_since<'a>(&'a self, cursor: &'a FeedCursor) -> StoreFuture<'a, FeedPage>;

    /// The start of a reader: the log entries that cover a token expiring after `expired_by`
    /// (`covers_until > expired_by`), in `seq` order, and a cursor from the same snapshot, so
    /// that following the feed from it misses nothing committed since.
    fn live_revocations(&self, expired_by: i64) -> StoreFuture<'_, FeedPage>;

    /// Deletes log entries with `covers_until <= expired_by` and sessions with `expires_at <=
    /// expired_by`: the session domain passes a time by which no token they concern can still
    /// verify. Returns the rows deleted.
    fn prune(&self, expired_by: i64) -> StoreFuture<'_, usize>;

    /// Checks that the database answers (readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Announcements for a follower of the revocation feed, when writers announce their
    /// entries (PostgreSQL: a `NOTIFY` carrying the entry in the writing transaction, heard on
    /// a dedicated `LISTEN` connection). `None` when the store has none and followers poll
    /// (SQLite). An announced entry is committed; the feed still delivers it, in order, and
    /// stays what a follower confirms itself against.
    fn feed_signals(&self) -> Option<FeedSignals> {
        None
    }

    // ---- migrating from flask-jwt-extended (docs/http-api.md §7.5) ----

    /// Appends one entry to the revocation log (a legacy token's `jti`, a legacy cut-off, a
    /// directory change) and returns it, durable.
    fn append_revocation(
        &self,
        kind: RevocationKind,
        covers_until: i64,
    ) -> StoreFuture<'_, Revocation>;

    /// The session a legacy refresh token (`legacy_jti`, expiring at `legacy_exp`) was
    /// exchanged into: on first use, `session` is created and recorded as its exchange and
    /// returned; afterwards the session recorded then, revoked or not. One transaction, so
    /// concurrent first uses open one session. `None` when the exchange is recorded but its
    /// session has been pruned (it is over).
    fn exchange_legacy<'a>(
        &'a self,
        legacy_jti: &'a str,
        legacy_exp: i64,
        session: &'a Session,
    ) -> StoreFuture<'a, Option<Session>>;

    /// The legacy refresh token (`jti`, `exp`) session `sid` was opened by, if it was.
    fn legacy_exchange_of<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<(String, i64)>>;

    /// The session legacy refresh token `legacy_jti` was exchanged into, if it was.
    fn legacy_session_of<'a>(&'a self, legacy_jti: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Replaces user `user_id`'s password hash with `new_hash` only while it is still
    /// `old_hash` (re-hashing at login must never undo a concurrent password change). `true`
    /// when it replaced it.
    fn rehash_password<'a>(
        &'a self,
        user_id: i64,
        old_hash: &'a str,
        new_hash: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// One stored password hash for each distinct scheme and parameter set present
    /// ([`hash_parameters`]), so the gateway can time the slowest at start.
    fn password_hash_samples(&self) -> StoreFuture<'_, Vec<String>>;

    // ---- failed-login counters (docs/http-api.md §3) ----

    /// Reserves one password check against every counter of `reserve`, if each leaves room
    /// (failures in its running window plus checks in flight below its limit): one atomic
    /// step, so concurrent reservations — in any process on the database — never exceed a
    /// limit. Creates missing counters. Returns the readings from before the reservation, in
    /// the request's order; nothing changes when the check is not admitted.
    fn reserve_login(&self, reserve: LoginReserve) -> StoreFuture<'_, Reservation>;

    /// Ends a reserved check: a failure counts on every counter; a success or an abandoned
    /// check only ends the reservation, and a success also clears the failures of every
    /// counter of its username. One transaction.
    fn finish_login(&self, finish: LoginFinish) -> StoreFuture<'_, ()>;

    /// Clears the failures of every counter of `username` (as the limiter folds it): its own
    /// and its pairs with addresses (`authgate user unlock`). Returns how many had failures.
    fn clear_login_failures<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize>;

    /// Deletes counters with nothing left at `times`: no failure in a running window and no
    /// reservation whose lease runs. Returns how many.
    fn prune_login_counters(&self, times: CounterTimes) -> StoreFuture<'_, usize>;
}
