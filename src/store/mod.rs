//! The store: users, login sessions and the revocation log.
//!
//! All SQL lives below this module and runs off the async reactor threads. [`Store`] is the
//! interface the gateway and the CLI use (as `Arc<dyn Store>`); [`SqliteStore`] is the embedded
//! implementation. Times are seconds since the epoch and always passed in by the caller, so
//! tests control them.

mod model;
mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::StoreUrl;

pub use model::*;
pub use sqlite::SqliteStore;

/// Opens the store `url` names (creating an SQLite file and its folder on first use), on the
/// blocking pool. The gateway and the operator CLI both open their store here.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, String> {
    match url {
        StoreUrl::Sqlite(path) => {
            let p = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&p))
                .await
                .map_err(|e| format!("store task failed: {e}"))?
                .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
            Ok(Arc::new(store))
        }
    }
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
    /// Anything else (I/O, an unexpected SQLite error); details for the log.
    #[error("store error: {0}")]
    Internal(String),
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

    /// Replaces the password hash and revokes every live session of the user except
    /// `keep_sid`, in one transaction. Returns the appended `Session` entries (each expiring at
    /// its session's `expires_at + leeway_secs`). [`StoreError::NotFound`] for an unknown user.
    fn set_password<'a>(
        &'a self,
        user_id: i64,
        new_hash: &'a str,
        keep_sid: Option<&'a str>,
        now: i64,
        leeway_secs: i64,
    ) -> StoreFuture<'a, Vec<Revocation>>;

    /// Deletes the user and their roles, marks their sessions revoked and appends a `User(id)`
    /// entry expiring at `expires_at`, in one transaction. Returns the appended entries, or
    /// `None` when there is no such user.
    fn delete_user(
        &self,
        id: i64,
        now: i64,
        expires_at: i64,
    ) -> StoreFuture<'_, Option<Vec<Revocation>>>;

    /// Grants a role; `true` if the user did not have it yet. [`StoreError::NotFound`] for an
    /// unknown user (matched case-insensitively).
    fn grant_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool>;

    /// Takes a role away; `true` if the user had it. [`StoreError::NotFound`] for an unknown
    /// user (matched case-insensitively).
    fn revoke_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool>;

    /// Records a new login session.
    fn create_session<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()>;

    /// Looks a session up, revoked or not.
    fn session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>>;

    /// Rotates a session's refresh token, atomically: see [`RefreshOutcome`]. A retired token
    /// is accepted within `grace_secs` of its retirement (`0` disables the grace); a session is
    /// expired once `now > expires_at + leeway_secs`.
    fn rotate_refresh<'a>(
        &'a self,
        sid: &'a str,
        presented_jti: &'a str,
        new_jti: &'a str,
        now: i64,
        grace_secs: i64,
        leeway_secs: i64,
    ) -> StoreFuture<'a, RefreshOutcome>;

    /// Sets the session's `auth_time` (step-up). `false` when the session is unknown or revoked.
    fn set_auth_time<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, bool>;

    /// Revokes one session and appends its `Session` entry. `None` when the session is unknown
    /// or already revoked.
    fn revoke_session<'a>(
        &'a self,
        sid: &'a str,
        now: i64,
        leeway_secs: i64,
    ) -> StoreFuture<'a, Option<Revocation>>;

    /// Revokes every live session of a user (CLI `user logout-all`). [`StoreError::NotFound`]
    /// for an unknown user.
    fn revoke_user_sessions(
        &self,
        user_id: i64,
        now: i64,
        leeway_secs: i64,
    ) -> StoreFuture<'_, Vec<Revocation>>;

    /// Log entries with a sequence number above `seq`, in order. Entries commit in sequence
    /// order, so resuming from the last seen `seq` never skips one.
    fn revocations_since(&self, seq: i64) -> StoreFuture<'_, Vec<Revocation>>;

    /// The highest sequence number ever appended (`0` for none), pruned entries included.
    /// Read it before [`Store::live_revocations`] and poll from it to load without a gap.
    fn last_seq(&self) -> StoreFuture<'_, i64>;

    /// Log entries still in force (`expires_at > now`), in order.
    fn live_revocations(&self, now: i64) -> StoreFuture<'_, Vec<Revocation>>;

    /// Deletes log entries with `expires_at <= now` and sessions with `expires_at <= now`
    /// (pass `now - leeway` to keep sessions through the leeway). Returns the rows deleted.
    fn prune(&self, now: i64) -> StoreFuture<'_, usize>;

    /// Checks that the database answers (readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;
}
