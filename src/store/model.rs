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
    /// Monotonic sequence number in the log; readers resume from the last one they saw.
    pub seq: i64,
    /// What is revoked.
    pub kind: RevocationKind,
    /// Seconds since the epoch after which no token it covers can still be valid, so the
    /// entry may be pruned (the covered tokens' latest `exp` plus the leeway).
    pub expires_at: i64,
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
    /// When the current refresh token was issued (login or last rotation): re-signing it
    /// within the reuse grace keeps its claims unchanged.
    pub refresh_issued_at: i64,
    /// Whether the session has been revoked.
    pub revoked: bool,
}

/// What presenting a refresh token to [`Store::rotate_refresh`](super::Store::rotate_refresh) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The presented token was current and is now retired; the session (as updated) carries
    /// the new `refresh_jti`.
    Rotated(Session),
    /// The presented token was retired within the grace period: nothing changed; answer with
    /// the session's current refresh token (its `refresh_jti`, same `exp`).
    WithinGrace(Session),
    /// A retired token came back after the grace period (or an unknown `jti` of the session):
    /// the session is now revoked and this entry was appended to the log.
    ReuseDetected(Revocation),
    /// The session is unknown, already revoked, or expired beyond the leeway.
    Revoked,
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
