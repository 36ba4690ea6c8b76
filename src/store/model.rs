//! Records the store hands out, shared by the store implementations and their callers.

/// What a revocation entry covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RevocationKind {
    /// Every token carrying this `sid` (logout, reuse detection, password change, logout-all).
    Session(String),
    /// Every token of this user id (the user was deleted; ids are never reused).
    User(i64),
    /// One token, by `jti`.
    Token(String),
    /// Every legacy (flask-jwt-extended) token of a username issued at or before `before`
    /// (logout-all, a password change, deletion, disabling: docs/http-api.md §7.5). Keyed by the
    /// folded username, not the id: a legacy token names its user by name, and a deleted
    /// name registered again must not inherit the old tokens.
    LegacyCutoff {
        /// The username, lowercased (usernames are ASCII).
        username: String,
        /// Seconds since the epoch; tokens with `iat <= before` are refused.
        before: i64,
    },
    /// Not a revocation: users were added by another process (`authgate user import`), so a
    /// reader re-reads its username map (kept for legacy tokens) from the store.
    Directory,
}

impl RevocationKind {
    /// The kind and value columns a store keeps an entry in.
    pub(crate) fn encode(&self) -> (&'static str, String) {
        match self {
            RevocationKind::Session(sid) => ("session", sid.clone()),
            RevocationKind::User(id) => ("user", id.to_string()),
            RevocationKind::Token(jti) => ("token", jti.clone()),
            RevocationKind::LegacyCutoff { username, before } => {
                ("legacy_cutoff", format!("{before}:{username}"))
            }
            RevocationKind::Directory => ("directory", String::new()),
        }
    }
}

impl Revocation {
    /// The entry a store's row holds: the inverse of [`RevocationKind::encode`].
    pub(crate) fn decode(
        seq: i64,
        kind: &str,
        value: String,
        covers_until: i64,
    ) -> Result<Revocation, super::StoreError> {
        use super::StoreError::Internal;
        let kind =
            match kind {
                "session" => RevocationKind::Session(value),
                "token" => RevocationKind::Token(value),
                "directory" => RevocationKind::Directory,
                "legacy_cutoff" => {
                    let parsed = value
                        .split_once(':')
                        .and_then(|(before, name)| Some((before.parse().ok()?, name.to_owned())));
                    let Some((before, username)) = parsed else {
                        return Err(Internal(format!(
                            "revocation entry {seq} holds no valid legacy cut-off"
                        )));
                    };
                    RevocationKind::LegacyCutoff { username, before }
                }
                "user" => RevocationKind::User(value.parse().map_err(|_| {
                    Internal(format!("revocation entry {seq} names no valid user id"))
                })?),
                _ => {
                    return Err(Internal(format!(
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
}

/// One row of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The entry's position in the log: unique, and increasing in the order entries were
    /// appended (not necessarily the order they became visible; see [`FeedCursor`](super::FeedCursor)).
    pub seq: i64,
    /// What is revoked.
    pub kind: RevocationKind,
    /// The latest `exp` (seconds since the epoch) any token it covers can carry: a fact about
    /// the covered tokens. Until that time plus the verification leeway a covered token could
    /// still verify, so the entry stays in force; the session domain decides when it may go.
    pub covers_until: i64,
}

/// A user account as callers see it, without the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Never reused after a delete; tokens carry it as `sub`.
    pub id: i64,
    /// The spelling used at registration.
    pub username: String,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Disabled by an operator: logins fail as with a wrong password, no session may start.
    pub disabled: bool,
}

/// A user together with the stored password hash, for password checks only.
#[derive(Clone, PartialEq, Eq)]
pub struct UserWithHash {
    /// The account.
    pub user: User,
    /// The argon2id PHC string.
    pub password_hash: String,
}

// The hash stays out of Debug output so it can never reach a log line.
impl std::fmt::Debug for UserWithHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserWithHash")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// The scheme and parameters of a stored password hash, without its salt and digest:
/// `$argon2id$v=19$m=19456,t=2,p=1`, `$2b$12`, `pbkdf2:sha256:600000`, `scrypt:32768:8:1`.
/// Hashes with equal parameters cost the same to verify.
pub fn hash_parameters(hash: &str) -> &str {
    if let Some(rest) = hash.strip_prefix('$') {
        // bcrypt: `$2b$12$<salt+digest>`; PHC: `$id$v=..$params$salt$digest`.
        let drop = if rest.starts_with('2') { 1 } else { 2 };
        let mut end = hash.len();
        for _ in 0..drop {
            end = hash.get(..end).and_then(|h| h.rfind('$')).unwrap_or(0);
        }
        return hash.get(..end).unwrap_or_default();
    }
    hash.split_once('$').map_or(hash, |(params, _)| params)
}

/// One hash of `hashes` for each distinct [`hash_parameters`], ordered by them (what
/// `Store::password_hash_samples` answers).
pub fn one_per_parameter_set(hashes: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut samples = std::collections::BTreeMap::new();
    for hash in hashes {
        samples
            .entry(hash_parameters(&hash).to_owned())
            .or_insert(hash);
    }
    samples.into_values().collect()
}

/// A login session: the tokens of one login share its `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session id carried by every token of this login.
    pub sid: String,
    /// The user who logged in.
    pub user_id: i64,
    /// When the login happened, seconds since the epoch.
    pub created_at: i64,
    /// `created_at + refresh_ttl`; refreshing never extends it.
    pub expires_at: i64,
    /// The session's last password check (login or step-up).
    pub auth_time: i64,
    /// The `jti` of the session's current refresh token.
    pub refresh_jti: String,
    /// The refresh token the last rotation retired, if any.
    pub retired_refresh: Option<RetiredRefresh>,
    /// Whether the session has been revoked.
    pub revoked: bool,
}

impl Session {
    /// When the current refresh token was issued: at the rotation that retired the previous
    /// one, or at the login. Re-signing it within the reuse grace keeps its claims unchanged.
    pub fn refresh_issued_at(&self) -> i64 {
        self.retired_refresh
            .as_ref()
            .map_or(self.created_at, |retired| retired.retired_at)
    }
}

/// A refresh token that a rotation replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredRefresh {
    /// Its `jti`.
    pub jti: String,
    /// When the rotation retired it, seconds since the epoch.
    pub retired_at: i64,
}

/// Which sessions of a user a multi-session revocation (password change, logout-all) takes:
/// the ones not revoked yet, expiring at or after `expiring_from`, except `keep_sid`. The
/// session domain fills it in; the store only applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSweep<'a> {
    /// A session to leave alone (the caller's own).
    pub keep_sid: Option<&'a str>,
    /// Sessions that expired before this time have no token left that could verify.
    pub expiring_from: i64,
    /// The revocation time stamped on the swept sessions.
    pub revoked_at: i64,
}

/// One failed-login counter (docs/http-api.md §3): a username and client address together, a
/// username over all addresses (`address` empty), or an address over all usernames
/// (`username` empty). Ordered, so every writer locks counters in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// The username as the limiter folds it; empty for the per-address counter.
    pub username: String,
    /// The client address as text; empty for the per-username counter.
    pub address: String,
}

/// A counter's row as stored. Times are milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredCounter {
    /// When its window opened (at its first failure).
    pub window_start: i64,
    /// Failures counted in that window.
    pub failures: u32,
    /// Password checks reserved and not finished yet.
    pub pending: u32,
    /// Until when those reservations count (a crashed process's reservation lapses then).
    pub pending_until: i64,
}

/// A counter as it stands at the time of a [`LoginReserve`] or [`LoginFinish`]: a window that
/// has passed counts no failures, a lapsed lease no reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterReading {
    /// When the running window opened; meaningful only while `failures > 0`.
    pub window_start: i64,
    /// Failures in the running window.
    pub failures: u32,
    /// Password checks in flight, on any replica.
    pub pending: u32,
}

/// The times a counter is read at, fixed by the caller (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterTimes {
    /// Now.
    pub now: i64,
    /// A window that opened at or before this time has passed.
    pub window_from: i64,
}

impl CounterTimes {
    /// How `stored` stands at these times.
    pub fn read(&self, stored: &StoredCounter) -> CounterReading {
        let running = stored.failures > 0 && stored.window_start > self.window_from;
        CounterReading {
            window_start: stored.window_start,
            failures: if running { stored.failures } else { 0 },
            pending: if stored.pending_until > self.now {
                stored.pending
            } else {
                0
            },
        }
    }

    /// `stored` after one of its reservations ended (saturating: a lapsed lease may have
    /// reset it already).
    pub fn released(&self, stored: &StoredCounter) -> StoredCounter {
        StoredCounter {
            pending: self.read(stored).pending.saturating_sub(1),
            ..*stored
        }
    }

    /// `stored` after one of its reservations ended in a failure: counted in the running
    /// window, or opening a new one now.
    pub fn failed(&self, stored: &StoredCounter) -> StoredCounter {
        let reading = self.read(stored);
        let (window_start, failures) = if reading.failures > 0 {
            (stored.window_start, reading.failures.saturating_add(1))
        } else {
            (self.now, 1)
        };
        StoredCounter {
            window_start,
            failures,
            ..self.released(stored)
        }
    }
}

/// A request to reserve one password check against some counters (see
/// [`Store::reserve_login`](super::Store::reserve_login)).
#[derive(Debug, Clone)]
pub struct LoginReserve {
    /// Each counter with its limit: failures plus checks in flight must stay below it.
    pub counters: Vec<(CounterKey, u32)>,
    /// When the request is made.
    pub times: CounterTimes,
    /// Until when the reservation counts unless finished sooner.
    pub lease_until: i64,
}

impl LoginReserve {
    /// Whether `readings` (one per counter, in order) leave room for one more check.
    pub fn admits(&self, readings: &[CounterReading]) -> bool {
        self.counters
            .iter()
            .zip(readings)
            .all(|((_, max), r)| r.failures.saturating_add(r.pending) < *max)
    }

    /// `stored` with this reservation added.
    pub fn reserved(&self, stored: &StoredCounter) -> StoredCounter {
        let reading = self.times.read(stored);
        StoredCounter {
            window_start: stored.window_start,
            failures: reading.failures,
            pending: reading.pending.saturating_add(1),
            pending_until: stored.pending_until.max(self.lease_until),
        }
    }
}

/// What [`Store::reserve_login`](super::Store::reserve_login) found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Whether the check was admitted (and reserved against every counter).
    pub admitted: bool,
    /// The counters as they stood before the reservation, in the request's order.
    pub readings: Vec<CounterReading>,
}

/// How a reserved password check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A wrong password: a failure on every counter.
    Failed,
    /// The right password: the reservation ends, and every counter of this (folded)
    /// username — its own and its pairs with addresses — loses its failures (reservations of
    /// other checks in flight stay).
    Succeeded {
        /// The username whose counters go.
        clear_username: String,
    },
    /// No outcome (the request failed otherwise): the reservation just ends.
    Abandoned,
}

/// The end of a reserved password check (see
/// [`Store::finish_login`](super::Store::finish_login)).
#[derive(Debug, Clone)]
pub struct LoginFinish {
    /// The counters the check was reserved against.
    pub counters: Vec<CounterKey>,
    /// How it ended.
    pub outcome: LoginOutcome,
    /// When it ended.
    pub times: CounterTimes,
}

impl LoginFinish {
    /// `stored` after this check ended.
    pub fn applied(&self, stored: &StoredCounter) -> StoredCounter {
        match self.outcome {
            LoginOutcome::Failed => self.times.failed(stored),
            LoginOutcome::Succeeded { .. } | LoginOutcome::Abandoned => self.times.released(stored),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn hash_parameters_drop_salt_and_digest() {
        for (hash, params) in [
            (
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$ZGlnZXN0",
                "$argon2id$v=19$m=19456,t=2,p=1",
            ),
            (
                "$2b$12$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
                "$2b$12",
            ),
            ("pbkdf2:sha256:600000$salt$00ff", "pbkdf2:sha256:600000"),
            ("scrypt:32768:8:1$salt$00ff", "scrypt:32768:8:1"),
        ] {
            assert_eq!(hash_parameters(hash), params);
        }
    }

    #[test]
    fn legacy_entries_round_trip_through_their_columns() {
        for kind in [
            RevocationKind::LegacyCutoff {
                username: "alice@example.com".into(),
                before: 1_700_000_000,
            },
            RevocationKind::Directory,
        ] {
            let (k, v) = kind.encode();
            assert_eq!(Revocation::decode(1, k, v, 5).unwrap().kind, kind);
        }
        assert!(Revocation::decode(1, "legacy_cutoff", "x".into(), 5).is_err());
    }

    #[test]
    fn debug_output_of_a_user_with_hash_hides_the_hash() {
        let user = UserWithHash {
            user: User {
                id: 1,
                username: "a".into(),
                roles: vec![],
                created_at: 0,
                disabled: false,
            },
            password_hash: "$argon2id$v=19$secret".into(),
        };
        let shown = format!("{user:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
