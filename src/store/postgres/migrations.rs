//! The PostgreSQL schema and its versioned migrations.
//!
//! The version lives in the one-row table `authgate_schema`. Migration N (1-based) brings a
//! database from version N-1 to N. All of them run in one transaction that first takes a
//! transaction-scoped advisory lock, so replicas and the CLI starting at once take turns: the
//! first migrates, the others then find the schema current. DDL is transactional here, so a
//! crash leaves the previous version whole. Migrations are append-only: never edit one that
//! has shipped.

use tokio_postgres::Client;

use super::error::map_err;
use crate::store::StoreError;

/// The advisory lock key every authgate migration takes ("authgate" in ASCII).
const MIGRATION_LOCK: i64 = 0x6175_7468_6761_7465;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, roles, login sessions, the revocation log and the failed-login counters.
    "
    -- Identity columns never hand out a number twice, even after a delete: tokens name users
    -- by id, and feed readers remember seqs.
    CREATE TABLE users (
        id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username       TEXT   NOT NULL,
        username_lower TEXT   NOT NULL UNIQUE,
        password_hash  TEXT   NOT NULL,
        created_at     BIGINT NOT NULL
    );

    CREATE TABLE user_roles (
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role    TEXT   NOT NULL,
        PRIMARY KEY (user_id, role)
    );

    -- No foreign key to users: a deleted user's sessions stay (revoked) until pruned.
    CREATE TABLE sessions (
        sid              TEXT   PRIMARY KEY,
        user_id          BIGINT NOT NULL,
        created_at       BIGINT NOT NULL,
        expires_at       BIGINT NOT NULL,
        auth_time        BIGINT NOT NULL,
        refresh_jti      TEXT   NOT NULL,
        prev_refresh_jti TEXT,
        prev_retired_at  BIGINT,
        revoked_at       BIGINT
    );
    CREATE INDEX sessions_by_user ON sessions(user_id);
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);

    -- `xact` is the id of the transaction that appended the entry (pg_current_xact_id(), an
    -- xid8 kept as bigint): readers follow the log by transaction horizon, not by seq, because
    -- seqs are handed out at insert time and transactions commit in any order (store/feed.rs).
    CREATE TABLE revocations (
        seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind         TEXT   NOT NULL CHECK (kind IN ('session', 'user', 'token')),
        value        TEXT   NOT NULL,
        covers_until BIGINT NOT NULL,
        xact         BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
    );
    CREATE INDEX revocations_by_expiry ON revocations(covers_until);
    CREATE INDEX revocations_by_xact ON revocations(xact);

    -- Failed-login counters shared by every replica: `username` is empty for a per-address
    -- counter, `address` for a per-username one. Times in milliseconds since the epoch.
    CREATE TABLE login_counters (
        username      TEXT    NOT NULL,
        address       TEXT    NOT NULL,
        window_start  BIGINT  NOT NULL,
        failures      INTEGER NOT NULL,
        pending       INTEGER NOT NULL,
        pending_until BIGINT  NOT NULL,
        PRIMARY KEY (username, address)
    );
    ",
    // 2: migrating from flask-jwt-extended. Two more kinds of log entry (a per-username
    // cut-off of legacy tokens, and "users were added" for readers' username maps), and each
    // legacy refresh token exchanged for a session recorded by its `jti` until it expires.
    "
    ALTER TABLE revocations DROP CONSTRAINT revocations_kind_check;
    ALTER TABLE revocations ADD CONSTRAINT revocations_kind_check
        CHECK (kind IN ('session', 'user', 'token', 'legacy_cutoff', 'directory'));

    CREATE TABLE legacy_exchanges (
        legacy_jti TEXT   PRIMARY KEY,
        sid        TEXT   NOT NULL UNIQUE,
        legacy_exp BIGINT NOT NULL
    );
    ",
    // 3: users an operator disabled (`authgate user disable`): they cannot log in.
    "
    ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT false;
    ",
];

/// The schema version this build creates and understands.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration the database lacks, under the advisory lock, in one transaction.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(map_err)?;
    // `CREATE TABLE IF NOT EXISTS` on an existing table sends a NOTICE, which the driver logs
    // at INFO: every replica after the first would log a harmless line that reads like an
    // error. Notices are silenced for this transaction only.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS authgate_schema (
             only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
             version  BIGINT  NOT NULL
         );
         INSERT INTO authgate_schema (version) VALUES (0) ON CONFLICT DO NOTHING;",
    )
    .await
    .map_err(map_err)?;
    let current: i64 = tx
        .query_one("SELECT version FROM authgate_schema", &[])
        .await
        .map_err(map_err)?
        .get(0);
    ensure_known(current)?;
    let from = usize::try_from(current).unwrap_or(0);
    for step in MIGRATIONS.iter().skip(from) {
        tx.batch_execute(step).await.map_err(map_err)?;
    }
    if current < LATEST_VERSION {
        tx.execute(
            "UPDATE authgate_schema SET version = $1",
            &[&LATEST_VERSION],
        )
        .await
        .map_err(map_err)?;
    }
    tx.commit().await.map_err(map_err)
}

/// Refuses a database written by a newer build: its meaning of the tables is unknown here.
fn ensure_known(version: i64) -> Result<(), StoreError> {
    crate::store::ensure_known_version(version, LATEST_VERSION)
}
