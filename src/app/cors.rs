//! CORS for browsers on other origins (docs/http-api.md §7.4), applied by the public service to
//! every answer, the account endpoints' and the proxied ones alike; off while `[cors]
//! allowed_origins` is empty.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here,
//! before dispatch, without a token and never forwarded: `204` with the configured lists for an
//! allowed origin asking for an allowed method, `403 cors_forbidden` without any CORS header
//! otherwise. Every other answer loses the `Access-Control-*` headers an upstream sent — the
//! gateway alone decides who may read — and an answer to an allowed origin gets the gateway's.
//! A route with `cors = false` is left alone entirely (its upstream does CORS; the public
//! service skips both steps there).

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, Method, Response, StatusCode};

use crate::config::CorsConfig;
use crate::error::ApiError;
use crate::origin::Origin;
use crate::server::response::{full, Body};

/// The compiled `[cors]` section.
#[derive(Debug, Clone)]
pub struct Cors {
    config: CorsConfig,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    /// The CORS rules of `config`; `None` while no origin is allowed (CORS off).
    pub fn new(config: &CorsConfig) -> Option<Cors> {
        if !config.enabled() {
            return None;
        }
        let joined = |items: Vec<&str>| HeaderValue::from_str(&items.join(", ")).ok();
        let methods = config.allowed_methods.iter().map(Method::as_str).collect();
        let headers = config
            .allowed_headers
            .iter()
            .map(HeaderName::as_str)
            .collect();
        let expose: Vec<&str> = config
            .expose_headers
            .iter()
            .map(HeaderName::as_str)
            .collect();
        Some(Cors {
            config: config.clone(),
            // Validated method and header names always join into a header value.
            allow_methods: joined(methods).unwrap_or(HeaderValue::from_static("")),
            allow_headers: joined(headers).unwrap_or(HeaderValue::from_static("")),
            expose_headers: if expose.is_empty() {
                None
            } else {
                joined(expose)
            },
            max_age: HeaderValue::from(config.max_age.as_secs()),
        })
    }

    /// The request's `Origin` when it is one of the allowed origins (the value to echo).
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let value = headers.get(ORIGIN)?;
        let origin = Origin::parse(value.to_str().ok()?)?;
        self.config.allows(&origin).then(|| value.clone())
    }

    /// The answer to a preflight, or `None` when the request is not one.
    pub fn preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<Result<Response<Body>, ApiError>> {
        if *method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
            return None;
        }
        let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin = self.allowed_origin(headers);
        let method_allowed = Method::from_bytes(asked.as_bytes())
            .is_ok_and(|m| self.config.allowed_methods.contains(&m));
        let (Some(origin), true) = (origin, method_allowed) else {
            return Some(Err(ApiError::CorsForbidden));
        };
        let mut res = Response::new(full(bytes::Bytes::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        h.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.config.allow_credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        h.append(VARY, HeaderValue::from_static("Origin"));
        Some(Ok(res))
    }

    /// Makes `headers` carry the gateway's CORS headers for `origin` (an allowed origin, or
    /// `None` for any other) and none an upstream sent.
    pub fn decorate(&self, headers: &mut HeaderMap, origin: Option<HeaderValue>) {
        let upstream: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in upstream {
            headers.remove(name);
        }
        let Some(origin) = origin else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.config.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        let varies = headers
            .get_all(VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case("origin"));
        if !varies {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cors(credentials: bool) -> Cors {
        Cors::new(&CorsConfig {
            any_origin: false,
            allowed_origins: vec![Origin::parse("https://app.example.com").unwrap()],
            allowed_methods: vec![Method::GET, Method::POST],
            allowed_headers: vec![HeaderName::from_static("x-csrf-token")],
            expose_headers: vec![HeaderName::from_static("x-request-id")],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        })
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn preflights_are_told_apart_from_other_options_requests() {
        let c = cors(true);
        assert!(c.preflight(&Method::OPTIONS, &headers(&[])).is_none());
        let no_acrm = headers(&[("origin", "https://app.example.com")]);
        assert!(c.preflight(&Method::OPTIONS, &no_acrm).is_none());
        let pre = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(c.preflight(&Method::GET, &pre).is_none());
        let res = c.preflight(&Method::OPTIONS, &pre).unwrap().unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let h = res.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_HEADERS], "x-csrf-token");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(h[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[VARY], "Origin");
    }

    #[test]
    fn other_origins_and_methods_are_refused() {
        let c = cors(false);
        for (origin, method) in [
            ("https://evil.example", "POST"),
            ("null", "POST"),
            ("https://app.example.com", "DELETE"),
            ("https://app.example.com", "post"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
            h.insert(
                ACCESS_CONTROL_REQUEST_METHOD,
                HeaderValue::from_str(method).unwrap(),
            );
            assert_eq!(
                c.preflight(&Method::OPTIONS, &h).unwrap().unwrap_err(),
                ApiError::CorsForbidden,
                "{origin} {method}"
            );
        }
    }

    #[test]
    fn decoration_replaces_upstream_cors_headers_and_keeps_vary() {
        let c = cors(false);
        let mut h = headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("access-control-max-age", "99"),
            ("vary", "Accept-Encoding"),
        ]);
        let mut other = h.clone();
        c.decorate(&mut other, None);
        assert!(other.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert_eq!(other.len(), 1, "only Vary stays: {other:?}");
        c.decorate(
            &mut h,
            Some(HeaderValue::from_static("https://app.example.com")),
        );
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(h.get(ACCESS_CONTROL_MAX_AGE).is_none());
        assert_eq!(h[ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    }
}
