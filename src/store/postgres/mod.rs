//! The PostgreSQL implementation of [`Store`], which several gateway replicas (and the operator
//! CLI) share.
//!
//! A pool of `pool_size` connections (deadpool-postgres, each checked with an empty query
//! before use) runs every call; reads are single statements, writes one transaction each in
//! PostgreSQL's default READ COMMITTED. That is enough for what the conformance suite asks:
//! the compare-and-swap of a refresh token and revoke-if-not-revoked are single `UPDATE … WHERE`
//! statements, which PostgreSQL re-checks against the newest row version after waiting for a
//! concurrent writer, so exactly one of racing callers wins in any number of processes;
//! usernames are unique by constraint; identity columns never hand out a number twice.
//!
//! Revocation entries record the transaction that wrote them, and the feed's cursor is a
//! transaction horizon rather than a seq (see [`feed`](crate::store::feed)); the transaction
//! that appends entries also sends a `NOTIFY`, which [`listener`] hears on a connection of its
//! own. Failed-login counters are locked in key order, so writers never wait on each other in
//! a cycle; a lost deadlock or serialisation race is retried.
//!
//! Connections are plain (`NoTls`): run PostgreSQL on loopback or a private network.

mod error;
mod listener;
mod migrations;

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::{
    CounterKey, CounterTimes, FeedCursor, FeedPage, FeedSignals, LoginFinish, LoginOutcome,
    LoginReserve, Reservation, RetiredRefresh, Revocation, RevocationKind, Session, SessionSweep,
    Store, StoreError, StoreFuture, StoredCounter, User, UserWithHash,
};
use crate::config::PostgresUrl;
use error::{is_retryable, is_unique_violation, map_err, map_pool_err};

/// How long connecting may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free pooled connection before failing with `Unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// TCP keep-alive probes, so a connection to a vanished server fails in seconds, not hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// How often a transaction that lost a deadlock or serialisation race is tried in all.
const ATTEMPTS: usize = 3;

/// Parameters of a statement.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The PostgreSQL store; cheap to share behind an `Arc<dyn Store>`.
pub struct PostgresStore {
    pool: Pool,
    /// For the dedicated `LISTEN` connection, which is not pooled.
    config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Connects to the database `url` names, brings its schema up to date (concurrent
    /// starters take turns under an advisory lock) and opens a pool of `pool_size`.
    pub async fn open(url: &PostgresUrl, pool_size: usize) -> Result<PostgresStore, StoreError> {
        let config = connection_config(url)?;
        let (mut client, connection) = config.connect(NoTls).await.map_err(map_err)?;
        let driver = tokio::spawn(connection);
        let migrated = migrations::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        migrated?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        Ok(PostgresStore { pool, config })
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(map_pool_err)
    }
}

/// The client settings of `url`, with authgate's timeouts and keep-alives.
fn connection_config(url: &PostgresUrl) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url
        .connection_string()
        .parse()
        .map_err(|e| StoreError::Internal(format!("not a PostgreSQL URL: {e}")))?;
    if config.get_application_name().is_none() {
        config.application_name("authgate");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
    Ok(config)
}

// ---- statements ----

async fn rows(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query(&statement, params).await.map_err(map_err)
}

async fn row_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query_opt(&statement, params).await.map_err(map_err)
}

async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(map_err)?;
    c.execute(&statement, params).await.map_err(map_err)
}

/// Row counts as the trait reports them.
fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The key usernames are unique under; login and registration must fold alike.
fn fold(username: &str) -> String {
    username.to_lowercase()
}

// ---- users ----

/// A user with their roles (sorted), in one statement.
const USER_COLUMNS: &str = "SELECT u.id, u.username, u.created_at, u.password_hash,
        COALESCE(array_agg(r.role ORDER BY r.role) FILTER (WHERE r.role IS NOT NULL), '{}'),
        u.disabled
     FROM users u LEFT JOIN user_roles r ON r.user_id = u.id";

fn user_of(row: &Row) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        created_at: row.get(2),
        roles: row.get(4),
        disabled: row.get(5),
    }
}

async fn insert_user(
    tx: &impl GenericClient,
    username: &str,
    password_hash: &str,
    mut roles: Vec<String>,
    now: i64,
) -> Result<User, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO users (username, username_lower, password_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .await
        .map_err(map_err)?;
    let id: i64 = tx
        .query_one(
            &statement,
            &[&username, &fold(username), &password_hash, &now],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::UsernameTaken
            } else {
                map_err(e)
            }
        })?
        .get(0);
    roles.sort();
    roles.dedup();
    for role in &roles {
        execute(
            tx,
            "INSERT INTO user_roles (user_id, role) VALUES ($1, $2)",
            &[&id, role],
        )
        .await?;
    }
    Ok(User {
        id,
        username: username.to_owned(),
        roles,
        created_at: now,
        disabled: false,
    })
}

async fn user_id_by_name(tx: &impl GenericClient, username: &str) -> Result<i64, StoreError> {
    row_opt(
        tx,
        "SELECT id FROM users WHERE username_lower = $1",
        &[&fold(username)],
    )
    .await?
    .map(|row| row.get(0))
    .ok_or(StoreError::NotFound)
}

// ---- sessions ----

fn session_of(row: &Row) -> Session {
    let prev_jti: Option<String> = row.get(6);
    let prev_retired_at: Option<i64> = row.get(7);
    Session {
        sid: row.get(0),
        user_id: row.get(1),
        created_at: row.get(2),
        expires_at: row.get(3),
        auth_time: row.get(4),
        refresh_jti: row.get(5),
        retired_refresh: prev_jti
            .zip(prev_retired_at)
            .map(|(jti, retired_at)| RetiredRefresh { jti, retired_at }),
        revoked: row.get::<_, Option<i64>>(8).is_some(),
    }
}

async fn insert_session(c: &impl GenericClient, session: &Session) -> Result<(), StoreError> {
    let retired = session.retired_refresh.as_ref();
    // One statement. FOR SHARE waits for a disable in progress (it holds the user's row lock
    // until its sweep commits) and then reads the committed flag; a disable that starts later
    // waits for this insert, and its sweep then sees the session.
    let inserted = execute(
        c,
        "WITH owner AS (SELECT disabled FROM users WHERE id = $2 FOR SHARE)
         INSERT INTO sessions (sid, user_id, created_at, expires_at, auth_time,
                               refresh_jti, prev_refresh_jti, prev_retired_at, revoked_at)
         SELECT $1::text, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::text,
                $7::text, $8::bigint, $9::bigint
         WHERE NOT EXISTS (SELECT 1 FROM owner WHERE disabled)",
        &[
            &session.sid,
            &session.user_id,
            &session.created_at,
            &session.expires_at,
            &session.auth_time,
            &session.refresh_jti,
            &retired.map(|r| r.jti.as_str()),
            &retired.map(|r| r.retired_at),
            &session.revoked.then_some(session.created_at),
        ],
    )
    .await?;
    if inserted == 0 {
        return Err(StoreError::UserDisabled);
    }
    Ok(())
}

/// Revokes the user's sessions the sweep selects, appending one entry each (oldest first).
async fn revoke_swept_sessions(
    tx: &impl GenericClient,
    user_id: i64,
    sweep: &SessionSweep<'_>,
) -> Result<Vec<Revocation>, StoreError> {
    let swept = rows(
        tx,
        "UPDATE sessions SET revoked_at = $2
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at >= $3
           AND ($4::text IS NULL OR sid <> $4)
         RETURNING created_at, sid, expires_at",
        &[
            &user_id,
            &sweep.revoked_at,
            &sweep.expiring_from,
            &sweep.keep_sid,
        ],
    )
    .await?;
    let mut swept: Vec<(i64, String, i64)> = swept
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    swept.sort();
    let kinds = swept
        .into_iter()
        .map(|(_, sid, expires_at)| (RevocationKind::Session(sid), expires_at))
        .collect();
    append_revocations(tx, kinds).await
}

// ---- revocation log ----

/// Appends entries in order and announces each with a `NOTIFY` carrying it, delivered to
/// listeners only if and when the calling transaction commits.
async fn append_revocations(
    tx: &impl GenericClient,
    entries: Vec<(RevocationKind, i64)>,
) -> Result<Vec<Revocation>, StoreError> {
    let mut appended = Vec::with_capacity(entries.len());
    for (kind, covers_until) in entries {
        let (kind_text, value) = kind.encode();
        let seq: i64 = rows(
            tx,
            "INSERT INTO revocations (kind, value, covers_until) VALUES ($1, $2, $3)
             RETURNING seq",
            &[&kind_text, &value, &covers_until],
        )
        .await?
        .first()
        .map(|row| row.get(0))
        .ok_or_else(|| StoreError::Internal("INSERT … RETURNING returned no row".into()))?;
        appended.push(Revocation {
            seq,
            kind,
            covers_until,
        });
    }
    for entry in &appended {
        let payload = listener::announcement(entry);
        execute(
            tx,
            "SELECT pg_notify($1, $2)",
            &[&listener::CHANNEL, &payload],
        )
        .await?;
    }
    Ok(appended)
}

/// A feed read: the entries `filter_sql` selects (a condition on `r` and `snap.xmin`, with
/// `$1`) in seq order, and the `xmin` of the statement's own snapshot, all from that one
/// snapshot. Each entry comes with its `xact`.
async fn feed_rows(
    c: &impl GenericClient,
    filter_sql: &str,
    arg: i64,
) -> Result<(i64, Vec<(Revocation, i64)>), StoreError> {
    // One statement, one snapshot: pg_current_snapshot() is the snapshot the join reads with.
    let sql = format!(
        "WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin)
         SELECT snap.xmin, r.seq, r.kind, r.value, r.covers_until, r.xact
         FROM snap LEFT JOIN revocations r ON {filter_sql}
         ORDER BY r.seq"
    );
    let found = rows(c, &sql, &[&arg]).await?;
    let xmin = found.first().map_or(0, |row| row.get(0));
    let mut entries = Vec::with_capacity(found.len());
    for row in &found {
        let Some(seq) = row.get::<_, Option<i64>>(1) else {
            continue; // the LEFT JOIN's row when nothing matched
        };
        let kind: String = row.get(2);
        let entry = Revocation::decode(seq, &kind, row.get(3), row.get(4))?;
        entries.push((entry, row.get(5)));
    }
    Ok((xmin, entries))
}

/// The cursor after a read at `xmin` that returned `fetched`: what was written at or above
/// the horizon and has been seen.
fn cursor_after(xmin: i64, fetched: &[(Revocation, i64)]) -> FeedCursor {
    let delivered = fetched
        .iter()
        .filter(|(_, xact)| *xact >= xmin)
        .map(|(entry, _)| entry.seq)
        .collect();
    FeedCursor::horizon(xmin, delivered)
}

// ---- failed-login counters ----

/// Locks counter `key` (creating it empty when missing) and reads it.
async fn lock_counter(
    tx: &impl GenericClient,
    key: &CounterKey,
) -> Result<StoredCounter, StoreError> {
    // The no-op update takes the row lock even when the row already exists.
    let row = rows(
        tx,
        "INSERT INTO login_counters
             (username, address, window_start, failures, pending, pending_until)
         VALUES ($1, $2, 0, 0, 0, 0)
         ON CONFLICT (username, address) DO UPDATE SET username = EXCLUDED.username
         RETURNING window_start, failures, pending, pending_until",
        &[&key.username, &key.address],
    )
    .await?;
    let row = row
        .first()
        .ok_or_else(|| StoreError::Internal("upsert … RETURNING returned no row".into()))?;
    Ok(StoredCounter {
        window_start: row.get(0),
        failures: count_of(row.get(1)),
        pending: count_of(row.get(2)),
        pending_until: row.get(3),
    })
}

/// A stored count; a negative one (never written) reads as zero.
fn count_of(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A count as stored (saturating: a count is far below `i32::MAX` in practice).
fn stored_count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn write_counter(
    tx: &impl GenericClient,
    key: &CounterKey,
    c: &StoredCounter,
) -> Result<(), StoreError> {
    execute(
        tx,
        "UPDATE login_counters
         SET window_start = $3, failures = $4, pending = $5, pending_until = $6
         WHERE username = $1 AND address = $2",
        &[
            &key.username,
            &key.address,
            &c.window_start,
            &stored_count(c.failures),
            &stored_count(c.pending),
            &c.pending_until,
        ],
    )
    .await?;
    Ok(())
}

/// Locks every counter of `username` in key order (its own counter first, as every writer
/// that touches it locks it first too) and clears their failures.
async fn clear_failures(tx: &impl GenericClient, username: &str) -> Result<usize, StoreError> {
    rows(
        tx,
        "SELECT 1 FROM login_counters WHERE username = $1 ORDER BY address FOR UPDATE",
        &[&username],
    )
    .await?;
    let cleared = execute(
        tx,
        "UPDATE login_counters SET failures = 0 WHERE username = $1 AND failures > 0",
        &[&username],
    )
    .await?;
    Ok(count(cleared))
}

/// Locks `keys` in key order — the order every writer locks counters in, so none waits on
/// another in a cycle — and reads them; the readings come back in `keys`' own order.
async fn lock_counters(
    tx: &impl GenericClient,
    keys: &[&CounterKey],
) -> Result<Vec<StoredCounter>, StoreError> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| keys[i]);
    let mut stored = vec![StoredCounter::default(); keys.len()];
    for i in order {
        stored[i] = lock_counter(tx, keys[i]).await?;
    }
    Ok(stored)
}

impl PostgresStore {
    /// In one transaction: `sql` updates user `user_id`'s row (`$1`) to `value` (`$2`) —
    /// `NotFound` when no such user exists — then `sweep`, if any, revokes their sessions.
    async fn update_user_then_sweep(
        &self,
        sql: &str,
        user_id: i64,
        value: impl ToSql + Sync,
        sweep: Option<SessionSweep<'_>>,
    ) -> Result<Vec<Revocation>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        if execute(&tx, sql, &[&user_id, &value]).await? == 0 {
            return Err(StoreError::NotFound);
        }
        let entries = match sweep {
            Some(sweep) => revoke_swept_sessions(&tx, user_id, &sweep).await?,
            None => Vec::new(),
        };
        tx.commit().await.map_err(map_err)?;
        Ok(entries)
    }

    async fn reserve_once(&self, reserve: &LoginReserve) -> Result<Reservation, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let keys: Vec<&CounterKey> = reserve.counters.iter().map(|(key, _)| key).collect();
        let stored = lock_counters(&tx, &keys).await?;
        let readings: Vec<_> = stored.iter().map(|s| reserve.times.read(s)).collect();
        let admitted = reserve.admits(&readings);
        if admitted {
            for (key, s) in keys.iter().zip(&stored) {
                write_counter(&tx, key, &reserve.reserved(s)).await?;
            }
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Reservation { admitted, readings })
    }

    async fn finish_once(&self, finish: &LoginFinish) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let keys: Vec<&CounterKey> = finish.counters.iter().collect();
        let stored = lock_counters(&tx, &keys).await?;
        for (key, s) in keys.iter().zip(&stored) {
            write_counter(&tx, key, &finish.applied(s)).await?;
        }
        if let LoginOutcome::Succeeded { clear_username } = &finish.outcome {
            clear_failures(&tx, clear_username).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn clear_once(&self, username: &str) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let cleared = clear_failures(&tx, username).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(cleared)
    }
}

/// Runs `attempt` until it does not lose a deadlock or serialisation race, [`ATTEMPTS`] times
/// at most.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if is_retryable(&e) && tries < ATTEMPTS => tries += 1,
            other => return other,
        }
    }
}

impl Store for PostgresStore {
    fn create_user<'a>(
        &'a self,
        username: &'a str,
        password_hash: &'a str,
        roles: Vec<String>,
        now: i64,
    ) -> StoreFuture<'a, User> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let user = insert_user(&tx, username, password_hash, roles, now).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(user)
        })
    }

    fn user_by_name<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Option<UserWithHash>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("{USER_COLUMNS} WHERE u.username_lower = $1 GROUP BY u.id");
            let row = row_opt(&client, &sql, &[&fold(username)]).await?;
            Ok(row.map(|row| UserWithHash {
                user: user_of(&row),
                password_hash: row.get(3),
            }))
        })
    }

    fn user_by_id(&self, id: i64) -> StoreFuture<'_, Option<User>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("{USER_COLUMNS} WHERE u.id = $1 GROUP BY u.id");
            Ok(row_opt(&client, &sql, &[&id])
                .await?
                .map(|row| user_of(&row)))
        })
    }

    fn list_users(&self) -> StoreFuture<'_, Vec<User>> {
        Box::pin(async move {
            let client = self.client().await?;
            let sql = format!("{USER_COLUMNS} GROUP BY u.id ORDER BY u.id");
            Ok(rows(&client, &sql, &[])
                .await?
                .iter()
                .map(user_of)
                .collect())
        })
    }

    fn set_password<'a>(
        &'a self,
        user_id: i64,
        new_hash: &'a str,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        Box::pin(self.update_user_then_sweep(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            user_id,
            new_hash,
            Some(sweep),
        ))
    }

    fn set_disabled<'a>(
        &'a self,
        user_id: i64,
        disabled: bool,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        // The row lock the update takes orders it against `create_session`'s FOR SHARE read.
        // Enabling revokes nothing.
        Box::pin(self.update_user_then_sweep(
            "UPDATE users SET disabled = $2 WHERE id = $1",
            user_id,
            disabled,
            disabled.then_some(sweep),
        ))
    }

    fn delete_user(
        &self,
        id: i64,
        now: i64,
        covers_until: i64,
    ) -> StoreFuture<'_, Option<Vec<Revocation>>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            execute(&tx, "DELETE FROM user_roles WHERE user_id = $1", &[&id]).await?;
            if execute(&tx, "DELETE FROM users WHERE id = $1", &[&id]).await? == 0 {
                return Ok(None);
            }
            // The User entry covers every token; marking the rows only stops further refreshes.
            execute(
                &tx,
                "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )
            .await?;
            let entries =
                append_revocations(&tx, vec![(RevocationKind::User(id), covers_until)]).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(Some(entries))
        })
    }

    fn grant_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let id = user_id_by_name(&tx, username).await?;
            let inserted = execute(
                &tx,
                "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, &role],
            )
            .await?;
            tx.commit().await.map_err(map_err)?;
            Ok(inserted == 1)
        })
    }

    fn revoke_role<'a>(&'a self, username: &'a str, role: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let id = user_id_by_name(&tx, username).await?;
            let deleted = execute(
                &tx,
                "DELETE FROM user_roles WHERE user_id = $1 AND role = $2",
                &[&id, &role],
            )
            .await?;
            tx.commit().await.map_err(map_err)?;
            Ok(deleted == 1)
        })
    }

    fn create_session<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            insert_session(&client, session).await
        })
    }

    fn session<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = row_opt(
                &client,
                "SELECT sid, user_id, created_at, expires_at, auth_time, refresh_jti,
                        prev_refresh_jti, prev_retired_at, revoked_at
                 FROM sessions WHERE sid = $1",
                &[&sid],
            )
            .await?;
            Ok(row.as_ref().map(session_of))
        })
    }

    fn swap_refresh<'a>(
        &'a self,
        sid: &'a str,
        expected_jti: &'a str,
        new_jti: &'a str,
        now: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            // One statement: a concurrent swap makes this one wait, then re-check its WHERE
            // against the row the other committed, and find the jti gone.
            let changed = execute(
                &client,
                "UPDATE sessions
                 SET prev_refresh_jti = refresh_jti, prev_retired_at = $4, refresh_jti = $3
                 WHERE sid = $1 AND refresh_jti = $2 AND revoked_at IS NULL",
                &[&sid, &expected_jti, &new_jti, &now],
            )
            .await?;
            Ok(changed == 1)
        })
    }

    fn set_auth_time<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE sessions SET auth_time = $2 WHERE sid = $1 AND revoked_at IS NULL",
                &[&sid, &now],
            )
            .await?;
            Ok(changed == 1)
        })
    }

    fn revoke_session<'a>(&'a self, sid: &'a str, now: i64) -> StoreFuture<'a, Option<Revocation>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let revoked = row_opt(
                &tx,
                "UPDATE sessions SET revoked_at = $2 WHERE sid = $1 AND revoked_at IS NULL
                 RETURNING expires_at",
                &[&sid, &now],
            )
            .await?;
            let Some(row) = revoked else {
                return Ok(None);
            };
            let kind = RevocationKind::Session(sid.to_owned());
            let entry = append_revocations(&tx, vec![(kind, row.get(0))])
                .await?
                .pop();
            tx.commit().await.map_err(map_err)?;
            Ok(entry)
        })
    }

    fn revoke_user_sessions<'a>(
        &'a self,
        user_id: i64,
        sweep: SessionSweep<'a>,
    ) -> StoreFuture<'a, Vec<Revocation>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            if row_opt(&tx, "SELECT 1 FROM users WHERE id = $1", &[&user_id])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound);
            }
            let entries = revoke_swept_sessions(&tx, user_id, &sweep).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(entries)
        })
    }

    fn revocations_since<'a>(&'a self, cursor: &'a FeedCursor) -> StoreFuture<'a, FeedPage> {
        Box::pin(async move {
            let Some((horizon, delivered)) = cursor.as_horizon() else {
                return Err(StoreError::Internal(
                    "a feed cursor of another kind of store".into(),
                ));
            };
            let client = self.client().await?;
            let (xmin, fetched) = feed_rows(&client, "r.xact >= $1", horizon).await?;
            // Snapshot horizons only move forward; never step back behind what was confirmed.
            let cursor = cursor_after(xmin.max(horizon), &fetched);
            let entries = fetched
                .into_iter()
                .map(|(entry, _)| entry)
                .filter(|entry| delivered.binary_search(&entry.seq).is_err())
                .collect();
            Ok(FeedPage { entries, cursor })
        })
    }

    fn live_revocations(&self, expired_by: i64) -> StoreFuture<'_, FeedPage> {
        Box::pin(async move {
            let client = self.client().await?;
            let (xmin, fetched) = feed_rows(
                &client,
                "r.covers_until > $1 OR r.xact >= snap.xmin",
                expired_by,
            )
            .await?;
            let cursor = cursor_after(xmin, &fetched);
            let entries = fetched
                .into_iter()
                .map(|(entry, _)| entry)
                .filter(|entry| entry.covers_until > expired_by)
                .collect();
            Ok(FeedPage { entries, cursor })
        })
    }

    fn prune(&self, expired_by: i64) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let entries = execute(
                &tx,
                "DELETE FROM revocations WHERE covers_until <= $1",
                &[&expired_by],
            )
            .await?;
            let sessions = execute(
                &tx,
                "DELETE FROM sessions WHERE expires_at <= $1",
                &[&expired_by],
            )
            .await?;
            let exchanges = execute(
                &tx,
                "DELETE FROM legacy_exchanges WHERE legacy_exp <= $1",
                &[&expired_by],
            )
            .await?;
            tx.commit().await.map_err(map_err)?;
            Ok(count(entries) + count(sessions) + count(exchanges))
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            execute(&client, "SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn append_revocation(
        &self,
        kind: RevocationKind,
        covers_until: i64,
    ) -> StoreFuture<'_, Revocation> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            let entry = append_revocations(&tx, vec![(kind, covers_until)])
                .await?
                .pop()
                .ok_or_else(|| StoreError::Internal("no entry appended".into()))?;
            tx.commit().await.map_err(map_err)?;
            Ok(entry)
        })
    }

    fn exchange_legacy<'a>(
        &'a self,
        legacy_jti: &'a str,
        legacy_exp: i64,
        session: &'a Session,
    ) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(map_err)?;
            // A concurrent first use of the same jti waits on the key until this commits,
            // then inserts nothing and reads the session recorded here.
            let claimed = row_opt(
                &tx,
                "INSERT INTO legacy_exchanges (legacy_jti, sid, legacy_exp) VALUES ($1, $2, $3)
                 ON CONFLICT (legacy_jti) DO NOTHING RETURNING sid",
                &[&legacy_jti, &session.sid, &legacy_exp],
            )
            .await?;
            if claimed.is_some() {
                insert_session(&tx, session).await?;
                tx.commit().await.map_err(map_err)?;
                return Ok(Some(session.clone()));
            }
            let row = row_opt(
                &tx,
                "SELECT s.sid, s.user_id, s.created_at, s.expires_at, s.auth_time, s.refresh_jti,
                        s.prev_refresh_jti, s.prev_retired_at, s.revoked_at
                 FROM legacy_exchanges e JOIN sessions s ON s.sid = e.sid
                 WHERE e.legacy_jti = $1",
                &[&legacy_jti],
            )
            .await?;
            tx.commit().await.map_err(map_err)?;
            Ok(row.as_ref().map(session_of))
        })
    }

    fn legacy_exchange_of<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, Option<(String, i64)>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = row_opt(
                &client,
                "SELECT legacy_jti, legacy_exp FROM legacy_exchanges WHERE sid = $1",
                &[&sid],
            )
            .await?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    fn legacy_session_of<'a>(&'a self, legacy_jti: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = row_opt(
                &client,
                "SELECT sid FROM legacy_exchanges WHERE legacy_jti = $1",
                &[&legacy_jti],
            )
            .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn rehash_password<'a>(
        &'a self,
        user_id: i64,
        old_hash: &'a str,
        new_hash: &'a str,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            let changed = execute(
                &client,
                "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                &[&user_id, &old_hash, &new_hash],
            )
            .await?;
            Ok(changed == 1)
        })
    }

    fn password_hash_samples(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let found = rows(&client, "SELECT password_hash FROM users", &[]).await?;
            Ok(super::one_per_parameter_set(
                found.iter().map(|row| row.get::<_, String>(0)),
            ))
        })
    }

    fn feed_signals(&self) -> Option<FeedSignals> {
        Some(listener::spawn(self.config.clone()))
    }

    fn reserve_login(&self, reserve: LoginReserve) -> StoreFuture<'_, Reservation> {
        Box::pin(async move { retrying(|| self.reserve_once(&reserve)).await })
    }

    fn finish_login(&self, finish: LoginFinish) -> StoreFuture<'_, ()> {
        Box::pin(async move { retrying(|| self.finish_once(&finish)).await })
    }

    fn clear_login_failures<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move { retrying(|| self.clear_once(username)).await })
    }

    fn prune_login_counters(&self, times: CounterTimes) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let client = self.client().await?;
            let pruned = execute(
                &client,
                "DELETE FROM login_counters
                 WHERE (failures = 0 OR window_start <= $1) AND (pending = 0 OR pending_until <= $2)",
                &[&times.window_from, &times.now],
            )
            .await?;
            Ok(count(pruned))
        })
    }
}
