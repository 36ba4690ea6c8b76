//! The one authenticator: request headers in, an [`Identity`] (or its absence, or an
//! [`AuthError`]) out. Every caller — the proxy, the account endpoints, later the
//! forward-auth endpoint — comes here; nothing else reads credentials.
//!
//! Credential sources: the bearer header, and (with `[auth.cookies] enabled`) the token
//! cookies. A request carrying `Authorization` is judged by that header alone, never by a
//! cookie. Which cookie counts depends on what the caller accepts ([`Accept`]). A new source
//! (a legacy token) is one more branch of [`Authenticator::authenticate`], not one more call
//! site. Everything is read from memory: decoding keys and the revocation index, no store
//! lookup. A missing credential (`Ok(None)`) stays distinct from a bad one (`Err`), so a route
//! with optional authentication can let the first through as anonymous and refuse the second.
//!
//! A token seen before is not verified again: the [`VerifiedCache`] keeps what verification
//! found, keyed by the token's bytes, until the token's `exp` or a key reload; revocation,
//! staleness and CSRF are checked on every request, hit or miss.
//!
//! CSRF (double submit, docs/http-api.md §7.4) is checked here, right after revocation and before
//! anything a caller checks next (freshness, roles, method — the order of §7.2): a
//! cookie-authenticated request with an unsafe method must echo its token's `csrf` claim in
//! `X-CSRF-TOKEN`. Doing it here means no caller can forget it.

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::bearer::{bearer_token, BearerError};
use super::claims::TokenType;
use super::cookies::{request_cookie, ACCESS_COOKIE, REFRESH_COOKIE, X_CSRF_TOKEN};
use super::error::AuthError;
use super::identity::{Identity, Presentation, SharedHeaderValues};
use super::legacy::{LegacyTokens, UNKNOWN_USER};
use super::revocation::{LegacyUser, RevocationIndex};
use super::tokens::{check_legacy_header, TokenError, TokenService, Verified};
use super::verified_cache::VerifiedCache;
use crate::telemetry;

/// Which token types a caller accepts, and so which cookie it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Access tokens only (the access cookie): proxied routes and the account endpoints.
    Access,
    /// Refresh tokens only (the refresh cookie): `/auth/refresh`.
    Refresh,
    /// Either, decoded once (the access cookie, else the refresh cookie): `/auth/logout` and
    /// `/auth/fresh`.
    AccessOrRefresh,
}

impl Accept {
    fn types(self) -> &'static [TokenType] {
        match self {
            Accept::Access => &[TokenType::Access],
            Accept::Refresh => &[TokenType::Refresh],
            Accept::AccessOrRefresh => &[TokenType::Access, TokenType::Refresh],
        }
    }

    /// The cookies that may carry the credential, in order of preference.
    fn cookies(self) -> &'static [&'static str] {
        match self {
            Accept::Access => &[ACCESS_COOKIE],
            Accept::Refresh => &[REFRESH_COOKIE],
            Accept::AccessOrRefresh => &[ACCESS_COOKIE, REFRESH_COOKIE],
        }
    }
}

/// Turns credentials into identities; built once and shared.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Arc<TokenService>,
    revocations: Arc<RevocationIndex>,
    /// Whether token cookies are a credential source (`[auth.cookies] enabled`).
    cookies: bool,
    /// Tokens verified before, by their bytes.
    verified: VerifiedCache,
    /// Legacy (flask-jwt-extended) tokens, when `[compat.flask_jwt_extended]` is set.
    legacy: Option<Arc<LegacyTokens>>,
}

impl Authenticator {
    /// An authenticator verifying with `tokens` and checking `revocations`; bearer headers
    /// only until [`Authenticator::with_cookies`].
    pub fn new(tokens: Arc<TokenService>, revocations: Arc<RevocationIndex>) -> Self {
        Self {
            tokens,
            revocations,
            cookies: false,
            verified: VerifiedCache::default(),
            legacy: None,
        }
    }

    /// The same authenticator accepting legacy tokens with `legacy` (a token without `kid`
    /// is tried as one).
    pub fn with_legacy(mut self, legacy: Option<Arc<LegacyTokens>>) -> Self {
        self.legacy = legacy;
        self
    }

    /// Adds a user registered by this process to the username map legacy tokens are read
    /// with.
    pub fn user_created(&self, id: i64, username: &str) {
        self.revocations.add_user(id, username);
    }

    /// The same authenticator reading token cookies too when `enabled`.
    pub fn with_cookies(mut self, enabled: bool) -> Self {
        self.cookies = enabled;
        self
    }

    /// The identity the credential of a request with `method` and `headers` proves;
    /// `Ok(None)` when it presents none.
    ///
    /// Order (docs/http-api.md §2, §7.2): the credential's framing, then signature, `exp`/`nbf`,
    /// `iss`, `aud`, type and claim shape, then revocation — or [`AuthError::Unavailable`]
    /// when the revocation index is stale — then CSRF for a cookie. Freshness and roles are
    /// the policy's.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        method: &Method,
        accept: Accept,
    ) -> Result<Option<Identity>, AuthError> {
        let Some((token, presentation)) = self.credential(headers, accept)? else {
            return Ok(None);
        };
        let (verified, header_values) = match self.verify(token, accept) {
            Ok(verified) => verified,
            // Not one of ours: with legacy tokens on, a token without `kid` is tried as one
            // (only on this error path, so authgate tokens pay nothing for it).
            Err(TokenError::Invalid(_))
                if self.legacy.is_some() && check_legacy_header(token).is_ok() =>
            {
                return self.legacy_identity(token, presentation, headers, method, accept);
            }
            Err(e) => return Err(refused(e)),
        };
        let claims = &verified.claims;
        // A stale replica cannot tell whether a well-signed token was revoked elsewhere:
        // it fails closed. Checked before the index so "in sync" covers what is read next.
        if self.revocations.is_stale() {
            return Err(AuthError::Unavailable);
        }
        if self
            .revocations
            .is_revoked(&claims.jti, &claims.sid, verified.user_id)
        {
            return Err(AuthError::Revoked);
        }
        if presentation == Presentation::Cookie && !is_safe(method) {
            check_csrf(headers, claims.csrf.as_deref())?;
        }
        let identity = Identity::from_shared(&verified, presentation, header_values);
        // The access line and every later line of the request name the user.
        telemetry::record_user(identity.user_id);
        Ok(Some(identity))
    }

    /// What verifying `token` finds, from the cache when it was verified before under the
    /// current keys and has not expired; a token of a type `accept` does not take is refused
    /// either way.
    fn verify(
        &self,
        token: &str,
        accept: Accept,
    ) -> Result<(Arc<Verified>, SharedHeaderValues), TokenError> {
        // An entry records the generation of the key set that checked it
        // (`Verified::key_generation`), so one made under keys a reload replaced never hits.
        let generation = self.tokens.key_generation();
        let (verified, header_values) =
            match self
                .verified
                .get(token, generation, self.tokens.expiry_now())
            {
                Some(hit) => hit,
                None => {
                    let verified = self
                        .tokens
                        .verify_as(token, &[TokenType::Access, TokenType::Refresh])?;
                    let verified = Arc::new(verified);
                    let header_values =
                        self.verified
                            .insert(token, verified.key_generation, verified.clone());
                    (verified, header_values)
                }
            };
        if !accept.types().contains(&verified.claims.r#type) {
            return Err(TokenError::Invalid("wrong token type"));
        }
        Ok((verified, header_values))
    }

    /// [`Authenticator::authenticate`] where a credential is required: none is
    /// [`AuthError::MissingToken`].
    pub fn require(
        &self,
        headers: &HeaderMap,
        method: &Method,
        accept: Accept,
    ) -> Result<Identity, AuthError> {
        self.authenticate(headers, method, accept)?
            .ok_or(AuthError::MissingToken)
    }

    /// Whether `identity`'s token, session or user has been revoked since it was verified
    /// (long-lived connections ask again after [`Authenticator::revocation_changes`]).
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        if identity.legacy
            && self
                .revocations
                .legacy_user(&identity.username, identity.auth_time)
                == LegacyUser::Revoked
        {
            return true;
        }
        self.revocations
            .is_revoked(&identity.token_id, &identity.session_id, identity.user_id)
    }

    /// A legacy token's identity (docs/http-api.md §7.5): verified with the old app's secret,
    /// then — from memory — its `jti`, the cut-off of its user, the username map; CSRF as
    /// for ours. No roles, no session.
    fn legacy_identity(
        &self,
        token: &str,
        presentation: Presentation,
        headers: &HeaderMap,
        method: &Method,
        accept: Accept,
    ) -> Result<Option<Identity>, AuthError> {
        let Some(legacy) = &self.legacy else {
            return Err(AuthError::Invalid("header has no kid"));
        };
        let claims = legacy.verify(token, accept.types()).map_err(refused)?;
        if self.revocations.is_stale() {
            return Err(AuthError::Unavailable);
        }
        if self.revocations.is_revoked(&claims.jti, "", 0) {
            return Err(AuthError::Revoked);
        }
        let (user_id, username) = match self.revocations.legacy_user(&claims.sub, claims.iat) {
            LegacyUser::Known(id, name) => (id, name),
            LegacyUser::Revoked => return Err(AuthError::Revoked),
            LegacyUser::Unknown => {
                tracing::debug!(reason = UNKNOWN_USER, "token refused");
                return Err(AuthError::Invalid(UNKNOWN_USER));
            }
        };
        if presentation == Presentation::Cookie && !is_safe(method) {
            check_csrf(headers, claims.csrf.as_deref())?;
        }
        let identity = Identity::from_legacy(claims, user_id, username, presentation, legacy.now());
        telemetry::record_user(identity.user_id);
        Ok(Some(identity))
    }

    /// A receiver that changes whenever something new is revoked.
    pub fn revocation_changes(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// The token a request presents, and how. `Authorization` beats every cookie: with that
    /// header present (whatever its scheme) cookies are not looked at.
    fn credential<'a>(
        &self,
        headers: &'a HeaderMap,
        accept: Accept,
    ) -> Result<Option<(&'a str, Presentation)>, AuthError> {
        if !self.cookies || headers.contains_key(AUTHORIZATION) {
            return match bearer_token(headers) {
                Ok(token) => Ok(token.map(|t| (t, Presentation::BearerHeader))),
                Err(BearerError::MultipleCredentials) => Err(AuthError::MultipleCredentials),
                Err(BearerError::Malformed) => Err(AuthError::MalformedCredential),
            };
        }
        Ok(accept
            .cookies()
            .iter()
            .find_map(|name| request_cookie(headers, name))
            .map(|token| (token, Presentation::Cookie)))
    }
}

/// A refused token as an [`AuthError`]; which check failed goes to the log (never the token),
/// the client gets one message.
fn refused(e: TokenError) -> AuthError {
    if let TokenError::Invalid(reason) = &e {
        tracing::debug!(reason, "token refused");
    }
    AuthError::from(e)
}

/// GET, HEAD and OPTIONS change nothing and need no CSRF header (§7.4).
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Exactly one `X-CSRF-TOKEN`, equal (in constant time) to the token's `csrf` claim; a token
/// without the claim (issued while cookies were off) never passes.
fn check_csrf(headers: &HeaderMap, claim: Option<&str>) -> Result<(), AuthError> {
    let mut sent = headers.get_all(X_CSRF_TOKEN).iter();
    let (Some(value), None, Some(claim)) = (sent.next(), sent.next(), claim) else {
        return Err(AuthError::CsrfFailed);
    };
    if bool::from(value.as_bytes().ct_eq(claim.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::CsrfFailed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::path::Path;

    use http::header::AUTHORIZATION;
    use http::HeaderValue;

    use super::*;
    use crate::auth::keys::test_keys::config;
    use crate::auth::keys::{load_keys, KeyLoad};
    use crate::auth::tokens::{AccountGrant, SessionGrant};
    use crate::clock::Clock;
    use crate::config::TokenAlgorithm;
    use crate::store::{Revocation, RevocationKind};

    fn authenticator() -> (Authenticator, Arc<TokenService>, Arc<RevocationIndex>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let secret = Some(b"authenticator-test-secret-of-enough-bytes".to_vec());
        let keys = load_keys(&cfg, Path::new("t.toml"), secret, KeyLoad::CheckOnly).unwrap();
        let tokens = Arc::new(TokenService::new(&cfg, keys).unwrap());
        let revocations = Arc::new(RevocationIndex::new());
        let auth = Authenticator::new(tokens.clone(), revocations.clone());
        (auth, tokens, revocations)
    }

    fn access_token(tokens: &TokenService) -> String {
        let now = Clock::system().now();
        let roles = vec!["ops".to_owned()];
        let account = AccountGrant {
            user_id: 42,
            username: "alice",
            roles: &roles,
        };
        let session = SessionGrant {
            user_id: 42,
            sid: "session-1",
            auth_time: now,
            expires_at: now + 3600,
        };
        tokens
            .issue_access(&account, &session, true, now)
            .unwrap()
            .token
    }

    fn bearer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn no_credential_is_none_and_a_bad_one_is_an_error() {
        let (auth, _, _) = authenticator();
        assert_eq!(
            auth.authenticate(&HeaderMap::new(), &Method::GET, Accept::Access),
            Ok(None)
        );
        assert_eq!(
            auth.require(&HeaderMap::new(), &Method::GET, Accept::Access),
            Err(AuthError::MissingToken)
        );
        assert!(matches!(
            auth.authenticate(&bearer("Bearer not.a.token"), &Method::GET, Accept::Access),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            auth.authenticate(&bearer("Bearer a b"), &Method::GET, Accept::Access),
            Err(AuthError::MultipleCredentials)
        );
    }

    #[test]
    fn a_valid_bearer_token_becomes_an_identity_until_its_session_is_revoked() {
        let (auth, tokens, revocations) = authenticator();
        let headers = bearer(&format!("Bearer {}", access_token(&tokens)));
        let identity = auth
            .require(&headers, &Method::GET, Accept::Access)
            .unwrap();
        assert_eq!(identity.user_id, 42);
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.roles, ["ops"]);
        assert_eq!(identity.session_id, "session-1");
        assert!(identity.fresh);
        assert_eq!(identity.token_type, TokenType::Access);
        assert_eq!(identity.presentation, Presentation::BearerHeader);
        assert!(matches!(
            auth.require(&headers, &Method::GET, Accept::Refresh),
            Err(AuthError::Invalid(_))
        ));
        // A stale index vouches for nothing: 503, until it is in sync again.
        revocations.set_stale(true);
        assert_eq!(
            auth.require(&headers, &Method::GET, Accept::Access),
            Err(AuthError::Unavailable)
        );
        assert!(
            matches!(
                auth.require(&bearer("Bearer not.a.token"), &Method::GET, Accept::Access),
                Err(AuthError::Invalid(_))
            ),
            "a bad token is still refused as such"
        );
        assert_eq!(
            auth.require(&HeaderMap::new(), &Method::GET, Accept::Access),
            Err(AuthError::MissingToken)
        );
        revocations.set_stale(false);
        assert!(auth.require(&headers, &Method::GET, Accept::Access).is_ok());
        revocations.apply(&[Revocation {
            seq: 1,
            kind: RevocationKind::Session("session-1".into()),
            covers_until: i64::MAX,
        }]);
        assert!(auth.is_revoked(&identity));
        assert_eq!(
            auth.require(&headers, &Method::GET, Accept::Access),
            Err(AuthError::Revoked)
        );
    }

    #[test]
    fn a_token_seen_before_is_still_checked_for_type_revocation_and_its_exact_bytes() {
        let (auth, tokens, revocations) = authenticator();
        let token = access_token(&tokens);
        let headers = bearer(&format!("Bearer {token}"));
        let first = auth
            .require(&headers, &Method::GET, Accept::Access)
            .unwrap();
        // Seen before: the same identity from the cache.
        assert_eq!(
            auth.require(&headers, &Method::GET, Accept::Access),
            Ok(first)
        );
        assert!(matches!(
            auth.require(&headers, &Method::GET, Accept::Refresh),
            Err(AuthError::Invalid("wrong token type"))
        ));
        // One byte changed anywhere is another token, verified (and refused) in full.
        for at in [0, token.len() / 2, token.len() - 1] {
            let mut forged = token.clone().into_bytes();
            forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(
                matches!(
                    auth.require(
                        &bearer(&format!("Bearer {forged}")),
                        &Method::GET,
                        Accept::Access
                    ),
                    Err(AuthError::Invalid(_))
                ),
                "byte {at}"
            );
        }
        revocations.set_stale(true);
        assert_eq!(
            auth.require(&headers, &Method::GET, Accept::Access),
            Err(AuthError::Unavailable)
        );
        revocations.set_stale(false);
        revocations.apply(&[Revocation {
            seq: 1,
            kind: RevocationKind::Token(
                auth.require(&headers, &Method::GET, Accept::Access)
                    .unwrap()
                    .token_id,
            ),
            covers_until: i64::MAX,
        }]);
        assert_eq!(
            auth.require(&headers, &Method::GET, Accept::Access),
            Err(AuthError::Revoked)
        );
    }
}
