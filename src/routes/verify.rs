//! The forward-auth decision endpoint, `{auth prefix}/verify` (any method, any sub-path), for a
//! proxy already in front: nginx `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`,
//! Envoy `ext_authz` (docs/http-api.md §7.3). It answers "may this request pass?" instead of
//! forwarding.
//!
//! One line per decision, in this order:
//! 1. the TCP peer must be in `[forward_auth] allowed_peers` (never a forwarded address);
//! 2. the original method and URI come from the one configured source, never another
//!    (nginx's subrequest copies every client header, so in nginx mode a client-sent
//!    `X-Forwarded-Uri` must never be read);
//! 3. the URI's path is normalised exactly as a proxied request's (`path::normalize`; the host
//!    of an absolute URI is ignored) and matched in the same route table, a path no route
//!    matches getting `[forward_auth] default_auth`;
//! 4. [`policy::authorize`] decides with the verify request's own credentials, as the proxy
//!    does: memory only, revocations included.
//!
//! Allowed: `200`, empty body, every identity header present (empty when anonymous) and
//! `X-Auth-Request-Id`. Refused: only 401, 403 or 503, always §1 JSON; what would be a 400 or a
//! 405 elsewhere is a 403 that keeps its code, since front proxies treat other statuses as
//! their own failure.
//!
//! The route table and the identity headers come from the reloadable table of the request
//! ([`DecisionTable`]), which the app adapts from the proxy's: this module imports nothing of
//! the proxy.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use ipnet::IpNet;

use crate::auth::authenticator::Authenticator;
use crate::auth::identity::Identity;
use crate::auth::policy::{self, RoutePolicy};
use crate::clock::Clock;
use crate::config::{ForwardAuthConfig, ForwardAuthSource};
use crate::error::ApiError;
use crate::path::normalize;
use crate::server::response::{close_connection, full, Body};

/// The endpoint's path below the auth prefix.
pub const VERIFY_PATH: &str = "/verify";

/// Headers of an allowing answer: five identity headers, the request id twice, Cache-Control,
/// and Connection or the framing hyper adds.
const RESPONSE_HEADERS: usize = 12;

/// `X-Auth-Request-Id` on an allowed decision: the request id, for the front proxy's logs.
const X_AUTH_REQUEST_ID: HeaderName = HeaderName::from_static("x-auth-request-id");

/// What a decision reads from the route table in force for its request.
pub trait DecisionTable {
    /// The policy of the route that `path` (normalised) matches, routes without an upstream
    /// included; `None` when no route matches.
    fn policy_for(&self, path: &str) -> Option<&RoutePolicy>;

    /// Sets every identity header on `headers`: `identity`'s values exactly as a proxied
    /// request would carry them, or all present and empty when `None` (anonymous).
    fn set_identity_headers(
        &self,
        headers: &mut HeaderMap,
        identity: Option<&Identity>,
    ) -> Result<(), ApiError>;
}

/// The decision endpoint: built once when `[forward_auth] enabled = true`.
pub struct ForwardAuth {
    auth: std::sync::Arc<Authenticator>,
    source: ForwardAuthSource,
    allowed_peers: Vec<IpNet>,
    /// The policy of a path no route matches (`default_auth`).
    unmatched: RoutePolicy,
    clock: Clock,
}

/// The original request as the front proxy describes it.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Normalised path, query and host left out.
    path: String,
}

impl ForwardAuth {
    /// The endpoint as `config` sets it, deciding with `auth`.
    pub fn new(
        auth: std::sync::Arc<Authenticator>,
        config: &ForwardAuthConfig,
        clock: Clock,
    ) -> Self {
        Self {
            auth,
            source: config.source,
            allowed_peers: config.allowed_peers.clone(),
            unmatched: RoutePolicy::unmatched(config.default_auth),
            clock,
        }
    }

    /// Decides on `req`, a verify request from TCP peer `peer` whose path below the verify
    /// path is `own_path` (raw, as sent: in `path` mode it is the original path), with the
    /// route table `table`. Every refusal is already 401, 403 or 503.
    pub fn verify<B: http_body::Body>(
        &self,
        req: &Request<B>,
        peer: IpAddr,
        request_id: &HeaderValue,
        own_path: &str,
        table: &dyn DecisionTable,
    ) -> Result<Response<Body>, ApiError> {
        let identity = self
            .decide(req, peer, own_path, table)
            .map_err(as_decision)?;
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::OK;
        let headers = res.headers_mut();
        // Room for what is added here and by the public service, so the map never grows.
        headers.reserve(RESPONSE_HEADERS);
        table
            .set_identity_headers(headers, identity.as_ref())
            .map_err(as_decision)?;
        headers.insert(X_AUTH_REQUEST_ID, request_id.clone());
        // A decision is about one request and one credential: never reuse it.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if req.version() < http::Version::HTTP_2 && !req.body().is_end_stream() {
            // The body (front proxies send none) was not read: the connection cannot go on.
            close_connection(&mut res);
        }
        Ok(res)
    }

    /// Steps 1 to 4 of the module docs; the identity the original request speaks for.
    fn decide<B>(
        &self,
        req: &Request<B>,
        peer: IpAddr,
        own_path: &str,
        table: &dyn DecisionTable,
    ) -> Result<Option<Identity>, ApiError> {
        let peer = peer.to_canonical();
        if !self.allowed_peers.iter().any(|net| net.contains(&peer)) {
            return Err(ApiError::PeerNotAllowed);
        }
        let original = self.original(req, own_path)?;
        let policy = table.policy_for(&original.path).unwrap_or(&self.unmatched);
        let headers = req.headers();
        Ok(policy::authorize(
            &self.auth,
            policy,
            &original.method,
            headers,
            &self.clock,
        )?)
    }

    /// The original method and normalised path, from the configured source only.
    fn original<B>(&self, req: &Request<B>, own_path: &str) -> Result<Original, ApiError> {
        let (method, path) = original_request(self.source, req.method(), req.headers(), own_path)?;
        Ok(Original { method, path })
    }
}

/// The forward-auth header reader: the original request's method and normalised path as
/// `source` says to read them — `X-Forwarded-Method`/`-Uri`, `X-Original-Method`/`-URI`, or
/// the decision request's own `method` and the path after the endpoint (`own_path`). Nothing
/// falls through to another source; a missing, repeated or malformed value is 400.
pub fn original_request(
    source: ForwardAuthSource,
    method: &Method,
    headers: &HeaderMap,
    own_path: &str,
) -> Result<(Method, String), ApiError> {
    let (method, path) = match source {
        ForwardAuthSource::XForwarded => (
            header_method(headers, "x-forwarded-method")?,
            header_uri_path(headers, "x-forwarded-uri")?,
        ),
        ForwardAuthSource::XOriginal => (
            header_method(headers, "x-original-method")?,
            header_uri_path(headers, "x-original-uri")?,
        ),
        ForwardAuthSource::Path => (method.clone(), own_path),
    };
    let path = normalize(path)
        .map_err(|e| ApiError::InvalidRequest(format!("bad original path: {e}").into()))?;
    Ok((method, path))
}

/// The one value of header `name`, as text; missing, repeated or not visible ASCII is a bad
/// request (two values would leave the decision to whichever one a reader picks).
fn single_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .map_err(|_| ApiError::InvalidRequest(format!("{name} is not visible ASCII").into())),
        (None, _) => Err(ApiError::InvalidRequest(
            format!("{name} is required: the front proxy must send it").into(),
        )),
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest(
            format!("{name} is sent more than once").into(),
        )),
    }
}

/// The original method from header `name`.
fn header_method(headers: &HeaderMap, name: &'static str) -> Result<Method, ApiError> {
    let text = single_header(headers, name)?;
    Method::from_bytes(text.as_bytes())
        .map_err(|_| ApiError::InvalidRequest(format!("{name} is not an HTTP method").into()))
}

/// The path of the original URI in header `name`: an origin-form target (`/api/x?y=1`) or an
/// absolute URI, whose host is ignored. The query is not part of the decision. Nothing is
/// decoded here: [`normalize`] sees the path exactly as sent.
fn header_uri_path<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    let uri = single_header(headers, name)?;
    let path_and_query = if uri.starts_with('/') {
        uri
    } else {
        absolute_uri_path(uri)
            .ok_or_else(|| ApiError::InvalidRequest(format!("{name} is not a URI").into()))?
    };
    Ok(path_and_query
        .split_once('?')
        .map_or(path_and_query, |(path, _)| path))
}

/// What follows the authority of an absolute URI (`scheme://authority/path?query`): the path
/// and query, `/` when there is none. `None` when `uri` is not absolute.
fn absolute_uri_path(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest.get(i..),
        _ => Some("/"),
    }
}

/// A refusal as the decision endpoint may answer it: 401, 403 and 503 stay; what would be 400
/// or 405 becomes 403 with its code; anything else (the gateway's own failure) is 503.
fn as_decision(e: ApiError) -> ApiError {
    match e.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE => e,
        StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::AsForbidden(Box::new(e))
        }
        other => {
            tracing::error!(status = %other, code = e.code(), "forward-auth decision failed");
            ApiError::Unavailable {
                retry_after: 1,
                close: false,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn origin_form_and_absolute_uris_give_their_path_without_query_or_host() {
        let path = |uri: &str| {
            header_uri_path(&headers(&[("x-original-uri", uri)]), "x-original-uri")
                .map(str::to_owned)
        };
        assert_eq!(path("/api/x?y=1").unwrap(), "/api/x");
        assert_eq!(path("/a%2e%2e/b").unwrap(), "/a%2e%2e/b");
        assert_eq!(path("https://evil.example/api/x?q").unwrap(), "/api/x");
        assert_eq!(path("http://h:8080").unwrap(), "/");
        assert_eq!(path("http://h?x=/admin").unwrap(), "/");
        assert!(path("api/x").is_err());
        assert!(path("").is_err());
        assert!(path("1http://h/x").is_err());
    }

    #[test]
    fn a_missing_or_repeated_header_is_a_bad_request() {
        let missing = header_method(&HeaderMap::new(), "x-forwarded-method").unwrap_err();
        assert_eq!(missing.code(), "invalid_request");
        let twice = headers(&[("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")]);
        assert!(header_uri_path(&twice, "x-forwarded-uri").is_err());
        assert!(header_method(&headers(&[("x-m", "G E T")]), "x-m").is_err());
        assert_eq!(
            header_method(&headers(&[("x-m", "PROPFIND")]), "x-m").unwrap(),
            Method::from_bytes(b"PROPFIND").unwrap()
        );
    }

    #[test]
    fn refusals_are_kept_within_401_403_and_503() {
        let kept = as_decision(ApiError::MissingToken);
        assert_eq!(kept.status(), StatusCode::UNAUTHORIZED);
        let bad = as_decision(ApiError::InvalidRequest("x".into()));
        assert_eq!(
            (bad.status(), bad.code()),
            (StatusCode::FORBIDDEN, "invalid_request")
        );
        let method = as_decision(ApiError::MethodNotAllowed {
            allow: HeaderValue::from_static("GET"),
        });
        assert_eq!(
            (method.status(), method.code()),
            (StatusCode::FORBIDDEN, "method_not_allowed")
        );
        let res = method.into_response();
        assert!(res.headers().get(http::header::ALLOW).is_none());
        let internal = as_decision(ApiError::Internal);
        assert_eq!(internal.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
