//! The compiled route table: built once from `[[routes]]` (at start and on reload), then
//! shared read-only. Matching is segment-aware longest-prefix on an already normalised path.
//! The proxy asks for the [`Route`] to forward to ([`Router::route_for`]); the forward-auth
//! decision endpoint asks for the policy alone ([`Router::policy_for`]), so one table and one
//! match decide both.
//!
//! A route without an upstream serves forward-auth decisions only: it has a policy but no
//! [`Route`], so the proxy answers it 404 — the longest match is still that route, never a
//! shorter prefix that happens to forward.
//!
//! Invariants: every [`Route`] has an upstream scheme and authority, a `Host` value, and a base
//! path without a trailing `/`; a lookup costs one hash probe per path segment and allocates
//! nothing, so 1,000 routes cost the same as ten.

use std::collections::HashMap;

use bytes::Bytes;
use http::uri::{Authority, Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use thiserror::Error;

use crate::auth::policy::RoutePolicy;
use crate::config::RouteConfig;
use crate::path::remainder_after_prefix;

/// A route the table cannot be built from; validation normally refuses these earlier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouterError {
    /// The upstream URL lacks a scheme or an authority.
    #[error("routes[{index}] ({prefix}): upstream is not an absolute URL")]
    UpstreamNotAbsolute {
        /// Position of the route in the file.
        index: usize,
        /// The route's prefix.
        prefix: String,
    },
    /// The upstream URL carries a query string, which has no defined meaning here.
    #[error("routes[{index}] ({prefix}): upstream must not have a query string")]
    UpstreamQuery {
        /// Position of the route in the file.
        index: usize,
        /// The route's prefix.
        prefix: String,
    },
    /// Two routes share a prefix.
    #[error("routes[{index}] ({prefix}): duplicate prefix")]
    DuplicatePrefix {
        /// Position of the later route in the file.
        index: usize,
        /// The shared prefix.
        prefix: String,
    },
}

/// The upstream URI of a request could not be built.
#[derive(Debug, Error)]
#[error("cannot build the upstream URI: {0}")]
pub struct UpstreamUriError(#[from] http::Error);

/// The compiled route table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Routes with an upstream, in file order.
    routes: Vec<Route>,
    by_prefix: HashMap<String, Slot, PrefixHasher>,
}

/// The prefix map's hasher: foldhash, seeded per process. Every request hashes its path and
/// its ancestors here; with the standard SipHash that cost 1,000 instructions a request under
/// callgrind. The keys are the operator's prefixes, so flooding the map is not a concern, and
/// the per-process seed keeps a probe's cost from being predictable anyway.
type PrefixHasher = foldhash::fast::RandomState;

/// What a prefix leads to.
#[derive(Debug, Clone)]
enum Slot {
    /// A route the proxy forwards on (index into `routes`).
    Proxied(usize),
    /// A route without an upstream: forward-auth decisions only.
    DecisionOnly(RoutePolicy),
}

impl Router {
    /// Compiles the routes, in file order (a route's index is its position in `routes`).
    pub fn new(routes: &[RouteConfig]) -> Result<Router, RouterError> {
        let mut compiled = Vec::with_capacity(routes.len());
        let mut by_prefix =
            HashMap::with_capacity_and_hasher(routes.len(), PrefixHasher::default());
        for (index, config) in routes.iter().enumerate() {
            let slot = match &config.upstream {
                Some(upstream) => {
                    compiled.push(Route::compile(index, config, upstream)?);
                    Slot::Proxied(compiled.len() - 1)
                }
                None => Slot::DecisionOnly(RoutePolicy::new(config)),
            };
            if by_prefix.insert(config.prefix.clone(), slot).is_some() {
                return Err(RouterError::DuplicatePrefix {
                    index,
                    prefix: config.prefix.clone(),
                });
            }
        }
        Ok(Router {
            routes: compiled,
            by_prefix,
        })
    }

    /// The route to forward to: the one whose prefix is the longest segment-boundary prefix of
    /// `path`, a path already passed through [`crate::path::normalize`]. `/api` matches `/api`,
    /// `/api/` and `/api/x` but not `/apix`; `/` matches everything. `None` when no route
    /// matches, or when the match has no upstream (a forward-auth decision route).
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        match self.slot_for(path)? {
            Slot::Proxied(i) => self.routes.get(*i),
            Slot::DecisionOnly(_) => None,
        }
    }

    /// The policy of the route `path` matches exactly as [`Router::route_for`] matches it,
    /// routes without an upstream included; `None` when no route matches.
    pub fn policy_for(&self, path: &str) -> Option<&RoutePolicy> {
        match self.slot_for(path)? {
            Slot::Proxied(i) => self.routes.get(*i).map(Route::policy),
            Slot::DecisionOnly(policy) => Some(policy),
        }
    }

    /// Every route with an upstream, in file order (for metrics labels and diagnostics).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Number of routes, with or without an upstream.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    /// True when there are no routes (every request is then `404`).
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Probes the path itself, then each ancestor cut at a `/`, longest first, then `/`.
    fn slot_for(&self, path: &str) -> Option<&Slot> {
        if let Some(slot) = self.by_prefix.get(path) {
            return Some(slot);
        }
        // The slashes are found in the bytes: `str::rfind` with a `char` pattern cost 150
        // instructions a call (two calls on a typical proxied path) under callgrind.
        let mut head = path.as_bytes();
        while let Some(slash) = head.iter().rposition(|&b| b == b'/') {
            if slash == 0 {
                break;
            }
            if let Some(slot) = path.get(..slash).and_then(|p| self.by_prefix.get(p)) {
                return Some(slot);
            }
            head = &head[..slash];
        }
        self.by_prefix.get("/")
    }
}

/// One compiled route: its configuration plus everything the request path needs, computed once.
#[derive(Debug, Clone)]
pub struct Route {
    config: RouteConfig,
    index: usize,
    policy: RoutePolicy,
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
    base_path: String,
    forwarded_prefix: Option<HeaderValue>,
}

impl Route {
    fn compile(index: usize, config: &RouteConfig, upstream: &Uri) -> Result<Route, RouterError> {
        let (Some(scheme), Some(authority)) = (upstream.scheme(), upstream.authority()) else {
            return Err(RouterError::UpstreamNotAbsolute {
                index,
                prefix: config.prefix.clone(),
            });
        };
        if upstream.query().is_some() {
            return Err(RouterError::UpstreamQuery {
                index,
                prefix: config.prefix.clone(),
            });
        }
        Ok(Route {
            config: config.clone(),
            index,
            policy: RoutePolicy::new(config),
            scheme: scheme.clone(),
            authority: authority.clone(),
            host: host_value(authority).ok_or_else(|| RouterError::UpstreamNotAbsolute {
                index,
                prefix: config.prefix.clone(),
            })?,
            base_path: upstream.path().trim_end_matches('/').to_owned(),
            // `/` strips nothing, so it has no prefix to report.
            forwarded_prefix: (config.strip_prefix && config.prefix != "/")
                .then(|| HeaderValue::from_str(&config.prefix).ok())
                .flatten(),
        })
    }

    /// The route's configuration as validated.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// Position of the route in `[[routes]]` (stable label for metrics).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The route's prefix (label for metrics and logs).
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Who may pass the route, with which methods (compiled once).
    pub fn policy(&self) -> &RoutePolicy {
        &self.policy
    }

    /// Upstream scheme (`http` or `https`).
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Upstream authority (`host:port` as configured).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The `Host` header value to send upstream: the authority without any userinfo.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// The upstream's scheme and authority as a URI (`https://svc:8443/`): where a
    /// `preserve_host` route's connections go.
    pub fn upstream_base(&self) -> Uri {
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
        Uri::from_parts(parts).unwrap_or_else(|_| self.config.upstream.clone().unwrap_or_default())
    }

    /// `X-Forwarded-Prefix` for the upstream: the prefix a `strip_prefix` route removes
    /// (so an application behind it can build its own URLs); `None` otherwise.
    pub fn forwarded_prefix(&self) -> Option<&HeaderValue> {
        self.forwarded_prefix.as_ref()
    }

    /// Path of the upstream URL without its trailing `/`; empty when the URL has no path.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The URI to forward to: the route's upstream (scheme and authority) and
    /// [`Route::upstream_target`].
    pub fn upstream_uri(
        &self,
        normalized_path: &str,
        query: Option<&str>,
    ) -> Result<Uri, UpstreamUriError> {
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(self.upstream_target(normalized_path, query)?);
        Uri::from_parts(parts).map_err(|e| UpstreamUriError(http::Error::from(e)))
    }

    /// The request target to forward (origin form): `normalized_path` with the prefix removed
    /// when `strip_prefix` is set, the base path in front, and `query` appended byte for byte
    /// after `?`.
    ///
    /// With `strip_prefix`, a request for exactly the prefix forwards the bare base path
    /// (`/api` → `/v1`, or `/` when there is no base path) and `/api/` forwards `/v1/`.
    pub fn upstream_target(
        &self,
        normalized_path: &str,
        query: Option<&str>,
    ) -> Result<PathAndQuery, UpstreamUriError> {
        let rest = if self.config.strip_prefix {
            remainder_after_prefix(normalized_path, &self.config.prefix)
        } else {
            normalized_path
        };
        let query_len = query.map_or(0, |q| q.len() + 1);
        let mut target = String::with_capacity(self.base_path.len() + rest.len() + query_len);
        target.push_str(&self.base_path);
        target.push_str(rest);
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        PathAndQuery::from_maybe_shared(Bytes::from(target))
            .map_err(|e| UpstreamUriError(http::Error::from(e)))
    }
}

/// `Host` must not carry the userinfo an authority may hold.
fn host_value(authority: &Authority) -> Option<HeaderValue> {
    let full = authority.as_str();
    let host = full.rsplit_once('@').map_or(full, |(_, host)| host);
    HeaderValue::from_str(host).ok()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use http::Method;

    use super::*;
    use crate::config::RouteAuth;

    fn route(prefix: &str, upstream: &str) -> RouteConfig {
        RouteConfig {
            prefix: prefix.to_owned(),
            upstream: Some(upstream.parse().unwrap()),
            auth: RouteAuth::Token,
            fresh_max_age: None,
            fresh_methods: Vec::new(),
            roles: Vec::new(),
            methods: None,
            strip_prefix: false,
            forward_authorization: false,
            websocket: true,
            timeout: Duration::from_secs(30),
            upstream_protocol: crate::config::UpstreamProtocol::Http1,
            preserve_host: false,
            idle_timeout: Duration::from_secs(300),
            login_redirect: false,
            cors: true,
        }
    }

    fn router(prefixes: &[&str]) -> Router {
        let routes: Vec<_> = prefixes
            .iter()
            .map(|p| route(p, "http://127.0.0.1:9000"))
            .collect();
        Router::new(&routes).unwrap()
    }

    fn matched<'a>(router: &'a Router, path: &str) -> Option<&'a str> {
        router.route_for(path).map(Route::prefix)
    }

    #[test]
    fn prefix_matches_only_on_segment_boundaries() {
        let r = router(&["/api"]);
        assert_eq!(matched(&r, "/api"), Some("/api"));
        assert_eq!(matched(&r, "/api/"), Some("/api"));
        assert_eq!(matched(&r, "/api/x/y"), Some("/api"));
        assert_eq!(matched(&r, "/apix"), None);
        assert_eq!(matched(&r, "/api-internal/x"), None);
        assert_eq!(matched(&r, "/ap"), None);
        assert_eq!(matched(&r, "/"), None);
    }

    #[test]
    fn longest_prefix_wins_whatever_the_file_order() {
        let r = router(&["/api", "/api/admin/keys", "/api/admin"]);
        assert_eq!(matched(&r, "/api/admin"), Some("/api/admin"));
        assert_eq!(matched(&r, "/api/admin/x"), Some("/api/admin"));
        assert_eq!(matched(&r, "/api/admin/keys/1"), Some("/api/admin/keys"));
        assert_eq!(matched(&r, "/api/administrator"), Some("/api"));
        assert_eq!(matched(&r, "/api/other"), Some("/api"));
    }

    #[test]
    fn root_route_catches_everything_else() {
        let r = router(&["/", "/api"]);
        assert_eq!(matched(&r, "/"), Some("/"));
        assert_eq!(matched(&r, "/apix"), Some("/"));
        assert_eq!(matched(&r, "/x/y/z/"), Some("/"));
        assert_eq!(matched(&r, "/api/x"), Some("/api"));
    }

    #[test]
    fn no_matching_route_gives_none() {
        assert!(router(&["/api", "/public"]).route_for("/admin/x").is_none());
        assert!(router(&[]).route_for("/").is_none());
    }

    #[test]
    fn thousand_routes_each_match_their_own_paths() {
        let prefixes: Vec<String> = (0..1000).map(|i| format!("/svc{i}/v{}", i % 7)).collect();
        let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let r = router(&refs);
        assert_eq!(r.len(), 1000);
        for (i, p) in prefixes.iter().enumerate() {
            let hit = r.route_for(&format!("{p}/items/42")).unwrap();
            assert_eq!(hit.index(), i);
            assert_eq!(hit.prefix(), p);
        }
        assert!(r.route_for("/svc1000/v0/x").is_none());
    }

    #[test]
    fn a_route_without_upstream_decides_but_never_forwards_nor_falls_back() {
        let mut decision = route("/api/admin", "http://unused");
        decision.upstream = None;
        decision.auth = RouteAuth::Fresh;
        let r =
            Router::new(&[route("/", "http://a"), route("/api", "http://a"), decision]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.routes().len(), 2);
        // The proxy gets nothing for the decision route: not `/api`, not `/`.
        assert!(r.route_for("/api/admin/x").is_none());
        assert!(r.route_for("/api/admin").is_none());
        assert_eq!(matched(&r, "/api/administrator"), Some("/api"));
        let needs_fresh = |path: &str| r.policy_for(path).unwrap().needs_fresh(&Method::GET);
        assert!(needs_fresh("/api/admin/x"));
        assert!(!needs_fresh("/api/x"));
        assert!(!needs_fresh("/other"));
        assert!(Router::new(&[]).unwrap().policy_for("/x").is_none());
    }

    #[test]
    fn duplicate_prefixes_are_refused() {
        let routes = [route("/api", "http://a"), route("/api", "http://b")];
        assert!(matches!(
            Router::new(&routes),
            Err(RouterError::DuplicatePrefix { index: 1, .. })
        ));
    }

    #[test]
    fn upstream_with_query_is_refused() {
        let routes = [route("/api", "http://a/x?y=1")];
        assert!(matches!(
            Router::new(&routes),
            Err(RouterError::UpstreamQuery { index: 0, .. })
        ));
    }

    #[test]
    fn methods_list_gives_allow_header_and_exact_checks() {
        let mut config = route("/api", "http://a");
        config.methods = Some(vec![Method::GET, Method::POST]);
        let r = Router::new(&[config, route("/open", "http://a")]).unwrap();
        let api = r.route_for("/api").unwrap();
        assert_eq!(api.policy().allow().unwrap(), "GET, POST");
        assert!(api.policy().allows(&Method::GET));
        assert!(!api.policy().allows(&Method::HEAD));
        assert!(!api.policy().allows(&Method::DELETE));
        let open = r.route_for("/open").unwrap();
        assert!(open.policy().allow().is_none());
        assert!(open
            .policy()
            .allows(&Method::from_bytes(b"PROPFIND").unwrap()));
    }

    #[test]
    fn host_is_the_upstream_authority_without_userinfo() {
        let r = Router::new(&[
            route("/a", "https://user:pw@svc.internal:8443/v1"),
            route("/b", "http://[::1]:9000"),
        ])
        .unwrap();
        let a = r.route_for("/a").unwrap();
        assert_eq!(a.host(), "svc.internal:8443");
        assert_eq!(a.scheme(), &Scheme::HTTPS);
        assert_eq!(r.route_for("/b").unwrap().host(), "[::1]:9000");
    }

    #[test]
    fn upstream_uri_keeps_path_and_query_byte_for_byte() {
        let r = Router::new(&[route("/api", "http://127.0.0.1:9000")]).unwrap();
        let api = r.route_for("/api/orders/1").unwrap();
        assert_eq!(api.base_path(), "");
        let uri = api.upstream_uri("/api/orders/1", Some("a=%2F&b")).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9000/api/orders/1?a=%2F&b"
        );
        assert_eq!(uri.query(), Some("a=%2F&b"));
        let empty_query = api.upstream_uri("/api", Some("")).unwrap();
        assert_eq!(empty_query.to_string(), "http://127.0.0.1:9000/api?");
        let target = api
            .upstream_target("/api/orders/1", Some("a=%2F&b"))
            .unwrap();
        assert_eq!(target.as_str(), "/api/orders/1?a=%2F&b");
        assert_eq!(Uri::from(target).to_string(), "/api/orders/1?a=%2F&b");
    }

    #[test]
    fn upstream_uri_strips_prefix_and_prepends_base_path() {
        let mut stripped = route("/api", "http://svc/v1/");
        stripped.strip_prefix = true;
        let mut bare = route("/bare", "http://svc");
        bare.strip_prefix = true;
        let mut root = route("/", "http://svc/base");
        root.strip_prefix = true;
        let r = Router::new(&[stripped, bare, route("/keep", "http://svc/v2"), root]).unwrap();
        let uri = |path: &str, query: Option<&str>| {
            let route = r.route_for(path).unwrap();
            let uri = route.upstream_uri(path, query).unwrap();
            // The plain pool's origin-form target is the same path and query.
            let target = route.upstream_target(path, query).unwrap();
            assert_eq!(uri.path_and_query(), Some(&target));
            uri.to_string()
        };
        assert_eq!(
            uri("/api/orders/1", Some("x=1")),
            "http://svc/v1/orders/1?x=1"
        );
        assert_eq!(uri("/api", None), "http://svc/v1");
        assert_eq!(uri("/api/", None), "http://svc/v1/");
        assert_eq!(uri("/bare/orders/1", None), "http://svc/orders/1");
        assert_eq!(uri("/bare", None), "http://svc/");
        assert_eq!(uri("/keep/x", None), "http://svc/v2/keep/x");
        assert_eq!(uri("/other/x", None), "http://svc/base/other/x");
    }
}
