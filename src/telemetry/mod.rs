//! Telemetry: the tracing subscriber of `[log]` (its two line formats in [`lines`]), the
//! request span, the one access line per request, and the metrics registry behind `/metrics`
//! ([`metrics`]).
//!
//! The request span ([`request_span`]) carries `request_id` and `client` from the start,
//! `route` once a route or endpoint matched and `user_id` once a token was accepted; every
//! line logged while the request is handled — on the blocking pool and in tunnels that
//! outlive it too — carries them. It shares the access line's target and level, so it costs
//! nothing when access lines are filtered out (`level = "warn"`), and exists whenever they
//! are written.
//!
//! Nothing here ever receives a token, password or secret: the access line takes the path
//! without its query (tokens hide there), and client-supplied values are escaped by the line
//! formats, so a crafted path cannot forge log lines.

mod lines;
pub mod metrics;
mod process;

use std::io::IsTerminal;
use std::net::IpAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tracing::field::Empty;
use tracing::Span;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The target of the access lines and of the request span: `authgate::access=info` in
/// `[log] level` switches both.
pub const ACCESS_TARGET: &str = "authgate::access";

/// The name of the request span.
const REQUEST_SPAN: &str = "request";

/// Keeps the log writer thread alive; dropping it flushes what is queued. Hold it until exit.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global subscriber. Lines go to standard error through a background thread, so
/// a slow reader of the log never stalls a reactor thread: should its queue (128,000 lines)
/// fill up because nobody reads standard error, further lines are dropped rather than block
/// requests. Colours only when standard error is a terminal and `NO_COLOR` is unset or empty.
/// Later calls (tests start many gateways) are ignored.
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
        LogFormat::Pretty => builder
            .with_ansi(colours())
            .fmt_fields(lines::Pretty)
            .event_format(lines::Pretty)
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(lines::Json)
            .event_format(lines::Json)
            .try_init(),
    };
    guard
}

/// Whether pretty lines are coloured: on a terminal, unless `NO_COLOR` is set (no-color.org).
fn colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The span of one request, with its id and the client address (as the login limiter sees
/// it); `route` and `user_id` are recorded later ([`record_route`], [`record_user`]). Enter
/// it for the whole request (`Instrument::instrument`).
pub fn request_span(request_id: &str, client: IpAddr) -> Span {
    tracing::info_span!(
        target: ACCESS_TARGET,
        REQUEST_SPAN,
        request_id,
        client = %client,
        route = Empty,
        user_id = Empty,
    )
}

/// Records the route (or auth endpoint) the current request matched into its span.
pub fn record_route(route: &str) {
    if request_spans_on() {
        Span::current().record("route", route);
    }
}

/// Records the user whose token the current request presented and the gateway accepted.
pub fn record_user(user_id: i64) {
    if request_spans_on() {
        Span::current().record("user_id", user_id);
    }
}

/// Whether the `[log]` level lets request spans through. When it does not, [`request_span`]
/// made a disabled span and recording into it would do nothing, so the lookup of the current
/// span (250 instructions per request under callgrind) is skipped; the check itself is a
/// cached per-callsite answer.
fn request_spans_on() -> bool {
    tracing::enabled!(
        kind: tracing::metadata::Kind::SPAN,
        target: ACCESS_TARGET,
        tracing::Level::INFO
    )
}

/// What the access line records about one request; the request span adds `request_id`,
/// `client` and `user_id`.
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
    /// The §1 error code of a refusal.
    pub error: Option<&'static str>,
}

/// Writes the access line of one request; call it inside the request span.
pub fn access(rec: &AccessRecord<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        method = rec.method.as_str(),
        path = rec.path,
        route = rec.route,
        status = rec.status.as_u16(),
        latency_us = u64::try_from(rec.latency.as_micros()).unwrap_or(u64::MAX),
        error = rec.error,
    );
}
