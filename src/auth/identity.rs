//! Who a request speaks for: the [`Identity`] the authenticator builds from a verified
//! credential, and how the credential was presented. Everything after authentication (policy,
//! identity headers, tunnels, the account endpoints) reads this, never the token again.

use super::claims::TokenType;
use super::legacy::LegacyClaims;
use super::tokens::Verified;

/// How the credential reached the gateway. More sources (a session cookie, a legacy token)
/// become more variants here, not more call sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// `Authorization: Bearer <token>`.
    BearerHeader,
    /// A token cookie (`[auth.cookies]`); its CSRF check has passed where one applied.
    Cookie,
}

/// A verified, unrevoked identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id (`sub`), parsed once at verification; always positive.
    pub user_id: i64,
    /// The username as registered; empty for a refresh token, which carries none.
    pub username: String,
    /// The roles the token carries (empty for a refresh token).
    pub roles: Vec<String>,
    /// The login session (`sid`).
    pub session_id: String,
    /// The token's own id (`jti`).
    pub token_id: String,
    /// When the user last typed their password in this session, seconds since the epoch.
    pub auth_time: u64,
    /// True only for an access token issued straight from a password check.
    pub fresh: bool,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// Access or refresh.
    pub token_type: TokenType,
    /// How the credential was presented.
    pub presentation: Presentation,
    /// A legacy (flask-jwt-extended) token: no roles, an empty session id, `auth_time` its
    /// `iat` (docs/http-api.md §7.5).
    pub legacy: bool,
}

impl Identity {
    /// The identity of a verified token (its strings are moved, not copied).
    pub fn from_verified(verified: Verified, presentation: Presentation) -> Identity {
        let Verified {
            claims, user_id, ..
        } = verified;
        let fresh = claims.is_fresh();
        Identity {
            user_id,
            username: claims.username.unwrap_or_default(),
            roles: claims.roles.unwrap_or_default(),
            session_id: claims.sid,
            token_id: claims.jti,
            auth_time: claims.auth_time,
            fresh,
            expires_at: claims.exp,
            token_type: claims.r#type,
            presentation,
            legacy: false,
        }
    }

    /// The identity of a verified legacy token of user `user_id` (`username` as registered),
    /// judged fresh or not at `now`.
    pub fn from_legacy(
        claims: LegacyClaims,
        user_id: i64,
        username: String,
        presentation: Presentation,
        now: u64,
    ) -> Identity {
        let fresh = claims.is_fresh(now);
        Identity {
            user_id,
            username,
            roles: Vec::new(),
            session_id: String::new(),
            token_id: claims.jti,
            auth_time: claims.iat,
            fresh,
            expires_at: claims.exp,
            token_type: claims.r#type,
            presentation,
            legacy: true,
        }
    }

    /// The identity of a verified token held in the verified-token cache (its strings are
    /// copied: the cache keeps its own).
    pub fn from_shared(verified: &Verified, presentation: Presentation) -> Identity {
        let claims = &verified.claims;
        Identity {
            user_id: verified.user_id,
            username: claims.username.clone().unwrap_or_default(),
            roles: claims.roles.clone().unwrap_or_default(),
            session_id: claims.sid.clone(),
            token_id: claims.jti.clone(),
            auth_time: claims.auth_time,
            fresh: claims.is_fresh(),
            expires_at: claims.exp,
            token_type: claims.r#type,
            presentation,
            legacy: false,
        }
    }
}
