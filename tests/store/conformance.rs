//! The store conformance suite: what the gateway, the session domain and the operator CLI rely
//! on from a [`Store`], written once and run against every implementation.
//!
//! Each test is a generic `async fn` over a [`Backend`], which makes fresh databases and opens
//! stores on them — several per database, as several processes (gateways, the CLI) would.
//! [`conformance_suite!`] turns the whole list into `#[tokio::test]`s for one backend, so a
//! new backend is one `Backend` impl and one macro call (see `sqlite.rs`).
//!
//! Concurrency tests race real tasks on a multi-threaded runtime through several stores on
//! one database; their assertions hold for every interleaving (exactly one winner, nothing
//! lost), never for a particular timing.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use authgate::sessions::operations::{refresh_rotating, RefreshOutcome};
use authgate::sessions::rules::{self, RefreshTiming};
use authgate::store::{
    CounterKey, CounterReading, CounterTimes, FeedCursor, LoginFinish, LoginOutcome, LoginReserve,
    Reservation, RetiredRefresh, Revocation, RevocationKind, Session, SessionSweep, Store,
    StoreError, User,
};
use tokio::sync::mpsc;

/// A store implementation under test.
pub trait Backend: Send + Sync + Sized + 'static {
    /// A fresh, empty database of its own for one test, removed when dropped.
    fn create() -> impl Future<Output = Self> + Send;
    /// A new store on this database with connections of its own, the way another process
    /// opens it. Opening again after dropping every store is a restart.
    fn open(&self) -> impl Future<Output = Arc<dyn Store>> + Send;
}

/// `#[tokio::test]`s running every conformance test against `$backend`.
macro_rules! conformance_suite {
    ($backend:ty) => {
        conformance_suite!(@tests $backend;
            usernames_are_unique_case_insensitively_and_keep_their_spelling,
            concurrent_registrations_of_one_name_yield_exactly_one_user,
            roles_are_sorted_granted_and_revoked_idempotently,
            ids_are_never_reused_after_a_delete_even_across_a_reopen,
            deleting_a_user_appends_a_user_entry_and_revokes_their_sessions,
            a_session_reads_back_as_created_and_step_up_moves_its_auth_time,
            revoking_a_session_twice_answers_none_the_second_time,
            concurrent_revocations_of_one_session_append_one_entry,
            a_password_change_revokes_the_swept_sessions_only,
            logout_all_revokes_every_live_session_of_the_user,
            disabling_a_user_revokes_their_sessions_and_refuses_new_ones_until_enabled,
            a_login_racing_a_disable_is_revoked_or_refused,
            the_refresh_swap_records_the_retired_token_and_needs_the_current_one,
            concurrent_swaps_from_one_token_succeed_exactly_once,
            rotation_rotates_then_tolerates_the_grace_then_detects_reuse,
            concurrent_refreshes_rotate_once_and_the_rest_get_the_grace,
            concurrent_refreshes_without_grace_rotate_once_and_revoke_the_session,
            a_refresh_racing_a_logout_never_rotates_a_revoked_session,
            the_feed_resumes_after_the_last_entry_it_delivered,
            a_follower_sees_every_entry_of_concurrent_writers_while_it_polls,
            nothing_is_lost_across_a_reopen,
            live_revocations_leave_out_entries_whose_tokens_expired,
            prune_removes_only_expired_entries_and_sessions_and_seqs_stay_unique,
            many_concurrent_writers_lose_nothing_and_never_report_busy,
            login_counters_admit_below_their_limits_and_count_failures_in_a_window,
            login_reservations_count_until_finished_or_their_lease_lapses,
            concurrent_login_reservations_never_exceed_a_limit,
            a_login_success_clears_its_usernames_failures_but_keeps_reservations,
            clearing_and_pruning_login_counters,
            legacy_entries_are_appended_and_read_back_by_every_store,
            a_legacy_refresh_token_is_exchanged_for_one_session_even_concurrently,
            a_legacy_exchange_outlives_its_pruned_session_until_the_legacy_token_expires,
            a_rehash_replaces_a_hash_only_while_it_is_unchanged,
            password_hash_samples_hold_one_hash_per_parameter_set,
        );
    };
    (@tests $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::conformance::$name::<$backend>().await;
            }
        )*
    };
}

const LEEWAY: Duration = Duration::from_secs(30);
const LEEWAY_SECS: i64 = 30;

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

async fn user(store: &Arc<dyn Store>, name: &str) -> User {
    store
        .create_user(name, "$argon2id$fake", vec![], 1_000)
        .await
        .unwrap()
}

/// A fresh database with one store open on it.
async fn fresh<B: Backend>() -> (B, Arc<dyn Store>) {
    let db = B::create().await;
    let store = db.open().await;
    (db, store)
}

/// `count` stores on one database, like as many processes.
async fn stores<B: Backend>(db: &B, count: usize) -> Vec<Arc<dyn Store>> {
    let mut stores = Vec::with_capacity(count);
    for _ in 0..count {
        stores.push(db.open().await);
    }
    stores
}

/// Every entry of the log, from its start, and the cursor after them.
async fn whole_log(store: &Arc<dyn Store>) -> (Vec<Revocation>, FeedCursor) {
    let page = store.live_revocations(i64::MIN).await.unwrap();
    (page.entries, page.cursor)
}

fn session_ids(entries: &[Revocation]) -> BTreeSet<String> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            RevocationKind::Session(sid) => Some(sid.clone()),
            _ => None,
        })
        .collect()
}

async fn rotate(
    store: &Arc<dyn Store>,
    presented: &str,
    new_jti: &str,
    now: i64,
    grace_secs: i64,
) -> RefreshOutcome {
    let timing = RefreshTiming {
        grace_secs,
        leeway_secs: LEEWAY_SECS,
    };
    refresh_rotating(store.as_ref(), "s1", presented, new_jti, now, timing)
        .await
        .unwrap()
}

/// `n` tasks at once, task `i` going through store `i % 2` of two on a fresh database (like
/// two processes) that holds session `s1` of user 1; the database and their results.
async fn race<B, T, Fut>(n: usize, task: impl Fn(Arc<dyn Store>, usize) -> Fut) -> (B, Vec<T>)
where
    B: Backend,
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let db = B::create().await;
    let stores = stores(&db, 2).await;
    stores[0]
        .create_session(&session("s1", 1, 1_000, 5_000))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(task(Arc::clone(&stores[i % 2]), i)))
        .collect();
    (db, join_all(tasks).await)
}

/// Awaits every task, failing on a panicked one.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

// ---- users ----

pub async fn usernames_are_unique_case_insensitively_and_keep_their_spelling<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let alice = user(&store, "Alice").await;
    let again = store
        .create_user("aLICE", "$argon2id$other", vec![], 1_000)
        .await;
    assert_eq!(again, Err(StoreError::UsernameTaken));

    let found = store.user_by_name("ALICE").await.unwrap().unwrap();
    assert_eq!(found.user, alice);
    assert_eq!(found.user.username, "Alice");
    assert_eq!(found.password_hash, "$argon2id$fake");
    assert_eq!(
        store.user_by_id(alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user_by_name("bob").await.unwrap(), None);
    assert_eq!(store.user_by_id(alice.id + 1).await.unwrap(), None);

    let bob = user(&store, "bob").await;
    assert_eq!(store.list_users().await.unwrap(), vec![alice, bob]);
}

pub async fn concurrent_registrations_of_one_name_yield_exactly_one_user<B: Backend>() {
    let (db, results) = race::<B, _, _>(20, |store, i| async move {
        let name = if i % 2 == 0 { "Carol" } else { "CAROL" };
        store.create_user(name, "$h", vec![], 1_000).await
    })
    .await;
    let mut created = 0;
    for result in results {
        match result {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e, StoreError::UsernameTaken),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(db.open().await.list_users().await.unwrap().len(), 1);
}

pub async fn roles_are_sorted_granted_and_revoked_idempotently<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
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
        store
            .user_by_name("dave")
            .await
            .unwrap()
            .unwrap()
            .user
            .roles,
        ["admin", "billing"]
    );
    assert_eq!(
        store.grant_role("nobody", "admin").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.revoke_role("nobody", "admin").await,
        Err(StoreError::NotFound)
    );
}

pub async fn ids_are_never_reused_after_a_delete_even_across_a_reopen<B: Backend>() {
    let (db, store) = fresh::<B>().await;
    user(&store, "a").await;
    let b = user(&store, "b").await;
    assert!(store
        .delete_user(b.id, 2_000, 9_000)
        .await
        .unwrap()
        .is_some());
    let c = user(&store, "c").await;
    assert!(c.id > b.id, "{} reused after deleting {}", c.id, b.id);
    assert!(store
        .delete_user(c.id, 2_000, 9_000)
        .await
        .unwrap()
        .is_some());
    drop(store);

    let store = db.open().await;
    let d = user(&store, "d").await;
    assert!(d.id > c.id, "{} reused after deleting {}", d.id, c.id);
}

pub async fn deleting_a_user_appends_a_user_entry_and_revokes_their_sessions<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
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
    assert_eq!(whole_log(&store).await.0, entries);
    assert_eq!(store.user_by_id(u.id).await.unwrap(), None);
    assert_eq!(store.user_by_name("ivan").await.unwrap(), None);
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

// ---- sessions ----

pub async fn a_session_reads_back_as_created_and_step_up_moves_its_auth_time<B: Backend>() {
    let (db, store) = fresh::<B>().await;
    let created = session("s1", 7, 1_000, 5_000);
    store.create_session(&created).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(created.clone()));
    assert_eq!(store.session("nope").await.unwrap(), None);
    assert!(store.set_auth_time("s1", 1_500).await.unwrap());
    // Another store on the database reads the same row.
    let other = db.open().await;
    let read = other.session("s1").await.unwrap().unwrap();
    assert_eq!(read.auth_time, 1_500);
    assert_eq!(
        Session {
            auth_time: 1_000,
            ..read
        },
        created
    );
    assert!(!store.set_auth_time("nope", 1_500).await.unwrap());
}

pub async fn revoking_a_session_twice_answers_none_the_second_time<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
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
    assert!(store.session("s1").await.unwrap().unwrap().revoked);
    assert_eq!(store.revoke_session("s1", 1_002).await.unwrap(), None);
    assert_eq!(store.revoke_session("nope", 1_002).await.unwrap(), None);
    assert!(!store.set_auth_time("s1", 1_003).await.unwrap());
    assert_eq!(whole_log(&store).await.0, vec![entry]);
}

pub async fn concurrent_revocations_of_one_session_append_one_entry<B: Backend>() {
    let (db, results) = race::<B, _, _>(10, |store, _| async move {
        store.revoke_session("s1", 1_001).await.unwrap()
    })
    .await;
    let entries: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(whole_log(&db.open().await).await.0, entries);
}

pub async fn a_password_change_revokes_the_swept_sessions_only<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
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
    // Over long before the change: no token of it can verify, so nothing to revoke.
    store
        .create_session(&session("long-gone", u.id, 10, 100))
        .await
        .unwrap();
    // Ends within the leeway of the change: its tokens still verify, so it is revoked.
    store
        .create_session(&session("just-ended", u.id, 10, 2_000 - LEEWAY_SECS))
        .await
        .unwrap();
    store.revoke_session("b", 1_001).await.unwrap();

    let sweep = rules::sweep(Some("keep"), 2_000, LEEWAY);
    let entries = store
        .set_password(u.id, "$argon2id$new", sweep)
        .await
        .unwrap();
    let kinds: Vec<_> = entries.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            RevocationKind::Session("just-ended".into()),
            RevocationKind::Session("a".into())
        ],
        "oldest session first"
    );
    assert!(store.session("a").await.unwrap().unwrap().revoked);
    assert!(!store.session("keep").await.unwrap().unwrap().revoked);
    assert!(!store.session("theirs").await.unwrap().unwrap().revoked);
    assert!(!store.session("long-gone").await.unwrap().unwrap().revoked);
    let found = store.user_by_name("frank").await.unwrap().unwrap();
    assert_eq!(found.password_hash, "$argon2id$new");

    let nobody = SessionSweep {
        keep_sid: None,
        expiring_from: 0,
        revoked_at: 2_000,
    };
    assert_eq!(
        store.set_password(9_999, "$h", nobody).await,
        Err(StoreError::NotFound)
    );
}

pub async fn logout_all_revokes_every_live_session_of_the_user<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let u = user(&store, "heidi").await;
    for sid in ["a", "b"] {
        store
            .create_session(&session(sid, u.id, 1_000, 5_000))
            .await
            .unwrap();
    }
    let entries = store
        .revoke_user_sessions(u.id, rules::sweep(None, 2_000, LEEWAY))
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(store.session("a").await.unwrap().unwrap().revoked);
    assert!(store.session("b").await.unwrap().unwrap().revoked);
    assert_eq!(
        store
            .revoke_user_sessions(9_999, rules::sweep(None, 2_000, LEEWAY))
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn disabling_a_user_revokes_their_sessions_and_refuses_new_ones_until_enabled<
    B: Backend,
>() {
    let (db, store) = fresh::<B>().await;
    let u = user(&store, "ivan").await;
    let other = user(&store, "judy").await;
    assert!(!u.disabled);
    for (sid, owner) in [("a", u.id), ("b", u.id), ("o", other.id)] {
        store
            .create_session(&session(sid, owner, 1_000, 5_000))
            .await
            .unwrap();
    }
    let entries = store
        .set_disabled(u.id, true, rules::sweep(None, 2_000, LEEWAY))
        .await
        .unwrap();
    assert_eq!(
        session_ids(&entries),
        BTreeSet::from(["a".into(), "b".into()])
    );
    assert!(!store.session("o").await.unwrap().unwrap().revoked);
    // Seen by every reader, another process included.
    let again = db.open().await;
    assert!(
        again
            .user_by_name("IVAN")
            .await
            .unwrap()
            .unwrap()
            .user
            .disabled
    );
    assert!(again.user_by_id(u.id).await.unwrap().unwrap().disabled);
    let listed = again.list_users().await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.disabled).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(
        again
            .create_session(&session("c", u.id, 2_000, 6_000))
            .await,
        Err(StoreError::UserDisabled)
    );
    assert!(again.session("c").await.unwrap().is_none());

    // Enabling revokes nothing and lets sessions start again.
    let entries = store
        .set_disabled(u.id, false, rules::sweep(None, 3_000, LEEWAY))
        .await
        .unwrap();
    assert!(entries.is_empty());
    assert!(!store.user_by_id(u.id).await.unwrap().unwrap().disabled);
    store
        .create_session(&session("d", u.id, 3_000, 7_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .set_disabled(9_999, true, rules::sweep(None, 3_000, LEEWAY))
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn a_login_racing_a_disable_is_revoked_or_refused<B: Backend>() {
    let db = B::create().await;
    let setup = db.open().await;
    let u = user(&setup, "kim").await;
    let racers = stores(&db, 2).await;
    let (logins, disabler) = (racers[0].clone(), racers[1].clone());
    let login = tokio::spawn(async move {
        let mut started = Vec::new();
        for i in 0..20 {
            let sid = format!("s{i}");
            match logins
                .create_session(&session(&sid, u.id, 1_000, 5_000))
                .await
            {
                Ok(()) => started.push(sid),
                Err(StoreError::UserDisabled) => break,
                Err(e) => panic!("{e}"),
            }
        }
        started
    });
    let disable = tokio::spawn(async move {
        disabler
            .set_disabled(u.id, true, rules::sweep(None, 2_000, LEEWAY))
            .await
            .unwrap()
    });
    let started = login.await.unwrap();
    let revoked = session_ids(&disable.await.unwrap());
    // Every session that started before the disable is revoked by it; none starts after.
    for sid in &started {
        assert!(revoked.contains(sid), "{sid} escaped the disable");
        assert!(setup.session(sid).await.unwrap().unwrap().revoked);
    }
    assert_eq!(
        setup
            .create_session(&session("late", u.id, 3_000, 6_000))
            .await,
        Err(StoreError::UserDisabled)
    );
}

// ---- rotation ----

pub async fn the_refresh_swap_records_the_retired_token_and_needs_the_current_one<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    store
        .create_session(&session("s1", 1, 1_000, 5_000))
        .await
        .unwrap();
    assert!(!store.swap_refresh("s1", "stale", "x", 1_050).await.unwrap());
    assert!(!store
        .swap_refresh("nope", "s1-r0", "x", 1_050)
        .await
        .unwrap());
    assert!(store
        .swap_refresh("s1", "s1-r0", "s1-r1", 1_100)
        .await
        .unwrap());
    let s = store.session("s1").await.unwrap().unwrap();
    assert_eq!(s.refresh_jti, "s1-r1");
    assert_eq!(
        s.retired_refresh,
        Some(RetiredRefresh {
            jti: "s1-r0".into(),
            retired_at: 1_100
        })
    );
    assert_eq!(s.refresh_issued_at(), 1_100);
    assert_eq!(s.expires_at, 5_000, "no sliding expiry");
    assert!(!store
        .swap_refresh("s1", "s1-r0", "s1-r2", 1_101)
        .await
        .unwrap());

    // A revoked session's token cannot be swapped, even the current one.
    store.revoke_session("s1", 1_200).await.unwrap().unwrap();
    assert!(!store
        .swap_refresh("s1", "s1-r1", "s1-r2", 1_201)
        .await
        .unwrap());
    assert_eq!(
        store.session("s1").await.unwrap().unwrap().refresh_jti,
        "s1-r1"
    );
}

pub async fn concurrent_swaps_from_one_token_succeed_exactly_once<B: Backend>() {
    let (db, results) = race::<B, _, _>(20, |store, i| async move {
        let new_jti = format!("new-{i}");
        let won = store
            .swap_refresh("s1", "s1-r0", &new_jti, 1_100)
            .await
            .unwrap();
        won.then_some(new_jti)
    })
    .await;
    let winners: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let s = db.open().await.session("s1").await.unwrap().unwrap();
    assert_eq!(s.refresh_jti, winners[0]);
    assert_eq!(s.retired_refresh.unwrap().jti, "s1-r0");
}

pub async fn rotation_rotates_then_tolerates_the_grace_then_detects_reuse<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let u = user(&store, "erin").await;
    store
        .create_session(&session("s1", u.id, 1_000, 5_000))
        .await
        .unwrap();
    assert_eq!(
        rotate(&store, "s1-r0", "x", 5_000 + LEEWAY_SECS + 1, 10).await,
        RefreshOutcome::Revoked,
        "over beyond the leeway"
    );

    let RefreshOutcome::Rotated(s) = rotate(&store, "s1-r0", "s1-r1", 1_100, 10).await else {
        panic!("expected Rotated");
    };
    assert_eq!(s.refresh_jti, "s1-r1");
    assert_eq!(s, store.session("s1").await.unwrap().unwrap());

    let grace = rotate(&store, "s1-r0", "s1-r2", 1_110, 10).await;
    let RefreshOutcome::WithinGrace(s) = grace else {
        panic!("expected WithinGrace, got {grace:?}");
    };
    assert_eq!(s.refresh_jti, "s1-r1", "grace answers the current jti");
    assert_eq!(s.refresh_issued_at(), 1_100);
    assert_eq!(
        store.session("s1").await.unwrap().unwrap().refresh_jti,
        "s1-r1"
    );

    let reuse = rotate(&store, "s1-r0", "s1-r2", 1_111, 10).await;
    let RefreshOutcome::ReuseDetected(entry) = reuse else {
        panic!("expected ReuseDetected, got {reuse:?}");
    };
    assert_eq!(entry.kind, RevocationKind::Session("s1".into()));
    assert_eq!(entry.covers_until, 5_000);
    assert!(store.session("s1").await.unwrap().unwrap().revoked);
    assert_eq!(whole_log(&store).await.0, vec![entry]);

    // Even the current token is dead now; an unknown session too.
    assert_eq!(
        rotate(&store, "s1-r1", "s1-r3", 1_112, 10).await,
        RefreshOutcome::Revoked
    );
    let timing = RefreshTiming {
        grace_secs: 10,
        leeway_secs: LEEWAY_SECS,
    };
    assert_eq!(
        refresh_rotating(store.as_ref(), "nope", "x", "y", 1_001, timing)
            .await
            .unwrap(),
        RefreshOutcome::Revoked
    );

    // A session is refreshable through the leeway past its end.
    store
        .create_session(&session("s3", u.id, 1_000, 5_000))
        .await
        .unwrap();
    let late = refresh_rotating(
        store.as_ref(),
        "s3",
        "s3-r0",
        "s3-r1",
        5_000 + LEEWAY_SECS,
        timing,
    )
    .await
    .unwrap();
    assert!(matches!(late, RefreshOutcome::Rotated(_)), "{late:?}");

    // A jti the session never had is reuse at once.
    store
        .create_session(&session("s2", u.id, 1_000, 5_000))
        .await
        .unwrap();
    let forged = refresh_rotating(store.as_ref(), "s2", "forged", "s2-r1", 1_001, timing)
        .await
        .unwrap();
    assert!(
        matches!(forged, RefreshOutcome::ReuseDetected(_)),
        "{forged:?}"
    );
    assert!(store.session("s2").await.unwrap().unwrap().revoked);
}

/// Twenty refreshes of one token at once, half through a second store on the database (like
/// another process), so both a store's own serialisation and the database's are raced.
async fn twenty_refreshes<B: Backend>(grace_secs: i64) -> (B, Vec<RefreshOutcome>) {
    race::<B, _, _>(20, move |store, i| async move {
        rotate(&store, "s1-r0", &format!("new-{i}"), 1_100, grace_secs).await
    })
    .await
}

pub async fn concurrent_refreshes_rotate_once_and_the_rest_get_the_grace<B: Backend>() {
    let (db, outcomes) = twenty_refreshes::<B>(10).await;
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
    let store = db.open().await;
    let s = store.session("s1").await.unwrap().unwrap();
    assert!(!s.revoked);
    assert_eq!(s.refresh_jti, rotated[0]);
}

pub async fn concurrent_refreshes_without_grace_rotate_once_and_revoke_the_session<B: Backend>() {
    let (db, outcomes) = twenty_refreshes::<B>(0).await;
    let count = |f: fn(&RefreshOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    assert_eq!(count(|o| matches!(o, RefreshOutcome::Rotated(_))), 1);
    // The first replay revokes the session; the later ones find it revoked.
    assert_eq!(count(|o| matches!(o, RefreshOutcome::ReuseDetected(_))), 1);
    assert_eq!(count(|o| matches!(o, RefreshOutcome::Revoked)), 18);
    let store = db.open().await;
    assert!(store.session("s1").await.unwrap().unwrap().revoked);
    assert_eq!(whole_log(&store).await.0.len(), 1);
}

pub async fn a_refresh_racing_a_logout_never_rotates_a_revoked_session<B: Backend>() {
    let db = B::create().await;
    let stores = stores(&db, 2).await;
    for round in 0..10 {
        let sid = format!("s{round}");
        stores[0]
            .create_session(&session(&sid, 1, 1_000, 5_000))
            .await
            .unwrap();
        let refresh = {
            let (store, sid) = (Arc::clone(&stores[0]), sid.clone());
            tokio::spawn(async move {
                let timing = RefreshTiming {
                    grace_secs: 10,
                    leeway_secs: LEEWAY_SECS,
                };
                let presented = format!("{sid}-r0");
                refresh_rotating(store.as_ref(), &sid, &presented, "new", 1_100, timing)
                    .await
                    .unwrap()
            })
        };
        let logout = {
            let (store, sid) = (Arc::clone(&stores[1]), sid.clone());
            tokio::spawn(async move { store.revoke_session(&sid, 1_100).await.unwrap() })
        };
        let (refresh, logout) = (refresh.await.unwrap(), logout.await.unwrap());
        assert!(logout.is_some(), "the logout always revokes");
        let row = stores[1].session(&sid).await.unwrap().unwrap();
        assert!(row.revoked);
        // Either the rotation came first (and the row shows it) or it found the session
        // revoked; it never rotated after the logout, and never took it for reuse.
        match refresh {
            RefreshOutcome::Rotated(_) => assert_eq!(row.refresh_jti, "new"),
            RefreshOutcome::Revoked => assert_eq!(row.refresh_jti, format!("{sid}-r0")),
            other => panic!("unexpected {other:?}"),
        }
    }
}

// ---- the revocation feed ----

pub async fn the_feed_resumes_after_the_last_entry_it_delivered<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    for sid in ["a", "b", "c"] {
        store
            .create_session(&session(sid, 1, 1_000, 5_000))
            .await
            .unwrap();
    }
    let (before, start) = whole_log(&store).await;
    assert!(before.is_empty());
    let first = store.revoke_session("a", 1_001).await.unwrap().unwrap();
    let page = store.revocations_since(&start).await.unwrap();
    assert_eq!(page.entries, vec![first.clone()]);

    let second = store.revoke_session("b", 1_002).await.unwrap().unwrap();
    let third = store.revoke_session("c", 1_003).await.unwrap().unwrap();
    assert!(first.seq < second.seq && second.seq < third.seq);
    let next = store.revocations_since(&page.cursor).await.unwrap();
    assert_eq!(next.entries, vec![second, third]);
    let last = store.revocations_since(&next.cursor).await.unwrap();
    assert!(last.entries.is_empty());
    // Nothing new: the cursor stays usable (and reading again changes nothing).
    assert!(store
        .revocations_since(&last.cursor)
        .await
        .unwrap()
        .entries
        .is_empty());
    // A start snapshot's cursor is past everything it returned.
    let (all, cursor) = whole_log(&store).await;
    assert_eq!(all.len(), 3);
    assert!(store
        .revocations_since(&cursor)
        .await
        .unwrap()
        .entries
        .is_empty());
}

pub async fn a_follower_sees_every_entry_of_concurrent_writers_while_it_polls<B: Backend>() {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let db = B::create().await;
    let writers = stores(&db, WRITERS).await;
    let reader = db.open().await;
    let mut expected = BTreeSet::new();
    for (w, writer) in writers.iter().enumerate() {
        for i in 0..EACH {
            let sid = format!("w{w}-{i}");
            writer
                .create_session(&session(&sid, 1, 1_000, 5_000))
                .await
                .unwrap();
            expected.insert(sid);
        }
    }

    // Each write is reported on the channel; the follower reads the feed on every report,
    // so its reads interleave with the writes of the others. It starts after the first write.
    let (written, mut reports) = mpsc::unbounded_channel::<()>();
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, store)| {
            let written = written.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let sid = format!("w{w}-{i}");
                    store.revoke_session(&sid, 1_001).await.unwrap().unwrap();
                    let _ = written.send(());
                }
            })
        })
        .collect();
    drop(written);

    reports.recv().await.unwrap();
    let start = reader.live_revocations(1_001).await.unwrap();
    let mut seen: Vec<Revocation> = start.entries;
    let mut cursor = start.cursor;
    let mut reads = 0;
    while reports.recv().await.is_some() {
        let page = reader.revocations_since(&cursor).await.unwrap();
        let seqs: Vec<_> = page.entries.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "in seq order: {seqs:?}"
        );
        seen.extend(page.entries);
        cursor = page.cursor;
        reads += 1;
    }
    join_all(tasks).await;
    // The writers are done: one more read brings the rest.
    seen.extend(reader.revocations_since(&cursor).await.unwrap().entries);
    assert!(reads > 0);
    assert_eq!(session_ids(&seen), expected, "every entry came");
    let distinct: HashSet<_> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(distinct.len(), WRITERS * EACH);
}

pub async fn nothing_is_lost_across_a_reopen<B: Backend>() {
    let db = B::create().await;
    let writer = db.open().await;
    let u = user(&writer, "judy").await;
    for sid in ["s1", "s2", "s3"] {
        writer
            .create_session(&session(sid, u.id, 1_000, 5_000))
            .await
            .unwrap();
    }
    let reader = db.open().await;
    let first = writer.revoke_session("s1", 1_001).await.unwrap().unwrap();
    let (seen, cursor) = whole_log(&reader).await;
    assert_eq!(seen, vec![first.clone()]);

    // The reader goes away; entries come while it is gone; it comes back with its cursor.
    drop(reader);
    let second = writer.revoke_session("s2", 1_002).await.unwrap().unwrap();
    let third = writer.revoke_session("s3", 1_003).await.unwrap().unwrap();
    drop(writer);

    let reopened = db.open().await;
    let page = reopened.revocations_since(&cursor).await.unwrap();
    assert_eq!(page.entries, vec![second.clone(), third.clone()]);
    assert_eq!(
        reopened.live_revocations(1_003).await.unwrap().entries,
        vec![first, second, third]
    );
    assert_eq!(reopened.user_by_id(u.id).await.unwrap(), Some(u));
    reopened.ping().await.unwrap();
}

pub async fn live_revocations_leave_out_entries_whose_tokens_expired<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let u = user(&store, "kim").await;
    for (sid, expires_at) in [("short", 100), ("long", 300)] {
        store
            .create_session(&session(sid, u.id, 10, expires_at))
            .await
            .unwrap();
        store.revoke_session(sid, 50).await.unwrap().unwrap();
    }
    let deleted = store.delete_user(u.id, 50, 300).await.unwrap().unwrap();

    let live = store.live_revocations(200).await.unwrap().entries;
    let kinds: HashSet<_> = live.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        HashSet::from([
            RevocationKind::User(u.id),
            RevocationKind::Session("long".into())
        ])
    );
    assert_eq!(deleted[0].covers_until, 300);
    // The boundary: an entry covering tokens until exactly `expired_by` is left out.
    assert!(store
        .live_revocations(300)
        .await
        .unwrap()
        .entries
        .is_empty());
    assert_eq!(store.live_revocations(299).await.unwrap().entries.len(), 2);
}

pub async fn prune_removes_only_expired_entries_and_sessions_and_seqs_stay_unique<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    store
        .create_session(&session("short", 1, 1_000, 2_000))
        .await
        .unwrap();
    store
        .create_session(&session("long", 1, 1_000, 9_000))
        .await
        .unwrap();
    let (_, start) = whole_log(&store).await;
    let short = store.revoke_session("short", 1_001).await.unwrap().unwrap();
    let long = store.revoke_session("long", 1_001).await.unwrap().unwrap();
    let page = store.revocations_since(&start).await.unwrap();
    assert_eq!(page.entries, vec![short.clone(), long.clone()]);

    assert_eq!(store.prune(1_999).await.unwrap(), 0);
    assert_eq!(
        store.prune(2_000).await.unwrap(),
        2,
        "one entry, one session"
    );
    assert_eq!(whole_log(&store).await.0, vec![long.clone()]);
    assert_eq!(
        store.live_revocations(2_000).await.unwrap().entries,
        vec![long.clone()]
    );
    assert_eq!(store.session("short").await.unwrap(), None);
    assert!(store.session("long").await.unwrap().is_some());

    // Sequence numbers are not reused after pruning, and a cursor from before the prune
    // still brings what comes after it.
    store.prune(10_000).await.unwrap();
    assert!(whole_log(&store).await.0.is_empty());
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
    let after = store.revocations_since(&page.cursor).await.unwrap();
    assert_eq!(after.entries, vec![later]);
}

// ---- concurrent writers ----

pub async fn many_concurrent_writers_lose_nothing_and_never_report_busy<B: Backend>() {
    const STORES: usize = 4;
    const TASKS: usize = 48;
    let db = B::create().await;
    let stores = stores(&db, STORES).await;
    let (_, start) = whole_log(&stores[0]).await;
    // Every task writes through one of the stores at once: a user, a session, a rotation,
    // a step-up and a revocation, each its own transaction. Any error (`Busy` included)
    // fails the test.
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = Arc::clone(&stores[i % STORES]);
            tokio::spawn(async move {
                let u = store
                    .create_user(&format!("user{i}"), "$h", vec![format!("r{i}")], 1_000)
                    .await
                    .unwrap();
                let sid = format!("s{i}");
                store
                    .create_session(&session(&sid, u.id, 1_000, 5_000))
                    .await
                    .unwrap();
                let swapped = store
                    .swap_refresh(&sid, &format!("{sid}-r0"), &format!("{sid}-r1"), 1_100)
                    .await
                    .unwrap();
                assert!(swapped);
                assert!(store.set_auth_time(&sid, 1_200).await.unwrap());
                store.revoke_session(&sid, 1_300).await.unwrap().unwrap();
                u.id
            })
        })
        .collect();
    let ids: HashSet<_> = join_all(tasks).await.into_iter().collect();
    assert_eq!(ids.len(), TASKS, "distinct user ids");

    let check = db.open().await;
    assert_eq!(check.list_users().await.unwrap().len(), TASKS);
    for i in 0..TASKS {
        let s = check.session(&format!("s{i}")).await.unwrap().unwrap();
        assert!(s.revoked);
        assert_eq!(s.refresh_jti, format!("s{i}-r1"));
        assert_eq!(s.auth_time, 1_200);
    }
    let entries = check.revocations_since(&start).await.unwrap().entries;
    let expected: BTreeSet<_> = (0..TASKS).map(|i| format!("s{i}")).collect();
    assert_eq!(session_ids(&entries), expected);
    assert_eq!(entries.len(), TASKS);
}

// ---- failed-login counters ----

/// A window of 60 s, in the milliseconds counters are kept in.
const WINDOW_MS: i64 = 60_000;

fn counter(username: &str, address: &str) -> CounterKey {
    CounterKey {
        username: username.to_owned(),
        address: address.to_owned(),
    }
}

fn times(now: i64) -> CounterTimes {
    CounterTimes {
        now,
        window_from: now - WINDOW_MS,
    }
}

/// The three counters of `user` at `address` with limits 2 (pair), 5 (user), 5 (address).
fn tiers(user: &str, address: &str) -> Vec<(CounterKey, u32)> {
    vec![
        (counter(user, address), 2),
        (counter(user, ""), 5),
        (counter("", address), 5),
    ]
}

async fn reserve(store: &Arc<dyn Store>, counters: &[(CounterKey, u32)], now: i64) -> Reservation {
    store
        .reserve_login(LoginReserve {
            counters: counters.to_vec(),
            times: times(now),
            lease_until: now + 30_000,
        })
        .await
        .unwrap()
}

async fn finish(
    store: &Arc<dyn Store>,
    counters: &[(CounterKey, u32)],
    outcome: LoginOutcome,
    now: i64,
) {
    store
        .finish_login(LoginFinish {
            counters: counters.iter().map(|(k, _)| k.clone()).collect(),
            outcome,
            times: times(now),
        })
        .await
        .unwrap();
}

/// A reserved check at `now` that fails at `now`.
async fn failure(store: &Arc<dyn Store>, counters: &[(CounterKey, u32)], now: i64) {
    assert!(reserve(store, counters, now).await.admitted);
    finish(store, counters, LoginOutcome::Failed, now).await;
}

pub async fn login_counters_admit_below_their_limits_and_count_failures_in_a_window<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let alice = tiers("alice", "10.0.0.1");
    let first = reserve(&store, &alice, 1_000_000).await;
    assert!(first.admitted);
    assert_eq!(first.readings, vec![CounterReading::default(); 3]);
    finish(&store, &alice, LoginOutcome::Failed, 1_000_500).await;
    failure(&store, &alice, 1_010_000).await;

    // The pair holds two failures in the window that opened at the first one.
    let full = reserve(&store, &alice, 1_020_000).await;
    assert!(!full.admitted);
    let pair = CounterReading {
        window_start: 1_000_500,
        failures: 2,
        pending: 0,
    };
    assert_eq!(full.readings[0], pair);
    assert_eq!(full.readings[1].failures, 2);
    assert_eq!(full.readings[2].failures, 2);
    // A refusal changes nothing, and another address or user has room.
    assert_eq!(
        reserve(&store, &alice, 1_020_001).await.readings,
        full.readings
    );
    let elsewhere = reserve(&store, &tiers("alice", "10.0.0.2"), 1_020_000).await;
    assert!(elsewhere.admitted);
    assert_eq!(elsewhere.readings[0], CounterReading::default());
    finish(
        &store,
        &tiers("alice", "10.0.0.2"),
        LoginOutcome::Abandoned,
        1_020_000,
    )
    .await;

    // Once the window has passed the counts start over, in a window of their own.
    let later = 1_000_500 + WINDOW_MS;
    let again = reserve(&store, &alice, later).await;
    assert!(again.admitted, "{again:?}");
    assert_eq!(again.readings[0].failures, 0);
    finish(&store, &alice, LoginOutcome::Failed, later + 5).await;
    let next = reserve(&store, &alice, later + 10).await;
    assert_eq!(next.readings[0].window_start, later + 5);
    assert_eq!(next.readings[0].failures, 1);
}

pub async fn login_reservations_count_until_finished_or_their_lease_lapses<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let bob = tiers("bob", "10.0.0.9");
    assert!(reserve(&store, &bob, 1_000_000).await.admitted);
    let second = reserve(&store, &bob, 1_000_001).await;
    assert!(second.admitted);
    assert_eq!(second.readings[0].pending, 1);
    // Two checks in flight fill the pair (limit 2) before any failure.
    let third = reserve(&store, &bob, 1_000_002).await;
    assert!(!third.admitted);
    assert_eq!(third.readings[0].pending, 2);
    assert_eq!(third.readings[0].failures, 0);
    finish(&store, &bob, LoginOutcome::Abandoned, 1_000_003).await;
    assert!(reserve(&store, &bob, 1_000_004).await.admitted);
    // Nobody finishes the two left: their lease (30 s) lapses.
    assert!(!reserve(&store, &bob, 1_029_999).await.admitted);
    let lapsed = reserve(&store, &bob, 1_030_004).await;
    assert!(lapsed.admitted, "{lapsed:?}");
    assert_eq!(lapsed.readings[0].pending, 0);
}

pub async fn concurrent_login_reservations_never_exceed_a_limit<B: Backend>() {
    let db = B::create().await;
    let stores = stores(&db, 2).await;
    // Twenty checks of one pair at once, through two stores (two replicas), limit 2; and the
    // address counter shared with another user, limit 5.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let user = if i % 4 == 3 { "carol" } else { "dave" };
            tokio::spawn(async move {
                let reserved = reserve(&store, &tiers(user, "10.1.1.1"), 1_000_000).await;
                (user, reserved.admitted)
            })
        })
        .collect();
    let results = join_all(tasks).await;
    let admitted = |name: &str| {
        results
            .iter()
            .filter(|(user, ok)| *user == name && *ok)
            .count()
    };
    assert_eq!(admitted("dave"), 2, "{results:?}");
    assert_eq!(admitted("carol"), 2, "{results:?}");
    // The address holds the four reservations: one more fills it.
    assert!(
        reserve(&stores[0], &tiers("erin", "10.1.1.1"), 1_000_001)
            .await
            .admitted
    );
    assert!(
        !reserve(&stores[1], &tiers("frank", "10.1.1.1"), 1_000_001)
            .await
            .admitted
    );
}

pub async fn a_login_success_clears_its_usernames_failures_but_keeps_reservations<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let here = tiers("gina", "10.0.0.1");
    let there = tiers("gina", "10.0.0.2");
    failure(&store, &here, 1_000_000).await;
    failure(&store, &there, 1_000_000).await;
    // A check from a third address is in flight while one from here succeeds.
    let third = tiers("gina", "10.0.0.3");
    assert!(reserve(&store, &third, 1_000_001).await.admitted);
    assert!(reserve(&store, &here, 1_000_002).await.admitted);
    let clear = LoginOutcome::Succeeded {
        clear_username: "gina".into(),
    };
    finish(&store, &here, clear, 1_000_003).await;

    let after = reserve(&store, &there, 1_000_004).await;
    assert_eq!(
        after.readings[0].failures, 0,
        "the pair elsewhere is cleared"
    );
    assert_eq!(after.readings[1].failures, 0, "the username is cleared");
    assert_eq!(
        after.readings[1].pending, 1,
        "the check in flight still counts"
    );
    assert_eq!(
        after.readings[2].failures, 1,
        "the address keeps its failure"
    );
    let here_now = reserve(&store, &here, 1_000_005).await;
    assert_eq!(here_now.readings[2].failures, 1, "this address too");
}

pub async fn clearing_and_pruning_login_counters<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    failure(&store, &tiers("hal", "10.0.0.1"), 1_000_000).await;
    failure(&store, &tiers("hal", "10.0.0.2"), 1_000_000).await;
    failure(&store, &tiers("ida", "10.0.0.1"), 1_000_000).await;
    // hal's own counter and two pairs.
    assert_eq!(store.clear_login_failures("hal").await.unwrap(), 3);
    assert_eq!(store.clear_login_failures("hal").await.unwrap(), 0);
    let ida = reserve(&store, &tiers("ida", "10.0.0.1"), 1_000_001).await;
    assert_eq!(ida.readings[0].failures, 1, "another user keeps theirs");
    assert_eq!(ida.readings[2].failures, 2, "addresses keep theirs");
    finish(
        &store,
        &tiers("ida", "10.0.0.1"),
        LoginOutcome::Abandoned,
        1_000_001,
    )
    .await;

    // Cleared counters go at once; ida's and the addresses' when their window has passed.
    assert_eq!(
        store.prune_login_counters(times(1_000_002)).await.unwrap(),
        3
    );
    assert_eq!(
        store
            .prune_login_counters(times(1_000_000 + WINDOW_MS))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .prune_login_counters(times(1_000_000 + WINDOW_MS))
            .await
            .unwrap(),
        0
    );
    // A counter with a reservation in flight stays until its lease lapses.
    assert!(
        reserve(&store, &tiers("jo", "10.0.0.3"), 2_000_000)
            .await
            .admitted
    );
    assert_eq!(
        store.prune_login_counters(times(2_000_001)).await.unwrap(),
        0
    );
    assert_eq!(
        store.prune_login_counters(times(2_030_000)).await.unwrap(),
        3
    );
}

// ---------------------------------------------------------------- migrating from Flask

pub async fn legacy_entries_are_appended_and_read_back_by_every_store<B: Backend>() {
    let (db, store) = fresh::<B>().await;
    let other = db.open().await;
    let (_, start) = whole_log(&other).await;
    let kinds = [
        RevocationKind::LegacyCutoff {
            username: "alice@example.com".into(),
            before: 1_500,
        },
        RevocationKind::Token("0b4e1c9a-2f0c-4a7e-9a59-0b0b3c5d7e11".into()),
        RevocationKind::Directory,
    ];
    let mut appended = Vec::new();
    for kind in &kinds {
        appended.push(
            store
                .append_revocation(kind.clone(), i64::MAX)
                .await
                .unwrap(),
        );
    }
    let page = other.revocations_since(&start).await.unwrap();
    assert_eq!(page.entries, appended);
    let read: Vec<RevocationKind> = page.entries.into_iter().map(|e| e.kind).collect();
    assert_eq!(read, kinds);
}

pub async fn a_legacy_refresh_token_is_exchanged_for_one_session_even_concurrently<B: Backend>() {
    let db = B::create().await;
    let stores = stores(&db, 4).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let candidate = session(&format!("s{i}"), 7, 1_000, 5_000);
            store
                .exchange_legacy("legacy-jti", 9_000, &candidate)
                .await
                .unwrap()
                .expect("a session")
        }));
    }
    let mut sids = BTreeSet::new();
    for task in tasks {
        sids.insert(task.await.unwrap().sid);
    }
    assert_eq!(sids.len(), 1, "one session per legacy jti: {sids:?}");
    let sid = sids.pop_first().unwrap();
    let store = &stores[0];
    assert_eq!(
        store.legacy_exchange_of(&sid).await.unwrap(),
        Some(("legacy-jti".to_owned(), 9_000))
    );
    assert_eq!(
        store.legacy_session_of("legacy-jti").await.unwrap(),
        Some(sid.clone())
    );
    assert_eq!(store.legacy_session_of("other-jti").await.unwrap(), None);
    for i in 0..12 {
        let other = format!("s{i}");
        if other != sid {
            assert_eq!(store.session(&other).await.unwrap(), None, "{other}");
        }
    }
    // Used again: the same session, revoked or not.
    store.revoke_session(&sid, 2_000).await.unwrap().unwrap();
    let again = store
        .exchange_legacy("legacy-jti", 9_000, &session("new", 7, 2_000, 6_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.sid, sid);
    assert!(again.revoked);
    assert_eq!(store.legacy_exchange_of("new").await.unwrap(), None);
}

pub async fn a_legacy_exchange_outlives_its_pruned_session_until_the_legacy_token_expires<
    B: Backend,
>() {
    let (_db, store) = fresh::<B>().await;
    let opened = session("s", 7, 1_000, 2_000);
    store
        .exchange_legacy("jti", 3_000, &opened)
        .await
        .unwrap()
        .unwrap();
    // The session is over and pruned; its legacy token still verifies until 3_000: no new
    // session for it.
    store.prune(2_500).await.unwrap();
    let later = session("later", 7, 2_500, 3_000);
    assert_eq!(
        store.exchange_legacy("jti", 3_000, &later).await.unwrap(),
        None
    );
    assert_eq!(store.session("later").await.unwrap(), None);
    // Once the legacy token has expired, the record goes too.
    store.prune(3_000).await.unwrap();
    assert_eq!(store.legacy_exchange_of("s").await.unwrap(), None);
}

pub async fn a_rehash_replaces_a_hash_only_while_it_is_unchanged<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    let u = store
        .create_user("imported", "$2b$10$old", vec![], 1_000)
        .await
        .unwrap();
    assert!(!store
        .rehash_password(u.id, "$2b$10$other", "$argon2id$new")
        .await
        .unwrap());
    assert!(store
        .rehash_password(u.id, "$2b$10$old", "$argon2id$new")
        .await
        .unwrap());
    let stored = store.user_by_name("imported").await.unwrap().unwrap();
    assert_eq!(stored.password_hash, "$argon2id$new");
    // A second rehash from the old hash (a concurrent login) changes nothing.
    assert!(!store
        .rehash_password(u.id, "$2b$10$old", "$argon2id$newer")
        .await
        .unwrap());
}

pub async fn password_hash_samples_hold_one_hash_per_parameter_set<B: Backend>() {
    let (_db, store) = fresh::<B>().await;
    assert!(store.password_hash_samples().await.unwrap().is_empty());
    for (name, hash) in [
        ("a", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDE$ZGlnZXN0MQ"),
        ("b", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$ZGlnZXN0Mg"),
        (
            "c",
            "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
        ),
        ("d", "pbkdf2:sha256:600000$salt$00ff"),
        ("e", "pbkdf2:sha256:600000$pepper$ff00"),
    ] {
        store.create_user(name, hash, vec![], 1_000).await.unwrap();
    }
    let samples = store.password_hash_samples().await.unwrap();
    let params: BTreeSet<&str> = samples
        .iter()
        .map(|h| authgate::store::hash_parameters(h))
        .collect();
    assert_eq!(samples.len(), 3, "{samples:?}");
    assert_eq!(
        params,
        BTreeSet::from([
            "$argon2id$v=19$m=19456,t=2,p=1",
            "$2b$12",
            "pbkdf2:sha256:600000"
        ])
    );
}
