//! The route policy: one function, [`decide`], from (route policy, method, identity or its
//! absence) to allow or a [`Refusal`]. The proxy calls it for every routed request (and the
//! forward-auth endpoint will); the account endpoints use its freshness and role rules.
//!
//! Order (HTTP-API.md §4, §6): on a non-public route the identity, its freshness (and
//! `fresh_max_age`) and its roles are checked before the method, so every 401 and 403 comes
//! before a 405 and an anonymous caller learns nothing from the method. A public route needs
//! no identity; its caller never has `Authorization` read at all ([`RoutePolicy::reads_credentials`]).

use std::time::Duration;

use http::{HeaderValue, Method};

use super::error::AuthError;
use super::identity::Identity;
use crate::clock::Clock;
use crate::config::{RouteAuth, RouteConfig};

/// A route's policy, compiled once per configuration.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    auth: RouteAuth,
    fresh_max_age: Option<Duration>,
    roles: Vec<String>,
    methods: Option<Vec<Method>>,
    /// `Allow` of a 405, e.g. `GET, POST`; `None` when every method passes.
    allow: Option<HeaderValue>,
}

/// Why the policy refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No identity, or one without the freshness or roles the route needs.
    Auth(AuthError),
    /// The route does not take this method; `allow` lists those it does.
    Method {
        /// Value of the `Allow` header.
        allow: HeaderValue,
    },
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Refusal::Auth(e)
    }
}

impl RoutePolicy {
    /// The policy of `route`.
    pub fn new(route: &RouteConfig) -> RoutePolicy {
        RoutePolicy {
            auth: route.auth,
            fresh_max_age: route.fresh_max_age,
            roles: route.roles.clone(),
            methods: route.methods.clone(),
            allow: route.methods.as_deref().and_then(allow_value),
        }
    }

    /// Whether the route needs an identity, so the request's credential is read at all.
    pub fn reads_credentials(&self) -> bool {
        self.auth != RouteAuth::Public
    }

    /// The `Allow` header value for a `405`, e.g. `GET, POST`; `None` when all methods pass.
    pub fn allow(&self) -> Option<&HeaderValue> {
        self.allow.as_ref()
    }

    /// Whether the route accepts `method` (exact match; `HEAD` only when listed).
    pub fn allows(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}

/// The decision for a request with `method` and `identity` on a route with `policy`.
/// `clock` is read only for a freshness check.
pub fn decide(
    policy: &RoutePolicy,
    method: &Method,
    identity: Option<&Identity>,
    clock: &Clock,
) -> Result<(), Refusal> {
    match policy.auth {
        RouteAuth::Public => {}
        RouteAuth::Token | RouteAuth::Fresh => {
            let identity = identity.ok_or(AuthError::MissingToken)?;
            if policy.auth == RouteAuth::Fresh {
                require_fresh(identity, policy.fresh_max_age, clock.now_u64())?;
            }
            require_roles(identity, &policy.roles)?;
        }
    }
    if !policy.allows(method) {
        let allow = policy.allow.clone().unwrap_or(HeaderValue::from_static(""));
        return Err(Refusal::Method { allow });
    }
    Ok(())
}

/// The freshness rule: the identity must be fresh and, with `max_age`, its `auth_time` no
/// older than that at `now` (seconds since the epoch).
pub fn require_fresh(
    identity: &Identity,
    max_age: Option<Duration>,
    now: u64,
) -> Result<(), AuthError> {
    let max_age_secs = max_age.map(|d| d.as_secs());
    let young_enough = max_age_secs.is_none_or(|age| now.saturating_sub(identity.auth_time) <= age);
    if identity.fresh && young_enough {
        Ok(())
    } else {
        Err(AuthError::FreshRequired {
            max_age: max_age_secs,
        })
    }
}

/// The identity must hold every role in `required` (read from the token, never the store).
pub fn require_roles(identity: &Identity, required: &[String]) -> Result<(), AuthError> {
    if required.iter().all(|r| identity.roles.contains(r)) {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

/// `GET, POST` from the configured list (validation guarantees it is non-empty and valid).
fn allow_value(methods: &[Method]) -> Option<HeaderValue> {
    let joined = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&joined).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::auth::claims::TokenType;
    use crate::auth::identity::Presentation;

    fn route(auth: RouteAuth, methods: Option<Vec<Method>>) -> RouteConfig {
        RouteConfig {
            prefix: "/api".into(),
            upstream: http::Uri::from_static("http://127.0.0.1:9"),
            auth,
            fresh_max_age: Some(Duration::from_secs(300)),
            roles: vec!["ops".into()],
            methods,
            strip_prefix: false,
            forward_authorization: false,
            websocket: false,
            timeout: Duration::from_secs(30),
            login_redirect: false,
            cors: true,
        }
    }

    fn identity(roles: &[&str], fresh: bool, auth_time: u64) -> Identity {
        Identity {
            user_id: 7,
            username: "alice".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            session_id: "s".into(),
            token_id: "j".into(),
            auth_time,
            fresh,
            expires_at: auth_time + 900,
            token_type: TokenType::Access,
            presentation: Presentation::BearerHeader,
        }
    }

    #[test]
    fn on_a_token_route_401_and_403_come_before_405() {
        let policy = RoutePolicy::new(&route(RouteAuth::Token, Some(vec![Method::GET])));
        let clock = Clock::manual(10_000);
        let post = Method::POST;
        assert_eq!(
            decide(&policy, &post, None, &clock),
            Err(Refusal::Auth(AuthError::MissingToken))
        );
        let no_role = identity(&[], false, 9_000);
        assert_eq!(
            decide(&policy, &post, Some(&no_role), &clock),
            Err(Refusal::Auth(AuthError::Forbidden))
        );
        let ops = identity(&["ops"], false, 9_000);
        assert_eq!(
            decide(&policy, &post, Some(&ops), &clock),
            Err(Refusal::Method {
                allow: HeaderValue::from_static("GET")
            })
        );
        assert_eq!(decide(&policy, &Method::GET, Some(&ops), &clock), Ok(()));
    }

    #[test]
    fn a_public_route_reads_no_credential_and_checks_only_the_method() {
        let policy = RoutePolicy::new(&route(RouteAuth::Public, Some(vec![Method::GET])));
        assert!(!policy.reads_credentials());
        let clock = Clock::manual(0);
        assert_eq!(decide(&policy, &Method::GET, None, &clock), Ok(()));
        assert!(matches!(
            decide(&policy, &Method::PUT, None, &clock),
            Err(Refusal::Method { .. })
        ));
    }

    #[test]
    fn a_fresh_route_counts_fresh_max_age_on_the_clock() {
        let policy = RoutePolicy::new(&route(RouteAuth::Fresh, None));
        let clock = Clock::manual(10_000);
        let fresh = identity(&["ops"], true, 10_000 - 300);
        assert_eq!(decide(&policy, &Method::GET, Some(&fresh), &clock), Ok(()));
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            decide(&policy, &Method::GET, Some(&fresh), &clock),
            Err(Refusal::Auth(AuthError::FreshRequired {
                max_age: Some(300)
            }))
        );
        let stale = identity(&["ops"], false, 10_001);
        assert!(decide(&policy, &Method::GET, Some(&stale), &clock).is_err());
    }
}
