//! Everything the proxy reads per request that a reload may change: the compiled route
//! table, `[proxy]`, the identity-header rewriter and the upstream client. Built once per
//! configuration and swapped whole on reload, so a request sees one consistent table. The
//! forward-auth decision endpoint decides by the same snapshot (the app hands it over).

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use super::client::UpstreamClients;
use super::headers::{HeaderRewriter, IdentityValueError};
use super::router::{Route, Router};
use crate::auth::identity::Identity;
use crate::config::{Config, ConfigError, ProxyConfig};
use crate::server::context::RouteLabel;
use crate::telemetry::metrics::RouteName;

/// The current [`ProxyTable`], shared by the proxy and the reload handle, swapped whole.
pub type TableSlot = ArcSwap<ProxyTable>;

/// The proxy's reloadable part.
pub struct ProxyTable {
    /// The compiled route table.
    pub router: Router,
    /// `[proxy]` as configured.
    pub config: ProxyConfig,
    /// Identity-header handling.
    pub rewriter: HeaderRewriter,
    /// The pooled upstream clients.
    pub clients: UpstreamClients,
    /// Route prefixes as shared names for log and metric labels (index = route index).
    labels: Vec<Arc<RouteName>>,
}

impl ProxyTable {
    /// Compiles `[[routes]]` and `[proxy]` of `config`.
    pub fn build(config: &Config) -> Result<ProxyTable, ConfigError> {
        let router = Router::new(&config.routes)
            .map_err(|e| ConfigError::new(&config.source, "routes", None, e.to_string()))?;
        let clients = UpstreamClients::build(
            router.routes(),
            config.proxy.upstream_ca_file.as_deref(),
            &config.source,
        )?;
        // Every route in file order, those without an upstream too, so `route.index()` indexes it.
        let labels = config
            .routes
            .iter()
            .map(|r| RouteName::new(&r.prefix))
            .collect();
        Ok(ProxyTable {
            rewriter: HeaderRewriter::new(
                &config.proxy.identity_headers,
                &config.proxy.strip_header_prefixes,
            ),
            config: config.proxy.clone(),
            router,
            clients,
            labels,
        })
    }

    /// Peers whose `X-Forwarded-For` is believed (`[proxy] trusted_proxies`).
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.config.trusted_proxies
    }

    /// Sets every identity header on `headers` for a forward-auth decision: `identity`'s
    /// values exactly as a proxied request would carry them, or all five present and empty
    /// for an anonymous request, so a front proxy copying them always overwrites a client's
    /// spoofed copy. Nothing is set when a value cannot be sent.
    pub fn decision_identity(
        &self,
        headers: &mut HeaderMap,
        identity: Option<&Identity>,
    ) -> Result<(), IdentityValueError> {
        let Some(identity) = identity else {
            for name in self.config.identity_headers.names() {
                headers.insert(name.clone(), HeaderValue::from_static(""));
            }
            return Ok(());
        };
        self.rewriter.add_identity(headers, identity)
    }

    /// The access-log and metrics label of `route`.
    pub fn label(&self, route: &Route) -> RouteLabel {
        self.labels
            .get(route.index())
            .map_or(RouteLabel::Static("-"), |l| RouteLabel::Route(l.clone()))
    }
}
