//! Metrics for `GET /metrics` on the admin listener (docs/http-api.md §5): requests by route and
//! status, latency histograms by route, auth failures by reason, upstream errors, forward-auth
//! decisions by outcome, and the sizes of the revocation sets. Families are registered once.
//! Recording a request allocates nothing: a proxied route's request is recorded through the
//! handles its [`RouteName`] keeps (no family lock, no hash), anything else by a lookup in the family
//! under a read lock (labels are static names or shared route names).
//!
//! Metrics know no handler types: a request is recorded by its route label, status, latency
//! and, when the gateway answered an error itself, the error's §1 code.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::process;

use crate::auth::revocation::RevocationSizes;

/// `Content-Type` of the exposition (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The §1 codes that count as upstream errors.
const UPSTREAM_CODES: [&str; 2] = ["bad_gateway", "gateway_timeout"];

/// The §1 codes that are an authentication or authorisation refusal.
const AUTH_FAILURE_CODES: [&str; 8] = [
    "missing_token",
    "token_expired",
    "invalid_token",
    "token_revoked",
    "fresh_token_required",
    "invalid_credentials",
    "forbidden",
    "rate_limited",
];

/// What the access line and the metrics name a request's route by; as a label value it clones
/// without allocating.
#[derive(Debug, Clone)]
pub enum RouteLabel {
    /// A fixed name: an auth endpoint, or `-` when nothing matched.
    Static(&'static str),
    /// A proxied route's prefix (with its metric handles), built once per route table.
    Route(Arc<RouteName>),
}

impl RouteLabel {
    /// The label as text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Route(r) => r.as_str(),
        }
    }

    /// True for an endpoint under the auth prefix (a fixed name other than `-`): the gateway's
    /// own resources, as opposed to a route, no route, or a request refused before routing.
    pub fn is_endpoint(&self) -> bool {
        matches!(self, Self::Static(name) if *name != "-")
    }
}

/// A proxied route's name, and that route's metric handles once a request on it has been
/// recorded: its latency histogram and its request counters for the common statuses. Later
/// requests on the route are recorded through them, with no family lock taken and no label set hashed
/// (the two family lookups they replace cost about 670 instructions a request).
#[derive(Debug)]
pub struct RouteName {
    name: Box<str>,
    handles: OnceLock<RouteHandles>,
}

impl RouteName {
    /// A route named `name` (its prefix), with no handles yet.
    pub fn new(name: &str) -> Arc<RouteName> {
        Arc::new(RouteName {
            name: name.into(),
            handles: OnceLock::new(),
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

/// The statuses whose request counters a route keeps a handle to; others are looked up.
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 500, 502, 503, 504,
];

/// One route's handles into one [`Metrics`] (they are the families' own series: recording
/// through a handle is recording in the family).
#[derive(Debug)]
struct RouteHandles {
    /// The [`Metrics`] they belong to: a route name recorded by another registry (tests build
    /// several) goes through the family lookups there.
    owner: u64,
    latency: Histogram,
    /// Index = position in [`COMMON_STATUSES`].
    requests: [OnceLock<Counter>; COMMON_STATUSES.len()],
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl Hash for RouteLabel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: RouteLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    route: RouteLabel,
    error: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The gateway's metrics registry.
pub struct Metrics {
    /// Tells this registry's [`RouteHandles`] from another's.
    id: u64,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    auth_failures: Family<ReasonLabels, Counter>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    decisions: Family<OutcomeLabels, Counter>,
    revocations: Family<KindLabels, Gauge>,
    stale: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload: Gauge,
    key_generation: Gauge,
    logins: Family<OutcomeLabels, Counter>,
    registrations: Family<OutcomeLabels, Counter>,
    refreshes: Family<OutcomeLabels, Counter>,
    probes: Probes,
}

/// A value read when `/metrics` is scraped (connections, queue depth, ...).
pub type Probe = Box<dyn Fn() -> f64 + Send + Sync>;

/// Whether a probe is a gauge or a counter (a counter's name gets `_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Goes up and down.
    Gauge,
    /// Only goes up.
    Counter,
}

struct ProbeEntry {
    name: &'static str,
    help: &'static str,
    kind: ProbeKind,
    read: Probe,
}

/// The probes added after start (parts built after the registry), read on each scrape.
#[derive(Clone, Default)]
struct Probes(Arc<Mutex<Vec<ProbeEntry>>>);

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probes")
    }
}

impl Collector for Probes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let probes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for p in probes.iter() {
            let value = (p.read)();
            match p.kind {
                ProbeKind::Gauge => {
                    let metric = ConstGauge::new(value);
                    let e =
                        encoder.encode_descriptor(p.name, p.help, None, metric.metric_type())?;
                    metric.encode(e)?;
                }
                ProbeKind::Counter => {
                    let metric = ConstCounter::new(value);
                    let e =
                        encoder.encode_descriptor(p.name, p.help, None, metric.metric_type())?;
                    metric.encode(e)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut root = Registry::default();
        // The standard process_* families carry no prefix, as every exporter writes them.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("authgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        let decisions = Family::<OutcomeLabels, Counter>::default();
        let revocations = Family::<KindLabels, Gauge>::default();
        let stale = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let last_reload = Gauge::default();
        let key_generation = Gauge::default();
        registry.register(
            "build",
            "The running build: its version in a label, value 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let logins = Family::<OutcomeLabels, Counter>::default();
        let registrations = Family::<OutcomeLabels, Counter>::default();
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "logins",
            "Login attempts (POST to the login endpoint), by outcome: success or the error code",
            logins.clone(),
        );
        registry.register(
            "registrations",
            "Registration attempts, by outcome: success or the error code",
            registrations.clone(),
        );
        registry.register(
            "refreshes",
            "Token refreshes, by outcome: success or the error code",
            refreshes.clone(),
        );
        let probes = Probes::default();
        registry.register_collector(Box::new(probes.clone()));
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result: success or failure (nothing applied)",
            reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (start or reload), Unix seconds",
            last_reload.clone(),
        );
        registry.register(
            "token_key_generation",
            "Generation of the token key set: 0 at start, one more after each key reload",
            key_generation.clone(),
        );
        last_reload.set(unix_now());
        for result in ["success", "failure"] {
            // Both series exist from the start, so `increase()` sees the first failure.
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        registry.register(
            "requests",
            "Requests answered, by matched route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time until the response head was ready, by matched route",
            latency.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by an authentication or authorisation check, by error code",
            auth_failures.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures (refused, reset, garbage, timeout), by route and error code",
            upstream_errors.clone(),
        );
        registry.register(
            "forward_auth_decisions",
            "Forward-auth decisions, by outcome: allowed, or the refusal's error code",
            decisions.clone(),
        );
        registry.register(
            "revocation_entries",
            "Entries in the in-memory revocation index, by kind",
            revocations.clone(),
        );
        registry.register(
            "revocations_stale",
            "1 while the revocation index is not confirmed in sync with the store (a PostgreSQL \
             replica past max_staleness: authenticated requests answer 503), else 0",
            stale.clone(),
        );
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry: root,
            requests,
            latency,
            auth_failures,
            upstream_errors,
            decisions,
            revocations,
            stale,
            reloads,
            last_reload,
            key_generation,
            logins,
            registrations,
            refreshes,
            probes,
        }
    }

    /// Adds a family whose one value `read` gives on each scrape; `name` is without the
    /// `authgate_` prefix (and, for a counter, without `_total`).
    pub fn add_probe(
        &self,
        name: &'static str,
        help: &'static str,
        kind: ProbeKind,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.probes
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ProbeEntry {
                name,
                help,
                kind,
                read: Box::new(read),
            });
    }

    /// Counts a login, registration or refresh by outcome, from the answer of the endpoint
    /// named `endpoint`. Only `POST`s are attempts: `GET` of the login endpoint is the sign-in
    /// page, and other methods are answered 405 before any credential is looked at.
    pub fn record_account(
        &self,
        endpoint: &str,
        method: &Method,
        status: StatusCode,
        error_code: Option<&'static str>,
    ) {
        if *method != Method::POST {
            return;
        }
        let family = match endpoint {
            "auth:login" => &self.logins,
            "auth:register" => &self.registrations,
            "auth:refresh" => &self.refreshes,
            _ => return,
        };
        let outcome = if status.is_success() {
            "success"
        } else {
            error_code.unwrap_or("other")
        };
        family.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records one configuration reload; a success also sets the time of the last good one.
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        if ok {
            self.last_reload.set(unix_now());
        }
    }

    /// Sets the token key generation shown in the exposition.
    pub fn set_key_generation(&self, generation: u64) {
        self.key_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Records one forward-auth decision: allowed (`refusal` is `None`) or refused with that
    /// §1 code. The request itself is recorded by [`Metrics::record`] as any other.
    pub fn record_decision(&self, refusal: Option<&'static str>) {
        let outcome = refusal.unwrap_or("allowed");
        self.decisions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records one answered request; `error_code` is the §1 code of the gateway's own error
    /// answer, if it answered one.
    pub fn record(
        &self,
        route: &RouteLabel,
        status: StatusCode,
        latency: Duration,
        error_code: Option<&'static str>,
    ) {
        let handles = match route {
            RouteLabel::Route(name) => self.handles(name),
            RouteLabel::Static(_) => None,
        };
        let seconds = latency.as_secs_f64();
        match handles {
            Some(h) => h.latency.observe(seconds),
            None => self
                .latency
                .get_or_create(&RouteLabels {
                    route: route.clone(),
                })
                .observe(seconds),
        }
        match error_code {
            Some(code) if UPSTREAM_CODES.contains(&code) => {
                self.upstream_errors
                    .get_or_create(&UpstreamLabels {
                        route: route.clone(),
                        error: code,
                    })
                    .inc();
            }
            Some(code) if AUTH_FAILURE_CODES.contains(&code) => {
                self.auth_failures
                    .get_or_create(&ReasonLabels { reason: code })
                    .inc();
            }
            _ => {}
        }
        let status = status.as_u16();
        let labels = || RequestLabels {
            route: route.clone(),
            status,
        };
        let common = COMMON_STATUSES.iter().position(|&s| s == status);
        match handles.zip(common).and_then(|(h, i)| h.requests.get(i)) {
            Some(slot) => slot
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
    }

    /// `route`'s handles into this registry, resolved on its first request; `None` when they
    /// were resolved by another registry.
    fn handles<'a>(&self, route: &'a Arc<RouteName>) -> Option<&'a RouteHandles> {
        let handles = route.handles.get_or_init(|| RouteHandles {
            owner: self.id,
            latency: self
                .latency
                .get_or_create(&RouteLabels {
                    route: RouteLabel::Route(route.clone()),
                })
                .clone(),
            requests: Default::default(),
        });
        (handles.owner == self.id).then_some(handles)
    }

    /// The exposition text, with the revocation sizes and staleness as of now.
    pub fn render(&self, sizes: RevocationSizes, stale: bool) -> String {
        self.stale.set(i64::from(stale));
        for (kind, n) in [
            ("session", sizes.sessions),
            ("user", sizes.users),
            ("token", sizes.tokens),
        ] {
            self.revocations
                .get_or_create(&KindLabels { kind })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn sizes() -> RevocationSizes {
        RevocationSizes {
            sessions: 0,
            users: 0,
            tokens: 0,
        }
    }

    #[test]
    fn a_route_recorded_through_its_handles_counts_in_its_families_and_in_no_other_registry() {
        let (first, second) = (Metrics::new(), Metrics::new());
        let route = RouteLabel::Route(RouteName::new("/orders"));
        let ms = Duration::from_millis(2);
        for _ in 0..3 {
            first.record(&route, StatusCode::OK, ms, None);
        }
        // A status with no handle slot goes through the family lookup.
        first.record(&route, StatusCode::IM_A_TEAPOT, ms, None);
        // The same route name in another registry: its handles belong to the first.
        second.record(&route, StatusCode::OK, ms, None);
        let text = first.render(sizes(), false);
        for line in [
            r#"authgate_requests_total{route="/orders",status="200"} 3"#,
            r#"authgate_requests_total{route="/orders",status="418"} 1"#,
            r#"authgate_request_duration_seconds_count{route="/orders"} 4"#,
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        let text = second.render(sizes(), false);
        for line in [
            r#"authgate_requests_total{route="/orders",status="200"} 1"#,
            r#"authgate_request_duration_seconds_count{route="/orders"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
    }

    #[test]
    fn exposition_names_route_status_reason_upstream_and_revocation_families() {
        let m = Metrics::new();
        let api = RouteLabel::Route(RouteName::new("/api"));
        m.record(&api, StatusCode::OK, Duration::from_millis(3), None);
        let e = ApiError::TokenRevoked;
        m.record(&api, e.status(), Duration::from_millis(1), Some(e.code()));
        let e = ApiError::BadGateway;
        m.record(&api, e.status(), Duration::from_millis(1), Some(e.code()));
        m.record_decision(None);
        m.record_decision(Some("missing_token"));
        m.record_decision(None);
        let text = m.render(
            RevocationSizes {
                sessions: 2,
                users: 1,
                tokens: 0,
            },
            true,
        );
        assert!(
            text.contains(r#"authgate_requests_total{route="/api",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_auth_failures_total{reason="token_revoked"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_upstream_errors_total{route="/api",error="bad_gateway"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_forward_auth_decisions_total{outcome="allowed"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_forward_auth_decisions_total{outcome="missing_token"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"authgate_revocation_entries{kind="session"} 2"#),
            "{text}"
        );
        assert!(text.contains("authgate_revocations_stale 1"), "{text}");
        assert!(
            text.contains("authgate_request_duration_seconds_bucket{"),
            "{text}"
        );
    }
}
