//! The one authenticator: request headers in, an [`Identity`] (or its absence, or an
//! [`AuthError`]) out. Every caller — the proxy, the account endpoints, later the
//! forward-auth endpoint — comes here; nothing else reads credentials.
//!
//! Credential sources today: the bearer header. A new source (a session cookie, a legacy
//! token) is one more branch of [`Authenticator::authenticate`], not one more call site.
//! Everything is read from memory: decoding keys and the revocation index, no store lookup.
//! A missing credential (`Ok(None)`) stays distinct from a bad one (`Err`), so a route with
//! optional authentication can let the first through as anonymous and refuse the second.

use std::sync::Arc;

use http::HeaderMap;
use tokio::sync::watch;

use super::bearer::{bearer_token, BearerError};
use super::claims::TokenType;
use super::error::AuthError;
use super::identity::{Identity, Presentation};
use super::revocation::RevocationIndex;
use super::tokens::{TokenError, TokenService};
use crate::telemetry;

/// Which token types a caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Access tokens only: proxied routes and the account endpoints.
    Access,
    /// Refresh tokens only: `/auth/refresh`.
    Refresh,
    /// Either (decoded once): `/auth/logout` and `/auth/fresh`.
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
}

/// Turns credentials into identities; built once and shared.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Arc<TokenService>,
    revocations: Arc<RevocationIndex>,
}

impl Authenticator {
    /// An authenticator verifying with `tokens` and checking `revocations`.
    pub fn new(tokens: Arc<TokenService>, revocations: Arc<RevocationIndex>) -> Self {
        Self {
            tokens,
            revocations,
        }
    }

    /// The identity the request's credential proves; `Ok(None)` when it presents none.
    ///
    /// Order (HTTP-API.md §2): the credential's framing, then signature, `exp`/`nbf`, `iss`,
    /// `aud`, type and claim shape, then revocation — or [`AuthError::Unavailable`] when the
    /// revocation index is stale. Freshness and roles are the policy's.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        accept: Accept,
    ) -> Result<Option<Identity>, AuthError> {
        let token = match bearer_token(headers) {
            Ok(Some(token)) => token,
            Ok(None) => return Ok(None),
            Err(BearerError::MultipleCredentials) => return Err(AuthError::MultipleCredentials),
            Err(BearerError::Malformed) => return Err(AuthError::MalformedCredential),
        };
        let identity = self.verify(token, accept, Presentation::BearerHeader)?;
        // The access line and every later line of the request name the user.
        telemetry::record_user(identity.user_id);
        Ok(Some(identity))
    }

    /// [`Authenticator::authenticate`] where a credential is required: none is
    /// [`AuthError::MissingToken`].
    pub fn require(&self, headers: &HeaderMap, accept: Accept) -> Result<Identity, AuthError> {
        self.authenticate(headers, accept)?
            .ok_or(AuthError::MissingToken)
    }

    /// Whether `identity`'s token, session or user has been revoked since it was verified
    /// (long-lived connections ask again after [`Authenticator::revocation_changes`]).
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        self.revocations
            .is_revoked(&identity.token_id, &identity.session_id, identity.user_id)
    }

    /// A receiver that changes whenever something new is revoked.
    pub fn revocation_changes(&self) -> watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    fn verify(
        &self,
        token: &str,
        accept: Accept,
        presentation: Presentation,
    ) -> Result<Identity, AuthError> {
        let verified = self.tokens.verify_as(token, accept.types()).map_err(|e| {
            // Which check failed goes to the log (never the token); the client gets one message.
            if let TokenError::Invalid(reason) = &e {
                tracing::debug!(reason, "token refused");
            }
            AuthError::from(e)
        })?;
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
        Ok(Identity::from_verified(verified, presentation))
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
        tokens.issue_access(&account, &session, true, now).unwrap()
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
            auth.authenticate(&HeaderMap::new(), Accept::Access),
            Ok(None)
        );
        assert_eq!(
            auth.require(&HeaderMap::new(), Accept::Access),
            Err(AuthError::MissingToken)
        );
        assert!(matches!(
            auth.authenticate(&bearer("Bearer not.a.token"), Accept::Access),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            auth.authenticate(&bearer("Bearer a b"), Accept::Access),
            Err(AuthError::MultipleCredentials)
        );
    }

    #[test]
    fn a_valid_bearer_token_becomes_an_identity_until_its_session_is_revoked() {
        let (auth, tokens, revocations) = authenticator();
        let headers = bearer(&format!("Bearer {}", access_token(&tokens)));
        let identity = auth.require(&headers, Accept::Access).unwrap();
        assert_eq!(identity.user_id, 42);
        assert_eq!(identity.username, "alice");
        assert_eq!(identity.roles, ["ops"]);
        assert_eq!(identity.session_id, "session-1");
        assert!(identity.fresh);
        assert_eq!(identity.token_type, TokenType::Access);
        assert_eq!(identity.presentation, Presentation::BearerHeader);
        assert!(matches!(
            auth.require(&headers, Accept::Refresh),
            Err(AuthError::Invalid(_))
        ));
        // A stale index vouches for nothing: 503, until it is in sync again.
        revocations.set_stale(true);
        assert_eq!(
            auth.require(&headers, Accept::Access),
            Err(AuthError::Unavailable)
        );
        assert!(
            matches!(
                auth.require(&bearer("Bearer not.a.token"), Accept::Access),
                Err(AuthError::Invalid(_))
            ),
            "a bad token is still refused as such"
        );
        assert_eq!(
            auth.require(&HeaderMap::new(), Accept::Access),
            Err(AuthError::MissingToken)
        );
        revocations.set_stale(false);
        assert!(auth.require(&headers, Accept::Access).is_ok());
        revocations.apply(&[Revocation {
            seq: 1,
            kind: RevocationKind::Session("session-1".into()),
            covers_until: i64::MAX,
        }]);
        assert!(auth.is_revoked(&identity));
        assert_eq!(
            auth.require(&headers, Accept::Access),
            Err(AuthError::Revoked)
        );
    }
}
