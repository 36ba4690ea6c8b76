//! What a handler knows about its request besides the request itself ([`RequestContext`]),
//! and what the access log and metrics name it by ([`RouteLabel`]).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::HeaderValue;

use super::ConnInfo;
use crate::telemetry::metrics::{Label, RouteName};

/// What the access line and the metrics name a request's route by.
#[derive(Debug, Clone)]
pub enum RouteLabel {
    /// A fixed name: an auth endpoint, or `-` when nothing matched.
    Static(&'static str),
    /// A proxied route's prefix (with its metric handles).
    Route(Arc<RouteName>),
}

impl RouteLabel {
    /// The label as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Route(r) => r.as_str(),
        }
    }

    /// True for an endpoint under the auth prefix (a fixed name other than `-`): the gateway's
    /// own resources, as opposed to a route, no route, or a request refused before routing.
    pub fn is_endpoint(&self) -> bool {
        matches!(self, Self::Static(name) if *name != "-")
    }

    /// The label as a metrics label value (no allocation: a shared string is shared).
    pub fn metric(&self) -> Label {
        match self {
            Self::Static(s) => Label::Fixed(s),
            Self::Route(r) => Label::Route(r.clone()),
        }
    }
}

/// Everything a handler needs to know about the request besides the request itself, worked
/// out once by the public service.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The connection it came on.
    pub conn: ConnInfo,
    /// Its normalised path (dot segments removed, unreserved characters decoded, `//` merged).
    pub path: String,
    /// The request id returned to the client and sent upstream.
    pub request_id: HeaderValue,
    /// The client's address: the peer, or the `X-Forwarded-For` entry a trusted proxy vouches
    /// for (`[proxy] trusted_proxies` as of this request). Login limiting counts against it.
    pub client: IpAddr,
}
