//! The response body type every handler answers with, and small helpers on responses.

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION};
use http::Response;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Any error a body can fail with while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response body of every handler: buffered for the gateway's own answers, streamed for
/// proxied ones.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Marks `res` as the last answer on its HTTP/1 connection. Used when the request body is
/// left unread: hyper then closes the connection, and may decide so only after writing a
/// head without `Connection: close`, so a client reusing the connection would fail its next
/// request. (HTTP/2 drops the header and resets just the stream.)
pub fn close_connection(res: &mut Response<Body>) {
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}
