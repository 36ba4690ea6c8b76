//! Forward-auth (docs/http-api.md §7.3): every rule of `/auth/verify` asked directly — who may ask,
//! where the original request is read from (and never from anywhere else), normalisation, the
//! route table and `default_auth`, the statuses it keeps to, the identity headers — and the
//! exact request shapes Traefik's `ForwardAuth` and Envoy's `ext_authz` send.

use std::collections::BTreeMap;
use std::net::IpAddr;

use reqwest::{Client, Response, StatusCode};

use crate::helpers::{
    assert_error, client, raw_request, RawResponse, Setup, TestApp, DEFAULT_ROUTES,
};

/// The identity headers under their default names.
const IDENTITY: [&str; 5] = [
    "x-auth-user-id",
    "x-auth-username",
    "x-auth-roles",
    "x-auth-session-id",
    "x-auth-fresh",
];

/// The default routes, plus an optional route and a route without an upstream that only
/// decides (token with role `ops`).
const ROUTES: &str = r#"
[[routes]]
prefix = "/opt"
upstream = "http://{echo}"
auth = "optional"

[[routes]]
prefix = "/decide"
auth = "token"
roles = ["ops"]
"#;

/// Forward-auth enabled with `lines` added to `[forward_auth]`, and the routes above.
fn enabled(lines: &str) -> Setup {
    Setup {
        forward_auth: format!("enabled = true\n{lines}"),
        routes: Some(format!("{DEFAULT_ROUTES}\n{ROUTES}")),
        ..Setup::default()
    }
}

/// `GET /auth/verify` as Traefik and Caddy ask: the original request in `X-Forwarded-Method`
/// and `X-Forwarded-Uri`.
async fn ask(app: &TestApp, method: &str, uri: &str, token: Option<&str>) -> Response {
    ask_with(
        &app.client,
        app,
        &[("x-forwarded-method", method), ("x-forwarded-uri", uri)],
        token,
    )
    .await
}

/// `GET /auth/verify` with `headers` and an optional bearer token, on `client`.
async fn ask_with(
    client: &Client,
    app: &TestApp,
    headers: &[(&str, &str)],
    token: Option<&str>,
) -> Response {
    let mut req = client.get(app.url("/auth/verify"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send_with(req, headers).await
}

/// `req` with `headers` added, sent.
async fn send_with(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Response {
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("verify request")
}

/// `method path` (a verify path) with `headers` and no token.
async fn ask_at(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    send_with(app.client.request(method, app.url(path)), headers).await
}

/// The identity headers of an answer, by name (absent ones left out).
fn identity_of(res: &Response) -> BTreeMap<&'static str, String> {
    IDENTITY
        .iter()
        .filter_map(|name| {
            let value = res.headers().get(*name)?;
            Some((*name, value.to_str().unwrap().to_owned()))
        })
        .collect()
}

/// Asserts an allowed decision: 200, empty body, every identity header present, a request id.
async fn assert_allowed(res: Response) -> BTreeMap<&'static str, String> {
    assert_eq!(res.status(), StatusCode::OK);
    let identity = identity_of(&res);
    assert_eq!(
        identity.len(),
        5,
        "every identity header is present: {identity:?}"
    );
    assert!(res.headers().contains_key("x-auth-request-id"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.bytes().await.unwrap().is_empty(),
        "an allowed decision has no body"
    );
    identity
}

/// The identity headers the echo upstream received on a proxied request.
async fn proxied_identity(
    app: &TestApp,
    path: &str,
    token: &str,
) -> BTreeMap<&'static str, String> {
    let res = app.get(path, Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let echo: serde_json::Value = res.json().await.unwrap();
    let mut seen = BTreeMap::new();
    for pair in echo["headers"].as_array().unwrap() {
        let name = pair[0].as_str().unwrap();
        if let Some(known) = IDENTITY.iter().find(|n| **n == name) {
            seen.insert(*known, pair[1].as_str().unwrap().to_owned());
        }
    }
    seen
}

/// A client whose connections come from `address` (another loopback address than the
/// gateway's 127.0.0.1).
fn client_from(address: [u8; 4]) -> Client {
    crate::helpers::crypto();
    Client::builder()
        .no_proxy()
        .local_address(IpAddr::from(address))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_valid_token_is_allowed_with_the_identity_headers_the_proxy_would_send() {
    let app = TestApp::spawn_with(enabled("")).await;
    let tokens = app.user("alice").await;
    let res = ask(&app, "GET", "/api/orders/1", Some(&tokens.access)).await;
    let rid = res.headers()["x-auth-request-id"].clone();
    assert_eq!(res.headers()["x-request-id"], rid);
    let decided = assert_allowed(res).await;
    assert_eq!(decided["x-auth-username"], "alice");
    assert_eq!(decided["x-auth-fresh"], "true");
    assert_eq!(
        decided,
        proxied_identity(&app, "/api/orders/1", &tokens.access).await
    );
    // A request id sent by the front proxy is kept.
    let res = ask_with(
        &app.client,
        &app,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/x"),
            ("x-request-id", "front-42"),
        ],
        Some(&tokens.access),
    )
    .await;
    assert_eq!(res.headers()["x-auth-request-id"], "front-42");
}

#[tokio::test]
async fn anonymous_decisions_carry_every_identity_header_empty() {
    let app = TestApp::spawn_with(enabled("")).await;
    let tokens = app.user("bob").await;
    let empty: BTreeMap<&str, String> = IDENTITY.iter().map(|n| (*n, String::new())).collect();
    // Public: no token needed, and a token sent is never read.
    let res = ask(&app, "GET", "/public/x", None).await;
    assert_eq!(assert_allowed(res).await, empty);
    let res = ask(&app, "POST", "/public/x", Some(&tokens.access)).await;
    assert_eq!(assert_allowed(res).await, empty);
    let res = ask(&app, "GET", "/public/x", Some("not-a-token")).await;
    assert_eq!(assert_allowed(res).await, empty);
    // Optional: anonymous passes empty, a valid token with its identity, a bad one is 401.
    let res = ask(&app, "GET", "/opt/x", None).await;
    assert_eq!(assert_allowed(res).await, empty);
    let res = ask(&app, "GET", "/opt/x", Some(&tokens.access)).await;
    assert_eq!(assert_allowed(res).await["x-auth-username"], "bob");
    let res = ask(&app, "GET", "/opt/x", Some("not-a-token")).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn refusals_are_the_proxys_401s_and_403s_as_json() {
    let app = TestApp::spawn_with(enabled("")).await;
    let tokens = app.user("carol").await;
    // No token.
    let res = ask(&app, "GET", "/api/x", None).await;
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"authgate\""
    );
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // Missing role (the /ops route needs `ops`), and on the decision-only route.
    let res = ask(&app, "GET", "/ops/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = ask(&app, "GET", "/decide/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // A refreshed (not fresh) token on a fresh route: the step-up challenge with max_age.
    let refreshed = app.refresh(&tokens.refresh).await;
    let refreshed: serde_json::Value = refreshed.json().await.unwrap();
    let refreshed = refreshed["access_token"].as_str().unwrap().to_owned();
    let res = ask(&app, "GET", "/admin/x", Some(&refreshed)).await;
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_user_authentication"),
        "{challenge}"
    );
    assert!(challenge.ends_with("max_age=300"), "{challenge}");
    assert_error(res, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let res = ask(&app, "GET", "/admin/x", Some(&tokens.access)).await;
    assert_allowed(res).await;
    // Revoked: after logout, as on proxied routes.
    assert_eq!(app.logout(&tokens.access).await.status(), StatusCode::OK);
    let res = ask(&app, "GET", "/api/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let res = app.get("/api/x", Some(&tokens.access)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

#[tokio::test]
async fn what_would_be_400_or_405_is_403_with_its_code() {
    let app = TestApp::spawn_with(enabled("")).await;
    app.user("dave").await;
    assert!(app.state.store.grant_role("dave", "ops").await.unwrap());
    let ops = app.login("dave").await.access;
    // 405 on /ops (GET only), after the token checks; no Allow header on a 403.
    let res = ask(&app, "DELETE", "/ops/x", Some(&ops)).await;
    assert!(res.headers().get("allow").is_none());
    assert_error(res, StatusCode::FORBIDDEN, "method_not_allowed").await;
    let res = ask(&app, "TRACE", "/public/x", None).await;
    assert_error(res, StatusCode::FORBIDDEN, "method_not_allowed").await;
    // Anonymous learns nothing from the method: the 401 comes first.
    let res = ask(&app, "DELETE", "/ops/x", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // Bad paths, in every spelling the proxy refuses with 400.
    for uri in [
        "/api/a%2Fb",
        "/public/..;/api",
        "/public/%2e%2e%3b/api",
        "api/x",
        "/a%zz",
    ] {
        let res = ask(&app, "GET", uri, None).await;
        assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    }
    // Two credentials.
    let res = app
        .client
        .get(app.url("/auth/verify"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/api/x")
        .header("authorization", format!("Bearer {ops}"))
        .header("authorization", format!("Bearer {ops}"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    // A method that is no method.
    let res = ask(&app, "G(ET", "/public/x", None).await;
    assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
}

#[tokio::test]
async fn a_missing_or_repeated_source_header_is_403_invalid_request() {
    let app = TestApp::spawn_with(enabled("")).await;
    for headers in [
        &[("x-forwarded-method", "GET")][..],
        &[("x-forwarded-uri", "/public/x")][..],
        &[][..],
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-uri", "/api/x"),
        ][..],
    ] {
        let res = ask_with(&app.client, &app, headers, None).await;
        assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    }
}

#[tokio::test]
async fn only_the_configured_source_is_read_never_another() {
    // nginx mode: X-Forwarded-* are client headers the subrequest copied, never read.
    let app = TestApp::spawn_with(enabled("source = \"x-original\"")).await;
    let spoof = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public/x"),
    ];
    let res = ask_with(&app.client, &app, &spoof, None).await;
    assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    let both = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/api/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public/x"),
        ("x-original-url", "/public/x"),
        ("x-rewrite-url", "/public/x"),
    ];
    let res = ask_with(&app.client, &app, &both, None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = ask_with(
        &app.client,
        &app,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
        ],
        None,
    )
    .await;
    assert_allowed(res).await;

    // Traefik/Caddy mode: X-Original-* are never read.
    let app = TestApp::spawn_with(enabled("source = \"x-forwarded\"")).await;
    let res = ask_with(
        &app.client,
        &app,
        &[
            ("x-original-method", "GET"),
            ("x-original-uri", "/public/x"),
        ],
        None,
    )
    .await;
    assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    let res = ask_with(
        &app.client,
        &app,
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/x"),
            ("x-original-uri", "/public/x"),
            ("x-http-method-override", "GET"),
        ],
        None,
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // The verify request's own method and path mean nothing in this mode.
    let asked = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/x")];
    let res = ask_at(&app, reqwest::Method::POST, "/auth/verify/public/x", &asked).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;

    // Envoy mode: the headers are never read, only the verify request's own method and path.
    let app = TestApp::spawn_with(enabled("source = \"path\"")).await;
    let res = ask(&app, "GET", "/public/x", None).await;
    assert_error(res, StatusCode::FORBIDDEN, "invalid_request").await;
    let spoof = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public/x"),
    ];
    let res = ask_at(&app, reqwest::Method::GET, "/auth/verify/api/x", &spoof).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test]
async fn the_original_uri_is_normalised_as_a_proxied_path_and_its_host_ignored() {
    let app = TestApp::spawn_with(enabled("")).await;
    for uri in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x?x=/public",
        "//api//x",
        "/public/./../api",
        "http://public.example/api/x",
        "https://h/public/../api/x",
        "/API/../api/x",
    ] {
        let res = ask(&app, "GET", uri, None).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
    // `/apix` is not under `/api`, and a query is not a path.
    for uri in ["/public/x?/api", "/public", "http://api/public/y"] {
        assert_allowed(ask(&app, "GET", uri, None).await).await;
    }
    // Unmatched (`/apix` matches no route): default_auth = "token".
    let res = ask(&app, "GET", "/apix", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test]
async fn default_auth_decides_paths_no_route_matches() {
    let app = TestApp::spawn_with(enabled("")).await;
    let tokens = app.user("erin").await;
    let res = ask(&app, "GET", "/elsewhere", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    let res = ask(&app, "GET", "/elsewhere", Some(&tokens.access)).await;
    assert_eq!(assert_allowed(res).await["x-auth-username"], "erin");

    let app = TestApp::spawn_with(enabled("default_auth = \"public\"")).await;
    let res = ask(&app, "GET", "/elsewhere", None).await;
    assert!(assert_allowed(res).await.values().all(String::is_empty));
    // Routes still decide their own paths.
    let res = ask(&app, "GET", "/api/x", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;

    let app = TestApp::spawn_with(enabled("default_auth = \"fresh\"")).await;
    let tokens = app.user("frank").await;
    let refreshed: serde_json::Value = app.refresh(&tokens.refresh).await.json().await.unwrap();
    let refreshed = refreshed["access_token"].as_str().unwrap();
    let res = ask(&app, "GET", "/elsewhere", Some(refreshed)).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    assert_allowed(ask(&app, "GET", "/elsewhere", Some(&tokens.access)).await).await;
}

#[tokio::test]
async fn a_route_without_upstream_decides_and_answers_proxied_requests_404() {
    let app = TestApp::spawn_with(enabled("")).await;
    app.user("gina").await;
    assert!(app.state.store.grant_role("gina", "ops").await.unwrap());
    let ops = app.login("gina").await.access;
    let res = ask(&app, "GET", "/decide/x", Some(&ops)).await;
    assert_eq!(assert_allowed(res).await["x-auth-roles"], "ops");
    // Proxied: 404 before any check, with or without a token.
    for token in [None, Some(ops.as_str()), Some("garbage")] {
        let res = app.get("/decide/x", token).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn only_allowed_peers_may_ask_judged_by_the_tcp_peer() {
    // Default: loopback only, 127.0.0.0/8 being loopback too: 127.0.0.1/32 exactly.
    let app = TestApp::spawn_with(enabled("allowed_peers = [\"127.0.0.1/32\"]")).await;
    let outsider = client_from([127, 0, 0, 2]);
    let headers = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/public/x"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("forwarded", "for=127.0.0.1"),
    ];
    let res = ask_with(&outsider, &app, &headers, None).await;
    let body = assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(
        body["message"].as_str().unwrap().contains("may not ask"),
        "{body}"
    );
    // The peer check comes first: even a malformed question is refused as forbidden.
    let res = ask_with(&outsider, &app, &[], None).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_allowed(ask_with(&app.client, &app, &headers, None).await).await;

    let app = TestApp::spawn_with(enabled("allowed_peers = [\"127.0.0.2\"]")).await;
    assert_allowed(ask_with(&outsider, &app, &headers, None).await).await;
    let res = ask_with(&app.client, &app, &headers, None).await;
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    // The rest of the gateway is not affected by the peer list.
    let res = app.client.get(app.url("/public/x")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn path_mode_reads_the_verify_requests_own_method_and_path() {
    let app = TestApp::spawn_with(enabled("source = \"path\"")).await;
    let tokens = app.user("hana").await;
    let res = app
        .client
        .delete(app.url("/auth/verify/api/orders/1?x=1"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(assert_allowed(res).await["x-auth-username"], "hana");
    let res = app
        .client
        .get(app.url("/auth/verify/public/x"))
        .send()
        .await
        .unwrap();
    assert_allowed(res).await;
    // Raw paths, as sent: dot segments are normalised like a proxied path; bad paths (in any
    // spelling the proxy answers 400) and a verify path without one are 403 invalid_request.
    let raw = |target: &'static str, method: &'static str| async move {
        raw_request(app.addr, method, target, &[]).await
    };
    let res: RawResponse = raw("/auth/verify/public/../api/x", "GET").await;
    assert_eq!(
        (res.status, res.error_code()),
        (401, "missing_token".to_owned())
    );
    let res = raw("/auth/verify/public/%2e%2e/api/x", "GET").await;
    assert_eq!(
        (res.status, res.error_code()),
        (401, "missing_token".to_owned())
    );
    for target in [
        "/auth/verify/api/a%2Fb",
        "/auth/verify/public/..;/api",
        "/auth/verify/public/%2e%2e%3B/api",
        "/auth/verify/x%5Cy",
        "/auth/verify",
    ] {
        let res = raw(target, "GET").await;
        assert_eq!(res.status, 403, "{target}: {}", res.text());
        assert_eq!(res.error_code(), "invalid_request", "{target}");
        assert_eq!(res.header("content-type"), Some("application/json"));
    }
    // The method comes from the verify request: TRACE is never allowed, as on the proxy.
    let res = raw("/auth/verify/public/x", "TRACE").await;
    assert_eq!(
        (res.status, res.error_code()),
        (403, "method_not_allowed".to_owned())
    );
    // `/auth/verifyx` is not the verify path: an unknown endpoint.
    let res = raw("/auth/verifyx", "GET").await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn verify_is_an_unknown_endpoint_while_forward_auth_is_off() {
    let app = TestApp::spawn().await;
    let res = ask(&app, "GET", "/public/x", None).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .get(app.url("/auth/verify/api"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_draining_gateway_refuses_decisions_with_503() {
    let app = TestApp::spawn_with(enabled("")).await;
    app.state.drain.start();
    let res = ask(&app, "GET", "/public/x", None).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

#[tokio::test]
async fn decisions_are_counted_by_outcome() {
    let app = TestApp::spawn_with(enabled("")).await;
    assert_allowed(ask(&app, "GET", "/public/x", None).await).await;
    assert_allowed(ask(&app, "GET", "/public/y", None).await).await;
    let res = ask(&app, "GET", "/api/x", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = ask(&app, "GET", "/api/%2F", None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let text = client()
        .get(format!("http://{}/metrics", app.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"authgate_forward_auth_decisions_total{outcome="allowed"} 2"#,
        r#"authgate_forward_auth_decisions_total{outcome="missing_token"} 1"#,
        r#"authgate_forward_auth_decisions_total{outcome="invalid_request"} 1"#,
        r#"authgate_requests_total{route="auth:verify",status="200"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[tokio::test]
async fn a_reload_changes_the_decisions_with_the_route_table() {
    let app = TestApp::spawn_with(enabled("")).await;
    assert_allowed(ask(&app, "GET", "/public/x", None).await).await;
    let mut setup = app.setup.clone();
    setup.routes = Some("[[routes]]\nprefix = \"/public\"\nauth = \"token\"\n".to_owned());
    std::fs::write(
        &app.config_path,
        setup.config_text(app.dir.path(), app.echo),
    )
    .unwrap();
    app.reload.reload_from(&app.config_path).await.unwrap();
    let res = ask(&app, "GET", "/public/x", None).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "missing_token").await;
    // And the proxy no longer forwards there: the route now only decides.
    let res = app.get("/public/x", None).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

/// Traefik's `ForwardAuth` (pkg/middlewares/auth/forward.go): always `GET` to the configured
/// address, every client header copied (hop-by-hop ones removed), then `X-Forwarded-For`
/// (the client's address), `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` set from the
/// original request, overwriting client copies. Go's client adds `User-Agent` and
/// `Accept-Encoding`.
#[tokio::test]
async fn traefik_forward_auth_requests_are_decided_as_sent() {
    let app = TestApp::spawn_with(enabled("source = \"x-forwarded\"")).await;
    let tokens = app.user("ivan").await;
    let bearer = format!("Bearer {}", tokens.access);
    let host = app.addr.to_string();
    let traefik = |method: &'static str, uri: &'static str, auth: Option<&str>| {
        let mut headers = vec![
            ("Host", host.clone()),
            ("User-Agent", "Go-http-client/1.1".to_owned()),
            ("Accept", "application/json".to_owned()),
            // A client-sent header Traefik copies along, never read in this mode.
            ("X-Original-Uri", "/public/spoof".to_owned()),
            ("X-Forwarded-For", "203.0.113.7".to_owned()),
            ("X-Forwarded-Host", "app.example.com".to_owned()),
            ("X-Forwarded-Method", method.to_owned()),
            ("X-Forwarded-Proto", "https".to_owned()),
            ("X-Forwarded-Uri", uri.to_owned()),
            ("Accept-Encoding", "gzip".to_owned()),
        ];
        if let Some(auth) = auth {
            headers.insert(3, ("Authorization", auth.to_owned()));
        }
        headers
    };
    let send = |headers: Vec<(&'static str, String)>| async move {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        raw_request(app.addr, "GET", "/auth/verify", &refs).await
    };
    let res = send(traefik("DELETE", "/api/orders/1?force=true", Some(&bearer))).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("x-auth-username"), Some("ivan"));
    assert_eq!(res.header("x-auth-fresh"), Some("true"));
    assert!(res.body.is_empty());
    let res = send(traefik("GET", "/api/orders/1", None)).await;
    assert_eq!(
        (res.status, res.error_code()),
        (401, "missing_token".to_owned())
    );
    assert_eq!(
        res.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );
    let res = send(traefik("POST", "/public/form", None)).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header_all("x-auth-user-id"), [""]);
    // Traefik answers any non-2xx itself with authgate's body: it must be §1 JSON.
    let res = send(traefik("GET", "/ops/x", Some(&bearer))).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["error"], "forbidden");
}

/// Envoy's `ext_authz` HTTP service (api/envoy/extensions/filters/http/ext_authz/v3): the
/// original method, `path_prefix` + the original path and query, the original `:authority`
/// as `Host`, `Content-Length: 0` and no body, `Authorization` and the `allowed_headers`
/// (here `cookie` and `x-request-id`); header names in lower case as Envoy writes them.
#[tokio::test]
async fn envoy_ext_authz_requests_are_decided_as_sent() {
    let app = TestApp::spawn_with(enabled("source = \"path\"")).await;
    let tokens = app.user("judy").await;
    let bearer = format!("Bearer {}", tokens.access);
    let envoy = |auth: Option<&str>| {
        let mut headers = vec![
            ("host", "app.example.com".to_owned()),
            ("content-length", "0".to_owned()),
            ("x-request-id", "5b2d1a0e-envoy".to_owned()),
            ("cookie", "theme=dark".to_owned()),
            ("x-envoy-expected-rq-timeout-ms", "200".to_owned()),
            ("x-envoy-internal", "true".to_owned()),
            ("x-forwarded-for", "203.0.113.9".to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
        ];
        if let Some(auth) = auth {
            headers.push(("authorization", auth.to_owned()));
        }
        headers
    };
    let send = |method: &'static str,
                target: &'static str,
                headers: Vec<(&'static str, String)>| async move {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        raw_request(app.addr, method, target, &refs).await
    };
    let res = send(
        "PATCH",
        "/auth/verify/api/orders/7?dry=1",
        envoy(Some(&bearer)),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("x-auth-username"), Some("judy"));
    assert_eq!(res.header("x-auth-request-id"), Some("5b2d1a0e-envoy"));
    let res = send("PATCH", "/auth/verify/api/orders/7", envoy(None)).await;
    assert_eq!(
        (res.status, res.error_code()),
        (401, "missing_token".to_owned())
    );
    let res = send("GET", "/auth/verify/public/", envoy(None)).await;
    assert_eq!(res.status, 200);
    for name in IDENTITY {
        assert_eq!(res.header_all(name), [""], "{name}");
    }
    let res = send("GET", "/auth/verify/ops/x", envoy(Some(&bearer))).await;
    assert_eq!(
        (res.status, res.error_code()),
        (403, "forbidden".to_owned())
    );
}
