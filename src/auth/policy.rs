//! The route policy: one function, [`decide`], from (route policy, method, identity or its
//! absence) to allow or a [`Refusal`], and [`authorize`], which reads the request's credential
//! (only where the policy reads one) and then decides. The proxy and the forward-auth decision
//! endpoint both call [`authorize`], so a proxied request and a decision about the same method
//! and path can never differ; the account endpoints use the freshness and role rules.
//!
//! Order (docs/http-api.md §4, §6, §7.2): on a non-public route the identity (verified by the
//! authenticator: signature, `exp`/`nbf`, `iss`/`aud`, type, revocation), then its freshness
//! (`auth = "fresh"`, or the route's `fresh_methods`, with `fresh_max_age`), then its roles,
//! and only then the method — so every 401 and 403 comes before a 405 and an anonymous caller
//! learns nothing from the method. `TRACE` is never forwarded: it is a 405 in that last step.
//! A public route needs no identity; its caller never has `Authorization` read at all
//! ([`RoutePolicy::reads_credentials`]). An optional route takes an identity or none.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};

use super::authenticator::{Accept, Authenticator};
use super::error::AuthError;
use super::identity::Identity;
use crate::clock::Clock;
use crate::config::{RouteAuth, RouteConfig};

/// `Allow` of a route without a `methods` list (docs/http-api.md §7.1).
const DEFAULT_ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// A route's policy, compiled once per configuration.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    auth: RouteAuth,
    fresh_max_age: Option<Duration>,
    fresh_methods: Vec<Method>,
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
            fresh_methods: route.fresh_methods.clone(),
            roles: route.roles.clone(),
            methods: route.methods.clone(),
            allow: route.methods.as_deref().and_then(allow_value),
        }
    }

    /// The policy of a path no route matches, as `[forward_auth] default_auth` sets it: that
    /// `auth`, with no freshness age, roles or method list.
    pub fn unmatched(auth: RouteAuth) -> RoutePolicy {
        RoutePolicy {
            auth,
            fresh_max_age: None,
            fresh_methods: Vec::new(),
            roles: Vec::new(),
            methods: None,
            allow: None,
        }
    }

    /// Whether the request's credential is read at all: on every route but a public one.
    pub fn reads_credentials(&self) -> bool {
        self.auth != RouteAuth::Public
    }

    /// The `Allow` header value for a `405`, e.g. `GET, POST`; `None` when all methods pass.
    pub fn allow(&self) -> Option<&HeaderValue> {
        self.allow.as_ref()
    }

    /// The methods to announce in `Allow` (a 405, `OPTIONS` with `Max-Forwards: 0`): the
    /// route's list, or for a route without one `GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS`.
    pub fn allow_header(&self) -> HeaderValue {
        self.allow
            .clone()
            .unwrap_or(HeaderValue::from_static(DEFAULT_ALLOW))
    }

    /// Whether the route accepts `method` (exact match; `HEAD` only when listed). `TRACE`
    /// never passes.
    pub fn allows(&self, method: &Method) -> bool {
        *method != Method::TRACE
            && self
                .methods
                .as_ref()
                .is_none_or(|methods| methods.contains(method))
    }

    /// Whether `method` needs a fresh token here: every method on a `fresh` route, the
    /// `fresh_methods` of a `token` route.
    pub fn needs_fresh(&self, method: &Method) -> bool {
        match self.auth {
            RouteAuth::Fresh => true,
            RouteAuth::Token => self.fresh_methods.contains(method),
            RouteAuth::Public | RouteAuth::Optional => false,
        }
    }
}

/// The whole check of a request with `method` and `headers` on a route with `policy`: its
/// credential is read by `auth` (with CSRF checked for `method` when it is a cookie; never on
/// a public route, whose caller's `Authorization` is not even looked at), then [`decide`]. Returns the identity the request speaks for, `None`
/// when anonymous.
pub fn authorize(
    auth: &Authenticator,
    policy: &RoutePolicy,
    method: &Method,
    headers: &HeaderMap,
    clock: &Clock,
) -> Result<Option<Identity>, Refusal> {
    let identity = if policy.reads_credentials() {
        auth.authenticate(headers, method, Accept::Access)?
    } else {
        None
    };
    decide(policy, method, identity.as_ref(), clock)?;
    Ok(identity)
}

/// The decision for a request with `method` and `identity` on a route with `policy`.
/// `identity` is what the authenticator proved (`None`: no credential was presented; a bad
/// one never gets here). `clock` is read only for a freshness check.
pub fn decide(
    policy: &RoutePolicy,
    method: &Method,
    identity: Option<&Identity>,
    clock: &Clock,
) -> Result<(), Refusal> {
    match policy.auth {
        // Optional: anonymous or identified alike; it has no freshness or roles to check.
        RouteAuth::Public | RouteAuth::Optional => {}
        RouteAuth::Token | RouteAuth::Fresh => {
            let identity = identity.ok_or(AuthError::MissingToken)?;
            if policy.needs_fresh(method) {
                require_fresh(identity, policy.fresh_max_age, clock.now_u64())?;
            }
            require_roles(identity, &policy.roles)?;
        }
    }
    if !policy.allows(method) {
        return Err(Refusal::Method {
            allow: policy.allow_header(),
        });
    }
    Ok(())
}

/// The freshness rule: the identity must be fresh and, with `max_age`, its `auth_time` no
/// older than that at `now` (seconds since the epoch; compared exactly, no leeway).
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
            upstream: Some(http::Uri::from_static("http://127.0.0.1:9")),
            auth,
            fresh_max_age: Some(Duration::from_secs(300)),
            fresh_methods: Vec::new(),
            roles: vec!["ops".into()],
            methods,
            strip_prefix: false,
            forward_authorization: false,
            websocket: false,
            timeout: Duration::from_secs(30),
            login_redirect: false,
            cors: true,
            upstream_protocol: crate::config::UpstreamProtocol::Http1,
            preserve_host: false,
            idle_timeout: Duration::from_secs(300),
        }
    }

    /// A route as validation would let it through: no roles or `fresh_max_age` where the
    /// policy cannot have them, `fresh_methods` only on token routes.
    fn valid_route(auth: RouteAuth, fresh_methods: &[Method], methods: &[Method]) -> RouteConfig {
        let identity_free = matches!(auth, RouteAuth::Public | RouteAuth::Optional);
        RouteConfig {
            fresh_methods: fresh_methods.to_vec(),
            roles: if identity_free {
                Vec::new()
            } else {
                vec!["ops".into()]
            },
            fresh_max_age: (auth == RouteAuth::Fresh || !fresh_methods.is_empty())
                .then_some(Duration::from_secs(300)),
            ..route(auth, Some(methods.to_vec()))
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
            legacy: false,
            header_values: Default::default(),
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

    #[test]
    fn an_optional_route_takes_no_identity_or_any_valid_one_and_checks_only_the_method() {
        let policy = RoutePolicy::new(&valid_route(
            RouteAuth::Optional,
            &[],
            &[Method::GET, Method::POST],
        ));
        assert!(
            policy.reads_credentials(),
            "a bad token must still be refused"
        );
        let clock = Clock::manual(10_000);
        let stale = identity(&[], false, 1);
        for id in [None, Some(&stale)] {
            assert_eq!(decide(&policy, &Method::GET, id, &clock), Ok(()));
            assert_eq!(decide(&policy, &Method::POST, id, &clock), Ok(()));
            assert_eq!(
                decide(&policy, &Method::DELETE, id, &clock),
                Err(Refusal::Method {
                    allow: HeaderValue::from_static("GET, POST")
                })
            );
        }
    }

    #[test]
    fn fresh_methods_need_a_fresh_token_for_those_methods_only() {
        let all = [Method::GET, Method::POST, Method::DELETE];
        let policy = RoutePolicy::new(&valid_route(
            RouteAuth::Token,
            &[Method::POST, Method::DELETE],
            &all,
        ));
        let clock = Clock::manual(10_000);
        let not_fresh = identity(&["ops"], false, 9_999);
        assert_eq!(
            decide(&policy, &Method::GET, Some(&not_fresh), &clock),
            Ok(())
        );
        for method in [Method::POST, Method::DELETE] {
            assert_eq!(
                decide(&policy, &method, Some(&not_fresh), &clock),
                Err(Refusal::Auth(AuthError::FreshRequired {
                    max_age: Some(300)
                }))
            );
        }
        // fresh_max_age is compared with auth_time exactly: 300 s old passes, 301 s does not.
        let just_in_time = identity(&["ops"], true, 10_000 - 300);
        assert_eq!(
            decide(&policy, &Method::POST, Some(&just_in_time), &clock),
            Ok(())
        );
        let too_old = identity(&["ops"], true, 10_000 - 301);
        assert!(decide(&policy, &Method::POST, Some(&too_old), &clock).is_err());
        assert_eq!(
            decide(&policy, &Method::GET, Some(&too_old), &clock),
            Ok(())
        );
        // Freshness comes before roles; roles before the method.
        let fresh_no_role = identity(&[], true, 10_000);
        assert_eq!(
            decide(&policy, &Method::POST, Some(&fresh_no_role), &clock),
            Err(Refusal::Auth(AuthError::Forbidden))
        );
        assert_eq!(
            decide(&policy, &Method::POST, Some(&not_fresh), &clock),
            Err(Refusal::Auth(AuthError::FreshRequired {
                max_age: Some(300)
            }))
        );
    }

    #[test]
    fn trace_is_405_after_the_token_checks_and_allow_lists_a_default_without_methods() {
        let clock = Clock::manual(10_000);
        let ops = identity(&["ops"], true, 10_000);
        let token = RoutePolicy::new(&route(RouteAuth::Token, None));
        assert!(!token.allows(&Method::TRACE));
        assert_eq!(
            decide(&token, &Method::TRACE, None, &clock),
            Err(Refusal::Auth(AuthError::MissingToken))
        );
        assert_eq!(
            decide(&token, &Method::TRACE, Some(&ops), &clock),
            Err(Refusal::Method {
                allow: HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            })
        );
        let public = RoutePolicy::new(&valid_route(RouteAuth::Public, &[], &[Method::GET]));
        assert_eq!(
            decide(&public, &Method::TRACE, None, &clock),
            Err(Refusal::Method {
                allow: HeaderValue::from_static("GET")
            })
        );
        assert_eq!(public.allow_header(), "GET");
        assert_eq!(
            token.allow_header(),
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
    }

    /// What §7.2 says a request gets, step by step in its order, for the table below.
    fn expected(
        auth: RouteAuth,
        fresh_methods: &[Method],
        allowed: &[Method],
        id: Option<&Identity>,
        method: &Method,
        now: u64,
    ) -> Result<(), Refusal> {
        if matches!(auth, RouteAuth::Token | RouteAuth::Fresh) {
            let Some(id) = id else {
                return Err(Refusal::Auth(AuthError::MissingToken));
            };
            let needs_fresh = auth == RouteAuth::Fresh || fresh_methods.contains(method);
            if needs_fresh && !(id.fresh && now - id.auth_time <= 300) {
                return Err(Refusal::Auth(AuthError::FreshRequired {
                    max_age: Some(300),
                }));
            }
            if !id.roles.iter().any(|r| r == "ops") {
                return Err(Refusal::Auth(AuthError::Forbidden));
            }
        }
        if *method == Method::TRACE || !allowed.contains(method) {
            return Err(Refusal::Method {
                allow: HeaderValue::from_static("GET, POST, DELETE"),
            });
        }
        Ok(())
    }

    #[test]
    fn every_policy_identity_and_method_combination_follows_the_order_of_checks() {
        let now = 10_000;
        let clock = Clock::manual(now);
        let allowed = [Method::GET, Method::POST, Method::DELETE];
        let fresh_post = [Method::POST, Method::DELETE];
        let policies: [(RouteAuth, &[Method]); 5] = [
            (RouteAuth::Public, &[]),
            (RouteAuth::Optional, &[]),
            (RouteAuth::Token, &[]),
            (RouteAuth::Token, &fresh_post),
            (RouteAuth::Fresh, &[]),
        ];
        let identities = [
            identity(&["ops"], false, now - 10),
            identity(&["ops"], true, now - 10),
            identity(&["ops"], true, now - 300),
            identity(&["ops"], true, now - 301),
            identity(&["other"], true, now - 10),
            identity(&["other"], false, now - 10),
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PUT,
            Method::TRACE,
        ];
        let mut checked = 0;
        for (auth, fresh_methods) in policies {
            let policy = RoutePolicy::new(&valid_route(auth, fresh_methods, &allowed));
            let ids = std::iter::once(None).chain(identities.iter().map(Some));
            for id in ids {
                for method in &methods {
                    let got = decide(&policy, method, id, &clock);
                    let want = expected(auth, fresh_methods, &allowed, id, method, now);
                    assert_eq!(got, want, "{auth:?} {fresh_methods:?} {method} {id:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * 7 * 5);
    }
}
