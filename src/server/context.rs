//! What a handler knows about its request besides the request itself ([`RequestContext`]),
//! and what the access log and metrics name it by ([`RouteLabel`]).

use std::net::IpAddr;

use http::header::HeaderValue;

use super::ConnInfo;
pub use crate::telemetry::metrics::RouteLabel;

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
