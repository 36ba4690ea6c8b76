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
