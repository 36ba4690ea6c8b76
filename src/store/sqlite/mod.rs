//! The embedded SQLite implementation of [`Store`].
//!
//! One writer connection behind a mutex (SQLite serializes writes anyway) and one read-only
//! connection for lookups, so polling the revocation log never waits behind a write. Every call
//! runs on tokio's blocking pool. Other processes (the CLI, another gateway) may use the same
//! file: writes take the lock up front with `BEGIN IMMEDIATE` and wait up to [`BUSY_TIMEOUT`]
//! for it; WAL lets readers go on meanwhile; `synchronous=FULL` makes every acknowledged
//! revocation survive a crash. Serialised writers are also what lets the revocation feed's
//! cursor be a bare `seq` (see [`feed`](crate::store::feed)). The database file is created
//! 0600, and SQLite gives its `-wal` and `-shm` the same mode.
//!
//! The SQL keeps data and makes each call atomic; it decides no session rule (those are in
//! `sessions/`).

mod error;
mod migrations;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

use super::{
    CounterKey, CounterTimes, FeedCursor, FeedPage, LoginFinish, LoginOutcome, LoginReserve,
    Reservation, RetiredRefresh, Revocation, RevocationKind, Session, SessionSweep, Store,
    StoreError, StoreFuture, StoredCounter, User, UserWithHash,
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
        create_owner_only(path)?;
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

/// Creates the database file empty with mode 0600 when it does not exist yet (SQLite makes
/// an empty file a new database). SQLite would create it 0644; it gives the `-wal` and
/// `-shm` files the database file's mode, so all three are readable by their owner only
/// (docs/http-api.md §6). An existing file keeps the mode its owner gave it.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // Another process may have created it meanwhile: theirs is 0600 too.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Internal(format!(
            "cannot create the store file {}: {e}",
            path.display()
        ))),
    }
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
        disabled: false,
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
            "SELECT id, username, password_hash, created_at, disabled FROM users
             WHERE username_lower = ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([fold(username)], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .optional()
        })
        .map_err(map_err)?;
    let Some((id, username, password_hash, created_at, disabled)) = row else {
        return Ok(None);
    };
    let roles = roles_of(conn, id)?;
    Ok(Some(UserWithHash {
        user: User {
            id,
            username,
            roles,
            created_at,
            disabled,
        },
        password_hash,
    }))
}

fn find_user_by_id(conn: &Connection, id: i64) -> Result<Option<User>, StoreError> {
    let row = conn
        .prepare_cached("SELECT username, created_at, disabled FROM users WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()
        })
        .map_err(map_err)?;
    let Some((username, created_at, disabled)) = row else {
        return Ok(None);
    };
    Ok(Some(User {
        id,
        username,
        roles: roles_of(conn, id)?,
        created_at,
        disabled,
    }))
}

fn all_users(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT id, username, created_at, disabled FROM users ORDER BY id")
        .map_err(map_err)?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<(i64, String, i64, bool)>>>())
        .map_err(map_err)?;
    rows.into_iter()
        .map(|(id, username, created_at, disabled)| {
            Ok(User {
                id,
                username,
                roles: roles_of(conn, id)?,
                created_at,
                disabled,
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
    update_user(
        tx,
        "UPDATE users SET password_hash = ?2 WHERE id = ?1",
        user_id,
        new_hash,
    )?;
    revoke_swept_sessions(tx, user_id, sweep)
}

/// Runs `sql`, an update of user `user_id`'s row (`?1`) to `value` (`?2`); `NotFound` when no
/// such user exists.
fn update_user(
    tx: &Connection,
    sql: &str,
    user_id: i64,
    value: impl rusqlite::ToSql,
) -> Result<(), StoreError> {
    let changed = tx.execute(sql, params![user_id, value]).map_err(map_err)?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

fn change_disabled(
    tx: &Connection,
    user_id: i64,
    disabled: bool,
    sweep: &Sweep,
) -> Result<Vec<Revocation>, StoreError> {
    update_user(
        tx,
        "UPDATE users SET disabled = ?2 WHERE id = ?1",
        user_id,
        disabled,
    )?;
    if !disabled {
        return Ok(Vec::new());
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
    // In the writer's transaction: a disable commits wholly before or after this check.
    let disabled: Option<bool> = tx
        .query_row(
            "SELECT disabled FROM users WHERE id = ?1",
            [session.user_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(map_err)?;
    if disabled == Some(true) {
        return Err(StoreError::UserDisabled);
    }
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

fn append_revocation(
    tx: &Connection,
    kind: &RevocationKind,
    covers_until: i64,
) -> Result<Revocation, StoreError> {
    let (kind_text, value) = kind.encode();
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
    // Decoded row by row: at a million live entries (the start's load) an intermediate
    // vector of raw rows, and a `String` per row for the kind, would double the peak memory.
    let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
    let mut rows = stmt.query([arg]).map_err(map_err)?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let seq: i64 = row.get(0).map_err(map_err)?;
        let kind = row.get_ref(1).map_err(map_err)?.as_str().map_err(|_| {
            StoreError::Internal(format!(
                "revocation entry {seq} has a kind that is not text"
            ))
        })?;
        let value: String = row.get(2).map_err(map_err)?;
        let covers_until: i64 = row.get(3).map_err(map_err)?;
        entries.push(Revocation::decode(seq, kind, value, covers_until)?);
    }
    Ok(entries)
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
    let exchanges = tx
        .execute(
            "DELETE FROM legacy_exchanges WHERE legacy_exp <= ?1",
            [expired_by],
        )
        .map_err(map_err)?;
    Ok(entries + sessions + exchanges)
}

// ---- legacy tokens and hashes ----

fn exchange(
    tx: &Connection,
    legacy_jti: &str,
    legacy_exp: i64,
    session: &Session,
) -> Result<Option<Session>, StoreError> {
    // The write lock is held (BEGIN IMMEDIATE): nobody records this jti between the read and
    // the insert.
    let known: Option<String> = tx
        .prepare_cached("SELECT sid FROM legacy_exchanges WHERE legacy_jti = ?1")
        .and_then(|mut stmt| stmt.query_row([legacy_jti], |row| row.get(0)).optional())
        .map_err(map_err)?;
    if let Some(sid) = known {
        return find_session(tx, &sid);
    }
    insert_session(tx, session)?;
    tx.execute(
        "INSERT INTO legacy_exchanges (legacy_jti, sid, legacy_exp) VALUES (?1, ?2, ?3)",
        params![legacy_jti, session.sid, legacy_exp],
    )
    .map_err(map_err)?;
    Ok(Some(session.clone()))
}

fn exchange_of(conn: &Connection, sid: &str) -> Result<Option<(String, i64)>, StoreError> {
    conn.prepare_cached("SELECT legacy_jti, legacy_exp FROM legacy_exchanges WHERE sid = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([sid], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(map_err)
}

fn replace_hash(
    tx: &Connection,
    user_id: i64,
    old_hash: &str,
    new_hash: &str,
) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
            params![user_id, old_hash, new_hash],
        )
        .map_err(map_err)?;
    Ok(changed == 1)
}

fn hash_samples(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT password_hash FROM users")
        .map_err(map_err)?;
    let hashes = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(map_err)?;
    Ok(super::one_per_parameter_set(hashes))
}

// ---- failed-login counters ----

fn read_counter(conn: &Connection, key: &CounterKey) -> Result<StoredCounter, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT window_start, failures, pending, pending_until FROM login_counters
             WHERE username = ?1 AND address = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![key.username, key.address], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    Ok(match row {
        Some((window_start, failures, pending, pending_until)) => StoredCounter {
            window_start,
            failures: count_of(failures),
            pending: count_of(pending),
            pending_until,
        },
        None => StoredCounter::default(),
    })
}

/// A stored count; a negative or oversized one (never written) reads as its nearest bound.
fn count_of(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn write_counter(tx: &Connection, key: &CounterKey, c: &StoredCounter) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO login_counters
             (username, address, window_start, failures, pending, pending_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (username, address) DO UPDATE SET
             window_start = excluded.window_start, failures = excluded.failures,
             pending = excluded.pending, pending_until = excluded.pending_until",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            key.username,
            key.address,
            c.window_start,
            c.failures,
            c.pending,
            c.pending_until
        ])
    })
    .map_err(map_err)?;
    Ok(())
}

fn reserve_counters(tx: &Connection, reserve: &LoginReserve) -> Result<Reservation, StoreError> {
    let stored = reserve
        .counters
        .iter()
        .map(|(key, _)| read_counter(tx, key))
        .collect::<Result<Vec<_>, _>>()?;
    let readings: Vec<_> = stored.iter().map(|s| reserve.times.read(s)).collect();
    let admitted = reserve.admits(&readings);
    if admitted {
        for ((key, _), s) in reserve.counters.iter().zip(&stored) {
            write_counter(tx, key, &reserve.reserved(s))?;
        }
    }
    Ok(Reservation { admitted, readings })
}

fn finish_counters(tx: &Connection, finish: &LoginFinish) -> Result<(), StoreError> {
    for key in &finish.counters {
        let stored = read_counter(tx, key)?;
        write_counter(tx, key, &finish.applied(&stored))?;
    }
    if let LoginOutcome::Succeeded { clear_username } = &finish.outcome {
        clear_failures(tx, clear_username)?;
    }
    Ok(())
}

fn clear_failures(tx: &Connection, username: &str) -> Result<usize, StoreError> {
    tx.execute(
        "UPDATE login_counters SET failures = 0 WHERE username = ?1 AND failures > 0",
        [username],
    )
    .map_err(map_err)
}

fn prune_counters(tx: &Connection, times: CounterTimes) -> Result<usize, StoreError> {
    tx.execute(
        "DELETE FROM login_counters
         WHERE (failures = 0 OR window_start <= ?1) AND (pending = 0 OR pending_until <= ?2)",
        params![times.window_from, times.now],
    )
    .map_err(map_err)
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

    fn set_disabled<'a>(
        &'a self,
        user_id: i64,
        disabled: bool,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        let sweep = Sweep::from(sweep);
        self.write(move |tx| change_disabled(tx, user_id, disabled, &sweep))
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
        let Some(after) = cursor.position() else {
            return Box::pin(async {
                Err(StoreError::Internal(
                    "a feed cursor of another kind of store".into(),
                ))
            });
        };
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

    fn append_revocation(
        &self,
        kind: RevocationKind,
        covers_until: i64,
    ) -> StoreFuture<'_, Revocation> {
        self.write(move |tx| append_revocation(tx, &kind, covers_until))
    }

    fn exchange_legacy<'a>(
        &'a self,
        legacy_jti: &'a str,
        legacy_exp: i64,
        session: &'a Session,
    ) -> StoreFuture<'a, Option<Session>> {
        let (jti, session) = (legacy_jti.to_owned(), session.clone());
        self.write(move |tx| exchange(tx, &jti, legacy_exp, &session))
    }

    fn legacy_exchange_of<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<(String, i64)>> {
        let sid = sid.to_owned();
        self.read(move |tx| exchange_of(tx, &sid))
    }

    fn legacy_session_of<'a>(&'a self, legacy_jti: &'a str) -> StoreFuture<'a, Option<String>> {
        let jti = legacy_jti.to_owned();
        self.read(move |tx| {
            tx.prepare_cached("SELECT sid FROM legacy_exchanges WHERE legacy_jti = ?1")
                .and_then(|mut stmt| stmt.query_row([&jti], |row| row.get(0)).optional())
                .map_err(map_err)
        })
    }

    fn rehash_password<'a>(
        &'a self,
        user_id: i64,
        old_hash: &'a str,
        new_hash: &'a str,
    ) -> StoreFuture<'a, bool> {
        let (old, new) = (old_hash.to_owned(), new_hash.to_owned());
        self.write(move |tx| replace_hash(tx, user_id, &old, &new))
    }

    fn password_hash_samples(&self) -> StoreFuture<'_, Vec<String>> {
        self.read(|tx| hash_samples(tx))
    }

    fn reserve_login(&self, reserve: LoginReserve) -> StoreFuture<'_, Reservation> {
        self.write(move |tx| reserve_counters(tx, &reserve))
    }

    fn finish_login(&self, finish: LoginFinish) -> StoreFuture<'_, ()> {
        self.write(move |tx| finish_counters(tx, &finish))
    }

    fn clear_login_failures<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize> {
        let username = username.to_owned();
        self.write(move |tx| clear_failures(tx, &username))
    }

    fn prune_login_counters(&self, times: CounterTimes) -> StoreFuture<'_, usize> {
        self.write(move |tx| prune_counters(tx, times))
    }
}

// What every store must do is tested once for all of them: tests/store/conformance.rs.
// Here: what only SQLite has (files, schema versions, error mapping).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;

    fn temp_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("authgate.db");
        (dir, path)
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
