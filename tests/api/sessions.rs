//! Sessions (docs/http-api.md §2, §3, §6): login, refresh with rotation, reuse detection and the
//! grace rule, step-up with `/auth/fresh`, logout, token-type confusion, unknown user versus
//! wrong password, failed-login limiting, and revocations that survive a crash or come from
//! the operator CLI in another process.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, assert_limited, claims, client, user_cli_async, write_binary_config, Process,
    Setup, TestApp, Tokens, PASSWORD,
};

/// Three failures per username-and-address pair; the per-username and per-address tiers keep
/// their defaults (20).
const LIMIT_3: &str = "login_limit = { max_failures = 3, window = \"15m\" }";

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The tokens of a 200 login or refresh answer, after checking it is not cacheable.
async fn tokens_of(res: Response) -> Tokens {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "cache-control"), "no-store");
    let v: Value = res.json().await.unwrap();
    Tokens {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// The access token of a 200 `/auth/fresh` answer, after checking its shape.
async fn fresh_token_of(res: Response) -> String {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "cache-control"), "no-store");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    assert!(v.get("refresh_token").is_none(), "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> StatusCode {
    app.get(path, Some(token)).await.status()
}

async fn assert_revoked(app: &TestApp, token: &str) {
    for path in ["/auth/me", "/api/x"] {
        let r = app.get(path, Some(token)).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
}

async fn assert_refresh_revoked(app: &TestApp, refresh: &str) {
    let r = app.refresh(refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

fn setup_auth(auth: &str) -> Setup {
    Setup {
        auth: auth.into(),
        ..Setup::default()
    }
}

// ---------------------------------------------------------------- login

#[tokio::test(flavor = "multi_thread")]
async fn login_answers_a_fresh_access_token_and_a_refresh_token_that_are_not_cached() {
    let app = TestApp::spawn().await;
    let r = app.register("Helen", PASSWORD).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let r = app.login_raw("HELEN", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "cache-control"), "no-store");
    assert_eq!(header(r.headers(), "content-type"), "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
    let access = claims(v["access_token"].as_str().unwrap());
    let refresh = claims(v["refresh_token"].as_str().unwrap());

    assert_eq!(access["type"], "access");
    assert_eq!(access["fresh"], true);
    assert_eq!(access["username"], "Helen");
    assert_eq!(access["roles"], json!([]));
    assert_eq!(access["sub"], id.to_string());
    assert_eq!(access["iss"], "authgate");
    assert_eq!(access["auth_time"], access["iat"]);
    assert_eq!(access["nbf"], access["iat"]);
    assert_eq!(
        access["exp"].as_u64().unwrap() - access["iat"].as_u64().unwrap(),
        v["expires_in"].as_u64().unwrap()
    );
    // 128 random bits in base64url are at least 22 characters.
    assert!(access["jti"].as_str().unwrap().len() >= 22);

    assert_eq!(refresh["type"], "refresh");
    assert_eq!(refresh["sid"], access["sid"]);
    assert_eq!(refresh["sub"], access["sub"]);
    assert_ne!(refresh["jti"], access["jti"]);
    for absent in ["username", "roles", "fresh"] {
        assert!(refresh.get(absent).is_none(), "refresh carries {absent}");
    }
    // Thirty days by default.
    assert_eq!(
        refresh["exp"].as_u64().unwrap() - refresh["iat"].as_u64().unwrap(),
        30 * 24 * 3600
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_refuses_bad_bodies_before_checking_any_password() {
    let app = TestApp::spawn().await;
    for body in [
        json!({ "username": "x" }),
        json!({ "password": PASSWORD }),
        json!({ "username": "", "password": PASSWORD }),
        json!({ "username": "x", "password": null }),
        json!({ "username": "x", "password": "p".repeat(1025) }),
        json!({ "username": "u".repeat(65), "password": PASSWORD }),
    ] {
        let r = app
            .request(Method::POST, "/auth/login", None)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // A 1 MB password never reaches the hasher: the body limit refuses it first.
    let r = app.login_raw("x", &"p".repeat(1 << 20)).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_get_identical_answers() {
    let app = TestApp::spawn().await;
    app.register("ivan", PASSWORD).await;
    let unknown = app.login_raw("nobody", PASSWORD).await;
    let wrong = app.login_raw("ivan", "not the password").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), wrong.status());
    let strip = |h: &HeaderMap| {
        let mut v: Vec<(String, Vec<u8>)> = h
            .iter()
            .filter(|(k, _)| *k != "date" && *k != "x-request-id")
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(unknown.headers()), strip(wrong.headers()));
    assert_eq!(
        header(unknown.headers(), "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    let a = unknown.bytes().await.unwrap();
    let b = wrong.bytes().await.unwrap();
    assert_eq!(a, b);
    let v: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v["error"], "invalid_credentials");
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The ratio of the median times of 15 alternating failed logins each, for an unknown user
/// and for a wrong password.
async fn failed_login_time_ratio(app: &TestApp) -> (f64, Duration, Duration) {
    failed_login_time_ratio_of(app, "nobody", "judy").await
}

/// The ratio of the median times of 15 failed logins as `a` and as `b` (both wrong), larger
/// over smaller, and the two medians.
pub(crate) async fn failed_login_time_ratio_of(
    app: &TestApp,
    a: &str,
    b: &str,
) -> (f64, Duration, Duration) {
    let mut times_a = Vec::new();
    let mut times_b = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let r = app.login_raw(a, "not the password").await;
        times_a.push(t.elapsed());
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let t = Instant::now();
        let r = app.login_raw(b, "not the password").await;
        times_b.push(t.elapsed());
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let (u, w) = (median(times_a), median(times_b));
    (u.max(w).as_secs_f64() / u.min(w).as_secs_f64(), u, w)
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_and_wrong_password_take_similar_time() {
    // Up to 92 failed logins from one address, 47 of them for one user: every tier must
    // allow that many (max_failures alone no longer does since the tiers came).
    let app = TestApp::spawn_with(setup_auth(
        "login_limit = { max_failures = 1000, user_max_failures = 1000, \
         address_max_failures = 1000, window = \"15m\" }",
    ))
    .await;
    app.register("judy", PASSWORD).await;
    // Warm up both paths (connection, statement cache).
    app.login_raw("nobody", PASSWORD).await;
    app.login_raw("judy", "not the password").await;
    // Two shared cores and a parallel test suite make one round noisy: a real difference
    // (no dummy hash: ~1 ms against ~30 ms) fails every round, noise does not.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (ratio, u, w) = failed_login_time_ratio(&app).await;
        println!("failed-login medians: unknown {u:?}, wrong password {w:?}, ratio {ratio:.2}");
        if ratio <= 1.5 {
            return;
        }
        rounds.push(format!("unknown {u:?} / wrong password {w:?} = {ratio:.2}"));
    }
    panic!("median times differ by more than 1.5x in every round: {rounds:?}");
}

// ---------------------------------------------------------------- token types

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_is_refused_as_an_access_token_and_the_reverse() {
    let app = TestApp::spawn().await;
    let t = app.user("kim").await;
    for path in ["/auth/me", "/api/x", "/admin/x"] {
        let r = app.get(path, Some(&t.refresh)).await;
        assert!(header(r.headers(), "www-authenticate").contains("error=\"invalid_token\""));
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let r = app.refresh(&t.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Nothing was revoked by the attempts.
    assert_eq!(status_of(&app, "/api/x", &t.access).await, StatusCode::OK);
    tokens_of(app.refresh(&t.refresh).await).await;
}

// ---------------------------------------------------------------- refresh

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_refresh_token_and_issues_a_non_fresh_access_token() {
    let app = TestApp::spawn().await;
    let t = app.user("leo").await;
    let r = app.refresh(&t.refresh).await;
    assert_eq!(header(r.headers(), "cache-control"), "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    let next = Tokens {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
    };
    let (old_r, new_r) = (claims(&t.refresh), claims(&next.refresh));
    assert_ne!(new_r["jti"], old_r["jti"]);
    assert_eq!(new_r["sid"], old_r["sid"]);
    // No sliding expiry: the session ends where it did.
    assert_eq!(new_r["exp"], old_r["exp"]);
    let (login_a, new_a) = (claims(&t.access), claims(&next.access));
    assert_eq!(new_a["fresh"], false);
    assert_eq!(new_a["sid"], login_a["sid"]);
    assert_eq!(new_a["auth_time"], login_a["auth_time"]);
    assert_ne!(new_a["jti"], login_a["jti"]);
    assert_eq!(
        status_of(&app, "/auth/me", &next.access).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&app, "/api/x", &next.access).await,
        StatusCode::OK
    );
    // The new refresh token refreshes in turn.
    tokens_of(app.refresh(&next.refresh).await).await;

    let r = app
        .request(Method::POST, "/auth/refresh", None)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app.refresh("not.a.token").await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reusing_a_retired_refresh_token_after_the_grace_revokes_the_whole_session() {
    let app = TestApp::spawn_with(setup_auth("refresh_reuse_grace = \"0s\"")).await;
    let t = app.user("mia").await;
    let other = app.login("mia").await;
    let next = tokens_of(app.refresh(&t.refresh).await).await;

    // The retired token again: reuse.
    assert_refresh_revoked(&app, &t.refresh).await;
    // The whole session is gone: the current refresh token and every access token.
    assert_refresh_revoked(&app, &next.refresh).await;
    assert_revoked(&app, &t.access).await;
    assert_revoked(&app, &next.access).await;
    // Another session of the same user is not.
    assert_eq!(
        status_of(&app, "/auth/me", &other.access).await,
        StatusCode::OK
    );
    tokens_of(app.refresh(&other.refresh).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retired_refresh_token_within_the_grace_gets_the_sessions_current_refresh_token() {
    let app = TestApp::spawn().await; // grace 10 s by default
    let t = app.user("ned").await;
    let first = tokens_of(app.refresh(&t.refresh).await).await;
    let second = tokens_of(app.refresh(&t.refresh).await).await;

    let (c1, c2) = (claims(&first.refresh), claims(&second.refresh));
    assert_eq!(c2["jti"], c1["jti"], "the session's current refresh token");
    assert_eq!(c2["exp"], c1["exp"]);
    assert_eq!(c2, c1, "claims unchanged");
    let (a1, a2) = (claims(&first.access), claims(&second.access));
    assert_ne!(a2["jti"], a1["jti"], "a new access token");
    assert_eq!(a2["sid"], a1["sid"]);
    assert_eq!(a2["fresh"], false);
    // Nothing was revoked.
    for token in [&t.access, &first.access, &second.access] {
        assert_eq!(status_of(&app, "/auth/me", token).await, StatusCode::OK);
    }
    tokens_of(app.refresh(&second.refresh).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rotation_refresh_answers_no_refresh_token_and_the_old_one_keeps_working() {
    let app = TestApp::spawn_with(setup_auth("refresh_rotation = false")).await;
    let t = app.user("norot").await;
    for _ in 0..2 {
        let r = app.refresh(&t.refresh).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(r.headers(), "cache-control"), "no-store");
        let v: Value = r.json().await.unwrap();
        assert!(v.get("refresh_token").is_none(), "{v}");
        let access = v["access_token"].as_str().unwrap();
        assert_eq!(claims(access)["fresh"], false);
        assert_eq!(status_of(&app, "/api/x", access).await, StatusCode::OK);
    }
    // Logout still ends it.
    assert_eq!(app.logout(&t.access).await.status(), StatusCode::OK);
    assert_refresh_revoked(&app, &t.refresh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_refresh_token_is_token_expired() {
    let app = TestApp::spawn().await;
    let t = app.user("old.refresh").await;
    let mut c: authgate::auth::claims::Claims = serde_json::from_value(claims(&t.refresh)).unwrap();
    let now = authgate::clock::Clock::system().now() as u64;
    c.exp = now - 60;
    let expired = app.state.tokens.issue(&c).unwrap();
    let r = app.refresh(&expired).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_expired").await;
}

// ---------------------------------------------------------------- logout

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_the_sessions_refresh_token_and_every_access_token_refreshed_in_it() {
    let app = TestApp::spawn().await;
    let t = app.user("olga").await;
    let other = app.login("olga").await;
    let one = tokens_of(app.refresh(&t.refresh).await).await;
    let two = tokens_of(app.refresh(&one.refresh).await).await;

    let r = app.logout(&two.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].is_string());

    for token in [&t.access, &one.access, &two.access] {
        assert_revoked(&app, token).await;
    }
    assert_refresh_revoked(&app, &two.refresh).await;
    assert_refresh_revoked(&app, &one.refresh).await;
    // Logging out again: the session is already revoked.
    let r = app.logout(&t.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.logout(&two.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    // The user's other session keeps working.
    assert_eq!(
        status_of(&app, "/api/x", &other.access).await,
        StatusCode::OK
    );
    tokens_of(app.refresh(&other.refresh).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_accepts_the_refresh_token_and_ignores_any_body() {
    let app = TestApp::spawn().await;
    let t = app.user("pete").await;
    let r = app
        .request(Method::POST, "/auth/logout", Some(&t.refresh))
        .header("content-type", "text/plain")
        .body("\x00 not a body anyone reads")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_revoked(&app, &t.access).await;
    assert_refresh_revoked(&app, &t.refresh).await;
    let r = app
        .request(Method::POST, "/auth/logout", None)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app.logout("not.a.token").await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

// ---------------------------------------------------------------- freshness

#[tokio::test(flavor = "multi_thread")]
async fn a_login_token_is_fresh_and_a_refreshed_one_gets_a_step_up_challenge() {
    let app = TestApp::spawn().await;
    let t = app.user("quinn").await;
    assert_eq!(status_of(&app, "/admin/x", &t.access).await, StatusCode::OK);

    let stale = tokens_of(app.refresh(&t.refresh).await).await;
    let r = app.get("/admin/x", Some(&stale.access)).await;
    let challenge = header(r.headers(), "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("max_age=300"), "{challenge}");
    assert_error(r, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    // Routes that only need a token still take it.
    assert_eq!(
        status_of(&app, "/api/x", &stale.access).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn step_up_with_the_password_gives_a_fresh_token_in_the_same_session() {
    let app = TestApp::spawn().await;
    let t = app.user("rita").await;
    let stale = tokens_of(app.refresh(&t.refresh).await).await;

    for presented in [&stale.access, &stale.refresh] {
        let token = fresh_token_of(app.fresh(presented, PASSWORD).await).await;
        let c = claims(&token);
        assert_eq!(c["type"], "access");
        assert_eq!(c["fresh"], true);
        assert_eq!(c["sid"], claims(&t.access)["sid"]);
        assert_eq!(c["auth_time"], c["iat"], "auth_time is now");
        assert!(c["auth_time"].as_u64() >= claims(&t.access)["auth_time"].as_u64());
        assert_eq!(status_of(&app, "/admin/x", &token).await, StatusCode::OK);
    }

    let r = app.fresh(&stale.access, "not the password").await;
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = app
        .request(Method::POST, "/auth/fresh", None)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app
        .request(Method::POST, "/auth/fresh", Some(&stale.access))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A revoked session cannot step up.
    assert_eq!(app.logout(&stale.access).await.status(), StatusCode::OK);
    let r = app.fresh(&stale.access, PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

// ---------------------------------------------------------------- login limiting

#[tokio::test(flavor = "multi_thread")]
async fn after_max_failures_logins_are_429_even_with_the_right_password() {
    let app = TestApp::spawn_with(setup_auth(LIMIT_3)).await;
    app.register("tina", PASSWORD).await;
    for _ in 0..3 {
        let r = app.login_raw("tina", "not the password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(app.login_raw("tina", "not the password").await).await;
    assert_limited(app.login_raw("TINA", PASSWORD).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_concurrent_wrong_logins_gets_no_more_than_max_failures_password_checks() {
    let app = TestApp::spawn_with(setup_auth(LIMIT_3)).await;
    app.register("xena", PASSWORD).await;
    let started = app.state.hasher.hashes_started();
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let c = app.client.clone();
            let url = app.url("/auth/login");
            tokio::spawn(async move {
                c.post(url)
                    .json(&json!({ "username": "xena", "password": "not the password" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in burst {
        statuses.push(task.await.unwrap());
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized, 3, "{statuses:?}");
    assert_eq!(limited, 17, "{statuses:?}");
    assert_eq!(
        app.state.hasher.hashes_started() - started,
        3,
        "only three passwords were tried"
    );
    assert_limited(app.login_raw("xena", PASSWORD).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_step_ups_and_password_changes_count_towards_the_limit() {
    let app = TestApp::spawn_with(setup_auth(LIMIT_3)).await;
    let t = app.user("uma").await;
    for _ in 0..2 {
        let r = app.fresh(&t.access, "not the password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let r = app
        .request(Method::PUT, "/auth/password", Some(&t.access))
        .json(&json!({ "current_password": "not the password", "new_password": "whatever123" }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_limited(app.fresh(&t.access, PASSWORD).await).await;
    assert_limited(app.login_raw("uma", PASSWORD).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_is_limited_across_usernames() {
    // The per-address tier (address_max_failures) counts over every username.
    let app = TestApp::spawn_with(setup_auth(
        "login_limit = { max_failures = 3, address_max_failures = 3, window = \"15m\" }",
    ))
    .await;
    app.register("vic", PASSWORD).await;
    app.register("walt", PASSWORD).await;
    // One failure each for three names: no name is over its budget, the address is. The
    // peer is not a trusted proxy, so the X-Forwarded-For it sends changes nothing.
    for (name, claimed) in [
        ("vic", "192.0.2.1"),
        ("walt", "192.0.2.2"),
        ("nobody", "192.0.2.3"),
    ] {
        let r = app
            .request(Method::POST, "/auth/login", None)
            .header("x-forwarded-for", claimed)
            .json(&json!({ "username": name, "password": "not the password" }))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(app.login_raw("walt", PASSWORD).await).await;
    app.register("xena", PASSWORD).await;
    assert_limited(app.login_raw("xena", PASSWORD).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_username_is_limited_across_addresses_until_a_success_clears_it() {
    // The per-username tier (user_max_failures) counts over every address.
    let app = TestApp::spawn_with(Setup {
        auth: "login_limit = { max_failures = 3, user_max_failures = 3, window = \"15m\" }".into(),
        proxy: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    })
    .await;
    app.register("yann", PASSWORD).await;
    let login_from = |ip: &'static str, password: &'static str| {
        app.request(Method::POST, "/auth/login", None)
            .header("x-forwarded-for", ip)
            .json(&json!({ "username": "yann", "password": password }))
            .send()
    };
    // Two failures, then a success clears the username's count...
    for ip in ["192.0.2.1", "192.0.2.2"] {
        let r = login_from(ip, "not the password").await.unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_eq!(
        login_from("192.0.2.3", PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );
    // ...so three more failures from three new addresses are needed to lock the name.
    for ip in ["192.0.2.4", "192.0.2.5", "192.0.2.6"] {
        let r = login_from(ip, "not the password").await.unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(login_from("192.0.2.7", PASSWORD).await.unwrap()).await;
}

fn behind_a_proxy(login_limit: &str) -> Setup {
    Setup {
        auth: login_limit.into(),
        proxy: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn typos_from_one_address_lock_that_address_out_of_that_account_only() {
    let app = TestApp::spawn_with(behind_a_proxy(LIMIT_3)).await;
    app.register("zoe", PASSWORD).await;
    app.register("yuri", PASSWORD).await;
    for _ in 0..3 {
        let r = app
            .login_from("zoe", "198.51.100.1", "not the password")
            .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The pair is full: even the right password from there waits out the window...
    assert_limited(app.login_from("ZOE", "198.51.100.1", PASSWORD).await).await;
    // ...while the owner elsewhere, and others at that address, get in.
    let r = app.login_from("zoe", "198.51.100.2", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.login_from("yuri", "198.51.100.1", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tier_limits_at_its_own_count() {
    let app = TestApp::spawn_with(behind_a_proxy(
        "login_limit = { max_failures = 2, user_max_failures = 4, address_max_failures = 6, \
         window = \"15m\" }",
    ))
    .await;
    app.register("ada", PASSWORD).await;
    // Pair: two failures close ada at .1, not ada at .2.
    for _ in 0..2 {
        let r = app.login_from("ada", "203.0.113.1", "wrong password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(app.login_from("ada", "203.0.113.1", "wrong password").await).await;
    // User: two more from .2 make four for ada: closed from anywhere.
    for _ in 0..2 {
        let r = app.login_from("ada", "203.0.113.2", "wrong password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(app.login_from("ada", "203.0.113.3", PASSWORD).await).await;
    // Address: .9 tries six names once each (no pair or user tier is reached)...
    for name in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        let r = app.login_from(name, "203.0.113.9", "wrong password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // ...and is closed for every name, a registered one with its password too.
    app.register("bea", PASSWORD).await;
    assert_limited(app.login_from("bea", "203.0.113.9", PASSWORD).await).await;
    let r = app.login_from("bea", "203.0.113.10", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_unlock_lets_a_locked_out_owner_in_at_once() {
    let app = TestApp::spawn_with(behind_a_proxy(
        "login_limit = { max_failures = 2, user_max_failures = 3, window = \"15m\" }",
    ))
    .await;
    app.register("cleo", PASSWORD).await;
    for ip in ["192.0.2.50", "192.0.2.50", "192.0.2.51"] {
        let r = app.login_from("cleo", ip, "wrong password").await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    assert_limited(app.login_from("cleo", "192.0.2.50", PASSWORD).await).await;
    assert_limited(app.login_from("cleo", "192.0.2.52", PASSWORD).await).await;

    let out = user_cli_async(&app.config_path, &["user", "unlock", "CLEO"], None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("failed-login counts cleared"), "{stdout}");
    // Both the username's own count and its pairs are cleared.
    for ip in ["192.0.2.50", "192.0.2.52"] {
        let r = app.login_from("cleo", ip, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK, "from {ip}");
    }
}

// ---------------------------------------------------------------- the real binary

/// `POST base/auth/...` with a JSON body.
async fn post(c: &Client, url: String, token: Option<&str>, body: Value) -> Response {
    let mut req = c.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn login_at(c: &Client, base: &str, name: &str) -> Tokens {
    let body = json!({ "username": name, "password": PASSWORD });
    tokens_of(post(c, format!("{base}/auth/login"), None, body).await).await
}

async fn register_at(c: &Client, base: &str, name: &str) {
    let body = json!({ "username": name, "password": PASSWORD });
    let r = post(c, format!("{base}/auth/register"), None, body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn get_at(c: &Client, url: String, token: &str) -> Response {
    c.get(url).bearer_auth(token).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_survives_sigkill_and_restart_on_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_binary_config(dir.path(), "", "");
    let mut p = Process::start(&path, &[]);
    let base = format!("http://{}", p.addr);
    let c = client();
    register_at(&c, &base, "sam").await;
    let t = login_at(&c, &base, "sam").await;
    let keep = login_at(&c, &base, "sam").await;
    let r = post(
        &c,
        format!("{base}/auth/refresh"),
        Some(&t.refresh),
        json!({}),
    )
    .await;
    let next = tokens_of(r).await;
    let r = post(
        &c,
        format!("{base}/auth/logout"),
        Some(&next.access),
        json!({}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    p.signal("KILL");
    let code = tokio::task::spawn_blocking(move || p.wait()).await.unwrap();
    assert_eq!(code, None, "killed by the signal");

    let p = Process::start(&path, &[]);
    let base = format!("http://{}", p.addr);
    for token in [&t.access, &next.access] {
        let r = get_at(&c, format!("{base}/auth/me"), token).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    for token in [&t.refresh, &next.refresh] {
        let r = post(&c, format!("{base}/auth/refresh"), Some(token), json!({})).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    // Same key, same store: the session that was not logged out still works.
    let r = get_at(&c, format!("{base}/auth/me"), &keep.access).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_logout_all_beside_a_live_gateway_takes_effect_within_a_second() {
    let echo_stop = tokio_util::sync::CancellationToken::new();
    let echo = crate::echo::spawn(([127, 0, 0, 1], 0).into(), echo_stop.clone())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let routes =
        format!("[[routes]]\nprefix = \"/api\"\nupstream = \"http://{echo}\"\nauth = \"token\"\n");
    let path = write_binary_config(dir.path(), "", &routes);
    let p = Process::start(&path, &[]);
    let base = format!("http://{}", p.addr);
    let c = client();
    register_at(&c, &base, "Ruth").await;
    register_at(&c, &base, "bystander").await;
    let one = login_at(&c, &base, "ruth").await;
    let two = login_at(&c, &base, "ruth").await;
    let other = login_at(&c, &base, "bystander").await;
    let api = format!("{base}/api/x");
    assert_eq!(
        get_at(&c, api.clone(), &one.access).await.status(),
        StatusCode::OK
    );

    let out = user_cli_async(&path, &["user", "logout-all", "RUTH"], None).await;
    let start = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 session(s)"), "{stdout}");
    loop {
        let r = get_at(&c, api.clone(), &one.access).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still accepted after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = get_at(&c, api.clone(), &two.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    for token in [&one.refresh, &two.refresh] {
        let r = post(&c, format!("{base}/auth/refresh"), Some(token), json!({})).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    assert_eq!(
        get_at(&c, api, &other.access).await.status(),
        StatusCode::OK
    );
    drop(p);
    echo_stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_is_expired_once_its_session_ends_even_within_the_leeway() {
    let app = TestApp::spawn_with(Setup {
        tokens: "access_ttl = \"1s\"\nrefresh_ttl = \"2s\"\nleeway = \"30s\"".into(),
        ..Setup::default()
    })
    .await;
    let t = app.user("yara").await;
    let r = app.refresh(&t.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["expires_in"].as_u64().unwrap() <= 2, "{v}");
    // Time passing is the subject here: wait for the session's end.
    let end = claims(&t.refresh)["exp"].as_u64().unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        < end
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let current = v["refresh_token"].as_str().unwrap().to_owned();
    let r = app.refresh(&current).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_expired").await;
}
