//! The claims authgate puts in its tokens (docs/http-api.md §2), as one strictly typed struct.
//!
//! Owns: the claim names and JSON types, the access/refresh shape rules, and `jti` generation.
//! Invariants: a claim of the wrong JSON type fails deserialisation (typed fields, duplicate
//! names refused by serde derive); [`Claims::check_shape`] holds for every token issued or
//! accepted, so `sub` is always a positive decimal integer and `jti`/`sid` are short base64url
//! strings that are safe in headers and as map keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Longest `jti` or `sid` accepted.
const MAX_ID_LEN: usize = 128;

/// Which of the two token kinds a token is (`type` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// Presented on requests; carries identity and roles.
    Access,
    /// Presented to `/auth/refresh`; carries only the session.
    Refresh,
}

/// The claims of an authgate token.
///
/// Access tokens carry `username`, `roles` and `fresh`; refresh tokens carry none of them.
/// Unknown claims are ignored; a known claim of the wrong type fails the whole token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the configured `tokens.issuer`.
    pub iss: String,
    /// Audience: the configured `tokens.audience`, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// User id as a decimal string.
    pub sub: String,
    /// Username as registered (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Role names (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Access or refresh.
    pub r#type: TokenType,
    /// Unique token id (at least 128 random bits, base64url).
    pub jti: String,
    /// Login session id.
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    pub nbf: u64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// When the user last typed their password in this session, seconds since the epoch.
    pub auth_time: u64,
    /// True only for access tokens issued straight from a password check (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<bool>,
    /// The double-submit CSRF value a cookie-authenticated unsafe request must echo in
    /// `X-CSRF-TOKEN` (docs/http-api.md §7.4); issued only while cookies are enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

impl Claims {
    /// True for an access token with `fresh: true`.
    pub fn is_fresh(&self) -> bool {
        self.r#type == TokenType::Access && self.fresh == Some(true)
    }

    /// The rules beyond JSON types: `sub` a positive decimal integer, `jti`/`sid` short
    /// base64url strings, and the access/refresh claim sets. Returns the user id `sub` names,
    /// so verification parses it once; the error is a reason for logs.
    pub fn check_shape(&self) -> Result<i64, &'static str> {
        let Some(user_id) = parse_user_id(&self.sub) else {
            return Err("sub is not a positive decimal integer");
        };
        if !is_short_id(&self.jti) {
            return Err("jti is not a short base64url string");
        }
        if !is_short_id(&self.sid) {
            return Err("sid is not a short base64url string");
        }
        if self.csrf.as_deref().is_some_and(|c| !is_short_id(c)) {
            return Err("csrf is not a short base64url string");
        }
        let identity = [
            self.username.is_some(),
            self.roles.is_some(),
            self.fresh.is_some(),
        ];
        match self.r#type {
            TokenType::Access if identity.contains(&false) => {
                Err("access token without username, roles or fresh")
            }
            TokenType::Refresh if identity.contains(&true) => {
                Err("refresh token with username, roles or fresh")
            }
            _ => Ok(user_id),
        }
    }
}

/// A positive decimal integer with no sign, no leading zero and no other characters.
pub fn parse_user_id(sub: &str) -> Option<i64> {
    let canonical =
        !sub.is_empty() && !sub.starts_with('0') && sub.bytes().all(|b| b.is_ascii_digit());
    if !canonical {
        return None;
    }
    sub.parse::<i64>().ok().filter(|id| *id > 0)
}

fn is_short_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new token or session id: 16 bytes (128 bits) from the OS CSPRNG, base64url without
/// padding. Fails only when the OS random source does; no id is ever made without it.
pub fn new_jti() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The `csrf` claim of a refresh token whose `jti` is `jti`: 128 bits of SHA-256 over it,
/// base64url. A refresh token re-signed within the reuse grace must carry its claims
/// unchanged, so its CSRF value follows from the `jti` (itself 128 random bits) instead of
/// being drawn anew; the hash keeps the `jti` itself out of the script-readable CSRF cookie.
pub fn refresh_csrf(jti: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"authgate refresh csrf\0")
        .chain_update(jti.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn access_json() -> serde_json::Value {
        json!({
            "iss": "authgate", "sub": "42", "username": "alice", "roles": ["admin"],
            "type": "access", "jti": "abc", "sid": "s1", "iat": 1, "nbf": 1, "exp": 2,
            "auth_time": 1, "fresh": true
        })
    }

    fn parse(v: serde_json::Value) -> Result<Claims, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn access_claims_round_trip_through_json() {
        let claims = parse(access_json()).unwrap();
        assert_eq!(claims.r#type, TokenType::Access);
        assert_eq!(parse_user_id(&claims.sub), Some(42));
        assert!(claims.check_shape().is_ok());
        let back = serde_json::to_value(&claims).unwrap();
        assert_eq!(back, access_json());
    }

    #[test]
    fn refresh_claims_serialise_without_identity_fields() {
        let claims = Claims {
            iss: "authgate".into(),
            aud: None,
            sub: "7".into(),
            username: None,
            roles: None,
            r#type: TokenType::Refresh,
            jti: new_jti().unwrap(),
            sid: "s".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            auth_time: 1,
            fresh: None,
            csrf: None,
        };
        let v = serde_json::to_value(&claims).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj["type"], "refresh");
        for absent in ["aud", "username", "roles", "fresh"] {
            assert!(!obj.contains_key(absent), "{absent}");
        }
        assert!(claims.check_shape().is_ok());
    }

    #[test]
    fn fresh_as_a_string_is_refused() {
        let mut v = access_json();
        v["fresh"] = json!("true");
        assert!(parse(v).is_err());
    }

    #[test]
    fn iss_as_an_array_is_refused() {
        let mut v = access_json();
        v["iss"] = json!(["authgate"]);
        assert!(parse(v).is_err());
    }

    #[test]
    fn exp_as_a_string_is_refused() {
        let mut v = access_json();
        v["exp"] = json!("9999999999");
        assert!(parse(v).is_err());
    }

    #[test]
    fn unknown_type_is_refused() {
        let mut v = access_json();
        v["type"] = json!("Access");
        assert!(parse(v).is_err());
    }

    #[test]
    fn duplicate_claim_names_are_refused() {
        let raw = r#"{"iss":"authgate","sub":"1","sub":"2","type":"refresh","jti":"a","sid":"s",
            "iat":1,"nbf":1,"exp":2,"auth_time":1}"#;
        assert!(serde_json::from_str::<Claims>(raw).is_err());
    }

    #[test]
    fn sub_must_be_a_canonical_positive_decimal_integer() {
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "01",
            "1.0",
            "u1",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(parse_user_id(bad), None, "{bad:?}");
            let mut v = access_json();
            v["sub"] = json!(bad);
            assert!(parse(v).unwrap().check_shape().is_err(), "{bad:?}");
        }
        let mut v = access_json();
        v["sub"] = json!(12);
        assert!(parse(v).is_err(), "a number is not a string");
        assert_eq!(parse_user_id("9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn access_token_without_fresh_and_refresh_token_with_roles_break_the_shape() {
        let mut v = access_json();
        v.as_object_mut().unwrap().remove("fresh");
        assert!(parse(v).unwrap().check_shape().is_err());
        let mut v = access_json();
        v["type"] = json!("refresh");
        assert!(parse(v).unwrap().check_shape().is_err());
    }

    #[test]
    fn jti_with_header_breaking_characters_breaks_the_shape() {
        let mut v = access_json();
        v["jti"] = json!("a\r\nX-Auth: 1");
        assert!(parse(v).unwrap().check_shape().is_err());
    }

    #[test]
    fn new_jti_is_22_base64url_characters_and_unique() {
        let a = new_jti().unwrap();
        let b = new_jti().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(is_short_id(&a));
    }
}
