//! The operator listener's service: `/healthz` (process up), `/readyz` (store reachable,
//! revocations in sync, not draining) and `/metrics` (Prometheus text). Never served on the
//! public port.

use std::sync::Arc;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::drain::Drain;
use super::response::{full, Body};
use super::{ConnInfo, Handler};
use crate::auth::revocation::RevocationIndex;
use crate::error::ApiError;
use crate::store::health::WriteHealth;
use crate::store::Store;
use crate::telemetry::metrics::{self, Metrics};

/// Answers the admin endpoints.
pub struct AdminService {
    drain: Arc<Drain>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    revocations: Arc<RevocationIndex>,
    /// Whether the store's last write (real or the background probe's) was accepted.
    write_health: Option<Arc<WriteHealth>>,
}

impl AdminService {
    /// An admin service reporting on `drain`, `store`, `metrics` and the revocation index.
    pub fn new(
        drain: Arc<Drain>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        revocations: Arc<RevocationIndex>,
    ) -> Self {
        Self {
            drain,
            store,
            metrics,
            revocations,
            write_health: None,
        }
    }

    /// Readiness also requires the store to have accepted its last write.
    pub fn with_write_health(mut self, health: Arc<WriteHealth>) -> Self {
        self.write_health = Some(health);
        self
    }

    /// The exposition, rendered on the blocking pool (the process figures read `/proc`).
    async fn metrics(&self) -> Response<Body> {
        let metrics = self.metrics.clone();
        let (sizes, stale) = (self.revocations.sizes(), self.revocations.is_stale());
        let text = tokio::task::spawn_blocking(move || metrics.render(sizes, stale))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "metrics task failed");
                String::new()
            });
        let mut res = Response::new(full(text));
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        res
    }

    async fn readiness(&self) -> (StatusCode, &'static str) {
        if self.drain.is_draining() {
            return (StatusCode::SERVICE_UNAVAILABLE, "draining");
        }
        // A stale replica refuses authenticated requests: a load balancer should skip it.
        if self.revocations.is_stale() {
            return (StatusCode::SERVICE_UNAVAILABLE, "revocations not in sync");
        }
        // Recorded by the writes themselves and a background probe: no write per /readyz.
        if self.write_health.as_ref().is_some_and(|h| !h.is_writable()) {
            return (StatusCode::SERVICE_UNAVAILABLE, "store not writable");
        }
        match self.store.ping().await {
            Ok(()) => (StatusCode::OK, "ready"),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: store unreachable");
                (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
            }
        }
    }
}

impl Handler for AdminService {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
        let (status, text) = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok"),
            (&Method::GET | &Method::HEAD, "/readyz") => self.readiness().await,
            (&Method::GET | &Method::HEAD, "/metrics") => return self.metrics().await,
            (_, "/healthz" | "/readyz" | "/metrics") => {
                return ApiError::MethodNotAllowed {
                    allow: HeaderValue::from_static("GET, HEAD"),
                }
                .into_response()
            }
            _ => return ApiError::NotFound.into_response(),
        };
        let body = serde_json::json!({ "status": text });
        let mut res = Response::new(full(body.to_string()));
        *res.status_mut() = status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}
