//! TLS for the public listener: certificate and key read from PEM files into a rustls
//! configuration that offers HTTP/2 and HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsFiles};

/// Reads the certificate chain and key and builds the server configuration.
///
/// Errors name `server.tls_cert_file` / `server.tls_key_file`, so a bad file at start is a
/// config error (exit 64) and on reload a logged refusal.
pub fn server_config(
    files: &TlsFiles,
    config_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let cert_err = |reason: String| {
        ConfigError::new(
            config_file,
            "server.tls_cert_file",
            Some(format!("{:?}", files.cert_file.display().to_string())),
            reason,
        )
    };
    let key_err = |reason: String| {
        ConfigError::new(
            config_file,
            "server.tls_key_file",
            Some(format!("{:?}", files.key_file.display().to_string())),
            reason,
        )
    };
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| cert_err(format!("cannot be read as PEM: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("holds a bad certificate: {e}")))?;
    if certs.is_empty() {
        return Err(cert_err("holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| key_err(format!("holds no usable private key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            key_err(format!(
                "does not match the certificate or is unusable: {e}"
            ))
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
