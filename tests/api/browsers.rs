//! Browsers (docs/http-api.md §7.4): tokens in cookies with their attributes, the `csrf` claim and
//! double-submit checks in the §7.2 order, which cookie authenticates which endpoint, header
//! beats cookie, logout clearing, `tokens_in_body`, the sign-in page (open redirects, login
//! CSRF, byte-identical failures), and CORS preflights and headers.

use std::collections::HashMap;

use base64::Engine;
use cookie::time::Duration as CookieDuration;
use cookie::{Cookie, SameSite};
use reqwest::header::HeaderMap;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{assert_error, claims, header, Setup, TestApp, PASSWORD};

pub const ACCESS: &str = "access_token_cookie";
pub const REFRESH: &str = "refresh_token_cookie";
pub const CSRF_ACCESS: &str = "csrf_access_token";
pub const CSRF_REFRESH: &str = "csrf_refresh_token";

/// Cookies on, CORS for `http://app.example` with credentials.
pub fn browser_setup(cookies: &str) -> Setup {
    Setup {
        cookies: format!("enabled = true\n{cookies}"),
        cors: "allowed_origins = [\"http://app.example\"]\nallow_credentials = true".into(),
        ..Setup::default()
    }
}

/// Every `Set-Cookie` of a response, parsed, by name (each name at most once).
pub fn set_cookies(headers: &HeaderMap) -> HashMap<String, Cookie<'static>> {
    let mut out = HashMap::new();
    for v in headers.get_all("set-cookie") {
        let c = Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
        let name = c.name().to_owned();
        assert!(out.insert(name.clone(), c).is_none(), "{name} set twice");
    }
    out
}

/// The cookies a browser would hold after `res`, as `name=value` pairs.
struct Jar(HashMap<String, String>);

impl Jar {
    fn from(res: &Response) -> Jar {
        Jar(set_cookies(res.headers())
            .into_iter()
            .map(|(n, c)| (n, c.value().to_owned()))
            .collect())
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    /// A `Cookie` header with the named cookies.
    fn header(&self, names: &[&str]) -> String {
        names
            .iter()
            .map(|n| format!("{n}={}", self.get(n)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A request with `cookie`, and `X-CSRF-TOKEN: csrf` when given.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> Response {
    let mut req = with_cookie(app, method, path, cookie);
    if let Some(value) = csrf {
        req = req.header("x-csrf-token", value);
    }
    req.send().await.unwrap()
}

async fn sign_in(app: &TestApp, name: &str) -> (Response, Jar) {
    let r = app.register(name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.login_raw(name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let jar = Jar::from(&r);
    (r, jar)
}

fn with_cookie(app: &TestApp, method: Method, path: &str, cookie: &str) -> reqwest::RequestBuilder {
    app.request(method, path, None).header("cookie", cookie)
}

#[tokio::test(flavor = "multi_thread")]
async fn login_sets_four_cookies_with_their_attributes_and_the_csrf_claims() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (r, _) = sign_in(&app, "cookie.alice").await;
    let cookies = set_cookies(r.headers());
    let body: Value = r.json().await.unwrap();
    let (access, refresh) = (
        body["access_token"].as_str().unwrap(),
        body["refresh_token"].as_str().unwrap(),
    );
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    for (name, value, path, http_only) in [
        (ACCESS, access, "/", true),
        (REFRESH, refresh, "/auth", true),
    ] {
        let c = &cookies[name];
        assert_eq!(c.value(), value, "{name}");
        assert_eq!(c.path(), Some(path), "{name}");
        assert_eq!(c.http_only(), Some(http_only), "{name}");
    }
    let access_claims = claims(access);
    let refresh_claims = claims(refresh);
    for (name, claims) in [
        (CSRF_ACCESS, &access_claims),
        (CSRF_REFRESH, &refresh_claims),
    ] {
        let c = &cookies[name];
        assert_eq!(c.path(), Some("/"), "{name}: readable by pages anywhere");
        assert_ne!(c.http_only(), Some(true), "{name}: readable by scripts");
        let csrf = claims["csrf"].as_str().unwrap();
        assert_eq!(c.value(), csrf, "{name} is the token's csrf claim");
        let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(csrf)
            .unwrap()
            .len()
            * 8;
        assert!(bits >= 128, "{name}: {bits} bits");
    }
    assert_ne!(access_claims["csrf"], refresh_claims["csrf"]);
    for c in cookies.values() {
        assert_eq!(c.secure(), Some(true), "{}", c.name());
        assert_eq!(c.same_site(), Some(SameSite::Lax), "{}", c.name());
        assert_eq!(c.domain(), None, "{}: host-only by default", c.name());
    }
    assert_eq!(
        cookies[ACCESS].max_age(),
        Some(CookieDuration::seconds(expires_in))
    );
    assert_eq!(
        cookies[CSRF_ACCESS].max_age(),
        Some(CookieDuration::seconds(expires_in))
    );
    let refresh_life =
        refresh_claims["exp"].as_i64().unwrap() - refresh_claims["iat"].as_i64().unwrap();
    for name in [REFRESH, CSRF_REFRESH] {
        let age = cookies[name].max_age().unwrap().whole_seconds();
        assert!(
            (refresh_life - 2..=refresh_life).contains(&age),
            "{name}: {age} vs {refresh_life}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_attributes_and_tokens_in_body_false() {
    let app = TestApp::spawn_with(browser_setup(
        "secure = false\nsame_site = \"Strict\"\ndomain = \"example.com\"\ntokens_in_body = false",
    ))
    .await;
    let (r, jar) = sign_in(&app, "cookie.bob").await;
    let cookies = set_cookies(r.headers());
    for c in cookies.values() {
        assert_eq!(c.secure(), None, "{}", c.name());
        assert_eq!(c.same_site(), Some(SameSite::Strict), "{}", c.name());
        assert_eq!(c.domain(), Some("example.com"), "{}", c.name());
    }
    assert_eq!(header(r.headers(), "cache-control"), "no-store");
    let body: Value = r.json().await.unwrap();
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    // The cookies alone carry the session, refresh included.
    let r = send(
        &app,
        Method::POST,
        "/auth/refresh",
        &jar.header(&[REFRESH]),
        Some(jar.get(CSRF_REFRESH)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        set_cookies(r.headers()).len(),
        4,
        "rotation hands out a new refresh cookie"
    );
    let body: Value = r.json().await.unwrap();
    assert!(body.get("access_token").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cookies_enabled_tokens_carry_no_csrf_and_cookies_are_no_credential() {
    let app = TestApp::spawn().await;
    let r = app.register("plain", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.login_raw("plain", PASSWORD).await;
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert!(claims(access).get("csrf").is_none());
    let r = send(
        &app,
        Method::GET,
        "/api/x",
        &format!("{ACCESS}={access}"),
        None,
    )
    .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_authenticates_and_every_unsafe_method_needs_the_csrf_header() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (_, jar) = sign_in(&app, "csrf.carol").await;
    let cookie = jar.header(&[ACCESS, CSRF_ACCESS]);
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let r = send(&app, method.clone(), "/api/x", &cookie, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{method} needs no CSRF header");
    }
    let r = send(&app, Method::GET, "/api/x", &cookie, None).await;
    let echo: Value = r.json().await.unwrap();
    let user = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-auth-username")
        .map(|h| h[1].clone());
    assert_eq!(user, Some(Value::from("csrf.carol")));
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let r = send(&app, method.clone(), "/api/x", &cookie, None).await;
        assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
        let r = send(
            &app,
            method.clone(),
            "/api/x",
            &cookie,
            Some(jar.get(CSRF_REFRESH)),
        )
        .await;
        assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
        let r = with_cookie(&app, method.clone(), "/api/x", &cookie)
            .header("x-csrf-token", jar.get(CSRF_ACCESS))
            .header("x-csrf-token", jar.get(CSRF_ACCESS))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
        let r = send(
            &app,
            method.clone(),
            "/api/x",
            &cookie,
            Some(jar.get(CSRF_ACCESS)),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{method} with the CSRF header");
    }
    // The account endpoints too.
    let r = send(&app, Method::GET, "/auth/me", &cookie, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&app, Method::DELETE, "/auth/me", &cookie, None).await;
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn csrf_comes_after_revocation_and_before_freshness_and_method() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (_, jar) = sign_in(&app, "order.dave").await;
    let cookie = jar.header(&[ACCESS]);
    // Refreshed: a not-fresh access token in the cookie.
    let r = send(
        &app,
        Method::POST,
        "/auth/refresh",
        &jar.header(&[REFRESH]),
        Some(jar.get(CSRF_REFRESH)),
    )
    .await;
    let stale = Jar::from(&r);
    let stale_cookie = stale.header(&[ACCESS]);
    // /admin needs a fresh token; /ops a role and GET only: CSRF is reported first.
    for path in ["/admin/x", "/ops/x"] {
        let r = send(&app, Method::POST, path, &stale_cookie, None).await;
        assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    }
    let r = send(
        &app,
        Method::POST,
        "/admin/x",
        &stale_cookie,
        Some(stale.get(CSRF_ACCESS)),
    )
    .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    // Logged out: revocation is reported before CSRF.
    let r = send(
        &app,
        Method::POST,
        "/auth/logout",
        &cookie,
        Some(jar.get(CSRF_ACCESS)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&app, Method::POST, "/api/x", &cookie, None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_header_beats_any_cookie() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (r, jar) = sign_in(&app, "header.erin").await;
    let body: Value = r.json().await.unwrap();
    let bearer = body["access_token"].as_str().unwrap();
    let cookie = jar.header(&[ACCESS]);
    // A bad header is judged alone, even with a good cookie.
    let r = with_cookie(&app, Method::GET, "/api/x", &cookie)
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = with_cookie(&app, Method::GET, "/api/x", &cookie)
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    // A good header needs no CSRF header, whatever cookie comes along.
    let r = with_cookie(&app, Method::POST, "/api/x", "access_token_cookie=garbage")
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_of_duplicate_cookie_names_counts() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (_, jar) = sign_in(&app, "dup.frank").await;
    let good = jar.get(ACCESS);
    let r = with_cookie(
        &app,
        Method::GET,
        "/api/x",
        &format!("{ACCESS}=bad.to.ken; {ACCESS}={good}"),
    )
    .send()
    .await
    .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = with_cookie(
        &app,
        Method::GET,
        "/api/x",
        &format!("{ACCESS}={good}; {ACCESS}=bad.to.ken"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_endpoint_reads_its_own_cookie() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (_, jar) = sign_in(&app, "which.gina").await;
    // /auth/refresh: the refresh cookie only.
    let r = send(
        &app,
        Method::POST,
        "/auth/refresh",
        &jar.header(&[ACCESS]),
        Some(jar.get(CSRF_ACCESS)),
    )
    .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    // Everything else: the access cookie only.
    let r = send(&app, Method::GET, "/api/x", &jar.header(&[REFRESH]), None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    // /auth/fresh: the access cookie, with its CSRF value.
    let both = jar.header(&[ACCESS, REFRESH]);
    let r = with_cookie(&app, Method::POST, "/auth/fresh", &both)
        .header("x-csrf-token", jar.get(CSRF_REFRESH))
        .json(&serde_json::json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = with_cookie(&app, Method::POST, "/auth/fresh", &both)
        .header("x-csrf-token", jar.get(CSRF_ACCESS))
        .json(&serde_json::json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stepped = set_cookies(r.headers());
    assert_eq!(
        stepped.len(),
        2,
        "step-up sets the access pair: {stepped:?}"
    );
    assert_eq!(claims(stepped[ACCESS].value())["fresh"], true);
    // /auth/fresh with only the refresh cookie falls back to it.
    let r = with_cookie(&app, Method::POST, "/auth/fresh", &jar.header(&[REFRESH]))
        .header("x-csrf-token", jar.get(CSRF_REFRESH))
        .json(&serde_json::json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // /auth/logout with only the refresh cookie ends the session.
    let r = send(
        &app,
        Method::POST,
        "/auth/logout",
        &jar.header(&[REFRESH]),
        Some(jar.get(CSRF_REFRESH)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = send(&app, Method::GET, "/api/x", &jar.header(&[ACCESS]), None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

fn assert_all_cleared(headers: &HeaderMap) {
    let cookies = set_cookies(headers);
    assert_eq!(cookies.len(), 4, "{cookies:?}");
    for (name, path) in [
        (ACCESS, "/"),
        (REFRESH, "/auth"),
        (CSRF_ACCESS, "/"),
        (CSRF_REFRESH, "/"),
    ] {
        let c = &cookies[name];
        assert_eq!(c.value(), "", "{name}");
        assert_eq!(c.max_age(), Some(CookieDuration::ZERO), "{name}");
        assert_eq!(c.path(), Some(path), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_logout_answer_clears_the_four_cookies() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let (_, jar) = sign_in(&app, "bye.hank").await;
    let cookie = jar.header(&[ACCESS]);
    // Refused for CSRF, for no credential, for a revoked one, for the method: cleared anyway.
    let r = send(&app, Method::POST, "/auth/logout", &cookie, None).await;
    assert_all_cleared(r.headers());
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = app
        .request(Method::POST, "/auth/logout", None)
        .send()
        .await
        .unwrap();
    assert_all_cleared(r.headers());
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app
        .request(Method::GET, "/auth/logout", None)
        .send()
        .await
        .unwrap();
    assert_all_cleared(r.headers());
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = send(
        &app,
        Method::POST,
        "/auth/logout",
        &cookie,
        Some(jar.get(CSRF_ACCESS)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_all_cleared(r.headers());
    let r = send(
        &app,
        Method::POST,
        "/auth/logout",
        &cookie,
        Some(jar.get(CSRF_ACCESS)),
    )
    .await;
    assert_all_cleared(r.headers());
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

// ---------------------------------------------------------------- the sign-in page

fn html(app: &TestApp, path: &str, accept: &str) -> reqwest::RequestBuilder {
    app.request(Method::GET, path, None)
        .header("accept", accept)
}

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test(flavor = "multi_thread")]
async fn get_login_serves_the_page_to_browsers_only() {
    let app = TestApp::spawn_with(browser_setup(
        "redirect_origins = [\"https://app.example.com\", \"http://localhost:3000\"]",
    ))
    .await;
    let r = html(&app, "/auth/login?rd=/app%3Fx%3D1", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "content-type"),
        "text/html; charset=utf-8"
    );
    assert_eq!(
        header(r.headers(), "content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' \
         https://app.example.com http://localhost:3000"
    );
    assert_eq!(header(r.headers(), "x-frame-options"), "DENY");
    let page = r.text().await.unwrap();
    for part in [
        "<html lang=\"en\">",
        "<h1>Sign in</h1>",
        "<form method=\"post\" action=\"/auth/login\">",
        "<input type=\"hidden\" name=\"rd\" value=\"/app?x=1\">",
        "<label for=\"username\">",
        "autocomplete=\"username\"",
        "<label for=\"password\">",
        "autocomplete=\"current-password\"",
    ] {
        assert!(page.contains(part), "{part} in {page}");
    }
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(!page.contains("src="), "no external assets");
    assert!(!page.contains("href="), "no external assets");
    // rd is escaped.
    let r = html(
        &app,
        "/auth/login?rd=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        "text/html",
    )
    .send()
    .await
    .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "{page}"
    );
    // Other Accept values keep the 405.
    for accept in [
        "application/json",
        "*/*",
        "text/html;q=0.5, application/json",
    ] {
        let r = html(&app, "/auth/login", accept).send().await.unwrap();
        assert_eq!(header(r.headers(), "allow"), "POST", "{accept}");
        assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
    let r = app
        .request(Method::GET, "/auth/login", None)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cookies_get_login_is_405_even_for_browsers() {
    let app = TestApp::spawn().await;
    let r = html(&app, "/auth/login", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

/// A form-encoded `POST /auth/login`.
fn form(app: &TestApp, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    app.request(Method::POST, "/auth/login", None)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
}

async fn page_post(
    app: &TestApp,
    user: &str,
    password: &str,
    rd: &str,
    origin: Option<&str>,
) -> Response {
    let mut req = form(
        app,
        &[("username", user), ("password", password), ("rd", rd)],
    );
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_post_redirects_to_rd_with_cookies_and_no_tokens() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    assert_eq!(
        app.register("page.ivy", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let r = page_post(&app, "page.ivy", PASSWORD, "/app/home?tab=1", None).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(r.headers(), "location"), "/app/home?tab=1");
    assert_eq!(header(r.headers(), "cache-control"), "no-store");
    let cookies = set_cookies(r.headers());
    assert_eq!(cookies.len(), 4);
    let jar = Jar::from(&r);
    assert!(r.bytes().await.unwrap().is_empty(), "no tokens in the body");
    let r = send(&app, Method::GET, "/api/x", &jar.header(&[ACCESS]), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A JSON login with rd is an API login, and a form login without rd too.
    let r = app
        .request(Method::POST, "/auth/login", None)
        .json(&serde_json::json!({ "username": "page.ivy", "password": PASSWORD, "rd": "/x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = form(&app, &[("username", "page.ivy"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn rd_may_only_lead_to_this_host_or_a_redirect_origin() {
    let app = TestApp::spawn_with(browser_setup(
        "redirect_origins = [\"https://app.example.com\"]",
    ))
    .await;
    assert_eq!(
        app.register("rd.jack", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let table = [
        ("/app", "/app"),
        ("/app/x?y=%2F", "/app/x?y=%2F"),
        (
            "https://app.example.com/dash",
            "https://app.example.com/dash",
        ),
        ("https://app.example.com", "https://app.example.com"),
        ("", "/"),
        ("//evil.example", "/"),
        ("//evil.example/app", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("https:evil.example", "/"),
        ("https:/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("http://app.example.com/", "/"),
        ("https://app.example.com.evil.example/", "/"),
        ("https://app.example.com@evil.example/", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/%2f%2fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("/%252F%252Fevil.example", "/"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r\n/evil.example", "/"),
        ("\t//evil.example", "/"),
        ("/%09/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
    ];
    for (rd, location) in table {
        let r = page_post(&app, "rd.jack", PASSWORD, rd, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{rd:?}");
        assert_eq!(header(r.headers(), "location"), location, "{rd:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_page_post_is_the_page_again_with_the_same_bytes_for_any_bad_credentials() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    assert_eq!(
        app.register("fail.kate", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let wrong = page_post(&app, "fail.kate", "wrong password!", "/app", None).await;
    let unknown = page_post(&app, "nobody.here", "wrong password!", "/app", None).await;
    let mut bodies = Vec::new();
    for r in [wrong, unknown] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(r.headers(), "content-type"),
            "text/html; charset=utf-8"
        );
        assert!(header(r.headers(), "www-authenticate").starts_with("Bearer realm=\"authgate\""));
        assert_eq!(header(r.headers(), "x-frame-options"), "DENY");
        assert!(r.headers().get("set-cookie").is_none());
        let length = header(r.headers(), "content-length");
        let body = r.bytes().await.unwrap();
        assert_eq!(length, body.len().to_string());
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1], "byte-identical pages");
    let page = String::from_utf8(bodies[0].to_vec()).unwrap();
    assert!(
        page.contains("role=\"alert\">Invalid username or password.</p>"),
        "{page}"
    );
    assert!(page.contains("name=\"rd\" value=\"/app\""));
    assert!(!page.contains("fail.kate") && !page.contains("nobody.here"));
}

#[tokio::test(flavor = "multi_thread")]
async fn login_csrf_a_page_post_from_a_foreign_origin_is_refused() {
    let app = TestApp::spawn_with(browser_setup(
        "redirect_origins = [\"https://app.example.com\"]",
    ))
    .await;
    assert_eq!(
        app.register("origin.liam", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let this_host = format!("http://{}", app.addr);
    let other_scheme = format!("https://{}", app.addr);
    let other_port = format!("http://127.0.0.1:{}", app.addr.port() + 1);
    for origin in [&this_host, &other_scheme, "https://app.example.com"] {
        let r = page_post(&app, "origin.liam", PASSWORD, "/", Some(origin)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{origin}");
    }
    for origin in ["https://evil.example", "null", other_port.as_str()] {
        let r = page_post(&app, "origin.liam", PASSWORD, "/", Some(origin)).await;
        assert!(r.headers().get("set-cookie").is_none());
        assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    }
}

// ---------------------------------------------------------------- CORS

fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::RequestBuilder {
    app.request(Method::OPTIONS, path, None)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", "x-csrf-token")
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_from_allowed_origins_are_answered_by_the_gateway_on_any_path() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    for path in [
        "/api/x",
        "/admin/x",
        "/auth/login",
        "/auth/refresh",
        "/nowhere",
    ] {
        let r = preflight(&app, path, "http://app.example", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
        let h = r.headers();
        assert_eq!(
            header(h, "access-control-allow-origin"),
            "http://app.example"
        );
        assert_eq!(
            header(h, "access-control-allow-methods"),
            "GET, HEAD, POST, PUT, PATCH, DELETE"
        );
        assert_eq!(
            header(h, "access-control-allow-headers"),
            "authorization, content-type, x-csrf-token, x-request-id"
        );
        assert_eq!(header(h, "access-control-max-age"), "600");
        assert_eq!(header(h, "access-control-allow-credentials"), "true");
        assert_eq!(header(h, "vary"), "Origin");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}: not forwarded");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_from_other_origins_or_for_other_methods_are_refused_without_cors_headers() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    for (origin, method) in [
        ("https://evil.example", "POST"),
        ("http://app.example:8080", "POST"),
        ("null", "GET"),
        ("http://app.example", "TRACE"),
        ("http://app.example", "CONNECT"),
    ] {
        let r = preflight(&app, "/api/x", origin, method)
            .send()
            .await
            .unwrap();
        assert!(
            !r.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{origin} {method}: {:?}",
            r.headers()
        );
        assert_error(r, StatusCode::FORBIDDEN, "cors_forbidden").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_own_answers_to_allowed_origins_carry_cors_headers() {
    let app = TestApp::spawn_with(browser_setup("")).await;
    let r = app
        .request(Method::GET, "/api/x", None)
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        "http://app.example"
    );
    assert_eq!(header(h, "access-control-allow-credentials"), "true");
    assert_eq!(header(h, "access-control-expose-headers"), "x-request-id");
    assert_eq!(header(h, "vary"), "Origin");
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let (_, jar) = sign_in(&app, "cors.mia").await;
    let r = with_cookie(&app, Method::GET, "/auth/me", &jar.header(&[ACCESS]))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        "http://app.example"
    );
    // Other origins get nothing.
    let r = app
        .request(Method::GET, "/api/x", None)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-")));
    assert!(r.headers().get("vary").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_cors_options_preflights_are_not_answered_by_the_gateway() {
    let app = TestApp::spawn().await;
    let r = preflight(&app, "/api/x", "http://app.example", "POST")
        .send()
        .await
        .unwrap();
    assert!(!r
        .headers()
        .keys()
        .any(|k| k.as_str().starts_with("access-control-")));
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
}

// ---------------------------------------------------------------- proxied requests

/// An upstream answering every request `200 ok` with CORS headers of its own.
async fn cors_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\
                          Access-Control-Allow-Origin: *\r\n\
                          Access-Control-Allow-Credentials: true\r\n\
                          Access-Control-Allow-Methods: DELETE\r\n\
                          Vary: Accept-Encoding\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn echoed_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

fn access_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut v: Vec<_> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    v.sort();
    v
}

const PROXY_ROUTES: &str = r#"
[[routes]]
prefix = "/open"
upstream = "http://{echo}"
auth = "public"

[[routes]]
prefix = "/creds"
upstream = "http://{echo}"
auth = "token"
forward_authorization = true

[[routes]]
prefix = "/own-cors"
upstream = "http://{echo}"
auth = "token"
cors = false

[[routes]]
prefix = "/app"
upstream = "http://{echo}"
auth = "token"
login_redirect = true
"#;

fn proxy_setup(upstream: Option<std::net::SocketAddr>) -> Setup {
    let mut routes = format!("{}{PROXY_ROUTES}", crate::helpers::DEFAULT_ROUTES);
    if let Some(up) = upstream {
        routes.push_str(&format!(
            "\n[[routes]]\nprefix = \"/up\"\nupstream = \"http://{up}\"\nauth = \"public\"\n\
             \n[[routes]]\nprefix = \"/up-own\"\nupstream = \"http://{up}\"\nauth = \"public\"\ncors = false\n"
        ));
    }
    Setup {
        routes: Some(routes),
        ..browser_setup("")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateways_cookies_never_reach_an_upstream_unless_the_route_forwards_credentials() {
    let app = TestApp::spawn_with(proxy_setup(None)).await;
    let (_, jar) = sign_in(&app, "strip.nina").await;
    let cookie = format!(
        "theme=dark; {}; lang=en",
        jar.header(&[ACCESS, CSRF_ACCESS, REFRESH, CSRF_REFRESH])
    );
    for path in ["/api/x", "/open/x"] {
        let r = send(&app, Method::GET, path, &cookie, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(
            echoed_values(&echo, "cookie"),
            ["theme=dark; lang=en"],
            "{path}"
        );
    }
    let only = send(&app, Method::GET, "/api/x", &jar.header(&[ACCESS]), None).await;
    let echo: Value = only.json().await.unwrap();
    assert!(echoed_values(&echo, "cookie").is_empty(), "{echo}");
    let r = send(&app, Method::GET, "/creds/x", &cookie, None).await;
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echoed_values(&echo, "cookie"), [cookie]);

    // Without cookie mode the names are nobody's: an upstream's own cookies pass.
    let plain = TestApp::spawn().await;
    let r = with_cookie(
        &plain,
        Method::GET,
        "/public/x",
        "access_token_cookie=theirs; a=1",
    )
    .send()
    .await
    .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        echoed_values(&echo, "cookie"),
        ["access_token_cookie=theirs; a=1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxied_answers_get_the_gateways_cors_headers_instead_of_the_upstreams() {
    let up = cors_upstream().await;
    let app = TestApp::spawn_with(proxy_setup(Some(up))).await;
    let r = app
        .request(Method::GET, "/up/x", None)
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        access_headers(r.headers()),
        [
            ("access-control-allow-credentials".into(), "true".into()),
            (
                "access-control-allow-origin".into(),
                "http://app.example".into()
            ),
            (
                "access-control-expose-headers".into(),
                "x-request-id".into()
            ),
        ]
    );
    let vary: Vec<_> = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);
    // Another origin, or none: the upstream's CORS headers are gone all the same.
    for origin in [Some("https://evil.example"), None] {
        let mut req = app.request(Method::GET, "/up/x", None);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(access_headers(r.headers()).is_empty(), "{origin:?}");
    }
    // A cors = false route passes the upstream's headers and adds none.
    let r = app
        .request(Method::GET, "/up-own/x", None)
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        access_headers(r.headers()),
        [
            ("access-control-allow-credentials".into(), "true".into()),
            ("access-control-allow-methods".into(), "DELETE".into()),
            ("access-control-allow-origin".into(), "*".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_cors_false_route_preflights_are_forwarded_as_public_requests() {
    let app = TestApp::spawn_with(proxy_setup(None)).await;
    for origin in ["http://app.example", "https://evil.example"] {
        let r = preflight(&app, "/own-cors/x", origin, "DELETE")
            .header("x-auth-user-id", "7")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{origin}: the upstream answered"
        );
        assert!(access_headers(r.headers()).is_empty());
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["method"], "OPTIONS");
        assert!(
            echoed_values(&echo, "x-auth-user-id").is_empty(),
            "no identity"
        );
    }
    // Other requests there still need a token, and get no CORS headers.
    let r = app
        .request(Method::GET, "/own-cors/x", None)
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert!(access_headers(r.headers()).is_empty());
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_redirect_sends_browsers_without_a_token_to_the_sign_in_page() {
    let app = TestApp::spawn_with(proxy_setup(None)).await;
    let redirected = [
        BROWSER_ACCEPT,
        "text/html",
        "application/json, text/html",
        "text/html;q=0.9, application/json;q=0.9",
    ];
    for accept in redirected {
        let r = html(&app, "/app/orders/1?tab=a%20b&x=1", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{accept}");
        assert_eq!(
            header(r.headers(), "location"),
            "/auth/login?rd=%2Fapp%2Forders%2F1%3Ftab%3Da%2520b%26x%3D1",
            "{accept}"
        );
    }
    for accept in [
        "application/json",
        "*/*",
        "text/html;q=0.5, application/json",
        "",
    ] {
        let r = html(&app, "/app/x", accept).send().await.unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
    // Only GET; only on login_redirect routes; a bad cookie is a 401 too.
    let r = app
        .request(Method::POST, "/app/x", None)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = html(&app, "/api/x", BROWSER_ACCEPT).send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = html(&app, "/app/x", BROWSER_ACCEPT)
        .header("cookie", "access_token_cookie=expired.or.bad")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    // The page the redirect names takes the browser back after signing in.
    let (_, jar) = sign_in(&app, "redirect.olga").await;
    let r = html(&app, "/app/x", BROWSER_ACCEPT)
        .header("cookie", jar.header(&[ACCESS]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = page_post(
        &app,
        "redirect.olga",
        PASSWORD,
        "/app/orders/1?tab=a%20b&x=1",
        None,
    )
    .await;
    assert_eq!(
        header(r.headers(), "location"),
        "/app/orders/1?tab=a%20b&x=1"
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_open(
    app: &TestApp,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws/", app.addr)
        .into_client_request()
        .unwrap();
    for (n, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(n.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake within 10 s")
    .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_authenticated_websockets_need_an_allowed_origin() {
    let ws = crate::proxy::ws_echo_upstream().await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"token\"\n"
        )),
        ..browser_setup("")
    })
    .await;
    let (r, jar) = sign_in(&app, "ws.pat").await;
    let body: Value = r.json().await.unwrap();
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let cookie = jar.header(&[ACCESS]);
    let this_host = format!("http://{}", app.addr);
    let behind_tls = format!("https://{}", app.addr);
    for origin in [
        this_host.as_str(),
        behind_tls.as_str(),
        "http://app.example",
    ] {
        let opened = ws_open(&app, &[("cookie", &cookie), ("origin", origin)]).await;
        assert!(opened.is_ok(), "{origin}: {opened:?}");
    }
    let other_port = format!("http://127.0.0.1:{}", app.addr.port() + 1);
    for origin in [
        Some("https://evil.example"),
        Some("null"),
        Some(other_port.as_str()),
        None,
    ] {
        let mut headers = vec![("cookie", cookie.as_str())];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        match ws_open(&app, &headers).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin:?}");
                let body: Value = serde_json::from_slice(res.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"], "forbidden");
            }
            other => panic!("{origin:?}: {other:?}"),
        }
    }
    // A bearer header is no ambient credential: no Origin rule.
    let opened = ws_open(
        &app,
        &[
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert!(opened.is_ok(), "{opened:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_websocket_is_closed_with_1008_when_its_session_logs_out() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws = crate::proxy::ws_echo_upstream().await;
    let app = TestApp::spawn_with(Setup {
        routes: Some(format!(
            "[[routes]]\nprefix = \"/ws\"\nupstream = \"http://{ws}\"\nauth = \"token\"\n"
        )),
        ..browser_setup("")
    })
    .await;
    let (_, jar) = sign_in(&app, "ws.quinn").await;
    let cookie = jar.header(&[ACCESS]);
    let origin = format!("http://{}", app.addr);
    let mut socket = ws_open(&app, &[("cookie", &cookie), ("origin", &origin)])
        .await
        .unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    let echo = socket.next().await.unwrap().unwrap();
    assert_eq!(echo, Message::text("hello"));
    let r = send(
        &app,
        Method::POST,
        "/auth/logout",
        &cookie,
        Some(jar.get(CSRF_ACCESS)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("closed in time");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(frame.reason, "token revoked");
        }
        other => panic!("{other:?}"),
    }
}

/// A forward-auth decision on `GET /auth/verify` for `method /api/x`, with `cookie`, an
/// allowed `Origin`, and `X-CSRF-TOKEN: csrf` when given.
async fn verify(app: &TestApp, cookie: &str, method: &str, csrf: Option<&str>) -> Response {
    let mut req = with_cookie(app, Method::GET, "/auth/verify", cookie)
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", "/api/x")
        .header("origin", "http://app.example");
    if let Some(value) = csrf {
        req = req.header("x-csrf-token", value);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_auth_decides_on_token_cookies_with_csrf_for_the_original_method() {
    let app = TestApp::spawn_with(Setup {
        forward_auth: "enabled = true".into(),
        ..browser_setup("")
    })
    .await;
    let (_, jar) = sign_in(&app, "verify.rita").await;
    let cookie = jar.header(&[ACCESS]);
    let r = verify(&app, &cookie, "GET", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "x-auth-username"), "verify.rita");
    assert!(
        access_headers(r.headers()).is_empty(),
        "no CORS on decisions"
    );
    let r = verify(&app, &cookie, "POST", None).await;
    assert_error(r, StatusCode::FORBIDDEN, "csrf_failed").await;
    let r = verify(&app, &cookie, "POST", Some(jar.get(CSRF_ACCESS))).await;
    assert_eq!(r.status(), StatusCode::OK);
}
