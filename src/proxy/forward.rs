//! Forwarding a request that passed its route's policy: the upstream request is built from the
//! client's (headers rewritten in §6 order), sent on the pooled client within the route's
//! timeout, and the response streamed back. Upstream failures become 502/504.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, AUTHORIZATION, HOST};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::headers::{
    clean_response, is_websocket_upgrade, set_forwarding, set_websocket_upgrade, strip_hop_by_hop,
    strip_routing_overrides, IdentityValues,
};
use super::router::Route;
use super::websocket;
use super::ProxyState;
use crate::app::AppState;
use crate::auth::identity::Identity;
use crate::body::{Body, BoxError};
use crate::config::ConfigError;
use crate::error::ApiError;
use crate::gateway::RequestContext;

/// The pooled upstream client (http and https, HTTP/2 by ALPN on https).
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the upstream client: webpki roots plus the optional `upstream_ca_file`.
pub fn build_client(
    ca_file: Option<&std::path::Path>,
    config_file: &std::path::Path,
) -> Result<UpstreamClient, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path, config_file)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(config_file, ca_file, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}

fn add_ca_file(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
    config_file: &std::path::Path,
) -> Result<(), ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            ca_error(
                config_file,
                Some(path),
                format!("cannot be read as PEM: {e}"),
            )
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ca_error(
                config_file,
                Some(path),
                format!("holds a bad certificate: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(ca_error(
            config_file,
            Some(path),
            "holds no certificate".into(),
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ca_error(config_file, Some(path), format!("unusable CA: {e}")))?;
    }
    Ok(())
}

fn ca_error(
    config_file: &std::path::Path,
    path: Option<&std::path::Path>,
    reason: String,
) -> ConfigError {
    ConfigError::new(
        config_file,
        "proxy.upstream_ca_file",
        path.map(|p| format!("{:?}", p.display().to_string())),
        reason,
    )
}

/// Sends the request upstream and returns the upstream's response, streamed.
pub async fn forward(
    state: &Arc<AppState>,
    proxy: &ProxyState,
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
    rewrite_request_headers(proxy, route, &mut parts, ctx, identity.as_ref())?;
    if websocket {
        set_websocket_upgrade(&mut parts.headers);
    }
    parts.uri = uri;
    // The client may speak HTTP/2 to us; the upstream connection decides its own version.
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body.map_err(BoxError::from).boxed());

    let mut res = send(proxy, route, upstream_req).await?;
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
        websocket::tunnel(state, client, upstream, identity, ctx.conn.slot.clone());
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
    proxy: &ProxyState,
    route: &Route,
    req: Request<Body>,
) -> Result<Response<Incoming>, ApiError> {
    match tokio::time::timeout(route.config().timeout, proxy.client.request(req)).await {
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
    proxy: &ProxyState,
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
    proxy.rewriter.strip_identity(headers);
    strip_routing_overrides(headers);
    if let Some(identity) = identity {
        let values = IdentityValues {
            user_id: identity.user_id,
            username: &identity.username,
            roles: &identity.roles,
            session_id: &identity.session_id,
            fresh: identity.fresh,
        };
        proxy.rewriter.add_identity(headers, &values).map_err(|e| {
            tracing::error!(error = %e, "identity cannot be sent upstream");
            ApiError::Internal
        })?;
    }
    let proto = if ctx.conn.tls { "https" } else { "http" };
    set_forwarding(headers, ctx.conn.peer.ip(), proto, client_host.as_ref());
    headers.insert(HOST, route.host().clone());
    headers.insert(super::headers::X_REQUEST_ID, ctx.request_id.clone());
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

/// An io error from a closed tunnel is expected; anything else is logged at debug.
pub(crate) fn tunnel_ended(result: io::Result<(u64, u64)>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}
