//! Process signals, for the binary only: SIGTERM and SIGINT start a graceful drain, SIGHUP
//! reloads the configuration file. Tests drive the same handles directly instead.

use std::path::PathBuf;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::app::ReloadHandle;

/// Spawns the tasks that turn signals into calls on the gateway's handles.
pub(super) fn install(shutdown: CancellationToken, reload: ReloadHandle, config_path: PathBuf) {
    tokio::spawn(async move {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot listen for SIGTERM/SIGINT");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        shutdown.cancel();
    });
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot listen for SIGHUP");
            return;
        };
        while hup.recv().await.is_some() {
            match reload.reload_from(&config_path).await {
                Ok(()) => tracing::info!(file = %config_path.display(), "configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "reload refused; keeping the running configuration")
                }
            }
        }
    });
}
