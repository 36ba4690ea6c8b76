//! The in-memory revocation index the request path checks, so a token check never touches
//! the database.
//!
//! Owns the revoked sessions, users and token ids copied from the store's revocation log, a
//! generation counter that long-lived connections watch to re-check their token when
//! something new is revoked, and whether the copy is known to be current (a replica that
//! cannot confirm it is in sync is *stale* and must not vouch for any token). Where the next
//! read of the log resumes, and when the copy counts as stale, is the follower's business
//! (`app::follower`): this process applies its own entries at once, out of log order.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::store::{Revocation, RevocationKind};

/// How many entries of each kind the index holds, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevocationSizes {
    /// Revoked sessions (`sid`).
    pub sessions: usize,
    /// Revoked users (user id).
    pub users: usize,
    /// Revoked single tokens (`jti`).
    pub tokens: usize,
}

/// Revoked sessions, users and tokens, each mapped to the latest `exp` (epoch seconds) of the
/// tokens its entry covers. Share it behind an `Arc`.
#[derive(Debug)]
pub struct RevocationIndex {
    sets: RwLock<Sets>,
    generation: watch::Sender<u64>,
    /// Set while the follower cannot confirm the index holds every committed revocation.
    stale: AtomicBool,
}

/// The maps' hasher: foldhash, seeded per process. The keys are ids the gateway made itself
/// (random `sid`s and `jti`s, user ids), and lookups use ids from correctly signed tokens only,
/// so SipHash's flooding resistance buys nothing here while costing every request its price.
type Hasher = foldhash::fast::RandomState;

/// Ids are kept as `Box<str>` (16 bytes a slot, not `String`'s 24): at a million revoked
/// sessions the map's slots are most of the index's memory.
#[derive(Debug, Default)]
struct Sets {
    sessions: HashMap<Box<str>, i64, Hasher>,
    users: HashMap<i64, i64, Hasher>,
    tokens: HashMap<Box<str>, i64, Hasher>,
    /// Legacy cut-offs: folded username → tokens issued at or before this time are refused.
    /// Never pruned: a legacy token's lifetime is the old app's, unknown here.
    cutoffs: HashMap<String, i64>,
    /// The username map legacy tokens are read with: folded username → (id, spelling).
    names: HashMap<String, (i64, String)>,
    /// Users deleted since start: a late "users were added" reload must not bring them back.
    deleted: HashSet<i64>,
}

impl Sets {
    /// Records one entry, keeping the later expiry; true when the entry was not known before.
    fn insert(&mut self, entry: &Revocation) -> bool {
        let until = entry.covers_until;
        match &entry.kind {
            RevocationKind::Session(sid) => {
                keep_latest(&mut self.sessions, &**sid, until, |s| Box::from(s))
            }
            RevocationKind::User(id) => {
                if self.deleted.insert(*id) {
                    self.names.retain(|_, (known, _)| known != id);
                }
                keep_latest(&mut self.users, id, until, |id| *id)
            }
            RevocationKind::Token(jti) => {
                keep_latest(&mut self.tokens, &**jti, until, |s| Box::from(s))
            }
            RevocationKind::LegacyCutoff { username, before } => {
                let known = self.cutoffs.get(username).copied();
                if known.is_some_and(|k| k >= *before) {
                    return false;
                }
                self.cutoffs.insert(username.clone(), *before);
                true
            }
            // Read by the follower, which re-reads the users from the store.
            RevocationKind::Directory => false,
        }
    }

    /// [`Sets::insert`] taking the entry's id instead of copying it (the ids a start-up load
    /// holds by the million); other kinds as [`Sets::insert`].
    fn insert_owned(&mut self, entry: Revocation) -> bool {
        let until = entry.covers_until;
        match entry.kind {
            RevocationKind::Session(sid) => {
                keep_latest_owned(&mut self.sessions, sid.into(), until)
            }
            RevocationKind::Token(jti) => keep_latest_owned(&mut self.tokens, jti.into(), until),
            _ => self.insert(&entry),
        }
    }
}

/// What the index says about a legacy token's user (docs/http-api.md §7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyUser {
    /// The user the token's `sub` names: id and username as registered.
    Known(i64, String),
    /// No user of that name exists (or ever did, as far as this process knows).
    Unknown,
    /// Cut off (logout-all, password change, deletion, disabling) after the token was
    /// issued, or the user was deleted.
    Revoked,
}

/// The key legacy usernames are looked up under (usernames are ASCII).
pub fn fold_username(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Inserts `key` (made owned by `own` only when new) or raises its expiry; true when new.
fn keep_latest<K, Q>(
    map: &mut HashMap<K, i64, Hasher>,
    key: &Q,
    expires_at: i64,
    own: impl FnOnce(&Q) -> K,
) -> bool
where
    K: std::borrow::Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
{
    if let Some(known) = map.get_mut(key) {
        *known = (*known).max(expires_at);
        return false;
    }
    map.insert(own(key), expires_at);
    true
}

/// [`keep_latest`] for a key already owned.
fn keep_latest_owned<K: Hash + Eq>(
    map: &mut HashMap<K, i64, Hasher>,
    key: K,
    expires_at: i64,
) -> bool {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut known) => {
            let known = known.get_mut();
            *known = (*known).max(expires_at);
            false
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(expires_at);
            true
        }
    }
}

impl Default for RevocationIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl RevocationIndex {
    /// An empty index: nothing revoked, generation 0.
    pub fn new() -> Self {
        let (generation, _) = watch::channel(0);
        Self {
            sets: RwLock::new(Sets::default()),
            generation,
            stale: AtomicBool::new(false),
        }
    }

    /// The hot path's other question: whether this copy may be missing revocations (the
    /// follower has not confirmed it in sync for longer than allowed). One atomic load: no
    /// lock, no clock. Acquire pairs with [`RevocationIndex::set_stale`]'s release, so a
    /// caller that reads `false` after a catch-up sees the entries applied before it.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Marks the copy stale or in sync; returns what it was before.
    pub fn set_stale(&self, stale: bool) -> bool {
        self.stale.swap(stale, Ordering::AcqRel)
    }

    /// Adds log entries (idempotent: entries seen before change nothing but may raise their
    /// expiry). Subscribers are woken when at least one entry was new.
    pub fn apply(&self, entries: &[Revocation]) {
        let mut added = false;
        {
            let mut sets = self.write();
            for entry in entries {
                added |= sets.insert(entry);
            }
        }
        // Notify after the lock is released, so a woken task sees the new entries at once.
        if added {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// [`RevocationIndex::apply`] for a batch the caller no longer needs (the start's load of
    /// every live entry): ids are moved, not copied, and the maps grow once, so a million
    /// entries load without a second copy of each id or a trail of freed ones.
    pub fn apply_owned(&self, entries: Vec<Revocation>) {
        let mut added = false;
        {
            let mut sets = self.write();
            let (mut sessions, mut users, mut tokens) = (0, 0, 0);
            for entry in &entries {
                match entry.kind {
                    RevocationKind::Session(_) => sessions += 1,
                    RevocationKind::User(_) => users += 1,
                    RevocationKind::Token(_) => tokens += 1,
                    RevocationKind::LegacyCutoff { .. } | RevocationKind::Directory => {}
                }
            }
            sets.sessions.reserve(sessions);
            sets.users.reserve(users);
            sets.tokens.reserve(tokens);
            for entry in entries {
                added |= sets.insert_owned(entry);
            }
        }
        if added {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// The hot path: whether a token with this `jti`, session and user is revoked. One read
    /// lock, no allocation, no await.
    pub fn is_revoked(&self, jti: &str, sid: &str, user_id: i64) -> bool {
        let sets = self.read();
        sets.tokens.contains_key(jti)
            || sets.sessions.contains_key(sid)
            || sets.users.contains_key(&user_id)
    }

    /// Replaces the username map with `users` (id, username), leaving out users deleted
    /// meanwhile: at start, and when another process announces new users.
    pub fn load_users<'a>(&self, users: impl IntoIterator<Item = (i64, &'a str)>) {
        let mut sets = self.write();
        let names = users
            .into_iter()
            .filter(|(id, _)| !sets.deleted.contains(id))
            .map(|(id, name)| (fold_username(name), (id, name.to_owned())))
            .collect();
        sets.names = names;
    }

    /// Adds one user to the username map (registered by this process).
    pub fn add_user(&self, id: i64, username: &str) {
        let mut sets = self.write();
        if !sets.deleted.contains(&id) {
            sets.names
                .insert(fold_username(username), (id, username.to_owned()));
        }
    }

    /// The user a legacy token with `sub` = `username`, issued at `iat`, speaks for: the
    /// cut-off first (a deleted name stays cut off), then the map. One read lock.
    pub fn legacy_user(&self, username: &str, iat: u64) -> LegacyUser {
        let key = fold_username(username);
        let sets = self.read();
        if let Some(before) = sets.cutoffs.get(&key) {
            if i64::try_from(iat).map_or(true, |iat| iat <= *before) {
                return LegacyUser::Revoked;
            }
        }
        match sets.names.get(&key) {
            Some((id, _)) if sets.users.contains_key(id) || sets.deleted.contains(id) => {
                LegacyUser::Revoked
            }
            Some((id, name)) => LegacyUser::Known(*id, name.clone()),
            None => LegacyUser::Unknown,
        }
    }

    /// Forgets entries covering tokens only until before `expired_by` (epoch seconds; the
    /// session rules put it a leeway before now): every token they cover has expired anyway.
    /// Returns how many were dropped. Wakes no one.
    pub fn prune(&self, expired_by: i64) -> usize {
        let mut sets = self.write();
        let before = sizes_of(&sets);
        sets.sessions.retain(|_, exp| *exp >= expired_by);
        sets.users.retain(|_, exp| *exp >= expired_by);
        sets.tokens.retain(|_, exp| *exp >= expired_by);
        let after = sizes_of(&sets);
        (before.sessions - after.sessions)
            + (before.users - after.users)
            + (before.tokens - after.tokens)
    }

    /// Current entry counts per kind.
    pub fn sizes(&self) -> RevocationSizes {
        sizes_of(&self.read())
    }

    /// A receiver whose value changes each time `apply` adds an entry: a long-lived
    /// connection waits on `changed()` and then re-checks `is_revoked` for its own token.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    // A panic while holding the lock cannot leave a half-written entry (each insert is one
    // map operation), so a poisoned lock still guards a usable set: keep enforcing it.
    fn read(&self) -> RwLockReadGuard<'_, Sets> {
        self.sets.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Sets> {
        self.sets.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sizes_of(sets: &Sets) -> RevocationSizes {
    RevocationSizes {
        sessions: sets.sessions.len(),
        users: sets.users.len(),
        tokens: sets.tokens.len(),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn entry(seq: i64, kind: RevocationKind, covers_until: i64) -> Revocation {
        Revocation {
            seq,
            kind,
            covers_until,
        }
    }

    fn session(seq: i64, sid: &str, exp: i64) -> Revocation {
        entry(seq, RevocationKind::Session(sid.into()), exp)
    }

    #[test]
    fn a_batch_applied_by_value_is_the_same_index_as_by_reference() {
        let entries = vec![
            session(1, "s1", 100),
            entry(2, RevocationKind::User(7), 50),
            entry(3, RevocationKind::Token("j1".into()), 80),
            session(4, "s1", 300),
            session(5, "s1", 200),
        ];
        let by_ref = RevocationIndex::new();
        by_ref.apply(&entries);
        let owned = RevocationIndex::new();
        let changes = owned.subscribe();
        owned.apply_owned(entries);
        assert!(changes.has_changed().unwrap(), "subscribers are woken");
        assert_eq!(owned.sizes(), by_ref.sizes());
        for (jti, sid, user) in [("x", "s1", 1), ("j1", "x", 1), ("x", "x", 7)] {
            assert!(owned.is_revoked(jti, sid, user));
        }
        assert!(!owned.is_revoked("x", "s2", 1));
        // The latest expiry of the three s1 entries is kept: pruning at 250 keeps it.
        assert_eq!(owned.prune(250), 2);
        assert!(owned.is_revoked("x", "s1", 1));
    }

    #[test]
    fn an_empty_index_revokes_nothing() {
        let idx = RevocationIndex::new();
        assert!(!idx.is_revoked("j", "s", 1));
        assert_eq!(idx.sizes(), RevocationSizes::default());
    }

    #[test]
    fn an_index_starts_in_sync_and_reports_its_last_state_when_marked() {
        let idx = RevocationIndex::new();
        assert!(!idx.is_stale());
        assert!(!idx.set_stale(true));
        assert!(idx.is_stale());
        assert!(idx.set_stale(false));
        assert!(!idx.is_stale());
    }

    #[test]
    fn a_revoked_session_covers_every_token_of_that_session_only() {
        let idx = RevocationIndex::new();
        idx.apply(&[session(1, "s1", 100)]);
        assert!(idx.is_revoked("any-jti", "s1", 7));
        assert!(idx.is_revoked("other-jti", "s1", 8));
        assert!(!idx.is_revoked("any-jti", "s2", 7));
    }

    #[test]
    fn a_revoked_user_covers_every_session_of_that_user_only() {
        let idx = RevocationIndex::new();
        idx.apply(&[entry(1, RevocationKind::User(42), 100)]);
        assert!(idx.is_revoked("j", "s1", 42));
        assert!(idx.is_revoked("k", "s2", 42));
        assert!(!idx.is_revoked("j", "s1", 43));
    }

    #[test]
    fn a_revoked_jti_covers_that_token_only() {
        let idx = RevocationIndex::new();
        idx.apply(&[entry(1, RevocationKind::Token("j1".into()), 100)]);
        assert!(idx.is_revoked("j1", "s1", 1));
        assert!(!idx.is_revoked("j2", "s1", 1));
    }

    #[test]
    fn a_session_id_is_not_confused_with_a_token_id() {
        let idx = RevocationIndex::new();
        idx.apply(&[session(1, "same", 100)]);
        assert!(!idx.is_revoked("same", "other", 1));
    }

    #[test]
    fn applying_the_same_entries_twice_changes_nothing() {
        let idx = RevocationIndex::new();
        let batch = [
            session(1, "s1", 100),
            entry(2, RevocationKind::User(5), 100),
            entry(3, RevocationKind::Token("j".into()), 100),
        ];
        idx.apply(&batch);
        let sizes = idx.sizes();
        idx.apply(&batch);
        assert_eq!(idx.sizes(), sizes);
        assert_eq!(
            sizes,
            RevocationSizes {
                sessions: 1,
                users: 1,
                tokens: 1
            }
        );
    }

    #[test]
    fn prune_drops_only_entries_that_expired_before_now() {
        let idx = RevocationIndex::new();
        idx.apply(&[
            session(1, "old", 99),
            session(2, "edge", 100),
            entry(3, RevocationKind::User(1), 50),
            entry(4, RevocationKind::Token("j".into()), 200),
        ]);
        assert_eq!(idx.prune(100), 2);
        assert!(!idx.is_revoked("x", "old", 9));
        assert!(idx.is_revoked("x", "edge", 9), "expires_at == now is kept");
        assert!(!idx.is_revoked("x", "y", 1));
        assert!(idx.is_revoked("j", "y", 9));
        assert_eq!(
            idx.sizes(),
            RevocationSizes {
                sessions: 1,
                users: 0,
                tokens: 1
            }
        );
    }

    #[test]
    fn legacy_users_are_known_cut_off_and_deleted_by_name() {
        let idx = RevocationIndex::new();
        idx.load_users([(1, "Alice"), (2, "bob")]);
        assert_eq!(
            idx.legacy_user("alice", 100),
            LegacyUser::Known(1, "Alice".into())
        );
        assert_eq!(idx.legacy_user("carol", 100), LegacyUser::Unknown);
        let cutoff = |seq, name: &str, before| {
            entry(
                seq,
                RevocationKind::LegacyCutoff {
                    username: name.into(),
                    before,
                },
                i64::MAX,
            )
        };
        let rx = idx.subscribe();
        idx.apply(&[cutoff(1, "alice", 150)]);
        assert!(rx.has_changed().unwrap(), "tunnels re-check on a cut-off");
        assert_eq!(idx.legacy_user("ALICE", 150), LegacyUser::Revoked);
        assert_eq!(
            idx.legacy_user("alice", 151),
            LegacyUser::Known(1, "Alice".into())
        );
        // An older cut-off changes nothing.
        idx.apply(&[cutoff(2, "alice", 120)]);
        assert_eq!(idx.legacy_user("alice", 140), LegacyUser::Revoked);
        // Deleted: revoked, and a later reload of the users does not bring them back.
        idx.apply(&[entry(3, RevocationKind::User(2), 500)]);
        assert_eq!(idx.legacy_user("bob", 100), LegacyUser::Unknown);
        idx.load_users([(1, "Alice"), (2, "bob")]);
        assert_eq!(idx.legacy_user("bob", 100), LegacyUser::Unknown);
        idx.add_user(3, "Carol");
        assert_eq!(
            idx.legacy_user("carol", 100),
            LegacyUser::Known(3, "Carol".into())
        );
        assert_eq!(idx.prune(i64::MAX - 1), 1, "cut-offs are never pruned");
        assert_eq!(idx.legacy_user("alice", 140), LegacyUser::Revoked);
    }

    #[test]
    fn a_repeated_entry_keeps_the_later_expiry() {
        let idx = RevocationIndex::new();
        idx.apply(&[session(1, "s", 100)]);
        idx.apply(&[session(2, "s", 300)]);
        idx.apply(&[session(3, "s", 200)]);
        assert_eq!(idx.prune(250), 0);
        assert!(idx.is_revoked("j", "s", 1));
    }

    #[test]
    fn subscribers_see_a_change_when_something_new_is_revoked() {
        let idx = RevocationIndex::new();
        let mut rx = idx.subscribe();
        assert!(!rx.has_changed().expect("sender alive"));
        idx.apply(&[session(1, "s", 100)]);
        assert!(rx.has_changed().expect("sender alive"));
        let first = *rx.borrow_and_update();
        idx.apply(&[session(1, "s", 100)]);
        assert!(
            !rx.has_changed().expect("sender alive"),
            "re-applying a known entry wakes no one"
        );
        idx.apply(&[session(2, "t", 100)]);
        assert!(rx.has_changed().expect("sender alive"));
        assert_ne!(*rx.borrow_and_update(), first);
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_and_finds_its_session_revoked() {
        let idx = std::sync::Arc::new(RevocationIndex::new());
        let mut rx = idx.subscribe();
        let watcher = {
            let idx = std::sync::Arc::clone(&idx);
            tokio::spawn(async move {
                loop {
                    if rx.changed().await.is_err() {
                        return false;
                    }
                    if idx.is_revoked("j", "mine", 1) {
                        return true;
                    }
                }
            })
        };
        idx.apply(&[session(1, "someone-else", 100)]);
        idx.apply(&[session(2, "mine", 100)]);
        assert!(watcher.await.expect("task"));
    }
}
