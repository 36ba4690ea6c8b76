//! Forwarding a request that passed its route's policy: the upstream request is built from the
//! client's (headers rewritten in §6 order), sent on the pooled client within the route's
//! timeout, and the response streamed back. Upstream failures become 502/504.

use http::header::{HeaderValue, AUTHORIZATION, HOST};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::headers::{
    clean_response, is_websocket_upgrade, set_forwarding, set_websocket_upgrade, strip_hop_by_hop,
    strip_routing_overrides, IdentityValues,
};
use super::router::Route;
use super::table::ProxyTable;
use super::websocket::Tunnels;
use crate::auth::identity::Identity;
use crate::error::ApiError;
use crate::server::context::RequestContext;
use crate::server::request_id::X_REQUEST_ID;
use crate::server::response::{Body, BoxError};

/// Sends the request upstream and returns the upstream's response, streamed.
pub async fn forward(
    tunnels: &Tunnels,
    table: &ProxyTable,
    route: &Route,
    mut req: Request<Incoming>,
    ctx: &RequestContext,
    identity: Option<Identity>,
) -> Result<Response<Body>, ApiError> {
    let websocket = route.config().websocket && is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let uri = route
        .upstream_uri(&ctx.path, req.uri().query())
        .map_err(|e| {
            tracing::error!(error = %e, "cannot build the upstream URI");
            ApiError::InvalidRequest("bad request target".into())
        })?;
    let (mut parts, body) = req.into_parts();
    rewrite_request_headers(table, route, &mut parts, ctx, identity.as_ref())?;
    if websocket {
        set_websocket_upgrade(&mut parts.headers);
    }
    parts.uri = uri;
    // The client may speak HTTP/2 to us; the upstream connection decides its own version.
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body.map_err(BoxError::from).boxed());

    let mut res = send(table, route, upstream_req).await?;
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
    let (mut parts, body) = res.into_parts();
    clean_response(&mut parts.headers, &ctx.request_id, upgraded);
    Ok(Response::from_parts(
        parts,
        body.map_err(BoxError::from).boxed(),
    ))
}

/// Sends the request on the pooled client; no response head within the route's timeout
/// (connecting included) is a 504, a refused, reset or garbled exchange a 502.
async fn send(
    table: &ProxyTable,
    route: &Route,
    req: Request<Body>,
) -> Result<Response<Incoming>, ApiError> {
    match tokio::time::timeout(route.config().timeout, table.client.request(req)).await {
        Err(_) => {
            tracing::warn!(route = route.prefix(), "upstream timed out");
            Err(ApiError::GatewayTimeout)
        }
        Ok(Err(e)) => {
            tracing::warn!(route = route.prefix(), error = %error_chain(&e), "upstream failed");
            Err(ApiError::BadGateway)
        }
        Ok(Ok(res)) => Ok(res),
    }
}

/// Header rewriting in the order of §6: hop-by-hop and `Connection`-named headers out, every
/// spelling of the identity headers out, the gateway's identity in, forwarding headers,
/// `Host`, request id, and `Authorization` dropped unless the route forwards it.
fn rewrite_request_headers(
    table: &ProxyTable,
    route: &Route,
    parts: &mut http::request::Parts,
    ctx: &RequestContext,
    identity: Option<&Identity>,
) -> Result<(), ApiError> {
    let client_host = parts.headers.get(HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    table.rewriter.strip_identity(headers);
    strip_routing_overrides(headers);
    if let Some(identity) = identity {
        let values = IdentityValues {
            user_id: identity.user_id,
            username: &identity.username,
            roles: &identity.roles,
            session_id: &identity.session_id,
            fresh: identity.fresh,
        };
        table.rewriter.add_identity(headers, &values).map_err(|e| {
            tracing::error!(error = %e, "identity cannot be sent upstream");
            ApiError::Internal
        })?;
    }
    let proto = if ctx.conn.tls { "https" } else { "http" };
    set_forwarding(headers, ctx.conn.peer.ip(), proto, client_host.as_ref());
    headers.insert(HOST, route.host().clone());
    headers.insert(X_REQUEST_ID, ctx.request_id.clone());
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
