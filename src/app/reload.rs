//! Reloading a running gateway (SIGHUP): `[[routes]]`, `[proxy]`, the TLS files and the token
//! key files (`private_key_file`, `verify_keys`) are applied together or not at all; changes
//! anywhere else are logged as needing a restart. Every reload is counted by result.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::keys::{load_keys, KeyLoad, Keys};
use crate::auth::tokens::TokenService;
use crate::config::{self, Config, ConfigError};
use crate::proxy::table::{ProxyTable, TableSlot};
use crate::server::tls;
use crate::telemetry::metrics::Metrics;

/// Reloads `[[routes]]`, `[proxy]` and the TLS files of a running gateway.
#[derive(Clone)]
pub struct ReloadHandle {
    /// The configuration the gateway started with (to name what needs a restart).
    started_with: Arc<Config>,
    table: Arc<TableSlot>,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    tokens: Arc<TokenService>,
    metrics: Arc<Metrics>,
}

/// What a reload swaps in, everything built and checked before anything is stored.
struct Prepared {
    table: ProxyTable,
    tls: Option<Arc<rustls::ServerConfig>>,
    keys: Option<Keys>,
}

impl ReloadHandle {
    /// A handle swapping `table`, `tls` and the keys of `tokens` of a gateway started with
    /// `started_with`, counting reloads in `metrics`.
    pub(super) fn new(
        started_with: Arc<Config>,
        table: Arc<TableSlot>,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
        tokens: Arc<TokenService>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            started_with,
            table,
            tls,
            tokens,
            metrics,
        }
    }

    /// Reads `path` again and applies it (see [`ReloadHandle::apply`]).
    /// Everything — reading the file, the CA and TLS files — runs on the blocking pool.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ConfigError> {
        let path = path.to_path_buf();
        let handle = self.clone();
        let result = tokio::task::spawn_blocking(move || handle.apply(config::load(&path)?))
            .await
            .map_err(|e| {
                ConfigError::new(Path::new("-"), "", None, format!("reload task failed: {e}"))
            })
            .and_then(|r| r);
        self.metrics.record_reload(result.is_ok());
        result
    }

    /// Applies `[[routes]]`, `[proxy]` and the TLS files of `new` atomically; in-flight
    /// requests keep what they started with. Changes elsewhere are logged as needing a restart.
    /// On error nothing changes. It reads files: call it off the reactor (as `reload_from`
    /// does) or from a test.
    pub fn apply(&self, new: Config) -> Result<(), ConfigError> {
        let Prepared { table, tls, keys } = self.prepare(&new)?;
        self.table.store(Arc::new(table));
        if let Some(keys) = keys {
            match self.tokens.reload_keys(keys) {
                Ok(generation) => {
                    self.metrics.set_key_generation(generation);
                    tracing::info!(generation, kids = ?self.tokens.kids(), "token keys reloaded");
                }
                // Unreachable: `prepare` loaded them for this algorithm with a signing key.
                Err(e) => tracing::error!(error = %e, "token keys not reloaded"),
            }
        }
        match (&self.tls, tls) {
            (Some(slot), Some(cfg)) => slot.store(cfg),
            (None, None) => {}
            _ => tracing::warn!("TLS switched on or off: needs a restart, not applied"),
        }
        for section in config::restart_needed(&self.started_with, &new) {
            tracing::warn!(section, "changed: needs a restart, not applied");
        }
        Ok(())
    }

    /// Builds and checks everything `apply` swaps in, touching nothing that is running.
    fn prepare(&self, new: &Config) -> Result<Prepared, ConfigError> {
        let table = ProxyTable::build(new)?;
        let tls = match &new.server.tls {
            Some(files) => Some(tls::server_config(files, &new.source)?),
            None => None,
        };
        // HS256's secret is not re-read (a restart applies it); another algorithm needs a
        // restart too, reported by `restart_needed` as a `[tokens]` change.
        let algorithm = self.started_with.tokens.algorithm;
        let keys = if algorithm.is_asymmetric() && new.tokens.algorithm == algorithm {
            Some(load_keys(
                &new.tokens,
                &new.source,
                None,
                KeyLoad::CheckOnly,
            )?)
        } else {
            None
        };
        Ok(Prepared { table, tls, keys })
    }
}
