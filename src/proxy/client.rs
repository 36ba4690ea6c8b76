//! The pooled upstream clients, one per way of speaking to an upstream (docs/http-api.md §7.1):
//! HTTP/1.1 (clear text, or TLS offering only `http/1.1` by ALPN), HTTP/2 with prior knowledge
//! in clear text (`h2c`), and TLS where ALPN picks `h2` or `http/1.1` (`auto`). Trust: webpki
//! roots plus the optional `[proxy] upstream_ca_file`. Built once per configuration.
//!
//! A route with `preserve_host = true` gets clients of its own whose connector ignores the
//! request URI's authority (which carries the client's host, so that it becomes `Host` or
//! `:authority`) and always dials the route's upstream: the pool is keyed by that authority,
//! and a client-chosen host must never pick a connection to another upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::pool::Http1Pool;
use super::router::Route;
use crate::config::{ConfigError, UpstreamProtocol};
use crate::server::response::{Body, BoxError};
use crate::server::workers;

/// One pooled upstream client.
pub type UpstreamClient = Client<UpstreamConnector, Body>;

/// The clients of one configuration, one group per serving worker (and one for any other
/// thread): each worker keeps its upstream connections to itself, so a request and its
/// upstream connection's task never sit on different threads (see [`workers`]).
pub struct UpstreamClients {
    /// Index = [`workers::current`].
    per_worker: Vec<WorkerClients>,
    /// For threads that are not workers.
    elsewhere: WorkerClients,
}

/// One worker's clients: shared ones, those of `preserve_host` routes, and the plain
/// HTTP/1.1 pools of the routes that can use one.
struct WorkerClients {
    shared: ClientSet,
    /// Index = route index; `Some` for routes with `preserve_host`.
    per_route: Vec<Option<ClientSet>>,
    /// Index = route index; `Some` for routes to an `http://` upstream in `http1`.
    plain: Vec<Option<Http1Pool>>,
}

/// Where a request goes out: a route's plain HTTP/1.1 pool, or a general pooled client.
pub enum Upstream<'a> {
    /// `http://` upstream, `upstream_protocol = "http1"` (see [`Http1Pool`]).
    Plain(&'a Http1Pool),
    /// Any other: TLS, h2c, ALPN.
    Pooled(&'a UpstreamClient),
}

impl Upstream<'_> {
    /// Sends `req` and returns the response head.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        match self {
            // Boxed: inline, the pool's future would size every request's future, which is
            // copied whole into its box when a request starts (callgrind: 9,000 instructions
            // of memcpy per request).
            Upstream::Plain(pool) => Box::pin(pool.send(req)).await,
            Upstream::Pooled(client) => Ok(client.request(req).await?),
        }
    }
}

impl UpstreamClients {
    /// Builds the clients for `routes`, trusting webpki roots plus `ca_file`.
    pub fn build(
        routes: &[Route],
        ca_file: Option<&std::path::Path>,
        config_file: &std::path::Path,
    ) -> Result<UpstreamClients, ConfigError> {
        let tls = tls_config(ca_file, config_file)?;
        let group = || WorkerClients {
            shared: ClientSet::new(&tls, None),
            per_route: routes
                .iter()
                .map(|route| {
                    route
                        .config()
                        .preserve_host
                        .then(|| ClientSet::new(&tls, Some(route.upstream_base())))
                })
                .collect(),
            plain: routes.iter().map(plain_pool).collect(),
        };
        Ok(UpstreamClients {
            per_worker: (0..workers::count()).map(|_| group()).collect(),
            elsewhere: group(),
        })
    }

    /// The calling thread's group.
    fn worker_clients(&self) -> &WorkerClients {
        self.per_worker
            .get(workers::current())
            .unwrap_or(&self.elsewhere)
    }

    /// The client for a request on `route` from the calling thread; `upgrade` asks for an
    /// HTTP/1.1 connection (a WebSocket upgrade), whatever the route's protocol would otherwise
    /// negotiate.
    pub fn for_route(&self, route: &Route, upgrade: bool) -> Upstream<'_> {
        let clients = self.worker_clients();
        if let Some(pool) = clients.plain.get(route.index()).and_then(Option::as_ref) {
            return Upstream::Plain(pool);
        }
        let set = clients
            .per_route
            .get(route.index())
            .and_then(Option::as_ref)
            .unwrap_or(&clients.shared);
        Upstream::Pooled(match route.config().upstream_protocol {
            _ if upgrade => &set.http1,
            UpstreamProtocol::Http1 => &set.http1,
            UpstreamProtocol::H2c => &set.h2c,
            UpstreamProtocol::Auto => &set.auto,
        })
    }
}

/// A plain HTTP/1.1 pool for a route to an `http://` upstream that speaks `http1` (an upgrade
/// goes out on HTTP/1.1 whatever the protocol, so only such routes' upgrades use it too).
fn plain_pool(route: &Route) -> Option<Http1Pool> {
    let plain = route.scheme() == &http::uri::Scheme::HTTP
        && route.config().upstream_protocol == UpstreamProtocol::Http1;
    plain.then(|| Http1Pool::new(route.upstream_base()))
}

/// A client for each protocol, sharing one TLS configuration.
struct ClientSet {
    http1: UpstreamClient,
    h2c: UpstreamClient,
    auto: UpstreamClient,
}

impl ClientSet {
    /// Clients dialling the request's own authority, or always `target` when given.
    fn new(tls: &rustls::ClientConfig, target: Option<Uri>) -> ClientSet {
        let connector = |alpn: Alpn| UpstreamConnector {
            inner: https_connector(tls.clone(), alpn),
            target: target.clone(),
        };
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(60));
            b
        };
        ClientSet {
            http1: builder().build(connector(Alpn::Http1)),
            h2c: builder().http2_only(true).build(connector(Alpn::Http1)),
            auto: builder().build(connector(Alpn::Both)),
        }
    }
}

/// Which protocols a TLS connection offers by ALPN.
#[derive(Clone, Copy)]
enum Alpn {
    Http1,
    Both,
}

fn https_connector(tls: rustls::ClientConfig, alpn: Alpn) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::Both => builder.enable_all_versions().wrap_connector(http),
    }
}

/// The connector of every upstream client: http or https, dialling the request URI's
/// authority — or, for a `preserve_host` route, always the route's upstream.
#[derive(Clone)]
pub struct UpstreamConnector {
    inner: HttpsConnector<HttpConnector>,
    target: Option<Uri>,
}

type Connecting =
    Pin<Box<dyn Future<Output = Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let dst = self.target.clone().unwrap_or(dst);
        self.inner.call(dst)
    }
}

/// The TLS client configuration: webpki roots plus `ca_file`.
fn tls_config(
    ca_file: Option<&std::path::Path>,
    config_file: &std::path::Path,
) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path, config_file)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_error(config_file, ca_file, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
