//! The one function the request path calls: a bearer token in, the verified claims or a typed
//! error out, with every check in the order of HTTP-API.md §2 — signature, `exp`/`nbf`, `iss`,
//! `aud`, type, revocation — and, only after those, freshness and roles, so a revoked token is
//! reported as revoked, never as "not fresh". Everything is read from memory.

use std::time::Duration;

use crate::auth::claims::{Claims, TokenType};
use crate::auth::revocation::RevocationIndex;
use crate::auth::tokens::{TokenError, TokenService};
use crate::error::ApiError;

/// Verifies `token` as a token of type `expected` and checks it is not revoked.
pub fn verify(
    tokens: &TokenService,
    revocations: &RevocationIndex,
    token: &str,
    expected: TokenType,
) -> Result<Claims, ApiError> {
    verify_as(tokens, revocations, token, &[expected])
}

/// Verifies a token that may be either an access or a refresh token (logout, `/auth/fresh`),
/// decoding it once.
pub fn verify_either(
    tokens: &TokenService,
    revocations: &RevocationIndex,
    token: &str,
) -> Result<Claims, ApiError> {
    verify_as(
        tokens,
        revocations,
        token,
        &[TokenType::Access, TokenType::Refresh],
    )
}

fn verify_as(
    tokens: &TokenService,
    revocations: &RevocationIndex,
    token: &str,
    allowed: &[TokenType],
) -> Result<Claims, ApiError> {
    let claims = tokens.verify_as(token, allowed).map_err(|e| {
        // Which check failed goes to the log (never the token); the client gets one message.
        if let TokenError::Invalid(reason) = &e {
            tracing::debug!(reason, "token refused");
        }
        token_error(e)
    })?;
    if revocations.is_revoked(&claims.jti, &claims.sid, claims.user_id()) {
        return Err(ApiError::TokenRevoked);
    }
    Ok(claims)
}

/// The route's freshness rule: the token must be fresh and, with `max_age`, its `auth_time`
/// no older than that.
pub fn check_fresh(claims: &Claims, max_age: Option<Duration>, now: u64) -> Result<(), ApiError> {
    let max_age_secs = max_age.map(|d| d.as_secs());
    let fresh = claims.is_fresh();
    let young_enough = max_age_secs.is_none_or(|age| now.saturating_sub(claims.auth_time) <= age);
    if fresh && young_enough {
        Ok(())
    } else {
        Err(ApiError::FreshTokenRequired {
            max_age: max_age_secs,
        })
    }
}

/// The token must hold every role in `required` (read from the token, never the store).
pub fn check_roles(claims: &Claims, required: &[String]) -> Result<(), ApiError> {
    let held = claims.roles.as_deref().unwrap_or(&[]);
    if required.iter().all(|r| held.contains(r)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Expired => ApiError::TokenExpired,
        TokenError::Invalid(reason) => ApiError::InvalidToken(reason),
    }
}
