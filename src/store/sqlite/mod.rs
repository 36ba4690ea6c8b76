//! The embedded SQLite implementation of [`Store`].
//!
//! One writer connection behind a mutex (SQLite serializes writes anyway) and one read-only
//! connection for lookups, so polling the revocation log never waits behind a write. Every call
//! runs on tokio's blocking pool. Other processes (the CLI, another gateway) may use the same
//! file: writes take the lock up front with `BEGIN IMMEDIATE` and wait up to [`BUSY_TIMEOUT`]
//! for it; WAL lets readers go on meanwhile; `synchronous=FULL` makes every acknowledged
//! revocation survive a crash.

mod error;
mod migrations;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{
    FeedCursor, FeedPage, RetiredRefresh, Revocation, RevocationKind, Session, SessionSweep, Store,
    StoreError, StoreFuture, User, UserWithHash,
};
use error::{is_unique_violation, map_err};

/// How long a call waits for another connection's write lock before failing with `Busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store; cheap to share behind an `Arc<dyn Store>`.
pub struct SqliteStore {
    conns: Arc<Connections>,
}

struct Connections {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the folder and the file on first start, and
    /// brings the schema up to date, on the blocking pool like every other call.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = path.to_owned();
        on_blocking_pool(move || Self::open_blocking(&path)).await
    }

    /// [`SqliteStore::open`] on the calling thread.
    fn open_blocking(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Internal(format!(
                    "cannot create the store folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_err)?;
        configure(&writer)?;
        enable_wal(&writer)?;
        migrations::migrate(&mut writer)?;
        let reader = open_read_only(path)?;
        configure(&reader)?;
        Ok(SqliteStore {
            conns: Arc::new(Connections {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Checks the database at `path` without creating anything (for `check-config`): a
    /// missing file or folder is fine (`open` will create it); an existing file must be an
    /// SQLite database with a schema version this build knows. Blocking.
    pub fn check(path: &Path) -> Result<(), StoreError> {
        let exists = path
            .try_exists()
            .map_err(|e| StoreError::Internal(format!("cannot inspect {}: {e}", path.display())))?;
        if !exists {
            return Ok(());
        }
        let conn = open_read_only(path)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        let version = migrations::version(&conn).map_err(map_err)?;
        migrations::ensure_known(version)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the writer, on the blocking pool;
    /// commits when `f` succeeds, rolls back when it fails.
    fn write<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.in_transaction(Role::Writer, TransactionBehavior::Immediate, f)
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on the reader.
    fn read<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.in_transaction(Role::Reader, TransactionBehavior::Deferred, f)
    }

    fn in_transaction<T, F>(
        &self,
        role: Role,
        behavior: TransactionBehavior,
        f: F,
    ) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conns = Arc::clone(&self.conns);
        on_blocking_pool(move || {
            let conn = match role {
                Role::Writer => &conns.writer,
                Role::Reader => &conns.reader,
            };
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(behavior).map_err(map_err)?;
            let value = f(&tx)?;
            tx.commit().map_err(map_err)?;
            Ok(value)
        })
    }
}

/// Which of the two connections a transaction runs on.
#[derive(Debug, Clone, Copy)]
enum Role {
    Writer,
    Reader,
}

// A poisoned mutex is safe to reuse: a panicking holder's `Transaction` rolled back on unwind.

fn on_blocking_pool<T, F>(f: F) -> StoreFuture<'static, T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    })
}

fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)
}

/// Per-connection settings (none of these persist in the file).
fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(map_err)?;
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .map_err(map_err)?;
    // 2 is FULL: an acknowledged revocation must be on disk before the client hears of it.
    if synchronous != 2 {
        return Err(StoreError::Internal(format!(
            "SQLite refused synchronous=FULL (got {synchronous})"
        )));
    }
    Ok(())
}

/// Switches the file to WAL (persistent) and verifies it took: some file systems refuse it.
fn enable_wal(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "SQLite refused journal_mode=wal (stayed {mode}); is the file on a network file system?"
        )));
    }
    Ok(())
}

/// The key usernames are unique under; login and registration must fold alike.
fn fold(username: &str) -> String {
    username.to_lowercase()
}

// ---- users ----

fn insert_user(
    tx: &Connection,
    username: &str,
    password_hash: &str,
    mut roles: Vec<String>,
    now: i64,
) -> Result<User, StoreError> {
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO users (username, username_lower, password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4) RETURNING id",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![username, fold(username), password_hash, now],
                |row| row.get(0),
            )
        })
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::UsernameTaken
            } else {
                map_err(e)
            }
        })?;
    roles.sort();
    roles.dedup();
    for role in &roles {
        tx.execute(
            "INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)",
            params![id, role],
        )
        .map_err(map_err)?;
    }
    Ok(User {
        id,
        username: username.to_owned(),
        roles,
        created_at: now,
    })
}

fn roles_of(conn: &Connection, user_id: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")
        .map_err(map_err)?;
    let roles = stmt
        .query_map([user_id], |row| row.get(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
        .map_err(map_err)?;
    Ok(roles)
}

fn find_user_by_name(
    conn: &Connection,
    username: &str,
) -> Result<Option<UserWithHash>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT id, username, password_hash, created_at FROM users WHERE username_lower = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([fold(username)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    let Some((id, username, password_hash, created_at)) = row else {
        return Ok(None);
    };
    let roles = roles_of(conn, id)?;
    Ok(Some(UserWithHash {
        user: User {
            id,
            username,
            roles,
            created_at,
        },
        password_hash,
    }))
}

fn find_user_by_id(conn: &Connection, id: i64) -> Result<Option<User>, StoreError> {
    let row = conn
        .prepare_cached("SELECT username, created_at FROM users WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(map_err)?;
    let Some((username, created_at)) = row else {
        return Ok(None);
    };
    Ok(Some(User {
        id,
        username,
        roles: roles_of(conn, id)?,
        created_at,
    }))
}

fn all_users(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, username, created_at FROM users ORDER BY id")
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(i64, String, i64)>>>())
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(id, username, created_at)| {
            Ok(User {
                id,
                username,
                roles: roles_of(conn, id)?,
                created_at,
            })
        })
        .collect()
}

fn user_id_by_name(conn: &Connection, username: &str) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT id FROM users WHERE username_lower = ?1",
        [fold(username)],
        |row| row.get(0),
    )
    .optional()
    .map_err(map_err)?
    .ok_or(StoreError::NotFound)
}

fn user_exists(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    conn.query_row("SELECT 1 FROM users WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(map_err)
}

fn change_password(
    tx: &Connection,
    user_id: i64,
    new_hash: &str,
    sweep: &Sweep,
) -> Result<Vec<Revocation>, StoreError> {
    let changed = tx
        .execute(
            "UPDATE users SET password_hash = ?2 WHERE id = ?1",
            params![user_id, new_hash],
        )
        .map_err(map_err)?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    revoke_swept_sessions(tx, user_id, sweep)
}

fn remove_user(
    tx: &Connection,
    id: i64,
    now: i64,
    covers_until: i64,
) -> Result<Option<Vec<Revocation>>, StoreError> {
    // Explicit rather than relying on ON DELETE CASCADE alone (needs foreign_keys=ON).
    tx.execute("DELETE FROM user_roles WHERE user_id = ?1", [id])
        .map_err(map_err)?;
    let deleted = tx
        .execute("DELETE FROM users WHERE id = ?1", [id])
        .map_err(map_err)?;
    if deleted == 0 {
        return Ok(None);
    }
    // The User entry covers every token; marking the rows only stops further refreshes.
    tx.execute(
        "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )
    .map_err(map_err)?;
    let entry = append_revocation(tx, &RevocationKind::User(id), covers_until)?;
    Ok(Some(vec![entry]))
}

fn grant(tx: &Connection, username: &str, role: &str) -> Result<bool, StoreError> {
    let id = user_id_by_name(tx, username)?;
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO user_roles (user_id, role) VALUES (?1, ?2)",
            params![id, role],
        )
        .map_err(map_err)?;
    Ok(inserted == 1)
}

fn ungrant(tx: &Connection, username: &str, role: &str) -> Result<bool, StoreError> {
    let id = user_id_by_name(tx, username)?;
    let deleted = tx
        .execute(
            "DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2",
            params![id, role],
        )
        .map_err(map_err)?;
    Ok(deleted == 1)
}

// ---- sessions ----

fn find_session(conn: &Connection, sid: &str) -> Result<Option<Session>, StoreError> {
    conn.prepare_cached(
        "SELECT sid, user_id, created_at, expires_at, auth_time, refresh_jti, revoked_at,
                prev_refresh_jti, prev_retired_at
         FROM sessions WHERE sid = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([sid], |row| {
            let prev_jti: Option<String> = row.get(7)?;
            let prev_retired_at: Option<i64> = row.get(8)?;
            Ok(Session {
                sid: row.get(0)?,
                user_id: row.get(1)?,
                created_at: row.get(2)?,
                expires_at: row.get(3)?,
                auth_time: row.get(4)?,
                refresh_jti: row.get(5)?,
                retired_refresh: prev_jti
                    .zip(prev_retired_at)
                    .map(|(jti, retired_at)| RetiredRefresh { jti, retired_at }),
                revoked: row.get::<_, Option<i64>>(6)?.is_some(),
            })
        })
        .optional()
    })
    .map_err(map_err)
}

fn insert_session(tx: &Connection, session: &Session) -> Result<(), StoreError> {
    let retired = session.retired_refresh.as_ref();
    tx.execute(
        "INSERT INTO sessions (sid, user_id, created_at, expires_at, auth_time, refresh_jti,
                               prev_refresh_jti, prev_retired_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            session.sid,
            session.user_id,
            session.created_at,
            session.expires_at,
            session.auth_time,
            session.refresh_jti,
            retired.map(|r| &r.jti),
            retired.map(|r| r.retired_at),
            session.revoked.then_some(session.created_at),
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// The compare-and-swap of the current refresh token; `true` when this call swapped it.
fn swap_refresh_jti(
    tx: &Connection,
    sid: &str,
    expected_jti: &str,
    new_jti: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = tx
        .prepare_cached(
            "UPDATE sessions
             SET prev_refresh_jti = refresh_jti, prev_retired_at = ?4, refresh_jti = ?3
             WHERE sid = ?1 AND refresh_jti = ?2 AND revoked_at IS NULL",
        )
        .and_then(|mut stmt| stmt.execute(params![sid, expected_jti, new_jti, now]))
        .map_err(map_err)?;
    Ok(changed == 1)
}

/// Revokes session `sid` if it is not revoked yet, and appends its entry, which covers the
/// session's tokens until its `expires_at`. `None` when there was nothing to revoke.
fn revoke_one_session(
    tx: &Connection,
    sid: &str,
    now: i64,
) -> Result<Option<Revocation>, StoreError> {
    let expires_at: Option<i64> = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2 WHERE sid = ?1 AND revoked_at IS NULL
             RETURNING expires_at",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![sid, now], |row| row.get(0))
                .optional()
        })
        .map_err(map_err)?;
    expires_at
        .map(|expires_at| {
            append_revocation(tx, &RevocationKind::Session(sid.to_owned()), expires_at)
        })
        .transpose()
}

/// A [`SessionSweep`] with owned fields, to move onto the blocking pool.
struct Sweep {
    keep_sid: Option<String>,
    expiring_from: i64,
    revoked_at: i64,
}

impl From<SessionSweep<'_>> for Sweep {
    fn from(s: SessionSweep<'_>) -> Self {
        Sweep {
            keep_sid: s.keep_sid.map(str::to_owned),
            expiring_from: s.expiring_from,
            revoked_at: s.revoked_at,
        }
    }
}

/// Revokes the user's sessions the sweep selects, appending one entry each.
fn revoke_swept_sessions(
    tx: &Connection,
    user_id: i64,
    sweep: &Sweep,
) -> Result<Vec<Revocation>, StoreError> {
    let mut swept: Vec<(i64, String, i64)> = tx
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?2
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at >= ?3
               AND (?4 IS NULL OR sid <> ?4)
             RETURNING created_at, sid, expires_at",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![
                    user_id,
                    sweep.revoked_at,
                    sweep.expiring_from,
                    sweep.keep_sid
                ],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        })
        .map_err(map_err)?;
    // RETURNING has no order: append the entries oldest session first, as logins happened.
    swept.sort();
    swept
        .into_iter()
        .map(|(_, sid, expires_at)| {
            append_revocation(tx, &RevocationKind::Session(sid), expires_at)
        })
        .collect()
}

fn update_auth_time(tx: &Connection, sid: &str, now: i64) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE sessions SET auth_time = ?2 WHERE sid = ?1 AND revoked_at IS NULL",
            params![sid, now],
        )
        .map_err(map_err)?;
    Ok(changed == 1)
}

// ---- revocation log ----

fn encode_kind(kind: &RevocationKind) -> (&'static str, String) {
    match kind {
        RevocationKind::Session(sid) => ("session", sid.clone()),
        RevocationKind::User(id) => ("user", id.to_string()),
        RevocationKind::Token(jti) => ("token", jti.clone()),
    }
}

fn decode_entry(
    seq: i64,
    kind: &str,
    value: String,
    covers_until: i64,
) -> Result<Revocation, StoreError> {
    let kind = match kind {
        "session" => RevocationKind::Session(value),
        "token" => RevocationKind::Token(value),
        "user" => RevocationKind::User(value.parse().map_err(|_| {
            StoreError::Internal(format!("revocation entry {seq} names no valid user id"))
        })?),
        _ => {
            return Err(StoreError::Internal(format!(
                "revocation entry {seq} has an unknown kind"
            )))
        }
    };
    Ok(Revocation {
        seq,
        kind,
        covers_until,
    })
}

fn append_revocation(
    tx: &Connection,
    kind: &RevocationKind,
    covers_until: i64,
) -> Result<Revocation, StoreError> {
    let (kind_text, value) = encode_kind(kind);
    let seq = tx
        .prepare_cached(
            "INSERT INTO revocations (kind, value, covers_until) VALUES (?1, ?2, ?3)
             RETURNING seq",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![kind_text, value, covers_until], |row| row.get(0))
        })
        .map_err(map_err)?;
    Ok(Revocation {
        seq,
        kind: kind.clone(),
        covers_until,
    })
}

/// Entries matching `filter_sql` (a fixed condition on `?1`), in sequence order.
fn entries_where(
    conn: &Connection,
    filter_sql: &str,
    arg: i64,
) -> Result<Vec<Revocation>, StoreError> {
    let sql = format!(
        "SELECT seq, kind, value, covers_until FROM revocations WHERE {filter_sql} ORDER BY seq"
    );
    let rows = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map([arg], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(i64, String, String, i64)>>>())
        })
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(seq, kind, value, covers_until)| decode_entry(seq, &kind, value, covers_until))
        .collect()
}

fn highest_seq(conn: &Connection) -> Result<i64, StoreError> {
    // sqlite_sequence keeps the highest seq even after every entry was pruned.
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'revocations'",
        [],
        |row| row.get(0),
    )
    .optional()
    .map(|seq| seq.unwrap_or(0))
    .map_err(map_err)
}

fn prune_expired(tx: &Connection, expired_by: i64) -> Result<usize, StoreError> {
    let entries = tx
        .execute(
            "DELETE FROM revocations WHERE covers_until <= ?1",
            [expired_by],
        )
        .map_err(map_err)?;
    let sessions = tx
        .execute("DELETE FROM sessions WHERE expires_at <= ?1", [expired_by])
        .map_err(map_err)?;
    Ok(entries + sessions)
}

impl Store for SqliteStore {
    fn create_user<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
        roles: Vec<String>,
        now: i64,
    ) -> StoreFuture<'a, User> {
        let (username, password_hash) = (username.to_owned(), password_hash.to_owned());
        self.write(move |tx| insert_user(tx, &username, &password_hash, roles, now))
    }

    fn user_by_name<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserWithHash>> {
        let username = username.to_owned();
        self.read(move |tx| find_user_by_name(tx, &username))
    }

    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<User>> {
        self.read(move |tx| find_user_by_id(tx, id))
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        self.read(|tx| all_users(tx))
    }

    fn set_password<'a>(
        &'a self,
        user_id: i64,
        new_hash: &'a str,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        let new_hash = new_hash.to_owned();
        let sweep = Sweep::from(sweep);
        self.write(move |tx| change_password(tx, user_id, &new_hash, &sweep))
    }

    fn delete_user(
        &self,
        id: i64,
        now: i64,
        covers_until: i64,
    ) -> StoreFuture<'_, Option<Vec<Revocation>>> {
        self.write(move |tx| remove_user(tx, id, now, covers_until))
    }

    fn grant_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        let (username, role) = (username.to_owned(), role.to_owned());
        self.write(move |tx| grant(tx, &username, &role))
    }

    fn revoke_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        let (username, role) = (username.to_owned(), role.to_owned());
        self.write(move |tx| ungrant(tx, &username, &role))
    }

    fn create_session<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        let session = session.clone();
        self.write(move |tx| insert_session(tx, &session))
    }

    fn session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        let sid = sid.to_owned();
        self.read(move |tx| find_session(tx, &sid))
    }

    fn swap_refresh<'a>(
        &'a self,
        sid: &'a str,
        expected_jti: &'a str,
        new_jti: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        let (sid, expected, new) = (sid.to_owned(), expected_jti.to_owned(), new_jti.to_owned());
        self.write(move |tx| swap_refresh_jti(tx, &sid, &expected, &new, now))
    }

    fn set_auth_time<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, bool> {
        let sid = sid.to_owned();
        self.write(move |tx| update_auth_time(tx, &sid, now))
    }

    fn revoke_session<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, Option<Revocation>> {
        let sid = sid.to_owned();
        self.write(move |tx| revoke_one_session(tx, &sid, now))
    }

    fn revoke_user_sessions<'a>(
        &'a self,
        user_id: i64,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        let sweep = Sweep::from(sweep);
        self.write(move |tx| {
            if !user_exists(tx, user_id)? {
                return Err(StoreError::NotFound);
            }
            revoke_swept_sessions(tx, user_id, &sweep)
        })
    }

    fn revocations_since<'a>(&'a self, cursor: &'a FeedCursor) -> StoreFuture<'a, FeedPage> {
        let after = cursor.position();
        self.read(move |tx| {
            let entries = entries_where(tx, "seq > ?1", after)?;
            // Safe only because SQLite serialises writers (see `store::feed`): nothing at or
            // below the highest seq of this snapshot can still commit.
            let position = entries.last().map_or(after, |last| last.seq.max(after));
            Ok(FeedPage {
                entries,
                cursor: FeedCursor::at(position),
            })
        })
    }

    fn live_revocations(&self, expired_by: i64) -> StoreFuture<'_, FeedPage> {
        // One read transaction: the entries and the cursor come from the same snapshot.
        self.read(move |tx| {
            let position = highest_seq(tx)?;
            let entries = entries_where(tx, "covers_until > ?1", expired_by)?;
            Ok(FeedPage {
                entries,
                cursor: FeedCursor::at(position),
            })
        })
    }

    fn prune(&self, expired_by: i64) -> StoreFuture<'_, usize> {
        self.write(move |tx| prune_expired(tx, expired_by))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.read(|tx| {
            tx.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map_err(map_err)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;
    use crate::sessions::operations::{refresh_rotating, RefreshOutcome};
    use crate::sessions::rules::RefreshTiming;

    const LEEWAY: i64 = 30;

    /// Presents `presented` of session `sid` through the session domain's rotation.
    async fn rotate(
        store: &SqliteStore,
        sid: &str,
        presented: &str,
        new_jti: &str,
        now: i64,
        grace_secs: i64,
    ) -> RefreshOutcome {
        let timing = RefreshTiming {
            grace_secs,
            leeway_secs: LEEWAY,
        };
        refresh_rotating(store, sid, presented, new_jti, now, timing)
            .await
            .unwrap()
    }

    /// The sweep the session domain makes for a password change or logout-all at `now`.
    fn sweep(keep_sid: Option<&str>, now: i64) -> SessionSweep<'_> {
        crate::sessions::rules::sweep(keep_sid, now, std::time::Duration::from_secs(30))
    }

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("authgate.db");
        (dir, path)
    }

    fn open_store() -> (tempfile::TempDir, PathBuf, Arc<SqliteStore>) {
        let (dir, path) = temp_db();
        let store = Arc::new(SqliteStore::open_blocking(&path).unwrap());
        (dir, path, store)
    }

    fn session(sid: &str, user_id: i64, created_at: i64, expires_at: i64) -> Session {
        Session {
            sid: sid.to_owned(),
            user_id,
            created_at,
            expires_at,
            auth_time: created_at,
            refresh_jti: format!("{sid}-r0"),
            retired_refresh: None,
            revoked: false,
        }
    }

    async fn user(store: &SqliteStore, name: &str) -> User {
        store
            .create_user(name, "$argon2id$fake", vec![], 1_000)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ids_are_never_reused_after_a_delete() {
        let (_dir, _path, store) = open_store();
        user(&store, "a").await;
        let b = user(&store, "b").await;
        assert!(store
            .delete_user(b.id, 2_000, 9_000)
            .await
            .unwrap()
            .is_some());
        let c = user(&store, "c").await;
        assert!(c.id > b.id, "{} reused after deleting {}", c.id, b.id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usernames_are_unique_case_insensitively_and_keep_their_spelling() {
        let (_dir, _path, store) = open_store();
        let alice = user(&store, "Alice").await;
        let again = store
            .create_user("aLICE", "$argon2id$other", vec![], 1_000)
            .await;
        assert_eq!(again, Err(StoreError::UsernameTaken));

        let found = store.user_by_name("ALICE").await.unwrap().unwrap();
        assert_eq!(found.user, alice);
        assert_eq!(found.user.username, "Alice");
        assert_eq!(found.password_hash, "$argon2id$fake");
        assert_eq!(store.user_by_id(alice.id).await.unwrap(), Some(alice));
        assert_eq!(store.user_by_name("bob").await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_registrations_of_one_name_yield_one_user() {
        let (_dir, path, store) = open_store();
        // Half go through a second store on the file, like another process.
        let other = Arc::new(SqliteStore::open_blocking(&path).unwrap());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(if i % 2 == 0 { &store } else { &other });
                tokio::spawn(async move {
                    let name = if i % 2 == 0 { "Carol" } else { "CAROL" };
                    store.create_user(name, "$h", vec![], 1_000).await
                })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => created += 1,
                Err(e) => assert_eq!(e, StoreError::UsernameTaken),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(store.list_users().await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn roles_are_sorted_granted_and_revoked_idempotently() {
        let (_dir, _path, store) = open_store();
        let dave = store
            .create_user(
                "dave",
                "$h",
                vec!["ops".into(), "admin".into(), "ops".into()],
                1_000,
            )
            .await
            .unwrap();
        assert_eq!(dave.roles, ["admin", "ops"]);
        assert!(store.grant_role("DAVE", "billing").await.unwrap());
        assert!(!store.grant_role("dave", "billing").await.unwrap());
        assert!(store.revoke_role("dave", "ops").await.unwrap());
        assert!(!store.revoke_role("dave", "ops").await.unwrap());
        let dave = store.user_by_id(dave.id).await.unwrap().unwrap();
        assert_eq!(dave.roles, ["admin", "billing"]);
        assert_eq!(
            store.grant_role("nobody", "admin").await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.revoke_role("nobody", "admin").await,
            Err(StoreError::NotFound)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_rotates_then_tolerates_the_grace_then_detects_reuse() {
        let (_dir, _path, store) = open_store();
        let u = user(&store, "erin").await;
        store
            .create_session(&session("s1", u.id, 1_000, 5_000))
            .await
            .unwrap();

        let rotated = rotate(&store, "s1", "s1-r0", "s1-r1", 1_100, 10).await;
        let RefreshOutcome::Rotated(s) = rotated else {
            panic!("expected Rotated, got {rotated:?}");
        };
        assert_eq!(s.refresh_jti, "s1-r1");
        assert_eq!(s.expires_at, 5_000, "no sliding expiry");

        let grace = rotate(&store, "s1", "s1-r0", "s1-r2", 1_110, 10).await;
        let RefreshOutcome::WithinGrace(s) = grace else {
            panic!("expected WithinGrace, got {grace:?}");
        };
        assert_eq!(s.refresh_jti, "s1-r1", "grace answers the current jti");
        assert_eq!(
            store.session("s1").await.unwrap().unwrap().refresh_jti,
            "s1-r1"
        );

        let reuse = rotate(&store, "s1", "s1-r0", "s1-r2", 1_111, 10).await;
        let RefreshOutcome::ReuseDetected(entry) = reuse else {
            panic!("expected ReuseDetected, got {reuse:?}");
        };
        assert_eq!(entry.kind, RevocationKind::Session("s1".into()));
        assert_eq!(
            entry.covers_until, 5_000,
            "the session's end; the domain adds the leeway"
        );
        assert!(store.session("s1").await.unwrap().unwrap().revoked);
        assert_eq!(
            store
                .revocations_since(&FeedCursor::at(0))
                .await
                .unwrap()
                .entries,
            vec![entry]
        );

        // Even the current token is dead now.
        let after = rotate(&store, "s1", "s1-r1", "s1-r3", 1_112, 10).await;
        assert_eq!(after, RefreshOutcome::Revoked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_jti_of_the_session_is_reuse() {
        let (_dir, _path, store) = open_store();
        store
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        let outcome = rotate(&store, "s1", "forged", "s1-r1", 1_001, 10).await;
        assert!(
            matches!(outcome, RefreshOutcome::ReuseDetected(_)),
            "{outcome:?}"
        );
        assert!(store.session("s1").await.unwrap().unwrap().revoked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_and_expired_sessions_are_revoked_outcomes() {
        let (_dir, _path, store) = open_store();
        store
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        let unknown = rotate(&store, "nope", "x", "y", 1_001, 10).await;
        assert_eq!(unknown, RefreshOutcome::Revoked);
        let expired = rotate(&store, "s1", "s1-r0", "s1-r1", 5_000 + LEEWAY + 1, 10).await;
        assert_eq!(expired, RefreshOutcome::Revoked);
        let within_leeway = rotate(&store, "s1", "s1-r0", "s1-r1", 5_000 + LEEWAY, 10).await;
        assert!(matches!(within_leeway, RefreshOutcome::Rotated(_)));
    }

    /// Twenty refreshes of one token at once, half through a second store on the same file
    /// (like another process), so both the in-process lock and SQLite's file lock are raced.
    async fn twenty_rotations(path: &Path, grace: i64) -> (Arc<SqliteStore>, Vec<RefreshOutcome>) {
        let stores = [
            Arc::new(SqliteStore::open_blocking(path).unwrap()),
            Arc::new(SqliteStore::open_blocking(path).unwrap()),
        ];
        stores[0]
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                tokio::spawn(async move {
                    let new_jti = format!("new-{i}");
                    rotate(&store, "s1", "s1-r0", &new_jti, 1_100, grace).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let [store, _] = stores;
        (store, outcomes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_refreshes_rotate_once_and_the_rest_get_the_grace() {
        let (_dir, path) = temp_db();
        let (store, outcomes) = twenty_rotations(&path, 10).await;
        let rotated: Vec<_> = outcomes
            .iter()
            .filter_map(|o| match o {
                RefreshOutcome::Rotated(s) => Some(s.refresh_jti.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(rotated.len(), 1, "{outcomes:?}");
        for outcome in &outcomes {
            match outcome {
                RefreshOutcome::Rotated(_) => {}
                RefreshOutcome::WithinGrace(s) => assert_eq!(s.refresh_jti, rotated[0]),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(!store.session("s1").await.unwrap().unwrap().revoked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn twenty_concurrent_refreshes_without_grace_rotate_once_and_revoke_the_session() {
        let (_dir, path) = temp_db();
        let (store, outcomes) = twenty_rotations(&path, 0).await;
        let count = |f: fn(&RefreshOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        assert_eq!(count(|o| matches!(o, RefreshOutcome::Rotated(_))), 1);
        // The first replay revokes the session; the later ones find it revoked.
        assert_eq!(count(|o| matches!(o, RefreshOutcome::ReuseDetected(_))), 1);
        assert_eq!(count(|o| matches!(o, RefreshOutcome::Revoked)), 18);
        assert!(store.session("s1").await.unwrap().unwrap().revoked);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revoking_a_session_twice_answers_none_the_second_time() {
        let (_dir, _path, store) = open_store();
        store
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        let entry = store.revoke_session("s1", 1_001).await.unwrap().unwrap();
        assert_eq!(entry.kind, RevocationKind::Session("s1".into()));
        assert_eq!(
            entry.covers_until, 5_000,
            "the session's end; the domain adds the leeway"
        );
        assert_eq!(store.revoke_session("s1", 1_002).await.unwrap(), None);
        assert_eq!(store.revoke_session("nope", 1_002).await.unwrap(), None);
        assert!(!store.set_auth_time("s1", 1_003).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn step_up_sets_the_auth_time() {
        let (_dir, _path, store) = open_store();
        store
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        assert!(store.set_auth_time("s1", 1_500).await.unwrap());
        assert_eq!(store.session("s1").await.unwrap().unwrap().auth_time, 1_500);
        assert!(!store.set_auth_time("nope", 1_500).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_password_change_revokes_every_other_live_session() {
        let (_dir, _path, store) = open_store();
        let u = user(&store, "frank").await;
        let other = user(&store, "grace").await;
        for (sid, uid) in [
            ("keep", u.id),
            ("a", u.id),
            ("b", u.id),
            ("theirs", other.id),
        ] {
            store
                .create_session(&session(sid, uid, 1_000, 5_000))
                .await
                .unwrap();
        }
        store
            .create_session(&session("long-gone", u.id, 10, 100))
            .await
            .unwrap();
        store.revoke_session("b", 1_001).await.unwrap();

        let entries = store
            .set_password(u.id, "$argon2id$new", sweep(Some("keep"), 2_000))
            .await
            .unwrap();
        let sids: Vec<_> = entries.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(sids, [RevocationKind::Session("a".into())]);
        assert!(store.session("a").await.unwrap().unwrap().revoked);
        assert!(!store.session("keep").await.unwrap().unwrap().revoked);
        assert!(!store.session("theirs").await.unwrap().unwrap().revoked);
        let found = store.user_by_name("frank").await.unwrap().unwrap();
        assert_eq!(found.password_hash, "$argon2id$new");

        assert_eq!(
            store.set_password(9_999, "$h", sweep(None, 2_000)).await,
            Err(StoreError::NotFound)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logout_all_revokes_every_live_session_of_the_user() {
        let (_dir, _path, store) = open_store();
        let u = user(&store, "heidi").await;
        for sid in ["a", "b"] {
            store
                .create_session(&session(sid, u.id, 1_000, 5_000))
                .await
                .unwrap();
        }
        let entries = store
            .revoke_user_sessions(u.id, sweep(None, 2_000))
            .await
            .unwrap();
        assert_eq!(entries.len(), 2);
        assert!(store.session("a").await.unwrap().unwrap().revoked);
        assert!(store.session("b").await.unwrap().unwrap().revoked);
        assert_eq!(
            store.revoke_user_sessions(9_999, sweep(None, 2_000)).await,
            Err(StoreError::NotFound)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_user_appends_a_user_entry_and_revokes_their_sessions() {
        let (_dir, _path, store) = open_store();
        let u = store
            .create_user("ivan", "$h", vec!["admin".into()], 1_000)
            .await
            .unwrap();
        store
            .create_session(&session("s1", u.id, 1_000, 5_000))
            .await
            .unwrap();
        let entries = store
            .delete_user(u.id, 2_000, 9_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, RevocationKind::User(u.id));
        assert_eq!(entries[0].covers_until, 9_000);
        assert_eq!(store.user_by_id(u.id).await.unwrap(), None);
        assert!(store.session("s1").await.unwrap().unwrap().revoked);
        assert_eq!(store.delete_user(u.id, 2_001, 9_000).await.unwrap(), None);

        // Roles went with the user: a new account of the same name starts without them.
        let again = user(&store, "ivan").await;
        assert!(again.roles.is_empty());
        assert_eq!(
            store.user_by_id(again.id).await.unwrap().unwrap().roles,
            Vec::<String>::new()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocations_since_resumes_after_the_last_seen_entry() {
        let (_dir, _path, store) = open_store();
        for sid in ["a", "b", "c"] {
            store
                .create_session(&session(sid, 1, 1_000, 5_000))
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .live_revocations(i64::MIN)
                .await
                .unwrap()
                .cursor
                .position(),
            0
        );
        let first = store.revoke_session("a", 1_001).await.unwrap().unwrap();
        let seen = store
            .revocations_since(&FeedCursor::at(0))
            .await
            .unwrap()
            .entries;
        assert_eq!(seen, vec![first.clone()]);

        let second = store.revoke_session("b", 1_002).await.unwrap().unwrap();
        let third = store.revoke_session("c", 1_003).await.unwrap().unwrap();
        let next = store
            .revocations_since(&FeedCursor::at(first.seq))
            .await
            .unwrap()
            .entries;
        assert_eq!(next, vec![second, third.clone()]);
        assert!(store
            .revocations_since(&FeedCursor::at(third.seq))
            .await
            .unwrap()
            .entries
            .is_empty());
        assert_eq!(
            store
                .live_revocations(i64::MIN)
                .await
                .unwrap()
                .cursor
                .position(),
            third.seq
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_store_on_the_same_file_sees_the_first_ones_revocations() {
        let (_dir, path, first) = open_store();
        let second = SqliteStore::open_blocking(&path).unwrap();
        first
            .create_session(&session("s1", 1, 1_000, 5_000))
            .await
            .unwrap();
        assert!(second.session("s1").await.unwrap().is_some());
        let entry = first.revoke_session("s1", 1_001).await.unwrap().unwrap();
        assert_eq!(
            second
                .revocations_since(&FeedCursor::at(0))
                .await
                .unwrap()
                .entries,
            vec![entry]
        );
        // And the second one's write is refused as a double revocation.
        assert_eq!(second.revoke_session("s1", 1_002).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_after_drop_keeps_the_data() {
        let (_dir, path, store) = open_store();
        let u = user(&store, "judy").await;
        store
            .create_session(&session("s1", u.id, 1_000, 5_000))
            .await
            .unwrap();
        let entry = store.revoke_session("s1", 1_001).await.unwrap().unwrap();
        drop(store);

        let store = SqliteStore::open_blocking(&path).unwrap();
        assert_eq!(store.user_by_id(u.id).await.unwrap(), Some(u));
        assert_eq!(
            store.live_revocations(1_002).await.unwrap().entries,
            vec![entry]
        );
        // Callers hold it as a trait object.
        let store: Arc<dyn Store> = Arc::new(store);
        store.ping().await.unwrap();
    }

    #[test]
    fn a_newer_schema_version_is_refused_by_open_and_check() {
        let (_dir, path) = temp_db();
        drop(SqliteStore::open_blocking(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", migrations::LATEST_VERSION + 1)
            .unwrap();
        drop(conn);

        let opened = SqliteStore::open_blocking(&path).err().unwrap();
        assert!(matches!(opened, StoreError::Schema(_)), "{opened:?}");
        let checked = SqliteStore::check(&path).unwrap_err();
        assert!(matches!(checked, StoreError::Schema(_)), "{checked:?}");
    }

    #[test]
    fn check_creates_nothing_on_a_missing_path() {
        let (dir, path) = temp_db();
        SqliteStore::check(&path).unwrap();
        assert!(!path.parent().unwrap().exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn check_accepts_a_store_that_open_created() {
        let (_dir, path) = temp_db();
        drop(SqliteStore::open_blocking(&path).unwrap());
        SqliteStore::check(&path).unwrap();
        // Also while a store has it open.
        let _open = SqliteStore::open_blocking(&path).unwrap();
        SqliteStore::check(&path).unwrap();
    }

    #[test]
    fn check_and_open_refuse_a_file_that_is_not_a_database() {
        let (_dir, path) = temp_db();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"this is certainly not an SQLite database file at all",
        )
        .unwrap();
        assert_eq!(SqliteStore::check(&path), Err(StoreError::Corrupt));
        assert_eq!(
            SqliteStore::open_blocking(&path).err(),
            Some(StoreError::Corrupt)
        );
    }

    #[test]
    fn open_uses_wal_journaling() {
        let (_dir, path) = temp_db();
        let _store = SqliteStore::open_blocking(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prune_removes_only_expired_entries_and_sessions() {
        let (_dir, _path, store) = open_store();
        store
            .create_session(&session("short", 1, 1_000, 2_000))
            .await
            .unwrap();
        store
            .create_session(&session("long", 1, 1_000, 9_000))
            .await
            .unwrap();
        let short = store.revoke_session("short", 1_001).await.unwrap().unwrap();
        let long = store.revoke_session("long", 1_001).await.unwrap().unwrap();

        assert_eq!(store.prune(1_999).await.unwrap(), 0);
        assert_eq!(
            store.prune(2_000).await.unwrap(),
            2,
            "one entry, one session"
        );
        assert_eq!(
            store
                .revocations_since(&FeedCursor::at(0))
                .await
                .unwrap()
                .entries,
            vec![long.clone()]
        );
        assert_eq!(
            store.live_revocations(2_000).await.unwrap().entries,
            vec![long.clone()]
        );
        assert_eq!(store.session("short").await.unwrap(), None);
        assert!(store.session("long").await.unwrap().is_some());

        // Sequence numbers are not reused after pruning.
        store.prune(10_000).await.unwrap();
        assert_eq!(
            store
                .live_revocations(i64::MIN)
                .await
                .unwrap()
                .cursor
                .position(),
            long.seq
        );
        store
            .create_session(&session("later", 1, 10_000, 20_000))
            .await
            .unwrap();
        let later = store
            .revoke_session("later", 10_001)
            .await
            .unwrap()
            .unwrap();
        assert!(later.seq > long.seq && long.seq > short.seq);
    }

    #[test]
    fn error_messages_do_not_echo_sql() {
        let conn = Connection::open_in_memory().unwrap();
        let err = conn
            .execute("SELEC password_hash FROM secret_table", [])
            .unwrap_err();
        let message = map_err(err).to_string();
        assert!(!message.contains("secret_table"), "{message}");
    }

    #[test]
    fn live_revocations_skip_expired_entries_and_decode_every_kind() {
        let (_dir, path) = temp_db();
        drop(SqliteStore::open_blocking(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        for (kind, covers_until) in [
            (RevocationKind::Token("j1".into()), 100),
            (RevocationKind::User(7), 300),
            (RevocationKind::Session("s".into()), 300),
        ] {
            append_revocation(&conn, &kind, covers_until).unwrap();
        }
        let live = entries_where(&conn, "covers_until > ?1", 200).unwrap();
        let kinds: HashSet<_> = live.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            HashSet::from([RevocationKind::User(7), RevocationKind::Session("s".into())])
        );
    }
}
