//! The SQLite schema and its versioned migrations.
//!
//! The schema version lives in `PRAGMA user_version`. Migration N (1-based) brings a database
//! from version N-1 to N; each runs in its own `BEGIN IMMEDIATE` transaction together with the
//! version bump, so a crash or a concurrent starter (the CLI and the gateway on one file) never
//! leaves a half-applied step. Migrations are append-only: never edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use super::error::map_err;
use crate::store::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, roles, login sessions and the revocation log.
    "
    -- AUTOINCREMENT: a deleted user's id must never come back (tokens name users by id).
    CREATE TABLE users (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        username       TEXT    NOT NULL,
        username_lower TEXT    NOT NULL UNIQUE,
        password_hash  TEXT    NOT NULL,
        created_at     INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE user_roles (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role    TEXT    NOT NULL,
        PRIMARY KEY (user_id, role)
    ) STRICT, WITHOUT ROWID;

    -- No foreign key to users: a deleted user's sessions stay (revoked) until pruned.
    CREATE TABLE sessions (
        sid              TEXT    PRIMARY KEY,
        user_id          INTEGER NOT NULL,
        created_at       INTEGER NOT NULL,
        expires_at       INTEGER NOT NULL,
        auth_time        INTEGER NOT NULL,
        refresh_jti      TEXT    NOT NULL,
        prev_refresh_jti TEXT,
        prev_retired_at  INTEGER,
        revoked_at       INTEGER
    ) STRICT;
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);

    -- AUTOINCREMENT: readers resume from the last seq they saw, so a pruned seq must not return.
    CREATE TABLE revocations (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT    NOT NULL CHECK (kind IN ('session', 'user', 'token')),
        value      TEXT    NOT NULL,
        expires_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX revocations_by_expiry ON revocations(expires_at);
    ",
    // 2: a revocation entry records a fact, the latest `exp` of the tokens it covers; the
    // session domain adds the leeway when it decides what is still in force. Entries written
    // under version 1 held that `exp` plus the leeway: read as `covers_until` they merely stay
    // one leeway longer, which is safe.
    "
    ALTER TABLE revocations RENAME COLUMN expires_at TO covers_until;
    ",
    // 3: failed-login counters, shared by every process on the database. `username` is empty
    // for a per-address counter, `address` for a per-username one. Times in milliseconds.
    "
    CREATE TABLE login_counters (
        username      TEXT    NOT NULL,
        address       TEXT    NOT NULL,
        window_start  INTEGER NOT NULL,
        failures      INTEGER NOT NULL,
        pending       INTEGER NOT NULL,
        pending_until INTEGER NOT NULL,
        PRIMARY KEY (username, address)
    ) STRICT, WITHOUT ROWID;
    ",
    // 4: migrating from flask-jwt-extended. The log takes two more kinds (a per-username
    // cut-off of legacy tokens, and "users were added" for readers' username maps): SQLite
    // cannot change a CHECK, so the table is rebuilt, keeping every seq and the sequence
    // itself (a pruned seq must not come back). Each legacy refresh token exchanged for a
    // session is recorded by its `jti`, until the legacy token expires.
    "
    CREATE TABLE revocations_v4 (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT    NOT NULL
                     CHECK (kind IN ('session', 'user', 'token', 'legacy_cutoff', 'directory')),
        value        TEXT    NOT NULL,
        covers_until INTEGER NOT NULL
    ) STRICT;
    INSERT INTO revocations_v4 (seq, kind, value, covers_until)
        SELECT seq, kind, value, covers_until FROM revocations;
    DELETE FROM sqlite_sequence WHERE name = 'revocations_v4';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'revocations_v4', seq FROM sqlite_sequence WHERE name = 'revocations';
    DROP TABLE revocations;
    ALTER TABLE revocations_v4 RENAME TO revocations;
    CREATE INDEX revocations_by_expiry ON revocations(covers_until);

    CREATE TABLE legacy_exchanges (
        legacy_jti TEXT    PRIMARY KEY,
        sid        TEXT    NOT NULL UNIQUE,
        legacy_exp INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    ",
    // 5: users an operator disabled (`authgate user disable`): they cannot log in.
    "
    ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
    ",
];

/// The schema version this build creates and understands.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads the schema version of an open database.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuses a database written by a newer build: its meaning of the tables is unknown here.
pub(crate) fn ensure_known(version: i64) -> Result<(), StoreError> {
    crate::store::ensure_known_version(version, LATEST_VERSION)
}

/// Applies every migration the database lacks, one transaction each.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        // Read inside the write lock: another process may have migrated in the meantime.
        let current = version(&tx).map_err(map_err)?;
        ensure_known(current)?;
        let Some(step) = usize::try_from(current)
            .ok()
            .and_then(|index| MIGRATIONS.get(index))
        else {
            return Ok(());
        };
        tx.execute_batch(step).map_err(map_err)?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn migrating_a_fresh_database_reaches_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
        // Running again is a no-op.
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
    }

    #[test]
    fn a_version_1_revocation_entry_keeps_its_time_as_covers_until() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO revocations (kind, value, expires_at) VALUES ('session', 's', 5030)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let covers_until: i64 = conn
            .query_row("SELECT covers_until FROM revocations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(covers_until, 5030);
    }

    #[test]
    fn the_version_4_rebuild_keeps_entries_and_never_reuses_a_pruned_seq() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..3] {
            conn.execute_batch(step).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for (kind, value) in [("session", "s1"), ("token", "j1"), ("user", "7")] {
            conn.execute(
                "INSERT INTO revocations (kind, value, covers_until) VALUES (?1, ?2, 100)",
                [kind, value],
            )
            .unwrap();
        }
        // The newest entry was pruned: its seq (3) must not be handed out again.
        conn.execute("DELETE FROM revocations WHERE seq = 3", [])
            .unwrap();
        migrate(&mut conn).unwrap();
        let kept: Vec<(i64, String)> = conn
            .prepare("SELECT seq, value FROM revocations ORDER BY seq")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [(1, "s1".to_owned()), (2, "j1".to_owned())]);
        let seq: i64 = conn
            .query_row(
                "INSERT INTO revocations (kind, value, covers_until)
                 VALUES ('legacy_cutoff', '5:alice', 100) RETURNING seq",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(seq, 4);
    }

    #[test]
    fn a_newer_schema_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    }
}
