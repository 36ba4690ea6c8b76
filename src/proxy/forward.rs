//! Forwarding a request that passed its route's policy: the upstream request is built from the
//! client's (headers rewritten in §6 order), sent on the route's client within the route's
//! timeout, and the response streamed back (docs/http-api.md §4, §6, §7.1).
//!
//! Versions: the upstream request goes out in the route's protocol (HTTP/1.1, h2c, or what
//! ALPN picks; an upgrade always on HTTP/1.1), and the client's answer carries the gateway's
//! own version — HTTP/1.1 to HTTP/1.x clients, HTTP/2 to HTTP/2 — never the upstream's.
//! Failures: the upstream's are 502/504; the client's own body failing (bad framing, a stall)
//! is 400/408 and never counted against the upstream.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use http::header::{
    HeaderValue, AUTHORIZATION, CONTENT_LENGTH, EXPECT, HOST, TRAILER, TRANSFER_ENCODING,
};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body as _, Incoming};
use tokio::time::{Instant, Sleep};

use super::body::{ClientFault, ContinueGate, DownloadBody, Phase, UploadBody, UploadWatch};
use super::client::Upstream;
use super::headers::{
    accepts_trailers, append_via, clean_response, client_host, decrement_max_forwards,
    join_cookies, set_forwarding, set_te_trailers, set_websocket_upgrade, strip_hop_by_hop,
    strip_routing_overrides, Forwarding,
};
use super::router::Route;
use super::table::ProxyTable;
use super::websocket::Tunnels;
use crate::auth::identity::Identity;
use crate::config::UpstreamProtocol;
use crate::error::ApiError;
use crate::server::connection::SendTimeout;
use crate::server::context::RequestContext;
use crate::server::request_id::X_REQUEST_ID;
use crate::server::response::Body;
use crate::server::reusable_timer::ReusableTimer;
use crate::server::upgrade::ClientUpgrade;

/// Sends the request upstream and returns the upstream's response, streamed. `websocket`: the
/// route allows WebSocket upgrades and the request asks for one (`super::headers::is_websocket_upgrade`).
pub async fn forward(
    tunnels: &Tunnels,
    table: &ProxyTable,
    route: &Route,
    mut req: Request<Incoming>,
    ctx: &RequestContext,
    identity: Option<Identity>,
    websocket: bool,
) -> Result<Response<Body>, ApiError> {
    let client_version = req.version();
    let client_upgrade = websocket.then(|| ClientUpgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let host = client_host(&parts.uri, &parts.headers);
    let client = table.clients.for_route(route, websocket);
    let uri = upstream_uri(&client, route, ctx, parts.uri.query(), host.as_ref())?;
    let gate_wanted = wants_continue_gate(route, &parts, &body, websocket);
    rewrite_request_headers(table, route, &mut parts, ctx, identity.as_ref(), host)?;
    if websocket {
        set_websocket_upgrade(&mut parts.headers);
    }
    parts.uri = uri;
    parts.version = match route.config().upstream_protocol {
        UpstreamProtocol::H2c if !websocket => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let trailers_declared = !body.is_end_stream() && declares_trailers(&mut parts.headers);
    let (upstream_req, upload) =
        upstream_request(parts, body, route, gate_wanted, trailers_declared);

    let mut res = send(&client, route, upstream_req, upload, &ctx.conn.timer).await?;
    // RFC 9112 §6.3: a response with both framings is a smuggling attempt or a broken
    // upstream; neither is passed on (hyper alone would read it by Transfer-Encoding).
    if res.headers().contains_key(TRANSFER_ENCODING) && res.headers().contains_key(CONTENT_LENGTH) {
        tracing::warn!(
            route = route.prefix(),
            "upstream answered with both Content-Length and Transfer-Encoding"
        );
        return Err(ApiError::BadGateway);
    }
    let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded {
        // An upgrade the gateway did not ask for would be an unauthenticated tunnel.
        let Some(client) = client_upgrade else {
            tracing::warn!(
                route = route.prefix(),
                "upstream switched protocols unasked"
            );
            return Err(ApiError::BadGateway);
        };
        let upstream = hyper::upgrade::on(&mut res);
        tunnels.open(client, upstream, identity, ctx.conn.slot.clone());
    }
    let upstream_version = res.version();
    let (mut parts, body) = res.into_parts();
    clean_response(&mut parts.headers, &ctx.request_id, upgraded);
    append_via(&mut parts.headers, upstream_version);
    parts.version = if client_version == Version::HTTP_2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let trailers_declared = !body.is_end_stream() && declares_trailers(&mut parts.headers);
    let idle = route.config().idle_timeout;
    // A client that stops reading a proxied answer is cut after the route's idle_timeout,
    // not the listener's default (body_timeout): streamed answers may pause legitimately.
    parts.extensions.insert(SendTimeout(idle));
    let body = DownloadBody::new(body, idle, trailers_declared);
    Ok(Response::from_parts(parts, body.boxed()))
}

/// The URI to send: the route's upstream and path; with `preserve_host`, the client's host as
/// authority (it becomes `Host` or `:authority`; the route's own clients still dial the
/// upstream). A route's plain HTTP/1.1 pool gets the path alone (origin form, as it goes out):
/// it always dials the route's upstream and `Host` is set apart — from a client's host held to
/// the same rule.
fn upstream_uri(
    client: &Upstream<'_>,
    route: &Route,
    ctx: &RequestContext,
    query: Option<&str>,
    client_host: Option<&HeaderValue>,
) -> Result<Uri, ApiError> {
    let bad_target = |e| {
        tracing::error!(error = %e, "cannot build the upstream URI");
        ApiError::InvalidRequest("bad request target".into())
    };
    let preserved = client_host.filter(|_| route.config().preserve_host);
    if let Upstream::Plain(_) = client {
        if let Some(host) = preserved {
            client_authority(host)?;
        }
        return route
            .upstream_target(&ctx.path, query)
            .map(Uri::from)
            .map_err(bad_target);
    }
    let uri = route.upstream_uri(&ctx.path, query).map_err(bad_target)?;
    let Some(host) = preserved else {
        return Ok(uri);
    };
    let mut parts = uri.into_parts();
    parts.authority = Some(client_authority(host)?);
    Uri::from_parts(parts).map_err(|_| not_a_valid_host())
}

/// The client's host as an authority; one that is not a valid authority (an empty `Host`, for
/// one) is refused.
fn client_authority(host: &HeaderValue) -> Result<Authority, ApiError> {
    Authority::try_from(host.as_bytes()).map_err(|_| not_a_valid_host())
}

fn not_a_valid_host() -> ApiError {
    ApiError::InvalidRequest("the request's host is not a valid host".into())
}

/// Whether to hold the body until the upstream's `100 Continue`: an HTTP/1.1 client asked for
/// one, there is a body, and the upstream speaks HTTP/1.1 (the gate listens for hyper's
/// HTTP/1 informational hook). Otherwise the body is read when the upstream reads it, and
/// hyper's server sends the client its `100` then — after the route's checks either way.
fn wants_continue_gate(
    route: &Route,
    parts: &http::request::Parts,
    body: &Incoming,
    websocket: bool,
) -> bool {
    parts.version == Version::HTTP_11
        && !websocket
        && !body.is_end_stream()
        && route.config().upstream_protocol == UpstreamProtocol::Http1
        && parts
            .headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether a message (with a body) declares trailers (`Trailer`). If so its `Content-Length`
/// goes: a body of known length cannot carry trailers over HTTP/1.1 (an HTTP/2 peer may send
/// both), so the message is forwarded chunked and its trailers follow.
fn declares_trailers(headers: &mut http::HeaderMap) -> bool {
    if headers.contains_key(TRAILER) {
        headers.remove(CONTENT_LENGTH);
        true
    } else {
        false
    }
}

/// The upstream request with its body: none for a bodiless request, otherwise the client's
/// body watched for idleness and faults (and gated for `Expect: 100-continue`).
fn upstream_request(
    parts: http::request::Parts,
    body: Incoming,
    route: &Route,
    gate_wanted: bool,
    hide_length: bool,
) -> (Request<Body>, Option<UploadWatch>) {
    if body.is_end_stream() {
        let empty = Empty::new().map_err(|never| match never {}).boxed();
        return (Request::from_parts(parts, empty), None);
    }
    let mut head = Request::from_parts(parts, ());
    let gate = gate_wanted.then(|| ContinueGate::on(&mut head));
    let (body, watch) = UploadBody::new(body, route.config().idle_timeout, gate, hide_length);
    let (parts, ()) = head.into_parts();
    (Request::from_parts(parts, body.boxed()), Some(watch))
}

/// Sends the request on `client`. No response head within the route's timeout (connecting,
/// and the wait once the body is sent) is a 504, a refused, reset or garbled exchange a 502 —
/// unless the client's own body failed, which is the client's 400 or 408.
async fn send(
    client: &Upstream<'_>,
    route: &Route,
    req: Request<Body>,
    mut upload: Option<UploadWatch>,
    timer: &ReusableTimer,
) -> Result<Response<Incoming>, ApiError> {
    let limit = route.config().timeout;
    let outcome = within_timeout(limit, client.send(req), upload.as_mut(), timer).await;
    if let Some(fault) = upload.as_ref().and_then(UploadWatch::fault) {
        return Err(client_fault(route, fault));
    }
    match outcome {
        None => {
            tracing::warn!(route = route.prefix(), "upstream timed out");
            Err(ApiError::GatewayTimeout)
        }
        Some(Err(e)) => {
            tracing::warn!(route = route.prefix(), error = %error_chain(&*e), "upstream failed");
            Err(ApiError::BadGateway)
        }
        Some(Ok(res)) => Ok(res),
    }
}

/// Runs `exchange` for at most `limit`, not counting the time the request body is being sent
/// (`upload`): an upload is never cut by the route timeout (its stalls are `idle_timeout`'s).
/// `None` when the time ran out. The connection's reusable `timer` keeps the time.
async fn within_timeout<F: Future>(
    limit: Duration,
    exchange: F,
    upload: Option<&mut UploadWatch>,
    timer: &ReusableTimer,
) -> Option<F::Output> {
    let mut deadline = timer.take(Instant::now() + limit);
    let outcome = match upload {
        None => before(exchange, deadline.as_mut()).await,
        Some(upload) => uploading(limit, exchange, upload, deadline.as_mut()).await,
    };
    timer.give_back(deadline);
    outcome
}

/// `exchange`'s output, or `None` if `deadline` goes off first.
async fn before<F: Future>(exchange: F, mut deadline: Pin<&mut Sleep>) -> Option<F::Output> {
    let mut exchange = pin!(exchange);
    poll_fn(|cx| match exchange.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => deadline.as_mut().poll(cx).map(|()| None),
    })
    .await
}

/// [`within_timeout`] of an exchange with a request body: `deadline` is set to what is left of
/// `limit` whenever the body is not being sent, and the clock stops while it is.
async fn uploading<F: Future>(
    limit: Duration,
    exchange: F,
    upload: &mut UploadWatch,
    mut deadline: Pin<&mut Sleep>,
) -> Option<F::Output> {
    let mut exchange = pin!(exchange);
    let mut remaining = limit;
    loop {
        if upload.phase() == Phase::Sending {
            tokio::select! {
                out = &mut exchange => return Some(out),
                () = upload.changed() => continue,
            }
        }
        let started = Instant::now();
        deadline.as_mut().reset(started + remaining);
        tokio::select! {
            out = &mut exchange => return Some(out),
            () = deadline.as_mut() => return None,
            () = upload.changed() => remaining = remaining.saturating_sub(started.elapsed()),
        }
    }
}

/// The answer to a request whose own body failed; logged as the client's error.
fn client_fault(route: &Route, fault: ClientFault) -> ApiError {
    match fault {
        ClientFault::Malformed => {
            tracing::info!(
                route = route.prefix(),
                "client request body malformed or cut short"
            );
            ApiError::InvalidRequest("the request body is malformed or incomplete".into())
        }
        ClientFault::Stalled => {
            tracing::info!(route = route.prefix(), "client request body stalled");
            ApiError::RequestTimeout
        }
    }
}

/// Header rewriting in the order of §6 and §7.1: hop-by-hop and `Connection`-named headers
/// out (`TE: trailers` put back), every spelling of the identity headers out, the gateway's
/// identity in, forwarding headers and `Via`, `Host`, cookies joined for HTTP/1.1, request id,
/// `Max-Forwards` of an `OPTIONS` decremented, and `Authorization` dropped unless the route
/// forwards it.
fn rewrite_request_headers(
    table: &ProxyTable,
    route: &Route,
    parts: &mut http::request::Parts,
    ctx: &RequestContext,
    identity: Option<&Identity>,
    client_host: Option<HeaderValue>,
) -> Result<(), ApiError> {
    let trailers = accepts_trailers(&parts.headers);
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    table.rewriter.strip_identity(headers);
    strip_routing_overrides(headers);
    if let Some(identity) = identity {
        table
            .rewriter
            .add_identity(headers, identity)
            .map_err(|e| {
                tracing::error!(error = %e, "identity cannot be sent upstream");
                ApiError::Internal
            })?;
    }
    if trailers {
        set_te_trailers(headers);
    }
    let fwd = Forwarding {
        peer: ctx.conn.peer.ip(),
        proto: if ctx.conn.tls { "https" } else { "http" },
        host: client_host.as_ref(),
        prefix: route.forwarded_prefix(),
    };
    set_forwarding(headers, &fwd);
    append_via(headers, parts.version);
    let host = match client_host {
        Some(host) if route.config().preserve_host => host,
        _ => route.host().clone(),
    };
    headers.insert(HOST, host);
    if route.config().upstream_protocol != UpstreamProtocol::H2c {
        join_cookies(headers);
    }
    headers.insert(X_REQUEST_ID, ctx.request_id.clone());
    if parts.method == Method::OPTIONS {
        decrement_max_forwards(headers);
    }
    if !route.config().forward_authorization {
        headers.remove(AUTHORIZATION);
    }
    Ok(())
}

/// The causes of a client error, for the log (which one failed: connect, TLS, parse...).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
