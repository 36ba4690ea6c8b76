//! Legacy tokens: HS256 JWTs minted by the flask-jwt-extended app authgate replaces
//! (docs/http-api.md §7.5), accepted until `accept_until` so nobody is logged out by the move.
//!
//! Owns the legacy secret and its prebuilt `Validation`, the legacy claim shape (string `sub`
//! holding a username, `type`, `jti`, `fresh` as a bool or a float time, optional `csrf`) and
//! the order of checks. What a legacy token may never get: a longer life than its own `exp`,
//! roles, or a session of its own (the authenticator builds an identity with none). The user
//! it names and its revocation (by `jti`, by the per-user cut-off) are the revocation index's.

use std::fmt;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::claims::TokenType;
use super::tokens::{check_legacy_header, jwt_error, TokenError};
use crate::clock::Clock;
use crate::config::{ConfigError, LegacyTokensConfig};

/// Reason given (to logs, and to the flask-jwt-extended error format) for a legacy token
/// presented after `accept_until`.
pub const PAST_ACCEPT_UNTIL: &str = "legacy tokens are no longer accepted";

/// Reason given for a legacy token whose `sub` names no user.
pub const UNKNOWN_USER: &str = "legacy token names no user";

/// Longest legacy `jti` accepted (flask-jwt-extended writes a 36-character UUID).
const MAX_JTI_LEN: usize = 128;

/// `fresh` as flask-jwt-extended writes it: a flag, or a time until which the token is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LegacyFresh {
    /// `true` or `false`.
    Flag(bool),
    /// Seconds since the epoch (a float) until which the token counts as fresh.
    Until(f64),
}

/// The claims of a legacy token that authgate reads; others are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LegacyClaims {
    /// The old identity: must be an authgate username.
    pub sub: String,
    /// `access` or `refresh`.
    pub r#type: TokenType,
    /// The token's id.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Freshness (access tokens).
    #[serde(default)]
    pub fresh: Option<LegacyFresh>,
    /// The double-submit value of cookie mode.
    #[serde(default)]
    pub csrf: Option<String>,
}

impl LegacyClaims {
    /// Whether the token is fresh at `now`: `fresh: true`, or a `fresh` time not yet passed.
    pub fn is_fresh(&self, now: u64) -> bool {
        self.r#type == TokenType::Access
            && match self.fresh {
                Some(LegacyFresh::Flag(fresh)) => fresh,
                // Precision of f64 is ample for epoch seconds.
                Some(LegacyFresh::Until(until)) => until > now as f64,
                None => false,
            }
    }
}

/// Verifies legacy tokens; built once at start.
pub struct LegacyTokens {
    key: DecodingKey,
    validation: Validation,
    accept_until: i64,
    leeway: u64,
    clock: Clock,
}

impl fmt::Debug for LegacyTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyTokens")
            .field("accept_until", &self.accept_until)
            .finish_non_exhaustive()
    }
}

impl LegacyTokens {
    /// Reads the Flask app's secret (raw bytes, nothing trimmed) from `cfg.secret_file`; a
    /// missing or empty file is a configuration error naming the key. A start past
    /// `accept_until` logs a warning and runs.
    pub fn load(
        cfg: &LegacyTokensConfig,
        config_file: &Path,
        leeway: std::time::Duration,
        clock: Clock,
    ) -> Result<LegacyTokens, ConfigError> {
        let err = |reason: String| {
            ConfigError::new(
                config_file,
                "compat.flask_jwt_extended.secret_file",
                Some(format!("{:?}", cfg.secret_file.display().to_string())),
                reason,
            )
        };
        let secret =
            std::fs::read(&cfg.secret_file).map_err(|e| err(format!("cannot be read: {e}")))?;
        if secret.is_empty() {
            return Err(err(
                "is empty; it must hold the Flask app's JWT_SECRET_KEY".into()
            ));
        }
        if clock.now() > cfg.accept_until {
            tracing::warn!(
                "compat.flask_jwt_extended.accept_until has passed: legacy tokens are refused"
            );
        }
        Ok(Self::new(&secret, cfg.accept_until, leeway, clock))
    }

    /// A verifier for tokens signed with `secret`, accepted until `accept_until`.
    pub fn new(
        secret: &[u8],
        accept_until: i64,
        leeway: std::time::Duration,
        clock: Clock,
    ) -> LegacyTokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // The old app set no audience authgate could know; its `iss`, if any, is not ours.
        validation.validate_aud = false;
        validation.leeway = leeway.as_secs();
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        LegacyTokens {
            key: DecodingKey::from_secret(secret),
            validation,
            accept_until,
            leeway: leeway.as_secs(),
            clock,
        }
    }

    /// Verifies `token` as a legacy token of one of the `allowed` types.
    ///
    /// Order: `accept_until`; header (HS256, no `kid`, no key parameters); signature, `exp`
    /// and `nbf` with the leeway; claim types; `type`; `jti` shape; `iat` not in the future.
    pub fn verify(&self, token: &str, allowed: &[TokenType]) -> Result<LegacyClaims, TokenError> {
        let now = self.clock.now();
        if now > self.accept_until {
            return Err(TokenError::Invalid(PAST_ACCEPT_UNTIL));
        }
        check_legacy_header(token)?;
        let claims = jsonwebtoken::decode::<LegacyClaims>(token, &self.key, &self.validation)
            .map_err(jwt_error)?
            .claims;
        if !allowed.contains(&claims.r#type) {
            return Err(TokenError::Invalid("wrong token type"));
        }
        let jti_ok = !claims.jti.is_empty()
            && claims.jti.len() <= MAX_JTI_LEN
            && claims.jti.bytes().all(|b| b.is_ascii_graphic());
        if !jti_ok {
            return Err(TokenError::Invalid("jti is not a short printable string"));
        }
        if claims.exp < claims.iat {
            return Err(TokenError::Invalid("exp before iat"));
        }
        if claims.iat > self.clock.now_u64().saturating_add(self.leeway) {
            return Err(TokenError::Invalid("iat in the future"));
        }
        Ok(claims)
    }

    /// Now, on the verifier's clock (seconds since the epoch).
    pub fn now(&self) -> u64 {
        self.clock.now_u64()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    use super::*;

    const SECRET: &[u8] = b"the-flask-apps-jwt-secret";

    fn verifier(accept_until_from_now: i64) -> LegacyTokens {
        let clock = Clock::system();
        let until = clock.now() + accept_until_from_now;
        LegacyTokens::new(SECRET, until, Duration::from_secs(5), clock)
    }

    fn mint(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn flask_claims(kind: &str) -> Value {
        let now = Clock::system().now();
        json!({
            "fresh": false, "iat": now, "jti": "0b4e1c9a-2f0c-4a7e-9a59-0b0b3c5d7e11",
            "type": kind, "sub": "alice@example.com", "nbf": now, "exp": now + 900
        })
    }

    #[test]
    fn a_flask_access_token_verifies_with_its_claims() {
        let v = verifier(3600);
        let claims = v
            .verify(&mint(&flask_claims("access")), &[TokenType::Access])
            .unwrap();
        assert_eq!(claims.sub, "alice@example.com");
        assert!(!claims.is_fresh(v.now()));
    }

    #[test]
    fn fresh_may_be_a_float_time() {
        let v = verifier(3600);
        let now = v.now() as f64;
        for (fresh, expected) in [
            (json!(true), true),
            (json!(now + 60.5), true),
            (json!(now - 1.0), false),
        ] {
            let mut c = flask_claims("access");
            c["fresh"] = fresh;
            let claims = v.verify(&mint(&c), &[TokenType::Access]).unwrap();
            assert_eq!(claims.is_fresh(v.now()), expected);
        }
    }

    #[test]
    fn wrong_type_bad_signature_kid_or_past_accept_until_are_invalid() {
        let v = verifier(3600);
        let refresh = mint(&flask_claims("refresh"));
        assert!(v.verify(&refresh, &[TokenType::Access]).is_err());
        assert!(v.verify(&refresh, &[TokenType::Refresh]).is_ok());
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &flask_claims("access"),
            &EncodingKey::from_secret(b"another-secret"),
        )
        .unwrap();
        assert_eq!(
            v.verify(&forged, &[TokenType::Access]),
            Err(TokenError::Invalid("bad signature"))
        );
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k".into());
        let with_kid = encode(
            &header,
            &flask_claims("access"),
            &EncodingKey::from_secret(SECRET),
        );
        assert!(v.verify(&with_kid.unwrap(), &[TokenType::Access]).is_err());
        let past = verifier(-1);
        assert_eq!(
            past.verify(&mint(&flask_claims("access")), &[TokenType::Access]),
            Err(TokenError::Invalid(PAST_ACCEPT_UNTIL))
        );
    }

    #[test]
    fn an_expired_legacy_token_is_expired_and_a_numeric_sub_is_invalid() {
        let v = verifier(3600);
        let mut c = flask_claims("access");
        c["exp"] = json!(v.now() - 60);
        c["iat"] = json!(v.now() - 120);
        c["nbf"] = json!(v.now() - 120);
        assert_eq!(
            v.verify(&mint(&c), &[TokenType::Access]),
            Err(TokenError::Expired)
        );
        let mut c = flask_claims("access");
        c["sub"] = json!(42);
        assert!(matches!(
            v.verify(&mint(&c), &[TokenType::Access]),
            Err(TokenError::Invalid(_))
        ));
    }
}
