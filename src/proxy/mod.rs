//! Proxying: everything between a matched request and the upstream.
//!
//! `path` gives the one canonical path both routing and forwarding use; `router` is the
//! compiled route table (built once per config, swapped whole on reload); `headers` rewrites
//! request and response headers in the order HTTP-API.md §6 fixes; `forward` sends the request
//! on the pooled client; `websocket` tunnels upgraded connections. [`handle`] is the policy
//! step between them: route, token, freshness, roles, then method.

pub mod forward;
pub mod headers;
pub mod path;
pub mod router;
mod websocket;

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::app::AppState;
use crate::auth::authenticator::Accept;
use crate::auth::identity::Identity;
use crate::auth::policy;
use crate::body::Body;
use crate::config::{Config, ConfigError, ProxyConfig};
use crate::error::ApiError;
use crate::gateway::{RequestContext, RouteLabel};
use forward::{build_client, forward, UpstreamClient};
use headers::HeaderRewriter;
use router::{Route, Router};

/// Everything the proxy reads per request, built once per configuration and swapped whole on
/// reload, so a request sees one consistent table from start to end.
pub struct ProxyState {
    /// The compiled route table.
    pub router: Router,
    /// `[proxy]` as configured.
    pub config: ProxyConfig,
    /// Identity-header handling.
    pub rewriter: HeaderRewriter,
    /// The pooled upstream client.
    pub client: UpstreamClient,
    /// Route prefixes as shared strings for log labels (index = route index).
    labels: Vec<Arc<str>>,
}

impl ProxyState {
    /// Compiles `[[routes]]` and `[proxy]` of `config`.
    pub fn build(config: &Config) -> Result<ProxyState, ConfigError> {
        let router = Router::new(&config.routes)
            .map_err(|e| ConfigError::new(&config.source, "routes", None, e.to_string()))?;
        let client = build_client(config.proxy.upstream_ca_file.as_deref(), &config.source)?;
        let labels = router
            .routes()
            .iter()
            .map(|r| Arc::from(r.prefix()))
            .collect();
        Ok(ProxyState {
            rewriter: HeaderRewriter::new(&config.proxy.identity_headers),
            config: config.proxy.clone(),
            router,
            client,
            labels,
        })
    }

    fn label(&self, route: &Route) -> RouteLabel {
        self.labels
            .get(route.index())
            .map_or(RouteLabel::Static("-"), |l| RouteLabel::Route(l.clone()))
    }
}

/// Routes, checks and forwards one request.
pub async fn handle(
    state: &Arc<AppState>,
    req: Request<Incoming>,
    ctx: RequestContext,
) -> (Result<Response<Body>, ApiError>, RouteLabel) {
    // One snapshot for the whole request: a reload swaps the table for later requests only.
    let proxy = state.proxy.load_full();
    let Some(route) = proxy.router.route_for(&ctx.path) else {
        return (Err(ApiError::NotFound), RouteLabel::Static("-"));
    };
    let label = proxy.label(route);
    let result = match authorize(state, route, &req) {
        Ok(identity) => forward(state, &proxy, route, req, &ctx, identity).await,
        Err(e) => Err(e),
    };
    (result, label)
}

/// Authentication, then the route's policy (§4/§6 order: every 401 and 403 before 405).
/// Public routes never read `Authorization`.
fn authorize<B>(
    state: &Arc<AppState>,
    route: &Route,
    req: &Request<B>,
) -> Result<Option<Identity>, ApiError> {
    let policy = route.policy();
    let identity = if policy.reads_credentials() {
        state.auth.authenticate(req.headers(), Accept::Access)?
    } else {
        None
    };
    policy::decide(policy, req.method(), identity.as_ref(), &state.clock)?;
    Ok(identity)
}
