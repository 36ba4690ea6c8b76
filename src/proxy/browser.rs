//! What the proxy does for browsers (docs/http-api.md §7.4): the gateway's token cookies never
//! reach an upstream (unless the route forwards credentials), a cookie-authenticated WebSocket
//! upgrade must come from an allowed `Origin` (cross-site WebSocket hijacking), a browser
//! refused for lack of a token on a `login_redirect` route goes to the sign-in page, and on a
//! `cors = false` route a preflight passes as a public request for the upstream to answer.
//!
//! Built once from `[auth.cookies]`, `[auth] prefix` and `[cors]`, which need a restart to
//! change; the per-route switches come from the route table of the request.

use http::header::{HeaderValue, ACCESS_CONTROL_REQUEST_METHOD, LOCATION, ORIGIN};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::router::Route;
use crate::auth::cookies::strip_gateway_cookies;
use crate::auth::identity::{Identity, Presentation};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::origin::{request_host, Origin};
use crate::server::accept::wants_html;
use crate::server::response::{full, Body};

/// What `rd` keeps unescaped: RFC 3986 unreserved characters.
const RD_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The browser rules of the proxy.
#[derive(Debug, Clone)]
pub struct BrowserRules {
    /// Token cookies are in use (`[auth.cookies] enabled`).
    cookies: bool,
    /// `{prefix}/login`, the sign-in page.
    login_page: String,
    /// `[cors] allowed_origins` (explicit ones: `"*"` never vouches for a WebSocket).
    ws_origins: Vec<Origin>,
}

impl BrowserRules {
    /// The rules of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            cookies: config.auth.cookies.enabled,
            login_page: format!("{}/login", config.auth.prefix),
            ws_origins: config.cors.allowed_origins.clone(),
        }
    }

    /// Takes the gateway's cookies out of the request (cookies enabled, and the route does
    /// not forward credentials): tokens never land in an upstream's logs.
    pub fn strip_cookies(&self, route: &Route, headers: &mut HeaderMap) {
        if self.cookies && !route.config().forward_authorization {
            strip_gateway_cookies(headers);
        }
    }

    /// A WebSocket upgrade authenticated by cookie must carry an `Origin` that is in `[cors]
    /// allowed_origins` or names this host (host and port of `Host`, scheme ignored).
    pub fn check_websocket_origin<B>(
        &self,
        req: &Request<B>,
        identity: Option<&Identity>,
    ) -> Result<(), ApiError> {
        if identity.is_none_or(|i| i.presentation != Presentation::Cookie) {
            return Ok(());
        }
        let origin = req
            .headers()
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(Origin::parse);
        let host = request_host(req.uri(), req.headers());
        let allowed = origin
            .is_some_and(|o| self.ws_origins.contains(&o) || host.is_some_and(|h| o.is_host(h)));
        if allowed {
            Ok(())
        } else {
            tracing::warn!("cookie-authenticated WebSocket from a foreign origin refused");
            Err(ApiError::Forbidden)
        }
    }

    /// The `302` to the sign-in page that replaces `refusal` on a `login_redirect` route: a
    /// `GET` refused with 401 from a client that wants HTML. `None` otherwise.
    pub fn login_redirect<B>(
        &self,
        route: &Route,
        req: &Request<B>,
        refusal: &ApiError,
    ) -> Option<Response<Body>> {
        let applies = route.config().login_redirect
            && *req.method() == Method::GET
            && refusal.status() == StatusCode::UNAUTHORIZED
            && wants_html(req.headers());
        if !applies {
            return None;
        }
        let original = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let target = format!(
            "{}?rd={}",
            self.login_page,
            utf8_percent_encode(original, RD_ESCAPE)
        );
        let location = HeaderValue::from_str(&target).ok()?;
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::FOUND;
        res.headers_mut().insert(LOCATION, location);
        // Still the refusal it replaces, for the access log and the metrics.
        res.extensions_mut().insert(ErrorCode(refusal.code()));
        Some(res)
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`. On a
/// `cors = false` route it is forwarded as a public request.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}
