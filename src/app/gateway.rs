//! The public listener's service: one straight line per request, above both the account
//! endpoints and the proxy.
//!
//! The outer step ([`Gateway::handle`]) counts the request for draining, keeps or makes the
//! request id, works out the client address from the current `[proxy] trusted_proxies`, and
//! opens the request span; inside it, `respond` turns errors into responses, records metrics
//! and writes the access line. The inner step (`dispatch`) checks the head's limits (`414`,
//! `431`) and `Host`, normalises the path once, answers CORS preflights (`cors`) and hands the
//! request either to the account endpoints (under the auth prefix) or to the proxy. Every
//! answer gets its CORS headers on the way out, except on routes with `cors = false`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::{Body as _, Incoming};
use tracing::Instrument;

use super::cors::Cors;
use crate::auth::limiter::client_ip;
use crate::config::ErrorFormat;
use crate::error::{ApiError, ErrorCode};
use crate::origin::is_valid_host;
use crate::path::{normalize, under_prefix};
use crate::proxy::grpc::is_grpc_request;
use crate::proxy::table::ProxyTable;
use crate::proxy::Proxy;
use crate::routes::{Endpoints, ForwardAuth, VERIFY_PATH};
use crate::server::context::{RequestContext, RouteLabel};
use crate::server::drain::Drain;
use crate::server::limits::HeadLimits;
use crate::server::request_id::{request_id, X_REQUEST_ID};
use crate::server::response::{close_connection, Body};
use crate::server::{ConnInfo, Handler};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{self, AccessRecord};

/// The access-log and metrics label of forward-auth decisions.
const VERIFY_LABEL: &str = "auth:verify";

/// The public service.
pub struct Gateway {
    endpoints: Endpoints,
    proxy: Proxy,
    auth_prefix: String,
    /// `[cors]`; `None` while CORS is off.
    cors: Option<Cors>,
    /// The decision endpoint and its path (`{auth_prefix}/verify`), when enabled.
    forward_auth: Option<(ForwardAuth, String)>,
    drain: Arc<Drain>,
    metrics: Arc<Metrics>,
    limits: HeadLimits,
    /// How token errors are answered (`[compat] error_format`).
    error_format: ErrorFormat,
}

/// What dispatch hands back to the outer step.
struct Dispatched {
    result: Result<Response<Body>, ApiError>,
    route: RouteLabel,
    /// Whether the answer gets CORS headers (not on `cors = false` routes, not on a
    /// preflight answer, which has its own).
    cors: bool,
}

impl Dispatched {
    fn new(result: Result<Response<Body>, ApiError>, route: RouteLabel) -> Self {
        Self {
            result,
            route,
            cors: true,
        }
    }
}

impl Gateway {
    /// Serves `auth_prefix` with `endpoints` (and its verify path with `forward_auth`, when
    /// enabled) and everything else with `proxy`, applying `cors`.
    pub fn new(
        endpoints: Endpoints,
        proxy: Proxy,
        auth_prefix: String,
        cors: Option<Cors>,
        forward_auth: Option<ForwardAuth>,
        drain: Arc<Drain>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let forward_auth = forward_auth.map(|f| (f, format!("{auth_prefix}{VERIFY_PATH}")));
        Self {
            endpoints,
            proxy,
            auth_prefix,
            cors,
            forward_auth,
            drain,
            metrics,
            limits: HeadLimits {
                max_header_bytes: usize::MAX,
                max_headers: usize::MAX,
            },
            error_format: ErrorFormat::Authgate,
        }
    }

    /// Answers token errors in `format` (docs/http-api.md §7.5); decisions keep §1.
    pub fn with_error_format(mut self, format: ErrorFormat) -> Self {
        self.error_format = format;
        self
    }

    /// Checks every request's head against `limits` first (`414`, `431`).
    pub fn with_limits(mut self, limits: HeadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Everything after the request id and the client address are known, inside the request
    /// span: the drain check, dispatch, the error answer, metrics and the access line.
    async fn respond(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        known: Known,
    ) -> Response<Body> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        // HTTP/2 resets just the stream when a body is left unread; HTTP/1 loses the connection.
        let has_body = req.version() < http::Version::HTTP_2 && !req.body().is_end_stream();
        let grpc = is_grpc_request(req.version(), req.headers());
        let rid = known.request_id.clone();
        let started = known.started;
        let cors_origin = self
            .cors
            .as_ref()
            .and_then(|c| c.allowed_origin(req.headers()));
        let Dispatched {
            result,
            route,
            cors,
        } = if self.drain.is_draining() {
            let err = ApiError::Unavailable {
                retry_after: 5,
                close: true,
            };
            Dispatched::new(Err(err), RouteLabel::Static("-"))
        } else {
            self.dispatch(req, conn, known).await
        };
        let latency = started.elapsed();
        let mut res = match result {
            Ok(res) => res,
            // gRPC calls refused on the proxied side get gRPC's answer (docs/http-api.md §7.1).
            Err(e) if grpc && !route.is_endpoint() => e.into_grpc_response(),
            Err(e)
                if self.error_format == ErrorFormat::FlaskJwtExtended
                    && route.as_str() != VERIFY_LABEL =>
            {
                e.into_flask_response()
            }
            Err(e) => e.into_response(),
        };
        if let (Some(rules), true) = (&self.cors, cors) {
            rules.decorate(res.headers_mut(), cors_origin);
        }
        // Set by every error answer, however rendered (`ErrorCode`).
        let error_code = res.extensions().get::<ErrorCode>().map(|c| c.0);
        if error_code.is_some() && has_body {
            // The body was not read: say that the connection closes.
            close_connection(&mut res);
        }
        res.headers_mut().insert(X_REQUEST_ID, rid);
        self.metrics
            .record(&route, res.status(), latency, error_code);
        self.metrics
            .record_account(route.as_str(), &method, res.status(), error_code);
        telemetry::access(&AccessRecord {
            method: &method,
            path: uri.path(),
            route: route.as_str(),
            status: res.status(),
            latency,
            error: error_code,
        });
        res
    }

    async fn dispatch(&self, req: Request<Incoming>, conn: ConnInfo, known: Known) -> Dispatched {
        if let Err(e) = self.limits.check(&req) {
            return Dispatched::new(Err(e), RouteLabel::Static("-"));
        }
        // Matched on the path as sent, before normalisation and the Host check: a decision
        // request's own path is the original path in `path` mode, and a bad one must be
        // refused as a decision (403), never as this gateway's 400.
        if let Some((forward_auth, verify_path)) = &self.forward_auth {
            if let Some(own_path) = under_prefix(req.uri().path(), verify_path) {
                let table = self.proxy.table();
                let peer = conn.peer.ip();
                let result = forward_auth.verify(&req, peer, &known.request_id, own_path, &*table);
                self.metrics
                    .record_decision(result.as_ref().err().map(ApiError::code));
                // CORS never applies to decisions (docs/http-api.md §7.3).
                return Dispatched {
                    result,
                    route: RouteLabel::Static(VERIFY_LABEL),
                    cors: false,
                };
            }
        }
        if let Err(e) = check_host(&req) {
            return Dispatched::new(Err(e), RouteLabel::Static("-"));
        }
        let path = match normalize(req.uri().path()) {
            Ok(p) => p,
            Err(e) => {
                let err = ApiError::InvalidRequest(format!("bad path: {e}").into());
                return Dispatched::new(Err(err), RouteLabel::Static("-"));
            }
        };
        let under_auth = under_prefix(&path, &self.auth_prefix).is_some();
        let cors = self.cors.as_ref().filter(|_| {
            // A route with `cors = false` leaves CORS to its upstream, preflights included.
            under_auth
                || known
                    .table
                    .router
                    .route_for(&path)
                    .is_none_or(|r| r.config().cors)
        });
        if let Some(answer) = cors.and_then(|c| c.preflight(req.method(), req.headers())) {
            return Dispatched {
                result: answer,
                route: RouteLabel::Static("cors:preflight"),
                cors: false,
            };
        }
        let cors = cors.is_some();
        let ctx = RequestContext {
            conn,
            path,
            request_id: known.request_id,
            client: known.client,
        };
        if let Some(rest) = under_prefix(&ctx.path, &self.auth_prefix) {
            let (result, name) = self.endpoints.handle(req, &ctx, rest).await;
            return Dispatched {
                result,
                route: RouteLabel::Static(name),
                cors,
            };
        }
        let (result, route) = self.proxy.handle(req, ctx, &known.table).await;
        Dispatched {
            result,
            route,
            cors,
        }
    }
}

/// What the public service works out before anything else, once per request.
struct Known {
    started: Instant,
    request_id: HeaderValue,
    /// The client address, from the `[proxy] trusted_proxies` of `table`.
    client: IpAddr,
    /// One snapshot of the reloadable settings for the whole request.
    table: Arc<ProxyTable>,
}

impl Handler for Gateway {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.drain.enter();
        let request_id = request_id(req.headers());
        let table = self.proxy.table();
        let client = client_ip(conn.peer.ip(), req.headers(), table.trusted_proxies());
        // A request id is visible ASCII (kept from the client only if so, else generated).
        let span = telemetry::request_span(request_id.to_str().unwrap_or("-"), client);
        let known = Known {
            started,
            request_id,
            client,
            table,
        };
        self.respond(req, conn, known).instrument(span).await
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one `Host` (hyper does not check).
/// Two differing hosts are a parser differential waiting to happen; none is malformed. Any
/// version: a `Host` or authority that is not a plain `host[:port]` (`gw, evil`, `gw/../x`,
/// user information) is refused, as upstreams and `X-Forwarded-Host` readers would each
/// read such a value their own way.
fn check_host<B>(req: &Request<B>) -> Result<(), ApiError> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if req.version() == http::Version::HTTP_11 && (first.is_none() || second.is_some()) {
        return Err(ApiError::InvalidRequest(
            "an HTTP/1.1 request needs exactly one Host header".into(),
        ));
    }
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    let all_valid = first
        .into_iter()
        .chain(second)
        .map(http::HeaderValue::as_bytes)
        .chain(authority)
        .all(is_valid_host);
    if !all_valid {
        return Err(ApiError::InvalidRequest(
            "the request's host is not a valid host[:port]".into(),
        ));
    }
    Ok(())
}
