//! `authgate serve` (the default command) and `authgate check-config`.

use std::path::Path;
use std::process::ExitCode;

use super::exit::{
    load_config, log_settings, multi_thread_runtime, report_start_error, EXIT_RUNTIME, RUST_LOG,
};
use crate::app::App;

/// Runs the gateway of the config at `path` until SIGTERM or SIGINT has drained it.
pub(super) fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let log = match log_settings(&config) {
        Ok(log) => log,
        Err(code) => return code,
    };
    let _log = crate::telemetry::init(&log);
    // Before any listener: every connection holds a descriptor.
    super::open_files::log(&super::open_files::raise());
    let runtime = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let path = path.to_path_buf();
    runtime.block_on(async move {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => return report_start_error(&e),
        };
        super::signals::install(app.shutdown_handle(), app.reload_handle(), path);
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "gateway stopped with an error");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

/// Checks the config at `path` as a start would, without binding ports or creating files;
/// `RUST_LOG`, which a start would use in place of `[log] level`, is checked too.
pub(super) fn check_config(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let log = match log_settings(&config) {
        Ok(log) => log,
        Err(code) => return code,
    };
    match App::check(&config) {
        Ok(()) => {
            println!("{}: configuration is valid", path.display());
            if log.level != config.log.level {
                println!(
                    "note: {RUST_LOG} is set: the log level is {:?}, not log.level",
                    log.level
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}
