//! The pooled upstream client: http and https (HTTP/2 by ALPN on https), webpki roots plus
//! the optional `[proxy] upstream_ca_file`. Built once per configuration.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::ConfigError;
use crate::server::response::Body;

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
