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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // ok: tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_a_user_with_hash_hides_the_hash() {
        let user = UserWithHash {
            user: User {
                id: 1,
                username: "a".into(),
                roles: vec![],
                created_at: 0,
            },
            password_hash: "$argon2id$v=19$secret".into(),
        };
        let shown = format!("{user:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
