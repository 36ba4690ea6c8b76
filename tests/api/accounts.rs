//! Accounts (docs/http-api.md §3): register with every §1 error it can produce, the caller's own
//! account (`/auth/me`, `PUT /auth/password`, `DELETE /auth/me`), the admin user resource,
//! the JWK Set, unknown endpoints and methods, and the operator's `authgate user` commands.

use std::time::{Duration, Instant};

use authgate::auth::claims::Claims;
use bytes::Bytes;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_error, claims, user_cli_async, Setup, TestApp, Tokens, PASSWORD};

const NEW_PASSWORD: &str = "a brand new passphrase";

/// `POST path` with `body` sent as is under `content_type` (none when `None`).
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let mut req = app.request(Method::POST, path, None).body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    req.send().await.unwrap()
}

/// `POST path` with a JSON body.
async fn post_json(app: &TestApp, path: &str, body: &Value) -> Response {
    app.request(Method::POST, path, None)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Registers `name` with [`PASSWORD`] and returns its id.
async fn register_id(app: &TestApp, name: &str) -> i64 {
    let r = app.register(name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED, "register {name}");
    r.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// Creates `name` with [`PASSWORD`] through the operator CLI and returns its id. Changes:
/// `root` used to be registered over HTTP; it is a reserved username now (refused at
/// registration, allowed from the CLI).
async fn cli_user_id(app: &TestApp, name: &str) -> i64 {
    let stdin = format!("{PASSWORD}\n");
    let out = user_cli_async(&app.config_path, &["user", "add", name], Some(&stdin)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = app.state.store.user_by_name(name).await.unwrap();
    user.expect("created by the CLI").user.id
}

/// `PUT /auth/password` with `token`.
async fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> Response {
    app.request(Method::PUT, "/auth/password", Some(token))
        .json(&json!({ "current_password": current, "new_password": new }))
        .send()
        .await
        .unwrap()
}

/// `DELETE /auth/me` with `token`.
async fn delete_me(app: &TestApp, token: &str) -> Response {
    app.request(Method::DELETE, "/auth/me", Some(token))
        .send()
        .await
        .unwrap()
}

/// A token that is not fresh: the access token of a refresh.
async fn refreshed(app: &TestApp, t: &Tokens) -> Tokens {
    let r = app.refresh(&t.refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    Tokens {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// The `{"message"}` body of a 200.
async fn assert_message(res: Response) {
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert!(v["message"].is_string(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
}

/// Asserts the 401 `token_revoked` of a revoked token on `/auth/me`.
async fn assert_revoked_on_me(app: &TestApp, token: &str) {
    let r = app.get("/auth/me", Some(token)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// An app with the `admin` role granted to `root` and a fresh login of theirs.
async fn app_with_admin() -> (TestApp, Tokens) {
    let app = TestApp::spawn().await;
    cli_user_id(&app, "root").await;
    assert!(app.state.store.grant_role("root", "admin").await.unwrap());
    let admin = app.login("root").await;
    (app, admin)
}

/// `claims` signed with the gateway's own HS256 secret and `kid`, bypassing the checks its
/// token service makes before signing (it refuses a foreign `iss` or `aud`).
fn sign(app: &TestApp, claims: &Claims) -> String {
    let secret = std::fs::read(app.dir.path().join("jwt-secret")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(app.state.tokens.signing_kid());
    let key = jsonwebtoken::EncodingKey::from_secret(&secret);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

// ---------------------------------------------------------------- register

#[tokio::test(flavor = "multi_thread")]
async fn register_answers_201_with_id_username_and_message_only() {
    let app = TestApp::spawn().await;
    let r = app.register("Alice.B-1_x@example", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(r.headers(), "content-type"), "application/json");
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_i64().unwrap() >= 1, "{v}");
    assert_eq!(v["username"], "Alice.B-1_x@example");
    assert!(v["message"].is_string());
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "nothing else, no hash: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_username_is_409_whatever_its_case() {
    let app = TestApp::spawn().await;
    let first = register_id(&app, "Alice").await;
    for name in ["Alice", "alice", "ALICE"] {
        let r = app.register(name, "another password").await;
        assert_error(r, StatusCode::CONFLICT, "username_taken").await;
    }
    // The first account is untouched: its password still logs in.
    let t = app.login("alice").await;
    assert_eq!(claims(&t.access)["sub"], first.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_or_missing_fields_are_400_invalid_request() {
    let app = TestApp::spawn().await;
    let bodies = [
        json!({ "username": "", "password": PASSWORD }),
        json!({ "username": null, "password": PASSWORD }),
        json!({ "password": PASSWORD }),
        json!({ "username": "bob", "password": "" }),
        json!({ "username": "bob", "password": null }),
        json!({ "username": "bob" }),
        json!({}),
    ];
    for body in &bodies {
        let r = post_json(&app, "/auth/register", body).await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // None of them created "bob".
    assert!(app.state.store.user_by_name("bob").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn usernames_outside_the_allowed_characters_or_length_are_400() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(65);
    for name in [
        "has space",
        "a/b",
        "ünïcode",
        "semi;colon",
        "tab\tname",
        " lead",
        long.as_str(),
    ] {
        let r = app.register(name, PASSWORD).await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Exactly 64 characters is allowed.
    register_id(&app, &"y".repeat(64)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn passwords_are_bounded_by_length_and_checked_exactly_as_received() {
    let app = TestApp::spawn().await;
    let r = app.register("pw1", "seven77").await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = app.register("pw2", &"a".repeat(1025)).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // 513 two-byte characters: few characters, but 1026 bytes.
    let r = app.register("pw3", &"é".repeat(513)).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The minimum counts characters, not bytes: seven two-byte characters are too few.
    let r = app.register("pw7", &"é".repeat(7)).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(
        app.register("pw8", &"é".repeat(8)).await.status(),
        StatusCode::CREATED
    );
    // The boundaries themselves are accepted.
    assert_eq!(
        app.register("pw4", "eight888").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.register("pw5", &"a".repeat(1024)).await.status(),
        StatusCode::CREATED
    );
    // No trimming: the spaces are part of the password.
    let padded = "  padded password  ";
    assert_eq!(
        app.register("pw6", padded).await.status(),
        StatusCode::CREATED
    );
    let r = app.login_raw("pw6", padded.trim()).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(app.login_raw("pw6", padded).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_max_body_is_413_with_content_length_and_when_chunked() {
    let app = TestApp::spawn_with(Setup {
        server: "max_body = 1024".into(),
        ..Setup::default()
    })
    .await;
    let big = json!({ "username": "big", "password": PASSWORD, "pad": "p".repeat(2000) })
        .to_string()
        .into_bytes();
    for path in ["/auth/register", "/auth/login"] {
        let r = post_raw(&app, path, Some("application/json"), big.clone()).await;
        assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

        let chunks: Vec<Result<Bytes, std::io::Error>> = big
            .chunks(256)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
        let r = app
            .request(Method::POST, path, None)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    // Just under the limit, with an unknown field that is ignored: accepted.
    let fits = json!({ "username": "big", "password": PASSWORD, "pad": "p".repeat(900) });
    assert!(fits.to_string().len() <= 1024);
    let r = post_json(&app, "/auth/register", &fits).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_are_neither_json_nor_form_are_415() {
    let app = TestApp::spawn().await;
    let body = json!({ "username": "typed", "password": PASSWORD })
        .to_string()
        .into_bytes();
    for ct in [
        Some("text/plain"),
        None,
        Some("application/xml"),
        Some("multipart/form-data"),
    ] {
        for path in ["/auth/register", "/auth/login"] {
            let r = post_raw(&app, path, ct, body.clone()).await;
            assert_error(
                r,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
            .await;
        }
    }
    assert!(app
        .state
        .store
        .user_by_name("typed")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_or_mistyped_json_is_400() {
    let app = TestApp::spawn().await;
    let bodies: [&[u8]; 6] = [
        b"{\"username\":",
        b"not json",
        b"[1, 2]",
        b"{\"username\": 5, \"password\": \"correct horse battery\"}",
        b"{\"username\": \"a\", \"username\": \"b\", \"password\": \"correct horse battery\"}",
        b"",
    ];
    for body in bodies {
        for path in ["/auth/register", "/auth/login"] {
            let r = post_raw(&app, path, Some("application/json"), body.to_vec()).await;
            assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn form_bodies_and_media_type_parameters_work() {
    let app = TestApp::spawn().await;
    let form = b"username=form.user&password=correct+horse%20battery".to_vec();
    let r = post_raw(
        &app,
        "/auth/register",
        Some("application/x-www-form-urlencoded"),
        form.clone(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = post_raw(
        &app,
        "/auth/login",
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        form,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let json_body = json!({ "username": "json.user", "password": PASSWORD })
        .to_string()
        .into_bytes();
    let r = post_raw(
        &app,
        "/auth/register",
        Some("Application/JSON; charset=utf-8"),
        json_body,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Form values are checked exactly as received: bytes that are not UTF-8 are refused,
    // not replaced with U+FFFD (which would make "%FF..." and "%FE..." one password).
    for body in [
        &b"username=bytes&password=%FF%FF%FF%FF%FF%FF%FF%FF"[..],
        &b"username=bytes&password=\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        &b"username=%C3&password=correct+horse+battery"[..],
    ] {
        let r = post_raw(
            &app,
            "/auth/register",
            Some("application/x-www-form-urlencoded"),
            body.to_vec(),
        )
        .await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // A duplicated field is ambiguous.
    let r = post_raw(
        &app,
        "/auth/login",
        Some("application/x-www-form-urlencoded"),
        b"username=form.user&username=x&password=correct+horse+battery".to_vec(),
    )
    .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A form missing a field is a 400 like JSON.
    let r = post_raw(
        &app,
        "/auth/register",
        Some("application/x-www-form-urlencoded"),
        b"username=only".to_vec(),
    )
    .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_disabled_is_403_even_with_a_garbage_body() {
    let app = TestApp::spawn_with(Setup {
        auth: "allow_registration = false".into(),
        ..Setup::default()
    })
    .await;
    let r = post_raw(
        &app,
        "/auth/register",
        Some("text/plain"),
        b"\x00garbage{".to_vec(),
    )
    .await;
    assert_error(r, StatusCode::FORBIDDEN, "registration_disabled").await;
    let r = post_raw(&app, "/auth/register", None, vec![b'x'; 70_000]).await;
    assert_error(r, StatusCode::FORBIDDEN, "registration_disabled").await;
    let r = app.register("nobody", PASSWORD).await;
    assert_error(r, StatusCode::FORBIDDEN, "registration_disabled").await;
    assert!(app.state.store.list_users().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_registrations_of_one_name_yield_exactly_one_user() {
    // Cheap hashes: the race under test is in the store, and twenty default-cost hashes on
    // one permit could pass the queue's wait on a busy machine.
    let app = TestApp::spawn_with(Setup {
        auth: "argon2 = { memory_kib = 1024, iterations = 1, parallelism = 1 }".into(),
        ..Setup::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("/auth/register");
        // Spellings differ only by case: one name.
        let name = if i % 2 == 0 { "Racer" } else { "rAcEr" };
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "username": name, "password": PASSWORD }))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => taken += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, taken), (1, 19));
    let users = app.state.store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
}

// ---------------------------------------------------------------- endpoints and methods

#[tokio::test(flavor = "multi_thread")]
async fn unknown_auth_endpoints_are_404_before_any_token_check() {
    let app = TestApp::spawn().await;
    for path in [
        "/auth/nope",
        "/auth/",
        "/auth/users/abc",
        "/auth/users/",
        "/auth/users/1/roles",
        "/auth/login/extra",
        "/auth/ME",
    ] {
        for token in [None, Some("not.a.token")] {
            let r = app.get(path, token).await;
            assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_methods_are_405_with_allow_before_any_token_check() {
    let app = TestApp::spawn().await;
    let cases = [
        (Method::GET, "/auth/register", "POST"),
        (Method::GET, "/auth/login", "POST"),
        (Method::GET, "/auth/refresh", "POST"),
        (Method::PUT, "/auth/fresh", "POST"),
        (Method::GET, "/auth/logout", "POST"),
        (Method::POST, "/auth/me", "GET, DELETE"),
        (Method::PATCH, "/auth/me", "GET, DELETE"),
        (Method::GET, "/auth/password", "PUT"),
        (Method::POST, "/auth/password", "PUT"),
        (Method::POST, "/auth/jwks.json", "GET"),
        (Method::PUT, "/auth/users/1", "GET, DELETE"),
    ];
    for (method, path, allow) in cases {
        for token in [None, Some("not.a.token")] {
            let r = app
                .request(method.clone(), path, token)
                .send()
                .await
                .unwrap();
            assert_eq!(header(r.headers(), "allow"), allow, "{method} {path}");
            assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        }
    }
}

// ---------------------------------------------------------------- /auth/me

#[tokio::test(flavor = "multi_thread")]
async fn me_answers_id_username_as_registered_roles_and_created_at_in_utc() {
    let app = TestApp::spawn().await;
    let id = register_id(&app, "Carol").await;
    // Login matches case-insensitively; answers carry the registered spelling.
    let r = app.login_raw("CAROL", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(claims(&access)["username"], "Carol");
    let r = app.get("/auth/me", Some(&access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-type"), "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], id);
    assert_eq!(v["username"], "Carol");
    assert_eq!(v["roles"], json!([]));
    let created = v["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z'), "UTC: {created}");
    let at = humantime::parse_rfc3339(created).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(120), "{created}");
    assert_eq!(v.as_object().unwrap().len(), 4, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn me_refuses_missing_malformed_expired_and_forged_tokens() {
    let app = TestApp::spawn().await;
    let t = app.user("mallory").await;

    let r = app.get("/auth/me", None).await;
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    for auth in ["Basic bWFsOnB3", "Bearer", "Bearer "] {
        let r = app
            .request(Method::GET, "/auth/me", None)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    }

    // A forged signature: another token's signature on this payload.
    let other = app.login("mallory").await;
    let mut parts: Vec<&str> = t.access.split('.').collect();
    let other_sig = other.access.rsplit('.').next().unwrap();
    parts[2] = other_sig;
    let forged = parts.join(".");
    for bad in ["abc.def.ghi", "garbage", forged.as_str()] {
        let r = app.get("/auth/me", Some(bad)).await;
        let challenge = header(r.headers(), "www-authenticate");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    // Tokens signed with the gateway's own key but with claims it must refuse.
    let base: Claims = serde_json::from_value(claims(&t.access)).unwrap();
    let now = authgate::clock::Clock::system().now() as u64;
    let expired = Claims {
        iat: now - 7200,
        nbf: now - 7200,
        auth_time: now - 7200,
        exp: now - 3600,
        ..base.clone()
    };
    let r = app.get("/auth/me", Some(&sign(&app, &expired))).await;
    assert!(header(r.headers(), "www-authenticate").contains("error=\"invalid_token\""));
    assert_error(r, StatusCode::UNAUTHORIZED, "token_expired").await;
    let not_yet = Claims {
        nbf: now + 3600,
        ..base.clone()
    };
    let other_issuer = Claims {
        iss: "someone-else".into(),
        ..base.clone()
    };
    let with_audience = Claims {
        aud: Some("another-api".into()),
        ..base.clone()
    };
    for bad in [not_yet, other_issuer, with_audience] {
        let r = app.get("/auth/me", Some(&sign(&app, &bad))).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // "alg": "none", and a token over 8 KiB.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims(&t.access))
    );
    let huge = format!("{}.{}.x", "a".repeat(4096), "b".repeat(5000));
    for bad in [unsigned.as_str(), huge.as_str()] {
        let r = app.get("/auth/me", Some(bad)).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // The scheme is matched case-insensitively.
    let r = app
        .request(Method::GET, "/auth/me", None)
        .header("authorization", format!("bEARER {}", t.access))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Two credentials are ambiguous: 400.
    let r = app
        .request(Method::GET, "/auth/me", None)
        .header("authorization", format!("Bearer {}", t.access))
        .header("authorization", format!("Bearer {}", other.access))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;

    // The real token still works: none of the above revoked anything.
    assert_eq!(
        app.get("/auth/me", Some(&t.access)).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- PUT /auth/password

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_needs_a_fresh_access_token() {
    let app = TestApp::spawn().await;
    let t = app.user("dave").await;
    let stale = refreshed(&app, &t).await;
    let r = change_password(&app, &stale.access, PASSWORD, NEW_PASSWORD).await;
    let challenge = header(r.headers(), "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(
        !challenge.contains("max_age"),
        "no max_age here: {challenge}"
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let r = app
        .request(Method::PUT, "/auth/password", None)
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = change_password(&app, &t.refresh, PASSWORD, NEW_PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Nothing changed.
    app.login("dave").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_current_password_is_401_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.user("erin").await;
    let other = app.login("erin").await;
    let r = change_password(&app, &t.access, "not the password", NEW_PASSWORD).await;
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        "Bearer realm=\"authgate\""
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.login("erin").await;
    let r = app.login_raw("erin", NEW_PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // No session was revoked either.
    for token in [&t.access, &other.access] {
        assert_eq!(
            app.get("/auth/me", Some(token)).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_revokes_the_users_other_sessions_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let mine = app.user("frank").await;
    let theirs = app.login("frank").await;
    let theirs_later = refreshed(&app, &theirs).await;
    let bystander = app.user("grace").await;

    assert_message(change_password(&app, &mine.access, PASSWORD, NEW_PASSWORD).await).await;

    // The calling session lives on: access token and refresh token.
    assert_eq!(
        app.get("/auth/me", Some(&mine.access)).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.refresh(&mine.refresh).await.status(), StatusCode::OK);
    // The other session is gone, every token of it.
    assert_revoked_on_me(&app, &theirs.access).await;
    assert_revoked_on_me(&app, &theirs_later.access).await;
    let r = app.refresh(&theirs_later.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    // Another user is untouched.
    assert_eq!(
        app.get("/auth/me", Some(&bystander.access)).await.status(),
        StatusCode::OK
    );
    // The new password logs in; the old one no longer does.
    assert_eq!(
        app.login_raw("frank", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    let r = app.login_raw("frank", PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_bodies_are_checked_like_register() {
    let app = TestApp::spawn().await;
    let t = app.user("hank").await;
    let long = "n".repeat(1025);
    let bodies = [
        json!({ "current_password": PASSWORD }),
        json!({ "new_password": NEW_PASSWORD }),
        json!({ "current_password": PASSWORD, "new_password": "" }),
        json!({ "current_password": PASSWORD, "new_password": "short" }),
        json!({ "current_password": PASSWORD, "new_password": long }),
    ];
    for body in &bodies {
        let r = app
            .request(Method::PUT, "/auth/password", Some(&t.access))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let r = app
        .request(Method::PUT, "/auth/password", Some(&t.access))
        .header(CONTENT_TYPE, "text/plain")
        .body("current_password=x")
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    app.login("hank").await;
}

// ---------------------------------------------------------------- DELETE /auth/me

#[tokio::test(flavor = "multi_thread")]
async fn deleting_ones_account_needs_a_fresh_access_token() {
    let app = TestApp::spawn().await;
    let t = app.user("ida").await;
    let stale = refreshed(&app, &t).await;
    let r = delete_me(&app, &stale.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "fresh_token_required").await;
    let r = app
        .request(Method::DELETE, "/auth/me", None)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = delete_me(&app, &t.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(
        app.get("/auth/me", Some(&t.access)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_account_loses_every_token_and_its_name_comes_back_with_a_new_id() {
    let app = TestApp::spawn().await;
    let old_id = register_id(&app, "gina").await;
    let a = app.login("gina").await;
    let b = app.login("gina").await;
    let b_later = refreshed(&app, &b).await;

    assert_message(delete_me(&app, &a.access).await).await;

    for token in [&a.access, &b.access, &b_later.access] {
        assert_revoked_on_me(&app, token).await;
        let r = app.get("/api/x", Some(token)).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    for token in [&a.refresh, &b_later.refresh] {
        let r = app.refresh(token).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    }
    let r = app.login_raw("gina", PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // The name is free again, under a new id; the old tokens never reach the new account.
    let new_id = register_id(&app, "GINA").await;
    assert!(
        new_id > old_id,
        "ids are never reused: {old_id} then {new_id}"
    );
    assert_revoked_on_me(&app, &a.access).await;
    let r = delete_me(&app, &a.access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let fresh = app.login("gina").await;
    let me: Value = app
        .get("/auth/me", Some(&fresh.access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], new_id);
    assert_eq!(me["username"], "GINA");
}

// ---------------------------------------------------------------- /auth/users/{id}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_resource_needs_the_admin_role_held_by_the_token() {
    let app = TestApp::spawn().await;
    cli_user_id(&app, "root").await;
    let before = app.login("root").await;
    let target = register_id(&app, "target").await;
    let path = format!("/auth/users/{target}");

    let r = app.get(&path, None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app.get(&path, Some(&before.access)).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    assert!(app.state.store.grant_role("root", "admin").await.unwrap());
    // Roles come from the token: the old one still lacks it.
    let r = app.get(&path, Some(&before.access)).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .request(Method::DELETE, &path, Some(&before.access))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    let admin = app.login("root").await;
    assert_eq!(claims(&admin.access)["roles"], json!(["admin"]));
    let r = app.get(&path, Some(&admin.access)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], target);
    assert_eq!(v["username"], "target");
    assert_eq!(v["roles"], json!([]));
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v.as_object().unwrap().len(), 4, "the /auth/me shape: {v}");
    // A refresh token is not an access token, admin or not.
    let r = app.get(&path, Some(&admin.refresh)).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_non_numeric_user_ids_are_404() {
    let (app, admin) = app_with_admin().await;
    for path in [
        "/auth/users/999999",
        "/auth/users/0",
        "/auth/users/99999999999999999999999",
        "/auth/users/abc",
        "/auth/users/-1",
        "/auth/users/1.0",
    ] {
        let r = app.get(path, Some(&admin.access)).await;
        assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
        let r = app
            .request(Method::DELETE, path, Some(&admin.access))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_deleting_a_user_revokes_every_token_of_theirs() {
    let (app, admin) = app_with_admin().await;
    let victim_id = register_id(&app, "victim").await;
    let victim = app.login("victim").await;
    let path = format!("/auth/users/{victim_id}");

    // The victim cannot delete anyone (no admin role), themselves included.
    let r = app
        .request(Method::DELETE, &path, Some(&victim.access))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;

    let r = app
        .request(Method::DELETE, &path, Some(&admin.access))
        .send()
        .await
        .unwrap();
    assert_message(r).await;
    assert_revoked_on_me(&app, &victim.access).await;
    let r = app.refresh(&victim.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
    let r = app.get(&path, Some(&admin.access)).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .request(Method::DELETE, &path, Some(&admin.access))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    // The admin's own session is untouched.
    assert_eq!(
        app.get("/auth/me", Some(&admin.access)).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- /auth/jwks.json

#[tokio::test(flavor = "multi_thread")]
async fn jwks_is_404_under_hs256() {
    let app = TestApp::spawn().await;
    let r = app.get("/auth/jwks.json", None).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_publishes_the_public_eddsa_key_whose_kid_signs_the_tokens() {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/ed25519.pem"
    );
    let app = TestApp::spawn_with(Setup {
        tokens: format!("algorithm = \"EdDSA\"\nprivate_key_file = \"{key}\""),
        ..Setup::default()
    })
    .await;
    let r = app.get("/auth/jwks.json", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "content-type"), "application/json");
    let set: Value = r.json().await.unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{set}");
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert!(jwk["x"].is_string());
    assert!(jwk.get("d").is_none(), "never the private part: {jwk}");

    let t = app.user("edd").await;
    use base64::Engine;
    let head = t.access.split('.').next().unwrap();
    let head: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(head)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(head["alg"], "EdDSA");
    assert_eq!(head["kid"], jwk["kid"]);
    assert_eq!(
        app.get("/auth/me", Some(&t.access)).await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- operator CLI

#[tokio::test(flavor = "multi_thread")]
async fn user_add_takes_roles_and_reads_the_password_from_stdin_without_its_newline() {
    let app = TestApp::spawn().await;
    let out = user_cli_async(
        &app.config_path,
        &["user", "add", "Oper", "--role", "ops", "--role", "auditor"],
        Some("operator password\n"),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Oper"), "{stdout}");

    let r = app.login_raw("oper", "operator password").await;
    assert_eq!(r.status(), StatusCode::OK);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let roles = claims(&access)["roles"].clone();
    assert!(roles.as_array().unwrap().contains(&json!("ops")), "{roles}");
    assert!(
        roles.as_array().unwrap().contains(&json!("auditor")),
        "{roles}"
    );
    assert_eq!(
        app.get("/ops/x", Some(&access)).await.status(),
        StatusCode::OK
    );
    // Only the one newline was removed.
    let r = app.login_raw("oper", "operator password\n").await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // Refusals exit non-zero and create nothing.
    for (args, stdin) in [
        (&["user", "add", "OPER"][..], "another password\n"),
        (&["user", "add", "bad name"][..], "another password\n"),
        (&["user", "add", "shorty"][..], "short\n"),
        (
            &["user", "add", "roly", "--role", "bad role"][..],
            "another password\n",
        ),
    ] {
        let out = user_cli_async(&app.config_path, args, Some(stdin)).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(app.state.store.list_users().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn user_list_grant_revoke_and_delete_work_beside_a_live_gateway() {
    let app = TestApp::spawn().await;
    let pat_id = register_id(&app, "pat").await;
    let cfg = app.config_path.clone();

    let out = user_cli_async(&cfg, &["user", "grant", "PAT", "ops"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = user_cli_async(&cfg, &["user", "list"], None).await;
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = list
        .lines()
        .find(|l| l.contains("pat"))
        .unwrap_or_else(|| panic!("pat listed: {list}"));
    assert!(
        line.contains(&pat_id.to_string()) && line.contains("ops"),
        "{line}"
    );

    // A granted role applies from the next token.
    let with_ops = app.login("pat").await;
    assert_eq!(
        app.get("/ops/x", Some(&with_ops.access)).await.status(),
        StatusCode::OK
    );
    let out = user_cli_async(&cfg, &["user", "revoke", "pat", "ops"], None).await;
    assert!(out.status.success());
    let without = app.login("pat").await;
    let r = app.get("/ops/x", Some(&without.access)).await;
    assert_error(r, StatusCode::FORBIDDEN, "forbidden").await;
    let out = user_cli_async(&cfg, &["user", "list"], None).await;
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !list.lines().any(|l| l.contains("pat") && l.contains("ops")),
        "{list}"
    );

    // Unknown users are an error.
    for args in [
        &["user", "grant", "nobody", "ops"][..],
        &["user", "revoke", "nobody", "ops"][..],
        &["user", "delete", "nobody"][..],
        &["user", "logout-all", "nobody"][..],
    ] {
        let out = user_cli_async(&cfg, args, None).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }

    // Deleting revokes the live tokens within a second.
    let out = user_cli_async(&cfg, &["user", "delete", "pat"], None).await;
    assert!(out.status.success());
    let start = Instant::now();
    loop {
        let r = app.get("/api/x", Some(&without.access)).await;
        if r.status() == StatusCode::UNAUTHORIZED {
            assert_error(r, StatusCode::UNAUTHORIZED, "token_revoked").await;
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not revoked within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = app.login_raw("pat", PASSWORD).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let out = user_cli_async(&cfg, &["user", "list"], None).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pat"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_audience_is_carried_by_tokens_and_required_on_them() {
    let app = TestApp::spawn_with(Setup {
        tokens: "audience = \"my-api\"".into(),
        ..Setup::default()
    })
    .await;
    let t = app.user("aud").await;
    assert_eq!(claims(&t.access)["aud"], "my-api");
    assert_eq!(claims(&t.refresh)["aud"], "my-api");
    assert_eq!(
        app.get("/auth/me", Some(&t.access)).await.status(),
        StatusCode::OK
    );
    let base: Claims = serde_json::from_value(claims(&t.access)).unwrap();
    for aud in [None, Some("another-api".to_owned())] {
        let c = Claims {
            aud,
            ..base.clone()
        };
        let r = app.get("/auth/me", Some(&sign(&app, &c))).await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_without_a_body_ignore_any_body_and_its_type() {
    let app = TestApp::spawn().await;
    let t = app.user("nobody.reads").await;
    let r = app
        .request(Method::GET, "/auth/me", Some(&t.access))
        .header(CONTENT_TYPE, "text/plain")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(Method::POST, "/auth/refresh", Some(&t.refresh))
        .header(CONTENT_TYPE, "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .request(Method::DELETE, "/auth/me", Some(&t.access))
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_message(r).await;
}

/// Sends `head` (request line and headers, declaring a body larger than what follows) and
/// the first bytes of the body on a raw connection; returns the response head, and whether
/// the gateway then closed the connection.
async fn early_answer(app: &TestApp, head: &str) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"username\": \"early\", ").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break, // still open
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    (head, closed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_after_an_early_answer_says_so_in_the_answer() {
    let open = TestApp::spawn().await;
    let closed = TestApp::spawn_with(Setup {
        auth: "allow_registration = false".into(),
        ..Setup::default()
    })
    .await;
    let cases = [
        (&closed, "POST /auth/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n\r\n", "403"),
        (&open, "POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n", "413"),
        (&open, "POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 50000\r\n\r\n", "415"),
        (&open, "POST /auth/fresh HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n\r\n", "401"),
        (&open, "POST /auth/nope HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n\r\n", "404"),
        (&open, "GET /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n\r\n", "405"),
    ];
    for (app, request, status) in cases {
        let (head, was_closed) = early_answer(app, request).await;
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{head}");
        // A client may reuse a connection the answer did not mark as closing: closing it
        // silently makes that client's next request fail.
        if was_closed {
            assert!(
                head.contains("\r\nconnection: close"),
                "closed silently after: {head}"
            );
        }
    }
}
