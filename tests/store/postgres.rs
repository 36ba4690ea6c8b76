//! The conformance suite against PostgreSQL — a database of its own per test on the server
//! `scripts/test` provides — opened the way the gateway and the CLI open it (`store::open` on
//! a `postgres://` URL), and what only PostgreSQL has: readers that see transactions commit
//! out of seq order, announcements, concurrent migrations.

use std::path::Path;
use std::sync::Arc;

use authgate::config::StoreConfig;
use authgate::store::Store;

use crate::conformance::Backend;
use crate::pg::TestDatabase;

/// A database of its own; each store opened on it has a small pool, so parallel tests stay
/// well under the server's connection limit.
pub struct Postgres {
    db: TestDatabase,
}

impl Postgres {
    fn config(&self) -> StoreConfig {
        let text = format!("[store]\nurl = \"{}\"\npool_size = 4\n", self.db.url);
        authgate::config::parse(Path::new("test.toml"), &text)
            .expect("a valid store config")
            .store
    }
}

impl Backend for Postgres {
    async fn create() -> Self {
        Postgres {
            db: TestDatabase::create().await,
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        authgate::store::open(&self.config()).await.unwrap()
    }
}

conformance_suite!(Postgres);

/// Appends a revocation entry in a transaction left open, the way the store appends one
/// (same columns, same defaults): its seq is taken now, its commit comes when the test says.
async fn open_append<'c>(
    client: &'c mut tokio_postgres::Client,
    sid: &str,
) -> tokio_postgres::Transaction<'c> {
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO revocations (kind, value, covers_until) VALUES ('session', $1, 9000)",
        &[&sid],
    )
    .await
    .unwrap();
    tx
}

fn sids(entries: &[authgate::store::Revocation]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match &e.kind {
            authgate::store::RevocationKind::Session(sid) => sid.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_a_transaction_that_commits_after_a_later_seq() {
    let db = Postgres::create().await;
    let store = db.open().await;
    let start = store.live_revocations(0).await.unwrap();
    let (mut first, mut second) = (db.db.client().await, db.db.client().await);

    // `early` takes the lower seq, `late` the higher; `late` commits first.
    let early = open_append(&mut first, "early").await;
    let late = open_append(&mut second, "late").await;
    late.commit().await.unwrap();
    let page = store.revocations_since(&start.cursor).await.unwrap();
    assert_eq!(sids(&page.entries), ["late"]);

    // A reader that resumed from "the highest seq seen" would now skip `early`.
    early.commit().await.unwrap();
    let next = store.revocations_since(&page.cursor).await.unwrap();
    assert_eq!(
        sids(&next.entries),
        ["early"],
        "the late commit is still delivered"
    );
    assert!(next.entries[0].seq < page.entries[0].seq);
    // Delivered once: nothing repeats, and with no writer in flight nothing is remembered.
    let after = store.revocations_since(&next.cursor).await.unwrap();
    assert!(after.entries.is_empty(), "{:?}", after.entries);

    // A reader starting while a writer is in flight gets its entry later too.
    let pending = open_append(&mut first, "pending").await;
    let fresh = store.live_revocations(0).await.unwrap();
    assert_eq!(sids(&fresh.entries), ["early", "late"]);
    pending.commit().await.unwrap();
    let caught = store.revocations_since(&fresh.cursor).await.unwrap();
    assert_eq!(sids(&caught.entries), ["pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_announced_when_committed_and_after_every_reconnect() {
    use authgate::store::FeedSignal;
    let db = Postgres::create().await;
    let store = db.open().await;
    let mut signals = store.feed_signals().expect("PostgreSQL announces");
    assert_eq!(signals.recv().await, Some(FeedSignal::Listening));

    let writer = db.open().await;
    let session = authgate::store::Session {
        sid: "s1".into(),
        user_id: 1,
        created_at: 1_000,
        expires_at: 5_000,
        auth_time: 1_000,
        refresh_jti: "r0".into(),
        retired_refresh: None,
        revoked: false,
    };
    writer.create_session(&session).await.unwrap();
    let entry = writer.revoke_session("s1", 1_001).await.unwrap().unwrap();
    assert_eq!(
        signals.recv().await,
        Some(FeedSignal::Appended(vec![entry]))
    );

    // The server ends the listening connection: the listener connects again and says so.
    let killed: i64 = db
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            &[&db.db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    assert_eq!(signals.recv().await, Some(FeedSignal::Listening));
    let mut session = session;
    session.sid = "s2".into();
    writer.create_session(&session).await.unwrap();
    let entry = writer.revoke_session("s2", 1_002).await.unwrap().unwrap();
    assert_eq!(
        signals.recv().await,
        Some(FeedSignal::Appended(vec![entry]))
    );

    // Nothing is announced before its transaction commits, nor by one that rolls back.
    let mut client = db.db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_notify('authgate_revocations', '9 session 9 rolled-back')",
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    session.sid = "s3".into();
    writer.create_session(&session).await.unwrap();
    let entry = writer.revoke_session("s3", 1_003).await.unwrap().unwrap();
    assert_eq!(
        signals.recv().await,
        Some(FeedSignal::Appended(vec![entry]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_once() {
    let db = Postgres::create().await;
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let config = db.config();
            tokio::spawn(async move { authgate::store::open(&config).await })
        })
        .collect();
    for task in opening {
        task.await.unwrap().unwrap();
    }
    let client = db.db.client().await;
    let version: i64 = client
        .query_one("SELECT version FROM authgate_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 1);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM authgate_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_version_is_refused() {
    let db = Postgres::create().await;
    drop(db.open().await);
    db.db
        .client()
        .await
        .execute("UPDATE authgate_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let err = authgate::store::open(&db.config()).await.err().unwrap();
    assert!(err.contains("run a newer authgate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_the_message_hides_the_password() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!("[store]\nurl = \"postgres://app:hunter22@127.0.0.1:{port}/db\"\n");
    let config = authgate::config::parse(Path::new("t.toml"), &text)
        .unwrap()
        .store;
    let err = authgate::store::open(&config).await.err().unwrap();
    assert!(err.contains("unavailable"), "{err}");
    // The cause, not just "error connecting to server": refused and timed out differ.
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("hunter22"), "{err}");
    assert!(err.contains("postgres://***@127.0.0.1"), "{err}");
}
