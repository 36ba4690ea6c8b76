//! Proxying: everything between a request outside the auth prefix and the upstream.
//!
//! `router` is the compiled route table and `table` everything a reload swaps with it;
//! `headers` rewrites request and response headers in the order docs/http-api.md §6 fixes;
//! `client` holds the pooled upstream clients (HTTP/1.1, h2c, ALPN), and `pool` the plain
//! lists of kept-alive HTTP/1.1 connections to `http://` upstreams; `forward` sends the
//! request and streams the answer back through `body` (timeouts, client faults, trailers);
//! `websocket` tunnels upgraded connections; `checks` refuses request shapes before any token
//! is read; `grpc` recognises the calls whose refusals are answered the gRPC way; `browser`
//! holds the rules for browsers (cookies kept from upstreams, WebSocket origins,
//! `login_redirect`, `cors = false` preflights). [`Proxy::handle`] is the line between them:
//! route, check, authenticate
//! (`auth::authenticator`), decide (`auth::policy`), forward.
//!
//! The proxy shares the authenticator and the token service with the account endpoints
//! (`routes/`) and imports nothing of theirs.

mod body;
pub mod browser;
pub mod checks;
pub mod client;
pub mod forward;
pub mod grpc;
pub mod headers;
pub mod pool;
pub mod router;
pub mod table;
mod websocket;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use crate::auth::authenticator::Authenticator;
use crate::auth::identity::Identity;
use crate::auth::policy;
use crate::auth::tokens::TokenService;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::server::context::{RequestContext, RouteLabel};
use crate::server::response::Body;
use crate::telemetry;
use browser::{is_preflight, BrowserRules};
use forward::forward;
use headers::is_websocket_upgrade;
use router::Route;
use table::{ProxyTable, TableSlot};
use websocket::Tunnels;

/// The proxy: built once; its [`ProxyTable`] is swapped on reload.
pub struct Proxy {
    auth: Arc<Authenticator>,
    table: Arc<TableSlot>,
    tunnels: Tunnels,
    browser: BrowserRules,
    clock: Clock,
}

impl Proxy {
    /// A proxy authenticating with `auth`, routing by the table in `table`, treating
    /// browsers by `browser`; tunnels allow the token service's leeway and close when
    /// `shutdown` fires.
    pub fn new(
        auth: Arc<Authenticator>,
        tokens: &TokenService,
        table: Arc<TableSlot>,
        browser: BrowserRules,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Self {
        let tunnels = Tunnels::new(auth.clone(), tokens.leeway(), shutdown, clock.clone());
        Self {
            auth,
            table,
            tunnels,
            browser,
            clock,
        }
    }

    /// The number of WebSocket tunnels open now, shared (for `/metrics`).
    pub fn open_tunnels(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.tunnels.open_count()
    }

    /// The table as of now: take it once per request, so a reload affects later requests only.
    pub fn table(&self) -> Arc<ProxyTable> {
        self.table.load_full()
    }

    /// Routes, checks and forwards one request, with `table` (from [`Proxy::table`]).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ctx: RequestContext,
        table: &ProxyTable,
    ) -> (Result<Response<Body>, ApiError>, RouteLabel) {
        let Some(route) = table.router.route_for(&ctx.path) else {
            return (Err(ApiError::NotFound), RouteLabel::Static("-"));
        };
        let label = table.label(route);
        telemetry::record_route(label.as_str());
        if let Err(e) = checks::check_transfer_encoding(req.headers()) {
            return (Err(e), label);
        }
        if let Some(res) = checks::options_for_the_gateway(route, &req) {
            return (Ok(res), label);
        }
        if let Err(e) = checks::check_query(route, req.uri().query()) {
            return (Err(e), label);
        }
        // Asked once, for the policy and for the forwarding, before the hop-by-hop fields that
        // say it are stripped.
        let websocket = route.config().websocket && is_websocket_upgrade(req.headers());
        let result = match self.authorize(route, &req, websocket) {
            Ok(identity) => {
                let mut req = req;
                self.browser.strip_cookies(route, req.headers_mut());
                forward(&self.tunnels, table, route, req, &ctx, identity, websocket).await
            }
            Err(e) => match self.browser.login_redirect(route, &req, &e) {
                Some(redirect) => Ok(redirect),
                None => Err(e),
            },
        };
        (result, label)
    }

    /// Authentication, then the route's policy (§7.2 order: every 401 and 403 before 405).
    /// Public routes never read `Authorization`; on optional ones no credential is anonymous
    /// and a bad one is refused as anywhere else. On a `cors = false` route a preflight is a
    /// public request (its upstream answers it). A cookie-authenticated WebSocket upgrade
    /// (`websocket`: the route allows them and the request asks for one) must come from an
    /// allowed `Origin`.
    fn authorize<B>(
        &self,
        route: &Route,
        req: &Request<B>,
        websocket: bool,
    ) -> Result<Option<Identity>, ApiError> {
        let (method, headers) = (req.method(), req.headers());
        let policy = route.policy();
        if !route.config().cors && is_preflight(method, headers) {
            if !policy.allows(method) {
                return Err(ApiError::MethodNotAllowed {
                    allow: policy.allow_header(),
                });
            }
            return Ok(None);
        }
        let identity = policy::authorize(&self.auth, policy, method, headers, &self.clock)?;
        if websocket {
            self.browser
                .check_websocket_origin(req, identity.as_ref())?;
        }
        Ok(identity)
    }
}
