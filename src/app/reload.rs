//! Reloading a running gateway (SIGHUP): `[[routes]]`, `[proxy]` and the TLS files are applied
//! atomically; changes anywhere else are logged as needing a restart.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigError};
use crate::proxy::table::{ProxyTable, TableSlot};
use crate::server::tls;

/// Reloads `[[routes]]`, `[proxy]` and the TLS files of a running gateway.
#[derive(Clone)]
pub struct ReloadHandle {
    /// The configuration the gateway started with (to name what needs a restart).
    started_with: Arc<Config>,
    table: Arc<TableSlot>,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
}

impl ReloadHandle {
    /// A handle swapping `table` and `tls` of a gateway started with `started_with`.
    pub(super) fn new(
        started_with: Arc<Config>,
        table: Arc<TableSlot>,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    ) -> Self {
        Self {
            started_with,
            table,
            tls,
        }
    }

    /// Reads `path` again and applies it (see [`ReloadHandle::apply`]).
    /// Everything — reading the file, the CA and TLS files — runs on the blocking pool.
    pub async fn reload_from(&self, path: &Path) -> Result<(), ConfigError> {
        let path = path.to_path_buf();
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.apply(config::load(&path)?))
            .await
            .map_err(|e| {
                ConfigError::new(Path::new("-"), "", None, format!("reload task failed: {e}"))
            })?
    }

    /// Applies `[[routes]]`, `[proxy]` and the TLS files of `new` atomically; in-flight
    /// requests keep what they started with. Changes elsewhere are logged as needing a restart.
    /// On error nothing changes. It reads files: call it off the reactor (as `reload_from`
    /// does) or from a test.
    pub fn apply(&self, new: Config) -> Result<(), ConfigError> {
        let table = ProxyTable::build(&new)?;
        let tls = match &new.server.tls {
            Some(files) => Some(tls::server_config(files, &new.source)?),
            None => None,
        };
        self.table.store(Arc::new(table));
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
}
