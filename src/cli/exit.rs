//! What the commands share: the exit codes, loading the configuration, the runtime, and
//! turning a start failure into its exit code.

use std::path::Path;
use std::process::ExitCode;

use crate::app::StartError;
use crate::config::{self, check_log_level, Config, LogConfig};

/// Exit code for a bad configuration (EX_CONFIG of sysexits.h).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure or a drain that ran out of time.
pub const EXIT_RUNTIME: u8 = 1;

/// Loads the configuration, or prints why not.
pub(super) fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("authgate: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The environment variable that, when set and not empty, replaces `[log] level`.
pub(super) const RUST_LOG: &str = "RUST_LOG";

/// The log settings to start with: `[log]` of `config`, with its level replaced by `RUST_LOG`
/// when that is set (and not empty). `RUST_LOG` follows the grammar of `[log] level`; an
/// invalid one is refused like a bad config.
pub(super) fn log_settings(config: &Config) -> Result<LogConfig, ExitCode> {
    let mut log = config.log.clone();
    if let Some(text) = std::env::var_os(RUST_LOG).filter(|v| !v.is_empty()) {
        let text = text.to_string_lossy();
        log.level = check_log_level(&text).map_err(|reason| {
            eprintln!("authgate: {RUST_LOG} (replaces [log] level): {text:?} {reason}");
            ExitCode::from(EXIT_CONFIG)
        })?;
    }
    Ok(log)
}

/// The multi-threaded tokio runtime the gateway runs on, or the exit code for failing to make it.
pub(super) fn multi_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("authgate: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

/// A single-threaded runtime for the short commands (`user`, `explain`, `healthcheck`).
pub(super) fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("authgate: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

/// Prints a start failure and maps it to its exit code.
pub(super) fn report_start_error(e: &StartError) -> ExitCode {
    eprintln!("authgate: {e}");
    match e {
        StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
        StartError::Runtime(_) => ExitCode::from(EXIT_RUNTIME),
    }
}
