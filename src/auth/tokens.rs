//! Issuing and verifying authgate's JWTs.
//!
//! Owns: the one prebuilt `jsonwebtoken::Validation`, the signing key and header, the
//! decoding keys by `kid`, the JWK Set, and the order of checks in [`TokenService::verify`].
//!
//! Invariants: only the configured algorithm is ever accepted; keys are chosen by `kid` from the
//! configured ones only (never from `jku`/`x5u`/`jwk`/`x5c`, and tokens carrying those or `crit`
//! are refused); `exp`, `nbf`, `iat`, `iss`, `sub` (and `aud` when configured) are required;
//! every failure other than expiry is the one [`TokenError::Invalid`], whose text is for logs.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::claims::{new_jti, refresh_csrf, Claims, TokenType};
use super::keys::{jwt_algorithm, Keys, PublicKey};
use crate::clock::{claim_time, Clock};
use crate::config::{TokenAlgorithm, TokensConfig};

/// Longest token accepted, in bytes; checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Correctly signed and otherwise valid, but `exp` (plus leeway) has passed.
    #[error("token expired")]
    Expired,
    /// Anything else; the text is a short reason for the log, never shown to clients.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// Why a [`TokenService`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenSetupError {
    /// The keys came from a check-only load that found no HS256 secret file.
    #[error("no signing key is loaded (check-only key load)")]
    NoSigningKey,
    /// The keys were loaded for another algorithm than the `[tokens]` section names.
    #[error("the keys do not belong to the configured algorithm")]
    AlgorithmMismatch,
}

/// Why a token could not be issued: a fault of the gateway (answered 500), never of the client.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The OS random source failed; no guessable id is ever issued instead.
    #[error("the OS random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    /// The claims could not be signed (a bug or a key fault).
    #[error("cannot sign a {kind:?} token: {reason}")]
    Sign {
        /// Which token it was.
        kind: TokenType,
        /// What went wrong.
        reason: TokenError,
    },
}

/// The account an access token speaks for.
#[derive(Debug, Clone, Copy)]
pub struct AccountGrant<'a> {
    /// The user id (`sub`).
    pub user_id: i64,
    /// The username as registered.
    pub username: &'a str,
    /// The user's roles.
    pub roles: &'a [String],
}

/// The login session a token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SessionGrant<'a> {
    /// The user who logged in (`sub` of the session's refresh tokens).
    pub user_id: i64,
    /// The session id (`sid`).
    pub sid: &'a str,
    /// The session's last password check, seconds since the epoch.
    pub auth_time: i64,
    /// When the session ends, seconds since the epoch: no token of it outlives this.
    pub expires_at: i64,
}

/// A token just signed, and the `csrf` claim it carries (for the CSRF cookie).
/// No `Debug`: it holds a token.
pub struct Signed {
    /// The JWT.
    pub token: String,
    /// Its `csrf` claim; `None` while cookies are disabled.
    pub csrf: Option<String>,
}

/// A verified token: its claims and the user id parsed from `sub`, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The token's claims.
    pub claims: Claims,
    /// `sub` as a number (always positive).
    pub user_id: i64,
    /// The [`TokenService::key_generation`] of the key set that checked the signature: a cache
    /// of verified tokens trusts an entry only while this is still the current generation.
    pub key_generation: u64,
}

/// The keys of one generation: swapped whole by [`TokenService::reload_keys`], so a request
/// sees either the old set or the new one, never a mix.
struct KeySet {
    generation: u64,
    header: Header,
    encoding: EncodingKey,
    /// The signing key's verification half first, then the rotation keys.
    decoding: Vec<(String, DecodingKey)>,
    jwks: Option<Arc<serde_json::Value>>,
}

impl KeySet {
    /// The set for `signing` and `verify_only`, numbered `generation`.
    fn build(
        algorithm: TokenAlgorithm,
        signing: &super::keys::SigningKey,
        verify_only: &[PublicKey],
        generation: u64,
    ) -> Self {
        let mut header = Header::new(jwt_algorithm(algorithm));
        header.kid = Some(signing.public().kid().to_owned());
        let jwks = algorithm.is_asymmetric().then(|| {
            Arc::new(jwk_set(
                std::iter::once(signing.public()).chain(verify_only),
            ))
        });
        let mut decoding = vec![(
            signing.public().kid().to_owned(),
            signing.public().decoding().clone(),
        )];
        for key in verify_only {
            // The same key listed twice (or as both signer and verifier) needs one entry.
            if !decoding.iter().any(|(kid, _)| kid == key.kid()) {
                decoding.push((key.kid().to_owned(), key.decoding().clone()));
            }
        }
        Self {
            generation,
            header,
            encoding: signing.encoding().clone(),
            decoding,
            jwks,
        }
    }

    fn signing_kid(&self) -> &str {
        self.decoding.first().map_or("", |(kid, _)| kid.as_str())
    }

    fn kids(&self) -> Vec<String> {
        self.decoding.iter().map(|(kid, _)| kid.clone()).collect()
    }
}

/// Issues and verifies tokens; built once at start and shared.
pub struct TokenService {
    algorithm: TokenAlgorithm,
    /// The current keys; read once per token, replaced whole on reload (SIGHUP).
    keys: ArcSwap<KeySet>,
    /// Serialises reloads so generations never repeat or go back.
    reloading: Mutex<()>,
    validation: Validation,
    issuer: String,
    audience: Option<String>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    leeway: Duration,
    clock: Clock,
    /// Issue the `csrf` claim (cookies enabled).
    csrf: bool,
}

impl fmt::Debug for TokenService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.load();
        f.debug_struct("TokenService")
            .field("algorithm", &self.algorithm)
            .field("kids", &keys.kids())
            .field("generation", &keys.generation)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// Builds the service from `[tokens]` and the keys [`super::keys::load_keys`] returned.
    pub fn new(cfg: &TokensConfig, keys: Keys) -> Result<Self, TokenSetupError> {
        let (algorithm, signing, verify_only) = keys.into_parts();
        if algorithm != cfg.algorithm {
            return Err(TokenSetupError::AlgorithmMismatch);
        }
        let signing = signing.ok_or(TokenSetupError::NoSigningKey)?;
        let keys = KeySet::build(algorithm, &signing, &verify_only, 0);
        Ok(Self {
            algorithm,
            keys: ArcSwap::from_pointee(keys),
            reloading: Mutex::new(()),
            validation: validation(cfg, jwt_algorithm(algorithm)),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            access_ttl: cfg.access_ttl,
            refresh_ttl: cfg.refresh_ttl,
            leeway: cfg.leeway,
            clock: Clock::system(),
            csrf: false,
        })
    }

    /// The same service reading `clock` for issue times and its own time checks.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same service issuing a `csrf` claim in every token (`[auth.cookies] enabled`).
    pub fn with_csrf(mut self, enabled: bool) -> Self {
        self.csrf = enabled;
        self
    }

    /// An access token for `account` in `session`, issued at `now`. It never outlives the
    /// session, so a revoked session's entry can be pruned once the session has expired. A
    /// `fresh` token comes straight from a password check: its `auth_time` is `now`.
    pub fn issue_access(
        &self,
        account: &AccountGrant<'_>,
        session: &SessionGrant<'_>,
        fresh: bool,
        now: i64,
    ) -> Result<Signed, IssueError> {
        let now_u = claim_time(now);
        let exp = (now_u + self.access_ttl.as_secs()).min(claim_time(session.expires_at));
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: account.user_id.to_string(),
            username: Some(account.username.to_owned()),
            roles: Some(account.roles.to_vec()),
            r#type: TokenType::Access,
            jti: new_jti()?,
            sid: session.sid.to_owned(),
            iat: now_u,
            nbf: now_u,
            exp,
            auth_time: claim_time(if fresh { now } else { session.auth_time }),
            fresh: Some(fresh),
            csrf: if self.csrf { Some(new_jti()?) } else { None },
        };
        self.sign(claims)
    }

    /// The refresh token `jti` of `session`, issued at `issued_at`; it expires with the
    /// session. Re-issuing it with the same `jti` and `issued_at` gives the same claims.
    pub fn issue_refresh(
        &self,
        session: &SessionGrant<'_>,
        jti: &str,
        issued_at: i64,
    ) -> Result<Signed, IssueError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: session.user_id.to_string(),
            username: None,
            roles: None,
            r#type: TokenType::Refresh,
            jti: jti.to_owned(),
            sid: session.sid.to_owned(),
            iat: claim_time(issued_at),
            nbf: claim_time(issued_at),
            exp: claim_time(session.expires_at),
            auth_time: claim_time(session.auth_time),
            fresh: None,
            csrf: self.csrf.then(|| refresh_csrf(jti)),
        };
        self.sign(claims)
    }

    fn sign(&self, claims: Claims) -> Result<Signed, IssueError> {
        let token = self.issue(&claims).map_err(|reason| IssueError::Sign {
            kind: claims.r#type,
            reason,
        })?;
        Ok(Signed {
            token,
            csrf: claims.csrf,
        })
    }

    /// Signs `claims` as given with the current key: the low-level step under
    /// [`Self::issue_access`] and [`Self::issue_refresh`], which the gateway uses (tests sign
    /// hand-made claims here). They must already be what [`Self::verify`] accepts (our
    /// `iss`/`aud`, a valid shape); an error here is a bug or a key fault (answer 500).
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(TokenError::Invalid(
                "issue: iss or aud differs from the config",
            ));
        }
        claims.check_shape().map_err(TokenError::Invalid)?;
        let keys = self.keys.load();
        jsonwebtoken::encode(&keys.header, claims, &keys.encoding)
            .map_err(|_| TokenError::Invalid("issue: signing failed"))
    }

    /// Verifies `token` as a token of type `expected` and returns its claims.
    ///
    /// Order: size and alphabet; header (`alg` ours, no `crit`/`jku`/`x5u`/`jwk`/`x5c`, a `kid`
    /// we hold); signature, `exp`/`nbf` with leeway, `iss`, `aud` (jsonwebtoken with the
    /// prebuilt `Validation`); `type`; claim shape; lifetime no longer than we issue; `iat`
    /// not in the future. Revocation, freshness and roles are the caller's next steps.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        self.verify_as(token, &[expected]).map(|v| v.claims)
    }

    /// [`TokenService::verify`] for a token whose `type` may be any of `allowed` (logout and
    /// step-up take either): one decode, and `sub` parsed into the user id once.
    pub fn verify_as(&self, token: &str, allowed: &[TokenType]) -> Result<Verified, TokenError> {
        let header_segment = check_format(token)?;
        // One load: the signature is checked by a key of exactly this generation.
        let keys = self.keys.load();
        let key = self.check_header(&keys, header_segment)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(map_jwt_error)?
            .claims;
        if !allowed.contains(&claims.r#type) {
            return Err(TokenError::Invalid("wrong token type"));
        }
        let user_id = claims.check_shape().map_err(TokenError::Invalid)?;
        let claims = self.check_times(claims)?;
        Ok(Verified {
            claims,
            user_id,
            key_generation: keys.generation,
        })
    }

    /// The JWK Set (`{"keys":[...]}`) of the signing key and the rotation keys; `None` under
    /// HS256, whose key is secret.
    pub fn jwks(&self) -> Option<Arc<serde_json::Value>> {
        self.keys.load().jwks.clone()
    }

    /// The number of the current key set: 0 at start, one more after each key reload. A
    /// token verified under an older generation may have been signed by a key that is gone.
    pub fn key_generation(&self) -> u64 {
        self.keys.load().generation
    }

    /// Replaces the signing and rotation keys with `keys` (read again from
    /// `private_key_file` and `verify_keys` on SIGHUP) and returns the new generation. Tokens
    /// whose `kid` is no longer held are refused from the moment this returns. On error
    /// (another algorithm, no signing key) the old keys stay.
    pub fn reload_keys(&self, keys: Keys) -> Result<u64, TokenSetupError> {
        let (algorithm, signing, verify_only) = keys.into_parts();
        if algorithm != self.algorithm {
            return Err(TokenSetupError::AlgorithmMismatch);
        }
        let signing = signing.ok_or(TokenSetupError::NoSigningKey)?;
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = self.keys.load().generation.saturating_add(1);
        let set = KeySet::build(algorithm, &signing, &verify_only, generation);
        self.keys.store(Arc::new(set));
        Ok(generation)
    }

    /// The `kid`s of the keys that verify tokens now: the signing key's first.
    pub fn kids(&self) -> Vec<String> {
        self.keys.load().kids()
    }

    /// Lifetime of access tokens.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// Lifetime of a session and its refresh tokens.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    /// Lifetime of a token of type `kind`.
    pub fn ttl(&self, kind: TokenType) -> Duration {
        match kind {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        }
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of issued tokens, when one is configured.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }

    /// Now, in epoch seconds, for deciding whether a verified token has expired: the later of
    /// this service's clock and the system clock, because jsonwebtoken's own `exp` check reads
    /// the system clock (the two are one outside tests).
    pub fn expiry_now(&self) -> u64 {
        self.clock.now_u64_not_before_system()
    }

    /// The `kid` of the current signing key.
    pub fn signing_kid(&self) -> String {
        self.keys.load().signing_kid().to_owned()
    }

    /// Checks the raw header JSON, and picks the decoding key of `keys` its `kid` names.
    fn check_header<'k>(
        &self,
        keys: &'k KeySet,
        segment: &str,
    ) -> Result<&'k DecodingKey, TokenError> {
        let json = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| TokenError::Invalid("header is not base64url"))?;
        let header: RawHeader = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Invalid("header is not a JSON object of strings"))?;
        if header.alg.as_deref() != Some(self.algorithm.as_str()) {
            return Err(TokenError::Invalid("algorithm not allowed"));
        }
        if header.forbidden {
            return Err(TokenError::Invalid(
                "header carries crit, jku, x5u, jwk or x5c",
            ));
        }
        if header.typ.as_deref() != Some("JWT") {
            return Err(TokenError::Invalid("header typ is not JWT"));
        }
        let kid = header.kid.ok_or(TokenError::Invalid(NO_KID))?;
        keys.decoding
            .iter()
            .find(|(ours, _)| *ours == kid)
            .map(|(_, key)| key)
            .ok_or(TokenError::Invalid("unknown kid"))
    }

    /// Defence in depth beyond jsonwebtoken: lifetimes we never issue, `iat` from the future.
    fn check_times(&self, claims: Claims) -> Result<Claims, TokenError> {
        let leeway = self.leeway.as_secs();
        let lifetime = claims
            .exp
            .checked_sub(claims.iat)
            .ok_or(TokenError::Invalid("exp before iat"))?;
        if lifetime > self.ttl(claims.r#type).as_secs().saturating_add(leeway) {
            return Err(TokenError::Invalid("lifetime longer than issued"));
        }
        let now = self.clock.now_u64();
        if claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::Invalid("iat in the future"));
        }
        // A password check that has not happened yet cannot make a token fresh.
        if claims.auth_time > now.saturating_add(leeway) {
            return Err(TokenError::Invalid("auth_time in the future"));
        }
        Ok(claims)
    }
}

/// The reason [`TokenService::verify_as`] gives a token whose header names no `kid`: the one
/// shape a legacy (flask-jwt-extended) token has, so the authenticator tries it as one.
pub const NO_KID: &str = "header has no kid";

/// The header checks of a legacy token (docs/http-api.md §7.5): size and alphabet, `alg` exactly
/// HS256, none of `crit`/`jku`/`x5u`/`jwk`/`x5c`, and no `kid` (a token with one is ours).
pub fn check_legacy_header(token: &str) -> Result<(), TokenError> {
    let segment = check_format(token)?;
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Invalid("header is not base64url"))?;
    let header: RawHeader = serde_json::from_slice(&json)
        .map_err(|_| TokenError::Invalid("header is not a JSON object of strings"))?;
    if header.alg.as_deref() != Some("HS256") {
        return Err(TokenError::Invalid("algorithm not allowed"));
    }
    if header.forbidden {
        return Err(TokenError::Invalid(
            "header carries crit, jku, x5u, jwk or x5c",
        ));
    }
    if header.kid.is_some() {
        return Err(TokenError::Invalid("unknown kid"));
    }
    Ok(())
}

/// Maps jsonwebtoken's refusal to ours (shared with the legacy verifier).
pub(crate) fn jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    map_jwt_error(e)
}

/// The one `Validation`: our algorithm only, every time claim checked, all spec claims required.
fn validation(cfg: &TokensConfig, algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.algorithms = vec![algorithm];
    v.validate_exp = true;
    v.validate_nbf = true;
    // No audience configured: `aud = None` makes jsonwebtoken refuse any token carrying one.
    v.validate_aud = true;
    v.leeway = cfg.leeway.as_secs();
    v.reject_tokens_expiring_in_less_than = 0;
    let mut required = vec!["exp", "nbf", "iat", "iss", "sub"];
    v.set_issuer(&[cfg.issuer.as_str()]);
    if let Some(aud) = &cfg.audience {
        v.set_audience(&[aud.as_str()]);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// Size and alphabet before any decoding; returns the header segment.
fn check_format(token: &str) -> Result<&str, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Invalid("token longer than 8192 bytes"));
    }
    let alphabet_ok = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !alphabet_ok {
        return Err(TokenError::Invalid(
            "token has characters outside base64url",
        ));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok(h)
        }
        _ => Err(TokenError::Invalid("token is not three non-empty segments")),
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    TokenError::Invalid(match e.kind() {
        ErrorKind::ExpiredSignature => return TokenError::Expired,
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ImmatureSignature => "nbf in the future",
        ErrorKind::InvalidIssuer => "wrong iss",
        ErrorKind::InvalidAudience => "wrong or unexpected aud",
        ErrorKind::MissingRequiredClaim(_) => "missing a required claim",
        ErrorKind::InvalidClaimFormat(_) => "exp or nbf of the wrong type",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        ErrorKind::Json(_) => "claims of the wrong shape or type",
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => "malformed token",
        _ => "rejected by jsonwebtoken",
    })
}

fn jwk_set<'a>(keys: impl Iterator<Item = &'a PublicKey>) -> serde_json::Value {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for key in keys {
        if seen.contains(&key.kid()) {
            continue;
        }
        seen.push(key.kid());
        out.extend(key.jwk().and_then(|jwk| serde_json::to_value(jwk).ok()));
    }
    serde_json::json!({ "keys": out })
}

/// What `verify` needs from the raw header, read without trusting jsonwebtoken's `Header`
/// (which ignores `crit` and the key-URL parameters).
#[derive(Default)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    forbidden: bool,
}

enum HeaderKey {
    Alg,
    Kid,
    Typ,
    Forbidden,
    Other,
}

impl<'de> Deserialize<'de> for HeaderKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = HeaderKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header parameter name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<HeaderKey, E> {
                Ok(match key {
                    "alg" => HeaderKey::Alg,
                    "kid" => HeaderKey::Kid,
                    "typ" => HeaderKey::Typ,
                    "crit" | "jku" | "x5u" | "jwk" | "x5c" => HeaderKey::Forbidden,
                    _ => HeaderKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWS header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
                let mut h = RawHeader::default();
                while let Some(key) = map.next_key::<HeaderKey>()? {
                    let slot = match key {
                        HeaderKey::Alg => &mut h.alg,
                        HeaderKey::Kid => &mut h.kid,
                        HeaderKey::Typ => &mut h.typ,
                        HeaderKey::Forbidden | HeaderKey::Other => {
                            h.forbidden |= matches!(key, HeaderKey::Forbidden);
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // Duplicate names: refuse rather than guess which one jsonwebtoken reads.
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate header parameter"));
                    }
                    *slot = Some(map.next_value::<String>()?);
                }
                Ok(h)
            }
        }
        d.deserialize_map(HeaderVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::path::Path;

    use jsonwebtoken::get_current_timestamp;
    use serde_json::{json, Value};

    use super::*;
    use crate::auth::claims::new_jti;
    use crate::auth::keys::test_keys::{config, fixture, generate};
    use crate::auth::keys::{load_keys, KeyLoad};

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret-!!";

    /// A service plus what a test needs to forge tokens with the right key.
    struct Fixture {
        service: TokenService,
        /// The signing key as jsonwebtoken takes it.
        key: EncodingKey,
        kid: String,
        _dir: tempfile::TempDir,
    }

    fn hs256_with(edit: impl FnOnce(&mut TokensConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(TokenAlgorithm::Hs256, dir.path());
        edit(&mut cfg);
        let keys = load_keys(
            &cfg,
            Path::new("t.toml"),
            Some(SECRET.to_vec()),
            KeyLoad::CheckOnly,
        )
        .unwrap();
        let kid = keys.signing().unwrap().public().kid().to_owned();
        Fixture {
            service: TokenService::new(&cfg, keys).unwrap(),
            key: EncodingKey::from_secret(SECRET),
            kid,
            _dir: dir,
        }
    }

    fn hs256() -> Fixture {
        hs256_with(|_| {})
    }

    fn asym_with(
        algorithm: TokenAlgorithm,
        private: &Path,
        verify: Vec<std::path::PathBuf>,
        dir: tempfile::TempDir,
    ) -> Fixture {
        let mut cfg = config(algorithm, dir.path());
        cfg.private_key_file = Some(private.to_owned());
        cfg.verify_keys = verify;
        let keys = load_keys(&cfg, Path::new("t.toml"), None, KeyLoad::CheckOnly).unwrap();
        let kid = keys.signing().unwrap().public().kid().to_owned();
        let key = keys.signing().unwrap().encoding().clone();
        Fixture {
            service: TokenService::new(&cfg, keys).unwrap(),
            key,
            kid,
            _dir: dir,
        }
    }

    fn eddsa() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate(dir.path(), "ed", &rcgen::PKCS_ED25519);
        asym_with(TokenAlgorithm::EdDsa, &private, vec![], dir)
    }

    fn es256() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate(dir.path(), "p256", &rcgen::PKCS_ECDSA_P256_SHA256);
        asym_with(TokenAlgorithm::Es256, &private, vec![], dir)
    }

    fn rs256() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        asym_with(TokenAlgorithm::Rs256, &fixture("rsa2048.pem"), vec![], dir)
    }

    fn access(service: &TokenService) -> Claims {
        let now = get_current_timestamp();
        Claims {
            iss: service.issuer().to_owned(),
            aud: service.audience().map(str::to_owned),
            sub: "42".into(),
            username: Some("alice".into()),
            roles: Some(vec!["admin".into()]),
            r#type: TokenType::Access,
            jti: new_jti().unwrap(),
            sid: "session1".into(),
            iat: now,
            nbf: now,
            exp: now + service.access_ttl().as_secs(),
            auth_time: now,
            fresh: Some(true),
            csrf: None,
        }
    }

    fn refresh(service: &TokenService) -> Claims {
        let now = get_current_timestamp();
        Claims {
            username: None,
            roles: None,
            fresh: None,
            r#type: TokenType::Refresh,
            exp: now + service.refresh_ttl().as_secs(),
            ..access(service)
        }
    }

    fn b64(v: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    /// Signs arbitrary header and payload JSON with `key` as `alg`.
    fn forge(header: &Value, payload: &Value, key: &EncodingKey, alg: Algorithm) -> String {
        forge_raw(&header.to_string(), &payload.to_string(), key, alg)
    }

    fn forge_raw(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{signature}")
    }

    fn our_header(f: &Fixture) -> Value {
        json!({"alg": f.service.algorithm().as_str(), "typ": "JWT", "kid": f.kid})
    }

    fn claims_json(f: &Fixture) -> Value {
        serde_json::to_value(access(&f.service)).unwrap()
    }

    /// Signs `payload` as a normal token of the fixture's algorithm and key.
    fn sign_payload(f: &Fixture, payload: &Value) -> String {
        forge(
            &our_header(f),
            payload,
            &f.key,
            jwt_algorithm(f.service.algorithm()),
        )
    }

    fn all() -> Vec<(&'static str, Fixture)> {
        vec![
            ("HS256", hs256()),
            ("EdDSA", eddsa()),
            ("ES256", es256()),
            ("RS256", rs256()),
        ]
    }

    fn assert_invalid(result: Result<Claims, TokenError>, what: &str) {
        assert!(
            matches!(result, Err(TokenError::Invalid(_))),
            "{what}: {result:?}"
        );
    }

    #[test]
    fn issued_tokens_verify_for_every_algorithm() {
        for (name, f) in all() {
            let claims = access(&f.service);
            let token = f.service.issue(&claims).unwrap();
            assert_eq!(
                f.service.verify(&token, TokenType::Access).unwrap(),
                claims,
                "{name}"
            );
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(f.kid.as_str()), "{name}");
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let r = refresh(&f.service);
            let token = f.service.issue(&r).unwrap();
            assert_eq!(f.service.verify(&token, TokenType::Refresh).unwrap(), r);
        }
    }

    #[test]
    fn expired_token_is_reported_as_expired() {
        for (name, f) in all() {
            let mut c = access(&f.service);
            c.iat -= 3600;
            c.nbf -= 3600;
            c.exp = c.iat + 60;
            let token = f.service.issue(&c).unwrap();
            assert_eq!(
                f.service.verify(&token, TokenType::Access),
                Err(TokenError::Expired),
                "{name}"
            );
        }
    }

    #[test]
    fn token_expired_within_the_leeway_is_accepted() {
        let f = hs256();
        let mut c = access(&f.service);
        c.iat -= 60;
        c.nbf -= 60;
        c.exp = get_current_timestamp() - 3; // leeway is 5 s
        let token = f.service.issue(&c).unwrap();
        assert!(f.service.verify(&token, TokenType::Access).is_ok());
        c.exp = get_current_timestamp() - 30;
        let token = f.service.issue(&c).unwrap();
        assert_eq!(
            f.service.verify(&token, TokenType::Access),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_not_yet_valid_is_invalid() {
        for (name, f) in all() {
            let mut c = access(&f.service);
            c.nbf += 3600;
            let token = f.service.issue(&c).unwrap();
            assert_invalid(f.service.verify(&token, TokenType::Access), name);
        }
    }

    #[test]
    fn wrong_missing_or_array_issuer_is_invalid() {
        let f = hs256();
        for iss in [
            json!("other"),
            json!("authgate/"),
            json!("AUTHGATE"),
            json!(123),
            json!(["authgate"]),
            json!(["authgate", "x"]),
        ] {
            let mut p = claims_json(&f);
            p["iss"] = iss.clone();
            assert_invalid(
                f.service.verify(&sign_payload(&f, &p), TokenType::Access),
                &iss.to_string(),
            );
        }
        let mut p = claims_json(&f);
        p.as_object_mut().unwrap().remove("iss");
        assert_invalid(
            f.service.verify(&sign_payload(&f, &p), TokenType::Access),
            "no iss",
        );
    }

    #[test]
    fn configured_audience_must_be_present_and_match() {
        let f = hs256_with(|c| c.audience = Some("my-api".into()));
        let token = f.service.issue(&access(&f.service)).unwrap();
        assert!(f.service.verify(&token, TokenType::Access).is_ok());
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!(123),
            Value::Null,
        ] {
            let mut p = claims_json(&f);
            p["aud"] = aud.clone();
            assert_invalid(
                f.service.verify(&sign_payload(&f, &p), TokenType::Access),
                &aud.to_string(),
            );
        }
        let mut p = claims_json(&f);
        p.as_object_mut().unwrap().remove("aud");
        assert_invalid(
            f.service.verify(&sign_payload(&f, &p), TokenType::Access),
            "no aud",
        );
    }

    #[test]
    fn audience_in_a_token_is_refused_when_none_is_configured() {
        let f = hs256();
        for aud in [json!("authgate"), json!(["x"])] {
            let mut p = claims_json(&f);
            p["aud"] = aud;
            assert_invalid(
                f.service.verify(&sign_payload(&f, &p), TokenType::Access),
                "aud",
            );
        }
    }

    #[test]
    fn alg_none_in_every_spelling_is_invalid() {
        for (name, f) in all() {
            let payload = b64(claims_json(&f).to_string());
            for alg in ["none", "None", "NONE", "nOnE"] {
                let header = b64(json!({"alg": alg, "typ": "JWT", "kid": f.kid}).to_string());
                for sig in ["", "c2lnbmF0dXJl"] {
                    let token = format!("{header}.{payload}.{sig}");
                    assert_invalid(
                        f.service.verify(&token, TokenType::Access),
                        &format!("{name} {alg}"),
                    );
                }
            }
        }
    }

    #[test]
    fn other_hmac_algorithm_with_the_right_secret_is_invalid() {
        let f = hs256();
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": f.kid});
            let token = forge(&header, &claims_json(&f), &f.key, alg);
            assert_invalid(f.service.verify(&token, TokenType::Access), "HS384/512");
        }
        for alg in ["hs256", "HS256 ", "HS-256"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": f.kid});
            let token = forge(&header, &claims_json(&f), &f.key, Algorithm::HS256);
            assert_invalid(f.service.verify(&token, TokenType::Access), alg);
        }
        for header in [
            json!({"alg": ["HS256"], "typ": "JWT", "kid": f.kid}),
            json!({"alg": null, "typ": "JWT", "kid": f.kid}),
            json!({"typ": "JWT", "kid": f.kid}),
        ] {
            let token = forge(&header, &claims_json(&f), &f.key, Algorithm::HS256);
            assert_invalid(
                f.service.verify(&token, TokenType::Access),
                &header.to_string(),
            );
        }
    }

    #[test]
    fn hs256_token_signed_with_the_rs256_public_key_is_invalid() {
        let f = rs256();
        let public_pem = std::fs::read(fixture("rsa2048.pub.pem")).unwrap();
        let mut trimmed = public_pem.clone();
        trimmed.pop();
        for secret in [public_pem, trimmed] {
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": f.kid});
            let token = forge(
                &header,
                &claims_json(&f),
                &EncodingKey::from_secret(&secret),
                Algorithm::HS256,
            );
            assert_invalid(f.service.verify(&token, TokenType::Access), "key confusion");
        }
    }

    #[test]
    fn tampered_payload_is_invalid() {
        for (name, f) in all() {
            let token = f.service.issue(&access(&f.service)).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let mut p = claims_json(&f);
            p["sub"] = json!("43");
            let forged = format!("{}.{}.{}", parts[0], b64(p.to_string()), parts[2]);
            assert_invalid(f.service.verify(&forged, TokenType::Access), name);
            // Signature of another valid token transplanted.
            let other = f.service.issue(&access(&f.service)).unwrap();
            let sig = other.rsplit('.').next().unwrap();
            let forged = format!("{}.{}.{sig}", parts[0], parts[1]);
            assert_invalid(f.service.verify(&forged, TokenType::Access), name);
        }
    }

    #[test]
    fn header_with_crit_jku_x5u_jwk_or_x5c_is_invalid_even_when_correctly_signed() {
        for (name, f) in all() {
            let extras = [
                ("crit", json!(["exp"])),
                ("crit", json!([])),
                ("jku", json!("http://127.0.0.1:1/jwks.json")),
                ("x5u", json!("http://127.0.0.1:1/cert.pem")),
                ("jwk", json!({"kty": "oct", "k": "AAAA"})),
                ("x5c", json!(["MIIB"])),
            ];
            for (param, value) in extras {
                let mut header = our_header(&f);
                header[param] = value;
                let token = sign_payload_with_header(&f, &header);
                assert_invalid(
                    f.service.verify(&token, TokenType::Access),
                    &format!("{name} {param}"),
                );
            }
        }
    }

    fn sign_payload_with_header(f: &Fixture, header: &Value) -> String {
        forge(
            header,
            &claims_json(f),
            &f.key,
            jwt_algorithm(f.service.algorithm()),
        )
    }

    #[test]
    fn header_without_typ_jwt_or_with_duplicate_alg_is_invalid() {
        let f = hs256();
        let payload = claims_json(&f).to_string();
        let dup = format!(
            r#"{{"alg":"HS256","alg":"none","typ":"JWT","kid":"{}"}}"#,
            f.kid
        );
        let token = forge_raw(&dup, &payload, &f.key, Algorithm::HS256);
        assert_invalid(f.service.verify(&token, TokenType::Access), "duplicate alg");
        let mut header = our_header(&f);
        header["typ"] = json!("at+jwt");
        let token = sign_payload_with_header(&f, &header);
        assert_invalid(f.service.verify(&token, TokenType::Access), "typ");
    }

    #[test]
    fn unknown_or_missing_kid_is_invalid() {
        for (name, f) in all() {
            for kid in [
                json!("unknown"),
                json!(""),
                json!("../../dev/null"),
                json!(1),
            ] {
                let mut header = our_header(&f);
                header["kid"] = kid;
                let token = sign_payload_with_header(&f, &header);
                assert_invalid(f.service.verify(&token, TokenType::Access), name);
            }
            let mut header = our_header(&f);
            header.as_object_mut().unwrap().remove("kid");
            let token = sign_payload_with_header(&f, &header);
            assert_invalid(f.service.verify(&token, TokenType::Access), name);
        }
    }

    #[test]
    fn token_over_8192_bytes_is_invalid_before_decoding() {
        let f = hs256();
        let token = "a".repeat(8193);
        assert_eq!(
            f.service.verify(&token, TokenType::Access),
            Err(TokenError::Invalid("token longer than 8192 bytes"))
        );
        // A correctly signed token padded past the limit by a big claim.
        let mut p = claims_json(&f);
        p["pad"] = json!("x".repeat(7000));
        let token = sign_payload(&f, &p);
        assert!(token.len() > MAX_TOKEN_LEN);
        assert_invalid(f.service.verify(&token, TokenType::Access), "big");
    }

    #[test]
    fn malformed_token_shapes_are_invalid() {
        let f = hs256();
        let good = f.service.issue(&access(&f.service)).unwrap();
        let (message, sig) = good.rsplit_once('.').unwrap();
        let cases = [
            String::new(),
            message.to_owned(),
            format!("{message}."),
            format!("{good}."),
            format!("{good}.x"),
            format!(".{good}"),
            good.replace('.', ".."),
            format!("{message}.{sig}="),
            format!("{message}.{sig} "),
            format!("{message}.+{sig}"),
            good.replacen('.', "%2e", 1),
        ];
        for token in cases {
            assert_invalid(f.service.verify(&token, TokenType::Access), &token);
        }
    }

    #[test]
    fn refresh_token_is_not_an_access_token_and_the_reverse() {
        for (name, f) in all() {
            let r = f.service.issue(&refresh(&f.service)).unwrap();
            assert_invalid(f.service.verify(&r, TokenType::Access), name);
            let a = f.service.issue(&access(&f.service)).unwrap();
            assert_invalid(f.service.verify(&a, TokenType::Refresh), name);
        }
    }

    #[test]
    fn wrongly_typed_claims_are_invalid() {
        let f = hs256();
        let cases = [
            ("fresh", json!("true")),
            ("fresh", json!(1)),
            ("sub", json!("u1")),
            ("sub", json!(42)),
            ("sub", json!("0")),
            ("exp", json!("9999999999")),
            ("exp", json!(true)),
            ("exp", Value::Null),
            ("exp", json!([1])),
            ("exp", json!(-1)),
            ("exp", json!(1e300)),
            ("nbf", json!("99999999999")),
            ("iat", json!("1")),
            ("jti", json!(5)),
            ("type", json!("ACCESS")),
        ];
        for (claim, value) in cases {
            let mut p = claims_json(&f);
            p[claim] = value.clone();
            assert_invalid(
                f.service.verify(&sign_payload(&f, &p), TokenType::Access),
                &format!("{claim}={value}"),
            );
        }
        for claim in ["exp", "nbf", "iat", "sub", "jti", "sid", "type"] {
            let mut p = claims_json(&f);
            p.as_object_mut().unwrap().remove(claim);
            assert_invalid(
                f.service.verify(&sign_payload(&f, &p), TokenType::Access),
                claim,
            );
        }
    }

    #[test]
    fn lifetime_longer_than_the_ttl_or_iat_in_the_future_is_invalid() {
        let f = hs256();
        let mut c = access(&f.service);
        c.exp = c.iat + 10 * 365 * 24 * 3600;
        let mut p = serde_json::to_value(&c).unwrap();
        assert_invalid(
            f.service.verify(&sign_payload(&f, &p), TokenType::Access),
            "10 years",
        );
        p["exp"] = json!(c.iat + f.service.access_ttl().as_secs() + 5);
        assert!(f
            .service
            .verify(&sign_payload(&f, &p), TokenType::Access)
            .is_ok());
        let now = get_current_timestamp();
        p["iat"] = json!(now + 3600);
        p["exp"] = json!(now + 3600 + 60);
        assert_invalid(
            f.service.verify(&sign_payload(&f, &p), TokenType::Access),
            "future iat",
        );
    }

    #[test]
    fn extra_claims_are_ignored() {
        let f = hs256();
        let mut p = claims_json(&f);
        p["role"] = json!("admin");
        p["X-Auth-User-Id"] = json!("1");
        let claims = f
            .service
            .verify(&sign_payload(&f, &p), TokenType::Access)
            .unwrap();
        assert_eq!(crate::auth::claims::parse_user_id(&claims.sub), Some(42));
    }

    #[test]
    fn token_signed_by_a_rotated_key_still_verifies_and_jwks_lists_both_kids() {
        let dir = tempfile::tempdir().unwrap();
        let (old, old_pub) = generate(dir.path(), "old", &rcgen::PKCS_ED25519);
        let (new, _) = generate(dir.path(), "new", &rcgen::PKCS_ED25519);
        let old_service = asym_with(
            TokenAlgorithm::EdDsa,
            &old,
            vec![],
            tempfile::tempdir().unwrap(),
        );
        let token = old_service
            .service
            .issue(&access(&old_service.service))
            .unwrap();

        let rotated = asym_with(TokenAlgorithm::EdDsa, &new, vec![old_pub], dir);
        assert_ne!(rotated.kid, old_service.kid);
        assert!(rotated.service.verify(&token, TokenType::Access).is_ok());
        let fresh = rotated.service.issue(&access(&rotated.service)).unwrap();
        assert_invalid(
            old_service.service.verify(&fresh, TokenType::Access),
            "old gateway, new key",
        );

        let jwks = rotated.service.jwks().unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [rotated.kid.as_str(), old_service.kid.as_str()]);
    }

    #[test]
    fn reloading_keys_bumps_the_generation_and_drops_a_removed_key_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (old, old_pub) = generate(dir.path(), "old", &rcgen::PKCS_ED25519);
        let (new, _) = generate(dir.path(), "new", &rcgen::PKCS_ED25519);
        let f = asym_with(TokenAlgorithm::EdDsa, &old, vec![], dir);
        let by_old = f.service.issue(&access(&f.service)).unwrap();
        let verified = f.service.verify_as(&by_old, &[TokenType::Access]).unwrap();
        assert_eq!(
            (f.service.key_generation(), verified.key_generation),
            (0, 0)
        );

        let mut cfg = config(TokenAlgorithm::EdDsa, f._dir.path());
        cfg.private_key_file = Some(new);
        cfg.verify_keys = vec![old_pub];
        let keys = load_keys(&cfg, Path::new("t.toml"), None, KeyLoad::CheckOnly).unwrap();
        assert_eq!(f.service.reload_keys(keys).unwrap(), 1);
        let verified = f.service.verify_as(&by_old, &[TokenType::Access]).unwrap();
        assert_eq!(verified.key_generation, 1);
        assert_eq!(f.service.kids().len(), 2);
        let by_new = f.service.issue(&access(&f.service)).unwrap();
        assert_ne!(f.service.signing_kid(), f.kid);

        cfg.verify_keys = vec![];
        let keys = load_keys(&cfg, Path::new("t.toml"), None, KeyLoad::CheckOnly).unwrap();
        assert_eq!(f.service.reload_keys(keys).unwrap(), 2);
        assert_invalid(f.service.verify(&by_old, TokenType::Access), "removed key");
        assert!(f.service.verify(&by_new, TokenType::Access).is_ok());
        assert_eq!(
            f.service.jwks().unwrap()["keys"].as_array().unwrap().len(),
            1
        );

        // Keys of another algorithm are refused and the running ones stay.
        let hs = load_keys(
            &config(TokenAlgorithm::Hs256, f._dir.path()),
            Path::new("t.toml"),
            Some(SECRET.to_vec()),
            KeyLoad::CheckOnly,
        )
        .unwrap();
        assert_eq!(
            f.service.reload_keys(hs).unwrap_err(),
            TokenSetupError::AlgorithmMismatch
        );
        assert_eq!(f.service.key_generation(), 2);
        assert!(f.service.verify(&by_new, TokenType::Access).is_ok());
    }

    #[test]
    fn jwks_entries_carry_public_parameters_and_their_rfc7638_kid() {
        for (name, f) in all() {
            let Some(jwks) = f.service.jwks() else {
                assert_eq!(name, "HS256", "only HS256 has no JWK Set");
                continue;
            };
            let key = &jwks["keys"][0];
            assert_eq!(key["use"], "sig", "{name}");
            assert_eq!(key["alg"], name);
            assert_eq!(key["kid"], f.kid.as_str());
            assert!(key.get("d").is_none(), "{name}: private part leaked");
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
            assert_eq!(crate::auth::keys::thumbprint(&jwk).unwrap(), f.kid);
            let expected: &[&str] = match name {
                "EdDSA" => &["kty", "crv", "x"],
                "ES256" => &["kty", "crv", "x", "y"],
                _ => &["kty", "n", "e"],
            };
            for field in expected {
                assert!(key.get(*field).is_some(), "{name} {field}");
            }
            // An upstream can verify our tokens with nothing but the JWK.
            let token = f.service.issue(&access(&f.service)).unwrap();
            let mut v = Validation::new(jwt_algorithm(f.service.algorithm()));
            v.set_issuer(&["authgate"]);
            let dk = DecodingKey::from_jwk(&jwk).unwrap();
            assert!(
                jsonwebtoken::decode::<Claims>(&token, &dk, &v).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn hs256_kid_matches_the_secret_digest_and_a_token_from_another_secret_is_invalid() {
        let f = hs256();
        let other = forge(
            &our_header(&f),
            &claims_json(&f),
            &EncodingKey::from_secret(b"another-secret-another-secret-another"),
            Algorithm::HS256,
        );
        assert_invalid(f.service.verify(&other, TokenType::Access), "other secret");
        for weak in [&b""[..], b"secret"] {
            let token = forge(
                &our_header(&f),
                &claims_json(&f),
                &EncodingKey::from_secret(weak),
                Algorithm::HS256,
            );
            assert_invalid(f.service.verify(&token, TokenType::Access), "weak");
        }
    }

    #[test]
    fn issue_refuses_claims_that_verify_would_refuse() {
        let f = hs256();
        let mut c = access(&f.service);
        c.iss = "other".into();
        assert!(f.service.issue(&c).is_err());
        let mut c = access(&f.service);
        c.sub = "alice".into();
        assert!(f.service.issue(&c).is_err());
        let mut c = access(&f.service);
        c.fresh = None;
        assert!(f.service.issue(&c).is_err());
    }

    #[test]
    fn service_cannot_be_built_from_a_check_only_load_without_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(TokenAlgorithm::Hs256, dir.path());
        let keys = load_keys(&cfg, Path::new("t.toml"), None, KeyLoad::CheckOnly).unwrap();
        assert_eq!(
            TokenService::new(&cfg, keys).unwrap_err(),
            TokenSetupError::NoSigningKey
        );
    }

    #[test]
    fn error_texts_never_contain_the_token() {
        let f = hs256();
        let token = f.service.issue(&access(&f.service)).unwrap();
        let tampered = format!("{token}x");
        let err = f.service.verify(&tampered, TokenType::Access).unwrap_err();
        assert!(!err.to_string().contains(&tampered));
        let shown = format!("{:?}", f.service);
        assert!(!shown.contains("test-secret"), "{shown}");
        // A derived Debug of jsonwebtoken's keys would print the secret as decimal bytes.
        let as_bytes = format!("{:?}", &SECRET[..4]);
        let as_bytes = as_bytes.trim_matches(|c| c == '[' || c == ']');
        assert!(!shown.contains(as_bytes), "{shown}");
    }
}
