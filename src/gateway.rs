//! The public listener's service: one straight line per request.
//!
//! The outer step ([`Gateway::handle`]) counts the request for draining, keeps or makes the
//! request id, turns errors into responses and writes the access line. The inner step
//! ([`Gateway::dispatch`]) normalises the path once and hands the request either to the
//! gateway's own account endpoints (under the auth prefix) or to the proxy.

use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::{Body as _, Incoming};

use crate::app::AppState;
use crate::body::Body;
use crate::error::ApiError;
use crate::proxy::headers::{request_id, X_REQUEST_ID};
use crate::proxy::path::{normalize, under_prefix};
use crate::server::{ConnInfo, Handler};
use crate::telemetry::{self, AccessRecord};

/// What the access line names as the request's route.
#[derive(Debug, Clone)]
pub enum RouteLabel {
    /// A fixed name: an auth endpoint, or `-` when nothing matched.
    Static(&'static str),
    /// A proxied route's prefix.
    Route(Arc<str>),
}

impl RouteLabel {
    /// The label as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Route(r) => r,
        }
    }
}

/// Everything a handler needs to know about the request besides the request itself.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The connection it came on.
    pub conn: ConnInfo,
    /// Its normalised path (dot segments removed, unreserved characters decoded, `//` merged).
    pub path: String,
    /// The request id returned to the client and sent upstream.
    pub request_id: HeaderValue,
}

/// The public service.
pub struct Gateway {
    state: Arc<AppState>,
}

impl Gateway {
    /// A gateway over the shared state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        request_id: HeaderValue,
    ) -> (Result<Response<Body>, ApiError>, RouteLabel) {
        if let Err(e) = check_host(&req) {
            return (Err(e), RouteLabel::Static("-"));
        }
        let path = match normalize(req.uri().path()) {
            Ok(p) => p,
            Err(e) => {
                let err = ApiError::InvalidRequest(format!("bad path: {e}").into());
                return (Err(err), RouteLabel::Static("-"));
            }
        };
        let ctx = RequestContext {
            conn,
            path,
            request_id,
        };
        let prefix = self.state.config.auth.prefix.as_str();
        if let Some(rest) = under_prefix(&ctx.path, prefix) {
            let (result, name) = crate::routes::handle(&self.state, req, &ctx, rest).await;
            return (result, RouteLabel::Static(name));
        }
        crate::proxy::handle(&self.state, req, ctx).await
    }
}

impl Handler for Gateway {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.state.drain.enter();
        let rid = request_id(req.headers());
        let method = req.method().clone();
        let uri = req.uri().clone();
        // HTTP/2 resets just the stream when a body is left unread; HTTP/1 loses the connection.
        let has_body = req.version() < http::Version::HTTP_2 && !req.body().is_end_stream();
        let (result, route) = if self.state.drain.is_draining() {
            let err = ApiError::Unavailable {
                retry_after: 5,
                close: true,
            };
            (Err(err), RouteLabel::Static("-"))
        } else {
            self.dispatch(req, conn, rid.clone()).await
        };
        let latency = started.elapsed();
        let (mut res, error) = match result {
            Ok(res) => (res, None),
            Err(e) => (e.clone().into_response(), Some(e)),
        };
        if error.is_some() && has_body {
            // The body was not read: say that the connection closes.
            close_connection(&mut res);
        }
        res.headers_mut().insert(X_REQUEST_ID, rid.clone());
        self.state
            .metrics
            .record(&route, res.status(), latency, error.as_ref());
        telemetry::access(&AccessRecord {
            method: &method,
            path: uri.path(),
            route: route.as_str(),
            status: res.status(),
            latency,
            request_id: rid.to_str().unwrap_or("-"),
        });
        res
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request must carry exactly one `Host` (hyper does not check).
/// Two differing hosts are a parser differential waiting to happen; none is malformed.
fn check_host<B>(req: &Request<B>) -> Result<(), ApiError> {
    if req.version() != http::Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), None) => Ok(()),
        _ => Err(ApiError::InvalidRequest(
            "an HTTP/1.1 request needs exactly one Host header".into(),
        )),
    }
}

/// Marks `res` as the last answer on its HTTP/1 connection. Used when the request body is
/// left unread: hyper then closes the connection, and may decide so only after writing a
/// head without `Connection: close`, so a client reusing the connection would fail its next
/// request. (HTTP/2 drops the header and resets just the stream.)
pub fn close_connection(res: &mut Response<Body>) {
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
}
