//! Who a request speaks for: the [`Identity`] the authenticator builds from a verified
//! credential, and how the credential was presented. Everything after authentication (policy,
//! identity headers, tunnels, the account endpoints) reads this, never the token again.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

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
    /// The identity headers' values, worked out once per cached token and shared by every
    /// request that presents it (empty for an identity not from the cache).
    pub header_values: SharedHeaderValues,
}

/// The values the identity headers carry upstream (`fresh` aside: one of two constants), as
/// the headers require them: visible ASCII or inner spaces, roles joined by `,`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValues {
    /// The user id in decimal.
    pub user_id: HeaderValue,
    /// The username.
    pub username: HeaderValue,
    /// The roles joined by `,`.
    pub roles: HeaderValue,
    /// The session id.
    pub session_id: HeaderValue,
}

/// The identity field whose value cannot be sent as a header value (the request then fails;
/// it is never forwarded without its identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsendableField {
    /// The username.
    Username,
    /// A role (holding `,`, or a byte a header cannot carry).
    Roles,
    /// The session id.
    SessionId,
}

/// What working out an identity's header values gives.
pub type HeaderValuesResult = Result<HeaderValues, UnsendableField>;

/// A slot for [`HeaderValues`] that the verified-token cache keeps beside a token, so the
/// requests presenting it build them once. Derived from the identity's other fields, so it
/// never makes two identities differ.
#[derive(Clone, Default)]
pub struct SharedHeaderValues(Option<Arc<OnceLock<HeaderValuesResult>>>);

impl SharedHeaderValues {
    /// A new, empty slot to keep with a cached token.
    pub fn new_slot() -> SharedHeaderValues {
        SharedHeaderValues(Some(Arc::default()))
    }
}

impl PartialEq for SharedHeaderValues {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedHeaderValues {}

impl fmt::Debug for SharedHeaderValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.0 {
            None => "none",
            Some(slot) if slot.get().is_some() => "filled",
            Some(_) => "empty",
        };
        f.write_str(state)
    }
}

impl HeaderValues {
    /// The values of `user_id`, `username`, `roles` and `session_id`, or the first field that
    /// cannot be sent. `HeaderValue::from_str` alone would accept obs-text and surrounding
    /// spaces that receivers strip or misread: identity values must arrive exactly as the
    /// token says, and a role holding `,` would read as two roles upstream.
    pub fn of(
        user_id: i64,
        username: &str,
        roles: &[String],
        session_id: &str,
    ) -> HeaderValuesResult {
        // Checked in this order, so the error names the same header as it always has.
        let username = header_value(username).ok_or(UnsendableField::Username)?;
        if roles.iter().any(|r| r.contains(',')) {
            return Err(UnsendableField::Roles);
        }
        Ok(HeaderValues {
            user_id: HeaderValue::from(user_id),
            username,
            roles: header_value(&roles.join(",")).ok_or(UnsendableField::Roles)?,
            session_id: header_value(session_id).ok_or(UnsendableField::SessionId)?,
        })
    }
}

/// `value` as a header value when it is visible ASCII or inner spaces.
fn header_value(value: &str) -> Option<HeaderValue> {
    let printable = value.bytes().all(|b| (0x20..=0x7E).contains(&b));
    let trimmed = value.trim_ascii() == value;
    (printable && trimmed)
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
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
            header_values: SharedHeaderValues::default(),
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
            header_values: SharedHeaderValues::default(),
        }
    }

    /// The identity of a verified token held in the verified-token cache (its strings are
    /// copied: the cache keeps its own), with the header-value slot the cache keeps for it.
    pub fn from_shared(
        verified: &Verified,
        presentation: Presentation,
        header_values: SharedHeaderValues,
    ) -> Identity {
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
            header_values,
        }
    }

    /// The identity headers' values: from the cache's slot, worked out there on first use, or
    /// worked out now for an identity not from the cache.
    pub fn header_values(&self) -> Result<Cow<'_, HeaderValues>, UnsendableField> {
        let work_out =
            || HeaderValues::of(self.user_id, &self.username, &self.roles, &self.session_id);
        match &self.header_values.0 {
            Some(slot) => match slot.get_or_init(work_out) {
                Ok(values) => Ok(Cow::Borrowed(values)),
                Err(field) => Err(*field),
            },
            None => work_out().map(Cow::Owned),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn identity(username: &str, header_values: SharedHeaderValues) -> Identity {
        Identity {
            user_id: 42,
            username: username.into(),
            roles: vec!["ops".into(), "dev".into()],
            session_id: "sid-1".into(),
            token_id: "jti-1".into(),
            auth_time: 1,
            fresh: true,
            expires_at: 2,
            token_type: TokenType::Access,
            presentation: Presentation::BearerHeader,
            legacy: false,
            header_values,
        }
    }

    #[test]
    fn header_values_are_worked_out_once_per_slot_and_agree_without_one() {
        let slot = SharedHeaderValues::new_slot();
        let first = identity("alice", slot.clone());
        let values = first.header_values().unwrap();
        assert!(matches!(values, Cow::Borrowed(_)), "kept in the slot");
        assert_eq!(values.user_id, "42");
        assert_eq!(values.username, "alice");
        assert_eq!(values.roles, "ops,dev");
        assert_eq!(values.session_id, "sid-1");
        // A later request with the same token reads the slot: even another username (which a
        // cached token cannot have) does not change what the slot holds.
        let later = identity("bob", slot);
        assert_eq!(later.header_values().unwrap().username, "alice");
        let uncached = identity("alice", SharedHeaderValues::default());
        assert!(matches!(uncached.header_values().unwrap(), Cow::Owned(_)));
        assert_eq!(*uncached.header_values().unwrap(), *values);
        assert_eq!(first, uncached, "the slot never makes identities differ");
    }

    #[test]
    fn an_unsendable_value_is_refused_from_the_slot_every_time() {
        let slot = SharedHeaderValues::new_slot();
        for _ in 0..2 {
            let id = identity(" alice", slot.clone());
            assert_eq!(id.header_values().unwrap_err(), UnsendableField::Username);
        }
        let mut id = identity("alice", SharedHeaderValues::new_slot());
        id.roles = vec!["a,b".into()];
        assert_eq!(id.header_values().unwrap_err(), UnsendableField::Roles);
        let mut id = identity("alice", SharedHeaderValues::new_slot());
        id.session_id = "s\u{7f}".into();
        assert_eq!(id.header_values().unwrap_err(), UnsendableField::SessionId);
    }
}
