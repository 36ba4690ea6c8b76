//! Why a request's credential or identity was refused: the one error type of authentication
//! and authorisation. It knows nothing of HTTP; `error.rs` maps it to the §1 answers (400 for
//! an ambiguous or malformed `Authorization`, 401 for the token errors, 403 for a missing role,
//! 503 while the revocation index is stale).

use super::tokens::TokenError;

/// An authentication or authorisation refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential where one is needed.
    #[error("no credential")]
    MissingToken,
    /// Two `Authorization` headers, or two credentials in one.
    #[error("more than one credential")]
    MultipleCredentials,
    /// An `Authorization` header that is not visible ASCII.
    #[error("malformed Authorization header")]
    MalformedCredential,
    /// A correctly signed token whose `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// Any other bad token; the reason is for logs only.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// The token, its session or its user is revoked (or the user is gone).
    #[error("token revoked")]
    Revoked,
    /// The route needs a fresh token, with `auth_time` at most `max_age` seconds old.
    #[error("fresh token required")]
    FreshRequired {
        /// The route's `fresh_max_age` in seconds, when it has one.
        max_age: Option<u64>,
    },
    /// The identity lacks a role the route requires.
    #[error("missing a required role")]
    Forbidden,
    /// A cookie-authenticated unsafe request without the matching `X-CSRF-TOKEN`.
    #[error("CSRF check failed")]
    CsrfFailed,
    /// The revocation index is stale: this replica cannot confirm the token is not revoked.
    #[error("revocations not confirmed in sync")]
    Unavailable,
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => AuthError::Expired,
            TokenError::Invalid(reason) => AuthError::Invalid(reason),
        }
    }
}
