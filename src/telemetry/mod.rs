//! Telemetry: the tracing subscriber of `[log]`, the one access line per request, and the
//! metrics registry behind `/metrics` ([`metrics`]).
//!
//! Nothing here ever receives a token, password or secret: the access line takes the path
//! without its query (tokens hide there) and client-supplied values are logged with `?`, which
//! escapes control characters so a crafted path cannot forge log lines.

pub mod metrics;

use std::time::Duration;

use http::{Method, StatusCode};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Keeps the log writer thread alive; dropping it flushes what is queued. Hold it until exit.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber. Lines go to standard error through a background thread, so
/// a slow reader of the log never stalls a reactor thread: should its queue (128,000 lines)
/// fill up because nobody reads standard error, further lines are dropped rather than block
/// requests. Later calls (tests start many gateways) are ignored.
pub fn init(cfg: &LogConfig) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    // `cfg.level` passed `config::check_log_level`, which only lets through what the filter
    // parses; should it still be refused, "info" keeps the gateway's lines coming.
    let filter = EnvFilter::builder()
        .parse(&cfg.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match cfg.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// What the access line records about one request.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Path without its query string.
    pub path: &'a str,
    /// Matched route prefix, auth endpoint, or `-`.
    pub route: &'a str,
    /// Response status.
    pub status: StatusCode,
    /// Time until the response head was ready.
    pub latency: Duration,
    /// The request id returned to the client.
    pub request_id: &'a str,
}

/// Writes the access line of one request.
pub fn access(rec: &AccessRecord<'_>) {
    tracing::info!(
        target: "authgate::access",
        method = %rec.method,
        path = ?rec.path,
        route = rec.route,
        status = rec.status.as_u16(),
        latency_us = u64::try_from(rec.latency.as_micros()).unwrap_or(u64::MAX),
        request_id = ?rec.request_id,
        "request"
    );
}
